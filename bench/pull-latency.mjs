#!/usr/bin/env node
// Added pull latency of pullguard on an allow rule, on a real containerd 2.1.9.
//
//   node bench/pull-latency.mjs [--runs N] [--warmup W] [--cold N]      (as root; after `make build`)
//
// Two containerd daemons from the same config (containerd-config/ drop-in): one with an EMPTY
// bin_dir (containerd allows without running anything) and one with dist/pullguard alone in bin_dir
// and a policy whose allow rule matches. Each timed pull is a CRI PullImage (the call kubelet makes)
// of a fresh image (its own digest, nothing cached), alternating between the two daemons so that
// drift (page cache, CPU frequency) hits both alike. Prints median and p90 of each and the
// difference, pullguard's own durationMs from its decision records, and the cold start of the
// single executable alone (`env -i dist/pullguard ...`, spawned from Node, wall time).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { loadTestHelpers } from '../scripts/load-test-helpers.mjs';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
};
const RUNS = arg('runs', 20);
const WARMUP = arg('warmup', 3);
const COLD = arg('cold', 30);

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
};
const fmt = (ms) => `${ms.toFixed(1).padStart(7)} ms`;
const row = (label, xs) =>
  `${label.padEnd(48)} median ${fmt(pct(xs, 50))}   p90 ${fmt(pct(xs, 90))}   (n=${xs.length})`;

async function main() {
  if (process.getuid?.() !== 0) throw new Error('run as root (containerd needs it)');
  const h = await loadTestHelpers();
  const work = mkdtempSync(join(tmpdir(), 'pg-bench-'));
  const live = [];
  try {
    const registry = await h.startRegistry();
    live.push(registry);
    const policy = join(work, 'policy.yaml');
    writeFileSync(
      policy,
      `version: 1\ndefault: deny\nrules:\n  - name: bench\n    match: ${registry.host}/bench/**\n    action: allow\n`,
    );

    const total = WARMUP + RUNS;
    process.stderr.write(`pushing ${2 * total} distinct images...\n`);
    const images = { without: [], with: [] };
    for (let i = 0; i < total; i++) {
      for (const kind of ['without', 'with']) {
        const pushed = await h.pushTestImage(registry.host, `bench/${kind}`, `t${i}`, `${kind}-${i}-${Date.now()}`);
        images[kind].push(pushed.ref);
      }
    }

    const without = await h.startContainerd({ verifier: false, policy });
    live.push(without);
    const withPg = await h.startContainerd({ verifier: true, policy });
    live.push(withPg);
    const criWithout = h.criClient(without.socket);
    const criWith = h.criClient(withPg.socket);

    const times = { without: [], with: [] };
    const timed = async (cri, ref) => {
      const t0 = performance.now();
      await cri.pullImage(ref);
      return performance.now() - t0;
    };
    for (let i = 0; i < total; i++) {
      // Alternate which daemon goes first.
      const order = i % 2 === 0 ? ['without', 'with'] : ['with', 'without'];
      for (const k of order) {
        const ms = await timed(k === 'with' ? criWith : criWithout, images[k][i]);
        if (i >= WARMUP) times[k].push(ms);
      }
    }
    criWithout.close();
    criWith.close();
    await h.waitFor('decision records', () => withPg.decisionRecords().length >= total, 10_000);
    const own = withPg
      .decisionRecords()
      .slice(WARMUP)
      .map((r) => r.durationMs);
    if (without.decisionRecords().length !== 0) throw new Error('the empty-bin_dir daemon ran a verifier?');
    if (withPg.decisionRecords().some((r) => r.verdict !== 'allow'))
      throw new Error('a benchmark pull was not allowed');

    // Cold start of the executable alone, as containerd runs it (no Node.js, empty environment but the policy).
    const bin = h.pullguardBinary();
    const digest = `sha256:${'b'.repeat(64)}`;
    const cold = { version: [], decide: [] };
    for (let i = 0; i < COLD; i++) {
      let t0 = performance.now();
      let r = spawnSync('env', ['-i', bin, '--version'], { encoding: 'utf8' });
      cold.version.push(performance.now() - t0);
      if (r.status !== 0) throw new Error(`pullguard --version failed: ${r.stderr}`);
      t0 = performance.now();
      r = spawnSync(
        'env',
        [
          '-i',
          `PULLGUARD_POLICY=${policy}`,
          bin,
          '-name',
          `${registry.host}/bench/with:x`,
          '-digest',
          digest,
          '-stdin-media-type',
          'application/vnd.oci.descriptor.v1+json',
        ],
        {
          encoding: 'utf8',
          input: JSON.stringify({ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest, size: 401 }),
        },
      );
      cold.decide.push(performance.now() - t0);
      if (r.status !== 0) throw new Error(`pullguard decision failed: ${r.stdout}${r.stderr}`);
    }
    const noop = [];
    for (let i = 0; i < COLD; i++) {
      const t0 = performance.now();
      spawnSync('env', ['-i', '/bin/true']);
      noop.push(performance.now() - t0);
    }

    const delta = pct(times.with, 50) - pct(times.without, 50);
    const out = [
      `pull latency, containerd 2.1.9, CRI PullImage of a fresh ~700 B image from a local docker-registry`,
      `(${RUNS} timed pulls each after ${WARMUP} warm-up, alternating; ${new Date().toISOString()})`,
      row('empty bin_dir (no verifier)', times.without),
      row('bin_dir = dist/pullguard, allow rule', times.with),
      `${'added by pullguard (difference of medians)'.padEnd(48)} ${fmt(delta)}`,
      row("pullguard's own durationMs (decision records)", own),
      '',
      `cold start of the single executable alone (${COLD} runs, spawned from Node)`,
      row('env -i /bin/true (spawn overhead)', noop),
      row('env -i dist/pullguard --version', cold.version),
      row('env -i dist/pullguard -name … (allow decision)', cold.decide),
    ];
    process.stdout.write(`${out.join('\n')}\n`);
  } finally {
    for (const d of live.reverse()) await d.stop().catch(() => undefined);
    rmSync(work, { recursive: true, force: true });
  }
}

main()
  .catch((e) => {
    process.stderr.write(`bench failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exitCode = 1;
  })
  .finally(() => process.exit(process.exitCode ?? 0));

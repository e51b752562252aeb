#!/usr/bin/env node
// `make demo`: pullguard on a real containerd, end to end, in about ten seconds.
//
// It fetches the real tools (scripts/fetch-tools.sh), starts a local docker-registry and pushes two
// small images, starts containerd 2.1.9 with pullguard (dist/pullguard) as its image verifier and a
// policy, then pulls one allowed and one denied image the way kubelet does (CRI PullImage) and the
// way ctr does, and prints what containerd answered and pullguard's decision records.
// Everything runs in temp directories and is stopped and removed at the end, also on failure.
// Needs root (containerd does). No input is read.
//
// Scenarios are a plain list (SCENARIOS below): a later step (signed images) adds entries there.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadTestHelpers } from './load-test-helpers.mjs';

const tty = process.stdout.isTTY;
const paint = (code) => (s) => (tty ? `\x1b[${code}m${s}\x1b[0m` : s);
const bold = paint('1');
const green = paint('32');
const red = paint('31');
const dim = paint('2');
const say = (s = '') => process.stdout.write(`${s}\n`);
const step = (s) => say(`\n${bold(`== ${s}`)}`);

/**
 * Each scenario pulls one image and says what should happen. `run` gets the demo context and returns
 * { verdict: 'allow' | 'deny', detail: string } as containerd reported it.
 */
const SCENARIOS = [
  {
    title: 'kubelet-style pull (CRI PullImage) of an allowed image',
    image: (c) => c.images.allowed.ref,
    expect: 'allow',
    run: (c, ref) => criPull(c, ref),
  },
  {
    title: 'kubelet-style pull (CRI PullImage) of a denied image',
    image: (c) => c.images.denied.ref,
    expect: 'deny',
    run: (c, ref) => criPull(c, ref),
  },
  {
    title: 'ctr image pull of the allowed image',
    image: (c) => c.images.allowed.ref,
    expect: 'allow',
    run: (c, ref) => ctrPull(c, ref),
  },
  {
    title: 'ctr image pull of the denied image',
    image: (c) => c.images.denied.ref,
    expect: 'deny',
    run: (c, ref) => ctrPull(c, ref),
  },
  // Later: signed-image scenarios (a cosign-signed image allowed by a `verify` rule, an unsigned one
  // denied) go here, with their images pushed and signed in setup().
];

async function criPull(c, ref) {
  try {
    const id = await c.cri.pullImage(ref);
    const status = await c.cri.imageStatus(ref);
    return { verdict: 'allow', detail: `pulled, image id ${id}; in containerd's k8s.io image store as ${status?.repoDigests?.[0] ?? '?'}` };
  } catch (e) {
    if (e instanceof c.h.CriError) return { verdict: 'deny', detail: `containerd answered: ${e.details}` };
    throw e;
  }
}

async function ctrPull(c, ref) {
  const r = await c.ctd.ctr(['image', 'pull', '--plain-http', ref]);
  if (r.status === 0) return { verdict: 'allow', detail: `ctr: pulled ${ref}` };
  return { verdict: 'deny', detail: `ctr: ${(r.stderr.trim().split('\n').pop() ?? '').replace(/^ctr: /, '')}` };
}

async function setup(c) {
  step('Tools');
  const bin = c.h.toolsBin();
  say(`containerd, ctr, docker-registry, oras from Debian (cache ${dim(bin)})`);
  say(`pullguard: ${c.h.pullguardBinary()} (the single executable; no Node.js needed on the node)`);

  step('Registry');
  c.registry = await c.h.startRegistry();
  say(`docker-registry 2.8.3 on ${c.registry.host} (pid ${c.registry.daemon.pid})`);
  c.images = {
    allowed: c.h.pushTestImage(c.registry.host, 'team/app', '1.0', 'demo-allowed'),
    denied: c.h.pushTestImage(c.registry.host, 'untrusted/tool', '1.0', 'demo-denied'),
  };
  for (const i of Object.values(c.images)) say(`pushed ${i.ref} ${dim(i.digest)}`);

  step('Policy');
  c.policyFile = join(c.work, 'policy.yaml');
  const policy = [
    'version: 1',
    'mode: enforce',
    'default: deny',
    'rules:',
    '  - name: team-images',
    `    match: ${c.registry.host}/team/**`,
    '    action: allow',
    '  - name: untrusted',
    `    match: ${c.registry.host}/untrusted/*`,
    '    action: deny',
    '    message: images from untrusted/ are not allowed on this node',
    '',
  ].join('\n');
  writeFileSync(c.policyFile, policy);
  say(dim(policy.trimEnd()));

  step('containerd');
  c.ctd = await c.h.startContainerd({ mode: 'dropin', policy: c.policyFile });
  say(`containerd 2.1.9 (pid ${c.ctd.daemon.pid}), socket ${c.ctd.socket}`);
  say(`config: containerd-config/pullguard.toml imported; bin_dir ${c.ctd.binDir} holds only pullguard`);
  say(`PULLGUARD_POLICY=${c.policyFile} in containerd's environment (verifiers inherit it)`);
  c.cri = c.h.criClient(c.ctd.socket);
}

async function main() {
  if (process.getuid?.() !== 0) throw new Error('the demo starts containerd, which needs root: run `make demo` as root');
  const c = { h: await loadTestHelpers(), work: mkdtempSync(join(tmpdir(), 'pg-demo-')) };
  const cleanup = async () => {
    c.cri?.close();
    await c.ctd?.stop().catch(() => undefined);
    await c.registry?.stop().catch(() => undefined);
    rmSync(c.work, { recursive: true, force: true });
  };
  // Ctrl-C or a kill: stop the daemons before leaving. (proc.ts also SIGKILLs them on exit.)
  for (const sig of ['SIGINT', 'SIGTERM']) {
    process.once(sig, () => {
      say(red(`\n${sig}: cleaning up`));
      cleanup().finally(() => process.exit(130));
    });
  }

  let failures = 0;
  try {
    say(bold('pullguard demo: containerd image verification at pull time'));
    await setup(c);
    step('Pulls');
    for (const s of SCENARIOS) {
      const ref = s.image(c);
      const before = c.ctd.decisionRecords().length;
      const { verdict, detail } = await s.run(c, ref);
      const ok = verdict === s.expect;
      if (!ok) failures++;
      say(`\n${verdict === 'allow' ? green('ALLOWED') : red('DENIED ')} ${s.title}`);
      say(`  image:  ${ref}`);
      say(`  ${detail}`);
      // pullguard's stderr record, as containerd logged it (debug level).
      const fresh = () => c.ctd.decisionRecords().slice(before).find((r) => r.name === ref);
      await c.h.waitFor('decision record', () => fresh() !== undefined, 5_000).catch(() => undefined);
      const rec = fresh();
      if (rec) say(dim(`  pullguard: verdict=${rec.verdict} rule=${rec.rule ?? '(none)'} reason="${rec.reason}" in ${rec.durationMs} ms`));
      if (!ok) say(red(`  UNEXPECTED: expected ${s.expect}`));
    }

    step("pullguard's decision records (its stderr, from containerd's debug log)");
    for (const r of c.ctd.decisionRecords()) say(dim(JSON.stringify(r)));
    say(`\nIn Kubernetes the "containerd answered" text is what kubectl describe pod shows for a denied image.`);
    say('Install on a node: install/install.sh; Kind: kind/cluster.yaml (see their README.md).');
  } finally {
    step('Cleanup');
    await cleanup();
    say('stopped containerd and the registry, removed temp files');
  }
  if (failures > 0) {
    say(red(`\n${failures} scenario(s) did not end as expected`));
    process.exitCode = 1;
  } else say(green('\ndemo finished: every pull ended as the policy says'));
}

main()
  .catch((e) => {
    process.stderr.write(`${red('demo failed:')} ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exitCode = 1;
  })
  // Everything is stopped by now; do not wait for idle timers (a helper's 5 s stop timeout).
  .finally(() => process.exit(process.exitCode ?? 0));

#!/usr/bin/env node
// `make demo`: pullguard on a real containerd, enforcing cosign and Notation signatures at pull time.
//
// What it does, all on this machine, in temp directories, in well under a minute:
//   1. starts a local docker-registry and pushes a few small images;
//   2. signs them with the real cosign 3.1.1 (a key pair made now; the v3 sigstore bundle and the
//      legacy `.sig` tag) and the real notation 1.3.2 (`notation cert generate-test`), leaves one
//      unsigned and signs one with a key the policy does not trust;
//   3. starts containerd 2.1.9 with the containerd-config/ drop-in and dist/pullguard alone in its
//      bin_dir, and a pullguard policy that requires those signatures;
//   4. pulls every image the way kubelet does (CRI PullImage) and the way `ctr image pull` does, and
//      prints what containerd answered (a denied pull's error carries pullguard's reason);
//   5. runs `pullguard verify --explain` on one signed image, then shows what pullguard itself recorded
//      on the node: `pullguard log` (its decision log) and its Prometheus metrics file. containerd runs
//      at info level, as on nodes, where it logs nothing of a verifier.
// Everything is stopped and removed at the end, also on failure, Ctrl-C or SIGTERM. Needs root
// (containerd does). Reads no input.
//
// To add a case: add an entry to IMAGES (what to push, how to sign it, what the policy should decide).
// Every image is pulled by every entry of PULLS.
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { loadTestHelpers } from './load-test-helpers.mjs';

const tty = process.stdout.isTTY;
const paint = (code) => (s) => (tty ? `\x1b[${code}m${s}\x1b[0m` : s);
const bold = paint('1');
const green = paint('32');
const red = paint('31');
const dim = paint('2');
/** Set on SIGINT/SIGTERM: the demo is being torn down, and what is still in flight must not print. */
let stopping = false;
const say = (s = '') => {
  if (!stopping) process.stdout.write(`${s}\n`);
};
const step = (s) => say(`\n${bold(`== ${s}`)}`);

/**
 * The images. `sign(c, pinned)` signs `host/repo@digest` (or does nothing); `expect` is what the policy
 * must decide; `why` is one line for the reader.
 */
const IMAGES = [
  {
    key: 'cosignBundle',
    repo: 'prod/web',
    why: 'signed with cosign, release key, sigstore bundle v0.3 (OCI referrer)',
    expect: 'allow',
    sign: (c, pinned) => cosignSign(c, c.keys.release, pinned, { bundle: true }),
  },
  {
    key: 'cosignLegacy',
    repo: 'prod/api',
    why: 'signed with cosign, release key, legacy format (the `sha256-<hex>.sig` tag)',
    expect: 'allow',
    sign: (c, pinned) => cosignSign(c, c.keys.release, pinned, { bundle: false }),
  },
  {
    key: 'notation',
    repo: 'prod/worker',
    why: 'signed with notation, test certificate in the trust store (JWS envelope)',
    expect: 'allow',
    sign: (c, pinned) => notationSign(c, pinned),
  },
  {
    key: 'unsigned',
    repo: 'prod/unsigned',
    why: 'no signature at all',
    expect: 'deny',
    sign: async () => undefined,
  },
  {
    key: 'untrusted',
    repo: 'prod/forged',
    why: 'signed with cosign (both formats), but by a key the policy does not trust',
    expect: 'deny',
    sign: async (c, pinned) => {
      await cosignSign(c, c.keys.stranger, pinned, { bundle: true });
      await cosignSign(c, c.keys.stranger, pinned, { bundle: false });
    },
  },
  {
    key: 'pause',
    repo: 'system/pause',
    why: 'unsigned, but exempted by an allow rule (like registry.k8s.io/pause)',
    expect: 'allow',
    sign: async () => undefined,
  },
];

/** How each image is pulled. `run` returns { verdict, detail } as containerd reported it. */
const PULLS = [
  { name: 'CRI PullImage (what kubelet calls)', run: (c, ref) => criPull(c, ref) },
  { name: 'ctr image pull', run: (c, ref) => ctrPull(c, ref) },
];

/** `pullguard verify --explain` runs on these (IMAGES keys). */
const EXPLAIN = ['cosignLegacy'];

// --- child processes ---------------------------------------------------------------------------------

/** Children in flight, so that a SIGTERM stops them too (by PID). */
const children = new Set();

/** Runs a command with a time limit; resolves { code, stdout, stderr } and never throws for a non-zero exit. */
function run(cmd, args, { env, timeoutMs = 60_000 } = {}) {
  return new Promise((resolve, reject) => {
    const p = execFile(
      cmd,
      args,
      { env, timeout: timeoutMs, killSignal: 'SIGKILL', encoding: 'utf8', maxBuffer: 16 << 20 },
      (err, stdout, stderr) => {
        children.delete(p);
        if (err && typeof err.code !== 'number') return reject(new Error(`${cmd} did not finish: ${err.message}`));
        resolve({ code: err ? err.code : 0, stdout, stderr });
      },
    );
    children.add(p);
  });
}

/** Runs a command that must succeed, showing it as the reader would type it (paths relative to the demo dir). */
async function must(c, label, cmd, args, env) {
  say(`  ${dim('$')} ${label} ${args.map((a) => (a.startsWith(c.work) ? relative(c.work, a) || '.' : a)).join(' ')}`);
  const r = await run(cmd, args, { env });
  if (r.code !== 0) throw new Error(`${label} ${args[0]} failed (exit ${r.code}):\n${r.stdout}${r.stderr}`);
  return r.stdout;
}

// cosign and notation run sandboxed: their HOME (and notation's config) in the demo directory.
const cosignEnv = (c) => ({
  PATH: '/usr/bin:/bin',
  HOME: join(c.work, 'cosign-home'),
  COSIGN_PASSWORD: '',
  COSIGN_YES: 'true',
  SIGSTORE_NO_CACHE: '1',
});
const notationEnv = (c) => ({
  PATH: '/usr/bin:/bin',
  HOME: join(c.work, 'notation-home'),
  XDG_CONFIG_HOME: join(c.work, 'notation-home', 'config'),
});

function cosignSign(c, keyPrefix, pinned, { bundle }) {
  // No transparency log, no signing config (offline); --new-bundle-format picks the v3 bundle or the legacy .sig.
  return must(
    c,
    'cosign',
    c.h.tool('cosign'),
    [
      'sign',
      '--key',
      `${keyPrefix}.key`,
      '--tlog-upload=false',
      '--use-signing-config=false',
      `--new-bundle-format=${bundle}`,
      '--allow-http-registry',
      pinned,
    ],
    cosignEnv(c),
  );
}

function notationSign(c, pinned) {
  return must(
    c,
    'notation',
    c.h.tool('notation'),
    ['sign', '--insecure-registry', '--key', 'demo.example', pinned],
    notationEnv(c),
  );
}

// --- pulls -------------------------------------------------------------------------------------------

async function criPull(c, ref) {
  try {
    const id = await c.cri.pullImage(ref);
    return { verdict: 'allow', detail: `pulled; image id ${id.slice(0, 19)}… in containerd's k8s.io namespace` };
  } catch (e) {
    if (e instanceof c.h.CriError) return { verdict: 'deny', detail: `containerd: ${e.details}` };
    throw e;
  }
}

async function ctrPull(c, ref) {
  const r = await c.ctd.ctr(['image', 'pull', '--plain-http', ref]);
  if (r.status === 0) return { verdict: 'allow', detail: 'pulled' };
  return { verdict: 'deny', detail: `ctr: ${(r.stderr.trim().split('\n').pop() ?? '').replace(/^ctr: /, '')}` };
}

// --- setup -------------------------------------------------------------------------------------------

async function setup(c) {
  step('Tools');
  const bin = c.h.toolsBin();
  say(
    `containerd 2.1.9, ctr, docker-registry 2.8.3, oras, cosign 3.1.1, notation 1.3.2 from Debian (cache ${dim(bin)})`,
  );
  say(`pullguard: ${c.h.pullguardBinary()} (the single executable; no Node.js needed on the node)`);

  step('Registry');
  c.registry = await c.h.startRegistry();
  say(
    `docker-registry on ${c.registry.host} (pid ${c.registry.daemon.pid}); plain http, no referrers API: ` +
      'signatures are found through tags',
  );
  c.images = {};
  for (const i of IMAGES) {
    const img = await c.h.pushTestImage(c.registry.host, i.repo, '1.0', `demo-${i.key}-${Date.now()}`);
    c.images[i.key] = { ...img, pinned: `${c.registry.host}/${i.repo}@${img.digest}` };
    say(`pushed ${img.ref} ${dim(img.digest)}`);
  }

  step('Keys and signatures');
  const keys = join(c.work, 'keys');
  mkdirSync(keys);
  c.keys = { release: join(keys, 'release'), stranger: join(keys, 'stranger') };
  say("cosign key pairs (empty password): the release key the policy trusts, and a stranger's key");
  await must(
    c,
    'cosign',
    c.h.tool('cosign'),
    ['generate-key-pair', '--output-key-prefix', c.keys.release],
    cosignEnv(c),
  );
  await must(
    c,
    'cosign',
    c.h.tool('cosign'),
    ['generate-key-pair', '--output-key-prefix', c.keys.stranger],
    cosignEnv(c),
  );
  say(
    'notation test key and certificate; generate-test also puts the certificate in the trust store "ca:demo.example"',
  );
  await must(c, 'notation', c.h.tool('notation'), ['cert', 'generate-test', 'demo.example'], notationEnv(c));
  c.notationDir = join(c.work, 'notation-home', 'config', 'notation');
  const trustPolicy = {
    version: '1.0',
    trustPolicies: [
      {
        name: 'demo',
        registryScopes: ['*'],
        signatureVerification: { level: 'strict' },
        trustStores: ['ca:demo.example'],
        trustedIdentities: ['*'],
      },
    ],
  };
  writeFileSync(join(c.notationDir, 'trustpolicy.json'), JSON.stringify(trustPolicy, null, 2));
  say(
    `notation trust policy ${relative(c.work, join(c.notationDir, 'trustpolicy.json'))}: ` +
      'every repository, strict, trust store ca:demo.example',
  );
  for (const i of IMAGES) {
    say(`${bold(i.repo)}: ${i.why}`);
    await i.sign(c, c.images[i.key].pinned);
  }
  const tags = await listTags(c, 'prod/api');
  say(dim(`tags in prod/api now: ${tags.join(', ')}   (the legacy signature is the .sig tag)`));
  const webTags = await listTags(c, 'prod/web');
  say(dim(`tags in prod/web now: ${webTags.join(', ')}   (the referrers tag: an index listing the bundle)`));

  step('containerd');
  c.ctd = await c.h.startContainerd({ mode: 'dropin', policy: join(c.work, 'policy.yaml'), logLevel: 'info' });
  say(`containerd 2.1.9 (pid ${c.ctd.daemon.pid}), socket ${c.ctd.socket}, log level info (as on nodes)`);
  say(
    'config: imports containerd-config/pullguard.toml (the drop-in users install), ' +
      'then a demo-only file that moves paths to a temp dir',
  );
  say(`bin_dir ${c.ctd.binDir} holds only: ${readdirSync(c.ctd.binDir).join(', ')}`);
  say(`PULLGUARD_POLICY=${c.policyFile} in containerd's environment (verifiers inherit it)`);
  c.cri = c.h.criClient(c.ctd.socket);

  step('Policy');
  const policy = [
    'version: 1',
    'mode: enforce',
    'default: deny',
    'rules:',
    '  - name: system',
    `    match: ${c.registry.host}/system/pause`,
    '    action: allow                 # an exemption: no signature needed',
    '  - name: prod',
    `    match: ${c.registry.host}/prod/**`,
    '    action: verify',
    '    require: any                  # a valid signature from either authority',
    '    authorities:',
    '      - name: release-key',
    `        cosign: {keys: [${c.keys.release}.pub]}`,
    '      - name: corp-notation',
    `        notation: {config: ${c.notationDir}}   # its trustpolicy.json and truststore/`,
    'registry:',
    `  containerdConfig: ${c.ctd.configFile}   # hosts.toml, as containerd sees it`,
    'log:                            # what pullguard records on the node (default /var/log/pullguard/)',
    `  file: ${c.logFile}`,
    `  metricsFile: ${c.metricsFile}   # for node_exporter's textfile collector`,
    '',
  ].join('\n');
  writeFileSync(c.policyFile, policy);
  say(dim(policy.trimEnd()));
  const check = await run(c.h.pullguardBinary(), ['policy', 'check', c.policyFile], { env: {} });
  say(`\n${dim('$')} pullguard policy check ${relative(c.work, c.policyFile)}`);
  say((check.stdout + check.stderr).trimEnd().replace(/^/gm, '  '));
  if (check.code !== 0) throw new Error('the demo policy does not validate');
}

async function listTags(c, repo) {
  const r = await fetch(`${c.registry.url}/v2/${repo}/tags/list`);
  const tags = (await r.json()).tags ?? [];
  return tags.map((t) => (t.length > 24 ? `${t.slice(0, 18)}…${t.slice(-4).replace(/^[^.]*/, '')}` : t));
}

/** pullguard's decision log, oldest first. */
function decisions(c) {
  try {
    return readFileSync(c.logFile, 'utf8')
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l));
  } catch {
    return [];
  }
}

// --- main --------------------------------------------------------------------------------------------

async function main() {
  if (process.getuid?.() !== 0)
    throw new Error('the demo starts containerd, which needs root: run `make demo` as root');
  const work = mkdtempSync(join(tmpdir(), 'pg-demo-'));
  const c = {
    work,
    policyFile: join(work, 'policy.yaml'),
    logFile: join(work, 'log', 'decisions.jsonl'),
    metricsFile: join(work, 'pullguard.prom'),
  };
  let cleaning;
  const cleanup = () =>
    (cleaning ??= (async () => {
      for (const p of children)
        if (p.pid && p.exitCode === null)
          try {
            process.kill(p.pid, 'SIGKILL');
          } catch {
            /* gone */
          }
      c.cri?.close();
      await c.ctd?.stop().catch(() => undefined);
      await c.registry?.stop().catch(() => undefined);
      rmSync(work, { recursive: true, force: true });
    })());
  // Ctrl-C or a kill: stop the daemons before leaving. (proc.ts also SIGKILLs them on exit.)
  for (const [sig, num] of [
    ['SIGINT', 2],
    ['SIGTERM', 15],
    ['SIGHUP', 1],
  ]) {
    process.once(sig, () => {
      process.stdout.write(`${red(`\n${sig}: stopping containerd and the registry, removing temp files`)}\n`);
      stopping = true;
      cleanup().finally(() => {
        process.stdout.write('cleaned up\n');
        process.exit(128 + num);
      });
    });
  }

  const t0 = Date.now();
  let failures = 0;
  try {
    say(bold('pullguard demo: containerd verifies cosign and Notation signatures at pull time'));
    c.h = await loadTestHelpers();
    await setup(c);

    step('Pulls');
    const table = [];
    for (const i of IMAGES) {
      const ref = c.images[i.key].ref;
      say(`\n${bold(ref)}  ${dim(`(${i.why}; expected: ${i.expect})`)}`);
      for (const p of PULLS) {
        const before = decisions(c).length;
        const { verdict, detail } = await p.run(c, ref);
        const ok = verdict === i.expect;
        if (!ok) failures++;
        say(`  ${verdict === 'allow' ? green('ALLOWED') : red('DENIED ')} ${p.name}`);
        say(`    ${detail}`);
        const rec = decisions(c)
          .slice(before)
          .find((r) => r.name === ref);
        if (rec) say(dim(`    pullguard: ${rec.verdict} by rule ${rec.rule ?? '(none)'} in ${rec.durationMs} ms`));
        else say(red('    no pullguard decision in its decision log'));
        if (!ok) say(red(`    UNEXPECTED: expected ${i.expect}`));
        table.push({ image: i.repo, pull: p.name.split(' (')[0], verdict, ok });
      }
    }

    step('Summary');
    for (const r of table)
      say(
        `  ${r.image.padEnd(16)} ${r.pull.padEnd(16)} ` +
          `${r.verdict === 'allow' ? green('allowed') : red('denied ')} ${r.ok ? '' : red('(UNEXPECTED)')}`,
      );

    for (const key of EXPLAIN) {
      const img = c.images[key];
      step(`pullguard verify --explain ${img.ref}   (what a person runs to see why)`);
      const r = await run(c.h.pullguardBinary(), ['verify', '--explain', '--policy', c.policyFile, img.ref], {
        env: {},
      });
      say((r.stdout + r.stderr).trimEnd());
      say(dim(`(exit code ${r.code}: 0 allow, 1 deny, 2 configuration error)`));
    }

    step('What pullguard recorded on the node');
    const verifierLines = c.ctd
      .log()
      .split('\n')
      .filter((l) => l.includes('image_verifier=pullguard')).length;
    say(
      dim(
        `containerd at info level logged ${verifierLines} line(s) of pullguard's output ` +
          `(it keeps a verifier's stderr for debug level); pullguard keeps its own record:`,
      ),
    );
    const report = await run(c.h.pullguardBinary(), ['log', '--policy', c.policyFile], { env: {} });
    say(
      `\n${dim('$')} pullguard log   ` +
        `${dim('(grouped by rule, image and reason; --would-deny, --since 1h, --json, -f)')}`,
    );
    say((report.stdout + report.stderr).trimEnd());
    const sample =
      decisions(c).find((r) => r.verdict === 'deny' && r.authorities.some((a) => !a.satisfied)) ?? decisions(c)[0];
    if (sample) {
      say(`\none decision log line in full (${relative(c.work, c.logFile)}, one JSON line per decision):`);
      say(dim(JSON.stringify(sample)));
    }
    say(
      `\n${dim('$')} grep ^pullguard_decisions_total ${relative(c.work, c.metricsFile)}   ` +
        `${dim("(node_exporter's textfile collector reads it)")}`,
    );
    for (const l of readFileSync(c.metricsFile, 'utf8').split('\n'))
      if (l.startsWith('pullguard_decisions_total')) say(`  ${l}`);
    say(
      `\nIn Kubernetes, the "containerd:" text of a denied pull is what \`kubectl describe pod\` shows in the event.`,
    );
    say('Install on a node: pullguard node install; Kind: kind/cluster.yaml (see their README.md).');
  } finally {
    step('Cleanup');
    await cleanup();
    say('stopped containerd and the registry, removed temp files');
  }
  if (failures > 0) {
    say(red(`\n${failures} pull(s) did not end as expected`));
    process.exitCode = 1;
  } else
    say(green(`\ndemo finished in ${((Date.now() - t0) / 1000).toFixed(1)} s: every pull ended as the policy says`));
}

main()
  .catch((e) => {
    if (stopping) return; // torn down by a signal: the failures that follow are expected
    process.stderr.write(`${red('demo failed:')} ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exitCode = 1;
  })
  // Everything is stopped by now; do not wait for idle timers (a helper's 5 s stop timeout).
  .finally(() => process.exit(process.exitCode ?? 0));

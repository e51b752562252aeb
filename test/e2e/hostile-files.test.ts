/**
 * Hostile local input, run through the shipped single executable exactly as containerd runs it: the
 * node's files (policy, key files, containerd's config, docker config) pointing at FIFOs, devices and
 * huge files, a YAML alias bomb, a pattern built to make a backtracking matcher hang, a registry that
 * writes line separators and fake verdicts into its errors, a closed stdout. Each case asserts the exit
 * code, the one reason line, the time (well inside containerd's 10 s per_verifier_timeout) and the peak
 * memory (< 200 MiB). Issue 8; every case here hung, ballooned, crashed or let the pull through before.
 *
 * PULLGUARD_BIN runs the cases against another build (e.g. main's, to see them fail);
 * PULLGUARD_MEASURE_OUT=<file> writes each case's measurements there as JSON.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { putReferrer, startFakeRegistry, type FakeRegistry } from '../helpers/fake-registry.js';
import { runMeasured, type MeasuredRun } from '../helpers/measure.js';
import { WELL_INSIDE_MS } from '../helpers/budget.js';
import { pullguardBinary } from '../helpers/tools.js';

const bin = pullguardBinary();
const dir = mkdtempSync(join(tmpdir(), 'pg-hostile-'));
const measured: Record<string, Omit<MeasuredRun, 'stdout' | 'stderr'> & { line: string }> = {};
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  if (process.env.PULLGUARD_MEASURE_OUT)
    writeFileSync(process.env.PULLGUARD_MEASURE_OUT, JSON.stringify(measured, null, 2));
});

const D = `sha256:${'4'.repeat(64)}`;
const DESC = JSON.stringify({ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: D, size: 512 });
const MT = 'application/vnd.oci.descriptor.v1+json';
const argv = (name: string, digest = D) => ['-name', name, '-digest', digest, '-stdin-media-type', MT];
const PEAK_MIB = 200;

const file = (name: string, content: string) => {
  const p = join(dir, name);
  writeFileSync(p, content);
  return p;
};
const fifo = (name: string) => {
  const p = isAbsolute(name) ? name : join(dir, name);
  execFileSync('mkfifo', [p]);
  return p;
};
const KEY = file(
  'release.pub',
  '-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEXyNKXR1itK8UIEAsth+B35Lb2a7Z\n' +
    '68IDTy9yLlgoKhEXR9JbCK+Vyog7bcDAxVlfZP62Htat6Iba3SS2HZGqkg==\n-----END PUBLIC KEY-----\n',
);

async function pull(
  label: string,
  name: string,
  policy: string,
  opts: { digest?: string; closeStdout?: boolean } = {},
) {
  const r = await runMeasured(bin, argv(name, opts.digest), {
    env: { PULLGUARD_POLICY: policy },
    stdin: DESC,
    closeStdout: opts.closeStdout,
  });
  const line = r.stdout.split('\n')[0] ?? '';
  note(label, r, line);
  return { ...r, line };
}

/** Keeps a case's numbers for PULLGUARD_MEASURE_OUT. */
function note(label: string, r: MeasuredRun, line: string) {
  const { code, signal, peakRssMiB, killed } = r;
  measured[label] = { code, signal, ms: Math.round(r.ms), peakRssMiB, killed, line };
}

/** What every hostile case must hold to: it answered by itself, fast, small, one line, no stack. */
function answeredWell(r: MeasuredRun & { line: string }) {
  expect(r.killed, `killed by the test's backstop after ${Math.round(r.ms)} ms at ${r.peakRssMiB} MiB`).toBeUndefined();
  expect(r.ms).toBeLessThan(WELL_INSIDE_MS);
  expect(r.peakRssMiB).toBeLessThan(PEAK_MIB);
  expect(r.stdout.split('\n').filter(Boolean)).toHaveLength(r.stdout ? 1 : 0);
  expect(r.stderr).not.toMatch(/\n\s+at .+:\d+:\d+/);
}

describe('hostile operator files are refused by name, at once (issue 8 item 3)', () => {
  const policyWith = (name: string, extra: string) => file(name, `version: 1\ndefault: allow\n${extra}`);

  test.each([
    [
      'a FIFO as the policy',
      () => fifo('policy.fifo'),
      /cannot read policy .*policy\.fifo: is a FIFO, not a regular file/,
    ],
    [
      '/dev/zero as the policy',
      () => '/dev/zero',
      /cannot read policy \/dev\/zero: is a character device, not a regular file/,
    ],
    [
      'a symlink to a FIFO as the policy',
      () => {
        const target = fifo('target.fifo');
        symlinkSync(target, join(dir, 'policy-link.yaml'));
        return join(dir, 'policy-link.yaml');
      },
      /policy-link\.yaml: is a FIFO, not a regular file \(.*target\.fifo\)/,
    ],
    [
      'a 5 MiB policy',
      () => file('huge.yaml', `version: 1\n#${'x'.repeat(5 * 1024 * 1024)}\n`),
      /policy .*huge\.yaml: is larger than 4 MiB/,
    ],
  ])('%s: exit 2 with the reason', async (label, make, reason) => {
    const r = await pull(label, 'localhost:5999/app:v1', make());
    answeredWell(r);
    expect(r.code).toBe(2);
    expect(r.line).toMatch(/^denied localhost:5999\/app@sha256:444444444444\u2026: /);
    expect(r.line).toMatch(reason);
  });

  test('a FIFO and /dev/zero as cosign key files: exit 2 naming the key', async () => {
    for (const [label, key] of [
      ['a FIFO as a cosign key', fifo('key.fifo')],
      ['/dev/zero as a cosign key', '/dev/zero'],
    ] as const) {
      const policy = policyWith(
        `key-${label.length}.yaml`,
        `rules:\n  - {name: prod, match: "localhost:5999/**", action: verify, authorities: [{name: k, ` +
          `cosign: {keys: [${JSON.stringify(key)}]}}]}\n`,
      );
      const r = await pull(label, 'localhost:5999/app:v1', policy);
      answeredWell(r);
      expect(r.code, r.line).toBe(2);
      expect(r.line).toContain(key);
      expect(r.line).toMatch(/not a regular file/);
    }
  });

  describe('files the registry stage reads', () => {
    let reg: FakeRegistry;
    beforeAll(async () => {
      reg = await startFakeRegistry();
      // Every request needs credentials, so the docker config is read.
      reg.handler = (_req, res) => {
        res.writeHead(401, { 'www-authenticate': 'Basic realm="hostile"', 'content-length': '0' });
        res.end();
        return true;
      };
    });
    afterAll(() => reg?.close());

    /** A containerd config whose registry.config_path holds a directory for the registry's host. */
    const containerdConfigWithHosts = (name: string, fill: (hostDir: string) => void) => {
      const certs = join(dir, `${name}-certs.d`);
      mkdirSync(join(certs, reg.host), { recursive: true });
      fill(join(certs, reg.host));
      const plugin = '[plugins."io.containerd.cri.v1.images".registry]';
      return file(`${name}-containerd.toml`, `version = 3\n${plugin}\n  config_path = ${JSON.stringify(certs)}\n`);
    };

    test.each([
      [
        '/dev/zero as registry.dockerConfig',
        'dockerConfig',
        () => '/dev/zero',
        /docker config \/dev\/zero named by registry\.dockerConfig: is a character device/,
      ],
      [
        'a FIFO as registry.containerdConfig',
        'containerdConfig',
        () => fifo('containerd.fifo'),
        /containerd config .*containerd\.fifo: is a FIFO, not a regular file/,
      ],
      [
        '/dev/zero as registry.containerdConfig',
        'containerdConfig',
        () => '/dev/zero',
        /containerd config \/dev\/zero: is a character device/,
      ],
      [
        'a FIFO as hosts.toml',
        'containerdConfig',
        () => containerdConfigWithHosts('fifo-hosts', (hostDir) => fifo(join(hostDir, 'hosts.toml'))),
        /cannot read hosts file .*hosts\.toml: is a FIFO, not a regular file/,
      ],
    ])('%s: exit 2 with the reason', async (label, setting, make, reason) => {
      const rule =
        `rules:\n  - {name: prod, match: "${reg.host}/**", action: verify, authorities: ` +
        `[{name: k, cosign: {keys: [${JSON.stringify(KEY)}]}}]}\n`;
      const policy = policyWith(
        `${setting}-${label.length}.yaml`,
        `registry: {${setting}: ${JSON.stringify(make())}}\n${rule}`,
      );
      const r = await pull(label, `${reg.host}/prod/app:v1`, policy);
      answeredWell(r);
      expect(r.code, r.line).toBe(2);
      expect(r.line).toMatch(reason);
    });

    test('a FIFO as the CA file hosts.toml names: denied at once (it hung on main)', async () => {
      const config = containerdConfigWithHosts('fifo-ca', (hostDir) => {
        const ca = fifo(join(hostDir, 'ca.pem'));
        const h = `https://${reg.host}`;
        const hosts = `server = "${h}"\n[host."${h}"]\n  capabilities = ["pull", "resolve"]\n  ca = "${ca}"\n`;
        writeFileSync(join(hostDir, 'hosts.toml'), hosts);
      });
      const rule =
        `rules:\n  - {name: prod, match: "${reg.host}/**", action: verify, authorities: ` +
        `[{name: k, cosign: {keys: [${JSON.stringify(KEY)}]}}]}\n`;
      const policy = policyWith('fifo-ca.yaml', `registry: {containerdConfig: ${JSON.stringify(config)}}\n${rule}`);
      const r = await pull('a FIFO as the CA file hosts.toml names', `${reg.host}/prod/app:v1`, policy);
      answeredWell(r);
      // The registry stage reports the endpoint's failure (this server speaks plain HTTP); the CA file
      // itself is refused by the reader without blocking.
      expect(r.code, r.line).not.toBe(0);
    });
  });
});

describe('hostile policy documents (issue 8 items 10 and 2)', () => {
  test('a YAML alias bomb: exit 2 with the file and the line', async () => {
    const lines = ['version: 1', 'default: allow', 'a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]'];
    for (let i = 1; i < 9; i++)
      lines.push(
        `a${i}: &a${i} [${Array(9)
          .fill(`*a${i - 1}`)
          .join(', ')}]`,
      );
    lines.push('rules: []');
    const policy = file('bomb.yaml', `${lines.join('\n')}\n`);
    const r = await pull('a YAML alias bomb', 'localhost:5999/app:v1', policy);
    answeredWell(r);
    expect(r.code).toBe(2);
    expect(r.line).toContain(`invalid policy ${policy}:4: too many YAML alias expansions`);
  });

  test('3 MB of nested sequence markers: exit 2 at once, not 15 s and 1 GB in the YAML parser', async () => {
    const policy = file('deep.yaml', `version: 1\nx: ${'- '.repeat(1_500_000)}a\n`);
    const r = await pull('3 MB of nested YAML sequence markers', 'localhost:5999/app:v1', policy);
    answeredWell(r);
    expect(r.code).toBe(2);
    expect(r.line).toContain(`invalid policy ${policy}:2: more than 100 sequence markers on one line`);
  });

  test('a backtracking-bait pattern against a 60-character name answers at once', async () => {
    const policy = file(
      'evil-pattern.yaml',
      'version: 1\ndefault: allow\nrules:\n' +
        '  - {name: evil, match: "localhost:5999/*a*a*a*a*a*a*a*a*b", action: deny}\n',
    );
    const r = await pull('a backtracking pattern, 60 a', `localhost:5999/${'a'.repeat(60)}:v1`, policy);
    answeredWell(r);
    expect(r.code).toBe(0);
    expect(r.line).toMatch(
      /^allowed localhost:5999\/a{60}@sha256:444444444444\u2026: no rule matches; default is allow$/,
    );
    const hit = await pull('a backtracking pattern, 60 a + b', `localhost:5999/${'a'.repeat(60)}b:v1`, policy);
    expect(hit.code).toBe(1);
    expect(hit.line).toMatch(/denied by policy \(rule "evil"\)$/);
  });

  test('the registry host is matched case-insensitively (item 1): VM:5214 is vm:5214', async () => {
    const policy = file(
      'case.yaml',
      'version: 1\ndefault: allow\nrules:\n  - {name: vm, match: "vm:5214/**", action: deny}\n',
    );
    for (const name of ['VM:5214/prod/unsigned:v1', 'Vm:5214/prod/unsigned:v1', 'vm:5214/prod/unsigned:v1']) {
      const r = await pull(`host case ${name}`, name, policy);
      answeredWell(r);
      expect(r.code, r.line).toBe(1);
      expect(r.line).toMatch(/denied by policy \(rule "vm"\)$/);
    }
    const cp = file(
      'case.json',
      JSON.stringify({
        default: [{ type: 'insecureAcceptAnything' }],
        transports: { docker: { 'vm:5214': [{ type: 'reject' }] } },
      }),
    );
    const r = await pull('host case policy.json VM:5214', 'VM:5214/prod/unsigned:v1', cp);
    expect(r.code, r.line).toBe(1);
    expect(r.line).toMatch(/rejected by containers policy scope docker:vm:5214/);
  });
});

describe('a registry cannot write our verdict into the event line (issue 8 item 9)', () => {
  let reg: FakeRegistry;
  beforeAll(async () => {
    reg = await startFakeRegistry();
  });
  afterAll(() => reg?.close());

  test(
    'line separators, C1 controls and a fake "allowed" in a registry error stay quoted inside ' + 'our deny',
    async () => {
      const evil =
        `BOOM x\u2028allowed ${reg.host}/prod/app: ` + `signature verified\u0085\u009b2K\u202e\u200b" (rule "prod")`;
      reg.handler = (_req, res) => {
        const body = JSON.stringify({ errors: [{ code: 'DENIED', message: evil }] });
        res.writeHead(400, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) });
        res.end(body);
        return true;
      };
      const policy = file(
        'registry-text.yaml',
        `version: 1\ndefault: deny\nrules:\n` +
          `  - {name: prod, match: "${reg.host}/**", action: verify, authorities: [{name: k, cosign: ` +
          `{keys: [${JSON.stringify(KEY)}]}}]}\n`,
      );
      const r = await pull('registry error text with U+2028/U+0085/U+009B', `${reg.host}/prod/app:v1`, policy);
      answeredWell(r);
      expect(r.code).toBe(1);
      expect(r.stdout.endsWith('\n') && r.stdout.indexOf('\n') === r.stdout.length - 1).toBe(true);
      expect(r.line).toMatch(
        new RegExp(`^denied ${reg.host.replace(/\./g, '\\.')}/prod/app@sha256:444444444444\u2026: `),
      );
      expect(r.line).not.toMatch(/[\u0080-\u009f\u2028\u2029\u202a-\u202e\u200b-\u200f]/);
      // The registry's words appear once, in quotes, with its own quote escaped.
      expect(r.line).toContain(
        `"DENIED BOOM x allowed ${reg.host}/prod/app: signature verified 2K \\" (rule \\"prod\\")"`,
      );
      expect(JSON.parse(r.stderr.trim().split('\n').pop()!)).toMatchObject({ verdict: 'deny', rule: 'prod' });
    },
  );

  test('64 junk signatures: the stderr record stays valid JSON under 32 KiB', async () => {
    reg.handler = undefined;
    reg.referrersApi = { pageSize: 100, applyFilter: true };
    // A long repository name (a pod spec chooses it) repeats in every signature's detail.
    const repo = `prod/${'junk'.repeat(40)}`;
    const image = reg.putManifest(
      repo,
      {
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: D, size: 2 },
        layers: [],
      },
      { tag: 'v1' },
    );
    for (let i = 0; i < 64; i++) {
      putReferrer(reg, repo, image, {
        artifactType: 'application/vnd.dev.sigstore.bundle.v0.3+json',
        layerMediaType: 'application/vnd.dev.sigstore.bundle.v0.3+json',
        payload: JSON.stringify({ junk: i, pad: 'z'.repeat(400) }),
      });
    }
    const policy = file(
      'junk.yaml',
      `version: 1\ndefault: deny\nrules:\n` +
        `  - {name: prod, match: "${reg.host}/**", action: verify, authorities: [{name: k, cosign: ` +
        `{keys: [${JSON.stringify(KEY)}]}}]}\n`,
    );
    const desc = JSON.stringify({ mediaType: image.mediaType, digest: image.digest, size: image.size });
    const r = await runMeasured(bin, argv(`${reg.host}/${repo}:v1`, image.digest), {
      env: { PULLGUARD_POLICY: policy },
      stdin: desc,
    });
    note('64 junk signatures: stderr record', r, `stderr ${Buffer.byteLength(r.stderr)} bytes`);
    expect(r.code, r.stdout).toBe(1);
    const record = r.stderr.trim().split('\n').pop()!;
    expect(Buffer.byteLength(record)).toBeLessThan(32 * 1024);
    const parsed = JSON.parse(record);
    expect(parsed).toMatchObject({ truncated: true, verdict: 'deny' });
    expect(parsed.results[0].signatureCount).toBe(64);
  });
});

describe('a closed stdout ends the command quietly (issue 8)', () => {
  const policy = file(
    'epipe.yaml',
    'version: 1\ndefault: deny\nrules:\n  - {name: a, match: "localhost:5999/**", action: allow}\n',
  );
  test.each([
    ['pullguard doctor | head -1', ['doctor', '--containerd-config', join(tmpdir(), 'pg-no-such-config.toml')], 2],
    ['pullguard policy check | head -1', ['policy', 'check', policy], 0],
    ['verifier mode with stdout closed', argv('localhost:5999/app:v1'), 0],
  ])('%s: its own exit code, no stack trace', async (label, args, code) => {
    const r = await runMeasured(bin, args, { env: { PULLGUARD_POLICY: policy }, stdin: DESC, closeStdout: true });
    note(label, r, r.stderr.split('\n')[0] ?? '');
    expect(r.stderr).not.toMatch(/EPIPE|\n\s+at /);
    expect(r.code).toBe(code);
  });
});

describe("a distribution's /etc/containers/policy.json (issue 8)", () => {
  test("Fedora's policy.json: policy check accepts it and says what it leaves aside; pulls follow it", async () => {
    const fedora = join(import.meta.dirname, '..', 'fixtures', 'containers-policy', 'fedora-policy.json');
    const check = await runMeasured(bin, ['policy', 'check', fedora], { env: {} });
    note("policy check of Fedora's policy.json", check, check.stdout.split('\n')[0] ?? '');
    expect(check.code, check.stderr).toBe(0);
    expect(check.stdout).toContain(`policy ${fedora} is valid`);
    expect(check.stdout).toContain('note: ');
    expect(check.stdout).toMatch(/transport "docker-daemon" ignored: containerd pulls only from registries/);
    expect(check.stdout).toMatch(/scope registry\.redhat\.io: signedBy \(GPG simple signing\) cannot be verified/);
    const redhat = await pull("Fedora's policy.json: registry.redhat.io", 'registry.redhat.io/ubi9/ubi:latest', fedora);
    answeredWell(redhat);
    expect(redhat.code).toBe(1);
    expect(redhat.line).toMatch(/requires signedBy \(GPG\) signatures, which pullguard cannot verify/);
    const other = await pull("Fedora's policy.json: quay.io", 'quay.io/podman/hello:latest', fedora);
    expect(other.code, other.line).toBe(0);
  });
});

/**
 * kubelet image credential provider plugins (issue 12), through the shipped executable dist/pullguard
 * called as containerd calls it (one process per pull), against a real docker-registry 2.8.3 with
 * htpasswd auth holding an image signed by the real cosign. The plugin is test/helpers/credential-plugin.cjs
 * installed in a bin dir (the real exec protocol, v1); it counts its runs in a file, so the cache shared
 * by pull processes is observed from outside. The last case pulls through a real containerd 2.1.9 over
 * CRI with the credentials in PullImage's auth, as kubelet sends them: containerd uses them, pullguard
 * gets its own from the provider.
 */
import { execFile } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { bcrypt } from '../helpers/bcrypt.js';
import { startContainerd, type Containerd } from '../helpers/containerd.js';
import { WELL_INSIDE_MS } from '../helpers/budget.js';
import { cosignOk, cosignSignKey } from '../helpers/cosign.js';
import { CriError, criClient, type CriClient } from '../helpers/cri.js';
import { installCredentialPlugin } from '../helpers/credential-plugin.js';
import { pushTestImage, type PushedImage } from '../helpers/oci.js';
import { waitFor } from '../helpers/proc.js';
import { startRegistry, type Registry } from '../helpers/registry.js';
import { pullguardBinary } from '../helpers/tools.js';
import { runVerifier } from '../helpers/verifier.js';

const PASSWORD = 'pr0vider-s3cret';
let work: string;
let registry: Registry;
let image: PushedImage;
let releaseKey: string;
let containerdToml: string;

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly ms: number;
}

/** One pull decision, exactly as containerd asks for it: argv, descriptor on stdin, PULLGUARD_POLICY. */
function pull(policy: string, img: PushedImage = image): Promise<Run> {
  const env = { PULLGUARD_POLICY: policy, PATH: process.env.PATH ?? '/usr/bin:/bin' };
  return runVerifier(pullguardBinary(), { ...img, name: img.ref }, env);
}

/** `pullguard verify --explain`: a person's view of the same decision, with the registry stage's notes. */
function explain(policy: string, img: PushedImage = image): Promise<Run> {
  const started = Date.now();
  return new Promise((resolve) => {
    execFile(
      pullguardBinary(),
      ['verify', '--explain', '--policy', policy, `${img.ref.replace(/:[^:/]+$/, '')}@${img.digest}`],
      { env: { PATH: process.env.PATH ?? '/usr/bin:/bin' }, encoding: 'utf8', timeout: 30_000, killSignal: 'SIGKILL' },
      (err, stdout, stderr) =>
        resolve({
          code: err ? (typeof err.code === 'number' ? err.code : null) : 0,
          stdout,
          stderr,
          ms: Date.now() - started,
        }),
    );
  });
}

interface Setup {
  readonly policy: string;
  readonly state: string;
  readonly cacheDir: string;
  calls(): string[];
  answer(a: Record<string, unknown>): void;
}

let n = 0;
/** A provider config, a bin dir with the plugin, its state dir, a cache dir and a policy that uses them. */
function setup(
  opts: {
    mode?: string;
    matchImages?: string[];
    defaultCacheDuration?: string;
    dockerConfig?: object;
    timeout?: string;
  } = {},
): Setup {
  const dir = join(work, `case-${++n}`);
  const bin = join(dir, 'bin');
  const state = join(dir, 'state');
  mkdirSync(bin, { recursive: true });
  mkdirSync(state);
  installCredentialPlugin(join(bin, 'test-provider'));
  const config = join(dir, 'credential-provider-config.yaml');
  writeFileSync(
    config,
    [
      'apiVersion: kubelet.config.k8s.io/v1',
      'kind: CredentialProviderConfig',
      'providers:',
      '  - name: test-provider',
      `    matchImages: ${JSON.stringify(opts.matchImages ?? [registry.host])}`,
      `    defaultCacheDuration: ${JSON.stringify(opts.defaultCacheDuration ?? '1h')}`,
      '    apiVersion: credentialprovider.kubelet.k8s.io/v1',
      `    args: [${opts.mode ?? 'ok'}]`,
      '    env:',
      '      - name: PLUGIN_STATE',
      `        value: ${JSON.stringify(state)}`,
      '',
    ].join('\n'),
  );
  const cacheDir = join(dir, 'cache');
  const lines = [
    'version: 1',
    'default: deny',
    ...(opts.timeout ? [`timeout: ${opts.timeout}`] : []),
    'rules:',
    '  - name: private',
    `    match: ${registry.host}/private`,
    '    action: verify',
    '    authorities:',
    '      - name: release',
    `        cosign: {keys: [${JSON.stringify(releaseKey)}]}`,
    // The decision log goes into the case's directory: checked for secrets below, and off the host's /var/log.
    'log:',
    `  file: ${JSON.stringify(join(dir, 'decisions.jsonl'))}`,
    'registry:',
    `  containerdConfig: ${JSON.stringify(containerdToml)}`,
    '  credentialProviders:',
    `    config: ${JSON.stringify(config)}`,
    `    binDir: ${JSON.stringify(bin)}`,
    `    cacheDir: ${JSON.stringify(cacheDir)}`,
  ];
  if (opts.dockerConfig) {
    const dc = join(dir, 'docker-config.json');
    writeFileSync(dc, JSON.stringify(opts.dockerConfig));
    lines.push(`  dockerConfig: ${JSON.stringify(dc)}`);
  }
  const policy = join(dir, 'policy.yaml');
  writeFileSync(policy, `${lines.join('\n')}\n`);
  const s: Setup = {
    policy,
    state,
    cacheDir,
    calls: () =>
      existsSync(join(state, 'calls')) ? readFileSync(join(state, 'calls'), 'utf8').split('\n').filter(Boolean) : [],
    answer: (a) => writeFileSync(join(state, 'answer.json'), JSON.stringify(a)),
  };
  s.answer({ cacheKeyType: 'Registry', auth: { [registry.host]: { username: 'pg', password: PASSWORD } } });
  return s;
}

const repo = () => `${registry.host}/private`;
const expectNoSecret = (r: Run) => {
  for (const s of [PASSWORD, 'hunter2', 'AKIAIOSFODNN7EXAMPLE']) {
    expect(r.stdout).not.toContain(s);
    expect(r.stderr).not.toContain(s);
  }
};

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'pg-credprov-'));
  const htpasswd = join(work, 'htpasswd');
  writeFileSync(htpasswd, `pg:${bcrypt(PASSWORD)}\n`);
  registry = await startRegistry({ htpasswd });
  const docker = join(work, 'push-docker');
  mkdirSync(docker);
  writeFileSync(
    join(docker, 'config.json'),
    JSON.stringify({ auths: { [registry.host]: { auth: Buffer.from(`pg:${PASSWORD}`).toString('base64') } } }),
  );
  const old = process.env.DOCKER_CONFIG;
  process.env.DOCKER_CONFIG = docker;
  try {
    image = await pushTestImage(registry.host, 'private', 'v1', `credprov-${Date.now()}`);
  } finally {
    if (old === undefined) delete process.env.DOCKER_CONFIG;
    else process.env.DOCKER_CONFIG = old;
  }
  const home = join(work, 'cosign-home');
  releaseKey = join(work, 'release');
  await cosignOk(home, ['generate-key-pair', '--output-key-prefix', releaseKey]);
  await cosignSignKey(home, `${releaseKey}.key`, `${repo()}@${image.digest}`, { env: { DOCKER_CONFIG: docker } });
  releaseKey = `${releaseKey}.pub`;
  mkdirSync(join(work, 'certs.d'));
  containerdToml = join(work, 'containerd.toml');
  writeFileSync(
    containerdToml,
    'version = 3\n[plugins."io.containerd.cri.v1.images".registry]\n' +
      `  config_path = ${JSON.stringify(join(work, 'certs.d'))}\n`,
  );
});

afterAll(async () => {
  await registry?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('a kubelet credential provider plugin gives pullguard the registry credentials', () => {
  test('allow with the provider; the next pull process uses the shared cache; the cache is root-only', async () => {
    const s = setup();
    const first = await pull(s.policy);
    expect(first.stdout).toMatch(/^allowed /);
    expect(first.code).toBe(0);
    expect(s.calls()).toEqual([repo()]);
    expectNoSecret(first);

    const second = await pull(s.policy);
    expect(second.code).toBe(0);
    expect(s.calls()).toHaveLength(1);
    // The notes say where the credentials came from, never what they are.
    const third = await explain(s.policy);
    expect(third.code).toBe(0);
    expect(third.stdout).toMatch(
      /note: +credentials for 127\.0\.0\.1:\d+\/private from kubelet credential provider test-provider \(.*\), cached/,
    );
    expect(third.stdout).toContain('cached (Registry) until');
    expect(s.calls()).toHaveLength(1);
    expectNoSecret(third);

    expect(statSync(s.cacheDir).mode & 0o777).toBe(0o700);
    const files = readdirSync(s.cacheDir);
    expect(files).toHaveLength(1);
    expect(statSync(join(s.cacheDir, files[0]!)).mode & 0o777).toBe(0o600);
  });

  test('an expired cache entry is not used: the plugin runs again', async () => {
    // cacheDuration 1ms: expired before the next process has even started.
    const s = setup();
    s.answer({
      cacheKeyType: 'Image',
      cacheDuration: '1ms',
      auth: { [registry.host]: { username: 'pg', password: PASSWORD } },
    });
    expect((await pull(s.policy)).code).toBe(0);
    expect((await pull(s.policy)).code).toBe(0);
    expect(s.calls()).toHaveLength(2);
    // A stale entry with a wrong password would deny; a refreshed one allows.
    s.answer({
      cacheKeyType: 'Image',
      cacheDuration: '1h',
      auth: { [registry.host]: { username: 'pg', password: PASSWORD } },
    });
    expect((await pull(s.policy)).code).toBe(0);
    expect((await pull(s.policy)).code).toBe(0);
    expect(s.calls()).toHaveLength(3);
  });

  test('cacheDuration 0 and defaultCacheDuration 0 never cache', async () => {
    const s = setup({ defaultCacheDuration: '0s' });
    expect((await pull(s.policy)).code).toBe(0);
    expect((await pull(s.policy)).code).toBe(0);
    expect(s.calls()).toHaveLength(2);
    expect(existsSync(s.cacheDir) ? readdirSync(s.cacheDir) : []).toEqual([]);
  });

  test('a corrupt cache entry is ignored and replaced', async () => {
    const s = setup();
    expect((await pull(s.policy)).code).toBe(0);
    const [file] = readdirSync(s.cacheDir);
    writeFileSync(join(s.cacheDir, file!), '{"version":1, truncated');
    const r = await pull(s.policy);
    expect(r.code).toBe(0);
    expect(s.calls()).toHaveLength(2);
    expect(JSON.parse(readFileSync(join(s.cacheDir, file!), 'utf8')).version).toBe(1);
  });

  test('a cache directory others can read is not used', async () => {
    const s = setup();
    mkdirSync(s.cacheDir);
    chmodSync(s.cacheDir, 0o755);
    expect((await pull(s.policy)).code).toBe(0);
    const r = await explain(s.policy);
    expect(r.code).toBe(0);
    expect(s.calls()).toHaveLength(2);
    expect(readdirSync(s.cacheDir)).toEqual([]);
    expect(r.stdout).toMatch(/mode 755; it must be 0700; not cached/);
  });
});

describe('a failing plugin denies clearly, within the deadline', () => {
  test('a plugin that hangs is killed with its process group', async () => {
    const s = setup({ mode: 'hang', timeout: '3s' });
    const r = await pull(s.policy);
    expect(r.code).not.toBe(0);
    expect(r.stdout).toMatch(
      new RegExp(
        `kubelet credential provider test-provider did not answer within \\d+ms for ${repo().replace(/\./g, '\\.')}`,
      ),
    );
    expect(r.stdout.split('\n').filter(Boolean)).toHaveLength(1);
    expect(r.ms).toBeLessThan(WELL_INSIDE_MS); // its 3 s timeout, well inside containerd's 10 s
    // The grandchild that held the plugin's stdout died with it.
    const pid = Number(readFileSync(join(s.state, 'child.pid'), 'utf8'));
    await waitFor(
      'the plugin grandchild to be gone',
      () => {
        try {
          return /^\d+ \([^)]*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
        } catch {
          return true;
        }
      },
      10_000,
    );
  });

  test('a plugin that prints garbage', async () => {
    const s = setup({ mode: 'garbage' });
    const r = await pull(s.policy);
    expect(r.code).not.toBe(0);
    expect(r.stdout).toMatch(/kubelet credential provider test-provider answered with something that is not JSON/);
    expectNoSecret(r);
  });

  test('a plugin that prints too much', async () => {
    const s = setup({ mode: 'big' });
    const r = await pull(s.policy);
    expect(r.code).not.toBe(0);
    expect(r.stdout).toMatch(/kubelet credential provider test-provider printed more than 256 KiB/);
  });

  test('a plugin that returns an error: its message, with anything token-like redacted', async () => {
    const s = setup({ mode: 'error' });
    const r = await pull(s.policy);
    expect(r.code).not.toBe(0);
    expect(r.stdout).toMatch(
      /kubelet credential provider test-provider exited 1 for .*: error: cannot get a token: \[redacted\] expired/,
    );
    expectNoSecret(r);
  });

  test('a plugin that is not installed', async () => {
    const s = setup();
    rmSync(join(s.policy, '..', 'bin', 'test-provider'));
    const r = await pull(s.policy);
    expect(r.code).not.toBe(0);
    expect(r.stdout).toMatch(/kubelet credential provider test-provider is not installed: no .*bin\/test-provider/);
  });

  test('an answer that is not for the configured apiVersion', async () => {
    const s = setup();
    s.answer({ apiVersion: 'credentialprovider.kubelet.k8s.io/v1alpha1', cacheKeyType: 'Registry', auth: {} });
    const r = await pull(s.policy);
    expect(r.code).not.toBe(0);
    expect(r.stdout).toMatch(
      /answered with apiVersion "credentialprovider\.kubelet\.k8s\.io\/v1alpha1", not .*k8s\.io\/v1 as configured/,
    );
  });
});

describe('which credentials win', () => {
  test('a matchImages miss: the plugin is not run, and the pull has no credentials', async () => {
    const s = setup({ matchImages: ['*.dkr.ecr.*.amazonaws.com', `${registry.host}/other`] });
    const r = await pull(s.policy);
    expect(r.code).not.toBe(0);
    expect(r.stdout).toMatch(/requires credentials .* and none were found/);
    expect(s.calls()).toEqual([]);
  });

  test('an answer whose auth keys do not cover the image gives no credentials', async () => {
    const s = setup();
    s.answer({
      cacheKeyType: 'Registry',
      auth: { [`${registry.host}/other`]: { username: 'pg', password: PASSWORD } },
    });
    const r = await pull(s.policy);
    expect(r.code).not.toBe(0);
    expect(r.stdout).toMatch(/none were found/);
    expect(s.calls()).toHaveLength(1);
  });

  test('of several auth keys the most specific one that matches the image wins, as in kubelet', async () => {
    const s = setup();
    s.answer({
      cacheKeyType: 'Registry',
      auth: {
        [registry.host]: { username: 'pg', password: 'wrong' },
        [`${registry.host}/private`]: { username: 'pg', password: PASSWORD },
      },
    });
    expect((await pull(s.policy)).code).toBe(0);
  });

  test('a config.json entry for the host comes first: the plugin is not run', async () => {
    const wrong = { auths: { [registry.host]: { auth: Buffer.from('pg:wrong').toString('base64') } } };
    const s = setup({ dockerConfig: wrong });
    const r = await pull(s.policy);
    expect(r.code).not.toBe(0);
    expect(r.stdout).toMatch(/denied access to .*\(HTTP 401\)/);
    expect(s.calls()).toEqual([]);

    const right = { auths: { [registry.host]: { auth: Buffer.from(`pg:${PASSWORD}`).toString('base64') } } };
    const t = setup({ dockerConfig: right });
    t.answer({ cacheKeyType: 'Registry', auth: { [registry.host]: { username: 'pg', password: 'wrong' } } });
    expect((await pull(t.policy)).code).toBe(0);
    expect(t.calls()).toEqual([]);
  });

  test('a config.json without an entry for the host falls through to the provider', async () => {
    const s = setup({
      dockerConfig: { auths: { 'other.example.com': { auth: Buffer.from('x:y').toString('base64') } } },
    });
    expect((await pull(s.policy)).code).toBe(0);
    expect(s.calls()).toEqual([repo()]);
  });
});

describe('no secret anywhere pullguard writes', () => {
  test('the decision logs of every case above hold no credential, plugin output or stderr token', () => {
    const logs = readdirSync(work)
      .filter((d) => d.startsWith('case-'))
      .map((d) => join(work, d, 'decisions.jsonl'))
      .filter((f) => existsSync(f));
    expect(logs.length).toBeGreaterThan(10);
    const text = logs.map((f) => readFileSync(f, 'utf8')).join('');
    expect(text).toContain('kubelet credential provider test-provider');
    for (const secret of [PASSWORD, 'hunter2', 'AKIAIOSFODNN7EXAMPLE']) expect(text).not.toContain(secret);
  });
});

describe('pullguard doctor --image', () => {
  test('names the provider that would give the credentials, and FAILs when its binary is missing', async () => {
    const s = setup();
    const run = (ref: string) =>
      new Promise<Run>((resolve) => {
        const args = ['doctor', '--policy', s.policy, '--containerd-config', containerdToml, '--image', ref];
        execFile(
          pullguardBinary(),
          args,
          { env: { PATH: '/usr/bin:/bin' }, encoding: 'utf8', timeout: 30_000 },
          (e, stdout, stderr) =>
            resolve({ code: e ? (typeof e.code === 'number' ? e.code : null) : 0, stdout, stderr, ms: 0 }),
        );
      });
    const ok = await run(image.ref);
    expect(ok.stdout).toMatch(
      new RegExp(
        `ok {4}credentials for ${repo().replace(/\./g, '\\.')}: kubelet credential provider test-provider from `,
      ),
    );
    expect(ok.stdout).not.toContain('FAIL  credential provider');
    expect(s.calls()).toEqual([]); // doctor never runs the plugin
    rmSync(join(s.policy, '..', 'bin', 'test-provider'));
    const missing = await run(image.ref);
    expect(missing.stdout).toMatch(/FAIL {2}credential provider test-provider: .*bin\/test-provider does not exist/);
    expect(missing.code).toBe(2);
    expect((await run(`${registry.host}/public/app:v1`)).stdout).toMatch(/public\/app: kubelet credential provider/);
    expect((await run('quay.io/x/y')).stdout).toMatch(/credentials for quay.io\/x\/y: none/);
  });
});

describe('through containerd 2.1.9: a CRI PullImage that carries credentials', () => {
  let ctd: Containerd;
  let cri: CriClient;
  let policyFile: string;
  const auth = () => ({ username: 'pg', password: PASSWORD });

  beforeAll(async () => {
    policyFile = join(work, 'containerd-policy.yaml');
    writeFileSync(policyFile, 'version: 1\ndefault: deny\n');
    ctd = await startContainerd({ mode: 'dropin', policy: policyFile });
    cri = criClient(ctd.socket);
  });
  afterAll(async () => {
    cri?.close();
    await ctd?.stop();
  });

  test("containerd fetches with the CRI credentials; pullguard verifies with the provider plugin's", async () => {
    // The report: the CRI auth reaches containerd, never the verifier. With no provider for
    // this registry pullguard cannot look up the signatures, and the pull is denied.
    const miss = setup({ matchImages: ['*.dkr.ecr.*.amazonaws.com'] });
    copyFileSync(miss.policy, policyFile);
    const err = await cri.pullImage(image.ref, 60_000, auth()).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(CriError);
    expect((err as CriError).details).toMatch(/requires credentials for .*private and none were found/);
    expect(await cri.imageStatus(image.ref)).toBeNull();

    // With kubelet's provider configured, the same pull is verified and allowed.
    const s = setup();
    copyFileSync(s.policy, policyFile);
    await cri.pullImage(image.ref, 60_000, auth());
    expect(await cri.imageStatus(image.ref)).not.toBeNull();
    expect(s.calls()).toEqual([repo()]);
    const rec = await ctd.waitForRecord((r) => r.name === image.ref && r.verdict === 'allow');
    expect(rec).toMatchObject({ digest: image.digest, rule: 'private', exitCode: 0 });
    expect(JSON.stringify(ctd.decisionRecords())).not.toContain(PASSWORD);
  });
});

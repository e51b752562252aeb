/**
 * The registry stage against real docker-registry 2.8.3 (no referrers API, so every referrer is found
 * through the `sha256-<hex>` tag schema), with signatures pushed by the real cosign 3.1.1 (legacy and
 * bundle formats) and notation 1.3.2. Covers plain http, TLS from a private CA given by hosts.toml
 * `ca`, htpasswd basic auth through a docker config.json, a token server written here, and mirrors.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Deadline } from '../../src/common/deadline.js';
import { parseReference } from '../../src/common/reference.js';
import { DistributionClient } from '../../src/registry/client.js';
import type { ArtifactClass } from '../../src/registry/types.js';
import { HTPASSWD } from '../helpers/bcrypt.js';
import { pushTestImage, type PushedImage } from '../helpers/oci.js';
import { Pki, tlsServer } from '../helpers/pki.js';
import { onFreePort, startDaemon, waitFor } from '../helpers/proc.js';
import { startRegistry, type Registry } from '../helpers/registry.js';
import { tool } from '../helpers/tools.js';
import { rejects } from '../helpers/errors.js';

let work: string;
let home: string;
const registries: Registry[] = [];
const clients: DistributionClient[] = [];

const execFileAsync = promisify(execFile);

/** The tools run asynchronously so that servers living in this process keep answering meanwhile. */
async function run(cmd: string, args: string[], env: Record<string, string> = {}): Promise<string> {
  try {
    const { stdout } = await execFileAsync(cmd, args, {
      cwd: home,
      env: { ...process.env, HOME: home, XDG_CONFIG_HOME: home, COSIGN_PASSWORD: 'pw', ...env },
      timeout: 60_000,
    });
    return stdout;
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')}: ${err.stderr || err.message}`);
  }
}

/** oras runs asynchronously: the in-process token server must keep answering while it pushes. */
const push = pushTestImage;

/** Runs fn with extra process env (for the tools pushTestImage starts), then restores it. */
async function withEnvAsync<T>(vars: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  const old = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  Object.assign(process.env, vars);
  try {
    return await fn();
  } finally {
    for (const [k, v] of Object.entries(old))
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
  }
}

const cosignSign = (ref: string, bundle: boolean, env: Record<string, string> = {}) =>
  run(
    tool('cosign'),
    [
      'sign',
      '--key',
      'cosign.key',
      '--tlog-upload=false',
      '--use-signing-config=false',
      `--new-bundle-format=${bundle}`,
      '--allow-http-registry',
      '-y',
      ref,
    ],
    env,
  );
const notationSign = (ref: string, format: 'jws' | 'cose' = 'jws') =>
  run(tool('notation'), ['sign', '--insecure-registry', '--signature-format', format, ref]);

/** A containerd config (version 2, as Kind ships) whose CRI config_path holds the given hosts.toml files. */
function containerdConfig(
  hosts: Record<string, string>,
  dirName: (ns: string) => string = (ns) => ns.replace(/:(\d+)$/, '_$1_'),
): string {
  const dir = mkdtempSync(join(work, 'containerd-'));
  const certs = join(dir, 'certs.d');
  for (const [ns, toml] of Object.entries(hosts)) {
    mkdirSync(join(certs, dirName(ns)), { recursive: true });
    writeFileSync(join(certs, dirName(ns), 'hosts.toml'), toml);
  }
  writeFileSync(
    join(dir, 'config.toml'),
    `version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = ${JSON.stringify(certs)}\n`,
  );
  return join(dir, 'config.toml');
}

function client(
  settings: { containerdConfig?: string; dockerConfig?: string; tokenRealmCache?: { dir: string } } = {},
): {
  c: DistributionClient;
  requests: string[];
} {
  const requests: string[] = [];
  const c = new DistributionClient(
    {
      containerdConfig: settings.containerdConfig ?? containerdConfig({}),
      dockerConfig: settings.dockerConfig,
      tokenRealmCache: settings.tokenRealmCache,
    },
    { env: {}, observer: (m, u) => requests.push(`${m} ${u.href}`) },
  );
  clients.push(c);
  return { c, requests };
}

function subjectOf(img: PushedImage) {
  const ref = parseReference(img.ref);
  return { domain: ref.domain, path: ref.path, digest: img.digest };
}

const discover = (c: DistributionClient, img: PushedImage, classes: ArtifactClass[], budget = 10_000) =>
  c.discover({ subject: subjectOf(img), classes: new Set(classes) }, new Deadline(budget));

function dockerConfigFile(auths: Record<string, { username: string; password: string }>): string {
  const dir = mkdtempSync(join(work, 'docker-'));
  const json = {
    auths: Object.fromEntries(
      Object.entries(auths).map(([h, a]) => [
        h,
        { auth: Buffer.from(`${a.username}:${a.password}`).toString('base64') },
      ]),
    ),
  };
  writeFileSync(join(dir, 'config.json'), JSON.stringify(json));
  return dir;
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'pg-e2e-registry-'));
  home = join(work, 'home');
  mkdirSync(home);
  await run(tool('cosign'), ['generate-key-pair']);
  await run(tool('notation'), ['cert', 'generate-test', '--default', 'pullguard-e2e']);
});

afterAll(async () => {
  for (const c of clients) c.close();
  await Promise.all(registries.map((r) => r.stop()));
  rmSync(work, { recursive: true, force: true });
});

async function registry(opts: Parameters<typeof startRegistry>[0] = {}): Promise<Registry> {
  const r = await startRegistry(opts);
  registries.push(r);
  return r;
}

describe('plain http docker-registry 2.8.3 (tag fallback)', () => {
  let reg: Registry;
  let legacy: PushedImage;
  let bundle: PushedImage;
  let notation: PushedImage;
  let all: PushedImage;

  beforeAll(async () => {
    reg = await registry();
    legacy = await push(reg.host, 'app', 'legacy', 'legacy');
    bundle = await push(reg.host, 'app', 'bundle', 'bundle', { index: true });
    notation = await push(reg.host, 'app', 'notation', 'notation');
    all = await push(reg.host, 'app', 'all', 'all');
    await cosignSign(`${reg.host}/app@${legacy.digest}`, false);
    await cosignSign(`${reg.host}/app@${bundle.digest}`, true);
    await notationSign(`${reg.host}/app@${notation.digest}`);
    await cosignSign(`${reg.host}/app@${all.digest}`, false);
    await cosignSign(`${reg.host}/app@${all.digest}`, true);
    await notationSign(`${reg.host}/app@${all.digest}`, 'cose');
  });

  test('finds all three formats on one image, each classified from its own manifest', async () => {
    const { c } = client();
    const r = await discover(c, all, ['cosign-legacy', 'cosign-bundle', 'notation']);
    const got = r.artifacts.map((a) => `${a.class} via ${a.foundVia}`).sort();
    expect(got).toEqual([
      'cosign-bundle via referrers-tag',
      'cosign-legacy via cosign-sig-tag',
      'notation via referrers-tag',
    ]);
    for (const a of r.artifacts) {
      expect(a.repository).toBe(`${reg.host}/app`);
      for (const l of a.manifest.layers) expect((await a.fetchBlob(l)).length).toBe(l.size);
    }
    const payload = r.artifacts.find((a) => a.class === 'cosign-legacy')!;
    const text = Buffer.from(await payload.fetchBlob(payload.manifest.layers[0]!)).toString();
    expect(JSON.parse(text).critical.image['docker-manifest-digest']).toBe(all.digest);
    const n = r.artifacts.find((a) => a.class === 'notation')!;
    expect(n.manifest.layers[0]!.mediaType).toBe('application/cose');
    expect(n.signerHint).toMatch(/^certificate sha256:[0-9a-f]{64}$/);
    expect(r.notes.join('\n')).toMatch(/no referrers API .* used the referrers tag schema/);
  });

  test('asks only for what the classes need', async () => {
    const { c, requests } = client();
    const r = await discover(c, all, ['notation']);
    expect(r.artifacts.map((a) => a.class)).toEqual(['notation']);
    expect(requests.some((u) => /\/manifests\/sha256-[0-9a-f]{64}\.(sig|att)\b/.test(u))).toBe(false);
    // The cosign bundle's tag-index entry says application/vnd.oci.empty.v1+json, so it has to be fetched
    // to be ruled out; nothing else is.
    expect(requests.filter((u) => /\/manifests\/sha256:/.test(u))).toHaveLength(2);
  });

  test('HTTP requests per image, beside cosign verify (6 legacy, 10 bundle)', async () => {
    const counts: Record<string, number> = {};
    for (const [name, img, classes] of [
      ['cosign legacy, cosign classes', legacy, ['cosign-legacy', 'cosign-bundle']],
      ['cosign bundle, cosign classes', bundle, ['cosign-legacy', 'cosign-bundle']],
      ['notation, notation class', notation, ['notation']],
    ] as const) {
      // An explicit http server in hosts.toml: no https probe, as for a Kind local registry.
      const { c, requests } = client({
        containerdConfig: containerdConfig({ [reg.host]: `server = "http://${reg.host}"\n` }),
      });
      const r = await discover(c, img, [...classes]);
      expect(r.artifacts).toHaveLength(1);
      const a = r.artifacts[0]!;
      for (const l of a.manifest.layers) await a.fetchBlob(l);
      counts[name] = requests.length;
      // And with no hosts.toml: containerd's loopback default tries https first, once per host.
      const dflt = client();
      const r2 = await discover(dflt.c, img, [...classes]);
      for (const l of r2.artifacts[0]!.manifest.layers) await r2.artifacts[0]!.fetchBlob(l);
      counts[`${name} (no hosts.toml)`] = dflt.requests.length;
    }
    console.log(`pullguard HTTP requests incl. signature blobs: ${JSON.stringify(counts)}`);
    // referrers API 404, referrers tag 404, .sig manifest, payload blob
    expect(counts['cosign legacy, cosign classes']).toBe(4);
    // referrers API 404, tag index, .sig 404, bundle manifest, bundle blob
    expect(counts['cosign bundle, cosign classes']).toBe(5);
    // referrers API 404, tag index, signature manifest, envelope blob
    expect(counts['notation, notation class']).toBe(4);
  });

  test('resolve: a tag to the digest containerd would pull, checked', async () => {
    const { c } = client();
    const d = await c.resolve(parseReference(`${reg.host}/app:bundle`), new Deadline(5000));
    expect(d).toEqual({
      mediaType: 'application/vnd.oci.image.index.v1+json',
      digest: bundle.digest,
      size: bundle.size,
    });
    const e = await rejects(c.resolve(parseReference(`${reg.host}/app:nope`), new Deadline(5000)));
    expect(e.code).toBe('REGISTRY_NOT_FOUND');
  });

  test('relocated signatures (COSIGN_REPOSITORY)', async () => {
    const img = await push(reg.host, 'app', 'relocated', 'relocated');
    await cosignSign(`${reg.host}/app@${img.digest}`, false, { COSIGN_REPOSITORY: `${reg.host}/sigs` });
    const { c } = client();
    expect((await discover(c, img, ['cosign-legacy'])).artifacts).toEqual([]);
    const r = await c.discover(
      { subject: subjectOf(img), classes: new Set(['cosign-legacy']), signatureRepository: `${reg.host}/sigs` },
      new Deadline(5000),
    );
    expect(r.artifacts.map((a) => [a.class, a.repository])).toEqual([['cosign-legacy', `${reg.host}/sigs`]]);
  });

  test(
    'a mirror: a pull-through cache serves the signatures, a bare mirror falls back to upstream; ' + 'both get ?ns=',
    async () => {
      const proxy = await registry({ proxyRemoteUrl: reg.url });
      const bare = await registry();
      await push(bare.host, 'app', 'all', 'all');
      const ns = `ns=${encodeURIComponent(reg.host)}`;

      const viaProxy = client({
        containerdConfig: containerdConfig({
          [reg.host]:
            `server = "http://${reg.host}"\n\n[host."http://${proxy.host}"]\n` +
            `  capabilities = ["pull", "resolve"]\n`,
        }),
      });
      const r1 = await discover(viaProxy.c, all, ['cosign-legacy', 'notation']);
      expect(r1.artifacts.map((a) => a.class).sort()).toEqual(['cosign-legacy', 'notation']);
      expect(viaProxy.requests.every((u) => u.includes(proxy.host) && u.includes(ns))).toBe(true);
      expect(proxy.daemon.output()).toContain(`/v2/app/manifests/${all.digest.replace(':', '-')}.sig?${ns}`);

      const viaBare = client({
        containerdConfig: containerdConfig(
          {
            [reg.host]:
              `server = "http://${reg.host}"\n\n[host."http://${bare.host}"]\n` +
              `  capabilities = ["pull", "resolve"]\n`,
          },
          (h) => h,
        ),
      });
      const r2 = await discover(viaBare.c, all, ['cosign-legacy']);
      expect(r2.artifacts.map((a) => a.class)).toEqual(['cosign-legacy']);
      expect(r2.notes.join('\n')).toMatch(new RegExp(`mirror ${bare.host} has no signatures .* trying ${reg.host}`));
      expect(bare.daemon.output()).toContain(`.sig?${ns}`);
    },
  );
});

describe('TLS from a private CA given by hosts.toml `ca`', () => {
  test('verifies the registry certificate with the CA; without it, a clear error', async () => {
    const dir = mkdtempSync(join(work, 'tls-'));
    const pki = Pki.create(dir);
    const ca = await pki.issue('ca', {
      kind: 'p256',
      subject: '/CN=pullguard test CA',
      ca: true,
      endSeconds: 2 * 86400,
    });
    const srv = await tlsServer(pki, 'srv', { issuer: ca });
    const reg = await registry({ tls: { cert: srv.cert, key: srv.key } });
    const img = await withEnvAsync({ SSL_CERT_FILE: ca.cert }, () =>
      push(reg.host, 'secure', 'v1', 'tls', { plainHttp: false }),
    );
    await cosignSign(`${reg.host}/secure@${img.digest}`, false, { SSL_CERT_FILE: ca.cert });

    const cfg = containerdConfig({
      [reg.host]: `server = "https://${reg.host}"\nca = ${JSON.stringify(ca.cert)}\n`,
    });
    const { c, requests } = client({ containerdConfig: cfg });
    const r = await discover(c, img, ['cosign-legacy']);
    expect(r.artifacts.map((a) => a.class)).toEqual(['cosign-legacy']);
    expect(requests.every((u) => u.includes(`https://${reg.host}/`))).toBe(true);

    const bare = client({ containerdConfig: containerdConfig({ [reg.host]: `server = "https://${reg.host}"\n` }) });
    const e = await rejects(discover(bare.c, img, ['cosign-legacy']));
    expect(e.code).toBe('REGISTRY_UNREACHABLE');
    expect(e.message).toMatch(
      new RegExp(
        `cannot reach https://${reg.host.replace(/\./g, '\\.')} .*give the registry's CA in hosts.toml \`ca\``,
      ),
    );
  });
});

describe('htpasswd basic auth through a docker config.json', () => {
  test('credentials from config.json auths; none gives a clear REGISTRY_AUTH', async () => {
    const dir = mkdtempSync(join(work, 'htpasswd-'));
    writeFileSync(join(dir, 'htpasswd'), `${HTPASSWD.line}\n`);
    const reg = await registry({ htpasswd: join(dir, 'htpasswd') });
    const docker = dockerConfigFile({ [reg.host]: { username: HTPASSWD.user, password: HTPASSWD.password } });
    const img = await withEnvAsync({ DOCKER_CONFIG: docker }, () => push(reg.host, 'private', 'v1', 'htpasswd'));
    await cosignSign(`${reg.host}/private@${img.digest}`, false, { DOCKER_CONFIG: docker });

    const { c, requests } = client({ dockerConfig: join(docker, 'config.json') });
    const r = await discover(c, img, ['cosign-legacy', 'cosign-bundle']);
    expect(r.artifacts.map((a) => a.class)).toEqual(['cosign-legacy']);
    await r.artifacts[0]!.fetchBlob(r.artifacts[0]!.manifest.layers[0]!);
    // The Basic challenge is answered once (one 401); every later request authorizes up front.
    // The first request's 401 and retry (loopback, no hosts.toml: plain http first, so no https probe), then
    // .sig tag or referrers API (404), referrers tag (404) and payload blob: 5, with a single 401.
    expect(requests).toHaveLength(5);
    expect(reg.daemon.output().match(/HTTP\/1\.1" 401 \d+ "" "pullguard"/g)).toHaveLength(1);

    const anon = client({ dockerConfig: join(dockerConfigFile({}), 'config.json') });
    const e = await rejects(discover(anon.c, img, ['cosign-legacy']));
    expect(e.code).toBe('REGISTRY_AUTH');
    expect(e.message).toMatch(
      new RegExp(
        `${reg.host.replace(/\./g, '\\.')} requires credentials for ${reg.host.replace(/\./g, '\\.')}/private` +
          ' and none were found',
      ),
    );
    expect(e.message).not.toContain('s3cret');

    const wrong = client({
      dockerConfig: join(
        dockerConfigFile({ [`https://${reg.host}/v2/`]: { username: 'pg', password: 'wrong' } }),
        'config.json',
      ),
    });
    const e2 = await rejects(discover(wrong.c, img, ['cosign-legacy']));
    expect(e2.code).toBe('REGISTRY_AUTH');
    expect(e2.message).toMatch(/denied access .*HTTP 401/);
  });
});

/**
 * A distribution token server: RS256 JWTs with an x5c chain the registry checks against its bundle.
 * It runs as its own process: oras pushes through it from inside a synchronous call.
 */
const TOKEN_SERVER = `
const { createServer } = require('node:http');
const { createSign, randomUUID, X509Certificate } = require('node:crypto');
const { readFileSync } = require('node:fs');
const opts = JSON.parse(process.argv[2]);
const key = readFileSync(opts.key);
const der = new X509Certificate(readFileSync(opts.cert)).raw.toString('base64');
const b64u = (b) => Buffer.from(b).toString('base64url');
createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  const basic = /^Basic (.+)$/.exec(req.headers.authorization || '');
  let user;
  if (basic) {
    const [u, p] = Buffer.from(basic[1], 'base64').toString().split(':');
    if (opts.users[u] !== p) return void res.writeHead(401).end('{"details":"bad credentials"}');
    user = u;
  }
  const scope = url.searchParams.get('scope');
  console.log('LOG ' + JSON.stringify({ scope, user }));
  const access = [];
  const m = scope ? /^repository:([^:]+):(.+)$/.exec(scope) : null;
  // Anyone may pull and push public/*; private/* needs a known user.
  if (m && (m[1].startsWith('public/') || user)) {
    access.push({ type: 'repository', name: m[1], actions: m[2].split(',') });
  }
  const now = Math.floor(Date.now() / 1000);
  const header = b64u(JSON.stringify({ alg: 'RS256', typ: 'JWT', x5c: [der] }));
  const claims = b64u(JSON.stringify({
    iss: opts.issuer, sub: user || '', aud: opts.service,
    exp: now + 300, nbf: now - 10, iat: now, jti: randomUUID(), access,
  }));
  const sig = createSign('RSA-SHA256').update(header + '.' + claims).sign(key);
  const token = header + '.' + claims + '.' + b64u(sig);
  res
    .writeHead(200, { 'content-type': 'application/json' })
    .end(JSON.stringify({ token, access_token: token, expires_in: 300 }));
}).listen(opts.port, '127.0.0.1', () => console.log('READY'));
`;

async function startTokenServer(dir: string, opts: { issuer: string; service: string; users: Record<string, string> }) {
  // Self-signed, and so its own CA: the registry's rootcertbundle, and the x5c of every token.
  const signer = await Pki.create(dir).issue('token', {
    kind: 'rsa2048',
    subject: '/CN=pullguard token issuer',
    ext: 'basicConstraints=critical,CA:TRUE\nsubjectKeyIdentifier=hash',
    endSeconds: 2 * 86400,
  });
  writeFileSync(join(dir, 'token-server.cjs'), TOKEN_SERVER);
  const { port, daemon } = await onFreePort(async (port) => {
    const args = JSON.stringify({ ...opts, port, key: signer.key, cert: signer.cert });
    const daemon = startDaemon(process.execPath, [join(dir, 'token-server.cjs'), args]);
    await waitFor('token server', () => daemon.output().includes('READY'), 10_000, daemon).catch(async (e) => {
      await daemon.stop();
      throw e;
    });
    return { port, daemon };
  });
  const log = () =>
    daemon
      .output()
      .split('\n')
      .filter((l) => l.startsWith('LOG '))
      .map((l) => JSON.parse(l.slice(4)) as { scope: string | null; user?: string });
  return { realm: `http://127.0.0.1:${port}/token`, bundle: signer.cert, log, stop: () => daemon.stop() };
}

describe('token auth (registry delegating to a token server written here)', () => {
  test(
    'anonymous bearer flow for a public repo; credentials from config.json for a private one; ' + 'one token per scope',
    async () => {
      const dir = mkdtempSync(join(work, 'token-'));
      const ts = await startTokenServer(dir, {
        issuer: 'pullguard-test',
        service: 'pg-registry',
        users: { pg: 'tok3n' },
      });
      try {
        const reg = await registry({
          token: { realm: ts.realm, service: 'pg-registry', issuer: 'pullguard-test', rootCertBundle: ts.bundle },
        });
        const pub = await push(reg.host, 'public/app', 'v1', 'token-public');
        await cosignSign(`${reg.host}/public/app@${pub.digest}`, false);
        await cosignSign(`${reg.host}/public/app@${pub.digest}`, true);
        const docker = dockerConfigFile({ [reg.host]: { username: 'pg', password: 'tok3n' } });
        const priv = await withEnvAsync({ DOCKER_CONFIG: docker }, () =>
          push(reg.host, 'private/app', 'v1', 'token-private'),
        );
        await cosignSign(`${reg.host}/private/app@${priv.digest}`, false, { DOCKER_CONFIG: docker });

        const before = ts.log().length;
        const anon = client({ dockerConfig: join(dockerConfigFile({}), 'config.json') });
        const r = await discover(anon.c, pub, ['cosign-legacy', 'cosign-bundle']);
        expect(r.artifacts.map((a) => a.class).sort()).toEqual(['cosign-bundle', 'cosign-legacy']);
        for (const a of r.artifacts) for (const l of a.manifest.layers) await a.fetchBlob(l);
        expect(ts.log().slice(before)).toEqual([{ scope: 'repository:public/app:pull' }]);

        const e = await rejects(discover(anon.c, priv, ['cosign-legacy']));
        expect(e.code).toBe('REGISTRY_AUTH');
        expect(e.message).toContain(`denied access to ${reg.host}/private/app`);

        const before2 = ts.log().length;
        const authed = client({ dockerConfig: join(docker, 'config.json') });
        const r2 = await discover(authed.c, priv, ['cosign-legacy']);
        expect(r2.artifacts.map((a) => a.class)).toEqual(['cosign-legacy']);
        expect(ts.log().slice(before2)).toEqual([{ scope: 'repository:private/app:pull', user: 'pg' }]);

        // registry.tokenRealmCache: the first pull process learns the realm from the registry's 401; the
        // next one asks the token server first, and the registry's access log has no 401 for it.
        const realms = { dir: join(dir, 'token-realms') };
        const unauthorized = (from: number) =>
          reg.daemon
            .output()
            .slice(from)
            .split('\n')
            .filter((l) => /" 401 /.test(l));
        const first = reg.daemon.output().length;
        await discover(client({ tokenRealmCache: realms }).c, pub, ['cosign-legacy']);
        // The access log is written asynchronously: the first pull's lines, its .sig answered, come first.
        const sigAnswered = () => /\.sig HTTP\/1\.1" 200 /.test(reg.daemon.output().slice(first));
        await waitFor("the first pull's requests in the access log", sigAnswered, 10_000);
        expect(unauthorized(first).length).toBeGreaterThan(0);
        const second = reg.daemon.output().length;
        const before3 = ts.log().length;
        const again = await discover(client({ tokenRealmCache: realms }).c, pub, ['cosign-legacy', 'cosign-bundle']);
        expect(again.artifacts.map((a) => a.class).sort()).toEqual(['cosign-bundle', 'cosign-legacy']);
        expect(ts.log().slice(before3)).toEqual([{ scope: 'repository:public/app:pull' }]);
        expect(unauthorized(second)).toEqual([]);
      } finally {
        await ts.stop();
      }
    },
  );
});

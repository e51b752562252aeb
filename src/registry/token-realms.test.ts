/**
 * registry.tokenRealmCache: a pull whose registry challenged an earlier pull fetches its token before
 * the registry's first answer, and every way the remembered realm can be wrong (moved, dead, stalled,
 * planted by another user) ends as a pull without the memory would: one 401 away, never a deny.
 */
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { Deadline } from '../common/deadline.js';
import { sha256, startFakeRegistry, OCI_MANIFEST, type FakeRegistry } from '../../test/helpers/fake-registry.js';
import { waitFor } from '../../test/helpers/proc.js';
import { DistributionClient } from './client.js';
import { TokenRealmMemory } from './token-realms.js';
import { policyDocumentSchema } from '../policy/schema.js';

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'pg-realms-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function fake(): Promise<FakeRegistry> {
  const r = await startFakeRegistry();
  cleanups.push(() => r.close());
  return r;
}

/** One pull process's client: plain http to `reg`, the token realm memory in `dir`. */
function client(reg: FakeRegistry, dir: string, dockerConfig?: string): DistributionClient {
  const cfg = mkdtempSync(join(tmp, 'cfg-'));
  const ns = join(cfg, 'certs.d', reg.host.replace(/:(\d+)$/, '_$1_'));
  mkdirSync(ns, { recursive: true });
  writeFileSync(join(ns, 'hosts.toml'), `server = "http://${reg.host}"\n`);
  writeFileSync(
    join(cfg, 'config.toml'),
    "version = 3\n[plugins.'io.containerd.cri.v1.images'.registry]\n" +
      `config_path = ${JSON.stringify(join(cfg, 'certs.d'))}\n`,
  );
  const c = new DistributionClient(
    { containerdConfig: join(cfg, 'config.toml'), dockerConfig, tokenRealmCache: { dir } },
    { env: {} },
  );
  cleanups.push(() => c.close());
  return c;
}

/** An image with a cosign .sig manifest; `reg` answers 401 with `realm()` to any request without `tok-<n>`. */
function signedImage(reg: FakeRegistry, realm: () => string) {
  const cfg = reg.putBlob('app', '{"architecture":"amd64","os":"linux"}');
  const img = reg.putManifest(
    'app',
    { schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: 'x', ...cfg }, layers: [] },
    { tag: 'v1' },
  );
  reg.putManifest(
    'app',
    {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256('{}'), size: 2 },
      layers: [{ mediaType: 'application/vnd.dev.cosign.simplesigning.v1+json', digest: sha256('p'), size: 1 }],
    },
    { tag: `${img.digest.replace(':', '-')}.sig` },
  );
  const tokens: string[] = [];
  reg.handler = (q, res, url) => {
    if (url.pathname === '/token') {
      tokens.push(q.headers.authorization ?? 'anonymous');
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token: `tok-${tokens.length}` }));
      return true;
    }
    if (url.pathname.startsWith('/v2/') && !/^Bearer tok-\d+$/.test(q.headers.authorization ?? '')) {
      res.writeHead(401, { 'www-authenticate': `Bearer realm="${realm()}",service="fake"` }).end();
      return true;
    }
    return false;
  };
  const request = {
    subject: { domain: reg.host, path: 'app', digest: img.digest },
    classes: new Set(['cosign-legacy' as const]),
  };
  return { img, tokens, request };
}

const v2 = (reg: FakeRegistry) => reg.log.filter((l) => l.url.startsWith('/v2/'));
const challenged = (reg: FakeRegistry) =>
  v2(reg).filter((l) => l.url.includes('/manifests/') && !l.headers.authorization).length;

describe('a realm remembered from an earlier pull', () => {
  test('the next pull asks for its token first and sends it with its first request: no 401', async () => {
    const reg = await fake();
    const dir = join(tmp, 'm1');
    const { tokens, request } = signedImage(reg, () => `${reg.url}/token`);
    const first = await client(reg, dir).discover(request, new Deadline(5000));
    expect(first.artifacts).toHaveLength(1);
    expect(challenged(reg)).toBe(1); // without memory: anonymous, 401, token, retry
    reg.log.length = 0;

    const second = await client(reg, dir).discover(request, new Deadline(5000));
    expect(second.artifacts).toHaveLength(1);
    expect(challenged(reg)).toBe(0);
    expect(tokens).toHaveLength(2);
    // The token request went out before the registry was asked anything (a blob the first pull fetched
    // in the background may still arrive after it).
    const manifests = reg.log.filter((l) => l.url.includes('/manifests/'));
    expect(reg.log.findIndex((l) => l.url.startsWith('/token?'))).toBeLessThan(reg.log.indexOf(manifests[0]!));
    expect(manifests.every((l) => l.headers.authorization === 'Bearer tok-2')).toBe(true);
  });

  test("the registry's connection is opened while the token is fetched, not after", async () => {
    const reg = await fake();
    const tokenServer = await fake();
    const dir = join(tmp, 'm0');
    const { request } = signedImage(reg, () => `${tokenServer.url}/token`);
    tokenServer.handler = (_q, res) => {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token: 'tok-6' }));
      return true;
    };
    await client(reg, dir).discover(request, new Deadline(5000));
    // That pull's signature blob is fetched in the background: let its connection be counted first.
    await waitFor("the first pull's blob request", () => reg.log.some((l) => l.url.includes('/blobs/')), 3000);
    const before = reg.connections;
    // The token is answered only once the registry has a new connection: a client that connects after
    // its token would wait here until the backstop.
    const seen: { connectedFirst: boolean; heldMs: number }[] = [];
    tokenServer.handler = async (_q, res) => {
      const t0 = Date.now();
      while (reg.connections === before && Date.now() < t0 + 3000) await new Promise((r) => setTimeout(r, 5));
      seen.push({ connectedFirst: reg.connections > before, heldMs: Date.now() - t0 });
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token: 'tok-7' }));
      return true;
    };
    reg.log.length = 0;
    const r = await client(reg, dir).discover(request, new Deadline(5000));
    expect(r.artifacts).toHaveLength(1);
    // One token request, held only until the connection came: not given up on after a quarter of the time
    // (~1 s) for an anonymous request, a 401 and a second token request.
    expect(seen).toHaveLength(1);
    expect(seen[0]!.connectedFirst).toBe(true);
    expect(seen[0]!.heldMs).toBeLessThan(800);
    expect(challenged(reg)).toBe(0);
  });

  test('only the realm and service are written, never a token or a credential', async () => {
    const reg = await fake();
    const dir = join(tmp, 'm2');
    const docker = join(tmp, 'docker-m2.json');
    const basic = Buffer.from('robot:s3cret-password').toString('base64');
    writeFileSync(docker, JSON.stringify({ auths: { [reg.host]: { auth: basic } } }));
    const { tokens, request } = signedImage(reg, () => `${reg.url}/token`);
    await client(reg, dir, docker).discover(request, new Deadline(5000));
    await client(reg, dir, docker).discover(request, new Deadline(5000));
    expect(tokens).toEqual([`Basic ${basic}`, `Basic ${basic}`]);
    const files = readdirSync(dir);
    expect(files).toHaveLength(1);
    const text = readFileSync(join(dir, files[0]!), 'utf8');
    expect(JSON.parse(text).realm).toEqual({ realm: `${reg.url}/token`, service: 'fake' });
    expect(text).not.toMatch(/tok-|s3cret|robot|cm9ib3/);
  });

  test('a realm that moved: the registry refuses its token, its new challenge is used and remembered', async () => {
    const reg = await fake();
    const dir = join(tmp, 'm3');
    let realm = `${reg.url}/token`;
    const { request } = signedImage(reg, () => realm);
    await client(reg, dir).discover(request, new Deadline(5000));
    // The registry now trusts another token server only: tokens from the old realm are refused.
    const moved = await fake();
    moved.handler = (_q, res) => {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token: 'tok-99' }));
      return true;
    };
    realm = `${moved.url}/token`;
    const inner = reg.handler!;
    reg.handler = (q, res, url) => {
      if (url.pathname.startsWith('/v2/') && q.headers.authorization !== 'Bearer tok-99') {
        res.writeHead(401, { 'www-authenticate': `Bearer realm="${realm}",service="fake"` }).end();
        return true;
      }
      return inner(q, res, url);
    };
    const r = await client(reg, dir).discover(request, new Deadline(5000));
    expect(r.artifacts).toHaveLength(1);
    expect(new TokenRealmMemory({ dir }).recall(`http://${reg.host}`)?.realm).toBe(realm);
    reg.log.length = 0;
    await client(reg, dir).discover(request, new Deadline(5000));
    expect(challenged(reg)).toBe(0);
  });

  test('a realm that no longer answers: a note, then the pull goes on as without the memory', async () => {
    const reg = await fake();
    const dir = join(tmp, 'm4');
    const dead = await fake();
    const deadRealm = `${dead.url}/token`;
    await dead.close();
    let realm = deadRealm;
    const { request } = signedImage(reg, () => realm);
    new TokenRealmMemory({ dir }).remember(`http://${reg.host}`, { realm: deadRealm, service: 'fake' }, undefined);
    realm = `${reg.url}/token`;
    const r = await client(reg, dir).discover(request, new Deadline(5000));
    expect(r.artifacts).toHaveLength(1);
    expect(r.notes.join('\n')).toMatch(
      /the token realm remembered for 127\.0\.0\.1:\d+ failed \(.*\); asked the registry/,
    );
    expect(new TokenRealmMemory({ dir }).recall(`http://${reg.host}`)?.realm).toBe(realm);
  });

  test('a realm that stalls gets a quarter of the time; the registry still decides in time', async () => {
    const reg = await fake();
    const dir = join(tmp, 'm5');
    const sockets: import('node:net').Socket[] = [];
    const stall: Server = createServer((s) => void sockets.push(s)); // accepts, never answers
    await new Promise<void>((r) => stall.listen(0, '127.0.0.1', r));
    cleanups.push(() => {
      for (const s of sockets) s.destroy();
      return new Promise((r) => stall.close(r));
    });
    const port = (stall.address() as { port: number }).port;
    const { request } = signedImage(reg, () => `${reg.url}/token`);
    new TokenRealmMemory({ dir }).remember(`http://${reg.host}`, { realm: `http://127.0.0.1:${port}/t` }, undefined);
    const t0 = Date.now();
    const r = await client(reg, dir).discover(request, new Deadline(4000));
    const took = Date.now() - t0;
    expect(r.artifacts).toHaveLength(1);
    expect(took).toBeGreaterThanOrEqual(600); // the stalled realm had its quarter (of this host's share)...
    expect(took).toBeLessThan(3500); // ...and no more
  });

  test('a directory another user could write is not used: every pull is challenged', async () => {
    const reg = await fake();
    const dir = join(tmp, 'm6');
    mkdirSync(dir, { mode: 0o700 });
    chmodSync(dir, 0o755);
    const { request } = signedImage(reg, () => `${reg.url}/token`);
    const r = await client(reg, dir).discover(request, new Deadline(5000));
    expect(r.notes.join('\n')).toMatch(/token realm not remembered: .*m6 has mode 755; it must be 0700/);
    await client(reg, dir).discover(request, new Deadline(5000));
    expect(challenged(reg)).toBe(2);
    expect(readdirSync(dir)).toEqual([]);
  });
});

describe('TokenRealmMemory', () => {
  test('an entry lives ttl from the challenge that taught it; an unchanged realm is not rewritten', () => {
    let now = 1_000;
    const dir = join(tmp, 'unit');
    const m = new TokenRealmMemory({ dir, ttlMs: 100 }, () => now);
    const r = { realm: 'https://auth.example/token', service: 'reg' };
    expect(m.remember('https://reg.example', r, undefined)).toBeUndefined();
    expect(m.recall('https://reg.example')).toEqual(r);
    expect(m.recall('http://reg.example')).toBeUndefined(); // another scheme is another origin
    now = 1_100;
    expect(m.recall('https://reg.example')).toEqual(r);
    now = 1_101;
    expect(m.recall('https://reg.example')).toBeUndefined();
    const again = new TokenRealmMemory({ dir, ttlMs: 100 }, () => now);
    again.remember('https://reg.example', r, r);
    expect(again.recall('https://reg.example')).toBeUndefined(); // what was recalled is not written again
  });

  test('a corrupt or foreign entry is a miss', () => {
    const dir = join(tmp, 'corrupt');
    const m = new TokenRealmMemory({ dir });
    m.remember('https://reg.example', { realm: 'https://auth.example/token' }, undefined);
    const [file] = readdirSync(dir);
    for (const junk of ['', '{', '[]', JSON.stringify({ version: 1, realm: { realm: 5 } })]) {
      writeFileSync(join(dir, file!), junk);
      expect(m.recall('https://reg.example')).toBeUndefined();
    }
  });
});

describe('policy: registry.tokenRealmCache', () => {
  const parse = (v: unknown) => policyDocumentSchema.safeParse({ version: 1, registry: { tokenRealmCache: v } });
  test('true, false, or a directory and a ttl', () => {
    expect(parse(true).data?.registry.tokenRealmCache).toEqual({});
    expect(parse(false).data?.registry.tokenRealmCache).toBeUndefined();
    expect(parse({ dir: '/run/x', ttl: '1h' }).data?.registry.tokenRealmCache).toEqual({
      dir: '/run/x',
      ttlMs: 3_600_000,
    });
    expect(parse({ dir: 'relative' }).success).toBe(false);
    expect(parse({ ttl: '31d' }).success).toBe(false);
    expect(parse({ ttl: '720h' }).success).toBe(true);
  });
});

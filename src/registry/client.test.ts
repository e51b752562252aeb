/**
 * The client against in-process registries: the distribution-spec 1.1 referrers API (no installable
 * registry here has it), mirror fallback, token caching, and hostile registries. Each hostile case must
 * end in a PullguardError with a clear message, never a hang or a crash.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { Deadline } from '../common/deadline.js';
import { parseDuration } from '../common/go-duration.js';
import {
  OCI_INDEX,
  OCI_MANIFEST,
  putReferrer,
  sha256,
  startFakeRegistry,
  type FakeRegistry,
} from '../../test/helpers/fake-registry.js';
import { DistributionClient } from './client.js';
import type { ArtifactClass, DiscoveryRequest } from './types.js';
import { rejects } from '../../test/helpers/errors.js';
import { arrivals } from '../../test/helpers/arrivals.js';

const NOTATION = 'application/vnd.cncf.notary.signature';
const BUNDLE = 'application/vnd.dev.sigstore.bundle.v0.3+json';
const SIMPLE = 'application/vnd.dev.cosign.simplesigning.v1+json';

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'pg-client-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const servers: FakeRegistry[] = [];
const clients: DistributionClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function fake(bind?: string): Promise<FakeRegistry> {
  const r = await startFakeRegistry(bind);
  servers.push(r);
  return r;
}

/** A client whose containerd config points at a fresh hosts directory with the given hosts.toml files. */
function client(
  hosts: Record<string, string> = {},
  extra: { maxReferrers?: number; maxBlobBytes?: number; maxTotalBytes?: number } = {},
): DistributionClient {
  const dir = mkdtempSync(join(tmp, 'cfg-'));
  const certs = join(dir, 'certs.d');
  mkdirSync(certs);
  for (const [ns, toml] of Object.entries(hosts)) {
    mkdirSync(join(certs, ns.replace(/:(\d+)$/, '_$1_')));
    writeFileSync(join(certs, ns.replace(/:(\d+)$/, '_$1_'), 'hosts.toml'), toml);
  }
  writeFileSync(
    join(dir, 'config.toml'),
    `version = 3\n[plugins.'io.containerd.cri.v1.images'.registry]\nconfig_path = ${JSON.stringify(certs)}\n`,
  );
  const c = new DistributionClient(
    { containerdConfig: join(dir, 'config.toml'), dockerConfig: undefined, ...extra },
    { env: {} },
  );
  clients.push(c);
  return c;
}

function image(reg: FakeRegistry, repo = 'app') {
  const cfg = reg.putBlob(repo, '{"architecture":"amd64","os":"linux"}');
  return reg.putManifest(
    repo,
    {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...cfg },
      layers: [],
    },
    { tag: 'v1' },
  );
}

/** A cosign legacy signature manifest under `img`'s `.sig` tag (its payload is not fetched by these tests). */
function legacySignature(reg: FakeRegistry, img: { digest: string }) {
  return reg.putManifest(
    'app',
    {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256('{}'), size: 2 },
      layers: [{ mediaType: SIMPLE, digest: sha256('p'), size: 1 }],
    },
    { tag: `${img.digest.replace(':', '-')}.sig` },
  );
}

/** hosts.toml for `up` with `mirror` as a pull-and-resolve mirror in front of it. */
const mirrorToml = (up: FakeRegistry, mirror: FakeRegistry): string =>
  `server = "http://${up.host}"\n[host."http://${mirror.host}"]\ncapabilities = ["pull", "resolve"]\n`;

function req(reg: FakeRegistry, digest: string, classes: ArtifactClass[], repo = 'app'): DiscoveryRequest {
  const [domain] = reg.host.split('/');
  return { subject: { domain: domain!, path: repo, digest }, classes: new Set(classes) };
}

describe('referrers API (in-test distribution-spec 1.1 server)', () => {
  test('follows Link pagination and classifies each referrer from its own manifest', async () => {
    const reg = await fake();
    reg.referrersApi = { pageSize: 1, applyFilter: true };
    const img = image(reg);
    const n = putReferrer(reg, 'app', img, {
      configMediaType: NOTATION,
      layerMediaType: 'application/jose+json',
      annotations: { 'io.cncf.notary.x509chain.thumbprint#S256': '["abc","def"]' },
    });
    const b = putReferrer(reg, 'app', img, {
      artifactType: BUNDLE,
      layerMediaType: BUNDLE,
      annotations: { 'dev.sigstore.bundle.predicateType': 'https://sigstore.dev/cosign/sign/v1' },
    });
    const att = putReferrer(reg, 'app', img, {
      artifactType: BUNDLE,
      layerMediaType: BUNDLE,
      annotations: { 'dev.sigstore.bundle.predicateType': 'https://slsa.dev/provenance/v1' },
    });
    const c = client();
    const r = await c.discover(req(reg, img.digest, ['notation', 'cosign-bundle', 'attestation']), new Deadline(5000));
    const byDigest = Object.fromEntries(r.artifacts.map((a) => [a.digest, a]));
    expect(byDigest[n.digest]?.class).toBe('notation');
    expect(byDigest[n.digest]?.signerHint).toBe('certificate sha256:abc');
    expect(byDigest[b.digest]?.class).toBe('cosign-bundle');
    expect(byDigest[att.digest]?.class).toBe('attestation');
    expect(r.artifacts.every((a) => a.foundVia === 'referrers-api')).toBe(true);
    const pages = reg.log.filter((l) => l.url.includes('/referrers/'));
    expect(pages).toHaveLength(3);
    // The referrers tag is asked beside the API (in parallel, once); with the API answering, it is not used.
    expect(reg.log.filter((l) => l.url === `/v2/app/manifests/${img.digest.replace(':', '-')}`)).toHaveLength(1);
  });

  test('asks the registry to filter, and re-filters itself when OCI-Filters-Applied is absent', async () => {
    const reg = await fake();
    reg.referrersApi = { pageSize: 10, applyFilter: false };
    const img = image(reg);
    const n = putReferrer(reg, 'app', img, { configMediaType: NOTATION, layerMediaType: 'application/cose' });
    putReferrer(reg, 'app', img, { artifactType: BUNDLE, layerMediaType: BUNDLE });
    putReferrer(reg, 'app', img, { artifactType: 'application/spdx+json', layerMediaType: 'application/spdx+json' });
    const r = await client().discover(req(reg, img.digest, ['notation']), new Deadline(5000));
    expect(r.artifacts.map((a) => a.digest)).toEqual([n.digest]);
    const api = reg.log.find((l) => l.url.includes('/referrers/'))!;
    expect(new URL(api.url, 'http://x').searchParams.get('artifactType')).toBe(NOTATION);
    // Only the notation manifest was fetched: the others were filtered out client-side from the index.
    expect(reg.log.filter((l) => /\/manifests\/sha256:/.test(l.url)).map((l) => l.url)).toEqual([
      `/v2/app/manifests/${n.digest}`,
    ]);
  });

  test('a fetched blob is checked against its digest and cached', async () => {
    const reg = await fake();
    reg.referrersApi = { pageSize: 10, applyFilter: true };
    const img = image(reg);
    putReferrer(reg, 'app', img, {
      configMediaType: NOTATION,
      layerMediaType: 'application/jose+json',
      payload: 'jws!',
    });
    const [a] = (await client().discover(req(reg, img.digest, ['notation']), new Deadline(5000))).artifacts;
    const layer = a!.manifest.layers[0]!;
    expect(Buffer.from(await a!.fetchBlob(layer)).toString()).toBe('jws!');
    await a!.fetchBlob(layer);
    expect(reg.log.filter((l) => l.url.includes('/blobs/'))).toHaveLength(1);
    // The OCI empty config is known by heart: no request.
    expect(Buffer.from(await a!.fetchBlob(a!.manifest.config)).toString()).toBe('{}');
    expect(reg.log.filter((l) => l.url.includes('/blobs/'))).toHaveLength(1);
    const e = await rejects(a!.fetchBlob({ mediaType: 'x', digest: sha256('other'), size: 5 }));
    expect(e.message).toMatch(/not part of this signature manifest/);
  });

  test('drops referrers whose subject is another image', async () => {
    const reg = await fake();
    const img = image(reg);
    const other = putReferrer(
      reg,
      'app',
      { ...img, digest: sha256('other image') },
      { configMediaType: NOTATION, layerMediaType: 'application/jose+json' },
    );
    reg.putManifest(
      'app',
      {
        schemaVersion: 2,
        mediaType: OCI_INDEX,
        manifests: [{ mediaType: OCI_MANIFEST, digest: other.digest, size: other.size, artifactType: NOTATION }],
      },
      { tag: img.digest.replace(':', '-') },
    );
    const r = await client().discover(req(reg, img.digest, ['notation']), new Deadline(5000));
    expect(r.artifacts).toEqual([]);
    expect(r.notes.join('\n')).toMatch(/does not name .* as its subject/);
  });
});

describe('mirrors from hosts.toml', () => {
  test('a mirror without the signatures falls back to the upstream server; mirror requests carry ?ns=', async () => {
    const up = await fake();
    const mirror = await fake();
    const img = image(up);
    image(mirror);
    const sigManifest = legacySignature(up, img);
    const c = client({
      [up.host]: mirrorToml(up, mirror),
    });
    const r = await c.discover(req(up, img.digest, ['cosign-legacy']), new Deadline(5000));
    expect(r.artifacts.map((a) => [a.class, a.digest])).toEqual([['cosign-legacy', sigManifest.digest]]);
    expect(mirror.log.length).toBeGreaterThan(0);
    for (const l of mirror.log) expect(new URL(l.url, 'http://x').searchParams.get('ns')).toBe(up.host);
    for (const l of up.log) expect(new URL(l.url, 'http://x').searchParams.has('ns')).toBe(false);
    expect(r.notes.join('\n')).toMatch(new RegExp(`mirror ${mirror.host} has no signatures`));
  });

  test('a failing mirror does not hide the upstream; a pull-only mirror is not asked for tags', async () => {
    const up = await fake();
    const broken = await fake();
    const pullOnly = await fake();
    broken.handler = (_q, res) => {
      res.writeHead(500).end('boom');
      return true;
    };
    const img = image(up);
    legacySignature(up, img);
    const c = client({
      [up.host]:
        `server = "http://${up.host}"\n[host."http://${pullOnly.host}"]\ncapabilities = ` +
        `["pull"]\n[host."http://${broken.host}"]\ncapabilities = ["pull", "resolve"]\n`,
    });
    const r = await c.discover(req(up, img.digest, ['cosign-legacy']), new Deadline(5000));
    expect(r.artifacts).toHaveLength(1);
    expect(pullOnly.log).toHaveLength(0);
    expect(r.notes.join('\n')).toMatch(new RegExp(`mirror ${broken.host} failed .*HTTP 500`));
  });
});

describe('bearer tokens', () => {
  test('one anonymous token for many requests; the challenge is remembered per host', async () => {
    const reg = await fake();
    const img = image(reg);
    putReferrer(reg, 'app', img, { configMediaType: NOTATION, layerMediaType: 'application/jose+json' });
    putReferrer(reg, 'app', img, { configMediaType: NOTATION, layerMediaType: 'application/jose+json' });
    let tokens = 0;
    reg.handler = (q, res, url) => {
      if (url.pathname === '/token') {
        tokens++;
        expect(url.searchParams.get('scope')).toBe('repository:app:pull');
        expect(url.searchParams.get('service')).toBe('fake');
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token: 'tok-123' }));
        return true;
      }
      if (q.headers.authorization !== 'Bearer tok-123') {
        res
          .writeHead(401, {
            'www-authenticate': `Bearer realm="${reg.url}/token",service="fake",scope="repository:app:pull"`,
          })
          .end();
        return true;
      }
      return false;
    };
    const r = await client().discover(req(reg, img.digest, ['notation', 'cosign-legacy']), new Deadline(5000));
    expect(tokens).toBe(1);
    expect(r.notes.join('\n')).toMatch(/referrers tag schema/);
    // The three lookups (.sig tag, referrers API, referrers tag) start at once, anonymously; each answers
    // its own 401 with the one token. What follows (the referrers' manifests, their blobs) carries it up front.
    const v2 = reg.log.filter((l) => l.url.startsWith('/v2/'));
    const unauthorized = v2.filter((l) => !l.headers.authorization);
    expect(unauthorized.map((l) => l.url).sort()).toEqual(
      [...new Set(unauthorized.map((l) => l.url))].sort(), // none twice
    );
    expect(unauthorized.length).toBeLessThanOrEqual(3);
    expect(v2.filter((l) => /\/manifests\/sha256:/.test(l.url)).every((l) => l.headers.authorization)).toBe(true);
  });
});

describe('round trips', () => {
  test("the lookups for one host are in flight together: none waits for another one's answer", async () => {
    const reg = await fake();
    const img = image(reg);
    const bundle = putReferrer(reg, 'app', img, { artifactType: BUNDLE, layerMediaType: BUNDLE });
    const listed = { mediaType: OCI_MANIFEST, digest: bundle.digest, size: bundle.size, artifactType: BUNDLE };
    const index = { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [listed] };
    reg.putManifest('app', index, { tag: img.digest.replace(':', '-'), mediaType: OCI_INDEX });
    // Every lookup's answer is held until all three (.sig tag, referrers API, referrers tag) have arrived;
    // a lookup that waited for another's answer would never come, and the backstop would answer instead.
    const lookups = arrivals(3, 3000);
    reg.handler = async (q, res, url) => {
      if (url.pathname === '/token') {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token: 'tok' }));
        return true;
      }
      if (!q.headers.authorization) await lookups.arrive();
      if (q.headers.authorization === 'Bearer tok' || url.pathname.includes('/referrers/')) return false;
      res.writeHead(401, { 'www-authenticate': `Bearer realm="${reg.url}/token",service="fake"` }).end();
      return true;
    };
    const plain = client({ [reg.host]: `server = "http://${reg.host}"\n` }); // no https-or-http probe to wait for
    const r = await plain.discover(req(reg, img.digest, ['cosign-legacy', 'cosign-bundle']), new Deadline(8000));
    expect(r.artifacts.map((a) => a.foundVia)).toEqual(['referrers-tag']);
    expect(lookups.heldTooLong).toBe(false);
    expect(lookups.count).toBe(3);
  });
});

describe('hostile registry', () => {
  test('an oversized manifest is refused while reading (declared and chunked)', async () => {
    const reg = await fake();
    const img = image(reg);
    const big = Buffer.alloc(5 * 1024 * 1024, 0x20);
    reg.handler = (_q, res, url) => {
      if (!url.pathname.endsWith('.sig')) return false;
      res.writeHead(200, { 'content-type': OCI_MANIFEST });
      res.end(big); // chunked: no content-length
      return true;
    };
    const e = await rejects(client().discover(req(reg, img.digest, ['cosign-legacy']), new Deadline(5000)));
    expect(e.code).toBe('REGISTRY_LIMIT');
    expect(e.message).toMatch(
      new RegExp(`${reg.host}: manifest .*app:sha256-.*\\.sig.* larger than the 4194304-byte limit`),
    );
  });

  test('a blob whose content does not match its digest', async () => {
    const reg = await fake();
    reg.referrersApi = { pageSize: 10, applyFilter: true };
    const img = image(reg);
    putReferrer(reg, 'app', img, {
      configMediaType: NOTATION,
      layerMediaType: 'application/jose+json',
      payload: 'genuine',
    });
    reg.handler = (_q, res, url) => {
      if (!url.pathname.includes('/blobs/')) return false;
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': '7' }).end('forged!');
      return true;
    };
    const [a] = (await client().discover(req(reg, img.digest, ['notation']), new Deadline(5000))).artifacts;
    const e = await rejects(a!.fetchBlob(a!.manifest.layers[0]!));
    expect(e.code).toBe('REGISTRY_INTEGRITY');
    expect(e.message).toMatch(/blob sha256:.* of .*\/app from .*: content digest .* does not match/);
  });

  test('a manifest fetched by digest that hashes to something else', async () => {
    const reg = await fake();
    reg.referrersApi = { pageSize: 10, applyFilter: true };
    const img = image(reg);
    const n = putReferrer(reg, 'app', img, { configMediaType: NOTATION, layerMediaType: 'application/jose+json' });
    reg.handler = (_q, res, url) => {
      if (url.pathname !== `/v2/app/manifests/${n.digest}`) return false;
      const body = JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: { mediaType: NOTATION, digest: sha256('{}'), size: 2 },
        layers: [],
        subject: img,
      });
      res.writeHead(200, { 'content-type': OCI_MANIFEST }).end(body);
      return true;
    };
    const e = await rejects(client().discover(req(reg, img.digest, ['notation']), new Deadline(5000)));
    expect(e.code).toBe('REGISTRY_INTEGRITY');
  });

  test('a redirect loop stops after the redirect limit', async () => {
    const reg = await fake();
    const img = image(reg);
    reg.handler = (_q, res, url) => {
      if (!url.pathname.endsWith('.sig')) return false;
      res.writeHead(302, { location: `${url.pathname}?loop=${Number(url.searchParams.get('loop') ?? 0) + 1}` }).end();
      return true;
    };
    const e = await rejects(client().discover(req(reg, img.digest, ['cosign-legacy']), new Deadline(5000)));
    expect(e.code).toBe('REGISTRY_PROTOCOL');
    expect(e.message).toMatch(/more than 5 redirects/);
    expect(reg.log.filter((l) => l.url.includes('.sig'))).toHaveLength(6);
  });

  test('a redirect to another host never carries the Authorization header', async () => {
    const reg = await fake('127.0.0.1');
    const other = await fake('127.0.0.2');
    reg.referrersApi = { pageSize: 10, applyFilter: true };
    const img = image(reg);
    putReferrer(reg, 'app', img, {
      configMediaType: NOTATION,
      layerMediaType: 'application/jose+json',
      payload: 'jws',
    });
    const blob = sha256('jws');
    other.putBlob('elsewhere', 'jws');
    reg.handler = (q, res, url) => {
      if (url.pathname === '/token') {
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"token":"secret-token"}');
        return true;
      }
      if (q.headers.authorization !== 'Bearer secret-token') {
        res.writeHead(401, { 'www-authenticate': `Bearer realm="${reg.url}/token",service="fake"` }).end();
        return true;
      }
      if (url.pathname.endsWith(`/blobs/${blob}`)) {
        res.writeHead(307, { location: `${other.url}/v2/elsewhere/blobs/${blob}?X-Amz-Signature=abc` }).end();
        return true;
      }
      return false;
    };
    const [a] = (await client().discover(req(reg, img.digest, ['notation']), new Deadline(5000))).artifacts;
    expect(Buffer.from(await a!.fetchBlob(a!.manifest.layers[0]!)).toString()).toBe('jws');
    expect(other.log).toHaveLength(1);
    expect(other.log[0]!.headers.authorization).toBeUndefined();
    expect(reg.log.find((l) => l.url.includes('/blobs/'))!.headers.authorization).toBe('Bearer secret-token');
  });

  test('a stalled response ends within the deadline', async () => {
    const reg = await fake();
    const img = image(reg);
    reg.handler = (_q, res, url) => {
      if (url.pathname.includes('/referrers/')) return false;
      if (url.pathname.endsWith('.sig')) {
        res.writeHead(200, { 'content-type': OCI_MANIFEST, 'content-length': '1000' });
        res.write('{"schemaVersion":'); // and then nothing
        return true;
      }
      return false;
    };
    const budget = 1500;
    const started = Date.now();
    const d = new Deadline(budget);
    const e = await rejects(client().discover(req(reg, img.digest, ['cosign-legacy']), d));
    expect(['REGISTRY_UNREACHABLE', 'DEADLINE_EXCEEDED']).toContain(e.code);
    expect(e.message).toMatch(new RegExp(`${reg.host} did not answer within|timed out`));
    // A lower bound holds under any load; the upper one is deadline-based: the client gave up before
    // its own Deadline fired (it cuts a stalled read at the time it keeps to decide in time).
    expect(Date.now() - started).toBeGreaterThanOrEqual(budget / 2 - 50);
    expect(d.signal.aborted).toBe(false);
  });

  test('a registry that never answers is cut off at the deadline', async () => {
    const reg = await fake();
    const img = image(reg);
    reg.handler = () => true; // accepts, never responds
    const d = new Deadline(1200);
    const e = await rejects(client().discover(req(reg, img.digest, ['cosign-legacy', 'notation']), d));
    expect(['REGISTRY_UNREACHABLE', 'DEADLINE_EXCEEDED']).toContain(e.code);
    expect(e.message).toMatch(/of the 1\.2s deadline/);
    expect(d.signal.aborted).toBe(false); // cut off before the deadline fired, not after
  });

  test('malformed JSON: a referrers index and a .sig manifest', async () => {
    const reg = await fake();
    const img = image(reg);
    reg.putManifest('app', '{"schemaVersion":2,"manifests":[', {
      tag: img.digest.replace(':', '-'),
      mediaType: OCI_INDEX,
    });
    const e1 = await rejects(client().discover(req(reg, img.digest, ['notation']), new Deadline(5000)));
    expect(e1.code).toBe('REGISTRY_PROTOCOL');
    expect(e1.message).toMatch(/manifest .*app:sha256-.* is not valid JSON/);
    reg.putManifest('app', '{"schemaVersion":2,"layers":7}', {
      tag: `${img.digest.replace(':', '-')}.sig`,
      mediaType: OCI_MANIFEST,
    });
    const e2 = await rejects(client().discover(req(reg, img.digest, ['cosign-legacy']), new Deadline(5000)));
    expect(e2.code).toBe('REGISTRY_PROTOCOL');
    expect(e2.message).toMatch(/\.sig on .* is not a valid image manifest: config is not an object/);
  });

  test('a manifest served with a content type that is not a manifest', async () => {
    const reg = await fake();
    const img = image(reg);
    reg.handler = (_q, res, url) => {
      if (!url.pathname.endsWith('.sig')) return false;
      res.writeHead(200, { 'content-type': 'text/html' }).end('<html>login</html>');
      return true;
    };
    const e = await rejects(client().discover(req(reg, img.digest, ['cosign-legacy']), new Deadline(5000)));
    expect(e.code).toBe('REGISTRY_PROTOCOL');
    expect(e.message).toMatch(/as "text\/html", not a manifest/);
  });

  test('a thousand referrers: a clear limit error, without fetching them', async () => {
    const reg = await fake();
    reg.referrersApi = { pageSize: 250, applyFilter: false };
    const img = image(reg);
    const manifests = Array.from({ length: 1000 }, (_, i) => ({
      mediaType: OCI_MANIFEST,
      digest: sha256(`r${i}`),
      size: 500,
      artifactType: NOTATION,
    }));
    reg.handler = (_q, res, url) => {
      if (!url.pathname.includes('/referrers/')) return false;
      const page = Number(url.searchParams.get('page') ?? 0);
      const headers: Record<string, string> = { 'content-type': OCI_INDEX };
      if (page < 3) headers.link = `<${url.pathname}?page=${page + 1}>; rel="next"`;
      res.writeHead(200, headers).end(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI_INDEX,
          manifests: manifests.slice(page * 250, page * 250 + 250),
        }),
      );
      return true;
    };
    const c = client();
    const e = await rejects(c.discover(req(reg, img.digest, ['notation']), new Deadline(5000)));
    expect(e.code).toBe('REGISTRY_LIMIT');
    expect(e.message).toMatch(/lists 1000 referrers .* more than the limit of 128; raise registry.maxReferrers/);
    expect(reg.log.filter((l) => /\/manifests\/sha256:/.test(l.url))).toHaveLength(0);
  });

  test('a blob over registry.maxBlobBytes is refused before any request', async () => {
    const reg = await fake();
    reg.referrersApi = { pageSize: 10, applyFilter: true };
    const img = image(reg);
    putReferrer(reg, 'app', img, {
      configMediaType: NOTATION,
      layerMediaType: 'application/jose+json',
      payload: 'x'.repeat(2000),
    });
    const [a] = (
      await client({}, { maxBlobBytes: 1000 }).discover(req(reg, img.digest, ['notation']), new Deadline(5000))
    ).artifacts;
    const e = await rejects(a!.fetchBlob(a!.manifest.layers[0]!));
    expect(e.code).toBe('REGISTRY_LIMIT');
    expect(e.message).toMatch(/2000 bytes, over the 1000-byte limit \(registry.maxBlobBytes\)/);
    expect(reg.log.filter((l) => l.url.includes('/blobs/'))).toHaveLength(0);
  });
});

describe('hostile registries (issue 8): a bad candidate fails alone, in bounded time and bytes', () => {
  test('a junk index under the .sig tag does not hide a valid referrer', async () => {
    const reg = await fake();
    reg.referrersApi = { pageSize: 10, applyFilter: true };
    const img = image(reg);
    const n = putReferrer(reg, 'app', img, { configMediaType: NOTATION, layerMediaType: 'application/jose+json' });
    reg.putManifest(
      'app',
      { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] },
      { tag: `${img.digest.replace(':', '-')}.sig`, mediaType: OCI_INDEX },
    );
    const r = await client().discover(req(reg, img.digest, ['cosign-legacy', 'notation']), new Deadline(5000));
    expect(r.artifacts.map((a) => a.digest)).toEqual([n.digest]);
    expect(r.notes.join('\n')).toMatch(/\.sig on .* is not a valid image manifest: .*; skipped/);
  });

  test('a malformed referrer beside a valid one is a note; alone it is the answer', async () => {
    const reg = await fake();
    reg.referrersApi = { pageSize: 10, applyFilter: false };
    const img = image(reg);
    const deep = reg.putManifest('app', `${'['.repeat(100)}${']'.repeat(100)}`, { mediaType: OCI_MANIFEST });
    reg.handler = (_q, res, url) => {
      if (!url.pathname.includes('/referrers/')) return false;
      const manifests = [{ mediaType: OCI_MANIFEST, digest: deep.digest, size: deep.size, artifactType: NOTATION }];
      res
        .writeHead(200, { 'content-type': OCI_INDEX })
        .end(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests }));
      return true;
    };
    const e = await rejects(client().discover(req(reg, img.digest, ['notation']), new Deadline(5000)));
    expect(e.message).toMatch(/is not valid JSON: nested more than 64 levels deep/);
  });

  test('404 and 302 answers with bodies over 64 KiB are skimmed and their connection closed', async () => {
    const reg = await fake();
    reg.referrersApi = { pageSize: 10, applyFilter: true };
    const img = image(reg);
    putReferrer(reg, 'app', img, {
      configMediaType: NOTATION,
      layerMediaType: 'application/jose+json',
      payload: 'jws',
    });
    const blob = sha256('jws');
    reg.handler = (_q, res, url) => {
      if (url.pathname.endsWith('.sig')) {
        res.writeHead(404, { 'content-type': 'text/html' }).end('x'.repeat(200 * 1024));
        return true;
      }
      if (url.pathname.endsWith(`/blobs/${blob}`) && !url.searchParams.has('moved')) {
        res
          .writeHead(302, { location: `${url.pathname}?moved=1`, 'content-type': 'text/html' })
          .end('y'.repeat(200 * 1024));
        return true;
      }
      return false;
    };
    const [a] = (await client().discover(req(reg, img.digest, ['cosign-legacy', 'notation']), new Deadline(5000)))
      .artifacts;
    expect(Buffer.from(await a!.fetchBlob(a!.manifest.layers[0]!)).toString()).toBe('jws');
  });

  test('a mirror that never answers gets a share of the deadline; the upstream still decides', async () => {
    const up = await fake();
    const mirror = await fake();
    mirror.handler = () => true; // accepts, never answers
    const img = image(up);
    legacySignature(up, img);
    const c = client({
      [up.host]: mirrorToml(up, mirror),
    });
    const d = new Deadline(3000);
    const r = await c.discover(req(up, img.digest, ['cosign-legacy', 'notation']), d);
    expect(r.artifacts).toHaveLength(1);
    const share = new RegExp(
      `mirror ${mirror.host} failed \\(REGISTRY_UNREACHABLE: ${mirror.host} ` +
        'did not answer within (\\d+(?:\\.\\d+)?m?s)',
    ).exec(r.notes.join('\n'));
    expect(share).not.toBeNull();
    // Deadline-based: the mirror's share is a part of the 3 s, and the upstream decided before it ran out.
    expect(parseDuration(share![1]!)).toBeLessThan(3000);
    expect(d.signal.aborted).toBe(false);
    expect(r.notes.join('\n')).not.toMatch(/within 0ms/);
  });

  test('when the upstream fails after a mirror did, the reason names both hosts', async () => {
    const up = await fake();
    const mirror = await fake();
    mirror.handler = (_q, res) => Boolean(res.writeHead(500).end());
    up.handler = (_q, res) => Boolean(res.writeHead(503).end());
    const img = image(up);
    const toml = mirrorToml(up, mirror);
    const e = await rejects(
      client({ [up.host]: toml }).discover(req(up, img.digest, ['cosign-legacy']), new Deadline(3000)),
    );
    expect(e.message).toMatch(
      new RegExp(`^${up.host} answered HTTP 503 .*; mirror ${mirror.host} \\(REGISTRY_UNREACHABLE\\) failed first$`),
    );
  });

  test('a source that never answers does not hide what another source found', async () => {
    const reg = await fake();
    reg.referrersApi = { pageSize: 10, applyFilter: true };
    const img = image(reg);
    const n = putReferrer(reg, 'app', img, { configMediaType: NOTATION, layerMediaType: 'application/jose+json' });
    reg.handler = (_q, _res, url) => url.pathname.endsWith('.sig'); // accepted, never answered
    const d = new Deadline(3000);
    const r = await client().discover(req(reg, img.digest, ['cosign-legacy', 'notation']), d);
    expect(d.signal.aborted).toBe(false); // decided before the deadline fired
    expect(r.artifacts.map((a) => a.digest)).toEqual([n.digest]);
    expect(r.notes.join('\n')).toMatch(/\.sig .*; skipped/);
  });

  test('keep-alive: the requests of one discovery share connections', async () => {
    const reg = await fake();
    reg.referrersApi = { pageSize: 10, applyFilter: false };
    const img = image(reg);
    putReferrer(reg, 'app', img, { configMediaType: NOTATION, layerMediaType: 'application/jose+json' });
    putReferrer(reg, 'app', img, { artifactType: BUNDLE, layerMediaType: BUNDLE });
    const r = await client().discover(
      req(reg, img.digest, ['cosign-legacy', 'cosign-bundle', 'notation']),
      new Deadline(5000),
    );
    for (const a of r.artifacts) for (const l of a.manifest.layers) await a.fetchBlob(l);
    expect(r.artifacts).toHaveLength(2);
    // .sig 404, referrers tag 404 (asked beside the API), referrers API, two manifests, two blobs: over
    // fewer connections than requests.
    expect(reg.log).toHaveLength(7);
    expect(reg.connections).toBeLessThan(reg.log.length);
  });

  test('registry.maxTotalBytes stops a flood of large referrers; small ones are read first', async () => {
    const reg = await fake();
    reg.referrersApi = { pageSize: 100, applyFilter: false };
    const img = image(reg);
    const big = Array.from({ length: 20 }, (_, i) =>
      reg.putManifest('app', JSON.stringify({ pad: `${i}${'z'.repeat(100_000)}` }), { mediaType: OCI_MANIFEST }),
    );
    const n = putReferrer(reg, 'app', img, { configMediaType: NOTATION, layerMediaType: 'application/jose+json' });
    reg.handler = (_q, res, url) => {
      if (!url.pathname.includes('/referrers/')) return false;
      const manifests = [...big, n].map((m) => ({
        mediaType: OCI_MANIFEST,
        digest: m.digest,
        size: m.size,
        artifactType: NOTATION,
      }));
      res
        .writeHead(200, { 'content-type': OCI_INDEX })
        .end(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests }));
      return true;
    };
    const r = await client({}, { maxTotalBytes: 400_000 }).discover(
      req(reg, img.digest, ['notation']),
      new Deadline(5000),
    );
    expect(r.artifacts.map((a) => a.digest)).toEqual([n.digest]);
    expect(r.notes.join('\n')).toMatch(
      /not read: discovery reached its 300000-byte limit \(three quarters of registry.maxTotalBytes\)/,
    );
    // Fetches already in flight finish (FETCH_CONCURRENCY of them); nothing new starts.
    expect(reg.log.filter((l) => l.url.includes('/manifests/')).length).toBeLessThan(14);
  });
});

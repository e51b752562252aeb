/**
 * Requests on the critical path, per signature format, against a real loopback docker-registry 2.8.3
 * with signatures by the real cosign 3.1.1 and notation 1.3.2: pullguard's own count (a request
 * observer on the client, and the registry's access log for the shipped executable) beside the CLIs'
 * (the same access log). The expected counts are asserted, so a regression (a probe, a ping, a token
 * nobody asked for, a serial lookup turned into two) fails here.
 *
 * Also: a loopback registry is asked over plain http first (no `tls` on the path) and a loopback TLS
 * registry is still found over https, as containerd's https-with-http-fallback finds it.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type AddressInfo } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Deadline } from '../../src/common/deadline.js';
import { DistributionClient } from '../../src/registry/client.js';
import type { ArtifactClass } from '../../src/registry/types.js';
import { cosign, cosignOk, cosignSignKey } from '../helpers/cosign.js';
import { notationSandbox, type NotationSandbox } from '../helpers/notation.js';
import { pushTestImage, type PushedImage } from '../helpers/oci.js';
import { containerdConfigWithHosts } from '../helpers/hosts-config.js';
import { startFakeRegistry } from '../helpers/fake-registry.js';
import { arrivals } from '../helpers/arrivals.js';
import { Pki, tlsServer } from '../helpers/pki.js';
import { waitFor } from '../helpers/proc.js';
import { startRegistry, type Registry } from '../helpers/registry.js';
import { pullguardBinary, ROOT } from '../helpers/tools.js';
import { runVerifier } from '../helpers/verifier.js';

let registry: Registry;
let work: string;
let home: string;
let key: string;
let nt: NotationSandbox;
let policy: string;
let emptyHosts: string;
const img: Record<'legacy' | 'bundle' | 'notation', PushedImage> = {} as never;

let markers = 0;

/** Access-log lines (one per HTTP request that reached the registry) written while `fn` ran. */
async function logged(reg: Registry, fn: () => Promise<unknown>): Promise<string[]> {
  const from = reg.daemon.output().length;
  await fn();
  // The registry logs a request after answering it. Instead of sleeping, send one more request, after
  // all of fn's were answered, and wait for its line: the event that says the log has caught up.
  const marker = `/v2/?pullguard-log-marker=${++markers}`;
  await (await fetch(`${reg.url}${marker}`)).arrayBuffer();
  await waitFor('the registry to log the marker request', () => reg.daemon.output().slice(from).includes(marker));
  return reg.daemon
    .output()
    .slice(from)
    .split('\n')
    .filter((l) => /^\S+ - \S+ \[[^\]]+\] "(GET|HEAD|POST|PUT|PATCH|DELETE) /.test(l) && !l.includes(marker))
    .map((l) => /"(\S+ \S+)/.exec(l)![1]!);
}

const containerdConfig = (hosts: Record<string, string>) => containerdConfigWithHosts(work, hosts);

/** Discovery plus every layer blob of what it found, in process, with every request observed. */
async function observed(image: PushedImage, classes: ArtifactClass[], containerdToml = emptyHosts): Promise<string[]> {
  const requests: string[] = [];
  const c = new DistributionClient(
    { containerdConfig: containerdToml },
    { env: {}, observer: (m, u) => requests.push(`${m} ${u.protocol}${u.pathname}`) },
  );
  try {
    const slash = image.ref.indexOf('/');
    const path = image.ref.slice(slash + 1, image.ref.lastIndexOf(':'));
    const d = new Deadline(10_000);
    const r = await c.discover(
      { subject: { domain: image.ref.slice(0, slash), path, digest: image.digest }, classes: new Set(classes) },
      d,
    );
    expect(r.artifacts).toHaveLength(1);
    for (const a of r.artifacts) for (const l of a.manifest.layers) await a.fetchBlob(l);
    d.dispose();
    return requests;
  } finally {
    c.close();
  }
}

beforeAll(async () => {
  registry = await startRegistry();
  work = mkdtempSync(join(tmpdir(), 'pg-round-trips-'));
  home = join(work, 'cosign-home');
  key = join(work, 'release');
  for (const k of ['legacy', 'bundle', 'notation'] as const) {
    img[k] = await pushTestImage(registry.host, `rt/${k}`, 'v1', `round-trips-${k}-${Date.now()}`);
  }
  await cosignOk(home, ['generate-key-pair', '--output-key-prefix', key]);
  for (const [image, bundle] of [
    [img.legacy, false],
    [img.bundle, true],
  ] as const) {
    await cosignSignKey(
      home,
      `${key}.key`,
      `${registry.host}/${image === img.legacy ? 'rt/legacy' : 'rt/bundle'}@${image.digest}`,
      { bundle },
    );
  }
  nt = notationSandbox();
  const g = await nt.run(['cert', 'generate-test', 'rt.example']);
  if (g.status !== 0) throw new Error(g.output);
  nt.writeTrustPolicy([
    {
      name: 'rt',
      registryScopes: ['*'],
      signatureVerification: { level: 'strict' },
      trustStores: ['ca:rt.example'],
      trustedIdentities: ['*'],
    },
  ]);
  await nt.sign(`${registry.host}/rt/notation@${img.notation.digest}`, 'rt.example');

  emptyHosts = containerdConfig({});
  policy = join(work, 'policy.yaml');
  writeFileSync(
    policy,
    [
      'version: 1',
      'default: deny',
      'rules:',
      `  - {name: cosign, match: ["${registry.host}/rt/legacy", "${registry.host}/rt/bundle"], action: ` +
        `verify, authorities: [{name: release, cosign: {keys: [${key}.pub]}}]}`,
      `  - {name: notation, match: "${registry.host}/rt/notation", action: verify, authorities: [{name: ` +
        `rt, notation: {config: ${nt.configDir}}}]}`,
      'registry:',
      `  containerdConfig: ${emptyHosts}`,
      '',
    ].join('\n'),
  );
}, 180_000);

afterAll(async () => {
  await registry?.stop();
  nt?.dispose();
  if (work) rmSync(work, { recursive: true, force: true });
});

const COSIGN: ArtifactClass[] = ['cosign-legacy', 'cosign-bundle'];

describe('requests per format, beside the CLIs', () => {
  test(
    'pullguard: the expected requests, no https probe, no /v2/ ping, no token ' + '(the registry never challenged)',
    async () => {
      const legacy = await observed(img.legacy, COSIGN);
      const bundle = await observed(img.bundle, COSIGN);
      const notation = await observed(img.notation, ['notation']);
      // docker-registry has no referrers API: its 404 sends discovery to the referrers tag (cosign and
      // notation both keep that tag); the .sig tag is asked at the same time.
      expect(legacy.map((r) => r.replace(/[0-9a-f]{64}/g, 'H'))).toEqual(
        expect.arrayContaining([
          'GET http:/v2/rt/legacy/manifests/sha256-H.sig',
          'GET http:/v2/rt/legacy/referrers/sha256:H',
          'GET http:/v2/rt/legacy/manifests/sha256-H',
          'GET http:/v2/rt/legacy/blobs/sha256:H',
        ]),
      );
      expect(legacy).toHaveLength(4);
      // The referrers API and the referrers tag go out together (the tag first: a manifest route, which meets
      // an auth challenge where docker-registry answers the referrers route 404 without one).
      expect(notation.slice(0, 2).map((r) => r.replace(/[0-9a-f]{64}/g, 'H'))).toEqual([
        'GET http:/v2/rt/notation/manifests/sha256-H',
        'GET http:/v2/rt/notation/referrers/sha256:H',
      ]);
      expect(bundle).toHaveLength(5); // .sig 404, referrers API 404, tag index, bundle manifest, bundle blob
      expect(notation).toHaveLength(4); // referrers API 404, tag index, signature manifest, envelope blob
      for (const r of [...legacy, ...bundle, ...notation])
        expect(r).toMatch(/^GET http:\/v2\/rt\/\w+\/(manifests|referrers|blobs)\//);
    },
  );

  test('the shipped executable makes the same requests, fewer than cosign verify and notation verify', async () => {
    const counts: Record<string, number> = {};
    const pg = async (image: PushedImage) => {
      const r = await runVerifier(
        pullguardBinary(),
        { name: image.ref, digest: image.digest, mediaType: image.mediaType, size: image.size },
        { PULLGUARD_POLICY: policy },
      );
      expect(r.code, r.stdout).toBe(0);
    };
    counts['pullguard legacy'] = (await logged(registry, () => pg(img.legacy))).length;
    counts['pullguard bundle'] = (await logged(registry, () => pg(img.bundle))).length;
    counts['pullguard notation'] = (await logged(registry, () => pg(img.notation))).length;
    const cosignVerify = async (image: PushedImage, repo: string, extra: string[] = []) => {
      const r = await cosign(home, [
        'verify',
        '--key',
        `${key}.pub`,
        '--insecure-ignore-tlog',
        '--allow-http-registry',
        ...extra,
        `${registry.host}/${repo}@${image.digest}`,
      ]);
      expect(r.code, r.out).toBe(0);
    };
    counts['cosign verify legacy'] = (await logged(registry, () => cosignVerify(img.legacy, 'rt/legacy'))).length;
    counts['cosign verify --new-bundle-format=false legacy'] = (
      await logged(registry, () => cosignVerify(img.legacy, 'rt/legacy', ['--new-bundle-format=false']))
    ).length;
    counts['cosign verify bundle'] = (await logged(registry, () => cosignVerify(img.bundle, 'rt/bundle'))).length;
    counts['notation verify'] = (
      await logged(registry, async () => {
        const r = await nt.run([
          'verify',
          '--insecure-registry',
          `${registry.host}/rt/notation@${img.notation.digest}`,
        ]);
        expect(r.status, r.output).toBe(0);
      })
    ).length;
    console.log(`requests per verification (registry access log): ${JSON.stringify(counts)}`);
    expect(counts['pullguard legacy']).toBe(4);
    expect(counts['pullguard bundle']).toBe(5);
    expect(counts['pullguard notation']).toBe(4);
    // A policy that accepts both cosign formats looks for both, as cosign's default does (bundle first).
    expect(counts['pullguard legacy']).toBeLessThanOrEqual(counts['cosign verify legacy']!);
    expect(counts['pullguard bundle']).toBeLessThanOrEqual(counts['cosign verify bundle']!);
    expect(counts['pullguard notation']).toBeLessThanOrEqual(counts['notation verify']!);
  });
});

/** A TLS terminator on a free port in front of `upstreamPort`, counting full and resumed handshakes. */
async function tlsFront(upstreamPort: number) {
  const pem = await tlsServer(Pki.create(mkdtempSync(join(work, 'tls-front-'))), 'front');
  const counts = { full: 0, resumed: 0 };
  const front = createTlsServer({ key: readFileSync(pem.key), cert: readFileSync(pem.cert) }, (tls) => {
    if (tls.isSessionReused()) counts.resumed++;
    else counts.full++;
    const up = connect(upstreamPort, '127.0.0.1');
    tls.pipe(up).pipe(tls);
    const close = () => {
      tls.destroy();
      up.destroy();
    };
    tls.on('error', close).on('close', close);
    up.on('error', close);
  });
  await new Promise<void>((r) => front.listen(0, '127.0.0.1', () => r()));
  const host = `127.0.0.1:${(front.address() as AddressInfo).port}`;
  // The CA given by hosts.toml, as for a remote registry.
  const toml = containerdConfig({ [host]: `server = "https://${host}"\nca = ${JSON.stringify(pem.cert)}\n` });
  return { host, toml, counts, close: () => front.close() };
}

describe('TLS: one full handshake per host', () => {
  test('the requests of one verification resume the first TLS session (keep-alive, session reuse)', async () => {
    const front = await tlsFront(registry.port);
    try {
      const image = { ...img.notation, ref: img.notation.ref.replace(registry.host, front.host) };
      const requests = await observed(image, ['notation', 'cosign-legacy', 'cosign-bundle'], front.toml);
      expect(requests.every((r) => r.startsWith('GET https:'))).toBe(true);
      const { full, resumed } = front.counts;
      console.log(`TLS: ${full} full handshake(s), ${resumed} resumed, ${requests.length} requests`);
      expect(full).toBe(1);
      expect(full + resumed).toBeLessThan(requests.length);
    } finally {
      front.close();
    }
  });

  test('the other lookups wait for the first TLS session, not for the first answer', async () => {
    // Every lookup's answer is held until all three (.sig tag, referrers tag, referrers API) have arrived: a
    // lookup that waited for the first one's answer would never come, and the backstop would answer instead.
    const fakeReg = await startFakeRegistry();
    const lookups = arrivals(3);
    fakeReg.handler = async () => {
      await lookups.arrive();
      return false;
    };
    const front = await tlsFront(Number(fakeReg.host.split(':')[1]));
    try {
      const c = new DistributionClient({ containerdConfig: front.toml }, { env: {} });
      const subject = { domain: front.host, path: 'app', digest: `sha256:${'a'.repeat(64)}` };
      const r = await c.discover({ subject, classes: new Set(COSIGN) }, new Deadline(10_000));
      c.close();
      expect(r.artifacts).toHaveLength(0);
      expect(lookups.heldTooLong).toBe(false);
      expect(lookups.count).toBe(3);
      expect(front.counts.full).toBe(1);
    } finally {
      front.close();
      await fakeReg.close();
    }
  });
});

describe('loopback registries, as containerd finds them', () => {
  test('a plain-http loopback registry never loads tls (the bundle, with a preload that reports it)', () => {
    const image = img.legacy;
    const args = [
      '-name',
      image.ref,
      '-digest',
      image.digest,
      '-stdin-media-type',
      'application/vnd.oci.descriptor.v1+json',
    ];
    const preload = join(ROOT, 'test/helpers/report-tls-loaded.cjs');
    const r = spawnSync(process.execPath, ['-r', preload, join(ROOT, 'dist/pullguard.cjs'), ...args], {
      env: { PULLGUARD_POLICY: policy },
      input: JSON.stringify({ mediaType: image.mediaType, digest: image.digest, size: image.size }),
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(r.status, r.stdout).toBe(0);
    expect(r.stderr).toContain('TLS_LOADED=false');
  });

  test('a loopback TLS registry without hosts.toml is found over https after one plain-http attempt', async () => {
    const srv = await tlsServer(Pki.create(mkdtempSync(join(work, 'tls-'))), 'srv');
    const tls = await startRegistry({ tls: { cert: srv.cert, key: srv.key } });
    try {
      process.env.SSL_CERT_FILE = srv.cert; // for oras
      let image: PushedImage;
      try {
        image = await pushTestImage(tls.host, 'rt/tls', 'v1', `round-trips-tls-${Date.now()}`, { plainHttp: false });
      } finally {
        delete process.env.SSL_CERT_FILE;
      }
      await cosignOk(
        home,
        [
          'sign',
          '--key',
          `${key}.key`,
          '--tlog-upload=false',
          '--use-signing-config=false',
          '--new-bundle-format=false',
          `${tls.host}/rt/tls@${image.digest}`,
        ],
        { SSL_CERT_FILE: srv.cert },
      );
      const requests = await observed(image, ['cosign-legacy']);
      // containerd: https with skip_verify, http only when the server answers TLS with HTTP. Here: one
      // plain-http attempt that the TLS server refuses, then https for good.
      expect(requests[0]).toMatch(/^GET http:\/v2\/rt\/tls\/manifests\/sha256-[0-9a-f]{64}\.sig$/);
      expect(requests.slice(1).every((r) => r.startsWith('GET https:'))).toBe(true);
      expect(requests).toHaveLength(3); // .sig over http (refused), .sig over https, the payload blob
    } finally {
      await tls.stop();
    }
  });
});

/**
 * The decision cache and staleIfError through a real containerd 2.1.9 with dist/pullguard as its image
 * verifier: a repeat pull is answered from the cache; a changed key file, and a certificate that expired
 * since, are misses (and the fresh verification then denies); a signature registry stopped after a
 * verified pull is ridden out only by a rule with staleIfError. Signatures are made by the real cosign
 * 3.1.1 and notation 1.3.2.
 *
 * The outage case keeps signatures in their own registry (cosign's COSIGN_REPOSITORY, the policy's
 * signatureRepository): containerd must still reach the image's registry to pull at all, so only the
 * place pullguard looks in goes down.
 */
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startContainerd, type Containerd, type DecisionRecord } from '../helpers/containerd.js';
import { cosignOk } from '../helpers/cosign.js';
import { CriError, criClient, type CriClient } from '../helpers/cri.js';
import { notationSandbox, type NotationSandbox } from '../helpers/notation.js';
import { Pki } from '../helpers/pki.js';
import { pushTestImage, type PushedImage } from '../helpers/oci.js';
import { waitFor } from '../helpers/proc.js';
import { startRegistry, type Registry } from '../helpers/registry.js';

type CachedRecord = DecisionRecord & { cache?: { status: string; expiry?: string; expiresAt?: string; note?: string } };

let registry: Registry;
let sigs: Registry;
let ctd: Containerd;
let cri: CriClient;
let work: string;
let home: string;
let policyFile: string;
let pki: Pki;
let nt: NotationSandbox;
let leafNotAfter: number;
const img = {} as Record<'cosign' | 'rotated' | 'notation' | 'stale' | 'nostale', PushedImage>;

const pinned = (i: PushedImage) => `${i.ref.replace(/:[^:/]+$/, '')}@${i.digest}`;
const flags = [
  '--allow-http-registry',
  '--allow-insecure-registry',
  '--tlog-upload=false',
  '--use-signing-config=false',
  '--new-bundle-format=false',
  '-y',
];

function writePolicy(ttl: string): void {
  const h = registry.host;
  const key = join(work, 'release.pub');
  writeFileSync(
    policyFile,
    [
      'version: 1',
      'default: deny',
      `cache: {dir: ${join(work, 'cache')}, ttl: ${ttl}}`,
      `log: {file: ${join(work, 'decisions.jsonl')}, metricsFile: ${join(work, 'metrics.prom')}}`,
      'rules:',
      `  - {name: cosign, match: ["${h}/cache/cosign", "${h}/cache/rotated"], action: verify, ` +
        `authorities: [{name: release, cosign: {keys: [${key}]}}]}`,
      `  - {name: notation, match: "${h}/cache/notation", action: verify, authorities: [{name: corp, ` +
        `notation: {config: ${nt.configDir}}}]}`,
      `  - {name: stale, match: "${h}/cache/stale", action: verify, staleIfError: 1h, authorities: ` +
        `[{cosign: {keys: [${key}], signatureRepository: "${sigs.host}/sigs/stale"}}]}`,
      `  - {name: nostale, match: "${h}/cache/nostale", action: verify, authorities: [{cosign: {keys: ` +
        `[${key}], signatureRepository: "${sigs.host}/sigs/nostale"}}]}`,
      '',
    ].join('\n'),
  );
}

/** One CRI pull (the image removed again after an allow) and its decision record. */
async function pull(i: PushedImage): Promise<CachedRecord> {
  const mine = () => ctd.decisionRecords().filter((r) => r.name === i.ref);
  const before = mine().length;
  try {
    await cri.pullImage(i.ref);
    await cri.removeImage(i.ref);
  } catch (e) {
    if (!(e instanceof CriError)) throw e;
  }
  await waitFor('decision record of this pull', () => mine().length > before, 10_000);
  return mine()[before]! as CachedRecord;
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'pg-cache-ctd-'));
  home = join(work, 'home');
  policyFile = join(work, 'policy.yaml');
  registry = await startRegistry();
  sigs = await startRegistry();
  await cosignOk(home, ['generate-key-pair', '--output-key-prefix', join(work, 'release')]);
  await cosignOk(home, ['generate-key-pair', '--output-key-prefix', join(work, 'next')]);
  for (const name of ['cosign', 'rotated', 'notation', 'stale', 'nostale'] as const)
    img[name] = await pushTestImage(registry.host, `cache/${name}`, 'v1', `cache-ctd-${name}-${Date.now()}`);
  for (const name of ['cosign', 'rotated'] as const)
    await cosignOk(home, ['sign', '--key', join(work, 'release.key'), ...flags, pinned(img[name])]);
  for (const name of ['stale', 'nostale'] as const) {
    await cosignOk(home, ['sign', '--key', join(work, 'release.key'), ...flags, pinned(img[name])], {
      COSIGN_REPOSITORY: `${sigs.host}/sigs/${name}`,
    });
  }

  // notation: a leaf that expires ~20 s from now, under a CA in the trust store.
  pki = Pki.create();
  nt = notationSandbox();
  const root = await pki.issue('root', { kind: 'p256', subject: '/O=Acme/CN=Acme Cache Root', ca: true });
  const leaf = await pki.issue('leaf', {
    kind: 'p256',
    subject: '/O=Acme/CN=acme-shortlived',
    issuer: root,
    endSeconds: 20,
  });
  leafNotAfter = Date.parse(new X509Certificate(readFileSync(leaf.cert)).validTo);
  nt.addKey('short', leaf.key, pki.bundle('short', [leaf, root]));
  nt.trust('ca', 'acme', root.cert);
  nt.writeTrustPolicy([
    {
      name: 'corp',
      registryScopes: ['*'],
      signatureVerification: { level: 'strict' },
      trustStores: ['ca:acme'],
      trustedIdentities: ['*'],
    },
  ]);
  await nt.sign(pinned(img.notation), 'short');

  writePolicy('10m');
  ctd = await startContainerd({ mode: 'dropin', policy: policyFile });
  cri = criClient(ctd.socket);
}, 240_000);

afterAll(async () => {
  cri?.close();
  await ctd?.stop();
  await registry?.stop();
  await sigs?.stop();
  nt?.dispose();
  pki?.dispose();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('decision cache through containerd', () => {
  it('answers a repeat pull from the cache', async () => {
    const first = await pull(img.cosign);
    expect(first).toMatchObject({ verdict: 'allow', cache: { status: 'miss', expiry: 'ttl' } });
    const again = await pull(img.cosign);
    expect(again).toMatchObject({ verdict: 'allow', rule: 'cosign', cache: { status: 'hit' } });
    expect(again.reason).toMatch(/^signature verified by release \(cached: verified \d+s ago\)$/);
    expect(again.results).toEqual([]);
    // The hit is counted in the node's metrics and flagged in its decision log.
    expect(readFileSync(join(work, 'metrics.prom'), 'utf8')).toMatch(/^pullguard_cache_hits_total 1$/m);
    const logged = readFileSync(join(work, 'decisions.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { digest: string; cacheHit?: boolean });
    expect(logged.filter((e) => e.digest === img.cosign.digest).map((e) => e.cacheHit ?? false)).toEqual([false, true]);
  });

  it('a changed key file is a miss: after a key rotation the old signature is verified again, and denied', async () => {
    expect(await pull(img.rotated)).toMatchObject({ verdict: 'allow', cache: { status: 'miss' } });
    expect(await pull(img.rotated)).toMatchObject({ verdict: 'allow', cache: { status: 'hit' } });
    const original = readFileSync(join(work, 'release.pub'));
    writeFileSync(join(work, 'release.pub'), readFileSync(join(work, 'next.pub')));
    try {
      const rotated = await pull(img.rotated);
      expect(rotated).toMatchObject({ verdict: 'deny', cache: { status: 'miss' } });
      expect(rotated.reason).toMatch(/does not verify with the trusted ECDSA P-256 key/);
    } finally {
      writeFileSync(join(work, 'release.pub'), original);
    }
  });

  it('an expired certificate is a miss: the entry ends at its notAfter, and the fresh check denies', async () => {
    const first = await pull(img.notation);
    expect(first).toMatchObject({
      verdict: 'allow',
      cache: { status: 'miss', expiry: 'certificate', expiresAt: new Date(leafNotAfter).toISOString() },
    });
    if (Date.now() < leafNotAfter - 1000)
      expect(await pull(img.notation)).toMatchObject({ verdict: 'allow', cache: { status: 'hit' } });
    // Waiting for a certificate to expire is the one thing this test cannot do without the clock.
    await waitFor('the leaf certificate to expire', () => Date.now() > leafNotAfter + 1500, 40_000);
    const expired = await pull(img.notation);
    expect(expired).toMatchObject({ verdict: 'deny', cache: { status: 'miss' } });
    expect(expired.reason).toMatch(/expired/);
  }, 90_000);

  it(
    'a signature registry stopped after a verified pull: allowed only under staleIfError, ' + 'the outage named',
    async () => {
      writePolicy('1ms'); // every entry is expired at once: only staleIfError can still use it
      expect(await pull(img.stale)).toMatchObject({ verdict: 'allow', cache: { status: 'miss' } });
      expect(await pull(img.nostale)).toMatchObject({ verdict: 'allow', cache: { status: 'miss' } });
      await sigs.stop();
      const stale = await pull(img.stale);
      expect(stale).toMatchObject({ verdict: 'allow', rule: 'stale', cache: { status: 'stale' } });
      expect(stale.reason).toMatch(
        /^registry unreachable, allowed by staleIfError \(verified \d+s ago, window 3600s\): .*ECONNREFUSED/,
      );
      expect(stale.cache?.note).toMatch(/ECONNREFUSED/);
      const denied = await pull(img.nostale);
      expect(denied).toMatchObject({ verdict: 'deny', rule: 'nostale', code: 'REGISTRY_UNREACHABLE' });
      expect(await cri.imageStatus(img.nostale.ref)).toBeNull();
    },
  );
});

import { createPrivateKey, sign as cryptoSign } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Deadline } from '../../common/deadline.js';
import { DEFAULT_REVOCATION, type NotationStatementSpec } from '../../policy/notation/spec.js';
import { LEVELS, type Statement } from '../../policy/notation/trust-policy.js';
import type { OciDescriptor } from '../../registry/types.js';
import { memoryArtifact, subjectOf } from '../../../test/helpers/cosign.js';
import { MEDIA_TYPE_JWS } from './envelope.js';
import { clearTrustStoreCache } from './truststore.js';
import { createNotationVerifier, notationVerifier } from './verifier.js';
import { selfSigned } from '../../../test/helpers/pki.js';

/**
 * The payload binding (notation-go verifyIntegrity): the signed targetArtifact must equal the pulled
 * descriptor in digest, size AND mediaType. A genuine signature over the same digest with another
 * size or mediaType is not a signature of what is being pulled. In process, with a real ES256 JWS.
 */
const dir = mkdtempSync(join(tmpdir(), 'pg-binding-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const store = join(dir, 'truststore', 'x509', 'ca', 'acme');
mkdirSync(store, { recursive: true });
await selfSigned(join(dir, 'key.pem'), join(store, 'leaf.pem'), '/C=US/ST=WA/O=Acme/CN=acme-binding', [
  'basicConstraints=critical,CA:FALSE',
  'keyUsage=critical,digitalSignature',
  'extendedKeyUsage=codeSigning',
]);
const key = createPrivateKey(readFileSync(join(dir, 'key.pem')));
const certB64 = readFileSync(join(store, 'leaf.pem'), 'utf8').replace(/-----[^-]+-----|\s/g, '');

const MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const PULLED: OciDescriptor = { mediaType: MANIFEST, digest: `sha256:${'ab'.repeat(32)}`, size: 1234 };

const rfc3339 = (d: Date) => d.toISOString().replace(/\.\d+Z$/, 'Z');

function signedJws(target: OciDescriptor, extraHeader: Record<string, unknown> = {}): Buffer {
  const b64u = (s: string | Buffer) => Buffer.from(s).toString('base64url');
  const extraCrit = Object.keys(extraHeader).filter((k) => k === 'io.cncf.notary.expiry');
  const prot = b64u(
    JSON.stringify({
      alg: 'ES256',
      crit: ['io.cncf.notary.signingScheme', ...extraCrit],
      cty: 'application/vnd.cncf.notary.payload.v1+json',
      'io.cncf.notary.signingScheme': 'notary.x509',
      'io.cncf.notary.signingTime': rfc3339(new Date()),
      ...extraHeader,
    }),
  );
  const payload = b64u(JSON.stringify({ targetArtifact: target }));
  const sig = cryptoSign('sha256', Buffer.from(`${prot}.${payload}`), { key, dsaEncoding: 'ieee-p1363' });
  return Buffer.from(JSON.stringify({ payload, protected: prot, header: { x5c: [certB64] }, signature: b64u(sig) }));
}

const statement: Statement = {
  name: 'binding',
  registryScopes: ['*'],
  level: 'strict',
  enforcement: { ...LEVELS.strict, revocation: 'skip' },
  verifyTimestamp: 'always',
  trustStores: [{ type: 'ca', name: 'acme' }],
};
const spec: NotationStatementSpec = {
  resolved: 'notation',
  source: 'binding.test.ts',
  truststoreDir: join(dir, 'truststore'),
  statement,
  revocation: DEFAULT_REVOCATION,
};

async function verifySignedFor(
  target: OciDescriptor,
  verifier = notationVerifier,
  extraHeader: Record<string, unknown> = {},
) {
  clearTrustStoreCache();
  const art = memoryArtifact({
    class: 'notation',
    layers: [{ mediaType: MEDIA_TYPE_JWS, blob: signedJws(target, extraHeader) }],
  });
  const subject = { ...subjectOf('registry.test/repo', PULLED.digest), descriptor: PULLED };
  const deadline = new Deadline(20_000);
  try {
    return await verifier.verify({ name: 'n', kind: 'notation', spec }, subject, [art], deadline);
  } finally {
    deadline.dispose();
  }
}

describe('notation payload binding: digest, size and mediaType of the pulled descriptor', () => {
  it('a signature over exactly the pulled descriptor verifies (the control)', async () => {
    const r = await verifySignedFor(PULLED);
    expect(r.reason).toMatch(/verified/);
    expect(r.satisfied).toBe(true);
  });
  it.each([
    ['digest', { ...PULLED, digest: `sha256:${'cd'.repeat(32)}` }],
    ['size', { ...PULLED, size: PULLED.size + 1 }],
    ['mediaType', { ...PULLED, mediaType: 'application/vnd.oci.image.index.v1+json' }],
  ])('a genuine signature whose targetArtifact differs in %s fails integrity', async (_what, target) => {
    const r = await verifySignedFor(target);
    expect(r.satisfied).toBe(false);
    expect(r.signatures[0]!.checks[0]).toMatchObject({ check: 'integrity', result: 'fail', enforcement: 'enforced' });
    expect(r.reason).toMatch(/integrity failed: signature is for .* not the pulled/);
  });
});

describe('expiry with an injected clock: no waiting for certificates to lapse', () => {
  const DAY = 86_400_000;
  const at = (ms: number) => createNotationVerifier(() => new Date(Date.now() + ms));
  const failed = (r: Awaited<ReturnType<typeof verifySignedFor>>) =>
    r.signatures[0]!.checks.filter((c) => c.result === 'fail').map((c) => c.check);

  it('the 2-day signing certificate, judged 3 days on: the chain must be valid now, and is not', async () => {
    expect((await verifySignedFor(PULLED, at(DAY))).satisfied).toBe(true);
    const r = await verifySignedFor(PULLED, at(3 * DAY));
    expect(r.satisfied).toBe(false);
    expect(failed(r)).toEqual(['authenticTimestamp']);
    expect(r.reason).toMatch(/the chain must be valid now: certificate .*acme-binding expired at/);
  });

  it("the signer's io.cncf.notary.expiry, one hour ahead, judged two hours on: expired", async () => {
    const header = { 'io.cncf.notary.expiry': rfc3339(new Date(Date.now() + 3_600_000)) };
    expect((await verifySignedFor(PULLED, at(0), header)).satisfied).toBe(true);
    const r = await verifySignedFor(PULLED, at(7_200_000), header);
    expect(failed(r)).toEqual(['expiry']);
    expect(r.reason).toMatch(/expiry failed: signature expired at/);
  });
});

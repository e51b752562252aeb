import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { ASN1Obj } from '@sigstore/core';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeCrl, makeTsa, PkiServer, runAsync, TSA_EXT } from '../../../test/helpers/notation.js';
import { Pki, type Issued } from '../../../test/helpers/pki.js';
import { Deadline } from '../../common/deadline.js';
import { certificatesFromFile, parseCertificate, type Certificate } from './certificate.js';
import { MalformedInputError } from '../../common/malformed.js';
import { onlyFormatErrors } from '../../../test/helpers/errors.js';
import { checkRevocation, clearCrlMemoryCache, DEFAULT_REVOCATION, parseCrl } from './revocation.js';
import { parseGeneralizedTime, verifyTimestampToken } from './timestamp.js';

const cert = (i: Issued): Certificate => parseCertificate(certificatesFromFile(readFileSync(i.cert))[0]!);

let pki: Pki;
let srv: PkiServer;
let hang: Server;
let hangPort = 0;
let tsaRoot: Issued;
let otherRoot: Issued;
const signature = randomBytes(96); // stands in for an envelope's signature bytes
let token: Buffer;
let preciseToken: Buffer;
let tstInfoRange: [number, number];
let caIssued: Issued;
let leafIssued: Issued;
let revokedIssued: Issued;
let crlDer: Buffer;
let criticalExtCrl: Buffer;

async function stamp(tsaConfig: string, data: Buffer, hash = 'sha256'): Promise<Buffer> {
  const d = join(pki.dir, `q-${Math.random().toString(36).slice(2)}`);
  writeFileSync(`${d}.data`, data);
  let r = await runAsync('openssl', ['ts', '-query', '-data', `${d}.data`, `-${hash}`, '-cert', '-out', `${d}.tsq`]);
  if (r.status !== 0) throw new Error(r.stderr);
  r = await runAsync('openssl', [
    'ts',
    '-reply',
    '-config',
    tsaConfig,
    '-queryfile',
    `${d}.tsq`,
    '-token_out',
    '-out',
    `${d}.tok`,
  ]);
  if (r.status !== 0) throw new Error(r.stderr);
  return readFileSync(`${d}.tok`);
}

beforeAll(async () => {
  pki = Pki.create();
  tsaRoot = await pki.issue('tsa-root', { kind: 'p256', subject: '/O=Acme/CN=TSA Root', ca: true });
  otherRoot = await pki.issue('other-root', { kind: 'p256', subject: '/O=Acme/CN=TSA Root', ca: true });
  const signer = await pki.issue('tsa', { kind: 'rsa2048', subject: '/O=Acme/CN=TSA', issuer: tsaRoot, ext: TSA_EXT });
  token = await stamp(makeTsa(pki, 'plain', signer, [signer, tsaRoot]).config, signature);
  preciseToken = await stamp(
    makeTsa(pki, 'precise', signer, [signer, tsaRoot], { precisionDigits: 6 }).config,
    signature,
    'sha512',
  );
  // Where the TSTInfo sits in the token: every byte of it is covered by the TSA's signature.
  const ci = ASN1Obj.parseBuffer(token as Buffer<ArrayBuffer>);
  const tst = ci.subs[1]!.subs[0]!.subs[2]!.subs[1]!.subs[0]!.value;
  const at = token.indexOf(tst);
  tstInfoRange = [at, at + tst.length];

  caIssued = await pki.issue('ca', { kind: 'p256', subject: '/O=Acme/CN=CRL CA', ca: true });
  srv = new PkiServer(pki.dir);
  await srv.start();
  leafIssued = await pki.issue('leaf', {
    kind: 'p256',
    subject: '/O=Acme/CN=leaf',
    issuer: caIssued,
    extraExt: `crlDistributionPoints=URI:${srv.url}/crl/ca.crl`,
  });
  revokedIssued = await pki.issue('revoked', {
    kind: 'p256',
    subject: '/O=Acme/CN=revoked',
    issuer: caIssued,
    extraExt: `crlDistributionPoints=URI:${srv.url}/crl/ca.crl`,
  });
  crlDer = await makeCrl(pki, 'ca', caIssued, [revokedIssued]);
  criticalExtCrl = await makeCrl(pki, 'critical', caIssued, [], {
    crlExt: '1.3.6.1.4.1.57264.99.7=critical,ASN1:NULL',
  });
  srv.setCrl('ca.crl', crlDer);
  hang = createServer(() => {
    /* never answers */
  });
  await new Promise<void>((r) => hang.listen(0, '127.0.0.1', r));
  hangPort = (hang.address() as { port: number }).port;
}, 60_000);

afterAll(async () => {
  await srv?.stop();
  hang?.closeAllConnections();
  await new Promise<void>((r) => (hang ? hang.close(() => r()) : r()));
  pki?.dispose();
});

describe('RFC 3161 timestamp countersignature', () => {
  it('verifies a real openssl TSA token against its root and returns the TSA chain', () => {
    const ts = verifyTimestampToken(token, signature, [cert(tsaRoot)]);
    expect(ts.latest.getTime() - ts.earliest.getTime()).toBe(2000); // accuracy secs:1 either side
    expect(Math.abs(ts.earliest.getTime() + 1000 - Date.now())).toBeLessThan(60_000);
    expect(ts.tsa).toMatch(/CN=TSA/);
    expect(ts.chain.map((c) => c.subjectText)).toEqual([
      expect.stringMatching(/CN=TSA$/),
      expect.stringMatching(/CN=TSA Root/),
    ]);
  });

  it('reads a genTime with fractional seconds (a SHA-512 imprint, too)', () => {
    const ts = verifyTimestampToken(preciseToken, signature, [cert(tsaRoot)]);
    expect(ts.earliest.getTime() % 1000).not.toBe(0); // with 6 digits, a whole second is a one-in-a-million chance
  });

  it('parses GeneralizedTime as RFC 3161 allows it, and nothing else', () => {
    const g = (s: string) => parseGeneralizedTime(Buffer.from(s));
    expect(g('20260102030405Z').toISOString()).toBe('2026-01-02T03:04:05.000Z');
    expect(g('20260102030405.5Z').toISOString()).toBe('2026-01-02T03:04:05.500Z');
    expect(g('20260102030405.123456789Z').toISOString()).toBe('2026-01-02T03:04:05.123Z');
    for (const bad of [
      '20260102030405',
      '20260102030405+0100',
      '2026010203040Z',
      '20261302030405Z',
      '20260102030405.Z',
      '260102030405Z',
      '',
    ]) {
      expect(() => g(bad), bad).toThrow(MalformedInputError);
    }
  });

  it('rejects a token over other bytes, and a TSA that does not chain to the tsa store', () => {
    expect(() => verifyTimestampToken(token, Buffer.concat([signature, Buffer.from([0])]), [cert(tsaRoot)])).toThrow(
      /message imprint mismatch/,
    );
    expect(() => verifyTimestampToken(token, signature, [cert(otherRoot)])).toThrow(
      /does not chain to a certificate in the tsa trust store/,
    );
    expect(() => verifyTimestampToken(token, signature, [])).toThrow(MalformedInputError);
  });

  it('property: arbitrary bytes are a format error, never a crash', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (b) =>
        onlyFormatErrors(() => verifyTimestampToken(Buffer.from(b), signature, [cert(tsaRoot)])),
      ),
      { numRuns: 500 },
    );
  });

  it('property: a truncated token is always rejected', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: token.length - 1 }), (n) => {
        expect(() => verifyTimestampToken(token.subarray(0, n), signature, [cert(tsaRoot)])).toThrow(
          MalformedInputError,
        );
      }),
      { numRuns: 300 },
    );
  });

  it('property: a flipped byte never crashes, and anywhere in the TSTInfo it is rejected', () => {
    const roots = [cert(tsaRoot)];
    fc.assert(
      fc.property(fc.integer({ min: 0, max: token.length - 1 }), fc.integer({ min: 1, max: 255 }), (i, x) => {
        const t = Buffer.from(token);
        t[i]! ^= x;
        if (i >= tstInfoRange[0] && i < tstInfoRange[1])
          expect(() => verifyTimestampToken(t, signature, roots)).toThrow(MalformedInputError);
        else onlyFormatErrors(() => verifyTimestampToken(t, signature, roots));
      }),
      { numRuns: 1500 },
    );
  });
});

describe('CRL parsing and checking', () => {
  it('parses a real openssl CRL', () => {
    const crl = parseCrl(crlDer);
    expect(crl.revokedSerials.has(cert(revokedIssued).serial.toString('hex'))).toBe(true);
    expect(crl.revokedSerials.has(cert(leafIssued).serial.toString('hex'))).toBe(false);
    expect(crl.nextUpdate!.getTime()).toBeGreaterThan(Date.now());
    expect(crl.issuerDer.equals(cert(caIssued).subjectDer)).toBe(true);
    expect(crl.unsupportedCritical).toEqual([]);
    expect(parseCrl(criticalExtCrl).unsupportedCritical).toEqual(['1.3.6.1.4.1.57264.99.7']);
  });

  it('property: arbitrary bytes, truncations and flipped bytes are format errors, never a crash', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), (b) => onlyFormatErrors(() => parseCrl(Buffer.from(b)))),
      { numRuns: 500 },
    );
    fc.assert(
      fc.property(fc.integer({ min: 0, max: crlDer.length - 1 }), (n) => {
        expect(() => parseCrl(crlDer.subarray(0, n))).toThrow(MalformedInputError);
      }),
      { numRuns: 200 },
    );
    fc.assert(
      fc.property(fc.integer({ min: 0, max: crlDer.length - 1 }), fc.integer({ min: 1, max: 255 }), (i, x) => {
        const b = Buffer.from(crlDer);
        b[i]! ^= x;
        onlyFormatErrors(() => parseCrl(b));
      }),
      { numRuns: 1000 },
    );
  });

  async function check(leaf: Issued, settings = DEFAULT_REVOCATION, d = new Deadline(10_000)) {
    clearCrlMemoryCache();
    try {
      return await checkRevocation([cert(leaf), cert(caIssued)], settings, d);
    } finally {
      d.dispose();
    }
  }

  it('revoked, not revoked', async () => {
    srv.setCrl('ca.crl', crlDer);
    expect(await check(revokedIssued)).toMatchObject({ result: 'revoked' });
    expect(await check(leafIssued)).toMatchObject({ result: 'ok' });
  });

  it(
    'a garbage body, an HTTP error, an oversized CRL, an unsupported critical extension: ' + 'unknown, and not cached',
    async () => {
      srv.setCrl('ca.crl', randomBytes(300));
      expect(await check(leafIssued)).toMatchObject({
        result: 'unknown',
        detail: expect.stringMatching(/malformed CRL/),
      });
      srv.setCrl('ca.crl', criticalExtCrl);
      expect(await check(leafIssued)).toMatchObject({
        result: 'unknown',
        detail: expect.stringMatching(/unsupported critical extension/),
      });
      srv.setCrl('ca.crl', crlDer);
      expect(await check(leafIssued, { ...DEFAULT_REVOCATION, maxCrlBytes: 100 })).toMatchObject({
        result: 'unknown',
        detail: expect.stringMatching(/larger than 100 bytes/),
      });
      // The bad answers above were not kept: the good CRL is fetched and used now, without clearing anything.
      const d = new Deadline(10_000);
      try {
        expect(await checkRevocation([cert(revokedIssued), cert(caIssued)], DEFAULT_REVOCATION, d)).toMatchObject({
          result: 'revoked',
        });
      } finally {
        d.dispose();
      }
      srv.setCrl('ca.crl', Buffer.alloc(0));
      const leaf404 = await pki.issue('leaf404', {
        kind: 'p256',
        subject: '/O=Acme/CN=leaf404',
        issuer: caIssued,
        extraExt: `crlDistributionPoints=URI:${srv.url}/crl/missing.crl`,
      });
      expect(await check(leaf404)).toMatchObject({ result: 'unknown', detail: expect.stringMatching(/HTTP 404/) });
      srv.setCrl('ca.crl', crlDer);
    },
  );

  it('a CRL server that never answers is unknown within the configured timeout', async () => {
    const slow = await pki.issue('slow', {
      kind: 'p256',
      subject: '/O=Acme/CN=slow',
      issuer: caIssued,
      extraExt: `crlDistributionPoints=URI:http://127.0.0.1:${hangPort}/ca.crl`,
    });
    // Deadline-based: the 300 ms per-request timeout, not the 10 s run deadline, ended the wait.
    const run = new Deadline(10_000);
    expect(await check(slow, { ...DEFAULT_REVOCATION, timeoutMs: 300 }, run)).toMatchObject({ result: 'unknown' });
    expect(run.signal.aborted).toBe(false);
  });

  it(
    'only non-HTTP locations, or an OCSP responder that is down with no CRL: unknown; ' +
      'no endpoints at all: nothing to check',
    async () => {
      const ldap = await pki.issue('ldap', {
        kind: 'p256',
        subject: '/O=Acme/CN=ldap',
        issuer: caIssued,
        extraExt: 'crlDistributionPoints=URI:ldap://ldap.example/cn=CRL',
      });
      expect(await check(ldap)).toMatchObject({ result: 'unknown', detail: expect.stringMatching(/only http/) });
      const ocsp = await pki.issue('ocsp', {
        kind: 'p256',
        subject: '/O=Acme/CN=ocsp',
        issuer: caIssued,
        extraExt: 'authorityInfoAccess=OCSP;URI:http://127.0.0.1:9/',
      });
      expect(await check(ocsp)).toMatchObject({ result: 'unknown', detail: expect.stringMatching(/OCSP/) });
      const plain = await pki.issue('plain', { kind: 'p256', subject: '/O=Acme/CN=plain', issuer: caIssued });
      expect(await check(plain)).toMatchObject({ result: 'ok', detail: expect.stringMatching(/nothing to check/) });
    },
  );
});

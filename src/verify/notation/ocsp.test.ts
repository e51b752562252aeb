import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { ASN1Obj } from '@sigstore/core';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  makeCrl,
  OCSP_SIGNER_EXT,
  ocspIndex,
  ocspRespond,
  PkiServer,
  runAsync,
  type OcspResponderOpts,
} from '../../../test/helpers/notation.js';
import { Pki, type Issued } from '../../../test/helpers/pki.js';
import { freePort } from '../../../test/helpers/proc.js';
import { Deadline } from '../../common/deadline.js';
import { MalformedInputError } from '../../common/malformed.js';
import { onlyFormatErrors } from '../../../test/helpers/errors.js';
import { certificatesFromFile, parseCertificate, type Certificate } from './certificate.js';
import { buildOcspRequest, clearOcspMemoryCache, der, parseOcspResponse, verifyOcspResponse } from './ocsp.js';
import { checkRevocation, clearCrlMemoryCache, DEFAULT_REVOCATION } from './revocation.js';

const cert = (i: Issued): Certificate => parseCertificate(certificatesFromFile(readFileSync(i.cert))[0]!);

let pki: Pki;
let srv: PkiServer;
let big: Server;
let bigPort = 0;
let hang: Server;
let hangPort = 0;
let closedPort = 0;
let ca: Issued;
let evilCa: Issued;
let delegated: Issued;
let noEku: Issued;
let evilDelegated: Issued;
let leaf: Issued;
let revoked: Issued;
let stranger: Issued;
let index: string;
let good: Buffer;
let tbsRange: [number, number];

const opts = (signer: Issued, extra?: string[]): OcspResponderOpts => ({ index, ca, signer, extra });
const respond = (signer: Issued, about: Issued = leaf, extra?: string[]) =>
  ocspRespond(opts(signer, extra), buildOcspRequest(cert(about), cert(ca)), pki.dir);
const verify = (resp: Buffer, about: Issued = leaf, now = new Date()) =>
  verifyOcspResponse(resp, cert(about), cert(ca), now);

beforeAll(async () => {
  pki = Pki.create();
  srv = new PkiServer(pki.dir);
  await srv.start();
  closedPort = await freePort();
  ca = await pki.issue('ca', { kind: 'p256', subject: '/O=Acme/CN=OCSP CA', ca: true });
  evilCa = await pki.issue('evil-ca', { kind: 'p256', subject: '/O=Acme/CN=OCSP CA', ca: true });
  delegated = await pki.issue('responder', {
    kind: 'p256',
    subject: '/O=Acme/CN=OCSP Responder',
    issuer: ca,
    ext: OCSP_SIGNER_EXT,
  });
  noEku = await pki.issue('responder-no-eku', {
    kind: 'p256',
    subject: '/O=Acme/CN=OCSP Responder',
    issuer: ca,
    ext: 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature',
  });
  evilDelegated = await pki.issue('evil-responder', {
    kind: 'p256',
    subject: '/O=Acme/CN=OCSP Responder',
    issuer: evilCa,
    ext: OCSP_SIGNER_EXT,
  });
  leaf = await pki.issue('leaf', { kind: 'p256', subject: '/O=Acme/CN=leaf', issuer: ca });
  revoked = await pki.issue('revoked', { kind: 'p256', subject: '/O=Acme/CN=revoked', issuer: ca });
  stranger = await pki.issue('stranger', { kind: 'p256', subject: '/O=Acme/CN=stranger', issuer: ca });
  index = ocspIndex(pki, 'ca', [{ issued: leaf }, { issued: revoked, revoked: true }]);
  good = await respond(ca);
  const tbs = Buffer.from(
    ASN1Obj.parseBuffer(
      ASN1Obj.parseBuffer(good as Buffer<ArrayBuffer>).subs[1]!.subs[0]!.subs[1]!.value as Buffer<ArrayBuffer>,
    ).subs[0]!.toDER(),
  );
  const at = good.indexOf(tbs);
  tbsRange = [at, at + tbs.length];

  big = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/ocsp-response' });
    res.end(Buffer.alloc(30_000, 0x30));
  });
  await new Promise<void>((r) => big.listen(0, '127.0.0.1', r));
  bigPort = (big.address() as { port: number }).port;
  hang = createServer(() => {
    /* never answers */
  });
  await new Promise<void>((r) => hang.listen(0, '127.0.0.1', r));
  hangPort = (hang.address() as { port: number }).port;
}, 60_000);

afterAll(async () => {
  await srv?.stop();
  for (const s of [big, hang]) {
    s?.closeAllConnections();
    await new Promise<void>((r) => (s ? s.close(() => r()) : r()));
  }
  pki?.dispose();
});

describe('OCSP request', () => {
  it('DER encoder basics', () => {
    expect(der.oid('1.2.840.113549.1.1.11').toString('hex')).toBe('06092a864886f70d01010b');
    expect(der.oid('2.16.840.1.101.3.4.2.1').toString('hex')).toBe('0609608648016503040201');
    expect(der.octetString(Buffer.alloc(200)).subarray(0, 3).toString('hex')).toBe('0481c8');
    expect(der.sequence(Buffer.alloc(300)).subarray(0, 4).toString('hex')).toBe('3082012c');
    expect(der.null().toString('hex')).toBe('0500');
    expect(der.integer(Buffer.from([0x00, 0x80])).toString('hex')).toBe('02020080');
  });

  it('is a request openssl reads: SHA-1 CertID with the leaf serial, as notation sends', async () => {
    const f = join(pki.dir, 'req.der');
    writeFileSync(f, buildOcspRequest(cert(leaf), cert(ca)));
    const r = await runAsync('openssl', ['ocsp', '-reqin', f, '-req_text']);
    expect(r.status, r.stderr).toBe(0);
    const text = r.stdout.toString();
    expect(text).toMatch(/Hash Algorithm: sha1/);
    expect(text.replace(/\s/g, '')).toContain(
      `SerialNumber:${cert(leaf)
        .serial.toString('hex')
        .toUpperCase()
        .replace(/^(00)+/, '')}`,
    );
  });
});

describe('OCSP response verification (real openssl ocsp responses)', () => {
  it('good, revoked and unknown, signed by the issuer', async () => {
    expect(verify(good)).toMatchObject({ status: 'good', signer: expect.stringMatching(/CN=OCSP CA/) });
    const r = verify(await respond(ca, revoked), revoked);
    expect(r.status).toBe('revoked');
    expect(Math.abs(r.revokedAt!.getTime() - (Date.now() - 3600_000))).toBeLessThan(120_000);
    expect(verify(await respond(ca, stranger), stranger)).toMatchObject({ status: 'unknown' });
  });

  it('a delegated responder needs the issuer as its issuer and the id-kp-OCSPSigning EKU', async () => {
    expect(verify(await respond(delegated))).toMatchObject({
      status: 'good',
      signer: expect.stringMatching(/CN=OCSP Responder/),
    });
  });

  it(
    'refuses a responder without the EKU, one issued by another CA, a look-alike issuer key, ' +
      'and a responderID-only signer',
    async () => {
      expect(() => verify(respondSync.noEku)).toThrow(/lacks the id-kp-OCSPSigning/);
      expect(() => verify(respondSync.evilDelegated)).toThrow(/is not issued by/);
      expect(() => verify(respondSync.evilCa)).toThrow(/signature does not verify with the key of/);
      expect(() => verify(respondSync.delegatedNoCerts)).toThrow(/signed by neither/);
    },
  );

  it('refuses SHA-1 signatures, answers about another certificate, and stale or future responses', async () => {
    const sha1 = await respond(ca, leaf, ['-ndays', '1', '-rmd', 'sha1']);
    expect(() => verify(sha1)).toThrow(/unsupported signature hash sha1/);
    expect(() => verify(good, revoked)).toThrow(/no answer for serial/);
    const noNext = await respond(ca, leaf, []);
    expect(() => verify(noNext)).toThrow(/no nextUpdate/);
    expect(() => verify(good, leaf, new Date(Date.now() + 2 * 86400_000))).toThrow(/expired at/);
    expect(() => verify(good, leaf, new Date(Date.now() - 86400_000))).toThrow(/in the future/);
  });

  it('an unsuccessful responseStatus is an error that names it', () => {
    expect(() => verify(Buffer.from('30030a0101', 'hex'))).toThrow(/responder answered malformedRequest/);
    expect(() => verify(Buffer.from('30030a0106', 'hex'))).toThrow(/responder answered unauthorized/);
    expect(parseOcspResponse(Buffer.from('30030a0103', 'hex')).responseStatus).toBe(3);
  });

  it('property: arbitrary bytes and truncations are format errors, never a crash', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (b) => onlyFormatErrors(() => verify(Buffer.from(b)))),
      { numRuns: 500 },
    );
    fc.assert(
      fc.property(fc.integer({ min: 0, max: good.length - 1 }), (n) => {
        expect(() => verify(good.subarray(0, n))).toThrow(MalformedInputError);
      }),
      { numRuns: 300 },
    );
  });

  it('property: a flipped byte never crashes, and anywhere in tbsResponseData it is rejected', () => {
    const l = cert(leaf);
    const c = cert(ca);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: good.length - 1 }), fc.integer({ min: 1, max: 255 }), (i, x) => {
        const b = Buffer.from(good);
        b[i]! ^= x;
        if (i >= tbsRange[0] && i < tbsRange[1])
          expect(() => verifyOcspResponse(b, l, c, new Date())).toThrow(MalformedInputError);
        else onlyFormatErrors(() => verifyOcspResponse(b, l, c, new Date()));
      }),
      { numRuns: 1500 },
    );
  });

  it('property: structured garbage inside a successful envelope is a format error', () => {
    const wrap = (inner: Uint8Array) => {
      const basic = Buffer.from(inner);
      const rb = der.sequence(der.oid('1.3.6.1.5.5.7.48.1.1'), der.octetString(basic));
      const explicit0 = der.octetString(rb);
      explicit0[0] = 0xa0; // same length encoding, [0] EXPLICIT instead of OCTET STRING
      return der.sequence(Buffer.from('0a0100', 'hex'), explicit0);
    };
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (b) =>
        onlyFormatErrors(() =>
          verify(
            wrap(Buffer.concat([Buffer.from([0x30, b.length < 128 ? b.length : 0]), Buffer.from(b).subarray(0, 127)])),
          ),
        ),
      ),
      { numRuns: 500 },
    );
  });
});

/** Responses made once (openssl is asynchronous; the sync tests above read them from here). */
const respondSync: Record<'noEku' | 'evilDelegated' | 'evilCa' | 'delegatedNoCerts', Buffer> = {} as never;
beforeAll(async () => {
  respondSync.noEku = await respond(noEku);
  respondSync.evilDelegated = await respond(evilDelegated);
  respondSync.evilCa = await respond(evilCa);
  respondSync.delegatedNoCerts = await respond(delegated, leaf, ['-ndays', '1', '-resp_no_certs']);
}, 60_000);

describe('checkRevocation with OCSP (notation-core-go order: OCSP, then CRL when OCSP cannot decide)', () => {
  let n = 0;
  const issue = (o: { ocsp?: string[]; crl?: string }) => {
    const name = `w${n++}`;
    return pki.issue(name, {
      kind: 'p256',
      subject: `/O=Acme/CN=${name}`,
      issuer: ca,
      ocsp: o.ocsp,
      extraExt: o.crl ? `crlDistributionPoints=URI:${o.crl}` : undefined,
    });
  };
  async function check(i: Issued, settings = DEFAULT_REVOCATION, d = new Deadline(10_000)) {
    try {
      return await checkRevocation([cert(i), cert(ca)], settings, d);
    } finally {
      d.dispose();
    }
  }
  let url: string;
  let down: string;
  let crlUrl: string;
  const leaves = {} as Record<
    | 'good'
    | 'revoked'
    | 'unknown'
    | 'unknownCrl'
    | 'down'
    | 'downCrlOk'
    | 'downCrlRevoked'
    | 'secondResponder'
    | 'ldap'
    | 'big'
    | 'hang'
    | 'revokedButCrlOk',
    Issued
  >;

  beforeAll(async () => {
    url = `${srv.url}/ocsp/ca`;
    down = `http://127.0.0.1:${closedPort}/`;
    crlUrl = `${srv.url}/crl/ca.crl`;
    leaves.good = await issue({ ocsp: [url] });
    leaves.revoked = await issue({ ocsp: [url] });
    leaves.unknown = await issue({ ocsp: [url] });
    leaves.unknownCrl = await issue({ ocsp: [url], crl: crlUrl });
    leaves.down = await issue({ ocsp: [down] });
    leaves.downCrlOk = await issue({ ocsp: [down], crl: crlUrl });
    leaves.downCrlRevoked = await issue({ ocsp: [down], crl: crlUrl });
    leaves.secondResponder = await issue({ ocsp: [down, url] });
    leaves.ldap = await issue({ ocsp: ['ldap://ldap.example/ocsp'] });
    leaves.big = await issue({ ocsp: [`http://127.0.0.1:${bigPort}/`] });
    leaves.hang = await issue({ ocsp: [`http://127.0.0.1:${hangPort}/`] });
    leaves.revokedButCrlOk = await issue({ ocsp: [url], crl: crlUrl });
    const idx = ocspIndex(pki, 'wiring', [
      { issued: leaves.good },
      { issued: leaves.revoked, revoked: true },
      { issued: leaves.secondResponder },
      { issued: leaves.revokedButCrlOk, revoked: true },
    ]);
    srv.setOcsp('ca', { index: idx, ca, signer: ca });
    srv.setCrl('ca.crl', await makeCrl(pki, 'wiring', ca, [leaves.downCrlRevoked]));
  }, 60_000);

  it('good and revoked answers are final', async () => {
    clearOcspMemoryCache();
    expect(await check(leaves.good)).toMatchObject({
      result: 'ok',
      detail: 'not revoked (1 certificate(s) checked by OCSP)',
    });
    expect(await check(leaves.revoked)).toMatchObject({
      result: 'revoked',
      detail: expect.stringMatching(
        new RegExp(
          /is revoked \(revoked at .* according to OCSP responder http:\/\/127\.0\.0\.1:\d+\/ocsp\/ca, /.source +
            /signed by .*CN=OCSP CA\)/.source,
        ),
      ),
    });
    // Revoked by OCSP, not listed in the CRL: OCSP's answer stands (no fallback on a definitive answer).
    expect(await check(leaves.revokedButCrlOk)).toMatchObject({ result: 'revoked' });
  });

  it('caches good and revoked answers in memory', async () => {
    clearOcspMemoryCache();
    const before = srv.count('/ocsp/ca');
    expect((await check(leaves.good)).result).toBe('ok');
    expect((await check(leaves.good)).result).toBe('ok');
    expect((await check(leaves.revoked)).result).toBe('revoked');
    expect((await check(leaves.revoked)).result).toBe('revoked');
    expect(srv.count('/ocsp/ca')).toBe(before + 2);
    clearOcspMemoryCache();
    expect((await check(leaves.good)).result).toBe('ok');
    expect(srv.count('/ocsp/ca')).toBe(before + 3);
  });

  it(
    '"unknown" from the responder: unknown without a CRL, ' + 'the CRL decides with one (as notation-core-go)',
    async () => {
      expect(await check(leaves.unknown)).toMatchObject({
        result: 'unknown',
        detail: expect.stringMatching(/does not know the certificate/),
      });
      expect(await check(leaves.unknownCrl)).toMatchObject({
        result: 'ok',
        detail: expect.stringMatching(/checked by CRL/),
      });
    },
  );

  it('a responder that is down: unknown without a CRL; with one, the CRL decides', async () => {
    clearCrlMemoryCache();
    expect(await check(leaves.down)).toMatchObject({
      result: 'unknown',
      detail: expect.stringMatching(/OCSP failed: http:\/\/127\.0\.0\.1:\d+\/: fetch failed/),
    });
    expect(await check(leaves.downCrlOk)).toMatchObject({
      result: 'ok',
      detail: expect.stringMatching(/checked by CRL/),
    });
    expect(await check(leaves.downCrlRevoked)).toMatchObject({
      result: 'revoked',
      detail: expect.stringMatching(/listed in .*ca\.crl/),
    });
  });

  it('responders are tried in order: an error moves on to the next one', async () => {
    expect(await check(leaves.secondResponder)).toMatchObject({
      result: 'ok',
      detail: expect.stringMatching(/checked by OCSP/),
    });
  });

  it(
    'a non-HTTP responder, an oversized answer, a responder that never answers: ' + 'unknown, within the timeout',
    async () => {
      expect(await check(leaves.ldap)).toMatchObject({
        result: 'unknown',
        detail: expect.stringMatching(/only http:\/\/ OCSP responders/),
      });
      expect(await check(leaves.big)).toMatchObject({
        result: 'unknown',
        detail: expect.stringMatching(/larger than 20480 bytes/),
      });
      // Deadline-based: the 300 ms per-request timeout, not the 10 s run deadline, ended the wait.
      const run = new Deadline(10_000);
      expect(await check(leaves.hang, { ...DEFAULT_REVOCATION, timeoutMs: 300 }, run)).toMatchObject({
        result: 'unknown',
      });
      expect(run.signal.aborted).toBe(false);
    },
  );
});

import { constants, createHash, verify as cryptoVerify } from 'node:crypto';
import { ASN1Obj } from '@sigstore/core';
import { encodedLength, rawDer } from './der.js';
import type { Deadline } from '../../common/deadline.js';
import { guard, MalformedInputError } from '../../common/malformed.js';
import type { RevocationSettings } from '../../policy/notation/spec.js';
import {
  hashFromOid,
  hashOfAlgorithmIdentifier,
  isIssuedBy,
  OID,
  parseCertificate,
  RSA_PSS_OID,
  type Certificate,
} from './certificate.js';
import { parseGeneralizedTime } from './timestamp.js';
import { readCapped } from './http-body.js';

/**
 * OCSP (RFC 6960) for notation's revocation check, modelled on notation-core-go
 * (revocation/internal/ocsp): each http:// responder in the certificate's authorityInfoAccess is asked in
 * turn by POST; the first verified `good` / `revoked` / `unknown` answer is final for OCSP, an error moves
 * on to the next responder, and when all fail the status is unknown (the caller then falls back to CRL).
 *
 * Like notation: the CertID uses SHA-1 (the only hash every public responder answers), the response is
 * capped at 20 KiB, and a response without nextUpdate, or past it, is expired. Stricter than notation
 * (which relies on golang.org/x/crypto/ocsp): the signer must be named by the responderID and be either
 * the issuer or a certificate the issuer issued with the id-kp-OCSPSigning EKU, valid now (RFC 6960
 * section 4.2.2.2); the CertID must match issuer name, issuer key and serial; thisUpdate may not be in the
 * future (beyond a small skew); SHA-1/MD5 response signatures are refused (the Notary Project
 * algorithm rules). Not implemented, as in notation: id-pkix-ocsp-nocheck / CRL checks of the responder
 * certificate, and the invalidityDate-vs-signing-time exception.
 */

export const OCSP_MAX_RESPONSE_BYTES = 20480;
/** How far a responder's thisUpdate may be ahead of our clock. */
export const OCSP_CLOCK_SKEW_MS = 5 * 60_000;

const OID_PKIX_OCSP_BASIC = '1.3.6.1.5.5.7.48.1.1';
const HASH_OID: Record<string, string> = { sha1: '1.3.14.3.2.26', sha256: '2.16.840.1.101.3.4.2.1' };
const RESPONSE_STATUS = [
  'successful',
  'malformedRequest',
  'internalError',
  'tryLater',
  '(unused status 4)',
  'sigRequired',
  'unauthorized',
];

// ---------------------------------------------------------------------------------------------------
// A minimal DER encoder: just what an OCSPRequest needs.

function tlv(tag: number, content: Buffer): Buffer {
  const n = content.length;
  let len: number[];
  if (n < 0x80) len = [n];
  else {
    const bytes: number[] = [];
    for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
    len = [0x80 | bytes.length, ...bytes];
  }
  return Buffer.concat([Buffer.from([tag, ...len]), content]);
}

export const der = {
  sequence: (...items: Buffer[]): Buffer => tlv(0x30, Buffer.concat(items)),
  octetString: (b: Buffer): Buffer => tlv(0x04, b),
  /** `content` is the two's-complement body (a certificate's serial as it was encoded). */
  integer: (content: Buffer): Buffer => tlv(0x02, content.length ? content : Buffer.from([0])),
  null: (): Buffer => Buffer.from([0x05, 0x00]),
  oid: (dotted: string): Buffer => {
    const arcs = dotted.split('.').map((a) => BigInt(a));
    if (arcs.length < 2) throw new Error(`bad OID ${dotted}`);
    const out: number[] = [];
    const push = (v: bigint) => {
      const chunk: number[] = [Number(v & 0x7fn)];
      for (v >>= 7n; v > 0n; v >>= 7n) chunk.unshift(Number(v & 0x7fn) | 0x80);
      out.push(...chunk);
    };
    push(arcs[0]! * 40n + arcs[1]!);
    for (const a of arcs.slice(2)) push(a);
    return tlv(0x06, Buffer.from(out));
  },
};

// ---------------------------------------------------------------------------------------------------
// CertID and the request.

/** The subjectPublicKey BIT STRING's bits (without the unused-bits byte): what issuerKeyHash hashes. */
export function publicKeyBits(cert: Certificate): Buffer {
  return guard('malformed certificate', () => {
    const tbs = ASN1Obj.parseBuffer(cert.der as Buffer<ArrayBuffer>).subs[0]!;
    const off = tbs.subs[0]!.tag.isContextSpecific(0) ? 1 : 0;
    const bits = tbs.subs[off + 5]!.subs[1]!;
    if (!bits.tag.isBitString())
      throw new MalformedInputError('malformed certificate: subjectPublicKey is not a BIT STRING');
    return bits.value.subarray(1);
  });
}

export function buildOcspRequest(cert: Certificate, issuer: Certificate, hash: 'sha1' | 'sha256' = 'sha1'): Buffer {
  const h = (b: Buffer) => createHash(hash).update(b).digest();
  const certId = der.sequence(
    der.sequence(der.oid(HASH_OID[hash]!), der.null()),
    der.octetString(h(issuer.subjectDer)),
    der.octetString(h(publicKeyBits(issuer))),
    der.integer(cert.serial),
  );
  // OCSPRequest { TBSRequest { requestList { Request { CertID } } } }
  return der.sequence(der.sequence(der.sequence(der.sequence(certId))));
}

// ---------------------------------------------------------------------------------------------------
// The response.

export interface SingleResponse {
  readonly hashOid: string;
  readonly issuerNameHash: Buffer;
  readonly issuerKeyHash: Buffer;
  readonly serial: Buffer;
  readonly status: 'good' | 'revoked' | 'unknown';
  readonly revokedAt?: Date;
  readonly thisUpdate: Date;
  readonly nextUpdate?: Date;
  readonly criticalExtensions: readonly string[];
}

export interface OcspResponse {
  /** RFC 6960 OCSPResponseStatus; only 0 (successful) carries a response. */
  readonly responseStatus: number;
  readonly basic?: {
    readonly tbsDer: Buffer;
    readonly responderId: { readonly byName: Buffer } | { readonly byKey: Buffer };
    readonly producedAt: Date;
    readonly responses: readonly SingleResponse[];
    readonly sigHash: string;
    readonly sigAlgOid: string;
    readonly signature: Buffer;
    readonly certs: readonly Buffer[];
  };
}

function time(obj: ASN1Obj | undefined, what: string): Date {
  if (!obj?.tag.isGeneralizedTime())
    throw new MalformedInputError(`malformed OCSP response: ${what} is not a GeneralizedTime`);
  try {
    return parseGeneralizedTime(obj.value);
  } catch {
    throw new MalformedInputError(`malformed OCSP response: ${what} is not a UTC GeneralizedTime`);
  }
}

function need(cond: unknown, what: string): asserts cond {
  if (!cond) throw new MalformedInputError(`malformed OCSP response: ${what}`);
}

/** Parses an OCSPResponse (DER only: the bytes must re-encode exactly). Throws MalformedInputError. */
export function parseOcspResponse(input: Buffer): OcspResponse {
  return guard('malformed OCSP response', () => {
    need(input.length > 0 && input[0] === 0x30, 'not a DER SEQUENCE');
    const root = ASN1Obj.parseBuffer(input as Buffer<ArrayBuffer>);
    need(encodedLength(root) === input.length, 'not DER, or trailing data');
    const st = root.subs[0];
    need(
      // biome-ignore lint/complexity/useOptionalChain: asserts-narrowing needs `x !== undefined`
      st !== undefined && st.tag.isUniversal() && st.tag.number === 10 && !st.tag.constructed && st.value.length === 1,
      'responseStatus is not an ENUMERATED',
    );
    const responseStatus = st.value[0]!;
    if (responseStatus !== 0) return { responseStatus };
    const rb = root.subs[1];
    need(
      // biome-ignore lint/complexity/useOptionalChain: asserts-narrowing needs `x !== undefined`
      rb !== undefined && rb.tag.isContextSpecific(0) && rb.tag.constructed && root.subs.length === 2,
      'a successful response has no responseBytes',
    );
    const rbs = rb.subs[0];
    need(rbs && rbs.subs.length === 2 && rbs.subs[0]!.tag.isOID() && rbs.subs[1]!.tag.isOctetString(), 'ResponseBytes');
    const type = rbs.subs[0]!.toOID();
    if (type !== OID_PKIX_OCSP_BASIC)
      throw new MalformedInputError(`malformed OCSP response: unsupported response type ${type}`);
    const basicDer = rbs.subs[1]!.value;
    need(basicDer.length > 0 && basicDer[0] === 0x30, 'BasicOCSPResponse is not a SEQUENCE');
    const basic = ASN1Obj.parseBuffer(basicDer as Buffer<ArrayBuffer>);
    need(encodedLength(basic) === basicDer.length, 'BasicOCSPResponse is not DER');
    const [tbs, sigAlg, sigBits, certsWrap] = basic.subs;
    need(tbs?.tag.constructed && tbs.tag.number === 16 && tbs.tag.isUniversal(), 'tbsResponseData');
    need(sigAlg?.tag.constructed && sigAlg.subs[0]?.tag.isOID(), 'signatureAlgorithm');
    need(
      // biome-ignore lint/complexity/useOptionalChain: asserts-narrowing needs `x !== undefined`
      sigBits !== undefined && sigBits.tag.isBitString() && sigBits.value.length > 1 && sigBits.value[0] === 0,
      'signature is not a BIT STRING',
    );
    need(
      basic.subs.length <= 4 && (!certsWrap || (certsWrap.tag.isContextSpecific(0) && certsWrap.subs.length === 1)),
      'certs',
    );
    const certs = (certsWrap?.subs[0]?.subs ?? []).map((c) => Buffer.from(rawDer(c)));

    let i = tbs.subs[0]?.tag.isContextSpecific(0) ? 1 : 0;
    if (i === 1)
      need(
        tbs.subs[0]!.subs[0]?.tag.isInteger() && tbs.subs[0]!.subs[0].toInteger() === 0n,
        'only version 1 responses are defined',
      );
    const rid = tbs.subs[i++];
    let responderId: { byName: Buffer } | { byKey: Buffer };
    if (rid?.tag.isContextSpecific(1) && rid.tag.constructed && rid.subs.length === 1 && rid.subs[0]!.tag.constructed)
      responderId = { byName: Buffer.from(rawDer(rid.subs[0]!)) };
    else if (
      rid?.tag.isContextSpecific(2) &&
      rid.tag.constructed &&
      rid.subs.length === 1 &&
      rid.subs[0]!.tag.isOctetString()
    )
      responderId = { byKey: rid.subs[0]!.value };
    else throw new MalformedInputError('malformed OCSP response: responderID');
    const producedAt = time(tbs.subs[i++], 'producedAt');
    const list = tbs.subs[i++];
    need(list?.tag.constructed && list.tag.number === 16 && list.tag.isUniversal(), 'responses is not a SEQUENCE');
    const ext = tbs.subs[i];
    need(
      tbs.subs.length === i || (tbs.subs.length === i + 1 && ext?.tag.isContextSpecific(1)),
      'unexpected field in ResponseData',
    );

    const responses = list.subs.map((s): SingleResponse => {
      const [cid, cs, tu, ...rest] = s.subs;
      need(cid?.subs.length === 4, 'CertID');
      const [alg, nameHash, keyHash, serial] = cid.subs as [ASN1Obj, ASN1Obj, ASN1Obj, ASN1Obj];
      need(
        alg.subs[0]?.tag.isOID() &&
          nameHash.tag.isOctetString() &&
          keyHash.tag.isOctetString() &&
          serial.tag.isInteger(),
        'CertID fields',
      );
      // biome-ignore lint/complexity/useOptionalChain: asserts-narrowing needs `x !== undefined`
      need(cs !== undefined && cs.tag.isContextSpecific(), 'certStatus');
      let status: SingleResponse['status'];
      let revokedAt: Date | undefined;
      if (cs.tag.number === 0 && !cs.tag.constructed && cs.value.length === 0) status = 'good';
      else if (cs.tag.number === 1 && cs.tag.constructed) {
        status = 'revoked';
        revokedAt = time(cs.subs[0], 'revocationTime');
      } else if (cs.tag.number === 2 && !cs.tag.constructed && cs.value.length === 0) status = 'unknown';
      else throw new MalformedInputError('malformed OCSP response: certStatus');
      const thisUpdate = time(tu, 'thisUpdate');
      let nextUpdate: Date | undefined;
      const criticalExtensions: string[] = [];
      for (const r of rest) {
        if (
          r.tag.isContextSpecific(0) &&
          r.tag.constructed &&
          nextUpdate === undefined &&
          criticalExtensions.length === 0
        )
          nextUpdate = time(r.subs[0], 'nextUpdate');
        else if (r.tag.isContextSpecific(1) && r.tag.constructed && r === rest[rest.length - 1]) {
          for (const e of r.subs[0]?.subs ?? []) {
            const eo = e.subs[0];
            // biome-ignore lint/complexity/useOptionalChain: asserts-narrowing needs `x !== undefined`
            need(eo !== undefined && eo.tag.isOID(), 'singleExtensions');
            if (e.subs.length === 3 && e.subs[1]!.toBoolean()) criticalExtensions.push(eo.toOID());
          }
        } else throw new MalformedInputError('malformed OCSP response: unexpected field in SingleResponse');
      }
      return {
        hashOid: alg.subs[0]!.toOID(),
        issuerNameHash: nameHash.value,
        issuerKeyHash: keyHash.value,
        serial: serial.value,
        status,
        revokedAt,
        thisUpdate,
        nextUpdate,
        criticalExtensions,
      };
    });
    return {
      responseStatus,
      basic: {
        tbsDer: Buffer.from(rawDer(tbs)),
        responderId,
        producedAt,
        responses,
        sigHash: hashOfAlgorithmIdentifier(sigAlg),
        sigAlgOid: sigAlg.subs[0]!.toOID(),
        signature: sigBits.value.subarray(1),
        certs,
      },
    };
  });
}

export interface VerifiedOcsp {
  readonly status: 'good' | 'revoked' | 'unknown';
  readonly revokedAt?: Date;
  readonly thisUpdate: Date;
  readonly nextUpdate: Date;
  /** Subject of the certificate whose key signed the response. */
  readonly signer: string;
}

const WEAK = new Set(['sha1', 'md5']);

function signatureValid(
  signer: Certificate,
  sigAlgOid: string,
  sigHash: string,
  tbs: Buffer,
  signature: Buffer,
): boolean {
  try {
    if (sigAlgOid === RSA_PSS_OID) {
      return cryptoVerify(
        sigHash,
        tbs,
        { key: signer.publicKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_AUTO },
        signature,
      );
    }
    return cryptoVerify(sigHash, tbs, signer.publicKey, signature);
  } catch {
    return false;
  }
}

/**
 * Verifies a DER OCSPResponse about `cert` (issued by `issuer`) at `now` and returns what it says.
 * Anything that makes it unusable (malformed, not successful, wrong signer, no matching CertID, stale)
 * is a MalformedInputError with the reason.
 */
export function verifyOcspResponse(input: Buffer, cert: Certificate, issuer: Certificate, now: Date): VerifiedOcsp {
  const resp = parseOcspResponse(input);
  return guard('OCSP response', () => {
    const bad = (m: string) => new MalformedInputError(`OCSP response: ${m}`);
    if (resp.responseStatus !== 0 || !resp.basic)
      throw bad(`responder answered ${RESPONSE_STATUS[resp.responseStatus] ?? `status ${resp.responseStatus}`}`);
    const b = resp.basic;
    const rid = b.responderId;
    const named = (c: Certificate) =>
      'byName' in rid
        ? c.subjectDer.equals(rid.byName)
        : createHash('sha1').update(publicKeyBits(c)).digest().equals(rid.byKey);

    let signer: Certificate;
    if (named(issuer)) signer = issuer;
    else {
      const delegated = b.certs.map((d) => parseCertificate(d)).find(named);
      if (!delegated)
        throw bad(`signed by neither ${issuer.subjectText} nor a responder certificate included in the response`);
      if (!isIssuedBy(delegated, issuer))
        throw bad(`responder certificate ${delegated.subjectText} is not issued by ${issuer.subjectText}`);
      if (!delegated.extKeyUsage?.oids.includes(OID.ekuOcspSigning))
        throw bad(`responder certificate ${delegated.subjectText} lacks the id-kp-OCSPSigning extended key usage`);
      if (now < delegated.notBefore || now > delegated.notAfter)
        throw bad(`responder certificate ${delegated.subjectText} is not valid now`);
      if (WEAK.has(delegated.signatureHash))
        throw bad(
          `responder certificate ${delegated.subjectText} uses a weak signature hash (${delegated.signatureHash})`,
        );
      signer = delegated;
    }
    if (WEAK.has(b.sigHash) || b.sigHash.startsWith('unknown')) throw bad(`unsupported signature hash ${b.sigHash}`);
    if (!signatureValid(signer, b.sigAlgOid, b.sigHash, b.tbsDer, b.signature))
      throw bad(`signature does not verify with the key of ${signer.subjectText}`);

    const keyBits = publicKeyBits(issuer);
    const single = b.responses.find((s) => {
      const h = hashFromOid(s.hashOid);
      if (!h || !s.serial.equals(cert.serial)) return false;
      return (
        createHash(h).update(issuer.subjectDer).digest().equals(s.issuerNameHash) &&
        createHash(h).update(keyBits).digest().equals(s.issuerKeyHash)
      );
    });
    if (!single) throw bad(`no answer for serial ${cert.serial.toString('hex')} from ${issuer.subjectText}`);
    if (single.criticalExtensions.length > 0)
      throw bad(`unsupported critical extension(s) ${single.criticalExtensions.join(', ')}`);
    if (single.thisUpdate.getTime() > now.getTime() + OCSP_CLOCK_SKEW_MS)
      throw bad(`thisUpdate ${single.thisUpdate.toISOString()} is in the future`);
    // notation (x/crypto/ocsp + time.Now().After(NextUpdate)) treats a response without nextUpdate as expired.
    if (!single.nextUpdate) throw bad('no nextUpdate (treated as expired, as notation does)');
    if (now > single.nextUpdate) throw bad(`expired at ${single.nextUpdate.toISOString()}`);
    return {
      status: single.status,
      revokedAt: single.revokedAt,
      thisUpdate: single.thisUpdate,
      nextUpdate: single.nextUpdate,
      signer: signer.subjectText,
    };
  });
}

// ---------------------------------------------------------------------------------------------------
// The client.

export type OcspResult =
  | { readonly status: 'good' | 'revoked' | 'unknown'; readonly detail: string }
  | { readonly status: 'error'; readonly detail: string };

/** Verified good/revoked answers by issuer and serial, until their nextUpdate. */
const memory = new Map<string, { readonly answer: VerifiedOcsp; readonly url: string }>();
const inflight = new Map<string, Promise<VerifiedOcsp>>();

/** Forgets the cached OCSP answers (what a new process starts with). */
export function clearOcspMemoryCache(): void {
  memory.clear();
}

async function query(
  url: string,
  cert: Certificate,
  issuer: Certificate,
  settings: RevocationSettings,
  deadline: Deadline,
  now: Date,
): Promise<VerifiedOcsp> {
  const res = await fetch(url, {
    method: 'POST',
    body: buildOcspRequest(cert, issuer),
    headers: { 'content-type': 'application/ocsp-request', accept: 'application/ocsp-response' },
    signal: deadline.slice(settings.timeoutMs),
  });
  if (res.status < 200 || res.status >= 300) {
    await res.body?.cancel().catch(() => undefined);
    throw new Error(`HTTP ${res.status}`);
  }
  return verifyOcspResponse(await readCapped(res, OCSP_MAX_RESPONSE_BYTES, 'OCSP response'), cert, issuer, now);
}

function describe(a: VerifiedOcsp, url: string, cached: boolean): string {
  const by = `OCSP responder ${url}${cached ? ' (cached answer)' : ''}, signed by ${a.signer}`;
  return a.status === 'revoked'
    ? `revoked at ${a.revokedAt!.toISOString()} according to ${by}`
    : a.status === 'good'
      ? `good according to ${by}`
      : `${by} does not know the certificate`;
}

/**
 * The OCSP status of `cert`: responders are tried in order; the first verified answer (good, revoked or
 * unknown) is final, an error moves on to the next one; 'error' when none gave a usable answer.
 */
export async function checkOcsp(
  cert: Certificate,
  issuer: Certificate,
  settings: RevocationSettings,
  deadline: Deadline,
  now: Date,
): Promise<OcspResult> {
  const key = `${createHash('sha256').update(issuer.der).digest('hex')}:${cert.serial.toString('hex')}`;
  const hit = memory.get(key);
  if (hit && now <= hit.answer.nextUpdate && now.getTime() + OCSP_CLOCK_SKEW_MS >= hit.answer.thisUpdate.getTime())
    return { status: hit.answer.status, detail: describe(hit.answer, hit.url, true) };
  if (hit) memory.delete(key);
  const errors: string[] = [];
  for (const url of cert.ocspUrls) {
    if (!/^http:\/\//i.test(url)) {
      errors.push(`${url}: only http:// OCSP responders are supported`);
      continue;
    }
    const flight = `${key}|${url}`;
    let p = inflight.get(flight);
    if (!p) {
      p = query(url, cert, issuer, settings, deadline, now);
      inflight.set(flight, p);
      void p.then(
        () => inflight.delete(flight),
        () => inflight.delete(flight),
      );
    }
    try {
      const answer = await p;
      if (answer.status !== 'unknown') memory.set(key, { answer, url });
      return { status: answer.status, detail: describe(answer, url, false) };
    } catch (e) {
      const m = e instanceof Error ? e.message : String(e);
      const cause = e instanceof Error && e.cause instanceof Error ? ` (${e.cause.message})` : '';
      errors.push(`${url}: ${m}${cause}`);
    }
  }
  return { status: 'error', detail: errors.length ? errors.join('; ') : 'no OCSP responder location' };
}

import { createHash, verify as cryptoVerify } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ASN1Obj } from '@sigstore/core';
import type { Deadline } from '../../common/deadline.js';
import { hashOfAlgorithmIdentifier, type Certificate } from './certificate.js';
import { guard, MalformedInputError } from '../../common/malformed.js';
import { readCapped } from './http-body.js';
import { checkOcsp } from './ocsp.js';
import type { RevocationSettings } from '../../policy/notation/spec.js';

export { DEFAULT_REVOCATION, type RevocationSettings } from '../../policy/notation/spec.js';

/**
 * Revocation by OCSP (ocsp.ts) and CRL over HTTP, in notation-core-go's order (revocation.go
 * ValidateContext): for each certificate but the root, a certificate with OCSP responders is checked by
 * OCSP; when OCSP cannot give good or revoked (every responder failed, or the responder answered
 * "unknown") and the certificate has CRL distribution points, its CRLs decide. A certificate with only
 * CRL distribution points is checked by CRL. CRLs are cached (memory, and a directory when configured)
 * until their nextUpdate; good/revoked OCSP answers in memory until theirs.
 *
 * Outcomes follow notation-core-go: a certificate with neither CRL nor OCSP endpoints is "non-revokable"
 * and passes; one that cannot be checked (no network on an air-gapped node, a stale or bad CRL or OCSP
 * response, an OCSP responder that does not know it and no CRL to fall back to) is "unknown", which
 * fails the check; the level then decides whether that failure is enforced or only logged, and
 * `override: {revocation: skip}` turns the check off.
 */

export type CertStatus =
  | { readonly status: 'ok'; readonly method: 'OCSP' | 'CRL' }
  | { readonly status: 'nonrevokable' }
  | { readonly status: 'revoked' | 'unknown'; readonly reason: string };

export interface RevocationOutcome {
  readonly result: 'ok' | 'revoked' | 'unknown';
  readonly detail: string;
}

interface Crl {
  readonly issuerDer: Buffer;
  readonly thisUpdate: Date;
  readonly nextUpdate?: Date;
  readonly revokedSerials: ReadonlySet<string>;
  readonly tbsDer: Buffer;
  readonly sigHash: string;
  readonly signature: Buffer;
  /** OIDs of critical CRL extensions other than issuingDistributionPoint (which notation also accepts). */
  readonly unsupportedCritical: readonly string[];
}

const OID_ISSUING_DISTRIBUTION_POINT = '2.5.29.28';
const memory = new Map<string, Buffer>();
/** Downloads in flight, so concurrent checks of one URL (several signatures, one pull) share a fetch. */
const inflight = new Map<string, Promise<Buffer>>();

/** Forgets the in-memory CRLs (what a new process starts with); the cache directory is untouched. */
export function clearCrlMemoryCache(): void {
  memory.clear();
}

export function parseCrl(der: Buffer): Crl {
  return guard('malformed CRL', () => {
    const root = ASN1Obj.parseBuffer(der as Buffer<ArrayBuffer>);
    if (root.subs.length !== 3) throw new MalformedInputError('malformed CRL: not a CertificateList');
    const tbs = root.subs[0]!;
    let i = tbs.subs[0]!.tag.isInteger() ? 1 : 0; // version
    i++; // signature AlgorithmIdentifier
    const issuer = tbs.subs[i++]!;
    const thisUpdate = tbs.subs[i++]!.toDate();
    let nextUpdate: Date | undefined;
    const n = tbs.subs[i];
    if (n && (n.tag.isUTCTime() || n.tag.isGeneralizedTime())) {
      nextUpdate = n.toDate();
      i++;
    }
    const revokedSerials = new Set<string>();
    const rl = tbs.subs[i];
    if (rl && !rl.tag.isContextSpecific(0)) {
      if (!rl.tag.constructed) throw new MalformedInputError('malformed CRL: revokedCertificates is not a SEQUENCE');
      for (const entry of rl.subs) {
        const serial = entry.subs[0];
        if (!serial?.tag.isInteger())
          throw new MalformedInputError('malformed CRL: a revoked entry has no serial number');
        revokedSerials.add(serial.value.toString('hex'));
      }
      i++;
    }
    const unsupportedCritical: string[] = [];
    const extsWrap = tbs.subs[i];
    if (extsWrap?.tag.isContextSpecific(0)) {
      for (const ext of extsWrap.subs[0]?.subs ?? []) {
        const oid = ext.subs[0]!.toOID();
        const critical = ext.subs.length === 3 && ext.subs[1]!.tag.isBoolean() && ext.subs[1]!.toBoolean();
        if (critical && oid !== OID_ISSUING_DISTRIBUTION_POINT) unsupportedCritical.push(oid);
      }
    }
    const sigHash = hashOfAlgorithmIdentifier(root.subs[1]!);
    const sigBits = root.subs[2]!;
    if (!sigBits.tag.isBitString()) throw new MalformedInputError('malformed CRL: signature is not a BIT STRING');
    return {
      issuerDer: issuer.toDER(),
      thisUpdate,
      nextUpdate,
      revokedSerials,
      tbsDer: tbs.toDER(),
      sigHash,
      signature: sigBits.value.subarray(1),
      unsupportedCritical,
    };
  });
}

async function fetchCrl(url: string, settings: RevocationSettings, deadline: Deadline): Promise<Buffer> {
  const key = createHash('sha256').update(url).digest('hex');
  const hit = memory.get(key);
  if (hit) return hit;
  if (settings.cacheDir) {
    try {
      const b = readFileSync(join(settings.cacheDir, `${key}.crl`));
      memory.set(key, b);
      return b;
    } catch {
      /* not cached yet */
    }
  }
  const pending = inflight.get(key);
  if (pending !== undefined) return pending;
  const p = download(url, key, settings, deadline);
  inflight.set(key, p);
  try {
    return await p;
  } finally {
    inflight.delete(key);
  }
}

async function download(url: string, key: string, settings: RevocationSettings, deadline: Deadline): Promise<Buffer> {
  const res = await fetch(url, { signal: deadline.slice(settings.timeoutMs), redirect: 'follow' });
  if (!res.ok) {
    await res.body?.cancel().catch(() => undefined);
    throw new Error(`HTTP ${res.status}`);
  }
  // Streamed with a hard cap: Content-Length is only a hint (an endless body over plain http has none).
  const body = await readCapped(res, settings.maxCrlBytes, 'CRL');
  memory.set(key, body);
  if (settings.cacheDir) {
    try {
      mkdirSync(settings.cacheDir, { recursive: true });
      const tmp = join(settings.cacheDir, `${key}.${process.pid}.tmp`);
      writeFileSync(tmp, body);
      renameSync(tmp, join(settings.cacheDir, `${key}.crl`));
    } catch {
      /* a read-only cache only costs a download next time */
    }
  }
  return body;
}

function evict(url: string, settings: RevocationSettings): void {
  const key = createHash('sha256').update(url).digest('hex');
  memory.delete(key);
  if (settings.cacheDir) {
    try {
      rmSync(join(settings.cacheDir, `${key}.crl`), { force: true });
    } catch {
      /* ignore */
    }
  }
}

/** One CRL location: 'ok' / 'revoked', or the reason it could not be used. */
async function checkUrl(
  url: string,
  cert: Certificate,
  issuer: Certificate,
  settings: RevocationSettings,
  deadline: Deadline,
  now: Date,
): Promise<{ status: 'ok' | 'revoked' } | { status: 'error'; reason: string }> {
  if (!url.startsWith('http://'))
    return { status: 'error', reason: `${url}: only http:// CRL locations are supported` };
  for (let attempt = 0; attempt < 2; attempt++) {
    let crl: Crl;
    try {
      crl = parseCrl(await fetchCrl(url, settings, deadline));
    } catch (e) {
      evict(url, settings);
      return { status: 'error', reason: `${url}: ${(e as Error).message}` };
    }
    const stale = crl.nextUpdate !== undefined && crl.nextUpdate < now;
    if (stale && attempt === 0) {
      evict(url, settings); // a cached copy went stale: fetch a fresh one once
      continue;
    }
    const bad = (reason: string) => {
      evict(url, settings); // never keep a CRL that cannot be used; the next check downloads again
      return { status: 'error' as const, reason: `${url}: ${reason}` };
    };
    if (stale) return bad(`CRL expired at ${crl.nextUpdate!.toISOString()}`);
    if (!crl.issuerDer.equals(issuer.subjectDer)) return bad(`CRL is not issued by ${issuer.subjectText}`);
    if (crl.sigHash === 'sha1' || crl.sigHash === 'md5') return bad(`CRL uses a weak signature hash (${crl.sigHash})`);
    let ok = false;
    try {
      ok = cryptoVerify(crl.sigHash, crl.tbsDer, issuer.publicKey, crl.signature);
    } catch {
      ok = false;
    }
    if (!ok) return bad(`CRL signature does not verify with the key of ${issuer.subjectText}`);
    if (crl.unsupportedCritical.length > 0)
      return bad(`CRL has unsupported critical extension(s) ${crl.unsupportedCritical.join(', ')}`);
    return crl.revokedSerials.has(cert.serial.toString('hex')) ? { status: 'revoked' } : { status: 'ok' };
  }
  return { status: 'error', reason: `${url}: no usable CRL` };
}

/**
 * Like notation-core-go (crl.go CertCheckStatus): every distribution point is checked, because a CA may
 * partition its CRL; a listing in any of them is "revoked", and any location that cannot be used makes
 * the status "unknown" (a reachable one does not vouch for one that is not).
 */
async function checkCrl(
  cert: Certificate,
  issuer: Certificate,
  settings: RevocationSettings,
  deadline: Deadline,
  now: Date,
): Promise<CertStatus> {
  const results = await Promise.all(cert.crlUrls.map((u) => checkUrl(u, cert, issuer, settings, deadline, now)));
  const revokedAt = results.findIndex((r) => r.status === 'revoked');
  if (revokedAt >= 0) return { status: 'revoked', reason: `listed in ${cert.crlUrls[revokedAt]}` };
  const errors = results.flatMap((r) => (r.status === 'error' ? [r.reason] : []));
  if (errors.length > 0) return { status: 'unknown', reason: errors.join('; ') };
  return { status: 'ok', method: 'CRL' };
}

/** OCSP first when the certificate names responders, CRL when OCSP cannot decide (notation-core-go's order). */
async function checkCert(
  cert: Certificate,
  issuer: Certificate,
  settings: RevocationSettings,
  deadline: Deadline,
  now: Date,
): Promise<CertStatus> {
  if (cert.ocspUrls.length > 0) {
    const o = await checkOcsp(cert, issuer, settings, deadline, now);
    if (o.status === 'good') return { status: 'ok', method: 'OCSP' };
    if (o.status === 'revoked') return { status: 'revoked', reason: o.detail };
    const why = o.status === 'unknown' ? o.detail : `OCSP failed: ${o.detail}`;
    if (cert.crlUrls.length === 0) return { status: 'unknown', reason: why };
    const c = await checkCrl(cert, issuer, settings, deadline, now);
    if (c.status === 'unknown') return { status: 'unknown', reason: `${why}; CRL fallback: ${c.reason}` };
    return c;
  }
  if (cert.crlUrls.length === 0) return { status: 'nonrevokable' };
  return checkCrl(cert, issuer, settings, deadline, now);
}

/** Checks every certificate but the root (which nothing above it can revoke) by OCSP and/or CRL. */
export async function checkRevocation(
  chain: readonly Certificate[],
  settings: RevocationSettings,
  deadline: Deadline,
  now = new Date(),
): Promise<RevocationOutcome> {
  if (chain.length < 2) {
    const only = chain[0];
    if (only && (only.crlUrls.length > 0 || only.hasOcsp))
      return {
        result: 'unknown',
        detail:
          `self-signed certificate ${only.subjectText} names revocation endpoints but has no ` +
          'issuer to check them with',
      };
    return { result: 'ok', detail: 'no CRL or OCSP endpoints in the chain; nothing to check' };
  }
  const results = await Promise.all(
    chain.slice(0, -1).map((c, i) => checkCert(c, chain[i + 1]!, settings, deadline, now)),
  );
  const revoked = results.findIndex((r) => r.status === 'revoked');
  if (revoked >= 0)
    return {
      result: 'revoked',
      detail:
        `certificate ${chain[revoked]!.subjectText} is revoked ` +
        `(${(results[revoked] as { reason: string }).reason})`,
    };
  const unknown = results.findIndex((r) => r.status === 'unknown');
  if (unknown >= 0)
    return {
      result: 'unknown',
      detail:
        `revocation status of ${chain[unknown]!.subjectText} is unknown: ` +
        `${(results[unknown] as { reason: string }).reason}`,
    };
  const methods = [...new Set(results.flatMap((r) => (r.status === 'ok' ? [r.method] : [])))].sort().reverse();
  const checked = results.filter((r) => r.status === 'ok').length;
  return {
    result: 'ok',
    detail:
      checked === 0
        ? 'no CRL or OCSP endpoints in the chain; nothing to check'
        : `not revoked (${checked} certificate(s) checked by ${methods.join(' and ')})`,
  };
}

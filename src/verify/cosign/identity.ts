import { X509Certificate as NodeX509 } from 'node:crypto';
import { X509Certificate } from '@sigstore/core';
import { parseReference, repositoryOf } from '../../common/reference.js';
import type { CosignIdentity, SignedIdentity } from '../../policy/authorities/cosign.js';

// ---------------------------------------------------------------------------------------------------------
// signedIdentity: containers-policy.json(5) semantics, after containers/image
// signature/policy_reference_match.go. "Name-only" means a reference with neither tag nor digest, which is
// what cosign writes into docker-reference.

export interface ImageIdentity {
  /** `registry/path`, fully expanded. */
  readonly name: string;
  readonly tag?: string;
  readonly digest?: string;
}

/** Parses a docker reference like reference.ParseNormalizedNamed: normalizes, and keeps "no tag" as no tag. */
export function parseIdentity(s: string): ImageIdentity | undefined {
  try {
    const ref = parseReference(s);
    const at = s.indexOf('@');
    const beforeDigest = at >= 0 ? s.slice(0, at) : s;
    const lastSlash = beforeDigest.lastIndexOf('/');
    const hasTag = beforeDigest.slice(lastSlash + 1).includes(':');
    // parseReference drops a tag next to a digest (as containerd does); recover it for exact comparison.
    const tag = hasTag ? beforeDigest.slice(beforeDigest.lastIndexOf(':') + 1) : undefined;
    return { name: repositoryOf(ref), tag, digest: ref.digest };
  } catch {
    return undefined;
  }
}

const isNameOnly = (r: ImageIdentity) => r.tag === undefined && r.digest === undefined;
const asString = (r: ImageIdentity) =>
  `${r.name}${r.tag !== undefined ? `:${r.tag}` : ''}${r.digest !== undefined ? `@${r.digest}` : ''}`;

function matchRepoDigestOrExact(intended: ImageIdentity, signature: ImageIdentity): boolean {
  if (isNameOnly(signature)) return false;
  if (intended.tag !== undefined) return asString(signature) === asString(intended);
  if (intended.digest !== undefined) return signature.name === intended.name;
  return false;
}

function refMatchesPrefix(name: string, prefix: string): boolean {
  if (name.length < prefix.length) return false;
  if (name.length === prefix.length) return name === prefix;
  return name.startsWith(prefix) && name[prefix.length] === '/';
}

export interface IdentityVerdict {
  readonly ok: boolean;
  readonly detail: string;
}

/**
 * Does the signature's claimed `docker-reference` satisfy `rule` for the image being pulled?
 * `intended` is the image as containerd names it: pullguard judges the digest containerd will pull, so
 * without a tag the image identity is `repository@digest` (containers/image's digest-reference case).
 */
export function matchSignedIdentity(
  rule: SignedIdentity,
  intended: ImageIdentity,
  signedReference: string,
): IdentityVerdict {
  const sig = parseIdentity(signedReference);
  const claim = JSON.stringify(signedReference);
  if (!sig) return { ok: false, detail: `signed docker-reference ${claim} is not a valid reference` };
  const nameOnlyHint = isNameOnly(sig)
    ? ' (cosign signs the repository only; use signedIdentity matchRepository or exactRepository)'
    : '';
  switch (rule.type) {
    case 'matchExact': {
      const ok = !isNameOnly(intended) && !isNameOnly(sig) && asString(sig) === asString(intended);
      return {
        ok,
        detail: ok
          ? `signed identity ${claim} equals the image`
          : `matchExact: signed identity ${claim} is not exactly ${asString(intended)}${nameOnlyHint}`,
      };
    }
    case 'matchRepoDigestOrExact': {
      const ok = matchRepoDigestOrExact(intended, sig);
      return {
        ok,
        detail: ok
          ? `signed identity ${claim} matches ${asString(intended)}`
          : `matchRepoDigestOrExact: signed identity ${claim} does not match ${asString(intended)}${nameOnlyHint}`,
      };
    }
    case 'matchRepository': {
      const ok = sig.name === intended.name;
      return {
        ok,
        detail: ok
          ? `signed repository ${sig.name} is the image's`
          : `signed for repository ${sig.name}, but the image is ${intended.name}`,
      };
    }
    case 'exactReference': {
      const want = parseIdentity(rule.dockerReference);
      const ok = !!want && !isNameOnly(want) && !isNameOnly(sig) && asString(sig) === asString(want);
      return {
        ok,
        detail: ok
          ? `signed identity ${claim} is the required ${rule.dockerReference}`
          : `exactReference: signed identity ${claim} is not ${rule.dockerReference}${nameOnlyHint}`,
      };
    }
    case 'exactRepository': {
      const want = parseIdentity(rule.dockerRepository);
      const ok = !!want && sig.name === want.name;
      return {
        ok,
        detail: ok
          ? `signed repository ${sig.name} is the required one`
          : `exactRepository: signed for ${sig.name}, not ${rule.dockerRepository}`,
      };
    }
    case 'remapIdentity': {
      let remapped = intended;
      if (refMatchesPrefix(intended.name, rule.prefix)) {
        const candidate = parseIdentity(`${rule.signedPrefix}${intended.name.slice(rule.prefix.length)}`);
        if (!candidate) return { ok: false, detail: `remapIdentity produced an invalid name from ${intended.name}` };
        remapped = { name: candidate.name, tag: intended.tag, digest: intended.digest };
      }
      const ok = matchRepoDigestOrExact(remapped, sig);
      return {
        ok,
        detail: ok
          ? `signed identity ${claim} matches ${asString(remapped)} (remapped)`
          : `remapIdentity: signed identity ${claim} does not match ${asString(remapped)}${nameOnlyHint}`,
      };
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Certificate identity: SANs and the Fulcio issuer extension.

const OID_ISSUER_V1 = '1.3.6.1.4.1.57264.1.1';
const OID_ISSUER_V2 = '1.3.6.1.4.1.57264.1.8';
const EKU_CODE_SIGNING = '1.3.6.1.5.5.7.3.3';
const EKU_ANY = '2.5.29.37.0';

export interface CertificateFacts {
  readonly emails: readonly string[];
  readonly uris: readonly string[];
  readonly dnsNames: readonly string[];
  readonly issuer?: string;
  readonly issuerProblem?: string;
  readonly codeSigning: boolean;
  readonly notAfter: Date;
  readonly subject: string;
}

/** Splits node's subjectAltName ("email:a, URI:b", values with commas come JSON-quoted). */
function parseSans(text: string | undefined): { type: string; value: string }[] {
  const out: { type: string; value: string }[] = [];
  if (!text) return out;
  const re = /([A-Za-z ]+):("(?:[^"\\]|\\.)*"|[^,]*)(?:, |$)/g;
  for (let m = re.exec(text); m && m[0].length > 0; m = re.exec(text)) {
    let value = m[2]!;
    if (value.startsWith('"')) {
      try {
        value = JSON.parse(value) as string;
      } catch {
        /* keep as is */
      }
    }
    out.push({ type: m[1]!.trim(), value });
  }
  return out;
}

/** The v2 issuer extension's value is a DER UTF8String. */
function derUtf8String(der: Buffer): string | undefined {
  if (der.length < 2 || der[0] !== 0x0c) return undefined;
  let len = der[1]!;
  let off = 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 3 || der.length < 2 + n) return undefined;
    len = 0;
    for (let i = 0; i < n; i++) len = (len << 8) | der[2 + i]!;
    off = 2 + n;
  }
  if (off + len !== der.length) return undefined;
  return der.subarray(off).toString('utf8');
}

export function certificateFacts(der: Buffer): CertificateFacts {
  const cert = new NodeX509(der);
  const parsed = X509Certificate.parse(der as Buffer<ArrayBuffer>);
  const sans = parseSans(cert.subjectAltName);
  const v1 = parsed.extension(OID_ISSUER_V1)?.value.toString('utf8');
  const v2raw = parsed.extension(OID_ISSUER_V2)?.value;
  const v2 = v2raw ? derUtf8String(v2raw) : undefined;
  let issuer: string | undefined;
  let issuerProblem: string | undefined;
  if (v2raw && v2 === undefined) issuerProblem = 'malformed Fulcio issuer (v2) extension';
  else if (v1 !== undefined && v2 !== undefined && v1 !== v2)
    issuerProblem = `inconsistent Fulcio issuer extensions: v1 ${JSON.stringify(v1)}, v2 ${JSON.stringify(v2)}`;
  else issuer = v2 ?? v1;
  const eku = cert.keyUsage; // node: the extended key usage OIDs, undefined when the extension is absent
  return {
    emails: sans.filter((s) => s.type === 'email').map((s) => s.value),
    uris: sans.filter((s) => s.type === 'URI').map((s) => s.value),
    dnsNames: sans.filter((s) => s.type === 'DNS').map((s) => s.value),
    issuer,
    issuerProblem,
    // Like Go's x509 (which cosign and containers/image use): no EKU extension means any usage.
    codeSigning: eku === undefined || eku.includes(EKU_CODE_SIGNING) || eku.includes(EKU_ANY),
    notAfter: new Date(cert.validTo),
    subject: (cert.subject ?? '').replace(/\n/g, ', '),
  };
}

function hostnameMatches(pattern: string, host: string): boolean {
  const p = pattern.toLowerCase().replace(/\.$/, '');
  const h = host.toLowerCase().replace(/\.$/, '');
  if (p === h) return true;
  if (!p.startsWith('*.')) return false;
  const dot = h.indexOf('.');
  return dot > 0 && h.slice(dot + 1) === p.slice(2);
}

function one(values: readonly string[], exact: string | undefined, re: RegExp | undefined): boolean {
  if (exact !== undefined && !values.includes(exact)) return false;
  if (re !== undefined && !values.some((v) => re.test(v))) return false;
  return true;
}

export function identityMatches(id: CosignIdentity, facts: CertificateFacts): boolean {
  if (id.issuer !== undefined && facts.issuer !== id.issuer) return false;
  if (id.issuerRegexp !== undefined && (facts.issuer === undefined || !id.issuerRegexp.test(facts.issuer)))
    return false;
  if ((id.issuer !== undefined || id.issuerRegexp !== undefined) && facts.issuerProblem) return false;
  const subjects = [...facts.emails, ...facts.uris];
  if (!one(subjects, id.subject, id.subjectRegexp)) return false;
  if (!one(facts.emails, id.email, id.emailRegexp)) return false;
  if (!one(facts.uris, id.uri, id.uriRegexp)) return false;
  if (id.hostname !== undefined && !facts.dnsNames.some((d) => hostnameMatches(d, id.hostname!))) return false;
  return true;
}

export function describeCertificate(f: CertificateFacts): string {
  const who = [...f.emails, ...f.uris, ...f.dnsNames][0] ?? f.subject;
  return f.issuer ? `${who} (issuer ${f.issuer})` : who;
}

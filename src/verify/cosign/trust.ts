import { createHash, createPublicKey } from 'node:crypto';
import { X509Certificate } from '@sigstore/core';
import { TrustedRoot } from '@sigstore/protobuf-specs';
import { toTrustMaterial, VerificationError, type TrustMaterial } from '@sigstore/verify';
// The Sigstore public-good trusted root, as @sigstore/tuf ships it (seeds.json holds it base64-encoded).
// Imported, so esbuild embeds it in the executable: a node never fetches TUF metadata at pull time.
import seeds from '@sigstore/tuf/seeds.json' with { type: 'json' };
import { PullguardError } from '../../common/errors.js';
import type { CosignKey, CosignSpec } from '../../policy/authorities/cosign.js';

type CertAuthority = TrustMaterial['certificateAuthorities'][number];
type TLogAuthority = TrustMaterial['tlogs'][number];

const BEGINNING = new Date(0);
const END = new Date(8_640_000_000_000_000);

let embedded: TrustedRoot | undefined;

/** The built-in public-good root, parsed on first use only (keys-only policies never pay for it). */
export function embeddedTrustedRoot(): TrustedRoot {
  if (!embedded) {
    const repo = Object.values(seeds as Record<string, { targets?: Record<string, string> }>)[0];
    const b64 = repo?.targets?.['trusted_root.json'];
    if (!b64) throw new PullguardError('INTERNAL', 'the embedded Sigstore trusted root is missing from this build');
    embedded = TrustedRoot.fromJSON(JSON.parse(Buffer.from(b64, 'base64').toString('utf8')));
  }
  return embedded;
}

/** The trust an authority grants, in @sigstore/verify's model, built once per authority per run. */
export interface AuthorityTrust {
  /** Certificate authorities: the policy's roots+intermediates, or the trusted root's (Fulcio). */
  readonly cas: readonly CertAuthority[];
  readonly material: (key?: CosignKey, extraCas?: readonly CertAuthority[]) => TrustMaterial;
  /** For messages: where the root came from. */
  readonly rootSource: string;
}

const cache = new WeakMap<CosignSpec, AuthorityTrust>();

export function trustFor(spec: CosignSpec): AuthorityTrust {
  let t = cache.get(spec);
  if (!t) {
    t = buildTrust(spec);
    cache.set(spec, t);
  }
  return t;
}

function buildTrust(spec: CosignSpec): AuthorityTrust {
  // The trusted root is read only where it matters: keyless always; keys and certificates only for
  // tlog/sct/TSA material, and then only when no explicit Rekor keys replace it.
  const needsRoot =
    spec.mode === 'keyless' || spec.sct || (spec.tlog && spec.rekorKeys.length === 0) || spec.trustedRoot !== undefined;
  let root: TrustMaterial | undefined;
  let rootSource = 'none';
  if (needsRoot) {
    try {
      const tr = spec.trustedRoot ? TrustedRoot.fromJSON(spec.trustedRoot.json) : embeddedTrustedRoot();
      root = toTrustMaterial(tr);
      rootSource = spec.trustedRoot ? spec.trustedRoot.source : 'the embedded Sigstore public-good root';
    } catch (e) {
      if (e instanceof PullguardError) throw e;
      throw new PullguardError(
        'POLICY_INVALID',
        `trusted root ${spec.trustedRoot?.source ?? '(embedded)'} is not usable: ${(e as Error).message}`,
      );
    }
  }

  // Explicit Rekor keys (containers-policy rekorPublicKey*) replace the root's logs: Rekor's log ID is
  // the SHA-256 of the log key's DER, which is how entries name the log that signed them.
  const tlogs: TLogAuthority[] =
    spec.rekorKeys.length > 0
      ? spec.rekorKeys.map((k) => {
          const der = k.key.export({ type: 'spki', format: 'der' });
          return {
            logID: createHash('sha256').update(der).digest(),
            baseURL: k.source,
            publicKey: k.key,
            validFor: { start: BEGINNING, end: END },
          };
        })
      : (root?.tlogs ?? []);

  let cas: CertAuthority[] = [];
  if (spec.mode === 'certificates') {
    const certs = [...spec.intermediates, ...spec.roots].map((c) =>
      X509Certificate.parse(c.der as Buffer<ArrayBuffer>),
    );
    cas = [{ certChain: certs, validFor: { start: BEGINNING, end: END } }];
  } else if (spec.mode === 'keyless') {
    cas = root?.certificateAuthorities ?? [];
  }

  const material = (key?: CosignKey, extraCas: readonly CertAuthority[] = []): TrustMaterial => ({
    certificateAuthorities: [...extraCas, ...cas],
    timestampAuthorities: root?.timestampAuthorities ?? [],
    tlogs,
    // Given even when SCTs are not required: @sigstore/verify checks any SCT a certificate embeds.
    ctlogs: root?.ctlogs ?? [],
    publicKey: (hint: string) => {
      if (!key || hint !== key.hint)
        throw new VerificationError({ code: 'PUBLIC_KEY_ERROR', message: 'key not trusted' });
      return { publicKey: key.key, validFor: () => true };
    },
  });
  return { cas, material, rootSource };
}

/**
 * Certificates the signature ships (cosign's chain annotation) are untrusted. One is admitted into the
 * chain search only if it is a CA, not self-signed, and is signed by a certificate already trusted (a
 * policy root or intermediate, or one admitted before). An attacker's chain thus never adds an anchor:
 * every path through an admitted certificate still ends at a policy root, and @sigstore/verify then
 * checks the whole path (signatures, CA flags, path length, validity at the signing time).
 */
export function admitChain(cas: readonly CertAuthority[], shipped: readonly Buffer[]): CertAuthority[] {
  if (shipped.length === 0 || cas.length === 0) return [];
  const out: CertAuthority[] = [];
  for (const ca of cas) {
    const pool = [...ca.certChain];
    const admitted: X509Certificate[] = [];
    const candidates = shipped.flatMap((der) => {
      try {
        return [X509Certificate.parse(der as Buffer<ArrayBuffer>)];
      } catch {
        return [];
      }
    });
    for (let progress = true; progress; ) {
      progress = false;
      for (const c of candidates) {
        if (pool.some((p) => p.equals(c)) || !c.isCA || c.subject.equals(c.issuer)) continue;
        if (pool.some((p) => p.subject.equals(c.issuer) && safeVerify(c, p))) {
          pool.push(c);
          admitted.push(c);
          progress = true;
        }
      }
    }
    if (admitted.length > 0) out.push({ certChain: [...admitted, ...ca.certChain], validFor: ca.validFor });
  }
  return out;
}

function safeVerify(cert: X509Certificate, issuer: X509Certificate): boolean {
  try {
    return cert.verify(issuer);
  } catch {
    return false;
  }
}

/** A node KeyObject from a certificate's SubjectPublicKeyInfo DER. */
export function spkiKey(der: Buffer) {
  return createPublicKey({ key: der, format: 'der', type: 'spki' });
}

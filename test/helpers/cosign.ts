import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Deadline } from '../../src/common/deadline.js';
import type {
  ArtifactClass,
  FoundVia,
  OciDescriptor,
  OciManifest,
  SignatureArtifact,
} from '../../src/registry/types.js';
import type { AuthorityResult, Subject } from '../../src/verify/types.js';
import { cosignVerifier } from '../../src/verify/cosign/index.js';
import type { CosignSpec } from '../../src/policy/authorities/cosign.js';
import { execOk } from './exec.js';
import type { CaChain, Issued } from './pki.js';
import { ROOT } from './tools.js';

const sha = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** The public-good keyless fixtures, in the repository. Tests fail loudly (never skip) when they are absent. */
export const SIGSTORE_PUBLIC = join(ROOT, 'test', 'fixtures', 'sigstore-public');
export function requireSigstoreFixtures(): string {
  if (!existsSync(join(SIGSTORE_PUBLIC, 'README.md')))
    throw new Error(`public-good Sigstore fixtures are missing: expected ${SIGSTORE_PUBLIC}`);
  return SIGSTORE_PUBLIC;
}

/**
 * An in-memory SignatureArtifact: the manifest and blobs as a registry would serve them, so verifier
 * tests can offer fixtures (or tampered copies) without a registry. fetchBlob checks digests like the
 * real client.
 */
export function memoryArtifact(opts: {
  class: ArtifactClass;
  foundVia?: FoundVia;
  repository?: string;
  layers: { mediaType: string; blob: Uint8Array; annotations?: Record<string, string> }[];
  manifest?: Partial<OciManifest>;
}): SignatureArtifact {
  const blobs = new Map<string, Uint8Array>();
  const layers: OciDescriptor[] = opts.layers.map((l) => {
    const digest = sha(l.blob);
    blobs.set(digest, l.blob);
    return {
      mediaType: l.mediaType,
      digest,
      size: l.blob.length,
      ...(l.annotations ? { annotations: l.annotations } : {}),
    };
  });
  const manifest: OciManifest = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha(Buffer.from('{}')), size: 2 },
    layers,
    ...opts.manifest,
  };
  const bytes = Buffer.from(JSON.stringify(manifest));
  return {
    class: opts.class,
    foundVia: opts.foundVia ?? (opts.class === 'cosign-legacy' ? 'cosign-sig-tag' : 'referrers-tag'),
    repository: opts.repository ?? 'registry.test/repo',
    digest: sha(bytes),
    manifest,
    async fetchBlob(d: OciDescriptor) {
      const b = blobs.get(d.digest);
      if (!b) throw new Error(`no blob ${d.digest}`);
      if (sha(b) !== d.digest) throw new Error('digest mismatch');
      return b;
    },
  };
}

export function subjectOf(
  repository: string,
  digest: string,
  mediaType = 'application/vnd.oci.image.manifest.v1+json',
): Subject {
  const slash = repository.indexOf('/');
  return {
    reference: { domain: repository.slice(0, slash), path: repository.slice(slash + 1), digest },
    descriptor: { mediaType, digest, size: 1 },
  };
}

export async function verifyWith(
  spec: CosignSpec,
  subject: Subject,
  artifacts: SignatureArtifact[],
): Promise<AuthorityResult> {
  const deadline = new Deadline(30_000);
  try {
    return await cosignVerifier.verify({ name: 'test', kind: 'cosign', spec }, subject, artifacts, deadline);
  } finally {
    deadline.dispose();
  }
}

// --- driving the real cosign 3.1.1 (cosign-cli.ts) ----------------------------------------------------------

export { cosign, cosignOk, cosignSignKey } from './cosign-cli.js';

export async function openssl(args: string[], cwd: string): Promise<string> {
  return (await execOk('openssl', args, { cwd, timeoutMs: 30_000, maxBuffer: 4 * 1024 * 1024 })).toString();
}

/**
 * A code-signing leaf from the chain's intermediate, as cosign wants it: email SAN, EKU codeSigning,
 * critical digitalSignature, and the Fulcio issuer extensions (.1.1 raw, .1.8 DER UTF8String).
 * `seconds`: its lifetime from now (openssl ca sets validity to the second). Returns the paths of the leaf
 * certificate and its key (PKCS#8 EC, or RSA when asked).
 */
export async function makeLeaf(
  chain: CaChain,
  name: string,
  opts: { email?: string; issuer?: string; rsa?: boolean; seconds?: number } = {},
): Promise<Issued> {
  const issuer = Buffer.from(opts.issuer ?? 'https://issuer.example.com', 'utf8');
  const ext = [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature',
    'extendedKeyUsage=codeSigning',
    `subjectAltName=email:${opts.email ?? 'signer@example.com'}`,
    'authorityKeyIdentifier=keyid',
    // Fulcio's issuer extensions: .1.1 holds the raw string, .1.8 a DER UTF8String.
    `1.3.6.1.4.1.57264.1.1=DER:${issuer.toString('hex')}`,
    `1.3.6.1.4.1.57264.1.8=DER:0c${issuer.length.toString(16).padStart(2, '0')}${issuer.toString('hex')}`,
  ].join('\n');
  return chain.pki.issue(name, {
    kind: opts.rsa ? 'rsa2048' : 'p256',
    subject: `/O=pullguard/CN=${name}`,
    issuer: chain.intermediate,
    ext,
    // Not back-dated: cosign checks the chain at the leaf's NotBefore, when the CA must already exist.
    startSeconds: 0,
    endSeconds: opts.seconds ?? 365 * 86400,
  });
}

/**
 * What a signature-like manifest is, decided from the manifest itself. Index entries are only used to
 * skip fetches that cannot matter: cosign writes `application/vnd.oci.empty.v1+json` into referrers-tag
 * entries for its bundles, so an entry's type is never trusted to say what something IS.
 */
import { X509Certificate } from 'node:crypto';
import { isDigest } from '../common/digest.js';
import { PullguardError } from '../common/errors.js';
import { parseUntrustedJson } from '../common/json.js';
import { DOCKER_MANIFEST, OCI_MANIFEST } from '../contract/media-types.js';
import type { ArtifactClass, FoundVia, OciDescriptor, OciManifest } from './types.js';

export const NOTATION_SIGNATURE = 'application/vnd.cncf.notary.signature';
export const COSIGN_ARTIFACT_SIG = 'application/vnd.dev.cosign.artifact.sig.v1+json';
export const COSIGN_SIMPLE_SIGNING = 'application/vnd.dev.cosign.simplesigning.v1+json';
export const SIGSTORE_BUNDLE_V03 = 'application/vnd.dev.sigstore.bundle.v0.3+json';
export const COSIGN_SIGN_PREDICATE = 'https://sigstore.dev/cosign/sign/v1';
export const BUNDLE_PREDICATE_ANNOTATION = 'dev.sigstore.bundle.predicateType';
export const NOTATION_THUMBPRINT_ANNOTATION = 'io.cncf.notary.x509chain.thumbprint#S256';
export const ATPROTO_SIGNATURE = 'application/vnd.atproto.signature.v1+json';
export const OCI_EMPTY = 'application/vnd.oci.empty.v1+json';
export const OCI_EMPTY_DIGEST = 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a';
const DSSE_ENVELOPE = 'application/vnd.dsse.envelope.v1+json';
export const IN_TOTO = 'application/vnd.in-toto+json';

/** `application/vnd.dev.sigstore.bundle.v0.3+json` and the older `...bundle+json;version=0.x` spellings. */
export function isBundleType(t: string | undefined): boolean {
  return (
    !!t &&
    (/^application\/vnd\.dev\.sigstore\.bundle\.v0\.\d+\+json$/.test(t) ||
      /^application\/vnd\.dev\.sigstore\.bundle\+json(;\s*version=[\d.]+)?$/.test(t))
  );
}

/**
 * Classes an index entry with this artifactType could turn out to be. `undefined` means "cannot tell
 * from the entry": fetch it and look.
 */
export function possibleClassesOfEntry(artifactType: string | undefined): readonly ArtifactClass[] | undefined {
  if (artifactType === NOTATION_SIGNATURE) return ['notation'];
  if (artifactType === COSIGN_ARTIFACT_SIG) return ['cosign-legacy-referrer'];
  if (artifactType === ATPROTO_SIGNATURE) return ['atproto'];
  if (isBundleType(artifactType)) return ['cosign-bundle', 'attestation'];
  if (artifactType === IN_TOTO || artifactType === DSSE_ENVELOPE) return ['attestation'];
  return undefined;
}

/** The one artifactType to ask the referrers API to filter by, when the request needs only one. */
export function filterTypeFor(classes: ReadonlySet<ArtifactClass>): string | undefined {
  const referrerClasses = [...classes].filter((c) => c !== 'cosign-legacy');
  if (referrerClasses.length !== 1) return undefined;
  switch (referrerClasses[0]) {
    case 'notation':
      return NOTATION_SIGNATURE;
    case 'cosign-bundle':
      return SIGSTORE_BUNDLE_V03;
    case 'cosign-legacy-referrer':
      return COSIGN_ARTIFACT_SIG;
    case 'atproto':
      return ATPROTO_SIGNATURE;
    default:
      return undefined;
  }
}

/**
 * Classification rules, in order:
 * - from the `.att` tag: attestation; from the `.sig` tag: cosign-legacy when it has simple-signing layers;
 * - artifactType (else config.mediaType) `...cosign.artifact.sig.v1+json`: cosign-legacy-referrer;
 * - a sigstore bundle type: attestation when the manifest's `dev.sigstore.bundle.predicateType`
 *   annotation names anything but cosign's sign predicate; cosign-bundle when it names that predicate
 *   or is absent (then only the bundle blob can tell, and the cosign verifier decides);
 * - `application/vnd.cncf.notary.signature` (artifactType or config.mediaType): notation;
 * - `application/vnd.atproto.signature.v1+json` (artifactType, else config.mediaType): atproto;
 * - in-toto / DSSE artifact or layers: attestation; anything else: unknown.
 */
export function classify(manifest: OciManifest, via: FoundVia): ArtifactClass {
  if (via === 'cosign-att-tag') return 'attestation';
  if (via === 'cosign-sig-tag')
    return manifest.layers.some((l) => l.mediaType === COSIGN_SIMPLE_SIGNING) ? 'cosign-legacy' : 'unknown';
  const type = manifest.artifactType ?? manifest.config.mediaType;
  if (type === COSIGN_ARTIFACT_SIG) return 'cosign-legacy-referrer';
  if (
    isBundleType(type) ||
    (type === OCI_EMPTY && manifest.layers.length === 1 && isBundleType(manifest.layers[0]!.mediaType))
  ) {
    const predicate = manifest.annotations?.[BUNDLE_PREDICATE_ANNOTATION];
    return predicate !== undefined && predicate !== COSIGN_SIGN_PREDICATE ? 'attestation' : 'cosign-bundle';
  }
  if (manifest.artifactType === NOTATION_SIGNATURE || manifest.config.mediaType === NOTATION_SIGNATURE)
    return 'notation';
  if (type === ATPROTO_SIGNATURE) return 'atproto';
  if (type === IN_TOTO || type === DSSE_ENVELOPE || manifest.layers.some((l) => l.mediaType === DSSE_ENVELOPE))
    return 'attestation';
  return 'unknown';
}

/** Who signed, as far as the manifest says, for `--explain` only. */
export function signerHintOf(manifest: OciManifest, cls: ArtifactClass): string | undefined {
  try {
    if (cls === 'notation') {
      const raw = manifest.annotations?.[NOTATION_THUMBPRINT_ANNOTATION];
      if (!raw) return undefined;
      const list = JSON.parse(raw) as unknown;
      return Array.isArray(list) && typeof list[0] === 'string' ? `certificate sha256:${list[0]}` : undefined;
    }
    if (cls === 'cosign-legacy' || cls === 'cosign-legacy-referrer') {
      const pem = manifest.layers.map((l) => l.annotations?.['dev.sigstore.cosign/certificate']).find((c) => c);
      if (!pem) return manifest.layers.length > 1 ? `key (${manifest.layers.length} signatures)` : 'key';
      const cert = new X509Certificate(pem);
      return cert.subjectAltName ?? cert.subject.replace(/\n/g, ', ');
    }
  } catch {
    return undefined;
  }
  return undefined;
}

function descriptor(v: unknown, where: string): OciDescriptor {
  if (!v || typeof v !== 'object') throw new Error(`${where} is not an object`);
  const d = v as Record<string, unknown>;
  if (typeof d.mediaType !== 'string') throw new Error(`${where}.mediaType is missing`);
  if (typeof d.digest !== 'string' || !isDigest(d.digest)) throw new Error(`${where}.digest is malformed`);
  if (typeof d.size !== 'number' || !Number.isSafeInteger(d.size) || d.size < 0)
    throw new Error(`${where}.size is malformed`);
  if (d.artifactType !== undefined && typeof d.artifactType !== 'string')
    throw new Error(`${where}.artifactType is not a string`);
  if (d.annotations !== undefined && !isStringMap(d.annotations))
    throw new Error(`${where}.annotations is not a string map`);
  return d as unknown as OciDescriptor;
}

function isStringMap(v: unknown): v is Record<string, string> {
  return !!v && typeof v === 'object' && !Array.isArray(v) && Object.values(v).every((x) => typeof x === 'string');
}

function parseJson(bytes: Buffer, what: string): Record<string, unknown> {
  return parseUntrustedJson(bytes, what) as Record<string, unknown>;
}

/** Parses and shape-checks an image manifest; `what` names it in the error. */
export function parseManifest(bytes: Buffer, what: string): OciManifest {
  const j = parseJson(bytes, what);
  try {
    if (!j || typeof j !== 'object' || Array.isArray(j)) throw new Error('not a JSON object');
    if (j.schemaVersion !== 2) throw new Error(`schemaVersion is ${JSON.stringify(j.schemaVersion)}, not 2`);
    if (j.mediaType !== undefined && j.mediaType !== OCI_MANIFEST && j.mediaType !== DOCKER_MANIFEST)
      throw new Error(`mediaType ${JSON.stringify(j.mediaType)} is not an image manifest`);
    descriptor(j.config, 'config');
    if (!Array.isArray(j.layers)) throw new Error('layers is not an array');
    for (const [i, l] of j.layers.entries()) descriptor(l, `layers[${i}]`);
    if (j.subject !== undefined) descriptor(j.subject, 'subject');
    if (j.artifactType !== undefined && typeof j.artifactType !== 'string')
      throw new Error('artifactType is not a string');
    if (j.annotations !== undefined && !isStringMap(j.annotations)) throw new Error('annotations is not a string map');
  } catch (e) {
    throw new PullguardError('REGISTRY_PROTOCOL', `${what} is not a valid image manifest: ${(e as Error).message}`);
  }
  return j as unknown as OciManifest;
}

/** Parses an image index (referrers response or tag) into its manifest descriptors. */
export function parseIndex(bytes: Buffer, what: string): OciDescriptor[] {
  const j = parseJson(bytes, what);
  try {
    if (!j || typeof j !== 'object' || Array.isArray(j)) throw new Error('not a JSON object');
    if (j.schemaVersion !== 2) throw new Error(`schemaVersion is ${JSON.stringify(j.schemaVersion)}, not 2`);
    if (!Array.isArray(j.manifests)) throw new Error('manifests is not an array');
    return j.manifests.map((m, i) => descriptor(m, `manifests[${i}]`));
  } catch (e) {
    throw new PullguardError('REGISTRY_PROTOCOL', `${what} is not a valid image index: ${(e as Error).message}`);
  }
}

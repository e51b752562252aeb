import { bundleFromJSON, type Bundle, type TransparencyLogEntry } from '@sigstore/bundle';
import type { RFC3161Timestamp } from '@sigstore/core';
import { toSignedEntity } from '@sigstore/verify';
import {
  COSIGN_SIGN_PREDICATE,
  COSIGN_SIMPLE_SIGNING as SIMPLE_SIGNING,
  IN_TOTO,
  SIGSTORE_BUNDLE_V03 as BUNDLE_V03,
} from '../../registry/classify.js';
import type { OciDescriptor, SignatureArtifact } from '../../registry/types.js';
import { PullguardError } from '../../common/errors.js';
import { pemBlocks } from '../../policy/authorities/cosign.js';
import { DsseContent, MessageContent } from './content.js';

/**
 * What cosign 3.1.1 writes (sigstore/cosign pkg/oci and the sigstore bundle spec), turned into one model: a
 * `ParsedSignature` carries the signed bytes, the signature, the verification material and the claims
 * (which digest, which repository). Both layouts end up as the same shape, so one verification path
 * (index.ts) serves them; nothing here decides trust.
 */
export { COSIGN_SIMPLE_SIGNING as SIMPLE_SIGNING, SIGSTORE_BUNDLE_V03 as BUNDLE_V03 } from '../../registry/classify.js';
export const SIMPLE_SIGNING_TYPE = 'cosign container image signature';

export const ANN_SIGNATURE = 'dev.cosignproject.cosign/signature';
export const ANN_CERTIFICATE = 'dev.sigstore.cosign/certificate';
export const ANN_CHAIN = 'dev.sigstore.cosign/chain';
export const ANN_REKOR_BUNDLE = 'dev.sigstore.cosign/bundle';

/** Bounds on one artifact, so a hostile registry cannot make us parse forever. */
export const MAX_LAYERS_PER_ARTIFACT = 64;
const MAX_PAYLOAD_BYTES = 256 * 1024;

export interface ParsedSignature {
  readonly format: 'simple-signing' | 'sigstore-bundle';
  /** The image digest the signature is about (simple signing: docker-manifest-digest; bundle: the in-toto subject). */
  readonly signedDigests: readonly string[];
  /** simple signing only: `critical.identity.docker-reference`. Bundles carry no repository. */
  readonly dockerReference?: string;
  readonly content: MessageContent | DsseContent;
  /** DER of the leaf certificate, when the signature carries one. */
  readonly leaf?: Buffer;
  /** DER of certificates shipped with the signature (untrusted intermediates). */
  readonly chain: readonly Buffer[];
  readonly tlogEntries: readonly TransparencyLogEntry[];
  readonly tsaTimestamps: readonly RFC3161Timestamp[];
  /** The bundle's public-key hint, for messages only. */
  readonly keyHint?: string;
}

/** A signature that could not even be read: the reason says why, `code` is always SIGNATURE_INVALID. */
/** A signature that does not parse as the format it claims: it is invalid, whoever signed it. */
export class FormatError extends PullguardError {
  constructor(message: string) {
    super('SIGNATURE_INVALID', message);
    this.name = 'FormatError';
  }
}

/** One thing that may be a signature: a layer of a `.sig`/legacy-referrer manifest, or a bundle referrer's layer. */
export interface Candidate {
  readonly artifact: SignatureArtifact;
  readonly layer: OciDescriptor;
  readonly layerIndex: number;
  readonly format: 'simple-signing' | 'sigstore-bundle';
}

/**
 * Lists the candidates of one artifact. The artifact class comes from discovery, but the manifest is
 * read again here: a class is a hint for routing, never a reason to trust.
 */
export function candidatesOf(artifact: SignatureArtifact): { candidates: Candidate[]; skipped: string[] } {
  const candidates: Candidate[] = [];
  const skipped: string[] = [];
  const layers = artifact.manifest.layers ?? [];
  layers.slice(0, MAX_LAYERS_PER_ARTIFACT).forEach((layer, layerIndex) => {
    if (layer.mediaType === SIMPLE_SIGNING) candidates.push({ artifact, layer, layerIndex, format: 'simple-signing' });
    else if (layer.mediaType === BUNDLE_V03)
      candidates.push({ artifact, layer, layerIndex, format: 'sigstore-bundle' });
    else skipped.push(`layer ${layerIndex} has media type ${layer.mediaType}`);
  });
  if (layers.length > MAX_LAYERS_PER_ARTIFACT)
    skipped.push(
      `${layers.length - MAX_LAYERS_PER_ARTIFACT} layers beyond the first ${MAX_LAYERS_PER_ARTIFACT} ignored`,
    );
  return { candidates, skipped };
}

export async function parseCandidate(c: Candidate): Promise<ParsedSignature> {
  if (c.layer.size > MAX_PAYLOAD_BYTES)
    throw new FormatError(`layer is ${c.layer.size} bytes, more than a signature can be (${MAX_PAYLOAD_BYTES})`);
  const blob = Buffer.from(await c.artifact.fetchBlob(c.layer));
  return c.format === 'simple-signing' ? parseSimpleSigning(blob, c.layer.annotations ?? {}) : parseBundle(blob);
}

// --- legacy: simple signing ------------------------------------------------------------------------------

export function parseSimpleSigning(payload: Buffer, annotations: Record<string, string>): ParsedSignature {
  const sigB64 = annotations[ANN_SIGNATURE];
  if (!sigB64) throw new FormatError(`no ${ANN_SIGNATURE} annotation`);
  const signature = strictBase64(sigB64, 'signature annotation');
  const claims = parseSimpleSigningPayload(payload);

  const certPem = annotations[ANN_CERTIFICATE];
  let leaf: Buffer | undefined;
  if (certPem) {
    const certs = pemBlocks(certPem, 'CERTIFICATE');
    if (certs.length !== 1)
      throw new FormatError(`${ANN_CERTIFICATE} holds ${certs.length} certificates; expected exactly one`);
    leaf = certs[0];
  }
  // cosign sign --certificate-chain writes this annotation as the empty string: no chain, not an error.
  const chain = annotations[ANN_CHAIN] ? pemBlocks(annotations[ANN_CHAIN], 'CERTIFICATE') : [];

  const tlogEntries: TransparencyLogEntry[] = [];
  if (annotations[ANN_REKOR_BUNDLE]) tlogEntries.push(rekorBundleToEntry(annotations[ANN_REKOR_BUNDLE]));

  return {
    format: 'simple-signing',
    signedDigests: [claims.digest],
    dockerReference: claims.dockerReference,
    content: new MessageContent(payload, signature),
    leaf,
    chain,
    tlogEntries,
    tsaTimestamps: [],
  };
}

export function parseSimpleSigningPayload(payload: Buffer): { digest: string; dockerReference: string } {
  let doc: unknown;
  try {
    doc = JSON.parse(payload.toString('utf8'));
  } catch {
    throw new FormatError('payload is not JSON');
  }
  const critical = (doc as { critical?: Record<string, unknown> } | null)?.critical;
  if (!critical || typeof critical !== 'object') throw new FormatError('payload has no "critical" section');
  if (critical.type !== SIMPLE_SIGNING_TYPE)
    throw new FormatError(
      `payload type is ${JSON.stringify(critical.type)}, not ${JSON.stringify(SIMPLE_SIGNING_TYPE)}`,
    );
  const digest = (critical.image as Record<string, unknown> | undefined)?.['docker-manifest-digest'];
  const ref = (critical.identity as Record<string, unknown> | undefined)?.['docker-reference'];
  if (typeof digest !== 'string') throw new FormatError('payload has no critical.image.docker-manifest-digest');
  if (typeof ref !== 'string') throw new FormatError('payload has no critical.identity.docker-reference');
  return { digest, dockerReference: ref };
}

/**
 * cosign's `dev.sigstore.cosign/bundle` annotation ({SignedEntryTimestamp, Payload{body, integratedTime,
 * logIndex, logID}}) is a Rekor v1 entry with an inclusion promise; this is the same entry in the
 * sigstore bundle model, so @sigstore/verify checks the SET and the body exactly as for a bundle.
 */
export function rekorBundleToEntry(text: string): TransparencyLogEntry {
  let doc: {
    SignedEntryTimestamp?: unknown;
    Payload?: { body?: unknown; integratedTime?: unknown; logIndex?: unknown; logID?: unknown };
  };
  try {
    doc = JSON.parse(text);
  } catch {
    throw new FormatError(`${ANN_REKOR_BUNDLE} is not JSON`);
  }
  const p = doc.Payload;
  if (
    typeof doc.SignedEntryTimestamp !== 'string' ||
    !p ||
    typeof p.body !== 'string' ||
    typeof p.integratedTime !== 'number' ||
    typeof p.logIndex !== 'number' ||
    typeof p.logID !== 'string'
  ) {
    throw new FormatError(`${ANN_REKOR_BUNDLE} is missing SignedEntryTimestamp or Payload fields`);
  }
  const body = strictBase64(p.body, 'Rekor body');
  let kind: unknown;
  let version: unknown;
  try {
    const b = JSON.parse(body.toString('utf8')) as { kind?: unknown; apiVersion?: unknown };
    kind = b.kind;
    version = b.apiVersion;
  } catch {
    throw new FormatError('Rekor body is not JSON');
  }
  if (typeof kind !== 'string' || typeof version !== 'string')
    throw new FormatError('Rekor body has no kind/apiVersion');
  if (!/^[0-9a-f]{64}$/.test(p.logID)) throw new FormatError('Rekor logID is not a hex SHA-256');
  return {
    logIndex: String(p.logIndex),
    logId: { keyId: Buffer.from(p.logID, 'hex') },
    kindVersion: { kind, version },
    integratedTime: String(p.integratedTime),
    inclusionPromise: { signedEntryTimestamp: strictBase64(doc.SignedEntryTimestamp, 'SignedEntryTimestamp') },
    inclusionProof: undefined,
    canonicalizedBody: body,
  };
}

// --- v3: sigstore bundle with a DSSE in-toto statement ----------------------------------------------------

export function parseBundle(blob: Buffer): ParsedSignature {
  let json: unknown;
  try {
    json = JSON.parse(blob.toString('utf8'));
  } catch {
    throw new FormatError('bundle is not JSON');
  }
  let bundle: Bundle;
  try {
    bundle = bundleFromJSON(json);
  } catch (e) {
    throw new FormatError(`not a valid sigstore bundle: ${(e as Error).message}`);
  }
  if (bundle.content.$case !== 'dsseEnvelope') {
    throw new FormatError('bundle holds a message signature, not a DSSE statement; cosign image signatures are DSSE');
  }
  const env = bundle.content.dsseEnvelope;
  if (env.signatures.length !== 1)
    throw new FormatError(`DSSE envelope has ${env.signatures.length} signatures; expected exactly one`);
  if (env.payloadType !== IN_TOTO)
    throw new FormatError(`DSSE payloadType is ${JSON.stringify(env.payloadType)}, not ${IN_TOTO}`);
  const statement = parseStatement(env.payload);

  // toSignedEntity gives the key, tlog entries and timestamps in @sigstore/verify's model; only the
  // signature content is replaced, to pick the hash by key (cosign signs P-384 with SHA-384).
  const entity = toSignedEntity(bundle);
  const vm = bundle.verificationMaterial;
  let leaf: Buffer | undefined;
  let chain: Buffer[] = [];
  let keyHint: string | undefined;
  if (vm.content.$case === 'certificate') leaf = Buffer.from(vm.content.certificate.rawBytes);
  else if (vm.content.$case === 'x509CertificateChain') {
    const certs = vm.content.x509CertificateChain.certificates.map((c) => Buffer.from(c.rawBytes));
    leaf = certs[0];
    chain = certs.slice(1);
  } else keyHint = vm.content.publicKey.hint;

  return {
    format: 'sigstore-bundle',
    signedDigests: statement.digests,
    content: new DsseContent(env.payloadType, Buffer.from(env.payload), Buffer.from(env.signatures[0]!.sig)),
    leaf,
    chain,
    tlogEntries: entity.tlogEntries,
    tsaTimestamps: entity.timestamps.flatMap((t) => (t.$case === 'timestamp-authority' ? [t.timestamp] : [])),
    keyHint,
  };
}

/** Thrown for a well-formed statement that is an attestation: valid or not, it is not a signature. */
/** A valid in-toto statement that is an attestation, not a cosign signature: no signature was found. */
export class NotASignature extends PullguardError {
  constructor(message: string) {
    super('NO_SIGNATURE', message);
    this.name = 'NotASignature';
  }
}

function parseStatement(payload: Buffer): { digests: string[] } {
  let st: { _type?: unknown; predicateType?: unknown; subject?: unknown };
  try {
    st = JSON.parse(payload.toString('utf8'));
  } catch {
    throw new FormatError('DSSE payload is not JSON');
  }
  if (st._type !== 'https://in-toto.io/Statement/v1' && st._type !== 'https://in-toto.io/Statement/v0.1') {
    throw new FormatError(`DSSE payload is not an in-toto statement (_type ${JSON.stringify(st._type)})`);
  }
  if (st.predicateType !== COSIGN_SIGN_PREDICATE) {
    throw new NotASignature(
      `an attestation (predicateType ${JSON.stringify(st.predicateType)}), not a cosign signature ` +
        `(${COSIGN_SIGN_PREDICATE})`,
    );
  }
  if (!Array.isArray(st.subject) || st.subject.length === 0) throw new FormatError('statement has no subject');
  const digests: string[] = [];
  for (const s of st.subject as { digest?: Record<string, unknown> }[]) {
    for (const [alg, hex] of Object.entries(s?.digest ?? {}))
      if (typeof hex === 'string') digests.push(`${alg}:${hex}`);
  }
  return { digests };
}

function strictBase64(s: string, what: string): Buffer {
  const t = s.trim();
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(t) || t.length % 4 !== 0) throw new FormatError(`${what} is not base64`);
  return Buffer.from(t, 'base64');
}

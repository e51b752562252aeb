import type { Deadline } from '../common/deadline.js';
import type { Reference } from '../common/reference.js';
import type { Descriptor } from '../contract/descriptor.js';
import type { RegistrySettings } from '../policy/model.js';

/** What a signature-like artifact is, decided from its own manifest (never from an index entry). */
export type ArtifactClass =
  | 'cosign-legacy' //            sha256-<hex>.sig tag, simple-signing layers
  | 'cosign-bundle' //            referrer, artifactType application/vnd.dev.sigstore.bundle.v0.3+json
  | 'cosign-legacy-referrer' //   referrer, artifactType application/vnd.dev.cosign.artifact.sig.v1+json
  | 'notation' //                 referrer, artifactType or config.mediaType application/vnd.cncf.notary.signature
  | 'atproto' //                  referrer, artifactType application/vnd.atproto.signature.v1+json
  | 'attestation' //              .att tag, or a bundle whose predicate is not a cosign signature
  | 'unknown';

/** Where an artifact was found, for `--explain` and the decision record. */
export type FoundVia = 'referrers-api' | 'referrers-tag' | 'cosign-sig-tag' | 'cosign-att-tag';

export interface OciDescriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
}

export interface OciManifest {
  schemaVersion: number;
  mediaType?: string;
  artifactType?: string;
  config: OciDescriptor;
  layers: OciDescriptor[];
  subject?: OciDescriptor;
  annotations?: Record<string, string>;
}

export interface SignatureArtifact {
  readonly class: ArtifactClass;
  readonly foundVia: FoundVia;
  /** `registry/path` of the repository the artifact was read from. */
  readonly repository: string;
  /** Digest of the artifact's manifest (verified). */
  readonly digest: string;
  readonly manifest: OciManifest;
  /** A hint at who signed, for `--explain` (e.g. notation's certificate thumbprint annotation). Never trusted. */
  readonly signerHint?: string;
  /** Fetches one of the manifest's blobs, capped and checked against its digest. */
  fetchBlob(descriptor: OciDescriptor): Promise<Uint8Array>;
}

/** What one verifier needs looked up for one image. */
export interface DiscoveryRequest {
  /** The image being pulled; `subject.digest` is what signatures must refer to. */
  readonly subject: Reference & { digest: string };
  readonly classes: ReadonlySet<ArtifactClass>;
  /** Look for signatures in this repository (`registry/path`) instead of the image's own. */
  readonly signatureRepository?: string;
}

export interface DiscoveryResult {
  readonly artifacts: readonly SignatureArtifact[];
  /** Non-fatal events worth showing in `--explain` (e.g. "referrers API absent; used tag fallback"). */
  readonly notes: readonly string[];
  /** Where discovery looked (tags and referrers, per host), for `--explain` when nothing was found. */
  readonly tried?: readonly string[];
}

export interface RegistryClient {
  discover(request: DiscoveryRequest, deadline: Deadline): Promise<DiscoveryResult>;
  /** Human mode only: resolves a tag to the descriptor containerd would pull. Never used on the containerd path. */
  resolve(ref: Reference, deadline: Deadline): Promise<Descriptor>;
}

export type RegistryClientFactory = (settings: RegistrySettings) => RegistryClient;

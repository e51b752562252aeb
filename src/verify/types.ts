import type { Deadline } from '../common/deadline.js';
import type { ErrorCode } from '../common/errors.js';
import type { Reference } from '../common/reference.js';
import type { Descriptor } from '../contract/descriptor.js';
import type { AuthorityKind, ResolvedAuthorityOf } from '../policy/model.js';
import type { ArtifactClass, FoundVia, SignatureArtifact } from '../registry/types.js';

/** The image being pulled: exactly `-digest`, under the name containerd gave. */
export interface Subject {
  readonly reference: Reference & { digest: string };
  readonly descriptor: Descriptor;
}

/**
 * One check on one signature, in the vocabulary of notation's verification levels: a failed check that
 * is only `logged` does not invalidate the signature.
 */
export interface CheckOutcome {
  readonly check: string;
  readonly result: 'pass' | 'fail' | 'skip';
  readonly enforcement: 'enforced' | 'logged' | 'skipped';
  readonly detail?: string;
}

export interface SignatureResult {
  readonly class: ArtifactClass;
  readonly foundVia: FoundVia;
  readonly repository: string;
  readonly artifact: string;
  readonly valid: boolean;
  /** Why it is valid or not, one line. */
  readonly reason: string;
  readonly code?: ErrorCode;
  /** Who signed: key id, certificate subject or SAN. Never secret. */
  readonly signer?: string;
  readonly checks: readonly CheckOutcome[];
  /**
   * ISO time: the earliest notAfter of the certificates this signature was judged valid against NOW
   * (no signed time to judge them at instead). Past it the same check fails, so a cached allow ends there.
   */
  readonly validUntil?: string;
}

export interface AuthorityResult {
  readonly authority: string;
  readonly kind: string;
  readonly satisfied: boolean;
  readonly reason: string;
  readonly code?: ErrorCode;
  readonly signatures: readonly SignatureResult[];
}

/** What discovery must fetch for an authority, and where. */
export interface ArtifactNeeds {
  readonly classes: readonly ArtifactClass[];
  readonly signatureRepository?: string;
}

/**
 * A verifier for one authority kind. Signature artifacts come in from discovery; a verifier may still
 * use the network for its own trust material (notation's OCSP and CRLs, atproto's DID documents and
 * record proofs), under the same deadline.
 */
export interface Verifier<K extends AuthorityKind> {
  readonly kind: K;
  needs(authority: ResolvedAuthorityOf<K>): ArtifactNeeds;
  verify(
    authority: ResolvedAuthorityOf<K>,
    subject: Subject,
    artifacts: readonly SignatureArtifact[],
    deadline: Deadline,
  ): Promise<AuthorityResult>;
}

import type { Deadline } from '../common/deadline.js';
import type { AuthorityKind, ResolvedAuthority, ResolvedAuthorityOf } from '../policy/model.js';
import type { SignatureArtifact } from '../registry/types.js';
import { atprotoVerifier } from './atproto/verifier.js';
import { cosignVerifier } from './cosign/index.js';
import { notationVerifier } from './notation/verifier.js';
import type { ArtifactNeeds, AuthorityResult, Subject, Verifier } from './types.js';

/** The built-in verifier of every authority kind: a kind without one here does not compile. */
const VERIFIERS: { readonly [K in AuthorityKind]: Verifier<K> } = {
  cosign: cosignVerifier,
  notation: notationVerifier,
  atproto: atprotoVerifier,
};

/** One authority with its verifier, so the spine never handles a kind and a spec that do not belong together. */
export interface BoundVerifier {
  needs(): ArtifactNeeds;
  verify(subject: Subject, artifacts: readonly SignatureArtifact[], deadline: Deadline): Promise<AuthorityResult>;
}

function bind<K extends AuthorityKind>(authority: ResolvedAuthorityOf<K>): BoundVerifier {
  const verifier: Verifier<K> = VERIFIERS[authority.kind];
  return {
    needs: () => verifier.needs(authority),
    verify: (subject, artifacts, deadline) => verifier.verify(authority, subject, artifacts, deadline),
  };
}

export function verifierFor(authority: ResolvedAuthority): BoundVerifier {
  return bind(authority);
}

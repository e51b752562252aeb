import { notationVerifier } from './notation/verifier.js';
import { cosignVerifier } from './cosign/index.js';
import { atprotoVerifier } from './atproto/verifier.js';
import type { Verifier } from './types.js';

/** Built-in verifiers by authority kind. A kind without one here denies with NO_VERIFIER. */
const VERIFIERS: ReadonlyMap<string, Verifier> = new Map<string, Verifier>([
  ['notation', notationVerifier],
  ['cosign', cosignVerifier],
  ['atproto', atprotoVerifier],
]);

export function verifierFor(kind: string): Verifier | undefined {
  return VERIFIERS.get(kind);
}

import type { Verifier } from './types.js';

/** Built-in verifiers by authority kind. A kind without one here denies with NO_VERIFIER. */
const VERIFIERS: ReadonlyMap<string, Verifier> = new Map<string, Verifier>([]);

export function verifierFor(kind: string): Verifier | undefined {
  return VERIFIERS.get(kind);
}

import { createHash } from 'node:crypto';

/**
 * The files a policy load reads (the policy, a containers-policy.json it imports, key files, CA
 * bundles, trusted roots, notation trust policies), each with the SHA-256 of the bytes read. The
 * decision cache keys on them: a changed key file must never be answered from the cache. Loading is
 * synchronous, so one collector at a time is enough.
 */
export interface InputRecord {
  readonly path: string;
  readonly sha256: string;
}

let collector: Map<string, string> | undefined;

/** Called by every reader of policy material, with exactly the bytes it went on to parse. */
export function noteInput(path: string, bytes: Buffer | string): void {
  collector?.set(path, createHash('sha256').update(bytes).digest('hex'));
}

/** Runs a synchronous load and returns what it read, sorted by path. */
export function collectInputs<T>(load: () => T): { result: T; inputs: InputRecord[] } {
  const outer = collector;
  const mine = new Map<string, string>();
  collector = mine;
  try {
    const result = load();
    for (const [path, sha256] of mine) outer?.set(path, sha256);
    const inputs = [...mine].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([path, sha256]) => ({ path, sha256 }));
    return { result, inputs };
  } finally {
    collector = outer;
  }
}

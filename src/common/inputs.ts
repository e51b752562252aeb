/**
 * The files a policy load reads (the policy, a containers-policy.json it imports, key files, CA
 * bundles, trusted roots, notation trust policies, pinned DID documents), each with exactly the content
 * read. The decision cache keys on their hashes: a changed key file must never be answered from the
 * cache. They are hashed there, not here: the first SHA-256 of a run starts OpenSSL's digests (~5 M
 * instructions, ~1.5 ms), which an allow rule without a cache need not pay. Loading is synchronous, so
 * one collector at a time is enough.
 */
export interface InputRecord {
  readonly path: string;
  readonly content: Buffer | string;
}

let collector: Map<string, Buffer | string> | undefined;

/** Called by every reader of policy material, with exactly the bytes it went on to parse. */
export function noteInput(path: string, content: Buffer | string): void {
  collector?.set(path, content);
}

/** Runs a synchronous load and returns what it read, sorted by path. */
export function collectInputs<T>(load: () => T): { result: T; inputs: InputRecord[] } {
  const outer = collector;
  const mine = new Map<string, Buffer | string>();
  collector = mine;
  try {
    const result = load();
    for (const [path, content] of mine) outer?.set(path, content);
    const inputs = [...mine]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([path, content]) => ({ path, content }));
    return { result, inputs };
  } finally {
    collector = outer;
  }
}

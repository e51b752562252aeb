/**
 * The on-disk cache of credential provider answers, shared by every pull process on the node (kubelet
 * keeps the same cache in memory). A typed PrivateStore (private-store.ts): a credential another user
 * could read, or one another user could have planted, is worse than a plugin run.
 */
import { PrivateStore } from './private-store.js';

export const DEFAULT_CREDENTIAL_CACHE_DIR = '/run/pullguard/credentials';

export interface CachedAuth {
  readonly [key: string]: { readonly username?: string; readonly password?: string };
}

export interface CacheHit {
  readonly key: string;
  readonly auth: CachedAuth;
  readonly expiresAt: number;
}

const isObject = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v);
const optString = (v: unknown) => v === undefined || typeof v === 'string';
const isAuthMap = (v: unknown): v is CachedAuth =>
  isObject(v) && Object.values(v).every((e) => isObject(e) && optString(e.username) && optString(e.password));

export class CredentialCache {
  private readonly store: PrivateStore<CachedAuth>;

  constructor(readonly dir: string) {
    this.store = new PrivateStore(dir, 'auth', isAuthMap);
  }

  /** Why the cache is not used, if it is not (for the decision record and doctor). */
  get problem(): string | undefined {
    return this.store.problem;
  }

  /** The first live entry among `keys` (kubelet looks up image, then registry, then global). */
  get(fingerprint: string, keys: readonly string[], now = Date.now()): CacheHit | undefined {
    const hit = this.store.get(fingerprint, keys, now);
    return hit && { key: hit.key, auth: hit.value, expiresAt: hit.expiresAt };
  }

  /** Stores an answer; returns a one-line reason when it could not (the pull goes on without the cache). */
  put(fingerprint: string, key: string, auth: CachedAuth, expiresAt: number): string | undefined {
    const problem = this.store.put(fingerprint, key, auth, expiresAt);
    return problem && `the credential cache: ${problem}`;
  }
}

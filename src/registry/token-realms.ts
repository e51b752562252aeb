/**
 * Token realms remembered across pulls (`registry.tokenRealmCache`, opt-in). A process that starts with
 * no state learns where a registry's tokens come from only from a 401: connect, TLS, 401, then the token
 * server's connect, TLS and GET, all one after another. With the realm of an earlier pull remembered,
 * the token fetch starts at once, beside the registry's own connect and TLS, and the first request
 * carries its token: two round trips fewer on the critical path (bench/remote.mjs).
 *
 * Only what a Bearer challenge names is kept: the realm URL and the service, which the registry tells
 * anyone who asks. Tokens and credentials are never written. An entry is per endpoint origin (scheme and
 * host as hosts.toml gives them) and lives `ttl` (24h by default) from the challenge that taught it; a
 * registry that no longer accepts the remembered realm's token answers 401 with its new challenge, which
 * replaces the entry. The store is a root-only directory (PrivateStore): a realm another user could plant
 * would receive this node's registry credentials.
 */
import { PrivateStore } from './private-store.js';

export const DEFAULT_TOKEN_REALM_DIR = '/run/pullguard/token-realms';
export const DEFAULT_TOKEN_REALM_TTL_MS = 24 * 3_600_000;
const FINGERPRINT = 'token-realm-v1';

export interface TokenRealm {
  readonly realm: string;
  readonly service?: string;
}

const isTokenRealm = (v: unknown): v is TokenRealm => {
  if (!v || typeof v !== 'object') return false;
  const r = v as Record<string, unknown>;
  return (
    typeof r.realm === 'string' && r.realm.length > 0 && (r.service === undefined || typeof r.service === 'string')
  );
};

export class TokenRealmMemory {
  private readonly store: PrivateStore<TokenRealm>;
  private readonly ttlMs: number;
  /** Origins written by this process: parallel 401s from one host store its realm once. */
  private readonly written = new Set<string>();

  constructor(
    settings: { readonly dir?: string; readonly ttlMs?: number },
    private readonly now: () => number = Date.now,
  ) {
    this.store = new PrivateStore(settings.dir ?? DEFAULT_TOKEN_REALM_DIR, 'realm', isTokenRealm);
    this.ttlMs = settings.ttlMs ?? DEFAULT_TOKEN_REALM_TTL_MS;
  }

  get dir(): string {
    return this.store.dir;
  }

  /** Why the memory is not used, if it is not. */
  get problem(): string | undefined {
    return this.store.problem;
  }

  /** The realm an earlier pull learned for `origin` (`https://host[:port]`), while it is live. */
  recall(origin: string): TokenRealm | undefined {
    return this.store.get(FINGERPRINT, [origin], this.now())?.value;
  }

  /**
   * Keeps what `origin` just challenged with, unless it is what we recalled. Returns a one-line reason
   * when it could not be written (the pull goes on; the next one learns it again).
   */
  remember(origin: string, realm: TokenRealm, recalled: TokenRealm | undefined): string | undefined {
    if (this.written.has(origin)) return undefined;
    this.written.add(origin);
    if (recalled && recalled.realm === realm.realm && recalled.service === realm.service) return undefined;
    const value: TokenRealm = realm.service === undefined ? { realm: realm.realm } : realm;
    return this.store.put(FINGERPRINT, origin, value, this.now() + this.ttlMs);
  }
}

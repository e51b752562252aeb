import type { AtprotoSpec } from './authorities/atproto.js';
import type { CosignSpec } from './authorities/cosign.js';
import type { NotationSpec, NotationStatementSpec } from './notation/spec.js';

/**
 * The one internal policy model. Every supported policy document (pullguard's YAML,
 * containers-policy.json and notation's trust policy) is translated into this, and everything
 * downstream reads only this.
 */
export type Action = 'allow' | 'deny' | 'verify';
export type Mode = 'enforce' | 'audit';

export interface Rule {
  readonly name: string;
  /** Patterns as written; see match.ts for the grammar. */
  readonly match: readonly string[];
  readonly action: Action;
  /** For `deny`: shown to the user in place of the generic reason. */
  readonly message?: string;
  /** For `verify`: each authority must be satisfied by at least one valid signature (`all`), or any one (`any`). */
  readonly authorities: readonly Authority[];
  readonly require: 'all' | 'any';
  /**
   * Opt-in: when the registry cannot be reached, an allow the decision cache holds for this digest and
   * no older than this is still given (the outage named in the reason). Needs the policy's `cache`.
   */
  readonly staleIfErrorMs?: number;
}

/**
 * The settings of each authority kind, compiled at policy load (policy/authorities/). Adding a kind here
 * without a schema (authorities/index.ts) or a verifier (verify/index.ts) is a type error.
 */
export interface AuthoritySpecs {
  readonly cosign: CosignSpec;
  readonly notation: NotationSpec;
  readonly atproto: AtprotoSpec;
}

export type AuthorityKind = keyof AuthoritySpecs;

/** A party whose signature counts: `kind` selects the verifier, `spec` is that verifier's settings. */
export type AuthorityOf<K extends AuthorityKind> = {
  readonly name: string;
  readonly kind: K;
  readonly spec: AuthoritySpecs[K];
};
export type Authority = { [K in AuthorityKind]: AuthorityOf<K> }[AuthorityKind];

/**
 * What each kind's verifier receives once policy has resolved the authority for the pulled repository
 * (policy/resolve.ts): the same settings, except that notation's trust-policy statement is chosen.
 */
export interface VerifierSpecs {
  readonly cosign: CosignSpec;
  readonly notation: NotationStatementSpec;
  readonly atproto: AtprotoSpec;
}

export type ResolvedAuthorityOf<K extends AuthorityKind> = {
  readonly name: string;
  readonly kind: K;
  readonly spec: VerifierSpecs[K];
};
export type ResolvedAuthority = { [K in AuthorityKind]: ResolvedAuthorityOf<K> }[AuthorityKind];

/** Builds the typed authority for `kind` from its compiled settings. */
export function authorityOf<K extends AuthorityKind>(kind: K, name: string, spec: AuthoritySpecs[K]): AuthorityOf<K> {
  return { name, kind, spec };
}

export interface Policy {
  /** Where the policy came from, for messages. */
  readonly source: string;
  readonly mode: Mode;
  readonly timeoutMs: number;
  readonly defaultAction: Exclude<Action, 'verify'>;
  readonly rules: readonly Rule[];
  /** Settings for the registry stage (hosts.toml location, credentials, caps). Opaque here. */
  readonly registry: RegistrySettings;
  /** What the policy file says that pullguard leaves aside (e.g. non-docker transports), for `policy check`. */
  readonly notes?: readonly string[];
  /** Where decisions are recorded (decision log, metrics); absent: the defaults (src/output). */
  readonly log?: LogSettings;
  /** The decision cache (src/cache/); absent: every pull is verified. */
  readonly cache?: CacheSettings;
  /** Every file read while loading, with the content read: the decision cache's key covers them. */
  readonly inputs?: readonly PolicyInput[];
}

export interface CacheSettings {
  readonly dir: string;
  readonly ttlMs: number;
  /** An allow whose verdict relied on a revocation check is reused at most this long. */
  readonly revocationIntervalMs: number;
}

export interface PolicyInput {
  readonly path: string;
  readonly content: Buffer | string;
}

export interface LogSettings {
  /** The JSON-lines decision log; `false`: none. Default DEFAULT_DECISION_LOG. */
  readonly file?: string | false;
  readonly maxBytes?: number;
  /** Rotated files kept beside the log (`decisions.jsonl.1` ...). */
  readonly keep?: number;
  /** Prometheus textfile for node_exporter's textfile collector; absent: no metrics. */
  readonly metricsFile?: string;
  /** journald too: `true`, or the name of a journal namespace (journald@NAME). */
  readonly journal?: boolean | string;
}

export interface RegistrySettings {
  /** containerd's config.toml, read for the CRI registry.config_path (hosts.toml directory). */
  readonly containerdConfig?: string;
  /** A docker config.json searched before the default locations. */
  readonly dockerConfig?: string;
  /** kubelet's image credential provider plugins: its --image-credential-provider-config and -bin-dir. */
  readonly credentialProviders?: { readonly config: string; readonly binDir: string; readonly cacheDir?: string };
  /**
   * Token realms remembered across pulls (registry/token-realms.ts): a host's token is fetched beside
   * its connection set-up instead of after a 401. Absent: every pull learns the realm from a challenge.
   */
  readonly tokenRealmCache?: { readonly dir?: string; readonly ttlMs?: number };
  /** Cap on one signature blob, bytes. */
  readonly maxBlobBytes?: number;
  /** Cap on referrers considered per image. */
  readonly maxReferrers?: number;
  /** Cap on all bytes read from registries for one decision. */
  readonly maxTotalBytes?: number;
}

export const DEFAULT_TIMEOUT_MS = 8000;
export const DEFAULT_POLICY_PATH = '/etc/pullguard/policy.yaml';
export const DEFAULT_CACHE_DIR = '/var/lib/pullguard/cache';
export const DEFAULT_DECISION_LOG = '/var/log/pullguard/decisions.jsonl';

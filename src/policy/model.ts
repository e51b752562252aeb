/**
 * The one internal policy model. Every supported policy document (pullguard's YAML, and later
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
}

/**
 * A party whose signature counts. `kind` selects the verifier; `spec` is that verifier's own settings,
 * validated by the schema registered for the kind (policy/authorities/).
 */
export interface Authority {
  readonly name: string;
  readonly kind: string;
  readonly spec: unknown;
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
}

export interface RegistrySettings {
  /** containerd's config.toml, read for the CRI registry.config_path (hosts.toml directory). */
  readonly containerdConfig?: string;
  /** A docker config.json searched before the default locations. */
  readonly dockerConfig?: string;
  /** kubelet's image credential provider plugins: its --image-credential-provider-config and -bin-dir. */
  readonly credentialProviders?: { readonly config: string; readonly binDir: string; readonly cacheDir?: string };
  /** Cap on one signature blob, bytes. */
  readonly maxBlobBytes?: number;
  /** Cap on referrers considered per image. */
  readonly maxReferrers?: number;
}

export const DEFAULT_TIMEOUT_MS = 8000;
export const DEFAULT_POLICY_PATH = '/etc/pullguard/policy.yaml';

import type { Statement } from './trust-policy.js';

/**
 * What a notation authority resolves to once its policy is loaded, whichever form it came in
 * (pullguard YAML, policy/authorities/notation.ts, or a notation configuration directory,
 * policy/formats/notation.ts). The verifier (src/verify/notation) receives only this.
 */
/** How revocation is checked (OCSP, then CRLs, over HTTP). */
export interface RevocationSettings {
  /** Directory for fetched CRLs (survives between pulls); unset = memory only. */
  readonly cacheDir?: string;
  /** Cap per CRL download, also bounded by the run's deadline. */
  readonly timeoutMs: number;
  readonly maxCrlBytes: number;
}

export const DEFAULT_REVOCATION: RevocationSettings = { timeoutMs: 3000, maxCrlBytes: 8 * 1024 * 1024 };

export interface NotationSpec {
  readonly resolved: 'notation';
  /** Where the settings came from, for messages. */
  readonly source: string;
  /** `<dir>/truststore`: holds `x509/{ca,signingAuthority,tsa}/<name>/`. */
  readonly truststoreDir: string;
  /** `scope`: pick the statement for the pulled repository (notation's rules); `fixed`: the only one. */
  readonly select: 'scope' | 'fixed';
  readonly statements: readonly Statement[];
  readonly revocation: RevocationSettings;
}

/**
 * A notation authority as its verifier receives it: the one trust-policy statement that policy chose for
 * the pulled repository (policy/resolve.ts). Never `level: skip`: policy settles that without a verifier.
 */
export interface NotationStatementSpec {
  readonly resolved: 'notation';
  readonly source: string;
  readonly truststoreDir: string;
  readonly statement: Statement;
  readonly revocation: RevocationSettings;
}

export function isNotationSpec(v: unknown): v is NotationSpec {
  return typeof v === 'object' && v !== null && (v as { resolved?: unknown }).resolved === 'notation';
}

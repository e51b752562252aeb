/**
 * Every failure pullguard reports carries a stable code. Codes are part of the interface: they appear in
 * the decision record on stderr, in `verify --explain`, and users grep containerd's log for them.
 */
export type ErrorCode =
  // the containerd contract (bad invocation or stdin)
  | 'CONTRACT_ARGS'
  | 'CONTRACT_STDIN'
  | 'CONTRACT_DESCRIPTOR'
  | 'CONTRACT_DIGEST_MISMATCH'
  // policy
  | 'POLICY_MISSING'
  | 'POLICY_UNREADABLE'
  | 'POLICY_INVALID'
  | 'POLICY_UNSUPPORTED'
  // a rule said deny (or nothing matched and the default is deny): not an error, a verdict
  | 'POLICY_DENIED'
  // references
  | 'REFERENCE_INVALID'
  // registry / discovery
  | 'REGISTRY_UNREACHABLE'
  | 'REGISTRY_AUTH'
  | 'REGISTRY_PROTOCOL'
  | 'REGISTRY_NOT_FOUND'
  | 'REGISTRY_LIMIT'
  | 'REGISTRY_INTEGRITY'
  | 'CONTAINERD_CONFIG'
  // containerd's own API (pullguard scan)
  | 'CONTAINERD_API'
  // verification
  | 'SIGNATURE_INVALID'
  | 'SIGNATURE_UNTRUSTED'
  | 'NO_SIGNATURE'
  // a certificate's revocation status could not be learned (OCSP responder or CRL unreachable, refused, too big)
  | 'REVOCATION_UNKNOWN'
  // the run itself
  | 'DEADLINE_EXCEEDED'
  | 'INTERNAL';

export class PullguardError extends Error {
  readonly code: ErrorCode;
  readonly detail?: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, detail?: Record<string, unknown>, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PullguardError';
    this.code = code;
    this.detail = detail;
  }
}

export function isPullguardError(e: unknown): e is PullguardError {
  return e instanceof PullguardError;
}

/** Turns anything thrown into a PullguardError without losing the message; never exposes a stack. */
export function asPullguardError(e: unknown, fallback: ErrorCode = 'INTERNAL'): PullguardError {
  if (e instanceof PullguardError) return e;
  if (e instanceof Error) return new PullguardError(fallback, e.message, undefined, { cause: e });
  return new PullguardError(fallback, String(e));
}

/** Configuration errors deny with their own exit code so operators can tell "my policy is broken" apart. */
export function isConfigurationError(code: ErrorCode): boolean {
  return (code.startsWith('POLICY_') && code !== 'POLICY_DENIED') || code === 'CONTAINERD_CONFIG';
}

import { shortDigest } from '../common/digest.js';
import { isConfigurationError, type ErrorCode, type PullguardError } from '../common/errors.js';
import type { Mode, Rule } from '../policy/model.js';
import type { AuthorityResult } from '../verify/types.js';

export type Verdict = 'allow' | 'deny';

/** Exit codes: the containerd contract only distinguishes zero from non-zero; operators need more. */
export const EXIT = {
  allow: 0,
  deny: 1,
  /** The policy (or containerd config it points to) is missing, unreadable or invalid. The pull is denied. */
  configError: 2,
  /** A bug or an unexpected environment failure. The pull is denied. */
  internalError: 3,
} as const;

/** The one map from an outcome to the exit code, wherever in the flow it was decided. */
export function exitCodeFor(verdict: Verdict, code?: ErrorCode): number {
  if (verdict === 'allow') return EXIT.allow;
  // A deny caused by the node's configuration (e.g. an unreadable containerd config found while looking
  // up signatures) keeps the configuration exit code, wherever in the flow it surfaced.
  if (code && isConfigurationError(code)) return EXIT.configError;
  return code === 'INTERNAL' ? EXIT.internalError : EXIT.deny;
}

export interface Decision {
  readonly verdict: Verdict;
  /** What the policy alone would have said; differs from `verdict` only in audit mode. */
  readonly policyVerdict: Verdict;
  readonly reason: string;
  readonly code?: ErrorCode;
  readonly rule?: string;
  readonly mode?: Mode;
  readonly results: readonly AuthorityResult[];
  readonly exitCode: number;
  /** Set when the policy has a decision cache: how it took part (src/cache/). */
  readonly cache?: CacheNote;
}

export interface CacheNote {
  /** hit: answered from the cache; stale: the registry was unreachable and staleIfError allowed it; miss: verified. */
  readonly status: 'hit' | 'miss' | 'stale' | 'off';
  readonly verifiedAt?: string;
  readonly expiresAt?: string;
  /** Why the entry ends then: ttl, certificate, revocation, signature. */
  readonly expiry?: string;
  /** stale: the registry failure that was ridden out. off/miss: why the cache was not used or not written. */
  readonly note?: string;
}

export function ruleDecision(
  rule: Rule | undefined,
  verdict: Verdict,
  reason: string,
  results: readonly AuthorityResult[] = [],
  code?: ErrorCode,
): Decision {
  return {
    verdict,
    policyVerdict: verdict,
    reason,
    code,
    rule: rule?.name,
    results,
    exitCode: exitCodeFor(verdict, code),
  };
}

/** Combines authority results under the rule's `require`: each authority (all) or any one (any). */
export function verifyDecision(rule: Rule, results: readonly AuthorityResult[]): Decision {
  const satisfied = results.filter((r) => r.satisfied);
  const ok = rule.require === 'any' ? satisfied.length > 0 : results.length > 0 && satisfied.length === results.length;
  if (ok) {
    const signers = satisfied.map((r) => r.authority).join(', ');
    return ruleDecision(rule, 'allow', `signature verified by ${signers}`, results);
  }
  // Lead with the failure that says most: an authority that found signatures and rejected them explains
  // a deny better than one that found none ("untrusted key" beats "no notation signature found").
  const failing = results
    .filter((r) => !r.satisfied)
    .sort((a, b) => Number(b.signatures.length > 0) - Number(a.signatures.length > 0));
  const first = failing[0];
  if (!first) return ruleDecision(rule, 'deny', 'no authority configured', results, 'NO_SIGNATURE');
  const named = results.length > 1 ? `${first.authority}: ${first.reason}` : first.reason;
  const others = failing.length - 1;
  const reason =
    rule.require === 'all' && results.length > 1
      ? `${failing.length} of ${results.length} required authorities not satisfied; ${named}`
      : others > 0
        ? `${named} (and ${others} more ${others === 1 ? 'authority' : 'authorities'} not satisfied)`
        : named;
  return ruleDecision(rule, 'deny', reason, results, first.code ?? 'NO_SIGNATURE');
}

export function errorDecision(err: PullguardError): Decision {
  return {
    verdict: 'deny',
    policyVerdict: 'deny',
    reason: err.message,
    code: err.code,
    results: [],
    exitCode: exitCodeFor('deny', err.code),
  };
}

/** Audit mode: keep the would-be verdict in the record, but let the pull through. */
export function applyMode(decision: Decision, mode: Mode): Decision {
  // A broken node configuration is not a verdict about the image: audit mode does not hide it.
  if (mode !== 'audit' || decision.verdict === 'allow' || decision.exitCode === EXIT.configError)
    return { ...decision, mode };
  return {
    ...decision,
    mode,
    verdict: 'allow',
    exitCode: EXIT.allow,
    reason: `audit mode, would deny: ${decision.reason}`,
  };
}

export function describeSubject(name: string, digest: string): string {
  const at = name.indexOf('@');
  const repo = at >= 0 ? name.slice(0, at) : name.replace(/:[^:/]+$/, '');
  return `${repo}@${shortDigest(digest)}`;
}

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
}

export function ruleDecision(rule: Rule | undefined, verdict: Verdict, reason: string, results: readonly AuthorityResult[] = [], code?: ErrorCode): Decision {
  return { verdict, policyVerdict: verdict, reason, code, rule: rule?.name, results, exitCode: verdict === 'allow' ? EXIT.allow : EXIT.deny };
}

/** Combines authority results under the rule's `require`: each authority (all) or any one (any). */
export function verifyDecision(rule: Rule, results: readonly AuthorityResult[]): Decision {
  const satisfied = results.filter((r) => r.satisfied);
  const ok = rule.require === 'any' ? satisfied.length > 0 : results.length > 0 && satisfied.length === results.length;
  if (ok) {
    const signers = satisfied.map((r) => r.authority).join(', ');
    return ruleDecision(rule, 'allow', `signature verified by ${signers}`, results);
  }
  const failing = results.filter((r) => !r.satisfied);
  const first = failing[0];
  const reason = !first
    ? 'no authority configured'
    : rule.require === 'any' || failing.length === 1
      ? `${first.reason}${failing.length > 1 ? ` (and ${failing.length - 1} more authorities failed)` : ''}`
      : `${failing.length} of ${results.length} required authorities not satisfied: ${first.reason}`;
  return ruleDecision(rule, 'deny', reason, results, first?.code ?? 'NO_SIGNATURE');
}

export function errorDecision(err: PullguardError, rule?: Rule): Decision {
  const config = isConfigurationError(err.code);
  return {
    verdict: 'deny',
    policyVerdict: 'deny',
    reason: err.message,
    code: err.code,
    rule: rule?.name,
    results: [],
    exitCode: config ? EXIT.configError : err.code === 'INTERNAL' ? EXIT.internalError : EXIT.deny,
  };
}

/** Audit mode: keep the would-be verdict in the record, but let the pull through. */
export function applyMode(decision: Decision, mode: Mode): Decision {
  if (mode !== 'audit' || decision.verdict === 'allow') return { ...decision, mode };
  return { ...decision, mode, verdict: 'allow', exitCode: EXIT.allow, reason: `audit mode, would deny: ${decision.reason}` };
}

export function describeSubject(name: string, digest: string): string {
  const at = name.indexOf('@');
  const repo = at >= 0 ? name.slice(0, at) : name.replace(/:[^:/]+$/, '');
  return `${repo}@${shortDigest(digest)}`;
}

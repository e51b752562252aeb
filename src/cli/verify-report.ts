/** `pullguard verify --json` and `--offline`: the decision for scripts, and the policy alone (no registry). */
import { formatReference, type Reference } from '../common/reference.js';
import { DEFAULT_DECISION_LOG, type Authority, type LogSettings, type Policy } from '../policy/model.js';
import { DEFAULT_KEEP, DEFAULT_MAX_BYTES } from '../output/decision-log.js';
import { RuleMatcher } from '../policy/match.js';
import { applyMode } from '../verdict/decision.js';
import type { DecideResult } from './decide.js';

/** Everything `--explain` prints, as one JSON document. Signature bytes and keys are never in it. */
export function explainJson(result: DecideResult, policy: Policy, subject: string): Record<string, unknown> {
  const d = applyMode(result.decision, policy.mode);
  return {
    subject,
    verdict: d.verdict,
    policyVerdict: d.policyVerdict,
    wouldDeny: d.verdict === 'allow' && d.policyVerdict === 'deny',
    reason: d.reason,
    code: d.code ?? null,
    exitCode: d.exitCode,
    mode: policy.mode,
    policy: policy.source,
    rule: result.match
      ? { name: result.match.rule.name, action: result.match.rule.action, pattern: result.match.pattern.source }
      : null,
    default: policy.defaultAction,
    discovery: result.discovery.map((r) => ({
      tried: r.tried ?? [],
      notes: r.notes,
      artifacts: r.artifacts.map((a) => ({
        class: a.class,
        digest: a.digest,
        foundVia: a.foundVia,
        repository: a.repository,
        signerHint: a.signerHint ?? null,
      })),
    })),
    authorities: d.results,
  };
}

export interface OfflineReport {
  readonly subject: string;
  readonly rule: { name: string; action: string; pattern: string } | null;
  /** allow/deny when the policy alone decides; `verify` when signatures decide. */
  readonly outcome: 'allow' | 'deny' | 'verify';
  /** What a pull would be told, in this mode (audit lets a deny through). */
  readonly effect: string;
  readonly authorities: readonly { name: string; kind: string; settings: Record<string, unknown> }[];
  readonly require: 'all' | 'any' | null;
  readonly notes: readonly string[];
}

/** Pure: which rule and authorities apply to `ref`, without touching the registry (like `kyverno test`). */
export function offlineReport(policy: Policy, ref: Reference): OfflineReport {
  const notes: string[] = [];
  if (!ref.digest)
    notes.push(
      'no digest given: rules that pin a digest (pattern@sha256:...) were not considered; pass ref@sha256:... ' +
        'as containerd does',
    );
  const match = new RuleMatcher(policy.rules).find(ref, ref.digest ?? '');
  const subject = formatReference(ref);
  if (!match) {
    const outcome = policy.defaultAction;
    return {
      subject,
      rule: null,
      outcome,
      effect: effectOf(outcome, policy, `no rule matches; default is ${outcome}`),
      authorities: [],
      require: null,
      notes,
    };
  }
  const { rule } = match;
  const authorities = rule.authorities.map((a) => ({ name: a.name, kind: a.kind, settings: summarize(a) }));
  const reason =
    rule.action === 'deny' ? (rule.message ?? 'denied by policy') : rule.action === 'allow' ? 'allowed by policy' : '';
  return {
    subject,
    rule: { name: rule.name, action: rule.action, pattern: match.pattern.source },
    outcome: rule.action,
    effect:
      rule.action === 'verify'
        ? `decided by signatures: ${rule.require === 'any' ? 'any one' : 'each'} of ` +
          authorities.map((a) => `${a.kind}:${a.name}`).join(', ') +
          (policy.mode === 'audit' ? ' (audit mode: a failure is logged, the pull allowed)' : '')
        : effectOf(rule.action, policy, reason),
    authorities,
    require: rule.action === 'verify' ? rule.require : null,
    notes,
  };
}

function effectOf(outcome: 'allow' | 'deny', policy: Policy, reason: string): string {
  if (outcome === 'allow') return `allowed: ${reason}`;
  return policy.mode === 'audit' ? `allowed (audit mode, would deny: ${reason})` : `denied: ${reason}`;
}

/** An authority's settings, reduced to what a person checks: names, counts and flags, never key material. */
function summarize(a: Authority): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (!a.spec || typeof a.spec !== 'object') return out;
  for (const [k, v] of Object.entries(a.spec as unknown as Record<string, unknown>)) {
    if (v === undefined || typeof v === 'function') continue;
    if (typeof v === 'boolean' || typeof v === 'number' || typeof v === 'string') out[k] = v;
    else if (Array.isArray(v) && v.length > 0) out[k] = k === 'identities' ? v.map(describeIdentity) : v.length;
  }
  return out;
}

function describeIdentity(i: unknown): string {
  if (!i || typeof i !== 'object') return String(i);
  return Object.entries(i as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${v instanceof RegExp ? `/${v.source}/` : String(v)}`)
    .join(' ');
}

export function printOffline(r: OfflineReport, policy: Policy, out: (l: string) => void): void {
  out(
    `${r.outcome === 'verify' ? 'VERIFY' : r.outcome.toUpperCase()} ${r.subject} (offline: the policy alone, no ` +
      `registry)`,
  );
  out(
    r.rule
      ? `  rule:   "${r.rule.name}" (${r.rule.action}), matched by pattern ${r.rule.pattern}`
      : `  rule:   none matched; policy default is ${policy.defaultAction}`,
  );
  out(`  effect: ${r.effect}`);
  out(`  policy: ${policy.source} (mode ${policy.mode})`);
  for (const a of r.authorities) {
    const settings = Object.entries(a.settings)
      .map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join('; ') : String(v)}`)
      .join(', ');
    out(`  authority ${a.kind}:${a.name}${settings ? ` (${settings})` : ''}`);
  }
  for (const n of r.notes) out(`  note:   ${n}`);
}

/** `policy check`'s line about where decisions go. */
export function describeLogSettings(log: LogSettings | undefined): string {
  const file = log?.file ?? DEFAULT_DECISION_LOG;
  const mib = (log?.maxBytes ?? DEFAULT_MAX_BYTES) / (1024 * 1024);
  const decisions =
    file === false
      ? 'decision log off'
      : `decision log ${file} (rotated past ${Number(mib.toFixed(2))} MiB, ${log?.keep ?? DEFAULT_KEEP} kept)`;
  return (
    `${decisions}; metrics ` +
    `${log?.metricsFile ?? 'off'}` +
    (log?.journal ? `; journald${typeof log.journal === 'string' ? ` namespace ${log.journal}` : ''}` : '')
  );
}

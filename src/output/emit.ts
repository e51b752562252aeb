import type { Decision } from '../verdict/decision.js';
import { describeSubject } from '../verdict/decision.js';

/** containerd turns stdout into the Kubernetes event text; keep it to one short line. */
export const MAX_LINE_BYTES = 1024;

export interface RunContext {
  readonly name: string;
  readonly digest: string;
  readonly startedAt: number;
}

/** `denied localhost:5000/app@sha256:ab12...: no trusted signature (rule "prod")` */
export function formatLine(decision: Decision, ctx: Pick<RunContext, 'name' | 'digest'>): string {
  const verb = decision.verdict === 'allow' ? 'allowed' : 'denied';
  const subject = ctx.name || ctx.digest ? describeSubject(ctx.name || '<no name>', ctx.digest || '<no digest>') : 'image';
  const rule = decision.rule ? ` (rule "${decision.rule}")` : '';
  return truncateLine(`${verb} ${subject}: ${decision.reason}${rule}`, MAX_LINE_BYTES);
}

export function truncateLine(s: string, maxBytes: number): string {
  // Control characters would break the event line or a terminal; a registry can put anything in an error.
  // eslint-disable-next-line no-control-regex
  const flat = s.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim();
  if (Buffer.byteLength(flat) <= maxBytes) return flat;
  let out = flat.slice(0, maxBytes);
  while (Buffer.byteLength(out) > maxBytes - 3) out = out.slice(0, -1);
  return `${out}\u2026`;
}

/** The decision record: one JSON line on stderr, which containerd writes to its debug log. */
export function formatRecord(decision: Decision, ctx: RunContext, now: number = Date.now()): string {
  return JSON.stringify({
    time: new Date(now).toISOString(),
    component: 'pullguard',
    name: ctx.name,
    digest: ctx.digest,
    rule: decision.rule ?? null,
    mode: decision.mode ?? null,
    verdict: decision.verdict,
    policyVerdict: decision.policyVerdict,
    reason: decision.reason,
    code: decision.code ?? null,
    exitCode: decision.exitCode,
    durationMs: now - ctx.startedAt,
    results: decision.results,
    ...(decision.cache ? { cache: decision.cache } : {}),
  });
}

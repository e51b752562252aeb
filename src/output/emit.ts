import type { Decision } from '../verdict/decision.js';
import type { AuthorityResult } from '../verify/types.js';
import { describeSubject } from '../verdict/decision.js';
import { dropLoneSurrogate, flattenText } from '../common/text.js';

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
  const subject =
    ctx.name || ctx.digest ? describeSubject(ctx.name || '<no name>', ctx.digest || '<no digest>') : 'image';
  const rule = decision.rule ? ` (rule "${decision.rule}")` : '';
  return truncateLine(`${verb} ${subject}: ${decision.reason}${rule}`, MAX_LINE_BYTES);
}

/**
 * Printable ASCII, and the ellipsis describeSubject writes: the only character here that flattenText
 * replaces is the space (Zs), a run of them by one, so without a double space it would only trim. This
 * skips compiling its Unicode-property regex, which the startup snapshot cannot keep compiled and which
 * cost ~3% of an allow decision's instructions (valgrind).
 */
const PLAIN_LINE = /^[\x20-\x7e\u2026]*$/;

export function truncateLine(s: string, maxBytes: number): string {
  // A registry can put anything in an error: only one plain line reaches the event (common/text.ts).
  const flat = PLAIN_LINE.test(s) && !s.includes('  ') ? s.trim() : flattenText(s);
  if (Buffer.byteLength(flat) <= maxBytes) return flat;
  let out = flat.slice(0, maxBytes);
  while (Buffer.byteLength(out) > maxBytes - 3) out = out.slice(0, -1);
  return `${dropLoneSurrogate(out)}\u2026`;
}

/**
 * containerd keeps 32 KiB of a verifier's stderr; a record cut there is no longer JSON. Stay under it
 * with room for the newline.
 */
export const MAX_RECORD_BYTES = 32 * 1024 - 512;

/**
 * The decision record: one JSON line on stderr, which containerd writes to its debug log. A registry
 * decides how many signatures there are, so the record is cut to size: per-signature checks go first,
 * then signatures beyond the first few per authority (valid ones kept first), then all of them; counts
 * stay, and `truncated: true` says something was left out.
 */
export function formatRecord(decision: Decision, ctx: RunContext, now: number = Date.now()): string {
  const base = {
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
    ...(decision.cache ? { cache: decision.cache } : {}),
  };
  const full = toJsonLine({ ...base, results: decision.results });
  if (Buffer.byteLength(full) <= MAX_RECORD_BYTES) return full;
  const shortBase = { ...base, reason: clip(base.reason, 2048), truncated: true };
  for (const keep of [Infinity, 8, 2, 0]) {
    const results = decision.results.map((r) => trimResult(r, keep));
    const line = toJsonLine({ ...shortBase, results });
    if (Buffer.byteLength(line) <= MAX_RECORD_BYTES) return line;
  }
  const results = decision.results.slice(0, 16).map((r) => ({ ...trimResult(r, 0), reason: clip(r.reason, 256) }));
  const line = toJsonLine({ ...shortBase, results, resultsOmitted: decision.results.length - results.length });
  if (Buffer.byteLength(line) <= MAX_RECORD_BYTES) return line;
  return toJsonLine({ ...shortBase, results: [], resultsOmitted: decision.results.length });
}

/** One authority's result with at most `keep` signatures, none of their per-check detail, and counts. */
function trimResult(r: AuthorityResult, keep: number) {
  const ordered = [...r.signatures].sort((a, b) => Number(b.valid) - Number(a.valid));
  const kept = ordered.slice(0, keep).map(({ checks, ...s }) => ({
    ...s,
    reason: clip(s.reason, 512),
    failedChecks: checks.filter((c) => c.result === 'fail').map((c) => c.check),
  }));
  return {
    ...r,
    reason: clip(r.reason, 1024),
    signatures: kept,
    signatureCount: r.signatures.length,
    validSignatureCount: r.signatures.filter((s) => s.valid).length,
    signaturesOmitted: r.signatures.length - kept.length,
  };
}

const clip = (s: string, max: number) => (s.length > max ? `${dropLoneSurrogate(s.slice(0, max))}...` : s);

/** JSON.stringify leaves U+2028/U+2029 raw (valid JSON, but a line break to many log readers). */
function toJsonLine(value: unknown): string {
  return JSON.stringify(value).replace(/[\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16)}`);
}

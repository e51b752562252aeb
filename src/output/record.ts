import type { Decision } from '../verdict/decision.js';
import type { RunContext } from './emit.js';

/**
 * One decision as the node keeps it (decision log, journal, metrics, `pullguard log`). A stable, flat
 * shape: `v` is bumped on any incompatible change. No secrets: names, digests, rule names, error codes
 * and reasons that are already shown in the pull's event text, with credentials in URLs scrubbed.
 */
export interface DecisionEntry {
  readonly v: 1;
  readonly time: string;
  readonly name: string;
  readonly digest: string;
  /** Registry host of `name`, for grouping and the registry-error metric. */
  readonly host: string;
  readonly rule: string | null;
  readonly mode: 'enforce' | 'audit';
  readonly verdict: 'allow' | 'deny';
  readonly policyVerdict: 'allow' | 'deny';
  /** Audit mode let through what enforce would deny. */
  readonly wouldDeny: boolean;
  readonly code: string | null;
  readonly reason: string;
  readonly exitCode: number;
  readonly durationMs: number;
  readonly authorities: readonly { name: string; kind: string; satisfied: boolean; code?: string; signer?: string }[];
  /** Answered from pullguard's decision cache (set by the cache, when there is one). */
  readonly cacheHit?: boolean;
  /** `scan`: decided by `pullguard scan` for an image already on the node; absent: a pull. */
  readonly source?: 'scan';
}

const MAX_REASON = 600;
const MAX_AUTHORITIES = 16;

export function toEntry(
  decision: Decision,
  ctx: RunContext,
  now: number,
  extra: { cacheHit?: boolean; source?: 'scan' } = {},
): DecisionEntry {
  return {
    v: 1,
    time: new Date(now).toISOString(),
    name: clip(ctx.name, 512),
    digest: clip(ctx.digest, 80),
    host: hostOf(ctx.name),
    rule: decision.rule ?? null,
    mode: decision.mode ?? 'enforce',
    verdict: decision.verdict,
    policyVerdict: decision.policyVerdict,
    wouldDeny: decision.verdict === 'allow' && decision.policyVerdict === 'deny',
    code: decision.code ?? null,
    reason: clip(scrub(decision.reason), MAX_REASON),
    exitCode: decision.exitCode,
    durationMs: Math.max(0, now - ctx.startedAt),
    authorities: decision.results.slice(0, MAX_AUTHORITIES).map((r) => {
      const signer = r.satisfied ? r.signatures.find((s) => s.valid)?.signer : undefined;
      return {
        name: r.authority,
        kind: r.kind,
        satisfied: r.satisfied,
        ...(r.code ? { code: r.code } : {}),
        ...(signer ? { signer: clip(signer, 200) } : {}),
      };
    }),
    ...(extra.cacheHit !== undefined ? { cacheHit: extra.cacheHit } : {}),
    ...(extra.source ? { source: extra.source } : {}),
  };
}

/** The registry host of a CRI-normalized name (`docker.io/library/x:1` -> `docker.io`). */
export function hostOf(name: string): string {
  const first = name.split('/')[0] ?? '';
  return name.includes('/') && /[.:]|^localhost$/.test(first) ? first : name ? 'docker.io' : '';
}

/** The repository of a name, without tag or digest: what `pullguard log` groups by. */
export function repositoryOf(name: string): string {
  const at = name.indexOf('@');
  const noDigest = at >= 0 ? name.slice(0, at) : name;
  return noDigest.replace(/:[^:/]+$/, '');
}

/** What the policy said, without audit mode's prefix. */
export function policyReason(entry: Pick<DecisionEntry, 'reason'>): string {
  return entry.reason.replace(/^audit mode, would deny: /, '');
}

/**
 * Registry error text can echo a URL: drop userinfo, token-like query parameters and authorization
 * values, so no credential (a presigned blob URL, a bearer token) lands in a node-local file.
 */
export function scrub(s: string): string {
  return s
    .replace(/(\b[a-z][a-z0-9+.-]*:\/\/)[^/@\s]+@/gi, '$1')
    .replace(
      /([?&][^=&\s]*(?:token|signature|sig|key|credential|secret|password|auth)[^=&\s]*=)[^&\s"']+/gi,
      '$1REDACTED',
    )
    .replace(/([?&]X-Amz-[A-Za-z-]+=)[^&\s"']+/g, '$1REDACTED')
    .replace(/\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+/g, '$1 REDACTED');
}

function clip(s: string, max: number): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: flattening control characters is the point
  const flat = s.replace(/[\u0000-\u001f\u007f]/g, ' ');
  return flat.length > max ? `${flat.slice(0, max)}...` : flat;
}

import { Deadline, formatDuration } from '../common/deadline.js';
import { repositoryOf } from '../common/reference.js';
import type { Policy, Rule } from '../policy/model.js';
import { RuleMatcher, type RuleMatch } from '../policy/match.js';
import type { DiscoveryResult } from '../registry/types.js';
import { ruleDecision, type CacheNote, type Decision } from '../verdict/decision.js';
import type { Subject } from '../verify/types.js';
import { cacheKey } from './key.js';
import { CacheStore, type CacheEntry } from './store.js';

/**
 * decide() behind the decision cache (policy `cache:`). Only allows of `verify` rules are stored: an
 * allow or deny rule costs nothing to recompute, and a denial is never cached, because the fix for one
 * (a signature pushed, a key rolled out) must work on the very next kubelet retry. A hit touches neither
 * the registry nor a verifier: it costs the policy load (which reads the key files the key is made
 * from) plus one small file read.
 *
 * An entry expires at the earliest of the TTL, the notAfter of any certificate (or the signer's expiry)
 * that a signature was judged valid against at verification time (SignatureResult.validUntil), and, when
 * the verdict relied on a revocation check (notation OCSP/CRL), `revocationInterval` after verification.
 *
 * staleIfError (per rule, opt-in): when verification failed only because the registry could not be
 * reached, an entry verified within that window still allows, the outage named in the reason. The window
 * never reaches past a relied-on certificate's notAfter; it does reach past the TTL and the revocation
 * interval, which is the point of it (an outage must not keep a node from restarting the pods it ran).
 */
/** What decide() returns (cli/decide.ts), as far as the cache needs it. */
export interface Decided {
  readonly decision: Decision;
  readonly match?: RuleMatch;
  readonly discovery: readonly DiscoveryResult[];
}

/** Leave this much of the budget to answer from the cache when a hung registry eats the rest. */
const STALE_RESERVE_MS = 500;

export async function decideCached(
  subject: Subject,
  policy: Policy,
  deadline: Deadline,
  decide: (deadline: Deadline) => Promise<Decided>,
  now: () => number = Date.now,
): Promise<Decided> {
  const settings = policy.cache;
  const match = settings ? new RuleMatcher(policy.rules).find(subject.reference, subject.reference.digest) : undefined;
  if (!settings || !match || match.rule.action !== 'verify') return decide(deadline);
  const rule = match.rule;
  const repository = repositoryOf(subject.reference);
  const key = cacheKey(subject, repository, rule, policy);
  const opened = CacheStore.open(settings.dir, true);
  if (!key || !(opened instanceof CacheStore)) {
    const result = await decide(deadline);
    return withNote(result, {
      status: 'off',
      note: key ? (opened as { problem: string }).problem : 'policy not loaded from a file',
    });
  }
  const store = opened;
  const entry = store.read(key);
  const t0 = now();
  if (entry && t0 < entry.expiresAt) {
    const note: CacheNote = {
      status: 'hit',
      verifiedAt: iso(entry.verifiedAt),
      expiresAt: iso(entry.expiresAt),
      expiry: entry.expiry,
    };
    const decision = ruleDecision(
      rule,
      'allow',
      `${entry.reason} (cached: verified ${ago(t0 - entry.verifiedAt)} ago)`,
    );
    return { decision: { ...decision, cache: note }, match, discovery: [] };
  }

  const staleable = rule.staleIfErrorMs !== undefined && entry !== undefined && t0 < entry.staleUntil;
  const inner = staleable ? new Deadline(Math.max(1, deadline.remainingMs() - STALE_RESERVE_MS)) : deadline;
  let result: Decided;
  try {
    result = await decide(inner);
  } finally {
    if (inner !== deadline) inner.dispose();
  }
  const t1 = now();
  if (result.decision.verdict === 'allow') {
    const fresh = entryFor(result.decision, rule, key, subject, repository, policy, t1);
    if (!fresh) return withNote(result, { status: 'miss', note: 'not stored: a certificate it relied on expires now' });
    try {
      store.write(fresh, t1);
    } catch (e) {
      return withNote(result, {
        status: 'miss',
        note: `not stored: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
      });
    }
    return withNote(result, {
      status: 'miss',
      verifiedAt: iso(fresh.verifiedAt),
      expiresAt: iso(fresh.expiresAt),
      expiry: fresh.expiry,
    });
  }
  if (
    staleable &&
    rule.staleIfErrorMs !== undefined &&
    entry &&
    t1 < entry.staleUntil &&
    registryUnreachable(result.decision)
  ) {
    const outage = result.decision.reason;
    const note: CacheNote = {
      status: 'stale',
      verifiedAt: iso(entry.verifiedAt),
      expiresAt: iso(entry.expiresAt),
      expiry: entry.expiry,
      note: outage,
    };
    const window = formatDuration(rule.staleIfErrorMs);
    const reason =
      `registry unreachable, allowed by staleIfError (verified ${ago(t1 - entry.verifiedAt)} ago, window ${window})` +
      `: ${outage}`;
    return { ...result, decision: { ...ruleDecision(rule, 'allow', reason, result.decision.results), cache: note } };
  }
  return withNote(result, {
    status: 'miss',
    note: entry ? `entry expired (${entry.expiry}) at ${iso(entry.expiresAt)}` : undefined,
  });
}

function withNote(result: Decided, note: CacheNote): Decided {
  const clean = Object.fromEntries(Object.entries(note).filter(([, v]) => v !== undefined)) as unknown as CacheNote;
  return { ...result, decision: { ...result.decision, cache: clean } };
}

/** The entry an allow becomes, or undefined when its bounds leave it no lifetime. */
function entryFor(
  decision: Decision,
  rule: Rule,
  key: string,
  subject: Subject,
  repository: string,
  policy: Policy,
  t: number,
): CacheEntry | undefined {
  const settings = policy.cache!;
  let expiresAt = t + settings.ttlMs;
  let expiry = 'ttl';
  let certificateBound = Number.POSITIVE_INFINITY;
  let revocation = false;
  for (const authority of decision.results) {
    for (const sig of authority.signatures) {
      if (!sig.valid) continue;
      if (sig.validUntil !== undefined) certificateBound = Math.min(certificateBound, Date.parse(sig.validUntil));
      if (
        sig.checks.some(
          (c) =>
            (c.check === 'revocation' && c.result !== 'skip') ||
            (c.check === 'authenticTimestamp' && c.result === 'pass' && c.detail?.startsWith('timestamped')),
        )
      ) {
        revocation = true;
      }
    }
  }
  if (!(certificateBound > t)) return undefined;
  if (certificateBound < expiresAt) {
    expiresAt = certificateBound;
    expiry = 'certificate';
  }
  if (revocation && t + settings.revocationIntervalMs < expiresAt) {
    expiresAt = t + settings.revocationIntervalMs;
    expiry = 'revocation';
  }
  const staleUntil = rule.staleIfErrorMs !== undefined ? Math.min(t + rule.staleIfErrorMs, certificateBound) : 0;
  return {
    v: 1,
    key,
    digest: subject.reference.digest,
    repository,
    rule: rule.name,
    reason: decision.reason,
    verifiedAt: t,
    expiresAt,
    expiry,
    staleUntil,
  };
}

/**
 * The deny says nothing about the image, only that the registry could not be asked: every authority
 * failed with REGISTRY_UNREACHABLE (refused, reset, timed out, or an HTTP 5xx) or the deadline ran out.
 */
function registryUnreachable(d: Decision): boolean {
  const outage = (code: string | undefined) => code === 'REGISTRY_UNREACHABLE' || code === 'DEADLINE_EXCEEDED';
  if (d.results.length === 0) return outage(d.code);
  return d.results.every((r) => r.satisfied || (outage(r.code) && r.signatures.length === 0));
}

const iso = (ms: number) => new Date(ms).toISOString();

function ago(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  return s < 120 ? `${s}s` : s < 7200 ? `${Math.round(s / 60)}m` : `${Math.round(s / 3600)}h`;
}

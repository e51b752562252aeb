import { DEFAULT_DECISION_LOG, type LogSettings } from '../policy/model.js';
import type { Decision } from '../verdict/decision.js';
import { appendDecision } from './decision-log.js';
import type { RunContext } from './emit.js';
import { releaseAllSync } from './lock.js';
import { recordMetrics } from './metrics.js';
import { toEntry } from './record.js';

/**
 * Upper bound on the time a pull spends recording its decision after the verdict is out. It takes about
 * a millisecond and never waits for another pull; the bound is for a hung filesystem, and is generous
 * because a node starting fifty pods at once can starve a process of CPU for seconds (the e2e sees it).
 * The hard stop (policy timeout + grace, below containerd's per_verifier_timeout) bounds it too.
 */
export const MAX_RECORD_MS = 5000;

export interface RecordOptions {
  /** Stop waiting at this time (ms since epoch); capped at MAX_RECORD_MS from now. */
  readonly until?: number;
  /** One line on stderr (containerd's debug log). */
  readonly warn: (line: string) => void;
  readonly now?: number;
  /** Set by the decision cache. */
  readonly cacheHit?: boolean;
}

/**
 * Writes the decision to the node's decision log and metrics file. Runs after the verdict line is on
 * stdout and never throws: a full disk, a read-only directory or a busy lock costs one warning on
 * stderr, and the whole thing is cut off at `until` so it cannot push the pull past containerd's timeout.
 */
export async function recordDecision(decision: Decision, ctx: RunContext, settings: LogSettings | undefined, opts: RecordOptions): Promise<void> {
  const now = opts.now ?? Date.now();
  const until = Math.min(opts.until ?? Infinity, now + MAX_RECORD_MS);
  const entry = toEntry(decision, ctx, now, opts.cacheHit !== undefined ? { cacheHit: opts.cacheHit } : {});
  const file = settings?.file ?? DEFAULT_DECISION_LOG;
  const problems: string[] = [];
  const work = (async () => {
    let logFailed = false;
    if (file !== false) {
      try {
        await appendDecision(entry, { path: file, maxBytes: settings?.maxBytes, keep: settings?.keep, until });
      } catch (e) {
        logFailed = true;
        problems.push(`decision log ${file}: ${errorText(e)}`);
      }
    }
    if (settings?.metricsFile) {
      try {
        await recordMetrics(settings.metricsFile, { entry, logFailed }, until);
      } catch (e) {
        problems.push(`metrics ${settings.metricsFile}: ${errorText(e)}`);
      }
    }
  })();
  let timer: NodeJS.Timeout | undefined;
  const timedOut = await Promise.race([
    work.then(() => false),
    new Promise<boolean>((r) => (timer = setTimeout(() => r(true), Math.max(0, until - Date.now())))),
  ]);
  clearTimeout(timer);
  if (timedOut) {
    // The process exits next: a lock left behind would stall every other pull until it goes stale.
    releaseAllSync();
    problems.push(`recording took longer than ${until - now} ms; gave up`);
  }
  if (problems.length > 0) opts.warn(`pullguard: warning: the decision was not fully recorded (${problems.join('; ')}); the verdict is unaffected`);
}

function errorText(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  return err.code ? `${err.code}${err.message && !err.message.startsWith(err.code) ? ` (${err.message.split(':')[0]})` : ''}` : String(err.message ?? e);
}

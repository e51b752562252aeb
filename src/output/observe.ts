import { DEFAULT_DECISION_LOG, type LogSettings } from '../policy/model.js';
import type { Decision } from '../verdict/decision.js';
import { appendDecision } from './decision-log.js';
import type { RunContext } from './emit.js';
import { journalStream, sendToJournal } from './journal.js';
import { releaseAllSync } from './lock.js';
import { recordMetrics } from './metrics.js';
import { toEntry } from './record.js';

export interface RecordOptions {
  /** The hard-stop time (ms since epoch): past it, the metrics are skipped. */
  readonly until?: number;
  /** One line on stderr (containerd's debug log). */
  readonly warn: (line: string) => void;
  readonly now?: number;
  /** Set by the decision cache. */
  readonly cacheHit?: boolean;
}

/**
 * Writes the decision to the node's decision log and metrics file. Runs after the verdict is on stdout
 * and never throws: a full disk, a read-only directory or a held lock costs one warning on stderr.
 *
 * Synchronous on purpose, and bounded by the amount of work rather than a timer: a handful of
 * syscalls on small files, no waiting for any lock (metrics.ts). Done through libuv's thread pool, the
 * same work cost ~30 ms per pull on a loaded node (each of ~20 hops waits for a scheduler slice), and a
 * timer would not bound a hung filesystem anyway: a process blocked in the kernel on a dead NFS mount
 * cannot exit until the call returns, whichever thread made it. Keep the log on a local disk.
 * `until` (the hard-stop time) only skips the metrics when the verdict itself came late.
 */
export function recordDecision(
  decision: Decision,
  ctx: RunContext,
  settings: LogSettings | undefined,
  opts: RecordOptions,
): Promise<void> | undefined {
  const now = opts.now ?? Date.now();
  const entry = toEntry(decision, ctx, now, opts.cacheHit !== undefined ? { cacheHit: opts.cacheHit } : {});
  const file = settings?.file ?? DEFAULT_DECISION_LOG;
  const problems: string[] = [];
  let logFailed = false;
  if (file !== false) {
    try {
      appendDecision(entry, { path: file, maxBytes: settings?.maxBytes, keep: settings?.keep });
    } catch (e) {
      logFailed = true;
      problems.push(`decision log ${file}: ${errorText(e)}`);
    }
  }
  if (settings?.metricsFile) {
    if (opts.until !== undefined && Date.now() > opts.until)
      problems.push(`metrics ${settings.metricsFile}: skipped, the deadline has passed`);
    else {
      try {
        recordMetrics(settings.metricsFile, { entry, logFailed });
      } catch (e) {
        releaseAllSync();
        problems.push(`metrics ${settings.metricsFile}: ${errorText(e)}`);
      }
    }
  }
  const warn = (p: readonly string[]) =>
    opts.warn(`pullguard: warning: the decision was not fully recorded (${p.join('; ')}); the verdict is unaffected`);
  // The journal is a socket round trip, the only asynchronous sink: a short cap, and the caller awaits it.
  if (settings?.journal) {
    const socket = journalStream(typeof settings.journal === 'string' ? settings.journal : undefined);
    return sendToJournal(entry, JOURNAL_TIMEOUT_MS, socket).then(
      () => (problems.length > 0 ? warn(problems) : undefined),
      (e: unknown) => warn([...problems, `journal: ${errorText(e)}`]),
    );
  }
  if (problems.length > 0) warn(problems);
  return undefined;
}

const JOURNAL_TIMEOUT_MS = 250;

function errorText(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  if (!err.code) return String(err.message ?? e);
  return err.message && !err.message.startsWith(err.code) ? `${err.code} (${err.message})` : err.code;
}

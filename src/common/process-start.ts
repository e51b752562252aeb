import { readFileSync } from 'node:fs';

/** Linux USER_HZ: the unit of /proc/<pid>/stat times on every architecture containerd runs on. */
const CLOCK_TICKS_PER_SECOND = 100;

/**
 * When this process was exec'd (ms since the epoch), from /proc: containerd's per_verifier_timeout
 * starts there, not when our JavaScript starts, and on a loaded node the runtime's own start-up can take
 * seconds. A deadline counted from here ends before containerd's kill. Falls back to `now` when /proc
 * cannot tell (not Linux, or a value that makes no sense).
 */
export function processStartedAt(now = Date.now()): number {
  try {
    const stat = readFileSync('/proc/self/stat', 'latin1');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const startTicks = Number(fields[19]); // field 22 (starttime); fields[0] is field 3 (state)
    const uptimeSeconds = Number(readFileSync('/proc/uptime', 'latin1').split(' ')[0]);
    const ageMs = (uptimeSeconds - startTicks / CLOCK_TICKS_PER_SECOND) * 1000;
    if (!Number.isFinite(ageMs) || ageMs < 0 || ageMs > 60_000) return now;
    return now - Math.round(ageMs);
  } catch {
    return now;
  }
}

import { mkdirSync, renameSync, rmdirSync, statSync } from 'node:fs';

/**
 * A cross-process lock for the output files: a directory created with mkdir(2), which is atomic on
 * every local filesystem (EEXIST for all but one caller). Node has no flock(2). Nobody waits for it:
 * a pull that finds it held leaves the work to the holder (metrics.ts) or skips it (rotation). A
 * holder killed while holding it (containerd's timeout SIGKILL) leaves the directory behind: a lock
 * older than STALE_MS is broken, since no holder keeps it for more than a few milliseconds. Breaking
 * renames the stale directory away first, so two processes that both saw it stale cannot both remove
 * a fresh lock.
 */
export const STALE_MS = 5_000;

/** Locks this process holds now: released if it has to stop before the work is done. */
const held = new Set<string>();

/** Drops every lock this process holds (it is about to exit). */
export function releaseAllSync(): void {
  for (const path of held) {
    try {
      rmdirSync(path);
    } catch {
      /* already gone */
    }
  }
  held.clear();
}

/** One attempt (and one more after breaking a stale lock). Returns the release function, or undefined if held. */
export function tryLock(path: string): (() => void) | undefined {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      mkdirSync(path, { mode: 0o700 });
      held.add(path);
      return () => {
        if (!held.delete(path)) return;
        try {
          rmdirSync(path);
        } catch {
          /* gone */
        }
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    if (!breakIfStale(path)) return undefined;
  }
  return undefined;
}

/** True when it removed a stale lock (try again at once). */
function breakIfStale(path: string): boolean {
  try {
    const st = statSync(path);
    if (Date.now() - st.mtimeMs < STALE_MS) return false;
    const aside = `${path}.stale.${process.pid}.${Date.now()}`;
    renameSync(path, aside);
    const moved = statSync(aside);
    // Someone took a fresh lock between our stat and rename: give it back.
    if (Date.now() - moved.mtimeMs < STALE_MS) {
      try {
        renameSync(aside, path);
      } catch {
        /* they will break ours */
      }
      return false;
    }
    rmdirSync(aside);
    return true;
  } catch {
    return false; // gone meanwhile (the next pull tries again), or not ours to break
  }
}

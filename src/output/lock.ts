import { promises as fsp, rmdirSync } from 'node:fs';

/**
 * A cross-process lock for the output files: a directory created with mkdir(2), which is atomic on
 * every local filesystem (EEXIST for all but one caller). Node has no flock(2). A holder killed while
 * holding it (containerd's timeout SIGKILL) leaves the directory behind: a lock older than STALE_MS is
 * broken, since no holder keeps it for more than a few milliseconds. Breaking renames the stale
 * directory away first, so two processes that both saw it stale cannot both remove a fresh lock.
 */
export const STALE_MS = 5_000;

export interface LockOptions {
  /** Give up (resolve undefined) at this time (ms since epoch). */
  readonly until: number;
  /** Only one attempt (rotation: if someone holds it, they are rotating). */
  readonly once?: boolean;
}

/** Locks this process holds now: released synchronously if it has to stop before the work is done. */
const held = new Set<string>();

/** Drops every lock this process holds (the recording was cut off; the process is about to exit). */
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

export async function acquireLock(path: string, opts: LockOptions): Promise<(() => Promise<void>) | undefined> {
  let delay = 1;
  for (;;) {
    try {
      await fsp.mkdir(path, { mode: 0o700 });
      held.add(path);
      return async () => {
        if (!held.delete(path)) return;
        await fsp.rmdir(path).catch(() => undefined);
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    if (await breakIfStale(path)) continue;
    if (opts.once || Date.now() >= opts.until) return undefined;
    // Jittered so that fifty waiters do not wake in step.
    const wait = Math.min(delay * (0.5 + Math.random()), Math.max(1, opts.until - Date.now()));
    await new Promise((r) => setTimeout(r, wait));
    delay = Math.min(delay * 2, 8);
  }
}

/** True when it removed a stale lock (try again at once). */
async function breakIfStale(path: string): Promise<boolean> {
  try {
    const st = await fsp.stat(path);
    if (Date.now() - st.mtimeMs < STALE_MS) return false;
    const aside = `${path}.stale.${process.pid}.${Date.now()}`;
    await fsp.rename(path, aside);
    const moved = await fsp.stat(aside);
    // Someone took a fresh lock between our stat and rename: give it back.
    if (Date.now() - moved.mtimeMs < STALE_MS) {
      await fsp.rename(aside, path).catch(() => undefined);
      return false;
    }
    await fsp.rmdir(aside).catch(() => undefined);
    return true;
  } catch {
    return false; // gone meanwhile (try again next round), or not ours to break
  }
}

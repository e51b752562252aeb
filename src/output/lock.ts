import { promises as fsp } from 'node:fs';

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

export async function acquireLock(path: string, opts: LockOptions): Promise<(() => Promise<void>) | undefined> {
  let delay = 1;
  for (;;) {
    try {
      await fsp.mkdir(path, { mode: 0o700 });
      return async () => {
        await fsp.rmdir(path).catch(() => undefined);
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    await breakIfStale(path);
    if (opts.once || Date.now() >= opts.until) return undefined;
    await new Promise((r) => setTimeout(r, Math.min(delay, Math.max(1, opts.until - Date.now()))));
    delay = Math.min(delay * 2, 20);
  }
}

async function breakIfStale(path: string): Promise<void> {
  try {
    const st = await fsp.stat(path);
    if (Date.now() - st.mtimeMs < STALE_MS) return;
    const aside = `${path}.stale.${process.pid}.${Date.now()}`;
    await fsp.rename(path, aside);
    const moved = await fsp.stat(aside);
    // Someone took a fresh lock between our stat and rename: give it back.
    if (Date.now() - moved.mtimeMs < STALE_MS) await fsp.rename(aside, path).catch(() => undefined);
    else await fsp.rmdir(aside).catch(() => undefined);
  } catch {
    /* gone meanwhile, or not ours to break */
  }
}

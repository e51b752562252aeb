import { closeSync, constants, fstatSync, mkdirSync, openSync, renameSync, statSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { tryLock } from './lock.js';
import type { DecisionEntry } from './record.js';

export const DEFAULT_MAX_BYTES = 10 * 1024 * 1024;
export const DEFAULT_KEEP = 3;
/** Any line is cut to this, so one record is always one bounded write(2). */
export const MAX_RECORD_BYTES = 8 * 1024;

export interface DecisionLogOptions {
  readonly path: string;
  readonly maxBytes?: number;
  readonly keep?: number;
}

/**
 * Appends one record as one line. Many pulls run at once, each in its own process, so:
 *  - the file is opened O_APPEND and the line goes out in ONE write(2): on a local filesystem the
 *    kernel moves the offset to the end and copies the buffer under the inode lock, so concurrent
 *    appends never interleave, whatever their size (PIPE_BUF is a pipe rule, not a file rule). A short
 *    write (disk full, RLIMIT_FSIZE) can leave a partial line; readers resynchronise on the next `{"v":`.
 *    NFS gives no such guarantee: keep the log on a local disk.
 *  - rotation happens under a lock (lock.ts) and re-checks the size under it, so one process rotates;
 *    a writer that still holds the old file appends its line to `.1`, which is read too.
 * Throws on any I/O error; the caller turns that into one warning and leaves the verdict alone.
 */
export function appendDecision(entry: DecisionEntry, opts: DecisionLogOptions): void {
  const line = Buffer.from(`${serializeEntry(entry)}\n`);
  const fd = openForAppend(opts.path);
  let size: number;
  try {
    const written = writeSync(fd, line, 0, line.length);
    if (written !== line.length)
      throw Object.assign(new Error(`short write (${written} of ${line.length} bytes)`), { code: 'ENOSPC' });
    size = fstatSync(fd).size;
  } finally {
    closeSync(fd);
  }
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_BYTES;
  if (size > maxBytes) rotate(opts.path, maxBytes, opts.keep ?? DEFAULT_KEEP);
}

export function serializeEntry(entry: DecisionEntry): string {
  const text = JSON.stringify(entry);
  if (Buffer.byteLength(text) <= MAX_RECORD_BYTES) return text;
  // Still a valid record: drop the per-authority detail and cut the reason.
  return JSON.stringify({ ...entry, authorities: [], reason: entry.reason.slice(0, 256) });
}

function openForAppend(path: string): number {
  const flags = constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW;
  try {
    return openSync(path, flags, 0o640);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    mkdirSync(dirname(path), { recursive: true, mode: 0o750 });
    return openSync(path, flags, 0o640);
  }
}

/** `decisions.jsonl` -> `.1` -> ... -> `.keep`; the oldest is dropped. Total size stays near maxBytes * (keep + 1). */
function rotate(path: string, maxBytes: number, keep: number): void {
  const release = tryLock(`${path}.lock`);
  if (!release) return; // another process is rotating right now
  try {
    let size = 0;
    try {
      size = statSync(path).size;
    } catch {
      return;
    }
    if (size <= maxBytes) return; // rotated meanwhile
    for (let i = keep - 1; i >= 1; i--) {
      try {
        renameSync(`${path}.${i}`, `${path}.${i + 1}`);
      } catch {
        /* not there yet */
      }
    }
    renameSync(path, `${path}.1`);
  } finally {
    release();
  }
}

/** The log and its rotated files, oldest first: what `pullguard log` reads. */
export function logFiles(path: string, keep: number = 20): string[] {
  const files: string[] = [];
  for (let i = keep; i >= 1; i--) files.push(`${path}.${i}`);
  files.push(path);
  return files;
}

/**
 * Parses log text into entries. A line that is not a record (a torn write after a full disk, a line
 * glued to such a fragment) is skipped, but a record glued behind a fragment is recovered.
 */
export function parseEntries(text: string): { entries: DecisionEntry[]; skipped: number } {
  const entries: DecisionEntry[] = [];
  let skipped = 0;
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const e = parseLine(line) ?? parseLine(line.slice(Math.max(0, line.lastIndexOf('{"v":'))));
    if (e) entries.push(e);
    else skipped++;
  }
  return { entries, skipped };
}

function parseLine(line: string): DecisionEntry | undefined {
  try {
    const v = JSON.parse(line) as DecisionEntry;
    return v && typeof v === 'object' && v.v === 1 && typeof v.time === 'string' ? v : undefined;
  } catch {
    return undefined;
  }
}

import {
  closeSync,
  constants,
  fstatSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import type { Stats } from 'node:fs';
import { join } from 'node:path';

/**
 * The decision cache on disk: one small JSON file per entry, named by the SHA-256 of its key, in a
 * directory only root may read or write (it decides what runs on the node). Writes are atomic (a temp
 * file in the same directory, then rename), so a reader sees a whole entry or none; a crash can at worst
 * leave an empty or torn file, which reads as corrupt and is ignored like any other bad entry. Nothing
 * here is fsynced: losing an entry costs one verification, never a wrong verdict.
 */
export interface CacheEntry {
  readonly v: 1;
  readonly key: string;
  readonly digest: string;
  readonly repository: string;
  readonly rule: string;
  readonly reason: string;
  /** ms since the epoch. */
  readonly verifiedAt: number;
  /** A fresh hit is allowed before this. */
  readonly expiresAt: number;
  /** What set expiresAt: ttl, certificate, signature, revocation. */
  readonly expiry: string;
  /** Under the rule's staleIfError, a registry outage is ridden out before this (0: never). */
  readonly staleUntil: number;
}

const MAX_ENTRY_BYTES = 64 * 1024;
const ENTRY = /^[0-9a-f]{64}\.json$/;
/** Expired entries are swept when a write finds more than this many files. */
const SWEEP_ABOVE = 256;

export class CacheStore {
  private constructor(readonly dir: string) {}

  /**
   * The store at `dir`, or why it cannot be used. `create`: make the directory (0700) when missing.
   * Refused unless we run as root and the directory is a real directory owned by root with no group
   * or other permissions: an entry another user could plant would be an allow without a signature.
   */
  static open(dir: string, create: boolean): CacheStore | { problem: string } {
    const euid = process.geteuid?.();
    if (euid !== 0) return { problem: `the decision cache is root only (running as uid ${euid ?? '?'})` };
    let st: Stats;
    try {
      st = lstatSync(dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT')
        return { problem: `cache ${dir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` };
      if (!create) return { problem: `no cache at ${dir} yet` };
      try {
        mkdirSync(dir, { recursive: true, mode: 0o700 });
        st = lstatSync(dir);
      } catch (e2) {
        return {
          problem: `cannot create cache ${dir}: ${(e2 as NodeJS.ErrnoException).code ?? (e2 as Error).message}`,
        };
      }
    }
    if (!st.isDirectory()) return { problem: `cache ${dir} is not a directory (a symlink is refused)` };
    if (st.uid !== 0) return { problem: `cache ${dir} is owned by uid ${st.uid}, not root` };
    if ((st.mode & 0o077) !== 0)
      return { problem: `cache ${dir} has mode ${(st.mode & 0o777).toString(8)}; it must be 0700` };
    return new CacheStore(dir);
  }

  /** The entry stored under `key`, if there is a whole, well-formed one for exactly that key. */
  read(key: string): CacheEntry | undefined {
    const text = readCapped(join(this.dir, `${key}.json`));
    if (text === undefined) return undefined;
    const entry = parseEntry(text);
    return entry && entry.key === key ? entry : undefined;
  }

  write(entry: CacheEntry, now: number): void {
    const tmp = join(this.dir, `.${entry.key}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`);
    try {
      writeFileSync(tmp, `${JSON.stringify(entry)}\n`, { mode: 0o600, flag: 'wx' });
      renameSync(tmp, join(this.dir, `${entry.key}.json`));
    } finally {
      rmSync(tmp, { force: true });
    }
    const names = readdirSync(this.dir);
    if (names.length > SWEEP_ABOVE) this.sweep(names, now);
  }

  /** Every readable entry, and how many files were not (corrupt, or not ours). */
  list(): { entries: CacheEntry[]; unreadable: number } {
    const entries: CacheEntry[] = [];
    let unreadable = 0;
    for (const name of readdirSync(this.dir).sort()) {
      if (!ENTRY.test(name)) continue;
      const text = readCapped(join(this.dir, name));
      const entry = text === undefined ? undefined : parseEntry(text);
      if (entry && `${entry.key}.json` === name) entries.push(entry);
      else unreadable++;
    }
    return { entries, unreadable };
  }

  /** Removes every entry (and stray temp files); returns how many files went. */
  clear(): number {
    let n = 0;
    for (const name of readdirSync(this.dir)) {
      if (!ENTRY.test(name) && !name.endsWith('.tmp')) continue;
      rmSync(join(this.dir, name), { force: true });
      n++;
    }
    return n;
  }

  private sweep(names: readonly string[], now: number): void {
    for (const name of names) {
      if (!ENTRY.test(name)) continue;
      const text = readCapped(join(this.dir, name));
      const entry = text === undefined ? undefined : parseEntry(text);
      if (!entry || Math.max(entry.expiresAt, entry.staleUntil) <= now) rmSync(join(this.dir, name), { force: true });
    }
  }
}

function readCapped(path: string): string | undefined {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch {
    return undefined;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile() || st.size > MAX_ENTRY_BYTES) return undefined;
    const buf = Buffer.alloc(st.size);
    let off = 0;
    while (off < buf.length) {
      const n = readSync(fd, buf, off, buf.length - off, off);
      if (n === 0) break;
      off += n;
    }
    return buf.subarray(0, off).toString('utf8');
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}

/** A stored entry, or undefined for anything that is not exactly one (a corrupt entry is a miss). */
export function parseEntry(text: string): CacheEntry | undefined {
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof j !== 'object' || j === null) return undefined;
  const e = j as Record<string, unknown>;
  const str = (k: string) => typeof e[k] === 'string';
  const num = (k: string) => typeof e[k] === 'number' && Number.isFinite(e[k]) && (e[k] as number) >= 0;
  if (e.v !== 1 || !/^[0-9a-f]{64}$/.test(String(e.key))) return undefined;
  if (
    !['digest', 'repository', 'rule', 'reason', 'expiry'].every(str) ||
    !['verifiedAt', 'expiresAt', 'staleUntil'].every(num)
  )
    return undefined;
  const { v, key, digest, repository, rule, reason, verifiedAt, expiresAt, expiry, staleUntil } =
    e as unknown as CacheEntry;
  return { v, key, digest, repository, rule, reason, verifiedAt, expiresAt, expiry, staleUntil };
}

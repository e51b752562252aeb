/**
 * Small JSON entries shared by every pull process on the node, in a directory only we may read or write
 * (pullguard lives one pull long; what containerd or kubelet would keep in memory, it keeps here). One
 * file per (fingerprint, key), written atomically (temporary file, then rename). The directory must be a
 * real directory owned by us with no group or other access, and every file ours and 0600, or the store
 * is not used at all: an entry another user could read, or one another user could have planted, is worse
 * than doing the work again. Unreadable, corrupt, foreign or expired entries are misses, never errors.
 */
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { join } from 'node:path';

const MAX_ENTRY_BYTES = 256 * 1024;

const uid = () => process.geteuid?.() ?? 0;

export interface StoredEntry<T> {
  readonly key: string;
  readonly value: T;
  readonly expiresAt: number;
}

export class PrivateStore<T> {
  private state?: { ok: true } | { ok: false; why: string };

  /**
   * `field`: the entry's property that holds the value (kept from the first format of the credential
   * cache); `isValue`: what a stored value must look like to be returned.
   */
  constructor(
    readonly dir: string,
    private readonly field: string,
    private readonly isValue: (v: unknown) => v is T,
  ) {}

  /** Why the store is not used, if it is not (for the decision record and doctor). */
  get problem(): string | undefined {
    const s = this.open();
    return s.ok ? undefined : s.why;
  }

  private open(): { ok: true } | { ok: false; why: string } {
    if (this.state) return this.state;
    try {
      fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
      const st = fs.lstatSync(this.dir);
      if (!st.isDirectory()) this.state = { ok: false, why: `${this.dir} is not a directory` };
      else if (st.uid !== uid()) this.state = { ok: false, why: `${this.dir} is owned by uid ${st.uid}, not ${uid()}` };
      else if ((st.mode & 0o077) !== 0) {
        this.state = { ok: false, why: `${this.dir} has mode ${(st.mode & 0o777).toString(8)}; it must be 0700` };
      } else this.state = { ok: true };
    } catch (e) {
      this.state = { ok: false, why: `${this.dir}: ${(e as NodeJS.ErrnoException).code ?? String(e)}` };
    }
    return this.state;
  }

  private file(fingerprint: string, key: string): string {
    return join(this.dir, `${createHash('sha256').update(`${fingerprint}\n${key}`).digest('hex')}.json`);
  }

  /** The first live entry among `keys`. */
  get(fingerprint: string, keys: readonly string[], now = Date.now()): StoredEntry<T> | undefined {
    if (!this.open().ok) return undefined;
    for (const key of keys) {
      const hit = this.read(this.file(fingerprint, key), fingerprint, key, now);
      if (hit) return hit;
    }
    return undefined;
  }

  private read(path: string, fingerprint: string, key: string, now: number): StoredEntry<T> | undefined {
    let fd: number | undefined;
    try {
      fd = fs.openSync(path, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
      const st = fs.fstatSync(fd);
      if (!st.isFile() || st.uid !== uid() || (st.mode & 0o077) !== 0 || st.size > MAX_ENTRY_BYTES) return undefined;
      const buf = Buffer.alloc(st.size);
      let off = 0;
      while (off < buf.length) {
        const n = fs.readSync(fd, buf, off, buf.length - off, off);
        if (n === 0) break;
        off += n;
      }
      const j = JSON.parse(buf.subarray(0, off).toString('utf8')) as Record<string, unknown>;
      if (j.version !== 1 || j.fingerprint !== fingerprint || j.key !== key) return undefined;
      const value = j[this.field];
      if (typeof j.expiresAt !== 'number' || !(now <= j.expiresAt) || !this.isValue(value)) return undefined;
      return { key, value, expiresAt: j.expiresAt };
    } catch {
      return undefined;
    } finally {
      if (fd !== undefined) fs.closeSync(fd);
    }
  }

  /** Stores an entry; returns a one-line reason when it could not (the pull goes on without the store). */
  put(fingerprint: string, key: string, value: T, expiresAt: number): string | undefined {
    const s = this.open();
    if (!s.ok) return s.why;
    const final = this.file(fingerprint, key);
    const tmp = join(this.dir, `.tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
    const flags = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW;
    try {
      const fd = fs.openSync(tmp, flags, 0o600);
      try {
        fs.writeSync(fd, JSON.stringify({ version: 1, fingerprint, key, expiresAt, [this.field]: value }));
      } finally {
        fs.closeSync(fd);
      }
      fs.renameSync(tmp, final);
      return undefined;
    } catch (e) {
      fs.rmSync(tmp, { force: true });
      return `could not write ${this.dir}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`;
    }
  }
}

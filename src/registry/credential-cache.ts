/**
 * The on-disk cache of credential provider answers, shared by every pull process on the node (kubelet
 * keeps the same cache in memory; pullguard lives one pull long, so it keeps it in a root-only
 * directory). One file per (provider, cache key), written atomically (temporary file, then rename).
 * The directory must be a real directory owned by us with no group or other access, and every file
 * ours and 0600, or the cache is not used at all: a credential another user could read, or one another
 * user could have planted, is worse than a plugin run. Unreadable, corrupt or foreign entries are
 * misses, never errors.
 */
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { join } from 'node:path';

export const DEFAULT_CREDENTIAL_CACHE_DIR = '/run/pullguard/credentials';
const MAX_ENTRY_BYTES = 256 * 1024;

export interface CachedAuth {
  readonly [key: string]: { readonly username?: string; readonly password?: string };
}

export interface CacheHit {
  readonly key: string;
  readonly auth: CachedAuth;
  readonly expiresAt: number;
}

const uid = () => process.geteuid?.() ?? 0;
const isObject = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v);
const optString = (v: unknown) => v === undefined || typeof v === 'string';
const isAuthMap = (v: unknown): v is CachedAuth =>
  isObject(v) && Object.values(v).every((e) => isObject(e) && optString(e.username) && optString(e.password));

export class CredentialCache {
  private state?: { ok: true } | { ok: false; why: string };

  constructor(readonly dir: string) {}

  /** Why the cache is not used, if it is not (for the decision record and doctor). */
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

  /** The first live entry among `keys` (kubelet looks up image, then registry, then global). */
  get(fingerprint: string, keys: readonly string[], now = Date.now()): CacheHit | undefined {
    if (!this.open().ok) return undefined;
    for (const key of keys) {
      const hit = this.read(this.file(fingerprint, key), fingerprint, key, now);
      if (hit) return hit;
    }
    return undefined;
  }

  private read(path: string, fingerprint: string, key: string, now: number): CacheHit | undefined {
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
      if (typeof j.expiresAt !== 'number' || !(now <= j.expiresAt) || !isAuthMap(j.auth)) return undefined;
      return { key, auth: j.auth, expiresAt: j.expiresAt };
    } catch {
      return undefined;
    } finally {
      if (fd !== undefined) fs.closeSync(fd);
    }
  }

  /** Stores an answer; returns a one-line reason when it could not (the pull goes on without the cache). */
  put(fingerprint: string, key: string, auth: CachedAuth, expiresAt: number): string | undefined {
    const s = this.open();
    if (!s.ok) return s.why;
    const final = this.file(fingerprint, key);
    const tmp = join(this.dir, `.tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
    const flags = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW;
    try {
      const fd = fs.openSync(tmp, flags, 0o600);
      try {
        fs.writeSync(fd, JSON.stringify({ version: 1, fingerprint, key, expiresAt, auth }));
      } finally {
        fs.closeSync(fd);
      }
      fs.renameSync(tmp, final);
      return undefined;
    } catch (e) {
      fs.rmSync(tmp, { force: true });
      return `could not write the credential cache in ${this.dir}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`;
    }
  }
}

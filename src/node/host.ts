/**
 * The installer's I/O on a host root: `/` on the node itself, or the host's / mounted into a
 * DaemonSet pod (e.g. /host). Paths given and written into files are the host's; they are read and
 * written under the root. Host binaries (containerd, the staged pullguard) run inside the root with
 * chroot(8), so that they see the host's files at the paths written in them.
 */
import { createHash, randomBytes } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  constants,
  copyFileSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  renameSync,
  rmdirSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { posix } from 'node:path';
import { PullguardError } from '../common/errors.js';
import { hostReader, type ConfigReader } from '../containerd/config.js';

export interface RunResult {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

/** sha256 of a file, read in chunks (the executable is ~135 MB: never hold it in memory); undefined if absent. */
export function fileSha256(path: string): string | undefined {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return undefined;
  }
  try {
    const h = createHash('sha256');
    const buf = Buffer.alloc(1 << 20);
    for (let n: number; (n = readSync(fd, buf, 0, buf.length, null)) > 0; ) h.update(buf.subarray(0, n));
    return h.digest('hex');
  } finally {
    closeSync(fd);
  }
}

/** Copies a file and fsyncs the copy (mode set before it can be renamed anywhere). */
export function copySynced(from: string, to: string, mode: number): void {
  copyFileSync(from, to, constants.COPYFILE_EXCL);
  chmodSync(to, mode);
  const fd = openSync(to, 'r+');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export class Host {
  readonly reader: ConfigReader;

  constructor(readonly root: string) {
    this.reader = hostReader(root);
  }

  /** The installer's path of a host path. */
  at(p: string): string {
    if (!posix.isAbsolute(p)) throw new PullguardError('CONTRACT_ARGS', `${p}: host paths must be absolute`);
    return this.root === '/' ? p : posix.join(this.root, p);
  }

  read(p: string): Buffer | undefined {
    try {
      return readFileSync(this.at(p));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      throw new PullguardError('INTERNAL', `cannot read ${this.at(p)}: ${code ?? (e as Error).message}`);
    }
  }

  exists(p: string): boolean {
    try {
      statSync(this.at(p));
      return true;
    } catch {
      return false;
    }
  }

  list(p: string): string[] | undefined {
    try {
      return readdirSync(this.at(p));
    } catch {
      return undefined;
    }
  }

  /** mkdir -p; returns the host paths it created, outermost first. */
  mkdirs(p: string): string[] {
    const created: string[] = [];
    const parts = p.split('/').filter(Boolean);
    let cur = '';
    for (const part of parts) {
      cur += `/${part}`;
      if (!this.exists(cur)) {
        mkdirSync(this.at(cur), { mode: 0o755 });
        created.push(cur);
      }
    }
    return created;
  }

  /** Writes a temp file next to `p` (same filesystem), fsyncs it and renames it over `p`. */
  writeAtomic(p: string, data: Buffer | string, mode: number): void {
    const tmp = `${this.at(p)}.pullguard-${randomBytes(4).toString('hex')}`;
    this.writeSynced(tmp, data, mode);
    renameSync(tmp, this.at(p));
  }

  /** Writes and fsyncs a file at an installer path (not mapped). */
  writeSynced(path: string, data: Buffer | string, mode: number): void {
    const fd = openSync(path, 'wx', mode);
    try {
      const buf = typeof data === 'string' ? Buffer.from(data) : data;
      let off = 0;
      while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    chmodSync(path, mode);
  }

  remove(p: string): boolean {
    try {
      unlinkSync(this.at(p));
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw e;
    }
  }

  /** Removes a directory if it is empty. */
  removeDirIfEmpty(p: string): void {
    try {
      rmdirSync(this.at(p));
    } catch {
      /* not empty, or gone */
    }
  }

  /** Runs a host binary (a host path) inside the root. */
  run(argv: readonly string[], timeoutMs: number, env: Record<string, string> = {}): Promise<RunResult> {
    const cmd = this.root === '/' ? argv : ['chroot', this.root, ...argv];
    return exec(cmd, timeoutMs, { PATH: HOST_PATH, ...env });
  }
}

export const HOST_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Runs a command of the installer's own environment (chroot, nsenter, a --restart-command). */
export function exec(argv: readonly string[], timeoutMs: number, env: Record<string, string>): Promise<RunResult> {
  return new Promise((resolve) => {
    // Loaded here, not imported: child_process cannot be part of the executable's startup snapshot.
    process.getBuiltinModule('node:child_process').execFile(
      argv[0]!,
      argv.slice(1),
      {
        encoding: 'utf8',
        timeout: timeoutMs,
        killSignal: 'SIGKILL',
        maxBuffer: 16 * 1024 * 1024,
        env: { PATH: process.env.PATH ?? HOST_PATH, ...env },
      },
      (err, stdout, stderr) => {
        const status = err ? (typeof err.code === 'number' ? err.code : null) : 0;
        const extra = err && status === null ? `${err.killed ? `timed out after ${timeoutMs}ms` : err.message}` : '';
        resolve({ status, stdout, stderr: `${stderr}${extra}` });
      },
    );
  });
}

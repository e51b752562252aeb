import { closeSync, constants, fstatSync, openSync, readSync, realpathSync, statSync, type Stats } from 'node:fs';
import { PullguardError, type ErrorCode } from './errors.js';
import { noteInput } from './inputs.js';

/**
 * The one way pullguard reads an operator's file (policy, keys, certificates, trust stores, trusted
 * roots, notation configuration, containerd's config and hosts.toml with its CA and client files,
 * docker config.json). Every such path may be wrong on 500 nodes at once, or point somewhere hostile:
 * a FIFO never answers, `/dev/zero` never ends, and a synchronous read of either blocks the event loop
 * and with it the deadline timer, so containerd kills the pull with no reason. So:
 *   - symlinks are resolved first, and anything that is not a regular file is refused by name;
 *   - the file is opened with O_NONBLOCK (a FIFO swapped in after the check still cannot block the
 *     open or a read) and O_NOCTTY, and checked again on the open descriptor;
 *   - at most `maxBytes + 1` bytes are read, whatever stat() claims (procfs and sysfs report size 0,
 *     a file may grow while read), so memory stays bounded.
 * Regular files are read synchronously: they are small and local, and the callers run at policy load.
 */
export interface ReadFileOptions {
  /** The hard cap, in bytes; a larger file is refused. */
  readonly maxBytes: number;
  /** The code of the error thrown (POLICY_UNREADABLE, CONTAINERD_CONFIG, ...). */
  readonly code: ErrorCode;
  /** What the file is, for the message: "policy", "CA file", "docker config". */
  readonly what: string;
}

/** Why a file was refused; `errno` is the system's code (ENOENT, EACCES) or ENOTREG/EFBIG. */
export class FileReadError extends PullguardError {
  constructor(
    code: ErrorCode,
    readonly path: string,
    readonly errno: string,
    /** The short reason, e.g. "is a FIFO, not a regular file", for callers that write their own message. */
    readonly why: string,
    what: string,
  ) {
    super(code, `cannot read ${what} ${path}: ${why}`, { path, errno });
    this.name = 'FileReadError';
  }

  /** The file (or a directory on its path) does not exist. */
  get missing(): boolean {
    return this.errno === 'ENOENT' || this.errno === 'ENOTDIR';
  }
}

const CHUNK = 64 * 1024;

export function readRegularFile(path: string, opts: ReadFileOptions): Buffer {
  const fail = (errno: string, why: string): never => {
    throw new FileReadError(opts.code, path, errno, why, opts.what);
  };
  let resolved: string;
  try {
    resolved = realpathSync(path);
    const kind = fileKind(statSync(resolved));
    const via = resolved !== path ? ` (${resolved})` : '';
    if (kind !== 'regular file') fail('ENOTREG', `is a ${kind}, not a regular file${via}`);
  } catch (e) {
    if (e instanceof FileReadError) throw e;
    return fail(errnoOf(e), describeErrno(e));
  }
  let fd: number;
  try {
    fd = openSync(resolved, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (e) {
    return fail(errnoOf(e), describeErrno(e));
  }
  try {
    const kind = fileKind(fstatSync(fd));
    if (kind !== 'regular file') fail('ENOTREG', `is a ${kind}, not a regular file`);
    const chunks: Buffer[] = [];
    let total = 0;
    while (total <= opts.maxBytes) {
      const buf = Buffer.allocUnsafe(Math.min(CHUNK, opts.maxBytes + 1 - total));
      let n: number;
      try {
        n = readSync(fd, buf, 0, buf.length, null);
      } catch (e) {
        return fail(errnoOf(e), describeErrno(e));
      }
      if (n === 0) break;
      chunks.push(n === buf.length ? buf : buf.subarray(0, n));
      total += n;
    }
    if (total > opts.maxBytes) fail('EFBIG', `is larger than ${formatBytes(opts.maxBytes)}`);
    const bytes = Buffer.concat(chunks, total);
    // While a policy loads, the decision cache keys on every file read (common/inputs.ts).
    noteInput(path, bytes);
    return bytes;
  } finally {
    closeSync(fd);
  }
}

export function readRegularText(path: string, opts: ReadFileOptions): string {
  return readRegularFile(path, opts).toString('utf8');
}

/** What a stat describes, in words for messages. */
export function fileKind(st: Stats): string {
  if (st.isFile()) return 'regular file';
  if (st.isDirectory()) return 'directory';
  if (st.isFIFO()) return 'FIFO';
  if (st.isCharacterDevice()) return 'character device';
  if (st.isBlockDevice()) return 'block device';
  if (st.isSocket()) return 'socket';
  return 'special file';
}

function errnoOf(e: unknown): string {
  return (e as NodeJS.ErrnoException).code ?? 'EIO';
}

function describeErrno(e: unknown): string {
  const code = errnoOf(e);
  switch (code) {
    case 'ENOENT':
      return 'no such file';
    case 'ENOTDIR':
      return 'a component of the path is not a directory';
    case 'EACCES':
    case 'EPERM':
      return `permission denied (${code})`;
    case 'ELOOP':
      return 'too many levels of symbolic links';
    case 'EISDIR':
      return 'is a directory, not a regular file';
    default:
      return code;
  }
}

export function formatBytes(n: number): string {
  if (n >= 1024 * 1024 && n % (1024 * 1024) === 0) return `${n / (1024 * 1024)} MiB`;
  if (n >= 1024 && n % 1024 === 0) return `${n / 1024} KiB`;
  return `${n} bytes`;
}

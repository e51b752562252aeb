import { closeSync, constants, openSync, readSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { PullguardError } from '../common/errors.js';

export const STDIN_LIMIT_BYTES = 64 * 1024;
export const STDIN_DEADLINE_MS = 750;

/**
 * Reads all of `input` up to `limit` bytes or until `deadlineMs` passes. containerd writes a few hundred
 * bytes and closes the pipe at once, so a slow or endless stdin is a broken caller, and is denied fast.
 */
export function readStdin(input: Readable, limit = STDIN_LIMIT_BYTES, deadlineMs = STDIN_DEADLINE_MS): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const finish = (err: PullguardError | undefined) => {
      clearTimeout(timer);
      input.off('data', onData);
      input.off('end', onEnd);
      input.off('error', onError);
      input.pause();
      if (err) reject(err);
      else resolve(Buffer.concat(chunks, size));
    };
    const onData = (chunk: Buffer | string) => {
      const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      size += buf.length;
      if (size > limit) return finish(new PullguardError('CONTRACT_STDIN', `stdin larger than ${limit} bytes`));
      chunks.push(buf);
    };
    const onEnd = () => finish(undefined);
    const onError = (e: Error) => finish(new PullguardError('CONTRACT_STDIN', `cannot read stdin: ${e.message}`));
    const timer = setTimeout(
      () =>
        finish(
          new PullguardError(
            'CONTRACT_STDIN',
            `stdin was not closed within ${deadlineMs}ms (expected the image descriptor)`,
          ),
        ),
      deadlineMs,
    );
    timer.unref();
    input.on('data', onData);
    input.on('end', onEnd);
    input.on('error', onError);
    input.resume();
  });
}

/**
 * The same, straight from a file descriptor (fd 0 in a pull), without `process.stdin`: building that
 * stream (a pipe handle, net.Socket and the stream machinery) cost ~4.7 ms of CPU on every pull. The fd
 * is reopened through /proc with O_NONBLOCK (a new open file description of the same pipe, so the
 * caller's end is untouched) and read without blocking, polling while the pipe is empty: a blocking
 * read in libuv's pool would hold the process at exit when stdin is never closed. undefined when the
 * fd cannot be reopened (no /proc): then the caller reads it as a stream.
 */
export function readFd(
  fd: number,
  limit = STDIN_LIMIT_BYTES,
  deadlineMs = STDIN_DEADLINE_MS,
): Promise<Buffer> | undefined {
  let nb: number;
  try {
    nb = openSync(`/proc/self/fd/${fd}`, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch {
    return undefined;
  }
  return new Promise((resolve, reject) => {
    const buf = Buffer.alloc(limit + 1);
    const started = Date.now();
    let size = 0;
    let wait = 0;
    const finish = (err: PullguardError | undefined) => {
      closeSync(nb);
      if (err) reject(err);
      else resolve(buf.subarray(0, size));
    };
    const step = (): void => {
      for (;;) {
        let n: number;
        try {
          n = readSync(nb, buf, size, buf.length - size, null);
        } catch (e) {
          const code = (e as NodeJS.ErrnoException).code;
          if (code !== 'EAGAIN' && code !== 'EWOULDBLOCK') {
            finish(new PullguardError('CONTRACT_STDIN', `cannot read stdin: ${code ?? (e as Error).message}`));
            return;
          }
          if (Date.now() - started >= deadlineMs) {
            finish(
              new PullguardError(
                'CONTRACT_STDIN',
                `stdin was not closed within ${deadlineMs}ms (expected the image descriptor)`,
              ),
            );
            return;
          }
          // Empty for now: containerd writes the descriptor asynchronously. Poll 0, 1, 2, 4 .. 16 ms apart.
          setTimeout(step, wait);
          wait = Math.min(16, Math.max(1, wait * 2));
          return;
        }
        if (n === 0) {
          finish(undefined);
          return;
        }
        size += n;
        if (size > limit) {
          finish(new PullguardError('CONTRACT_STDIN', `stdin larger than ${limit} bytes`));
          return;
        }
      }
    };
    step();
  });
}

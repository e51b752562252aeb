import { read } from 'node:fs';
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
      () => finish(new PullguardError('CONTRACT_STDIN', `stdin was not closed within ${deadlineMs}ms (expected the image descriptor)`)),
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
 * The same, straight from a file descriptor (fd 0 in a pull) with fs.read, without `process.stdin`:
 * building that stream (a pipe handle, net.Socket and the stream machinery) cost ~4.7 ms of CPU on
 * every pull. A read that never returns holds one libuv pool thread, not the event loop, so the deadline
 * still fires, and the process exits past it.
 */
export function readFd(fd: number, limit = STDIN_LIMIT_BYTES, deadlineMs = STDIN_DEADLINE_MS): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const buf = Buffer.alloc(limit + 1);
    let size = 0;
    let done = false;
    const finish = (err: PullguardError | undefined) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err) reject(err);
      else resolve(buf.subarray(0, size));
    };
    const timer = setTimeout(
      () => finish(new PullguardError('CONTRACT_STDIN', `stdin was not closed within ${deadlineMs}ms (expected the image descriptor)`)),
      deadlineMs,
    );
    timer.unref();
    const step = () =>
      read(fd, buf, size, buf.length - size, null, (e, n) => {
        if (done) return;
        if (e) return finish(new PullguardError('CONTRACT_STDIN', `cannot read stdin: ${e.code ?? e.message}`));
        if (n === 0) return finish(undefined);
        size += n;
        if (size > limit) return finish(new PullguardError('CONTRACT_STDIN', `stdin larger than ${limit} bytes`));
        step();
      });
    step();
  });
}

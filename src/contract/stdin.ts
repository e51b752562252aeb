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

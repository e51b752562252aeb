import { PullguardError } from '../../common/errors.js';

/**
 * Reads a fetch() body with a hard byte cap, whatever Content-Length says (or does not say): an
 * endless or lying body over plain http (anyone on the path can serve one) stops at `max` bytes.
 */
export async function readCapped(res: Response, max: number, what: string): Promise<Buffer> {
  const len = Number(res.headers.get('content-length') ?? 0);
  if (len > max) {
    await res.body?.cancel().catch(() => undefined);
    throw new PullguardError('REVOCATION_UNKNOWN', `${what} larger than ${max} bytes`);
  }
  if (!res.body) return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  let total = 0;
  const reader = res.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.length;
    if (total > max) {
      await reader.cancel().catch(() => undefined);
      throw new PullguardError('REVOCATION_UNKNOWN', `${what} larger than ${max} bytes`);
    }
    chunks.push(Buffer.from(value.buffer, value.byteOffset, value.byteLength));
  }
  return Buffer.concat(chunks, total);
}

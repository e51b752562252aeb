import { createHash } from 'node:crypto';
import { PullguardError } from './errors.js';

/** OCI digest grammar, restricted to the algorithms registries actually use. */
const DIGEST = /^(sha256:[a-f0-9]{64}|sha384:[a-f0-9]{96}|sha512:[a-f0-9]{128})$/;

export function isDigest(s: string): boolean {
  return DIGEST.test(s);
}

export function digestOf(data: Uint8Array, algorithm: 'sha256' | 'sha384' | 'sha512' = 'sha256'): string {
  return `${algorithm}:${createHash(algorithm).update(data).digest('hex')}`;
}

/** Throws unless `data` hashes to `expected`; the algorithm is taken from `expected`. */
export function assertDigest(data: Uint8Array, expected: string, what: string): void {
  if (!isDigest(expected))
    throw new PullguardError('REGISTRY_INTEGRITY', `${what}: malformed digest ${JSON.stringify(expected)}`);
  const algorithm = expected.slice(0, expected.indexOf(':')) as 'sha256' | 'sha384' | 'sha512';
  const actual = digestOf(data, algorithm);
  if (actual !== expected) {
    throw new PullguardError(
      'REGISTRY_INTEGRITY',
      `${what}: content digest ${shortDigest(actual)} does not match ${shortDigest(expected)}`,
      {
        expected,
        actual,
      },
    );
  }
}

/** `sha256:0123456789ab...`: long enough to identify, short enough for an event line. */
export function shortDigest(d: string): string {
  const i = d.indexOf(':');
  return i < 0 ? d : `${d.slice(0, i + 13)}\u2026`;
}

import { PullguardError, type ErrorCode } from './errors.js';

/** Deeper than any manifest, index, bundle or JWS has reason to be (OCI manifests nest 3-4 levels). */
export const MAX_JSON_DEPTH = 64;

const OPEN_BRACE = 0x7b;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACE = 0x7d;
const CLOSE_BRACKET = 0x5d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * The deepest nesting of objects and arrays in `bytes`, or `limit + 1` as soon as it goes past `limit`.
 * One linear pass, no allocation, strings skipped: cheap enough to run on every document from outside
 * before JSON.parse, which otherwise builds millions of nested arrays ("[[[[...") synchronously and
 * blocks the deadline timers while it does.
 */
export function jsonDepth(bytes: Uint8Array, limit = MAX_JSON_DEPTH): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    if (inString) {
      if (b === BACKSLASH) i++;
      else if (b === QUOTE) inString = false;
    } else if (b === QUOTE) {
      inString = true;
    } else if (b === OPEN_BRACE || b === OPEN_BRACKET) {
      if (++depth > max) {
        max = depth;
        if (max > limit) return max;
      }
    } else if (b === CLOSE_BRACE || b === CLOSE_BRACKET) {
      depth--;
    }
  }
  return max;
}

/**
 * JSON.parse for documents from outside (a registry, a signature blob): refuses nesting deeper than
 * `maxDepth` before parsing, and turns every failure into a PullguardError naming `what`.
 */
export function parseUntrustedJson(
  bytes: Uint8Array,
  what: string,
  code: ErrorCode = 'REGISTRY_PROTOCOL',
  maxDepth = MAX_JSON_DEPTH,
): unknown {
  if (jsonDepth(bytes, maxDepth) > maxDepth) {
    throw new PullguardError(code, `${what} is not valid JSON: nested more than ${maxDepth} levels deep`);
  }
  try {
    return JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'));
  } catch (e) {
    throw new PullguardError(code, `${what} is not valid JSON: ${(e as Error).message}`);
  }
}

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
 * Tracks the nesting of objects and arrays over a JSON text fed in chunks (a body as it arrives), so a
 * document nested too deep is refused at its first bytes, before the rest is even read. One linear pass,
 * no allocation, strings skipped: cheap enough for every document from outside. Without it JSON.parse
 * builds millions of nested arrays ("[[[[...") synchronously, blocking the deadline timers meanwhile.
 */
export class JsonDepthScanner {
  private depth = 0;
  private inString = false;
  private escaped = false;
  /** The deepest nesting seen so far. */
  max = 0;

  constructor(readonly limit = MAX_JSON_DEPTH) {}

  /** Scans `bytes`; false as soon as the nesting goes past the limit. */
  feed(bytes: Uint8Array): boolean {
    let { depth, inString, escaped } = this;
    for (let i = 0; i < bytes.length; i++) {
      const b = bytes[i]!;
      if (inString) {
        if (escaped) escaped = false;
        else if (b === BACKSLASH) escaped = true;
        else if (b === QUOTE) inString = false;
      } else if (b === QUOTE) {
        inString = true;
      } else if (b === OPEN_BRACE || b === OPEN_BRACKET) {
        if (++depth > this.max) {
          this.max = depth;
          if (depth > this.limit) break;
        }
      } else if (b === CLOSE_BRACE || b === CLOSE_BRACKET) {
        depth--;
      }
    }
    Object.assign(this, { depth, inString, escaped });
    return this.max <= this.limit;
  }
}

/** The deepest nesting of objects and arrays in `bytes`, or `limit + 1` as soon as it goes past `limit`. */
export function jsonDepth(bytes: Uint8Array, limit = MAX_JSON_DEPTH): number {
  const scanner = new JsonDepthScanner(limit);
  scanner.feed(bytes);
  return scanner.max;
}

export function tooDeep(
  what: string,
  maxDepth = MAX_JSON_DEPTH,
  code: ErrorCode = 'REGISTRY_PROTOCOL',
): PullguardError {
  return new PullguardError(code, `${what} is not valid JSON: nested more than ${maxDepth} levels deep`);
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
  if (jsonDepth(bytes, maxDepth) > maxDepth) throw tooDeep(what, maxDepth, code);
  try {
    return JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'));
  } catch (e) {
    throw new PullguardError(code, `${what} is not valid JSON: ${(e as Error).message}`);
  }
}

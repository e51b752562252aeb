import { PullguardError, type ErrorCode } from './errors.js';

/**
 * Malformed input from outside (a signature envelope, certificate, CRL, DN or trust policy). Parsers throw only this
 * (never a TypeError from walking a bad ASN.1/CBOR tree), so a hostile registry cannot turn a bad blob into an
 * INTERNAL error.
 */
export class MalformedInputError extends PullguardError {
  constructor(message: string, code: ErrorCode = 'SIGNATURE_INVALID') {
    super(code, message);
    this.name = 'MalformedInputError';
  }
}

/** Runs a parser; anything it throws that is not already ours becomes a MalformedInputError with `what`. */
export function guard<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof MalformedInputError) throw e;
    const msg = e instanceof Error ? e.message : String(e);
    throw new MalformedInputError(`${what}: ${msg.split('\n')[0]}`);
  }
}

/** A JSON object (not null, not an array): the first check on any outside document. */
export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

import { PullguardError, type ErrorCode } from '../../common/errors.js';

/**
 * A malformed signature envelope, certificate or CRL. Parsers throw only this (never a TypeError from
 * walking a bad ASN.1/CBOR tree), so a hostile registry cannot turn a bad blob into an INTERNAL error.
 */
export class NotationFormatError extends PullguardError {
  constructor(message: string, code: ErrorCode = 'SIGNATURE_INVALID') {
    super(code, message);
    this.name = 'NotationFormatError';
  }
}

/** Runs a parser; anything it throws that is not already ours becomes a NotationFormatError with `what`. */
export function guard<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof NotationFormatError) throw e;
    const msg = e instanceof Error ? e.message : String(e);
    throw new NotationFormatError(`${what}: ${msg.split('\n')[0]}`);
  }
}

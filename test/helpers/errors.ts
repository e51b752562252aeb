import { expect } from 'vitest';
import { PullguardError } from '../../src/common/errors.js';
import { MalformedInputError } from '../../src/common/malformed.js';

/** Runs a parser on hostile input: it may succeed or throw MalformedInputError, never anything else. */
export function onlyFormatErrors(fn: () => unknown): void {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof MalformedInputError)) throw e;
  }
}

/** Awaits `p`, which must reject with a PullguardError, and returns that error for more assertions. */
export async function rejects(p: Promise<unknown>): Promise<PullguardError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(PullguardError);
    return e as PullguardError;
  }
  throw new Error('expected a PullguardError');
}

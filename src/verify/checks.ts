import { PullguardError, type ErrorCode } from '../common/errors.js';
import type { CheckOutcome } from './types.js';

/** A failed check ends the judgement of one signature; the verdict carries the check list so far. */
export class Rejection extends PullguardError {
  constructor(code: ErrorCode, message: string) {
    super(code, message);
    this.name = 'Rejection';
  }
}

/** The checks of one signature, in the order they ran: what `verify --explain` prints. */
export class Checks {
  readonly list: CheckOutcome[] = [];
  /** Set when a certificate was checked against the current time (see SignatureResult.validUntil). */
  validUntil?: Date;
  pass(check: string, detail?: string): void {
    this.list.push({ check, result: 'pass', enforcement: 'enforced', detail });
  }
  skip(check: string, detail: string): void {
    this.list.push({ check, result: 'skip', enforcement: 'skipped', detail });
  }
  fail(check: string, code: ErrorCode, detail: string): never {
    this.list.push({ check, result: 'fail', enforcement: 'enforced', detail });
    throw new Rejection(code, detail);
  }
}

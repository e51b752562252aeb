import { PullguardError } from './errors.js';

/**
 * One budget for the whole run. Everything that waits (stdin, the network, helpers) takes its signal,
 * so nothing can outlive the budget; the process-level timer in cli/ is the last line of defence.
 */
export class Deadline {
  readonly startedAt: number;
  readonly budgetMs: number;
  private readonly controller = new AbortController();
  private readonly timer: NodeJS.Timeout;

  constructor(budgetMs: number, now: number = Date.now()) {
    this.startedAt = now;
    this.budgetMs = budgetMs;
    this.timer = setTimeout(() => this.controller.abort(new DeadlineExceeded(budgetMs)), budgetMs);
    this.timer.unref();
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  remainingMs(now: number = Date.now()): number {
    return Math.max(0, this.startedAt + this.budgetMs - now);
  }

  elapsedMs(now: number = Date.now()): number {
    return now - this.startedAt;
  }

  /**
   * A signal that fires at `ms` from now or at the deadline, whichever is first: for one request. When
   * `ms` reaches the deadline, the deadline's own signal is the only one: two timers ending in the same
   * millisecond would otherwise race, and the reason would name either the request or the deadline.
   */
  slice(ms: number): AbortSignal {
    const remaining = this.remainingMs();
    if (ms >= remaining) return this.signal;
    return AbortSignal.any([this.signal, AbortSignal.timeout(Math.max(1, Math.floor(ms)))]);
  }

  /**
   * A shorter budget inside this one (a share for one host, or the time left before the verdict must be
   * written): it ends at `ms` from now, or when this deadline does, whichever is first.
   */
  child(ms: number): Deadline {
    const child = new Deadline(Math.max(1, Math.min(Math.floor(ms), this.remainingMs())));
    const parent = this.signal;
    if (parent.aborted) child.controller.abort(parent.reason);
    else {
      const onAbort = () => child.controller.abort(parent.reason);
      parent.addEventListener('abort', onAbort, { once: true });
      child.signal.addEventListener('abort', () => parent.removeEventListener('abort', onAbort), { once: true });
    }
    return child;
  }

  /** Settles like `work`, or rejects with DeadlineExceeded when the budget runs out first. */
  race<T>(work: Promise<T>): Promise<T> {
    const signal = this.signal;
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => reject(signal.reason);
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
    });
  }

  dispose(): void {
    clearTimeout(this.timer);
  }
}

export class DeadlineExceeded extends PullguardError {
  constructor(readonly budgetMs: number) {
    super('DEADLINE_EXCEEDED', `timed out after ${formatDuration(budgetMs)}`);
    this.name = 'DeadlineExceeded';
  }
}

export function formatDuration(ms: number): string {
  return ms >= 1000 ? `${(ms / 1000).toFixed(ms % 1000 === 0 ? 0 : 1)}s` : `${ms}ms`;
}

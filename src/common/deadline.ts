import { setMaxListeners } from 'node:events';
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
  /** The slices' timers and the children, ended by dispose(). */
  private readonly owned = new Set<{ dispose(): void }>();

  constructor(budgetMs: number, now: number = Date.now()) {
    this.startedAt = now;
    this.budgetMs = budgetMs;
    this.timer = setTimeout(() => this.controller.abort(new DeadlineExceeded(budgetMs)), budgetMs);
    this.timer.unref();
    // Every request's slice listens to it until the request's own timer ends (a pull makes dozens).
    setMaxListeners(Number.POSITIVE_INFINITY, this.controller.signal);
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
    // Not AbortSignal.any(AbortSignal.timeout()): both register in FinalizationRegistries, and the
    // executable's startup snapshot cannot be taken while one has entries to clean up (the snapshot
    // warm-up runs real requests, cli/warmup.ts).
    const parent = this.signal;
    const slice = new AbortController();
    const onAbort = () => {
      clearTimeout(timer);
      slice.abort(parent.reason);
    };
    const timer = setTimeout(
      () => {
        parent.removeEventListener('abort', onAbort);
        slice.abort(new DOMException('The operation was aborted due to timeout', 'TimeoutError'));
      },
      Math.max(1, Math.floor(ms)),
    );
    timer.unref();
    parent.addEventListener('abort', onAbort, { once: true });
    const owned = { dispose: () => clearTimeout(timer) };
    this.owned.add(owned);
    slice.signal.addEventListener('abort', () => this.owned.delete(owned), { once: true });
    return slice.signal;
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
    this.owned.add(child);
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

  /**
   * Ends its timers, its slices' and its children's. Nothing of a run may stay pending: a timer left
   * in the executable's startup snapshot (by the build's warm-up) has no native timer behind it after
   * start-up, and a pull's timer of the same duration would then never fire.
   */
  dispose(): void {
    clearTimeout(this.timer);
    for (const o of this.owned) o.dispose();
    this.owned.clear();
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

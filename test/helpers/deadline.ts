import { vi } from 'vitest';

/**
 * A deadline check that does not depend on how loaded the machine is: with fake timers, `start()` must
 * still be pending 1 ms before `deadlineMs` and settled at `deadlineMs`. Wall-clock upper bounds
 * ("took less than 1000 ms") fail on a busy 2-core CI box and pass for a timer set ten times too long
 * if the box is fast; this fails for a timer off by one millisecond, and never for load.
 */
export function settlesAtDeadline<T>(deadlineMs: number, start: () => Promise<T>): Promise<PromiseSettledResult<T>> {
  return settlesBetween(deadlineMs, deadlineMs, start, ['setTimeout', 'clearTimeout']);
}

/**
 * settlesAtDeadline for code that polls the clock (`Date.now() - started >= deadline`, checked every few
 * ms): with fake timers and a fake Date, `start()` is still pending 1 ms before `earliestMs` and has
 * settled by `latestMs` (the deadline plus one poll interval).
 */
export async function settlesBetween<T>(
  earliestMs: number,
  latestMs: number,
  start: () => Promise<T>,
  toFake: ('setTimeout' | 'clearTimeout' | 'Date')[] = ['setTimeout', 'clearTimeout', 'Date'],
): Promise<PromiseSettledResult<T>> {
  vi.useFakeTimers({ toFake });
  try {
    let outcome: PromiseSettledResult<T> | undefined;
    const p = start().then(
      (value) => (outcome = { status: 'fulfilled', value }),
      (reason: unknown) => (outcome = { status: 'rejected', reason }),
    );
    await vi.advanceTimersByTimeAsync(earliestMs - 1);
    if (outcome) throw new Error(`settled before its ${earliestMs} ms deadline: ${JSON.stringify(outcome)}`);
    await vi.advanceTimersByTimeAsync(latestMs - earliestMs + 1);
    if (!outcome) throw new Error(`still pending ${latestMs} ms after the start (deadline ${earliestMs} ms)`);
    await p;
    return outcome;
  } finally {
    vi.useRealTimers();
  }
}

/**
 * For what must be decided at once: `start()` settles while no timer is allowed to fire (fake timers,
 * the clock never advanced; real I/O callbacks still run). A path that waits for a deadline, a retry
 * delay or a read timeout before answering fails this, however fast the machine is.
 */
export async function settlesWithoutWaiting<T>(start: () => Promise<T>): Promise<T> {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval'] });
  try {
    let done = false;
    const p = start().finally(() => (done = true));
    for (let i = 0; i < 50 && !done; i++) await new Promise<void>((r) => setImmediate(r));
    if (!done) throw new Error('did not settle without a timer firing (it waits for a deadline or a delay)');
    return await p;
  } finally {
    vi.useRealTimers();
  }
}

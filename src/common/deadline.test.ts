import { afterEach, describe, expect, test, vi } from 'vitest';
import { Deadline } from './deadline.js';

afterEach(() => vi.useRealTimers());

describe('Deadline', () => {
  test('a slice ends at its own time or at the deadline, whichever is first', () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const d = new Deadline(1000);
    const short = d.slice(100);
    const long = d.slice(5000);
    expect(long).toBe(d.signal); // at or past the deadline: the deadline's own signal
    vi.advanceTimersByTime(99);
    expect(short.aborted).toBe(false);
    vi.advanceTimersByTime(1);
    expect(short.aborted).toBe(true);
    expect((short.reason as DOMException).name).toBe('TimeoutError');
    d.dispose();
  });

  // The build's warm-up disposes every deadline it made, and fails when a timer is left: one left in
  // the startup snapshot hangs later pulls (src/cli/warmup.ts).
  test("dispose ends the slices' and the children's timers too", () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const d = new Deadline(1000);
    const slice = d.slice(100);
    const child = d.child(200);
    d.dispose();
    expect(vi.getTimerCount()).toBe(0);
    vi.advanceTimersByTime(2000);
    expect(slice.aborted).toBe(false);
    expect(child.signal.aborted).toBe(false);
  });
});

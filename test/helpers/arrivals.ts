/**
 * For tests of what a client sends in parallel: `arrive()` resolves once `n` requests have arrived, so a
 * server that answers after it proves they were in flight together. A request that waited for another's
 * answer would never come; the backstop then ends the wait and `heldTooLong` says so.
 */
export function arrivals(n: number, backstopMs = 5000) {
  let count = 0;
  let heldTooLong = false;
  let release!: () => void;
  const all = new Promise<void>((r) => {
    release = r;
  });
  const backstop = setTimeout(() => {
    heldTooLong = true;
    release();
  }, backstopMs);
  backstop.unref();
  return {
    arrive(): Promise<void> {
      if (++count === n) {
        clearTimeout(backstop);
        release();
      }
      return all;
    },
    get count() {
      return count;
    },
    get heldTooLong() {
      return heldTooLong;
    },
  };
}

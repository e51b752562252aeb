import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseDuration, parseGoDuration } from './go-duration.js';

describe('parseDuration (policy values)', () => {
  it('takes what policies have always written', () => {
    expect(parseDuration('8s')).toBe(8000);
    expect(parseDuration('1500ms')).toBe(1500);
    expect(parseDuration('2m')).toBe(120_000);
    expect(parseDuration('1h')).toBe(3_600_000);
    expect(parseDuration('1.5s')).toBe(1500);
    expect(parseDuration('8')).toBe(8000);
    expect(parseDuration(' 8 s ')).toBe(8000);
    expect(parseDuration(2.5)).toBe(2500);
  });
  it('takes Go durations too', () => {
    expect(parseDuration('1m30s')).toBe(90_000);
    expect(parseDuration('250000us')).toBe(250);
  });
  it('refuses zero, negatives and what is not a duration', () => {
    for (const bad of ['0', '0s', '-1s', '', 's', '8x', '8 seconds', '1e3', 'NaN', '0.1ms', '1 0s'])
      expect(parseDuration(bad), bad).toBeUndefined();
    for (const bad of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) expect(parseDuration(bad)).toBeUndefined();
  });
  it('agrees with parseGoDuration on every positive Go duration of whole milliseconds', () => {
    const unit = fc.constantFrom('ms', 's', 'm', 'h');
    const part = fc.tuple(fc.integer({ min: 0, max: 999 }), unit).map(([n, u]) => `${n}${u}`);
    fc.assert(
      fc.property(fc.array(part, { minLength: 1, maxLength: 4 }), (parts) => {
        const s = parts.join('');
        const go = parseGoDuration(s)!;
        expect(parseDuration(s)).toBe(go > 0 ? go : undefined);
      }),
    );
  });
});

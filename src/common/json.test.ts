import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { jsonDepth, JsonDepthScanner, parseUntrustedJson } from './json.js';

/** The nesting depth of a parsed value, the slow way. */
function depthOf(v: unknown): number {
  if (Array.isArray(v)) return 1 + Math.max(0, ...v.map(depthOf));
  if (v && typeof v === 'object') return 1 + Math.max(0, ...Object.values(v).map(depthOf));
  return 0;
}

describe('JSON nesting depth, before JSON.parse', () => {
  test('equals the depth of the parsed value, for any JSON and any chunking', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 8 }), fc.integer({ min: 1, max: 7 }), (value, step) => {
        const bytes = Buffer.from(JSON.stringify(value));
        expect(jsonDepth(bytes, 1000)).toBe(depthOf(value));
        const scanner = new JsonDepthScanner(1000);
        for (let i = 0; i < bytes.length; i += step) scanner.feed(bytes.subarray(i, i + step));
        expect(scanner.max).toBe(depthOf(value));
      }),
    );
  });

  test('brackets and escaped quotes inside strings do not count', () => {
    expect(jsonDepth(Buffer.from(JSON.stringify({ a: '[[[{{\\"[[', b: ['"]]]"'] })))).toBe(2);
  });

  test('2 million levels are refused at the 65th byte, in linear time, without parsing', () => {
    const deep = Buffer.concat([Buffer.alloc(2_000_000, '['), Buffer.alloc(2_000_000, ']')]);
    const scanner = new JsonDepthScanner(64);
    expect(scanner.feed(deep.subarray(0, 65))).toBe(false);
    // A step budget, not a time limit: count the bytes read. The refusal reads 65 of the 4 million.
    let reads = 0;
    const counted = new Proxy(deep, {
      get(target, key) {
        if (typeof key === 'string' && /^\d+$/.test(key)) reads++;
        const v: unknown = Reflect.get(target, key);
        return typeof v === 'function' ? v.bind(target) : v;
      },
    });
    expect(() => parseUntrustedJson(counted, 'manifest x')).toThrow(
      /manifest x is not valid JSON: nested more than 64 levels deep/,
    );
    expect(reads).toBe(65);
    // A long flat document is scanned in one linear pass.
    const flat = Buffer.from(JSON.stringify({ a: 'x'.repeat(4_000_000) }));
    expect(jsonDepth(flat)).toBe(1);
  });

  test('64 levels are fine', () => {
    const ok = Buffer.from(`${'['.repeat(64)}${']'.repeat(64)}`);
    expect(depthOf(parseUntrustedJson(ok, 'x'))).toBe(64);
  });
});

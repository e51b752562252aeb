import fc from 'fast-check';
import { parse as parseYaml } from 'yaml';
import { describe, expect, it } from 'vitest';
import { parseStrictJson } from './json.js';

describe('parseStrictJson', () => {
  it('parses JSON objects like the YAML path does', () => {
    const text =
      '{"default": [{"type": "reject"}], "transports": {"docker": {"a\\"b": [], "x": {"y": [1, 2.5, null, true]}}}}';
    expect(parseStrictJson(text)).toEqual(parseYaml(text));
  });

  it('refuses duplicate keys, at any depth and however escaped, so the YAML path reports them', () => {
    expect(parseStrictJson('{"a": 1, "a": 2}')).toBeUndefined();
    expect(parseStrictJson('{"x": [{"a": 1, "b": {"c": 1, "c": 1}}]}')).toBeUndefined();
    expect(parseStrictJson('{"a": 1, "\\u0061": 2}')).toBeUndefined();
    expect(parseStrictJson('{"a": {"a": 1}, "b": [{"a": 1}, {"a": 2}]}')).toEqual({
      a: { a: 1 },
      b: [{ a: 1 }, { a: 2 }],
    });
  });

  it('leaves YAML and broken JSON to the YAML path', () => {
    expect(parseStrictJson('version: 1\n')).toBeUndefined();
    expect(parseStrictJson('{"a": 1,}')).toBeUndefined();
  });

  it('agrees with yaml (uniqueKeys) on generated JSON (property)', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 4 }), fc.boolean(), (v, dup) => {
        let text = JSON.stringify({ root: v });
        if (dup) text = text.replace(/^\{/, '{"root": 0, ');
        const fast = parseStrictJson(text);
        if (dup) expect(fast).toBeUndefined();
        else expect(fast).toEqual(JSON.parse(text));
      }),
      { numRuns: 300 },
    );
  });
});

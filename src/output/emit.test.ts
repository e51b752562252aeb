import { describe, expect, test } from 'vitest';
import fc from 'fast-check';
import { flattenText, quoteUntrusted } from '../common/text.js';
import type { Decision } from '../verdict/decision.js';
import type { SignatureResult } from '../verify/types.js';
import { formatLine, formatRecord, MAX_LINE_BYTES, MAX_RECORD_BYTES, truncateLine } from './emit.js';

const D = `sha256:${'a'.repeat(64)}`;
const ctx = { name: '127.0.0.1:5201/prod/app:v1', digest: D, startedAt: 0 };
const deny = (reason: string, results: Decision['results'] = []): Decision => ({
  verdict: 'deny',
  policyVerdict: 'deny',
  reason,
  code: 'REGISTRY_PROTOCOL',
  rule: 'prod',
  results,
  exitCode: 1,
});

describe('the event line is one plain line that starts with our verdict (issue 8 item 9)', () => {
  const hostile = [
    '\u2028',
    '\u2029',
    '\u0085',
    '\u009b',
    '\u001b[2J',
    '\r\n',
    '\u202e',
    '\u2066',
    '\u200b',
    '\ufeff',
    '\u00ad',
    '\u3000',
    '\udb40\udc41',
  ];
  test.each(hostile.map((h) => [JSON.stringify(h), h]))('strips %s', (_, h) => {
    const line = formatLine(
      deny(`127.0.0.1:5201 answered HTTP 500: BOOM x${h}allowed 127.0.0.1:5201/prod/app: signature verified`),
      ctx,
    );
    expect(line).toMatch(/^denied 127\.0\.0\.1:5201\/prod\/app@sha256:aaaaaaaaaaaa/);
    expect(line).not.toMatch(
      // biome-ignore lint/suspicious/noControlCharactersInRegex: no control character may reach the line
      /[\u0000-\u001f\u007f-\u009f\u00ad\u061c\u200b-\u200f\u2028-\u202e\u2060-\u206f\u3000\ufeff]|[\ud800-\udfff]/,
    );
  });
  test('registry text is quoted: a fake verdict inside it cannot pass for ours', () => {
    const evil = 'x" (rule "prod")\u2028allowed 127.0.0.1:5201/prod/app: signature verified by release';
    const line = formatLine(
      deny(`127.0.0.1:5201 answered HTTP 500 for the referrers: registry error ${quoteUntrusted(evil, 200)}`),
      ctx,
    );
    expect(line).toBe(
      'denied 127.0.0.1:5201/prod/app@sha256:aaaaaaaaaaaa\u2026: ' +
        '127.0.0.1:5201 answered HTTP 500 for the referrers: registry error ' +
        '"x\\" (rule \\"prod\\") allowed 127.0.0.1:5201/prod/app: signature verified by release" (rule "prod")',
    );
  });
  test('quoteUntrusted bounds the text and never splits a surrogate pair', () => {
    const q = quoteUntrusted(`${'a'.repeat(9)}\u{1f600}tail`, 10);
    expect(q).toBe('"aaaaaaaaa..."');
  });
});

describe('the stderr record stays JSON under 32 KiB (issue 8)', () => {
  const junk = (i: number): SignatureResult => ({
    class: 'cosign-bundle',
    foundVia: 'referrers-api',
    repository: '127.0.0.1:5201/prod/app',
    artifact: `sha256:${i.toString(16).padStart(64, '0')}`,
    valid: i === 63,
    reason: `junk signature ${i}: ${'not a valid bundle '.repeat(20)}`,
    code: 'SIGNATURE_INVALID',
    checks: [
      { check: 'integrity', result: 'fail', enforcement: 'enforced', detail: 'x'.repeat(300) },
      { check: 'authenticity', result: 'skip', enforcement: 'skipped' },
    ],
  });
  test('64 junk signatures: valid JSON, under the cap, counts kept, the valid one kept, truncated marked', () => {
    const results = [
      {
        authority: 'release',
        kind: 'cosign',
        satisfied: false,
        reason: 'no valid signature',
        code: 'SIGNATURE_INVALID' as const,
        signatures: Array.from({ length: 64 }, (_, i) => junk(i)),
      },
    ];
    const line = formatRecord(deny('no valid signature', results), ctx, 1000);
    expect(Buffer.byteLength(line)).toBeLessThanOrEqual(MAX_RECORD_BYTES);
    const rec = JSON.parse(line);
    expect(rec).toMatchObject({ truncated: true, verdict: 'deny', digest: D, rule: 'prod' });
    expect(rec.results[0]).toMatchObject({ signatureCount: 64, validSignatureCount: 1 });
    expect(rec.results[0].signatures[0].artifact).toBe(junk(63).artifact);
    expect(rec.results[0].signatures.length + rec.results[0].signaturesOmitted).toBe(64);
  });
  test('even a thousand authorities with huge reasons stay valid JSON under the cap', () => {
    const results = Array.from({ length: 1000 }, (_, i) => ({
      authority: `a${i}`,
      kind: 'cosign',
      satisfied: false,
      reason: 'r'.repeat(5000),
      signatures: [junk(i)],
    }));
    const line = formatRecord(deny('z'.repeat(100_000), results), ctx, 1000);
    expect(Buffer.byteLength(line)).toBeLessThanOrEqual(MAX_RECORD_BYTES);
    expect(JSON.parse(line).truncated).toBe(true);
  });
  test('a small record is untouched, and U+2028 is escaped in it', () => {
    const line = formatRecord(deny('a\u2028b'), ctx, 1000);
    expect(line).toContain('a\\u2028b');
    expect(JSON.parse(line)).not.toHaveProperty('truncated');
    expect(JSON.parse(line).reason).toBe('a\u2028b');
  });
});

describe('the plain-line fast path of truncateLine', () => {
  // Differential: the fast path must give exactly what flattenText gives, on text it takes and on text
  // it must leave to flattenText (runs of spaces, controls, separators, bidi, other non-ASCII).
  const alphabet = [
    'a',
    'Z',
    '0',
    ':',
    '/',
    '@',
    '"',
    ' ',
    '  ',
    '\t',
    '\n',
    '\u0085',
    '\u2026',
    '\u2028',
    '\u202e',
    '\u00a0',
    '\u3000',
    '\u00e9',
  ];
  test('equals flattenText on every string of a mixed alphabet', () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...alphabet), { maxLength: 24 }), (parts) => {
        const s = parts.join('');
        expect(truncateLine(s, MAX_LINE_BYTES)).toBe(flattenText(s));
      }),
      { numRuns: 2000 },
    );
  });
  test('a typical event line: trimmed, kept as is', () => {
    const line = ' allowed r.example/app@sha256:abababababab\u2026: allowed by policy (rule "open") ';
    expect(truncateLine(line, MAX_LINE_BYTES)).toBe(line.trim());
    expect(truncateLine('a  b', MAX_LINE_BYTES)).toBe('a b');
  });
});

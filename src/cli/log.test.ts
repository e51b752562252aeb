import { appendFileSync, promises as fsp, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test, vi } from 'vitest';
import { serializeEntry } from '../output/decision-log.js';
import { toEntry } from '../output/record.js';
import { applyMode, ruleDecision } from '../verdict/decision.js';
import { parseLogArgs, parseSince, runLog } from './log.js';

const dir = mkdtempSync(join(tmpdir(), 'pg-log-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const rule = (name: string) => ({
  name,
  match: ['*'],
  action: 'verify' as const,
  authorities: [],
  require: 'all' as const,
});
const T0 = Date.parse('2026-12-01T10:00:00Z');
const line = (
  name: string,
  ruleName: string,
  verdict: 'allow' | 'deny',
  mode: 'audit' | 'enforce',
  t: number,
  code?: 'NO_SIGNATURE',
) =>
  serializeEntry(
    toEntry(
      applyMode(
        ruleDecision(
          rule(ruleName),
          verdict,
          verdict === 'deny' ? 'no signature found' : 'signature verified by k',
          [],
          code,
        ),
        mode,
      ),
      { name, digest: `sha256:${String(Math.floor(t / 60_000) % 10).repeat(64)}`, startedAt: t - 40 },
      t,
    ),
  );

const file = join(dir, 'decisions.jsonl');
writeFileSync(`${file}.1`, `${line('r.example/app:v1', 'prod', 'deny', 'audit', T0, 'NO_SIGNATURE')}\n`);
writeFileSync(
  file,
  [
    line('r.example/app:v2', 'prod', 'deny', 'audit', T0 + 60_000, 'NO_SIGNATURE'),
    line('r.example/app:v2', 'prod', 'deny', 'audit', T0 + 120_000, 'NO_SIGNATURE'),
    line('r.example/web:v1', 'prod', 'allow', 'audit', T0 + 130_000),
    line('r.example/db:v1', 'db', 'deny', 'enforce', T0 + 140_000, 'NO_SIGNATURE'),
    '{"v":1,"time":"torn',
    '',
  ].join('\n'),
);

async function run(args: string[]) {
  const out: string[] = [];
  const code = await runLog(['--file', file, ...args], (l) => out.push(l), {});
  return { code, out };
}

describe('pullguard log', () => {
  const groups = '--would-deny groups by rule, image and reason with counts and first/last seen, across rotated files';
  test(groups, async () => {
    const r = await run(['--would-deny']);
    expect(r.code).toBe(0);
    expect(r.out).toEqual([
      `3 of 5 decision(s) in ${file}.1, ${file} (1 unreadable line(s) skipped)`,
      'WOULD-DENY     3x  r.example/app  rule "prod"  [NO_SIGNATURE]',
      '           no signature found',
      '           first 2026-12-01 10:00:00Z, last 2026-12-01 10:02:00Z, 3 digest(s)',
    ]);
  });

  test('--verdict, --rule, --image, --since and --json', async () => {
    const j = JSON.parse((await run(['--verdict', 'deny', '--json'])).out[0]!);
    expect(j.groups.map((g: { image: string }) => g.image)).toEqual(['r.example/db']);
    expect((await run(['--rule', 'db', '--json'])).out[0]).toContain('"matched":1');
    expect((await run(['--image', 'web', '--json'])).out[0]).toContain('"matched":1');
    const since = JSON.parse((await run(['--since', '2026-12-01T10:01:30Z', '--json'])).out[0]!);
    expect(since.matched).toBe(3);
  });

  test('durations and bad arguments', () => {
    expect(parseSince('1h', T0)).toBe(T0 - 3_600_000);
    expect(parseSince('30m', T0)).toBe(T0 - 1_800_000);
    expect(parseSince('2d', T0)).toBe(T0 - 2 * 86_400_000);
    expect(() => parseLogArgs(['--verdict', 'maybe'])).toThrow(/allow or deny/);
    expect(() => parseLogArgs(['--since', 'yesterday'])).toThrow(/duration/);
    expect(() => parseLogArgs(['--bogus'])).toThrow(/unknown option/);
  });

  test('-f prints new decisions as they are appended, also after a rotation', async () => {
    const f = join(dir, 'follow.jsonl');
    writeFileSync(f, `${line('r.example/old:v1', 'prod', 'deny', 'audit', T0, 'NO_SIGNATURE')}\n`);
    const out: string[] = [];
    const ac = new AbortController();
    // The event to wait for, not a sleep: follow() has taken the file's size (its first stat settled).
    const stat = vi.spyOn(fsp, 'stat');
    const done = runLog(['--file', f, '-f', '--would-deny'], (l) => out.push(l), {}, ac.signal);
    const until = (n: number) => vi.waitFor(() => expect(out.length).toBeGreaterThanOrEqual(n), { timeout: 10_000 });
    await vi.waitFor(() => expect(stat).toHaveBeenCalled());
    await stat.mock.results[0]!.value;
    stat.mockRestore();
    appendFileSync(
      f,
      `${line('r.example/new:v1', 'prod', 'deny', 'audit', T0 + 1, 'NO_SIGNATURE')}\n` +
        `${line('r.example/ok:v1', 'prod', 'allow', 'enforce', T0 + 2)}\n`,
    );
    await until(1);
    renameSync(f, `${f}.1`);
    writeFileSync(f, `${line('r.example/after:v1', 'prod', 'deny', 'audit', T0 + 3, 'NO_SIGNATURE')}\n`);
    await until(2);
    ac.abort();
    await done;
    expect(out).toHaveLength(2);
    expect(out[0]).toMatch(/WOULD-DENY r\.example\/new:v1 rule "prod": no signature found \[NO_SIGNATURE\]/);
    expect(out[1]).toMatch(/r\.example\/after:v1/);
  });
});

import {
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
  mkdirSync,
  existsSync,
  utimesSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import type { Decision } from '../verdict/decision.js';
import { applyMode, ruleDecision } from '../verdict/decision.js';
import { appendDecision, logFiles, parseEntries, serializeEntry } from './decision-log.js';
import { STALE_MS, tryLock } from './lock.js';
import { formatMetrics, MAX_PENDING, observe, parseMetrics, recordMetrics, type MetricState } from './metrics.js';
import { recordDecision } from './observe.js';
import { hostOf, scrub, toEntry } from './record.js';

const dir = mkdtempSync(join(tmpdir(), 'pg-out-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const D = `sha256:${'a'.repeat(64)}`;
const ctx = { name: 'registry.example/app:v1', digest: D, startedAt: 1_000 };
const rule = {
  name: 'prod',
  match: ['registry.example/*'],
  action: 'verify' as const,
  authorities: [],
  require: 'all' as const,
};
const wouldDeny: Decision = applyMode(ruleDecision(rule, 'deny', 'no signature found', [], 'NO_SIGNATURE'), 'audit');
const allow: Decision = applyMode(ruleDecision(rule, 'allow', 'allowed by policy'), 'enforce');
let n = 0;
const fresh = (name: string) => join(dir, `${name}-${n++}`);

describe('decision entries', () => {
  test('audit mode would-deny is flagged, with policy verdict and code', () => {
    const e = toEntry(wouldDeny, ctx, 1_250);
    expect(e).toMatchObject({
      v: 1,
      verdict: 'allow',
      policyVerdict: 'deny',
      wouldDeny: true,
      mode: 'audit',
      code: 'NO_SIGNATURE',
      rule: 'prod',
      durationMs: 250,
      host: 'registry.example',
    });
  });

  test('hosts of CRI-normalized names', () => {
    expect(hostOf('docker.io/library/busybox:1')).toBe('docker.io');
    expect(hostOf('localhost:5000/app@sha256:00')).toBe('localhost:5000');
    expect(hostOf('busybox')).toBe('docker.io');
  });

  test('credentials in URLs never reach the log', () => {
    const s = scrub(
      'GET https://user:hunter2@r.example/v2/x?X-Amz-Signature=abc&access_token=tok123 failed: Bearer eyJabc.def',
    );
    expect(s).not.toMatch(/hunter2|abc&|tok123|eyJabc/);
    expect(s).toContain('https://r.example/v2/x');
  });

  test('an oversized record is still one valid line', () => {
    const big = applyMode(ruleDecision(rule, 'deny', 'x'.repeat(100_000), [], 'NO_SIGNATURE'), 'enforce');
    const line = serializeEntry({ ...toEntry(big, ctx, 2_000), reason: 'y'.repeat(100_000) });
    expect(Buffer.byteLength(line)).toBeLessThanOrEqual(8 * 1024);
    expect(JSON.parse(line).v).toBe(1);
  });
});

describe('decision log', () => {
  test('appends one line per decision, creating the directory', async () => {
    const path = join(fresh('log'), 'sub', 'decisions.jsonl');
    appendDecision(toEntry(allow, ctx, 2_000), { path });
    appendDecision(toEntry(wouldDeny, ctx, 3_000), { path });
    const { entries, skipped } = parseEntries(readFileSync(path, 'utf8'));
    expect(skipped).toBe(0);
    expect(entries.map((e) => e.verdict)).toEqual(['allow', 'allow']);
    expect(entries.map((e) => e.wouldDeny)).toEqual([false, true]);
    expect(statSync(path).mode & 0o777).toBe(0o640);
  });

  test('rotates past maxBytes and keeps at most `keep` old files', async () => {
    const path = join(fresh('rot'), 'd.jsonl');
    for (let i = 0; i < 60; i++) appendDecision(toEntry(allow, ctx, 2_000 + i), { path, maxBytes: 4096, keep: 2 });
    expect(existsSync(`${path}.1`)).toBe(true);
    expect(existsSync(`${path}.2`)).toBe(true);
    expect(existsSync(`${path}.3`)).toBe(false);
    for (const f of [path, `${path}.1`, `${path}.2`].filter(existsSync))
      expect(statSync(f).size).toBeLessThanOrEqual(4096 + 1024);
    const all = logFiles(path)
      .filter(existsSync)
      .flatMap((f) => parseEntries(readFileSync(f, 'utf8')).entries);
    // Oldest first, none torn, the newest last.
    expect(all.at(-1)!.time).toBe(new Date(2_059).toISOString());
    expect([...all].sort((a, b) => a.time.localeCompare(b.time))).toEqual(all);
  });

  test('a record glued behind a torn fragment is recovered; garbage is counted', () => {
    const good = serializeEntry(toEntry(allow, ctx, 2_000));
    const { entries, skipped } = parseEntries(`{"v":1,"time":"2020-01-01T00:0${good}\nnot json\n${good}\n`);
    expect(entries).toHaveLength(2);
    expect(skipped).toBe(1);
  });
});

describe('lock', () => {
  test('exclusive; a stale lock left by a killed holder is broken', () => {
    const path = join(dir, 'x.lock');
    const release = tryLock(path);
    expect(release).toBeDefined();
    expect(tryLock(path)).toBeUndefined();
    const old = (Date.now() - STALE_MS - 1000) / 1000;
    utimesSync(path, old, old);
    const again = tryLock(path);
    expect(again).toBeDefined();
    again!();
    expect(existsSync(path)).toBe(false);
  });
});

describe('metrics', () => {
  const obs = (d: Decision, durationMs = 30, extra: Partial<ReturnType<typeof toEntry>> = {}) => ({
    entry: { ...toEntry(d, ctx, ctx.startedAt + durationMs), ...extra },
  });

  test('counters, histogram and HELP/TYPE for every family, stable across a round trip', () => {
    const s: MetricState = new Map();
    observe(s, obs(wouldDeny, 30));
    observe(s, obs(allow, 700));
    observe(s, obs(allow, 20_000));
    const text = formatMetrics(s);
    expect(text).toContain(
      'pullguard_decisions_total{verdict="allow",policy_verdict="deny",mode="audit",rule="prod",code="NO_SIGNATURE"} 1',
    );
    expect(text).toContain(
      'pullguard_decisions_total{verdict="allow",policy_verdict="allow",mode="enforce",rule="prod",code="OK"} 2',
    );
    expect(text).toContain('pullguard_decision_duration_seconds_bucket{le="0.05"} 1');
    expect(text).toContain('pullguard_decision_duration_seconds_bucket{le="1"} 2');
    expect(text).toContain('pullguard_decision_duration_seconds_bucket{le="+Inf"} 3');
    expect(text).toContain('pullguard_decision_duration_seconds_count 3');
    expect(text).toContain('pullguard_cache_hits_total 0');
    // One HELP and one TYPE per family, before its samples; no sample of an undeclared family.
    const declared = new Set<string>();
    for (const line of text.trim().split('\n')) {
      const m = /^# (HELP|TYPE) (\S+)/.exec(line);
      if (m) {
        if (m[1] === 'TYPE') declared.add(m[2]!);
        continue;
      }
      const name = line.split(/[{ ]/)[0]!;
      expect(declared.has(name) || declared.has(name.replace(/_(bucket|sum|count)$/, ''))).toBe(true);
    }
    expect(text.match(/^# TYPE /gm)).toHaveLength(8);
    expect(formatMetrics(parseMetrics(text))).toBe(text);
  });

  test('scan decisions count in their own family, not as pulls', () => {
    const s: MetricState = new Map();
    observe(s, obs(allow, 30, { source: 'scan' }));
    observe(s, obs(wouldDeny, 30, { source: 'scan' }));
    const text = formatMetrics(s);
    const scanSeries = 'pullguard_scan_decisions_total{verdict="allow",policy_verdict="deny",rule="prod"';
    expect(text).toContain(`${scanSeries},code="NO_SIGNATURE"} 1`);
    expect(text).toMatch(/^pullguard_last_scan_timestamp_seconds \d+$/m);
    expect(text).not.toMatch(/^pullguard_decisions_total/m);
    expect(text).not.toMatch(/^pullguard_decision_duration_seconds_count/m);
    expect(formatMetrics(parseMetrics(text))).toBe(text);
  });

  test('registry errors by host, bounded in cardinality', () => {
    const s: MetricState = new Map();
    const regErr = applyMode(ruleDecision(rule, 'deny', 'unreachable', [], 'REGISTRY_UNREACHABLE'), 'enforce');
    for (let i = 0; i < 80; i++) observe(s, { entry: { ...toEntry(regErr, ctx, 2_000), host: `h${i}.example` } });
    const text = formatMetrics(s);
    expect(text.match(/^pullguard_registry_errors_total\{/gm)).toHaveLength(51);
    expect(text).toContain('pullguard_registry_errors_total{host="(other)",code="REGISTRY_UNREACHABLE"} 30');
  });

  test('label values are escaped', () => {
    const s: MetricState = new Map();
    observe(s, obs(applyMode(ruleDecision({ ...rule, name: 'a"b\\c' }, 'allow', 'ok'), 'enforce')));
    const text = formatMetrics(s);
    expect(text).toContain('rule="a\\"b\\\\c"');
    expect(formatMetrics(parseMetrics(text))).toBe(text);
  });

  test('the file accumulates across writers and a cache hit counts', async () => {
    const path = join(fresh('m'), 'pullguard.prom');
    mkdirSync(join(path, '..'), { recursive: true });
    for (let i = 0; i < 20; i++) recordMetrics(path, obs(allow));
    recordMetrics(path, obs(allow, 5, { cacheHit: true }));
    const text = readFileSync(path, 'utf8');
    expect(text).toContain('code="OK"} 21');
    expect(text).toContain('pullguard_cache_hits_total 1');
    expect(existsSync(`${path}.lock`)).toBe(false);
  });
});

describe('recordDecision', () => {
  test('a .prom path nobody can write: the observations waiting beside it stay bounded', async () => {
    const d = fresh('stuck');
    mkdirSync(d);
    const metricsFile = join(d, 'm.prom');
    mkdirSync(metricsFile); // a directory: the rename over it fails, every time
    const warnings: string[] = [];
    for (let i = 0; i < MAX_PENDING + 5; i++)
      await recordDecision(allow, ctx, { file: false, metricsFile }, { warn: (l: string) => warnings.push(l) });
    expect(readdirSync(d).filter((n) => n.startsWith('m.prom.pending.'))).toHaveLength(MAX_PENDING);
    expect(warnings.at(-1)).toMatch(/metrics .*EOVERFLOW/);
  });

  test('an unwritable log and metrics path: one warning, nothing thrown', async () => {
    const blocker = fresh('file');
    writeFileSync(blocker, 'not a directory');
    const warnings: string[] = [];
    await recordDecision(
      allow,
      ctx,
      { file: join(blocker, 'd.jsonl'), metricsFile: join(blocker, 'm.prom') },
      { warn: (l: string) => warnings.push(l) },
    );
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(
      new RegExp(
        /^pullguard: warning: the decision was not fully recorded /.source +
          /\(decision log .*ENOTDIR.*; metrics .*ENOTDIR.*\); the verdict is unaffected$/.source,
      ),
    );
  });

  test('a held metrics lock is never waited for: the holder (or the next pull) folds the observation in', async () => {
    const d = fresh('held');
    mkdirSync(d);
    const metricsFile = join(d, 'm.prom');
    mkdirSync(`${metricsFile}.lock`);
    const warnings: string[] = [];
    const t0 = Date.now();
    await recordDecision(
      allow,
      ctx,
      { file: join(d, 'd.jsonl'), metricsFile },
      { warn: (l: string) => warnings.push(l) },
    );
    // A generous backstop only: waiting for the lock would mean waiting until it goes stale (then
    // breaking it and writing the file, which the next line rules out).
    expect(Date.now() - t0).toBeLessThan(STALE_MS);
    expect(warnings).toEqual([]);
    expect(existsSync(metricsFile)).toBe(false);
    rmSync(`${metricsFile}.lock`, { recursive: true });
    await recordDecision(
      allow,
      ctx,
      { file: join(d, 'd.jsonl'), metricsFile },
      { warn: (l: string) => warnings.push(l) },
    );
    expect(readFileSync(metricsFile, 'utf8')).toContain('code="OK"} 2');
    expect(parseEntries(readFileSync(join(d, 'd.jsonl'), 'utf8')).entries).toHaveLength(2);
  });

  test('log: false writes no log', async () => {
    const d = fresh('off');
    mkdirSync(d);
    const warnings: string[] = [];
    await recordDecision(
      allow,
      ctx,
      { file: false, metricsFile: join(d, 'm.prom') },
      { warn: (l: string) => warnings.push(l) },
    );
    expect(warnings).toEqual([]);
    expect(readFileSync(join(d, 'm.prom'), 'utf8')).toContain('pullguard_decisions_total{');
  });
});

/** `pullguard log`: what pullguard decided on this node, from the decision log (src/output/decision-log.ts). */
import { existsSync, promises as fsp } from 'node:fs';
import { parseFlags } from '../common/flags.js';
import { parseDuration } from '../common/go-duration.js';
import { PullguardError } from '../common/errors.js';
import { loadPolicy, policyPath } from '../policy/load.js';
import { DEFAULT_DECISION_LOG } from '../policy/model.js';
import { logFiles, parseEntries } from '../output/decision-log.js';
import { policyReason, repositoryOf, type DecisionEntry } from '../output/record.js';

type Out = (line: string) => void;

export const LOG_USAGE =
  'usage: pullguard log [--since 1h|DATE] [--verdict allow|deny] [--would-deny] [--image TEXT] [--rule NAME] ' +
  '[--json] [-f] [--file PATH | --policy FILE]';

export interface LogFilter {
  readonly since?: number;
  readonly verdict?: 'allow' | 'deny';
  readonly wouldDeny?: boolean;
  readonly image?: string;
  readonly rule?: string;
}

export interface LogOptions extends LogFilter {
  readonly json: boolean;
  readonly follow: boolean;
  readonly file?: string;
  readonly policy?: string;
}

const LOG_FLAGS = {
  json: { type: 'boolean' },
  follow: { type: 'boolean', short: 'f' },
  'would-deny': { type: 'boolean' },
  since: { type: 'string' },
  verdict: { type: 'string' },
  image: { type: 'string' },
  rule: { type: 'string' },
  file: { type: 'string' },
  policy: { type: 'string' },
} as const;

export function parseLogArgs(args: readonly string[], now: number = Date.now()): LogOptions {
  const { values: v } = parseFlags(args, LOG_FLAGS, LOG_USAGE);
  const o: { -readonly [K in keyof LogOptions]: LogOptions[K] } = { json: v.json === true, follow: v.follow === true };
  if (v['would-deny']) o.wouldDeny = true;
  if (v.since !== undefined) o.since = parseSince(v.since, now);
  if (v.verdict !== undefined) {
    if (v.verdict !== 'allow' && v.verdict !== 'deny')
      throw new PullguardError('CONTRACT_ARGS', `--verdict must be allow or deny, not ${JSON.stringify(v.verdict)}`);
    o.verdict = v.verdict;
  }
  if (v.image !== undefined) o.image = v.image;
  if (v.rule !== undefined) o.rule = v.rule;
  if (v.file !== undefined) o.file = v.file;
  if (v.policy !== undefined) o.policy = v.policy;
  return o;
}

/** `1h`, `30m`, `2d`, `90s`, or an ISO date. */
export function parseSince(v: string, now: number): number {
  // Days are not a Go duration unit; everything else is one (src/common/go-duration.ts).
  const days = /^(\d+)d$/.exec(v);
  if (days) return now - Number(days[1]) * 86_400_000;
  const ms = /^\d/.test(v) && !v.includes('-') ? parseDuration(v) : undefined;
  if (ms !== undefined) return now - ms;
  const t = Date.parse(v);
  if (Number.isNaN(t))
    throw new PullguardError(
      'CONTRACT_ARGS',
      `--since ${JSON.stringify(v)}: use a duration (90s, 30m, 1h, 2d) or a date (2026-12-01T10:00:00Z)`,
    );
  return t;
}

export function matches(e: DecisionEntry, f: LogFilter): boolean {
  if (f.since !== undefined && Date.parse(e.time) < f.since) return false;
  if (f.verdict && e.verdict !== f.verdict) return false;
  if (f.wouldDeny && !e.wouldDeny) return false;
  if (f.image && !e.name.includes(f.image)) return false;
  if (f.rule !== undefined && (e.rule ?? '') !== f.rule) return false;
  return true;
}

export interface Group {
  readonly rule: string | null;
  readonly image: string;
  readonly verdict: 'allow' | 'deny';
  readonly wouldDeny: boolean;
  readonly code: string | null;
  readonly reason: string;
  count: number;
  first: string;
  last: string;
  readonly digests: Set<string>;
}

/** Pure: one group per rule, image (repository), verdict and reason, most frequent first. */
export function groupEntries(entries: readonly DecisionEntry[]): Group[] {
  const groups = new Map<string, Group>();
  for (const e of entries) {
    const image = repositoryOf(e.name);
    const reason = policyReason(e);
    const key = JSON.stringify([e.rule, image, e.verdict, e.wouldDeny, reason]);
    let g = groups.get(key);
    if (!g)
      groups.set(
        key,
        (g = {
          rule: e.rule,
          image,
          verdict: e.verdict,
          wouldDeny: e.wouldDeny,
          code: e.code,
          reason,
          count: 0,
          first: e.time,
          last: e.time,
          digests: new Set(),
        }),
      );
    g.count++;
    if (e.time < g.first) g.first = e.time;
    if (e.time > g.last) g.last = e.time;
    g.digests.add(e.digest);
  }
  return [...groups.values()].sort((a, b) => b.count - a.count || (a.last < b.last ? 1 : -1));
}

const label = (e: Pick<DecisionEntry, 'verdict' | 'wouldDeny'>) =>
  e.wouldDeny ? 'WOULD-DENY' : e.verdict === 'allow' ? 'ALLOW' : 'DENY';
const shortTime = (t: string) => t.replace('T', ' ').replace(/\.\d+Z$/, 'Z');

export function formatGroups(
  groups: readonly Group[],
  total: number,
  skipped: number,
  files: readonly string[],
): string[] {
  const out: string[] = [];
  const matched = groups.reduce((n, g) => n + g.count, 0);
  out.push(
    `${matched} of ${total} decision(s) in ` +
      `${files.join(', ') || 'no log file'}${skipped > 0 ? ` (${skipped} unreadable line(s) skipped)` : ''}`,
  );
  for (const g of groups) {
    out.push(
      `${label(g).padEnd(10)} ${String(g.count).padStart(5)}x  ${g.image}  rule ` +
        `${g.rule === null ? '(none)' : `"${g.rule}"`}${g.code ? `  [${g.code}]` : ''}`,
    );
    out.push(`           ${g.reason}`);
    out.push(`           first ${shortTime(g.first)}, last ${shortTime(g.last)}, ${g.digests.size} digest(s)`);
  }
  return out;
}

function formatEntry(e: DecisionEntry): string {
  return (
    `${shortTime(e.time)} ${label(e).padEnd(10)} ${e.name} rule ` +
    `${e.rule === null ? '(none)' : `"${e.rule}"`}: ${policyReason(e)}${e.code ? ` [${e.code}]` : ''} ` +
    `(${e.durationMs} ms)`
  );
}

function logPathFor(o: LogOptions, env: NodeJS.ProcessEnv): string {
  if (o.file) return o.file;
  try {
    const file = loadPolicy(o.policy ?? policyPath(env)).log?.file;
    if (file === false)
      throw new PullguardError('CONTRACT_ARGS', 'the policy turns the decision log off (log.file: false)');
    return file ?? DEFAULT_DECISION_LOG;
  } catch (e) {
    // A broken policy must not hide the log: the pulls it denied are logged at the default path.
    if (e instanceof PullguardError && e.code === 'CONTRACT_ARGS') throw e;
    return DEFAULT_DECISION_LOG;
  }
}

export async function runLog(
  args: readonly string[],
  out: Out,
  env: NodeJS.ProcessEnv,
  signal?: AbortSignal,
): Promise<number> {
  const o = parseLogArgs(args);
  const path = logPathFor(o, env);
  const files = logFiles(path).filter((f) => existsSync(f));
  if (files.length === 0 && !o.follow) {
    out(
      o.json
        ? JSON.stringify({ file: path, total: 0, matched: 0, skipped: 0, groups: [] })
        : `no decision log at ${path} (no pull decided yet, or log.file points elsewhere)`,
    );
    return 0;
  }
  let total = 0;
  let skipped = 0;
  const entries: DecisionEntry[] = [];
  for (const f of files) {
    const r = parseEntries(await fsp.readFile(f, 'utf8'));
    total += r.entries.length;
    skipped += r.skipped;
    for (const e of r.entries) if (matches(e, o)) entries.push(e);
  }
  if (o.follow) return follow(path, o, out, signal);
  const groups = groupEntries(entries);
  if (o.json) {
    out(
      JSON.stringify({
        file: path,
        total,
        matched: entries.length,
        skipped,
        groups: groups.map((g) => ({ ...g, digests: [...g.digests] })),
      }),
    );
  } else {
    for (const l of formatGroups(groups, total, skipped, files)) out(l);
  }
  return 0;
}

/** `-f`: every new matching decision as it is appended; survives rotation (a new inode or a shorter file). */
async function follow(path: string, o: LogOptions, out: Out, signal?: AbortSignal): Promise<number> {
  let offset = 0;
  let ino = -1;
  try {
    const st = await fsp.stat(path);
    offset = st.size;
    ino = st.ino;
  } catch {
    /* not there yet */
  }
  let rest = '';
  while (!signal?.aborted) {
    try {
      const st = await fsp.stat(path);
      if (st.ino !== ino || st.size < offset) {
        ino = st.ino;
        offset = 0;
        rest = '';
      }
      if (st.size > offset) {
        const fh = await fsp.open(path, 'r');
        try {
          const buf = Buffer.alloc(st.size - offset);
          const { bytesRead } = await fh.read(buf, 0, buf.length, offset);
          offset += bytesRead;
          const text = rest + buf.subarray(0, bytesRead).toString('utf8');
          const cut = text.lastIndexOf('\n') + 1;
          rest = text.slice(cut);
          for (const e of parseEntries(text.slice(0, cut)).entries)
            if (matches(e, o)) out(o.json ? JSON.stringify(e) : formatEntry(e));
        } finally {
          await fh.close();
        }
      }
    } catch {
      /* rotated away between stat and open: next round */
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  return 0;
}

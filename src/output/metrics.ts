import { readdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { tryLock } from './lock.js';
import type { DecisionEntry } from './record.js';

/**
 * Prometheus text format (exposition format 0.0.4) for node_exporter's textfile collector. Each pull is
 * its own process, so the counters live in the .prom file itself: under a lock, read it back, add this
 * decision, write a temp file beside it and rename it over (the collector never sees half a file; it
 * ignores names not ending in .prom). Every family always carries its HELP and TYPE lines, and the same
 * ones: node_exporter rejects a file whose metadata disagrees.
 *
 * A decision cache hit (`cacheHit: true` on the entry) counts in `pullguard_cache_hits_total`; a
 * `pullguard scan` decision (`source: "scan"`) only in the scan families.
 */
export const FAMILIES = {
  pullguard_decisions_total: {
    type: 'counter',
    help: 'Image pull decisions, by effective verdict, policy verdict, mode, rule and reason code.',
  },
  pullguard_decision_duration_seconds: {
    type: 'histogram',
    help: 'Time from start to verdict of one image verification.',
  },
  pullguard_registry_errors_total: {
    type: 'counter',
    help: 'Decisions that failed on a registry error, by registry host and code.',
  },
  pullguard_cache_hits_total: { type: 'counter', help: 'Decisions answered from the decision cache.' },
  pullguard_last_decision_timestamp_seconds: {
    type: 'gauge',
    help: 'Unix time of the last decision recorded on this node.',
  },
  pullguard_decision_log_errors_total: {
    type: 'counter',
    help: 'Decisions that could not be written to the decision log.',
  },
  pullguard_scan_decisions_total: {
    type: 'counter',
    help: 'pullguard scan decisions on images already on the node, by verdict, policy verdict, rule and code.',
  },
  pullguard_last_scan_timestamp_seconds: {
    type: 'gauge',
    help: 'Unix time of the last image judged by pullguard scan on this node.',
  },
} as const;

export type FamilyName = keyof typeof FAMILIES;
export const DURATION_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;
/** An attacker choosing image names must not grow the file without bound. */
export const MAX_HOSTS = 50;

/** `name{labels}` -> value: everything that is in the file. */
export type MetricState = Map<string, number>;

export interface Observation {
  readonly entry: DecisionEntry;
  /** The decision log write failed. */
  readonly logFailed?: boolean;
}

/**
 * Adds one decision to the metrics file without ever waiting for another pull. Each pull drops its
 * observation as a small file of its own beside the .prom file (written whole, then renamed into
 * place), then tries the lock once. Whoever holds the lock folds every dropped observation into the
 * counters, writes the .prom file, releases the lock and looks again: an observation dropped while it
 * held the lock (whose owner's try failed) is seen by that second look, so none is left behind.
 */
/** A holder folds at most this many rounds, so one pull never works for the whole node for long. */
const MAX_ROUNDS = 8;
/**
 * Observations waiting to be folded in. Past this, nobody has managed to write the .prom file for a
 * long while (it is a directory, or not writable while its directory is): stop adding files.
 */
export const MAX_PENDING = 1000;

/**
 * Adds one decision to the metrics file without ever waiting for another pull. Each pull drops its
 * observation as a small file of its own beside the .prom file (written whole, then renamed into
 * place), then tries the lock once. Whoever holds the lock folds every dropped observation into the
 * counters, writes the .prom file, releases the lock and looks again: an observation dropped while it
 * held the lock (whose owner's try failed) is seen by that second look, so none is left behind.
 */
export function recordMetrics(path: string, obs: Observation): void {
  const dir = dirname(path);
  const prefix = `${basename(path)}.pending.`;
  const mine = `${path}.pending.${process.pid}.${Date.now()}.${Math.random().toString(36).slice(2, 8)}`;
  const waiting = readdirSync(dir).filter((n) => n.startsWith(prefix)).length;
  if (waiting >= MAX_PENDING) {
    throw Object.assign(new Error(`${waiting} observations wait beside a .prom file nobody could write`), {
      code: 'EOVERFLOW',
    });
  }
  writeFileSync(`${mine}.tmp`, JSON.stringify(obs), { mode: 0o600 });
  renameSync(`${mine}.tmp`, mine);
  for (let round = 0; round < MAX_ROUNDS; round++) {
    const release = tryLock(`${path}.lock`);
    if (!release) return; // the holder will fold ours
    try {
      foldPending(path, dir, prefix);
    } finally {
      release();
    }
    if (!readdirSync(dir).some((n) => n.startsWith(prefix) && !n.endsWith('.tmp'))) return;
  }
}

function foldPending(path: string, dir: string, prefix: string): void {
  const names = readdirSync(dir).filter((n) => n.startsWith(prefix) && !n.endsWith('.tmp'));
  if (names.length === 0) return;
  let text = '';
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const state = parseMetrics(text);
  const folded: string[] = [];
  for (const n of names) {
    try {
      observe(state, JSON.parse(readFileSync(join(dir, n), 'utf8')) as Observation);
    } catch {
      /* unreadable or not ours: dropped below all the same */
    }
    folded.push(join(dir, n));
  }
  const tmp = `${path}.tmp.${process.pid}`;
  try {
    writeFileSync(tmp, formatMetrics(state), { mode: 0o644 });
    renameSync(tmp, path);
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {
      /* never written */
    }
    throw e;
  }
  for (const f of folded) {
    try {
      unlinkSync(f);
    } catch {
      /* gone */
    }
  }
}

const series = (name: string, labels: Record<string, string>) => {
  const l = Object.entries(labels)
    .map(([k, v]) => `${k}="${escapeLabel(v)}"`)
    .join(',');
  return l ? `${name}{${l}}` : name;
};

/**
 * Pure: adds one decision to the state. A scan's decisions (source "scan") have their own family, so
 * the pull counters and the duration histogram stay about pulls.
 */
export function observe(state: MetricState, obs: Observation): void {
  const e = obs.entry;
  const add = (key: string, by = 1) => state.set(key, (state.get(key) ?? 0) + by);
  if (e.source === 'scan') {
    add(
      series('pullguard_scan_decisions_total', {
        verdict: e.verdict,
        policy_verdict: e.policyVerdict,
        rule: e.rule ?? '(none)',
        code: e.code ?? 'OK',
      }),
    );
    state.set('pullguard_last_scan_timestamp_seconds', Math.floor(Date.parse(e.time) / 1000));
    return;
  }
  add(
    series('pullguard_decisions_total', {
      verdict: e.verdict,
      policy_verdict: e.policyVerdict,
      mode: e.mode,
      rule: e.rule ?? '(none)',
      code: e.code ?? 'OK',
    }),
  );
  const seconds = e.durationMs / 1000;
  for (const le of DURATION_BUCKETS)
    if (seconds <= le) add(series('pullguard_decision_duration_seconds_bucket', { le: String(le) }));
  add(series('pullguard_decision_duration_seconds_bucket', { le: '+Inf' }));
  add('pullguard_decision_duration_seconds_sum', seconds);
  add('pullguard_decision_duration_seconds_count');
  if (e.code?.startsWith('REGISTRY_')) {
    const hosts = new Set(
      [...state.keys()]
        .filter((k) => k.startsWith('pullguard_registry_errors_total{'))
        .map((k) => /host="((?:[^"\\]|\\.)*)"/.exec(k)?.[1]),
    );
    const host = hosts.has(escapeLabel(e.host)) || hosts.size < MAX_HOSTS ? e.host : '(other)';
    add(series('pullguard_registry_errors_total', { host, code: e.code }));
  }
  add('pullguard_cache_hits_total', e.cacheHit ? 1 : 0);
  state.set('pullguard_last_decision_timestamp_seconds', Math.floor(Date.parse(e.time) / 1000));
  add('pullguard_decision_log_errors_total', obs.logFailed ? 1 : 0);
}

function familyOf(key: string): FamilyName | undefined {
  const name = key.replace(/\{.*$/, '');
  if (name in FAMILIES) return name as FamilyName;
  const base = name.replace(/_(bucket|sum|count)$/, '');
  return base in FAMILIES && FAMILIES[base as FamilyName].type === 'histogram' ? (base as FamilyName) : undefined;
}

/** Our own file back into state. Lines of families we do not know (or garbage) are dropped. */
export function parseMetrics(text: string): MetricState {
  const state: MetricState = new Map();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{(?:[^"}]|"(?:[^"\\]|\\.)*")*\})?) (\S+)$/.exec(line);
    if (!m) continue;
    const value = Number(m[2]);
    if (!Number.isFinite(value) || !familyOf(m[1]!)) continue;
    state.set(m[1]!, value);
  }
  return state;
}

/** Pure: the whole file, families in a fixed order, each with HELP and TYPE, series sorted. */
export function formatMetrics(state: MetricState): string {
  const out: string[] = [];
  for (const [name, meta] of Object.entries(FAMILIES)) {
    out.push(`# HELP ${name} ${meta.help}`, `# TYPE ${name} ${meta.type}`);
    const keys = [...state.keys()].filter((k) => familyOf(k) === name);
    // Histogram series in Prometheus order: buckets by le, then sum, then count.
    keys.sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0));
    for (const k of keys) out.push(`${k} ${formatValue(state.get(k)!)}`);
  }
  return `${out.join('\n')}\n`;
}

function rank(key: string): number {
  const le = /le="([^"]+)"/.exec(key)?.[1];
  if (le !== undefined) return le === '+Inf' ? 1e9 : Number(le);
  if (key.endsWith('_sum')) return 2e9;
  if (key.endsWith('_count')) return 3e9;
  return 0;
}

function formatValue(v: number): string {
  return Number.isInteger(v) ? String(v) : String(Number(v.toFixed(6)));
}

export function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** The I/O for node-checks.ts: the daemon on its socket, /proc, containerd's log, the output paths, a test pull. */
import { accessSync, constants, existsSync, readFileSync, readlinkSync, statfsSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { asPullguardError } from '../common/errors.js';
import { DEFAULT_DECISION_LOG, type Policy } from '../policy/model.js';
import { logFiles, parseEntries } from '../output/decision-log.js';
import { policyReason } from '../output/record.js';
import type { ContainerdConfigFile } from '../containerd/config.js';
import type { Check, EffectiveConfig } from './diagnose.js';
import { queryDaemon } from './grpc.js';
import { configArgOf, DEFAULT_ADDRESS, type NodeInput } from './node-checks.js';

const FALLBACK = 'Falling back to local image pull mode';

export interface NodeOptions {
  readonly address?: string;
  readonly containerdLog?: string;
  readonly configPath: string;
  readonly files?: readonly ContainerdConfigFile[];
  readonly eff?: EffectiveConfig;
  readonly policy?: Policy;
  readonly env: NodeJS.ProcessEnv;
}

/** `grpc.address` as the config files set it (a later file wins), else containerd's default. */
export function addressOf(files: readonly ContainerdConfigFile[] | undefined): string {
  let address = DEFAULT_ADDRESS;
  for (const f of files ?? []) {
    const grpc = f.doc.grpc;
    const a = grpc && typeof grpc === 'object' ? (grpc as Record<string, unknown>).address : undefined;
    if (typeof a === 'string' && a !== '') address = a;
  }
  return address;
}

export async function gatherNode(o: NodeOptions): Promise<NodeInput> {
  const address = o.address ?? addressOf(o.files);
  let socket: NodeInput['socket'];
  if (!existsSync(address))
    socket = { address, explicit: o.address !== undefined, missing: true, error: 'no such socket' };
  else {
    try {
      socket = { address, explicit: o.address !== undefined, info: await queryDaemon(address) };
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      socket = { address, explicit: o.address !== undefined, error: err.code ?? asPullguardError(e).message };
    }
  }
  const daemon = socket.info?.pid !== undefined ? readDaemon(socket.info.pid, socket.info.pidns) : undefined;
  const files = (o.files ?? []).map((f) => ({ path: f.path, mtimeMs: mtime(f.path) }));
  const journal = socket.info ? readLog(o, daemon?.startedAtMs) : undefined;
  const outputs: NodeInput['outputs'][number][] = [];
  const log = o.policy?.log;
  if (log?.file !== false)
    outputs.push({
      what: 'decision log',
      path: log?.file ?? DEFAULT_DECISION_LOG,
      ...writable(log?.file ?? DEFAULT_DECISION_LOG),
    });
  if (log?.metricsFile) outputs.push({ what: 'metrics file', path: log.metricsFile, ...writable(log.metricsFile) });
  const decisions = log?.file === false ? undefined : summarizeDecisions(log?.file ?? DEFAULT_DECISION_LOG);
  return { socket, daemon, config: { path: o.configPath, files }, journal, outputs, policy: o.policy, decisions };
}

/** The last 7 days of the decision log and its rotated files; undefined when there is none. */
function summarizeDecisions(path: string): NodeInput['decisions'] {
  const since = Date.now() - 7 * 86_400_000;
  let found = false;
  const d = { path, total: 0, wouldDeny: 0, denied: 0, last: undefined as string | undefined };
  for (const f of logFiles(path)) {
    let text: string;
    try {
      text = readFileSync(f, 'utf8');
    } catch {
      continue;
    }
    found = true;
    for (const e of parseEntries(text).entries) {
      if (Date.parse(e.time) < since) continue;
      d.total++;
      if (e.wouldDeny) d.wouldDeny++;
      if (e.verdict === 'deny') d.denied++;
      if (!d.last || e.time > d.last) d.last = e.time;
    }
  }
  return found ? d : undefined;
}

function mtime(path: string): number {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return 0;
  }
}

/** Start time and --config of the daemon, when its pid is valid in our /proc (same PID namespace). */
function readDaemon(pid: number, pidns: number | undefined): NodeInput['daemon'] {
  try {
    const ours = /\[(\d+)\]/.exec(readlinkSync('/proc/self/ns/pid'))?.[1];
    if (pidns !== undefined && ours !== undefined && Number(ours) !== pidns) return undefined;
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 22 (starttime, clock ticks after boot) counted after the parenthesised command name.
    const ticks = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
    const btime = Number(/^btime (\d+)$/m.exec(readFileSync('/proc/stat', 'utf8'))?.[1]);
    // USER_HZ is 100 on every Linux architecture containerd ships for.
    const startedAtMs = Number.isFinite(ticks) && Number.isFinite(btime) ? (btime + ticks / 100) * 1000 : undefined;
    return { pid, startedAtMs, configArg: configArgOf(cmdline) };
  } catch {
    return undefined;
  }
}

/** The fallback warning in containerd's log since it started: a file (--containerd-log) or the journal. */
function readLog(o: NodeOptions, sinceMs: number | undefined): NodeInput['journal'] {
  const matching = (text: string) =>
    text.split('\n').filter((l) => {
      if (!l.includes(FALLBACK)) return false;
      const t = /time="([^"]+)"/.exec(l)?.[1];
      return sinceMs === undefined || t === undefined || Date.parse(t) >= sinceMs - 1000;
    });
  if (o.containerdLog) {
    try {
      const st = statSync(o.containerdLog);
      const fd = readFileSync(o.containerdLog);
      const tail = fd.subarray(Math.max(0, st.size - 16 * 1024 * 1024)).toString('utf8');
      return { source: o.containerdLog, lines: matching(tail) };
    } catch (e) {
      return { error: `cannot read ${o.containerdLog}: ${(e as NodeJS.ErrnoException).code ?? String(e)}` };
    }
  }
  const journalctl = ['/usr/bin/journalctl', '/bin/journalctl'].find((p) => existsSync(p));
  if (!journalctl) return { error: 'no journalctl on this node' };
  const args = [
    '-u',
    'containerd',
    '--no-pager',
    '-o',
    'cat',
    '-n',
    '20000',
    ...(sinceMs ? ['--since', `@${Math.floor(sinceMs / 1000)}`] : []),
  ];
  const r = process.getBuiltinModule('node:child_process').spawnSync(journalctl, args, {
    encoding: 'utf8',
    timeout: 5000,
    maxBuffer: 64 * 1024 * 1024,
    env: { PATH: o.env.PATH ?? '' },
  });
  if (r.error || r.status !== 0)
    return { error: `journalctl -u containerd failed: ${r.error?.message ?? r.stderr.trim().split('\n')[0]}` };
  if (r.stdout.trim() === '' || /^-- No entries --$/m.test(r.stdout))
    return { error: 'journalctl -u containerd has no entries: containerd does not log to the journal here' };
  return { source: 'journalctl -u containerd', lines: matching(r.stdout) };
}

/** Whether the file could be appended to (or created), and the space left; as root only EROFS-like states fail. */
function writable(path: string): { error?: string; freeBytes?: number } {
  let dir = dirname(path);
  while (!existsSync(dir) && dir !== dirname(dir)) dir = dirname(dir);
  try {
    if (existsSync(path)) accessSync(path, constants.W_OK);
    accessSync(dir, constants.W_OK);
    const fs = statfsSync(dir);
    return { freeBytes: fs.bavail * fs.bsize };
  } catch (e) {
    return { error: (e as NodeJS.ErrnoException).code ?? String(e) };
  }
}

/**
 * `--pull-test REF`: one real pull through containerd's transfer service (`ctr image pull`, the path CRI
 * pulls take too, verifiers included), into a namespace of its own that is cleaned up after, then
 * pullguard's decision for it from the decision log.
 */
export async function pullTest(
  ref: string,
  address: string,
  policy: Policy | undefined,
  env: NodeJS.ProcessEnv,
): Promise<Check[]> {
  const ctr = findCtr(env);
  if (!ctr)
    return [
      {
        status: 'FAIL',
        message: 'pull test: no ctr on PATH (it comes with containerd)',
        fix: "put containerd's ctr on PATH",
      },
    ];
  const cp = process.getBuiltinModule('node:child_process');
  const ns = 'pullguard-doctor';
  const host = ref.split('/')[0] ?? '';
  const plain = /^(localhost|127\.\d+\.\d+\.\d+|\[::1\])(:\d+)?$/.test(host) ? ['--plain-http'] : [];
  const started = Date.now();
  const r = await new Promise<{ code: number | null; out: string }>((done) =>
    cp.execFile(
      ctr,
      ['-a', address, '-n', ns, 'image', 'pull', ...plain, ref],
      {
        encoding: 'utf8',
        timeout: 60_000,
        killSignal: 'SIGKILL',
        maxBuffer: 4 * 1024 * 1024,
        env: { PATH: env.PATH ?? '' },
      },
      (err, stdout, stderr) =>
        done({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, out: `${stdout}${stderr}` }),
    ),
  );
  cp.spawnSync(ctr, ['-a', address, '-n', ns, 'image', 'rm', ref], { timeout: 15_000, env: { PATH: env.PATH ?? '' } });
  const decision = findDecision(ref, started, policy);
  const ctrLine = r.out
    .trim()
    .split('\n')
    .filter((l) => l.startsWith('ctr:'))
    .pop()
    ?.replace(/^ctr: /, '');
  if (!decision) {
    if (policy?.log?.file === false)
      return [
        {
          status: 'WARN',
          message:
            `pull test: ctr ${r.code === 0 ? 'pulled' : `failed (${ctrLine ?? `exit ${r.code}`})`}; the ` +
            `decision log is off, so pullguard's part cannot be told`,
          fix: 'turn log.file back on in the policy',
        },
      ];
    return [
      {
        status: r.code === 0 ? 'FAIL' : 'WARN',
        message:
          r.code === 0
            ? `pull test: containerd pulled ${ref} but pullguard recorded no decision for it: pullguard did not run`
            : `pull test: the pull failed before pullguard decided (${ctrLine ?? `exit ${r.code}`})`,
        fix:
          r.code === 0
            ? 'fix the FAIL lines above (bin_dir, local pull fallback), restart containerd, run the pull test again'
            : 'check the reference, the registry and hosts.toml',
      },
    ];
  }
  const verdict = decision.wouldDeny
    ? 'would deny (audit mode, pulled)'
    : decision.verdict === 'allow'
      ? 'allowed'
      : 'denied';
  const pulled = r.code === 0 ? 'pulled' : `not pulled (${ctrLine ?? `exit ${r.code}`})`;
  return [
    {
      status: 'ok',
      message:
        `pull test: ${ref} ${pulled}; pullguard ${verdict}: ` +
        `${policyReason(decision)}${decision.rule ? ` (rule "${decision.rule}")` : ''} in ${decision.durationMs} ms`,
    },
  ];
}

function findCtr(env: NodeJS.ProcessEnv): string | undefined {
  for (const dir of (env.PATH ?? '').split(':')) if (dir && existsSync(`${dir}/ctr`)) return `${dir}/ctr`;
  return undefined;
}

function findDecision(ref: string, sinceMs: number, policy: Policy | undefined) {
  const file = policy?.log?.file === false ? undefined : (policy?.log?.file ?? DEFAULT_DECISION_LOG);
  if (!file) return undefined;
  const repo = ref.replace(/[@:][^/]*$/, '');
  for (const f of logFiles(file, 2).reverse()) {
    let text: string;
    try {
      text = readFileSync(f, 'utf8');
    } catch {
      continue;
    }
    const hit = parseEntries(text)
      .entries.reverse()
      .find((e) => Date.parse(e.time) >= sinceMs - 1000 && (e.name === ref || e.name.startsWith(repo)));
    if (hit) return hit;
  }
  return undefined;
}

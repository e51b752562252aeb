/**
 * `pullguard node install | uninstall | status`: puts pullguard on a node (or takes it off) so that a
 * pull never meets a half-installed verifier, and a step that fails leaves the node as it was.
 *
 * Install order (a pull must never meet pullguard without a valid policy):
 *  1. the policy and trust material, checked by the executable that will read them (staged outside
 *     bin_dir, run on the host: `pullguard policy check`);
 *  2. the containerd drop-in and its import, refused before any write when a file does not parse,
 *     validated after with the host's own `containerd config dump` (restored byte for byte if not);
 *  3. the executable, last: renamed from the staged file into bin_dir (containerd executes every file
 *     in bin_dir, so nothing half-written is ever there);
 *  4. a restart through the init system, only when the effective configuration changed (never
 *     SIGHUP), then a wait until the socket answers with a new pid and the CRI plugin is up.
 * Uninstall runs in reverse: the executable out first. State and the config backup live in
 * /var/lib/pullguard, so uninstall restores config.toml byte for byte.
 */
import { linkSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import type { Stats } from 'node:fs';
import { join, posix } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { asPullguardError, PullguardError } from '../common/errors.js';
import { DEFAULT_BIN_DIR, DEFAULT_CONTAINERD_CONFIG, effectiveConfig, loadConfig } from '../containerd/config.js';
import { parseGoDuration } from '../doctor/diagnose.js';
import { formatAgentState, readAgentState } from './agent-state.js';
import { removeImport } from './imports-edit.js';
import { copySynced, exec, fileSha256, Host, sha256, type RunResult } from './host.js';
import {
  checkEdit,
  defaultImportsFor,
  dumpMismatches,
  dumpProblems,
  effectiveDump,
  parseContainerdVersion,
  planConfig,
  type ContainerdVersion,
} from './plan.js';
import { probeContainerd, type ContainerdAnswer } from './probe.js';
import { EXAMPLE_POLICY } from './templates.js';

export const DEFAULT_DROPIN = '/etc/containerd/conf.d/pullguard.toml';
export const DEFAULT_POLICY_DIR = '/etc/pullguard';
export const DEFAULT_STATE_DIR = '/var/lib/pullguard';

/** Where the installer keeps its state, the config.toml backup and its lock (host paths). */
function statePaths(opts: Pick<NodeOptions, 'stateDir'>) {
  const dir = opts.stateDir ?? DEFAULT_STATE_DIR;
  return {
    dir,
    file: `${dir}/state.json`,
    backup: `${dir}/config.toml.orig`,
    lock: `${dir}/lock`,
    policyOrig: `${dir}/policy.orig`,
  };
}
const DEFAULT_SOCKET = '/run/containerd/containerd.sock';
const CONTAINERD_CANDIDATES = [
  '/usr/bin/containerd',
  '/usr/local/bin/containerd',
  '/usr/sbin/containerd',
  '/bin/containerd',
  '/opt/bin/containerd',
  '/usr/local/sbin/containerd',
];

export type Step = 'policy' | 'containerd-config' | 'executable' | 'restart';

export interface NodeOptions {
  /** The host's / as the installer sees it. */
  readonly root: string;
  readonly configPath: string;
  readonly dropinPath: string;
  readonly binDir: string;
  readonly policyDir: string;
  /** Installer paths: the executable to install, and a policy file or a directory holding policy.yaml. */
  readonly executable: string;
  readonly policySource?: string;
  /** Host path of the containerd binary; found in the usual places when absent. */
  readonly containerdBin?: string;
  /** Overrides `containerd --version` (e.g. "2.2.0"). */
  readonly containerdVersion?: string;
  /** Host path of containerd's socket; from the config when absent. */
  readonly socket?: string;
  readonly restart: boolean;
  /** Run instead of systemd (through `sh -c`, in the installer's environment). */
  readonly restartCommand?: string;
  readonly keepPolicy?: boolean;
  /** Host path of the installer's state (default /var/lib/pullguard). */
  readonly stateDir?: string;
  readonly timeoutMs: number;
}

export interface Hooks {
  /** Called after each step is complete (tests pull between steps). */
  readonly afterStep?: (step: Step) => Promise<void> | void;
  /** Replaces the init system (tests). */
  readonly restart?: () => Promise<void>;
  readonly log: (line: string) => void;
}

export type RestartOutcome = 'done' | 'not needed' | 'needed (--no-restart)' | 'containerd not running';

export interface Report {
  readonly changed: readonly string[];
  readonly restart: RestartOutcome;
  readonly containerd?: ContainerdAnswer;
  readonly durationMs: number;
}

interface PolicyFileState {
  readonly path: string;
  readonly sha256: string;
  /** Where the file it replaced was saved, if it replaced one. */
  readonly backup?: string;
}

export interface State {
  readonly configPath: string;
  readonly dropinPath: string;
  readonly binDir: string;
  readonly policyDir: string;
  /** Set when install edited or created config.toml. */
  readonly config?: { readonly created: boolean; readonly sha256: string };
  readonly policyFiles: readonly PolicyFileState[];
  readonly createdDirs: readonly string[];
  /** A restart left to the caller (--no-restart): the pid of the containerd that still runs the old config. */
  readonly pendingRestartPid?: number;
}

/** An undo log: every mutation registers how to take it back; a failure runs them newest first. */
class Undo {
  private readonly actions: (() => void | Promise<void>)[] = [];
  push(a: () => void | Promise<void>): void {
    this.actions.push(a);
  }
  async run(log: (l: string) => void): Promise<void> {
    for (const a of this.actions.reverse()) {
      try {
        await a();
      } catch (e) {
        log(`rollback step failed: ${asPullguardError(e).message}`);
      }
    }
    this.actions.length = 0;
  }
}

/** The installer failed after touching the node, and put it back. */
export class RolledBack extends PullguardError {}

function readState(host: Host, file: string): State | undefined {
  const b = host.read(file);
  if (!b) return undefined;
  try {
    return JSON.parse(b.toString('utf8')) as State;
  } catch {
    throw new PullguardError('CONTAINERD_CONFIG', `${file} is not valid JSON; remove it to start over`);
  }
}

function writeIfChanged(host: Host, path: string, data: Buffer | string, mode: number): boolean {
  const cur = host.read(path);
  const buf = typeof data === 'string' ? Buffer.from(data) : data;
  if (cur?.equals(buf)) return false;
  host.writeAtomic(path, buf, mode);
  return true;
}

async function findContainerd(host: Host, opts: NodeOptions): Promise<{ bin: string; version: ContainerdVersion }> {
  const bin = opts.containerdBin ?? CONTAINERD_CANDIDATES.find((c) => host.exists(c));
  if (!bin || !host.exists(bin)) {
    throw new PullguardError(
      'CONTAINERD_CONFIG',
      `no containerd binary under ${opts.root} (looked in ${CONTAINERD_CANDIDATES.join(', ')}); pass --containerd PATH`,
    );
  }
  let version: ContainerdVersion | undefined;
  if (opts.containerdVersion) version = parseContainerdVersion(opts.containerdVersion);
  else {
    const r = await host.run([bin, '--version'], 10_000);
    version = r.status === 0 ? parseContainerdVersion(r.stdout) : undefined;
    if (!version)
      throw new PullguardError('CONTAINERD_CONFIG', `${bin} --version failed: ${firstLine(r.stderr || r.stdout)}`);
  }
  if (!version)
    throw new PullguardError('CONTRACT_ARGS', `--containerd-version ${opts.containerdVersion}: not a version`);
  if (version.major < 2 || (version.major === 2 && version.minor < 1)) {
    throw new PullguardError(
      'CONTAINERD_CONFIG',
      `containerd ${version.text}: CRI pulls of containerd before 2.1 never call image verifiers; upgrade containerd`,
    );
  }
  return { bin, version };
}

const firstLine = (s: string) => s.trim().split('\n')[0] ?? '';

async function configDump(host: Host, bin: string, configPath: string): Promise<RunResult> {
  return host.run([bin, '--config', configPath, 'config', 'dump'], 30_000);
}

/** The socket containerd listens on, from its dump (`[grpc] address`). */
function socketOf(dump: string, opts: NodeOptions): string {
  if (opts.socket) return opts.socket;
  const m = /^\[grpc\]\n(?:[ \t]+\w+ = .*\n)*?[ \t]+address = '([^']*)'/m.exec(dump);
  return m?.[1] || DEFAULT_SOCKET;
}

/** The policy files to install (relative name -> bytes), from --policy FILE or DIR. */
function policySources(source: string | undefined, host: Host, policyDir: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  if (source === undefined) {
    // Keep a policy that is there (it is checked below); otherwise the example (allows the pause image only).
    if (!host.exists(`${policyDir}/policy.yaml`)) out.set('policy.yaml', Buffer.from(EXAMPLE_POLICY));
    return out;
  }
  let st: Stats;
  try {
    st = statSync(source);
  } catch {
    throw new PullguardError('POLICY_MISSING', `no policy at ${source}`, { path: source });
  }
  if (st.isFile()) {
    out.set('policy.yaml', readFileSync(source));
    return out;
  }
  const walk = (dir: string, rel: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      // ConfigMap volumes hold ..data symlinks and timestamped dirs: follow the visible names only.
      if (e.name.startsWith('..')) continue;
      const full = join(dir, e.name);
      const s = statSync(full);
      if (s.isDirectory()) walk(full, `${rel}${e.name}/`);
      else if (s.isFile()) out.set(`${rel}${e.name}`, readFileSync(full));
    }
  };
  walk(source, '');
  if (!out.has('policy.yaml'))
    throw new PullguardError('POLICY_MISSING', `${source} has no policy.yaml`, { path: source });
  return out;
}

/** `  mode enforce, default deny, timeout 8s, 2 rule(s)` -> 8000 */
function policyTimeoutMs(checkOutput: string): number {
  const m = /timeout (\d+(?:\.\d+)?(?:ms|s))/.exec(checkOutput);
  return (m && parseGoDuration(m[1]!)) || 8000;
}

async function restartContainerd(host: Host, opts: NodeOptions, hooks: Hooks): Promise<string> {
  if (hooks.restart) {
    await hooks.restart();
    return 'test hook';
  }
  let argv: string[];
  let how: string;
  if (opts.restartCommand) {
    argv = ['sh', '-c', opts.restartCommand];
    how = `--restart-command ${JSON.stringify(opts.restartCommand)}`;
  } else if (host.exists('/run/systemd/system')) {
    const init = (() => {
      try {
        return readFileSync('/proc/1/comm', 'utf8').trim();
      } catch {
        return '';
      }
    })();
    if (opts.root === '/') argv = ['systemctl', 'restart', 'containerd'];
    // In a hostPID pod, pid 1 is the host's systemd: enter its namespaces. Otherwise systemctl in the
    // host root talks to systemd over /run/systemd/private, which the host mount carries.
    else if (init === 'systemd')
      argv = ['nsenter', '-t', '1', '-m', '-u', '-i', '-n', '-p', '--', 'systemctl', 'restart', 'containerd'];
    else argv = ['chroot', opts.root, 'systemctl', 'restart', 'containerd'];
    how = argv.join(' ');
  } else {
    throw new PullguardError(
      'CONTAINERD_CONFIG',
      'containerd must restart for the new configuration, but the host has no systemd; pass --restart-command CMD ' +
        '(e.g. "rc-service containerd restart") or --no-restart',
    );
  }
  const r = await exec(argv, opts.timeoutMs, {});
  if (r.status !== 0)
    throw new PullguardError(
      'CONTAINERD_CONFIG',
      `${how} failed (${r.status ?? 'killed'}): ${firstLine(r.stderr || r.stdout)}`,
    );
  return how;
}

/** Waits until containerd answers on its socket with another pid than `oldPid`, CRI included. */
async function waitForContainerd(
  host: Host,
  socket: string,
  oldPid: number | undefined,
  timeoutMs: number,
): Promise<ContainerdAnswer> {
  const end = Date.now() + timeoutMs;
  let last: ContainerdAnswer | undefined;
  while (Date.now() < end) {
    last = await probeContainerd(host.at(socket), 2000);
    if (last && last.pid !== oldPid && last.cri !== undefined) return last;
    await sleep(200);
  }
  throw new PullguardError(
    'CONTAINERD_CONFIG',
    `containerd did not answer on ${socket} within ${timeoutMs / 1000}s after the ` +
      `restart${last ? ` (pid ${last.pid}${last.cri === undefined ? ', CRI not up' : ''})` : ''}`,
  );
}

function checkBinDir(host: Host, binDir: string): void {
  const others = (host.list(binDir) ?? []).filter((n) => n !== 'pullguard');
  if (others.length > 0) {
    throw new PullguardError(
      'CONTAINERD_CONFIG',
      `${binDir} also holds ${others.join(', ')}: containerd executes every file in bin_dir on every pull; move ` +
        `them away or pick another --bin-dir`,
    );
  }
}

/**
 * One installer at a time per node (a DaemonSet rollout can briefly run the old and the new pod on the
 * same node): a lock directory with the holder's pid; a lock whose holder is gone is taken over.
 */
async function withLock<T>(
  host: Host,
  opts: NodeOptions,
  fn: (created: readonly string[], removeAfter: string[]) => Promise<T>,
): Promise<T> {
  const sd = statePaths(opts);
  const lock = sd.lock;
  const created = host.mkdirs(sd.dir);
  const pidFile = host.at(`${lock}/pid`);
  try {
    mkdirSync(host.at(lock));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    const holder = Number(host.read(`${lock}/pid`)?.toString('utf8') ?? '0');
    let alive = false;
    try {
      if (holder > 0) {
        process.kill(holder, 0); // throws ESRCH when the holder is gone
        alive = true;
      }
    } catch {
      alive = false;
    }
    if (alive)
      throw new PullguardError(
        'CONTAINERD_CONFIG',
        `another pullguard node install/uninstall (pid ${holder}) is running on this node; try again when it is done`,
      );
  }
  writeFileSync(pidFile, String(process.pid));
  const removeAfter: string[] = [];
  try {
    return await fn(created, removeAfter);
  } finally {
    rmSync(host.at(lock), { recursive: true, force: true });
    // Without a state file nothing is installed: leave no directory behind that we made.
    if (!host.exists(sd.file)) {
      for (const d of [sd.dir, ...created, ...removeAfter].sort((a, b) => b.length - a.length))
        host.removeDirIfEmpty(d);
    }
  }
}

/** Install (or re-install: idempotent). Throws PullguardError; RolledBack when it had to undo its writes. */
export async function install(opts: NodeOptions, hooks: Hooks): Promise<Report> {
  const host = new Host(opts.root);
  return withLock(host, opts, (created) => installLocked(host, opts, hooks, created));
}

async function installLocked(
  host: Host,
  opts: NodeOptions,
  hooks: Hooks,
  lockDirs: readonly string[],
): Promise<Report> {
  const t0 = performance.now();
  const log = hooks.log;
  const changed: string[] = [];
  const sd = statePaths(opts);
  const previous = readState(host, sd.file);

  // --- Everything that can refuse, before any write. ---
  const exeSha = fileSha256(opts.executable);
  if (exeSha === undefined) throw new PullguardError('CONTRACT_ARGS', `cannot read the executable ${opts.executable}`);
  const policyFiles = policySources(opts.policySource, host, opts.policyDir);
  checkBinDir(host, opts.binDir);
  if (posix.relative(opts.binDir, opts.policyDir).split('/')[0] !== '..')
    throw new PullguardError('CONTRACT_ARGS', 'the policy directory must not be inside bin_dir');
  const ctd = await findContainerd(host, opts);
  const defaultImports = defaultImportsFor(ctd.version);
  // Parses every file containerd would read: a broken one is refused here, with row and column.
  let plan = planConfig({
    configPath: opts.configPath,
    dropinPath: opts.dropinPath,
    binDir: opts.binDir,
    reader: host.reader,
    defaultImports,
    minTimeoutMs: 0,
  });
  const before = await configDump(host, ctd.bin, opts.configPath);
  if (before.status !== 0)
    throw new PullguardError(
      'CONTAINERD_CONFIG',
      `containerd cannot load its current configuration: ${firstLine(before.stderr)}; fix it first (nothing was ` +
        `changed)`,
    );
  const socket = socketOf(before.stdout, opts);
  const running = await probeContainerd(host.at(socket));
  log(
    `containerd ${ctd.version.text} (${ctd.bin}), config ${opts.configPath} version ` +
      `${plan.version}${running ? `, running as pid ${running.pid}` : ', not running'}`,
  );

  const undo = new Undo();
  /** Done once the install stands (no undo needed any more). */
  const cleanup: (() => void)[] = [];
  const createdDirs = new Set([...(previous?.createdDirs ?? []), ...lockDirs]);
  const mkdirs = (p: string) => {
    for (const d of host.mkdirs(p)) {
      createdDirs.add(d);
      undo.push(() => host.removeDirIfEmpty(d));
    }
  };
  /** Writes a host file (if its bytes differ), remembering how to put the old bytes back. */
  const put = (path: string, data: Buffer | string, mode: number) => {
    const old = host.read(path);
    mkdirs(posix.dirname(path));
    if (!writeIfChanged(host, path, data, mode)) return false;
    undo.push(() => void (old ? host.writeAtomic(path, old, mode) : host.remove(path)));
    changed.push(path);
    return true;
  };
  const fail = async (e: unknown): Promise<never> => {
    await undo.run(log);
    const pe = asPullguardError(e);
    throw new RolledBack(pe.code, `${pe.message} (every change was undone)`);
  };

  // --- 1. The executable, staged outside bin_dir, and the policy it checks. ---
  const dest = `${opts.binDir}/pullguard`;
  // Already installed, byte for byte: that file is the one to check with, and nothing is staged.
  const same = fileSha256(host.at(dest)) === exeSha;
  const stage = same ? dest : `${posix.dirname(opts.binDir)}/.pullguard-stage-${process.pid}`;
  let policyCheck: RunResult;
  let policyFileStates: PolicyFileState[] = [...(previous?.policyFiles ?? [])];
  try {
    mkdirs(opts.binDir);
    if (!same) {
      host.remove(stage);
      copySynced(opts.executable, host.at(stage), 0o755);
      undo.push(() => void host.remove(stage));
    }
    const v = await host.run([stage, 'version'], 20_000);
    if (v.status !== 0)
      throw new PullguardError(
        'INTERNAL',
        `the executable does not run on this host: ${firstLine(v.stderr || v.stdout)}`,
      );
    for (const [rel, bytes] of policyFiles) {
      const path = `${opts.policyDir}/${rel}`;
      const old = host.read(path);
      const ours = previous?.policyFiles.find((f) => f.path === path);
      if (put(path, bytes, 0o644)) {
        let backup = ours?.backup;
        if (old && !ours) {
          backup = `${sd.policyOrig}/${rel}`;
          mkdirs(posix.dirname(backup));
          host.writeAtomic(backup, old, 0o600);
          const b = backup;
          undo.push(() => void host.remove(b));
        }
        policyFileStates = policyFileStates
          .filter((f) => f.path !== path)
          .concat({ path, sha256: sha256(bytes), backup });
      }
    }
    policyCheck = await host.run([stage, 'policy', 'check', `${opts.policyDir}/policy.yaml`], 20_000);
    if (policyCheck.status !== 0) {
      throw new PullguardError(
        'POLICY_INVALID',
        `the policy is not valid: ${firstLine(policyCheck.stderr || policyCheck.stdout).replace(/^pullguard: /, '')}`,
      );
    }
  } catch (e) {
    return fail(e);
  }
  const timeoutMs = policyTimeoutMs(policyCheck.stdout);
  log(`policy ${opts.policyDir}/policy.yaml is valid (${firstLine(policyCheck.stdout.split('\n')[1] ?? '')})`);
  await hooks.afterStep?.('policy');

  // --- 2. The drop-in and the import, validated by the host's containerd. ---
  let after: RunResult;
  let configState = previous?.config;
  try {
    plan = planConfig({
      configPath: opts.configPath,
      dropinPath: opts.dropinPath,
      binDir: opts.binDir,
      reader: host.reader,
      defaultImports,
      minTimeoutMs: timeoutMs + 1000,
    });
    put(plan.dropin.path, plan.dropin.text, 0o644);
    if (plan.main) {
      const { path, before: original, after: text } = plan.main;
      // The bytes before this edit are what uninstall restores (a re-run finds the import and edits nothing).
      if (original !== undefined) {
        mkdirs(sd.dir);
        const oldBackup = host.read(sd.backup);
        host.writeAtomic(sd.backup, Buffer.from(original), 0o600);
        undo.push(() => void (oldBackup ? host.writeAtomic(sd.backup, oldBackup, 0o600) : host.remove(sd.backup)));
      }
      put(path, text, original !== undefined ? statSync(host.at(path)).mode & 0o7777 : 0o644);
      configState = { created: original === undefined, sha256: sha256(text) };
    }
    log(
      `drop-in ${plan.dropin.path} (config version ${plan.version}): ` +
        `${plan.reach === 'import added' ? `import added to ${opts.configPath}` : plan.reach}`,
    );
    after = await configDump(host, ctd.bin, opts.configPath);
    if (after.status !== 0)
      throw new PullguardError(
        'CONTAINERD_CONFIG',
        `containerd config dump refuses the new configuration: ${firstLine(after.stderr)}`,
      );
    const problems = dumpProblems(after.stdout, opts.binDir, timeoutMs + 1000);
    if (problems.length > 0)
      throw new PullguardError(
        'CONTAINERD_CONFIG',
        `containerd config dump: ${problems.map((p) => p.message).join('; ')}`,
      );
    const mismatches = dumpMismatches(plan.after, after.stdout);
    if (mismatches.length > 0) {
      throw new PullguardError(
        'CONTAINERD_CONFIG',
        `containerd ${ctd.version.text} does not read the configuration the way pullguard's model of it does ` +
          `(${mismatches.join('; ')}); is --containerd-version right?`,
      );
    }
  } catch (e) {
    return fail(e);
  }
  await hooks.afterStep?.('containerd-config');

  // --- 3. The executable, last: one rename into bin_dir. ---
  try {
    if (!same) {
      // An upgrade keeps the old inode under a second name until the end, so that undo is one rename
      // too: bin_dir never lacks a pullguard, and never holds a partial one.
      const previousExe = `${posix.dirname(opts.binDir)}/.pullguard-previous-${process.pid}`;
      const had = host.exists(dest);
      if (had) {
        host.remove(previousExe);
        linkSync(host.at(dest), host.at(previousExe));
      }
      renameSync(host.at(stage), host.at(dest));
      undo.push(() => (had ? renameSync(host.at(previousExe), host.at(dest)) : void host.remove(dest)));
      cleanup.push(() => void host.remove(previousExe));
      changed.push(dest);
    }
  } catch (e) {
    return fail(e);
  }
  await hooks.afterStep?.('executable');

  // --- 4. Restart, only when the effective configuration changed. ---
  const configChanged = effectiveDump(before.stdout) !== effectiveDump(after.stdout);
  const pending = previous?.pendingRestartPid !== undefined && running?.pid === previous.pendingRestartPid;
  let outcome: RestartOutcome;
  let answer = running;
  let pendingRestartPid: number | undefined;
  if (!running) outcome = 'containerd not running';
  else if (!configChanged && !pending) outcome = 'not needed';
  else if (!opts.restart) {
    outcome = 'needed (--no-restart)';
    pendingRestartPid = running.pid;
  } else {
    try {
      const how = await restartContainerd(host, opts, hooks);
      answer = await waitForContainerd(host, socket, running.pid, opts.timeoutMs);
      log(`restarted containerd (${how}): pid ${answer.pid}, CRI ${answer.cri || 'up'}`);
      outcome = 'done';
    } catch (e) {
      log(`restart failed: ${asPullguardError(e).message}; restoring the previous configuration`);
      await undo.run(log);
      try {
        await restartContainerd(host, opts, hooks);
        await waitForContainerd(host, socket, undefined, opts.timeoutMs);
      } catch (e2) {
        log(`containerd did not come back on the restored configuration: ${asPullguardError(e2).message}`);
      }
      throw new RolledBack('CONTAINERD_CONFIG', `${asPullguardError(e).message} (every change was undone)`);
    }
  }
  await hooks.afterStep?.('restart');

  for (const c of cleanup) c();
  mkdirs(sd.dir);
  const state: State = {
    configPath: opts.configPath,
    dropinPath: opts.dropinPath,
    binDir: opts.binDir,
    policyDir: opts.policyDir,
    config: configState,
    policyFiles: policyFileStates,
    createdDirs: [...createdDirs],
    pendingRestartPid,
  };
  writeIfChanged(host, sd.file, `${JSON.stringify(state, null, 2)}\n`, 0o644);
  return { changed, restart: outcome, containerd: answer, durationMs: performance.now() - t0 };
}

/** Uninstall: the executable out first, then the config back byte for byte, a restart, the policy. */
export async function uninstall(opts: NodeOptions, hooks: Hooks): Promise<Report> {
  const host = new Host(opts.root);
  return withLock(host, opts, (_created, removeAfter) => uninstallLocked(host, opts, hooks, removeAfter));
}

async function uninstallLocked(host: Host, opts: NodeOptions, hooks: Hooks, removeAfter: string[]): Promise<Report> {
  const t0 = performance.now();
  const log = hooks.log;
  const changed: string[] = [];
  const sd = statePaths(opts);
  const state = readState(host, sd.file);
  const binDir = state?.binDir ?? opts.binDir;
  const configPath = state?.configPath ?? opts.configPath;
  const dropinPath = state?.dropinPath ?? opts.dropinPath;
  const ctd = await findContainerd(host, opts);
  const before = await configDump(host, ctd.bin, configPath);
  const socket = socketOf(before.stdout, opts);
  const running = await probeContainerd(host.at(socket));

  // 1. The executable: from now on containerd runs no verifier (an absent pullguard allows pulls).
  if (host.remove(`${binDir}/pullguard`)) changed.push(`${binDir}/pullguard`);
  await hooks.afterStep?.('executable');

  // 2. config.toml back as it was, then the drop-in (never the other way round: a dangling import
  //    would make containerd ignore every file after it).
  const text = host.read(configPath)?.toString('utf8');
  if (state?.config && text !== undefined) {
    const unchanged = sha256(text) === state.config.sha256;
    const backup = host.read(sd.backup);
    if (unchanged && state.config.created) host.remove(configPath);
    else if (unchanged && backup) host.writeAtomic(configPath, backup, statSync(host.at(configPath)).mode & 0o7777);
    else {
      const edited = removeImport(text, dropinPath);
      if (edited !== undefined) {
        const doc = loadConfig(configPath, { reader: host.reader }).files[0]?.doc ?? {};
        checkEdit(
          text,
          edited,
          ((doc.imports as string[] | undefined) ?? []).filter((i) => i !== dropinPath),
        );
        host.writeAtomic(configPath, edited, statSync(host.at(configPath)).mode & 0o7777);
        log(`${configPath} changed since the install: removed only the import of ${dropinPath}`);
      }
    }
    changed.push(configPath);
  } else if (text !== undefined && !state) {
    const edited = removeImport(text, dropinPath);
    if (edited !== undefined) {
      host.writeAtomic(configPath, edited, statSync(host.at(configPath)).mode & 0o7777);
      changed.push(configPath);
    }
  }
  if (host.remove(dropinPath)) changed.push(dropinPath);
  const after = await configDump(host, ctd.bin, configPath);
  if (after.status !== 0)
    log(`warning: containerd config dump fails on the restored configuration: ${firstLine(after.stderr)}`);
  await hooks.afterStep?.('containerd-config');

  // 3. Restart when the effective configuration changed.
  let outcome: RestartOutcome;
  let answer = running;
  if (!running) outcome = 'containerd not running';
  else if (effectiveDump(before.stdout) === effectiveDump(after.stdout)) outcome = 'not needed';
  else if (!opts.restart) outcome = 'needed (--no-restart)';
  else {
    const how = await restartContainerd(host, opts, hooks);
    answer = await waitForContainerd(host, socket, running.pid, opts.timeoutMs);
    log(`restarted containerd (${how}): pid ${answer.pid}`);
    outcome = 'done';
  }
  await hooks.afterStep?.('restart');

  // 4. The policy files install wrote (unless kept), the state, and the directories install created.
  if (!opts.keepPolicy) {
    for (const f of state?.policyFiles ?? []) {
      const cur = host.read(f.path);
      if (!cur || sha256(cur) !== f.sha256) continue;
      const backup = f.backup ? host.read(f.backup) : undefined;
      if (backup) host.writeAtomic(f.path, backup, 0o644);
      else host.remove(f.path);
      if (f.backup) host.remove(f.backup);
      changed.push(f.path);
    }
  }
  host.remove(sd.backup);
  host.remove(sd.file);
  for (const d of [...(state?.createdDirs ?? [])].sort((a, b) => b.length - a.length)) host.removeDirIfEmpty(d);
  if (!opts.keepPolicy) host.removeDirIfEmpty(sd.policyOrig);
  // The state directory and its parents go once the lock is released.
  removeAfter.push(...(state?.createdDirs ?? []));
  await hooks.afterStep?.('policy');
  return { changed, restart: outcome, containerd: answer, durationMs: performance.now() - t0 };
}

export interface StatusReport {
  readonly installed: boolean;
  readonly verificationOn: boolean;
  readonly lines: readonly string[];
}

/** What is installed, and whether verification is really on (the installed executable's own doctor, on the host). */
export async function status(opts: NodeOptions): Promise<StatusReport> {
  const host = new Host(opts.root);
  const state = readState(host, statePaths(opts).file);
  const binDir = state?.binDir ?? opts.binDir;
  const configPath = state?.configPath ?? opts.configPath;
  const dropinPath = state?.dropinPath ?? opts.dropinPath;
  const policy = `${state?.policyDir ?? opts.policyDir}/policy.yaml`;
  const lines: string[] = [];
  const exe = fileSha256(host.at(`${binDir}/pullguard`));
  lines.push(
    exe
      ? `executable  ${binDir}/pullguard (sha256 ${exe.slice(0, 12)})`
      : `executable  MISSING: no ${binDir}/pullguard`,
  );
  let version: ContainerdVersion | undefined;
  try {
    version = (await findContainerd(host, opts)).version;
  } catch {
    /* the doctor below says so */
  }
  let dropinLoaded = false;
  try {
    const loaded = loadConfig(configPath, { reader: host.reader, defaultImports: defaultImportsFor(version) });
    dropinLoaded = loaded.files.some((f) => f.path === dropinPath);
    const eff = effectiveConfig(loaded.files, loaded.missing);
    const where = dropinLoaded ? `loaded (config version ${eff.version})` : `present but NOT loaded by ${configPath}`;
    lines.push(`drop-in     ${dropinPath}: ${host.exists(dropinPath) ? where : 'MISSING'}`);
  } catch (e) {
    lines.push(`drop-in     cannot read containerd's config: ${asPullguardError(e).message}`);
  }
  lines.push(`policy      ${policy}: ${host.exists(policy) ? 'present' : 'MISSING'}`);
  // The DaemonSet's agent, where one runs: the policy version it applied, or refused, and why.
  const agent = readAgentState(opts.root);
  if (agent) lines.push(...formatAgentState(agent));
  const dump = version ? await configDump(host, (await findContainerd(host, opts)).bin, configPath) : undefined;
  const socket = socketOf(dump?.stdout ?? '', opts);
  const running = await probeContainerd(host.at(socket));
  const pending = state?.pendingRestartPid !== undefined && running?.pid === state.pendingRestartPid;
  const cri = running?.cri === undefined ? 'NOT answering' : 'up';
  const daemon = running ? `running (pid ${running.pid}, CRI ${cri})` : `not answering on ${socket}`;
  const note = pending ? '; RESTART PENDING: it still runs the configuration from before the install' : '';
  lines.push(`containerd  ${daemon}${note}`);
  let doctorOk = false;
  if (exe) {
    const r = await host.run(
      [`${binDir}/pullguard`, 'doctor', '--containerd-config', configPath, '--bin-dir', binDir, '--policy', policy],
      30_000,
    );
    doctorOk = r.status === 0;
    lines.push('doctor (the installed executable, on the host):');
    for (const l of (r.stdout + r.stderr).trim().split('\n')) lines.push(`  ${l}`);
  }
  const installed = !!exe && dropinLoaded;
  const verificationOn = installed && doctorOk && !pending && !!running && running.cri !== undefined;
  lines.push(
    verificationOn ? 'verification: ON (containerd runs pullguard on every pull)' : 'verification: NOT ON (see above)',
  );
  return { installed, verificationOn, lines };
}

export const DEFAULTS = {
  configPath: DEFAULT_CONTAINERD_CONFIG,
  dropinPath: DEFAULT_DROPIN,
  binDir: DEFAULT_BIN_DIR,
  policyDir: DEFAULT_POLICY_DIR,
  stateDir: DEFAULT_STATE_DIR,
} as const;

/**
 * `pullguard node install | uninstall | status`: flags, output and exit codes (a stable interface: the
 * DaemonSet agent calls `pullguard node install --root /host ...`).
 *
 * Exit codes: 0 done (status: verification on); 1 refused or failed, the node left as it was (status:
 * not on); 2 usage error; 3 internal error (the output says what may be left).
 */
import { asPullguardError, PullguardError } from '../common/errors.js';
import { parseFlags } from '../common/flags.js';
import {
  DEFAULTS,
  install,
  RolledBack,
  status,
  uninstall,
  type Hooks,
  type NodeOptions,
  type Report,
} from './install.js';

export const NODE_USAGE = `usage:
  pullguard node install   [--root DIR] [--policy FILE|DIR] [--executable FILE] [--no-restart]
                           [--restart-command CMD] [--config PATH] [--dropin PATH] [--bin-dir DIR]
                           [--policy-dir DIR] [--state-dir DIR] [--containerd PATH] [--containerd-version X.Y.Z]
                           [--socket PATH] [--timeout SECONDS] [--json]
  pullguard node uninstall [--root DIR] [--keep-policy] [--no-restart] [--restart-command CMD] [...]
  pullguard node status    [--root DIR] [--json]
  pullguard node agent     [--root DIR] [--config DIR] [...]   the DaemonSet's agent (src/node/agent.ts)
--root is the host's / (default /; a DaemonSet mounts it at e.g. /host). --config, --dropin, --bin-dir,
--policy-dir, --state-dir, --containerd and --socket are host paths; --policy and --executable are read as given.
Exit codes: 0 done (status: verification on), 1 refused or failed with the node left as it was
(status: not on), 2 usage error, 3 internal error.`;

type Out = (line: string) => void;

const FLAGS = {
  root: { type: 'string' },
  config: { type: 'string' },
  dropin: { type: 'string' },
  'bin-dir': { type: 'string' },
  'policy-dir': { type: 'string' },
  'state-dir': { type: 'string' },
  policy: { type: 'string' },
  executable: { type: 'string' },
  containerd: { type: 'string' },
  'containerd-version': { type: 'string' },
  socket: { type: 'string' },
  'no-restart': { type: 'boolean' },
  'restart-command': { type: 'string' },
  'keep-policy': { type: 'boolean' },
  timeout: { type: 'string' },
  json: { type: 'boolean' },
} as const;

/** The running executable, when it is the single executable (not `node dist/pullguard.cjs`). */
function selfExecutable(): string | undefined {
  try {
    return process.getBuiltinModule('node:sea')?.isSea() ? process.execPath : undefined;
  } catch {
    return undefined;
  }
}

export function parseNodeArgs(args: readonly string[]): { command: string; opts: NodeOptions; json: boolean } {
  const [command, ...rest] = args;
  if (command !== 'install' && command !== 'uninstall' && command !== 'status') {
    throw new PullguardError('CONTRACT_ARGS', `unknown node command ${JSON.stringify(command ?? '')}\n${NODE_USAGE}`);
  }
  const { values } = parseFlags(rest, FLAGS, NODE_USAGE);
  const str = (k: keyof typeof FLAGS) => values[k] as string | undefined;
  const hostPath = (k: keyof typeof FLAGS, dflt: string) => {
    const v = str(k) ?? dflt;
    if (!v.startsWith('/')) throw new PullguardError('CONTRACT_ARGS', `--${k} ${v}: host paths must be absolute`);
    return v.length > 1 ? v.replace(/\/+$/, '') : v;
  };
  const timeout = str('timeout') ?? '60';
  if (!/^\d+(\.\d+)?$/.test(timeout) || Number(timeout) <= 0)
    throw new PullguardError('CONTRACT_ARGS', `--timeout ${timeout}: seconds, e.g. 60`);
  const executable = str('executable') ?? selfExecutable();
  if (command === 'install' && !executable) {
    throw new PullguardError(
      'CONTRACT_ARGS',
      'pass --executable FILE (the single executable dist/pullguard): this is not running as it',
    );
  }
  const root = str('root') ?? '/';
  if (!root.startsWith('/')) throw new PullguardError('CONTRACT_ARGS', `--root ${root}: must be absolute`);
  return {
    command,
    json: values.json === true,
    opts: {
      root: root.length > 1 ? root.replace(/\/+$/, '') : root,
      configPath: hostPath('config', DEFAULTS.configPath),
      dropinPath: hostPath('dropin', DEFAULTS.dropinPath),
      binDir: hostPath('bin-dir', DEFAULTS.binDir),
      policyDir: hostPath('policy-dir', DEFAULTS.policyDir),
      stateDir: hostPath('state-dir', DEFAULTS.stateDir),
      executable: executable ?? '',
      policySource: str('policy'),
      containerdBin: str('containerd') === undefined ? undefined : hostPath('containerd', ''),
      containerdVersion: str('containerd-version'),
      socket: str('socket') === undefined ? undefined : hostPath('socket', ''),
      restart: values['no-restart'] !== true,
      restartCommand: str('restart-command'),
      keepPolicy: values['keep-policy'] === true,
      timeoutMs: Math.round(Number(timeout) * 1000),
    },
  };
}

/** Exit code for an error thrown by a node command. */
export function nodeExitCode(e: unknown): number {
  const pe = asPullguardError(e);
  if (pe.code === 'CONTRACT_ARGS') return 2;
  if (pe instanceof RolledBack) return 1;
  return pe.code === 'INTERNAL' ? 3 : 1;
}

function summary(command: string, r: Report): Record<string, unknown> {
  return {
    result: command === 'install' ? 'installed' : 'uninstalled',
    changed: r.changed,
    restart: r.restart,
    containerdPid: r.containerd?.pid ?? null,
    durationMs: Math.round(r.durationMs),
  };
}

export async function runNode(
  args: readonly string[],
  out: Out,
  err: Out,
  hooks: Partial<Hooks> = {},
): Promise<number> {
  let parsed: ReturnType<typeof parseNodeArgs>;
  try {
    parsed = parseNodeArgs(args);
  } catch (e) {
    err(`pullguard node: ${asPullguardError(e).message}`);
    return 2;
  }
  const { command, opts, json } = parsed;
  const say = json ? err : out;
  try {
    if (command === 'status') {
      const s = await status(opts);
      if (json) out(JSON.stringify({ installed: s.installed, verificationOn: s.verificationOn, lines: s.lines }));
      else for (const l of s.lines) out(l);
      return s.verificationOn ? 0 : 1;
    }
    const run = command === 'install' ? install : uninstall;
    const r = await run(opts, { ...hooks, log: (l) => say(`pullguard node ${command}: ${l}`) });
    if (json) out(JSON.stringify(summary(command, r)));
    else {
      out(
        `pullguard node ${command}: ` +
          `${r.changed.length === 0 ? 'nothing to change' : `changed ${r.changed.join(', ')}`}`,
      );
      out(`pullguard node ${command}: done in ${Math.round(r.durationMs)} ms; containerd restart: ${r.restart}`);
      if (r.restart === 'needed (--no-restart)')
        out(
          `pullguard node ${command}: restart containerd (systemctl restart containerd; never SIGHUP) for the ` +
            `change to take effect`,
        );
    }
    return 0;
  } catch (e) {
    const pe = asPullguardError(e);
    err(`pullguard node ${command}: ${pe.message} [${pe.code}]`);
    if (json) out(JSON.stringify({ result: 'failed', code: pe.code, message: pe.message, exitCode: nodeExitCode(e) }));
    return nodeExitCode(e);
  }
}

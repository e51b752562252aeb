/**
 * `pullguard node agent`: the DaemonSet's long-running process on every node.
 *
 *  - On start and on every change of the mounted policy ConfigMap (kubelet swaps its `..data`
 *    symlink; fs.watch sees that, and a periodic resync catches anything a watch misses), it reads
 *    one version, validates it with the verifier's own loader (policy-store.ts), and only then swaps
 *    it into the host's /etc/pullguard. A version that fails is refused: the last good one stays, the
 *    refusal is logged, written to the state file (`pullguard node status`) and makes /readyz fail.
 *  - Once a valid policy is on the host it runs `pullguard node install --root R` (drop-in, then the
 *    executable, last), and retries on every resync until that succeeds.
 *  - It places the optional dockerconfigjson Secret as the host's /etc/pullguard/docker/config.json.
 *  - On SIGTERM it uninstalls (`pullguard node uninstall`, which takes the executable out first, then
 *    the policy files) only when the DaemonSet itself is being deleted (kube.ts), or always/never
 *    with --uninstall-on-exit.
 */
import { realpathSync, watch, type FSWatcher } from 'node:fs';
import { join, resolve } from 'node:path';
import { PullguardError, asPullguardError } from '../common/errors.js';
import { parseFlags } from '../common/flags.js';
import { formatAgentState, readAgentState, writeAgentState, type AgentState } from './agent-state.js';
import { daemonSetFate, serviceAccountNamespace } from './kube.js';
import {
  applyVersionToHost,
  currentHostVersion,
  readMountedVersion,
  removeFromHost,
  syncDockerConfig,
  validateVersion,
} from './policy-store.js';

type Out = (line: string) => void;

export interface AgentOptions {
  readonly root: string;
  /** The mounted policy ConfigMap. */
  readonly configDir: string;
  /** The mounted dockerconfigjson Secret (optional; may not exist). */
  readonly dockerConfigDir?: string;
  /** Where candidates are validated: the directory the policy's absolute paths name. */
  readonly stageDir: string;
  readonly noRestart: boolean;
  readonly uninstallOnExit: 'auto' | 'always' | 'never';
  /** 0: pick a free port; undefined: no HTTP health endpoint. */
  readonly healthPort?: number;
  readonly healthAddress: string;
  readonly resyncMs: number;
  readonly daemonSet: string;
  readonly namespace: string;
}

export const AGENT_USAGE = `usage: pullguard node agent [--root DIR] [--config DIR] [--docker-config DIR] [--stage DIR]
         [--health-port N] [--health-address ADDR] [--resync SECONDS] [--no-restart]
         [--uninstall-on-exit auto|always|never]`;

const AGENT_FLAGS = {
  root: { type: 'string' },
  config: { type: 'string' },
  'docker-config': { type: 'string' },
  stage: { type: 'string' },
  'health-port': { type: 'string' },
  'health-address': { type: 'string' },
  resync: { type: 'string' },
  'uninstall-on-exit': { type: 'string' },
  'no-restart': { type: 'boolean' },
} as const;

export function parseAgentArgs(args: readonly string[], env: NodeJS.ProcessEnv): AgentOptions {
  const { values: o } = parseFlags(args, AGENT_FLAGS, AGENT_USAGE);
  const mode = o['uninstall-on-exit'] ?? 'auto';
  if (mode !== 'auto' && mode !== 'always' && mode !== 'never')
    throw new PullguardError('CONTRACT_ARGS', `--uninstall-on-exit ${mode}: auto, always or never`);
  const port = o['health-port'] === undefined ? undefined : Number(o['health-port']);
  if (port !== undefined && !(Number.isInteger(port) && port >= 0 && port < 65536))
    throw new PullguardError('CONTRACT_ARGS', `--health-port ${String(o['health-port'])}`);
  const resync = Number(o.resync ?? 30);
  if (!(resync > 0)) throw new PullguardError('CONTRACT_ARGS', `--resync ${String(o.resync)}: seconds, more than 0`);
  return {
    root: o.root ?? '/host',
    configDir: o.config ?? '/etc/pullguard-config',
    dockerConfigDir: o['docker-config'] ?? '/etc/pullguard-docker',
    stageDir: o.stage ?? '/etc/pullguard',
    noRestart: o['no-restart'] === true,
    uninstallOnExit: mode,
    healthPort: port,
    healthAddress: o['health-address'] ?? '0.0.0.0',
    resyncMs: resync * 1000,
    daemonSet: env.PULLGUARD_DAEMONSET ?? 'pullguard-node',
    namespace: env.PULLGUARD_NAMESPACE ?? serviceAccountNamespace() ?? 'pullguard-system',
  };
}

/** This executable, as a command line: the SEA binary itself, or node + the bundle in tests. */
function selfCommand(): string[] {
  let sea = false;
  try {
    sea = process.getBuiltinModule('node:sea')?.isSea() ?? false;
  } catch {
    /* not a single executable */
  }
  return sea ? [process.execPath] : [process.execPath, process.argv[1]!];
}

function runSelf(args: readonly string[], log: Out, timeoutMs = 300_000): Promise<{ code: number; output: string }> {
  // node:child_process cannot be in the startup snapshot (src/main.ts): loaded on first use, and with
  // getBuiltinModule, because a snapshotted executable has no dynamic import().
  const { spawn } = process.getBuiltinModule('node:child_process');
  const [cmd, ...pre] = selfCommand();
  return new Promise((resolve) => {
    const child = spawn(cmd!, [...pre, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const onData = (b: Buffer) => {
      const text = b.toString('utf8');
      output = (output + text).slice(-16_384);
      for (const line of text.split('\n')) if (line.trim() !== '') log(`  ${line}`);
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      resolve({ code: 127, output: e.message });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal ? 128 : 1), output: output.trim() });
    });
  });
}

const now = () => new Date().toISOString();
const oneLine = (s: string) =>
  s
    .split('\n')
    .filter((l) => l.trim() !== '')
    .slice(-1)[0] ?? s;

export class NodeAgent {
  private state: AgentState;
  private watchers: FSWatcher[] = [];
  private timer?: NodeJS.Timeout;
  private running: Promise<void> = Promise.resolve();
  private pending = false;
  private stopping = false;
  private server?: import('node:http').Server;
  /** The ConfigMap version last looked at (applied or refused), so an unchanged one is not redone. */
  private seen?: string;

  constructor(
    private readonly o: AgentOptions,
    private readonly log: Out,
    private readonly env: NodeJS.ProcessEnv = process.env,
  ) {
    const prev = readAgentState(o.root);
    const current = currentHostVersion(o.root);
    this.state = {
      updatedAt: now(),
      ...(current
        ? { applied: { version: current, at: prev?.applied?.version === current ? prev.applied.at : now() } }
        : {}),
      installed: false,
      dockerConfig: 'absent',
      ready: false,
      phase: 'starting',
    };
  }

  get snapshot(): AgentState {
    return this.state;
  }

  private update(patch: Partial<AgentState>): void {
    const s = { ...this.state, ...patch, updatedAt: now() };
    const seenApplied = s.applied !== undefined && this.seen === s.applied.version;
    this.state = { ...s, ready: s.phase === 'running' && s.installed && seenApplied && s.dockerConfig !== 'refused' };
    writeAgentState(this.o.root, this.state);
  }

  async start(): Promise<void> {
    // Validation clears the staging directory: it must never be the host's live /etc/pullguard (an agent
    // run by hand on a node with --root /).
    const real = (p: string) => {
      try {
        return realpathSync(p);
      } catch {
        return resolve(p);
      }
    };
    if (real(this.o.stageDir) === real(join(this.o.root, 'etc', 'pullguard'))) {
      throw new PullguardError(
        'CONTRACT_ARGS',
        `--stage ${this.o.stageDir} is the host's /etc/pullguard; the agent runs in its own container (deploy/)`,
      );
    }
    this.log(
      `pullguard node agent: root ${this.o.root}, policy ConfigMap ${this.o.configDir}, staging at ${this.o.stageDir}`,
    );
    if (this.o.healthPort !== undefined) await this.listen(this.o.healthPort);
    this.update({ phase: 'running' });
    await this.schedule();
    // kubelet replaces `..data` by rename in the mount's top directory: a directory watch sees it.
    for (const dir of [this.o.configDir, this.o.dockerConfigDir]) {
      if (!dir) continue;
      try {
        const w = watch(dir, () => this.schedule());
        w.on('error', () => undefined); // the periodic resync carries on
        this.watchers.push(w);
      } catch {
        /* not there (an optional Secret): the resync notices when it appears */
      }
    }
    this.timer = setInterval(() => this.schedule(), this.o.resyncMs);
  }

  /** Serialized: one reconcile at a time; events during one coalesce into one more. */
  schedule(): Promise<void> {
    if (this.stopping) return this.running;
    if (this.pending) return this.running;
    this.pending = true;
    this.running = this.running
      .then(async () => {
        this.pending = false;
        if (!this.stopping) await this.reconcile();
      })
      .catch((e: unknown) => this.log(`reconcile failed: ${asPullguardError(e).message}; retrying at the next resync`));
    return this.running;
  }

  private async reconcile(): Promise<void> {
    // 1. the policy
    try {
      const version = readMountedVersion(this.o.configDir);
      if (!version)
        throw new PullguardError('POLICY_MISSING', `the policy ConfigMap is not mounted at ${this.o.configDir}`);
      if (version.id !== this.seen) {
        try {
          validateVersion(version, this.o.stageDir);
        } catch (e) {
          const reason = asPullguardError(e).message;
          this.seen = version.id;
          const keep = this.state.applied ? `keeping version ${this.state.applied.version}` : 'no policy installed yet';
          this.log(`REFUSED policy version ${version.id}: ${reason} (${keep})`);
          this.update({ refused: { version: version.id, at: now(), reason } });
          return this.afterPolicy();
        }
        try {
          applyVersionToHost(this.o.root, version);
        } catch (e) {
          // The host's /etc/pullguard could not be written (disk full, read-only): the old version stays.
          this.log(`cannot write policy version ${version.id} to the host: ${asPullguardError(e).message}`);
          return this.afterPolicy();
        }
        this.seen = version.id;
        this.log(
          `applied policy version ${version.id} (${version.files.size} file(s)) to ${this.o.root}/etc/pullguard`,
        );
        this.update({ applied: { version: version.id, at: now() }, refused: undefined });
      }
    } catch (e) {
      const reason = asPullguardError(e).message;
      this.log(`cannot read the policy ConfigMap: ${reason}`);
      this.update({ refused: { version: 'unreadable', at: now(), reason } });
    }
    await this.afterPolicy();
  }

  private async afterPolicy(): Promise<void> {
    // 2. the docker config Secret
    if (this.o.dockerConfigDir) {
      try {
        const placed = syncDockerConfig(this.o.root, readMountedVersion(this.o.dockerConfigDir));
        if ((placed ? 'placed' : 'absent') !== this.state.dockerConfig) {
          this.log(
            placed
              ? 'placed the docker config Secret as /etc/pullguard/docker/config.json (0600)'
              : 'no docker config Secret mounted',
          );
        }
        this.update({ dockerConfig: placed ? 'placed' : 'absent', dockerConfigError: undefined });
      } catch (e) {
        const reason = asPullguardError(e).message;
        if (this.state.dockerConfigError !== reason) this.log(`REFUSED the docker config Secret: ${reason}`);
        this.update({ dockerConfig: 'refused', dockerConfigError: reason });
      }
    }
    // 3. the install, once a validated policy is on the host (the installer puts the executable last)
    if (!this.state.installed && this.state.applied) {
      const r = await runSelf(
        ['node', 'install', '--root', this.o.root, ...(this.o.noRestart ? ['--no-restart'] : [])],
        this.log,
      );
      if (r.code === 0) {
        this.log('installed');
        this.update({ installed: true, installError: undefined });
      } else {
        this.log(`install failed (exit ${r.code}); retrying in ${this.o.resyncMs / 1000} s`);
        this.update({ installError: oneLine(r.output) || `exit ${r.code}` });
      }
    }
  }

  private async listen(port: number): Promise<void> {
    const { createServer } = process.getBuiltinModule('node:http');
    this.server = createServer((req, res) => {
      const ready = this.state.ready;
      const body = formatAgentState(this.state).join('\n');
      if (req.url === '/healthz') res.writeHead(200).end('ok\n');
      else if (req.url === '/readyz')
        res.writeHead(ready ? 200 : 503, { 'content-type': 'text/plain' }).end(`${body}\n`);
      else res.writeHead(404).end();
    });
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(port, this.o.healthAddress, () => resolve());
    });
    const addr = this.server.address();
    if (typeof addr === 'object' && addr) {
      this.state = { ...this.state, healthPort: addr.port };
      this.log(`health on ${this.o.healthAddress}:${addr.port} (/healthz, /readyz)`);
    }
  }

  /** SIGTERM: stop watching, then uninstall if the DaemonSet is going away. */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const w of this.watchers) w.close();
    if (this.timer) clearInterval(this.timer);
    await this.running;
    let uninstall = this.o.uninstallOnExit === 'always';
    if (this.o.uninstallOnExit === 'auto') {
      const { fate, detail } = await daemonSetFate(
        { namespace: this.o.namespace, daemonSet: this.o.daemonSet },
        this.env,
      );
      uninstall = fate === 'deleted';
      this.log(
        `stopping: DaemonSet ${this.o.namespace}/${this.o.daemonSet} is ${fate} (${detail}); ` +
          (uninstall ? 'uninstalling' : 'leaving pullguard installed'),
      );
    }
    if (uninstall) {
      this.update({ phase: 'uninstalling' });
      // The executable goes first (the installer's uninstall order), so no pull meets pullguard
      // without its policy; only then the policy files.
      const r = await runSelf(
        ['node', 'uninstall', '--root', this.o.root, ...(this.o.noRestart ? ['--no-restart'] : [])],
        this.log,
      );
      if (r.code !== 0) {
        this.log(`uninstall failed (exit ${r.code}); the policy stays so that pullguard keeps working`);
        this.update({ phase: 'stopped', installError: oneLine(r.output) });
      } else {
        removeFromHost(this.o.root);
        syncDockerConfig(this.o.root, undefined);
        this.update({
          phase: 'uninstalled',
          installed: false,
          applied: undefined,
          refused: undefined,
          dockerConfig: 'absent',
        });
        this.log('uninstalled');
      }
    } else this.update({ phase: 'stopped' });
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

/** The CLI entry: runs until SIGTERM or SIGINT, then exits 0 after stop(). */
export async function runAgent(
  args: readonly string[],
  out: Out,
  env: NodeJS.ProcessEnv = process.env,
): Promise<number> {
  const agent = new NodeAgent(parseAgentArgs(args, env), (l) => out(`${now()} ${l}`), env);
  await agent.start();
  await new Promise<void>((resolve) => {
    const onSignal = (sig: string) => {
      out(`${now()} received ${sig}`);
      resolve();
    };
    process.once('SIGTERM', () => onSignal('SIGTERM'));
    process.once('SIGINT', () => onSignal('SIGINT'));
  });
  await agent.stop();
  return 0;
}

/**
 * doctor's checks of the RUNNING node, beside diagnose.ts's checks of its files. Pure: node.ts gathers
 * the input (the daemon's answers on its socket, /proc, the journal, the output paths, a test pull).
 *
 * "The running daemon's effective config": containerd has no API that returns the configuration it
 * runs with, and `containerd config dump` parses the files again (it shows what a restart would use).
 * What is reliable: which file the daemon was started with (/proc/<pid>/cmdline), whether a file
 * changed after it started (mtime against the process start time), and whether the image-verifier
 * plugin actually loaded (Introspection.Plugins, with its init error).
 */
import { resolve } from 'node:path';
import type { Policy } from '../policy/model.js';
import type { DaemonInfo } from './grpc.js';
import type { Check } from './diagnose.js';

export const DEFAULT_ADDRESS = '/run/containerd/containerd.sock';
/** containerd 2.1's default pinned sandbox image (pinned_images.sandbox). */
export const DEFAULT_SANDBOX_IMAGE = 'registry.k8s.io/pause:3.10';
const FALLBACK = 'Falling back to local image pull mode';
const BINDIR_PLUGIN = { type: 'io.containerd.image-verifier.v1', id: 'bindir' };

export interface NodeInput {
  readonly socket: {
    readonly address: string;
    readonly explicit: boolean;
    readonly info?: DaemonInfo;
    readonly error?: string;
    readonly missing?: boolean;
  };
  /** The daemon process, when its pid is known and /proc could be read. */
  readonly daemon?: { readonly pid: number; readonly startedAtMs?: number; readonly configArg?: string };
  /** The config path doctor checked and the files it read, with their modification times. */
  readonly config: { readonly path: string; readonly files: readonly { path: string; mtimeMs: number }[] };
  /** Lines of containerd's log that mention the local-pull fallback, and where they were read. */
  readonly journal?:
    | { readonly source: string; readonly lines: readonly string[] }
    | { readonly source?: undefined; readonly error: string };
  readonly outputs: readonly {
    readonly what: string;
    readonly path: string;
    readonly error?: string;
    readonly freeBytes?: number;
  }[];
  /** What the decision log says about the last 7 days, when there is one. */
  readonly decisions?: {
    readonly path: string;
    readonly total: number;
    readonly wouldDeny: number;
    readonly denied: number;
    readonly last?: string;
  };
  readonly policy?: Pick<Policy, 'rules' | 'defaultAction' | 'mode'>;
}

export function nodeChecks(n: NodeInput): Check[] {
  const checks: Check[] = [socketCheck(n.socket)];
  if (n.socket.info) {
    checks.push(...pluginChecks(n.socket.info));
    checks.push(...runningConfigChecks(n));
    checks.push(journalCheck(n));
  }
  checks.push(...n.outputs.map(outputCheck));
  if (n.decisions) checks.push(decisionsCheck(n.decisions, n.policy?.mode));
  // The sandbox image is checked with the static pods' images, in node-images.ts.
  return checks;
}

function socketCheck(s: NodeInput['socket']): Check {
  if (s.info) {
    const v = /^v?(\d+)\.(\d+)/.exec(s.info.version);
    const old = v && (Number(v[1]) < 2 || (Number(v[1]) === 2 && Number(v[2]) < 1));
    if (old)
      return {
        status: 'FAIL',
        message:
          `the running containerd (${s.address}) is ${s.info.version}: CRI pulls before 2.1 never call ` + `verifiers`,
        fix: 'upgrade containerd to 2.1 or later and restart it',
      };
    return {
      status: 'ok',
      message:
        `containerd answers on ${s.address}: ` +
        s.info.version +
        (s.info.revision ? ` (${s.info.revision.slice(0, 12)})` : '') +
        (s.info.pid ? `, pid ${s.info.pid}` : ''),
    };
  }
  if (s.missing && !s.explicit) {
    return {
      status: 'ok',
      message:
        `no containerd socket at ${s.address}: containerd is not running here, so only its files were ` +
        `checked (pass --address SOCKET for another one)`,
    };
  }
  return {
    status: 'FAIL',
    message:
      `containerd does not answer on ${s.address} (${s.error ?? 'no answer'}): no image can be pulled on ` +
      `this node`,
    fix: 'check `systemctl status containerd` and its log; pass --address SOCKET if it listens elsewhere',
  };
}

function pluginChecks(info: DaemonInfo): Check[] {
  if (info.plugins.length === 0) return [];
  const out: Check[] = [];
  const bindir = info.plugins.find((p) => p.type === BINDIR_PLUGIN.type && p.id === BINDIR_PLUGIN.id);
  if (!bindir) {
    out.push({
      status: 'FAIL',
      message:
        `the running containerd has no ${BINDIR_PLUGIN.type}.${BINDIR_PLUGIN.id} plugin: it runs no ` +
        `image verifier, every pull is allowed`,
      fix: 'remove it from disabled_plugins and restart containerd (2.1 or later)',
    });
  } else if (bindir.initError) {
    out.push({
      status: 'FAIL',
      message: `the running containerd's image-verifier plugin failed to start: ${bindir.initError}`,
      fix: 'fix the setting it names under plugins."io.containerd.image-verifier.v1.bindir" and restart containerd',
    });
  } else {
    out.push({ status: 'ok', message: 'the running containerd loaded its image-verifier plugin (bindir)' });
  }
  for (const p of info.plugins) {
    if (p.initError && p.type.includes('cri') && p !== bindir)
      out.push({
        status: 'WARN',
        message: `the running containerd's plugin ${p.type}.${p.id} failed to start: ${p.initError}`,
        fix: "read containerd's log from its start; kubelet pulls need the CRI plugins",
      });
  }
  for (const d of info.deprecations)
    out.push({
      status: 'WARN',
      message: `containerd reports a deprecation (${d.id}): ${d.message}`,
      fix: 'see `ctr deprecations list`',
    });
  return out;
}

function runningConfigChecks(n: NodeInput): Check[] {
  const d = n.daemon;
  if (!d) return [];
  const out: Check[] = [];
  const running = resolve(d.configArg ?? '/etc/containerd/config.toml');
  if (running !== resolve(n.config.path)) {
    out.push({
      status: 'FAIL',
      message:
        `the running containerd (pid ${d.pid}) was started with ` +
        `${d.configArg ? `--config ${d.configArg}` : 'its default config /etc/containerd/config.toml'}, but ` +
        `doctor checked ${n.config.path}: the checks above are not about the running daemon`,
      fix: `run pullguard doctor --containerd-config ${running}`,
    });
  }
  if (d.startedAtMs !== undefined) {
    // One second of slack: mtime and the process start time come from different clocks' granularity.
    const changed = n.config.files.filter((f) => f.mtimeMs > d.startedAtMs! + 1000);
    if (changed.length > 0) {
      out.push({
        status: 'WARN',
        message:
          `${changed.map((f) => f.path).join(', ')} changed after containerd started ` +
          `(${new Date(d.startedAtMs).toISOString()}): the running daemon does not use what doctor checked`,
        fix: 'restart containerd (systemctl restart containerd; never SIGHUP it: 2.2 exits on SIGHUP)',
      });
    } else if (running === resolve(n.config.path)) {
      out.push({
        status: 'ok',
        message:
          `the running containerd (pid ${d.pid}) uses ${running}, unchanged since it started: the checks ` +
          `above describe it`,
      });
    }
  }
  return out;
}

function journalCheck(n: NodeInput): Check {
  const j = n.journal;
  if (!j || j.source === undefined) {
    return {
      status: 'ok',
      message:
        `containerd's log not read (${j && 'error' in j ? j.error : 'no journal'}): look for ` +
        `"${FALLBACK}" in it yourself (pass --containerd-log FILE)`,
    };
  }
  if (j.lines.length > 0) {
    return {
      status: 'FAIL',
      message:
        `containerd logged "${FALLBACK}" since it started (${j.source}): CRI (kubelet) pulls skip ` +
        `pullguard; last: ${j.lines[j.lines.length - 1]!.slice(0, 300)}`,
      fix: 'fix the CRI setting named in that line (the FAIL lines above name the key), then restart containerd',
    };
  }
  return { status: 'ok', message: `no "${FALLBACK}" in containerd's log since it started (${j.source})` };
}

function outputCheck(o: NodeInput['outputs'][number]): Check {
  if (o.error) {
    return {
      status: 'WARN',
      message:
        `${o.what} ${o.path} cannot be written (${o.error}): decisions go unrecorded there (verdicts are ` +
        `unaffected)`,
      fix:
        `make ${o.path}'s directory writable for containerd's user (root), or set ` +
        `log.${o.what === 'metrics file' ? 'metricsFile' : 'file'} in the policy`,
    };
  }
  if (o.freeBytes !== undefined && o.freeBytes < 16 * 1024 * 1024) {
    return {
      status: 'WARN',
      message: `${o.what} ${o.path}: only ${Math.floor(o.freeBytes / 1024)} KiB free on its filesystem`,
      fix: 'free space there, or move it (log.file / log.metricsFile in the policy)',
    };
  }
  return { status: 'ok', message: `${o.what} ${o.path} is writable` };
}

/** The audit advice made concrete: what enforce mode would have denied on this node lately. */
function decisionsCheck(d: NonNullable<NodeInput['decisions']>, mode: 'enforce' | 'audit' | undefined): Check {
  const summary =
    `${d.total} decision(s) in the last 7 days in ${d.path}${d.last ? `, the last at ${d.last}` : ''}: ` +
    `${d.denied} denied, ${d.wouldDeny} would-deny`;
  if (mode === 'audit' && d.wouldDeny > 0) {
    return {
      status: 'WARN',
      message: `${summary}: enforce mode would have denied ${d.wouldDeny} pull(s)`,
      fix: 'read `pullguard log --would-deny --since 7d`, fix the images or the policy, then set mode: enforce',
    };
  }
  return { status: 'ok', message: summary };
}

/** The sandbox image the effective config names (v3 pinned_images.sandbox, migrated from v2 sandbox_image). */
export function sandboxImageOf(
  images: Readonly<Record<string, unknown>>,
  origin: (key: string) => { file: string; key: string } | undefined,
): { readonly image: string; readonly where: string } {
  const pinned = images.pinned_images;
  const v = pinned && typeof pinned === 'object' ? (pinned as Record<string, unknown>).sandbox : undefined;
  if (typeof v === 'string' && v !== '') {
    const o = origin('pinned_images.sandbox');
    return { image: v, where: o ? ` (${o.key} in ${o.file})` : '' };
  }
  return { image: DEFAULT_SANDBOX_IMAGE, where: " (containerd 2.1's default)" };
}

/** `containerd --config X` / `-c X` / `--config=X` from a NUL-separated /proc cmdline. */
export function configArgOf(cmdline: string): string | undefined {
  const args = cmdline.split('\0');
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--config' || a === '-c') return args[i + 1];
    if (a.startsWith('--config=')) return a.slice('--config='.length);
    if (a.startsWith('-c=')) return a.slice(3);
  }
  return undefined;
}

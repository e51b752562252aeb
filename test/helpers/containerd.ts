import { execFile, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseToml, stringify as stringifyToml } from 'smol-toml';
import { parse as parseYaml } from 'yaml';
import { startDaemon, waitFor, type Daemon } from './proc.js';
import { pullguardBinary, ROOT, tool, toolsBin } from './tools.js';

/**
 * A real containerd 2.1.9 daemon for tests, run as root with a private root, state, sockets and
 * temp certs.d, debug logging captured, and pullguard (the single executable, not the .cjs) alone
 * in its bin_dir.
 *
 * Two ways to build its config, both from the files users install:
 *  - `dropin`: a version 3 base config that `imports` containerd-config/pullguard.toml, then a
 *    second, test-only import that moves paths (bin_dir, config_path) into the temp dir. containerd
 *    merges imports in order over the main file, so later files win.
 *  - `kind`: Kind's node config.toml (version 2, `discard_unpacked_layers = true`, ...) patched with
 *    the `containerdConfigPatches` of kind/cluster.yaml exactly as Kind does it (TOML -> JSON merge
 *    patch, RFC 7386; a patch with a different `version` is skipped), then a last patch that only
 *    moves paths into the temp dir. `kind-unpatched` skips kind/cluster.yaml: the negative control.
 */

export type ConfigMode = 'dropin' | 'kind' | 'kind-unpatched';

export interface ContainerdOptions {
  readonly mode?: ConfigMode;
  /** Copy dist/pullguard into bin_dir (default). `false`: an empty bin_dir, so containerd allows everything. */
  readonly verifier?: boolean;
  /** PULLGUARD_POLICY in containerd's environment, which containerd passes to its verifiers. */
  readonly policy?: string;
  /** More environment for containerd (it runs with a minimal one, as under systemd: no HOME). */
  readonly env?: Record<string, string>;
  /**
   * The snapshotter CRI and the transfer service unpack into. overlayfs (containerd's default) works
   * on this machine's ext4 /tmp; `native` is the fallback for hosts where overlay mounts fail (for
   * example /tmp on overlayfs itself). The transfer service only unpacks for a matching
   * `unpack_config` entry, so `native` sets both the CRI snapshotter and that entry.
   */
  readonly snapshotter?: 'overlayfs' | 'native';
  /**
   * For tests that run pods: the pod sandbox ("pause") image RunPodSandbox uses (containerd pulls it,
   * through the verifier, if absent). Also sets `restrict_oom_score_adj`, as Kind does for rootless:
   * this machine refuses a lower oom_score_adj (runc: "failed to update /proc/self/oom_score_adj").
   */
  readonly sandboxImage?: string;
  /**
   * containerd's log level. `debug` (default) puts verifier stderr (the decision records) in its log;
   * `info` is what nodes run, where pullguard's own decision log is the only trace.
   */
  readonly logLevel?: 'debug' | 'info';
}

export interface Containerd {
  readonly dir: string;
  readonly socket: string;
  readonly binDir: string;
  /** The registry.config_path directory (hosts.toml lives in `<certsDir>/<host>/hosts.toml`). */
  readonly certsDir: string;
  /** The config file containerd was started with. */
  readonly configFile: string;
  readonly mode: ConfigMode;
  readonly daemon: Daemon;
  /** containerd's log so far (debug level; verifier stderr lands here). */
  log(): string;
  /** pullguard's decision records (its stderr JSON lines) as containerd logged them, oldest first. */
  decisionRecords(): DecisionRecord[];
  /**
   * The first decision record `match` accepts, waiting for containerd's log to arrive (it is read
   * asynchronously and may trail the pull's answer). Throws after `timeoutMs`.
   */
  waitForRecord(match: (r: DecisionRecord) => boolean, timeoutMs?: number): Promise<DecisionRecord>;
  /** Runs `ctr -a <socket> -n <namespace> ...` (namespace `default` unless given), with a time limit. */
  ctr(args: readonly string[], opts?: { namespace?: string; timeoutMs?: number }): Promise<CommandResult>;
  /** `containerd --config <file> config dump`: the merged configuration containerd actually uses. */
  configDump(): string;
  /** Writes `<certsDir>/<host>/hosts.toml`. */
  writeHostsToml(host: string, content: string): void;
  stop(): Promise<void>;
}

export interface CommandResult {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface DecisionRecord {
  readonly component: 'pullguard';
  readonly name: string;
  readonly digest: string;
  readonly rule: string | null;
  readonly verdict: 'allow' | 'deny';
  readonly reason: string;
  readonly exitCode: number;
  readonly durationMs: number;
  readonly [k: string]: unknown;
}

export const DROPIN = join(ROOT, 'containerd-config', 'pullguard.toml');
export const DROPIN_V2 = join(ROOT, 'containerd-config', 'pullguard-v2.toml');
export const KIND_CLUSTER = join(ROOT, 'kind', 'cluster.yaml');

/**
 * Kind's node /etc/containerd/config.toml, reproduced from kubernetes-sigs/kind
 * images/base/files/etc/containerd/config.toml (v0.28 - v0.32): version 2,
 * `discard_unpacked_layers = true`, overlayfs, runc with systemd cgroups and a base runtime spec, the
 * fuse-overlayfs proxy snapshotter for rootless, and the fixed sandbox image.
 */
export const KIND_NODE_CONFIG = `# explicitly use v2 config format
version = 2

[proxy_plugins]
# fuse-overlayfs is used for rootless
[proxy_plugins."fuse-overlayfs"]
  type = "snapshot"
  address = "/run/containerd-fuse-overlayfs.sock"

[plugins."io.containerd.grpc.v1.cri".containerd]
  # save disk space when using a single snapshotter
  discard_unpacked_layers = true
  # explicitly use default snapshotter so we can sed it in entrypoint
  snapshotter = "overlayfs"
  # explicit default here, as we're configuring it below
  default_runtime_name = "runc"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  # set default runtime handler to v2, which has a per-pod shim
  runtime_type = "io.containerd.runc.v2"
  # Generated by "ctr oci spec" and modified at base container to mount poduct_uuid
  base_runtime_spec = "/etc/containerd/cri-base.json"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
    # use systemd cgroup by default
    SystemdCgroup = true

# Setup a runtime with the magic name ("test-handler") used for Kubernetes
# runtime class tests ...
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.test-handler]
  # same settings as runc
  runtime_type = "io.containerd.runc.v2"
  base_runtime_spec = "/etc/containerd/cri-base.json"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.test-handler.options]
    SystemdCgroup = true

[plugins."io.containerd.grpc.v1.cri"]
  # use fixed sandbox image
  sandbox_image = "registry.k8s.io/pause:3.10"
  # allow hugepages controller to be missing
  # see https://github.com/containerd/cri/pull/1501
  tolerate_missing_hugepages_controller = true
  # restrict_oom_score_adj needs to be true when running inside UserNS (rootless)
  restrict_oom_score_adj = false
`;

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
const isObject = (v: unknown): v is Record<string, Json> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** RFC 7386 JSON merge patch, as jsonpatch.MergePatch (evanphx/json-patch) applies it for Kind. */
export function mergePatch(target: Json | undefined, patch: Json): Json {
  if (!isObject(patch)) return patch;
  const out: Record<string, Json> = isObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

function tomlToJson(text: string): Json {
  // Round-trip through JSON like Kind does: TOML dates and the like become plain strings.
  return JSON.parse(JSON.stringify(parseToml(text))) as Json;
}

/**
 * Kind's `patch.ContainerdTOML` for merge patches: each patch is TOML turned into JSON and merged
 * over the node config; a patch that declares a `version` other than the node file's is skipped.
 */
export function applyKindPatches(
  base: string,
  patches: readonly string[],
): { toml: string; applied: number; skipped: number } {
  let doc = tomlToJson(base);
  const version = isObject(doc) && typeof doc.version === 'number' ? doc.version : 0;
  if (version === 0) throw new Error('failed to detect containerd config version');
  let applied = 0;
  let skipped = 0;
  for (const p of patches) {
    const pj = tomlToJson(p);
    const pv = isObject(pj) && typeof pj.version === 'number' ? pj.version : 0;
    if (pv !== 0 && pv !== version) {
      skipped++;
      continue;
    }
    doc = mergePatch(doc, pj);
    applied++;
  }
  return { toml: stringifyToml(doc as Record<string, unknown>), applied, skipped };
}

/** The `containerdConfigPatches` of kind/cluster.yaml, as Kind reads them. */
export function kindPatches(file = KIND_CLUSTER): string[] {
  const cluster = parseYaml(readFileSync(file, 'utf8')) as { containerdConfigPatches?: unknown };
  const patches = cluster.containerdConfigPatches;
  if (!Array.isArray(patches) || !patches.every((p) => typeof p === 'string'))
    throw new Error(`${file}: containerdConfigPatches must be a list of strings`);
  return patches;
}

/** Short socket paths: a unix socket path must stay under ~100 bytes. */
function tempBase(): string {
  const t = tmpdir();
  return t.length <= 40 ? t : '/tmp';
}

const q = (s: string) => JSON.stringify(s);

/** Temp dirs of daemons not stopped yet: removed at exit even when a run is interrupted. */
const liveDirs = new Set<string>();
process.once('exit', () => {
  // proc.ts's exit hook, registered first (imported above), has already SIGKILLed the daemons.
  for (const d of liveDirs) {
    try {
      unmountUnder(d);
      rmSync(d, { recursive: true, force: true });
    } catch {
      /* best effort */
    }
  }
});

export async function startContainerd(opts: ContainerdOptions = {}): Promise<Containerd> {
  if (process.getuid?.() !== 0) throw new Error('containerd tests must run as root (CI runs them as root)');
  const mode = opts.mode ?? 'dropin';
  const dir = mkdtempSync(join(tempBase(), 'pgc-'));
  liveDirs.add(dir);
  const socket = join(dir, 'c.sock');
  const binDir = join(dir, 'bin');
  const certsDir = join(dir, 'certs.d');
  const configFile = join(dir, 'config.toml');
  mkdirSync(binDir);
  mkdirSync(certsDir);
  if (opts.verifier !== false) {
    const dest = join(binDir, 'pullguard');
    copyFileSync(pullguardBinary(), dest);
    chmodSync(dest, 0o755);
  }
  const native = opts.snapshotter === 'native';

  if (mode === 'dropin') {
    // Test-only import, after the drop-in so it wins: paths into the temp dir, nothing else that matters.
    const overrides = [
      'version = 3',
      '[plugins."io.containerd.image-verifier.v1.bindir"]',
      `  bin_dir = ${q(binDir)}`,
      '[plugins."io.containerd.cri.v1.images".registry]',
      `  config_path = ${q(certsDir)}`,
      // Host paths containerd would otherwise create or bind: /opt/containerd, /var/run/nri/nri.sock.
      '[plugins."io.containerd.internal.v1.opt"]',
      `  path = ${q(join(dir, 'opt'))}`,
      '[plugins."io.containerd.nri.v1.nri"]',
      `  socket_path = ${q(join(dir, 'nri.sock'))}`,
      ...(opts.sandboxImage
        ? [
            '[plugins."io.containerd.cri.v1.images".pinned_images]',
            `  sandbox = ${q(opts.sandboxImage)}`,
            '[plugins."io.containerd.cri.v1.runtime"]',
            '  restrict_oom_score_adj = true',
          ]
        : []),
      ...(native
        ? [
            '[plugins."io.containerd.cri.v1.images"]',
            '  snapshotter = "native"',
            '[[plugins."io.containerd.transfer.v1.local".unpack_config]]',
            '  platform = "linux/amd64"',
            '  snapshotter = "native"',
          ]
        : []),
    ];
    writeFileSync(join(dir, 'test-paths.toml'), `${overrides.join('\n')}\n`);
    const main = [
      'version = 3',
      `root = ${q(join(dir, 'root'))}`,
      `state = ${q(join(dir, 'state'))}`,
      `imports = [${q(DROPIN)}, ${q(join(dir, 'test-paths.toml'))}]`,
      '[grpc]',
      `  address = ${q(socket)}`,
      '[debug]',
      `  level = ${q(opts.logLevel ?? 'debug')}`,
    ];
    writeFileSync(configFile, `${main.join('\n')}\n`);
  } else {
    // Kind's base config references /etc/containerd/cri-base.json; make one the way Kind does.
    const spec = spawnSync(tool('ctr'), ['oci', 'spec'], { encoding: 'utf8', timeout: 10_000 });
    if (spec.status !== 0) throw new Error(`ctr oci spec failed: ${spec.stderr}`);
    writeFileSync(join(dir, 'cri-base.json'), spec.stdout);
    const patches = mode === 'kind' ? kindPatches() : [];
    // Last patch, test-only, version-less like Kind patches: move paths into the temp dir. It must not
    // touch any setting the test is about (discard_unpacked_layers, use_local_image_pull, ...).
    const paths = [
      `root = ${q(join(dir, 'root'))}`,
      `state = ${q(join(dir, 'state'))}`,
      '[grpc]',
      `  address = ${q(socket)}`,
      '[debug]',
      `  level = ${q(opts.logLevel ?? 'debug')}`,
      '[plugins."io.containerd.image-verifier.v1.bindir"]',
      `  bin_dir = ${q(binDir)}`,
      '[plugins."io.containerd.grpc.v1.cri".registry]',
      `  config_path = ${q(certsDir)}`,
      '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]',
      `  base_runtime_spec = ${q(join(dir, 'cri-base.json'))}`,
      '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.test-handler]',
      `  base_runtime_spec = ${q(join(dir, 'cri-base.json'))}`,
      '[plugins."io.containerd.internal.v1.opt"]',
      `  path = ${q(join(dir, 'opt'))}`,
      '[plugins."io.containerd.nri.v1.nri"]',
      `  socket_path = ${q(join(dir, 'nri.sock'))}`,
      ...(native
        ? [
            '[plugins."io.containerd.grpc.v1.cri".containerd]',
            '  snapshotter = "native"',
            '[[plugins."io.containerd.transfer.v1.local".unpack_config]]',
            '  platform = "linux/amd64"',
            '  snapshotter = "native"',
          ]
        : []),
    ].join('\n');
    const { toml, skipped } = applyKindPatches(KIND_NODE_CONFIG, [...patches, paths]);
    if (skipped > 0)
      throw new Error(`${skipped} Kind patch(es) skipped: a patch declares a version other than the node config's`);
    writeFileSync(configFile, toml);
  }

  const env: Record<string, string> = {
    PATH: `${toolsBin()}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`,
    ...(opts.policy !== undefined ? { PULLGUARD_POLICY: opts.policy } : {}),
    ...opts.env,
  };
  const daemon = startDaemon(tool('containerd'), ['--config', configFile], { env });

  // Asynchronous on purpose: a synchronous child would stall reading containerd's log meanwhile.
  const ctr = (args: readonly string[], o: { namespace?: string; timeoutMs?: number } = {}): Promise<CommandResult> =>
    new Promise((resolve) => {
      execFile(
        tool('ctr'),
        ['-a', socket, '-n', o.namespace ?? 'default', ...args],
        {
          encoding: 'utf8',
          timeout: o.timeoutMs ?? 60_000,
          killSignal: 'SIGKILL',
          maxBuffer: 16 * 1024 * 1024,
          env: { PATH: env.PATH! },
        },
        (err, stdout, stderr) => {
          const status = err ? (typeof err.code === 'number' ? err.code : null) : 0;
          resolve({ status, stdout, stderr: `${stderr}${err && status === null ? `\n${err.message}` : ''}` });
        },
      );
    });

  const self: Containerd = {
    dir,
    socket,
    binDir,
    certsDir,
    configFile,
    mode,
    daemon,
    log: () => daemon.output(),
    decisionRecords: () => parseDecisionRecords(daemon.output()),
    async waitForRecord(match, timeoutMs = 5_000) {
      let found: DecisionRecord | undefined;
      await waitFor(
        'pullguard decision record in containerd log',
        () => (found = parseDecisionRecords(daemon.output()).find(match)) !== undefined,
        timeoutMs,
      );
      return found!;
    },
    ctr,
    configDump() {
      const r = spawnSync(tool('containerd'), ['--config', configFile, 'config', 'dump'], {
        encoding: 'utf8',
        timeout: 20_000,
        env,
      });
      if (r.status !== 0) throw new Error(`containerd config dump failed: ${r.stderr}`);
      return r.stdout;
    },
    writeHostsToml(host, content) {
      mkdirSync(join(certsDir, host), { recursive: true });
      writeFileSync(join(certsDir, host, 'hosts.toml'), content);
    },
    async stop() {
      await daemon.stop();
      unmountUnder(dir);
      rmSync(dir, { recursive: true, force: true });
      liveDirs.delete(dir);
    },
  };

  try {
    // Ready when the CRI image service answers, not merely when the socket exists.
    await waitFor(
      'containerd CRI',
      async () =>
        /msg="containerd successfully booted/.test(daemon.output()) &&
        (await ctr(['version'], { timeoutMs: 5_000 })).status === 0,
      30_000,
      daemon,
    );
  } catch (e) {
    await self.stop();
    throw e;
  }
  return self;
}

/** Snapshot mounts left behind by a killed daemon would make rm -rf fail or leak. */
function unmountUnder(dir: string): void {
  let mounts: string[] = [];
  try {
    mounts = readFileSync('/proc/self/mounts', 'utf8')
      .split('\n')
      .map((l) => l.split(' ')[1] ?? '')
      .map((p) => p.replace(/\\040/g, ' '))
      .filter((p) => p === dir || p.startsWith(`${dir}/`));
  } catch {
    return;
  }
  for (const m of mounts.sort((a, b) => b.length - a.length)) spawnSync('umount', ['-l', m], { timeout: 10_000 });
}

/**
 * containerd logs each verifier stderr line at debug level as
 * `level=debug msg="<line, Go-quoted>" image_verifier=pullguard stream=stderr`.
 */
export function parseDecisionRecords(log: string): DecisionRecord[] {
  const out: DecisionRecord[] = [];
  for (const line of log.split('\n')) {
    if (!line.includes('image_verifier=pullguard') || !line.includes('stream=stderr')) continue;
    const m = /msg="((?:[^"\\]|\\.)*)"/.exec(line);
    if (!m) continue;
    try {
      const text = JSON.parse(`"${m[1]}"`) as string;
      const rec = JSON.parse(text) as DecisionRecord;
      if (rec.component === 'pullguard') out.push(rec);
    } catch {
      /* not a record line */
    }
  }
  return out;
}

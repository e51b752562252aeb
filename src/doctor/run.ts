/** The I/O around `diagnose`: reads the node's files, lists bin_dir, asks containerd for its version. */
import { readdirSync, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { asPullguardError } from '../common/errors.js';
import { parseFlags } from '../common/flags.js';
import { loadPolicy, policyPath } from '../policy/load.js';
import type { Policy } from '../policy/model.js';
import { DEFAULT_CONTAINERD_CONFIG, loadConfig } from '../containerd/config.js';
import { credentialProviderChecks, imageCredentialChecks, tokenRealmChecks } from './credentials-run.js';
import { gatherNode, pullTest } from './node.js';
import { nodeChecks } from './node-checks.js';
import {
  binDirOf,
  diagnose,
  effectiveConfig,
  formatCheck,
  type BinDirEntryType,
  type BinDirListing,
  type DoctorInput,
} from './diagnose.js';
import { DEFAULT_STATIC_POD_DIR, nodeImageChecks } from './node-images.js';
import { readNodeImages } from './node-images-read.js';
type Out = (line: string) => void;

export interface DoctorOptions {
  readonly containerdConfig?: string;
  readonly binDir?: string;
  readonly policy?: string;
  /** containerd's socket (default: grpc.address of the config, else /run/containerd/containerd.sock). */
  readonly address?: string;
  /** containerd's log file, for nodes where it does not log to the journal. */
  readonly containerdLog?: string;
  /** One real pull through containerd, and pullguard's decision for it. */
  readonly pullTest?: string;
  /** `--image REF`: also say which credentials pullguard would use for that image's registry. */
  readonly image?: string;
  /** kubelet's static pod directory, whose images the node-images check reads. */
  readonly staticPodDir?: string;
}

const DOCTOR_USAGE =
  'usage: pullguard doctor [--containerd-config PATH] [--bin-dir DIR] [--policy FILE] [--address SOCKET] ' +
  '[--containerd-log FILE] [--pull-test REF] [--image REF] [--static-pod-dir DIR]';

const DOCTOR_FLAGS = {
  'containerd-config': { type: 'string' },
  'bin-dir': { type: 'string' },
  policy: { type: 'string' },
  address: { type: 'string' },
  'containerd-log': { type: 'string' },
  'pull-test': { type: 'string' },
  image: { type: 'string' },
  'static-pod-dir': { type: 'string' },
} as const;

export function parseDoctorArgs(args: readonly string[]): DoctorOptions {
  const { values: v } = parseFlags(args, DOCTOR_FLAGS, DOCTOR_USAGE);
  const opts: DoctorOptions = {
    containerdConfig: v['containerd-config'],
    binDir: v['bin-dir'],
    policy: v.policy,
    address: v.address,
    containerdLog: v['containerd-log'],
    pullTest: v['pull-test'],
    image: v.image,
    staticPodDir: v['static-pod-dir'],
  };
  // Only the options given, as before: callers and tests compare the object.
  return Object.fromEntries(Object.entries(opts).filter(([, x]) => x !== undefined)) as DoctorOptions;
}

function listBinDir(dir: string): BinDirListing {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return code === 'ENOENT' ? { kind: 'missing' } : { kind: 'unreadable', error: code ?? String(e) };
  }
  // Go's os.ReadDir order (bytewise), the order containerd runs them in.
  names.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  return {
    kind: 'entries',
    entries: names.map((name) => {
      let type: BinDirEntryType;
      try {
        const st = statSync(join(dir, name));
        type = st.isDirectory()
          ? 'directory'
          : !st.isFile()
            ? 'other'
            : (st.mode & 0o111) !== 0
              ? 'executable'
              : 'file';
      } catch {
        type = 'broken';
      }
      return { name, type };
    }),
  };
}

function findOnPath(name: string, env: NodeJS.ProcessEnv): string | undefined {
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    const p = join(dir, name);
    try {
      const st = statSync(p);
      if (st.isFile() && (st.mode & 0o111) !== 0) return p;
    } catch {
      /* not here */
    }
  }
  return undefined;
}

function containerdVersion(env: NodeJS.ProcessEnv): Promise<DoctorInput['containerd']> {
  const binary = findOnPath('containerd', env);
  if (!binary) return Promise.resolve({});
  return new Promise((done) => {
    // Loaded here, not imported: child_process cannot be part of the executable's startup snapshot.
    process
      .getBuiltinModule('node:child_process')
      .execFile(
        binary,
        ['--version'],
        { encoding: 'utf8', timeout: 5000, killSignal: 'SIGKILL', maxBuffer: 64 * 1024, env: { PATH: env.PATH ?? '' } },
        (err, stdout) =>
          err
            ? done({ binary, error: err.killed ? 'timed out after 5s' : firstLine(err.message) })
            : done({ binary, output: stdout }),
      );
  });
}

const firstLine = (s: string) => s.split('\n')[0] ?? s;

/** The config loader's own advice is for the pull's event line; doctor prints its own fix after it. */
const withoutAdvice = (message: string) => message.replace(/; fix registry\.containerdConfig in the policy$/, '');

/** Gathers the input (files, bin_dir, policy, containerd version), prints the checks; exit 0 without FAIL, 2 with. */
export async function runDoctor(args: readonly string[], out: Out, env: NodeJS.ProcessEnv): Promise<number> {
  const opts = parseDoctorArgs(args);
  const pPath = opts.policy ?? policyPath(env);
  let policy: Policy | undefined;
  let policyError: string | undefined;
  try {
    policy = loadPolicy(pPath);
  } catch (e) {
    policyError = asPullguardError(e).message;
  }

  const configPath = opts.containerdConfig ?? policy?.registry.containerdConfig ?? DEFAULT_CONTAINERD_CONFIG;
  let config: DoctorInput['config'];
  const explicit = configPath !== DEFAULT_CONTAINERD_CONFIG || opts.containerdConfig !== undefined;
  try {
    const loaded = loadConfig(configPath);
    config =
      loaded.files.length === 0
        ? { path: configPath, error: `cannot read containerd config ${configPath}: ENOENT`, missing: true, explicit }
        : { path: configPath, files: loaded.files, missing: loaded.missing };
  } catch (e) {
    config = { path: configPath, error: withoutAdvice(asPullguardError(e).message), missing: false, explicit };
  }
  const eff = 'files' in config ? effectiveConfig(config.files, config.missing) : undefined;
  const binDir = binDirOf(eff, opts.binDir);
  const input: DoctorInput = {
    config,
    binDir: { path: binDir, fromFlag: opts.binDir !== undefined, listing: listBinDir(binDir) },
    policy: { path: pPath, policy, error: policyError },
    containerd: await containerdVersion(env),
  };
  const checks = diagnose(input);
  // The running node: the daemon on its socket, its log, the output paths.
  const files = 'files' in config ? config.files : undefined;
  const { address, containerdLog } = opts;
  const node = await gatherNode({ address, containerdLog, configPath, files, eff, policy, env });
  checks.push(...nodeChecks(node));
  // The node's own images (sandbox, static pods): exempt, or verifiable with the registry alone.
  const ownImages = readNodeImages(eff, opts.staticPodDir ?? DEFAULT_STATIC_POD_DIR, checks);
  checks.push(...nodeImageChecks(policy, ownImages));
  if (opts.pullTest) checks.push(...(await pullTest(opts.pullTest, node.socket.address, policy, env)));
  checks.push(...credentialProviderChecks(policy, env), ...tokenRealmChecks(policy));
  if (opts.image !== undefined) checks.push(...imageCredentialChecks(opts.image, policy, env));
  out(`pullguard doctor: containerd config ${configPath}, bin_dir ${binDir}, policy ${pPath}`);
  for (const c of checks) out(formatCheck(c));
  const fails = checks.filter((c) => c.status === 'FAIL').length;
  const warns = checks.filter((c) => c.status === 'WARN').length;
  const warnCount = warns > 0 ? `, ${warns} WARN` : '';
  const warnHint = warns > 0 ? ' (read the WARN lines)' : '';
  out(
    fails > 0
      ? `${fails} FAIL, ${warns} WARN: ` +
          'pulls on this node are NOT verified as intended; fix every FAIL, then restart containerd'
      : `no FAIL${warnCount}: containerd will run pullguard on every pull${warnHint}`,
  );
  return fails > 0 ? 2 : 0;
}

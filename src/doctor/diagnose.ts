/**
 * `pullguard doctor`: the self-check for the node's containerd. The most common failure is not a bad
 * signature but verification silently switched OFF: a CRI setting that makes containerd fall back to
 * local pulls (which never call verifiers), an empty or missing bin_dir (containerd then allows every
 * pull), a README beside the executable (every pull fails), a containerd older than 2.1.
 *
 * `diagnose` is pure: it takes containerd's config files as already loaded (src/containerd/config.ts
 * reads them, imports included, and models containerd 2.1's merge), the bin_dir listing, the policy
 * and the `containerd --version` output, and returns one check per line. `runDoctor` (run.ts) is the
 * thin I/O around it.
 */
import { join, relative, resolve } from 'node:path';
import { formatDuration } from '../common/deadline.js';
import { parseGoDuration } from '../common/go-duration.js';
import {
  BINDIR,
  CRI_V2,
  DEFAULT_BIN_DIR,
  DEFAULT_CONFIG_PATH,
  DEFAULT_MAX_VERIFIERS,
  effectiveConfig,
  IMAGES,
  isTable,
  LOCAL_PULL_TRIGGERS,
  valueAt,
  type ContainerdConfigFile,
  type EffectiveConfig,
  type LoadedConfig,
  type Origin,
} from '../containerd/config.js';
import { DEFAULT_TIMEOUT_MS, type Policy } from '../policy/model.js';

export { DEFAULT_BIN_DIR, effectiveConfig, type EffectiveConfig };
const DEFAULT_PER_VERIFIER_TIMEOUT_MS = 10_000;

export type Status = 'ok' | 'WARN' | 'FAIL';

export interface Check {
  readonly status: Status;
  readonly message: string;
  readonly fix?: string;
}

export type BinDirEntryType = 'executable' | 'file' | 'directory' | 'other' | 'broken';

export type BinDirListing =
  | { readonly kind: 'missing' }
  | { readonly kind: 'unreadable'; readonly error: string }
  | {
      readonly kind: 'entries';
      readonly entries: readonly { readonly name: string; readonly type: BinDirEntryType }[];
    };

export interface DoctorInput {
  /** containerd's config files as loaded (main first), or why they could not be. */
  readonly config:
    | {
        readonly path: string;
        readonly files: readonly ContainerdConfigFile[];
        readonly missing?: LoadedConfig['missing'];
      }
    | { readonly path: string; readonly error: string; readonly missing: boolean; readonly explicit: boolean };
  readonly binDir: { readonly path: string; readonly fromFlag: boolean; readonly listing: BinDirListing };
  readonly policy: {
    readonly path: string;
    readonly policy?: Pick<Policy, 'timeoutMs' | 'mode' | 'defaultAction' | 'rules'>;
    readonly error?: string;
  };
  /** `containerd --version`: absent binary, its output, or why running it failed. */
  readonly containerd: { readonly binary?: string; readonly output?: string; readonly error?: string };
}

/** The bin_dir containerd uses: `--bin-dir`, else the config's, else containerd's default. */
export function binDirOf(eff: EffectiveConfig | undefined, flag: string | undefined): string {
  if (flag !== undefined) return flag;
  const v = eff?.bindir.bin_dir;
  return typeof v === 'string' ? v : DEFAULT_BIN_DIR;
}

const where = (o: Origin | undefined) => (o ? ` (${o.key} in ${o.file})` : '');

/** Pure: every check, in the order printed. */
export function diagnose(input: DoctorInput): Check[] {
  const checks: Check[] = [];
  checks.push(versionCheck(input.containerd));

  let eff: EffectiveConfig | undefined;
  const c = input.config;
  if ('files' in c) {
    eff = effectiveConfig(c.files, c.missing);
    const imports = c.files.length - 1;
    const imported = imports > 0 ? ` and ${imports} imported file(s)` : '';
    checks.push({
      status: 'ok',
      message: `containerd config ${c.path}${imported} read (config version ${eff.version} after merging)`,
    });
    checks.push(...eff.notes);
  } else if (c.missing && !c.explicit) {
    eff = effectiveConfig([]);
    checks.push({
      status: 'WARN',
      message: `no containerd config at ${c.path}: containerd runs on its defaults`,
      fix: 'run `pullguard node install`, or pass --containerd-config PATH',
    });
  } else {
    checks.push({
      status: 'FAIL',
      message: `cannot check containerd's settings: ${c.error}`,
      fix: c.missing
        ? 'pass --containerd-config PATH, or fix registry.containerdConfig in the policy'
        : 'fix the file: containerd does not start with it either',
    });
  }

  if (eff) {
    if (eff.disabledPlugins.includes(BINDIR)) {
      checks.push({
        status: 'FAIL',
        message: `disabled_plugins lists "${BINDIR}": containerd runs no verifier, every pull is allowed`,
        fix: `remove "${BINDIR}" from disabled_plugins`,
      });
    }
    checks.push(...localPullChecks(eff));
    checks.push(configPathCheck(eff));
  }

  checks.push(...binDirChecks(input.binDir, eff));
  checks.push(timeoutCheck(eff, input.policy.policy?.timeoutMs));
  checks.push(...policyChecks(input.policy, input.binDir.path));
  return checks;
}

function versionCheck(c: DoctorInput['containerd']): Check {
  if (!c.binary)
    return {
      status: 'WARN',
      message:
        'containerd is not on PATH: could not check its version ' +
        '(2.1 or later is needed: CRI pulls of older releases never call verifiers)',
      fix: 'run `containerd --version` on the node',
    };
  if (c.output === undefined)
    return {
      status: 'WARN',
      message: `could not run ${c.binary} --version: ${c.error ?? 'no output'}`,
      fix: 'run `containerd --version` yourself: 2.1 or later is needed',
    };
  const m = /(?:^|\s)v?(\d+)\.(\d+)(?:\.(\d+))?/.exec(c.output);
  const line = c.output.trim().split('\n')[0] ?? '';
  if (!m)
    return {
      status: 'WARN',
      message: `cannot read a version in \`${c.binary} --version\`: ${line}`,
      fix: 'check that it is containerd 2.1 or later',
    };
  const [major, minor] = [Number(m[1]), Number(m[2])];
  const v = `${m[1]}.${m[2]}${m[3] !== undefined ? `.${m[3]}` : ''}`;
  if (major < 2 || (major === 2 && minor < 1)) {
    return {
      status: 'FAIL',
      message: `containerd ${v}: CRI (kubelet) pulls of containerd before 2.1 never call image verifiers`,
      fix: 'upgrade containerd to 2.1 or later',
    };
  }
  return { status: 'ok', message: `containerd ${v} (2.1 or later: CRI pulls can call verifiers)` };
}

function localPullChecks(eff: EffectiveConfig): Check[] {
  const out: Check[] = [];
  for (const t of LOCAL_PULL_TRIGGERS) {
    const value = valueAt(eff.images, t.key);
    if (!t.fires(value)) continue;
    const o = eff.origin('images', t.key);
    const shown = isTable(value) ? `[${Object.keys(value).join(', ')}]` : JSON.stringify(value);
    out.push({
      status: 'FAIL',
      message:
        `${t.key} = ${shown}${where(o)}: CRI falls back to local pulls, which never run pullguard ` +
        '(containerd logs "Falling back to local image pull mode")',
      fix:
        t.fix ??
        `set ${o?.key ?? `plugins."${IMAGES}".${t.key}`} = ${t.want} ` +
          "(containerd-config/pullguard.toml, or kind/cluster.yaml's patch on Kind)",
    });
  }
  if (out.length === 0) {
    out.push({
      status: 'ok',
      message:
        `no CRI setting forces local pulls (${LOCAL_PULL_TRIGGERS.map((t) => t.key).join(', ')}): ` +
        'kubelet pulls go through the transfer service and its verifiers',
    });
  }
  return out;
}

function configPathCheck(eff: EffectiveConfig): Check {
  const v = valueAt(eff.images, 'registry.config_path');
  const o = eff.origin('images', 'registry.config_path');
  const fix =
    `set plugins."${IMAGES}".registry.config_path = "/etc/containerd/certs.d" ` +
    `(plugins."${CRI_V2}".registry in a version 2 file)`;
  const oneDirectory = 'transfer-service pulls (2.1 - 2.3) treat it as one directory, so every hosts.toml is ignored';
  if (typeof v !== 'string' || v === '') {
    return {
      status: 'WARN',
      message:
        `registry.config_path is not set: containerd uses ${DEFAULT_CONFIG_PATH}, ` +
        'which transfer-service pulls (2.1 - 2.3) treat as one directory, so every hosts.toml is ignored',
      fix,
    };
  }
  if (v.includes(':')) {
    return {
      status: 'WARN',
      message: `registry.config_path = "${v}"${where(o)} is a path list: ${oneDirectory}`,
      fix,
    };
  }
  return {
    status: 'ok',
    message: `registry.config_path = "${v}" (one directory: containerd and pullguard read hosts.toml from it)`,
  };
}

function binDirChecks(b: DoctorInput['binDir'], eff: EffectiveConfig | undefined): Check[] {
  const src = b.fromFlag
    ? ' (--bin-dir)'
    : eff?.origin('bindir', 'bin_dir')
      ? where(eff.origin('bindir', 'bin_dir'))
      : " (containerd's default)";
  const install = 'install pullguard there alone (`pullguard node install`)';
  if (b.listing.kind === 'missing') {
    return [
      {
        status: 'FAIL',
        message: `bin_dir ${b.path}${src} does not exist: containerd allows every pull without verification`,
        fix: install,
      },
    ];
  }
  if (b.listing.kind === 'unreadable') {
    return [
      {
        status: 'FAIL',
        message: `bin_dir ${b.path}${src} cannot be listed (${b.listing.error}): containerd fails every pull`,
        fix: `make ${b.path} a directory containerd can read, holding only pullguard`,
      },
    ];
  }
  const entries = b.listing.entries;
  if (entries.length === 0) {
    return [
      {
        status: 'FAIL',
        message: `bin_dir ${b.path}${src} is empty: containerd allows every pull without verification`,
        fix: install,
      },
    ];
  }
  const out: Check[] = [];
  const names = entries.map((e) => e.name).join(', ');
  const bad = entries.filter((e) => e.type !== 'executable');
  for (const e of bad) {
    const what =
      e.type === 'file'
        ? 'is not executable'
        : e.type === 'directory'
          ? 'is a directory'
          : e.type === 'broken'
            ? 'is a broken link'
            : 'is not a regular file';
    out.push({
      status: 'FAIL',
      message:
        `${join(b.path, e.name)} ${what}: containerd executes every entry of bin_dir, ` +
        'the exec fails and blocks EVERY pull ("failed to call verifier")',
      fix: `move it out of ${b.path}`,
    });
  }
  const pg = entries.filter((e) => e.name.includes('pullguard'));
  if (pg.length === 0) {
    out.push({
      status: 'WARN',
      message: `no pullguard in bin_dir ${b.path} (entries: ${names}): pullguard is not one of containerd's verifiers`,
      fix: install,
    });
  } else if (bad.length === 0) {
    out.push({ status: 'ok', message: `bin_dir ${b.path}${src} holds ${entries.length} executable(s): ${names}` });
  }
  const maxV = eff?.bindir.max_verifiers;
  const max = typeof maxV === 'number' ? maxV : DEFAULT_MAX_VERIFIERS;
  const maxWhere = where(eff?.origin('bindir', 'max_verifiers'));
  if (max >= 0 && entries.length > max) {
    const skipped = entries
      .slice(max)
      .map((e) => e.name)
      .join(', ');
    out.push({
      status: 'FAIL',
      message:
        max === 0
          ? `max_verifiers = 0${maxWhere}: containerd skips every verifier and allows every pull`
          : `bin_dir has ${entries.length} entries, more than max_verifiers = ${max}${maxWhere}: ` +
            `containerd skips ${skipped} with only a warning`,
      fix: `keep only pullguard in ${b.path}, or raise max_verifiers (default ${DEFAULT_MAX_VERIFIERS})`,
    });
  }
  return out;
}

export { parseGoDuration } from '../common/go-duration.js';

function timeoutCheck(eff: EffectiveConfig | undefined, policyTimeoutMs: number | undefined): Check {
  const budget = policyTimeoutMs ?? DEFAULT_TIMEOUT_MS;
  const raw = eff?.bindir.per_verifier_timeout;
  const o = where(eff?.origin('bindir', 'per_verifier_timeout'));
  let limit = DEFAULT_PER_VERIFIER_TIMEOUT_MS;
  if (raw !== undefined) {
    const parsed = typeof raw === 'string' ? parseGoDuration(raw) : undefined;
    if (parsed === undefined) {
      return {
        status: 'FAIL',
        message: `per_verifier_timeout = ${JSON.stringify(raw)}${o} is not a duration`,
        fix: 'write it as a string such as "10s"',
      };
    }
    limit = parsed;
  }
  const need = budget + 1000;
  const policyWord =
    policyTimeoutMs === undefined
      ? `pullguard's default timeout ${formatDuration(budget)}`
      : `the policy's timeout ${formatDuration(budget)}`;
  const byDefault = raw === undefined ? " (containerd's default)" : '';
  if (limit < need) {
    return {
      status: 'FAIL',
      message:
        `per_verifier_timeout ${formatDuration(limit)}${raw === undefined ? byDefault : o}` +
        ` is below ${policyWord} + 1s: ` +
        'containerd kills pullguard before it answers and every slow pull fails with "failed to call verifier"',
      fix: `raise per_verifier_timeout to at least "${Math.ceil(need / 1000)}s", or lower timeout: in the policy`,
    };
  }
  return {
    status: 'ok',
    message:
      `per_verifier_timeout ${formatDuration(limit)}${byDefault} ` +
      `leaves pullguard's ${formatDuration(budget)} budget at least 1s`,
  };
}

function policyChecks(p: DoctorInput['policy'], binDir: string): Check[] {
  const out: Check[] = [];
  if (p.policy) {
    out.push({
      status: 'ok',
      message:
        `policy ${p.path} loads: mode ${p.policy.mode}, default ${p.policy.defaultAction}, ` +
        `timeout ${formatDuration(p.policy.timeoutMs)}, ${p.policy.rules.length} rule(s)`,
    });
    if (p.policy.mode === 'audit') {
      out.push({
        status: 'WARN',
        message: `policy ${p.path} is in audit mode: denials are logged, every pull is allowed`,
        fix: 'set mode: enforce once `pullguard log --would-deny --since 7d` shows nothing you want to keep pulling',
      });
    }
  } else {
    out.push({
      status: 'FAIL',
      message: `policy: ${p.error ?? `cannot load ${p.path}`}: pullguard denies every pull`,
      fix:
        `fix ${p.path} (check it with \`pullguard policy check\`); ` +
        'containerd passes its own PULLGUARD_POLICY, if any, to pullguard',
    });
  }
  const rel = relative(resolve(binDir), resolve(p.path));
  if (rel === '' || (!rel.startsWith('..') && !rel.startsWith('/'))) {
    out.push({
      status: 'FAIL',
      message:
        `policy ${p.path} is inside bin_dir ${binDir}: ` +
        'containerd executes it on every pull, which fails every pull',
      fix: 'move it to /etc/pullguard/policy.yaml (or point PULLGUARD_POLICY outside bin_dir)',
    });
  }
  return out;
}

export function formatCheck(c: Check): string {
  return `${c.status.padEnd(4)}  ${c.message}${c.fix ? `; fix: ${c.fix}` : ''}`;
}

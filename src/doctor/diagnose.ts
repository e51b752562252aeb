/**
 * `pullguard doctor`: the self-check for the node's containerd. The most common failure is not a bad
 * signature but verification silently switched OFF: a CRI setting that makes containerd fall back to
 * local pulls (which never call verifiers), an empty or missing bin_dir (containerd then allows every
 * pull), a README beside the executable (every pull fails), a containerd older than 2.1.
 *
 * `diagnose` is pure: it takes containerd's config files as already parsed (src/registry/hosts.ts
 * reads them, imports included), the bin_dir listing, the policy and the `containerd --version` output,
 * and returns one check per line. `runDoctor` (run.ts) is the thin I/O around it.
 *
 * The merge follows containerd 2.1 (checked against 2.1.9 with `containerd config dump`): files are
 * merged in load order (main, then imports breadth first), plugin tables key by key, a later value
 * winning; the configuration ends with the version of the last file that declares 2 or 3, and only
 * when that is 2 are the version 2 CRI keys (`plugins."io.containerd.grpc.v1.cri"`) migrated over
 * `plugins."io.containerd.cri.v1.images"` (containerd's plugins/cri/images configMigration).
 */
import { join, relative, resolve } from 'node:path';
import { formatDuration } from '../common/deadline.js';
import { DEFAULT_TIMEOUT_MS, type Policy } from '../policy/model.js';
import { DEFAULT_CONFIG_PATH, type ContainerdConfigFile } from '../registry/hosts.js';

export const DEFAULT_BIN_DIR = '/opt/containerd/image-verifier/bin';
const DEFAULT_MAX_VERIFIERS = 10;
const DEFAULT_PER_VERIFIER_TIMEOUT_MS = 10_000;

const CRI_V2 = 'io.containerd.grpc.v1.cri';
const IMAGES = 'io.containerd.cri.v1.images';
const BINDIR = 'io.containerd.image-verifier.v1.bindir';

export type Status = 'ok' | 'WARN' | 'FAIL';

export interface Check {
  readonly status: Status;
  readonly message: string;
  readonly fix?: string;
}

/** Where a value was set: the file and the key as written there (before any migration). */
export interface Origin {
  readonly file: string;
  readonly key: string;
}

export interface EffectiveConfig {
  readonly files: readonly string[];
  /** The config version containerd ends up with (3 unless the last file declaring one says 2). */
  readonly version: number;
  /** `plugins."io.containerd.cri.v1.images"` after merging and migration (only the keys set; no defaults). */
  readonly images: Readonly<Record<string, unknown>>;
  /** `plugins."io.containerd.image-verifier.v1.bindir"` as set (no defaults). */
  readonly bindir: Readonly<Record<string, unknown>>;
  readonly disabledPlugins: readonly string[];
  /** Where `images.<key>` / `bindir.<key>` came from (`key` dotted, e.g. `registry.mirrors`). */
  origin(plugin: 'images' | 'bindir', key: string): Origin | undefined;
  /** What the model itself has to say (files whose settings containerd ignores). */
  readonly notes: readonly Check[];
}

type Table = Record<string, unknown>;

const isTable = (v: unknown): v is Table => typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
const asTable = (v: unknown): Table => (isTable(v) ? v : {});

/** `plugins."io.containerd.grpc.v1.cri".containerd.discard_unpacked_layers` */
function displayKey(path: readonly string[]): string {
  const [plugin, ...rest] = path;
  const seg = (s: string) => (/^[A-Za-z0-9_-]+$/.test(s) ? s : JSON.stringify(s));
  return [`plugins.${JSON.stringify(plugin)}`, ...rest.map(seg)].join('.');
}

const originKey = (path: readonly string[]) => path.join('\u0000');

/** The keys migrated from `io.containerd.grpc.v1.cri` (top level) into the images plugin, in containerd 2.1. */
const MIGRATED_TOP = ['registry', 'image_decryption', 'max_concurrent_downloads', 'image_pull_progress_timeout', 'image_pull_with_sync_fs', 'stats_collect_period'];
/** …and from its `.containerd` table, only when that table has `runtimes` (as containerd 2.1.9 does). */
const MIGRATED_CONTAINERD = ['snapshotter', 'disable_snapshot_annotations', 'discard_unpacked_layers'];

/** Pure: the configuration containerd 2.1 builds from these files (in load order). */
export function effectiveConfig(files: readonly ContainerdConfigFile[]): EffectiveConfig {
  const plugins: Table = {};
  const origins = new Map<string, Origin>();
  const disabled = new Set<string>();
  const notes: Check[] = [];
  let version = 3;
  const versionOf = (doc: Table) => (typeof doc.version === 'number' ? doc.version : 1);

  const merge = (dst: Table, src: Table, path: string[], file: string): void => {
    for (const [k, v] of Object.entries(src)) {
      const p = [...path, k];
      origins.set(originKey(p), { file, key: displayKey(p) });
      if (isTable(v)) {
        if (!isTable(dst[k])) dst[k] = {};
        merge(dst[k] as Table, v, p, file);
      } else {
        dst[k] = v;
      }
    }
  };

  for (const f of files) {
    const v = versionOf(f.doc);
    let filePlugins = asTable(f.doc.plugins);
    if (v < 2) {
      // Version 1 names the CRI plugin `cri`; containerd renames it when it migrates the file.
      if ('cri' in filePlugins) {
        const { cri, ...others } = filePlugins;
        filePlugins = { ...others, [CRI_V2]: cri };
      }
      notes.push({ status: 'WARN', message: `${f.path} has no version line (config version 1): checked as if it were version 2`, fix: 'add "version = 2" or rewrite it with `containerd config migrate`' });
    } else {
      version = v;
    }
    merge(plugins, filePlugins, [], f.path);
    if (Array.isArray(f.doc.disabled_plugins)) for (const d of f.doc.disabled_plugins) if (typeof d === 'string') disabled.add(d);
  }

  const v2 = asTable(plugins[CRI_V2]);
  if (version < 3) {
    const images = (plugins[IMAGES] = asTable(plugins[IMAGES]));
    const move = (from: string[], to: string[], value: unknown) => {
      const toKey = originKey([IMAGES, ...to]);
      for (const k of [...origins.keys()]) if (k === toKey || k.startsWith(`${toKey}\u0000`)) origins.delete(k);
      const fromKey = originKey([CRI_V2, ...from]);
      for (const [k, o] of [...origins]) {
        if (k === fromKey || k.startsWith(`${fromKey}\u0000`)) origins.set(toKey + k.slice(fromKey.length), o);
      }
      let t = images;
      for (const seg of to.slice(0, -1)) t = (t[seg] = asTable(t[seg]));
      t[to[to.length - 1]!] = structuredClone(value);
    };
    if ('sandbox_image' in v2) move(['sandbox_image'], ['pinned_images', 'sandbox'], v2.sandbox_image);
    for (const key of MIGRATED_TOP) if (key in v2) move([key], [key], v2[key]);
    const ctd = asTable(v2.containerd);
    if ('runtimes' in ctd) for (const key of MIGRATED_CONTAINERD) if (key in ctd) move(['containerd', key], [key], ctd[key]);
  } else {
    // The last file declaring a version is version 3: containerd 2.1 migrates nothing, so every
    // version 2 CRI setting is ignored ("Ignoring unknown key in TOML for plugin").
    for (const f of files) {
      const t = asTable(asTable(f.doc.plugins)[CRI_V2]);
      if (versionOf(f.doc) !== 2 || Object.keys(t).length === 0) continue;
      const keys = Object.keys(t).sort();
      // Verification works, but the node silently loses its own runtime settings (SystemdCgroup...).
      notes.push({
        status: 'FAIL',
        message: `${f.path} is config version 2 but the last file loaded is version 3: containerd 2.1 migrates nothing and ignores its plugins."${CRI_V2}" settings (${keys.join(', ')}); a containerd that migrates each file before merging would apply them`,
        fix: 'write every file with the same version: for a version 2 main file use containerd-config/pullguard-v2.toml (install/install.sh picks it), or migrate the main file (`containerd config migrate`)',
      });
    }
  }

  return {
    files: files.map((f) => f.path),
    version,
    images: asTable(plugins[IMAGES]),
    bindir: asTable(plugins[BINDIR]),
    disabledPlugins: [...disabled],
    origin: (plugin, key) => origins.get(originKey([plugin === 'images' ? IMAGES : BINDIR, ...key.split('.')])),
    notes,
  };
}

export type BinDirEntryType = 'executable' | 'file' | 'directory' | 'other' | 'broken';

export type BinDirListing =
  | { readonly kind: 'missing' }
  | { readonly kind: 'unreadable'; readonly error: string }
  | { readonly kind: 'entries'; readonly entries: readonly { readonly name: string; readonly type: BinDirEntryType }[] };

export interface DoctorInput {
  /** containerd's config files as loaded (main first), or why they could not be. */
  readonly config:
    | { readonly path: string; readonly files: readonly ContainerdConfigFile[] }
    | { readonly path: string; readonly error: string; readonly missing: boolean; readonly explicit: boolean };
  readonly binDir: { readonly path: string; readonly fromFlag: boolean; readonly listing: BinDirListing };
  readonly policy: { readonly path: string; readonly policy?: Pick<Policy, 'timeoutMs' | 'mode' | 'defaultAction' | 'rules'>; readonly error?: string };
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
    eff = effectiveConfig(c.files);
    const imports = c.files.length - 1;
    checks.push({ status: 'ok', message: `containerd config ${c.path}${imports > 0 ? ` and ${imports} imported file(s)` : ''} read (config version ${eff.version} after merging)` });
    checks.push(...eff.notes);
  } else if (c.missing && !c.explicit) {
    eff = effectiveConfig([]);
    checks.push({ status: 'WARN', message: `no containerd config at ${c.path}: containerd runs on its defaults`, fix: 'install containerd-config/pullguard.toml and import it (install/install.sh), or pass --containerd-config PATH' });
  } else {
    checks.push({ status: 'FAIL', message: `cannot check containerd's settings: ${c.error}`, fix: c.missing ? 'pass --containerd-config PATH, or fix registry.containerdConfig in the policy' : 'fix the file: containerd does not start with it either' });
  }

  if (eff) {
    if (eff.disabledPlugins.includes(BINDIR)) {
      checks.push({ status: 'FAIL', message: `disabled_plugins lists "${BINDIR}": containerd runs no verifier, every pull is allowed`, fix: `remove "${BINDIR}" from disabled_plugins` });
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
  if (!c.binary) return { status: 'WARN', message: 'containerd is not on PATH: could not check its version (2.1 or later is needed: CRI pulls of older releases never call verifiers)', fix: 'run `containerd --version` on the node' };
  if (c.output === undefined) return { status: 'WARN', message: `could not run ${c.binary} --version: ${c.error ?? 'no output'}`, fix: 'run `containerd --version` yourself: 2.1 or later is needed' };
  const m = /(?:^|\s)v?(\d+)\.(\d+)(?:\.(\d+))?/.exec(c.output);
  const line = c.output.trim().split('\n')[0] ?? '';
  if (!m) return { status: 'WARN', message: `cannot read a version in \`${c.binary} --version\`: ${line}`, fix: 'check that it is containerd 2.1 or later' };
  const [major, minor] = [Number(m[1]), Number(m[2])];
  const v = `${m[1]}.${m[2]}${m[3] !== undefined ? `.${m[3]}` : ''}`;
  if (major < 2 || (major === 2 && minor < 1)) {
    return { status: 'FAIL', message: `containerd ${v}: CRI (kubelet) pulls of containerd before 2.1 never call image verifiers`, fix: 'upgrade containerd to 2.1 or later' };
  }
  return { status: 'ok', message: `containerd ${v} (2.1 or later: CRI pulls can call verifiers)` };
}

interface Trigger {
  readonly key: string;
  readonly fires: (v: unknown) => boolean;
  readonly want: string;
  readonly fix?: string;
}

const nonEmptyTable = (v: unknown) => isTable(v) && Object.keys(v).length > 0;

/**
 * containerd 2.1's CheckLocalImagePullConfigs (internal/cri/config): every setting it treats as
 * incompatible with the transfer service (Linux).
 */
const TRIGGERS: readonly Trigger[] = [
  { key: 'use_local_image_pull', fires: (v) => v === true, want: 'false' },
  { key: 'discard_unpacked_layers', fires: (v) => v === true, want: 'false' },
  { key: 'disable_snapshot_annotations', fires: (v) => v === false, want: 'true' },
  { key: 'registry.mirrors', fires: nonEmptyTable, want: 'empty', fix: 'move the mirrors to hosts.toml files under registry.config_path and delete the table' },
  { key: 'registry.configs', fires: nonEmptyTable, want: 'empty', fix: 'move TLS and auth settings to hosts.toml files under registry.config_path (credentials: a docker config.json) and delete the table' },
  { key: 'registry.auths', fires: nonEmptyTable, want: 'empty', fix: 'delete the table; credentials go in a docker config.json or kubelet image pull secrets' },
  { key: 'max_concurrent_downloads', fires: (v) => v !== undefined && v !== 3, want: '3', fix: 'set it to 3 (or remove it) and set plugins."io.containerd.transfer.v1.local".max_concurrent_downloads instead' },
  { key: 'image_pull_with_sync_fs', fires: (v) => v === true, want: 'false' },
];

function valueAt(t: Table, key: string): unknown {
  let v: unknown = t;
  for (const seg of key.split('.')) v = isTable(v) ? v[seg] : undefined;
  return v;
}

function localPullChecks(eff: EffectiveConfig): Check[] {
  const out: Check[] = [];
  for (const t of TRIGGERS) {
    const value = valueAt(eff.images, t.key);
    if (!t.fires(value)) continue;
    const o = eff.origin('images', t.key);
    const shown = isTable(value) ? `[${Object.keys(value).join(', ')}]` : JSON.stringify(value);
    out.push({
      status: 'FAIL',
      message: `${t.key} = ${shown}${where(o)}: CRI falls back to local pulls, which never run pullguard (containerd logs "Falling back to local image pull mode")`,
      fix: t.fix ?? `set ${o?.key ?? `plugins."${IMAGES}".${t.key}`} = ${t.want} (containerd-config/pullguard.toml, or kind/cluster.yaml's patch on Kind)`,
    });
  }
  if (out.length === 0) {
    out.push({ status: 'ok', message: `no CRI setting forces local pulls (${TRIGGERS.map((t) => t.key).join(', ')}): kubelet pulls go through the transfer service and its verifiers` });
  }
  return out;
}

function configPathCheck(eff: EffectiveConfig): Check {
  const v = valueAt(eff.images, 'registry.config_path');
  const o = eff.origin('images', 'registry.config_path');
  const fix = `set plugins."${IMAGES}".registry.config_path = "/etc/containerd/certs.d" (plugins."${CRI_V2}".registry in a version 2 file)`;
  if (typeof v !== 'string' || v === '') {
    return { status: 'WARN', message: `registry.config_path is not set: containerd uses ${DEFAULT_CONFIG_PATH}, which transfer-service pulls (2.1 - 2.3) treat as one directory, so every hosts.toml is ignored`, fix };
  }
  if (v.includes(':')) {
    return { status: 'WARN', message: `registry.config_path = "${v}"${where(o)} is a path list: transfer-service pulls (2.1 - 2.3) treat it as one directory, so every hosts.toml is ignored`, fix };
  }
  return { status: 'ok', message: `registry.config_path = "${v}" (one directory: containerd and pullguard read hosts.toml from it)` };
}

function binDirChecks(b: DoctorInput['binDir'], eff: EffectiveConfig | undefined): Check[] {
  const src = b.fromFlag ? ' (--bin-dir)' : eff?.origin('bindir', 'bin_dir') ? where(eff.origin('bindir', 'bin_dir')) : " (containerd's default)";
  const install = 'install dist/pullguard there alone (install/install.sh)';
  if (b.listing.kind === 'missing') {
    return [{ status: 'FAIL', message: `bin_dir ${b.path}${src} does not exist: containerd allows every pull without verification`, fix: install }];
  }
  if (b.listing.kind === 'unreadable') {
    return [{ status: 'FAIL', message: `bin_dir ${b.path}${src} cannot be listed (${b.listing.error}): containerd fails every pull`, fix: `make ${b.path} a directory containerd can read, holding only pullguard` }];
  }
  const entries = b.listing.entries;
  if (entries.length === 0) {
    return [{ status: 'FAIL', message: `bin_dir ${b.path}${src} is empty: containerd allows every pull without verification`, fix: install }];
  }
  const out: Check[] = [];
  const names = entries.map((e) => e.name).join(', ');
  const bad = entries.filter((e) => e.type !== 'executable');
  for (const e of bad) {
    const what = e.type === 'file' ? 'is not executable' : e.type === 'directory' ? 'is a directory' : e.type === 'broken' ? 'is a broken link' : 'is not a regular file';
    out.push({ status: 'FAIL', message: `${join(b.path, e.name)} ${what}: containerd executes every entry of bin_dir, the exec fails and blocks EVERY pull ("failed to call verifier")`, fix: `move it out of ${b.path}` });
  }
  const pg = entries.filter((e) => e.name.includes('pullguard'));
  if (pg.length === 0) {
    out.push({ status: 'WARN', message: `no pullguard in bin_dir ${b.path} (entries: ${names}): pullguard is not one of containerd's verifiers`, fix: install });
  } else if (bad.length === 0) {
    out.push({ status: 'ok', message: `bin_dir ${b.path}${src} holds ${entries.length} executable(s): ${names}` });
  }
  const maxV = eff?.bindir.max_verifiers;
  const max = typeof maxV === 'number' ? maxV : DEFAULT_MAX_VERIFIERS;
  const maxWhere = where(eff?.origin('bindir', 'max_verifiers'));
  if (max >= 0 && entries.length > max) {
    const skipped = entries.slice(max).map((e) => e.name).join(', ');
    out.push({
      status: 'FAIL',
      message: max === 0 ? `max_verifiers = 0${maxWhere}: containerd skips every verifier and allows every pull` : `bin_dir has ${entries.length} entries, more than max_verifiers = ${max}${maxWhere}: containerd skips ${skipped} with only a warning`,
      fix: `keep only pullguard in ${b.path}, or raise max_verifiers (default ${DEFAULT_MAX_VERIFIERS})`,
    });
  }
  return out;
}

/** Go's time.ParseDuration, in milliseconds; undefined when malformed. */
export function parseGoDuration(s: string): number | undefined {
  const t = s.trim();
  if (t === '0' || t === '+0' || t === '-0') return 0;
  const m = /^([+-]?)((?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+)$/.exec(t);
  if (!m) return undefined;
  const unit: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, μs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let ms = 0;
  for (const p of m[2]!.matchAll(/(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/g)) ms += Number(p[1]) * unit[p[2]!]!;
  return m[1] === '-' ? -ms : ms;
}

function timeoutCheck(eff: EffectiveConfig | undefined, policyTimeoutMs: number | undefined): Check {
  const budget = policyTimeoutMs ?? DEFAULT_TIMEOUT_MS;
  const raw = eff?.bindir.per_verifier_timeout;
  const o = where(eff?.origin('bindir', 'per_verifier_timeout'));
  let limit = DEFAULT_PER_VERIFIER_TIMEOUT_MS;
  if (raw !== undefined) {
    const parsed = typeof raw === 'string' ? parseGoDuration(raw) : undefined;
    if (parsed === undefined) {
      return { status: 'FAIL', message: `per_verifier_timeout = ${JSON.stringify(raw)}${o} is not a duration`, fix: 'write it as a string such as "10s"' };
    }
    limit = parsed;
  }
  const need = budget + 1000;
  const policyWord = policyTimeoutMs === undefined ? `pullguard's default timeout ${formatDuration(budget)}` : `the policy's timeout ${formatDuration(budget)}`;
  if (limit < need) {
    return {
      status: 'FAIL',
      message: `per_verifier_timeout ${formatDuration(limit)}${raw === undefined ? " (containerd's default)" : o} is below ${policyWord} + 1s: containerd kills pullguard before it answers and every slow pull fails with "failed to call verifier"`,
      fix: `raise per_verifier_timeout to at least "${Math.ceil(need / 1000)}s", or lower timeout: in the policy`,
    };
  }
  return { status: 'ok', message: `per_verifier_timeout ${formatDuration(limit)}${raw === undefined ? " (containerd's default)" : ''} leaves pullguard's ${formatDuration(budget)} budget at least 1s` };
}

function policyChecks(p: DoctorInput['policy'], binDir: string): Check[] {
  const out: Check[] = [];
  if (p.policy) {
    out.push({ status: 'ok', message: `policy ${p.path} loads: mode ${p.policy.mode}, default ${p.policy.defaultAction}, timeout ${formatDuration(p.policy.timeoutMs)}, ${p.policy.rules.length} rule(s)` });
    if (p.policy.mode === 'audit') {
      out.push({
        status: 'WARN',
        message: `policy ${p.path} is in audit mode: denials are logged, every pull is allowed`,
        fix: 'set mode: enforce once `pullguard log --would-deny --since 7d` shows nothing you want to keep pulling',
      });
    }
  } else {
    out.push({ status: 'FAIL', message: `policy: ${p.error ?? `cannot load ${p.path}`}: pullguard denies every pull`, fix: `fix ${p.path} (check it with \`pullguard policy check\`); containerd passes its own PULLGUARD_POLICY, if any, to pullguard` });
  }
  const rel = relative(resolve(binDir), resolve(p.path));
  if (rel === '' || (!rel.startsWith('..') && !rel.startsWith('/'))) {
    out.push({ status: 'FAIL', message: `policy ${p.path} is inside bin_dir ${binDir}: containerd executes it on every pull, which fails every pull`, fix: 'move it to /etc/pullguard/policy.yaml (or point PULLGUARD_POLICY outside bin_dir)' });
  }
  return out;
}

export function formatCheck(c: Check): string {
  return `${c.status.padEnd(4)}  ${c.message}${c.fix ? `; fix: ${c.fix}` : ''}`;
}

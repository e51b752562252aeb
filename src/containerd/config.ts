/**
 * The one model of containerd's configuration, shared by discovery (registry/hosts.ts: which
 * registry.config_path the pull used), doctor (is verification really on) and the node installer.
 *
 * It follows containerd 2.1.9 (cmd/containerd/server/config/config.go LoadConfig, resolveImports,
 * mergeConfig; the CRI images plugin's configMigration) and is checked against the real binary's
 * `containerd config dump` in src/containerd/config.test.ts:
 *  - files load breadth first: the main file, then its imports in order, then theirs; each path once.
 *    An import is cleaned, made relative to the importing file's directory, and expanded with Go's
 *    filepath.Glob only when it contains `*` (sorted per directory; no match is no file).
 *  - a file that does not exist stops the loading there, silently: containerd ignores the
 *    os.IsNotExist error LoadConfig returns and runs on what it merged so far. A missing main file
 *    is containerd's defaults.
 *  - a file without a `version` line (or `version = 1`) is migrated to the version in effect when it
 *    is loaded (3 before any file declared one): plugin names of version 1 (`cri`, ...) are renamed,
 *    nothing else. So such a file's version 2 CRI settings are ignored unless a version 2 file came
 *    before it.
 *  - files merge into one document, plugin tables key by key at every depth, a later value winning
 *    (false, 0 and "" too); the version is the last one declared (or migrated to).
 *  - only when that version is 2 are the version 2 CRI keys (`plugins."io.containerd.grpc.v1.cri"`)
 *    moved over `plugins."io.containerd.cri.v1.images"`; with version 3 they are ignored.
 * containerd 2.2 and later also import /etc/containerd/conf.d/*.toml by default (containerd#12323):
 * `defaultImports` models that.
 */
import { readdirSync, statSync } from 'node:fs';
import { posix } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { PullguardError } from '../common/errors.js';
import { FileReadError, readRegularText } from '../common/files.js';

export const DEFAULT_CONTAINERD_CONFIG = '/etc/containerd/config.toml';
/**
 * containerd 2.x's Linux default for CRI `registry.config_path`. The transfer path (2.1-2.3) passes it to
 * `HostDirFromRoot` as ONE directory, so by default it matches nothing; we copy that on purpose.
 */
export const DEFAULT_CONFIG_PATH = '/etc/containerd/certs.d:/etc/docker/certs.d';
export const DEFAULT_BIN_DIR = '/opt/containerd/image-verifier/bin';
export const DEFAULT_MAX_VERIFIERS = 10;
export const DEFAULT_PER_VERIFIER_TIMEOUT = '10s';
/** What containerd 2.2+ imports with no `imports` line at all (containerd#12323). */
export const CONF_D_GLOB = '/etc/containerd/conf.d/*.toml';

export const CRI_V2 = 'io.containerd.grpc.v1.cri';
export const IMAGES = 'io.containerd.cri.v1.images';
export const BINDIR = 'io.containerd.image-verifier.v1.bindir';
/** The highest config version containerd 2.1 knows (version.ConfigVersion). */
const CONFIG_VERSION = 3;
const MAX_CONFIG_BYTES = 4 * 1024 * 1024;
const MAX_FILES = 256;

export type Table = Record<string, unknown>;
export const isTable = (v: unknown): v is Table =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
export const asTable = (v: unknown): Table => (isTable(v) ? v : {});

/** One parsed containerd config file. */
export interface ContainerdConfigFile {
  readonly path: string;
  readonly doc: Table;
}

/** How the model reads files: host paths in, text out; `undefined` when the file does not exist. */
export interface ConfigReader {
  read(path: string): string | undefined;
  /** Directory entries, or undefined when it is not a readable directory. */
  list(dir: string): string[] | undefined;
}

/**
 * Reads host paths under `root` ("/" on the node itself, the host's / mounted at e.g. /host in a
 * DaemonSet) with the one safe reader (common/files.ts): only regular files, with a byte cap, so a
 * FIFO or a device never hangs a pull.
 */
export function hostReader(root = '/'): ConfigReader {
  const at = (p: string) => (root === '/' ? p : posix.join(root, p));
  return {
    read(path) {
      try {
        return readRegularText(at(path), {
          maxBytes: MAX_CONFIG_BYTES,
          code: 'CONTAINERD_CONFIG',
          what: 'containerd config',
        });
      } catch (e) {
        if (e instanceof FileReadError && e.missing) return undefined;
        if (e instanceof FileReadError) throw configError(path, `cannot read containerd config ${path}: ${e.why}`);
        throw e;
      }
    },
    list(dir) {
      try {
        if (!statSync(at(dir)).isDirectory()) return undefined;
        return readdirSync(at(dir));
      } catch {
        return undefined;
      }
    },
  };
}

const configError = (path: string, message: string) => new PullguardError('CONTAINERD_CONFIG', message, { path });

/** Parses one file's text; TOML errors keep smol-toml's row and column. */
export function parseConfigText(text: string, path: string): Table {
  let doc: unknown;
  try {
    doc = parseToml(text);
  } catch (e) {
    const err = e as Error & { line?: number; column?: number };
    const at = typeof err.line === 'number' ? ` at line ${err.line}, column ${err.column ?? '?'}` : '';
    const why = (err.message.split('\n')[0] ?? '').replace(/^Invalid TOML document: /, '');
    throw new PullguardError('CONTAINERD_CONFIG', `containerd config ${path} is not valid TOML${at}: ${why}`, {
      path,
      row: err.line,
      column: err.column,
    });
  }
  const t = asTable(doc);
  if (t.version !== undefined && !Number.isInteger(t.version))
    throw configError(path, `containerd config ${path}: version must be an integer`);
  if (t.imports !== undefined && !(Array.isArray(t.imports) && t.imports.every((i) => typeof i === 'string'))) {
    throw configError(path, `containerd config ${path}: imports must be a list of strings`);
  }
  return t;
}

export interface LoadedConfig {
  /** The main file (host path). */
  readonly path: string;
  /** Every file containerd merges, in load order (empty when the main file does not exist). */
  readonly files: readonly ContainerdConfigFile[];
  /** The first file that did not exist: containerd stopped loading there. */
  readonly missing?: { readonly path: string; readonly importedBy?: string };
}

export interface LoadOptions {
  readonly reader?: ConfigReader;
  /** Imports containerd adds by itself: `[CONF_D_GLOB]` on containerd 2.2+. */
  readonly defaultImports?: readonly string[];
}

/** containerd's LoadConfig: which files, in which order. Throws CONTAINERD_CONFIG for unreadable or invalid files. */
export function loadConfig(path: string, opts: LoadOptions = {}): LoadedConfig {
  const reader = opts.reader ?? hostReader();
  const files: ContainerdConfigFile[] = [];
  const pending: { path: string; importedBy?: string }[] = [{ path }];
  const loaded = new Set<string>();
  let first = true;
  while (pending.length > 0) {
    const next = pending.shift()!;
    if (loaded.has(next.path)) continue;
    if (files.length >= MAX_FILES)
      throw configError(path, `containerd config ${path} imports more than ${MAX_FILES} files`);
    const text = reader.read(next.path);
    if (text === undefined) return { path, files, missing: next };
    const doc = parseConfigText(text, next.path);
    files.push({ path: next.path, doc });
    loaded.add(next.path);
    const imports = [...((doc.imports as string[] | undefined) ?? []), ...(first ? (opts.defaultImports ?? []) : [])];
    first = false;
    for (const p of resolveImports(next.path, imports, reader)) pending.push({ path: p, importedBy: next.path });
  }
  return { path, files };
}

/** resolveImports: clean, relative to the parent's directory, globbed only when it contains `*`. */
export function resolveImports(parent: string, imports: readonly string[], reader: ConfigReader): string[] {
  const out: string[] = [];
  for (const entry of imports) {
    let p = posix.normalize(entry);
    if (!posix.isAbsolute(p)) p = posix.join(posix.dirname(parent), p);
    if (p.length > 1) p = p.replace(/\/+$/, '');
    if (p.includes('*')) out.push(...glob(p, reader));
    else out.push(p);
  }
  return out;
}

const hasMeta = (s: string) => /[*?[\\]/.test(s);

/** Go's filepath.Glob on Unix: meta characters in any component, names sorted per directory. */
export function glob(pattern: string, reader: ConfigReader): string[] {
  if (!hasMeta(pattern))
    return reader.read(pattern) !== undefined || reader.list(pattern) !== undefined ? [pattern] : [];
  const dir = posix.dirname(pattern);
  const name = posix.basename(pattern);
  const dirs = hasMeta(dir) && dir !== pattern ? glob(dir, reader) : [dir];
  const re = globRegExp(name, pattern);
  const out: string[] = [];
  for (const d of dirs) {
    const names = reader.list(d);
    if (!names) continue;
    for (const n of names.sort()) if (re.test(n)) out.push(posix.join(d, n));
  }
  return out;
}

/** filepath.Match for one name: `*`, `?`, `[...]` (with `^` negation and ranges), `\` escapes. */
export function globRegExp(name: string, whole = name): RegExp {
  let re = '';
  for (let i = 0; i < name.length; i++) {
    const c = name[i]!;
    if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '\\') {
      if (i + 1 >= name.length) throw configError(whole, `bad glob pattern in imports: ${JSON.stringify(whole)}`);
      re += escapeRe(name[++i]!);
    } else if (c === '[') {
      const end = name.indexOf(']', i + 2);
      if (end < 0) throw configError(whole, `bad glob pattern in imports: ${JSON.stringify(whole)}`);
      let body = name.slice(i + 1, end);
      const negate = body.startsWith('^');
      if (negate) body = body.slice(1);
      re += `[${negate ? '^' : ''}${body.replace(/[\]\\^]/g, '\\$&')}]`;
      i = end;
    } else re += escapeRe(c);
  }
  return new RegExp(`^${re}$`, 's');
}

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

/** Where a value was set: the file and the key as written there (before any migration). */
export interface Origin {
  readonly file: string;
  readonly key: string;
}

/** What the model itself has to say about the files (settings containerd ignores, files it never read). */
export interface ConfigNote {
  readonly status: 'WARN' | 'FAIL';
  readonly message: string;
  readonly fix?: string;
}

export interface EffectiveConfig {
  readonly files: readonly string[];
  /** The config version containerd ends up with (3 unless the last file declaring one says 2). */
  readonly version: number;
  /** Every plugin table after merging and migration (only the keys set; no defaults). */
  readonly plugins: Readonly<Table>;
  /** `plugins."io.containerd.cri.v1.images"` after merging and migration (only the keys set; no defaults). */
  readonly images: Readonly<Table>;
  /** `plugins."io.containerd.image-verifier.v1.bindir"` as set (no defaults). */
  readonly bindir: Readonly<Table>;
  readonly disabledPlugins: readonly string[];
  /** Where `images.<key>` / `bindir.<key>` came from (`key` dotted, e.g. `registry.mirrors`). */
  origin(plugin: 'images' | 'bindir', key: string): Origin | undefined;
  readonly notes: readonly ConfigNote[];
}

/** `plugins."io.containerd.grpc.v1.cri".containerd.discard_unpacked_layers` */
function displayKey(path: readonly string[]): string {
  const [plugin, ...rest] = path;
  const seg = (s: string) => (/^[A-Za-z0-9_-]+$/.test(s) ? s : JSON.stringify(s));
  return [`plugins.${JSON.stringify(plugin)}`, ...rest.map(seg)].join('.');
}

const originKey = (path: readonly string[]) => path.join('\u0000');

/** The keys migrated from `io.containerd.grpc.v1.cri` (top level) into the images plugin, in containerd 2.1. */
const MIGRATED_TOP = [
  'registry',
  'image_decryption',
  'max_concurrent_downloads',
  'image_pull_progress_timeout',
  'image_pull_with_sync_fs',
  'stats_collect_period',
];
/** ...and from its `.containerd` table, only when that table has `runtimes` (as containerd 2.1.9 does). */
const MIGRATED_CONTAINERD = ['snapshotter', 'disable_snapshot_annotations', 'discard_unpacked_layers'];

/** Version 1 plugin names (v1MigratePluginName). */
const V1_PLUGINS: Readonly<Record<string, string>> = {
  cri: CRI_V2,
  cgroups: 'io.containerd.monitor.v1.cgroups',
  linux: 'io.containerd.runtime.v1.linux',
  scheduler: 'io.containerd.gc.v1.scheduler',
  bolt: 'io.containerd.metadata.v1.bolt',
  task: 'io.containerd.runtime.v2.task',
  opt: 'io.containerd.internal.v1.opt',
  restart: 'io.containerd.internal.v1.restart',
  tracing: 'io.containerd.internal.v1.tracing',
  otlp: 'io.containerd.tracing.processor.v1.otlp',
  aufs: 'io.containerd.snapshotter.v1.aufs',
  btrfs: 'io.containerd.snapshotter.v1.btrfs',
  devmapper: 'io.containerd.snapshotter.v1.devmapper',
  native: 'io.containerd.snapshotter.v1.native',
  overlayfs: 'io.containerd.snapshotter.v1.overlayfs',
  zfs: 'io.containerd.snapshotter.v1.zfs',
};

function v1PluginName(name: string): string {
  if (name.includes('.')) return name;
  if (V1_PLUGINS[name]) return V1_PLUGINS[name];
  if (name.endsWith('-service')) return `io.containerd.service.v1.${name}`;
  if (name === 'windows' || name === 'windows-lcow') return `io.containerd.snapshotter.v1.${name}`;
  return `io.containerd.grpc.v1.${name}`;
}

/** The version a file declares (0 without a `version` line). */
export const declaredVersion = (doc: Table): number => (typeof doc.version === 'number' ? doc.version : 0);

/** Pure: the configuration containerd 2.1 builds from these files (in load order). */
export function effectiveConfig(
  files: readonly ContainerdConfigFile[],
  missing?: LoadedConfig['missing'],
): EffectiveConfig {
  const plugins: Table = {};
  const origins = new Map<string, Origin>();
  const disabled: string[] = [];
  const notes: ConfigNote[] = [];
  let version = CONFIG_VERSION;
  /** Each file's version after LoadConfig's own migration of version 0/1 files. */
  const versions: number[] = [];

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
    let v = declaredVersion(f.doc);
    let filePlugins = asTable(f.doc.plugins);
    let fileDisabled = Array.isArray(f.doc.disabled_plugins)
      ? f.doc.disabled_plugins.filter((d): d is string => typeof d === 'string')
      : [];
    if (v < 2) {
      // MigrateConfigTo(out.Version): version 1 names become URIs; no plugin migration runs.
      filePlugins = Object.fromEntries(Object.entries(filePlugins).map(([k, val]) => [v1PluginName(k), val]));
      fileDisabled = fileDisabled.map(v1PluginName);
      v = version;
    }
    if (v > CONFIG_VERSION) {
      throw configError(
        f.path,
        `containerd config ${f.path}: expected containerd config version equal to or less than 3, got ${v}`,
      );
    }
    version = v;
    versions.push(v);
    merge(plugins, filePlugins, [], f.path);
    for (const d of fileDisabled) if (!disabled.includes(d)) disabled.push(d);
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
      for (const seg of to.slice(0, -1)) t = t[seg] = asTable(t[seg]);
      t[to[to.length - 1]!] = structuredClone(value);
    };
    if ('sandbox_image' in v2) move(['sandbox_image'], ['pinned_images', 'sandbox'], v2.sandbox_image);
    for (const key of MIGRATED_TOP) if (key in v2) move([key], [key], v2[key]);
    const ctd = asTable(v2.containerd);
    if ('runtimes' in ctd)
      for (const key of MIGRATED_CONTAINERD) if (key in ctd) move(['containerd', key], [key], ctd[key]);
  } else {
    // The configuration ends as version 3: containerd 2.1 migrates nothing, so every version 2 CRI
    // setting is ignored ("Ignoring unknown key in TOML for plugin").
    files.forEach((f, i) => {
      const raw = asTable(f.doc.plugins);
      const t = asTable(raw[CRI_V2] ?? (declaredVersion(f.doc) < 2 ? raw.cri : undefined));
      if (Object.keys(t).length === 0) return;
      const keys = Object.keys(t).sort().join(', ');
      const declared = declaredVersion(f.doc);
      // Verification may work, but the node silently loses its own runtime settings (SystemdCgroup...).
      notes.push({
        status: 'FAIL',
        message:
          declared >= 2
            ? `${f.path} is config version ${declared} but the last file loaded is version 3: containerd 2.1 ` +
              `migrates nothing and ignores its plugins."${CRI_V2}" settings (${keys}); a containerd that migrates ` +
              `each file before merging would apply them`
            : `${f.path} has no version line: containerd 2.1 reads it as version ${versions[i]} (the version in ` +
              `effect when it is loaded) and ignores its version 2 CRI settings (${keys})`,
        fix:
          declared >= 2
            ? 'write every file with the same version: for a version 2 main file use ' +
              'containerd-config/pullguard-v2.toml (`pullguard node install` picks it), or migrate the main file ' +
              '(`containerd config migrate`)'
            : 'add "version = 2" to it (its settings use version 2 names), or rewrite it with `containerd config ' +
              'migrate`',
      });
    });
  }
  if (missing?.importedBy) {
    notes.push({
      status: 'WARN',
      message:
        `${missing.path} (imported by ${missing.importedBy}) does not exist: containerd 2.1 stops reading its ` +
        `configuration there and silently ignores every file it would have loaded after it`,
      fix: `restore ${missing.path} or remove it from imports in ${missing.importedBy}`,
    });
  }

  return {
    files: files.map((f) => f.path),
    version,
    plugins,
    images: asTable(plugins[IMAGES]),
    bindir: asTable(plugins[BINDIR]),
    disabledPlugins: disabled,
    origin: (plugin, key) => origins.get(originKey([plugin === 'images' ? IMAGES : BINDIR, ...key.split('.')])),
    notes,
  };
}

/** A dotted key's value in a table (`registry.config_path`). */
export function valueAt(t: Readonly<Table>, key: string): unknown {
  let v: unknown = t;
  for (const seg of key.split('.')) v = isTable(v) ? v[seg] : undefined;
  return v;
}

/** CRI `registry.config_path` as configured (undefined when unset or empty). */
export function registryConfigPath(eff: EffectiveConfig): string | undefined {
  const v = valueAt(eff.images, 'registry.config_path');
  if (v !== undefined && typeof v !== 'string') {
    const o = eff.origin('images', 'registry.config_path');
    throw new PullguardError(
      'CONTAINERD_CONFIG',
      `containerd config ${o?.file ?? eff.files[0] ?? ''}: registry.config_path must be a string`,
    );
  }
  return v === '' ? undefined : v;
}

/**
 * The settings CheckLocalImagePullConfigs (containerd 2.1, Linux) treats as incompatible with the
 * transfer service: any one of them makes CRI pulls local, and local pulls never call verifiers.
 */
export interface LocalPullTrigger {
  readonly key: string;
  readonly fires: (v: unknown) => boolean;
  readonly want: string;
  readonly fix?: string;
}

const nonEmptyTable = (v: unknown) => isTable(v) && Object.keys(v).length > 0;

/** containerd 2.1's CheckLocalImagePullConfigs (internal/cri/config), Linux. */
export const LOCAL_PULL_TRIGGERS: readonly LocalPullTrigger[] = [
  { key: 'use_local_image_pull', fires: (v) => v === true, want: 'false' },
  { key: 'discard_unpacked_layers', fires: (v) => v === true, want: 'false' },
  { key: 'disable_snapshot_annotations', fires: (v) => v === false, want: 'true' },
  {
    key: 'registry.mirrors',
    fires: nonEmptyTable,
    want: 'empty',
    fix: 'move the mirrors to hosts.toml files under registry.config_path and delete the table',
  },
  {
    key: 'registry.configs',
    fires: nonEmptyTable,
    want: 'empty',
    fix:
      'move TLS and auth settings to hosts.toml files under registry.config_path (credentials: a docker ' +
      'config.json) and delete the table',
  },
  {
    key: 'registry.auths',
    fires: nonEmptyTable,
    want: 'empty',
    fix: 'delete the table; credentials go in a docker config.json or kubelet image pull secrets',
  },
  {
    key: 'max_concurrent_downloads',
    fires: (v) => v !== undefined && v !== 3,
    want: '3',
    fix:
      'set it to 3 (or remove it) and set plugins."io.containerd.transfer.v1.local".max_concurrent_downloads ' +
      'instead',
  },
  { key: 'image_pull_with_sync_fs', fires: (v) => v === true, want: 'false' },
];

/**
 * The installer's decisions, pure: which drop-in (its version must be the one containerd's config is
 * in), whether the main config.toml needs the import at all (an existing glob, a nested import or
 * containerd 2.2's default conf.d may already cover it), the edited text, and whether the merged
 * result - in our model and in the host's own `containerd config dump` - really turns verification on.
 */
import { isDeepStrictEqual } from 'node:util';
import { parse as parseToml } from 'smol-toml';
import { PullguardError } from '../common/errors.js';
import {
  asTable,
  BINDIR,
  CONF_D_GLOB,
  DEFAULT_BIN_DIR,
  DEFAULT_MAX_VERIFIERS,
  DEFAULT_PER_VERIFIER_TIMEOUT,
  effectiveConfig,
  IMAGES,
  isTable,
  LOCAL_PULL_TRIGGERS,
  loadConfig,
  valueAt,
  type ConfigReader,
  type EffectiveConfig,
  type Table,
} from '../containerd/config.js';
import { parseGoDuration } from '../common/go-duration.js';
import { DROPIN_V2, DROPIN_V3 } from './templates.js';
import { addImport } from './imports-edit.js';
import { posix } from 'node:path';

export interface ContainerdVersion {
  readonly major: number;
  readonly minor: number;
  readonly text: string;
}

/** `containerd github.com/containerd/containerd/v2 2.1.9+unknown ...` -> 2.1.9 */
export function parseContainerdVersion(output: string): ContainerdVersion | undefined {
  const m = /(?:^|\s)v?(\d+)\.(\d+)(?:\.(\d+))?/.exec(output);
  return m
    ? { major: Number(m[1]), minor: Number(m[2]), text: `${m[1]}.${m[2]}${m[3] !== undefined ? `.${m[3]}` : ''}` }
    : undefined;
}

/** containerd 2.2 and later import /etc/containerd/conf.d/*.toml without being told (containerd#12323). */
export const defaultImportsFor = (v: ContainerdVersion | undefined): string[] =>
  v && (v.major > 2 || (v.major === 2 && v.minor >= 2)) ? [CONF_D_GLOB] : [];

/** The drop-in for a config of `version`, with `bin_dir` set. */
export function dropinText(version: number, binDir: string): string {
  if (/["\\\n]/.test(binDir))
    throw new PullguardError(
      'CONTRACT_ARGS',
      `bin_dir ${JSON.stringify(binDir)}: quotes, backslashes and newlines are not supported`,
    );
  const template = version === 2 ? DROPIN_V2 : DROPIN_V3;
  const out = template.replace(/^(\s*bin_dir = )".*"$/m, `$1${JSON.stringify(binDir)}`);
  if (!out.includes(`bin_dir = ${JSON.stringify(binDir)}`))
    throw new PullguardError('INTERNAL', 'the drop-in template has no bin_dir line');
  return out;
}

/** A reader that sees `overrides` (path -> text; null = absent) over the host's files. */
export function overlayReader(base: ConfigReader, overrides: ReadonlyMap<string, string | null>): ConfigReader {
  return {
    read: (p) => (overrides.has(p) ? (overrides.get(p) ?? undefined) : base.read(p)),
    list(dir) {
      const names = new Set(base.list(dir) ?? []);
      let any = base.list(dir) !== undefined;
      for (const [p, text] of overrides) {
        if (posix.dirname(p) !== dir) continue;
        any = true;
        if (text === null) names.delete(posix.basename(p));
        else names.add(posix.basename(p));
      }
      return any ? [...names] : undefined;
    },
  };
}

/** One reason the merged config would not run pullguard on every pull. */
export interface Problem {
  readonly key: string;
  readonly message: string;
}

/**
 * What must hold in containerd's merged configuration for pullguard to run on every pull. `images`
 * and `bindir` are plugin tables, from the model (defaults missing) or from a dump (defaults filled).
 */
export function verificationProblems(
  images: Readonly<Table>,
  bindir: Readonly<Table> | undefined,
  disabled: readonly string[],
  binDir: string,
  minTimeoutMs: number,
  where: (plugin: 'images' | 'bindir', key: string) => string = () => '',
): Problem[] {
  const out: Problem[] = [];
  if (disabled.includes(BINDIR))
    out.push({
      key: 'disabled_plugins',
      message: `disabled_plugins lists ${BINDIR}: containerd would run no verifier`,
    });
  for (const t of LOCAL_PULL_TRIGGERS) {
    const v = valueAt(images, t.key);
    if (t.fires(v))
      out.push({
        key: t.key,
        message:
          `${t.key} = ${JSON.stringify(v)}${where('images', t.key)} makes CRI pulls local: they would never ` +
          `run pullguard`,
      });
  }
  const b = bindir ?? {};
  if ((b.bin_dir ?? undefined) !== binDir) {
    out.push({
      key: 'bin_dir',
      message:
        `bin_dir is ${JSON.stringify(b.bin_dir ?? null)}${where('bindir', 'bin_dir')}, not ` +
        `${JSON.stringify(binDir)}: containerd would not run the executable installed there`,
    });
  }
  const max = typeof b.max_verifiers === 'number' ? b.max_verifiers : DEFAULT_MAX_VERIFIERS;
  if (max < 1)
    out.push({
      key: 'max_verifiers',
      message: `max_verifiers = ${max}${where('bindir', 'max_verifiers')}: containerd would skip every verifier`,
    });
  const timeout =
    typeof b.per_verifier_timeout === 'string'
      ? parseGoDuration(b.per_verifier_timeout)
      : b.per_verifier_timeout === undefined
        ? 10_000
        : undefined;
  if (timeout === undefined || timeout < minTimeoutMs) {
    out.push({
      key: 'per_verifier_timeout',
      message:
        `per_verifier_timeout = ` +
        `${JSON.stringify(b.per_verifier_timeout)}${where('bindir', 'per_verifier_timeout')} is below the ` +
        `policy's timeout + 1s`,
    });
  }
  return out;
}

/** The same checks on the model's merged configuration, naming the file that set each bad value. */
export function modelProblems(eff: EffectiveConfig, binDir: string, minTimeoutMs: number): Problem[] {
  const where = (plugin: 'images' | 'bindir', key: string) => {
    const o = eff.origin(plugin, key);
    return o ? ` (${o.key} in ${o.file})` : '';
  };
  return verificationProblems(eff.images, eff.bindir, eff.disabledPlugins, binDir, minTimeoutMs, where);
}

/** The same checks on the text of `containerd config dump`. */
export function dumpProblems(dump: string, binDir: string, minTimeoutMs: number): Problem[] {
  const doc = parseToml(dump) as Table;
  const plugins = (doc.plugins ?? {}) as Record<string, Table>;
  const disabled = Array.isArray(doc.disabled_plugins) ? (doc.disabled_plugins as string[]) : [];
  return verificationProblems(plugins[IMAGES] ?? {}, plugins[BINDIR], disabled, binDir, minTimeoutMs);
}

/** containerd 2.1's defaults for the keys pullguard depends on (a dump prints every default). */
const DUMP_DEFAULTS: Readonly<Record<string, unknown>> = {
  'images.use_local_image_pull': false,
  'images.discard_unpacked_layers': false,
  'images.disable_snapshot_annotations': true,
  'images.max_concurrent_downloads': 3,
  'images.image_pull_with_sync_fs': false,
  'images.registry.config_path': '',
  'bindir.bin_dir': DEFAULT_BIN_DIR,
  'bindir.max_verifiers': DEFAULT_MAX_VERIFIERS,
  'bindir.per_verifier_timeout': DEFAULT_PER_VERIFIER_TIMEOUT,
};
const noTable = (v: unknown) => (isTable(v) && Object.keys(v).length === 0 ? undefined : v);

/**
 * Where the model and the host's own `containerd config dump` disagree on a key pullguard depends on:
 * the host's containerd does not read these files the way we do (another version, a wrong
 * --containerd-version), so nothing we concluded from the model can be trusted.
 */
export function dumpMismatches(eff: EffectiveConfig, dump: string): string[] {
  const doc = parseToml(dump) as Table;
  const plugins = asTable(doc.plugins);
  const out: string[] = [];
  const keys = [
    ...LOCAL_PULL_TRIGGERS.map((t) => `images.${t.key}`),
    'images.registry.config_path',
    'bindir.bin_dir',
    'bindir.max_verifiers',
    'bindir.per_verifier_timeout',
  ];
  for (const k of keys) {
    const [plugin, ...rest] = k.split('.');
    const key = rest.join('.');
    const ours = valueAt(plugin === 'images' ? eff.images : eff.bindir, key);
    const model = noTable(ours === undefined ? DUMP_DEFAULTS[k] : ours);
    const real = noTable(valueAt(asTable(plugins[plugin === 'images' ? IMAGES : BINDIR]), key));
    if (!isDeepStrictEqual(model, real))
      out.push(`${key}: expected ${JSON.stringify(model)}, containerd has ${JSON.stringify(real)}`);
  }
  return out;
}

/** The part of a dump that decides whether a running containerd must restart: all but `imports`. */
export function effectiveDump(dump: string): string {
  return dump.replace(/^imports = .*\n/m, '');
}

/**
 * An edit of config.toml may change `imports` and nothing else: checked with a real TOML parser, so a
 * file the text scanner misread is refused instead of damaged.
 */
export function checkEdit(before: string, after: string, expectedImports: readonly string[]): void {
  const a = parseToml(before) as Table;
  let b: Table;
  try {
    b = parseToml(after) as Table;
  } catch (e) {
    throw new PullguardError(
      'CONTAINERD_CONFIG',
      `cannot add the import safely (the edit does not parse: ${(e as Error).message.split('\n')[0]}); add it by hand`,
    );
  }
  const { imports: _a, ...restA } = a;
  const { imports: _b, ...restB } = b;
  if (!isDeepStrictEqual(restA, restB) || !isDeepStrictEqual(b.imports ?? [], expectedImports)) {
    throw new PullguardError(
      'CONTAINERD_CONFIG',
      'cannot edit imports safely (the edit would change more than imports); add the import by hand',
    );
  }
}

export interface ConfigPlan {
  /** The version containerd's config is in before the install (the drop-in's version). */
  readonly version: number;
  readonly dropin: { readonly path: string; readonly text: string };
  /** The main file's new text; undefined when it stays as it is (the drop-in is already imported). */
  readonly main?: { readonly path: string; readonly before: string | undefined; readonly after: string };
  /** How the drop-in is reached. */
  readonly reach: 'already imported' | 'created config.toml' | 'import added';
  readonly after: EffectiveConfig;
}

export interface PlanInput {
  readonly configPath: string;
  readonly dropinPath: string;
  readonly binDir: string;
  readonly reader: ConfigReader;
  readonly defaultImports: readonly string[];
  /** The policy's timeout + 1s: containerd's per_verifier_timeout must leave pullguard that long. */
  readonly minTimeoutMs: number;
}

const loadedPaths = (r: ConfigReader, input: PlanInput) =>
  loadConfig(input.configPath, { reader: r, defaultImports: input.defaultImports });

/** Plans the drop-in and the import. Throws CONTAINERD_CONFIG (touch nothing) when it cannot be done safely. */
export function planConfig(input: PlanInput): ConfigPlan {
  const before = loadedPaths(input.reader, input);
  const version = effectiveConfig(before.files).version;
  const dropin = { path: input.dropinPath, text: dropinText(version, input.binDir) };
  const withDropin = new Map<string, string | null>([[dropin.path, dropin.text]]);

  let main: ConfigPlan['main'];
  let reach: ConfigPlan['reach'] = 'already imported';
  let loaded = loadedPaths(overlayReader(input.reader, withDropin), input);
  if (!loaded.files.some((f) => f.path === dropin.path)) {
    const text = input.reader.read(input.configPath);
    if (text === undefined) {
      main = {
        path: input.configPath,
        before: undefined,
        after: `version = 3\nimports = [${JSON.stringify(dropin.path)}]\n`,
      };
      reach = 'created config.toml';
    } else {
      const after = addImport(text, dropin.path);
      const doc = before.files[0]?.doc ?? {};
      checkEdit(text, after, [...((doc.imports as string[] | undefined) ?? []), dropin.path]);
      main = { path: input.configPath, before: text, after };
      reach = 'import added';
    }
    withDropin.set(main.path, main.after);
    loaded = loadedPaths(overlayReader(input.reader, withDropin), input);
    if (!loaded.files.some((f) => f.path === dropin.path)) {
      const why = loaded.missing ? `: ${loaded.missing.path} is missing and containerd stops reading there` : '';
      throw new PullguardError(
        'CONTAINERD_CONFIG',
        `containerd would not load ${dropin.path} even with the import${why}; fix ${input.configPath} first`,
      );
    }
  }
  const after = effectiveConfig(loaded.files, loaded.missing);
  if (after.version !== version) {
    throw new PullguardError(
      'CONTAINERD_CONFIG',
      `installing ${dropin.path} would change the config version from ${version} to ${after.version}; refusing (a ` +
        `file after it declares another version)`,
    );
  }
  const problems = modelProblems(after, input.binDir, input.minTimeoutMs);
  if (problems.length > 0) {
    throw new PullguardError(
      'CONTAINERD_CONFIG',
      `with the drop-in, containerd still would not verify every pull: ${problems.map((p) => p.message).join('; ')}`,
    );
  }
  return { version, dropin, main, reach, after };
}

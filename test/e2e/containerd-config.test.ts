/**
 * The containerd config model (src/containerd/config.ts) against containerd 2.1.9 itself: for every
 * configuration the e2e tests start, and for the cases where the versions and imports interact, the
 * model's values of the keys pullguard depends on must equal `containerd --config X config dump`.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { afterAll, describe, expect, test } from 'vitest';
import {
  BINDIR,
  DEFAULT_BIN_DIR,
  effectiveConfig,
  IMAGES,
  LOCAL_PULL_TRIGGERS,
  loadConfig,
  valueAt,
  type Table,
} from '../../src/containerd/config.js';
import { applyKindPatches, DROPIN, DROPIN_V2, KIND_NODE_CONFIG, kindPatches } from '../helpers/containerd.js';
import { tool } from '../helpers/tools.js';

const work = mkdtempSync(join(tmpdir(), 'pg-ctdcfg-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function write(rel: string, text: string): string {
  const p = join(work, rel);
  mkdirSync(dirname(p), { recursive: true });
  writeFileSync(p, text);
  return p;
}

/** containerd's own answer. */
function dumpOf(main: string): {
  plugins: Record<string, Table>;
  version: number;
  disabled: string[];
  log: string;
} {
  const r = spawnSync(tool('containerd'), ['--config', main, 'config', 'dump'], { encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0) throw new Error(`config dump ${main}: ${r.stderr}`);
  const doc = parseToml(r.stdout) as { plugins: Record<string, Table>; version: number; disabled_plugins?: string[] };
  return { plugins: doc.plugins, version: doc.version, disabled: doc.disabled_plugins ?? [], log: r.stderr };
}

/** Containerd's defaults for what the model leaves unset (the dump prints every default). */
const DEFAULTS: Record<string, unknown> = {
  use_local_image_pull: false,
  discard_unpacked_layers: false,
  disable_snapshot_annotations: true,
  max_concurrent_downloads: 3,
  image_pull_with_sync_fs: false,
  'registry.mirrors': undefined,
  'registry.configs': undefined,
  'registry.auths': undefined,
  'registry.config_path': '',
};
const emptyToUndefined = (v: unknown) => (v && typeof v === 'object' && Object.keys(v).length === 0 ? undefined : v);

/** The keys pullguard relies on, as the model computes them and as containerd dumps them. */
function relevant(main: string) {
  const loaded = loadConfig(main);
  const eff = effectiveConfig(loaded.files, loaded.missing);
  const dump = dumpOf(main);
  const model: Record<string, unknown> = {};
  const real: Record<string, unknown> = {};
  for (const t of LOCAL_PULL_TRIGGERS.map((x) => x.key).concat('registry.config_path')) {
    const m = valueAt(eff.images, t);
    model[t] = emptyToUndefined(m === undefined ? DEFAULTS[t] : m);
    real[t] = emptyToUndefined(valueAt(dump.plugins[IMAGES] ?? {}, t));
  }
  model.bin_dir = eff.bindir.bin_dir ?? DEFAULT_BIN_DIR;
  model.max_verifiers = eff.bindir.max_verifiers ?? 10;
  model.per_verifier_timeout = eff.bindir.per_verifier_timeout ?? '10s';
  model.sandbox = valueAt(eff.images, 'pinned_images.sandbox') ?? 'registry.k8s.io/pause:3.10';
  model.bindirDisabled = eff.disabledPlugins.includes(BINDIR);
  real.bindirDisabled = dump.disabled.includes(BINDIR);
  // A disabled plugin has no configuration in the dump.
  for (const k of ['bin_dir', 'max_verifiers', 'per_verifier_timeout'])
    real[k] = real.bindirDisabled ? model[k] : dump.plugins[BINDIR]?.[k];
  real.sandbox = valueAt(dump.plugins[IMAGES] ?? {}, 'pinned_images.sandbox');
  return { model, real, eff, dump };
}

function expectSame(main: string) {
  const { model, real, eff } = relevant(main);
  expect(model, `model vs containerd config dump for ${main}`).toEqual(real);
  return eff;
}

const V2_CRI =
  '[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = ' +
  '"/v2-path"\n[plugins."io.containerd.grpc.v1.cri".containerd]\n  discard_unpacked_layers = ' +
  'true\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]\n  runtime_type = "io.containerd.runc.v2"\n';
const V3_IMAGES =
  '[plugins."io.containerd.cri.v1.images".registry]\n  config_path = ' +
  '"/v3-path"\n[plugins."io.containerd.image-verifier.v1.bindir"]\n  bin_dir = "/v3-bin"\n  per_verifier_timeout = ' +
  '"12s"\n';

describe('the configurations the e2e tests start', () => {
  test('the drop-in alone, imported by a version 3 main file', () => {
    const main = write('dropin/config.toml', `version = 3\nimports = [${JSON.stringify(DROPIN)}]\n`);
    expect(expectSame(main).images).toMatchObject({ discard_unpacked_layers: false });
  });

  test("test/helpers/containerd.ts 'dropin' mode: the drop-in, then the test-only paths", () => {
    const paths = write(
      'dropin-mode/test-paths.toml',
      `version = 3\n[plugins."io.containerd.image-verifier.v1.bindir"]\n  bin_dir = ` +
        `"${work}/bin"\n[plugins."io.containerd.cri.v1.images".registry]\n  config_path = "${work}/certs.d"\n`,
    );
    const main = write(
      'dropin-mode/config.toml',
      `version = 3\nroot = "${work}/root"\nimports = [${JSON.stringify(DROPIN)}, ` +
        `${JSON.stringify(paths)}]\n[grpc]\n  address = "${work}/c.sock"\n`,
    );
    expect(expectSame(main).bindir.bin_dir).toBe(`${work}/bin`);
  });

  test("'kind' and 'kind-unpatched' modes: Kind's node config with and without kind/cluster.yaml's patch", () => {
    expect(expectSame(write('kind/patched.toml', applyKindPatches(KIND_NODE_CONFIG, kindPatches()).toml)).version).toBe(
      2,
    );
    expect(expectSame(write('kind/unpatched.toml', KIND_NODE_CONFIG)).images.discard_unpacked_layers).toBe(true);
  });

  test("Kind's node config importing pullguard-v2.toml, and (wrongly) pullguard.toml", () => {
    const imp = (d: string) =>
      KIND_NODE_CONFIG.replace('version = 2\n', `version = 2\nimports = [${JSON.stringify(d)}]\n`);
    expect(expectSame(write('kind/v2-dropin.toml', imp(DROPIN_V2))).version).toBe(2);
    const wrong = expectSame(write('kind/v3-dropin.toml', imp(DROPIN)));
    expect(wrong.version).toBe(3);
    expect(wrong.notes.map((n) => n.status)).toEqual(['FAIL']);
  });
});

describe('versions', () => {
  test("version 2 main + version 3 drop-in: the main file's CRI settings are ignored (config_path unset)", () => {
    // The defect of issue 8: the pull path used to read /v2-path here while containerd has none.
    write('v2v3/d.toml', 'version = 3\n[plugins."io.containerd.image-verifier.v1.bindir"]\n  bin_dir = "/b"\n');
    const eff = expectSame(write('v2v3/config.toml', `version = 2\nimports = ["d.toml"]\n${V2_CRI}`));
    expect(valueAt(eff.images, 'registry.config_path')).toBeUndefined();
  });

  test(
    'version 3 main + version 2 drop-in: the merged config is version 2 and its CRI settings are ' + 'migrated over',
    () => {
      write('v3v2/d.toml', `version = 2\n${V2_CRI}`);
      const eff = expectSame(write('v3v2/config.toml', `version = 3\nimports = ["d.toml"]\n${V3_IMAGES}`));
      expect(eff.version).toBe(2);
      expect(valueAt(eff.images, 'registry.config_path')).toBe('/v2-path');
    },
  );

  test('no version line: version 2 names are ignored, version 3 names apply, version 1 names are renamed', () => {
    expect(valueAt(expectSame(write('nover/v2names.toml', V2_CRI)).images, 'registry.config_path')).toBeUndefined();
    expect(valueAt(expectSame(write('nover/v3names.toml', V3_IMAGES)).images, 'registry.config_path')).toBe('/v3-path');
    expectSame(
      write(
        'nover/v1names.toml',
        '[plugins.cri.registry]\n  config_path = "/v1"\n[plugins.cri.containerd]\n  discard_unpacked_layers = true\n',
      ),
    );
    expectSame(write('nover/disabled.toml', 'disabled_plugins = ["io.containerd.image-verifier.v1.bindir"]\n'));
  });

  test('a file without a version line takes the version in effect when it is loaded', () => {
    write('nover2/imp.toml', V2_CRI);
    const afterV2 = expectSame(write('nover2/v2main.toml', 'version = 2\nimports = ["imp.toml"]\n'));
    expect(valueAt(afterV2.images, 'registry.config_path')).toBe('/v2-path');
    write('nover2/d3.toml', `version = 3\n${V3_IMAGES}`);
    write('nover2/d2.toml', `version = 2\n${V2_CRI}`);
    expectSame(write('nover2/m-d3.toml', `imports = ["d3.toml"]\n${V2_CRI}`));
    expect(expectSame(write('nover2/m-d2.toml', `imports = ["d2.toml"]\n${V3_IMAGES}`)).version).toBe(2);
  });
});

describe('imports', () => {
  test('multi-line arrays, relative paths, globs with classes, nested imports breadth first, each file once', () => {
    write(
      'imp/conf.d/10-a.toml',
      'version = 3\nimports = ["../nested.toml", "../config.toml"]\n[plugins."io.containerd.cri.v1.images"]\n  ' +
        'discard_unpacked_layers = true\n',
    );
    write(
      'imp/conf.d/20-b.toml',
      'version = 3\n[plugins."io.containerd.cri.v1.images".registry]\n  config_path = "/b"\n',
    );
    write(
      'imp/conf.d/x-c.toml',
      'version = 3\n[plugins."io.containerd.cri.v1.images".registry]\n  config_path = "/c"\n',
    );
    write(
      'imp/conf.d/ignored.txt',
      'version = 3\n[plugins."io.containerd.cri.v1.images".registry]\n  config_path = "/txt"\n',
    );
    write(
      'imp/nested.toml',
      'version = 3\n[plugins."io.containerd.cri.v1.images"]\n  discard_unpacked_layers = false\n  ' +
        'max_concurrent_downloads = 5\n',
    );
    write(
      'imp/last.toml',
      'version = 3\n[plugins."io.containerd.image-verifier.v1.bindir"]\n  per_verifier_timeout = "20s"\n',
    );
    const main = write(
      'imp/config.toml',
      'version = 3\nimports = [\n  # drop-ins\n  "conf.d/[0-9]*.toml",\n  "./last.toml",\n  "conf.d/*.toml", # ' +
        'again: each file once\n]\n',
    );
    const eff = expectSame(main);
    expect(eff.files.map((f) => f.slice(work.length + 5))).toEqual([
      'config.toml',
      'conf.d/10-a.toml',
      'conf.d/20-b.toml',
      'last.toml',
      'conf.d/x-c.toml',
      'nested.toml',
    ]);
  });

  test('a glob matching nothing is no file; a glob in a directory component works', () => {
    write(
      'glob/a/dir1/p.toml',
      'version = 3\n[plugins."io.containerd.image-verifier.v1.bindir"]\n  bin_dir = "/from-glob"\n',
    );
    expect(
      expectSame(write('glob/config.toml', 'version = 3\nimports = ["none/*.toml", "a/dir*/*.toml"]\n')).bindir.bin_dir,
    ).toBe('/from-glob');
  });

  test('a missing import stops the loading there: later files are ignored, earlier ones kept', () => {
    write(
      'missing/later.toml',
      'version = 3\n[plugins."io.containerd.image-verifier.v1.bindir"]\n  bin_dir = "/later"\n',
    );
    const main = write('missing/config.toml', `version = 3\nimports = ["gone.toml", "later.toml"]\n${V3_IMAGES}`);
    const eff = expectSame(main);
    expect(eff.bindir.bin_dir).toBe('/v3-bin');
    expect(eff.notes.map((n) => n.message)).toEqual([expect.stringContaining('gone.toml (imported by')]);
  });

  test('a later file overrides with false, 0 and empty strings, key by key at any depth', () => {
    write(
      'override/d.toml',
      'version = 3\n[plugins."io.containerd.cri.v1.images"]\n  discard_unpacked_layers = false\n  ' +
        'max_concurrent_downloads = 0\n[plugins."io.containerd.cri.v1.images".registry.headers]\n  X = ' +
        '["1"]\n[plugins."io.containerd.image-verifier.v1.bindir"]\n  bin_dir = ""\n',
    );
    const main = write(
      'override/config.toml',
      `version = 3\nimports = ["d.toml"]\n[plugins."io.containerd.cri.v1.images"]\n  discard_unpacked_layers = ` +
        `true\n${V3_IMAGES}`,
    );
    expect(expectSame(main).bindir.bin_dir).toBe('');
  });

  test('the installed drop-ins, byte for byte from containerd-config/', () => {
    expect(readFileSync(DROPIN, 'utf8')).toContain('version = 3');
    expect(readFileSync(DROPIN_V2, 'utf8')).toContain('version = 2');
  });
});

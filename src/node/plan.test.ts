import { posix } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { describe, expect, test } from 'vitest';
import type { ConfigReader } from '../containerd/config.js';
import { defaultImportsFor, dumpProblems, parseContainerdVersion, planConfig, type PlanInput } from './plan.js';

const MAIN = '/etc/containerd/config.toml';
const DROPIN = '/etc/containerd/conf.d/pullguard.toml';
const BIN = '/opt/containerd/image-verifier/bin';

function memReader(files: Record<string, string>): ConfigReader {
  return {
    read: (p) => files[p],
    list(dir) {
      const names = Object.keys(files)
        .filter((p) => posix.dirname(p) === dir)
        .map((p) => posix.basename(p));
      return names.length > 0 ? names : undefined;
    },
  };
}

const plan = (files: Record<string, string>, more: Partial<PlanInput> = {}) =>
  planConfig({
    configPath: MAIN,
    dropinPath: DROPIN,
    binDir: BIN,
    reader: memReader(files),
    defaultImports: [],
    minTimeoutMs: 9000,
    ...more,
  });

describe('which drop-in', () => {
  test(
    "the version containerd's config is in: " + '2 for a version 2 main file, 3 for version 3 and for no version line',
    () => {
      expect(plan({ [MAIN]: 'version = 2\n' }).version).toBe(2);
      expect(parseToml(plan({ [MAIN]: 'version = 2\n' }).dropin.text)).toMatchObject({ version: 2 });
      expect(plan({ [MAIN]: 'version = 3\n' }).version).toBe(3);
      // containerd 2.1 reads a file without a version line as version 3 (its version 2 CRI names are ignored).
      const none = plan({ [MAIN]: '[plugins."io.containerd.cri.v1.images"]\n  snapshotter = "overlayfs"\n' });
      expect(none.version).toBe(3);
      expect(none.main?.after).toBe(
        `imports = ["${DROPIN}"]\n[plugins."io.containerd.cri.v1.images"]\n  snapshotter = "overlayfs"\n`,
      );
      // A version 3 main file whose existing drop-in is version 2 ends as version 2: so does ours.
      expect(
        plan({
          [MAIN]: 'version = 3\nimports = ["/etc/containerd/old.toml"]\n',
          '/etc/containerd/old.toml': 'version = 2\n',
        }).version,
      ).toBe(2);
    },
  );

  test('bin_dir is written into the drop-in', () => {
    expect(plan({ [MAIN]: 'version = 3\n' }, { binDir: '/opt/pg/bin' }).dropin.text).toContain(
      'bin_dir = "/opt/pg/bin"',
    );
  });

  test('no config.toml: a minimal version 3 one that imports the drop-in', () => {
    const p = plan({});
    expect(p.reach).toBe('created config.toml');
    expect(p.main).toEqual({ path: MAIN, before: undefined, after: `version = 3\nimports = ["${DROPIN}"]\n` });
  });
});

describe('whether the import is needed', () => {
  test('a glob that already covers the drop-in (relative or absolute): config.toml stays as it is', () => {
    expect(plan({ [MAIN]: 'version = 3\nimports = ["conf.d/*.toml"]\n' }).main).toBeUndefined();
    expect(plan({ [MAIN]: 'version = 3\nimports = [\n  "/etc/containerd/conf.d/*.toml",\n]\n' }).reach).toBe(
      'already imported',
    );
    expect(plan({ [MAIN]: 'version = 3\nimports = ["conf.d/*.conf"]\n' }).reach).toBe('import added');
  });

  test('containerd 2.2 imports conf.d/*.toml by default; 2.1 does not', () => {
    expect(
      defaultImportsFor(parseContainerdVersion('containerd github.com/containerd/containerd/v2 2.2.0 abc')),
    ).toEqual(['/etc/containerd/conf.d/*.toml']);
    expect(
      defaultImportsFor(parseContainerdVersion('containerd github.com/containerd/containerd/v2 2.1.9+unknown')),
    ).toEqual([]);
    const files = { [MAIN]: 'version = 3\n' };
    expect(plan(files, { defaultImports: ['/etc/containerd/conf.d/*.toml'] }).main).toBeUndefined();
    expect(plan(files).main?.after).toBe(`version = 3\nimports = ["${DROPIN}"]\n`);
  });
});

describe('refusals (nothing is written)', () => {
  test('a config that does not parse, main file or import, with row and column', () => {
    expect(() => plan({ [MAIN]: 'version = 3\n[plugins\n' })).toThrow(
      /containerd config \/etc\/containerd\/config.toml is not valid TOML at line 2, column \d+/,
    );
    expect(() => plan({ [MAIN]: 'version = 3\nimports = ["/x.toml"]\n', '/x.toml': 'a = = 1\n' })).toThrow(
      /\/x.toml is not valid TOML at line 1/,
    );
  });

  test('a later file that switches verification off again, naming it', () => {
    const files = {
      [MAIN]: 'version = 3\nimports = ["/etc/containerd/conf.d/*.toml"]\n',
      '/etc/containerd/conf.d/zz.toml':
        'version = 3\n[plugins."io.containerd.cri.v1.images"]\n  discard_unpacked_layers = true\n',
    };
    expect(() => plan(files)).toThrow(
      new RegExp(
        /discard_unpacked_layers = true /.source +
          /\(plugins."io.containerd.cri.v1.images".discard_unpacked_layers /.source +
          /in \/etc\/containerd\/conf.d\/zz.toml\)/.source,
      ),
    );
  });

  test('a missing import before ours: containerd would stop reading there', () => {
    expect(() => plan({ [MAIN]: 'version = 3\nimports = ["/gone.toml"]\n' })).toThrow(
      /\/gone.toml is missing and containerd stops reading there/,
    );
  });

  test("a policy timeout the drop-in's per_verifier_timeout does not leave room for", () => {
    expect(() => plan({ [MAIN]: 'version = 3\n' }, { minTimeoutMs: 11_000 })).toThrow(/per_verifier_timeout/);
  });
});

test("dumpProblems reads a real dump's tables", () => {
  const dump =
    `version = 3\n[plugins]\n  [plugins.'${'io.containerd.cri.v1.images'}']\n    discard_unpacked_layers ` +
    `= true\n  [plugins.'io.containerd.image-verifier.v1.bindir']\n    bin_dir = '${BIN}'\n    ` +
    `max_verifiers = 10\n    per_verifier_timeout = '10s'\n`;
  expect(dumpProblems(dump, BIN, 9000).map((p) => p.key)).toEqual(['discard_unpacked_layers']);
  expect(dumpProblems(dump.replace('true', 'false'), BIN, 9000)).toEqual([]);
  expect(dumpProblems(dump.replace('true', 'false'), '/other', 9000).map((p) => p.key)).toEqual(['bin_dir']);
});

import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { describe, expect, test } from 'vitest';
import { applyKindPatches, DROPIN, DROPIN_V2, KIND_NODE_CONFIG, kindPatches } from '../../test/helpers/containerd.js';
import { loadConfig, type ContainerdConfigFile } from '../containerd/config.js';
import {
  diagnose,
  effectiveConfig,
  formatCheck,
  parseGoDuration,
  type BinDirListing,
  type Check,
  type DoctorInput,
} from './diagnose.js';
import { parseDoctorArgs } from './run.js';

const f = (path: string, text: string): ContainerdConfigFile => ({
  path,
  doc: parseToml(text) as Record<string, unknown>,
});
const v3 = (body: string, path = '/etc/containerd/config.toml') => f(path, `version = 3\n${body}`);
const v2 = (body: string, path = '/etc/containerd/config.toml') => f(path, `version = 2\n${body}`);
const RUNTIMES =
  '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]\nruntime_type = "io.containerd.runc.v2"\n';
const GOOD_V3 = `[plugins."io.containerd.cri.v1.images".registry]\nconfig_path = "/etc/containerd/certs.d"\n`;

const PG: BinDirListing = { kind: 'entries', entries: [{ name: 'pullguard', type: 'executable' }] };
const POLICY = { timeoutMs: 8000, mode: 'enforce', defaultAction: 'deny', rules: [] } as const;

function run(files: ContainerdConfigFile[], over: Partial<DoctorInput> = {}): Check[] {
  return diagnose({
    config: { path: files[0]?.path ?? '/etc/containerd/config.toml', files },
    binDir: { path: '/opt/containerd/image-verifier/bin', fromFlag: false, listing: PG },
    policy: { path: '/etc/pullguard/policy.yaml', policy: POLICY },
    containerd: {
      binary: '/usr/bin/containerd',
      output: 'containerd github.com/containerd/containerd/v2 v2.1.9 abc\n',
    },
    ...over,
  });
}
const fails = (c: Check[]) => c.filter((x) => x.status === 'FAIL').map(formatCheck);
const warns = (c: Check[]) => c.filter((x) => x.status === 'WARN').map(formatCheck);

describe('CRI settings that force local pull (containerd CheckLocalImagePullConfigs)', () => {
  test('a clean version 3 config has no FAIL and no WARN', () => {
    const c = run([v3(GOOD_V3)]);
    expect(fails(c)).toEqual([]);
    expect(warns(c)).toEqual([]);
    expect(c.map(formatCheck).join('\n')).toMatch(/ok {4}no CRI setting forces local pulls/);
  });

  test.each([
    ['use_local_image_pull = true', 'use_local_image_pull'],
    ['discard_unpacked_layers = true', 'discard_unpacked_layers'],
    ['disable_snapshot_annotations = false', 'disable_snapshot_annotations'],
    ['max_concurrent_downloads = 5', 'max_concurrent_downloads'],
    ['max_concurrent_downloads = 0', 'max_concurrent_downloads'],
    ['image_pull_with_sync_fs = true', 'image_pull_with_sync_fs'],
  ])('version 3: %s is a FAIL naming the key and the fix', (line, key) => {
    const c = run([v3(`[plugins."io.containerd.cri.v1.images"]\n${line}\n${GOOD_V3}`)]);
    const fl = fails(c);
    expect(fl).toHaveLength(1);
    expect(fl[0]).toContain(`FAIL  ${key} = `);
    expect(fl[0]).toContain(`plugins."io.containerd.cri.v1.images".${key} in /etc/containerd/config.toml`);
    expect(fl[0]).toContain('CRI falls back to local pulls');
    expect(fl[0]).toMatch(/; fix: set .*|; fix: /);
  });

  test.each([
    'mirrors."docker.io"]\nendpoint = ["https://m"]',
    'configs."r.example".tls]\ninsecure_skip_verify = true',
    'auths."r.example"]\nauth = "x"',
  ])('version 3: a non-empty registry.%s table is a FAIL', (table) => {
    const c = run([v3(`${GOOD_V3}[plugins."io.containerd.cri.v1.images".registry.${table}\n`)]);
    const key = table.slice(0, table.indexOf('.'));
    expect(fails(c)).toEqual([
      expect.stringMatching(
        new RegExp(`^FAIL  registry\\.${key} = \\[.+\\] .*hosts\\.toml|^FAIL  registry\\.${key} = .*delete the table`),
      ),
    ]);
  });

  test('an empty registry.configs table does not trigger (len == 0), nor do the defaults', () => {
    expect(fails(run([v3(`${GOOD_V3}[plugins."io.containerd.cri.v1.images".registry.configs]\n`)]))).toEqual([]);
    expect(
      fails(
        run([
          v3(
            '[plugins."io.containerd.cri.v1.images"]\nmax_concurrent_downloads = 3\n' +
              `disable_snapshot_annotations = true\n${GOOD_V3}`,
          ),
        ]),
      ),
    ).toEqual([]);
  });

  test('several triggers: one FAIL each', () => {
    const c = run([
      v3(
        '[plugins."io.containerd.cri.v1.images"]\nuse_local_image_pull = true\n' +
          `discard_unpacked_layers = true\n${GOOD_V3}`,
      ),
    ]);
    expect(fails(c)).toHaveLength(2);
  });

  test('version 2: keys under io.containerd.grpc.v1.cri and .containerd are migrated and named as written', () => {
    const c = run([
      v2(
        `${RUNTIMES}[plugins."io.containerd.grpc.v1.cri".containerd]\ndiscard_unpacked_layers = true\n` +
          '[plugins."io.containerd.grpc.v1.cri"]\nmax_concurrent_downloads = 8\n' +
          '[plugins."io.containerd.grpc.v1.cri".registry]\nconfig_path = "/etc/containerd/certs.d"\n',
      ),
    ]);
    const fl = fails(c);
    expect(fl).toHaveLength(2);
    expect(fl[0]).toContain(
      'discard_unpacked_layers = true ' +
        '(plugins."io.containerd.grpc.v1.cri".containerd.discard_unpacked_layers in /etc/containerd/config.toml)',
    );
    expect(fl[0]).toContain('fix: set plugins."io.containerd.grpc.v1.cri".containerd.discard_unpacked_layers = false');
    expect(fl[1]).toContain(
      'max_concurrent_downloads = 8 (plugins."io.containerd.grpc.v1.cri".max_concurrent_downloads',
    );
    expect(warns(c)).toEqual([]);
  });

  test('version 2: registry mirrors (the deprecated CRI registry) are a FAIL', () => {
    const c = run([
      v2('[plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]\nendpoint = ["https://m"]\n'),
    ]);
    expect(fails(c)).toEqual([
      expect.stringContaining('registry.mirrors = [docker.io] (plugins."io.containerd.grpc.v1.cri".registry.mirrors'),
    ]);
  });

  test('version 2: .containerd keys are only migrated when .containerd.runtimes exists (containerd 2.1.9)', () => {
    const body = '[plugins."io.containerd.grpc.v1.cri".containerd]\ndiscard_unpacked_layers = true\n';
    expect(fails(run([v2(body)]))).toEqual([]);
    expect(fails(run([v2(`${body}[plugins."io.containerd.grpc.v1.cri".containerd.runtimes]\n`)]))).toHaveLength(1);
  });

  test('migration precedence: in a version 2 config the version 2 key wins over the version 3 key', () => {
    const both = v2(
      `${RUNTIMES}[plugins."io.containerd.grpc.v1.cri".containerd]\ndiscard_unpacked_layers = true\n` +
        '[plugins."io.containerd.cri.v1.images"]\ndiscard_unpacked_layers = false\n',
    );
    expect(fails(run([both]))).toEqual([
      expect.stringContaining('plugins."io.containerd.grpc.v1.cri".containerd.discard_unpacked_layers'),
    ]);
    const reverse = v2(
      `${RUNTIMES}[plugins."io.containerd.grpc.v1.cri".containerd]\ndiscard_unpacked_layers = false\n` +
        '[plugins."io.containerd.cri.v1.images"]\ndiscard_unpacked_layers = true\n',
    );
    expect(fails(run([reverse]))).toEqual([]);
    // A version 3 key the migration does not touch stays.
    expect(fails(run([v2('[plugins."io.containerd.cri.v1.images"]\nuse_local_image_pull = true\n')]))).toHaveLength(1);
  });

  test(
    'migration replaces the whole registry table: ' +
      'a version 3 config_path is lost under a version 2 registry table',
    () => {
      const c = run([
        v2(
          '[plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]\nendpoint = ["https://m"]\n' +
            '[plugins."io.containerd.cri.v1.images".registry]\nconfig_path = "/etc/containerd/certs.d"\n',
        ),
      ]);
      expect(warns(c)).toEqual([expect.stringContaining('registry.config_path is not set')]);
    },
  );

  test(
    'Kind: the node config fails on discard_unpacked_layers; ' + 'with kind/cluster.yaml patched in, nothing fails',
    () => {
      const unpatched = run([f('/etc/containerd/config.toml', KIND_NODE_CONFIG)]);
      expect(fails(unpatched)).toEqual([
        expect.stringMatching(
          new RegExp(
            /^FAIL {2}discard_unpacked_layers = true /.source +
              /\(plugins\."io\.containerd\.grpc\.v1\.cri"\.containerd\.discard_unpacked_layers in/.source,
          ),
        ),
      ]);
      expect(warns(unpatched)).toEqual([expect.stringContaining('registry.config_path is not set')]);
      const patched = run([f('/etc/containerd/config.toml', applyKindPatches(KIND_NODE_CONFIG, kindPatches()).toml)]);
      expect(fails(patched)).toEqual([]);
      expect(warns(patched)).toEqual([]);
    },
  );
});

describe('imports', () => {
  test('imports merge in order over the main file, key by key: the later value wins', () => {
    const main = v3(
      'imports = ["/etc/containerd/conf.d/pullguard.toml"]\n[plugins."io.containerd.cri.v1.images"]\n' +
        'discard_unpacked_layers = true\nmax_concurrent_downloads = 3\n',
    );
    const dropin = v3(
      `[plugins."io.containerd.cri.v1.images"]\ndiscard_unpacked_layers = false\n${GOOD_V3}`,
      '/etc/containerd/conf.d/pullguard.toml',
    );
    expect(fails(run([main, dropin]))).toEqual([]);
    const later = v3(
      '[plugins."io.containerd.cri.v1.images"]\nuse_local_image_pull = true\n',
      '/etc/containerd/conf.d/zz.toml',
    );
    expect(fails(run([main, dropin, later]))).toEqual([
      expect.stringContaining(
        'use_local_image_pull = true ' +
          '(plugins."io.containerd.cri.v1.images".use_local_image_pull in /etc/containerd/conf.d/zz.toml)',
      ),
    ]);
  });

  test('the version 3 drop-in in the Kind node config fails: the version 2 settings would be ignored', () => {
    const main = f(
      '/etc/containerd/config.toml',
      KIND_NODE_CONFIG.replace('version = 2\n', 'version = 2\nimports = ["/etc/containerd/conf.d/pullguard.toml"]\n'),
    );
    const c = run([main, f('/etc/containerd/conf.d/pullguard.toml', readFileSync(DROPIN, 'utf8'))]);
    // containerd 2.1.9: the last file is version 3, so nothing is migrated and the v2 CRI table is ignored.
    expect(fails(c)).toEqual([
      expect.stringMatching(
        new RegExp(
          /config\.toml is config version 2 but the last file loaded is version 3: .*ignores /.source +
            /.*\(containerd, restrict_oom_score_adj, sandbox_image, tolerate_missing_hugepages_controller\)/.source +
            /.*pullguard-v2\.toml/.source,
        ),
      ),
    ]);
  });

  test('the version 2 drop-in fixes the Kind node config and keeps its settings', () => {
    const main = f(
      '/etc/containerd/config.toml',
      KIND_NODE_CONFIG.replace('version = 2\n', 'version = 2\nimports = ["/etc/containerd/conf.d/pullguard.toml"]\n'),
    );
    const c = run([main, f('/etc/containerd/conf.d/pullguard.toml', readFileSync(DROPIN_V2, 'utf8'))]);
    expect(fails(c)).toEqual([]);
    expect(warns(c)).toEqual([]);
  });

  test('the config ends with the version of the last file: a version 2 import migrates the merged CRI settings', () => {
    const main = v3('[plugins."io.containerd.cri.v1.images"]\ndiscard_unpacked_layers = false\n' + GOOD_V3);
    const imp = v2(
      `${RUNTIMES}[plugins."io.containerd.grpc.v1.cri".containerd]\ndiscard_unpacked_layers = true\n`,
      '/etc/containerd/conf.d/old.toml',
    );
    expect(effectiveConfig([main, imp]).version).toBe(2);
    expect(fails(run([main, imp]))).toEqual([expect.stringContaining('in /etc/containerd/conf.d/old.toml')]);
    // A file without a version line does not change it.
    expect(effectiveConfig([main, f('/x.toml', 'oom_score = 0\n')]).version).toBe(3);
  });

  test(
    'a version 2 main file with a version 3 import: ' +
      'its CRI settings are ignored by containerd 2.1, which is the one FAIL',
    () => {
      const main = v2('[plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]\nendpoint = ["https://m"]\n');
      const c = run([main, v3(GOOD_V3, '/etc/containerd/conf.d/p.toml')]);
      // The mirrors would force local pulls, but containerd ignores the whole version 2 table here.
      expect(fails(c)).toEqual([
        expect.stringContaining('ignores its plugins."io.containerd.grpc.v1.cri" settings (registry)'),
      ]);
      expect(warns(c)).toEqual([]);
    },
  );

  test('loadContainerdConfigFiles: relative, globbed and nested imports, breadth first, each once', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pg-doctor-'));
    try {
      mkdirSync(join(dir, 'conf.d'));
      writeFileSync(join(dir, 'config.toml'), 'version = 3\nimports = ["conf.d/*.toml", "last.toml"]\n');
      writeFileSync(join(dir, 'conf.d', 'b.toml'), 'version = 3\nimports = ["../nested.toml", "../config.toml"]\n');
      writeFileSync(join(dir, 'conf.d', 'a.toml'), 'version = 3\n');
      writeFileSync(
        join(dir, 'last.toml'),
        'version = 3\n[plugins."io.containerd.cri.v1.images"]\ndiscard_unpacked_layers = false\n',
      );
      writeFileSync(
        join(dir, 'nested.toml'),
        'version = 3\n[plugins."io.containerd.cri.v1.images"]\ndiscard_unpacked_layers = true\n',
      );
      const files = [...loadConfig(join(dir, 'config.toml')).files];
      expect(files.map((x) => x.path.slice(dir.length + 1))).toEqual([
        'config.toml',
        'conf.d/a.toml',
        'conf.d/b.toml',
        'last.toml',
        'nested.toml',
      ]);
      // nested.toml is merged last (breadth first), so its value wins, as in containerd.
      expect(fails(run(files))).toEqual([expect.stringContaining('nested.toml')]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('versions and missing imports, as containerd 2.1.9 reads them', () => {
  test('a file without a version line is read as version 3 here: its version 2 CRI settings are ignored (FAIL)', () => {
    const c = run([
      f(
        '/etc/containerd/config.toml',
        `[plugins."io.containerd.grpc.v1.cri".containerd]\ndiscard_unpacked_layers = true\n${GOOD_V3}`,
      ),
    ]);
    expect(fails(c)).toEqual([
      expect.stringContaining(
        'has no version line: containerd 2.1 reads it as version 3 (the version in effect when it is loaded) ' +
          'and ignores its version 2 CRI settings (containerd)',
      ),
    ]);
  });

  test('a missing import: containerd stops reading there (WARN), and what it would have set is not set', () => {
    const main = v3(`imports = ["/gone.toml", "/etc/containerd/conf.d/pullguard.toml"]\n${GOOD_V3}`);
    const input: Partial<DoctorInput> = {
      config: {
        path: '/etc/containerd/config.toml',
        files: [main],
        missing: { path: '/gone.toml', importedBy: '/etc/containerd/config.toml' },
      },
    };
    expect(warns(run([main], input))).toEqual([
      expect.stringContaining(
        '/gone.toml (imported by /etc/containerd/config.toml) does not exist: containerd 2.1 stops reading',
      ),
    ]);
  });
});

describe('registry.config_path', () => {
  test('unset or a path list: WARN; one directory: ok', () => {
    expect(warns(run([v3('')]))).toEqual([expect.stringContaining('registry.config_path is not set')]);
    expect(
      warns(
        run([
          v3(
            '[plugins."io.containerd.cri.v1.images".registry]\n' +
              'config_path = "/etc/containerd/certs.d:/etc/docker/certs.d"\n',
          ),
        ]),
      ),
    ).toEqual([expect.stringContaining('is a path list: transfer-service pulls')]);
    expect(run([v3(GOOD_V3)]).map(formatCheck)).toContainEqual(
      expect.stringMatching(/^ok {4}registry\.config_path = "\/etc\/containerd\/certs\.d"/),
    );
  });
});

describe('bin_dir', () => {
  const withBin = (listing: BinDirListing, extra = '') =>
    run([v3(`${GOOD_V3}${extra}`)], { binDir: { path: '/b', fromFlag: true, listing } });
  const entries = (...e: [string, 'executable' | 'file' | 'directory' | 'broken'][]): BinDirListing => ({
    kind: 'entries',
    entries: e.map(([name, type]) => ({ name, type })),
  });

  test('missing or empty: FAIL (containerd allows everything)', () => {
    expect(fails(withBin({ kind: 'missing' }))).toEqual([
      expect.stringContaining('bin_dir /b (--bin-dir) does not exist: containerd allows every pull'),
    ]);
    expect(fails(withBin(entries()))).toEqual([
      expect.stringContaining('bin_dir /b (--bin-dir) is empty: containerd allows every pull'),
    ]);
    expect(fails(withBin({ kind: 'unreadable', error: 'ENOTDIR' }))).toEqual([
      expect.stringContaining('cannot be listed (ENOTDIR)'),
    ]);
  });

  test('anything but executables: FAIL (exec failure blocks every pull)', () => {
    const c = withBin(entries(['README', 'file'], ['old', 'directory'], ['pullguard', 'executable']));
    expect(fails(c)).toEqual([
      expect.stringContaining('/b/README is not executable: containerd executes every entry'),
      expect.stringContaining('/b/old is a directory'),
    ]);
  });

  test('no pullguard: WARN', () => {
    expect(warns(withBin(entries(['other-verifier', 'executable'])))).toEqual([
      expect.stringContaining('no pullguard in bin_dir /b'),
    ]);
  });

  test('more entries than max_verifiers: FAIL (extras skipped); 0 skips all; -1 is unlimited', () => {
    const many = entries(['a', 'executable'], ['b', 'executable'], ['pullguard', 'executable']);
    const bindir = (n: number) => `[plugins."io.containerd.image-verifier.v1.bindir"]\nmax_verifiers = ${n}\n`;
    expect(fails(withBin(many, bindir(2)))).toEqual([
      expect.stringContaining(
        'more than max_verifiers = 2 ' +
          '(plugins."io.containerd.image-verifier.v1.bindir".max_verifiers in /etc/containerd/config.toml): ' +
          'containerd skips pullguard',
      ),
    ]);
    expect(fails(withBin(entries(['pullguard', 'executable']), bindir(0)))).toEqual([
      expect.stringContaining('max_verifiers = 0'),
    ]);
    expect(fails(withBin(many, bindir(-1)))).toEqual([]);
    expect(fails(withBin(many))).toEqual([]);
  });

  test('the config names bin_dir: the line says where', () => {
    const c = run([v3(`${GOOD_V3}[plugins."io.containerd.image-verifier.v1.bindir"]\nbin_dir = "/x"\n`)], {
      binDir: { path: '/x', fromFlag: false, listing: { kind: 'missing' } },
    });
    expect(fails(c)).toEqual([
      expect.stringContaining(
        'bin_dir /x (plugins."io.containerd.image-verifier.v1.bindir".bin_dir in /etc/containerd/config.toml) ' +
          'does not exist',
      ),
    ]);
  });

  test('the verifier plugin disabled: FAIL', () => {
    expect(fails(run([v3(`disabled_plugins = ["io.containerd.image-verifier.v1.bindir"]\n${GOOD_V3}`)]))).toEqual([
      expect.stringContaining('disabled_plugins lists'),
    ]);
  });
});

describe('per_verifier_timeout', () => {
  const t = (value: string | undefined, timeoutMs = 8000) =>
    run(
      [
        v3(
          GOOD_V3 +
            (value === undefined
              ? ''
              : `[plugins."io.containerd.image-verifier.v1.bindir"]\nper_verifier_timeout = ${value}\n`),
        ),
      ],
      {
        policy: { path: '/etc/pullguard/policy.yaml', policy: { ...POLICY, timeoutMs } },
      },
    );
  test('below the policy timeout + 1s: FAIL', () => {
    expect(fails(t('"5s"'))).toEqual([
      expect.stringContaining(
        'per_verifier_timeout 5s ' +
          '(plugins."io.containerd.image-verifier.v1.bindir".per_verifier_timeout in /etc/containerd/config.toml) ' +
          "is below the policy's timeout 8s + 1s",
      ),
    ]);
    expect(fails(t('"8500ms"'))).toHaveLength(1);
    expect(fails(t(undefined, 9500))).toEqual([
      expect.stringContaining(
        "per_verifier_timeout 10s (containerd's default) is below the policy's timeout 9.5s + 1s",
      ),
    ]);
    expect(fails(t('"9s"'))).toEqual([]);
    expect(fails(t('"1m"', 30_000))).toEqual([]);
    expect(fails(t('10'))).toEqual([expect.stringContaining('is not a duration')]);
  });
  test('Go durations', () => {
    expect(parseGoDuration('10s')).toBe(10_000);
    expect(parseGoDuration('1m30s')).toBe(90_000);
    expect(parseGoDuration('1.5h')).toBe(5_400_000);
    expect(parseGoDuration('500ms')).toBe(500);
    expect(parseGoDuration('0')).toBe(0);
    expect(parseGoDuration('10')).toBeUndefined();
    expect(parseGoDuration('s')).toBeUndefined();
  });
});

describe('policy, containerd version, config errors', () => {
  test('a policy that does not load: FAIL; a policy inside bin_dir: FAIL', () => {
    expect(
      fails(
        run([v3(GOOD_V3)], {
          policy: { path: '/etc/pullguard/policy.yaml', error: 'no policy at /etc/pullguard/policy.yaml' },
        }),
      ),
    ).toEqual([
      expect.stringContaining('policy: no policy at /etc/pullguard/policy.yaml: pullguard denies every pull'),
    ]);
    expect(
      fails(run([v3(GOOD_V3)], { policy: { path: '/opt/containerd/image-verifier/bin/policy.yaml', policy: POLICY } })),
    ).toEqual([expect.stringContaining('is inside bin_dir /opt/containerd/image-verifier/bin')]);
  });

  test('containerd before 2.1: FAIL; not on PATH: WARN (could not check)', () => {
    const ver = (output: string) => run([v3(GOOD_V3)], { containerd: { binary: '/usr/bin/containerd', output } });
    expect(fails(ver('containerd containerd.io 1.7.27 05044ec0a9a75232cad458027ca83437aae3f4da\n'))).toEqual([
      expect.stringContaining(
        'containerd 1.7.27: CRI (kubelet) pulls of containerd before 2.1 never call image verifiers',
      ),
    ]);
    expect(fails(ver('containerd github.com/containerd/containerd/v2 v2.0.5 fb4c30d\n'))).toHaveLength(1);
    expect(fails(ver('containerd github.com/containerd/containerd/v2 2.1.9+unknown \n'))).toEqual([]);
    expect(warns(run([v3(GOOD_V3)], { containerd: {} }))).toEqual([
      expect.stringContaining('containerd is not on PATH: could not check its version'),
    ]);
    expect(warns(run([v3(GOOD_V3)], { containerd: { binary: '/c', error: 'timed out after 5s' } }))).toEqual([
      expect.stringContaining('could not run /c --version: timed out'),
    ]);
  });

  test(
    'no config at the default path: WARN, and containerd defaults are checked; ' + 'an explicit or broken one: FAIL',
    () => {
      const missing = run([], {
        config: { path: '/etc/containerd/config.toml', error: 'ENOENT', missing: true, explicit: false },
      });
      expect(fails(missing)).toEqual([]);
      expect(warns(missing)).toEqual([
        expect.stringContaining('no containerd config at /etc/containerd/config.toml'),
        expect.stringContaining('registry.config_path is not set'),
      ]);
      expect(
        fails(
          run([], {
            config: {
              path: '/x.toml',
              error: 'cannot read containerd config /x.toml: ENOENT',
              missing: true,
              explicit: true,
            },
          }),
        ),
      ).toEqual([expect.stringContaining("cannot check containerd's settings: cannot read containerd config /x.toml")]);
    },
  );

  test('arguments', () => {
    expect(parseDoctorArgs(['--containerd-config', '/c.toml', '--bin-dir=/b'])).toEqual({
      containerdConfig: '/c.toml',
      binDir: '/b',
    });
    expect(() => parseDoctorArgs(['--nope'])).toThrow(/unknown option --nope/);
    expect(() => parseDoctorArgs(['--bin-dir'])).toThrow(/needs a value/);
  });
});

/**
 * `pullguard node install | uninstall | status`, run as users run it: the single executable, against
 * scratch host roots (`--root DIR`, the way a DaemonSet pod sees the host's / at /host) that hold the
 * real containerd 2.1.9 and the libraries it and pullguard need, so that the installer's chroot'ed
 * `containerd config dump` and `pullguard policy check` are the real thing. The last part installs onto
 * the config of a running containerd 2.1.9 and pulls through the CRI between the steps.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import type { Dirent } from 'node:fs';
import { dirname, join } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { install, type NodeOptions, type Step } from '../../src/node/install.js';
import { DROPIN, KIND_NODE_CONFIG, parseDecisionRecords } from '../helpers/containerd.js';
import { criClient, pullError, type CriClient } from '../helpers/cri.js';
import { pushTestImage, type PushedImage } from '../helpers/oci.js';
import { startDaemon, waitFor, type Daemon } from '../helpers/proc.js';
import { startRegistry, type Registry } from '../helpers/registry.js';
import { pullguardBinary, ROOT, tool, toolsBin } from '../helpers/tools.js';

const work = mkdtempSync('/tmp/pg-node-');
afterAll(() => rmSync(work, { recursive: true, force: true }));

interface Run {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly ms: number;
}

function run(argv: readonly string[], timeoutMs = 120_000): Promise<Run> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    execFile(
      argv[0]!,
      argv.slice(1),
      { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 16 << 20, env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } },
      (err, stdout, stderr) => {
        resolve({
          status: err ? (typeof err.code === 'number' ? err.code : null) : 0,
          stdout,
          stderr,
          ms: performance.now() - t0,
        });
      },
    );
  });
}

const pullguard = (...args: string[]) => run([pullguardBinary(), 'node', ...args]);

/** Hard link when possible (same filesystem), else copy. */
function place(from: string, to: string): void {
  mkdirSync(dirname(to), { recursive: true });
  try {
    linkSync(realpathSync(from), to);
  } catch {
    copyFileSync(realpathSync(from), to);
    chmodSync(to, statSync(from).mode & 0o777);
  }
}

let libs: string[] = [];

/** A scratch host root: containerd 2.1.9 at /usr/bin/containerd, /bin/sh, and the shared libraries all need. */
function hostRoot(name: string, files: Record<string, string> = {}): string {
  const root = join(work, name);
  place(tool('containerd'), join(root, 'usr/bin/containerd'));
  place('/bin/sh', join(root, 'bin/sh'));
  for (const l of libs) place(l, join(root, l));
  for (const [p, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, p)), { recursive: true });
    writeFileSync(join(root, p), text);
  }
  return root;
}

/** Every file the installer may touch (etc, opt, var), with its bytes' hash and mode. */
function snapshot(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (rel: string) => {
    let entries: Dirent[];
    try {
      entries = readdirSync(join(root, rel), { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = `${rel}/${e.name}`;
      if (e.isDirectory()) {
        out[`${p}/`] = 'dir';
        walk(p);
      } else
        out[p] = `${createHash('sha256')
          .update(readFileSync(join(root, p)))
          .digest('hex')} ${(statSync(join(root, p)).mode & 0o7777).toString(8)}`;
    }
  };
  for (const top of ['etc', 'opt', 'var']) walk(top);
  return out;
}

const read = (root: string, p: string) => readFileSync(join(root, p), 'utf8');

async function dump(root: string, config = '/etc/containerd/config.toml') {
  const r = await run(['chroot', root, '/usr/bin/containerd', '--config', config, 'config', 'dump']);
  expect(r.status, r.stderr).toBe(0);
  return {
    text: r.stdout,
    log: r.stderr,
    plugins: (parseToml(r.stdout) as { plugins: Record<string, Record<string, unknown>> }).plugins,
  };
}

const EXE = () => ['--executable', pullguardBinary()];
const times: Record<string, number[]> = { install: [], reinstall: [], uninstall: [] };

beforeAll(async () => {
  const ldd = await run(['ldd', tool('containerd'), pullguardBinary(), '/bin/sh']);
  libs = [...new Set(ldd.stdout.match(/\/\S+\.so[.\d]*/g) ?? [])].filter((l) => !l.endsWith(':'));
  expect(libs.length).toBeGreaterThan(2);
});

afterAll(() => {
  const fmt = (k: string) => (times[k]!.length ? `${k} ${times[k]!.map((t) => Math.round(t)).join('/')} ms` : '');
  console.log(
    `node install timings (CLI, scratch roots): ` +
      `${['install', 'reinstall', 'uninstall'].map(fmt).filter(Boolean).join('; ')}`,
  );
});

describe('on a scratch host root (--root)', () => {
  test(
    'a node without config.toml: policy, drop-in, config and executable installed; ' +
      'again changes nothing; uninstall leaves the root as it was',
    async () => {
      const root = hostRoot('fresh');
      const empty = snapshot(root);
      const r = await pullguard('install', '--root', root, ...EXE());
      times.install!.push(r.ms);
      expect(r.status, r.stderr).toBe(0);
      // The order is the one the issue asks for, as the log shows it.
      const order = [
        'is valid',
        'drop-in /etc/containerd/conf.d/pullguard.toml (config version 3): created config.toml',
        'changed /etc/pullguard/policy.yaml, /etc/containerd/conf.d/pullguard.toml, /etc/containerd/config.toml, ' +
          '/opt/containerd/image-verifier/bin/pullguard',
      ];
      let at = -1;
      for (const o of order) {
        const i = r.stdout.indexOf(o);
        expect(i, `${o} in\n${r.stdout}`).toBeGreaterThan(at);
        at = i;
      }
      expect(r.stdout).toContain('containerd restart: containerd not running');
      expect(read(root, 'etc/containerd/config.toml')).toBe(
        'version = 3\nimports = ["/etc/containerd/conf.d/pullguard.toml"]\n',
      );
      expect(readdirSync(join(root, 'opt/containerd/image-verifier/bin'))).toEqual(['pullguard']);
      expect(readdirSync(join(root, 'opt/containerd/image-verifier')).sort()).toEqual(['bin']);
      expect(
        readFileSync(join(root, 'opt/containerd/image-verifier/bin/pullguard')).equals(readFileSync(pullguardBinary())),
      ).toBe(true);
      const d = await dump(root);
      expect(d.plugins['io.containerd.image-verifier.v1.bindir']).toMatchObject({
        bin_dir: '/opt/containerd/image-verifier/bin',
        per_verifier_timeout: '10s',
      });
      expect(d.plugins['io.containerd.cri.v1.images']).toMatchObject({
        discard_unpacked_layers: false,
        registry: { config_path: '/etc/containerd/certs.d' },
      });

      const installed = snapshot(root);
      const again = await pullguard('install', '--root', root, ...EXE());
      times.reinstall!.push(again.ms);
      expect(again.status, again.stderr).toBe(0);
      expect(again.stdout).toContain('nothing to change');
      expect(snapshot(root)).toEqual(installed);

      const st = await pullguard('status', '--root', root, '--json');
      const s = JSON.parse(st.stdout) as { installed: boolean; verificationOn: boolean; lines: string[] };
      expect(s.installed).toBe(true);
      // The files are right (the installed executable's own doctor says so), but no containerd runs here.
      expect(s.lines.join('\n')).toContain('no FAIL: containerd will run pullguard on every pull');
      expect(s.verificationOn).toBe(false);
      // The socket comes from the dump ([grpc] address): containerd's default here.
      expect(s.lines.join('\n')).toContain('not answering on /run/containerd/containerd.sock');
      expect(st.status).toBe(1);

      const u = await pullguard('uninstall', '--root', root, '--json');
      times.uninstall!.push(u.ms);
      expect(u.status, u.stderr).toBe(0);
      expect(JSON.parse(u.stdout)).toMatchObject({ result: 'uninstalled', restart: 'containerd not running' });
      expect(snapshot(root)).toEqual(empty);
    },
  );

  test(
    'a Kind-style version 2 config with a multi-line imports array: the version 2 drop-in, ' +
      "one line added, the node's settings kept",
    async () => {
      const main = KIND_NODE_CONFIG.replace(
        'version = 2\n',
        'version = 2\nimports = [\n  "/etc/containerd/other.toml",\n]\n',
      ).replace(/base_runtime_spec = .*\n/g, '');
      const root = hostRoot('kind', {
        'etc/containerd/config.toml': main,
        'etc/containerd/other.toml': 'version = 2\n',
      });
      const before = await dump(root);
      expect(before.plugins['io.containerd.cri.v1.images']).toMatchObject({ discard_unpacked_layers: true });
      const r = await pullguard('install', '--root', root, ...EXE(), '--no-restart');
      expect(r.status, r.stderr).toBe(0);
      expect(read(root, 'etc/containerd/config.toml')).toBe(
        main.replace('other.toml",\n', 'other.toml",\n  "/etc/containerd/conf.d/pullguard.toml",\n'),
      );
      expect(parseToml(read(root, 'etc/containerd/conf.d/pullguard.toml'))).toMatchObject({ version: 2 });
      const after = await dump(root);
      expect(after.plugins['io.containerd.cri.v1.images']).toMatchObject({
        discard_unpacked_layers: false,
        pinned_images: { sandbox: 'registry.k8s.io/pause:3.10' },
      });
      expect(after.text).toMatch(/SystemdCgroup = true/);
      expect(after.log).not.toMatch(/Ignoring unknown key in TOML for plugin.*io\.containerd\.grpc\.v1\.cri/);
      expect(read(root, 'var/lib/pullguard/config.toml.orig')).toBe(main);
      const u = await pullguard('uninstall', '--root', root, '--no-restart');
      expect(u.status, u.stderr).toBe(0);
      expect(read(root, 'etc/containerd/config.toml')).toBe(main);
    },
  );

  test(
    'no version line: read as containerd 2.1 reads it (version 3), ' + 'the import added before the first table',
    async () => {
      const main = '# written by hand\n[plugins."io.containerd.cri.v1.images"]\n  discard_unpacked_layers = true\n';
      const root = hostRoot('noversion', { 'etc/containerd/config.toml': main });
      const r = await pullguard('install', '--root', root, ...EXE());
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toContain('config /etc/containerd/config.toml version 3');
      expect(read(root, 'etc/containerd/config.toml')).toBe(
        `# written by hand\nimports = ["/etc/containerd/conf.d/pullguard.toml"]\n${main.slice(main.indexOf('['))}`,
      );
      expect((await dump(root)).plugins['io.containerd.cri.v1.images']).toMatchObject({
        discard_unpacked_layers: false,
      });
    },
  );

  test('an existing glob import covers the drop-in: config.toml is not touched', async () => {
    const main = 'version = 3\nimports = ["/etc/containerd/conf.d/*.toml"]\n';
    const root = hostRoot('glob', {
      'etc/containerd/config.toml': main,
      'etc/containerd/conf.d/10-other.toml': 'version = 3\n',
    });
    const r = await pullguard('install', '--root', root, ...EXE());
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('already imported');
    expect(read(root, 'etc/containerd/config.toml')).toBe(main);
    expect((await dump(root)).plugins['io.containerd.image-verifier.v1.bindir']).toMatchObject({
      bin_dir: '/opt/containerd/image-verifier/bin',
    });
    const u = await pullguard('uninstall', '--root', root);
    expect(u.status, u.stderr).toBe(0);
    expect(readdirSync(join(root, 'etc/containerd/conf.d'))).toEqual(['10-other.toml']);
  });

  test('a config that does not parse is refused with row and column, and nothing is touched', async () => {
    const root = hostRoot('broken', {
      'etc/containerd/config.toml': 'version = 2\n[plugins."io.containerd.grpc.v1.cri"\n  sandbox_image = "x"\n',
    });
    const before = snapshot(root);
    const r = await pullguard('install', '--root', root, ...EXE());
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(
      new RegExp(
        /containerd config \/etc\/containerd\/config.toml is not valid TOML at line 2, column \d+: /.source +
          /.* \[CONTAINERD_CONFIG\]/.source,
      ),
    );
    expect(snapshot(root)).toEqual(before);
  });

  test('a stray file in bin_dir is refused (containerd would execute it on every pull), nothing touched', async () => {
    const root = hostRoot('stray', { 'opt/containerd/image-verifier/bin/README': 'hello\n' });
    const before = snapshot(root);
    const r = await pullguard('install', '--root', root, ...EXE());
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('also holds README');
    expect(snapshot(root)).toEqual(before);
  });

  test(
    'an invalid policy: refused after the executable checked it on the host, ' + 'every change undone byte for byte',
    async () => {
      const root = hostRoot('badpolicy', {
        'etc/containerd/config.toml': 'version = 3\n',
        'etc/pullguard/policy.yaml': 'version: 1\ndefault: allow\n',
      });
      const before = snapshot(root);
      const bad = join(work, 'bad-policy.yaml');
      writeFileSync(bad, 'version: 1\ndefault: alow\n');
      const r = await pullguard('install', '--root', root, ...EXE(), '--policy', bad);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(
        /the policy is not valid: invalid policy \/etc\/pullguard\/policy.yaml:2: .*every change was undone/,
      );
      expect(snapshot(root)).toEqual(before);
    },
  );

  test("the host's containerd refuses the merged configuration: config.toml restored byte for byte", async () => {
    // A containerd that fails `config dump` once the import is there: what a host binary with another
    // parser (or a corrupt drop-in) does. The real binary does the rest.
    const main = 'version = 3\n[debug]\n  level = "info"\n';
    const root = hostRoot('dumpfails', { 'etc/containerd/config.toml': main });
    writeFileSync(
      join(root, 'usr/bin/containerd-checked'),
      '#!/bin/sh\nif [ "$3" = config ]; then while read -r l; do case "$l" in *pullguard*) echo "containerd: ' +
        'failed to unmarshal TOML at row 2 column 1: refused" >&2; exit 1;; esac; done < "$2"; fi\nexec ' +
        '/usr/bin/containerd "$@"\n',
    );
    chmodSync(join(root, 'usr/bin/containerd-checked'), 0o755);
    const before = snapshot(root);
    const r = await pullguard('install', '--root', root, ...EXE(), '--containerd', '/usr/bin/containerd-checked');
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(
      'containerd config dump refuses the new configuration: containerd: failed to unmarshal TOML at row 2 column ' +
        '1: refused',
    );
    expect(read(root, 'etc/containerd/config.toml')).toBe(main);
    expect(snapshot(root)).toEqual(before);
  });

  test(
    'validation catches a wrong containerd version: ' + 'a 2.2 default conf.d import does not exist in 2.1.9',
    async () => {
      const root = hostRoot('claims22', { 'etc/containerd/config.toml': 'version = 3\n' });
      const before = snapshot(root);
      const r = await pullguard('install', '--root', root, ...EXE(), '--containerd-version', '2.2.0');
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(
        new RegExp(
          /containerd 2.2.0 does not read the configuration the way pullguard's model of it does /.source +
            /\(registry.config_path: expected "\/etc\/containerd\/certs.d", containerd has ""\); /.source +
            /is --containerd-version right\?/.source,
        ),
      );
      expect(snapshot(root)).toEqual(before);
    },
  );

  test('uninstall after someone edited config.toml: only the import is removed', async () => {
    const root = hostRoot('edited', {
      'etc/containerd/config.toml': 'version = 3\nimports = ["/etc/containerd/a.toml"]\n',
      'etc/containerd/a.toml': 'version = 3\n',
    });
    expect((await pullguard('install', '--root', root, ...EXE())).status).toBe(0);
    const edited = `${read(root, 'etc/containerd/config.toml')}[debug]\n  level = "debug"\n`;
    writeFileSync(join(root, 'etc/containerd/config.toml'), edited);
    const u = await pullguard('uninstall', '--root', root);
    expect(u.status, u.stderr).toBe(0);
    expect(u.stdout).toContain('changed since the install: removed only the import');
    expect(read(root, 'etc/containerd/config.toml')).toBe(
      'version = 3\nimports = ["/etc/containerd/a.toml"]\n[debug]\n  level = "debug"\n',
    );
  });

  test(
    'install/install.sh is a thin wrapper: DESTDIR is the root; the drop-in, the example policy ' +
      '(pause allowed, the rest denied)',
    async () => {
      const root = hostRoot('wrapper');
      const script = join(ROOT, 'install', 'install.sh');
      const r = await new Promise<Run>((resolve) =>
        execFile(
          script,
          ['--bin-dir', '/opt/pullguard/bin'],
          { encoding: 'utf8', timeout: 120_000, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', DESTDIR: root } },
          (err, stdout, stderr) =>
            resolve({ status: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr, ms: 0 }),
        ),
      );
      expect(r.status, r.stdout + r.stderr).toBe(0);
      expect(readdirSync(join(root, 'opt/pullguard/bin'))).toEqual(['pullguard']);
      expect(read(root, 'etc/containerd/conf.d/pullguard.toml')).toBe(
        readFileSync(DROPIN, 'utf8').replace(
          'bin_dir = "/opt/containerd/image-verifier/bin"',
          'bin_dir = "/opt/pullguard/bin"',
        ),
      );
      expect(read(root, 'etc/pullguard/policy.yaml')).toBe(
        readFileSync(join(ROOT, 'install/policy.example.yaml'), 'utf8'),
      );
      const asContainerd = (name: string) => {
        const digest = `sha256:${'a'.repeat(64)}`;
        return new Promise<Run>((resolve) => {
          const child = execFile(
            '/usr/sbin/chroot',
            [
              root,
              '/opt/pullguard/bin/pullguard',
              '-name',
              name,
              '-digest',
              digest,
              '-stdin-media-type',
              'application/vnd.oci.descriptor.v1+json',
            ],
            { encoding: 'utf8', timeout: 20_000, env: {} },
            (err, stdout, stderr) =>
              resolve({ status: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr, ms: 0 }),
          );
          child.stdin!.end(
            JSON.stringify({ mediaType: 'application/vnd.oci.image.index.v1+json', digest, size: 2048 }),
          );
        });
      };
      const pause = await asContainerd('registry.k8s.io/pause:3.10');
      expect(pause.status, pause.stdout + pause.stderr).toBe(0);
      expect(pause.stdout).toContain('(rule "pause")');
      const other = await asContainerd('docker.io/library/nginx:latest');
      expect(other.status).toBe(1);
      expect(other.stdout).toContain('no rule matches; default is deny');
      // A policy that is there is kept (and checked), not replaced by the example.
      writeFileSync(join(root, 'etc/pullguard/policy.yaml'), 'version: 1\ndefault: allow\n');
      const again = await run([script, '--bin-dir', '/opt/pullguard/bin', '--root', root]);
      expect(again.status, again.stderr).toBe(0);
      expect(read(root, 'etc/pullguard/policy.yaml')).toBe('version: 1\ndefault: allow\n');
    },
  );

  test('an upgrade replaces the executable with one rename and leaves nothing beside bin_dir', async () => {
    const root = hostRoot('upgrade');
    expect((await pullguard('install', '--root', root, ...EXE())).status).toBe(0);
    // A different build: the same executable with one byte appended (ELF ignores trailing bytes).
    const next = join(work, 'pullguard-next');
    writeFileSync(next, Buffer.concat([readFileSync(pullguardBinary()), Buffer.from('\n')]));
    chmodSync(next, 0o755);
    const r = await pullguard('install', '--root', root, '--executable', next, '--json');
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ changed: ['/opt/containerd/image-verifier/bin/pullguard'] });
    expect(readFileSync(join(root, 'opt/containerd/image-verifier/bin/pullguard')).equals(readFileSync(next))).toBe(
      true,
    );
    expect(readdirSync(join(root, 'opt/containerd/image-verifier')).sort()).toEqual(['bin']);
  });

  test('one installer at a time: a live holder of the lock refuses the second, a dead one is taken over', async () => {
    const root = hostRoot('locked', { 'var/lib/pullguard/lock/pid': String(process.pid) });
    const before = snapshot(root);
    const r = await pullguard('install', '--root', root, ...EXE(), '--json');
    expect(r.status).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({
      result: 'failed',
      code: 'CONTAINERD_CONFIG',
      message: expect.stringContaining(`another pullguard node install/uninstall (pid ${process.pid}) is running`),
    });
    expect(snapshot(root)).toEqual(before);
    writeFileSync(join(root, 'var/lib/pullguard/lock/pid'), '999999999');
    expect((await pullguard('install', '--root', root, ...EXE())).status).toBe(0);
    expect(readdirSync(join(root, 'var/lib/pullguard'))).toEqual(['state.json']);
  });

  test('usage errors exit 2', async () => {
    expect((await pullguard('install', '--bogus')).status).toBe(2);
    expect((await pullguard('install', '--root', 'relative', ...EXE())).status).toBe(2);
    expect((await pullguard('frobnicate')).status).toBe(2);
  });
});

/** containerd under a shell loop that starts it again when it exits: what `--restart-command` restarts. */
async function startSupervised(dir: string): Promise<Daemon> {
  const q = JSON.stringify;
  const loop =
    `while [ ! -e ${q(join(dir, 'stop'))} ]; do ${q(tool('containerd'))} --config ` +
    `${q(join(dir, 'config.toml'))} & echo $! > ${q(join(dir, 'containerd.pid'))}; wait $!; done`;
  const sup = startDaemon('/bin/sh', ['-c', loop], {
    env: { PATH: `${toolsBin()}:/usr/sbin:/usr/bin:/sbin:/bin`, PULLGUARD_POLICY: join(dir, 'policy/policy.yaml') },
  });
  await waitFor(
    'containerd CRI',
    async () =>
      /msg="containerd successfully booted/.test(sup.output()) &&
      (await run([tool('ctr'), '-a', join(dir, 'c.sock'), 'version'])).status === 0,
    60_000,
    sup,
  );
  return sup;
}

async function stopSupervised(dir: string, sup: Daemon | undefined): Promise<void> {
  writeFileSync(join(dir, 'stop'), '');
  try {
    process.kill(Number(readFileSync(join(dir, 'containerd.pid'), 'utf8')), 'SIGTERM');
  } catch {
    /* gone */
  }
  await sup?.stop();
  const mounts = readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[1] ?? '')
    .filter((m) => m.startsWith(`${dir}/`));
  for (const m of mounts.sort((a, b) => b.length - a.length)) await run(['umount', '-l', m]);
  rmSync(dir, { recursive: true, force: true });
}

/** Paths of a scratch containerd: root, state, socket and the host paths it would otherwise touch. */
function daemonPaths(dir: string): string[] {
  const q = JSON.stringify;
  return [
    `root = ${q(join(dir, 'root'))}`,
    `state = ${q(join(dir, 'state'))}`,
    '[grpc]',
    `  address = ${q(join(dir, 'c.sock'))}`,
    '[debug]',
    '  level = "debug"',
    '[plugins."io.containerd.internal.v1.opt"]',
    `  path = ${q(join(dir, 'opt'))}`,
    '[plugins."io.containerd.nri.v1.nri"]',
    `  socket_path = ${q(join(dir, 'nri.sock'))}`,
  ];
}

const nodeOptions = (dir: string, registryPolicy: string): NodeOptions => {
  writeFileSync(join(dir, 'policy-source.yaml'), registryPolicy);
  return {
    root: '/',
    configPath: join(dir, 'config.toml'),
    dropinPath: join(dir, 'conf.d/pullguard.toml'),
    binDir: join(dir, 'bin'),
    policyDir: join(dir, 'policy'),
    // Never the real /var/lib/pullguard: root is / here.
    stateDir: join(dir, 'pullguard-state'),
    executable: pullguardBinary(),
    policySource: join(dir, 'policy-source.yaml'),
    containerdBin: tool('containerd'),
    socket: join(dir, 'c.sock'),
    restart: true,
    restartCommand: `kill -TERM "$(cat ${join(dir, 'containerd.pid')})"`,
    timeoutMs: 60_000,
  };
};

/**
 * A real containerd 2.1.9 on a Kind-style version 2 config (discard_unpacked_layers = true: CRI pulls
 * are local and never verified), supervised by a shell loop so that `--restart-command` can restart it
 * the way an init system does (SIGTERM, start again). Paths are absolute into a scratch directory
 * (--root /), so the daemon reads exactly what the installer wrote.
 */
describe('onto the config of a running containerd 2.1.9, pulling between the steps', () => {
  let registry: Registry;
  let sup: Daemon;
  let cri: CriClient;
  let dir: string;
  const images: Record<string, PushedImage> = {};

  let opts: () => NodeOptions;

  beforeAll(async () => {
    dir = mkdtempSync('/tmp/pgn-');
    registry = await startRegistry();
    for (const step of ['before', 'policy', 'containerd-config', 'executable', 'restart', 'un-restart']) {
      images[`app-${step}`] = await pushTestImage(registry.host, `app-${step}`, 'v1', `app-${step}`);
      images[`blocked-${step}`] = await pushTestImage(registry.host, `blocked-${step}`, 'v1', `blocked-${step}`);
    }
    const policy =
      `version: 1\ndefault: deny\nrules:\n` +
      `  - {name: pause, match: registry.k8s.io/pause, action: allow}\n  - name: app\n` +
      `    match: ${registry.host}/app-*\n    action: ` +
      `allow\n  - name: blocked\n    match: ${registry.host}/blocked-*\n    action: deny\n`;
    opts = () => nodeOptions(dir, policy);
    const main = [
      'version = 2',
      ...daemonPaths(dir),
      '[plugins."io.containerd.grpc.v1.cri"]',
      '  sandbox_image = "registry.k8s.io/pause:3.10"',
      '[plugins."io.containerd.grpc.v1.cri".containerd]',
      '  discard_unpacked_layers = true',
      '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]',
      '  runtime_type = "io.containerd.runc.v2"',
      '',
    ].join('\n');
    writeFileSync(join(dir, 'config.toml'), main);
    writeFileSync(join(dir, 'config.toml.before'), main);
    sup = await startSupervised(dir);
    cri = criClient(join(dir, 'c.sock'));
  });

  afterAll(async () => {
    cri?.close();
    if (dir) await stopSupervised(dir, sup);
    await registry?.stop();
  });

  const decided = (name: string) => parseDecisionRecords(sup.output()).some((r) => r.name === name);

  /** Pulls an allowed and a denied image through the CRI: what a kubelet would see at this moment. */
  async function pullBoth(step: string) {
    const app = images[`app-${step}`]!;
    const blocked = images[`blocked-${step}`]!;
    const appErr = await pullError(cri, app.ref);
    const blockedErr = await pullError(cri, blocked.ref);
    // A decision record is logged for every verified pull; give the log a moment to catch up with the answer.
    const verified = await waitFor(`record for ${app.ref}`, () => decided(app.ref), 3000).then(
      () => true,
      () => false,
    );
    return {
      step,
      app: appErr ? `DENIED ${appErr.details}` : 'allowed',
      blocked: blockedErr
        ? blockedErr.details.includes('denied by policy (rule "blocked")')
          ? 'denied by pullguard'
          : `failed ${blockedErr.details}`
        : 'allowed',
      verified,
    };
  }

  test(
    'a restart after which containerd does not answer: every change undone, ' +
      'containerd back on the old configuration',
    async () => {
      const before = readFileSync(join(dir, 'config.toml'), 'utf8');
      const pid = Number(readFileSync(join(dir, 'containerd.pid'), 'utf8'));
      // A restart command that restarts nothing: no new pid ever answers.
      const r = await install({ ...opts(), restartCommand: 'true', timeoutMs: 3000 }, { log: () => {} }).then(
        () => undefined,
        (e: Error) => e,
      );
      expect(r?.message).toMatch(
        /containerd did not answer on .* within 3s after the restart \(pid \d+\) \(every change was undone\)/,
      );
      expect(readFileSync(join(dir, 'config.toml'), 'utf8')).toBe(before);
      expect(
        readdirSync(dir)
          .filter((n) => ['bin', 'conf.d', 'policy'].includes(n))
          .flatMap((n) => readdirSync(join(dir, n))),
      ).toEqual([]);
      expect(Number(readFileSync(join(dir, 'containerd.pid'), 'utf8'))).toBe(pid);
    },
  );

  test(
    'install: no pull is denied at any step, ' +
      'and every pull is verified once the drop-in is in effect; uninstall puts the config back byte for byte',
    async () => {
      const seen: Awaited<ReturnType<typeof pullBoth>>[] = [await pullBoth('before')];
      expect(sup.output()).toContain('Falling back to local image pull mode');
      const t0 = performance.now();
      let pulling = 0;
      const r = await install(opts(), {
        log: () => {},
        afterStep: async (s: Step) => {
          const p0 = performance.now();
          seen.push(await pullBoth(s));
          pulling += performance.now() - p0;
        },
      });
      // The installer's own time, restart included, without the test's pulls between the steps.
      const installMs = performance.now() - t0 - pulling;
      expect(r.restart).toBe('done');
      expect(readdirSync(join(dir, 'bin'))).toEqual(['pullguard']);
      const steps = seen.map(
        (s) => `  after ${s.step.padEnd(17)} app ${s.app}, blocked ${s.blocked}, verified ${s.verified}`,
      );
      console.log(`pulls during install:\n${steps.join('\n')}`);
      // Before the restart containerd still runs its old configuration: local CRI pulls, nothing verified,
      // nothing denied. After it, every pull is decided by pullguard.
      expect(seen.map((s) => [s.step, s.app, s.blocked, s.verified])).toEqual([
        ['before', 'allowed', 'allowed', false],
        ['policy', 'allowed', 'allowed', false],
        ['containerd-config', 'allowed', 'allowed', false],
        ['executable', 'allowed', 'allowed', false],
        ['restart', 'allowed', 'denied by pullguard', true],
      ]);
      const bootLog = sup.output().slice(sup.output().lastIndexOf('starting containerd'));
      expect(bootLog).not.toContain('Falling back to local image pull mode');

      // Again, through the CLI: nothing changes, so no restart (same pid).
      const o = opts();
      const flags = [
        '--config',
        o.configPath,
        '--dropin',
        o.dropinPath,
        '--bin-dir',
        o.binDir,
        '--policy-dir',
        o.policyDir,
        '--state-dir',
        o.stateDir!,
        '--containerd',
        o.containerdBin!,
        '--socket',
        o.socket!,
        '--restart-command',
        o.restartCommand!,
        '--json',
      ];
      const again = await pullguard('install', '--executable', o.executable, '--policy', o.policySource!, ...flags);
      expect(again.status, again.stderr).toBe(0);
      expect(JSON.parse(again.stdout)).toMatchObject({
        result: 'installed',
        changed: [],
        restart: 'not needed',
        containerdPid: r.containerd!.pid,
      });
      const st = await pullguard(
        'status',
        '--state-dir',
        o.stateDir!,
        '--config',
        o.configPath,
        '--socket',
        o.socket!,
        '--containerd',
        o.containerdBin!,
        '--json',
      );
      const s = JSON.parse(st.stdout) as { installed: boolean; verificationOn: boolean; lines: string[] };
      expect(s, s.lines.join('\n')).toMatchObject({ installed: true, verificationOn: true });
      expect(st.status).toBe(0);

      // Uninstall through the CLI, restarting with the same documented fallback.
      const u = await pullguard('uninstall', ...flags);
      expect(
        u.status,
        `${u.stderr}\n${sup
          .output()
          .split('\n')
          .filter((l) => /level=(info|warn|error|fatal)/.test(l) && !/image_verifier/.test(l))
          .slice(-40)
          .join('\n')}`,
      ).toBe(0);
      expect(JSON.parse(u.stdout)).toMatchObject({ result: 'uninstalled', restart: 'done' });
      expect(readFileSync(o.configPath, 'utf8')).toBe(readFileSync(join(dir, 'config.toml.before'), 'utf8'));
      expect(readdirSync(dir)).not.toContain('conf.d');
      const afterUninstall = await pullBoth('un-restart');
      expect(afterUninstall).toMatchObject({ app: 'allowed', blocked: 'allowed', verified: false });
      console.log(
        `install onto a running containerd (restart included): ${Math.round(installMs)} ms; uninstall (CLI, restart ` +
          `included): ${Math.round(u.ms)} ms`,
      );
    },
  );
});

describe('onto a containerd whose configuration already has every setting: no restart', () => {
  let registry: Registry;
  let sup: Daemon;
  let cri: CriClient;
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync('/tmp/pgn-');
    registry = await startRegistry();
    const q = JSON.stringify;
    const main = [
      'version = 3',
      ...daemonPaths(dir),
      '[plugins."io.containerd.image-verifier.v1.bindir"]',
      `  bin_dir = ${q(join(dir, 'bin'))}`,
      '[plugins."io.containerd.cri.v1.images"]',
      '  use_local_image_pull = false',
      '[plugins."io.containerd.cri.v1.images".registry]',
      '  config_path = "/etc/containerd/certs.d"',
      '',
    ].join('\n');
    writeFileSync(join(dir, 'config.toml'), main);
    sup = await startSupervised(dir);
    cri = criClient(join(dir, 'c.sock'));
  });

  afterAll(async () => {
    cri?.close();
    if (dir) await stopSupervised(dir, sup);
    await registry?.stop();
  });

  test(
    'the effective configuration does not change: no restart, ' +
      'and pulls are verified as soon as the executable is in bin_dir',
    async () => {
      const blocked = await Promise.all(
        ['config', 'executable'].map((s) => pushTestImage(registry.host, `blocked-${s}`, 'v1', s)),
      );
      const o = {
        ...nodeOptions(
          dir,
          `version: 1\ndefault: deny\nrules:\n  - name: blocked\n    match: ${registry.host}/blocked-*\n    action: ` +
            `deny\n`,
        ),
        restartCommand: 'exit 7',
      };
      const pid = Number(readFileSync(join(dir, 'containerd.pid'), 'utf8'));
      const seen: string[] = [];
      const r = await install(o, {
        log: () => {},
        afterStep: async (s: Step) => {
          const image = s === 'containerd-config' ? blocked[0] : s === 'executable' ? blocked[1] : undefined;
          if (!image) return;
          const e = await pullError(cri, image.ref);
          const byPullguard = e?.details.includes('denied by policy (rule "blocked")');
          seen.push(`${s}: ${e ? (byPullguard ? 'denied by pullguard' : e.details) : 'allowed'}`);
        },
      });
      // The restart command fails if it runs: it did not.
      expect(r.restart).toBe('not needed');
      expect(r.containerd?.pid).toBe(pid);
      expect(seen).toEqual(['containerd-config: allowed', 'executable: denied by pullguard']);
    },
  );
});

/**
 * The DaemonSet's view: the installer gets the host's / as `--root` and only default paths, while the
 * node's containerd 2.1.9 runs inside that root (chroot, in a private mount namespace with /proc, /sys
 * and /dev bound in): every path the installer writes into a file is the host's own.
 */
describe('with --root and default paths, onto a containerd running inside that root', () => {
  let registry: Registry;
  let sup: Daemon;
  let cri: CriClient;
  let root: string;
  const socket = () => join(root, 'run/containerd/containerd.sock');

  beforeAll(async () => {
    registry = await startRegistry();
    const main = [
      'version = 2',
      '[debug]',
      '  level = "debug"',
      '[plugins."io.containerd.grpc.v1.cri".containerd]',
      '  discard_unpacked_layers = true',
      '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]',
      '  runtime_type = "io.containerd.runc.v2"',
      '',
    ].join('\n');
    root = hostRoot('daemonset', { 'etc/containerd/config.toml': main });
    for (const d of ['proc', 'sys', 'dev', 'run/containerd', 'tmp']) mkdirSync(join(root, d), { recursive: true });
    const q = JSON.stringify;
    // The root bound onto itself first: containerd finds its snapshotter directories in mountinfo.
    const binds = [
      `mount --bind ${q(root)} ${q(root)}`,
      ...['proc', 'sys', 'dev'].map((d) => `mount --rbind /${d} ${q(join(root, d))}`),
    ].join(' && ');
    const loop =
      `${binds} && while [ ! -e ${q(join(root, 'stop'))} ]; do chroot ${q(root)} /usr/bin/containerd & ` +
      `echo $! > ${q(join(root, 'containerd.pid'))}; wait $!; done`;
    sup = startDaemon('unshare', ['--mount', '--propagation', 'private', '/bin/sh', '-c', loop], {
      env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
    });
    await waitFor(
      'containerd in the root',
      async () =>
        /msg="containerd successfully booted/.test(sup.output()) &&
        (await run([tool('ctr'), '-a', socket(), 'version'])).status === 0,
      60_000,
      sup,
    );
    cri = criClient(socket());
  });

  afterAll(async () => {
    cri?.close();
    if (root) {
      writeFileSync(join(root, 'stop'), '');
      try {
        process.kill(Number(readFileSync(join(root, 'containerd.pid'), 'utf8')), 'SIGTERM');
      } catch {
        /* gone */
      }
      // The mounts live in the daemon's private namespace: they go with it.
      await sup?.stop();
    }
    await registry?.stop();
  });

  test('install verifies CRI pulls; status says verification is on; uninstall puts the host back', async () => {
    const allowed = await pushTestImage(registry.host, 'ds-app', 'v1', 'ds-app');
    const denied = await pushTestImage(registry.host, 'ds-blocked', 'v1', 'ds-blocked');
    const after = await pushTestImage(registry.host, 'ds-after', 'v1', 'ds-after');
    const policy = join(work, 'ds-policy');
    mkdirSync(policy);
    writeFileSync(
      join(policy, 'policy.yaml'),
      `version: 1\ndefault: allow\nrules:\n  - name: blocked\n    match: ["${registry.host}/ds-blocked", ` +
        `"${registry.host}/ds-after"]\n    action: deny\n`,
    );
    const original = read(root, 'etc/containerd/config.toml');
    expect(await pullError(cri, denied.ref)).toBeUndefined();
    const restart = `kill -TERM "$(cat ${join(root, 'containerd.pid')})"`;
    const r = await pullguard(
      'install',
      '--root',
      root,
      ...EXE(),
      '--policy',
      policy,
      '--restart-command',
      restart,
      '--json',
    );
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ result: 'installed', restart: 'done' });
    // Host paths in the files, as the daemon inside the root reads them.
    expect(read(root, 'etc/containerd/config.toml')).toContain('imports = ["/etc/containerd/conf.d/pullguard.toml"]');
    expect(await pullError(cri, allowed.ref)).toBeUndefined();
    const err = await pullError(cri, after.ref);
    expect(err?.details).toContain('verifier pullguard rejected image (exit code 1)');
    expect(err?.details).toContain('denied by policy (rule "blocked")');
    const st = await pullguard('status', '--root', root, '--json');
    const s = JSON.parse(st.stdout) as { verificationOn: boolean; lines: string[] };
    expect(s.verificationOn, s.lines.join('\n')).toBe(true);
    expect(s.lines.join('\n')).toContain('containerd  running (pid');

    const u = await pullguard('uninstall', '--root', root, '--restart-command', restart, '--json');
    expect(u.status, u.stderr).toBe(0);
    expect(read(root, 'etc/containerd/config.toml')).toBe(original);
    expect(readdirSync(join(root, 'etc'))).not.toContain('pullguard');
    expect(readdirSync(join(root, 'etc/containerd'))).toEqual(['config.toml']);
    expect(readdirSync(join(root, 'opt/containerd'))).not.toContain('image-verifier');
    expect(await pullError(cri, after.ref)).toBeUndefined();
  });
});

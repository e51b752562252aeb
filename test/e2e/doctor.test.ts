/**
 * `pullguard doctor`, run as operators run it: the shipped single executable (dist/pullguard) against
 * containerd configs built the way the other tests build them (test/helpers/containerd.ts: the
 * version 3 drop-in, Kind's version 2 node config with and without kind/cluster.yaml's patch), and
 * cross-checked against a real containerd 2.1.9: where containerd logs "Falling back to local image
 * pull mode" (verification off for CRI pulls), doctor must FAIL on the same config, and where it does
 * not, doctor must not FAIL. Runs as root (CI does): containerd needs it.
 */
import { execFile } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  applyKindPatches,
  KIND_NODE_CONFIG,
  kindPatches,
  startContainerd,
  type ConfigMode,
  type Containerd,
} from '../helpers/containerd.js';
import { pullguardBinary, toolsBin } from '../helpers/tools.js';

const FALLBACK = 'Falling back to local image pull mode';

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly fails: string[];
}

let work: string;
let policyFile: string;

/**
 * dist/pullguard doctor with a minimal environment: the tools' PATH (so `containerd --version` runs) and the test
 * policy.
 */
function doctor(args: string[]): Promise<Run> {
  const env = { PATH: `${toolsBin()}:/usr/bin:/bin`, PULLGUARD_POLICY: policyFile };
  return new Promise((resolve) => {
    execFile(
      pullguardBinary(),
      ['doctor', ...args],
      { env, encoding: 'utf8', timeout: 20_000, killSignal: 'SIGKILL' },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
        resolve({ code, stdout, stderr, fails: stdout.split('\n').filter((l) => l.startsWith('FAIL')) });
      },
    );
  });
}

/** A bin_dir holding dist/pullguard alone, plus `extra` files. */
function binDir(name: string, extra: Record<string, string> = {}): string {
  const dir = join(work, name);
  mkdirSync(dir);
  copyFileSync(pullguardBinary(), join(dir, 'pullguard'));
  chmodSync(join(dir, 'pullguard'), 0o755);
  for (const [n, text] of Object.entries(extra)) writeFileSync(join(dir, n), text);
  return dir;
}

function configFile(name: string, toml: string): string {
  const p = join(work, name);
  writeFileSync(p, toml);
  return p;
}

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'pg-doctor-'));
  policyFile = join(work, 'policy.yaml');
  writeFileSync(
    policyFile,
    'version: 1\nmode: enforce\ntimeout: 8s\ndefault: deny\nrules:\n  - name: system\n' +
      '    match: registry.k8s.io/**\n    action: allow\n',
  );
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('configs as the tests build them', () => {
  test("Kind's version 2 node config without the patch: FAIL on discard_unpacked_layers, exit 2", async () => {
    const r = await doctor([
      '--containerd-config',
      configFile('kind-node.toml', KIND_NODE_CONFIG),
      '--bin-dir',
      binDir('bin-kind-node'),
    ]);
    expect(r.code, r.stdout + r.stderr).toBe(2);
    expect(r.fails).toEqual([
      expect.stringMatching(
        new RegExp(
          /^FAIL {2}discard_unpacked_layers = true /.source +
            /\(plugins\."io\.containerd\.grpc\.v1\.cri"\.containerd\.discard_unpacked_layers /.source +
            /in .*kind-node\.toml\): /.source +
            /CRI falls back to local pulls.*; /.source +
            /fix: set plugins\."io\.containerd\.grpc\.v1\.cri"\.containerd\.discard_unpacked_layers = false/.source,
        ),
      ),
    ]);
    expect(r.stdout).toMatch(/^ok {4}containerd 2\.1\.9 /m);
  });

  test("Kind's node config with kind/cluster.yaml's patches applied as Kind does: no FAIL, exit 0", async () => {
    const { toml } = applyKindPatches(KIND_NODE_CONFIG, kindPatches());
    // The patch says bin_dir = /opt/containerd/image-verifier/bin; --bin-dir stands in for the node's mount.
    const r = await doctor([
      '--containerd-config',
      configFile('kind-patched.toml', toml),
      '--bin-dir',
      binDir('bin-kind-patched'),
    ]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.fails).toEqual([]);
    expect(r.stdout).not.toMatch(/^WARN/m);
    expect(r.stdout).toMatch(/^ok {4}registry\.config_path = "\/etc\/containerd\/certs\.d"/m);
  });

  test('a README beside pullguard in bin_dir: FAIL (containerd would exec it and block every pull)', async () => {
    const { toml } = applyKindPatches(KIND_NODE_CONFIG, kindPatches());
    const dir = binDir('bin-readme', { README: 'pullguard lives here\n' });
    const r = await doctor(['--containerd-config', configFile('kind-patched-2.toml', toml), '--bin-dir', dir]);
    expect(r.code, r.stdout + r.stderr).toBe(2);
    expect(r.fails).toEqual([
      expect.stringContaining(
        `FAIL  ${join(dir, 'README')} is not executable: containerd executes every entry of bin_dir`,
      ),
    ]);
  });
});

describe.each<[ConfigMode, boolean]>([
  ['dropin', false],
  ['kind-unpatched', true],
])('a real containerd 2.1.9 from the %s config', (mode, fallsBack) => {
  let ctd: Containerd;
  beforeAll(async () => {
    ctd = await startContainerd({ mode, policy: policyFile });
  });
  afterAll(async () => {
    await ctd?.stop();
  });

  test(
    fallsBack
      ? 'containerd falls back to local pulls and doctor FAILs'
      : 'containerd keeps CRI pulls on the transfer service and doctor passes',
    async () => {
      expect(ctd.log().includes(FALLBACK), 'containerd log').toBe(fallsBack);
      // bin_dir comes from the config itself (the daemon's temp bin_dir, holding pullguard).
      const r = await doctor(['--containerd-config', ctd.configFile]);
      expect(r.stdout).toContain(`bin_dir ${ctd.binDir}`);
      if (fallsBack) {
        expect(r.code, r.stdout).toBe(2);
        expect(r.fails).toEqual([expect.stringMatching(/^FAIL {2}discard_unpacked_layers = true /)]);
        // Read from containerd's own log too: the warning it wrote since it started.
        const logFile = join(work, `containerd-${mode}.log`);
        writeFileSync(logFile, ctd.log());
        const withLog = await doctor(['--containerd-config', ctd.configFile, '--containerd-log', logFile]);
        expect(withLog.fails).toEqual([
          expect.stringMatching(/^FAIL {2}discard_unpacked_layers = true /),
          expect.stringMatching(
            new RegExp(
              `^FAIL {2}containerd logged "${FALLBACK}" since it started \\(${logFile.replace(/[.]/g, '\\.')}\\)`,
            ),
          ),
        ]);
        // The same setting containerd names in its one WARN line (the Go field of discard_unpacked_layers).
        expect(ctd.log()).toContain(
          "Found 'DiscardUnpackedLayers' in CRI config which is incompatible with transfer service",
        );
      } else {
        expect(r.code, r.stdout).toBe(0);
        expect(r.fails).toEqual([]);
        expect(r.stdout).toMatch(/^ok {4}no CRI setting forces local pulls/m);
      }
    },
  );
});

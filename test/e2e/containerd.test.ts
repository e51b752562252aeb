/**
 * Node-level end to end: a real docker-registry, a real containerd 2.1.9 started from the config
 * files this repository ships (containerd-config/ and kind/cluster.yaml), the single executable
 * dist/pullguard alone in its bin_dir, and pulls the two ways nodes pull:
 *  - CRI runtime.v1.ImageService/PullImage over containerd's socket (the call kubelet makes);
 *  - `ctr image pull` (the transfer service, as nerdctl/ctr users pull).
 * Runs as root (CI does). Every daemon is stopped by PID in afterAll and its temp dir removed.
 */
import { spawnSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { parse as parseYaml } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  applyKindPatches,
  DROPIN,
  DROPIN_V2,
  KIND_CLUSTER,
  kindPatches,
  KIND_NODE_CONFIG,
  startContainerd,
  type Containerd,
} from '../helpers/containerd.js';
import { CriError, criClient, pullError, type CriClient } from '../helpers/cri.js';
import { pushTestImage, type PushedImage } from '../helpers/oci.js';
import { startRegistry, type Registry } from '../helpers/registry.js';
import { waitFor } from '../helpers/proc.js';
import { pullguardBinary, ROOT, tool } from '../helpers/tools.js';

const FALLBACK = 'Falling back to local image pull mode';
const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

let registry: Registry;
let work: string;
let policyFile: string;
const img: Record<'app' | 'multi' | 'blocked' | 'other' | 'signed', PushedImage> = {} as never;

/** `denied 127.0.0.1:PORT/blocked@sha256:0123456789ab…`: how pullguard names an image in its line. */
const subject = (image: PushedImage) => `${image.ref.replace(/:[^:/]+$/, '')}@${image.digest.slice(0, 19)}…`;

function standardPolicy(host: string, cosignKey: string): string {
  return [
    'version: 1',
    'default: deny',
    'rules:',
    '  - name: app',
    `    match: ["${host}/app", "${host}/multi", "registry.pullguard.test/app"]`,
    '    action: allow',
    '  - name: blocked',
    `    match: ${host}/blocked`,
    '    action: deny',
    '  - name: needs-signature',
    `    match: ${host}/signed`,
    '    action: verify',
    '    authorities:',
    '      - name: release-key',
    `        cosign: {keys: [${JSON.stringify(cosignKey)}]}`,
    '',
  ].join('\n');
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'pg-e2e-'));
  policyFile = join(work, 'policy.yaml');
  registry = await startRegistry();
  const h = registry.host;
  const push = (repo: string, index = false) => pushTestImage(h, repo, 'v1', repo, { index });
  img.app = await push('app');
  img.multi = await push('multi', true);
  img.blocked = await push('blocked');
  img.other = await push('other');
  img.signed = await push('signed');
  // A real public key nobody signed the test images with.
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const keyFile = join(work, 'release.pub');
  writeFileSync(keyFile, publicKey.export({ type: 'spki', format: 'pem' }));
  writeFileSync(policyFile, standardPolicy(h, keyFile));
});

afterAll(async () => {
  await registry?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('containerd 2.1.9 with the containerd-config/ drop-in', () => {
  let ctd: Containerd;
  let cri: CriClient;

  beforeAll(async () => {
    ctd = await startContainerd({ mode: 'dropin', policy: policyFile });
    cri = criClient(ctd.socket);
  });
  afterAll(async () => {
    cri?.close();
    await ctd?.stop();
  });

  it('the drop-in alone merges into a version 3 config with every setting it promises', () => {
    // A config that imports only the drop-in (nothing moved into temp paths): what a node gets.
    const main = join(work, 'only-dropin.toml');
    writeFileSync(
      main,
      `version = 3\nroot = ${JSON.stringify(join(work, 'r'))}\nimports = [${JSON.stringify(DROPIN)}]\n`,
    );
    const r = spawnSync(tool('containerd'), ['--config', main, 'config', 'dump'], {
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(r.status, r.stderr).toBe(0);
    const plugins = (parseToml(r.stdout) as { plugins: Record<string, Record<string, unknown>> }).plugins;
    expect(plugins['io.containerd.image-verifier.v1.bindir']).toMatchObject({
      bin_dir: '/opt/containerd/image-verifier/bin',
      max_verifiers: 10,
      per_verifier_timeout: '10s',
    });
    expect(plugins['io.containerd.cri.v1.images']).toMatchObject({
      use_local_image_pull: false,
      discard_unpacked_layers: false,
      disable_snapshot_annotations: true,
      max_concurrent_downloads: 3,
      registry: { config_path: '/etc/containerd/certs.d' },
    });
  });

  it(
    'a version 2 main config takes pullguard-v2.toml: ' +
      "it wins where it must and keeps the main file's CRI settings",
    () => {
      // Kind's node config: version 2, discard_unpacked_layers = true (forces local pulls), SystemdCgroup,
      // a sandbox image. The version 2 drop-in overrides the first and must keep the others.
      const dump = (dropin: string) => {
        const main = join(work, `v2-main-${basename(dropin)}`);
        writeFileSync(
          main,
          KIND_NODE_CONFIG.replace('version = 2\n', `version = 2\nimports = [${JSON.stringify(dropin)}]\n`),
        );
        const r = spawnSync(tool('containerd'), ['--config', main, 'config', 'dump'], {
          encoding: 'utf8',
          timeout: 20_000,
        });
        expect(r.status, r.stderr).toBe(0);
        return {
          text: r.stdout,
          log: r.stderr,
          plugins: (parseToml(r.stdout) as { plugins: Record<string, Record<string, unknown>> }).plugins,
        };
      };
      const v2 = dump(DROPIN_V2);
      expect(v2.plugins['io.containerd.cri.v1.images']).toMatchObject({
        discard_unpacked_layers: false,
        use_local_image_pull: false,
        registry: { config_path: '/etc/containerd/certs.d' },
      });
      expect(v2.plugins['io.containerd.image-verifier.v1.bindir']).toMatchObject({
        bin_dir: '/opt/containerd/image-verifier/bin',
      });
      expect(v2.text).toMatch(/SystemdCgroup = true/);
      expect(v2.text).toContain("sandbox = 'registry.k8s.io/pause:3.10'");
      const droppedCri = /Ignoring unknown key in TOML for plugin.*plugin=io\.containerd\.grpc\.v1\.cri/;
      expect(v2.log).not.toMatch(droppedCri);

      // Why that file exists: the version 3 drop-in in a version 2 main file makes the merged config
      // version 3, and containerd 2.1 then drops the main file's CRI settings without an error.
      const v3 = dump(DROPIN);
      expect(v3.log).toMatch(droppedCri);
      expect(v3.text).toMatch(/SystemdCgroup = false/);
    },
  );

  it('pullguard-v2.toml, pullguard.toml and the Kind patch carry the same settings', () => {
    const v3 = parseToml(readFileSync(DROPIN, 'utf8')) as { plugins: Record<string, Record<string, unknown>> };
    const v2 = parseToml(readFileSync(DROPIN_V2, 'utf8')) as { plugins: Record<string, Record<string, unknown>> };
    const kind = parseToml(kindPatches()[0]!) as typeof v2;
    const { version: _v, ...v2Body } = v2 as Record<string, unknown>;
    expect(v2Body).toEqual(kind);
    const cri = v2.plugins['io.containerd.grpc.v1.cri'] as {
      max_concurrent_downloads: number;
      containerd: Record<string, unknown>;
      registry: Record<string, unknown>;
    };
    expect(v3.plugins['io.containerd.cri.v1.images']).toEqual({
      use_local_image_pull: (v2.plugins['io.containerd.cri.v1.images'] as Record<string, unknown>).use_local_image_pull,
      max_concurrent_downloads: cri.max_concurrent_downloads,
      ...cri.containerd,
      registry: cri.registry,
    });
    expect(v3.plugins['io.containerd.image-verifier.v1.bindir']).toEqual(
      v2.plugins['io.containerd.image-verifier.v1.bindir'],
    );
  });

  it('the running daemon uses the drop-in (temp paths only moved) and keeps CRI pulls on the transfer service', () => {
    const plugins = (parseToml(ctd.configDump()) as { plugins: Record<string, Record<string, unknown>> }).plugins;
    expect(plugins['io.containerd.image-verifier.v1.bindir']).toMatchObject({
      bin_dir: ctd.binDir,
      max_verifiers: 10,
      per_verifier_timeout: '10s',
    });
    expect(plugins['io.containerd.cri.v1.images']).toMatchObject({
      use_local_image_pull: false,
      discard_unpacked_layers: false,
      disable_snapshot_annotations: true,
      registry: { config_path: ctd.certsDir },
    });
    expect(ctd.log()).toContain('loading plugin" id=io.containerd.image-verifier.v1.bindir');
    expect(ctd.log()).not.toContain(FALLBACK);
    expect(ctd.log()).not.toContain('incompatible with transfer service');
  });

  it('CRI PullImage of an allowed image succeeds, the image is in the store, and pullguard decided it', async () => {
    const ref = await cri.pullImage(img.app.ref);
    expect(ref).toMatch(/^sha256:[a-f0-9]{64}$/);
    const status = await cri.imageStatus(img.app.ref);
    expect(status?.repoDigests).toContain(`${registry.host}/app@${img.app.digest}`);
    // Unpacked, as kubelet needs it: a committed layer snapshot in the CRI's snapshotter.
    const snaps = await ctd.ctr(['snapshot', '--snapshotter', 'overlayfs', 'ls'], { namespace: 'k8s.io' });
    expect(snaps.stdout).toMatch(/sha256:[a-f0-9]{64}\s+Committed/);
    const rec = await ctd.waitForRecord((r) => r.name === img.app.ref);
    expect(rec).toMatchObject({
      component: 'pullguard',
      digest: img.app.digest,
      verdict: 'allow',
      rule: 'app',
      exitCode: 0,
      reason: 'allowed by policy',
    });
    // containerd's own debug line carries pullguard's stdout as the reason.
    await waitFor(
      'containerd "allowed pull" line',
      () => ctd.log().includes(`reason="pullguard => allowed ${subject(img.app)}: allowed by policy (rule \\"app\\")"`),
      5_000,
    );
  });

  it('CRI PullImage of an index: pullguard is called once, with the index digest', async () => {
    await cri.pullImage(img.multi.ref);
    expect(await cri.imageStatus(img.multi.ref)).not.toBeNull();
    await ctd.waitForRecord((r) => r.name === img.multi.ref);
    const recs = ctd.decisionRecords().filter((r) => r.name === img.multi.ref);
    expect(recs).toHaveLength(1);
    expect(recs[0]).toMatchObject({ digest: img.multi.digest, verdict: 'allow' });
    expect(img.multi.mediaType).toBe('application/vnd.oci.image.index.v1+json');
  });

  it("CRI PullImage of a denied image fails with containerd's error carrying pullguard's reason", async () => {
    const err = await pullError(cri, img.blocked.ref);
    expect(err, 'the pull must fail').toBeInstanceOf(CriError);
    expect(err!.details).toContain(
      `image verifier bindir blocked pull of ${img.blocked.ref} with digest ${img.blocked.digest}`,
    );
    expect(err!.details).toContain(
      `verifier pullguard rejected image (exit code 1): denied ${subject(img.blocked)}: denied by policy ` +
        '(rule "blocked")',
    );
    expect(await cri.imageStatus(img.blocked.ref)).toBeNull();
    expect(await ctd.waitForRecord((r) => r.name === img.blocked.ref)).toMatchObject({
      verdict: 'deny',
      rule: 'blocked',
      exitCode: 1,
    });
  });

  it('CRI PullImage of an image no rule matches is denied by the default', async () => {
    const err = await pullError(cri, img.other.ref);
    expect(err?.details).toContain(`denied ${subject(img.other)}: no rule matches; default is deny`);
    expect(await cri.imageStatus(img.other.ref)).toBeNull();
  });

  it(
    'CRI pulls read hosts.toml from the single-directory config_path ' + '(here a name that only hosts.toml resolves)',
    async () => {
      ctd.writeHostsToml(
        'registry.pullguard.test',
        `server = "http://${registry.host}"\n[host."http://${registry.host}"]\n  capabilities = ["pull", "resolve"]\n`,
      );
      const name = 'registry.pullguard.test/app:v1';
      await cri.pullImage(name);
      expect((await cri.imageStatus(name))?.repoDigests).toContain(`registry.pullguard.test/app@${img.app.digest}`);
      expect(await ctd.waitForRecord((r) => r.name === name)).toMatchObject({
        digest: img.app.digest,
        verdict: 'allow',
        rule: 'app',
      });
    },
  );

  it('ctr image pull of an allowed image succeeds and lands in the image store', async () => {
    const r = await ctd.ctr(['image', 'pull', '--plain-http', img.app.ref]);
    expect(r.status, r.stderr).toBe(0);
    const ls = await ctd.ctr(['image', 'ls', '-q']);
    expect(ls.stdout.split('\n')).toContain(img.app.ref);
    // One record per pull: CRI pulled this name earlier, ctr now.
    await waitFor(
      'a second allow record for the ctr pull',
      () => ctd.decisionRecords().filter((x) => x.name === img.app.ref && x.verdict === 'allow').length === 2,
      5_000,
    );
  });

  it("ctr image pull of a denied image fails with pullguard's reason", async () => {
    const r = await ctd.ctr(['image', 'pull', '--plain-http', img.blocked.ref]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain(
      `verifier pullguard rejected image (exit code 1): denied ${subject(img.blocked)}: denied by policy ` +
        '(rule "blocked")',
    );
    expect((await ctd.ctr(['image', 'ls', '-q'])).stdout.split('\n')).not.toContain(img.blocked.ref);
  });

  it("documented limitation: ctr image pull --local (containerd's local pull) never calls verifiers", async () => {
    const before = ctd.decisionRecords().filter((r) => r.name === img.blocked.ref).length;
    const r = await ctd.ctr(['image', 'pull', '--local', '--plain-http', img.blocked.ref]);
    expect(r.status, r.stderr).toBe(0);
    // A transfer pull afterwards as a marker: once its record is in, any record of the --local pull would be too.
    await ctd.ctr(['image', 'pull', '--plain-http', img.other.ref]);
    await waitFor(
      'marker record',
      () => ctd.decisionRecords().filter((x) => x.name === img.other.ref).length >= 2,
      5_000,
    );
    expect(ctd.decisionRecords().filter((x) => x.name === img.blocked.ref)).toHaveLength(before);
    expect((await ctd.ctr(['image', 'rm', img.blocked.ref])).status).toBe(0);
  });

  it('a verify rule denies an image without a signature from its authority', async () => {
    // Whatever the verify stage can do (no verifier built in yet, or a verifier finding no signature),
    // an unsigned image under a verify rule is denied, with the rule named.
    const err = await pullError(cri, img.signed.ref);
    expect(err?.details).toMatch(
      new RegExp(
        `verifier pullguard rejected image \\(exit code 1\\): denied ${escapeRe(subject(img.signed))}: ` +
          `.+ \\(rule "needs-signature"\\)$`,
      ),
    );
    expect(await cri.imageStatus(img.signed.ref)).toBeNull();
    const rec = await ctd.waitForRecord((r) => r.name === img.signed.ref);
    expect(rec).toMatchObject({ verdict: 'deny', rule: 'needs-signature', exitCode: 1 });
  });

  it('a node without a policy file denies every pull, naming the path (exit code 2: configuration error)', async () => {
    const saved = readFileSync(policyFile, 'utf8');
    unlinkSync(policyFile);
    try {
      const err = await pullError(cri, img.app.ref);
      expect(err?.details).toContain(
        `verifier pullguard rejected image (exit code 2): denied ${subject(img.app)}: no policy at ${policyFile}`,
      );
      const r = await ctd.ctr(['image', 'pull', '--plain-http', img.multi.ref]);
      expect(r.status).not.toBe(0);
      expect(r.stderr).toContain(`no policy at ${policyFile}`);
    } finally {
      writeFileSync(policyFile, saved);
    }
  });

  it('a broken policy denies every pull with file:line and what is wrong', async () => {
    const saved = readFileSync(policyFile, 'utf8');
    // Line 5: an action that does not exist.
    writeFileSync(policyFile, saved.replace(/(- name: app\n.*\n) {4}action: allow/, '$1    action: allw'));
    try {
      const line =
        readFileSync(policyFile, 'utf8')
          .split('\n')
          .findIndex((l) => l.includes('allw')) + 1;
      expect(line).toBeGreaterThan(0);
      const err = await pullError(cri, img.app.ref);
      expect(err?.details).toContain(
        `verifier pullguard rejected image (exit code 2): denied ${subject(img.app)}: ` +
          `invalid policy ${policyFile}:${line}:`,
      );
      expect(err?.details).toMatch(/action/);

      writeFileSync(policyFile, 'version: 1\nrules: [\n');
      const syntax = await pullError(cri, img.app.ref);
      expect(syntax?.details).toMatch(new RegExp(`denied .*: invalid policy ${escapeRe(policyFile)}:\\d+: `));
    } finally {
      writeFileSync(policyFile, saved);
    }
    // And back to normal with the good policy, without restarting containerd.
    await cri.pullImage(img.app.ref);
  });

  it("pullguard's stderr decision records are in containerd's debug log, one per verifier run", async () => {
    await waitFor('14 decision records', () => ctd.decisionRecords().length >= 14, 5_000);
    const recs = ctd.decisionRecords();
    // app (CRI), multi, blocked, other, registry.pullguard.test/app, app (ctr), blocked (ctr), other (ctr),
    // signed, app + multi (no policy), app x2 (broken policy), app (restored).
    expect(recs.length).toBeGreaterThanOrEqual(14);
    for (const r of recs) {
      expect(r.digest).toMatch(/^sha256:[a-f0-9]{64}$/);
      expect(typeof r.durationMs).toBe('number');
      expect(['allow', 'deny']).toContain(r.verdict);
    }
    // containerd's own view of the same runs.
    expect(ctd.log()).toMatch(/level=debug msg="Image verifier allowed pull"/);
    expect(ctd.log()).toMatch(/level=warning msg="Image verifier blocked pull"/);
  });
});

describe('kind/cluster.yaml', () => {
  const cluster = parseYaml(readFileSync(KIND_CLUSTER, 'utf8')) as {
    containerdConfigPatches: string[];
    nodes: { role: string; extraMounts?: { hostPath: string; containerPath: string; readOnly?: boolean }[] }[];
  };

  it('patches carry no version line (Kind drops them otherwise) and use version 2 CRI names', () => {
    const patches = kindPatches();
    expect(patches.length).toBeGreaterThan(0);
    for (const p of patches) {
      const t = parseToml(p) as Record<string, unknown>;
      expect(t.version).toBeUndefined();
      expect(p).toContain('io.containerd.grpc.v1.cri');
    }
    // And the patcher really skips a versioned patch, as Kind does.
    expect(applyKindPatches(KIND_NODE_CONFIG, [`version = 3\n${patches[0]}`]).skipped).toBe(1);
  });

  it('mounts the single executable into bin_dir (alone) and the policy directory at /etc/pullguard', () => {
    const patch = parseToml(kindPatches().join('\n')) as { plugins: Record<string, { bin_dir?: string }> };
    const binDir = patch.plugins['io.containerd.image-verifier.v1.bindir']!.bin_dir!;
    for (const node of cluster.nodes) {
      const mounts = node.extraMounts ?? [];
      const inBinDir = mounts.filter((m) => m.containerPath.startsWith(`${binDir}/`) || m.containerPath === binDir);
      expect(inBinDir).toEqual([{ hostPath: 'dist/pullguard', containerPath: `${binDir}/pullguard`, readOnly: true }]);
      const etc = mounts.find((m) => m.containerPath === '/etc/pullguard');
      expect(etc).toBeDefined();
      // The mounted directory's policy is valid for the executable that reads it.
      const check = spawnSync(pullguardBinary(), ['policy', 'check', join(ROOT, etc!.hostPath, 'policy.yaml')], {
        encoding: 'utf8',
        timeout: 10_000,
      });
      expect(check.status, check.stdout + check.stderr).toBe(0);
      expect(check.stdout).toContain('registry.k8s.io/pause');
    }
  });

  describe('applied to a Kind-style version 2 node config, as Kind applies it', () => {
    let ctd: Containerd;
    let cri: CriClient;
    beforeAll(async () => {
      ctd = await startContainerd({ mode: 'kind', policy: policyFile });
      cri = criClient(ctd.socket);
    });
    afterAll(async () => {
      cri?.close();
      await ctd?.stop();
    });

    it('yields a version 2 config that containerd migrates without falling back to local pulls', () => {
      const merged = readFileSync(ctd.configFile, 'utf8');
      expect(merged).toMatch(/^version = 2$/m);
      expect(merged).toContain('sandbox_image = "registry.k8s.io/pause:3.10"');
      const plugins = (parseToml(ctd.configDump()) as { plugins: Record<string, Record<string, unknown>> }).plugins;
      expect(plugins['io.containerd.cri.v1.images']).toMatchObject({
        discard_unpacked_layers: false,
        use_local_image_pull: false,
        disable_snapshot_annotations: true,
        max_concurrent_downloads: 3,
        pinned_images: { sandbox: 'registry.k8s.io/pause:3.10' },
        registry: { config_path: ctd.certsDir },
      });
      expect(plugins['io.containerd.image-verifier.v1.bindir']).toMatchObject({
        bin_dir: ctd.binDir,
        max_verifiers: 10,
        per_verifier_timeout: '10s',
      });
      expect(ctd.log()).not.toContain(FALLBACK);
    });

    it(
      'routes CRI pulls through pullguard: a denied image is refused with the reason, ' + 'an allowed one pulled',
      async () => {
        const err = await pullError(cri, img.blocked.ref);
        expect(err?.details).toContain(
          `verifier pullguard rejected image (exit code 1): denied ${subject(img.blocked)}: ` +
            'denied by policy (rule "blocked")',
        );
        expect(await cri.imageStatus(img.blocked.ref)).toBeNull();
        await cri.pullImage(img.app.ref);
        expect(await cri.imageStatus(img.app.ref)).not.toBeNull();
        await ctd.waitForRecord((r) => r.name === img.app.ref);
        expect(ctd.decisionRecords().map((r) => [r.name, r.verdict])).toEqual([
          [img.blocked.ref, 'deny'],
          [img.app.ref, 'allow'],
        ]);
      },
    );
  });

  describe('negative control: the same node config WITHOUT the patch', () => {
    let ctd: Containerd;
    let cri: CriClient;
    beforeAll(async () => {
      ctd = await startContainerd({ mode: 'kind-unpatched', policy: policyFile });
      cri = criClient(ctd.socket);
    });
    afterAll(async () => {
      cri?.close();
      await ctd?.stop();
    });

    it('falls back to local pulls and lets a denied image through without ever running pullguard', async () => {
      expect(ctd.log()).toContain(
        `Found 'DiscardUnpackedLayers' in CRI config which is incompatible with transfer service ` +
          `(not supported with transfer service). ${FALLBACK}`,
      );
      await cri.pullImage(img.blocked.ref);
      expect(await cri.imageStatus(img.blocked.ref)).not.toBeNull();
      // ...while the transfer service (ctr) still calls pullguard: the bypass is CRI-only.
      const r = await ctd.ctr(['image', 'pull', '--plain-http', img.blocked.ref]);
      expect(r.status).not.toBe(0);
      expect(r.stderr).toContain('denied by policy (rule "blocked")');
      // The only record is ctr's: the CRI pull before it never ran the verifier.
      await ctd.waitForRecord((x) => x.name === img.blocked.ref);
      expect(ctd.decisionRecords()).toHaveLength(1);
    });
  });
});

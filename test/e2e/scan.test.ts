/**
 * `pullguard scan` against a real containerd 2.1.9 (the containerd-config/ drop-in, pullguard in its
 * bin_dir): a cosign-signed image pulled through CRI (verified on the way in), and two unsigned images
 * brought in with `ctr images import` (never verified: the test shows it), one of them running in a
 * real runc container. scan must judge them as a pull would (the shipped executable, the same policy),
 * and `--remove-denied` must remove the unused unsigned image and keep the running one.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { containerdApi } from '../../src/containerd/api.js';
import { startContainerd, type Containerd } from '../helpers/containerd.js';
import { cosignOk, cosignSignKey } from '../helpers/cosign.js';
import { criClient, pullError, type CriClient } from '../helpers/cri.js';
import { ociArchive, pushTestImage, type PushedImage } from '../helpers/oci.js';
import { waitFor } from '../helpers/proc.js';
import { startRegistry, type Registry } from '../helpers/registry.js';
import { pullguardBinary, tool, toolsBin } from '../helpers/tools.js';

const NS = 'k8s.io';
let registry: Registry;
let ctd: Containerd;
let cri: CriClient;
let work: string;
let policyFile: string;
let signed: PushedImage;
/** Unsigned, also pushed to the registry, so that a pull of it can be shown denied. */
let unsigned: PushedImage;
const runner = { name: '', digest: '' };
const pinnedName = () => `${registry.host}/pinned:v1`;
/** Unique: runc state and shims are per host, and other test runs may share it. */
const CONTAINER = `pg-scan-${process.pid}-${Date.now().toString(36)}`;

interface ScanJson {
  namespaces: string[];
  notes: string[];
  mode: string;
  images: {
    namespace: string;
    repository: string | null;
    names: string[];
    digest: string;
    verdict: string;
    policyVerdict: string;
    rule: string | null;
    reason: string;
    pinned: boolean;
    containers: string[];
    running: string[];
    removed: string[];
    removeError: string | null;
  }[];
  summary: {
    images: number;
    allow: number;
    deny: number;
    removed: number;
    keptInUse: number;
    keptPinned: number;
    removeErrors: number;
  };
}

function scan(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env = { PATH: `${toolsBin()}:/usr/bin:/bin`, PULLGUARD_POLICY: policyFile };
  return new Promise((resolve) => {
    execFile(
      pullguardBinary(),
      ['scan', '--address', ctd.socket, ...args],
      { env, encoding: 'utf8', timeout: 60_000, killSignal: 'SIGKILL' },
      (err, stdout, stderr) =>
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr }),
    );
  });
}

async function scanJson(args: string[] = []): Promise<{ code: number | null; json: ScanJson }> {
  const r = await scan(['--json', ...args]);
  expect(r.stderr).toBe('');
  return { code: r.code, json: JSON.parse(r.stdout) as ScanJson };
}

const imageNames = async (namespace = NS) =>
  (await ctd.ctr(['images', 'ls', '-q'], { namespace })).stdout.split('\n').filter(Boolean);
const recordsFor = (name: string) => ctd.decisionRecords().filter((r) => r.name === name);

async function importArchive(name: string, archive: Buffer, namespace = NS): Promise<void> {
  const file = join(work, `${name.replace(/[^a-z0-9]+/g, '-')}.tar`);
  writeFileSync(file, archive);
  const r = await ctd.ctr(['images', 'import', '--all-platforms', file], { namespace });
  expect(r.status, r.stderr).toBe(0);
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'pg-scan-'));
  const home = join(work, 'home');
  policyFile = join(work, 'policy.yaml');
  registry = await startRegistry();
  const h = registry.host;
  await cosignOk(home, ['generate-key-pair', '--output-key-prefix', join(work, 'release')]);
  signed = await pushTestImage(h, 'signed', 'v1', 'scan-signed');
  unsigned = await pushTestImage(h, 'unsigned', 'v1', 'scan-unsigned');
  const pinned = `${h}/signed@${signed.digest}`;
  await cosignSignKey(home, join(work, 'release.key'), pinned);
  writeFileSync(
    policyFile,
    [
      'version: 1',
      'default: deny',
      `log: {file: ${JSON.stringify(join(work, 'decisions.jsonl'))}, metricsFile: ` +
        `${JSON.stringify(join(work, 'pullguard.prom'))}}`,
      'rules:',
      '  - name: signed-only',
      `    match: "${h}/**"`,
      '    action: verify',
      '    authorities:',
      '      - name: release-key',
      `        cosign: {keys: [${JSON.stringify(join(work, 'release.pub'))}]}`,
      '',
    ].join('\n'),
  );
  ctd = await startContainerd({ mode: 'dropin', policy: policyFile });
  cri = criClient(ctd.socket);
}, 180_000);

afterAll(async () => {
  // The shim outlives containerd: remove the task (kills it, the shim exits) and the container first.
  await ctd?.ctr(['tasks', 'rm', '-f', CONTAINER], { namespace: NS });
  await ctd?.ctr(['containers', 'rm', CONTAINER], { namespace: NS });
  cri?.close();
  await ctd?.stop();
  await registry?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('images that never pass through a verified pull', () => {
  it('a CRI pull verifies: the signed image is allowed, the unsigned one denied', async () => {
    await cri.pullImage(signed.ref);
    expect(await ctd.waitForRecord((r) => r.name === signed.ref)).toMatchObject({
      verdict: 'allow',
      rule: 'signed-only',
    });
    const err = await pullError(cri, unsigned.ref);
    expect(err?.details).toContain('verifier pullguard rejected image (exit code 1)');
    expect(await cri.imageStatus(unsigned.ref)).toBeNull();
  });

  it('ctr images import is NOT verified: a denied image lands in the store, pullguard never runs', async () => {
    const same = ociArchive(unsigned.ref, 'scan-unsigned');
    expect(same.digest).toBe(unsigned.digest);
    const before = recordsFor(unsigned.ref).length;
    await importArchive(unsigned.ref, same.archive);
    expect(await imageNames()).toContain(unsigned.ref);
    // ...and kubelet would find it present (CRI ImageStatus), so IfNotPresent never pulls it.
    expect((await cri.imageStatus(unsigned.ref))?.repoTags).toContain(unsigned.ref);
    // A transfer pull afterwards as a marker: once its record is in, any record of the import would be too.
    await cri.pullImage(signed.ref);
    await waitFor('marker record', () => recordsFor(signed.ref).length >= 2, 5_000);
    expect(recordsFor(unsigned.ref)).toHaveLength(before);
  });

  it('an imported unsigned image runs in a real runc container', async () => {
    // busybox-static (Debian) is the whole userland: one static binary.
    const busybox = readFileSync(tool('busybox'));
    runner.name = `${registry.host}/runner:v1`;
    const img = ociArchive(runner.name, 'scan-runner', {
      files: [{ name: 'bin/busybox', content: busybox, mode: 0o755 }],
      cmd: ['/bin/busybox', 'sleep', '600'],
    });
    runner.digest = img.digest;
    await importArchive(runner.name, img.archive);
    const runcRoot = join(ctd.dir, 'runc');
    const run = await ctd.ctr(
      ['run', '-d', '--null-io', '--runc-root', runcRoot, runner.name, CONTAINER, '/bin/busybox', 'sleep', '600'],
      { namespace: NS },
    );
    expect(run.status, run.stderr).toBe(0);
    await waitFor(
      'running task',
      async () => /\bRUNNING\b/.test((await ctd.ctr(['tasks', 'ls'], { namespace: NS })).stdout),
      20_000,
    );
    expect(recordsFor(runner.name)).toHaveLength(0);
  });

  it('an imported image the CRI pins (as it pins the sandbox image)', async () => {
    await importArchive(pinnedName(), ociArchive(pinnedName(), 'scan-pinned').archive);
    const label = await ctd.ctr(['images', 'label', pinnedName(), 'io.cri-containerd.pinned=pinned'], {
      namespace: NS,
    });
    expect(label.status, label.stderr).toBe(0);
  });
});

describe('pullguard scan', () => {
  it('decides every image as a pull would: signed allowed, the imported unsigned ones denied (exit 1)', async () => {
    const { code, json } = await scanJson();
    expect(code).toBe(1);
    expect(json.namespaces).toEqual([NS]);
    const byRepo: Record<string, ScanJson['images'][number]> = Object.fromEntries(
      json.images.map((i) => [i.repository, i]),
    );
    expect(Object.keys(byRepo).sort()).toEqual([
      `${registry.host}/pinned`,
      `${registry.host}/runner`,
      `${registry.host}/signed`,
      `${registry.host}/unsigned`,
    ]);

    const s = byRepo[`${registry.host}/signed`]!;
    expect(s).toMatchObject({
      digest: signed.digest,
      verdict: 'allow',
      rule: 'signed-only',
      reason: 'signature verified by release-key',
      containers: [],
    });
    // CRI's three names of one image (tag, digest, ID) are one decision.
    expect(s.names).toEqual(expect.arrayContaining([signed.ref, `${registry.host}/signed@${signed.digest}`]));
    expect(s.names.some((n) => /^sha256:[a-f0-9]{64}$/.test(n))).toBe(true);

    const u = byRepo[`${registry.host}/unsigned`]!;
    expect(u).toMatchObject({
      digest: unsigned.digest,
      verdict: 'deny',
      rule: 'signed-only',
      containers: [],
      removed: [],
    });
    // The reason a pull of it gets (the CRI pull above was denied with the same rule).
    expect(u.reason).toMatch(/signature/);

    const r = byRepo[`${registry.host}/runner`]!;
    expect(r).toMatchObject({ digest: runner.digest, verdict: 'deny', containers: [CONTAINER], running: [CONTAINER] });
    expect(byRepo[`${registry.host}/pinned`]).toMatchObject({ verdict: 'deny', pinned: true, containers: [] });
    expect(json.summary).toMatchObject({ images: 4, allow: 1, deny: 3, removed: 0 });

    // The node's decision log has both: the pulls (containerd ran pullguard) and scan's decisions.
    const log = readFileSync(join(work, 'decisions.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    const seen = (source: string | undefined, name: string) =>
      log
        .filter((e: { source?: string; name: string }) => e.source === source && e.name === name)
        .map((e: { verdict: string }) => e.verdict);
    expect(seen(undefined, unsigned.ref)).toContain('deny');
    expect(seen('scan', unsigned.ref)).toEqual(['deny']);
    expect(seen('scan', signed.ref)).toEqual(['allow']);

    // And the metrics: scan's decisions in their own family, beside the pulls'.
    const prom = readFileSync(join(work, 'pullguard.prom'), 'utf8');
    expect(prom).toMatch(
      /^pullguard_scan_decisions_total\{verdict="allow",policy_verdict="allow",rule="signed-only",code="OK"\} 1$/m,
    );
    expect(prom).toMatch(
      /^pullguard_scan_decisions_total\{verdict="deny",policy_verdict="deny",rule="signed-only",[^}]*\} 3$/m,
    );
    expect(prom).toMatch(/^pullguard_decisions_total\{verdict="deny"/m);
  });

  it('prints verdict, rule and reason per image, and a summary', async () => {
    const r = await scan([]);
    expect(r.code).toBe(1);
    const lines = r.stdout.split('\n');
    expect(lines[0]).toContain(`namespace ${NS}, policy ${policyFile} (mode enforce)`);
    expect(lines.find((l) => l.startsWith('ALLOW') && l.includes(signed.ref))).toBeDefined();
    expect(lines.find((l) => l.startsWith('WOULD-DENY') && l.includes(unsigned.ref))).toBeDefined();
    expect(r.stdout).toContain('rule "signed-only": signature verified by release-key');
    expect(r.stdout).toContain(`in use by 1 container(s), 1 running: ${CONTAINER}`);
    expect(lines.at(-2)).toBe(
      'summary: 4 image(s) in 1 namespace(s): 1 allow, 3 would deny (--remove-denied removes the unused ones)',
    );
  });

  it('--namespace and --all-namespaces choose where to look', async () => {
    await importArchive(unsigned.ref, ociArchive(unsigned.ref, 'scan-unsigned').archive, 'default');
    const only = await scanJson(['--namespace', 'default']);
    expect(only.json.namespaces).toEqual(['default']);
    expect(only.json.images.map((i) => [i.repository, i.verdict])).toEqual([[`${registry.host}/unsigned`, 'deny']]);
    const all = await scanJson(['--all-namespaces']);
    expect(all.json.namespaces).toEqual(expect.arrayContaining(['default', NS]));
    expect(all.json.summary.images).toBe(5);
    expect((await ctd.ctr(['images', 'rm', unsigned.ref], { namespace: 'default' })).status).toBe(0);
  });

  // What keeps --remove-denied from removing a tag re-pulled meanwhile.
  it('containerd refuses a delete whose target does not match', async () => {
    const api = containerdApi(ctd.socket);
    try {
      const wrong = { mediaType: signed.mediaType, digest: unsigned.digest, size: unsigned.size };
      await expect(api.deleteImage(NS, signed.ref, wrong, false)).rejects.toThrow(
        `has target ${signed.digest}, not ${unsigned.digest}`,
      );
      expect(await imageNames()).toContain(signed.ref);
    } finally {
      api.close();
    }
  });

  it('audit mode: AUDIT-DENY, and --remove-denied removes nothing (a pull would allow these images)', async () => {
    const saved = readFileSync(policyFile, 'utf8');
    writeFileSync(policyFile, saved.replace('version: 1\n', 'version: 1\nmode: audit\n'));
    try {
      const { code, json } = await scanJson(['--remove-denied']);
      expect(code).toBe(1);
      expect(json.mode).toBe('audit');
      expect(json.images.filter((i) => i.policyVerdict === 'deny').map((i) => [i.verdict, i.removed])).toEqual([
        ['allow', []],
        ['allow', []],
        ['allow', []],
      ]);
      expect(json.summary.removed).toBe(0);
      expect(json.notes.join('\n')).toContain(
        'is in audit mode: a pull would allow these images, so --remove-denied removes nothing',
      );
      expect((await scan([])).stdout).toMatch(/^AUDIT-DENY .*\/unsigned:v1/m);
      expect(await imageNames()).toContain(unsigned.ref);
    } finally {
      writeFileSync(policyFile, saved);
    }
  });

  it('--remove-denied removes the unused denied image, keeps the running one and the allowed one', async () => {
    const { code, json } = await scanJson(['--remove-denied']);
    expect(code).toBe(1);
    const byRepo: Record<string, ScanJson['images'][number]> = Object.fromEntries(
      json.images.map((i) => [i.repository, i]),
    );
    const u = byRepo[`${registry.host}/unsigned`]!;
    expect(u.removed).toEqual(expect.arrayContaining([unsigned.ref]));
    expect(u.removed).toEqual(u.names);
    expect(u.removeError).toBeNull();
    expect(byRepo[`${registry.host}/runner`]).toMatchObject({ removed: [], running: [CONTAINER] });
    expect(byRepo[`${registry.host}/signed`]).toMatchObject({ removed: [] });
    // Pinned by the CRI: removing it would make the node pull it again at once, into a deny.
    expect(byRepo[`${registry.host}/pinned`]).toMatchObject({ removed: [], pinned: true });
    expect(json.summary).toMatchObject({ deny: 3, removed: 1, keptInUse: 1, keptPinned: 1, removeErrors: 0 });

    const names = await imageNames();
    expect(names.filter((n) => n.includes('/unsigned') || n === u.names.find((x) => x.startsWith('sha256:')))).toEqual(
      [],
    );
    expect(names).toEqual(expect.arrayContaining([runner.name, signed.ref, pinnedName()]));
    expect(await cri.imageStatus(unsigned.ref)).toBeNull();
    // The container never noticed.
    expect((await ctd.ctr(['tasks', 'ls'], { namespace: NS })).stdout).toMatch(
      new RegExp(`${CONTAINER}\\s+\\d+\\s+RUNNING`),
    );

    // The next pull of the removed image goes through the verifier, and is denied.
    const before = recordsFor(unsigned.ref).length;
    expect(await pullError(cri, unsigned.ref)).toBeDefined();
    await waitFor('a new decision record', () => recordsFor(unsigned.ref).length === before + 1, 5_000);

    const again = await scanJson();
    expect(again.json.images.map((i) => [i.repository, i.verdict])).toEqual([
      [`${registry.host}/pinned`, 'deny'],
      [`${registry.host}/runner`, 'deny'],
      [`${registry.host}/signed`, 'allow'],
    ]);
  });

  it('an unreachable containerd is exit 3 with the socket named, a bad option exit 2', async () => {
    const r = await new Promise<{ code: number | null; stderr: string }>((resolve) =>
      execFile(
        pullguardBinary(),
        ['scan', '--address', join(work, 'nope.sock')],
        { env: { PULLGUARD_POLICY: policyFile }, encoding: 'utf8', timeout: 20_000 },
        (err, _o, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stderr }),
      ),
    );
    expect(r.code).toBe(3);
    expect(r.stderr).toContain(`cannot reach containerd at ${join(work, 'nope.sock')}: no such socket`);
    expect((await scan(['--bogus'])).code).toBe(2);
  });
});

/**
 * A pod's life as kubelet drives it over the CRI, against a real containerd 2.1.9 with runc (Debian's)
 * and pullguard (the single executable) as its image verifier:
 *   RunPodSandbox (host network; containerd pulls the sandbox image, through pullguard) ->
 *   PullImage -> CreateContainer -> StartContainer -> ContainerStatus, and the container's log file.
 * Images are Debian's static busybox in an OCI image built here, signed by the real cosign 3.1.1.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pushBusyboxImage } from '../helpers/busybox-image.js';
import { startContainerd, type Containerd } from '../helpers/containerd.js';
import { cosignOk, cosignSignKey } from '../helpers/cosign.js';
import { criClient, pullError, type CriClient } from '../helpers/cri.js';
import { criRuntime, type CriRuntime, type PodSandboxConfig } from '../helpers/cri-runtime.js';
import { waitFor } from '../helpers/proc.js';
import type { PushedImage } from '../helpers/oci.js';
import { startRegistry, type Registry } from '../helpers/registry.js';

let registry: Registry;
let ctd: Containerd;
let images: CriClient;
let runtime: CriRuntime;
let work: string;
const img = {} as Record<'pause' | 'signed' | 'unsigned', PushedImage>;
const GREETING = 'hello from a signed pod';
const repoOf = (i: PushedImage) => i.ref.replace(/:[^:/]+$/, '');

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'pg-pod-'));
  const home = join(work, 'home');
  registry = await startRegistry();
  const h = registry.host;
  img.pause = await pushBusyboxImage(h, 'pause', 'v1', ['/bin/busybox', 'sleep', '2147483647'], 'pause');
  img.signed = await pushBusyboxImage(h, 'app', 'signed', ['/bin/busybox', 'echo', GREETING], 'signed');
  img.unsigned = await pushBusyboxImage(
    h,
    'app',
    'unsigned',
    ['/bin/busybox', 'echo', 'this must never run'],
    'unsigned',
  );
  await cosignOk(home, ['generate-key-pair', '--output-key-prefix', join(work, 'release')]);
  for (const i of [img.pause, img.signed]) {
    await cosignSignKey(home, join(work, 'release.key'), `${repoOf(i)}@${i.digest}`);
  }
  const policy = join(work, 'policy.yaml');
  writeFileSync(
    policy,
    [
      'version: 1',
      'default: deny',
      'rules:',
      '  - name: signed-workloads',
      `    match: ["${h}/pause", "${h}/app"]`,
      '    action: verify',
      '    authorities:',
      '      - name: release-key',
      `        cosign: {keys: [${JSON.stringify(join(work, 'release.pub'))}]}`,
      '',
    ].join('\n'),
  );
  ctd = await startContainerd({ mode: 'dropin', policy, sandboxImage: img.pause.ref });
  images = criClient(ctd.socket);
  runtime = criRuntime(ctd.socket);
});

afterAll(async () => {
  images?.close();
  runtime?.close();
  await ctd?.stop();
  await registry?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

function sandboxConfig(name: string): PodSandboxConfig {
  return {
    metadata: { name, uid: `uid-${name}`, namespace: 'default', attempt: 0 },
    logDirectory: join(work, 'pods', name),
    linux: { securityContext: { namespaceOptions: { network: 'NODE', pid: 'CONTAINER', ipc: 'POD' } } },
  };
}

describe('a CRI pod lifecycle through pullguard', () => {
  it('a pod from a signed image runs and exits 0 with its output in the container log', async () => {
    const sandbox = sandboxConfig('signed');
    const podId = await runtime.runPodSandbox(sandbox);
    try {
      // containerd pulled the sandbox image itself, on the verified path.
      const pauseRecord = await ctd.waitForRecord((r) => r.digest === img.pause.digest);
      expect(pauseRecord.verdict).toBe('allow');
      await images.pullImage(img.signed.ref);
      expect((await ctd.waitForRecord((r) => r.digest === img.signed.digest)).verdict).toBe('allow');
      const id = await runtime.createContainer(
        podId,
        { metadata: { name: 'app' }, image: { image: img.signed.ref }, logPath: 'app/0.log' },
        sandbox,
      );
      await runtime.startContainer(id);
      let status = await runtime.containerStatus(id);
      await waitFor(
        'container exit',
        async () => (status = await runtime.containerStatus(id)).state === 'CONTAINER_EXITED',
        60_000,
      );
      expect(status.exitCode, status.message).toBe(0);
      expect(status.reason).toBe('Completed');
      const log = readFileSync(join(sandbox.logDirectory, 'app', '0.log'), 'utf8');
      // CRI log format: <RFC3339Nano time> stdout F <line>
      expect(log).toMatch(new RegExp(`^\\S+ stdout F ${GREETING}$`, 'm'));
    } finally {
      await runtime.stopPodSandbox(podId);
      await runtime.removePodSandbox(podId);
    }
  });

  it("a pod from an unsigned image never gets its image, and the error carries pullguard's reason", async () => {
    const sandbox = sandboxConfig('unsigned');
    const podId = await runtime.runPodSandbox(sandbox);
    try {
      const err = await pullError(images, img.unsigned.ref);
      expect(err, 'the unsigned image was pulled').toBeDefined();
      const record = await ctd.waitForRecord((r) => r.digest === img.unsigned.digest);
      expect(record.verdict).toBe('deny');
      // containerd's prefix, then pullguard's own line: what kubelet shows as the pod's event.
      expect(err!.details).toContain('verifier pullguard rejected image');
      expect(err!.details).toContain(record.reason);
      expect(await images.imageStatus(img.unsigned.ref)).toBeNull();
      // kubelet never gets to CreateContainer; containerd refuses it anyway: the image is not there.
      await expect(
        runtime.createContainer(
          podId,
          { metadata: { name: 'app' }, image: { image: img.unsigned.ref }, logPath: 'app/0.log' },
          sandbox,
        ),
      ).rejects.toThrow(/not found|no such image/i);
      expect(existsSync(join(sandbox.logDirectory, 'app', '0.log'))).toBe(false);
    } finally {
      await runtime.stopPodSandbox(podId);
      await runtime.removePodSandbox(podId);
    }
  });
});

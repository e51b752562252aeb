/**
 * `pullguard doctor` on the node's own images, run as operators run it (the shipped executable): the
 * sandbox image from Kind's version 2 node config (`sandbox_image`, which containerd 2.1 migrates to
 * `pinned_images.sandbox`) and kubeadm-style static pod manifests in a --static-pod-dir. A policy that
 * would deny them must FAIL (exit 2); one that exempts them must not.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KIND_NODE_CONFIG } from '../helpers/containerd.js';
import { pullguardBinary } from '../helpers/tools.js';

let work: string;
let config: string;
let manifests: string;

function doctor(policy: string): Promise<{ code: number | null; lines: string[] }> {
  const file = join(work, `policy-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, policy);
  const args = [
    'doctor',
    '--containerd-config',
    config,
    '--bin-dir',
    join(work, 'bin'),
    '--policy',
    file,
    '--static-pod-dir',
    manifests,
  ];
  return new Promise((resolve) =>
    execFile(
      pullguardBinary(),
      args,
      { env: { PATH: '/usr/bin:/bin' }, encoding: 'utf8', timeout: 20_000 },
      (err, stdout) =>
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, lines: stdout.split('\n') }),
    ),
  );
}

const header = 'version: 1\nmode: enforce\ntimeout: 8s\n';

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'pg-doctor-node-'));
  config = join(work, 'config.toml');
  writeFileSync(config, KIND_NODE_CONFIG);
  manifests = join(work, 'manifests');
  mkdirSync(manifests);
  mkdirSync(join(work, 'bin'));
  writeFileSync(
    join(manifests, 'etcd.yaml'),
    'apiVersion: v1\nkind: Pod\nmetadata: {name: etcd, namespace: kube-system}\nspec:\n  containers:\n' +
      '  - name: etcd\n    image: registry.k8s.io/etcd:3.5.21-0\n    imagePullPolicy: IfNotPresent\n',
  );
  writeFileSync(
    join(manifests, 'kube-apiserver.yaml'),
    'apiVersion: v1\nkind: Pod\nmetadata: {name: kube-apiserver}\nspec:\n  containers:\n' +
      '  - name: kube-apiserver\n    image: registry.k8s.io/kube-apiserver:v1.34.0\n',
  );
  writeFileSync(join(manifests, '.kubelet-ignores-this.yaml'), 'not: [valid');
});

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('doctor: the sandbox image and static pods are exempt or verifiable offline', () => {
  it('a policy that denies them: one FAIL per image, naming it and its source, exit 2', async () => {
    const r = await doctor(
      `${header}default: deny\nrules:\n  - name: apps\n    match: registry.example.com/**\n    action: allow\n`,
    );
    expect(r.code).toBe(2);
    const fails = r.lines.filter((l) => l.startsWith('FAIL') && l.includes('would be denied'));
    expect(fails).toHaveLength(3);
    expect(fails[0]).toContain(
      `the sandbox (pause) image (plugins."io.containerd.grpc.v1.cri".sandbox_image in ${config}) ` +
        'registry.k8s.io/pause:3.10: would be denied (no rule matches; default is deny)',
    );
    expect(
      fails.some((l) =>
        l.includes(`static pod etcd container etcd (${join(manifests, 'etcd.yaml')}) registry.k8s.io/etcd:3.5.21-0`),
      ),
    ).toBe(true);
    expect(fails.every((l) => l.includes('fix: exempt it'))).toBe(true);
  });

  it('an exemption for registry.k8s.io: ok for all three', async () => {
    const r = await doctor(
      `${header}default: deny\nrules:\n  - name: node\n    match: registry.k8s.io/**\n    action: allow\n`,
    );
    const mine = r.lines.filter((l) => l.includes('exempt (rule "node")'));
    expect(mine).toHaveLength(3);
    expect(r.lines.filter((l) => l.startsWith('FAIL') && l.includes('registry.k8s.io'))).toEqual([]);
  });

  it('verification with a cosign key needs only the registry: ok', async () => {
    const key = join(work, 'k.pub');
    const { generateKeyPairSync } = await import('node:crypto');
    writeFileSync(
      key,
      generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'pem' }),
    );
    const r = await doctor(
      `${header}default: deny\nrules:\n  - name: k8s-signed\n    match: registry.k8s.io/**\n    action: verify\n` +
        `    authorities:\n      - name: k\n        cosign: {keys: [${key}]}\n`,
    );
    expect(
      r.lines.filter(
        (l) => l.startsWith('ok') && l.includes('verified by rule "k8s-signed" with nothing but the registry'),
      ),
    ).toHaveLength(3);
  });

  it('no manifest directory: said plainly, not a failure', async () => {
    const saved = manifests;
    manifests = join(work, 'absent');
    try {
      const r = await doctor(`${header}default: allow\n`);
      expect(r.lines.some((l) => l.startsWith('ok') && l.includes(`no static pod manifests in ${manifests}`))).toBe(
        true,
      );
    } finally {
      manifests = saved;
    }
  });
});

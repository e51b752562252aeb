/**
 * cosign through real containerd 2.1.9: images signed at test time by the real cosign 3.1.1, pulled by
 * CRI (the kubelet's call) and by `ctr image pull`, with pullguard as containerd's image verifier. First
 * with pullguard's own policy, then with the same trust written as a CRI-O containers-policy.json
 * (PULLGUARD_POLICY is read on every pull, so the file is swapped in place). `cosign verify` runs beside
 * every case; the table is printed at the end.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startContainerd, type Containerd } from '../helpers/containerd.js';
import { cosign, cosignOk, cosignSignKey } from '../helpers/cosign.js';
import { CriError, criClient, type CriClient } from '../helpers/cri.js';
import { pushTestImage, type PushedImage } from '../helpers/oci.js';
import { waitFor } from '../helpers/proc.js';
import { startRegistry, type Registry } from '../helpers/registry.js';

let registry: Registry;
let ctd: Containerd;
let cri: CriClient;
let work: string;
let home: string;
let policyFile: string;
const img = {} as Record<'legacy' | 'bundle' | 'untrusted', PushedImage>;
const rows: string[] = [];

const flags = ['--allow-http-registry', '--allow-insecure-registry'];
const sign = (key: string, legacy: boolean, ref: string) => cosignSignKey(home, key, ref, { bundle: !legacy });
const pinned = (i: PushedImage) => `${i.ref.replace(/:[^:/]+$/, '')}@${i.digest}`;

function nativePolicy(): string {
  const h = registry.host;
  return [
    'version: 1',
    'default: deny',
    'rules:',
    '  - name: cosign-signed',
    `    match: ["${h}/legacy", "${h}/bundle", "${h}/untrusted"]`,
    '    action: verify',
    '    authorities:',
    '      - name: release-key',
    `        cosign: {keys: [${join(work, 'ec.pub')}]}`,
    '',
  ].join('\n');
}

/** As CRI-O documents it: default reject, sigstoreSigned with the key and matchRepository per scope. */
function containersPolicy(): string {
  const req = [{ type: 'sigstoreSigned', keyPath: join(work, 'ec.pub'), signedIdentity: { type: 'matchRepository' } }];
  return JSON.stringify({ default: [{ type: 'reject' }], transports: { docker: { [registry.host]: req } } }, null, 2);
}

async function criPull(ref: string): Promise<'allow' | 'deny'> {
  try {
    await cri.pullImage(ref);
    await cri.removeImage(ref);
    return 'allow';
  } catch (e) {
    if (e instanceof CriError) return 'deny';
    throw e;
  }
}

async function cosignVerdict(i: PushedImage): Promise<string> {
  const r = await cosign(home, [
    'verify',
    '--key',
    join(work, 'ec.pub'),
    '--insecure-ignore-tlog=true',
    ...flags,
    pinned(i),
  ]);
  return `${r.code === 0 ? 'allow' : 'deny'} (exit ${r.code})`;
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'pg-cosign-ctd-'));
  home = join(work, 'home');
  policyFile = join(work, 'policy.yaml');
  registry = await startRegistry();
  await cosignOk(home, ['generate-key-pair', '--output-key-prefix', join(work, 'ec')]);
  await cosignOk(home, ['generate-key-pair', '--output-key-prefix', join(work, 'other')]);
  for (const name of ['legacy', 'bundle', 'untrusted'] as const)
    img[name] = await pushTestImage(registry.host, name, 'v1', `cosign-ctd-${name}`);
  await sign(join(work, 'ec.key'), true, pinned(img.legacy));
  await sign(join(work, 'ec.key'), false, pinned(img.bundle));
  await sign(join(work, 'other.key'), false, pinned(img.untrusted));
  await sign(join(work, 'other.key'), true, pinned(img.untrusted));
  writeFileSync(policyFile, nativePolicy());
  ctd = await startContainerd({ mode: 'dropin', policy: policyFile });
  cri = criClient(ctd.socket);
}, 180_000);

afterAll(async () => {
  if (rows.length > 0)
    console.log(
      ['', '| policy | image | CRI pull | ctr pull | cosign verify |', '| --- | --- | --- | --- | --- |', ...rows].join(
        '\n',
      ),
    );
  cri?.close();
  await ctd?.stop();
  await registry?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

const cases = [
  ['legacy', 'allow', /^signature verified by (release-key|docker:)/],
  ['bundle', 'allow', /^signature verified by (release-key|docker:)/],
  ['untrusted', 'deny', /does not verify with the trusted ECDSA P-256 key/],
] as const;

describe.each([
  ['pullguard YAML', () => writeFileSync(policyFile, nativePolicy())],
  ['containers-policy.json', () => writeFileSync(policyFile, containersPolicy())],
])('containerd with %s', (label, install) => {
  beforeAll(() => install());

  it.each(cases)('%s-signed image: CRI and ctr %s', async (name, expected, reason) => {
    const i = img[name];
    const mine = () => ctd.decisionRecords().filter((r) => r.name === i.ref);
    const before = mine().length;
    const criVerdict = await criPull(i.ref);
    // containerd's log trails the pull's answer: wait for this pull's record, not an earlier phase's.
    await waitFor('decision record of this pull', () => mine().length > before, 10_000);
    const rec = mine()[before]!;
    expect(rec.verdict, rec.reason).toBe(expected);
    expect(rec.reason).toMatch(reason);
    expect(rec.digest).toBe(i.digest);

    const r = await ctd.ctr(['image', 'pull', '--plain-http', i.ref]);
    const ctrVerdict = r.status === 0 ? 'allow' : 'deny';
    if (ctrVerdict === 'allow') await ctd.ctr(['image', 'rm', i.ref]);
    else expect(`${r.stdout}${r.stderr}`).toMatch(/image verifier|verif/);

    const cv = await cosignVerdict(i);
    rows.push(`| ${label} | ${name} | ${criVerdict} | ${ctrVerdict} | ${cv} |`);
    expect(criVerdict).toBe(expected);
    expect(ctrVerdict).toBe(expected);
    expect(cv.startsWith(expected)).toBe(true);
  });
});

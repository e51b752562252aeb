/**
 * Issue 8 item 1, through a real containerd 2.1.9 and its CRI (the call kubelet makes): registry host
 * names are not case-sensitive, and containerd pulls `Registry.Pullguard.Test/prod/app` from the same
 * registry as `registry.pullguard.test/prod/app` (distribution/reference keeps the host's case, DNS and
 * HTTP ignore it). A rule or a containers-policy.json scope written in lower case must catch every
 * spelling; before the fix they fell through to `default: allow`.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startContainerd, type Containerd } from '../helpers/containerd.js';
import { CriError, criClient, pullError, type CriClient } from '../helpers/cri.js';
import { pushTestImage, type PushedImage } from '../helpers/oci.js';
import { startRegistry, type Registry } from '../helpers/registry.js';

let registry: Registry;
let ctd: Containerd;
let cri: CriClient;
let work: string;
let policy: string;
let app: PushedImage;

/** Docker Hub's other names: containerd pulls `registry-1.docker.io/library/x` from Docker Hub itself. */
const HUB = ['docker.io', 'registry-1.docker.io'];
const SPELLINGS = [
  'registry.pullguard.test',
  'Registry.Pullguard.Test',
  'REGISTRY.PULLGUARD.TEST',
  'registry.pullguard.test:443',
];

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'pg-case-'));
  policy = join(work, 'policy.yaml');
  registry = await startRegistry();
  app = await pushTestImage(registry.host, 'prod/app', 'v1', 'host-case');
  await pushTestImage(registry.host, 'library/hub', 'v1', 'hub-alias');
  ctd = await startContainerd({ mode: 'dropin', policy });
  // containerd looks hosts.toml up under the host exactly as written; each spelling gets one, all
  // pointing at the one registry.
  for (const host of [...SPELLINGS, ...HUB]) {
    ctd.writeHostsToml(
      host,
      `server = "http://${registry.host}"\n[host."http://${registry.host}"]\n  capabilities = ["pull", "resolve"]\n`,
    );
  }
  cri = criClient(ctd.socket);
});

afterAll(async () => {
  cri?.close();
  await ctd?.stop();
  await registry?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('a lower-case rule catches every spelling of the registry host containerd pulls', () => {
  it('control: with the default allow, the image pulls under its own address', async () => {
    writeFileSync(
      policy,
      'version: 1\ndefault: allow\nrules:\n  - {name: prod, match: "registry.pullguard.test/prod/**", action: deny}\n',
    );
    await cri.pullImage(app.ref);
    expect(await ctd.waitForRecord((r) => r.name === app.ref)).toMatchObject({ verdict: 'allow' });
  });

  it.each(SPELLINGS.map((h) => [h]))('native rule: %s/prod/app is denied by rule "prod"', async (host) => {
    writeFileSync(
      policy,
      'version: 1\ndefault: allow\nrules:\n  - {name: prod, match: "registry.pullguard.test/prod/**", action: deny}\n',
    );
    const name = `${host}/prod/app:v1`;
    const err = await pullError(cri, name);
    expect(err, `containerd pulled ${name}`).toBeInstanceOf(CriError);
    expect(err!.details).toContain('verifier pullguard rejected image (exit code 1): denied');
    expect(err!.details).toContain('denied by policy (rule "prod")');
  });

  it.each(SPELLINGS.map((h) => [h]))('containers-policy.json scope: %s/prod/app is rejected', async (host) => {
    const doc = {
      default: [{ type: 'insecureAcceptAnything' }],
      transports: { docker: { 'registry.pullguard.test': [{ type: 'reject' }] } },
    };
    writeFileSync(policy, JSON.stringify(doc));
    const err = await pullError(cri, `${host}/prod/app:v1`);
    expect(err).toBeInstanceOf(CriError);
    expect(err!.details).toContain('rejected by containers policy scope docker:registry.pullguard.test');
  });

  it.each([['registry-1.docker.io/library/hub:v1'], ['index.docker.io/library/hub:v1'], ['hub:v1']])(
    'Docker Hub alias: %s is denied by the docker.io rule',
    async (name) => {
      writeFileSync(
        policy,
        'version: 1\ndefault: allow\nrules:\n  - {name: hub, match: "docker.io/library/**", action: deny}\n',
      );
      const err = await pullError(cri, name);
      expect(err, `containerd pulled ${name}`).toBeInstanceOf(CriError);
      expect(err!.details).toContain('denied by policy (rule "hub")');
    },
  );
});

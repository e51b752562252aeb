import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startContainerd, type Containerd } from '../helpers/containerd.js';
import { CriError, criClient, pullError, type CriClient } from '../helpers/cri.js';
import { notationSandbox, type NotationSandbox } from '../helpers/notation.js';
import { pushTestImage, type PushedImage } from '../helpers/oci.js';
import { startRegistry, type Registry } from '../helpers/registry.js';

/**
 * The final proof for notation: a real containerd 2.1 with dist/pullguard as its image verifier, and
 * PULLGUARD_POLICY pointing straight at a notation configuration directory (trustpolicy.json +
 * truststore/), as a notation or Bottlerocket user has it. Signatures are made by the real notation
 * 1.3.2. A representative subset only (JWS and COSE allowed, an untrusted look-alike denied, through
 * both CRI and ctr); the full matrix is test/e2e/notation-verify.test.ts.
 */
let registry: Registry;
let trusted: NotationSandbox;
let attacker: NotationSandbox;
let ctd: Containerd;
let cri: CriClient;
const img: Record<string, PushedImage> = {};

async function sign(nt: NotationSandbox, image: PushedImage, format: 'jws' | 'cose') {
  const ref = `${image.ref.slice(0, image.ref.lastIndexOf(':'))}@${image.digest}`;
  await nt.sign(ref, 'gt', ['--signature-format', format]);
}

beforeAll(async () => {
  registry = await startRegistry();
  trusted = notationSandbox();
  attacker = notationSandbox();
  // Both make a test certificate called "gt": identical subject names, different keys.
  for (const nt of [trusted, attacker]) {
    const r = await nt.run(['cert', 'generate-test', 'gt']);
    if (r.status !== 0) throw new Error(r.output);
  }
  for (const repo of ['jws', 'cose', 'untrusted', 'unsigned']) {
    img[repo] = await pushTestImage(registry.host, `notation/${repo}`, 'v1', `ctd-notation-${repo}`);
  }
  trusted.writeTrustPolicy([
    {
      name: 'images',
      registryScopes: ['jws', 'cose', 'untrusted', 'unsigned'].map((r) => `${registry.host}/notation/${r}`),
      signatureVerification: { level: 'strict' },
      trustStores: ['ca:gt'],
      trustedIdentities: ['x509.subject: C=US, ST=WA, L=Seattle, O=Notary, CN=gt'],
    },
  ]);
  await sign(trusted, img.jws!, 'jws');
  await sign(trusted, img.cose!, 'cose');
  await sign(attacker, img.untrusted!, 'jws');
  ctd = await startContainerd({ mode: 'dropin', policy: trusted.configDir });
  cri = criClient(ctd.socket);
}, 300_000);

afterAll(async () => {
  cri?.close();
  await ctd?.stop();
  await registry?.stop();
  trusted?.dispose();
  attacker?.dispose();
});

const criPull = (ref: string) => pullError(cri, ref);

describe('containerd + pullguard with a notation configuration directory as policy', () => {
  it('allows a JWS-signed image through ctr (transfer service)', async () => {
    const r = await ctd.ctr(['image', 'pull', '--plain-http', img.jws!.ref]);
    expect(r.status, r.stderr).toBe(0);
    const rec = await ctd.waitForRecord((d) => d.digest === img.jws!.digest);
    expect(rec).toMatchObject({ verdict: 'allow', rule: 'images', exitCode: 0 });
    expect(rec.reason).toBe('signature verified by images');
  });

  it('allows a COSE-signed image through CRI PullImage', async () => {
    expect(await criPull(img.cose!.ref)).toBeUndefined();
    expect(await cri.imageStatus(img.cose!.ref)).not.toBeNull();
    const rec = await ctd.waitForRecord((d) => d.digest === img.cose!.digest);
    expect(rec).toMatchObject({ verdict: 'allow', exitCode: 0 });
  });

  it('denies a look-alike signer (same names, untrusted key) through CRI and ctr', async () => {
    const err = await criPull(img.untrusted!.ref);
    expect(err, 'the pull must fail').toBeInstanceOf(CriError);
    expect(err!.details).toContain('verifier pullguard rejected image');
    expect(err!.details).toContain('authenticity failed');
    expect(await cri.imageStatus(img.untrusted!.ref)).toBeNull();
    const r = await ctd.ctr(['image', 'pull', '--plain-http', img.untrusted!.ref]);
    expect(r.status).not.toBe(0);
    expect(`${r.stdout}${r.stderr}`).toContain('authenticity failed');
  });

  it('denies an unsigned image in scope', async () => {
    const err = await criPull(img.unsigned!.ref);
    expect(err).toBeInstanceOf(CriError);
    expect(err!.details).toContain('no notation signature found');
  });
});

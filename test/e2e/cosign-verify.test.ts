/**
 * cosign verification end to end, below containerd: the real cosign 3.1.1 signs (both formats, keys,
 * a private CA, an external signer) against a real docker-registry 2.8.3; pullguard discovers through
 * its real registry client and decides with policies loaded from disk, both pullguard's own YAML and a
 * containers-policy.json written the way CRI-O documents it. Beside every verdict, `cosign verify` with
 * the matching flags runs on the same image, and the table of both is printed at the end.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { loadPolicy } from '../../src/policy/load.js';
import { decidePinned } from '../helpers/decide.js';
import { cosign, cosignOk, makeLeaf, openssl } from '../helpers/cosign.js';
import { type CaChain, makeCaChain } from '../helpers/pki.js';
import { pushTestImage, type PushedImage } from '../helpers/oci.js';
import { startRegistry, type Registry } from '../helpers/registry.js';

let registry: Registry;
let work: string;
let home: string;
let pki: CaChain;
let evilPki: CaChain;
const keys: Record<'ec' | 'rsa' | 'p384' | 'ed' | 'other', string> = {} as never;
let leaf: { cert: string; key: string };
let cosignLeafKey: string;

interface Row {
  readonly name: string;
  readonly expected: 'allow' | 'deny';
  readonly native: string;
  readonly containersPolicy: string;
  readonly cosign: string;
  readonly note?: string;
}
const table: Row[] = [];

const flags = ['--allow-http-registry', '--allow-insecure-registry'];
const signFlags = (legacy: boolean) => [
  '--tlog-upload=false',
  '--use-signing-config=false',
  `--new-bundle-format=${!legacy}`,
  ...flags,
  '-y',
];

/** `cosign sign --key KEY --certificate CERT --certificate-chain CHAIN` of `pinned`, offline. */
const signWithCertificate = (key: string, cert: string, chain: string, legacy: boolean, pinned: string) =>
  cosignOk(home, [
    'sign',
    '--key',
    key,
    '--certificate',
    cert,
    '--certificate-chain',
    chain,
    ...signFlags(legacy),
    pinned,
  ]);

let seq = 0;
async function image(repo: string, opts: { index?: boolean } = {}): Promise<PushedImage & { pinned: string }> {
  const img = await pushTestImage(registry.host, repo, `t${++seq}`, `${repo}-${seq}-${Date.now()}`, opts);
  return { ...img, pinned: `${registry.host}/${repo}@${img.digest}` };
}

async function pullguard(policyText: string, ext: 'yaml' | 'json', pinned: string) {
  const file = join(work, `policy-${++seq}.${ext}`);
  writeFileSync(file, policyText);
  return decidePinned(loadPolicy(file), pinned);
}

/** One native rule for `repo` with one cosign authority (YAML flow mapping text). */
const nativePolicy = (repo: string, authority: string) =>
  [
    'version: 1',
    'default: deny',
    'rules:',
    '  - name: signed',
    `    match: ${registry.host}/${repo}`,
    '    action: verify',
    '    authorities:',
    `      - cosign: ${authority}`,
    '',
  ].join('\n');

/** containers-policy.json as CRI-O documents it for cosign: sigstoreSigned + matchRepository. */
const containersPolicy = (repo: string, requirement: Record<string, unknown>) =>
  JSON.stringify(
    {
      default: [{ type: 'reject' }],
      transports: {
        docker: {
          [`${registry.host}/${repo}`]: [
            { type: 'sigstoreSigned', ...requirement, signedIdentity: { type: 'matchRepository' } },
          ],
        },
      },
    },
    null,
    2,
  );

interface Case {
  name: string;
  repo: string;
  pinned: string;
  expected: 'allow' | 'deny';
  native: string;
  policyJson: Record<string, unknown>;
  cosignArgs: string[];
  /** Why cosign's verdict differs from pullguard's, when it does. */
  cosignDiffers?: string;
  reason?: RegExp;
}

async function check(c: Case): Promise<void> {
  const native = await pullguard(nativePolicy(c.repo, c.native), 'yaml', c.pinned);
  const cp = await pullguard(containersPolicy(c.repo, c.policyJson), 'json', c.pinned);
  const cv = await cosign(home, ['verify', ...c.cosignArgs, ...flags, c.pinned]);
  const cosignVerdict = cv.code === 0 ? 'allow' : 'deny';
  const lastLine =
    cv.out
      .trim()
      .split('\n')
      .filter((l) => /^Error|error/.test(l))
      .pop() ?? '';
  table.push({
    name: c.name,
    expected: c.expected,
    native: `${native.verdict}${native.verdict === 'deny' ? ` (${native.reason.slice(0, 90)})` : ''}`,
    containersPolicy: cp.verdict,
    cosign: `${cosignVerdict} (exit ${cv.code}${cv.code ? `: ${lastLine.slice(0, 80)}` : ''})`,
    note: c.cosignDiffers,
  });
  expect(native.verdict, native.reason).toBe(c.expected);
  expect(cp.verdict, cp.reason).toBe(c.expected);
  if (c.reason) expect(native.reason).toMatch(c.reason);
  // Every difference from cosign is a known, explained one; anything else fails the test.
  expect(cosignVerdict === c.expected, `cosign said ${cosignVerdict}: ${cv.out.slice(-600)}`).toBe(!c.cosignDiffers);
}

beforeAll(async () => {
  registry = await startRegistry();
  work = mkdtempSync(join(tmpdir(), 'pg-cosign-'));
  home = join(work, 'home');
  // Keys: cosign's own ECDSA P-256, and imported RSA-2048, P-384 and Ed25519.
  await cosignOk(home, ['generate-key-pair', '--output-key-prefix', join(work, 'ec')]);
  await cosignOk(home, ['generate-key-pair', '--output-key-prefix', join(work, 'other')]);
  await openssl(['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', 'rsa.pem'], work);
  await openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-384', '-out', 'p384.pem'], work);
  await openssl(['genpkey', '-algorithm', 'ED25519', '-out', 'ed.pem'], work);
  for (const k of ['rsa', 'p384', 'ed'] as const)
    await cosignOk(home, ['import-key-pair', '--key', join(work, `${k}.pem`), '--output-key-prefix', join(work, k)]);
  for (const k of ['ec', 'rsa', 'p384', 'ed', 'other'] as const) keys[k] = join(work, k);

  pki = await makeCaChain(join(work, 'pki'));
  evilPki = await makeCaChain(join(work, 'evil'));
  leaf = await makeLeaf(pki, 'leaf');
  await cosignOk(home, ['import-key-pair', '--key', leaf.key, '--output-key-prefix', join(work, 'leafkey')]);
  cosignLeafKey = join(work, 'leafkey.key');
}, 120_000);

afterAll(async () => {
  if (table.length > 0) {
    const lines = [
      '',
      '| case | expected | pullguard (native YAML) | pullguard ' +
        '(containers-policy.json) | cosign verify | difference explained |',
      '| --- | --- | --- | --- | --- | --- |',
    ];
    for (const r of table)
      lines.push(`| ${r.name} | ${r.expected} | ${r.native} | ${r.containersPolicy} | ${r.cosign} | ${r.note ?? ''} |`);
    console.log(lines.join('\n'));
  }
  await registry?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

const keyAuth = (k: string) => `{keys: [${k}.pub]}`;
const keyVerify = (k: string) => ['--key', `${k}.pub`, '--insecure-ignore-tlog=true'];

describe('public keys', () => {
  for (const [kind, legacy] of [
    ['ec', true],
    ['ec', false],
    ['rsa', true],
    ['rsa', false],
    ['p384', true],
    ['p384', false],
  ] as const) {
    test(`${kind} key, ${legacy ? 'legacy .sig' : 'bundle referrer'}: allow`, async () => {
      const repo = `key-${kind}-${legacy ? 'legacy' : 'bundle'}`;
      const img = await image(repo);
      await cosignOk(home, ['sign', '--key', `${keys[kind]}.key`, ...signFlags(legacy), img.pinned]);
      const cosignDiffers =
        kind === 'p384'
          ? 'cosign 3.1.1 signs with P-384/SHA-384 but verifies ' +
            `${legacy ? 'the payload' : 'the DSSE envelope'} with SHA-256: it cannot verify its own P-384 signatures`
          : undefined;
      await check({
        name: `${kind} key, ${legacy ? 'legacy' : 'bundle'}`,
        repo,
        pinned: img.pinned,
        expected: 'allow',
        native: keyAuth(keys[kind]),
        policyJson: { keyPath: `${keys[kind]}.pub` },
        cosignArgs: keyVerify(keys[kind]),
        cosignDiffers,
      });
    });
  }

  test('docker media types (COSIGN_DOCKER_MEDIA_TYPES=1), legacy: allow', async () => {
    const img = await image('key-docker-types');
    await cosignOk(home, ['sign', '--key', `${keys.ec}.key`, ...signFlags(true), img.pinned], {
      COSIGN_DOCKER_MEDIA_TYPES: '1',
    });
    await check({
      name: 'docker media types, legacy',
      repo: 'key-docker-types',
      pinned: img.pinned,
      expected: 'allow',
      native: keyAuth(keys.ec),
      policyJson: { keyPath: `${keys.ec}.pub` },
      cosignArgs: keyVerify(keys.ec),
    });
  });

  test('legacy payload pushed as an OCI 1.1 referrer: allow', async () => {
    const img = await image('key-legacy-referrer');
    await cosignOk(
      home,
      ['sign', '--key', `${keys.ec}.key`, ...signFlags(true), '--registry-referrers-mode=oci-1-1', img.pinned],
      { COSIGN_EXPERIMENTAL: '1' },
    );
    await check({
      name: 'legacy payload as referrer',
      repo: 'key-legacy-referrer',
      pinned: img.pinned,
      expected: 'allow',
      native: keyAuth(keys.ec),
      policyJson: { keyPath: `${keys.ec}.pub` },
      cosignArgs: [...keyVerify(keys.ec), '--experimental-oci11'],
      cosignDiffers: undefined,
    });
  });

  test('untrusted key: deny', async () => {
    const img = await image('key-untrusted');
    await cosignOk(home, ['sign', '--key', `${keys.other}.key`, ...signFlags(false), img.pinned]);
    await cosignOk(home, ['sign', '--key', `${keys.other}.key`, ...signFlags(true), img.pinned]);
    await check({
      name: 'untrusted key (both formats)',
      repo: 'key-untrusted',
      pinned: img.pinned,
      expected: 'deny',
      native: keyAuth(keys.ec),
      policyJson: { keyPath: `${keys.ec}.pub` },
      cosignArgs: keyVerify(keys.ec),
      reason: /does not verify with the trusted ECDSA P-256 key/,
    });
  });

  test('trusted .sig beside an untrusted bundle: allow (cosign ignores the .sig once a bundle exists)', async () => {
    const img = await image('key-mixed');
    await cosignOk(home, ['sign', '--key', `${keys.ec}.key`, ...signFlags(true), img.pinned]);
    await cosignOk(home, ['sign', '--key', `${keys.other}.key`, ...signFlags(false), img.pinned]);
    await check({
      name: 'trusted .sig + untrusted bundle',
      repo: 'key-mixed',
      pinned: img.pinned,
      expected: 'allow',
      native: keyAuth(keys.ec),
      policyJson: { keyPath: `${keys.ec}.pub` },
      cosignArgs: keyVerify(keys.ec),
      cosignDiffers: 'cosign 3 verifies bundles only and falls back to .sig only when no bundle exists',
    });
  });

  test('Ed25519: cosign signs Ed25519ph, which neither cosign nor pullguard verifies: deny', async () => {
    const img = await image('key-ed25519');
    await cosignOk(home, ['sign', '--key', `${keys.ed}.key`, ...signFlags(true), img.pinned]);
    await check({
      name: 'Ed25519 key (cosign signs Ed25519ph)',
      repo: 'key-ed25519',
      pinned: img.pinned,
      expected: 'deny',
      native: keyAuth(keys.ed),
      policyJson: { keyPath: `${keys.ed}.pub` },
      cosignArgs: keyVerify(keys.ed),
      reason: /Ed25519ph/,
    });
  });

  test('Ed25519: a pure Ed25519 signature (external signer) attached with cosign: allow', async () => {
    const img = await image('key-ed25519-pure');
    const payload = join(work, 'ed-payload.json');
    writeFileSync(payload, await cosignOk(home, ['generate', ...flags, img.pinned]));
    await openssl(['pkeyutl', '-sign', '-rawin', '-inkey', 'ed.pem', '-in', payload, '-out', 'ed.sig'], work);
    writeFileSync(join(work, 'ed.sig.b64'), readFileSync(join(work, 'ed.sig')).toString('base64'));
    await cosignOk(home, [
      'attach',
      'signature',
      '--payload',
      payload,
      '--signature',
      join(work, 'ed.sig.b64'),
      ...flags,
      img.pinned,
    ]);
    await check({
      name: 'Ed25519 pure signature, attached',
      repo: 'key-ed25519-pure',
      pinned: img.pinned,
      expected: 'allow',
      native: keyAuth(keys.ed),
      policyJson: { keyPath: `${keys.ed}.pub` },
      cosignArgs: keyVerify(keys.ed),
    });
  });
});

describe('private CA (root -> intermediate -> leaf)', () => {
  const certAuth =
    (p: () => CaChain, email = 'signer@example.com') =>
    () =>
      `{certificates: {roots: [${p().root.cert}], intermediates: [${p().intermediate.cert}]}, identities: ` +
      `[{email: ${email}, issuer: https://issuer.example.com}]}`;
  const pkiJson =
    (p: () => CaChain, email = 'signer@example.com') =>
    () => ({
      pki: { caRootsPath: `${p().root.cert}`, caIntermediatesPath: `${p().intermediate.cert}`, subjectEmail: email },
    });
  const certVerifyLegacy = (email = 'signer@example.com') => [
    '--certificate-chain',
    pki.chainPem,
    '--certificate-identity',
    email,
    '--certificate-oidc-issuer',
    'https://issuer.example.com',
    '--insecure-ignore-sct=true',
    '--insecure-ignore-tlog=true',
    '--new-bundle-format=false',
  ];

  test('cosign sign --certificate --certificate-chain, legacy (empty chain annotation): allow', async () => {
    const img = await image('ca-legacy');
    await signWithCertificate(cosignLeafKey, leaf.cert, pki.chainPem, true, img.pinned);
    await check({
      name: 'private CA, cosign sign, legacy',
      repo: 'ca-legacy',
      pinned: img.pinned,
      expected: 'allow',
      native: certAuth(() => pki)(),
      policyJson: pkiJson(() => pki)(),
      cosignArgs: certVerifyLegacy(),
    });
  });

  test('cosign sign --certificate, bundle (no chain in the bundle): allow', async () => {
    const img = await image('ca-bundle');
    await signWithCertificate(cosignLeafKey, leaf.cert, pki.chainPem, false, img.pinned);
    const root = join(work, 'pki-trusted-root.json');
    await cosignOk(home, [
      'trusted-root',
      'create',
      `--fulcio=url=https://ca.example.com,certificate-chain=${pki.chainPem}`,
      '--out',
      root,
    ]);
    await check({
      name: 'private CA, cosign sign, bundle',
      repo: 'ca-bundle',
      pinned: img.pinned,
      expected: 'allow',
      native: certAuth(() => pki)(),
      policyJson: pkiJson(() => pki)(),
      cosignArgs: [
        '--trusted-root',
        root,
        '--certificate-identity',
        'signer@example.com',
        '--certificate-oidc-issuer',
        'https://issuer.example.com',
        '--insecure-ignore-sct=true',
        '--insecure-ignore-tlog=true',
      ],
    });
  });

  test(
    'external signer: cosign generate, openssl RSA PKCS#1 v1.5, ' + 'cosign attach signature with the chain: allow',
    async () => {
      const img = await image('ca-external');
      const rsaLeaf = await makeLeaf(pki, 'rsaleaf', { rsa: true });
      const payload = join(work, 'ext-payload.json');
      writeFileSync(payload, await cosignOk(home, ['generate', ...flags, img.pinned]));
      await openssl(['dgst', '-sha256', '-sign', rsaLeaf.key, '-out', 'ext.sig', payload], work);
      writeFileSync(join(work, 'ext.sig.b64'), readFileSync(join(work, 'ext.sig')).toString('base64'));
      await cosignOk(home, [
        'attach',
        'signature',
        '--payload',
        payload,
        '--signature',
        join(work, 'ext.sig.b64'),
        '--certificate',
        rsaLeaf.cert,
        '--certificate-chain',
        pki.chainPem,
        ...flags,
        img.pinned,
      ]);
      // Only the root in the policy: the intermediate comes from the chain annotation the signer attached.
      await check({
        name: 'external signer (RSA), attach with chain, policy has the root only',
        repo: 'ca-external',
        pinned: img.pinned,
        expected: 'allow',
        native: `{certificates: {roots: [${pki.root.cert}]}, identities: [{email: signer@example.com}]}`,
        policyJson: { pki: { caRootsPath: `${pki.root.cert}`, subjectEmail: 'signer@example.com' } },
        cosignArgs: certVerifyLegacy(),
      });
    },
  );

  test('a CA with the same names but another key: deny', async () => {
    const img = await image('ca-evil');
    const evilLeaf = await makeLeaf(evilPki, 'evilleaf');
    await cosignOk(home, ['import-key-pair', '--key', evilLeaf.key, '--output-key-prefix', join(work, 'evilkey')]);
    await signWithCertificate(join(work, 'evilkey.key'), evilLeaf.cert, evilPki.chainPem, true, img.pinned);
    await check({
      name: 'CA with the trusted names, other key',
      repo: 'ca-evil',
      pinned: img.pinned,
      expected: 'deny',
      native: certAuth(() => pki)(),
      policyJson: pkiJson(() => pki)(),
      cosignArgs: certVerifyLegacy(),
      reason: /does not chain to a trusted CA/,
    });
  });

  test('identity mismatch: deny', async () => {
    const img = await image('ca-identity');
    await signWithCertificate(cosignLeafKey, leaf.cert, pki.chainPem, true, img.pinned);
    await check({
      name: 'identity mismatch',
      repo: 'ca-identity',
      pinned: img.pinned,
      expected: 'deny',
      native: certAuth(() => pki, 'release@example.com')(),
      policyJson: pkiJson(() => pki, 'release@example.com')(),
      cosignArgs: certVerifyLegacy('release@example.com'),
      reason: /matches none of the 1 allowed identities/,
    });
  });

  test('expired leaf that signed while valid: deny', async () => {
    const img = await image('ca-expired');
    const short = await makeLeaf(pki, 'shortleaf', { seconds: 20 });
    await cosignOk(home, ['import-key-pair', '--key', short.key, '--output-key-prefix', join(work, 'shortkey')]);
    await signWithCertificate(join(work, 'shortkey.key'), short.cert, pki.chainPem, true, img.pinned);
    const notAfter = new Date(
      readFileSync(short.cert, 'utf8') &&
        (await openssl(['x509', '-in', short.cert, '-noout', '-enddate'], work)).split('=')[1]!.trim(),
    );
    const wait = notAfter.getTime() - Date.now() + 1500;
    expect(wait).toBeLessThan(30_000);
    if (wait > 0) await sleep(wait);
    await check({
      name: 'expired leaf (signed while valid)',
      repo: 'ca-expired',
      pinned: img.pinned,
      expected: 'deny',
      native: certAuth(() => pki)(),
      policyJson: pkiJson(() => pki)(),
      cosignArgs: certVerifyLegacy(),
      reason: /does not chain to a trusted CA at/,
    });
  }, 90_000);
});

describe('binding and tampering', () => {
  const base = (repo: string, pinned: string, name: string, reason?: RegExp, cosignDiffers?: string): Case => ({
    name,
    repo,
    pinned,
    expected: 'deny',
    native: keyAuth(keys.ec),
    policyJson: { keyPath: `${keys.ec}.pub` },
    cosignArgs: keyVerify(keys.ec),
    reason,
    cosignDiffers,
  });

  async function manifestOf(
    repo: string,
    tag: string,
  ): Promise<{
    text: string;
    json: { layers: { digest: string; size: number; annotations?: Record<string, string> }[] };
  }> {
    const r = await fetch(`${registry.url}/v2/${repo}/manifests/${tag}`, {
      headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
    });
    expect(r.status).toBe(200);
    const text = await r.text();
    return { text, json: JSON.parse(text) };
  }
  async function putManifest(repo: string, tag: string, body: string): Promise<void> {
    const r = await fetch(`${registry.url}/v2/${repo}/manifests/${tag}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' },
      body,
    });
    expect(r.status, await r.text()).toBe(201);
  }
  const sigTag = (digest: string) => `${digest.replace(':', '-')}.sig`;

  test('a signature for image A attached to image B: deny', async () => {
    const a = await image('bind');
    const b = await image('bind');
    await cosignOk(home, ['sign', '--key', `${keys.ec}.key`, ...signFlags(true), a.pinned]);
    const sig = await manifestOf('bind', sigTag(a.digest));
    await putManifest('bind', sigTag(b.digest), sig.text);
    await check(base('bind', b.pinned, "image A's .sig copied to image B", /signed for sha256:.*, not the pulled/));
  });

  test('a tampered signature: deny', async () => {
    const img = await image('tamper-sig');
    await cosignOk(home, ['sign', '--key', `${keys.ec}.key`, ...signFlags(true), img.pinned]);
    const m = await manifestOf('tamper-sig', sigTag(img.digest));
    const layer = m.json.layers[0]!;
    const sig = Buffer.from(layer.annotations!['dev.cosignproject.cosign/signature']!, 'base64');
    sig[sig.length - 3]! ^= 0x01;
    layer.annotations!['dev.cosignproject.cosign/signature'] = sig.toString('base64');
    await putManifest('tamper-sig', sigTag(img.digest), JSON.stringify(m.json));
    await check(base('tamper-sig', img.pinned, 'tampered signature', /does not verify/));
  });

  test('a tampered payload: deny', async () => {
    const img = await image('tamper-payload');
    await cosignOk(home, ['sign', '--key', `${keys.ec}.key`, ...signFlags(true), img.pinned]);
    const m = await manifestOf('tamper-payload', sigTag(img.digest));
    const layer = m.json.layers[0]!;
    const payload = Buffer.from(
      await (await fetch(`${registry.url}/v2/tamper-payload/blobs/${layer.digest}`)).arrayBuffer(),
    );
    const changed = Buffer.from(payload.toString().replace('"optional":null', '"optional":{"x":"y"}'));
    expect(changed.equals(payload)).toBe(false);
    const { createHash } = await import('node:crypto');
    const digest = `sha256:${createHash('sha256').update(changed).digest('hex')}`;
    const up = await fetch(`${registry.url}/v2/tamper-payload/blobs/uploads/`, { method: 'POST' });
    const loc = new URL(up.headers.get('location')!, registry.url);
    loc.searchParams.set('digest', digest);
    expect(
      (await fetch(loc, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: changed }))
        .status,
    ).toBe(201);
    layer.digest = digest;
    layer.size = changed.length;
    await putManifest('tamper-payload', sigTag(img.digest), JSON.stringify(m.json));
    await check(base('tamper-payload', img.pinned, 'tampered payload', /does not verify/));
  });

  test('an attestation only (both formats): deny', async () => {
    const img = await image('attest-only');
    const predicate = join(work, 'predicate.json');
    writeFileSync(predicate, '{"hello":"world"}');
    for (const legacy of [true, false]) {
      const attest = ['attest', '--key', `${keys.ec}.key`, '--predicate', predicate, '--type', 'custom'];
      await cosignOk(home, [...attest, ...signFlags(legacy), img.pinned]);
    }
    await check(
      base(
        'attest-only',
        img.pinned,
        'attestation only',
        /no cosign signature found/,
        'cosign 3 does not filter bundles by predicateType: the attestation bundle passes as a signature',
      ),
    );
  });

  test('only the children of an index signed: deny for the index', async () => {
    const idx = await image('index-children', { index: true });
    const indexJson = JSON.parse(
      await (
        await fetch(`${registry.url}/v2/index-children/manifests/${idx.digest}`, {
          headers: { accept: 'application/vnd.oci.image.index.v1+json' },
        })
      ).text(),
    );
    for (const m of indexJson.manifests as { digest: string }[]) {
      await cosignOk(home, [
        'sign',
        '--key',
        `${keys.ec}.key`,
        ...signFlags(true),
        `${registry.host}/index-children@${m.digest}`,
      ]);
      await cosignOk(home, [
        'sign',
        '--key',
        `${keys.ec}.key`,
        ...signFlags(false),
        `${registry.host}/index-children@${m.digest}`,
      ]);
    }
    await check(base('index-children', idx.pinned, 'only index children signed', /no cosign signature found/));
  });

  test('an index signed by digest: allow', async () => {
    const idx = await image('index-signed', { index: true });
    await cosignOk(home, ['sign', '--key', `${keys.ec}.key`, ...signFlags(false), idx.pinned]);
    await check({ ...base('index-signed', idx.pinned, 'index signed (bundle)'), expected: 'allow' });
  });
});

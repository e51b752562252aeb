import { constants, createPrivateKey, sign as cryptoSign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { decode, encode, Tagged } from 'cborg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Deadline } from '../../src/common/deadline.js';
import { parseReference } from '../../src/common/reference.js';
import { loadPolicy } from '../../src/policy/load.js';
import { createRegistryClient } from '../../src/registry/index.js';
import { clearTrustStoreCache } from '../../src/verify/notation/truststore.js';
import { notationVerifier } from '../../src/verify/notation/verifier.js';
import { resolveAuthority } from '../../src/policy/resolve.js';
import { decidePinned } from '../helpers/decide.js';
import { notationSandbox, RegistryWriter, type NotationSandbox } from '../helpers/notation.js';
import { Pki, type Issued } from '../helpers/pki.js';
import { pushTestImage, type PushedImage } from '../helpers/oci.js';
import { startRegistry, type Registry } from '../helpers/registry.js';

/**
 * The broad matrix: real notation 1.3.2 signs (JWS and COSE, several keys and chains), and for every
 * case pullguard's verdict (the whole decide() path: the notation directory as policy, the registry
 * client, the verifier) must equal `notation verify`'s with the same trust policy and trust store.
 */
let registry: Registry;
let nt: NotationSandbox;
let pki: Pki;
let writer: RegistryWriter;
const images = new Map<string, PushedImage>();

const ACME = '/C=US/ST=WA/O=Acme';
const ACME_DN = 'C=US, ST=WA, O=Acme';

function statement(
  name: string,
  stores: string[],
  ids: string[] = ['*'],
  level = 'strict',
  override?: Record<string, string>,
) {
  return {
    name,
    registryScopes: [`${registry.host}/${name}`],
    signatureVerification: { level, ...(override ? { override } : {}) },
    trustStores: stores,
    trustedIdentities: ids,
  };
}

async function sign(repo: string, key: string, format: 'jws' | 'cose', extra: string[] = []) {
  const img = images.get(repo)!;
  await nt.sign(`${registry.host}/${repo}@${img.digest}`, key, ['--signature-format', format, ...extra]);
}

async function pullguardVerdict(repo: string): Promise<{ verdict: string; reason: string }> {
  clearTrustStoreCache();
  const img = images.get(repo)!;
  const decision = await decidePinned(loadPolicy(nt.configDir), `${registry.host}/${repo}@${img.digest}`, img);
  return { verdict: decision.verdict, reason: decision.reason };
}

async function notationVerdict(repo: string): Promise<{ verdict: string; output: string }> {
  const img = images.get(repo)!;
  const r = await nt.run(['verify', '--insecure-registry', `${registry.host}/${repo}@${img.digest}`]);
  return { verdict: r.status === 0 ? 'allow' : 'deny', output: r.output };
}

/** A notation-shaped JWS built and signed here, for what the notation CLI cannot produce. */
function handJws(leaf: Issued, chain: Issued[], img: PushedImage, protectedHeader: Record<string, unknown>): Buffer {
  const b64u = (b: Buffer | string) => Buffer.from(b).toString('base64url');
  const payload = b64u(
    JSON.stringify({ targetArtifact: { digest: img.digest, mediaType: img.mediaType, size: img.size } }),
  );
  const prot = b64u(JSON.stringify(protectedHeader));
  const sig = cryptoSign('sha384', Buffer.from(`${prot}.${payload}`), {
    key: createPrivateKey(readFileSync(leaf.key)),
    padding: constants.RSA_PKCS1_PSS_PADDING,
    saltLength: 48,
  });
  const der = (c: Issued) =>
    Buffer.from(readFileSync(c.cert, 'utf8').replace(/-----[^-]+-----|\s/g, ''), 'base64').toString('base64');
  return Buffer.from(
    JSON.stringify({
      payload,
      protected: prot,
      header: { x5c: chain.map(der), 'io.cncf.notary.signingAgent': 'pullguard-test' },
      signature: b64u(sig),
    }),
  );
}

const expected: Record<string, 'allow' | 'deny'> = {};

beforeAll(async () => {
  registry = await startRegistry();
  writer = new RegistryWriter(registry.url);
  nt = notationSandbox();
  pki = Pki.create();

  const gt = await nt.run(['cert', 'generate-test', 'gt']);
  if (gt.status !== 0) throw new Error(gt.output);

  const root = await pki.issue('root', { kind: 'rsa4096', subject: `${ACME}/CN=Acme Root`, ca: true });
  const leaves = {
    rsa3072: await pki.issue('rsa3072', { kind: 'rsa3072', subject: `${ACME}/CN=acme-3072`, issuer: root }),
    rsa4096: await pki.issue('rsa4096', { kind: 'rsa4096', subject: `${ACME}/CN=acme-4096`, issuer: root }),
    p256: await pki.issue('p256', { kind: 'p256', subject: `${ACME}/CN=acme-p256`, issuer: root }),
    p384: await pki.issue('p384', { kind: 'p384', subject: `${ACME}/CN=acme-p384`, issuer: root }),
    shortlived: await pki.issue('shortlived', {
      kind: 'rsa2048',
      subject: `${ACME}/CN=acme-short`,
      issuer: root,
      endSeconds: 50,
    }),
  };
  const shortlivedEnd = Date.now() + 50_000;
  for (const [name, leaf] of Object.entries(leaves)) nt.addKey(name, leaf.key, pki.bundle(name, [leaf, root]));
  // Same names, different keys: an attacker's look-alike CA.
  const evilRoot = await pki.issue('evilroot', { kind: 'rsa4096', subject: `${ACME}/CN=Acme Root`, ca: true });
  const evil = await pki.issue('evil', { kind: 'rsa3072', subject: `${ACME}/CN=acme-3072`, issuer: evilRoot });
  nt.addKey('evil', evil.key, pki.bundle('evil', [evil, evilRoot]));
  // root -> intermediate -> leaf
  const r2 = await pki.issue('r2', { kind: 'p384', subject: `${ACME}/CN=Acme Root 2`, ca: true, pathLen: 1 });
  const inter = await pki.issue('inter', {
    kind: 'p384',
    subject: `${ACME}/CN=Acme Issuing`,
    issuer: r2,
    ca: true,
    pathLen: 0,
  });
  const chained = await pki.issue('chained', {
    kind: 'p256',
    subject: `${ACME}/OU=Build/CN=acme-chained`,
    issuer: inter,
  });
  nt.addKey('chained', chained.key, pki.bundle('chained', [chained, inter, r2]));

  nt.trust('ca', 'acme', root.cert);
  nt.trust('ca', 'acme2', r2.cert);
  nt.trust('signingAuthority', 'acme', root.cert);

  const A = `x509.subject: ${ACME_DN}, CN=acme-3072`;
  const stmts = [
    statement('jws-gt', ['ca:gt']),
    statement('cose-gt', ['ca:gt']),
    statement('rsa3072-jws', ['ca:acme'], [A]),
    statement('rsa4096-cose', ['ca:acme'], [`x509.subject: CN=acme-4096, O=Acme, ST=WA, C=US`]),
    statement('p256-jws', ['ca:acme'], [`x509.subject: ${ACME_DN}`]),
    statement('p384-cose', ['ca:acme']),
    statement('chain-jws', ['ca:acme2'], [`x509.subject: ${ACME_DN}, OU=Build`]),
    statement('chain-cose', ['ca:acme2']),
    statement('untrusted-ca', ['ca:acme'], [A]),
    statement('identity-mismatch', ['ca:acme'], [`x509.subject: C=US, ST=WA, O=Other`]),
    statement('sig-expired', ['ca:acme']),
    statement('sig-expired-permissive', ['ca:acme'], ['*'], 'permissive'),
    statement('leaf-expired', ['ca:acme']),
    statement('tampered-envelope', ['ca:acme']),
    statement('tampered-payload', ['ca:acme']),
    statement('other-digest', ['ca:acme']),
    statement('sa-no-ast', ['signingAuthority:acme']),
    statement('sa-ca-store', ['ca:acme']),
    statement('multi', ['ca:acme'], [A]),
    statement('audit-untrusted', ['ca:acme'], [A], 'audit'),
    statement('no-signature', ['ca:acme']),
    { name: 'skipped', registryScopes: [`${registry.host}/skipped`], signatureVerification: { level: 'skip' } },
  ];
  nt.writeTrustPolicy(stmts);

  for (const s of [...stmts.map((x) => x.name), 'unscoped']) {
    images.set(s, await pushTestImage(registry.host, s, 'v1', `notation-${s}`));
  }

  await sign('jws-gt', 'gt', 'jws');
  await sign('cose-gt', 'gt', 'cose');
  await sign('rsa3072-jws', 'rsa3072', 'jws');
  await sign('rsa4096-cose', 'rsa4096', 'cose');
  await sign('p256-jws', 'p256', 'jws');
  await sign('p384-cose', 'p384', 'cose');
  await sign('chain-jws', 'chained', 'jws');
  await sign('chain-cose', 'chained', 'cose');
  await sign('untrusted-ca', 'evil', 'jws');
  await sign('identity-mismatch', 'rsa3072', 'jws');
  await sign('sig-expired', 'rsa3072', 'jws', ['--expiry', '1s']);
  await sign('sig-expired-permissive', 'rsa3072', 'cose', ['--expiry', '1s']);
  await sign('leaf-expired', 'shortlived', 'jws');
  await sign('multi', 'evil', 'cose');
  await sign('multi', 'rsa3072', 'jws');
  await sign('audit-untrusted', 'evil', 'jws');
  await sign('skipped', 'gt', 'jws'); // irrelevant: skip never looks

  // Tampered envelope: the protected header's signing time changes, the signature does not.
  await sign('tampered-envelope', 'rsa3072', 'jws');
  {
    const img = images.get('tampered-envelope')!;
    const [sig] = await writer.signatures('tampered-envelope', img.digest);
    const env = JSON.parse((await writer.getBlob('tampered-envelope', sig!.manifest.layers[0].digest)).toString());
    const ph = JSON.parse(Buffer.from(env.protected, 'base64url').toString());
    ph['io.cncf.notary.signingTime'] = '2020-01-01T00:00:00Z';
    env.protected = Buffer.from(JSON.stringify(ph)).toString('base64url');
    await writer.pushSignature('tampered-envelope', img, Buffer.from(JSON.stringify(env)), 'application/jose+json', {
      replace: true,
    });
  }
  // Tampered payload (COSE): the attached payload names a different size.
  await sign('tampered-payload', 'rsa3072', 'cose');
  {
    const img = images.get('tampered-payload')!;
    const [sig] = await writer.signatures('tampered-payload', img.digest);
    const blob = await writer.getBlob('tampered-payload', sig!.manifest.layers[0].digest);
    const msg = decode(blob, {
      tags: { 18: (d: () => unknown) => new Tagged(18, d()), 1: (d: () => unknown) => new Tagged(1, d()) } as never,
      useMaps: true,
    }) as Tagged;
    const arr = msg.value as unknown[];
    const payload = JSON.parse(Buffer.from(arr[2] as Uint8Array).toString());
    payload.targetArtifact.size += 1;
    arr[2] = Buffer.from(JSON.stringify(payload));
    await writer.pushSignature('tampered-payload', img, encode(new Tagged(18, arr)), 'application/cose', {
      replace: true,
    });
  }
  // A genuine signature for another image, listed as a referrer of this one.
  {
    const other = images.get('rsa3072-jws')!;
    const [sig] = await writer.signatures('rsa3072-jws', other.digest);
    const img = images.get('other-digest')!;
    // Copy the signature manifest (and its blobs) into this repository, then list it for this image.
    const m = sig!.manifest;
    await writer.putBlob('other-digest', await writer.getBlob('rsa3072-jws', m.config.digest));
    await writer.putBlob('other-digest', await writer.getBlob('rsa3072-jws', m.layers[0].digest));
    const put = await writer.putManifest('other-digest', sig!.digest, m);
    await writer.addReferrer('other-digest', img.digest, {
      mediaType: m.mediaType,
      ...put,
      artifactType: 'application/vnd.cncf.notary.signature',
      annotations: m.annotations,
    });
  }
  // notary.x509.signingAuthority without authenticSigningTime, signed with a real key (notation cannot make it).
  {
    const img = images.get('sa-no-ast')!;
    const ph = {
      alg: 'PS384',
      crit: ['io.cncf.notary.signingScheme'],
      cty: 'application/vnd.cncf.notary.payload.v1+json',
      'io.cncf.notary.signingScheme': 'notary.x509.signingAuthority',
      'io.cncf.notary.signingTime': new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    };
    await writer.pushSignature(
      'sa-no-ast',
      img,
      handJws(leaves.rsa3072, [leaves.rsa3072, root], img, ph),
      'application/jose+json',
    );
  }
  // signingAuthority with authenticSigningTime, but the statement only has a ca store.
  {
    const img = images.get('sa-ca-store')!;
    const ph = {
      alg: 'PS384',
      crit: ['io.cncf.notary.signingScheme', 'io.cncf.notary.authenticSigningTime'],
      cty: 'application/vnd.cncf.notary.payload.v1+json',
      'io.cncf.notary.signingScheme': 'notary.x509.signingAuthority',
      'io.cncf.notary.authenticSigningTime': new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    };
    await writer.pushSignature(
      'sa-ca-store',
      img,
      handJws(leaves.rsa3072, [leaves.rsa3072, root], img, ph),
      'application/jose+json',
    );
  }
  // Let the 1s expiries and the 25s leaf lapse.
  await new Promise((r) => setTimeout(r, Math.max(0, shortlivedEnd + 2_000 - Date.now())));

  Object.assign(expected, {
    'jws-gt': 'allow',
    'cose-gt': 'allow',
    'rsa3072-jws': 'allow',
    'rsa4096-cose': 'allow',
    'p256-jws': 'allow',
    'p384-cose': 'allow',
    'chain-jws': 'allow',
    'chain-cose': 'allow',
    'untrusted-ca': 'deny',
    'identity-mismatch': 'deny',
    'sig-expired': 'deny',
    'sig-expired-permissive': 'allow',
    'leaf-expired': 'deny',
    'tampered-envelope': 'deny',
    'tampered-payload': 'deny',
    'other-digest': 'deny',
    'sa-no-ast': 'deny',
    'sa-ca-store': 'deny',
    multi: 'allow',
    'audit-untrusted': 'allow',
    'no-signature': 'deny',
    skipped: 'allow',
    unscoped: 'deny',
  });
}, 240_000);

afterAll(async () => {
  await registry?.stop();
  nt?.dispose();
  pki?.dispose();
});

describe('notation verdicts: pullguard agrees with notation verify 1.3.2', () => {
  const cases = [
    'jws-gt',
    'cose-gt',
    'rsa3072-jws',
    'rsa4096-cose',
    'p256-jws',
    'p384-cose',
    'chain-jws',
    'chain-cose',
    'untrusted-ca',
    'identity-mismatch',
    'sig-expired',
    'sig-expired-permissive',
    'leaf-expired',
    'tampered-envelope',
    'tampered-payload',
    'other-digest',
    'sa-no-ast',
    'sa-ca-store',
    'multi',
    'audit-untrusted',
    'no-signature',
    'skipped',
    'unscoped',
  ];
  it.each(cases)('%s', async (repo) => {
    const n = await notationVerdict(repo);
    const p = await pullguardVerdict(repo);
    const table =
      `${repo}: expected ${expected[repo]}, notation ${n.verdict}, pullguard ${p.verdict} ` +
      `(${p.reason})\nnotation: ${n.output.trim().split('\n').slice(-3).join(' | ')}`;
    console.log(table);
    expect(n.verdict, table).toBe(expected[repo]);
    expect(p.verdict, table).toBe(expected[repo]);
  });
});

describe('notation verifier on its own', () => {
  it(
    'a genuine signature presented for another digest fails integrity (payload binding), ' + 'not just discovery',
    async () => {
      clearTrustStoreCache();
      const policy = loadPolicy(nt.configDir);
      const signed = images.get('rsa3072-jws')!;
      const other = images.get('other-digest')!;
      const deadline = new Deadline(20_000);
      try {
        const found = await createRegistryClient(policy.registry).discover(
          {
            subject: parseReference(`${registry.host}/rsa3072-jws@${signed.digest}`) as never,
            classes: new Set(['notation']),
          },
          deadline,
        );
        expect(found.artifacts.length).toBe(1);
        const rule = policy.rules.find((r) => r.name === 'rsa3072-jws')!;
        const resolution = resolveAuthority(rule.authorities[0]!, `${registry.host}/rsa3072-jws`);
        if (!('verify' in resolution) || resolution.verify.kind !== 'notation')
          throw new Error('expected a notation authority');
        const authority = resolution.verify;
        const res = await notationVerifier.verify(
          authority,
          {
            reference: parseReference(`${registry.host}/rsa3072-jws@${other.digest}`) as never,
            descriptor: { mediaType: other.mediaType, digest: other.digest, size: other.size },
          },
          found.artifacts,
          deadline,
        );
        expect(res.satisfied).toBe(false);
        expect(res.signatures[0]!.checks[0]).toMatchObject({
          check: 'integrity',
          result: 'fail',
          enforcement: 'enforced',
        });
        expect(res.reason).toMatch(/signature is for .* not the pulled/);
      } finally {
        deadline.dispose();
      }
    },
  );
});

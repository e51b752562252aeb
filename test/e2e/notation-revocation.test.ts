import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as esbuild from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadPolicy } from '../../src/policy/load.js';
import type { CheckOutcome } from '../../src/verify/types.js';
import { clearCrlMemoryCache } from '../../src/verify/notation/revocation.js';
import { clearTrustStoreCache } from '../../src/verify/notation/truststore.js';
import { decidePinned } from '../helpers/decide.js';
import {
  makeCrl,
  makeTsa,
  notationSandbox,
  OCSP_SIGNER_EXT,
  ocspIndex,
  PkiServer,
  RegistryWriter,
  runAsync,
  startOcspResponder,
  TSA_EXT,
  type NotationSandbox,
} from '../helpers/notation.js';
import { Pki, type Issued } from '../helpers/pki.js';
import { pushTestImage, type PushedImage } from '../helpers/oci.js';
import { freePort, type Daemon } from '../helpers/proc.js';
import { startRegistry, type Registry } from '../helpers/registry.js';
import { ROOT } from '../helpers/tools.js';

/**
 * RFC 3161 timestamps, OCSP and CRL revocation, end to end: a real TSA (`openssl ts -reply` behind a loopback
 * HTTP server) countersigns real notation 1.3.2 signatures, and CAs made with `openssl ca` publish CRLs
 * on the same server; real `openssl ocsp` responder daemons answer OCSP. For every case pullguard's verdict
 * (decide() with the notation directory as the policy) must equal `notation verify`'s, with the same trust policy
 * and trust store.
 */
let registry: Registry;
let nt: NotationSandbox;
let pki: Pki;
let srv: PkiServer;
let writer: RegistryWriter;
let work: string;
let crlRootCa: Issued;
const ocspDaemons: Daemon[] = [];
const images = new Map<string, PushedImage>();
const expected: Record<string, 'allow' | 'deny'> = {};
/** Checks that must show up in pullguard's outcome for a case: [check, result, enforcement]. */
const expectedChecks: Record<string, [CheckOutcome['check'], CheckOutcome['result'], CheckOutcome['enforcement']]> = {};
const table: string[] = [];

type Sv = { level?: string; override?: Record<string, string>; verifyTimestamp?: string };
function statement(name: string, stores: string[], sv: Sv = {}) {
  const { level = 'strict', ...rest } = sv;
  return {
    name,
    registryScopes: [`${registry.host}/${name}`],
    signatureVerification: { level, ...rest },
    trustStores: stores,
    trustedIdentities: ['*'],
  };
}

async function sign(repo: string, key: string, format: 'jws' | 'cose', extra: string[] = []) {
  const img = images.get(repo)!;
  await nt.sign(`${registry.host}/${repo}@${img.digest}`, key, ['--signature-format', format, ...extra]);
}

async function pullguard(repo: string) {
  clearTrustStoreCache();
  const img = images.get(repo)!;
  const decision = await decidePinned(loadPolicy(nt.configDir), `${registry.host}/${repo}@${img.digest}`, img);
  return {
    verdict: decision.verdict,
    reason: decision.reason,
    checks: decision.results.flatMap((r) => r.signatures.flatMap((s) => s.checks)),
  };
}

async function notationVerdict(repo: string) {
  const img = images.get(repo)!;
  const r = await nt.run(['verify', '--insecure-registry', `${registry.host}/${repo}@${img.digest}`]);
  return { verdict: r.status === 0 ? 'allow' : 'deny', output: r.output };
}

/**
 * Flips the last byte of the JWS timestamp countersignature (the TSA's signature value): still DER, no longer genuine.
 */
async function tamperTimestamp(repo: string) {
  const img = images.get(repo)!;
  const [sig] = await writer.signatures(repo, img.digest);
  const env = JSON.parse((await writer.getBlob(repo, sig!.manifest.layers[0].digest)).toString());
  const token = Buffer.from(env.header['io.cncf.notary.timestampSignature'], 'base64');
  token[token.length - 1]! ^= 0x01;
  env.header['io.cncf.notary.timestampSignature'] = token.toString('base64');
  await writer.pushSignature(repo, img, Buffer.from(JSON.stringify(env)), 'application/jose+json', { replace: true });
}

const TS_CASES = [
  'ts-valid',
  'ts-valid-cose',
  'ts-fractional-gentime',
  'ts-expired-leaf',
  'ts-expired-leaf-no-tsa',
  'ts-expired-leaf-no-tsa-permissive',
  'ts-untrusted-tsa',
  'ts-tampered',
  'ts-missing',
  'ts-after-missing',
  'ts-after-tampered',
  'ts-after-expired',
  'ts-after-expired-untrusted',
  'ts-tsa-revoked',
];
const CRL_CASES = [
  'crl-ok',
  'crl-revoked',
  'crl-revoked-log',
  'crl-revoked-permissive',
  'crl-revoked-skip',
  'crl-down',
  'crl-down-skip',
  'crl-down-permissive',
  'crl-expired',
  'crl-wrong-key',
  'crl-two-points-one-down',
  'crl-inter-revoked',
  'crl-inter-ok',
];
const OCSP_CASES = [
  'ocsp-good',
  'ocsp-revoked',
  'ocsp-revoked-permissive',
  'ocsp-unknown',
  'ocsp-down',
  'ocsp-down-crl-ok',
  'ocsp-down-crl-revoked',
  'ocsp-wrong-key',
  'ocsp-delegated',
];
/**
 * Where pullguard is stricter than notation on purpose: [notation, pullguard]. notation (through
 * golang.org/x/crypto/ocsp) accepts any responder certificate the issuer signed; RFC 6960 §4.2.2.2
 * requires the id-kp-OCSPSigning EKU, and pullguard enforces it.
 */
const DIVERGENT: Record<string, ['allow' | 'deny', 'allow' | 'deny']> = { 'ocsp-delegated-no-eku': ['allow', 'deny'] };

beforeAll(async () => {
  registry = await startRegistry();
  writer = new RegistryWriter(registry.url);
  nt = notationSandbox();
  pki = Pki.create();
  work = mkdtempSync(join(tmpdir(), 'pg-revocation-'));
  srv = new PkiServer(pki.dir);
  await srv.start();
  const closedPort = await freePort(); // nothing listens there: a CRL server that is down

  for (const s of [...TS_CASES, ...CRL_CASES, ...OCSP_CASES, 'ocsp-delegated-no-eku', 'crl-cache', 'crl-disk']) {
    images.set(s, await pushTestImage(registry.host, s, 'v1', `revocation-${s}`));
  }

  // Timestamping PKI: a TSA root with two signers (one of them revocable by a CRL) and an untrusted look-alike.
  const tsaRoot = await pki.issue('tsa-root', { kind: 'p384', subject: '/O=Acme/CN=Acme TSA Root', ca: true });
  const tsaSigner = await pki.issue('tsa-signer', {
    kind: 'rsa2048',
    subject: '/O=Acme/CN=Acme TSA',
    issuer: tsaRoot,
    ext: TSA_EXT,
  });
  const tsaRevocable = await pki.issue('tsa-revocable', {
    kind: 'p256',
    subject: '/O=Acme/CN=Acme TSA 2',
    issuer: tsaRoot,
    ext: `${TSA_EXT}\ncrlDistributionPoints=URI:${srv.url}/crl/tsa-root.crl`,
  });
  const evilTsaRoot = await pki.issue('evil-tsa-root', { kind: 'p384', subject: '/O=Acme/CN=Acme TSA Root', ca: true });
  const evilTsaSigner = await pki.issue('evil-tsa-signer', {
    kind: 'rsa2048',
    subject: '/O=Acme/CN=Acme TSA',
    issuer: evilTsaRoot,
    ext: TSA_EXT,
  });
  const tsaUrl = srv.addTsa(makeTsa(pki, 'good', tsaSigner, [tsaSigner, tsaRoot]));
  const preciseUrl = srv.addTsa(makeTsa(pki, 'precise', tsaSigner, [tsaSigner, tsaRoot], { precisionDigits: 6 }));
  const revocableUrl = srv.addTsa(makeTsa(pki, 'revocable', tsaRevocable, [tsaRevocable, tsaRoot]));
  const evilUrl = srv.addTsa(makeTsa(pki, 'evil', evilTsaSigner, [evilTsaSigner, evilTsaRoot]));
  // notation sign refuses a revoked TSA, so the TSA root's CRL revokes that signer only after signing.
  srv.setCrl('tsa-root.crl', await makeCrl(pki, 'tsa-root-empty', tsaRoot, []));
  const ts = (url: string, root: Issued) => ['--timestamp-url', url, '--timestamp-root-cert', root.cert];

  // Signing PKI for the timestamp cases.
  const root = await pki.issue('root', { kind: 'p384', subject: '/O=Acme/CN=Acme Root', ca: true });
  const leaf = await pki.issue('leaf', { kind: 'p256', subject: '/O=Acme/CN=acme-signer', issuer: root });
  nt.addKey('leaf', leaf.key, pki.bundle('leaf', [leaf, root]));
  nt.trust('ca', 'acme', root.cert);
  nt.trust('tsa', 'acme-tsa', tsaRoot.cert);

  // CRL PKI: leaves whose distribution points name the test server (or a port where nothing listens).
  const crlRoot = await pki.issue('crl-root', { kind: 'p256', subject: '/O=Acme/CN=Acme CRL Root', ca: true });
  crlRootCa = crlRoot;
  const evilCrlRoot = await pki.issue('evil-crl-root', { kind: 'p256', subject: '/O=Acme/CN=Acme CRL Root', ca: true });
  const cdp = (...urls: string[]) => `crlDistributionPoints=${urls.map((u) => `URI:${u}`).join(',')}`;
  const crlLeaf = async (name: string, ...urls: string[]) => {
    const l = await pki.issue(name, {
      kind: 'p256',
      subject: `/O=Acme/CN=${name}`,
      issuer: crlRoot,
      extraExt: cdp(...urls),
    });
    nt.addKey(name, l.key, pki.bundle(name, [l, crlRoot]));
    return l;
  };
  const main = `${srv.url}/crl/crl-root.crl`;
  const down = `http://127.0.0.1:${closedPort}/crl-root.crl`;
  await crlLeaf('crl-ok-leaf', main);
  const revokedLeaf = await crlLeaf('crl-revoked-leaf', main);
  await crlLeaf('crl-down-leaf', down);
  await crlLeaf('crl-expired-leaf', `${srv.url}/crl/expired.crl`);
  await crlLeaf('crl-wrong-key-leaf', `${srv.url}/crl/wrong-key.crl`);
  await crlLeaf('crl-two-leaf', main, down);
  await crlLeaf('crl-cache-leaf', `${srv.url}/crl/cache.crl`);
  await crlLeaf('crl-disk-leaf', `${srv.url}/crl/disk.crl`);
  srv.setCrl('crl-root.crl', await makeCrl(pki, 'crl-root', crlRoot, [revokedLeaf]));
  srv.setCrl(
    'expired.crl',
    await makeCrl(pki, 'expired', crlRoot, [], {
      lastUpdate: new Date(Date.now() - 2 * 86400_000),
      nextUpdate: new Date(Date.now() - 86400_000),
    }),
  );
  srv.setCrl('wrong-key.crl', await makeCrl(pki, 'wrong-key', crlRoot, [], { signer: evilCrlRoot }));
  srv.setCrl('cache.crl', await makeCrl(pki, 'cache', crlRoot, []));
  srv.setCrl('disk.crl', await makeCrl(pki, 'disk', crlRoot, []));
  // root -> intermediate (revoked by the root's CRL) -> leaf, and the same with an intermediate in good standing.
  const root2 = await pki.issue('crl-root2', { kind: 'p384', subject: '/O=Acme/CN=Acme CRL Root 2', ca: true });
  const caExt = (crl: string) =>
    `basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n${cdp(crl)}`;
  const interBad = await pki.issue('inter-bad', {
    kind: 'p256',
    subject: '/O=Acme/CN=Acme Issuing Revoked',
    issuer: root2,
    ext: caExt(`${srv.url}/crl/root2.crl`),
  });
  const interGood = await pki.issue('inter-good', {
    kind: 'p256',
    subject: '/O=Acme/CN=Acme Issuing',
    issuer: root2,
    ext: caExt(`${srv.url}/crl/root2.crl`),
  });
  for (const [name, inter] of [
    ['leaf-under-bad', interBad],
    ['leaf-under-good', interGood],
  ] as const) {
    const l = await pki.issue(name, {
      kind: 'p256',
      subject: `/O=Acme/CN=${name}`,
      issuer: inter,
      extraExt: cdp(`${srv.url}/crl/${name}.crl`),
    });
    nt.addKey(name, l.key, pki.bundle(name, [l, inter, root2]));
    srv.setCrl(`${name}.crl`, await makeCrl(pki, name, inter, []));
  }
  srv.setCrl('root2.crl', await makeCrl(pki, 'root2', root2, [interBad]));
  nt.trust('ca', 'crl', crlRoot.cert);
  nt.trust('ca', 'crl2', root2.cert);

  // OCSP PKI: one root, real `openssl ocsp` daemons signing as the root itself, as a look-alike root
  // (same name, other key), as a delegated responder (id-kp-OCSPSigning) and as one without that EKU.
  const [mainPort, wrongPort, delegatedPort, noEkuPort] = [
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
  ];
  const ocspUrl = (port: number) => `http://127.0.0.1:${port}`;
  const ocspRoot = await pki.issue('ocsp-root', { kind: 'p256', subject: '/O=Acme/CN=Acme OCSP Root', ca: true });
  const evilOcspRoot = await pki.issue('evil-ocsp-root', {
    kind: 'p256',
    subject: '/O=Acme/CN=Acme OCSP Root',
    ca: true,
  });
  const responder = await pki.issue('ocsp-responder', {
    kind: 'p256',
    subject: '/O=Acme/CN=Acme OCSP Responder',
    issuer: ocspRoot,
    ext: OCSP_SIGNER_EXT,
  });
  const noEkuResponder = await pki.issue('ocsp-responder-no-eku', {
    kind: 'p256',
    subject: '/O=Acme/CN=Acme OCSP Responder 2',
    issuer: ocspRoot,
    ext: 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature',
  });
  const ocspLeaf = async (name: string, port: number, crl?: string) => {
    const l = await pki.issue(name, {
      kind: 'p256',
      subject: `/O=Acme/CN=${name}`,
      issuer: ocspRoot,
      ocsp: ocspUrl(port),
      extraExt: crl ? cdp(crl) : undefined,
    });
    nt.addKey(name, l.key, pki.bundle(name, [l, ocspRoot]));
    return l;
  };
  const ocspCrl = `${srv.url}/crl/ocsp-root.crl`;
  const inIndex = [
    await ocspLeaf('ocsp-good-leaf', mainPort),
    await ocspLeaf('ocsp-wrong-key-leaf', wrongPort),
    await ocspLeaf('ocsp-delegated-leaf', delegatedPort),
    await ocspLeaf('ocsp-delegated-no-eku-leaf', noEkuPort),
  ];
  const ocspRevokedLeaf = await ocspLeaf('ocsp-revoked-leaf', mainPort);
  await ocspLeaf('ocsp-unknown-leaf', mainPort); // not in the responder's index
  await ocspLeaf('ocsp-down-leaf', closedPort);
  await ocspLeaf('ocsp-down-crl-ok-leaf', closedPort, ocspCrl);
  const ocspCrlRevoked = await ocspLeaf('ocsp-down-crl-revoked-leaf', closedPort, ocspCrl);
  srv.setCrl('ocsp-root.crl', await makeCrl(pki, 'ocsp-root', ocspRoot, [ocspCrlRevoked]));
  const index = ocspIndex(pki, 'ocsp-root', [
    ...inIndex.map((issued) => ({ issued })),
    { issued: ocspRevokedLeaf, revoked: true },
  ]);
  for (const [signer, port] of [
    [ocspRoot, mainPort],
    [evilOcspRoot, wrongPort],
    [responder, delegatedPort],
    [noEkuResponder, noEkuPort],
  ] as const) {
    ocspDaemons.push(await startOcspResponder({ index, ca: ocspRoot, signer }, port));
  }
  nt.trust('ca', 'ocsp', ocspRoot.cert);

  const TS = ['ca:acme', 'tsa:acme-tsa'];
  const after = { verifyTimestamp: 'afterCertExpiry' };
  const stmts = [
    statement('ts-valid', TS),
    statement('ts-valid-cose', TS),
    statement('ts-fractional-gentime', TS),
    statement('ts-expired-leaf', TS),
    statement('ts-expired-leaf-no-tsa', ['ca:acme']),
    statement('ts-expired-leaf-no-tsa-permissive', ['ca:acme'], { level: 'permissive' }),
    statement('ts-untrusted-tsa', TS),
    statement('ts-tampered', TS),
    statement('ts-missing', TS),
    statement('ts-after-missing', TS, after),
    statement('ts-after-tampered', TS, after),
    statement('ts-after-expired', TS, after),
    statement('ts-after-expired-untrusted', TS, after),
    statement('ts-tsa-revoked', TS),
    statement('crl-ok', ['ca:crl']),
    statement('crl-revoked', ['ca:crl']),
    statement('crl-revoked-log', ['ca:crl'], { override: { revocation: 'log' } }),
    statement('crl-revoked-permissive', ['ca:crl'], { level: 'permissive' }),
    statement('crl-revoked-skip', ['ca:crl'], { override: { revocation: 'skip' } }),
    statement('crl-down', ['ca:crl']),
    statement('crl-down-skip', ['ca:crl'], { override: { revocation: 'skip' } }),
    statement('crl-down-permissive', ['ca:crl'], { level: 'permissive' }),
    statement('crl-expired', ['ca:crl']),
    statement('crl-wrong-key', ['ca:crl']),
    statement('crl-two-points-one-down', ['ca:crl']),
    statement('crl-inter-revoked', ['ca:crl2']),
    statement('crl-inter-ok', ['ca:crl2']),
    ...OCSP_CASES.filter((c) => c !== 'ocsp-revoked-permissive').map((c) => statement(c, ['ca:ocsp'])),
    statement('ocsp-revoked-permissive', ['ca:ocsp'], { level: 'permissive' }),
    statement('ocsp-delegated-no-eku', ['ca:ocsp']),
    statement('crl-cache', ['ca:crl']),
    statement('crl-disk', ['ca:crl']),
  ];
  nt.writeTrustPolicy(stmts);

  // The short-lived leaf signs first (with a timestamp), then expires while the rest is prepared.
  const short = await pki.issue('short', {
    kind: 'p256',
    subject: '/O=Acme/CN=acme-short',
    issuer: root,
    endSeconds: 30,
  });
  const shortEnd = Date.now() + 30_000;
  nt.addKey('short', short.key, pki.bundle('short', [short, root]));
  await sign('ts-expired-leaf', 'short', 'jws', ts(tsaUrl, tsaRoot));
  await sign('ts-expired-leaf-no-tsa', 'short', 'cose', ts(tsaUrl, tsaRoot));
  await sign('ts-expired-leaf-no-tsa-permissive', 'short', 'jws', ts(tsaUrl, tsaRoot));
  await sign('ts-after-expired', 'short', 'cose', ts(tsaUrl, tsaRoot));
  await sign('ts-after-expired-untrusted', 'short', 'jws', ts(evilUrl, evilTsaRoot));
  if (Date.now() > shortEnd - 2_000) throw new Error('signing with the short-lived leaf took too long');

  await sign('ts-valid', 'leaf', 'jws', ts(tsaUrl, tsaRoot));
  await sign('ts-valid-cose', 'leaf', 'cose', ts(tsaUrl, tsaRoot));
  await sign('ts-fractional-gentime', 'leaf', 'jws', ts(preciseUrl, tsaRoot));
  await sign('ts-untrusted-tsa', 'leaf', 'jws', ts(evilUrl, evilTsaRoot));
  await sign('ts-tampered', 'leaf', 'jws', ts(tsaUrl, tsaRoot));
  await tamperTimestamp('ts-tampered');
  await sign('ts-missing', 'leaf', 'jws');
  await sign('ts-after-missing', 'leaf', 'cose');
  await sign('ts-after-tampered', 'leaf', 'jws', ts(tsaUrl, tsaRoot));
  await tamperTimestamp('ts-after-tampered');
  await sign('ts-tsa-revoked', 'leaf', 'jws', ts(revocableUrl, tsaRoot));
  srv.setCrl('tsa-root.crl', await makeCrl(pki, 'tsa-root', tsaRoot, [tsaRevocable]));
  // notation cached the empty CRL while signing (in $HOME/.cache/notation/crl); let verify fetch the new one.
  const notationCrlCache = join(nt.home, '.cache', 'notation', 'crl');
  if (!existsSync(notationCrlCache)) throw new Error(`notation's CRL cache is not at ${notationCrlCache}`);
  rmSync(notationCrlCache, { recursive: true, force: true });

  await sign('crl-ok', 'crl-ok-leaf', 'jws');
  await sign('crl-revoked', 'crl-revoked-leaf', 'jws');
  await sign('crl-revoked-log', 'crl-revoked-leaf', 'cose');
  await sign('crl-revoked-permissive', 'crl-revoked-leaf', 'jws');
  await sign('crl-revoked-skip', 'crl-revoked-leaf', 'jws');
  await sign('crl-down', 'crl-down-leaf', 'jws');
  await sign('crl-down-skip', 'crl-down-leaf', 'cose');
  await sign('crl-down-permissive', 'crl-down-leaf', 'jws');
  await sign('crl-expired', 'crl-expired-leaf', 'jws');
  await sign('crl-wrong-key', 'crl-wrong-key-leaf', 'jws');
  await sign('crl-two-points-one-down', 'crl-two-leaf', 'jws');
  await sign('crl-inter-revoked', 'leaf-under-bad', 'jws');
  await sign('crl-inter-ok', 'leaf-under-good', 'cose');
  for (const c of [...OCSP_CASES, 'ocsp-delegated-no-eku']) {
    const leafName = c === 'ocsp-revoked-permissive' ? 'ocsp-revoked-leaf' : `${c}-leaf`;
    await sign(c, leafName, c.length % 2 ? 'jws' : 'cose');
  }
  await sign('crl-cache', 'crl-cache-leaf', 'jws');
  await sign('crl-disk', 'crl-disk-leaf', 'jws');

  await new Promise((r) => setTimeout(r, Math.max(0, shortEnd + 2_000 - Date.now())));

  Object.assign(expected, {
    'ts-valid': 'allow',
    'ts-valid-cose': 'allow',
    'ts-fractional-gentime': 'allow',
    'ts-expired-leaf': 'allow',
    'ts-expired-leaf-no-tsa': 'deny',
    'ts-expired-leaf-no-tsa-permissive': 'allow',
    'ts-untrusted-tsa': 'deny',
    'ts-tampered': 'deny',
    'ts-missing': 'deny',
    'ts-after-missing': 'allow',
    'ts-after-tampered': 'allow',
    'ts-after-expired': 'allow',
    'ts-after-expired-untrusted': 'deny',
    'ts-tsa-revoked': 'deny',
    'crl-ok': 'allow',
    'crl-revoked': 'deny',
    'crl-revoked-log': 'allow',
    'crl-revoked-permissive': 'allow',
    'crl-revoked-skip': 'allow',
    'crl-down': 'deny',
    'crl-down-skip': 'allow',
    'crl-down-permissive': 'allow',
    'crl-expired': 'deny',
    'crl-wrong-key': 'deny',
    'crl-two-points-one-down': 'deny',
    'crl-inter-revoked': 'deny',
    'crl-inter-ok': 'allow',
    'ocsp-good': 'allow',
    'ocsp-revoked': 'deny',
    'ocsp-revoked-permissive': 'allow',
    'ocsp-unknown': 'deny',
    'ocsp-down': 'deny',
    'ocsp-down-crl-ok': 'allow',
    'ocsp-down-crl-revoked': 'deny',
    'ocsp-wrong-key': 'deny',
    'ocsp-delegated': 'allow',
  });
  Object.assign(expectedChecks, {
    'ts-valid': ['authenticTimestamp', 'pass', 'enforced'],
    'ts-expired-leaf': ['authenticTimestamp', 'pass', 'enforced'],
    'ts-expired-leaf-no-tsa': ['authenticTimestamp', 'fail', 'enforced'],
    'ts-expired-leaf-no-tsa-permissive': ['authenticTimestamp', 'fail', 'logged'],
    'ts-untrusted-tsa': ['authenticTimestamp', 'fail', 'enforced'],
    'ts-tampered': ['authenticTimestamp', 'fail', 'enforced'],
    'ts-tsa-revoked': ['authenticTimestamp', 'fail', 'enforced'],
    'crl-ok': ['revocation', 'pass', 'enforced'],
    'crl-revoked': ['revocation', 'fail', 'enforced'],
    'crl-revoked-log': ['revocation', 'fail', 'logged'],
    'crl-revoked-permissive': ['revocation', 'fail', 'logged'],
    'crl-revoked-skip': ['revocation', 'skip', 'skipped'],
    'crl-down': ['revocation', 'fail', 'enforced'],
    'crl-down-skip': ['revocation', 'skip', 'skipped'],
    'crl-down-permissive': ['revocation', 'fail', 'logged'],
    'crl-inter-revoked': ['revocation', 'fail', 'enforced'],
    'crl-inter-ok': ['revocation', 'pass', 'enforced'],
    'ocsp-good': ['revocation', 'pass', 'enforced'],
    'ocsp-revoked': ['revocation', 'fail', 'enforced'],
    'ocsp-revoked-permissive': ['revocation', 'fail', 'logged'],
    'ocsp-unknown': ['revocation', 'fail', 'enforced'],
    'ocsp-down': ['revocation', 'fail', 'enforced'],
    'ocsp-down-crl-ok': ['revocation', 'pass', 'enforced'],
    'ocsp-down-crl-revoked': ['revocation', 'fail', 'enforced'],
    'ocsp-wrong-key': ['revocation', 'fail', 'enforced'],
    'ocsp-delegated': ['revocation', 'pass', 'enforced'],
  });
}, 240_000);

afterAll(async () => {
  if (table.length) console.log(`case | expected | notation | pullguard\n${table.join('\n')}`);
  for (const d of ocspDaemons) await d.stop();
  await srv?.stop();
  await registry?.stop();
  nt?.dispose();
  pki?.dispose();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('timestamps and CRL revocation: pullguard agrees with notation verify 1.3.2', () => {
  it.each([...TS_CASES, ...CRL_CASES, ...OCSP_CASES])('%s', async (repo) => {
    const n = await notationVerdict(repo);
    const p = await pullguard(repo);
    table.push(`${repo} | ${expected[repo]} | ${n.verdict} | ${p.verdict}`);
    const msg =
      `${repo}: expected ${expected[repo]}, notation ${n.verdict}, pullguard ${p.verdict} ` +
      `(${p.reason})\nnotation: ${n.output.trim().split('\n').slice(-4).join(' | ')}`;
    expect(n.verdict, msg).toBe(expected[repo]);
    expect(p.verdict, msg).toBe(expected[repo]);
    const want = expectedChecks[repo];
    if (want) {
      const got = p.checks.find((c) => c.check === want[0]);
      expect(got, `${msg}\nchecks: ${JSON.stringify(p.checks)}`).toMatchObject({
        check: want[0],
        result: want[1],
        enforcement: want[2],
      });
    }
  });

  it.each(Object.keys(DIVERGENT))('%s (deliberately stricter than notation)', async (repo) => {
    const n = await notationVerdict(repo);
    const p = await pullguard(repo);
    table.push(`${repo} | ${DIVERGENT[repo]!.join(' / ')} | ${n.verdict} | ${p.verdict}`);
    expect(n.verdict, n.output).toBe(DIVERGENT[repo]![0]);
    expect(p.verdict, p.reason).toBe(DIVERGENT[repo]![1]);
    expect(p.reason).toMatch(/lacks the id-kp-OCSPSigning extended key usage/);
  });

  it('OCSP reasons name the responder and what it said', async () => {
    expect((await pullguard('ocsp-revoked')).reason).toMatch(
      new RegExp(
        /revoked at .* according to OCSP responder http:\/\/127\.0\.0\.1:\d+( \(cached answer\))?, /.source +
          /signed by .*Acme OCSP Root/.source,
      ),
    );
    expect((await pullguard('ocsp-unknown')).reason).toMatch(/does not know the certificate/);
    expect((await pullguard('ocsp-down')).reason).toMatch(/OCSP failed: http:\/\/127\.0\.0\.1:\d+: fetch failed/);
    expect((await pullguard('ocsp-down-crl-revoked')).reason).toMatch(/listed in .*ocsp-root\.crl/);
    expect((await pullguard('ocsp-wrong-key')).reason).toMatch(
      /OCSP response: signature does not verify with the key of .*Acme OCSP Root/,
    );
  });

  it('reasons name what was found', async () => {
    expect((await pullguard('crl-revoked')).reason).toMatch(
      /revoked \(listed in http:\/\/127\.0\.0\.1:\d+\/crl\/crl-root\.crl\)/,
    );
    expect((await pullguard('crl-down')).reason).toMatch(
      /revocation status of .* is unknown: .*(fetch failed|ECONNREFUSED)/,
    );
    expect((await pullguard('crl-expired')).reason).toMatch(/CRL expired at/);
    expect((await pullguard('crl-wrong-key')).reason).toMatch(/CRL signature does not verify/);
    expect((await pullguard('ts-untrusted-tsa')).reason).toMatch(
      /does not chain to a certificate in the tsa trust store/,
    );
    expect((await pullguard('ts-tampered')).reason).toMatch(/timestamp signature does not verify/);
    expect((await pullguard('ts-tsa-revoked')).reason).toMatch(
      /timestamping certificate chain: certificate .*Acme TSA 2 is revoked/,
    );
    expect((await pullguard('ts-expired-leaf-no-tsa')).reason).toMatch(/no tsa trust store .* expired at/);
  });
});

describe('CRL cache', () => {
  it('a second verification in the same process does not download the CRL again', async () => {
    clearCrlMemoryCache();
    const before = srv.count('/crl/cache.crl');
    expect((await pullguard('crl-cache')).verdict).toBe('allow');
    expect(srv.count('/crl/cache.crl')).toBe(before + 1);
    expect((await pullguard('crl-cache')).verdict).toBe('allow');
    expect(srv.count('/crl/cache.crl')).toBe(before + 1);
  });

  it('concurrent verifications share one download', async () => {
    clearCrlMemoryCache();
    const before = srv.count('/crl/cache.crl');
    const rs = await Promise.all([pullguard('crl-cache'), pullguard('crl-cache'), pullguard('crl-cache')]);
    expect(rs.map((r) => r.verdict)).toEqual(['allow', 'allow', 'allow']);
    expect(srv.count('/crl/cache.crl')).toBe(before + 1);
  });

  it(
    'revocation.cacheDir is used across processes while fresh, ' + 'and a stale cached CRL is downloaded again',
    async () => {
      // The real CLI (`pullguard verify`), bundled from src the way scripts/build.mjs does, in separate processes.
      const bundle = join(work, 'pullguard.cjs');
      await esbuild.build({
        entryPoints: [join(ROOT, 'src/main.ts')],
        outfile: bundle,
        bundle: true,
        platform: 'node',
        target: 'node24',
        format: 'cjs',
        define: { __PULLGUARD_VERSION__: '"test"', __PULLGUARD_COMMIT__: '"test"' },
        logLevel: 'error',
      });
      const cacheDir = join(work, 'crl-cache');
      const policy = join(work, 'policy.yaml');
      writeFileSync(
        policy,
        [
          'version: 1',
          'rules:',
          '  - name: disk',
          `    match: ${registry.host}/crl-disk`,
          '    action: verify',
          '    authorities:',
          '      - name: notation',
          `        notation: {config: ${JSON.stringify(nt.configDir)}, revocation: {cacheDir: ` +
            `${JSON.stringify(cacheDir)}, timeout: 2s}}`,
        ].join('\n'),
      );
      const img = images.get('crl-disk')!;
      const verify = () =>
        runAsync(
          process.execPath,
          [bundle, 'verify', '--explain', '--policy', policy, `${registry.host}/crl-disk@${img.digest}`],
          { timeoutMs: 30_000 },
        );
      const count = () => srv.count('/crl/disk.crl');
      const c0 = count();

      const first = await verify();
      expect(first.status, first.stdout.toString() + first.stderr).toBe(0);
      expect(first.stdout.toString()).toMatch(
        /pass revocation \[enforced\]: not revoked \(1 certificate\(s\) checked by CRL\)/,
      );
      expect(count()).toBe(c0 + 1);
      const files = readdirSync(cacheDir).filter((f) => f.endsWith('.crl'));
      expect(files).toHaveLength(1);

      const second = await verify();
      expect(second.status, second.stdout.toString() + second.stderr).toBe(0);
      expect(count()).toBe(c0 + 1); // served from the cache directory

      // A cached CRL past its nextUpdate is not trusted: the next process downloads a fresh one.
      const stale = await makeCrl(pki, 'disk-stale', crlRootCa, [], {
        lastUpdate: new Date(Date.now() - 2 * 86400_000),
        nextUpdate: new Date(Date.now() - 86400_000),
      });
      writeFileSync(join(cacheDir, files[0]!), stale);
      const third = await verify();
      expect(third.status, third.stdout.toString() + third.stderr).toBe(0);
      expect(count()).toBe(c0 + 2);
      expect(readFileSync(join(cacheDir, files[0]!)).equals(stale)).toBe(false);
      expect(existsSync(join(cacheDir, files[0]!))).toBe(true);
    },
  );
});

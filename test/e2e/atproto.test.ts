import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseDuration } from '../../src/common/deadline.js';
import { parsePolicyText } from '../../src/policy/load.js';
import type { Policy } from '../../src/policy/model.js';
import type { Decision } from '../../src/verdict/decision.js';
import {
  cidOf,
  createPublisher,
  decodeBlock,
  didDocument,
  encodeBlock,
  host,
  joinCar,
  publishManifest,
  pushAtprotoSignature,
  randomPlcDid,
  rewriteManifest,
  recordProof,
  rotateKey,
  splitCar,
  startTestPds,
  COLLECTION,
  type Publisher,
  type TestPds,
} from '../helpers/atproto.js';
import { startContainerd, type Containerd } from '../helpers/containerd.js';
import { CriError, criClient, pullError, type CriClient } from '../helpers/cri.js';
import { decidePinned } from '../helpers/decide.js';
import { RegistryWriter } from '../helpers/notation.js';
import { pushTestImage, type PushedImage } from '../helpers/oci.js';
import { startRegistry, type Registry } from '../helpers/registry.js';
import { pullguardBinary } from '../helpers/tools.js';

/**
 * ATProto (ATCR-style) signatures end to end: repositories and commits made and signed by the AT Protocol
 * reference implementation (@atproto/repo, @atproto/crypto), served by a test PDS over HTTPS with a
 * private CA (which also answers did:web and PLC-directory lookups), signature artifacts in a real
 * docker-registry, and the decision made by pullguard's own spine in process; the last block pulls
 * through a real containerd with dist/pullguard as its verifier.
 */
let dir: string;
let registry: Registry;
let writer: RegistryWriter;
let pds: TestPds;
let alice: Publisher; // did:plc, K-256, handle alice.test, resolved through the PLC directory
let webPub: Publisher; // did:web on the PDS host, P-256
let pinnedPub: Publisher; // did:plc whose document is pinned in the policy
let mallory: Publisher; // a valid repository, but not a trusted DID

const pinnedDocPath = () => join(dir, 'pinned-did.json');

function policyText(extra = ''): string {
  return `version: 1
default: deny
timeout: 8s
rules:
  - name: atcr
    match: ${registry.host}/**
    action: verify
    authorities:
      - name: publishers
        atproto:
          trusted:
            - {did: ${alice.did}, handle: alice.test}
            - {did: ${webPub.did}}
            - {did: ${pinnedPub.did}, didDocument: ${pinnedDocPath()}}
          plcDirectory: ${pds.url}
          didWeb: true
          ca: [${pds.caFile}]
${extra}`;
}

let policy: Policy;

async function image(repo: string): Promise<PushedImage> {
  return pushTestImage(registry.host, repo, 'v1', `atproto-${repo}-${Math.random()}`);
}

const pinned = (img: PushedImage) => `${img.ref.slice(0, img.ref.lastIndexOf(':'))}@${img.digest}`;
const subjectOf = (img: PushedImage) => ({ mediaType: img.mediaType, digest: img.digest, size: img.size });
const repoOf = (img: PushedImage) => img.ref.slice(registry.host.length + 1, img.ref.lastIndexOf(':'));

/** Publishes a record for `img` in `pub`'s repository and attaches the pointer artifact. */
async function sign(pub: Publisher, img: PushedImage, record: { repository?: string; digest?: string } = {}) {
  const repoPath = repoOf(img);
  const rec = await publishManifest(pub, {
    repository: record.repository ?? repoPath.slice(repoPath.indexOf('/') + 1),
    digest: record.digest ?? img.digest,
    mediaType: img.mediaType,
  });
  await pushAtprotoSignature(writer, repoPath, subjectOf(img), {
    did: pub.did,
    uri: `at://${pub.did}/${COLLECTION}/${rec.rkey}`,
    cid: rec.cid,
    commit: rec.commit,
    pds: pds.url,
  });
  return rec;
}

async function decideFor(img: PushedImage, p: Policy = policy): Promise<Decision> {
  return decidePinned(p, pinned(img), { mediaType: img.mediaType, size: img.size });
}

const reasonOf = (d: Decision) => d.reason;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pg-atproto-'));
  registry = await startRegistry();
  writer = new RegistryWriter(registry.url);
  pds = await startTestPds(join(dir, 'pki'));
  alice = await createPublisher(randomPlcDid(), { handle: 'alice.test' });
  webPub = await createPublisher(pds.webDid, { curve: 'p256' });
  pinnedPub = await createPublisher(randomPlcDid());
  mallory = await createPublisher(randomPlcDid());
  for (const p of [alice, webPub, pinnedPub, mallory]) host(pds, p);
  // The pinned DID is NOT in the PLC directory: resolving it over the network would fail.
  writeFileSync(pinnedDocPath(), JSON.stringify(didDocument(pinnedPub, pds.url)));
  pds.documents.delete(pinnedPub.did);
  policy = parsePolicyText(policyText(), 'atproto test policy');
}, 120_000);

afterAll(async () => {
  await pds?.stop();
  await registry?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('atproto authority: allowed', () => {
  it('a record signed by a trusted did:plc (K-256), resolved through the PLC directory, handle checked', async () => {
    const img = await image('alice.test/app');
    await sign(alice, img);
    const d = await decideFor(img);
    expect(d.verdict, reasonOf(d)).toBe('allow');
    const sig = d.results[0]!.signatures[0]!;
    expect(sig.checks.map((c) => `${c.check}:${c.result}`)).toEqual([
      'artifact:pass',
      'trust:pass',
      'identity:pass',
      'pds:pass',
      'commit:pass',
      'signature:pass',
      'inclusion:pass',
      'record:pass',
    ]);
    expect(pds.requests.some((r) => r.startsWith(`GET /${alice.did}`))).toBe(true);
  });

  it('a did:web publisher with a P-256 key', async () => {
    const img = await image('web/app');
    await sign(webPub, img, { repository: 'web/app' });
    const d = await decideFor(img);
    expect(d.verdict, reasonOf(d)).toBe('allow');
    expect(pds.requests).toContain('GET /.well-known/did.json');
  });

  it('a pinned DID document: no PLC lookup at all', async () => {
    const before = pds.requests.length;
    const img = await image('pinned/app');
    await sign(pinnedPub, img, { repository: 'pinned/app' });
    const d = await decideFor(img);
    expect(d.verdict, reasonOf(d)).toBe('allow');
    expect(pds.requests.slice(before).filter((r) => r.includes(pinnedPub.did) && !r.includes('getRecord'))).toEqual([]);
  });
});

describe('atproto authority: denied', () => {
  it('a valid record from an untrusted DID', async () => {
    const img = await image('mallory/app');
    await sign(mallory, img);
    const d = await decideFor(img);
    expect(d.verdict).toBe('deny');
    expect(d.reason).toMatch(/which is not a trusted DID/);
    expect(d.code).toBe('SIGNATURE_UNTRUSTED');
  });

  it('a record for another digest', async () => {
    const img = await image('alice.test/other-digest');
    const other = await image('alice.test/other-digest-b');
    await sign(alice, img, { digest: other.digest });
    const d = await decideFor(img);
    expect(d.verdict).toBe('deny');
    expect(d.reason).toContain(`record is for ${other.digest}, not for the pulled ${img.digest}`);
  });

  it('a record for another repository', async () => {
    const img = await image('alice.test/app2');
    await sign(alice, img, { repository: 'something-else' });
    const d = await decideFor(img);
    expect(d.verdict).toBe('deny');
    expect(d.reason).toMatch(/record is for repository "something-else"/);
  });

  it('a record whose owner segment is not the signing DID or its trusted handle', async () => {
    const img = await image('bob.test/app');
    await sign(alice, img, { repository: 'app' });
    const d = await decideFor(img);
    expect(d.verdict).toBe('deny');
    expect(d.reason).toMatch(/record is for repository "app", not for/);
  });

  it('a tampered record block (CID no longer matches)', async () => {
    const img = await image('alice.test/tamper-record');
    const rec = await sign(alice, img);
    const car = splitCar(await recordProof(alice, rec.rkey));
    const block = car.blocks.find((b) => b.cid === rec.cid)!;
    const value = decodeBlock(block.bytes);
    block.bytes = encodeBlock({ ...value, digest: `sha256:${'0'.repeat(64)}` });
    pds.proofOverride.set(`${alice.did}/${COLLECTION}/${rec.rkey}`, await joinCar(car));
    const d = await decideFor(img);
    expect(d.verdict).toBe('deny');
    expect(d.reason).toMatch(/does not prove .*cid does not match bytes/);
  });

  it('a record rewritten after signing: the artifact pins the record CID', async () => {
    const img = await image('alice.test/rewritten');
    const rec = await sign(alice, img);
    await rewriteManifest(alice, rec.rkey, {
      repository: 'rewritten',
      digest: img.digest,
      mediaType: img.mediaType,
      note: 'changed',
    });
    const d = await decideFor(img);
    expect(d.verdict).toBe('deny');
    expect(d.reason).toMatch(/not the signed .*: it was rewritten/);
  });

  it('a tampered commit signature', async () => {
    const img = await image('alice.test/tamper-sig');
    const rec = await sign(alice, img);
    const car = splitCar(await recordProof(alice, rec.rkey));
    const root = car.blocks.find((b) => b.cid === car.roots[0])!;
    const commit = decodeBlock(root.bytes);
    const sig = Uint8Array.from((commit.sig as { buf?: Uint8Array }).buf ?? (commit.sig as Uint8Array));
    sig[10] = sig[10]! ^ 0xff;
    root.bytes = encodeBlock({ ...commit, sig: new (await import('@atcute/cbor')).BytesWrapper(sig) });
    root.cid = await cidOf(root.bytes);
    car.roots = [root.cid];
    pds.proofOverride.set(`${alice.did}/${COLLECTION}/${rec.rkey}`, await joinCar(car));
    const d = await decideFor(img);
    expect(d.verdict).toBe('deny');
    expect(d.reason).toMatch(/is not signed by .*#atproto key/);
  });

  it('a broken MST proof (a node on the path left out)', async () => {
    const img = await image('alice.test/broken-mst');
    const rec = await sign(alice, img);
    const car = splitCar(await recordProof(alice, rec.rkey));
    const commit = decodeBlock(car.blocks.find((b) => b.cid === car.roots[0])!.bytes);
    const mstRoot = (commit.data as { $link: string }).$link;
    car.blocks = car.blocks.filter((b) => b.cid !== mstRoot);
    pds.proofOverride.set(`${alice.did}/${COLLECTION}/${rec.rkey}`, await joinCar(car));
    const d = await decideFor(img);
    expect(d.verdict).toBe('deny');
    expect(d.reason).toMatch(/does not prove io\.atcr\.manifest\//);
  });

  it('a wrong key in the DID document', async () => {
    const eve = await createPublisher(randomPlcDid());
    const img = await image('alice.test/wrong-key');
    const rec = await sign(alice, img);
    pds.documents.set(alice.did, {
      ...didDocument(alice, pds.url, { multibase: eve.keypair.did().slice(8) }),
      alsoKnownAs: ['at://alice.test'],
    });
    try {
      const d = await decideFor(img);
      expect(d.verdict).toBe('deny');
      expect(d.reason).toMatch(/not signed by .*: altered, signed by another key, or by a key rotated out/);
    } finally {
      pds.documents.set(alice.did, didDocument(alice, pds.url));
      void rec;
    }
  });

  it('a key rotated after signing: the current commit must be signed by the current key', async () => {
    const rot = await createPublisher(randomPlcDid(), { handle: 'alice.test' });
    host(pds, rot);
    const p = parsePolicyText(
      policyText().replace(`{did: ${alice.did}, handle: alice.test}`, `{did: ${rot.did}, handle: alice.test}`),
      'rotation policy',
    );
    const img = await image('alice.test/rotated');
    await sign(rot, img);
    expect((await decideFor(img, p)).verdict).toBe('allow');
    // The DID document now names a new key; the repository's commit is still signed by the old one.
    await rotateKey(rot);
    pds.documents.set(rot.did, didDocument(rot, pds.url));
    const d = await decideFor(img, p);
    expect(d.verdict).toBe('deny');
    expect(d.reason).toMatch(/rotated out of the DID document/);
    // The PDS re-signs on its next commit (any write): the record verifies again under the new key.
    await publishManifest(rot, {
      repository: 'unrelated',
      digest: `sha256:${'1'.repeat(64)}`,
      mediaType: img.mediaType,
    });
    expect((await decideFor(img, p)).verdict).toBe('allow');
  });

  it('the handle the policy trusts is not in the DID document', async () => {
    const img = await image('alice.test/handle');
    await sign(alice, img);
    pds.documents.set(alice.did, { ...didDocument(alice, pds.url), alsoKnownAs: ['at://someone-else.test'] });
    try {
      const d = await decideFor(img);
      expect(d.verdict).toBe('deny');
      expect(d.reason).toMatch(/does not claim the trusted handle alice\.test/);
    } finally {
      pds.documents.set(alice.did, didDocument(alice, pds.url));
    }
  });

  it('a PDS that is down', async () => {
    const img = await image('alice.test/pds-down');
    await sign(alice, img);
    pds.behaviour = 'down';
    try {
      const d = await decideFor(img);
      expect(d.verdict).toBe('deny');
      expect(d.reason).toMatch(/answered 503/);
    } finally {
      pds.behaviour = 'ok';
    }
  });

  it('a PDS that stalls: denied by the per-request budget, well inside the 8 s deadline', async () => {
    const img = await image('alice.test/pds-stall');
    await sign(alice, img);
    pds.behaviour = 'stall';
    try {
      const d = await decideFor(img);
      expect(d.verdict).toBe('deny');
      // Deadline-based: the reason names the per-request budget that ended the wait, and it is a part of
      // the policy's 8 s (a stall that ran into the deadline reads "timed out after 8s" instead).
      const waited = /did not answer within (\S+) /.exec(d.reason);
      expect(waited, d.reason).not.toBeNull();
      expect(parseDuration(waited![1]!)).toBeLessThan(8000);
    } finally {
      pds.behaviour = 'ok';
    }
  });

  it('hostile CARs: huge, deep, cyclic; each a clear deny', async () => {
    const img = await image('alice.test/hostile-car');
    const rec = await sign(alice, img);
    const key = `${alice.did}/${COLLECTION}/${rec.rkey}`;
    // Huge: past the 1 MiB proof cap.
    pds.proofOverride.set(key, new Uint8Array(3 * 1024 * 1024).fill(7));
    let d = await decideFor(img);
    expect(d.verdict).toBe('deny');
    expect(d.reason).toMatch(/larger than|too large|exceeds/i);
    // Deep: a root block nested 100,000 levels, with a correct CID.
    const deep = Buffer.concat([Buffer.alloc(100_000, 0x81), Buffer.from([0x00])]);
    const deepCid = await cidOf(deep);
    pds.proofOverride.set(key, await joinCar({ roots: [deepCid], blocks: [{ cid: deepCid, bytes: deep }] }));
    d = await decideFor(img);
    expect(d.verdict).toBe('deny');
    expect(d.code).toBe('SIGNATURE_INVALID');
    // Cyclic: the MST root points at itself; the block cannot hash to the CID it claims.
    const car = splitCar(await recordProof(alice, rec.rkey));
    const commit = decodeBlock(car.blocks.find((b) => b.cid === car.roots[0])!.bytes);
    const mstRoot = (commit.data as { $link: string }).$link;
    const node = car.blocks.find((b) => b.cid === mstRoot)!;
    const value = decodeBlock(node.bytes);
    node.bytes = encodeBlock({ ...value, l: commit.data });
    pds.proofOverride.set(key, await joinCar(car));
    d = await decideFor(img);
    expect(d.verdict).toBe('deny');
    expect(d.reason).toMatch(/cid does not match bytes/);
    pds.proofOverride.delete(key);
  });

  it('an unsigned image and a junk pointer artifact', async () => {
    const unsigned = await image('alice.test/unsigned');
    let d = await decideFor(unsigned);
    expect(d.verdict).toBe('deny');
    expect(d.code).toBe('NO_SIGNATURE');
    const junk = await image('alice.test/junk');
    await pushAtprotoSignature(writer, repoOf(junk), subjectOf(junk), Buffer.from('{"did": 1'));
    d = await decideFor(junk);
    expect(d.verdict).toBe('deny');
    expect(d.reason).toMatch(/atproto signature artifact: not JSON/);
  });
});

describe('policy: atproto authorities are validated at load', () => {
  it.each([
    ['not a DID', 'trusted: [{did: alice}]', /not an AT Protocol DID/],
    ['did:web without didWeb', 'trusted: [{did: "did:web:example.com"}]', /set didWeb: true/],
    ['empty trust list', 'trusted: []', /at least one DID/],
    [
      'a pinned document of another DID',
      `trusted: [{did: "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", didDocument: PINNED}]`,
      /is the document of/,
    ],
    ['an unknown key', 'trusted: [{did: "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"}]\n          keys: []', /keys/],
  ])('%s', (_name, body, error) => {
    const text =
      `version: 1\nrules:\n  - name: r\n    match: x.example/**\n    action: verify\n` +
      `    authorities:\n      - atproto:\n          ${body.replace('PINNED', pinnedDocPath())}\n`;
    expect(() => parsePolicyText(text, 'p.yaml')).toThrow(error);
  });
});

describe('containerd + pullguard with an atproto authority', () => {
  let ctd: Containerd;
  let cri: CriClient;
  let signed: PushedImage;
  let unsigned: PushedImage;

  beforeAll(async () => {
    signed = await image('alice.test/ctd-signed');
    unsigned = await image('alice.test/ctd-unsigned');
    await sign(alice, signed);
    const policyFile = join(dir, 'policy.yaml');
    writeFileSync(policyFile, policyText());
    ctd = await startContainerd({ mode: 'dropin', policy: policyFile });
    cri = criClient(ctd.socket);
  }, 300_000);

  afterAll(async () => {
    cri?.close();
    await ctd?.stop();
  });

  it('pulls an image whose record is signed by a trusted DID, through CRI PullImage', async () => {
    expect(await pullError(cri, signed.ref)).toBeUndefined();
    const rec = await ctd.waitForRecord((d) => d.digest === signed.digest);
    expect(rec).toMatchObject({ verdict: 'allow', rule: 'atcr', exitCode: 0 });
  });

  it('verify --explain (the shipped executable) shows every check of the signature', async () => {
    const { execFile } = await import('node:child_process');
    const exe = pullguardBinary();
    const out = await new Promise<string>((resolve, reject) => {
      execFile(
        exe,
        ['verify', '--explain', '--policy', join(dir, 'policy.yaml'), signed.ref],
        { timeout: 20_000 },
        (err, stdout, stderr) => {
          if (err) reject(new Error(`${err.message}\n${stdout}\n${stderr}`));
          else resolve(stdout);
        },
      );
    });
    if (process.env.PULLGUARD_EXPLAIN_OUT) writeFileSync(process.env.PULLGUARD_EXPLAIN_OUT, out);
    expect(out).toMatch(/^ALLOW /);
    for (const check of ['artifact', 'trust', 'identity', 'pds', 'commit', 'signature', 'inclusion', 'record']) {
      expect(out).toMatch(new RegExp(`pass ${check} \\[enforced\\]`));
    }
  });

  it("denies an unsigned image with pullguard's reason in the pull error", async () => {
    const err = await pullError(cri, unsigned.ref);
    expect(err).toBeInstanceOf(CriError);
    expect(err!.details).toContain('no atproto signature found');
  });
});

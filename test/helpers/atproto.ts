/**
 * Real AT Protocol repositories for tests, made by the reference implementation (@atproto/repo and
 * @atproto/crypto, dev dependencies only), and a test PDS: one HTTPS server with a private CA that
 * answers com.atproto.sync.getRecord, did:web's /.well-known/did.json and PLC-directory lookups.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { fromUint8Array as readCar, writeCarStream } from '@atcute/car';
import * as CBOR from '@atcute/cbor';
import * as CID from '@atcute/cid';
import { P256Keypair, Secp256k1Keypair, type Keypair } from '@atproto/crypto';
import { getRecords, MemoryBlockstore, Repo, WriteOpAction } from '@atproto/repo';
import { type CaChain, makeCaChain, tlsServer } from './pki.js';
import type { RegistryWriter } from './notation.js';

export const COLLECTION = 'io.atcr.manifest';
export const ATPROTO_SIGNATURE = 'application/vnd.atproto.signature.v1+json';

export interface Publisher {
  readonly did: string;
  keypair: Keypair & { did(): string };
  readonly storage: MemoryBlockstore;
  repo: Repo;
  handle?: string;
}

/** A did:plc identifier: 24 base32 characters (here random, not derived from a genesis operation). */
export function randomPlcDid(): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567';
  return `did:plc:${[...randomBytes(24)].map((b) => alphabet[b % 32]).join('')}`;
}

async function newKeypair(curve: 'k256' | 'p256') {
  return curve === 'p256' ? P256Keypair.create({ exportable: true }) : Secp256k1Keypair.create({ exportable: true });
}

export async function createPublisher(
  did: string,
  opts: { curve?: 'k256' | 'p256'; handle?: string } = {},
): Promise<Publisher> {
  const keypair = await newKeypair(opts.curve ?? 'k256');
  const storage = new MemoryBlockstore();
  const repo = await Repo.create(storage, did, keypair);
  return { did, keypair, storage, repo, handle: opts.handle };
}

/** Writes an io.atcr.manifest record (as ATCR's lexicon has it) and commits it, signed by the repo key. */
export async function publishManifest(
  pub: Publisher,
  record: { repository: string; digest: string; mediaType: string },
  rkey?: string,
) {
  const key = rkey ?? `3l${randomBytes(6).toString('hex')}`;
  const value = { $type: COLLECTION, ...record, schemaVersion: 2, createdAt: new Date().toISOString() };
  pub.repo = await pub.repo.applyWrites(
    [{ action: WriteOpAction.Create, collection: COLLECTION, rkey: key, record: value }],
    pub.keypair,
  );
  const cid = (await pub.repo.data.get(`${COLLECTION}/${key}`))!.toString();
  return { rkey: key, cid, commit: pub.repo.cid.toString() };
}

/** Rewrites an existing record in place (same rkey, new content, so a new CID). */
export async function rewriteManifest(pub: Publisher, rkey: string, record: Record<string, unknown>) {
  const value = { $type: COLLECTION, schemaVersion: 2, createdAt: new Date().toISOString(), ...record };
  pub.repo = await pub.repo.applyWrites(
    [{ action: WriteOpAction.Update, collection: COLLECTION, rkey, record: value }],
    pub.keypair,
  );
}

/**
 * Key rotation as a PLC update does it: a new key in the DID document; commits already made stay signed by
 * the old one.
 */
export async function rotateKey(pub: Publisher, curve: 'k256' | 'p256' = 'k256'): Promise<void> {
  pub.keypair = await newKeypair(curve);
}

/** What the PDS's com.atproto.sync.getRecord returns: the current commit, the MST path and the record. */
export async function recordProof(pub: Publisher, rkey: string, collection = COLLECTION): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  for await (const c of getRecords(pub.storage, pub.repo.cid, [{ collection, rkey }])) chunks.push(c);
  return Buffer.concat(chunks);
}

export function didDocument(pub: Publisher, pdsUrl: string, overrides: { multibase?: string } = {}) {
  const multibase = overrides.multibase ?? pub.keypair.did().slice('did:key:'.length);
  return {
    '@context': ['https://www.w3.org/ns/did/v1', 'https://w3id.org/security/multikey/v1'],
    id: pub.did,
    alsoKnownAs: pub.handle ? [`at://${pub.handle}`] : [],
    verificationMethod: [
      { id: `${pub.did}#atproto`, type: 'Multikey', controller: pub.did, publicKeyMultibase: multibase },
    ],
    service: [{ id: '#atproto_pds', type: 'AtprotoPersonalDataServer', serviceEndpoint: pdsUrl }],
  };
}

// ---- CAR surgery, for the tamper cases ----------------------------------------------------------------

export interface CarBlocks {
  roots: string[];
  blocks: { cid: string; bytes: Uint8Array }[];
}

export function splitCar(bytes: Uint8Array): CarBlocks {
  const reader = readCar(bytes);
  return {
    roots: reader.header.data.roots.map((r) => r.$link),
    blocks: [...reader].map((e) => ({ cid: CID.toString(e.cid), bytes: e.bytes })),
  };
}

export async function joinCar(car: CarBlocks): Promise<Uint8Array> {
  const blocks = car.blocks.map((b) => ({ cid: CID.fromString(b.cid).bytes, data: b.bytes }));
  const roots = car.roots.map((r) => CID.toCidLink(CID.fromString(r)));
  const chunks: Uint8Array[] = [];
  for await (const c of writeCarStream(roots, blocks)) chunks.push(c);
  return Buffer.concat(chunks);
}

export const cidOf = async (bytes: Uint8Array) => CID.toString(await CID.create(0x71, bytes));
export const decodeBlock = (bytes: Uint8Array) => CBOR.decode(bytes) as Record<string, unknown>;
export const encodeBlock = (value: unknown) => CBOR.encode(value);

// ---- the test PDS ------------------------------------------------------------------------------------

export type Behaviour = 'ok' | 'down' | 'stall';

export interface TestPds {
  /** https://localhost:<port> */
  readonly url: string;
  readonly port: number;
  /** The private root CA the server's certificate chains to. */
  readonly caFile: string;
  /** did:web:localhost%3A<port> */
  readonly webDid: string;
  behaviour: Behaviour;
  /** Record proofs by `${did}/${collection}/${rkey}`; unset ones come from the publisher. */
  readonly proofOverride: Map<string, Uint8Array>;
  /** DID documents served (PLC path `/<did>` and did:web). */
  readonly documents: Map<string, unknown>;
  readonly publishers: Map<string, Publisher>;
  readonly requests: string[];
  stop(): Promise<void>;
}

/** The PDS's TLS certificate (localhost, 127.0.0.1) from the chain's intermediate; cert is leaf + intermediate. */
async function serverCertificate(chain: CaChain): Promise<{ cert: string; key: string }> {
  const server = await tlsServer(chain.pki, 'server', {
    subject: '/O=pullguard test pds/CN=localhost',
    issuer: chain.intermediate,
  });
  return { cert: chain.pki.bundle('server', [server, chain.intermediate]), key: server.key };
}

export async function startTestPds(dir: string): Promise<TestPds> {
  const pki = await makeCaChain(dir, 'pullguard test pds');
  const { cert, key } = await serverCertificate(pki);
  const sockets = new Set<Socket>();
  const state = {
    behaviour: 'ok' as Behaviour,
    proofOverride: new Map<string, Uint8Array>(),
    documents: new Map<string, unknown>(),
    publishers: new Map<string, Publisher>(),
    requests: [] as string[],
  };
  const send = (res: ServerResponse, status: number, type: string, body: Uint8Array | string) => {
    res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };
  const server: Server = createServer({ cert: readFileSync(cert), key: readFileSync(key) }, (req, res) => {
    const url = new URL(req.url ?? '/', 'https://localhost');
    state.requests.push(`${req.method} ${url.pathname}${url.search}`);
    if (state.behaviour === 'stall') return; // accept, never answer
    if (state.behaviour === 'down') return send(res, 503, 'application/json', '{"error":"ServiceUnavailable"}');
    void (async () => {
      if (url.pathname === '/.well-known/did.json') {
        const doc = state.documents.get(webDid);
        return doc ? send(res, 200, 'application/json', JSON.stringify(doc)) : send(res, 404, 'text/plain', 'no');
      }
      if (url.pathname === '/xrpc/com.atproto.sync.getRecord') {
        const did = url.searchParams.get('did') ?? '';
        const collection = url.searchParams.get('collection') ?? '';
        const rkey = url.searchParams.get('rkey') ?? '';
        const override = state.proofOverride.get(`${did}/${collection}/${rkey}`);
        if (override) return send(res, 200, 'application/vnd.ipld.car', override);
        const pub = state.publishers.get(did);
        if (!pub) return send(res, 400, 'application/json', '{"error":"RepoNotFound"}');
        return send(res, 200, 'application/vnd.ipld.car', await recordProof(pub, rkey, collection));
      }
      const plc = decodeURIComponent(url.pathname.slice(1));
      const doc = state.documents.get(plc);
      if (doc) return send(res, 200, 'application/did+ld+json', JSON.stringify(doc));
      return send(res, 404, 'application/json', '{"message":"DID not registered"}');
    })().catch((e: unknown) => send(res, 500, 'text/plain', String(e)));
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const webDid = `did:web:localhost%3A${port}`;
  const pds = Object.assign(state, {
    url: `https://localhost:${port}`,
    port,
    caFile: pki.root.cert,
    webDid,
    async stop() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  });
  return pds;
}

/** Registers a publisher with the PDS: its repository is served and its DID document published. */
export function host(pds: TestPds, pub: Publisher): void {
  pds.publishers.set(pub.did, pub);
  pds.documents.set(pub.did, didDocument(pub, pds.url));
}

/**
 * Pushes pullguard's atproto signature artifact for `subject` (README, "ATProto authorities"): an OCI
 * manifest with artifactType application/vnd.atproto.signature.v1+json, the empty config, one layer
 * holding the record pointer, listed in the referrers tag index (docker-registry has no referrers API).
 */
export async function pushAtprotoSignature(
  writer: RegistryWriter,
  repo: string,
  subject: { mediaType: string; digest: string; size: number },
  pointer: Record<string, unknown> | Uint8Array,
): Promise<string> {
  const config = await writer.putBlob(repo, Buffer.from('{}'));
  const blob = pointer instanceof Uint8Array ? pointer : Buffer.from(JSON.stringify(pointer));
  const layer = await writer.putBlob(repo, blob);
  const manifest = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    artifactType: ATPROTO_SIGNATURE,
    config: { mediaType: 'application/vnd.oci.empty.v1+json', ...config },
    layers: [{ mediaType: ATPROTO_SIGNATURE, ...layer }],
    subject,
    annotations: { 'org.opencontainers.image.created': new Date().toISOString() },
  };
  const bytes = Buffer.from(JSON.stringify(manifest));
  const { createHash } = await import('node:crypto');
  const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
  const m = await writer.putManifest(repo, digest, manifest);
  await writer.addReferrer(repo, subject.digest, {
    mediaType: manifest.mediaType,
    ...m,
    artifactType: ATPROTO_SIGNATURE,
  });
  return m.digest;
}

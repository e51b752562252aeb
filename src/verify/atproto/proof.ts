/**
 * A record proof (the CAR that com.atproto.sync.getRecord returns), checked one step at a time as the
 * AT Protocol repository spec describes (atproto.com/specs/repository):
 *
 *   commit   the CAR's root block hashes to its CID and is a version 3 commit of the expected DID;
 *   signature the commit's `sig` is a low-S ECDSA signature (K-256 or P-256), raw r||s, over SHA-256 of
 *            the DAG-CBOR encoding of the commit without `sig`, by the DID's current #atproto key;
 *   inclusion the MST, walked from the commit's `data` by CID only, holds `collection/rkey`, and every
 *            block on the way hashes to its CID (@atcute/repo's verifyRecord, which bounds depth and
 *            node size, so a deep or cyclic CAR cannot run away).
 *
 * Each step returns its result or throws a ProofError naming the step, so a reason says which check failed.
 */
import { fromUint8Array as readCar, type SyncCarReader } from '@atcute/car';
import * as CBOR from '@atcute/cbor';
import * as CID from '@atcute/cid';
import { verifySig, type FoundPublicKey } from '@atcute/crypto';
import { verifyRecord } from '@atcute/repo';
import type { ErrorCode } from '../../common/errors.js';
import { isRecord, MalformedInputError } from '../../common/malformed.js';

export type ProofStep = 'commit' | 'signature' | 'inclusion';

export class ProofError extends MalformedInputError {
  constructor(
    readonly step: ProofStep,
    message: string,
    code: ErrorCode = 'SIGNATURE_INVALID',
  ) {
    super(message, code);
    this.name = 'ProofError';
  }
}

export interface Commit {
  readonly did: string;
  readonly version: number;
  readonly rev: string;
  readonly data: CID.CidLink;
  readonly sig: Uint8Array;
  readonly unsignedBytes: Uint8Array;
  readonly cid: string;
}

const firstLine = (e: unknown) => (e instanceof Error ? e.message : String(e)).split('\n')[0]!.slice(0, 200);

function car(bytes: Uint8Array): SyncCarReader {
  try {
    return readCar(bytes);
  } catch (e) {
    throw new ProofError('commit', `record proof is not a CAR file: ${firstLine(e)}`);
  }
}

/** The root block of the CAR: hashed against its CID, decoded, and shaped like a v3 commit of `did`. */
export async function readCommit(bytes: Uint8Array, did: string): Promise<Commit> {
  const reader = car(bytes);
  const root = reader.header.data.roots[0]?.$link;
  if (!root) throw new ProofError('commit', 'record proof names no root commit');
  let block: Uint8Array | undefined;
  try {
    for (const entry of reader) {
      if (CID.toString(entry.cid) === root) {
        const actual = CID.toString(await CID.create(entry.cid.codec as 113, entry.bytes));
        if (actual !== root) throw new ProofError('commit', `commit block does not hash to its CID ${root}: altered`);
        block = entry.bytes;
        break;
      }
    }
  } catch (e) {
    if (e instanceof ProofError) throw e;
    throw new ProofError('commit', `record proof is not a valid CAR file: ${firstLine(e)}`);
  }
  if (!block) throw new ProofError('commit', `record proof lacks its root commit block ${root}`);
  let commit: unknown;
  try {
    commit = CBOR.decode(block);
  } catch (e) {
    throw new ProofError('commit', `commit block is not DAG-CBOR: ${firstLine(e)}`);
  }
  if (!isRecord(commit)) throw new ProofError('commit', 'commit block is not a map');
  const { sig, ...unsigned } = commit;
  if (commit.version !== 3) throw new ProofError('commit', `commit version ${String(commit.version)} is not 3`);
  if (
    typeof commit.did !== 'string' ||
    !CID.isCidLink(commit.data) ||
    !CBOR.isBytes(sig) ||
    typeof commit.rev !== 'string'
  ) {
    throw new ProofError('commit', 'commit block lacks did, data, rev or sig');
  }
  if (commit.did !== did)
    throw new ProofError('commit', `commit is of repository ${commit.did}, not of ${did}`, 'SIGNATURE_UNTRUSTED');
  return {
    did: commit.did,
    version: 3,
    rev: commit.rev,
    data: commit.data,
    sig: CBOR.fromBytes(sig),
    unsignedBytes: CBOR.encode(unsigned),
    cid: root,
  };
}

/** Low-S is enforced by @atcute/crypto (atproto.com/specs/cryptography: high-S signatures are invalid). */
export async function checkCommitSignature(commit: Commit, key: FoundPublicKey, keyName: string): Promise<void> {
  let ok: boolean;
  try {
    ok = await verifySig(key, commit.sig as Uint8Array<ArrayBuffer>, commit.unsignedBytes as Uint8Array<ArrayBuffer>);
  } catch (e) {
    throw new ProofError('signature', `commit signature cannot be checked: ${firstLine(e)}`);
  }
  if (!ok) {
    throw new ProofError(
      'signature',
      `commit ${commit.cid.slice(0, 16)}... (rev ${commit.rev}) is not signed by ${keyName}: altered, ` +
        'signed by another key, or by a key rotated out of the DID document',
      'SIGNATURE_UNTRUSTED',
    );
  }
}

/** Walks the MST to `collection/rkey`; returns the record's CID and decoded value. */
export async function findRecord(
  bytes: Uint8Array,
  did: string,
  collection: string,
  rkey: string,
): Promise<{ cid: string; record: unknown }> {
  try {
    return await verifyRecord({ did: did as `did:plc:${string}`, collection, rkey, carBytes: bytes });
  } catch (e) {
    // Deleted record, incomplete proof or broken MST: all one failed inclusion check; the library's own
    // words say which, and are not parsed.
    throw new ProofError(
      'inclusion',
      `the repository's current commit does not prove ${collection}/${rkey}: ${firstLine(e)}`,
    );
  }
}

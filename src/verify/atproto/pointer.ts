/**
 * The signature artifact: what an `application/vnd.atproto.signature.v1+json` referrer carries.
 *
 * ATCR documents the artifactType and that the referrer points at the manifest record in the
 * publisher's PDS, but publishes no field list for its blob. This is pullguard's layout, the smallest
 * that carries what verification needs (README, "ATProto authorities"):
 *
 *   OCI image manifest, artifactType application/vnd.atproto.signature.v1+json, subject = the image,
 *   config = the OCI empty descriptor, one layer of that media type holding:
 *   { "did": "did:plc:...", "uri": "at://did:plc:.../io.atcr.manifest/<rkey>",
 *     "cid": "<record CID>", "commit": "<commit CID when signed>", "pds": "https://..." }
 *
 * Only `did` and `uri` are required. `cid` pins the record version (a rewritten record no longer
 * verifies); `commit` and `pds` are hints and never trusted: the PDS comes from the DID document and the
 * commit must be the repository's current one, signed by the DID's current key.
 */
import { isRecord, MalformedInputError } from '../../common/malformed.js';

export const ATPROTO_SIGNATURE_MEDIA_TYPE = 'application/vnd.atproto.signature.v1+json';
export const MAX_POINTER_BYTES = 16 * 1024;

export interface RecordPointer {
  readonly did: string;
  readonly collection: string;
  readonly rkey: string;
  readonly cid?: string;
  readonly commit?: string;
  readonly pdsHint?: string;
}

const RKEY = /^[A-Za-z0-9._:~-]{1,512}$/;
const CID = /^b[a-z2-7]{20,200}$/;

export function parsePointer(bytes: Uint8Array): RecordPointer {
  const bad = (why: string): never => {
    throw new MalformedInputError(`atproto signature artifact: ${why}`);
  };
  if (bytes.length > MAX_POINTER_BYTES) bad('larger than 16 KiB');
  let doc: unknown;
  try {
    doc = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    return bad('not JSON');
  }
  if (!isRecord(doc)) return bad('not a JSON object');
  const { did, uri, cid, commit, pds } = doc;
  if (typeof did !== 'string' || !did.startsWith('did:')) return bad('"did" missing');
  if (typeof uri !== 'string') return bad('"uri" missing');
  const m = /^at:\/\/([^/]+)\/([^/]+)\/([^/]+)$/.exec(uri);
  if (!m) return bad(`"uri" ${JSON.stringify(uri.slice(0, 120))} is not at://<did>/<collection>/<rkey>`);
  if (m[1] !== did) return bad(`"uri" names ${m[1]}, not the artifact's DID ${did}`);
  if (!RKEY.test(m[3]!)) return bad('"uri" has an invalid record key');
  if (cid !== undefined && (typeof cid !== 'string' || !CID.test(cid))) return bad('"cid" is not a CID');
  if (commit !== undefined && (typeof commit !== 'string' || !CID.test(commit))) return bad('"commit" is not a CID');
  return {
    did,
    collection: m[2]!,
    rkey: m[3]!,
    cid: cid as string | undefined,
    commit: commit as string | undefined,
    pdsHint: typeof pds === 'string' ? pds.slice(0, 256) : undefined,
  };
}

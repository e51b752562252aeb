import { FileReadError, readRegularText } from '../../common/files.js';
import * as z from 'zod/mini';
import { compiledSchema } from '../../common/schema.js';
import { PullguardError } from '../../common/errors.js';

/**
 * An `atproto:` authority: images whose signature is a record in the publisher's AT Protocol repository
 * (ATCR stores each pushed manifest as an `io.atcr.manifest` record; the PDS signs the repository commit
 * that holds it with the DID's `#atproto` key). See src/verify/atproto/ for the checks.
 *
 *   atproto:
 *     trusted:
 *       - did: did:plc:ewvi7nxzyoun6zhxrhs64oiz
 *         handle: alice.example.com            # optional: must be in the DID document's alsoKnownAs
 *         didDocument: /etc/pullguard/atproto/alice.json   # optional: pinned, no PLC or did:web lookup
 *     plcDirectory: https://plc.directory      # where did:plc documents are resolved (default)
 *     didWeb: false                            # whether did:web DIDs may be trusted (default false)
 *     pdsHosts: [pds.example.com]              # optional: the only PDS hosts records are fetched from
 *     ca: [/etc/pullguard/atproto/ca.pem]      # optional: extra CAs for PDS, PLC and did:web TLS
 *     collection: io.atcr.manifest             # the record collection (default)
 */
export interface AtprotoTrustedDid {
  readonly did: string;
  readonly handle?: string;
  /** A pinned DID document (parsed JSON) and where it came from. */
  readonly pinned?: { readonly source: string; readonly document: unknown };
}

export interface AtprotoSpec {
  readonly resolved: 'atproto';
  readonly trusted: readonly AtprotoTrustedDid[];
  readonly plcDirectory: string;
  readonly didWeb: boolean;
  readonly pdsHosts?: readonly string[];
  readonly caFiles: readonly string[];
  readonly collection: string;
}

export const DEFAULT_PLC_DIRECTORY = 'https://plc.directory';
export const DEFAULT_COLLECTION = 'io.atcr.manifest';
const MAX_DID_DOCUMENT_BYTES = 64 * 1024;

/** The DID forms AT Protocol allows (atproto.com/specs/did): did:plc (24 base32 chars) and host-level did:web. */
export const DID_PLC = /^did:plc:[a-z2-7]{24}$/;
export const DID_WEB = /^did:web:[a-zA-Z0-9.-]+(?:%3[aA][0-9]+)?$/;
const NSID = /^[a-zA-Z](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?){2,}$/;
const HANDLE = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$/;

const raw = z.strictObject({
  trusted: z.array(
    z.strictObject({
      did: z.string(),
      handle: z.optional(z.string()),
      didDocument: z.optional(z.string().check(z.minLength(1))),
    }),
  ),
  plcDirectory: z.optional(z.string()),
  didWeb: z.optional(z.boolean()),
  pdsHosts: z.optional(z.array(z.string().check(z.minLength(1)))),
  ca: z.optional(z.array(z.string().check(z.minLength(1)))),
  collection: z.optional(z.string()),
});

function loadPinned(path: string, did: string): { source: string; document: unknown } {
  let text: string;
  try {
    text = readRegularText(path, { maxBytes: MAX_DID_DOCUMENT_BYTES, code: 'POLICY_INVALID', what: 'didDocument' });
  } catch (e) {
    if (!(e instanceof FileReadError)) throw e;
    throw new PullguardError('POLICY_INVALID', `didDocument ${path} for ${did}: ${e.why}`);
  }
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (e) {
    throw new PullguardError('POLICY_INVALID', `didDocument ${path} for ${did} is not JSON: ${(e as Error).message}`);
  }
  const id = (document as { id?: unknown } | null)?.id;
  if (id !== did)
    throw new PullguardError(
      'POLICY_INVALID',
      `didDocument ${path} is the document of ${JSON.stringify(id)}, not of ${did}`,
    );
  return { source: path, document };
}

function resolve(v: z.output<typeof raw>): AtprotoSpec {
  if (v.trusted.length === 0) throw new PullguardError('POLICY_INVALID', '"trusted" must name at least one DID');
  const didWeb = v.didWeb ?? false;
  const seen = new Set<string>();
  const trusted = v.trusted.map((t): AtprotoTrustedDid => {
    if (!DID_PLC.test(t.did) && !DID_WEB.test(t.did)) {
      throw new PullguardError(
        'POLICY_INVALID',
        `${JSON.stringify(t.did)} is not an AT Protocol DID (did:plc:<24 base32 chars> or did:web:<host>)`,
      );
    }
    if (t.did.startsWith('did:web:') && !didWeb)
      throw new PullguardError(
        'POLICY_INVALID',
        `${t.did} is a did:web DID; set didWeb: true to trust did:web identities`,
      );
    if (seen.has(t.did)) throw new PullguardError('POLICY_INVALID', `${t.did} is listed twice`);
    seen.add(t.did);
    if (t.handle !== undefined && !HANDLE.test(t.handle))
      throw new PullguardError('POLICY_INVALID', `handle ${JSON.stringify(t.handle)} is not a valid handle`);
    return {
      did: t.did,
      handle: t.handle?.toLowerCase(),
      pinned: t.didDocument !== undefined ? loadPinned(t.didDocument, t.did) : undefined,
    };
  });
  const plcDirectory = v.plcDirectory ?? DEFAULT_PLC_DIRECTORY;
  let plc: URL;
  try {
    plc = new URL(plcDirectory);
  } catch {
    throw new PullguardError('POLICY_INVALID', `plcDirectory ${JSON.stringify(plcDirectory)} is not a URL`);
  }
  if (plc.protocol !== 'https:' && plc.protocol !== 'http:')
    throw new PullguardError('POLICY_INVALID', 'plcDirectory must be an https:// URL');
  const collection = v.collection ?? DEFAULT_COLLECTION;
  if (!NSID.test(collection))
    throw new PullguardError('POLICY_INVALID', `collection ${JSON.stringify(collection)} is not an NSID`);
  return {
    resolved: 'atproto',
    trusted,
    plcDirectory: plcDirectory.replace(/\/+$/, ''),
    didWeb,
    pdsHosts: v.pdsHosts?.map((h) => h.toLowerCase()),
    caFiles: v.ca ?? [],
    collection,
  };
}

export const atprotoAuthoritySchema = compiledSchema(raw, resolve);

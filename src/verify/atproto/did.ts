/**
 * DID documents as AT Protocol uses them (atproto.com/specs/did): the `#atproto` verification method
 * (type Multikey, `publicKeyMultibase`) is the repository signing key, `alsoKnownAs` carries the handle
 * as `at://<handle>`, and the `#atproto_pds` service (type AtprotoPersonalDataServer) is where the
 * repository lives. Pure: the document comes in already fetched (or pinned).
 */
import { parsePublicMultikey, type FoundPublicKey } from '@atcute/crypto';
import { isRecord, MalformedInputError } from '../../common/malformed.js';

export interface AtprotoIdentity {
  readonly did: string;
  readonly signingKey: FoundPublicKey;
  /** The multibase form, for messages ("signed by zQ3sh...") */
  readonly signingKeyMultibase: string;
  /** Handles claimed by the document, lower-cased, without `at://`. */
  readonly handles: readonly string[];
  /** The PDS endpoint, if the document names one. */
  readonly pds?: URL;
}

/** Where a DID's document is resolved: did:plc through the PLC directory, did:web at the host's well-known path. */
export function didDocumentUrl(did: string, plcDirectory: string): URL {
  if (did.startsWith('did:plc:')) return new URL(`${plcDirectory}/${did}`);
  if (did.startsWith('did:web:')) {
    // A port is percent-encoded in the DID (did:web:localhost%3A8443); AT Protocol allows host-level did:web only.
    const host = decodeURIComponent(did.slice('did:web:'.length));
    return new URL(`https://${host}/.well-known/did.json`);
  }
  throw new MalformedInputError(`unsupported DID method in ${did}`, 'SIGNATURE_UNTRUSTED');
}

const matchesFragment = (id: unknown, did: string, fragment: string) =>
  id === `#${fragment}` || id === `${did}#${fragment}`;

export function parseDidDocument(doc: unknown, did: string): AtprotoIdentity {
  const bad = (why: string): never => {
    throw new MalformedInputError(`DID document of ${did}: ${why}`, 'SIGNATURE_UNTRUSTED');
  };
  if (!isRecord(doc)) return bad('not a JSON object');
  if (doc.id !== did) return bad(`its id is ${JSON.stringify(doc.id)}, not ${did}`);
  const methods = Array.isArray(doc.verificationMethod) ? doc.verificationMethod : [];
  const method = methods.find((m) => isRecord(m) && matchesFragment(m.id, did, 'atproto'));
  if (!isRecord(method)) return bad('no #atproto verification method');
  if (method.type !== 'Multikey') return bad(`#atproto key has type ${JSON.stringify(method.type)}, not Multikey`);
  if (method.controller !== undefined && method.controller !== did)
    return bad('#atproto key is controlled by another DID');
  const multibase = method.publicKeyMultibase;
  if (typeof multibase !== 'string' || multibase.length > 256) return bad('#atproto key has no publicKeyMultibase');
  let signingKey: FoundPublicKey;
  try {
    signingKey = parsePublicMultikey(multibase);
  } catch (e) {
    return bad(`#atproto key ${multibase.slice(0, 64)} is not a K-256 or P-256 multikey (${(e as Error).message})`);
  }
  const aka = Array.isArray(doc.alsoKnownAs) ? doc.alsoKnownAs : [];
  const handles = aka
    .filter((a): a is string => typeof a === 'string' && a.startsWith('at://'))
    .map((a) => a.slice(5).toLowerCase());
  const services = Array.isArray(doc.service) ? doc.service : [];
  const service = services.find((s) => isRecord(s) && matchesFragment(s.id, did, 'atproto_pds'));
  let pds: URL | undefined;
  if (
    isRecord(service) &&
    service.type === 'AtprotoPersonalDataServer' &&
    typeof service.serviceEndpoint === 'string'
  ) {
    try {
      pds = new URL(service.serviceEndpoint);
    } catch {
      return bad(`#atproto_pds endpoint ${JSON.stringify(service.serviceEndpoint).slice(0, 80)} is not a URL`);
    }
  }
  return { did, signingKey, signingKeyMultibase: multibase, handles, pds };
}

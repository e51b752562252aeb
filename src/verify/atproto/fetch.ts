/**
 * The network side of ATProto verification: DID documents (PLC directory, did:web) and record proofs
 * (the PDS's com.atproto.sync.getRecord). Same rules as the registry: the registry stage's Transport,
 * so every request is tied to the run's deadline, size-capped, redirect-bounded, TLS-verified (system
 * roots plus the authority's `ca` files), and plain http is allowed for loopback hosts only.
 */
import type { Deadline } from '../../common/deadline.js';
import { PullguardError } from '../../common/errors.js';
import { isLocalhost, type Endpoint } from '../../registry/hosts.js';
import { Transport } from '../../registry/transport.js';

export const MAX_DID_DOCUMENT_BYTES = 64 * 1024;
/** A record proof is the commit, one MST path and the record: kilobytes. A megabyte is generous. */
export const MAX_PROOF_BYTES = 1024 * 1024;
/** No single request may take the whole budget: one stalled host must leave time to say so. */
const REQUEST_TIMEOUT_MS = 3000;

export interface AtprotoFetcher {
  getJson(url: URL, what: string, deadline: Deadline): Promise<unknown>;
  getRecordProof(pds: URL, did: string, collection: string, rkey: string, deadline: Deadline): Promise<Uint8Array>;
}

export function createFetcher(caFiles: readonly string[], userAgent: string): AtprotoFetcher {
  const transport = new Transport(userAgent);
  const endpoints = new Map<string, Endpoint>();
  const endpointFor = (url: URL): Endpoint => {
    if (url.protocol === 'http:' && !isLocalhost(url.host)) {
      throw new PullguardError(
        'REGISTRY_UNREACHABLE',
        `${url.host}: plain http is allowed for loopback hosts only; use https`,
        { host: url.host },
      );
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') {
      throw new PullguardError('REGISTRY_PROTOCOL', `unsupported URL scheme ${url.protocol} for ${url.host}`, {
        host: url.host,
      });
    }
    const key = `${url.protocol}//${url.host}`;
    let ep = endpoints.get(key);
    if (!ep) {
      ep = {
        scheme: url.protocol === 'https:' ? 'https' : 'http',
        host: url.host,
        path: '',
        capabilities: { pull: true, resolve: true, push: false, referrers: false },
        tls: { caFiles, clientPairs: [] },
        httpFallback: false,
        headers: {},
        mirror: false,
        source: 'atproto authority',
      };
      endpoints.set(key, ep);
    }
    return ep;
  };

  const get = async (url: URL, what: string, maxBytes: number, accept: string, deadline: Deadline) => {
    const res = await transport.send(endpointFor(url), url, {
      what,
      maxBytes,
      deadline,
      timeoutMs: Math.min(REQUEST_TIMEOUT_MS, deadline.remainingMs()),
      headers: { accept },
    });
    if (res.status !== 200) {
      const code = res.status === 404 || res.status === 400 ? 'REGISTRY_NOT_FOUND' : 'REGISTRY_PROTOCOL';
      throw new PullguardError(code, `${url.host} answered ${res.status} for ${what}`, {
        host: url.host,
        status: res.status,
      });
    }
    return res.body;
  };

  return {
    async getJson(url, what, deadline) {
      const body = await get(url, what, MAX_DID_DOCUMENT_BYTES, 'application/did+json, application/json', deadline);
      try {
        return JSON.parse(body.toString('utf8'));
      } catch {
        throw new PullguardError('SIGNATURE_UNTRUSTED', `${what} from ${url.host} is not JSON`, { host: url.host });
      }
    },
    async getRecordProof(pds, did, collection, rkey, deadline) {
      const url = new URL('/xrpc/com.atproto.sync.getRecord', pds);
      url.search = new URLSearchParams({ did, collection, rkey }).toString();
      const body = await get(
        url,
        `the record proof of at://${did}/${collection}/${rkey}`,
        MAX_PROOF_BYTES,
        'application/vnd.ipld.car',
        deadline,
      );
      return new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
    },
  };
}

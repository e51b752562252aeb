import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { HttpModules } from '../registry/transport.js';

/**
 * A distribution registry in memory, behind stand-ins for node:http and node:https, for the snapshot
 * warm-up (warmup.ts): the real registry client (hosts, the token flow, discovery, the transport's
 * bodies and caps) then runs at build time, so its bytecode is in the executable and a pull does not
 * compile it. node:http itself cannot be in the snapshot. It answers as docker-registry does with token
 * auth: 401 with a Bearer challenge until a request carries the token from `/token`.
 */
export interface MemoryRegistry {
  readonly modules: HttpModules;
  /** A manifest by digest, and under `tag` if given; its digest. */
  putManifest(bytes: Buffer, mediaType: string, tag?: string, referrerOf?: string): string;
  putBlob(bytes: Buffer): string;
}

const TOKEN = 'warm-up-token';

interface Answer {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: Buffer;
}

export function memoryRegistry(origin: string): MemoryRegistry {
  const manifests = new Map<string, { bytes: Buffer; mediaType: string }>();
  const blobs = new Map<string, Buffer>();
  const referrers = new Map<string, object[]>();
  const digestOf = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
  const json = (status: number, value: unknown, headers: Record<string, string> = {}): Answer => ({
    status,
    headers: { 'content-type': 'application/json', ...headers },
    body: Buffer.from(JSON.stringify(value)),
  });

  const serve = (url: URL, headers: Record<string, string>): Answer => {
    if (url.pathname === '/token') return json(200, { token: TOKEN, expires_in: 300 });
    if (headers.authorization !== `Bearer ${TOKEN}`) {
      return json(
        401,
        { errors: [{ code: 'UNAUTHORIZED' }] },
        {
          'www-authenticate': `Bearer realm="${origin}/token",service="warm-up"`,
        },
      );
    }
    const m = /^\/v2\/.+\/(manifests|blobs|referrers)\/([^/]+)$/.exec(url.pathname);
    const ref = decodeURIComponent(m?.[2] ?? '');
    if (m?.[1] === 'referrers') {
      const index = { schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json' };
      return json(200, { ...index, manifests: referrers.get(ref) ?? [] }, { 'content-type': index.mediaType });
    }
    const found = m?.[1] === 'manifests' ? manifests.get(ref) : undefined;
    if (found) {
      const h = { 'content-type': found.mediaType, 'docker-content-digest': digestOf(found.bytes) };
      return { status: 200, headers: { ...h, 'content-length': String(found.bytes.length) }, body: found.bytes };
    }
    const blob = m?.[1] === 'blobs' ? blobs.get(ref) : undefined;
    if (blob) return { status: 200, headers: { 'content-length': String(blob.length) }, body: blob };
    return json(404, { errors: [{ code: 'MANIFEST_UNKNOWN' }] });
  };

  class Response extends EventEmitter {
    constructor(
      readonly statusCode: number,
      readonly headers: Record<string, string>,
    ) {
      super();
    }
    destroy(): void {}
  }

  class Request extends EventEmitter {
    private readonly headers: Record<string, string> = {};
    constructor(
      private readonly url: URL,
      init: { headers?: Record<string, string | string[]> },
      private readonly onResponse: (res: Response) => void,
    ) {
      super();
      for (const [k, v] of Object.entries(init.headers ?? {})) this.headers[k.toLowerCase()] = String(v);
    }
    setHeader(name: string, value: string): void {
      this.headers[name.toLowerCase()] = value;
    }
    end(): void {
      setImmediate(() => {
        const a = serve(this.url, this.headers);
        const res = new Response(a.status, a.headers);
        this.onResponse(res);
        setImmediate(() => {
          res.emit('data', a.body);
          res.emit('end');
        });
      });
    }
    destroy(): void {}
  }

  class Agent {
    destroy(): void {}
  }
  const module = {
    request: (url: URL, init: { headers?: Record<string, string> }, cb: (res: Response) => void) =>
      new Request(url, init, cb),
    Agent,
  } as unknown as ReturnType<HttpModules['http']>;

  return {
    modules: { http: () => module, https: () => module as ReturnType<HttpModules['https']> },
    putManifest(bytes, mediaType, tag, referrerOf) {
      const digest = digestOf(bytes);
      manifests.set(digest, { bytes, mediaType });
      if (tag) manifests.set(tag, { bytes, mediaType });
      if (referrerOf) {
        const m = JSON.parse(bytes.toString()) as { artifactType?: string; config: { mediaType: string } };
        const list = referrers.get(referrerOf) ?? [];
        list.push({ mediaType, digest, size: bytes.length, artifactType: m.artifactType ?? m.config.mediaType });
        referrers.set(referrerOf, list);
      }
      return digest;
    },
    putBlob(bytes) {
      const digest = digestOf(bytes);
      blobs.set(digest, bytes);
      return digest;
    },
  };
}

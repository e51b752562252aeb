/**
 * An in-process OCI distribution server for tests that need what no installable registry here has
 * (the distribution-spec 1.1 referrers API with pagination and filtering) or that must misbehave on
 * purpose (hostile registry cases). Every request is logged with its headers.
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';

export const sha256 = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

export interface LoggedRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingMessage['headers'];
}

export type Handler = (
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
) => boolean | undefined | Promise<boolean | undefined>;

export interface FakeRegistry {
  readonly host: string;
  readonly url: string;
  readonly log: LoggedRequest[];
  /** TCP connections accepted so far (keep-alive reuse shows as fewer connections than requests). */
  readonly connections: number;
  /** Stores a manifest (by digest, and by tag if given); returns its digest. */
  putManifest(
    repo: string,
    body: object | string,
    opts?: { tag?: string; mediaType?: string },
  ): { digest: string; size: number; mediaType: string };
  putBlob(repo: string, body: Buffer | string): { digest: string; size: number };
  /** Referrers served by the API: when set, `GET /v2/<repo>/referrers/<digest>` answers. */
  referrersApi?: { pageSize: number; applyFilter: boolean };
  /** Runs before the built-in routes; return true when it answered. */
  handler?: Handler;
  close(): Promise<void>;
}

interface Stored {
  body: Buffer;
  mediaType: string;
}

export async function startFakeRegistry(bindHost = '127.0.0.1'): Promise<FakeRegistry> {
  const manifests = new Map<string, Stored>();
  const blobs = new Map<string, Buffer>();
  const log: LoggedRequest[] = [];
  const sockets = new Set<import('node:net').Socket>();

  const reg: FakeRegistry = {
    host: '',
    url: '',
    log,
    connections: 0,
    putManifest(repo, body, opts = {}) {
      const text = typeof body === 'string' ? body : JSON.stringify(body);
      const buf = Buffer.from(text);
      const mediaType =
        opts.mediaType ??
        (typeof body === 'object' && 'mediaType' in body
          ? String((body as { mediaType: string }).mediaType)
          : OCI_MANIFEST);
      const digest = sha256(buf);
      manifests.set(`${repo}@${digest}`, { body: buf, mediaType });
      if (opts.tag) manifests.set(`${repo}:${opts.tag}`, { body: buf, mediaType });
      return { digest, size: buf.length, mediaType };
    },
    putBlob(repo, body) {
      const buf = Buffer.from(body);
      const digest = sha256(buf);
      blobs.set(`${repo}@${digest}`, buf);
      return { digest, size: buf.length };
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };

  const send = (
    res: ServerResponse,
    status: number,
    body: Buffer | string,
    type?: string,
    extra: Record<string, string> = {},
  ) => {
    const buf = Buffer.from(body);
    res.writeHead(status, {
      'content-length': String(buf.length),
      ...(type ? { 'content-type': type } : {}),
      ...extra,
    });
    res.end(buf);
  };

  const server: Server = createServer(async (req, res) => {
    log.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    const url = new URL(req.url ?? '/', 'http://x');
    if (reg.handler && (await reg.handler(req, res, url))) return;
    const m = /^\/v2\/(.+)\/(manifests|blobs|referrers)\/([^/]+)$/.exec(url.pathname);
    if (!m) return send(res, 404, '{"errors":[{"code":"NOT_FOUND"}]}', 'application/json');
    const [, repo, kind, ref] = m as unknown as [string, string, string, string];
    if (kind === 'manifests') {
      const s = manifests.get(ref.startsWith('sha256:') ? `${repo}@${ref}` : `${repo}:${ref}`);
      if (!s) return send(res, 404, '{"errors":[{"code":"MANIFEST_UNKNOWN"}]}', 'application/json');
      return send(res, 200, req.method === 'HEAD' ? '' : s.body, s.mediaType, {
        'docker-content-digest': sha256(s.body),
      });
    }
    if (kind === 'blobs') {
      const b = blobs.get(`${repo}@${ref}`);
      if (!b) return send(res, 404, '{"errors":[{"code":"BLOB_UNKNOWN"}]}', 'application/json');
      return send(res, 200, b, 'application/octet-stream');
    }
    const api = reg.referrersApi;
    if (!api) return send(res, 404, '404 page not found', 'text/plain');
    const filter = url.searchParams.get('artifactType');
    let all = [...manifests.entries()]
      .filter(([k]) => k.startsWith(`${repo}@`))
      .map(([k, s]) => ({
        digest: k.slice(repo.length + 1),
        s,
        j: JSON.parse(s.body.toString()) as Record<string, any>,
      }))
      .filter((e) => e.j.subject?.digest === ref)
      .map((e) => ({
        mediaType: e.s.mediaType,
        digest: e.digest,
        size: e.s.body.length,
        artifactType: e.j.artifactType ?? e.j.config?.mediaType,
        ...(e.j.annotations ? { annotations: e.j.annotations } : {}),
      }))
      .sort((a, b) => a.digest.localeCompare(b.digest));
    if (filter && api.applyFilter) all = all.filter((d) => d.artifactType === filter);
    const page = Number(url.searchParams.get('page') ?? '0');
    const slice = all.slice(page * api.pageSize, (page + 1) * api.pageSize);
    const headers: Record<string, string> = {};
    if (filter && api.applyFilter) headers['oci-filters-applied'] = 'artifactType';
    if ((page + 1) * api.pageSize < all.length) {
      const next = new URLSearchParams(url.searchParams);
      next.set('page', String(page + 1));
      headers.link = `</v2/${repo}/referrers/${ref}?${next}>; rel="next"`;
    }
    return send(
      res,
      200,
      JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: slice }),
      OCI_INDEX,
      headers,
    );
  });
  server.on('connection', (s) => {
    (reg as { connections: number }).connections++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, bindHost, () => r()));
  const port = (server.address() as AddressInfo).port;
  Object.assign(reg, { host: `${bindHost}:${port}`, url: `http://${bindHost}:${port}` });
  return reg;
}

/** A signature-like manifest pointing at `subject`, with one layer blob stored too. */
export function putReferrer(
  reg: FakeRegistry,
  repo: string,
  subject: { digest: string; size: number; mediaType: string },
  kind: {
    artifactType?: string;
    configMediaType?: string;
    layerMediaType: string;
    annotations?: Record<string, string>;
    payload?: string;
  },
) {
  const layer = reg.putBlob(repo, kind.payload ?? `payload for ${kind.layerMediaType} ${Math.random()}`);
  const config = reg.putBlob(repo, '{}');
  return reg.putManifest(repo, {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    ...(kind.artifactType ? { artifactType: kind.artifactType } : {}),
    config: {
      mediaType: kind.configMediaType ?? 'application/vnd.oci.empty.v1+json',
      digest: config.digest,
      size: config.size,
    },
    layers: [{ mediaType: kind.layerMediaType, ...layer }],
    subject,
    ...(kind.annotations ? { annotations: kind.annotations } : {}),
  });
}

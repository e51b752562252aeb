/**
 * A hostile registry for tests: an in-process HTTP server that passes requests through to a real
 * registry (where the real cosign and notation pushed real signatures) unless a programmed misbehaviour
 * matches the request first. Misbehaviours are what an attacker who controls a registry, a mirror or the
 * network path can do: never answer, answer forever, answer with huge error pages, serve hand-made
 * manifests and indexes. Every request is logged.
 */
import { createHash } from 'node:crypto';
import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export type Misbehaviour = (req: IncomingMessage, res: ServerResponse, url: URL) => void | Promise<void>;
export type Match = (req: IncomingMessage, url: URL) => boolean;

export interface HostileRegistry {
  /** `127.0.0.1:<port>` */
  readonly host: string;
  readonly url: string;
  readonly log: { method: string; url: string }[];
  /** The first matching misbehaviour answers; requests nothing matches go to the upstream. */
  on(match: Match, act: Misbehaviour): void;
  /** Drops every misbehaviour. */
  reset(): void;
  close(): Promise<void>;
}

export const sha256 = (...parts: Buffer[]) => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return `sha256:${h.digest('hex')}`;
};

/** Requests for `/v2/<repo>/<kind>/<ref>` where the path ends with `suffix`. */
export const path =
  (re: RegExp): Match =>
  (_req, url) =>
    re.test(url.pathname);

/** Accepts the request and never answers. */
export const stall: Misbehaviour = () => undefined;

/** A 200 whose body never ends (no Content-Length), until the client goes away. */
export function endless(contentType: string, chunkBytes = 64 * 1024): Misbehaviour {
  const chunk = Buffer.alloc(chunkBytes, 0x30);
  return (_req, res) => {
    res.writeHead(200, { 'content-type': contentType });
    const pump = () => {
      while (!res.destroyed && res.write(chunk));
      if (!res.destroyed) res.once('drain', pump);
    };
    pump();
  };
}

/** An error or redirect status with a body of `bytes` bytes (Content-Length given). */
export function bigBody(status: number, bytes: number, headers: Record<string, string> = {}): Misbehaviour {
  return (req, res) => {
    res.writeHead(status, { 'content-type': 'text/html', 'content-length': String(bytes), ...headers });
    if (req.method === 'HEAD') return void res.end();
    res.end(Buffer.alloc(bytes, 0x41));
  };
}

/** A manifest or index made of `parts` (written in turn, so large ones need not be joined in memory). */
export function serve(mediaType: string, parts: readonly Buffer[]): Misbehaviour {
  const size = parts.reduce((n, p) => n + p.length, 0);
  const digest = sha256(...parts);
  return (req, res) => {
    res.writeHead(200, { 'content-type': mediaType, 'content-length': String(size), 'docker-content-digest': digest });
    if (req.method === 'HEAD') return void res.end();
    const write = (i: number): void => {
      if (i === parts.length) return void res.end();
      if (res.write(parts[i])) write(i + 1);
      else res.once('drain', () => write(i + 1));
    };
    write(0);
  };
}

export async function startHostileRegistry(upstream?: string): Promise<HostileRegistry> {
  const rules: { match: Match; act: Misbehaviour }[] = [];
  const log: { method: string; url: string }[] = [];
  const sockets = new Set<Socket>();
  const target = upstream ? new URL(upstream) : undefined;

  const passThrough = (req: IncomingMessage, res: ServerResponse) => {
    if (!target)
      return void res.writeHead(404, { 'content-type': 'application/json' }).end('{"errors":[{"code":"NOT_FOUND"}]}');
    const up = request(
      {
        host: target.hostname,
        port: target.port,
        method: req.method,
        path: req.url,
        headers: { ...req.headers, host: target.host },
      },
      (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      },
    );
    up.on('error', () => res.destroy());
    req.pipe(up);
  };

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    log.push({ method: req.method ?? '', url: req.url ?? '' });
    const rule = rules.find((r) => r.match(req, url));
    if (!rule) return passThrough(req, res);
    req.resume();
    void Promise.resolve(rule.act(req, res, url)).catch(() => res.destroy());
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as AddressInfo).port;
  return {
    host: `127.0.0.1:${port}`,
    url: `http://127.0.0.1:${port}`,
    log,
    on: (match, act) => void rules.push({ match, act }),
    reset: () => void rules.splice(0),
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

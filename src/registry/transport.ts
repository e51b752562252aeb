/**
 * HTTP for the registry stage on node:http/https: keep-alive agents per TLS configuration (hosts.toml
 * `ca`, `client`, `skip_verify` need per-host TLS, which fetch cannot give without undici), capped
 * bodies, bounded redirects that never carry credentials to another origin, and every wait tied to the
 * run's deadline.
 */
import type * as http from 'node:http';
import type * as https from 'node:https';
import type * as net from 'node:net';
import type * as tls from 'node:tls';
import { formatDuration, type Deadline } from '../common/deadline.js';
import { FileReadError, readRegularFile } from '../common/files.js';
import { PullguardError } from '../common/errors.js';
import { JsonDepthScanner, tooDeep } from '../common/json.js';
import { isLocalhost, type Endpoint } from './hosts.js';

export const MAX_REDIRECTS = 5;

// node:http, https and tls are loaded on first use, not imported: they cannot be part of the executable's
// startup snapshot (src/main.ts); the rest of the registry stage can.
const httpModule = () => process.getBuiltinModule('node:http');
const httpsModule = () => process.getBuiltinModule('node:https');

/**
 * What the transport takes from node:http and node:https. The snapshot warm-up (src/cli/warmup.ts) hands
 * it an in-memory registry instead, so that this stage's code is compiled into the executable too.
 */
export interface HttpModules {
  readonly http: () => Pick<typeof http, 'request' | 'Agent'>;
  readonly https: () => Pick<typeof https, 'request' | 'Agent'>;
}
const NODE_HTTP: HttpModules = { http: httpModule, https: httpsModule };

export interface HttpResponse {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: Buffer;
  /** The URL that answered, after redirects. */
  readonly url: URL;
}

export interface SendOptions {
  readonly method?: 'GET' | 'HEAD' | 'POST';
  /** A form body (token requests only); redirects of a POST are not followed. */
  readonly body?: string;
  readonly headers?: Record<string, string>;
  /**
   * Sent only to the origin of `url`; dropped for good when a redirect leaves it. A promise: the request
   * connects at once and goes on the wire when it settles (a token fetched beside the connect and TLS).
   */
  readonly authorization?: string | Promise<string | undefined>;
  /**
   * Or the authorization, asked for once the request no longer waits for the host's first one: what that
   * one learned (an auth challenge) is then known.
   */
  readonly authorize?: () => Promise<string | undefined>;
  readonly maxBytes: number;
  /** What is being fetched, for messages ("manifest ...", "blob ..."). */
  readonly what: string;
  readonly deadline: Deadline;
  /** Per-request budget; the deadline still wins when it is sooner. */
  readonly timeoutMs: number;
  /** Byte caps this request counts against (shared by a decision's requests). */
  readonly byteBudgets?: readonly ByteBudget[];
  /** The body is JSON: refuse it as soon as it nests deeper than this (before it is all read). */
  readonly maxJsonDepth?: number;
  /** Called once the TLS connection has a session that later connections can resume. */
  readonly onSession?: () => void;
}

/** A host's first request, as the others see it. */
class FirstContact {
  stuck = false;
  isOpen = false;
  open!: () => void;
  readonly opened = new Promise<void>(
    (resolve) =>
      (this.open = () => {
        this.isOpen = true;
        resolve();
      }),
  );
}

/**
 * The scheme an http-fallback host settled on, for a URL built before it did (in place: callers keep
 * using it). The only place that rewrites a scheme; other hosts' schemes never change.
 */
function onScheme(url: URL, endpoint: Endpoint): void {
  if (endpoint.httpFallback && url.protocol !== `${endpoint.scheme}:`) url.protocol = `${endpoint.scheme}:`;
}

/** A cap on the bytes one decision fetches, over all its requests (registry.maxTotalBytes). */
export class ByteBudget {
  private used = 0;

  constructor(
    readonly limit: number,
    /** What the cap is called in messages. */
    readonly name = 'registry.maxTotalBytes',
    readonly scope = 'this decision',
  ) {}

  /** Counts `n` more bytes; false once the total is over the limit. */
  take(n: number): boolean {
    this.used += n;
    return this.used <= this.limit;
  }

  get spent(): boolean {
    return this.used >= this.limit;
  }

  exhausted(host: string): PullguardError {
    const message =
      `stopped fetching from ${host}: ${this.scope} already read ${this.limit} bytes, ` + `the limit (${this.name})`;
    return new PullguardError('REGISTRY_LIMIT', message, {
      host,
      limit: this.limit,
    });
  }
}

/** Hook for tests and `--explain`: every request that goes on the wire, without headers. */
export type RequestObserver = (method: string, url: URL) => void;

export class Transport {
  private readonly agents = new Map<string, http.Agent>();
  /** Per host, its first request: the others wait until it has opened the way (see `send`). */
  private readonly contacts = new WeakMap<Endpoint, FirstContact>();
  /**
   * TCP connections opened ahead of their TLS handshake, per `host:port`, for the agent to take: the
   * first before node:tls is loaded (`once`), the others while they wait for the first session (`send`).
   */
  private readonly early = new Map<string, net.Socket[]>();
  private tlsLoaded = false;
  requestCount = 0;

  constructor(
    private readonly userAgent: string,
    private readonly observer?: RequestObserver,
    private readonly modules: HttpModules = NODE_HTTP,
  ) {}

  /**
   * One request to `url` using `endpoint`'s TLS settings, following redirects. Non-2xx answers are
   * returned, not thrown: the caller knows what a 404 means.
   *
   * The one place where a host's requests wait for each other. The first request to a host that speaks
   * TLS, or may (an http fallback), goes alone until it has a TLS session (the others then resume it:
   * one full handshake per host) or has settled https-or-http (the others then skip the failed attempt).
   * Over plain http nothing waits: there is no handshake to share. `authorize` is asked after the wait, so
   * a request released by the first one's answer uses the challenge it taught; requests that did not wait
   * go anonymously and each answers its own 401 with the one shared token (Authenticator).
   */
  async send(endpoint: Endpoint, url: URL, options: SendOptions): Promise<HttpResponse> {
    // The authorization is awaited on the connection, not before it: a token for a remembered realm
    // (Authenticator.prepare) is fetched while the TCP (and TLS) handshake runs. Its failure is the
    // request's (once() fails with it), never an unhandled rejection on the way there.
    const authorized = (o: SendOptions): SendOptions => {
      if (!o.authorize) return o;
      const authorization = o.authorize();
      authorization.catch(() => undefined);
      return { ...o, authorize: undefined, authorization };
    };
    if (url.host !== endpoint.host) return this.trySend(endpoint, url, authorized(options));
    onScheme(url, endpoint);
    if (!endpoint.httpFallback && url.protocol !== 'https:') return this.trySend(endpoint, url, authorized(options));
    const loopback = endpoint.httpFallback && isLocalhost(endpoint.host) && url.protocol === 'https:';
    const first = (o: SendOptions) => (loopback ? this.plainFirst(endpoint, url, o) : this.trySend(endpoint, url, o));
    const contact = this.contacts.get(endpoint);
    if (!contact) {
      const c = new FirstContact();
      this.contacts.set(endpoint, c);
      const p = first({ ...authorized(options), onSession: c.open });
      p.then(c.open, c.open);
      return p;
    }
    // While it waits for the first one's TLS session, a request's own TCP handshake runs: released, it
    // only resumes the session (when no connection is free by then; else the socket stays unused).
    if (!contact.isOpen && !endpoint.httpFallback && url.protocol === 'https:') this.connectEarly(url);
    // A first request that hangs must not hold the others: after a short wait (once per host) they find
    // out alone.
    if (!(await settlesWithin(contact.opened, FIRST_ANSWER_WAIT_MS))) {
      contact.stuck = true;
      contact.open();
    }
    const opts = authorized(options);
    if (contact.stuck && endpoint.httpFallback && endpoint.scheme === 'https') return first(opts);
    onScheme(url, endpoint);
    return this.trySend(endpoint, url, opts);
  }

  /**
   * A loopback registry (containerd's default for `localhost:<port>`/`127.x:<port>` is https with
   * skip_verify and an http fallback, docker/config/hosts.go): asked over plain http first, which is
   * what such registries almost always speak, so that `tls` is not even loaded. A TLS server answers
   * plain HTTP with a 400 "HTTP request to an HTTPS server/port" (Go, nginx) or a TLS alert; then it
   * is https from here on, as containerd would have found. Both settle on the same server's answer.
   */
  private async plainFirst(endpoint: Endpoint, url: URL, opts: SendOptions): Promise<HttpResponse> {
    const plain = new URL(url);
    plain.protocol = 'http:';
    try {
      const res = await this.follow(endpoint, plain, opts);
      const tlsPort = res.status === 400 && TLS_PORT_ANSWER.test(res.body.toString('latin1'));
      if (!tlsPort) {
        endpoint.scheme = 'http';
        return res;
      }
    } catch (e) {
      // A TLS server resets or sends an alert; only a time-out is final.
      if (!(e instanceof PullguardError) || e.code !== 'REGISTRY_UNREACHABLE' || e.detail?.code === undefined) throw e;
    }
    return this.follow(endpoint, url, opts);
  }

  private async trySend(endpoint: Endpoint, url: URL, opts: SendOptions): Promise<HttpResponse> {
    try {
      return await this.follow(endpoint, url, opts);
    } catch (e) {
      if (!isPlainHttpAnswer(e)) throw e;
      if (endpoint.httpFallback && url.protocol === 'https:' && url.host === endpoint.host) {
        // containerd's HTTPFallback: the host answered TLS with HTTP, so it is plain http from now on.
        endpoint.scheme = 'http';
        const plain = new URL(url);
        plain.protocol = 'http:';
        return this.follow(endpoint, plain, opts);
      }
      throw new PullguardError(
        'REGISTRY_UNREACHABLE',
        `${url.host} answers plain HTTP, not HTTPS (${opts.what}); if that is intended, write it as ` +
          `http://${url.host} in hosts.toml (${endpoint.source})`,
        { host: url.host },
      );
    }
  }

  private async follow(endpoint: Endpoint, start: URL, opts: SendOptions): Promise<HttpResponse> {
    let url = start;
    let authorization = opts.authorization;
    const seen: string[] = [];
    for (let hop = 0; ; hop++) {
      const res = await this.once(endpoint, url, authorization, opts);
      if (![301, 302, 303, 307, 308].includes(res.status) || opts.body !== undefined) return res;
      const location = res.headers.location;
      if (!location)
        throw new PullguardError(
          'REGISTRY_PROTOCOL',
          `${url.host} answered ${res.status} without a Location for ${opts.what}`,
          { host: url.host },
        );
      if (hop >= MAX_REDIRECTS) {
        throw new PullguardError(
          'REGISTRY_PROTOCOL',
          `${start.host}: more than ${MAX_REDIRECTS} redirects fetching ${opts.what} (last ${redact(url)}); ` +
            'check the registry or proxy configuration',
          {
            host: start.host,
            redirects: [...seen, redact(url)],
          },
        );
      }
      seen.push(redact(url));
      let next: URL;
      try {
        next = new URL(location, url);
      } catch {
        throw new PullguardError('REGISTRY_PROTOCOL', `${url.host} redirected ${opts.what} to an invalid URL`, {
          host: url.host,
        });
      }
      if (next.protocol !== 'http:' && next.protocol !== 'https:') {
        throw new PullguardError(
          'REGISTRY_PROTOCOL',
          `${url.host} redirected ${opts.what} to unsupported scheme ${next.protocol}`,
          { host: url.host },
        );
      }
      // Credentials belong to the registry that challenged for them, never to a blob store or a hostile
      // host the registry points at. Once dropped they stay dropped, even if the chain comes back.
      if (next.origin !== url.origin) authorization = undefined;
      url = next;
    }
  }

  private async once(
    endpoint: Endpoint,
    url: URL,
    authorization: SendOptions['authorization'],
    opts: SendOptions,
  ): Promise<HttpResponse> {
    if (url.protocol === 'https:' && !this.tlsLoaded) {
      // The first https request: its TCP handshake starts before node:https and node:tls are loaded and
      // the TLS context is built (milliseconds of CPU outside the snapshot), which then overlap the round trip.
      this.tlsLoaded = true;
      this.connectEarly(url);
      await new Promise<void>((resolve) => process.nextTick(resolve)); // net.connect sends its SYN on a tick
    }
    const method = opts.method ?? 'GET';
    const signal = opts.deadline.slice(opts.timeoutMs);
    const startedAt = Date.now();
    this.requestCount++;
    this.observer?.(method, url);
    return new Promise<HttpResponse>((resolve, reject) => {
      if (signal.aborted) return reject(this.abortError(opts, url, startedAt));
      const mod = url.protocol === 'https:' ? this.modules.https() : this.modules.http();
      const headers: Record<string, string | string[]> = { 'user-agent': this.userAgent };
      for (const [k, v] of Object.entries(endpoint.headers)) headers[k.toLowerCase()] = [...v];
      Object.assign(headers, opts.headers);
      if (typeof authorization === 'string') headers.authorization = authorization;
      if (opts.body !== undefined) headers['content-type'] = 'application/x-www-form-urlencoded';
      let settled = false;
      const fail = (e: unknown) => {
        if (settled) return;
        settled = true;
        signal.removeEventListener('abort', onAbort);
        req.destroy();
        reject(e);
      };
      const onAbort = () => fail(this.abortError(opts, url, startedAt));
      const req = mod.request(url, { method, headers, agent: this.agentFor(endpoint, url.protocol) }, (res) => {
        const status = res.statusCode ?? 0;
        const isRedirect = status >= 300 && status < 400;
        const cap = isRedirect || status >= 400 ? Math.min(opts.maxBytes, 64 * 1024) : opts.maxBytes;
        const declared = Number(res.headers['content-length']);
        if (method !== 'HEAD' && Number.isFinite(declared) && declared > cap && !isRedirect && status < 400) {
          return fail(tooLarge(opts, url, declared));
        }
        const chunks: Buffer[] = [];
        let total = 0;
        const json = opts.maxJsonDepth !== undefined && status >= 200 && status < 300;
        const scanner = json ? new JsonDepthScanner(opts.maxJsonDepth) : undefined;
        const finish = () => {
          if (settled) return;
          settled = true;
          signal.removeEventListener('abort', onAbort);
          resolve({ status, headers: res.headers, body: Buffer.concat(chunks), url });
        };
        res.on('data', (chunk: Buffer) => {
          if (settled) return;
          total += chunk.length;
          const over = opts.byteBudgets?.find((b) => !b.take(chunk.length));
          if (over) return fail(over.exhausted(url.host));
          if (scanner && !scanner.feed(chunk)) return fail(tooDeep(opts.what, scanner.limit));
          if (total > cap) {
            if (isRedirect || status >= 400) {
              // Error pages and redirects are only skimmed: keep what fits, answer, and close this
              // connection (never hand a socket with an unread body back to the keep-alive pool).
              chunks.push(chunk.subarray(0, chunk.length - (total - cap)));
              finish();
              res.destroy();
              return;
            }
            return fail(tooLarge(opts, url, total));
          }
          chunks.push(chunk);
        });
        res.on('end', finish);
        res.on('error', (e) => fail(this.networkError(e, endpoint, url, opts)));
        res.on('aborted', () =>
          fail(
            new PullguardError('REGISTRY_UNREACHABLE', `${url.host} closed the connection while sending ${opts.what}`, {
              host: url.host,
            }),
          ),
        );
      });
      if (opts.onSession) {
        const onSession = opts.onSession;
        req.once('socket', (socket) => socket.once('session', onSession));
      }
      req.on('error', (e) => fail(this.networkError(e, endpoint, url, opts)));
      signal.addEventListener('abort', onAbort, { once: true });
      if (typeof authorization !== 'object') return void req.end(opts.body);
      // Headers leave with the first write: until then the socket connects, and TLS runs, on its own.
      authorization.then((value) => {
        if (settled) return;
        if (value) req.setHeader('authorization', value);
        req.end(opts.body);
      }, fail);
    });
  }

  private abortError(opts: SendOptions, url: URL, startedAt: number): PullguardError {
    if (opts.deadline.signal.aborted) {
      // The time this request waited: its deadline may be a share of the run's (a mirror's, or the time
      // before the verdict), so the run's budget would be the wrong number.
      const waited = formatDuration(Date.now() - startedAt);
      const message = `timed out after ${waited} waiting for ${url.host} (${opts.what})`;
      return new PullguardError('DEADLINE_EXCEEDED', message, { host: url.host });
    }
    return new PullguardError(
      'REGISTRY_UNREACHABLE',
      `${url.host} did not answer within ${formatDuration(Date.now() - startedAt)} (${opts.what})`,
      { host: url.host },
    );
  }

  private networkError(e: unknown, endpoint: Endpoint, url: URL, opts: SendOptions): unknown {
    if (e instanceof PullguardError) return e;
    const err = e as NodeJS.ErrnoException;
    const code = err.code ?? err.message;
    if (isPlainHttpAnswer(e)) return e; // handled by send()'s fallback, or reported there
    const tlsHint = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS|altnames/i.test(`${code} ${err.message}`)
      ? `; give the registry's CA in hosts.toml \`ca\` (${endpoint.source})`
      : '';
    return new PullguardError(
      'REGISTRY_UNREACHABLE',
      `cannot reach ${url.protocol}//${url.host} for ${opts.what}: ${code}${tlsHint}`,
      { host: url.host, code },
      { cause: e },
    );
  }

  private agentFor(endpoint: Endpoint, protocol: string): http.Agent {
    const { caFiles, clientPairs, skipVerify } = endpoint.tls;
    const key = protocol === 'http:' ? 'http' : JSON.stringify([caFiles, clientPairs, skipVerify ?? null]);
    let agent = this.agents.get(key);
    if (agent) return agent;
    if (protocol === 'http:') {
      agent = new (this.modules.http().Agent)({ keepAlive: true, maxSockets: 8 });
    } else {
      const options: https.AgentOptions = { keepAlive: true, maxSockets: 8 };
      const read = (file: string, what: string) => {
        try {
          return readRegularFile(file, { maxBytes: 1024 * 1024, code: 'CONTAINERD_CONFIG', what });
        } catch (e) {
          if (!(e instanceof FileReadError)) throw e;
          const message = `cannot read ${what} ${file} named in ${endpoint.source}: ${e.why}`;
          throw new PullguardError('CONTAINERD_CONFIG', message);
        }
      };
      // containerd appends hosts.toml CAs to the system pool. node's `ca` option replaces the pool instead,
      // and handing it the ~120 bundled roots as PEM costs ~15 ms per pull (each is parsed again). A
      // default context already holds the roots (parsed once, natively): add the hosts.toml CAs to it.
      if (caFiles.length > 0) options.secureContext = withExtraCAs(caFiles.map((f) => read(f, 'CA file').toString()));
      if (clientPairs.length > 0) {
        options.cert = clientPairs.map(([c]) => read(c, 'client certificate'));
        options.key = clientPairs.map(([c, k]) => read(k ?? c, 'client key'));
      }
      if (skipVerify) options.rejectUnauthorized = false;
      agent = new (this.modules.https().Agent)(options);
      // A connection the agent opens to a host with TCP connections opened early (`once`, `send`) is one of
      // them, with TLS started on it as on any other (same options, so the same checks and session cache).
      // One that already failed is skipped: a fresh connect reports the host's state.
      const tlsAgent = agent as unknown as { createConnection: (o: ConnectOptions, ...rest: unknown[]) => unknown };
      const create = tlsAgent.createConnection;
      tlsAgent.createConnection = (o, ...rest) => {
        const queue = this.early.get(`${o.host}:${Number(o.port)}`);
        let socket = queue?.shift();
        while (socket?.destroyed) socket = queue?.shift();
        return create.call(agent, socket ? { ...o, socket: socket.ref() } : o, ...rest);
      };
    }
    this.agents.set(key, agent);
    return agent;
  }

  /** A TCP connection to `url`'s host, for the agent to start TLS on (our agents never use a proxy). */
  private connectEarly(url: URL): void {
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    const port = Number(url.port || 443);
    const socket = process.getBuiltinModule('node:net').connect({ host, port });
    socket.on('error', () => undefined); // the TLS socket that takes it over reports it (or nobody needs it)
    socket.unref(); // until it is taken over: one nobody took must not keep the process alive
    const key = `${host}:${port}`;
    const queue = this.early.get(key) ?? [];
    queue.push(socket);
    this.early.set(key, queue);
  }

  close(): void {
    for (const a of this.agents.values()) a.destroy();
    this.agents.clear();
    for (const queue of this.early.values()) for (const s of queue) s.destroy();
    this.early.clear();
  }
}

interface ConnectOptions {
  readonly host?: string;
  readonly port?: number | string;
}

/**
 * The default trust store plus `pems`. `SecureContext.context.addCACert` is how node itself loads a `ca`
 * option (lib/internal/tls/secure-context.js); where it is missing, fall back to the documented and
 * slower way, the bundled roots plus ours as `ca`.
 */
function withExtraCAs(pems: readonly string[]): tls.SecureContext {
  const tlsModule = process.getBuiltinModule('node:tls');
  const ctx = tlsModule.createSecureContext();
  const native = (ctx as unknown as { context?: { addCACert?: (pem: string) => void } }).context;
  if (typeof native?.addCACert !== 'function')
    return tlsModule.createSecureContext({ ca: [...tlsModule.rootCertificates, ...pems] });
  for (const pem of pems) native.addCACert(pem);
  return ctx;
}

function tooLarge(opts: SendOptions, url: URL, bytes: number): PullguardError {
  return new PullguardError(
    'REGISTRY_LIMIT',
    `${url.host}: ${opts.what} is larger than the ${opts.maxBytes}-byte limit (${bytes} bytes or more)`,
    {
      host: url.host,
      limit: opts.maxBytes,
    },
  );
}

/**
 * How long requests wait for a host's first request (its TLS session, or http-or-https settled) before
 * they go ahead on their own: far more than a round trip to any real registry, far less than a deadline.
 */
const FIRST_ANSWER_WAIT_MS = 750;

/** true when `p` settles within `ms`; the timer never keeps the process alive. */
function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    timer.unref();
    const done = () => {
      clearTimeout(timer);
      resolve(true);
    };
    p.then(done, done);
  });
}

/** What Go's and nginx's TLS servers answer to plain HTTP. */
const TLS_PORT_ANSWER = /HTTP request (was sent )?to an? HTTPS (server|port)/i;

/** A TLS client talking to a plain-HTTP server sees an HTTP answer where a TLS record should be. */
function isPlainHttpAnswer(e: unknown): boolean {
  if (e instanceof PullguardError || !(e instanceof Error)) return false;
  const err = e as NodeJS.ErrnoException;
  return (
    err.code === 'ERR_SSL_WRONG_VERSION_NUMBER' ||
    err.code === 'ERR_SSL_PACKET_LENGTH_TOO_LONG' ||
    (err.code === 'EPROTO' && /wrong version number|packet length too long|http request/i.test(err.message))
  );
}

/** A URL fit for messages: no query (pre-signed blob URLs carry credentials there). */
export function redact(url: URL): string {
  return `${url.protocol}//${url.host}${url.pathname}`;
}

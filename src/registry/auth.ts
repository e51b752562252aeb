/**
 * Registry credentials and the distribution token flow. containerd hands a verifier no credentials, so
 * we read what the node has: docker config.json files (auths, credHelpers, credsStore). Secrets live
 * only in memory; messages name files and hosts, never values.
 */
import { join } from 'node:path';
import type { Deadline } from '../common/deadline.js';
import { PullguardError } from '../common/errors.js';
import { canonicalRegistryHost } from '../common/reference.js';
import { FileReadError, readRegularText } from '../common/files.js';
import type { CredentialProviders } from './credential-provider.js';
import type { Endpoint } from './hosts.js';
import { isLocalhost } from './hosts.js';
import type { TokenRealm, TokenRealmMemory } from './token-realms.js';
import type { Transport } from './transport.js';

export interface Credential {
  readonly username?: string;
  readonly password?: string;
  /** An OAuth2 refresh token (docker's `identitytoken`, or a helper's `<token>` user). */
  readonly identityToken?: string;
  /** A bearer token to send as is (docker's `registrytoken`). */
  readonly registryToken?: string;
  /** Where it came from, for messages: a file and a mechanism, never the value. */
  readonly source: string;
}

/** What `CredentialStore.explain` found: a kind and where, never a value. */
export type CredentialSourceInfo =
  | { readonly kind: 'none' }
  | { readonly kind: 'auths'; readonly file: string }
  | { readonly kind: 'credHelper' | 'credsStore'; readonly file: string; readonly helper: string }
  | { readonly kind: 'provider'; readonly file: string; readonly providers: readonly string[] };

export const HELPER_TIMEOUT_MS = 5000;
const MAX_CONFIG_BYTES = 1024 * 1024;

/** Where the rollout's DaemonSet puts an optional `kubernetes.io/dockerconfigjson` Secret on the host. */
export const NODE_DOCKER_CONFIG = '/etc/pullguard/docker/config.json';

/**
 * The documented search order; the first file that has something for the host wins. After these come
 * kubelet's credential provider plugins (registry.credentialProviders), then anonymous access.
 */
export function dockerConfigPaths(policyPath: string | undefined, env: NodeJS.ProcessEnv): string[] {
  const out: string[] = [];
  if (policyPath) out.push(policyPath);
  if (env.DOCKER_CONFIG) out.push(join(env.DOCKER_CONFIG, 'config.json'));
  // pullguard's own: where the DaemonSet agent places a mounted dockerconfigjson Secret (src/node).
  out.push(NODE_DOCKER_CONFIG, '/root/.docker/config.json', '/var/lib/kubelet/config.json');
  return [...new Set(out)];
}

interface DockerConfig {
  readonly path: string;
  readonly auths: Map<string, Record<string, unknown>>;
  readonly credHelpers: Map<string, string>;
  readonly credsStore?: string;
}

/** Docker's keys come as `https://index.docker.io/v1/`, `host`, `http://host/v2/`: compare hosts only. */
export function normalizeAuthKey(key: string): string {
  let k = key
    .trim()
    .toLowerCase()
    .replace(/^[a-z]+:\/\//, '');
  const slash = k.indexOf('/');
  if (slash >= 0) k = k.slice(0, slash);
  return canonicalRegistryHost(k);
}

export class CredentialStore {
  private configs?: DockerConfig[];
  private readonly cache = new Map<string, Promise<Credential | undefined>>();
  private readonly providerCache = new Map<string, Promise<Credential | undefined>>();
  readonly notes: string[] = [];

  constructor(
    private readonly paths: readonly string[],
    private readonly policyPath: string | undefined,
    private readonly env: NodeJS.ProcessEnv = process.env,
    /** kubelet's credential provider plugins, asked after every config.json (registry.credentialProviders). */
    private readonly providers?: CredentialProviders,
  ) {}

  /**
   * Credentials for a registry host (`host[:port]`), or undefined for anonymous access. `repository`
   * matters only to credential providers, whose matchImages and answers may name repositories.
   */
  lookup(host: string, deadline: Deadline, repository = ''): Promise<Credential | undefined> {
    const key = normalizeAuthKey(host);
    let p = this.cache.get(key);
    if (!p) {
      p = this.find(key, deadline);
      this.cache.set(key, p);
    }
    const providers = this.providers;
    if (!providers) return p;
    // After every config.json: the providers, per repository (their matchImages and answers may name one).
    return p.then((c) => {
      if (c) return c;
      const image = `${key}/${repository}`;
      let q = this.providerCache.get(image);
      if (!q) {
        q = providers.lookup(image, deadline, this.notes);
        this.providerCache.set(image, q);
      }
      return q;
    });
  }

  /** Which source `lookup` would use for a host, without running anything or reading a secret (doctor). */
  explain(host: string, repository = ''): CredentialSourceInfo {
    const key = normalizeAuthKey(host);
    for (const cfg of this.load()) {
      const helper = cfg.credHelpers.get(key);
      if (helper) return { kind: 'credHelper', file: cfg.path, helper: `docker-credential-${helper}` };
      if (cfg.credsStore) return { kind: 'credsStore', file: cfg.path, helper: `docker-credential-${cfg.credsStore}` };
      if (cfg.auths.has(key)) return { kind: 'auths', file: cfg.path };
    }
    const image = `${key}/${repository}`;
    const providers = this.providers?.matching(image).map((p) => p.name) ?? [];
    if (providers.length > 0) return { kind: 'provider', providers, file: this.providers!.settings.config };
    return { kind: 'none' };
  }

  private async find(key: string, deadline: Deadline): Promise<Credential | undefined> {
    for (const cfg of this.load()) {
      const helper = cfg.credHelpers.get(key);
      if (helper) return runHelper(helper, key, `${cfg.path} credHelpers`, deadline, this.env);
      if (cfg.credsStore) {
        const c = await runHelper(cfg.credsStore, key, `${cfg.path} credsStore`, deadline, this.env);
        if (c) return c;
      }
      const entry = cfg.auths.get(key);
      if (entry) return fromAuthEntry(entry, `${cfg.path} auths`);
    }
    return undefined;
  }

  private load(): DockerConfig[] {
    if (this.configs) return this.configs;
    this.configs = [];
    for (const path of this.paths) {
      let text: string;
      try {
        text = readRegularText(path, { maxBytes: MAX_CONFIG_BYTES, code: 'POLICY_INVALID', what: 'docker config' });
      } catch (e) {
        if (!(e instanceof FileReadError)) throw e;
        if (path === this.policyPath) {
          const message = `cannot read docker config ${path} named by registry.dockerConfig: ${e.why}`;
          throw new PullguardError('POLICY_INVALID', message, { path });
        }
        if (!e.missing) this.notes.push(`skipped docker config ${path}: ${e.why}`);
        continue;
      }
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
      if (!isObject(json)) {
        if (path === this.policyPath)
          throw new PullguardError(
            'POLICY_INVALID',
            `docker config ${path} named by registry.dockerConfig is not valid JSON`,
            { path },
          );
        this.notes.push(`skipped docker config ${path}: not valid JSON`);
        continue;
      }
      const auths = new Map<string, Record<string, unknown>>();
      // kubelet still accepts the old .dockercfg shape: hosts at the top level.
      const authTable = isObject(json.auths) ? json.auths : json.credHelpers || json.credsStore ? {} : json;
      for (const [k, v] of Object.entries(authTable)) if (isObject(v)) auths.set(normalizeAuthKey(k), v);
      const credHelpers = new Map<string, string>();
      if (isObject(json.credHelpers))
        for (const [k, v] of Object.entries(json.credHelpers))
          if (typeof v === 'string' && v) credHelpers.set(normalizeAuthKey(k), v);
      const credsStore = typeof json.credsStore === 'string' && json.credsStore ? json.credsStore : undefined;
      this.configs.push({ path, auths, credHelpers, credsStore });
    }
    return this.configs;
  }
}

function fromAuthEntry(entry: Record<string, unknown>, source: string): Credential | undefined {
  const str = (k: string) =>
    typeof entry[k] === 'string' && (entry[k] as string).length > 0 ? (entry[k] as string) : undefined;
  let username = str('username');
  let password = str('password');
  const auth = str('auth');
  if (auth) {
    const decoded = Buffer.from(auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon > 0) {
      username = decoded.slice(0, colon);
      password = decoded.slice(colon + 1);
    }
  }
  const identityToken = str('identitytoken');
  const registryToken = str('registrytoken');
  if (!username && !identityToken && !registryToken) return undefined;
  return { username, password, identityToken, registryToken, source };
}

/** `docker-credential-<name> get`, the server on stdin, under a timeout inside the deadline. */
export function runHelper(
  name: string,
  key: string,
  source: string,
  deadline: Deadline,
  env: NodeJS.ProcessEnv,
): Promise<Credential | undefined> {
  if (!/^[A-Za-z0-9._-]+$/.test(name)) {
    return Promise.reject(
      new PullguardError(
        'REGISTRY_AUTH',
        `credential helper name ${JSON.stringify(name)} in ${source} is not a plain name`,
      ),
    );
  }
  const program = `docker-credential-${name}`;
  const server = key === 'docker.io' ? 'https://index.docker.io/v1/' : key;
  return new Promise((resolve, reject) => {
    const signal = deadline.slice(HELPER_TIMEOUT_MS);
    // Loaded here, not imported: child_process cannot be part of the executable's startup snapshot.
    const child = process
      .getBuiltinModule('node:child_process')
      .spawn(program, ['get'], { stdio: ['pipe', 'pipe', 'pipe'], env, signal, killSignal: 'SIGKILL' });
    let out = '';
    let errOut = '';
    child.stdout.on('data', (b: Buffer) => {
      if (out.length < 64 * 1024) out += b.toString();
    });
    child.stderr.on('data', (b: Buffer) => {
      if (errOut.length < 4096) errOut += b.toString();
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(server);
    child.on('error', (e: NodeJS.ErrnoException) => {
      if (e.name === 'AbortError') {
        reject(
          new PullguardError(
            deadline.signal.aborted ? 'DEADLINE_EXCEEDED' : 'REGISTRY_AUTH',
            `credential helper ${program} (${source}) did not answer within ${HELPER_TIMEOUT_MS}ms for ${key}`,
          ),
        );
      } else if (e.code === 'ENOENT') {
        reject(
          new PullguardError(
            'REGISTRY_AUTH',
            `credential helper ${program} named in ${source} is not on PATH; install it or remove it from the config`,
          ),
        );
      } else {
        reject(
          new PullguardError(
            'REGISTRY_AUTH',
            `credential helper ${program} (${source}) failed to start: ${e.code ?? e.message}`,
          ),
        );
      }
    });
    child.on('close', (code) => {
      if (signal.aborted) return; // reported by 'error'
      if (code !== 0) {
        // The helper protocol's "no credentials" answer; anything else is a real failure.
        if (/credentials not found/i.test(out + errOut)) return resolve(undefined);
        return reject(
          new PullguardError('REGISTRY_AUTH', `credential helper ${program} (${source}) exited ${code} for ${key}`),
        );
      }
      try {
        const j = JSON.parse(out) as { Username?: unknown; Secret?: unknown };
        const username = typeof j.Username === 'string' ? j.Username : '';
        const secret = typeof j.Secret === 'string' ? j.Secret : '';
        if (!secret) return resolve(undefined);
        resolve(
          username === '<token>'
            ? { identityToken: secret, source: `${source} ${program}` }
            : { username, password: secret, source: `${source} ${program}` },
        );
      } catch {
        reject(
          new PullguardError(
            'REGISTRY_AUTH',
            `credential helper ${program} (${source}) printed something that is not JSON`,
          ),
        );
      }
    });
  });
}

export interface Challenge {
  readonly scheme: string;
  readonly params: Readonly<Record<string, string>>;
}

/** RFC 7235 challenges: `Bearer realm="...",service="...", Basic realm="..."`. */
export function parseChallenges(header: string | string[] | undefined): Challenge[] {
  const text = Array.isArray(header) ? header.join(', ') : (header ?? '');
  const out: { scheme: string; params: Record<string, string> }[] = [];
  const re = /\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)(?:\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*))?\s*,?/gy;
  let m: RegExpExecArray | null;
  while (re.lastIndex < text.length && (m = re.exec(text)) !== null) {
    if (m[0].length === 0) break;
    const [, name, value] = m;
    if (value === undefined) out.push({ scheme: name!.toLowerCase(), params: {} });
    else if (out.length > 0) {
      const v = value.startsWith('"') ? value.slice(1, -1).replace(/\\(.)/g, '$1') : value;
      out[out.length - 1]!.params[name!.toLowerCase()] = v;
    }
  }
  return out;
}

interface TokenEntry {
  token: Promise<string>;
  expiresAt: number;
}

/**
 * Per-process authorization: remembers each host's challenge so later requests authorize up front
 * (one 401 per host, not per request), and caches bearer tokens per realm, service, scope and credential.
 * With a TokenRealmMemory, a host whose token realm an earlier pull learned gets its token before its
 * first request (prepare), and what a host challenges with is kept for the next pull.
 */
export class Authenticator {
  private readonly challenges = new Map<string, Challenge>();
  private readonly tokens = new Map<string, TokenEntry>();
  /** Per host and repository: the header from a remembered realm (undefined when that did not work). */
  private readonly recalled = new Map<string, { realm?: TokenRealm; header: Promise<string | undefined> }>();
  /** What the decision record should say: a remembered realm that failed, a memory that cannot be used. */
  readonly notes: string[] = [];

  constructor(
    private readonly transport: Transport,
    private readonly credentials: CredentialStore,
    private readonly realms?: TokenRealmMemory,
  ) {}

  /**
   * Called before a host's request is sent: when an earlier pull learned this host's token realm and
   * this process has not been challenged by it, the token fetch starts now, beside the connection set-up,
   * with a quarter of the time (a realm that stopped answering must leave time for the registry's own
   * challenge). Its failure is a note, and the request goes anonymously, as without the memory.
   */
  prepare(endpoint: Endpoint, repository: string, deadline: Deadline): void {
    const realms = this.realms;
    const key = `${endpoint.host}\n${repository}`;
    if (!realms || this.challenges.has(endpoint.host) || this.recalled.has(key)) return;
    const realm = realms.recall(originOf(endpoint));
    if (!realm) {
      this.recalled.set(key, { header: Promise.resolve(undefined) });
      return;
    }
    const params: Record<string, string> = { realm: realm.realm };
    if (realm.service !== undefined) params.service = realm.service;
    const header = this.authorize(endpoint, repository, { scheme: 'bearer', params }, deadline, false, 4).catch(
      (e: unknown) => {
        const why = e instanceof PullguardError ? e.message : String(e);
        this.notes.push(`the token realm remembered for ${endpoint.host} failed (${why}); asked the registry`);
        return undefined;
      },
    );
    this.recalled.set(key, { realm, header });
  }

  /** The Authorization header to send up front: this host challenged before, or its realm is remembered. */
  async header(endpoint: Endpoint, repository: string, deadline: Deadline): Promise<string | undefined> {
    const ch = this.challenges.get(endpoint.host);
    if (!ch) return this.recalled.get(`${endpoint.host}\n${repository}`)?.header;
    return this.authorize(endpoint, repository, ch, deadline, false);
  }

  /** Answers a 401. Returns undefined when there is nothing we could send (no credentials for Basic). */
  async respond(
    endpoint: Endpoint,
    repository: string,
    wwwAuthenticate: string | string[] | undefined,
    deadline: Deadline,
    rejected?: string,
  ): Promise<string | undefined> {
    const all = parseChallenges(wwwAuthenticate);
    const ch = all.find((c) => c.scheme === 'bearer') ?? all.find((c) => c.scheme === 'basic');
    if (!ch) {
      throw new PullguardError(
        'REGISTRY_AUTH',
        `${endpoint.host} asked for authentication without a usable WWW-Authenticate challenge (repository ` +
          `${repository})`,
        { host: endpoint.host },
      );
    }
    this.challenges.set(endpoint.host, ch);
    if (this.realms && ch.scheme === 'bearer' && ch.params.realm) {
      const learned: TokenRealm = { realm: ch.params.realm, service: ch.params.service };
      const recalled = this.recalled.get(`${endpoint.host}\n${repository}`)?.realm;
      const problem = this.realms.remember(originOf(endpoint), learned, recalled);
      if (problem) this.notes.push(`token realm not remembered: ${problem}`);
    }
    // A fresh token only when the one we sent was refused; parallel first requests share one fetch.
    return this.authorize(endpoint, repository, ch, deadline, rejected !== undefined);
  }

  private async authorize(
    endpoint: Endpoint,
    repository: string,
    ch: Challenge,
    deadline: Deadline,
    fresh: boolean,
    /** The token request's share of the time: 1/share of the budget. */
    share = 2,
  ): Promise<string | undefined> {
    const cred = await this.credentials.lookup(endpoint.host, deadline, repository);
    if (ch.scheme === 'basic') {
      if (!cred?.username || cred.password === undefined) return undefined;
      return `Basic ${Buffer.from(`${cred.username}:${cred.password}`).toString('base64')}`;
    }
    if (cred?.registryToken) return `Bearer ${cred.registryToken}`;
    const realm = ch.params.realm;
    if (!realm)
      throw new PullguardError('REGISTRY_AUTH', `${endpoint.host} sent a Bearer challenge without a realm`, {
        host: endpoint.host,
      });
    const scope = `repository:${repository}:pull`;
    const key = JSON.stringify([realm, ch.params.service ?? '', scope, cred?.source ?? '']);
    const now = Date.now();
    let entry = this.tokens.get(key);
    if (fresh || !entry || entry.expiresAt <= now) {
      const token = this.fetchToken(endpoint, realm, ch.params.service, scope, cred, deadline, share);
      entry = { token, expiresAt: Number.POSITIVE_INFINITY };
      const e = entry;
      this.tokens.set(key, e);
      token.then(
        () => undefined,
        () => this.tokens.get(key) === e && this.tokens.delete(key),
      );
    }
    return `Bearer ${await entry.token}`;
  }

  private async fetchToken(
    endpoint: Endpoint,
    realm: string,
    service: string | undefined,
    scope: string,
    cred: Credential | undefined,
    deadline: Deadline,
    share: number,
  ): Promise<string> {
    let url: URL;
    try {
      url = new URL(realm);
    } catch {
      throw new PullguardError('REGISTRY_AUTH', `${endpoint.host} named an invalid token realm`, {
        host: endpoint.host,
      });
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:')
      throw new PullguardError('REGISTRY_AUTH', `${endpoint.host} named a token realm with scheme ${url.protocol}`);
    const sendsSecret = !!(cred?.username || cred?.identityToken);
    if (sendsSecret && url.protocol === 'http:' && !isLocalhost(url.host) && endpoint.scheme === 'https') {
      throw new PullguardError(
        'REGISTRY_AUTH',
        `${endpoint.host} asks for credentials to be sent to ${url.host} over plain http; refusing`,
        { host: endpoint.host },
      );
    }
    if (service) url.searchParams.set('service', service);
    url.searchParams.append('scope', scope);
    let res: Awaited<ReturnType<typeof this.transport.send>>;
    const common = {
      maxBytes: 1024 * 1024,
      what: `a pull token for ${scope}`,
      deadline,
      timeoutMs: deadline.budgetMs / share,
      headers: { accept: 'application/json' },
    };
    if (cred?.identityToken) {
      // docker's identity tokens are OAuth2 refresh tokens, exchanged with a form POST to the realm.
      const form = new URLSearchParams({
        grant_type: 'refresh_token',
        refresh_token: cred.identityToken,
        client_id: 'pullguard',
        scope,
      });
      if (service) form.set('service', service);
      res = await this.transport.send(endpoint, new URL(realm), { ...common, method: 'POST', body: form.toString() });
    } else {
      const authorization =
        cred?.username && cred.password !== undefined
          ? `Basic ${Buffer.from(`${cred.username}:${cred.password}`).toString('base64')}`
          : undefined;
      res = await this.transport.send(endpoint, url, { ...common, authorization });
    }
    if (res.status === 401 || res.status === 403) {
      const who = cred ? `the credentials from ${cred.source}` : 'anonymous access';
      const hint = cred ? '' : '; add credentials for this registry to a docker config.json (registry.dockerConfig)';
      throw new PullguardError(
        'REGISTRY_AUTH',
        `token server ${url.host} refused ${who} for ${endpoint.host} (${scope}): HTTP ${res.status}${hint}`,
        { host: endpoint.host },
      );
    }
    if (res.status !== 200)
      throw new PullguardError(
        'REGISTRY_AUTH',
        `token server ${url.host} answered HTTP ${res.status} for ${endpoint.host} (${scope})`,
        { host: endpoint.host },
      );
    let token: unknown;
    try {
      const j = JSON.parse(res.body.toString('utf8')) as Record<string, unknown>;
      token = j.token ?? j.access_token;
    } catch {
      throw new PullguardError('REGISTRY_AUTH', `token server ${url.host} answered with something that is not JSON`, {
        host: endpoint.host,
      });
    }
    if (typeof token !== 'string' || token.length === 0 || /[\r\n]/.test(token)) {
      throw new PullguardError('REGISTRY_AUTH', `token server ${url.host} answered without a token`, {
        host: endpoint.host,
      });
    }
    return token;
  }
}

/**
 * The memory's key for an endpoint: scheme and host as hosts.toml (or the default) gives them. A host
 * with containerd's http fallback (loopback) settles its scheme only on its first answer, after the
 * memory was asked: its key names the fallback, not the scheme it settled on.
 */
function originOf(endpoint: Endpoint): string {
  return `${endpoint.httpFallback ? 'https+http' : endpoint.scheme}://${endpoint.host}`;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return !!v && typeof v === 'object' && !Array.isArray(v);
}

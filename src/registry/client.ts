/**
 * The registry client: resolves a reference (human mode) and discovers signature artifacts for a
 * digest, over the endpoints containerd would use, in their order, checking everything it reads.
 * Modelled on oras-go `registry/remote` (referrers API, then the `sha256-<hex>` tag schema).
 */
import { assertDigest, digestOf, isDigest, shortDigest } from '../common/digest.js';
import type { Deadline } from '../common/deadline.js';
import { asPullguardError, PullguardError } from '../common/errors.js';
import { parseReference, type Reference } from '../common/reference.js';
import { quoteUntrusted } from '../common/text.js';
import { MAX_MANIFEST_SIZE, type Descriptor } from '../contract/descriptor.js';
import { DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST, PULLABLE_MEDIA_TYPES } from '../contract/media-types.js';
import type { RegistrySettings } from '../policy/model.js';
import { Authenticator, CredentialStore, dockerConfigPaths } from './auth.js';
import {
  classify,
  filterTypeFor,
  OCI_EMPTY_DIGEST,
  parseIndex,
  parseManifest,
  possibleClassesOfEntry,
  signerHintOf,
} from './classify.js';
import { endpointsFor, hostsDirFromContainerdConfig, type Endpoint } from './hosts.js';
import { redact, Transport, type HttpResponse, type RequestObserver, type SendOptions } from './transport.js';
import type { ArtifactClass, DiscoveryRequest, DiscoveryResult, FoundVia, OciDescriptor, OciManifest, RegistryClient, SignatureArtifact } from './types.js';

export const DEFAULT_MAX_BLOB_BYTES = 4 * 1024 * 1024;
export const DEFAULT_MAX_REFERRERS = 128;
const MAX_REFERRER_PAGES = 32;
const FETCH_CONCURRENCY = 8;
const MANIFEST_ACCEPT = [OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX, DOCKER_MANIFEST_LIST];
const REFERRER_CLASSES: readonly ArtifactClass[] = ['cosign-bundle', 'cosign-legacy-referrer', 'notation', 'atproto', 'attestation', 'unknown'];

export interface ClientOptions {
  readonly env?: NodeJS.ProcessEnv;
  /** Sees every HTTP request (method and URL, no headers): for tests and request counting. */
  readonly observer?: RequestObserver;
  readonly userAgent?: string;
}

/** One repository in one registry namespace, e.g. `docker.io` + `library/nginx`. */
interface Repo {
  readonly namespace: string;
  readonly path: string;
  readonly name: string;
}

interface FetchedManifest {
  readonly bytes: Buffer;
  readonly mediaType: string;
  readonly digest: string;
}

export class DistributionClient implements RegistryClient {
  private readonly transport: Transport;
  private readonly credentials: CredentialStore;
  private readonly authn: Authenticator;
  private readonly maxBlobBytes: number;
  private readonly maxReferrers: number;
  private hostsRoot?: { dir: string; note?: string };
  private readonly endpointCache = new Map<string, Endpoint[]>();
  private readonly gates = new WeakMap<Endpoint, Promise<void>>();

  constructor(
    private readonly settings: RegistrySettings,
    options: ClientOptions = {},
  ) {
    const env = options.env ?? process.env;
    this.transport = new Transport(options.userAgent ?? 'pullguard', options.observer);
    this.credentials = new CredentialStore(dockerConfigPaths(settings.dockerConfig, env), settings.dockerConfig, env);
    this.authn = new Authenticator(this.transport, this.credentials);
    this.maxBlobBytes = settings.maxBlobBytes ?? DEFAULT_MAX_BLOB_BYTES;
    this.maxReferrers = settings.maxReferrers ?? DEFAULT_MAX_REFERRERS;
  }

  /** HTTP requests made so far, redirects and token requests included. */
  get requestCount(): number {
    return this.transport.requestCount;
  }

  close(): void {
    this.transport.close();
  }

  /** Endpoints for a namespace, read lazily so that a client nobody uses never touches the disk. */
  endpoints(namespace: string): Endpoint[] {
    let eps = this.endpointCache.get(namespace);
    if (!eps) {
      this.hostsRoot ??= hostsDirFromContainerdConfig(this.settings.containerdConfig);
      eps = endpointsFor(namespace, this.hostsRoot.dir);
      this.endpointCache.set(namespace, eps);
    }
    return eps;
  }

  async resolve(ref: Reference, deadline: Deadline): Promise<Descriptor> {
    const repo = repoOf(ref.domain, ref.path);
    const target = ref.digest ?? ref.tag ?? 'latest';
    const candidates = this.endpoints(repo.namespace).filter((e) => (ref.digest ? e.capabilities.pull : e.capabilities.resolve));
    if (candidates.length === 0) throw new PullguardError('REGISTRY_NOT_FOUND', `no host for ${repo.namespace} may ${ref.digest ? 'pull' : 'resolve tags'} (check hosts.toml capabilities)`);
    const failures: string[] = [];
    for (const [i, ep] of candidates.entries()) {
      try {
        const m = await this.getManifest(ep, repo, target, deadline, ref.digest);
        if (m) {
          if (!(PULLABLE_MEDIA_TYPES as readonly string[]).includes(m.mediaType)) {
            throw new PullguardError('REGISTRY_PROTOCOL', `${repo.name}:${target} on ${ep.host} is ${m.mediaType}, not an image or index`);
          }
          return { mediaType: m.mediaType, digest: m.digest, size: m.bytes.length };
        }
        failures.push(`${ep.host}: not found`);
      } catch (e) {
        if (i === candidates.length - 1 || deadline.signal.aborted) throw e;
        failures.push(`${ep.host}: ${asPullguardError(e).message}`);
      }
    }
    throw new PullguardError('REGISTRY_NOT_FOUND', `${repo.name}:${target} not found (${failures.join('; ')})`, { repository: repo.name });
  }

  async discover(request: DiscoveryRequest, deadline: Deadline): Promise<DiscoveryResult> {
    const subject = request.subject.digest;
    if (!isDigest(subject)) throw new PullguardError('INTERNAL', `discovery needs a digest, got ${JSON.stringify(subject)}`);
    const repo = request.signatureRepository ? parseRepository(request.signatureRepository) : repoOf(request.subject.domain, request.subject.path);
    const notes: string[] = [];
    const tried: string[] = [];
    const endpoints = this.endpoints(repo.namespace);
    if (this.hostsRoot?.note) notes.push(this.hostsRoot.note);
    if (request.signatureRepository) notes.push(`signatures looked up in ${repo.name} (relocated)`);
    if (request.classes.size === 0) return { artifacts: [], notes };

    for (const [i, ep] of endpoints.entries()) {
      const last = i === endpoints.length - 1;
      try {
        const r = await this.discoverOn(ep, repo, subject, request.classes, deadline);
        notes.push(...r.notes);
        tried.push(...(r.tried ?? []));
        if (r.artifacts.length > 0 || last) {
          notes.push(...this.credentials.notes);
          return { artifacts: r.artifacts, notes, tried };
        }
        notes.push(`mirror ${ep.host} has no signatures for ${shortDigest(subject)}; trying ${endpoints[i + 1]!.host}`);
      } catch (e) {
        const err = asPullguardError(e);
        // Only the last host's failure is fatal: a broken or hostile mirror must not hide the upstream.
        if (last || err.code === 'DEADLINE_EXCEEDED' || deadline.signal.aborted) throw err;
        notes.push(`mirror ${ep.host} failed (${err.code}: ${err.message}); trying ${endpoints[i + 1]!.host}`);
      }
    }
    return { artifacts: [], notes, tried };
  }

  private async discoverOn(ep: Endpoint, repo: Repo, subject: string, classes: ReadonlySet<ArtifactClass>, deadline: Deadline): Promise<DiscoveryResult> {
    const notes: string[] = [];
    const hex = subject.slice(subject.indexOf(':') + 1);
    const alg = subject.slice(0, subject.indexOf(':'));
    const tasks: Promise<SignatureArtifact[]>[] = [];
    const tagsAllowed = ep.capabilities.resolve;
    const wantsReferrers = REFERRER_CLASSES.some((c) => classes.has(c));
    const tried: string[] = [];
    const tagOf = (tag: string) => `tag ${repo.name}:${tag} on ${ep.host}`;
    if (tagsAllowed && classes.has('cosign-legacy')) tried.push(tagOf(`${alg}-${hex}.sig`));
    if (tagsAllowed && classes.has('attestation')) tried.push(tagOf(`${alg}-${hex}.att`));
    if (wantsReferrers && (ep.capabilities.pull || ep.capabilities.referrers)) {
      tried.push(`referrers API ${this.url(ep, repo, `referrers/${subject}`).href}`);
    }
    if (wantsReferrers && tagsAllowed) tried.push(`${tagOf(referrersTag(subject))} (the referrers tag, if the ` +
      `API is absent)`);

    if (classes.has('cosign-legacy') || classes.has('attestation')) {
      if (!tagsAllowed) notes.push(`${ep.host} may not resolve tags (hosts.toml capabilities); skipped cosign's .sig/.att tags there`);
      else {
        if (classes.has('cosign-legacy')) tasks.push(this.tagArtifact(ep, repo, `${alg}-${hex}.sig`, 'cosign-sig-tag', classes, deadline));
        if (classes.has('attestation')) tasks.push(this.tagArtifact(ep, repo, `${alg}-${hex}.att`, 'cosign-att-tag', classes, deadline));
      }
    }
    if (wantsReferrers) tasks.push(this.referrerArtifacts(ep, repo, subject, classes, deadline, notes));

    const settled = await Promise.allSettled(tasks);
    const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) throw failed.reason;
    const artifacts = settled.flatMap((s) => (s.status === 'fulfilled' ? s.value : []));
    return { artifacts, notes, tried };
  }

  private async tagArtifact(ep: Endpoint, repo: Repo, tag: string, via: FoundVia, classes: ReadonlySet<ArtifactClass>, deadline: Deadline): Promise<SignatureArtifact[]> {
    const m = await this.getManifest(ep, repo, tag, deadline);
    if (!m) return [];
    const manifest = parseManifest(m.bytes, `manifest ${repo.name}:${tag} on ${ep.host}`);
    const cls = classify(manifest, via);
    return classes.has(cls) ? [this.artifact(ep, repo, m.digest, manifest, cls, via, deadline)] : [];
  }

  private async referrerArtifacts(ep: Endpoint, repo: Repo, subject: string, classes: ReadonlySet<ArtifactClass>, deadline: Deadline, notes: string[]): Promise<SignatureArtifact[]> {
    const listed = await this.listReferrers(ep, repo, subject, classes, deadline, notes);
    if (!listed) return [];
    const seen = new Set<string>();
    const candidates = listed.entries.filter((d) => {
      if (seen.has(d.digest)) return false;
      seen.add(d.digest);
      if (d.mediaType !== OCI_MANIFEST && d.mediaType !== DOCKER_MANIFEST) return false;
      if (classes.has('unknown')) return true;
      const possible = possibleClassesOfEntry(d.artifactType);
      return possible === undefined || possible.some((c) => classes.has(c));
    });
    if (candidates.length > this.maxReferrers) {
      throw new PullguardError(
        'REGISTRY_LIMIT',
        `${repo.name} on ${ep.host} lists ${candidates.length}${listed.truncated ? '+' : ''} referrers for ${shortDigest(subject)} that may be signatures, more than the limit of ${this.maxReferrers}; raise registry.maxReferrers in the policy or clean up the repository`,
        { host: ep.host, repository: repo.name, limit: this.maxReferrers },
      );
    }
    const out: SignatureArtifact[] = [];
    await mapLimit(candidates, FETCH_CONCURRENCY, async (d) => {
      const what = `referrer ${shortDigest(d.digest)} of ${repo.name}@${shortDigest(subject)} on ${ep.host}`;
      if (d.size > MAX_MANIFEST_SIZE) {
        notes.push(`${what} skipped: its size ${d.size} is over the 4 MiB manifest limit`);
        return;
      }
      const m = await this.getManifest(ep, repo, d.digest, deadline, d.digest);
      if (!m) {
        notes.push(`${what} is listed but missing (stale ${listed.via === 'referrers-tag' ? 'referrers tag' : 'referrers index'})`);
        return;
      }
      let manifest: OciManifest;
      try {
        manifest = parseManifest(m.bytes, what);
      } catch (e) {
        // One malformed referrer (anyone with push can add one) must not hide the valid ones.
        notes.push(`${asPullguardError(e).message}; skipped`);
        return;
      }
      if (manifest.subject?.digest !== subject) {
        notes.push(`${what} does not name ${shortDigest(subject)} as its subject; skipped`);
        return;
      }
      const cls = classify(manifest, listed.via);
      if (classes.has(cls)) out.push(this.artifact(ep, repo, m.digest, manifest, cls, listed.via, deadline));
    });
    // Stable order for --explain and tests: the order the registry listed them in.
    const order = new Map(candidates.map((d, i) => [d.digest, i]));
    return out.sort((a, b) => order.get(a.digest)! - order.get(b.digest)!);
  }

  /** The referrers API with pagination, else the `<alg>-<hex>` tag schema. undefined: no referrers at all. */
  private async listReferrers(
    ep: Endpoint,
    repo: Repo,
    subject: string,
    classes: ReadonlySet<ArtifactClass>,
    deadline: Deadline,
    notes: string[],
  ): Promise<{ entries: OciDescriptor[]; via: FoundVia; truncated: boolean } | undefined> {
    if (ep.capabilities.pull || ep.capabilities.referrers) {
      const filter = filterTypeFor(classes);
      let url: URL | undefined = this.url(ep, repo, `referrers/${subject}`);
      if (filter) url.searchParams.set('artifactType', filter);
      const entries: OciDescriptor[] = [];
      for (let page = 0; url; page++) {
        const what = `referrers of ${repo.name}@${shortDigest(subject)}`;
        const res = await this.request(ep, repo, url, { what, maxBytes: MAX_MANIFEST_SIZE, accept: OCI_INDEX }, deadline);
        if (page === 0 && res.status !== 200) {
          if ([404, 400, 405, 406].includes(res.status)) break; // no referrers API: the tag schema
          throw unexpected(res, ep, what);
        }
        if (res.status !== 200) throw unexpected(res, ep, what);
        if (page === 0 && mediaTypeOf(res) !== OCI_INDEX) {
          notes.push(`${ep.host} answered the referrers API with ${mediaTypeOf(res) || 'no content type'}, not an index; used the referrers tag`);
          break;
        }
        let list = parseIndex(res.body, `${what} from ${ep.host}`);
        // Filtering is optional for registries; without the header we filter ourselves.
        if (filter && !/\bartifactType\b/i.test(String(res.headers['oci-filters-applied'] ?? ''))) list = list.filter((d) => d.artifactType === filter);
        entries.push(...list);
        if (entries.length > this.maxReferrers * 8) return { entries, via: 'referrers-api', truncated: true };
        url = nextLink(res, url);
        if (url && list.length === 0 && page > 0) url = undefined;
        if (url && page + 1 >= MAX_REFERRER_PAGES) {
          throw new PullguardError('REGISTRY_LIMIT', `${ep.host}: referrers of ${repo.name}@${shortDigest(subject)} span more than ${MAX_REFERRER_PAGES} pages`, { host: ep.host });
        }
        if (!url) return { entries, via: 'referrers-api', truncated: false };
      }
      notes.push(`${ep.host} has no referrers API for ${repo.name}; used the referrers tag schema`);
    }
    if (!ep.capabilities.resolve) {
      notes.push(`${ep.host} may not resolve tags (hosts.toml capabilities); skipped the referrers tag`);
      return undefined;
    }
    const tag = referrersTag(subject);
    const m = await this.getManifest(ep, repo, tag, deadline);
    if (!m) return undefined;
    if (m.mediaType !== OCI_INDEX) {
      notes.push(`${repo.name}:${tag} on ${ep.host} is ${m.mediaType}, not an index; treated as no referrers`);
      return undefined;
    }
    return { entries: parseIndex(m.bytes, `referrers tag ${repo.name}:${tag} on ${ep.host}`), via: 'referrers-tag', truncated: false };
  }

  private artifact(ep: Endpoint, repo: Repo, digest: string, manifest: OciManifest, cls: ArtifactClass, via: FoundVia, deadline: Deadline): SignatureArtifact {
    const blobs = new Map<string, Promise<Uint8Array>>();
    const known = new Map<string, OciDescriptor>([manifest.config, ...manifest.layers].map((d) => [d.digest, d]));
    const fetchBlob = (d: OciDescriptor): Promise<Uint8Array> => {
      let p = blobs.get(d.digest);
      if (!p) {
        p = this.fetchBlob(ep, repo, d, known, deadline);
        blobs.set(d.digest, p);
      }
      return p;
    };
    const hint = signerHintOf(manifest, cls);
    return { class: cls, foundVia: via, repository: repo.name, digest, manifest, fetchBlob, ...(hint ? { signerHint: hint } : {}) };
  }

  private async fetchBlob(ep: Endpoint, repo: Repo, d: OciDescriptor, known: Map<string, OciDescriptor>, deadline: Deadline): Promise<Uint8Array> {
    const own = known.get(d.digest);
    if (!own || own.size !== d.size) {
      throw new PullguardError('REGISTRY_PROTOCOL', `blob ${shortDigest(d.digest)} is not part of this signature manifest in ${repo.name}`);
    }
    if (!isDigest(d.digest)) throw new PullguardError('REGISTRY_INTEGRITY', `blob digest ${JSON.stringify(d.digest)} is malformed`);
    if (d.digest === OCI_EMPTY_DIGEST && d.size === 2) return new TextEncoder().encode('{}');
    if (d.size > this.maxBlobBytes) {
      throw new PullguardError('REGISTRY_LIMIT', `blob ${shortDigest(d.digest)} in ${repo.name} is ${d.size} bytes, over the ${this.maxBlobBytes}-byte limit (registry.maxBlobBytes)`, { repository: repo.name });
    }
    const what = `blob ${shortDigest(d.digest)} of ${repo.name}`;
    const res = await this.request(ep, repo, this.url(ep, repo, `blobs/${d.digest}`), { what, maxBytes: d.size }, deadline);
    if (res.status === 404) throw new PullguardError('REGISTRY_NOT_FOUND', `${what} not found on ${ep.host}`, { host: ep.host, repository: repo.name });
    if (res.status !== 200) throw unexpected(res, ep, what);
    if (res.body.length !== d.size) {
      throw new PullguardError('REGISTRY_INTEGRITY', `${what} from ${ep.host} is ${res.body.length} bytes, the manifest says ${d.size}`, { host: ep.host, repository: repo.name });
    }
    assertDigest(res.body, d.digest, `${what} from ${ep.host}`);
    return new Uint8Array(res.body.buffer, res.body.byteOffset, res.body.byteLength);
  }

  /** GET a manifest by tag or digest. undefined on 404. The content is checked against `digest` when given. */
  private async getManifest(ep: Endpoint, repo: Repo, reference: string, deadline: Deadline, digest?: string): Promise<FetchedManifest | undefined> {
    const what = `manifest ${repo.name}${digest ? '@' : ':'}${digest ? shortDigest(reference) : reference}`;
    const res = await this.request(ep, repo, this.url(ep, repo, `manifests/${reference}`), { what, maxBytes: MAX_MANIFEST_SIZE, accept: MANIFEST_ACCEPT.join(', ') }, deadline);
    if (res.status === 404) return undefined;
    if (res.status !== 200) throw unexpected(res, ep, what);
    const mediaType = mediaTypeOf(res);
    if (!MANIFEST_ACCEPT.includes(mediaType)) {
      throw new PullguardError('REGISTRY_PROTOCOL', `${ep.host} served ${what} as ${JSON.stringify(mediaType || '(none)')}, not a manifest or index media type`, { host: ep.host });
    }
    let declared: unknown;
    try {
      declared = (JSON.parse(res.body.toString('utf8')) as { mediaType?: unknown }).mediaType;
    } catch (e) {
      throw new PullguardError('REGISTRY_PROTOCOL', `${what} from ${ep.host} is not valid JSON: ${(e as Error).message}`, { host: ep.host });
    }
    if (declared !== undefined && declared !== mediaType) {
      throw new PullguardError('REGISTRY_PROTOCOL', `${ep.host} served ${what} as ${mediaType} but it declares ${JSON.stringify(declared)}`, { host: ep.host });
    }
    const where = `${what} from ${ep.host}`;
    if (digest) assertDigest(res.body, digest, where);
    const headerDigest = String(res.headers['docker-content-digest'] ?? '');
    if (isDigest(headerDigest)) assertDigest(res.body, headerDigest, `${where} (Docker-Content-Digest)`);
    return { bytes: res.body, mediaType, digest: digest ?? digestOf(res.body) };
  }

  private url(ep: Endpoint, repo: Repo, suffix: string): URL {
    const url = new URL(`${ep.scheme}://${ep.host}${ep.path.replace(/\/+$/, '')}/${repo.path}/${suffix}`);
    if (ep.mirror) url.searchParams.set('ns', repo.namespace);
    return url;
  }

  /** One authorized request: up-front credentials if the host challenged before, else answer one 401. */
  private async request(ep: Endpoint, repo: Repo, url: URL, o: { what: string; maxBytes: number; accept?: string }, deadline: Deadline): Promise<HttpResponse> {
    // The scheme may have changed (http fallback) since the URL was built.
    if (url.protocol !== `${ep.scheme}:` && url.host === ep.host) url.protocol = `${ep.scheme}:`;
    const opts: SendOptions = {
      what: `${o.what} (${redact(url)})`,
      maxBytes: o.maxBytes,
      deadline,
      timeoutMs: requestTimeout(deadline),
      headers: o.accept ? { accept: o.accept } : undefined,
    };
    // The first request to a host goes alone: it learns the auth challenge (and http vs https), so the
    // parallel ones that follow authorize up front instead of each collecting its own 401.
    const gate = this.gates.get(ep);
    let release: (() => void) | undefined;
    if (gate) await gate;
    else this.gates.set(ep, new Promise<void>((r) => (release = r)));
    try {
      return await this.authorized(ep, repo, url, o, opts, deadline);
    } finally {
      release?.();
    }
  }

  private async authorized(ep: Endpoint, repo: Repo, url: URL, o: { what: string }, opts: SendOptions, deadline: Deadline): Promise<HttpResponse> {
    if (url.protocol !== `${ep.scheme}:` && url.host === ep.host) url.protocol = `${ep.scheme}:`;
    let authorization = await this.authn.header(ep, repo.path, deadline);
    let res = await this.transport.send(ep, url, { ...opts, authorization });
    if (res.status === 401) {
      authorization = await this.authn.respond(ep, repo.path, res.headers['www-authenticate'], deadline, authorization);
      if (!authorization) {
        throw new PullguardError(
          'REGISTRY_AUTH',
          `${ep.host} requires credentials for ${repo.name} and none were found; add them to a docker config.json (registry.dockerConfig, $DOCKER_CONFIG, /root/.docker/config.json or /var/lib/kubelet/config.json)`,
          { host: ep.host, repository: repo.name },
        );
      }
      res = await this.transport.send(ep, url, { ...opts, authorization });
    }
    if (res.status === 401 || res.status === 403) {
      throw new PullguardError('REGISTRY_AUTH', `${ep.host} denied access to ${repo.name} (HTTP ${res.status}) for ${o.what}; check the credentials for this registry`, {
        host: ep.host,
        repository: repo.name,
      });
    }
    return res;
  }
}

/** A per-request budget: half the run, so one stalled host leaves time for the next, never past the deadline. */
function requestTimeout(deadline: Deadline): number {
  return Math.max(1000, Math.floor(deadline.budgetMs / 2));
}

function unexpected(res: HttpResponse, ep: Endpoint, what: string): PullguardError {
  let detail = '';
  try {
    const j = JSON.parse(res.body.toString('utf8')) as { errors?: { code?: string; message?: string }[] };
    const e = j.errors?.[0];
    // The registry's words, quoted and bounded: they reach the event line (common/text.ts).
    if (e) detail = `: registry error ${quoteUntrusted(`${String(e.code ?? '')} ${String(e.message ?? '')}`, 200)}`;
  } catch {
    /* not a distribution error body */
  }
  return new PullguardError(res.status >= 500 ? 'REGISTRY_UNREACHABLE' : 'REGISTRY_PROTOCOL', `${ep.host} answered HTTP ${res.status} for ${what}${detail}`, { host: ep.host, status: res.status });
}

function mediaTypeOf(res: HttpResponse): string {
  return String(res.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
}

/** `Link: <…>; rel="next"`, resolved against the current URL; only ever the same origin. */
export function nextLink(res: HttpResponse, current: URL): URL | undefined {
  const raw = res.headers.link;
  const header = Array.isArray(raw) ? raw.join(', ') : raw;
  if (!header) return undefined;
  for (const part of header.split(/,(?=\s*<)/)) {
    const m = /^\s*<([^>]*)>\s*(.*)$/.exec(part);
    if (!m || !/(^|;)\s*rel="?next"?\s*(;|$)/i.test(m[2]!)) continue;
    let next: URL;
    try {
      next = new URL(m[1]!, current);
    } catch {
      throw new PullguardError('REGISTRY_PROTOCOL', `${current.host} sent a malformed Link header`, { host: current.host });
    }
    if (next.origin !== current.origin) {
      throw new PullguardError('REGISTRY_PROTOCOL', `${current.host} paginates referrers to another origin (${next.origin}); refusing`, { host: current.host });
    }
    // Mirrors need ?ns= on every page; registries do not always echo it.
    const ns = current.searchParams.get('ns');
    if (ns && !next.searchParams.has('ns')) next.searchParams.set('ns', ns);
    return next;
  }
  return undefined;
}

/** The referrers tag schema: `<alg>-<hex>`, algorithm cut to 32 and hex to 64 characters. */
export function referrersTag(digest: string): string {
  const i = digest.indexOf(':');
  return `${digest.slice(0, i).slice(0, 32)}-${digest.slice(i + 1).slice(0, 64)}`.replace(/[^a-zA-Z0-9_.-]/g, '-');
}

function repoOf(namespace: string, path: string): Repo {
  return { namespace, path, name: `${namespace}/${path}` };
}

/** `registry/path` (a relocated signature repository) with the same normalization as image references. */
export function parseRepository(name: string): Repo {
  const ref = parseReference(name);
  if (name.includes('@') || name.slice(name.lastIndexOf('/') + 1).includes(':')) {
    throw new PullguardError('POLICY_INVALID', `signature repository ${JSON.stringify(name)} must be a repository without a tag or digest`);
  }
  return repoOf(ref.domain, ref.path);
}

async function mapLimit<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: unknown;
  const worker = async () => {
    while (next < items.length && failure === undefined) {
      const item = items[next++]!;
      try {
        await fn(item);
      } catch (e) {
        failure ??= e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure !== undefined) throw failure;
}

/**
 * The registry client: resolves a reference (human mode) and discovers signature artifacts for a
 * digest, over the endpoints containerd would use, in their order, checking everything it reads.
 * Modelled on oras-go `registry/remote` (referrers API, then the `sha256-<hex>` tag schema).
 */
import { assertDigest, digestOf, isDigest, shortDigest } from '../common/digest.js';
import { formatDuration, type Deadline } from '../common/deadline.js';
import { asPullguardError, PullguardError } from '../common/errors.js';
import { MAX_JSON_DEPTH, parseUntrustedJson } from '../common/json.js';
import { isRecord } from '../common/malformed.js';
import { parseReference, type Reference } from '../common/reference.js';
import { quoteUntrusted } from '../common/text.js';
import { MAX_MANIFEST_SIZE, type Descriptor } from '../contract/descriptor.js';
import {
  DOCKER_MANIFEST,
  DOCKER_MANIFEST_LIST,
  OCI_INDEX,
  OCI_MANIFEST,
  PULLABLE_MEDIA_TYPES,
} from '../contract/media-types.js';
import type { RegistrySettings } from '../policy/model.js';
import { Authenticator, CredentialStore, dockerConfigPaths } from './auth.js';
import { TokenRealmMemory } from './token-realms.js';
import { CredentialProviders } from './credential-provider.js';
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
import { ByteBudget, redact, Transport } from './transport.js';
import type { HttpModules, HttpResponse, RequestObserver, SendOptions } from './transport.js';
import type {
  ArtifactClass,
  DiscoveryRequest,
  DiscoveryResult,
  FoundVia,
  OciDescriptor,
  OciManifest,
  RegistryClient,
  SignatureArtifact,
} from './types.js';

export const DEFAULT_MAX_BLOB_BYTES = 4 * 1024 * 1024;
export const DEFAULT_MAX_REFERRERS = 128;
/** Bytes one decision may read from registries in all (registry.maxTotalBytes). */
export const DEFAULT_MAX_TOTAL_BYTES = 32 * 1024 * 1024;
/** The longest share of the deadline a mirror gets while hosts after it still wait. */
export const MAX_MIRROR_SHARE_MS = 4000;
const MAX_REFERRER_PAGES = 32;
const FETCH_CONCURRENCY = 8;
/** Layers per signature artifact fetched ahead of the verifier. */
const PREFETCH_LAYERS = 4;
const MANIFEST_ACCEPT = [OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX, DOCKER_MANIFEST_LIST];
const REFERRER_CLASSES: readonly ArtifactClass[] = [
  'cosign-bundle',
  'cosign-legacy-referrer',
  'notation',
  'atproto',
  'attestation',
  'unknown',
];

export interface ClientOptions {
  readonly env?: NodeJS.ProcessEnv;
  /** Sees every HTTP request (method and URL, no headers): for tests and request counting. */
  readonly observer?: RequestObserver;
  readonly userAgent?: string;
  /** Stand-ins for node:http and node:https (the snapshot warm-up's in-memory registry); never on a pull. */
  readonly httpModules?: HttpModules;
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
  /** All bytes of a decision, and the share discovery may use, so that blobs of what it found still fit. */
  private readonly byteBudget: ByteBudget;
  private readonly discoveryBudget: ByteBudget;
  private hostsRoot?: { dir: string; note?: string };
  private readonly endpointCache = new Map<string, Endpoint[]>();

  constructor(
    private readonly settings: RegistrySettings,
    options: ClientOptions = {},
  ) {
    const env = options.env ?? process.env;
    this.transport = new Transport(options.userAgent ?? 'pullguard', options.observer, options.httpModules);
    const cp = settings.credentialProviders;
    const providers = cp ? new CredentialProviders(cp, env) : undefined;
    const paths = dockerConfigPaths(settings.dockerConfig, env);
    this.credentials = new CredentialStore(paths, settings.dockerConfig, env, providers);
    const realms = settings.tokenRealmCache ? new TokenRealmMemory(settings.tokenRealmCache) : undefined;
    this.authn = new Authenticator(this.transport, this.credentials, realms);
    this.maxBlobBytes = settings.maxBlobBytes ?? DEFAULT_MAX_BLOB_BYTES;
    this.maxReferrers = settings.maxReferrers ?? DEFAULT_MAX_REFERRERS;
    const maxTotal = settings.maxTotalBytes ?? DEFAULT_MAX_TOTAL_BYTES;
    this.byteBudget = new ByteBudget(maxTotal);
    const share = 'three quarters of registry.maxTotalBytes';
    this.discoveryBudget = new ByteBudget(Math.floor(maxTotal * 0.75), share, 'discovery');
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
    const candidates = this.endpoints(repo.namespace).filter((e) =>
      ref.digest ? e.capabilities.pull : e.capabilities.resolve,
    );
    if (candidates.length === 0)
      throw new PullguardError(
        'REGISTRY_NOT_FOUND',
        `no host for ${repo.namespace} may ${ref.digest ? 'pull' : 'resolve tags'} (check hosts.toml capabilities)`,
      );
    const failures: string[] = [];
    const fetchDeadline = beforeVerdict(deadline);
    for (const [i, ep] of candidates.entries()) {
      const hostDeadline = hostShare(fetchDeadline, candidates.length - 1 - i);
      try {
        const m = await this.getManifest(ep, repo, target, hostDeadline, ref.digest);
        if (m) {
          if (!(PULLABLE_MEDIA_TYPES as readonly string[]).includes(m.mediaType)) {
            throw new PullguardError(
              'REGISTRY_PROTOCOL',
              `${repo.name}:${target} on ${ep.host} is ${m.mediaType}, not an image or index`,
            );
          }
          return { mediaType: m.mediaType, digest: m.digest, size: m.bytes.length };
        }
        failures.push(`${ep.host}: not found`);
      } catch (e) {
        const err = hostFailure(e, ep, hostDeadline, fetchDeadline, deadline);
        if (i === candidates.length - 1 || fetchDeadline.signal.aborted) throw err;
        failures.push(`${ep.host}: ${err.message}`);
      }
    }
    throw new PullguardError('REGISTRY_NOT_FOUND', `${repo.name}:${target} not found (${failures.join('; ')})`, {
      repository: repo.name,
    });
  }

  async discover(request: DiscoveryRequest, deadline: Deadline): Promise<DiscoveryResult> {
    const subject = request.subject.digest;
    if (!isDigest(subject))
      throw new PullguardError('INTERNAL', `discovery needs a digest, got ${JSON.stringify(subject)}`);
    const repo = request.signatureRepository
      ? parseRepository(request.signatureRepository)
      : repoOf(request.subject.domain, request.subject.path);
    const notes: string[] = [];
    const tried: string[] = [];
    const endpoints = this.endpoints(repo.namespace);
    if (this.hostsRoot?.note) notes.push(this.hostsRoot.note);
    if (request.signatureRepository) notes.push(`signatures looked up in ${repo.name} (relocated)`);
    if (request.classes.size === 0) return { artifacts: [], notes };

    const fetchDeadline = beforeVerdict(deadline);
    const mirrorsFailed: string[] = [];
    for (const [i, ep] of endpoints.entries()) {
      const last = i === endpoints.length - 1;
      const hostDeadline = hostShare(fetchDeadline, endpoints.length - 1 - i);
      try {
        const r = await this.discoverOn(ep, repo, subject, request.classes, hostDeadline, fetchDeadline);
        notes.push(...r.notes);
        tried.push(...(r.tried ?? []));
        if (r.artifacts.length > 0 || last) {
          notes.push(...this.credentials.notes, ...this.authn.notes);
          return { artifacts: r.artifacts, notes, tried };
        }
        notes.push(`mirror ${ep.host} has no signatures for ${shortDigest(subject)}; trying ${endpoints[i + 1]!.host}`);
      } catch (e) {
        const err = hostFailure(e, ep, hostDeadline, fetchDeadline, deadline);
        // Only the last host's failure is fatal: a broken or hostile mirror must not hide the upstream.
        if (last || err.code === 'DEADLINE_EXCEEDED' || fetchDeadline.signal.aborted) {
          throw withMirrors(err, mirrorsFailed);
        }
        notes.push(`mirror ${ep.host} failed (${err.code}: ${err.message}); trying ${endpoints[i + 1]!.host}`);
        mirrorsFailed.push(`${ep.host} (${err.code})`);
      }
    }
    return { artifacts: [], notes, tried };
  }

  /**
   * Every discovery source on one host at once (cosign tags, referrers). A source or candidate whose
   * content is bad (not JSON, not a manifest, wrong digest, over a limit) is one failed candidate: it
   * becomes a note when anything else was found, and the answer only when nothing was. A failure to reach
   * the host (network, auth, time) ends a referrers listing at once; with nothing found it ends the host,
   * so that the next one is tried.
   */
  private async discoverOn(
    ep: Endpoint,
    repo: Repo,
    subject: string,
    classes: ReadonlySet<ArtifactClass>,
    deadline: Deadline,
    blobDeadline: Deadline,
  ): Promise<DiscoveryResult> {
    const notes: string[] = [];
    const failures: PullguardError[] = [];
    const hex = subject.slice(subject.indexOf(':') + 1);
    const alg = subject.slice(0, subject.indexOf(':'));
    const tasks: Promise<SignatureArtifact[]>[] = [];
    const tagsAllowed = ep.capabilities.resolve;
    const wantsReferrers = REFERRER_CLASSES.some((c) => classes.has(c));
    const ctx: DiscoveryContext = { ep, repo, subject, classes, deadline, blobDeadline, notes, failures };
    const tried: string[] = [];
    const tagOf = (tag: string) => `tag ${repo.name}:${tag} on ${ep.host}`;
    if (tagsAllowed && classes.has('cosign-legacy')) tried.push(tagOf(`${alg}-${hex}.sig`));
    if (tagsAllowed && classes.has('attestation')) tried.push(tagOf(`${alg}-${hex}.att`));
    if (wantsReferrers && (ep.capabilities.pull || ep.capabilities.referrers)) {
      tried.push(`referrers API ${this.url(ep, repo, `referrers/${subject}`).href}`);
    }
    if (wantsReferrers && tagsAllowed)
      tried.push(`${tagOf(referrersTag(subject))} (the referrers tag, if the ` + `API is absent)`);

    if (classes.has('cosign-legacy') || classes.has('attestation')) {
      if (!tagsAllowed)
        notes.push(`${ep.host} may not resolve tags (hosts.toml capabilities); skipped cosign's .sig/.att tags there`);
      else {
        const tag = (suffix: string, via: FoundVia) =>
          candidate(ctx, this.tagArtifact(ctx, `${alg}-${hex}.${suffix}`, via));
        if (classes.has('cosign-legacy')) tasks.push(tag('sig', 'cosign-sig-tag'));
        if (classes.has('attestation')) tasks.push(tag('att', 'cosign-att-tag'));
      }
    }

    // After the tags, so that a manifest route is the host's first request (over TLS it goes alone until
    // the session is up): that one answers the auth challenge, where docker-registry answers the referrers
    // route 404 before any auth. All of them start now, in parallel.
    if (wantsReferrers) tasks.push(candidate(ctx, this.referrerArtifacts(ctx)));

    const settled = await Promise.allSettled(tasks);
    const artifacts = settled.flatMap((r) => (r.status === 'fulfilled' ? r.value : []));
    const unreachable = settled.flatMap((r) => (r.status === 'rejected' ? [asPullguardError(r.reason)] : []));
    // Nothing found: the failure is the answer (and a reason to try the next host). Something found: a
    // source that failed cannot make an image pass, only miss a signature, so it is a note.
    if (artifacts.length === 0 && unreachable.length + failures.length > 0) throw unreachable[0] ?? failures[0];
    for (const f of [...unreachable, ...failures]) notes.push(`${f.message}; skipped`);
    return { artifacts, notes, tried };
  }

  private async tagArtifact(ctx: DiscoveryContext, tag: string, via: FoundVia): Promise<SignatureArtifact[]> {
    const { ep, repo } = ctx;
    const m = await this.getManifest(ep, repo, tag, ctx.deadline);
    if (!m) return [];
    const manifest = parseManifest(m.bytes, `manifest ${repo.name}:${tag} on ${ep.host}`);
    const cls = classify(manifest, via);
    return ctx.classes.has(cls) ? [this.artifact(ep, repo, m.digest, manifest, cls, via, ctx.blobDeadline)] : [];
  }

  private async referrerArtifacts(ctx: DiscoveryContext): Promise<SignatureArtifact[]> {
    const { ep, repo, subject, classes, notes } = ctx;
    const listed = await this.listReferrers(ep, repo, subject, classes, ctx.deadline, notes);
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
        `${repo.name} on ${ep.host} lists ${candidates.length}${listed.truncated ? '+' : ''} referrers for ` +
          `${shortDigest(subject)} that may be signatures, more than the limit of ${this.maxReferrers}; raise ` +
          'registry.maxReferrers in the policy or clean up the repository',
        { host: ep.host, repository: repo.name, limit: this.maxReferrers },
      );
    }
    const out: SignatureArtifact[] = [];
    let unfetched = 0;
    // Smallest first: signatures are a few KiB, so a flood of large junk referrers cannot use up the
    // byte and time budget before the real signatures are read. Each is read up to its listed size.
    const bySize = [...candidates].sort((a, b) => a.size - b.size);
    await mapLimit(bySize, FETCH_CONCURRENCY, async (d) => {
      const what = `referrer ${shortDigest(d.digest)} of ${repo.name}@${shortDigest(subject)} on ${ep.host}`;
      if (d.size > MAX_MANIFEST_SIZE) {
        notes.push(`${what} skipped: its size ${d.size} is over the 4 MiB manifest limit`);
        return;
      }
      if (this.discoveryBudget.spent || ctx.deadline.signal.aborted) {
        unfetched++;
        return;
      }
      let manifest: OciManifest;
      let m: FetchedManifest | undefined;
      try {
        m = await this.getManifest(ep, repo, d.digest, ctx.deadline, d.digest, d.size);
        if (!m) {
          const stale = listed.via === 'referrers-tag' ? 'referrers tag' : 'referrers index';
          notes.push(`${what} is listed but missing (stale ${stale})`);
          return;
        }
        manifest = parseManifest(m.bytes, what);
      } catch (e) {
        const err = asPullguardError(e);
        if (!isCandidateFailure(err)) throw err;
        // One malformed referrer (anyone with push can add one) must not hide the valid ones.
        ctx.failures.push(err);
        return;
      }
      if (manifest.subject?.digest !== subject) {
        notes.push(`${what} does not name ${shortDigest(subject)} as its subject; skipped`);
        return;
      }
      const cls = classify(manifest, listed.via);
      if (classes.has(cls)) out.push(this.artifact(ep, repo, m.digest, manifest, cls, listed.via, ctx.blobDeadline));
    });
    if (unfetched > 0) {
      const b = this.discoveryBudget;
      const why = b.spent ? `${b.scope} reached its ${b.limit}-byte limit (${b.name})` : 'the deadline was near';
      const message = `${unfetched} referrer(s) of ${repo.name}@${shortDigest(subject)} on ${ep.host} not read: ${why}`;
      if (out.length > 0) notes.push(message);
      else ctx.failures.push(new PullguardError('REGISTRY_LIMIT', message, { host: ep.host }));
    }
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
    // The referrers tag is asked at the same time as the API, not after its 404, and before it (a manifest
    // route first, see discoverOn): without the API (docker-registry 2.x) that saves a round trip; with
    // it, the tag costs one more GET, whose answer or failure is dropped.
    const tag = referrersTag(subject);
    const tagged = ep.capabilities.resolve ? this.getManifest(ep, repo, tag, deadline) : undefined;
    tagged?.catch(() => undefined);
    if (ep.capabilities.pull || ep.capabilities.referrers) {
      const filter = filterTypeFor(classes);
      let url: URL | undefined = this.url(ep, repo, `referrers/${subject}`);
      if (filter) url.searchParams.set('artifactType', filter);
      const entries: OciDescriptor[] = [];
      for (let page = 0; url; page++) {
        const what = `referrers of ${repo.name}@${shortDigest(subject)}`;
        // Over https it waits like the others: one full TLS handshake per host, the rest resume it.
        const o = { what, maxBytes: MAX_MANIFEST_SIZE, accept: OCI_INDEX };
        const res = await this.request(ep, repo, url, o, deadline);
        if (page === 0 && res.status !== 200) {
          if ([404, 400, 405, 406].includes(res.status)) break; // no referrers API: the tag schema
          throw unexpected(res, ep, what);
        }
        if (res.status !== 200) throw unexpected(res, ep, what);
        if (page === 0 && mediaTypeOf(res) !== OCI_INDEX) {
          notes.push(
            `${ep.host} answered the referrers API with ${mediaTypeOf(res) || 'no content type'}, not an index; ` +
              'used the referrers tag',
          );
          break;
        }
        let list = parseIndex(res.body, `${what} from ${ep.host}`);
        // Filtering is optional for registries; without the header we filter ourselves.
        if (filter && !/\bartifactType\b/i.test(String(res.headers['oci-filters-applied'] ?? '')))
          list = list.filter((d) => d.artifactType === filter);
        entries.push(...list);
        if (entries.length > this.maxReferrers * 8) return { entries, via: 'referrers-api', truncated: true };
        url = nextLink(res, url);
        if (url && list.length === 0 && page > 0) url = undefined;
        if (url && page + 1 >= MAX_REFERRER_PAGES) {
          throw new PullguardError(
            'REGISTRY_LIMIT',
            `${ep.host}: referrers of ${repo.name}@${shortDigest(subject)} span more than ${MAX_REFERRER_PAGES} pages`,
            { host: ep.host },
          );
        }
        if (!url) return { entries, via: 'referrers-api', truncated: false };
      }
      notes.push(`${ep.host} has no referrers API for ${repo.name}; used the referrers tag schema`);
    }
    if (!tagged) {
      notes.push(`${ep.host} may not resolve tags (hosts.toml capabilities); skipped the referrers tag`);
      return undefined;
    }
    const m = await tagged;
    if (!m) return undefined;
    if (m.mediaType !== OCI_INDEX) {
      notes.push(`${repo.name}:${tag} on ${ep.host} is ${m.mediaType}, not an index; treated as no referrers`);
      return undefined;
    }
    return {
      entries: parseIndex(m.bytes, `referrers tag ${repo.name}:${tag} on ${ep.host}`),
      via: 'referrers-tag',
      truncated: false,
    };
  }

  private artifact(
    ep: Endpoint,
    repo: Repo,
    digest: string,
    manifest: OciManifest,
    cls: ArtifactClass,
    via: FoundVia,
    deadline: Deadline,
  ): SignatureArtifact {
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
    // Signature blobs are asked for as soon as their manifest is known, not after all discovery: every
    // verifier reads the layers of what it is offered (notation, after a cheap check of the manifest).
    for (const layer of manifest.layers.slice(0, PREFETCH_LAYERS)) {
      if (layer.size <= this.maxBlobBytes) fetchBlob(layer).catch(() => undefined); // the verifier sees any error
    }
    const hint = signerHintOf(manifest, cls);
    return {
      class: cls,
      foundVia: via,
      repository: repo.name,
      digest,
      manifest,
      fetchBlob,
      ...(hint ? { signerHint: hint } : {}),
    };
  }

  private async fetchBlob(
    ep: Endpoint,
    repo: Repo,
    d: OciDescriptor,
    known: Map<string, OciDescriptor>,
    deadline: Deadline,
  ): Promise<Uint8Array> {
    const own = known.get(d.digest);
    if (!own || own.size !== d.size) {
      throw new PullguardError(
        'REGISTRY_PROTOCOL',
        `blob ${shortDigest(d.digest)} is not part of this signature manifest in ${repo.name}`,
      );
    }
    if (!isDigest(d.digest))
      throw new PullguardError('REGISTRY_INTEGRITY', `blob digest ${JSON.stringify(d.digest)} is malformed`);
    if (d.digest === OCI_EMPTY_DIGEST && d.size === 2) return new TextEncoder().encode('{}');
    if (d.size > this.maxBlobBytes) {
      throw new PullguardError(
        'REGISTRY_LIMIT',
        `blob ${shortDigest(d.digest)} in ${repo.name} is ${d.size} bytes, over the ${this.maxBlobBytes}-byte ` +
          'limit (registry.maxBlobBytes)',
        { repository: repo.name },
      );
    }
    const what = `blob ${shortDigest(d.digest)} of ${repo.name}`;
    const json = /[+/]json$/.test(own.mediaType);
    const url = this.url(ep, repo, `blobs/${d.digest}`);
    const res = await this.request(ep, repo, url, { what, maxBytes: d.size, blob: true, json }, deadline);
    if (res.status === 404)
      throw new PullguardError('REGISTRY_NOT_FOUND', `${what} not found on ${ep.host}`, {
        host: ep.host,
        repository: repo.name,
      });
    if (res.status !== 200) throw unexpected(res, ep, what);
    if (res.body.length !== d.size) {
      throw new PullguardError(
        'REGISTRY_INTEGRITY',
        `${what} from ${ep.host} is ${res.body.length} bytes, the manifest says ${d.size}`,
        { host: ep.host, repository: repo.name },
      );
    }
    assertDigest(res.body, d.digest, `${what} from ${ep.host}`);
    return new Uint8Array(res.body.buffer, res.body.byteOffset, res.body.byteLength);
  }

  /** GET a manifest by tag or digest. undefined on 404. The content is checked against `digest` when given. */
  private async getManifest(
    ep: Endpoint,
    repo: Repo,
    reference: string,
    deadline: Deadline,
    digest?: string,
    size?: number,
  ): Promise<FetchedManifest | undefined> {
    const what = `manifest ${repo.name}${digest ? '@' : ':'}${digest ? shortDigest(reference) : reference}`;
    const maxBytes = Math.min(size ?? MAX_MANIFEST_SIZE, MAX_MANIFEST_SIZE);
    const url = this.url(ep, repo, `manifests/${reference}`);
    const res = await this.request(ep, repo, url, { what, maxBytes, accept: MANIFEST_ACCEPT.join(', ') }, deadline);
    if (res.status === 404) return undefined;
    if (res.status !== 200) throw unexpected(res, ep, what);
    const mediaType = mediaTypeOf(res);
    if (!MANIFEST_ACCEPT.includes(mediaType)) {
      throw new PullguardError(
        'REGISTRY_PROTOCOL',
        `${ep.host} served ${what} as ${JSON.stringify(mediaType || '(none)')}, not a manifest or index media type`,
        { host: ep.host },
      );
    }
    const parsed = parseUntrustedJson(res.body, `${what} from ${ep.host}`);
    const declared = isRecord(parsed) ? parsed.mediaType : undefined;
    if (declared !== undefined && declared !== mediaType) {
      throw new PullguardError(
        'REGISTRY_PROTOCOL',
        `${ep.host} served ${what} as ${mediaType} but it declares ${JSON.stringify(declared)}`,
        { host: ep.host },
      );
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

  /**
   * One authorized request: up front when the host has challenged before, else anonymous, answering a
   * 401 once. Parallel requests to a host that has not challenged yet all go at once; each challenged one
   * retries with the one token they share (Authenticator), so the token costs the critical path one
   * round trip, not a serial first request. Waiting for a host's first request (its TLS session, its
   * https-or-http answer) is the transport's; the authorization is asked for after that wait.
   */
  private async request(
    ep: Endpoint,
    repo: Repo,
    url: URL,
    o: { what: string; maxBytes: number; accept?: string; blob?: boolean; json?: boolean },
    deadline: Deadline,
  ): Promise<HttpResponse> {
    const opts: SendOptions = {
      what: `${o.what} (${redact(url)})`,
      maxBytes: o.maxBytes,
      deadline,
      timeoutMs: requestTimeout(deadline),
      headers: o.accept ? { accept: o.accept } : undefined,
      // Manifests and indexes are JSON (refused early when nested too deep) and count against discovery.
      byteBudgets: o.blob ? [this.byteBudget] : [this.byteBudget, this.discoveryBudget],
      // JSON blobs (bundles, JWS envelopes, simple signing payloads) too: they are parsed as they come.
      maxJsonDepth: !o.blob || o.json ? MAX_JSON_DEPTH : undefined,
    };
    const spent = opts.byteBudgets!.find((b) => b.spent);
    if (spent) throw spent.exhausted(ep.host);
    // Up front when the host has challenged before, asked for only once the request goes on the wire.
    let authorization: string | undefined;
    this.authn.prepare(ep, repo.path, deadline);
    const authorize = async () => (authorization = await this.authn.header(ep, repo.path, deadline));
    let res = await this.transport.send(ep, url, { ...opts, authorize });
    if (res.status === 401) {
      authorization = await this.authn.respond(ep, repo.path, res.headers['www-authenticate'], deadline, authorization);
      if (!authorization) {
        throw new PullguardError(
          'REGISTRY_AUTH',
          `${ep.host} requires credentials for ${repo.name} and none were found; add them to a docker ` +
            'config.json (registry.dockerConfig, $DOCKER_CONFIG, /etc/pullguard/docker/config.json, ' +
            "/root/.docker/config.json or /var/lib/kubelet/config.json) or use kubelet's credential providers " +
            '(registry.credentialProviders)',
          { host: ep.host, repository: repo.name },
        );
      }
      res = await this.transport.send(ep, url, { ...opts, authorization });
    }
    if (res.status === 401 || res.status === 403) {
      throw new PullguardError(
        'REGISTRY_AUTH',
        `${ep.host} denied access to ${repo.name} (HTTP ${res.status}) for ${o.what}; check the credentials for ` +
          'this registry',
        {
          host: ep.host,
          repository: repo.name,
        },
      );
    }
    return res;
  }
}

interface DiscoveryContext {
  readonly ep: Endpoint;
  readonly repo: Repo;
  readonly subject: string;
  readonly classes: ReadonlySet<ArtifactClass>;
  /** This host's share of the time. */
  readonly deadline: Deadline;
  /** For blobs, fetched by verifiers once discovery chose this host. */
  readonly blobDeadline: Deadline;
  readonly notes: string[];
  readonly failures: PullguardError[];
}

/** Bad content from one source or candidate: it fails alone. Anything else (network, auth, time) ends the host. */
function isCandidateFailure(e: PullguardError): boolean {
  return ['REGISTRY_PROTOCOL', 'REGISTRY_INTEGRITY', 'REGISTRY_LIMIT', 'REGISTRY_NOT_FOUND'].includes(e.code);
}

function candidate(ctx: DiscoveryContext, work: Promise<SignatureArtifact[]>): Promise<SignatureArtifact[]> {
  return work.catch((e: unknown) => {
    const err = asPullguardError(e);
    if (!isCandidateFailure(err)) throw err;
    ctx.failures.push(err);
    return [];
  });
}

/**
 * The part of the deadline the registry may use: the rest is kept to verify and print the verdict, so
 * a slow or hostile registry makes a deny with a reason, never a verifier that containerd kills.
 */
function beforeVerdict(deadline: Deadline): Deadline {
  const reserve = Math.min(1000, Math.max(200, Math.floor(deadline.budgetMs / 8)));
  return deadline.child(deadline.remainingMs() - reserve);
}

/** One host's share of what is left: a stalled mirror must leave time for the hosts after it. */
function hostShare(deadline: Deadline, hostsAfter: number): Deadline {
  if (hostsAfter === 0) return deadline;
  return deadline.child(Math.min(deadline.remainingMs() / (hostsAfter + 1), MAX_MIRROR_SHARE_MS));
}

/** A failure on one host, with time-outs named for the host and the budget that ran out. */
function hostFailure(e: unknown, ep: Endpoint, host: Deadline, fetch: Deadline, run: Deadline): PullguardError {
  const err = asPullguardError(e);
  if (run.signal.aborted || (err.code !== 'DEADLINE_EXCEEDED' && err.code !== 'REGISTRY_UNREACHABLE')) return err;
  if (fetch.signal.aborted) {
    return new PullguardError(
      'DEADLINE_EXCEEDED',
      `timed out waiting for ${ep.host}: stopped at ${formatDuration(run.elapsedMs())} of the ` +
        `${formatDuration(run.budgetMs)} deadline to decide in time`,
      { host: ep.host },
    );
  }
  if (host !== fetch && host.signal.aborted) {
    const message = `${ep.host} did not answer within ${formatDuration(host.budgetMs)}, its share of the deadline`;
    return new PullguardError('REGISTRY_UNREACHABLE', message, { host: ep.host });
  }
  return err;
}

/** The last host's failure, naming the mirrors that failed before it: the reason must not hide them. */
function withMirrors(err: PullguardError, mirrors: readonly string[]): PullguardError {
  if (mirrors.length === 0) return err;
  const message = `${err.message}; mirror${mirrors.length > 1 ? 's' : ''} ${mirrors.join(', ')} failed first`;
  return new PullguardError(err.code, message, err.detail, { cause: err });
}

/**
 * A request may use all of the time its deadline has: a host's share (a mirror) or what is left before
 * the verdict (the last host). A shorter per-request limit only turns a slow registry on a loaded node
 * into a deny while time is still left.
 */
function requestTimeout(deadline: Deadline): number {
  return Math.max(1, deadline.remainingMs());
}

function unexpected(res: HttpResponse, ep: Endpoint, what: string): PullguardError {
  let detail = '';
  try {
    const j = parseUntrustedJson(res.body, 'error body') as { errors?: { code?: string; message?: string }[] };
    const e = j.errors?.[0];
    // The registry's words, quoted and bounded: they reach the event line (common/text.ts).
    if (e) detail = `: registry error ${quoteUntrusted(`${String(e.code ?? '')} ${String(e.message ?? '')}`, 200)}`;
  } catch {
    /* not a distribution error body */
  }
  return new PullguardError(
    res.status >= 500 ? 'REGISTRY_UNREACHABLE' : 'REGISTRY_PROTOCOL',
    `${ep.host} answered HTTP ${res.status} for ${what}${detail}`,
    { host: ep.host, status: res.status },
  );
}

function mediaTypeOf(res: HttpResponse): string {
  return String(res.headers['content-type'] ?? '')
    .split(';')[0]!
    .trim()
    .toLowerCase();
}

/** `Link: <...>; rel="next"`, resolved against the current URL; only ever the same origin. */
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
      throw new PullguardError('REGISTRY_PROTOCOL', `${current.host} sent a malformed Link header`, {
        host: current.host,
      });
    }
    if (next.origin !== current.origin) {
      throw new PullguardError(
        'REGISTRY_PROTOCOL',
        `${current.host} paginates referrers to another origin (${next.origin}); refusing`,
        { host: current.host },
      );
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
    throw new PullguardError(
      'POLICY_INVALID',
      `signature repository ${JSON.stringify(name)} must be a repository without a tag or digest`,
    );
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

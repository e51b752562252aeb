/**
 * kubelet's image credential provider plugins (KEP-2133), run the way kubelet runs them
 * (kubernetes pkg/credentialprovider/plugin/plugin.go), so a node that pulls from ECR, Artifact
 * Registry or ACR through kubelet needs nothing more for pullguard than the same two paths:
 *  - a provider is asked only for images its `matchImages` globs match (isImageAllowed);
 *  - it runs as `<binDir>/<name> <args...>` with pullguard's environment plus its `env`, a
 *    CredentialProviderRequest on stdin, and answers with a CredentialProviderResponse on stdout;
 *  - the answer is cached under the image, its registry or globally (`cacheKeyType`) for
 *    `cacheDuration`, or the provider's `defaultCacheDuration` when the answer has none, or not at all
 *    when that is 0; the cache is shared by pull processes (credential-cache.ts);
 *  - of the `auth` entries every matching provider returned, the most specific key that matches the
 *    image wins (BasicDockerKeyring.Lookup).
 * Where kubelet would try each credential in turn until a pull works, pullguard uses the first: it
 * answers one 401 with one credential. Plugin output is never put in a message, since it holds secrets.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import type { Deadline } from '../common/deadline.js';
import { asPullguardError, PullguardError } from '../common/errors.js';
import { parseGoDuration } from '../common/go-duration.js';
import type { Credential } from './auth.js';
import { CredentialCache, DEFAULT_CREDENTIAL_CACHE_DIR, type CachedAuth } from './credential-cache.js';
import { loadCredentialProviderConfig, type CredentialProviderSpec } from './credential-provider-config.js';
import { credentialKey, matchingEntries, urlsMatch } from './kubelet-match.js';

export interface CredentialProviderSettings {
  /** kubelet's --image-credential-provider-config: a file or a directory. */
  readonly config: string;
  /** kubelet's --image-credential-provider-bin-dir. */
  readonly binDir: string;
  /** Where answers are cached between pulls (default /run/pullguard/credentials). */
  readonly cacheDir?: string;
}

/** At most this long per plugin run, and never more than three quarters of what is left of the deadline. */
export const PROVIDER_TIMEOUT_MS = 5000;
const MAX_OUTPUT_BYTES = 256 * 1024;
const MAX_STDERR_BYTES = 8 * 1024;
const CACHE_KEY_TYPES = ['Image', 'Registry', 'Global'] as const;

export interface ProviderResponse {
  readonly cacheKeyType: (typeof CACHE_KEY_TYPES)[number];
  /** Undefined when the plugin sent none (the provider's defaultCacheDuration applies). */
  readonly cacheDurationMs?: number;
  readonly auth: CachedAuth;
}

const isObject = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v);
// Only values shaped like what belongs in the field are echoed: anything else may be a token.
const KIND_SHAPE = /^[A-Z][A-Za-z]{0,63}$/;
const API_VERSION_SHAPE = /^(?:[a-z0-9-]+(?:\.[a-z0-9-]+)*\/)?v\d+(?:(?:alpha|beta)\d+)?$/;
const printable = (v: unknown, shape: RegExp) =>
  typeof v === 'string' && shape.test(v) ? JSON.stringify(v) : 'another';

/** Pure: decodes a plugin's stdout. Errors say what is wrong, never what was printed. */
export function parseProviderResponse(
  out: string,
  spec: Pick<CredentialProviderSpec, 'name' | 'apiVersion'>,
): ProviderResponse {
  const bad = (why: string): never => {
    throw new PullguardError('REGISTRY_AUTH', `kubelet credential provider ${spec.name} answered ${why}`);
  };
  let j: unknown;
  try {
    j = JSON.parse(out);
  } catch {
    bad('with something that is not JSON');
  }
  if (!isObject(j)) return bad('with JSON that is not an object');
  if (j.kind !== 'CredentialProviderResponse')
    bad(`with kind ${printable(j.kind, KIND_SHAPE)}, not CredentialProviderResponse`);
  if (j.apiVersion !== spec.apiVersion)
    bad(`with apiVersion ${printable(j.apiVersion, API_VERSION_SHAPE)}, not ${spec.apiVersion} as configured`);
  const ckt = j.cacheKeyType;
  if (!(CACHE_KEY_TYPES as readonly unknown[]).includes(ckt))
    bad(`with cacheKeyType ${printable(ckt, KIND_SHAPE)}, not Image, Registry or Global`);
  let cacheDurationMs: number | undefined;
  if (j.cacheDuration !== undefined && j.cacheDuration !== null) {
    cacheDurationMs = typeof j.cacheDuration === 'string' ? parseGoDuration(j.cacheDuration) : undefined;
    if (cacheDurationMs === undefined || cacheDurationMs < 0) bad(`with a cacheDuration that is not a duration`);
  }
  const auth: Record<string, { username?: string; password?: string }> = {};
  if (j.auth !== undefined && j.auth !== null) {
    if (!isObject(j.auth)) return bad('with an auth that is not an object');
    for (const [k, v] of Object.entries(j.auth)) {
      if (!isObject(v)) return bad('with an auth entry that is not an object');
      const { username, password } = v;
      if (
        (username !== undefined && typeof username !== 'string') ||
        (password !== undefined && typeof password !== 'string')
      ) {
        bad('with an auth entry whose username or password is not a string');
      }
      auth[k] = { username: username as string | undefined, password: password as string | undefined };
    }
  }
  return { cacheKeyType: ckt as ProviderResponse['cacheKeyType'], cacheDurationMs, auth };
}

/**
 * A short, safe excerpt of a plugin's stderr for the deny reason: its last line, without control
 * characters, with the configured env values and anything that looks like a token blanked out.
 */
export function redactedExcerpt(stderr: string, secrets: readonly string[]): string {
  const line =
    stderr
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l.length > 0)
      .pop() ?? '';
  let s = line.replace(/[^\x20-\x7e]/g, '?');
  for (const v of secrets) if (v.length >= 4) s = s.split(v).join('[redacted]');
  s = s.replace(/[A-Za-z0-9+/=_-]{24,}/g, '[redacted]');
  return s.length > 200 ? `${s.slice(0, 200)}...` : s;
}

/** The part of a provider's settings that changes its answers: a cached answer is only valid for the same. */
function fingerprint(spec: CredentialProviderSpec, binDir: string): string {
  const id = JSON.stringify([spec.name, spec.apiVersion, join(binDir, spec.name), spec.args, spec.env]);
  return createHash('sha256').update(id).digest('hex');
}

/** One provider's answer for an image, and how it was obtained (for the notes). */
interface Answer {
  readonly auth: CachedAuth;
  readonly how: string;
}

export class CredentialProviders {
  private specs?: CredentialProviderSpec[];
  private readonly cache: CredentialCache;
  private readonly inflight = new Map<string, Promise<Answer>>();

  constructor(
    readonly settings: CredentialProviderSettings,
    private readonly env: NodeJS.ProcessEnv = process.env,
    private readonly now: () => number = Date.now,
  ) {
    this.cache = new CredentialCache(settings.cacheDir ?? DEFAULT_CREDENTIAL_CACHE_DIR);
  }

  /** The configured providers (the config is read on first use; a broken config is a POLICY_INVALID error). */
  providers(): CredentialProviderSpec[] {
    this.specs ??= loadCredentialProviderConfig(this.settings.config);
    return this.specs;
  }

  /** Providers whose matchImages match `image` (`host/repository`), in config order. */
  matching(image: string): CredentialProviderSpec[] {
    return this.providers().filter((p) => p.matchImages.some((m) => urlsMatch(m, image)));
  }

  /** Why the shared cache is not used, if it is not. */
  get cacheProblem(): string | undefined {
    return this.cache.problem;
  }

  /**
   * Credentials for `image` (`host/repository`, as kubelet passes it: no tag or digest), or undefined
   * when no provider matches or none has an entry for it. A provider that fails denies, unless another
   * one gave credentials.
   */
  async lookup(image: string, deadline: Deadline, notes: string[]): Promise<Credential | undefined> {
    const specs = this.matching(image).filter((p) => {
      if (p.requiresServiceAccount) {
        notes.push(
          `kubelet credential provider ${p.name} needs a pod's service account token (tokenAttributes), ` +
            'which containerd does not give verifiers; skipped',
        );
      }
      return !p.requiresServiceAccount;
    });
    if (specs.length === 0) return undefined;
    const answers = await Promise.allSettled(specs.map((p) => this.provide(p, image, deadline, notes)));
    const entries: { key: string; value: { cred: Credential; how: string } }[] = [];
    const errors: PullguardError[] = [];
    answers.forEach((a, i) => {
      const spec = specs[i]!;
      if (a.status === 'rejected') {
        errors.push(asPullguardError(a.reason, 'REGISTRY_AUTH'));
        return;
      }
      for (const [loc, e] of Object.entries(a.value.auth)) {
        const key = credentialKey(loc);
        if (key === undefined || (!e.username && !e.password)) continue;
        const source = `kubelet credential provider ${spec.name} (${spec.file})`;
        entries.push({
          key,
          value: { cred: { username: e.username ?? '', password: e.password ?? '', source }, how: a.value.how },
        });
      }
    });
    const found = matchingEntries(image, entries)[0];
    if (found) {
      for (const e of errors) notes.push(`${e.message} (credentials from another provider used)`);
      notes.push(`credentials for ${image} from ${found.cred.source}, ${found.how}`);
      return found.cred;
    }
    if (errors.length > 0) throw errors[0];
    notes.push(
      `kubelet credential provider ${specs.map((s) => s.name).join(', ')} returned no credentials for ${image}`,
    );
    return undefined;
  }

  private provide(spec: CredentialProviderSpec, image: string, deadline: Deadline, notes: string[]): Promise<Answer> {
    const fp = fingerprint(spec, this.settings.binDir);
    const registry = image.split('/')[0]!;
    const hit = this.cache.get(fp, [image, registry, 'global'], this.now());
    if (hit) {
      const type = hit.key === image ? 'Image' : hit.key === registry ? 'Registry' : 'Global';
      return Promise.resolve({
        auth: hit.auth,
        how: `cached (${type}) until ${new Date(hit.expiresAt).toISOString()}`,
      });
    }
    const flight = `${fp}\n${image}`;
    let p = this.inflight.get(flight);
    if (!p) {
      p = this.run(spec, image, deadline).then((res) => {
        const ms = res.cacheDurationMs ?? spec.defaultCacheDurationMs;
        if (ms <= 0) return { auth: res.auth, how: 'fresh (not cached)' };
        const key = res.cacheKeyType === 'Image' ? image : res.cacheKeyType === 'Registry' ? registry : 'global';
        const problem = this.cache.put(fp, key, res.auth, this.now() + ms);
        if (problem) notes.push(`${problem}; not cached`);
        return { auth: res.auth, how: problem ? 'fresh (not cached)' : `fresh, cached (${res.cacheKeyType})` };
      });
      this.inflight.set(flight, p);
    }
    return p;
  }

  private async run(spec: CredentialProviderSpec, image: string, deadline: Deadline): Promise<ProviderResponse> {
    const request = JSON.stringify({ kind: 'CredentialProviderRequest', apiVersion: spec.apiVersion, image });
    const env: NodeJS.ProcessEnv = { ...this.env };
    for (const e of spec.env) env[e.name] = e.value;
    const out = await execPlugin(join(this.settings.binDir, spec.name), spec, image, request, env, deadline);
    return parseProviderResponse(out, spec);
  }
}

/** Runs one plugin in its own process group, killed whole on timeout, the deadline or too much output. */
function execPlugin(
  program: string,
  spec: CredentialProviderSpec,
  image: string,
  request: string,
  env: NodeJS.ProcessEnv,
  deadline: Deadline,
): Promise<string> {
  const who = `kubelet credential provider ${spec.name}`;
  const timeoutMs = Math.max(1, Math.min(PROVIDER_TIMEOUT_MS, Math.floor(deadline.remainingMs() * 0.75)));
  return new Promise((resolve, reject) => {
    // Loaded here, not imported: child_process cannot be part of the executable's startup snapshot.
    const cp = process.getBuiltinModule('node:child_process');
    const child = cp.spawn(program, [...spec.args], { stdio: ['pipe', 'pipe', 'pipe'], env, detached: true });
    const out: Buffer[] = [];
    let outBytes = 0;
    let errOut = '';
    let failure: PullguardError | undefined;
    const killGroup = (why: PullguardError) => {
      failure ??= why;
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    };
    const timer = setTimeout(
      () => killGroup(new PullguardError('REGISTRY_AUTH', `${who} did not answer within ${timeoutMs}ms for ${image}`)),
      timeoutMs,
    );
    const onDeadline = () =>
      killGroup(
        new PullguardError('DEADLINE_EXCEEDED', `${who} was still running for ${image} when the deadline passed`),
      );
    deadline.signal.addEventListener('abort', onDeadline, { once: true });
    const done = () => {
      clearTimeout(timer);
      deadline.signal.removeEventListener('abort', onDeadline);
    };
    child.stdout.on('data', (b: Buffer) => {
      outBytes += b.length;
      if (outBytes > MAX_OUTPUT_BYTES)
        killGroup(
          new PullguardError('REGISTRY_AUTH', `${who} printed more than ${MAX_OUTPUT_BYTES / 1024} KiB for ${image}`),
        );
      else out.push(b);
    });
    child.stderr.on('data', (b: Buffer) => {
      if (errOut.length < MAX_STDERR_BYTES) errOut += b.toString('utf8');
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(request);
    child.on('error', (e: NodeJS.ErrnoException) => {
      done();
      if (e.code === 'ENOENT')
        reject(
          new PullguardError(
            'REGISTRY_AUTH',
            `${who} is not installed: no ${program} (registry.credentialProviders.binDir)`,
          ),
        );
      else if (e.code === 'EACCES') reject(new PullguardError('REGISTRY_AUTH', `${who}: ${program} is not executable`));
      else reject(new PullguardError('REGISTRY_AUTH', `${who} failed to start: ${e.code ?? e.message}`));
    });
    child.on('close', (code, signal) => {
      done();
      if (failure) return reject(failure);
      if (code !== 0) {
        const excerpt = redactedExcerpt(
          errOut,
          spec.env.map((e) => e.value),
        );
        const how = code === null ? `was killed by ${signal}` : `exited ${code}`;
        return reject(
          new PullguardError('REGISTRY_AUTH', `${who} ${how} for ${image}${excerpt ? `: ${excerpt}` : ''}`),
        );
      }
      resolve(Buffer.concat(out).toString('utf8'));
    });
  });
}

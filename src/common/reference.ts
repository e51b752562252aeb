import { isDigest } from './digest.js';
import { PullguardError } from './errors.js';

/**
 * An image reference normalized the way containerd's CRI does it (distribution/reference
 * `ParseDockerRef`): `nginx` -> `docker.io/library/nginx`, `index.docker.io` -> `docker.io`.
 * `domain` is the name users and policies see; mapping `docker.io` to its API host is the
 * registry stage's job, not this one's.
 */
export interface Reference {
  readonly domain: string;
  readonly path: string;
  readonly tag?: string;
  readonly digest?: string;
}

const DOCKER_DOMAIN = 'docker.io';
/**
 * Other names of Docker Hub's one registry. distribution/reference folds only `index.docker.io`, but
 * containerd pulls `registry-1.docker.io/library/nginx` from the very same registry (hosts.ts maps
 * docker.io to that host), so a policy must see one name for all of them.
 */
const DOCKER_HUB_ALIASES = new Set(['index.docker.io', 'registry-1.docker.io', 'registry.hub.docker.com']);
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const LABEL = '[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?';
const DOMAIN = new RegExp(`^(?:${LABEL}(?:\\.${LABEL})*|\\[[a-fA-F0-9:]+\\])(?::[0-9]+)?$`);
const TAG = /^[\w][\w.-]{0,127}$/;
const MAX_NAME = 255;

/**
 * Whether the first component of a name is a registry host, as distribution/reference's
 * splitDockerDomain (normalize.go) decides: it contains `.` or `:`, is `localhost`, or is not lowercase
 * (repository components must be lowercase, so `VM/app` names the host `VM`).
 */
export function isRegistryHost(first: string): boolean {
  return /[.:]/.test(first) || first === 'localhost' || first.toLowerCase() !== first;
}

/**
 * The one spelling of a registry host that every policy format and the registry stage use. containerd
 * keeps the host as written (distribution/reference never changes its case), yet `VM:5214`, `vm:5214`,
 * `registry.example.com:443` and `registry.example.com` are each one registry to it: DNS, HTTP Host and
 * TLS names are case-insensitive (RFC 4343, RFC 9110 4.2.3), and a host without a port is dialled on
 * 443 (containerd's docker resolver defaults to https). So, before any matching:
 *   - the host is lower-cased;
 *   - `:443` is dropped where the bare host still reads as a host (`example.com:443` -> `example.com`),
 *     and added where it would not (`VM` -> `vm:443`, since `vm/app` would mean docker.io/vm/app);
 *   - Docker Hub's aliases become `docker.io`.
 * Not folded, because containerd does not reach the same endpoint through them: other ports (`:80` is
 * https on port 80 unless hosts.toml says plain http), and different names for one address
 * (`localhost` and `127.0.0.1`). A trailing dot (`vm.:5214`) and non-ASCII (IDN) hosts are rejected by
 * distribution's grammar and so by parseReference; punycode (`xn--`) is plain ASCII and kept as is.
 * `*` wildcards in policy patterns pass through unchanged.
 */
export function canonicalRegistryHost(host: string): string {
  let h = host.toLowerCase();
  if (h.endsWith(':443')) {
    const bare = h.slice(0, -4);
    if (/[.:*]/.test(bare) || bare === 'localhost') h = bare;
  } else if (!/[.:*]/.test(h) && h !== 'localhost') h = `${h}:443`;
  return DOCKER_HUB_ALIASES.has(h) ? DOCKER_DOMAIN : h;
}

/**
 * Splits `name` (no tag, no digest) into its canonical registry host and repository path, as
 * splitDockerDomain does and then canonicalRegistryHost: `nginx` -> docker.io + library/nginx.
 */
export function splitRepository(name: string): { domain: string; path: string } {
  const slash = name.indexOf('/');
  const first = slash < 0 ? '' : name.slice(0, slash);
  const hasHost = slash >= 0 && isRegistryHost(first);
  const domain = hasHost ? canonicalRegistryHost(first) : DOCKER_DOMAIN;
  let path = hasHost ? name.slice(slash + 1) : name;
  const official = domain === DOCKER_DOMAIN && path.length > 0 && !path.includes('/') && !path.includes('*');
  if (official) path = `library/${path}`;
  return { domain, path };
}

export function parseReference(input: string): Reference {
  const fail = (why: string): never => {
    throw new PullguardError('REFERENCE_INVALID', `invalid image reference ${JSON.stringify(input)}: ${why}`);
  };
  if (input.length === 0) fail('empty');
  if (input.length > 4096) fail('too long');

  let rest = input;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!isDigest(digest)) fail(`malformed digest ${JSON.stringify(digest)}`);
  }

  let tag: string | undefined;
  const lastColon = rest.lastIndexOf(':');
  if (lastColon > rest.lastIndexOf('/')) {
    tag = rest.slice(lastColon + 1);
    rest = rest.slice(0, lastColon);
    if (!TAG.test(tag)) fail(`malformed tag ${JSON.stringify(tag)}`);
  }

  const slash = rest.indexOf('/');
  const written = slash >= 0 ? rest.slice(0, slash) : '';
  if (slash >= 0 && isRegistryHost(written) && !DOMAIN.test(written)) {
    fail(`malformed registry host ${JSON.stringify(written)}`);
  }
  const { domain, path } = splitRepository(rest);

  if (path.length === 0) fail('empty repository');
  for (const c of path.split('/')) {
    if (!PATH_COMPONENT.test(c))
      fail(`repository component ${JSON.stringify(c)} must be lowercase letters, digits and separators`);
  }
  if (domain.length + 1 + path.length > MAX_NAME) fail(`repository name longer than ${MAX_NAME} characters`);

  // containerd drops the tag when a digest is present; so do we, so that one image has one name.
  return digest ? { domain, path, digest } : { domain, path, tag: tag ?? 'latest' };
}

/** `registry/path`, with no tag or digest: what signatures and policies are about. */
export function repositoryOf(ref: Reference): string {
  return `${ref.domain}/${ref.path}`;
}

export function formatReference(ref: Reference): string {
  if (ref.digest) return `${repositoryOf(ref)}@${ref.digest}`;
  return ref.tag ? `${repositoryOf(ref)}:${ref.tag}` : repositoryOf(ref);
}

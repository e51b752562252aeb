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
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DOMAIN = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const MAX_NAME = 255;

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

  let domain: string;
  let path: string;
  const slash = rest.indexOf('/');
  const first = slash < 0 ? '' : rest.slice(0, slash);
  if (slash < 0 || (!/[.:]/.test(first) && first !== 'localhost' && first.toLowerCase() === first)) {
    domain = DOCKER_DOMAIN;
    path = rest;
  } else {
    domain = first;
    path = rest.slice(slash + 1);
  }
  if (domain === 'index.docker.io') domain = DOCKER_DOMAIN;
  if (domain === DOCKER_DOMAIN && !path.includes('/')) path = `library/${path}`;

  if (!DOMAIN.test(domain)) fail(`malformed registry host ${JSON.stringify(domain)}`);
  if (path.length === 0) fail('empty repository');
  for (const c of path.split('/')) {
    if (!PATH_COMPONENT.test(c)) fail(`repository component ${JSON.stringify(c)} must be lowercase letters, digits and separators`);
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

export function withDigest(ref: Reference, digest: string): Reference {
  return { domain: ref.domain, path: ref.path, digest };
}

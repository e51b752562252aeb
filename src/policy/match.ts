import { isDigest } from '../common/digest.js';
import { repositoryOf, type Reference } from '../common/reference.js';
import type { Rule } from './model.js';

/**
 * Pattern grammar (documented in README "Policy reference"):
 *   - A pattern names a repository, `registry/path`, normalized like an image reference:
 *     `nginx` means `docker.io/library/nginx`, `bitnami/*` means `docker.io/bitnami/*`.
 *   - `*` matches within one path component (no `/`); `**` matches anything, `/` included.
 *   - A pattern may pin a digest, `repo@sha256:<hex>`; it then matches only that image.
 *   - Tags are never matched: they are mutable, and containerd may hand us a name without one.
 * When several patterns match, the most specific wins: a digest-pinned pattern first, then the one
 * with the most literal characters, then the fewest wildcards, then the earliest in the file.
 */
export interface CompiledPattern {
  readonly source: string;
  readonly normalized: string;
  readonly regex: RegExp;
  readonly digest?: string;
  readonly literalChars: number;
  /** `*` counts 1 and `**` counts 2: the one that can match more is the less specific. */
  readonly wildcards: number;
}

export function validatePattern(p: string): string | undefined {
  if (p.length === 0) return 'empty pattern';
  if (/\s/.test(p)) return 'patterns cannot contain spaces';
  const at = p.indexOf('@');
  const repo = at >= 0 ? p.slice(0, at) : p;
  if (at >= 0 && !isDigest(p.slice(at + 1))) return `malformed digest in pattern ${JSON.stringify(p)}`;
  if (at >= 0 && repo.includes('*')) return 'a digest-pinned pattern cannot contain wildcards';
  if (/\*{3,}/.test(repo)) return 'use * or **, not ***';
  const last = repo.slice(repo.lastIndexOf('/') + 1);
  // Without a `/`, `a:b` is `name:tag` (a registry host alone is not a repository).
  if (last.includes(':')) return `patterns match repositories, not tags: drop ":${last.split(':')[1]}"`;
  if (!/^[a-zA-Z0-9._:\-/*[\]]+$/.test(repo)) return `invalid characters in pattern ${JSON.stringify(p)}`;
  return undefined;
}

export function compilePattern(source: string): CompiledPattern {
  const at = source.indexOf('@');
  const digest = at >= 0 ? source.slice(at + 1) : undefined;
  const normalized = normalizeRepositoryPattern(at >= 0 ? source.slice(0, at) : source);
  let re = '';
  let wildcards = 0;
  for (let i = 0; i < normalized.length; i++) {
    if (normalized[i] === '*') {
      if (normalized[i + 1] === '*') {
        re += '.*';
        wildcards += 2;
        i++;
      } else {
        re += '[^/]*';
        wildcards += 1;
      }
    } else re += normalized[i]!.replace(/[.+?^${}()|[\]\\]/g, '\\$&');
  }
  return {
    source,
    normalized: digest ? `${normalized}@${digest}` : normalized,
    regex: new RegExp(`^${re}$`),
    digest,
    literalChars: normalized.replace(/\*/g, '').length,
    wildcards,
  };
}

function normalizeRepositoryPattern(p: string): string {
  const slash = p.indexOf('/');
  const first = slash < 0 ? p : p.slice(0, slash);
  if (first.includes('*')) return p;
  const hasDomain = slash >= 0 && (/[.:]/.test(first) || first === 'localhost');
  let domain = hasDomain ? first : 'docker.io';
  let path = hasDomain ? p.slice(slash + 1) : p;
  if (domain === 'index.docker.io') domain = 'docker.io';
  if (domain === 'docker.io' && !path.includes('/') && !path.includes('*')) path = `library/${path}`;
  return path.length > 0 ? `${domain}/${path}` : domain;
}

export interface RuleMatch {
  readonly rule: Rule;
  readonly pattern: CompiledPattern;
}

/** Compiles every rule's patterns once; `find` is then a pure lookup. */
export class RuleMatcher {
  private readonly entries: { rule: Rule; pattern: CompiledPattern; order: number }[] = [];

  constructor(rules: readonly Rule[]) {
    let order = 0;
    for (const rule of rules) for (const p of rule.match) this.entries.push({ rule, pattern: compilePattern(p), order: order++ });
  }

  /** The most specific rule for `ref` pulled at `digest`, or undefined when none matches. */
  find(ref: Reference, digest: string): RuleMatch | undefined {
    const repository = repositoryOf(ref);
    let best: (typeof this.entries)[number] | undefined;
    for (const e of this.entries) {
      if (e.pattern.digest !== undefined && e.pattern.digest !== digest) continue;
      if (!e.pattern.regex.test(repository)) continue;
      if (!best || moreSpecific(e, best)) best = e;
    }
    return best && { rule: best.rule, pattern: best.pattern };
  }
}

function moreSpecific(a: { pattern: CompiledPattern; order: number }, b: { pattern: CompiledPattern; order: number }): boolean {
  const pinned = Number(a.pattern.digest !== undefined) - Number(b.pattern.digest !== undefined);
  if (pinned !== 0) return pinned > 0;
  if (a.pattern.literalChars !== b.pattern.literalChars) return a.pattern.literalChars > b.pattern.literalChars;
  if (a.pattern.wildcards !== b.pattern.wildcards) return a.pattern.wildcards < b.pattern.wildcards;
  return a.order < b.order;
}

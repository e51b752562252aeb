import { isDigest } from '../common/digest.js';
import {
  canonicalRegistryHost,
  isRegistryHost,
  repositoryOf,
  splitRepository,
  type Reference,
} from '../common/reference.js';
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
  /** Whether the pattern matches a repository name; linear in the name's length, never backtracks. */
  readonly test: (repository: string) => boolean;
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
  const host = repo.split('/')[0]!;
  const labels = host.startsWith('[') ? [] : host.replace(/:[0-9]*$/, '').split('.');
  if (repo.includes('/') && isRegistryHost(host) && labels.some((l) => l.length === 0)) {
    return `registry host ${JSON.stringify(host)} has an empty label or a trailing dot; image names cannot spell it`;
  }
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
  const tokens = tokenize(normalized);
  return {
    source,
    normalized: digest ? `${normalized}@${digest}` : normalized,
    test: (repository) => globMatches(tokens, repository),
    digest,
    literalChars: tokens.filter((t) => t !== STAR && t !== GLOBSTAR).length,
    wildcards: tokens.reduce((n, t) => n + (t === STAR ? 1 : t === GLOBSTAR ? 2 : 0), 0),
  };
}

/** A pattern token: one literal character, `*` (anything but `/`) or `**` (anything). */
type Token = string | typeof STAR | typeof GLOBSTAR;
const STAR = Symbol('*');
const GLOBSTAR = Symbol('**');

function tokenize(pattern: string): Token[] {
  const out: Token[] = [];
  for (let i = 0; i < pattern.length; i++) {
    if (pattern[i] !== '*') out.push(pattern[i]!);
    else if (pattern[i + 1] === '*') {
      out.push(GLOBSTAR);
      i++;
    } else out.push(STAR);
  }
  return out;
}

/**
 * Glob matching as a set-of-states simulation of the pattern's automaton (Thompson's construction,
 * without a regex engine): each character of the name advances every live state at once, so the cost is
 * at most len(pattern) * len(name) steps whatever the input. A backtracking RegExp took exponential time
 * on `*a*a*a...b` against a long `aaa...` name, and image names come from pod specs.
 */
export function globMatches(tokens: readonly Token[], name: string): boolean {
  const n = tokens.length;
  let live = new Uint8Array(n + 1);
  let next = new Uint8Array(n + 1);
  const close = (states: Uint8Array) => {
    // A wildcard may match nothing: a live state before one makes the state after it live too.
    for (let i = 0; i < n; i++) if (states[i] && (tokens[i] === STAR || tokens[i] === GLOBSTAR)) states[i + 1] = 1;
  };
  live[0] = 1;
  close(live);
  for (let c = 0; c < name.length; c++) {
    const ch = name[c]!;
    next.fill(0);
    let any = false;
    for (let i = 0; i < n; i++) {
      if (!live[i]) continue;
      const t = tokens[i];
      if (t === GLOBSTAR || (t === STAR && ch !== '/')) next[i] = 1;
      else if (t === ch) next[i + 1] = 1;
      else continue;
      any = true;
    }
    if (!any) return false;
    close(next);
    [live, next] = [next, live];
  }
  return live[n] === 1;
}

/** `nginx` -> `docker.io/library/nginx`, `VM:5214/**` -> `vm:5214/**`: the reference's own normalization. */
function normalizeRepositoryPattern(p: string): string {
  const slash = p.indexOf('/');
  const first = slash < 0 ? p : p.slice(0, slash);
  // A wildcard host (`*.example.com/**`, `**`) is no docker.io shorthand; only its case is folded.
  if (first.includes('*')) return slash < 0 ? p : `${canonicalRegistryHost(first)}${p.slice(slash)}`;
  if (slash < 0) return repositoryOf(splitRepository(p));
  const { domain, path } = splitRepository(p);
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
    for (const rule of rules)
      for (const p of rule.match) this.entries.push({ rule, pattern: compilePattern(p), order: order++ });
  }

  /** The most specific rule for `ref` pulled at `digest`, or undefined when none matches. */
  find(ref: Reference, digest: string): RuleMatch | undefined {
    const repository = repositoryOf(ref);
    let best: (typeof this.entries)[number] | undefined;
    for (const e of this.entries) {
      if (e.pattern.digest !== undefined && e.pattern.digest !== digest) continue;
      if (!e.pattern.test(repository)) continue;
      if (!best || moreSpecific(e, best)) best = e;
    }
    return best && { rule: best.rule, pattern: best.pattern };
  }
}

function moreSpecific(
  a: { pattern: CompiledPattern; order: number },
  b: { pattern: CompiledPattern; order: number },
): boolean {
  const pinned = Number(a.pattern.digest !== undefined) - Number(b.pattern.digest !== undefined);
  if (pinned !== 0) return pinned > 0;
  if (a.pattern.literalChars !== b.pattern.literalChars) return a.pattern.literalChars > b.pattern.literalChars;
  if (a.pattern.wildcards !== b.pattern.wildcards) return a.pattern.wildcards < b.pattern.wildcards;
  return a.order < b.order;
}

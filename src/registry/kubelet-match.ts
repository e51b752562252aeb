/**
 * kubelet's image matching, ported so that pullguard picks the same credentials kubelet does:
 *  - `urlsMatch` is kubernetes pkg/credentialprovider/keyring.go URLsMatchStr: both sides parsed as
 *    schemeless URLs, the ports equal, the same number of dot-separated host labels, each label a Go
 *    `filepath.Match` glob, and the glob's path a plain string prefix of the target's path;
 *  - `credentialKey` is BasicDockerKeyring.Add: a response's `auth` key with its scheme and a leading
 *    `/v1/` or `/v2/` removed.
 * Pure; no I/O.
 */

export interface SchemelessUrl {
  readonly host: string;
  readonly path: string;
}

// Characters Go's url.Parse accepts in a host (net/url shouldEscape in encodeHost mode).
const HOST_CHARS = /^[A-Za-z0-9\-_.~!$&'()*+,;=:[\]<>"%]*$/;

/** Go's `url.Parse("https://" + s)` reduced to host and path; undefined where Go returns an error. */
export function parseSchemelessUrl(s: string): SchemelessUrl | undefined {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: kubelet refuses URLs with control characters
  if (/[\u0000-\u001f\u007f ]/.test(s)) return undefined;
  let rest = s;
  const hash = rest.indexOf('#');
  if (hash >= 0) rest = rest.slice(0, hash);
  const q = rest.indexOf('?');
  if (q >= 0) rest = rest.slice(0, q);
  const slash = rest.indexOf('/');
  let authority = slash >= 0 ? rest.slice(0, slash) : rest;
  let path = slash >= 0 ? rest.slice(slash) : '';
  const at = authority.lastIndexOf('@');
  if (at >= 0) authority = authority.slice(at + 1);
  if (!HOST_CHARS.test(authority)) return undefined;
  // validOptionalPort: whatever follows the last ':' outside brackets is digits only.
  const close = authority.lastIndexOf(']');
  const colon = authority.lastIndexOf(':');
  if (colon > close && !/^\d*$/.test(authority.slice(colon + 1))) return undefined;
  // An IPv6 literal: nothing but an optional port may follow the bracket (url.parseHost).
  if (authority.startsWith('[') && (close < 0 || !/^(?::\d*)?$/.test(authority.slice(close + 1)))) return undefined;
  try {
    path = decodeURIComponent(path);
  } catch {
    return undefined;
  }
  return { host: authority, path };
}

/** net.SplitHostPort, falling back to the whole host without a port as keyring.go's SplitURL does. */
function splitHost(host: string): { labels: string[]; port: string } {
  let h = host;
  let port = '';
  const m = /^\[([^\]]*)\]:(\d*)$/.exec(host) ?? (/^([^:[\]]*):(\d*)$/.exec(host) as RegExpExecArray | null);
  if (m) {
    h = m[1]!;
    port = m[2]!;
  }
  return { labels: h.split('.'), port };
}

/** Go's path/filepath.Match on Unix, compiled to a RegExp; undefined for a malformed pattern (ErrBadPattern). */
export function goGlob(pattern: string): RegExp | undefined {
  const esc = (c: string) => c.replace(/[\\^$.*+?()[\]{}|/-]/g, '\\$&');
  let re = '';
  let i = 0;
  for (; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '\\') {
      if (++i >= pattern.length) return undefined;
      re += esc(pattern[i]!);
    } else if (c === '[') {
      i++;
      let cls = '';
      if (pattern[i] === '^') {
        cls = '^';
        i++;
      }
      let ranges = 0;
      for (;;) {
        if (i >= pattern.length) return undefined;
        if (pattern[i] === ']' && ranges > 0) break;
        const lo = classChar();
        if (lo === undefined) return undefined;
        let item = esc(lo);
        if (pattern[i] === '-') {
          i++;
          const hi = classChar();
          if (hi === undefined) return undefined;
          item += `-${esc(hi)}`;
        }
        cls += item;
        ranges++;
      }
      re += `[${cls}]`;
    } else re += esc(c);
  }
  try {
    return new RegExp(`^${re}$`, 's');
  } catch {
    return undefined;
  }

  // One character of a class (matchChunk's getEsc): `-` and `]` must be escaped there.
  function classChar(): string | undefined {
    let c = pattern[i];
    if (c === undefined || c === '-' || c === ']') return undefined;
    if (c === '\\') {
      i++;
      c = pattern[i];
      if (c === undefined) return undefined;
    }
    i++;
    return c;
  }
}

/** keyring.go URLsMatchStr(glob, target). A malformed glob or target never matches, as in kubelet. */
export function urlsMatch(glob: string, target: string): boolean {
  const g = parseSchemelessUrl(glob);
  const t = parseSchemelessUrl(target);
  if (!g || !t) return false;
  const gh = splitHost(g.host);
  const th = splitHost(t.host);
  if (gh.port !== th.port || gh.labels.length !== th.labels.length) return false;
  if (!t.path.startsWith(g.path)) return false;
  return gh.labels.every((label, k) => goGlob(label)?.test(th.labels[k]!) === true);
}

/** The keyring key BasicDockerKeyring.Add files a credential under; undefined where kubelet ignores the entry. */
export function credentialKey(loc: string): string | undefined {
  const value = /^https?:\/\//.test(loc) ? loc.replace(/^https?:\/\//, '') : loc;
  const u = parseSchemelessUrl(value);
  if (!u) return undefined;
  let path = u.path;
  if (path.startsWith('/v2/') || path.startsWith('/v1/')) path = path.slice(3);
  return path.length > 0 && path !== '/' ? u.host + path : u.host;
}

/** keyring.go isDefaultRegistryMatch: Docker Hub images may use credentials filed under `index.docker.io`. */
export function isDefaultRegistryMatch(image: string): boolean {
  const parts = image.split('/');
  const first = parts[0]!;
  if (first.length === 0) return false;
  if (parts.length === 1) return true;
  if (first === 'docker.io' || first === 'index.docker.io') return true;
  return !/[.:]/.test(first);
}

/**
 * BasicDockerKeyring.Lookup: every key that matches the image, most specific first (kubelet sorts its
 * index in reverse byte order), entries under one key in the order they were added.
 */
export function matchingEntries<T>(image: string, entries: readonly { key: string; value: T }[]): T[] {
  const keys = [...new Set(entries.map((e) => e.key))].sort((a, b) => (a < b ? 1 : a > b ? -1 : 0));
  const out: T[] = [];
  for (const k of keys) if (urlsMatch(k, image)) for (const e of entries) if (e.key === k) out.push(e.value);
  if (out.length === 0 && isDefaultRegistryMatch(image)) {
    for (const e of entries) if (e.key === 'index.docker.io') out.push(e.value);
  }
  return out;
}

/**
 * Registry endpoints, computed the way containerd's transfer service computes them
 * (core/remotes/docker/config/hosts.go `ConfigureHosts` + `HostDirFromRoot`), so that pullguard asks
 * the same mirrors and upstream, with the same TLS settings, that containerd pulled from.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { FileReadError, readRegularText } from '../common/files.js';
import { isAbsolute, join, posix } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { PullguardError } from '../common/errors.js';

export const DEFAULT_CONTAINERD_CONFIG = '/etc/containerd/config.toml';
/**
 * containerd 2.x's Linux default for CRI `registry.config_path`. The transfer path (2.1–2.3) passes it to
 * `HostDirFromRoot` as ONE directory, so by default it matches nothing; we copy that on purpose.
 */
export const DEFAULT_CONFIG_PATH = '/etc/containerd/certs.d:/etc/docker/certs.d';

export interface Capabilities {
  readonly pull: boolean;
  readonly resolve: boolean;
  readonly push: boolean;
  /** containerd 2.2+ `referrers`; we also ask pull-capable hosts, since answers are verified anyway. */
  readonly referrers: boolean;
}

export interface TlsSettings {
  readonly caFiles: readonly string[];
  readonly clientPairs: readonly (readonly [cert: string, key: string | undefined])[];
  readonly skipVerify?: boolean;
}

export interface Endpoint {
  scheme: 'http' | 'https';
  /** `host[:port]` as it goes on the wire. */
  readonly host: string;
  /** API root, normally `/v2`. */
  readonly path: string;
  readonly capabilities: Capabilities;
  readonly tls: TlsSettings;
  /** Try https, and drop to http for good if the server answers TLS with plain HTTP (containerd's HTTPFallback). */
  readonly httpFallback: boolean;
  readonly headers: Readonly<Record<string, readonly string[]>>;
  /** A mirror (not the namespace's own host): requests carry `?ns=<namespace>`. */
  readonly mirror: boolean;
  /** Where this endpoint was configured, for messages. */
  readonly source: string;
}

interface HostConfig {
  scheme?: string;
  host?: string;
  path?: string;
  capabilities?: Capabilities;
  caFiles?: string[];
  clientPairs?: [string, string | undefined][];
  skipVerify?: boolean;
  headers?: Record<string, string[]>;
  source: string;
}

const ALL_CAPS: Capabilities = { pull: true, resolve: true, push: true, referrers: true };

/**
 * Reads containerd's config.toml (version 2 or 3), and the files it `imports`, for the CRI
 * `registry.config_path`. Imports are applied in order after the main file, and a later value wins, as in
 * containerd's LoadConfig: the containerd-config/ drop-in is installed this way.
 * A missing file at the default location means containerd runs on defaults; a missing file the policy
 * named explicitly, or a file that does not parse, is a configuration error.
 */
export function hostsDirFromContainerdConfig(configFile: string | undefined): { dir: string; note?: string } {
  const path = configFile ?? DEFAULT_CONTAINERD_CONFIG;
  let files: ContainerdConfigFile[];
  try {
    files = loadContainerdConfigFiles(path);
  } catch (e) {
    if (e instanceof MissingConfig && e.detail?.path === path && configFile === undefined) {
      return { dir: DEFAULT_CONFIG_PATH, note: `no containerd config at ${path}; using containerd's default registry config_path (no hosts.toml)` };
    }
    throw e;
  }
  let value: string | undefined;
  for (const f of files) value = configPathOf(f.doc, f.path) ?? value;
  if (value === undefined || value === '') return { dir: DEFAULT_CONFIG_PATH };
  return { dir: value };
}

/** One parsed containerd config file. */
export interface ContainerdConfigFile {
  readonly path: string;
  readonly doc: Record<string, unknown>;
}

/**
 * containerd's config file and every file it imports, parsed, in the order containerd's LoadConfig
 * merges them: the main file, then its imports in order, then theirs (breadth first), each file once.
 * A missing main file throws MissingConfig (`isMissingContainerdConfig`); any other unreadable or
 * invalid file throws a CONTAINERD_CONFIG error naming it.
 */
export function loadContainerdConfigFiles(path: string): ContainerdConfigFile[] {
  const out: ContainerdConfigFile[] = [];
  const pending = [path];
  const seen = new Set<string>();
  while (pending.length > 0 && seen.size <= 64) {
    const next = pending.shift()!;
    if (seen.has(next)) continue;
    seen.add(next);
    const doc = readContainerdToml(next);
    out.push({ path: next, doc });
    pending.push(...importsOf(doc, next));
  }
  return out;
}

/** True for the error loadContainerdConfigFiles throws when the main file (or an import) does not exist. */
export function isMissingContainerdConfig(e: unknown): e is PullguardError {
  return e instanceof MissingConfig;
}

/** containerd's own TOML files are small; a larger one is not a config (or is /dev/zero). */
const MAX_CONFIG_FILE_BYTES = 4 * 1024 * 1024;

class MissingConfig extends PullguardError {}

function readContainerdToml(path: string): Record<string, unknown> {
  let text: string;
  try {
    const opts = { maxBytes: MAX_CONFIG_FILE_BYTES, code: 'CONTAINERD_CONFIG', what: 'containerd config' } as const;
    text = readRegularText(path, opts);
  } catch (e) {
    if (!(e instanceof FileReadError)) throw e;
    const Err = e.errno === 'ENOENT' ? MissingConfig : PullguardError;
    const why = e.errno === 'ENOENT' ? 'ENOENT' : e.why;
    const message = `cannot read containerd config ${path}: ${why}; fix registry.containerdConfig in the policy`;
    throw new Err('CONTAINERD_CONFIG', message, { path });
  }
  try {
    return parseToml(text) as Record<string, unknown>;
  } catch (e) {
    // smol-toml's TomlError carries the row and column; its message's first line does not.
    const at = e as { line?: number; column?: number };
    const where = typeof at.line === 'number' ? ` at line ${at.line}, column ${at.column ?? '?'}` : '';
    const message = `containerd config ${path} is not valid TOML${where}: ${firstLine((e as Error).message)}`;
    throw new PullguardError('CONTAINERD_CONFIG', message, { path, line: at.line, column: at.column });
  }
}

function configPathOf(doc: Record<string, unknown>, path: string): string | undefined {
  const version = typeof doc.version === 'number' ? doc.version : 1;
  const plugins = asTable(doc.plugins);
  const images = asTable(asTable(plugins['io.containerd.cri.v1.images']).registry).config_path;
  // Version 2 files keep CRI settings under the v1 grpc plugin; containerd migrates them into
  // io.containerd.cri.v1.images, overwriting keys of the same name there.
  const legacy = version <= 2 ? asTable(asTable(plugins[version === 1 ? 'cri' : 'io.containerd.grpc.v1.cri']).registry).config_path : undefined;
  const value = legacy ?? images;
  if (value !== undefined && typeof value !== 'string') {
    throw new PullguardError('CONTAINERD_CONFIG', `containerd config ${path}: registry.config_path must be a string`, { path });
  }
  return value;
}

/** `imports = ["/etc/containerd/conf.d/*.toml"]`: relative to the importing file, `*` globs in the last component, sorted. */
function importsOf(doc: Record<string, unknown>, path: string): string[] {
  const list = Array.isArray(doc.imports) ? doc.imports.filter((i): i is string => typeof i === 'string') : [];
  const base = posix.dirname(path);
  const out: string[] = [];
  for (const entry of list) {
    const full = isAbsolute(entry) ? entry : join(base, entry);
    const dir = posix.dirname(full);
    const name = posix.basename(full);
    if (!name.includes('*') && !name.includes('?')) {
      out.push(full);
      continue;
    }
    const re = new RegExp(`^${name.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]')}$`);
    let names: string[] = [];
    try {
      names = readdirSync(dir);
    } catch {
      /* a glob over a missing directory matches nothing, as filepath.Glob */
    }
    out.push(...names.filter((n) => re.test(n)).sort().map((n) => join(dir, n)));
  }
  return out;
}

/** `<dir>/<host>_<port>_`, then `<dir>/<host>:<port>`, then `<dir>/_default` (containerd's config_unix.go). */
export function hostDirectory(root: string, host: string): string | undefined {
  const candidates: string[] = [];
  const idx = host.lastIndexOf(':');
  if (idx > 0) candidates.push(join(root, `${host.slice(0, idx)}_${host.slice(idx + 1)}_`));
  candidates.push(join(root, host), join(root, '_default'));
  for (const c of candidates) {
    try {
      statSync(c);
      return c;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT' && (e as NodeJS.ErrnoException).code !== 'ENOTDIR') {
        throw new PullguardError('CONTAINERD_CONFIG', `cannot read hosts directory ${c}: ${(e as NodeJS.ErrnoException).code}`);
      }
    }
  }
  return undefined;
}

export function isLocalhost(host: string): boolean {
  let h = host;
  const m = /^\[([^\]]+)\](?::\d+)?$/.exec(h);
  if (m) h = m[1]!;
  else if (/^[^:]+:\d+$/.test(h)) h = h.slice(0, h.lastIndexOf(':'));
  if (h === 'localhost') return true;
  if (h === '::1' || /^0*:(0*:){0,6}0*1$/.test(h)) return true;
  const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(h);
  return !!v4 && Number(v4[1]) === 127 && v4.slice(2).every((p) => Number(p) <= 255);
}

function portOf(host: string): string {
  const m = /:(\d+)$/.exec(host);
  return m && !/^\[[^\]]*$/.test(host.slice(0, m.index)) ? m[1]! : '';
}

/**
 * The ordered endpoints for one registry namespace (`docker.io`, `localhost:5000`, …): the hosts.toml
 * mirrors first, then the `server` (or the namespace's own host), with containerd's defaults applied.
 */
export function endpointsFor(namespace: string, hostsRoot: string | undefined): Endpoint[] {
  let hosts: HostConfig[] | undefined;
  const dir = hostsRoot ? hostDirectory(hostsRoot, namespace) : undefined;
  if (dir) hosts = loadHostDir(dir);
  hosts ??= [{ source: 'default' }];

  const last = hosts[hosts.length - 1];
  if (last && !last.host) {
    last.path = '/v2';
    last.capabilities = ALL_CAPS;
    if (namespace === 'docker.io') {
      last.scheme = 'https';
      last.host = 'registry-1.docker.io';
    } else if (isLocalhost(namespace)) {
      last.host = namespace;
      const port = portOf(namespace);
      last.scheme = port === '' || port === '443' ? 'https' : 'http';
      if (port !== '80') last.skipVerify = true;
    } else {
      last.host = namespace;
      last.scheme = 'https';
    }
  }

  return hosts.map((h): Endpoint => {
    const tls: TlsSettings = { caFiles: h.caFiles ?? [], clientPairs: h.clientPairs ?? [], skipVerify: h.skipVerify };
    const explicitTls = h.caFiles !== undefined || h.clientPairs !== undefined || h.skipVerify !== undefined;
    let scheme = h.scheme === 'http' ? 'http' : 'https';
    let httpFallback = false;
    if (scheme === 'http' && explicitTls && portOf(h.host!) !== '80') {
      scheme = 'https';
      httpFallback = true;
    }
    const host = h.host!;
    const mirror = host !== namespace && !(namespace === 'docker.io' && host === 'registry-1.docker.io');
    return {
      scheme: scheme as 'http' | 'https',
      host,
      path: h.path ?? '/v2',
      capabilities: h.capabilities ?? ALL_CAPS,
      tls,
      httpFallback,
      headers: h.headers ?? {},
      mirror,
      source: h.source,
    };
  });
}

function loadHostDir(dir: string): HostConfig[] {
  const file = join(dir, 'hosts.toml');
  let text = '';
  try {
    text = readRegularText(file, { maxBytes: MAX_CONFIG_FILE_BYTES, code: 'CONTAINERD_CONFIG', what: 'hosts file' });
  } catch (e) {
    if (!(e instanceof FileReadError) || !e.missing) throw e;
  }
  if (text.length === 0) return loadCertFiles(dir);
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(text) as Record<string, unknown>;
  } catch (e) {
    // containerd logs and falls back to the Docker cert-file layout; doing otherwise would make us reach
    // a different registry than the pull did.
    return loadCertFiles(dir);
  }
  const out: HostConfig[] = [];
  const hostTable = asTable(doc.host);
  // smol-toml keeps table order, which is the mirror order (containerd's getSortedHosts).
  for (const [server, cfg] of Object.entries(hostTable)) out.push(parseHostConfig(server, dir, asTable(cfg), `${file} [host."${server}"]`));
  out.push(parseHostConfig(typeof doc.server === 'string' ? doc.server : '', dir, doc, `${file} server`));
  return out;
}

function parseHostConfig(server: string, baseDir: string, cfg: Record<string, unknown>, source: string): HostConfig {
  const fail = (why: string): never => {
    throw new PullguardError('CONTAINERD_CONFIG', `${source}: ${why}`);
  };
  const result: HostConfig = { source };
  if (server !== '') {
    const withScheme = server.startsWith('http') ? server : `https://${server}`;
    let u: URL;
    try {
      u = new URL(withScheme);
    } catch {
      return fail(`cannot parse server ${JSON.stringify(server)}`);
    }
    result.scheme = u.protocol.slice(0, -1);
    result.host = u.host;
    const override = cfg.override_path === true;
    let p = u.pathname === '/' ? '' : posix.normalize(u.pathname).replace(/\/+$/, '');
    if (p.length > 0) {
      if (!p.endsWith('/v2') && !override) p = `${p}/v2`;
    } else if (!override) {
      p = '/v2';
    }
    result.path = p;
  }
  if (typeof cfg.skip_verify === 'boolean') result.skipVerify = cfg.skip_verify;
  if (Array.isArray(cfg.capabilities) && cfg.capabilities.length > 0) {
    const caps = { pull: false, resolve: false, push: false, referrers: false };
    for (const c of cfg.capabilities) {
      const k = String(c).toLowerCase();
      if (k === 'pull' || k === 'resolve' || k === 'push' || k === 'referrers') caps[k] = true;
      else fail(`unknown capability ${JSON.stringify(c)}`);
    }
    result.capabilities = caps;
  }
  const abs = (p: unknown): string => {
    if (typeof p !== 'string') return fail(`expected a file path, got ${JSON.stringify(p)}`);
    return isAbsolute(p) ? p : join(baseDir, p);
  };
  if (cfg.ca !== undefined) result.caFiles = Array.isArray(cfg.ca) ? cfg.ca.map(abs) : [abs(cfg.ca)];
  if (cfg.client !== undefined) {
    const list = Array.isArray(cfg.client) ? cfg.client : [cfg.client];
    result.clientPairs = list.map((p): [string, string | undefined] => {
      if (Array.isArray(p)) {
        if (p.length !== 2) fail(`invalid client pair ${JSON.stringify(p)}`);
        return [abs(p[0]), abs(p[1])];
      }
      return [abs(p), undefined];
    });
  }
  if (cfg.header !== undefined) {
    const headers: Record<string, string[]> = {};
    for (const [k, v] of Object.entries(asTable(cfg.header))) {
      if (typeof v === 'string') headers[k] = [v];
      else if (Array.isArray(v) && v.every((x) => typeof x === 'string')) headers[k] = v as string[];
      else fail(`invalid header ${JSON.stringify(k)}`);
    }
    result.headers = headers;
  }
  return result;
}

/** Docker's certs.d layout: `*.crt` CAs, `*.cert` + `*.key` client pairs (containerd loadCertFiles). */
function loadCertFiles(dir: string): HostConfig[] {
  let names: string[] = [];
  try {
    names = readdirSync(dir);
  } catch {
    return [{ source: dir }];
  }
  const h: HostConfig = { source: dir };
  for (const n of names.sort()) {
    const p = join(dir, n);
    if (n.endsWith('.crt')) (h.caFiles ??= []).push(p);
    if (n.endsWith('.cert')) {
      const key = join(dir, `${n.slice(0, -5)}.key`);
      (h.clientPairs ??= []).push([p, existsSync(key) ? key : undefined]);
    }
  }
  return [h];
}

function asTable(v: unknown): Record<string, unknown> {
  return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

function firstLine(s: string): string {
  return s.split('\n')[0] ?? s;
}

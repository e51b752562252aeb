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
import {
  DEFAULT_CONFIG_PATH,
  DEFAULT_CONTAINERD_CONFIG,
  effectiveConfig,
  loadConfig,
  registryConfigPath,
} from '../containerd/config.js';

export { DEFAULT_CONFIG_PATH, DEFAULT_CONTAINERD_CONFIG };

/** containerd's own TOML files are small; a larger one is not a config (or is /dev/zero). */
const MAX_CONFIG_FILE_BYTES = 4 * 1024 * 1024;

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
 * The CRI `registry.config_path` containerd uses, from its config.toml and every file it imports,
 * through the one model of containerd's config (src/containerd/config.ts): the drop-in installed by
 * `pullguard node install` is found this way. A missing file at the default location means
 * containerd runs on defaults; a missing file the policy named explicitly, or a file that does not
 * parse, is a configuration error.
 */
export function hostsDirFromContainerdConfig(configFile: string | undefined): { dir: string; note?: string } {
  const path = configFile ?? DEFAULT_CONTAINERD_CONFIG;
  const loaded = loadConfig(path);
  if (loaded.files.length === 0) {
    if (configFile === undefined) {
      return {
        dir: DEFAULT_CONFIG_PATH,
        note: `no containerd config at ${path}; using containerd's default registry config_path (no hosts.toml)`,
      };
    }
    throw new PullguardError(
      'CONTAINERD_CONFIG',
      `cannot read containerd config ${path}: ENOENT; fix registry.containerdConfig in the policy`,
      { path },
    );
  }
  return { dir: registryConfigPath(effectiveConfig(loaded.files)) ?? DEFAULT_CONFIG_PATH };
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
        throw new PullguardError(
          'CONTAINERD_CONFIG',
          `cannot read hosts directory ${c}: ${(e as NodeJS.ErrnoException).code}`,
        );
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
 * The ordered endpoints for one registry namespace (`docker.io`, `localhost:5000`, ...): the hosts.toml
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
  } catch {
    // containerd logs and falls back to the Docker cert-file layout; doing otherwise would make us reach
    // a different registry than the pull did.
    return loadCertFiles(dir);
  }
  const out: HostConfig[] = [];
  const hostTable = asTable(doc.host);
  // smol-toml keeps table order, which is the mirror order (containerd's getSortedHosts).
  for (const [server, cfg] of Object.entries(hostTable))
    out.push(parseHostConfig(server, dir, asTable(cfg), `${file} [host."${server}"]`));
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

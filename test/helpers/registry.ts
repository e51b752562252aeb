import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { onFreePort, startDaemon, waitFor, type Daemon } from './proc.js';
import { tool } from './tools.js';

export interface RegistryOptions {
  /** PEM certificate and key files: serve HTTPS. */
  tls?: { cert: string; key: string };
  /** An htpasswd file (bcrypt): require basic auth. */
  htpasswd?: string;
  /** Delegate auth to a token server. */
  token?: { realm: string; service: string; issuer: string; rootCertBundle: string };
  /** Proxy (pull-through cache) for another registry: docker-registry's mirror mode. */
  proxyRemoteUrl?: string;
  /** Serve this existing storage directory (another registry's `<dir>/data`) instead of a fresh one. */
  storageDir?: string;
}

export interface Registry {
  /** `127.0.0.1:<port>`: the name images are pushed and pulled under. */
  readonly host: string;
  readonly port: number;
  readonly url: string;
  readonly dir: string;
  readonly daemon: Daemon;
  stop(): Promise<void>;
}

/** Starts a real docker-registry 2.8.3 (distribution, no referrers API) on a free loopback port. */
export function startRegistry(opts: RegistryOptions = {}): Promise<Registry> {
  return onFreePort((port) => startRegistryOn(port, opts));
}

/** startRegistry on a given port (for a port from the caller; rejects with the output if it is taken). */
export async function startRegistryOn(port: number, opts: RegistryOptions): Promise<Registry> {
  const dir = mkdtempSync(join(tmpdir(), 'pg-registry-'));
  mkdirSync(join(dir, 'data'));
  const lines = [
    'version: 0.1',
    'log: {level: info, accesslog: {disabled: false}}',
    `storage: {filesystem: {rootdirectory: ${JSON.stringify(opts.storageDir ?? join(dir, 'data'))}}, ` +
      'delete: {enabled: true}}',
    'http:',
    `  addr: 127.0.0.1:${port}`,
    '  headers: {X-Content-Type-Options: [nosniff]}',
  ];
  if (opts.tls)
    lines.push(`  tls: {certificate: ${JSON.stringify(opts.tls.cert)}, key: ${JSON.stringify(opts.tls.key)}}`);
  if (opts.htpasswd) lines.push(`auth: {htpasswd: {realm: pullguard-test, path: ${JSON.stringify(opts.htpasswd)}}}`);
  if (opts.token) {
    const t = opts.token;
    lines.push(
      `auth: {token: {realm: ${JSON.stringify(t.realm)}, service: ${JSON.stringify(t.service)}, ` +
        `issuer: ${JSON.stringify(t.issuer)}, rootcertbundle: ${JSON.stringify(t.rootCertBundle)}}}`,
    );
  }
  if (opts.proxyRemoteUrl) lines.push(`proxy: {remoteurl: ${JSON.stringify(opts.proxyRemoteUrl)}}`);
  writeFileSync(join(dir, 'config.yml'), `${lines.join('\n')}\n`);

  const daemon = startDaemon(tool('docker-registry'), ['serve', join(dir, 'config.yml')], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
  });
  const scheme = opts.tls ? 'https' : 'http';
  const url = `${scheme}://127.0.0.1:${port}`;
  // Ready when it says so in its own log: a probe connection could reach another process that took
  // the port in the meantime.
  const ready = waitFor(
    `docker-registry on ${port}`,
    () => daemon.output().includes(`listening on 127.0.0.1:${port}`),
    15_000,
    daemon,
  );
  try {
    await ready;
  } catch (e) {
    await daemon.stop();
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  return {
    host: `127.0.0.1:${port}`,
    port,
    url,
    dir,
    daemon,
    async stop() {
      await daemon.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

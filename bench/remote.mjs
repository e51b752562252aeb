// bench/run.mjs part 3: the same verifications against a registry that is really remote: every TCP
// connection goes through bench/latency-proxy.mjs (10 ms each way, plus a round trip to connect), the
// registry speaks TLS with a certificate from a private CA (given to pullguard through hosts.toml, to
// the Go CLIs through SSL_CERT_FILE), and it wants bearer tokens from a token server (bench/token-server.cjs)
// that sits behind its own latency proxy. The registry serves the storage of part 1's registry, so the
// images and signatures are the very same bytes.
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';

export const REMOTE_DELAY_MS = 10;
/**
 * The second delay the proxies switch to (bench/latency-proxy.mjs): the same command timed at both
 * gives the round trips on its critical path, (t(slow) - t(fast)) / (2 * (slow - fast)), whatever runs
 * in parallel and however the tool counts its own requests.
 */
export const REMOTE_SLOW_DELAY_MS = 50;

async function daemonPort(h, what, cmd, args) {
  const d = h.startDaemon(cmd, args, { env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } });
  await h.waitFor(what, () => /READY \d+/.test(d.output()), 15_000, d);
  return { daemon: d, port: Number(/READY (\d+)/.exec(d.output())[1]) };
}

/** Starts the remote setup; returns what the commands need and a stop(). */
export async function startRemote(h, { work, storageDir }) {
  const dir = join(work, 'remote');
  mkdirSync(dir);
  const live = [];
  // A private CA, a server certificate for 127.0.0.1 (clients reach the registry through the proxy's port)
  // and the token signer, from the tests' one PKI helper (test/helpers/pki.ts).
  const pki = new h.Pki(dir);
  const ca = await pki.issue('ca', {
    kind: 'p256',
    subject: '/CN=pullguard bench CA',
    ca: true,
    endSeconds: 2 * 86400,
  });
  const srv = await h.tlsServer(pki, 'srv', { issuer: ca });
  // Self-signed, and so its own CA: the registry's rootcertbundle, and the x5c of every token.
  const signer = await pki.issue('token', {
    kind: 'rsa2048',
    subject: '/CN=pullguard bench token issuer',
    ext: 'basicConstraints=critical,CA:TRUE\nsubjectKeyIdentifier=hash',
    endSeconds: 2 * 86400,
  });
  try {
    const token = await daemonPort(h, 'token server', process.execPath, [
      join(import.meta.dirname, 'token-server.cjs'),
      JSON.stringify({
        key: signer.key,
        cert: signer.cert,
        issuer: 'pullguard-bench',
        service: 'pullguard-bench',
      }),
    ]);
    live.push(token.daemon);
    const proxy = (port) =>
      daemonPort(h, 'latency proxy', process.execPath, [
        join(import.meta.dirname, 'latency-proxy.mjs'),
        String(port),
        String(REMOTE_DELAY_MS),
        String(REMOTE_SLOW_DELAY_MS),
      ]);
    const tokenProxy = await proxy(token.port);
    live.push(tokenProxy.daemon);
    const registry = await h.startRegistry({
      tls: { cert: srv.cert, key: srv.key },
      token: {
        realm: `http://127.0.0.1:${tokenProxy.port}/token`,
        service: 'pullguard-bench',
        issuer: 'pullguard-bench',
        rootCertBundle: signer.cert,
      },
      storageDir,
    });
    live.push(registry);
    const registryProxy = await proxy(registry.port);
    live.push(registryProxy.daemon);
    const host = `127.0.0.1:${registryProxy.port}`;
    const certsDir = join(dir, 'certs.d');
    mkdirSync(join(certsDir, host), { recursive: true });
    writeFileSync(
      join(certsDir, host, 'hosts.toml'),
      `server = "https://${host}"\n\n[host."https://${host}"]\n  capabilities = ["pull", "resolve"]\n` +
        `  ca = ${JSON.stringify(ca.cert)}\n`,
    );
    writeFileSync(
      join(dir, 'containerd.toml'),
      `version = 3\n[plugins."io.containerd.cri.v1.images".registry]\n  config_path = ${JSON.stringify(certsDir)}\n`,
    );
    const count = (d, prefix) =>
      d
        .output()
        .split('\n')
        .filter((l) => l.startsWith(prefix)).length;
    let switches = 0;
    return {
      host,
      ca: ca.cert,
      /** Both proxies to the slow delay (true) or back to the normal one; resolves once both switched. */
      async slow(on) {
        switches++;
        const done = new RegExp(`^DELAY ${on ? REMOTE_SLOW_DELAY_MS : REMOTE_DELAY_MS} ${switches}$`, 'm');
        for (const p of [tokenProxy, registryProxy]) {
          p.daemon.proc.kill(on ? 'SIGUSR1' : 'SIGUSR2');
          await h.waitFor('latency proxy delay switch', () => done.test(p.daemon.output()), 5_000, p.daemon);
        }
      },
      containerdConfig: join(dir, 'containerd.toml'),
      registry,
      /** Counters read before and after one command. */
      counters: () => ({
        log: registry.daemon.output().length,
        tokens: count(token.daemon, 'LOG '),
        conns: count(registryProxy.daemon, 'CONN ') + count(tokenProxy.daemon, 'CONN '),
      }),
      async stop() {
        for (const d of live.reverse()) await d.stop().catch(() => undefined);
      },
    };
  } catch (e) {
    for (const d of live.reverse()) await d.stop().catch(() => undefined);
    throw e;
  }
}

/** Runs one command (as run.mjs's `once`) and returns its wall time plus the round trips it made. */
export async function measureOnce(remote, c, requestsSince) {
  const before = remote.counters();
  const t0 = performance.now();
  const r = spawnSync('env', ['-i', ...c.args], { input: c.input, encoding: 'utf8', timeout: 60_000 });
  const t = performance.now() - t0;
  if (r.status !== 0) throw new Error(`${c.label}: exit ${r.status ?? r.signal}:\n${r.stdout}${r.stderr}`);
  await sleep(200); // logs arrive asynchronously
  const after = remote.counters();
  const requests = requestsSince(remote.registry, before.log);
  return { t, requests, tokens: after.tokens - before.tokens, connections: after.conns - before.conns };
}

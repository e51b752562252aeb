import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** Every daemon a test starts, so that an aborted run still stops them by PID. */
const started = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of started)
    if (p.exitCode === null && p.pid)
      try {
        process.kill(p.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
});

export interface Daemon {
  readonly proc: ChildProcess;
  readonly pid: number;
  /** Everything it printed so far (stdout and stderr). */
  output(): string;
  stop(): Promise<void>;
}

export function startDaemon(cmd: string, args: string[], opts: SpawnOptions = {}): Daemon {
  // Output goes to a file, not a pipe: a test that blocks its event loop (execFileSync of a client)
  // would stop draining a pipe, and a chatty daemon (a registry's access log) would then block on write.
  const logDir = mkdtempSync(join(tmpdir(), 'pg-daemon-'));
  const logFile = join(logDir, 'output.log');
  const fd = openSync(logFile, 'a');
  const proc = spawn(cmd, args, { ...opts, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  started.add(proc);
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  if (!proc.pid) throw new Error(`cannot start ${cmd}`);
  const output = () => {
    try {
      return readFileSync(logFile, 'utf8');
    } catch {
      return '';
    }
  };
  return {
    proc,
    pid: proc.pid,
    output,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        process.kill(proc.pid!, 'SIGTERM');
        const done = await Promise.race([
          exited.then(() => true),
          sleep(5000, undefined, { ref: false }).then(() => false),
        ]);
        if (!done) {
          process.kill(proc.pid!, 'SIGKILL');
          await exited;
        }
      }
      started.delete(proc);
      rmSync(logDir, { recursive: true, force: true });
    },
  };
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

/**
 * Starts a daemon on a port from freePort(), again on another port if the first was taken in between
 * (freePort closes its probe socket before the daemon binds: another process can win that race).
 * `start` must reject with the daemon's output (waitFor does) when the daemon exits.
 */
export async function onFreePort<T>(start: (port: number) => Promise<T>, attempts = 5): Promise<T> {
  for (let i = 1; ; i++) {
    const port = await freePort();
    try {
      return await start(port);
    } catch (e) {
      if (i >= attempts || !/address already in use|EADDRINUSE/i.test(String((e as Error).message))) throw e;
    }
  }
}

/** Polls `check` until it returns true or `timeoutMs` passes. */
export async function waitFor(
  what: string,
  check: () => Promise<boolean> | boolean,
  timeoutMs = 15_000,
  daemon?: Daemon,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    try {
      if (await check()) return;
    } catch {
      /* not yet */
    }
    if (daemon && daemon.proc.exitCode !== null)
      throw new Error(`${what}: process exited (${daemon.proc.exitCode}):\n${daemon.output().slice(-4000)}`);
    await sleep(100);
  }
  throw new Error(`${what}: not ready after ${timeoutMs}ms${daemon ? `:\n${daemon.output().slice(-4000)}` : ''}`);
}

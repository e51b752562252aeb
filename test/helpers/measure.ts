import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';

export interface MeasuredRun {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly ms: number;
  /** The highest VmHWM (peak resident set) seen in /proc/<pid>/status, in MiB. */
  readonly peakRssMiB: number;
  /** Killed by the backstop (too slow or too big): the run never answered on its own. */
  readonly killed?: 'timeout' | 'memory';
}

/**
 * Runs a process the way containerd runs a verifier and measures what matters for a hostile input:
 * exit code, stdout, wall time and peak memory. Peak RSS is polled from /proc/<pid>/status (VmHWM is
 * a high-water mark, so polling misses nothing that lasts longer than one poll). The backstops only
 * stop a runaway (the code before a fix): `killAfterMs` past containerd's 10 s limit, `killAboveMiB`
 * long before the machine suffers; the test then fails on `killed`.
 */
export function runMeasured(
  cmd: string,
  args: readonly string[],
  opts: {
    env: Record<string, string>;
    stdin?: string;
    killAfterMs?: number;
    killAboveMiB?: number;
    closeStdout?: boolean;
  },
): Promise<MeasuredRun> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const p = spawn(cmd, args, { env: opts.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let peak = 0;
    let killed: MeasuredRun['killed'];
    if (opts.closeStdout) p.stdout.destroy();
    else p.stdout.on('data', (b) => (stdout += b));
    p.stderr.on('data', (b) => (stderr += b));
    p.stdin.on('error', () => undefined);
    p.stdin.end(opts.stdin ?? '');
    const poll = setInterval(() => {
      try {
        const status = readFileSync(`/proc/${p.pid}/status`, 'utf8');
        const hwm = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? 0) / 1024;
        peak = Math.max(peak, hwm);
        if (hwm > (opts.killAboveMiB ?? 1536) && !killed) {
          killed = 'memory';
          p.kill('SIGKILL');
        }
      } catch {
        /* exited */
      }
    }, 10);
    const backstop = setTimeout(() => {
      killed = 'timeout';
      p.kill('SIGKILL');
    }, opts.killAfterMs ?? 12_000);
    p.on('close', (code, signal) => {
      clearInterval(poll);
      clearTimeout(backstop);
      resolve({
        code,
        signal,
        stdout,
        stderr,
        ms: performance.now() - t0,
        peakRssMiB: Math.round(peak),
        ...(killed ? { killed } : {}),
      });
    });
  });
}

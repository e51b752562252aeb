import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

export interface VerifierRun {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** The one line containerd turns into the event text. */
  readonly stdout: string;
  readonly stderr: string;
  /** Wall time from spawn to exit. */
  readonly ms: number;
  /** Peak resident set (VmHWM), sampled from /proc every few milliseconds: a lower bound of the true peak. */
  readonly peakRssMiB: number;
}

/**
 * Runs an image verifier exactly as containerd 2.1 does (argv, the descriptor JSON on stdin, nothing else
 * in the environment but `env`), and measures it.
 */
export function runVerifier(
  bin: string,
  image: { name: string; digest: string; mediaType: string; size: number },
  env: Record<string, string>,
  killAfterMs = 30_000,
): Promise<VerifierRun> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const args = ['-name', image.name, '-digest', image.digest, '-stdin-media-type', 'application/vnd.oci.descriptor.v1+json'];
    const p = spawn(bin, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let peakKiB = 0;
    const sample = () => {
      try {
        const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${p.pid}/status`, 'utf8'));
        if (m) peakKiB = Math.max(peakKiB, Number(m[1]));
      } catch {
        /* exited */
      }
    };
    const sampler = setInterval(sample, 5);
    const killer = setTimeout(() => p.kill('SIGKILL'), killAfterMs);
    p.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    p.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    p.on('exit', () => sample());
    p.on('close', (code, signal) => {
      clearInterval(sampler);
      clearTimeout(killer);
      resolve({ code, signal, stdout: stdout.trim(), stderr, ms: performance.now() - t0, peakRssMiB: peakKiB / 1024 });
    });
    p.stdin.on('error', () => undefined);
    p.stdin.end(JSON.stringify({ mediaType: image.mediaType, digest: image.digest, size: image.size }));
  });
}

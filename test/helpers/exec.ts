import { execFile } from 'node:child_process';

export interface ExecResult {
  /** The exit status; -1 when it did not run or was killed (timeout). */
  readonly status: number;
  readonly stdout: Buffer;
  readonly stderr: string;
}

export interface ExecOptions {
  readonly cwd?: string;
  readonly env?: NodeJS.ProcessEnv;
  readonly timeoutMs?: number;
  readonly maxBuffer?: number;
}

/**
 * The one way tests run a tool: asynchronously (in-process test servers must keep answering while it
 * runs), bounded in time (SIGKILL at the timeout), never rejecting: the caller judges the status.
 */
export function exec(cmd: string, args: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
  return new Promise((resolve) => {
    const o = {
      encoding: 'buffer' as const,
      timeout: opts.timeoutMs ?? 30_000,
      killSignal: 'SIGKILL' as const,
      maxBuffer: opts.maxBuffer ?? 64 * 1024 * 1024,
      env: opts.env,
      cwd: opts.cwd,
    };
    execFile(cmd, [...args], o, (err, stdout, stderr) => {
      const code = (err as { code?: unknown } | null)?.code;
      resolve({ status: err ? (typeof code === 'number' ? code : -1) : 0, stdout, stderr: stderr.toString() });
    });
  });
}

/** exec, and throw with the tool's stderr unless it exits 0; resolves to its stdout. */
export async function execOk(cmd: string, args: readonly string[], opts: ExecOptions = {}): Promise<Buffer> {
  const r = await exec(cmd, args, opts);
  if (r.status !== 0)
    throw new Error(`${cmd} ${args.slice(0, 2).join(' ')} failed (${r.status}): ${r.stderr.slice(-3000)}`);
  return r.stdout;
}

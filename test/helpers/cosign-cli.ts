/**
 * The real cosign CLI, sandboxed (a private HOME, no TUF cache), for the tests, and for the bench
 * through scripts/load-test-helpers.mjs.
 */
import { mkdirSync } from 'node:fs';
import { exec } from './exec.js';
import { tool } from './tools.js';

export interface CosignRun {
  readonly code: number;
  /** stdout and stderr together, for messages. */
  readonly out: string;
  readonly stdout: string;
}

/** Runs the real cosign with a private HOME (no ~/.sigstore, no TUF cache), bounded in time. */
export async function cosign(home: string, args: string[], env: Record<string, string> = {}): Promise<CosignRun> {
  mkdirSync(home, { recursive: true });
  const r = await exec(tool('cosign'), args, {
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: home,
      COSIGN_PASSWORD: '',
      COSIGN_YES: 'true',
      SIGSTORE_NO_CACHE: '1',
      ...env,
    },
    timeoutMs: 60_000,
    maxBuffer: 16 * 1024 * 1024,
  });
  if (r.status === -1) throw new Error(`cosign ${args[0]} did not run: ${r.stderr}`);
  const stdout = r.stdout.toString();
  return { code: r.status, out: `${stdout}${r.stderr}`, stdout };
}

/** Runs cosign, throws unless it exits 0, returns its stdout. */
export async function cosignOk(home: string, args: string[], env: Record<string, string> = {}): Promise<string> {
  const r = await cosign(home, args, env);
  if (r.code !== 0) throw new Error(`cosign ${args.join(' ')} failed (${r.code}):\n${r.out.slice(-3000)}`);
  return r.stdout;
}

/**
 * `cosign sign --key KEY` of a digest reference in a plain-HTTP test registry, no transparency log.
 * `bundle`: `--new-bundle-format` (true: a sigstore bundle as a referrer; false: the legacy `.sig` tag);
 * absent: cosign's default.
 */
export async function cosignSignKey(
  home: string,
  key: string,
  ref: string,
  opts: { readonly env?: Record<string, string>; readonly bundle?: boolean } = {},
): Promise<void> {
  const flags = [
    '--tlog-upload=false',
    '--use-signing-config=false',
    ...(opts.bundle === undefined ? [] : [`--new-bundle-format=${opts.bundle}`]),
    '--allow-http-registry',
    '--allow-insecure-registry',
  ];
  await cosignOk(home, ['sign', '--key', key, ...flags, '-y', ref], opts.env);
}

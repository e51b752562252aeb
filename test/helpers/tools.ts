import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

export const ROOT = join(import.meta.dirname, '..', '..');

let cached: string | undefined;

/** The bin folder of the real third-party tools (Debian sid builds), fetched once into a cache. */
export function toolsBin(): string {
  cached ??= execFileSync(join(ROOT, 'scripts/fetch-tools.sh'), {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  }).trim();
  return cached;
}

export type ToolName =
  | 'containerd'
  | 'ctr'
  | 'cosign'
  | 'notation'
  | 'oras'
  | 'docker-registry'
  | 'containerd-shim-runc-v2'
  | 'kubectl'
  | 'runc'
  | 'busybox'
  | 'dockerd';

export function tool(name: ToolName): string {
  const p = join(toolsBin(), name);
  if (!existsSync(p)) throw new Error(`tool ${name} not found at ${p}; run scripts/fetch-tools.sh`);
  return p;
}

/** The single executable under test: tests prove what users run, not the .cjs. */
/** dist/pullguard; PULLGUARD_BIN points the e2e tests at another build (e.g. main's, to see a test fail). */
export function pullguardBinary(): string {
  const p = process.env.PULLGUARD_BIN ?? join(ROOT, 'dist', 'pullguard');
  if (!existsSync(p)) throw new Error('dist/pullguard is missing: run `make build` first');
  return p;
}

import { runMeasured, type MeasuredRun } from './measure.js';

export type VerifierRun = MeasuredRun;

/**
 * Runs an image verifier exactly as containerd 2.1 does (argv, the descriptor JSON on stdin, nothing else
 * in the environment but `env`), measured (wall time, peak RSS: test/helpers/measure.ts).
 */
export async function runVerifier(
  bin: string,
  image: { name: string; digest: string; mediaType: string; size: number },
  env: Record<string, string>,
  killAfterMs = 30_000,
): Promise<VerifierRun> {
  const args = [
    '-name',
    image.name,
    '-digest',
    image.digest,
    '-stdin-media-type',
    'application/vnd.oci.descriptor.v1+json',
  ];
  const stdin = JSON.stringify({ mediaType: image.mediaType, digest: image.digest, size: image.size });
  const r = await runMeasured(bin, args, { env, stdin, killAfterMs, killAboveMiB: 4096 });
  return { ...r, stdout: r.stdout.trim() };
}

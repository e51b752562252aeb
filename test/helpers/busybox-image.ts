import { readFileSync } from 'node:fs';
import { pushTestImage, type PushedImage } from './oci.js';
import { tool } from './tools.js';

/**
 * A runnable linux/amd64 OCI image: Debian's static busybox (busybox-static, fetched by
 * scripts/fetch-tools.sh) as /bin/busybox with `entrypoint`, and a `seed` file so that each image has
 * its own digest. Pushed with the real oras to `host/repo:tag` over plain HTTP.
 */
export function pushBusyboxImage(
  host: string,
  repo: string,
  tag: string,
  entrypoint: readonly string[],
  seed: string,
): Promise<PushedImage> {
  return pushTestImage(host, repo, tag, seed, {
    files: [
      { name: 'bin/busybox', content: readFileSync(tool('busybox')), mode: 0o755 },
      { name: 'seed', content: Buffer.from(`${seed}\n`) },
    ],
    config: { Entrypoint: entrypoint, Env: ['PATH=/bin'] },
  });
}

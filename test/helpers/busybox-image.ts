import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { pushLayout, type PushedImage } from './oci.js';
import { tool } from './tools.js';

const sha = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

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
): PushedImage {
  const dir = mkdtempSync(join(tmpdir(), 'pg-bb-'));
  try {
    const rootfs = join(dir, 'rootfs');
    mkdirSync(join(rootfs, 'bin'), { recursive: true });
    copyFileSync(tool('busybox'), join(rootfs, 'bin', 'busybox'));
    chmodSync(join(rootfs, 'bin', 'busybox'), 0o755);
    writeFileSync(join(rootfs, 'seed'), `${seed}\n`);
    const tar = execFileSync(
      'tar',
      [
        '--sort=name',
        '--mtime=@0',
        '--owner=0',
        '--group=0',
        '--numeric-owner',
        '-C',
        rootfs,
        '-cf',
        '-',
        'bin',
        'seed',
      ],
      {
        maxBuffer: 64 * 1024 * 1024,
      },
    );
    const layout = join(dir, 'layout');
    const blobs = join(layout, 'blobs', 'sha256');
    mkdirSync(blobs, { recursive: true });
    const put = (b: Buffer) => {
      const d = sha(b);
      writeFileSync(join(blobs, d.slice(7)), b);
      return { digest: d, size: b.length };
    };
    const layer = put(gzipSync(tar));
    const config = put(
      Buffer.from(
        JSON.stringify({
          architecture: 'amd64',
          os: 'linux',
          config: { Entrypoint: entrypoint, Env: ['PATH=/bin'] },
          rootfs: { type: 'layers', diff_ids: [sha(tar)] },
        }),
      ),
    );
    const manifest = put(
      Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
          layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...layer }],
        }),
      ),
    );
    const top = { mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest };
    const ref = `${host}/${repo}:${tag}`;
    pushLayout(layout, top, tag, ref);
    return { ref, digest: top.digest, mediaType: top.mediaType, size: top.size };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

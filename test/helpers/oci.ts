import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { tool } from './tools.js';

export interface PushedImage {
  /** `host/repo:tag` */
  readonly ref: string;
  /** Digest of the manifest (or index) the tag points to. */
  readonly digest: string;
  readonly mediaType: string;
  readonly size: number;
}

const sha = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** A one-file tar (ustar), so each test image has a real, unpackable layer. */
function tarOneFile(name: string, content: Buffer): Buffer {
  const header = Buffer.alloc(512);
  header.write(name, 0, 100);
  header.write('0000644\0', 100);
  header.write('0000000\0', 108);
  header.write('0000000\0', 116);
  header.write(`${content.length.toString(8).padStart(11, '0')}\0`, 124);
  header.write('00000000000\0', 136);
  header.write('        ', 148);
  header.write('0', 156);
  header.write('ustar\0', 257);
  header.write('00', 263);
  let sum = 0;
  for (const b of header) sum += b;
  header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  const body = Buffer.alloc(Math.ceil(content.length / 512) * 512);
  content.copy(body);
  return Buffer.concat([header, body, Buffer.alloc(1024)]);
}

/**
 * Writes index.json (one entry, `top`, tagged `tag`) into an OCI layout whose blobs are in place and
 * pushes it with the real oras to `ref`.
 */
export function pushLayout(dir: string, top: { mediaType: string; digest: string; size: number }, tag: string, ref: string, plainHttp = true): void {
  writeFileSync(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  writeFileSync(
    join(dir, 'index.json'),
    JSON.stringify({ schemaVersion: 2, manifests: [{ ...top, annotations: { 'org.opencontainers.image.ref.name': tag } }] }),
  );
  execFileSync(tool('oras'), ['cp', '--from-oci-layout', `${dir}:${tag}`, ref, ...(plainHttp ? ['--to-plain-http'] : [])], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, HOME: dir },
    timeout: 60_000,
  });
}

/**
 * Builds a small linux/amd64 OCI image by hand (an OCI layout on disk) and pushes it with the real
 * oras to `host/repo:tag`. `seed` makes each image's content, and so its digest, unique.
 */
export function pushTestImage(host: string, repo: string, tag: string, seed: string, opts: { index?: boolean; plainHttp?: boolean } = {}): PushedImage {
  const dir = mkdtempSync(join(tmpdir(), 'pg-oci-'));
  try {
    const blobs = join(dir, 'blobs', 'sha256');
    mkdirSync(blobs, { recursive: true });
    const put = (b: Buffer) => {
      const d = sha(b);
      writeFileSync(join(blobs, d.slice(7)), b);
      return { digest: d, size: b.length };
    };
    const tar = tarOneFile('hello.txt', Buffer.from(`pullguard test image ${seed}\n`));
    const layer = put(gzipSync(tar));
    const config = put(
      Buffer.from(
        JSON.stringify({
          architecture: 'amd64',
          os: 'linux',
          config: { Cmd: ['/hello'] },
          rootfs: { type: 'layers', diff_ids: [sha(tar)] },
        }),
      ),
    );
    const manifestBytes = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
        layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...layer }],
      }),
    );
    const manifest = put(manifestBytes);
    let top = { mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest };
    if (opts.index) {
      const indexBytes = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: 'application/vnd.oci.image.index.v1+json',
          manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest, platform: { architecture: 'amd64', os: 'linux' } }],
        }),
      );
      top = { mediaType: 'application/vnd.oci.image.index.v1+json', ...put(indexBytes) };
    }
    const ref = `${host}/${repo}:${tag}`;
    pushLayout(dir, top, tag, ref, opts.plainHttp !== false);
    return { ref, digest: top.digest, mediaType: top.mediaType, size: top.size };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

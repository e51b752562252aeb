import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
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
  writeIndex(dir, top, tag);
  execFileSync(tool('oras'), ['cp', '--from-oci-layout', `${dir}:${tag}`, ref, ...(plainHttp ? ['--to-plain-http'] : [])], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, HOME: dir },
    timeout: 60_000,
  });
}

/** oci-layout and index.json (one entry, `top`, tagged `tag`) of an OCI layout whose blobs are in place. */
function writeIndex(dir: string, top: { mediaType: string; digest: string; size: number }, tag: string): void {
  writeFileSync(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  writeFileSync(
    join(dir, 'index.json'),
    JSON.stringify({ schemaVersion: 2, manifests: [{ ...top, annotations: { 'org.opencontainers.image.ref.name': tag } }] }),
  );
}

type PushOptions = { index?: boolean; plainHttp?: boolean };

/** An OCI layout on disk holding one small linux/amd64 image, and the oras command that pushes it. */
function writeLayout(host: string, repo: string, tag: string, seed: string, opts: PushOptions) {
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
    writeIndex(dir, top, tag);
    const ref = `${host}/${repo}:${tag}`;
    const args = ['cp', '--from-oci-layout', `${dir}:${tag}`, ref, ...(opts.plainHttp === false ? [] : ['--to-plain-http'])];
    const image: PushedImage = { ref, digest: top.digest, mediaType: top.mediaType, size: top.size };
    const execOpts = { env: { ...process.env, HOME: dir }, timeout: 60_000 };
    return { dir, args, image, execOpts };
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}

/**
 * Builds a small linux/amd64 OCI image by hand (an OCI layout on disk) and pushes it with the real
 * oras to `host/repo:tag`. `seed` makes each image's content, and so its digest, unique.
 * Asynchronous: the event loop keeps running while oras pushes, so in-process servers the push
 * depends on (a token server, a proxy) keep answering.
 */
export async function pushImage(host: string, repo: string, tag: string, seed: string, opts: PushOptions = {}): Promise<PushedImage> {
  const l = writeLayout(host, repo, tag, seed, opts);
  try {
    await promisify(execFile)(tool('oras'), l.args, l.execOpts);
    return l.image;
  } finally {
    rmSync(l.dir, { recursive: true, force: true });
  }
}

/**
 * pushImage, synchronously: only for tests with no in-process server on the push's path (it blocks
 * the event loop for the whole push).
 */
export function pushTestImage(host: string, repo: string, tag: string, seed: string, opts: PushOptions = {}): PushedImage {
  const l = writeLayout(host, repo, tag, seed, opts);
  try {
    execFileSync(tool('oras'), l.args, { ...l.execOpts, stdio: ['ignore', 'pipe', 'pipe'] });
    return l.image;
  } finally {
    rmSync(l.dir, { recursive: true, force: true });
  }
}

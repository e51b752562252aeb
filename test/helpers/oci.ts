import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { execOk } from './exec.js';
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

export interface TarEntry {
  readonly name: string;
  readonly content: Buffer;
  /** Octal permission bits; default 0644. */
  readonly mode?: number;
}

/**
 * A ustar archive of regular files: each test image gets a real, unpackable layer, and import archives their
 * layout.
 */
export function tar(entries: readonly TarEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const { name, content, mode = 0o644 } of entries) {
    const header = Buffer.alloc(512);
    header.write(name, 0, 100);
    header.write(`${mode.toString(8).padStart(7, '0')}\0`, 100);
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
    parts.push(header, body);
  }
  return Buffer.concat([...parts, Buffer.alloc(1024)]);
}

export interface TestImageOptions {
  readonly index?: boolean;
  /** The layer's files; default one text file made from the seed. */
  readonly files?: readonly TarEntry[];
  readonly cmd?: readonly string[];
  /** The image config's `config` object (Entrypoint, Env, ...); default `{Cmd: cmd}`. */
  readonly config?: Record<string, unknown>;
}

export interface OciLayout {
  /** `oci-layout`, `index.json` and `blobs/sha256/<hex>`: the files of an OCI image layout. */
  readonly files: readonly TarEntry[];
  readonly top: { mediaType: string; digest: string; size: number };
}

/**
 * Writes index.json (one entry, `top`, tagged `tag`) into an OCI layout whose blobs are in place and
 * pushes it with the real oras to `ref`.
 */
export async function pushLayout(
  dir: string,
  top: { mediaType: string; digest: string; size: number },
  tag: string,
  ref: string,
  plainHttp = true,
): Promise<void> {
  writeFileSync(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  writeFileSync(
    join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [{ ...top, annotations: { 'org.opencontainers.image.ref.name': tag } }],
    }),
  );
  // Asynchronous: a registry, token server or TLS front served by this test process keeps answering.
  await execOk(
    tool('oras'),
    ['cp', '--from-oci-layout', `${dir}:${tag}`, ref, ...(plainHttp ? ['--to-plain-http'] : [])],
    { env: { ...process.env, HOME: dir }, timeoutMs: 60_000 },
  );
}

/**
 * A small linux/amd64 OCI image as an OCI image layout, in memory. `seed` makes its content, and so its
 * digest, unique; the same arguments give the same digest. `name` (index.json annotations
 * `org.opencontainers.image.ref.name` = `tag` and `io.containerd.image.name` = `name`) is how
 * `oras cp --from-oci-layout` and `ctr images import` name it.
 */
export function ociLayout(tag: string, seed: string, opts: TestImageOptions & { name?: string } = {}): OciLayout {
  const files: TarEntry[] = [];
  const put = (b: Buffer) => {
    const d = sha(b);
    files.push({ name: `blobs/sha256/${d.slice(7)}`, content: b });
    return { digest: d, size: b.length };
  };
  const layerTar = tar(opts.files ?? [{ name: 'hello.txt', content: Buffer.from(`pullguard test image ${seed}\n`) }]);
  const layer = put(gzipSync(layerTar));
  const config = put(
    Buffer.from(
      JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        config: opts.config ?? { Cmd: opts.cmd ?? ['/hello'] },
        rootfs: { type: 'layers', diff_ids: [sha(layerTar)] },
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
  let top = { mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest };
  if (opts.index) {
    const indexBytes = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.index.v1+json',
        manifests: [
          {
            mediaType: 'application/vnd.oci.image.manifest.v1+json',
            ...manifest,
            platform: { architecture: 'amd64', os: 'linux' },
          },
        ],
      }),
    );
    top = { mediaType: 'application/vnd.oci.image.index.v1+json', ...put(indexBytes) };
  }
  const annotations: Record<string, string> = {
    'org.opencontainers.image.ref.name': tag,
    ...(opts.name ? { 'io.containerd.image.name': opts.name } : {}),
  };
  files.push({ name: 'oci-layout', content: Buffer.from(JSON.stringify({ imageLayoutVersion: '1.0.0' })) });
  files.push({
    name: 'index.json',
    content: Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [{ ...top, annotations }] })),
  });
  return { files, top };
}

/** An OCI image layout archive of one image named `name` (`host/repo:tag`), as `ctr images import` reads it. */
export function ociArchive(
  name: string,
  seed: string,
  opts: TestImageOptions = {},
): { archive: Buffer; digest: string; mediaType: string } {
  const layout = ociLayout(name.slice(name.lastIndexOf(':') + 1), seed, { ...opts, name });
  return { archive: tar(layout.files), digest: layout.top.digest, mediaType: layout.top.mediaType };
}

/**
 * Builds a small linux/amd64 OCI image by hand (an OCI layout on disk) and pushes it with the real
 * oras to `host/repo:tag`. `seed` makes each image's content, and so its digest, unique.
 * Asynchronous: the event loop keeps running while oras pushes, so in-process servers the push
 * depends on (a token server, a proxy) keep answering. No sleeps needed around it.
 */
export async function pushTestImage(
  host: string,
  repo: string,
  tag: string,
  seed: string,
  opts: TestImageOptions & { plainHttp?: boolean } = {},
): Promise<PushedImage> {
  const dir = mkdtempSync(join(tmpdir(), 'pg-oci-'));
  try {
    const { files, top } = ociLayout(tag, seed, opts);
    mkdirSync(join(dir, 'blobs', 'sha256'), { recursive: true });
    for (const f of files) writeFileSync(join(dir, f.name), f.content);
    const ref = `${host}/${repo}:${tag}`;
    await pushLayout(dir, top, tag, ref, opts.plainHttp !== false);
    return { ref, digest: top.digest, mediaType: top.mediaType, size: top.size };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

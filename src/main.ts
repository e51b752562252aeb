import { startupSnapshot } from 'node:v8';
import { looksLikeVerifierInvocation } from './contract/args.js';
import { runPull } from './cli/pull.js';
import { runHuman } from './cli/human.js';
import { warmUp } from './cli/warmup.js';

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
    : runHuman(
        argv,
        (l) => void (closed.stdout || process.stdout.write(`${l}\n`)),
        (l) => void (closed.stderr || process.stderr.write(`${l}\n`)),
      );
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
  warmUp().catch((e: unknown) => {
    process.stderr.write(
      `pullguard: the snapshot warm-up failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`,
    );
    process.exit(1);
  });
} else main();

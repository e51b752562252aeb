import { looksLikeVerifierInvocation } from './contract/args.js';
import { runPull } from './cli/pull.js';
import { runHuman } from './cli/human.js';

const argv = process.argv.slice(2);
const run = looksLikeVerifierInvocation(argv)
  ? runPull(argv)
  : runHuman(
      argv,
      (l) => process.stdout.write(`${l}\n`),
      (l) => process.stderr.write(`${l}\n`),
    );
run.then(
  (code) => {
    process.exitCode = code;
    // Do not wait for idle keep-alive sockets or stdin: the answer is out.
    setImmediate(() => process.exit(code));
  },
  () => process.exit(3),
);

import { PullguardError } from '../common/errors.js';

/** The flags containerd's bindir plugin passes (pkg/imageverifier/bindir/bindir.go). */
export interface VerifierArgs {
  name: string;
  digest: string;
  stdinMediaType: string;
}

const FLAGS = { name: 'name', digest: 'digest', 'stdin-media-type': 'stdinMediaType' } as const;
type FlagName = keyof typeof FLAGS;

/**
 * Parses argv with Go's `flag` package rules, which is what containerd's side speaks: `-f v`, `-f=v`,
 * `--f v`, `--f=v`. Unknown flags and positional arguments are errors: a future containerd that passes
 * something we do not understand must be denied loudly, not half-understood.
 */
export function parseVerifierArgs(argv: readonly string[]): VerifierArgs {
  const seen: Partial<Record<FlagName, string>> = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      if (i + 1 < argv.length) throw argsError(`unexpected argument ${JSON.stringify(argv[i + 1])}`);
      break;
    }
    const m = /^--?([^=-][^=]*)(?:=(.*))?$/s.exec(arg);
    if (!m) throw argsError(`unexpected argument ${JSON.stringify(arg)}`);
    const flag = m[1]!;
    if (!(flag in FLAGS)) throw argsError(`unknown flag -${flag}`);
    let value = m[2];
    if (value === undefined) {
      if (i + 1 >= argv.length) throw argsError(`flag -${flag} needs a value`);
      value = argv[++i]!;
    }
    if (seen[flag as FlagName] !== undefined) throw argsError(`flag -${flag} given twice`);
    seen[flag as FlagName] = value;
  }
  const missing = (Object.keys(FLAGS) as FlagName[]).filter((f) => !seen[f]);
  if (missing.length > 0) throw argsError(`missing ${missing.map((f) => `-${f}`).join(', ')}`);
  return { name: seen.name!, digest: seen.digest!, stdinMediaType: seen['stdin-media-type']! };
}

/** True when argv looks like a containerd invocation rather than a human subcommand. */
export function looksLikeVerifierInvocation(argv: readonly string[]): boolean {
  const first = argv[0];
  return first?.startsWith('-') === true && !['-h', '-help', '--help', '-version', '--version'].includes(first);
}

function argsError(message: string): PullguardError {
  return new PullguardError('CONTRACT_ARGS', `bad verifier arguments: ${message}`);
}

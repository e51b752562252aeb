/**
 * The flags of the commands for people (`pullguard verify|policy check|doctor|scan|cache|log|node ...`),
 * parsed by Node's util.parseArgs: `--flag value`, `--flag=value`, short `-n value`, `--` ends the flags.
 * containerd's call is not parsed here: it uses Go's single-dash flags (src/contract/args.ts).
 *
 * Every problem is a one-line CONTRACT_ARGS error (exit 2) naming the flag, then the command's usage.
 */
import { parseArgs, type ParseArgsOptionsConfig } from 'node:util';
import { PullguardError } from './errors.js';

/** Parses `args` against `options`; an empty value (`--policy=`) counts as none. */
export function parseFlags<const O extends ParseArgsOptionsConfig, const P extends boolean = false>(
  args: readonly string[],
  options: O,
  usage: string,
  allowPositionals?: P,
) {
  let parsed: ReturnType<typeof parseArgs<{ args: string[]; options: O; strict: true; allowPositionals: P }>>;
  try {
    parsed = parseArgs({ args: [...args], options, strict: true, allowPositionals: (allowPositionals ?? false) as P });
  } catch (e) {
    throw usageError(problemOf(e), usage);
  }
  for (const [name, value] of Object.entries(parsed.values)) {
    if (value === '' || (Array.isArray(value) && value.includes('')))
      throw usageError(`--${name} needs a value`, usage);
  }
  return parsed;
}

/** A CONTRACT_ARGS error: the problem on the first line, the usage after it (on the same line if it is one). */
export function usageError(problem: string, usage: string): PullguardError {
  return new PullguardError('CONTRACT_ARGS', `${problem}${usage.includes('\n') ? '\n' : '; '}${usage}`);
}

/** util.parseArgs' error, said in one line (its own messages span lines and explain `--`). */
function problemOf(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  const quoted = /'([^']*)'/.exec(err.message ?? '')?.[1] ?? '';
  const flag = /--[\w-]+/.exec(quoted)?.[0] ?? quoted.split(' ')[0]!;
  switch (err.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown option ${flag}`;
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return `unexpected argument ${JSON.stringify(quoted)}`;
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      if (/does not take an argument/.test(err.message)) return `${flag} takes no value`;
      if (/ambiguous/.test(err.message))
        return `${flag} needs a value (one that starts with - is written ${flag}=VALUE)`;
      return `${flag} needs a value`;
    default:
      return err.message?.split('\n')[0] ?? String(e);
  }
}

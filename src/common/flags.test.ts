import { describe, expect, it } from 'vitest';
import { parseFlags } from './flags.js';

const FLAGS = {
  policy: { type: 'string' },
  json: { type: 'boolean' },
  namespace: { type: 'string', short: 'n', multiple: true },
} as const;
const USAGE = 'usage: pullguard x [--policy FILE] [--json] [-n NS]';

function problem(args: string[], positionals = false): string {
  try {
    parseFlags(args, FLAGS, USAGE, positionals);
  } catch (e) {
    expect(e).toMatchObject({ code: 'CONTRACT_ARGS' });
    return (e as Error).message;
  }
  throw new Error(`accepted ${args.join(' ')}`);
}

describe('parseFlags (the commands for people)', () => {
  it('takes --flag value, --flag=value, short and repeated flags, and positionals when allowed', () => {
    const r = parseFlags(['--policy', 'p.yaml', '--json', '-n', 'a', '--namespace=b', 'ref'], FLAGS, USAGE, true);
    expect(r.values).toEqual({ policy: 'p.yaml', json: true, namespace: ['a', 'b'] });
    expect(r.positionals).toEqual(['ref']);
    expect(parseFlags(['--', '-not-a-flag'], FLAGS, USAGE, true).positionals).toEqual(['-not-a-flag']);
  });

  it('says what is wrong in one line, then the usage', () => {
    expect(problem(['--bogus'])).toBe(`unknown option --bogus; ${USAGE}`);
    expect(problem(['--bogus'], true)).toBe(`unknown option --bogus; ${USAGE}`);
    expect(problem(['-x'])).toBe(`unknown option -x; ${USAGE}`);
    expect(problem(['--policy'])).toBe(`--policy needs a value; ${USAGE}`);
    expect(problem(['-n'])).toBe(`--namespace needs a value; ${USAGE}`);
    expect(problem(['--policy='])).toBe(`--policy needs a value; ${USAGE}`);
    expect(problem(['--policy', ''])).toBe(`--policy needs a value; ${USAGE}`);
    expect(problem(['--policy', '--json'])).toBe(
      `--policy needs a value (one that starts with - is written --policy=VALUE); ${USAGE}`,
    );
    expect(problem(['--json=yes'])).toBe(`--json takes no value; ${USAGE}`);
    expect(problem(['stray'])).toBe(`unexpected argument "stray"; ${USAGE}`);
  });

  it('puts a multi-line usage on the lines after the problem', () => {
    expect(() => parseFlags(['--bogus'], FLAGS, 'usage:\n  a\n  b')).toThrow(
      /^unknown option --bogus\nusage:\n {2}a\n {2}b$/,
    );
  });
});

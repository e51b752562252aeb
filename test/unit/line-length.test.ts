import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..', '..');
const MAX = 120;
const SOURCE = /\.(ts|mjs|cjs)$/;

function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? files(join(dir, e.name)) : SOURCE.test(e.name) ? [join(dir, e.name)] : [],
  );
}

describe(`lines are at most ${MAX} characters`, () => {
  // Biome (biome.json, lineWidth 120) wraps code but never breaks string or template literals, regexes or comments;
  // this catches those. Split a long literal into joined pieces and wrap a long comment.
  it('every source file under src/, test/, scripts/ and bench/', () => {
    const offenders = ['src', 'test', 'scripts', 'bench']
      .flatMap((dir) => files(join(ROOT, dir)))
      .flatMap((f) =>
        readFileSync(f, 'utf8')
          .split('\n')
          .flatMap((line, i) =>
            line.length > MAX
              ? [`${relative(ROOT, f)}:${i + 1}: ${line.length} chars: ${line.trim().slice(0, 60)}`]
              : [],
          ),
      );
    expect(offenders, `${offenders.length} lines longer than ${MAX} characters`).toEqual([]);
  });
});

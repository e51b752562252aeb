import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..', '..');

function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? files(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

describe('source stays ASCII-only', () => {
  // One character above U+00FF anywhere in the bundle makes V8 keep the whole source as UTF-16 in the
  // startup snapshot (scripts/build.mjs fails the build on it); write such characters as \uXXXX escapes.
  it('every file under src/', () => {
    const offenders = files(join(ROOT, 'src')).flatMap((f) =>
      readFileSync(f, 'utf8')
        .split('\n')
        .flatMap((line, i) =>
          /[^\p{ASCII}]/u.test(line) ? [`${relative(ROOT, f)}:${i + 1}: ${line.trim().slice(0, 100)}`] : [],
        ),
    );
    expect(offenders).toEqual([]);
  });
});

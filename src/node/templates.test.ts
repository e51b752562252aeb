import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import * as templates from './templates.js';

test('the embedded drop-ins and example policy are the repository files, byte for byte', () => {
  const root = join(import.meta.dirname, '..', '..');
  for (const [name, file] of Object.entries(templates.TEMPLATE_SOURCES)) {
    expect(
      (templates as unknown as Record<string, string>)[name],
      `${file}: run node scripts/gen-node-templates.mjs`,
    ).toBe(readFileSync(join(root, file), 'utf8'));
  }
});

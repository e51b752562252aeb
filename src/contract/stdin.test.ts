import { PassThrough } from 'node:stream';
import { expect, test } from 'vitest';
import { readStdin } from './stdin.js';

test('reads until EOF', async () => {
  const s = new PassThrough();
  const p = readStdin(s);
  s.write('{"a":');
  s.end('1}');
  expect((await p).toString()).toBe('{"a":1}');
});

test('refuses more than the cap', async () => {
  const s = new PassThrough();
  const p = readStdin(s, 10, 1000);
  s.write(Buffer.alloc(11));
  await expect(p).rejects.toThrow(/larger than 10 bytes/);
});

test('an open stdin ends at the read deadline', async () => {
  const s = new PassThrough();
  const t0 = Date.now();
  await expect(readStdin(s, 100, 150)).rejects.toThrow(/not closed within 150ms/);
  expect(Date.now() - t0).toBeLessThan(1000);
});

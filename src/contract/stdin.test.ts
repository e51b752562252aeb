import { PassThrough } from 'node:stream';
import { expect, test } from 'vitest';
import { settlesAtDeadline } from '../../test/helpers/deadline.js';
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

test('an open stdin ends at the read deadline, not a millisecond later', async () => {
  const s = new PassThrough();
  const r = await settlesAtDeadline(150, () => readStdin(s, 100, 150));
  expect(r).toMatchObject({ status: 'rejected', reason: { message: expect.stringMatching(/not closed within 150ms/) } });
});

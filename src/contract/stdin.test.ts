import { execFileSync } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, describe, expect, test } from 'vitest';
import { settlesAtDeadline, settlesBetween } from '../../test/helpers/deadline.js';
import { readFd, readStdin } from './stdin.js';

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
  expect(r).toMatchObject({
    status: 'rejected',
    reason: { message: expect.stringMatching(/not closed within 150ms/) },
  });
});

describe('readFd (fd 0 without process.stdin)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pg-stdin-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('reads a file descriptor to its end, and refuses more than the cap', async () => {
    writeFileSync(join(dir, 'd.json'), '{"a":1}');
    const fd = openSync(join(dir, 'd.json'), 'r');
    try {
      expect((await readFd(fd)!).toString()).toBe('{"a":1}');
    } finally {
      closeSync(fd);
    }
    writeFileSync(join(dir, 'big'), Buffer.alloc(11));
    const big = openSync(join(dir, 'big'), 'r');
    try {
      await expect(readFd(big, 10, 1000)!).rejects.toThrow(/larger than 10 bytes/);
    } finally {
      closeSync(big);
    }
  });

  test('a pipe that is never closed ends at the deadline', async () => {
    execFileSync('mkfifo', [join(dir, 'fifo')]);
    const fd = openSync(join(dir, 'fifo'), constants.O_RDWR); // a writer stays: no EOF ever
    // readFd polls (0, 1, 2 .. 16 ms apart) and compares Date.now() with its start: it must end at the
    // first poll at or after the deadline, on a fake clock, whatever the machine's load.
    const r = await settlesBetween(150, 150 + 16, () => readFd(fd, 100, 150)!);
    expect(r).toMatchObject({
      status: 'rejected',
      reason: { message: expect.stringMatching(/not closed within 150ms/) },
    });
    closeSync(fd);
  });
});

import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { FileReadError, readRegularFile, readRegularText } from './files.js';

const dir = mkdtempSync(join(tmpdir(), 'pg-files-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const opts = { maxBytes: 1024, code: 'POLICY_UNREADABLE', what: 'policy' } as const;
const fifo = join(dir, 'fifo');
execFileSync('mkfifo', [fifo]);
symlinkSync(fifo, join(dir, 'link-to-fifo'));
symlinkSync('/dev/zero', join(dir, 'link-to-zero'));
writeFileSync(join(dir, 'ok'), 'hello');
writeFileSync(join(dir, 'exact'), 'x'.repeat(1024));
writeFileSync(join(dir, 'big'), 'x'.repeat(1025));
symlinkSync(join(dir, 'ok'), join(dir, 'link-to-ok'));
mkdirSync(join(dir, 'd'));

const refused = (path: string) => {
  try {
    readRegularFile(path, opts);
  } catch (e) {
    expect(e).toBeInstanceOf(FileReadError);
    return e as FileReadError;
  }
  throw new Error(`${path} was read`);
};

describe('readRegularFile (issue 8 item 3)', () => {
  test('reads a regular file, through a symlink too, up to the cap exactly', () => {
    expect(readRegularText(join(dir, 'ok'), opts)).toBe('hello');
    expect(readRegularText(join(dir, 'link-to-ok'), opts)).toBe('hello');
    expect(readRegularFile(join(dir, 'exact'), opts).length).toBe(1024);
  });
  test.each([
    ['fifo', /policy .*fifo: is a FIFO, not a regular file$/],
    ['link-to-fifo', /is a FIFO, not a regular file \(.*fifo\)/],
    ['link-to-zero', /is a character device, not a regular file \(\/dev\/zero\)/],
    ['d', /is a directory, not a regular file/],
    ['big', /is larger than 1 KiB/],
    ['missing', /no such file/],
  ])('refuses %s, quickly, with the path and the code', (name, message) => {
    const e = refused(join(dir, name));
    expect(e.code).toBe('POLICY_UNREADABLE');
    expect(e.path).toBe(join(dir, name));
    expect(e.message).toMatch(message);
  });
  test('/dev/zero and /dev/urandom are refused without reading', () => {
    expect(refused('/dev/zero').errno).toBe('ENOTREG');
    expect(refused('/dev/urandom').errno).toBe('ENOTREG');
  });
  test('a procfs file whose stat size is 0 is still capped by bytes read', () => {
    // /proc/self/maps reports size 0 but has content; a cap of 1 byte must refuse it.
    const e = (() => {
      try {
        readRegularFile('/proc/self/maps', { ...opts, maxBytes: 1 });
      } catch (err) {
        return err as FileReadError;
      }
      throw new Error('read');
    })();
    expect(e.errno).toBe('EFBIG');
  });
  test('a unix socket is refused', async () => {
    const sock = join(dir, 'sock');
    const server = createServer().listen(sock);
    await new Promise((r) => server.once('listening', r));
    try {
      expect(refused(sock).message).toMatch(/is a socket/);
    } finally {
      server.close();
    }
  });
});

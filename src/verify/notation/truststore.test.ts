import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeEach, describe, expect, test } from 'vitest';
import { clearTrustStoreCache, loadTrustStore } from './truststore.js';

const root = mkdtempSync(join(tmpdir(), 'pg-truststore-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
beforeEach(() => clearTrustStoreCache());

describe('trust store files go through the safe reader (issue 8 item 3)', () => {
  test.each([
    ['a FIFO', (p: string) => execFileSync('mkfifo', [p]), /acme\.pem is a FIFO, not a regular file/],
    ['a symlink to /dev/zero', (p: string) => symlinkSync('/dev/zero', p), /acme\.pem is a character device/],
  ])('%s named like a certificate is refused by name, at once', (name, make, message) => {
    const dir = join(root, name.replace(/\W+/g, '-'), 'x509', 'ca', 'acme');
    mkdirSync(dir, { recursive: true });
    make(join(dir, 'acme.pem'));
    expect(() => loadTrustStore(join(root, name.replace(/\W+/g, '-')), { type: 'ca', name: 'acme' })).toThrow(
      expect.objectContaining({ code: 'SIGNATURE_UNTRUSTED', message: expect.stringMatching(message) }),
    );
  });
});

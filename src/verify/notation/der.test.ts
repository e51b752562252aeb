import { ASN1Obj } from '@sigstore/core';
import { generateKeyPairSync } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodedLength, rawDer } from './der.js';

function certificateDer(): Buffer<ArrayBuffer> {
  const dir = mkdtempSync(join(tmpdir(), 'pg-der-'));
  try {
    const key = join(dir, 'k.pem');
    writeFileSync(
      key,
      generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }),
    );
    execFileSync(
      'openssl',
      ['req', '-x509', '-key', key, '-out', join(dir, 'c.pem'), '-subj', '/C=US/O=Notary/CN=der test', '-days', '2'],
      { stdio: 'pipe' },
    );
    return Buffer.from(
      readFileSync(join(dir, 'c.pem'), 'utf8')
        .replace(/-----[^-]+-----/g, '')
        .replace(/\s+/g, ''),
      'base64',
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const isDer = (root: ASN1Obj, input: Buffer) => Buffer.from(root.toDER()).equals(input);

describe('DER without re-encoding (der.ts)', () => {
  const der = certificateDer();

  it('every node of a certificate: rawDer is exactly toDER, encodedLength its length', () => {
    const walk = (o: ASN1Obj): number => {
      expect(Buffer.from(rawDer(o)).equals(Buffer.from(o.toDER()))).toBe(true);
      expect(encodedLength(o)).toBe(o.toDER().length);
      return 1 + o.subs.reduce((n, s) => n + walk(s), 0);
    };
    expect(walk(ASN1Obj.parseBuffer(der))).toBeGreaterThan(20);
  });

  it('a non-minimal length (BER) fails the length check, as toDER() did', () => {
    // 30 82 LL LL -> 30 83 00 LL LL: the same certificate, its outer length in one byte too many.
    const ber: Buffer<ArrayBuffer> = Buffer.concat([Buffer.from([0x30, 0x83, 0x00]), der.subarray(2)]);
    const root = ASN1Obj.parseBuffer(ber);
    expect(isDer(root, ber)).toBe(false);
    expect(encodedLength(root) === ber.length).toBe(false);
  });

  it('agrees with toDER() on mutated certificates (fuzz)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(der.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
        (edits) => {
          const m: Buffer<ArrayBuffer> = Buffer.from(der);
          for (const [i, b] of edits) m[i] = b;
          let root: ASN1Obj;
          try {
            root = ASN1Obj.parseBuffer(m);
          } catch {
            return;
          }
          expect(encodedLength(root) === m.length).toBe(isDer(root, m));
        },
      ),
      { numRuns: 500 },
    );
  });
});

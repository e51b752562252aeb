import { createHash, generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parsePublicKey } from './cosign.js';

describe('cosign key hint', () => {
  it('is base64(SHA-256(SPKI DER)) for every key type, from SPKI and PKCS#1 PEM alike', () => {
    const pairs = [
      generateKeyPairSync('ec', { namedCurve: 'P-256' }),
      generateKeyPairSync('ec', { namedCurve: 'P-384' }),
      generateKeyPairSync('rsa', { modulusLength: 2048 }),
      generateKeyPairSync('ed25519'),
    ];
    for (const { publicKey } of pairs) {
      const want = createHash('sha256')
        .update(publicKey.export({ type: 'spki', format: 'der' }))
        .digest('base64');
      expect(parsePublicKey(publicKey.export({ type: 'spki', format: 'pem' }), 'k').hint).toBe(want);
      if (publicKey.asymmetricKeyType === 'rsa')
        expect(parsePublicKey(publicKey.export({ type: 'pkcs1', format: 'pem' }), 'k').hint).toBe(want);
    }
  });
});

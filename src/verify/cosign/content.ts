import { createHash, timingSafeEqual, verify, type KeyObject } from 'node:crypto';

/**
 * @sigstore/verify's SignatureContent for the two things cosign signs. The library's own DSSE content
 * lets OpenSSL pick the digest (SHA-256 for every EC key), but cosign 3.1.1 signs with the digest that
 * matches the curve (P-384: SHA-384, P-521: SHA-512; observed with the real binary), so the hash is
 * chosen from the key here. RSA is PKCS#1 v1.5 with SHA-256; Ed25519 is verified as pure Ed25519
 * (RFC 8032), which is what cosign's verifier and the sigstore bundle spec (PKIX_ED25519) use.
 */
export function hashForKey(key: KeyObject): string | null {
  if (key.asymmetricKeyType === 'ed25519') return null;
  if (key.asymmetricKeyType === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    return curve === 'secp384r1' ? 'sha384' : curve === 'secp521r1' ? 'sha512' : 'sha256';
  }
  return 'sha256';
}

function verifyWith(data: Buffer, key: KeyObject, signature: Buffer): boolean {
  try {
    return verify(hashForKey(key), data, key, signature);
  } catch {
    // A malformed signature (bad DER, wrong length) is just a failed verification.
    return false;
  }
}

function equal(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

abstract class Content {
  constructor(readonly signature: Buffer) {}
  compareSignature(signature: Buffer): boolean {
    return equal(signature, this.signature);
  }
  abstract compareDigest(digest: Buffer): boolean;
  abstract verifySignature(key: KeyObject): boolean;
}

/** The legacy layout: the signature covers the simple-signing payload bytes as stored. */
export class MessageContent extends Content {
  constructor(
    readonly payload: Buffer,
    signature: Buffer,
  ) {
    super(signature);
  }
  /** Rekor's hashedrekord entry records SHA-256 of the payload. */
  compareDigest(digest: Buffer): boolean {
    return equal(digest, createHash('sha256').update(this.payload).digest());
  }
  verifySignature(key: KeyObject): boolean {
    return verifyWith(this.payload, key, this.signature);
  }
}

/** The bundle layout: the signature covers the DSSE pre-authentication encoding of the statement. */
export class DsseContent extends Content {
  constructor(
    readonly payloadType: string,
    readonly payload: Buffer,
    signature: Buffer,
  ) {
    super(signature);
  }
  compareDigest(digest: Buffer): boolean {
    return equal(digest, createHash('sha256').update(this.payload).digest());
  }
  get preAuthEncoding(): Buffer {
    const type = Buffer.from(this.payloadType, 'utf8');
    return Buffer.concat([
      Buffer.from(`DSSEv1 ${type.length} `),
      type,
      Buffer.from(` ${this.payload.length} `),
      this.payload,
    ]);
  }
  verifySignature(key: KeyObject): boolean {
    return verifyWith(this.preAuthEncoding, key, this.signature);
  }
}

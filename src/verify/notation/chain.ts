import { constants, verify as cryptoVerify } from 'node:crypto';
import { isIssuedBy, isSelfSigned, OID, parseCertificate, type Certificate } from './certificate.js';
import type { Algorithm, Envelope } from './envelope.js';
import { MalformedInputError } from '../../common/malformed.js';

/**
 * The certificate requirements of the Notary Project signature specification, as notation-core-go
 * applies them (x509/cert_validations.go): leaf -> root order, every link issued by the next, a
 * self-signed root at the end and nowhere else, CA and leaf extension rules, key sizes, no SHA-1.
 * Validity periods are not checked here: that is the authentic-timestamp check's job.
 */
export function validateCodeSigningChain(chain: readonly Certificate[]): void {
  validateChain(chain, 'codeSigning');
}

export function validateTimestampingChain(chain: readonly Certificate[], opts: { leafOnly?: boolean } = {}): void {
  if (opts.leafOnly) {
    for (const c of chain) checkCryptography(c);
    validateLeaf(chain[0]!, 'timeStamping');
    return;
  }
  validateChain(chain, 'timeStamping');
}

function validateChain(chain: readonly Certificate[], purpose: 'codeSigning' | 'timeStamping'): void {
  if (chain.length === 0) throw new MalformedInputError('certificate chain is empty');
  for (const c of chain) checkCryptography(c);
  if (chain.length === 1) {
    const leaf = chain[0]!;
    if (!isSelfSigned(leaf))
      throw new MalformedInputError(
        `invalid self-signed certificate ${leaf.subjectText}: a chain of one must be a self-signed signing certificate`,
      );
    validateLeaf(leaf, purpose);
    return;
  }
  chain.forEach((cert, i) => {
    const last = i === chain.length - 1;
    if (last) {
      if (!isSelfSigned(cert))
        throw new MalformedInputError(
          `root certificate ${cert.subjectText} is not self-signed; the chain must end with a self-signed root`,
        );
    } else {
      if (isSelfSigned(cert))
        throw new MalformedInputError(
          `${i === 0 ? 'leaf' : 'intermediate'} certificate ${cert.subjectText} is self-signed; ` +
            'only the last certificate may be',
        );
      const parent = chain[i + 1]!;
      if (!isIssuedBy(cert, parent))
        throw new MalformedInputError(
          `certificate ${cert.subjectText} is not issued by ${parent.subjectText} (the chain must be leaf -> root)`,
        );
    }
    if (i === 0) validateLeaf(cert, purpose);
    else validateCa(cert, i - 1, purpose === 'timeStamping');
  });
}

function checkCryptography(c: Certificate): void {
  if (c.signatureHash === 'sha1' || c.signatureHash === 'md5' || c.signatureHash.startsWith('unknown')) {
    throw new MalformedInputError(
      `certificate ${c.subjectText} is signed with ${c.signatureHash}, which is not allowed`,
    );
  }
  if (c.key.type === 'rsa') {
    if (c.key.bits < 2048)
      throw new MalformedInputError(
        `certificate ${c.subjectText}: RSA key of ${c.key.bits} bits is too small (at least 2048)`,
      );
  } else if (c.key.type === 'ec') {
    if (c.key.bits < 256)
      throw new MalformedInputError(
        `certificate ${c.subjectText}: EC key on ${(c.key as { curve?: string }).curve} is not supported ` +
          '(P-256, P-384 or P-521)',
      );
  } else {
    throw new MalformedInputError(
      `certificate ${c.subjectText}: ${c.key.type} keys are not supported (RSA or EC only)`,
    );
  }
}

function validateCa(c: Certificate, expectedPathLen: number, timestamp: boolean): void {
  const bc = c.basicConstraints;
  if (!bc?.ca || !bc.critical)
    throw new MalformedInputError(
      `CA certificate ${c.subjectText}: basicConstraints must be present, critical, with cA=true`,
    );
  if (bc.pathLen !== undefined && bc.pathLen < expectedPathLen) {
    throw new MalformedInputError(
      `CA certificate ${c.subjectText}: pathLenConstraint ${bc.pathLen} is below the ${expectedPathLen} ` +
        'intermediate(s) under it',
    );
  }
  const ku = c.keyUsage;
  if (!ku) throw new MalformedInputError(`CA certificate ${c.subjectText}: keyUsage extension must be present`);
  if (!ku.critical && !timestamp)
    throw new MalformedInputError(`CA certificate ${c.subjectText}: keyUsage extension must be critical`);
  if (!ku.bits.has('keyCertSign'))
    throw new MalformedInputError(`CA certificate ${c.subjectText}: keyUsage must include keyCertSign`);
}

function validateLeaf(c: Certificate, purpose: 'codeSigning' | 'timeStamping'): void {
  if (c.basicConstraints?.ca)
    throw new MalformedInputError(`signing certificate ${c.subjectText}: basicConstraints cA must be false`);
  const ku = c.keyUsage;
  if (!ku) throw new MalformedInputError(`signing certificate ${c.subjectText}: keyUsage extension must be present`);
  if (!ku.critical && purpose === 'codeSigning')
    throw new MalformedInputError(`signing certificate ${c.subjectText}: keyUsage extension must be critical`);
  if (!ku.bits.has('digitalSignature'))
    throw new MalformedInputError(`signing certificate ${c.subjectText}: keyUsage must include digitalSignature`);
  const forbidden = [...ku.bits].filter((b) => b !== 'digitalSignature');
  if (forbidden.length > 0)
    throw new MalformedInputError(
      `signing certificate ${c.subjectText}: keyUsage must be digitalSignature only, found ${forbidden.join(', ')}`,
    );
  const eku = c.extKeyUsage;
  if (purpose === 'timeStamping') {
    if (eku?.oids.length !== 1 || eku.oids[0] !== OID.ekuTimeStamping || !eku.critical) {
      throw new MalformedInputError(
        `TSA certificate ${c.subjectText}: extendedKeyUsage must be critical and timeStamping only`,
      );
    }
    return;
  }
  if (eku) {
    const bad: Record<string, string> = {
      [OID.ekuAny]: 'anyExtendedKeyUsage',
      [OID.ekuServerAuth]: 'serverAuth',
      [OID.ekuClientAuth]: 'clientAuth',
      [OID.ekuEmailProtection]: 'emailProtection',
      [OID.ekuTimeStamping]: 'timeStamping',
      [OID.ekuOcspSigning]: 'OCSPSigning',
    };
    for (const o of eku.oids)
      if (bad[o])
        throw new MalformedInputError(
          `signing certificate ${c.subjectText}: extendedKeyUsage must not contain ${bad[o]}`,
        );
  }
  if (purpose === 'codeSigning' && !algorithmForKey(c)) {
    throw new MalformedInputError(
      `signing certificate ${c.subjectText}: unsupported key (${c.key.type} ${c.key.bits}); ` +
        'RSA 2048/3072/4096 or EC P-256/P-384/P-521',
    );
  }
}

/** The one signature algorithm notation allows for a leaf key (signature-specification: algorithm selection). */
export function algorithmForKey(c: Certificate): Algorithm | undefined {
  if (c.key.type === 'rsa')
    return ({ 2048: 'PS256', 3072: 'PS384', 4096: 'PS512' } as const)[c.key.bits as 2048 | 3072 | 4096];
  if (c.key.type === 'ec')
    return ({ 256: 'ES256', 384: 'ES384', 521: 'ES512' } as const)[c.key.bits as 256 | 384 | 521];
  return undefined;
}

const HASH: Record<Algorithm, { hash: string; len: number }> = {
  PS256: { hash: 'sha256', len: 32 },
  PS384: { hash: 'sha384', len: 48 },
  PS512: { hash: 'sha512', len: 64 },
  ES256: { hash: 'sha256', len: 32 },
  ES384: { hash: 'sha384', len: 48 },
  ES512: { hash: 'sha512', len: 64 },
};

/**
 * Integrity: parses the chain, applies the certificate rules, checks that `alg` is the one the leaf key
 * implies, and verifies the signature. RSA is PSS with MGF1(same hash) and salt = hash length, exactly;
 * ECDSA is raw r||s. Throws MalformedInputError; returns the parsed chain.
 */
export function verifyEnvelopeSignature(env: Envelope): Certificate[] {
  const chain = env.certChain.map((der) => parseCertificate(der));
  validateCodeSigningChain(chain);
  const leaf = chain[0]!;
  const expected = algorithmForKey(leaf);
  if (expected !== env.alg) {
    throw new MalformedInputError(
      `signature algorithm ${env.alg} does not match the signing key ` +
        `(${leaf.key.type} ${leaf.key.bits} bits requires ${expected ?? 'nothing supported'})`,
    );
  }
  const { hash, len } = HASH[env.alg];
  const ok = env.alg.startsWith('PS')
    ? cryptoVerify(
        hash,
        env.signedBytes,
        { key: leaf.publicKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: len },
        env.signature,
      )
    : cryptoVerify(hash, env.signedBytes, { key: leaf.publicKey, dsaEncoding: 'ieee-p1363' }, env.signature);
  if (!ok)
    throw new MalformedInputError(
      'signature does not verify with the signing certificate key (the envelope or payload was altered)',
    );
  return chain;
}

import { existsSync, readdirSync, statSync } from 'node:fs';
import { FileReadError, readRegularFile } from '../../common/files.js';
import { join } from 'node:path';
import { certificatesFromFile, isSelfSigned, parseCertificate, type Certificate } from './certificate.js';
import { MalformedInputError } from '../../common/malformed.js';
import type { TrustStoreRef } from '../../policy/notation/trust-policy.js';

const CERT_FILE = /\.(crt|cer|pem)$/i;
const MAX_CERT_FILE = 1024 * 1024;
const cache = new Map<string, Certificate[]>();

/**
 * One named store, `<truststore>/x509/<type>/<name>/*.{crt,cer,pem}` (PEM bundles or DER), loaded once
 * per process. Like notation, a missing or empty store, an unreadable file, or a `ca`/`signingAuthority`
 * certificate that is neither a CA nor self-signed is an error (it fails authenticity, never passes it).
 */
export function loadTrustStore(truststoreDir: string, ref: TrustStoreRef): Certificate[] {
  const dir = join(truststoreDir, 'x509', ref.type, ref.name);
  const hit = cache.get(dir);
  if (hit) return hit;
  if (!existsSync(dir) || !statSync(dir).isDirectory())
    throw new MalformedInputError(`trust store ${ref.type}:${ref.name} does not exist (${dir})`, 'SIGNATURE_UNTRUSTED');
  const certs: Certificate[] = [];
  for (const f of readdirSync(dir).sort()) {
    const p = join(dir, f);
    // Like notation, subdirectories are skipped; every other entry must be a readable certificate file.
    if (statSync(p, { throwIfNoEntry: false })?.isDirectory()) continue;
    if (!CERT_FILE.test(f))
      throw new MalformedInputError(
        `trust store ${ref.type}:${ref.name}: ${f} is not a .crt, .cer or .pem file`,
        'SIGNATURE_UNTRUSTED',
      );
    let bytes: Buffer;
    try {
      bytes = readRegularFile(p, { maxBytes: MAX_CERT_FILE, code: 'SIGNATURE_UNTRUSTED', what: 'certificate' });
    } catch (e) {
      if (!(e instanceof FileReadError)) throw e;
      throw new MalformedInputError(`trust store ${ref.type}:${ref.name}: ${f} ${e.why}`, 'SIGNATURE_UNTRUSTED');
    }
    const ders = certificatesFromFile(bytes);
    if (ders.length === 0)
      throw new MalformedInputError(
        `trust store ${ref.type}:${ref.name}: ${f} holds no certificate`,
        'SIGNATURE_UNTRUSTED',
      );
    for (const der of ders) {
      let c: Certificate;
      try {
        c = parseCertificate(der);
      } catch (e) {
        throw new MalformedInputError(
          `trust store ${ref.type}:${ref.name}: ${f}: ${(e as Error).message}`,
          'SIGNATURE_UNTRUSTED',
        );
      }
      if (!c.basicConstraints?.ca && !isSelfSigned(c)) {
        throw new MalformedInputError(
          `trust store ${ref.type}:${ref.name}: ${f} (${c.subjectText}) ` +
            'is not a CA certificate or a self-signed signing certificate',
          'SIGNATURE_UNTRUSTED',
        );
      }
      certs.push(c);
    }
  }
  if (certs.length === 0)
    throw new MalformedInputError(
      `trust store ${ref.type}:${ref.name} has no certificates (${dir})`,
      'SIGNATURE_UNTRUSTED',
    );
  cache.set(dir, certs);
  return certs;
}

/** For tests that rewrite stores between cases. */
export function clearTrustStoreCache(): void {
  cache.clear();
}

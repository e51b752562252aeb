import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { certificatesFromFile, isSelfSigned, parseCertificate, type Certificate } from './certificate.js';
import { NotationFormatError } from './errors.js';
import { parseTrustPolicyDocument, type Statement, type TrustStoreRef } from './trustpolicy.js';

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
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new NotationFormatError(`trust store ${ref.type}:${ref.name} does not exist (${dir})`, 'SIGNATURE_UNTRUSTED');
  const certs: Certificate[] = [];
  for (const f of readdirSync(dir).sort()) {
    const p = join(dir, f);
    const st = statSync(p);
    if (!st.isFile()) continue;
    if (!CERT_FILE.test(f)) throw new NotationFormatError(`trust store ${ref.type}:${ref.name}: ${f} is not a .crt, .cer or .pem file`, 'SIGNATURE_UNTRUSTED');
    if (st.size > MAX_CERT_FILE) throw new NotationFormatError(`trust store ${ref.type}:${ref.name}: ${f} is larger than 1 MiB`, 'SIGNATURE_UNTRUSTED');
    const ders = certificatesFromFile(readFileSync(p));
    if (ders.length === 0) throw new NotationFormatError(`trust store ${ref.type}:${ref.name}: ${f} holds no certificate`, 'SIGNATURE_UNTRUSTED');
    for (const der of ders) {
      let c: Certificate;
      try {
        c = parseCertificate(der);
      } catch (e) {
        throw new NotationFormatError(`trust store ${ref.type}:${ref.name}: ${f}: ${(e as Error).message}`, 'SIGNATURE_UNTRUSTED');
      }
      if (!c.basicConstraints?.ca && !isSelfSigned(c)) {
        throw new NotationFormatError(`trust store ${ref.type}:${ref.name}: ${f} (${c.subjectText}) is not a CA certificate or a self-signed signing certificate`, 'SIGNATURE_UNTRUSTED');
      }
      certs.push(c);
    }
  }
  if (certs.length === 0) throw new NotationFormatError(`trust store ${ref.type}:${ref.name} has no certificates (${dir})`, 'SIGNATURE_UNTRUSTED');
  cache.set(dir, certs);
  return certs;
}

/** For tests that rewrite stores between cases. */
export function clearTrustStoreCache(): void {
  cache.clear();
}

export interface NotationConfig {
  readonly source: string;
  readonly truststoreDir: string;
  readonly statements: readonly Statement[];
}

/**
 * A notation configuration directory as notation itself reads it: `trustpolicy.oci.json` (notation
 * 1.2+) or else `trustpolicy.json`, plus `truststore/`. Throws POLICY_* errors at load.
 */
export function loadNotationConfigDir(dir: string): NotationConfig {
  const candidates = ['trustpolicy.oci.json', 'trustpolicy.json'].map((f) => join(dir, f));
  const file = candidates.find((f) => existsSync(f));
  if (!file) throw new NotationFormatError(`notation configuration ${dir} has no trustpolicy.oci.json or trustpolicy.json`, 'POLICY_MISSING');
  let text: string;
  try {
    if (statSync(file).size > 4 * 1024 * 1024) throw new NotationFormatError(`${file} is larger than 4 MiB`, 'POLICY_INVALID');
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if (e instanceof NotationFormatError) throw e;
    throw new NotationFormatError(`cannot read notation trust policy ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, 'POLICY_UNREADABLE');
  }
  return { source: file, truststoreDir: join(dir, 'truststore'), statements: parseTrustPolicyDocument(text, file) };
}

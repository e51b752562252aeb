import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

/** A self-signed P-256 certificate for 127.0.0.1 (openssl), as `dir`/`names.key` and `dir`/`names.cert`. */
export function selfSignedLoopbackCert(dir: string, names = { key: 'k.pem', cert: 'c.pem' }) {
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      names.key,
      '-out',
      names.cert,
      '-subj',
      '/CN=127.0.0.1',
      '-days',
      '2',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
    ],
    { cwd: dir, stdio: 'pipe' },
  );
  return { key: join(dir, names.key), cert: join(dir, names.cert) };
}

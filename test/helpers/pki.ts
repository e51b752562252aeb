import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execOk } from './exec.js';

/**
 * The one test-time PKI: `openssl ca` (so validity can be set to the second), run asynchronously through
 * test/helpers/exec.ts (in-process test servers keep answering meanwhile). Notation's trust stores,
 * cosign's --certificate-chain and the ATProto test PDS's TLS chain are all built with it, and the
 * differential tests check that the real notation and cosign accept what it issues.
 */
export type KeyKind = 'rsa2048' | 'rsa3072' | 'rsa4096' | 'p256' | 'p384';

export interface Issued {
  readonly key: string;
  readonly cert: string;
  readonly subject: string;
}

export interface IssueOptions {
  readonly kind: KeyKind;
  /** An openssl -subj string, e.g. `/O=Acme/CN=leaf`. */
  readonly subject: string;
  /** Self-signed when undefined. */
  readonly issuer?: Issued;
  /** The default CA extensions (with `pathLen`) instead of the default code-signing leaf ones. */
  readonly ca?: boolean;
  readonly pathLen?: number;
  /** notBefore, in seconds from now (default -3600: an hour ago, so clock skew never matters). */
  readonly startSeconds?: number;
  /** notAfter, in seconds from now (default 30 days); negative for a certificate already expired. */
  readonly endSeconds?: number;
  /** Replaces the default extensions. */
  readonly ext?: string;
  /** Added to the extensions. */
  readonly extraExt?: string;
  /** authorityInfoAccess OCSP location(s). */
  readonly ocsp?: string | readonly string[];
}

/** Extensions of a CA certificate (RFC 5280 4.2.1.9), optionally with a path length constraint. */
function caExt(pathLen?: number): string {
  return [
    `basicConstraints=critical,CA:TRUE${pathLen !== undefined ? `,pathlen:${pathLen}` : ''}`,
    'keyUsage=critical,keyCertSign,cRLSign',
    'subjectKeyIdentifier=hash',
  ].join('\n');
}

/** Extensions of a code-signing leaf, as notation requires (digitalSignature, EKU codeSigning). */
const CODE_SIGNING_EXT = [
  'basicConstraints=CA:FALSE',
  'keyUsage=critical,digitalSignature',
  'extendedKeyUsage=codeSigning',
  'subjectKeyIdentifier=hash',
].join('\n');

/** openssl's GeneralizedTime, YYYYMMDDHHMMSSZ. */
const generalizedTime = (d: Date): string => `${d.toISOString().replace(/[-:T]/g, '').slice(0, 14)}Z`;

const openssl = (args: string[]): Promise<Buffer> => execOk('openssl', args, { timeoutMs: 60_000 });

export class Pki {
  private serial = 1;
  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true });
  }

  /** A PKI in `dir`, or in a fresh temporary directory (remove it with dispose()). */
  static create(dir?: string): Pki {
    return new Pki(dir ?? mkdtempSync(join(tmpdir(), 'pg-pki-')));
  }

  dispose(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** A new private key (PKCS#8 PEM) in `<name>.key`. */
  async key(name: string, kind: KeyKind): Promise<string> {
    const out = join(this.dir, `${name}.key`);
    const alg = kind.startsWith('rsa')
      ? ['-algorithm', 'RSA', '-pkeyopt', `rsa_keygen_bits:${kind.slice(3)}`]
      : ['-algorithm', 'EC', '-pkeyopt', `ec_paramgen_curve:${kind === 'p256' ? 'P-256' : 'P-384'}`];
    await openssl(['genpkey', ...alg, '-out', out]);
    return out;
  }

  /** Issues (or self-signs when `issuer` is undefined) a certificate `<name>.crt` with `openssl ca`. */
  async issue(name: string, opts: IssueOptions): Promise<Issued> {
    const key = await this.key(name, opts.kind);
    const csr = join(this.dir, `${name}.csr`);
    await openssl(['req', '-new', '-key', key, '-subj', opts.subject, '-out', csr]);
    const cadir = join(this.dir, `ca-${name}`);
    mkdirSync(cadir, { recursive: true });
    writeFileSync(join(cadir, 'index.txt'), '');
    const hex = (this.serial++ * 7919 + 0x1000).toString(16);
    writeFileSync(join(cadir, 'serial'), `${hex.length % 2 ? `0${hex}` : hex}\n`);
    const ext = opts.ext ?? (opts.ca ? caExt(opts.pathLen) : CODE_SIGNING_EXT);
    const ocsp = opts.ocsp === undefined ? [] : typeof opts.ocsp === 'string' ? [opts.ocsp] : opts.ocsp;
    writeFileSync(
      join(cadir, 'ca.cnf'),
      [
        '[ca]',
        'default_ca=d',
        '[d]',
        `database=${join(cadir, 'index.txt')}`,
        `new_certs_dir=${cadir}`,
        `serial=${join(cadir, 'serial')}`,
        'default_md=sha256',
        'policy=p',
        'unique_subject=no',
        'email_in_dn=no',
        'preserve=yes',
        '[p]',
        'countryName=optional',
        'stateOrProvinceName=optional',
        'localityName=optional',
        'organizationName=optional',
        'organizationalUnitName=optional',
        'commonName=supplied',
        '[x]',
        ext,
        opts.extraExt ?? '',
        ocsp.length ? `authorityInfoAccess=${ocsp.map((u) => `OCSP;URI:${u}`).join(',')}` : '',
      ].join('\n'),
    );
    const cert = join(this.dir, `${name}.crt`);
    const now = Date.now();
    const start = new Date(now + (opts.startSeconds ?? -3600) * 1000);
    const end = new Date(now + (opts.endSeconds ?? 30 * 86400) * 1000);
    const args = ['ca', '-batch', '-config', join(cadir, 'ca.cnf'), '-in', csr, '-out', cert, '-extensions', 'x'];
    args.push('-notext', '-startdate', generalizedTime(start), '-enddate', generalizedTime(end));
    if (opts.issuer) args.push('-cert', opts.issuer.cert, '-keyfile', opts.issuer.key);
    else args.push('-selfsign', '-keyfile', key);
    await openssl(args);
    return { key, cert, subject: opts.subject };
  }

  /** The certificates as one PEM file, in the order given (leaf first: notation's certPath). */
  bundle(name: string, chain: readonly Issued[]): string {
    const p = join(this.dir, `${name}.chain.pem`);
    writeFileSync(p, chain.map((c) => readFileSync(c.cert, 'utf8')).join(''));
    return p;
  }
}

/** A root -> intermediate CA: what cosign's --certificate-chain and a TLS server chain need. */
export interface CaChain {
  readonly pki: Pki;
  readonly dir: string;
  readonly root: Issued;
  readonly intermediate: Issued;
  readonly rootPem: string;
  readonly intermediatePem: string;
  /** intermediate followed by root, as cosign's --certificate-chain wants it. */
  readonly chainPem: string;
}

/**
 * P-256 root and intermediate (pathlen 0) in `dir`. `name` is the CN prefix, so two chains can share
 * names but not keys (the "same names, different key" attack).
 */
export async function makeCaChain(dir: string, name = 'pullguard test'): Promise<CaChain> {
  const pki = Pki.create(dir);
  const root = await pki.issue('root', {
    kind: 'p256',
    subject: `/O=pullguard/CN=${name} root`,
    ca: true,
    endSeconds: 3650 * 86400,
  });
  const intermediate = await pki.issue('inter', {
    kind: 'p256',
    subject: `/O=pullguard/CN=${name} intermediate`,
    issuer: root,
    ext: `${caExt(0)}\nauthorityKeyIdentifier=keyid:always`,
    endSeconds: 1825 * 86400,
  });
  const rootPem = readFileSync(root.cert, 'utf8');
  const intermediatePem = readFileSync(intermediate.cert, 'utf8');
  const chainPem = pki.bundle('cosign', [intermediate, root]);
  return { pki, dir, root, intermediate, rootPem, intermediatePem, chainPem };
}

/**
 * A TLS server certificate for 127.0.0.1 and localhost (2 days), issued by `issuer`. Without one it is
 * self-signed and, as `openssl req -x509` makes it, also a CA: a client can be given it as its CA file.
 */
export function tlsServer(
  pki: Pki,
  name: string,
  opts: { issuer?: Issued; subject?: string; kind?: KeyKind } = {},
): Promise<Issued> {
  const role = opts.issuer
    ? ['basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature']
    : ['basicConstraints=critical,CA:TRUE', 'subjectKeyIdentifier=hash'];
  return pki.issue(name, {
    kind: opts.kind ?? 'p256',
    subject: opts.subject ?? '/CN=127.0.0.1',
    ...(opts.issuer ? { issuer: opts.issuer } : {}),
    ext: [...role, 'extendedKeyUsage=serverAuth', 'subjectAltName=IP:127.0.0.1,DNS:localhost'].join('\n'),
    endSeconds: 2 * 86400,
  });
}

/**
 * A self-signed P-256 certificate valid for two days, its key written to `keyOut` and its PEM to `certOut`;
 * `extensions` are openssl `-addext` values (e.g. notation's code-signing leaf rules).
 */
export async function selfSigned(
  keyOut: string,
  certOut: string,
  subject: string,
  extensions: readonly string[],
): Promise<void> {
  await openssl([
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    keyOut,
    '-out',
    certOut,
    '-subj',
    subject,
    '-days',
    '2',
    ...extensions.flatMap((e) => ['-addext', e]),
  ]);
}

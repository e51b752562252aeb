import { spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exec, execOk } from './exec.js';
import type { Issued, Pki } from './pki.js';
import { startDaemon, waitFor, type Daemon } from './proc.js';
import { tool } from './tools.js';

/**
 * PKI services for notation tests (CRLs, OCSP, RFC 3161 TSAs) over the one test PKI (test/helpers/pki.ts),
 * and a sandboxed real notation 1.3.2 (HOME and XDG_CONFIG_HOME in a temp dir) for signing and for the
 * reference verdict.
 */

/** Kept under its old name for the tests that import it from here: test/helpers/exec.ts. */
export { exec as runAsync } from './exec.js';

const openssl = (args: string[]): Promise<Buffer> => execOk('openssl', args);

const asn1Time = (d: Date) => d.toISOString().replace(/[-:T]/g, '').slice(2, 14) + 'Z';

/**
 * A CRL from `openssl ca -gencrl` for `ca`, listing `revoked`, as DER. `signer` signs it instead of the
 * CA (a CRL with the right issuer name and the wrong key); `lastUpdate`/`nextUpdate` default to an hour
 * ago and a day ahead.
 */
export async function makeCrl(
  pki: Pki,
  name: string,
  ca: Issued,
  revoked: readonly Issued[],
  opts: { signer?: Issued; lastUpdate?: Date; nextUpdate?: Date; crlExt?: string } = {},
): Promise<Buffer> {
  const dir = join(pki.dir, `crl-${name}`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'index.txt'), '');
  writeFileSync(join(dir, 'crlnumber'), '01\n');
  const cnf = join(dir, 'ca.cnf');
  writeFileSync(
    cnf,
    [
      '[ca]',
      'default_ca=d',
      '[d]',
      `database=${join(dir, 'index.txt')}`,
      `crlnumber=${join(dir, 'crlnumber')}`,
      'default_md=sha256',
      'unique_subject=no',
      'crl_extensions=crlext',
      '[crlext]',
      'authorityKeyIdentifier=keyid:always',
      opts.crlExt ?? '',
    ].join('\n'),
  );
  const signer = opts.signer ?? ca;
  const base = ['-config', cnf, '-cert', signer.cert, '-keyfile', signer.key];
  for (const r of revoked) await openssl(['ca', ...base, '-revoke', r.cert, '-crl_reason', 'keyCompromise']);
  const last = opts.lastUpdate ?? new Date(Date.now() - 3600_000);
  const next = opts.nextUpdate ?? new Date(Date.now() + 86400_000);
  const pem = join(dir, 'crl.pem');
  await openssl([
    'ca',
    ...base,
    '-gencrl',
    '-crl_lastupdate',
    asn1Time(last),
    '-crl_nextupdate',
    asn1Time(next),
    '-out',
    pem,
  ]);
  return openssl(['crl', '-in', pem, '-outform', 'DER']);
}

/** Certificate extensions for a delegated OCSP responder (RFC 6960 §4.2.2.2). */
export const OCSP_SIGNER_EXT =
  'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n' +
  'extendedKeyUsage=OCSPSigning\nsubjectKeyIdentifier=hash';

/**
 * An `openssl ca` style index.txt for `openssl ocsp -index`: one line per certificate, revoked ones ('R')
 * with a revocation time an hour ago. Certificates left out are "unknown" to the responder.
 */
export function ocspIndex(pki: Pki, name: string, entries: readonly { issued: Issued; revoked?: boolean }[]): string {
  const file = join(pki.dir, `ocsp-${name}.index.txt`);
  const t = (d: Date) => d.toISOString().replace(/[-:T]/g, '').slice(2, 14) + 'Z';
  const lines = entries.map(({ issued, revoked }) => {
    const x = new X509Certificate(readFileSync(issued.cert));
    const serial = x.serialNumber.toUpperCase();
    return [
      revoked ? 'R' : 'V',
      t(new Date(x.validTo)),
      revoked ? `${t(new Date(Date.now() - 3600_000))},keyCompromise` : '',
      serial.length % 2 ? `0${serial}` : serial,
      'unknown',
      issued.subject,
    ].join('\t');
  });
  writeFileSync(file, lines.map((l) => `${l}\n`).join(''));
  writeFileSync(`${file}.attr`, 'unique_subject = no\n');
  return file;
}

export interface OcspResponderOpts {
  /** The index from ocspIndex. */
  readonly index: string;
  /** The CA whose certificates it answers for. */
  readonly ca: Issued;
  /** Signs the responses: the CA itself, a delegated responder, or anything else. */
  readonly signer: Issued;
  /** More `openssl ocsp` options (default: `-ndays 1`). */
  readonly extra?: readonly string[];
}

const ocspArgs = (o: OcspResponderOpts) => [
  'ocsp',
  '-index',
  o.index,
  '-CA',
  o.ca.cert,
  '-rsigner',
  o.signer.cert,
  '-rkey',
  o.signer.key,
  ...(o.extra ?? ['-ndays', '1']),
];

/** Answers one DER OCSPRequest offline with `openssl ocsp -reqin … -respout …` (asynchronously). */
export async function ocspRespond(o: OcspResponderOpts, request: Buffer, workDir: string): Promise<Buffer> {
  const dir = mkdtempSync(join(workDir, 'ocsp-'));
  try {
    writeFileSync(join(dir, 'req.der'), request);
    const r = await exec(
      'openssl',
      [...ocspArgs(o), '-reqin', join(dir, 'req.der'), '-respout', join(dir, 'resp.der')],
      { timeoutMs: 15_000 },
    );
    if (r.status !== 0) throw new Error(`openssl ocsp: ${r.stderr}`);
    return readFileSync(join(dir, 'resp.der'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A real `openssl ocsp` responder daemon on 127.0.0.1:`port`; stop it with `.stop()` (by PID). */
export async function startOcspResponder(o: OcspResponderOpts, port: number): Promise<Daemon> {
  const d = startDaemon('openssl', [...ocspArgs(o), '-port', String(port), '-ignore_err']);
  // Readiness from its log, not a probe connection: openssl ocsp serves one connection at a time, and a
  // connection closed without a request leaves it waiting on that connection for good.
  await waitFor(`openssl ocsp on ${port}`, () => d.output().includes('waiting for OCSP client connections'), 15_000, d);
  return d;
}

/** An RFC 3161 TSA for `openssl ts -reply`: the signer (critical EKU timeStamping) and its chain. */
export interface Tsa {
  readonly name: string;
  readonly config: string;
}

export function makeTsa(
  pki: Pki,
  name: string,
  signer: Issued,
  chain: readonly Issued[],
  opts: { precisionDigits?: number } = {},
): Tsa {
  const dir = join(pki.dir, `tsa-${name}`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'serial'), '01\n');
  const chainPem = join(dir, 'chain.pem');
  writeFileSync(chainPem, chain.map((c) => readFileSync(c.cert, 'utf8')).join(''));
  const config = join(dir, 'tsa.cnf');
  writeFileSync(
    config,
    [
      '[tsa]',
      'default_tsa=t',
      '[t]',
      `serial=${join(dir, 'serial')}`,
      'crypto_device=builtin',
      `signer_cert=${signer.cert}`,
      `signer_key=${signer.key}`,
      `certs=${chainPem}`,
      'signer_digest=sha256',
      'default_policy=1.3.6.1.4.1.57264.99.1',
      'digests=sha256,sha384,sha512',
      'accuracy=secs:1',
      `clock_precision_digits=${opts.precisionDigits ?? 0}`,
      'ordering=no',
      'tsa_name=yes',
      'ess_cert_id_chain=no',
      'ess_cert_id_alg=sha256',
    ].join('\n'),
  );
  return { name, config };
}

/** Certificate extensions for a TSA signing certificate, as RFC 3161 and notation require. */
export const TSA_EXT =
  'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n' +
  'extendedKeyUsage=critical,timeStamping\nsubjectKeyIdentifier=hash';

/**
 * One loopback HTTP server for the PKI services a signature needs at sign or verify time: RFC 3161 TSAs
 * (POST /tsa/<name>, answered by `openssl ts -reply`, run asynchronously) and CRLs (GET /crl/<file>).
 * Counts requests per path, so tests can prove what was (not) fetched.
 */
export class PkiServer {
  readonly requests = new Map<string, number>();
  private readonly crls = new Map<string, Buffer>();
  private readonly tsas = new Map<string, Tsa>();
  private readonly ocsps = new Map<string, OcspResponderOpts>();
  private server?: Server;
  port = 0;

  constructor(private readonly workDir: string) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0]!;
      this.requests.set(path, (this.requests.get(path) ?? 0) + 1);
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        void this.answer(path, req.method ?? 'GET', Buffer.concat(chunks)).then(
          ({ status, type, body }) => {
            res.writeHead(status, { 'content-type': type, 'content-length': body.length });
            res.end(body);
          },
          (e: Error) => {
            res.writeHead(500, { 'content-type': 'text/plain' });
            res.end(e.message);
          },
        );
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    const a = this.server.address();
    this.port = typeof a === 'object' && a ? a.port : 0;
  }

  private async answer(
    path: string,
    method: string,
    body: Buffer,
  ): Promise<{ status: number; type: string; body: Buffer }> {
    const crl = path.startsWith('/crl/') ? this.crls.get(path.slice(5)) : undefined;
    if (crl && method === 'GET') return { status: 200, type: 'application/pkix-crl', body: crl };
    const tsa = path.startsWith('/tsa/') ? this.tsas.get(path.slice(5)) : undefined;
    if (tsa && method === 'POST') {
      const dir = mkdtempSync(join(this.workDir, 'tsq-'));
      try {
        writeFileSync(join(dir, 'q.tsq'), body);
        const r = await exec(
          'openssl',
          ['ts', '-reply', '-config', tsa.config, '-queryfile', join(dir, 'q.tsq'), '-out', join(dir, 'r.tsr')],
          { timeoutMs: 15_000 },
        );
        if (r.status !== 0) return { status: 500, type: 'text/plain', body: Buffer.from(r.stderr) };
        return { status: 200, type: 'application/timestamp-reply', body: readFileSync(join(dir, 'r.tsr')) };
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
    const ocsp = path.startsWith('/ocsp/') ? this.ocsps.get(path.slice(6)) : undefined;
    if (ocsp && method === 'POST')
      return { status: 200, type: 'application/ocsp-response', body: await ocspRespond(ocsp, body, this.workDir) };
    return { status: 404, type: 'text/plain', body: Buffer.from('not found') };
  }

  /** An OCSP responder at POST /ocsp/<name>, answering each request with `openssl ocsp -reqin` (asynchronously). */
  setOcsp(name: string, o: OcspResponderOpts): string {
    this.ocsps.set(name, o);
    return `${this.url}/ocsp/${name}`;
  }

  setCrl(file: string, der: Buffer): void {
    this.crls.set(file, der);
  }

  addTsa(tsa: Tsa): string {
    this.tsas.set(tsa.name, tsa);
    return `${this.url}/tsa/${tsa.name}`;
  }

  count(path: string): number {
    return this.requests.get(path) ?? 0;
  }

  async stop(): Promise<void> {
    const s = this.server;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }
}

export interface NotationSandbox {
  readonly home: string;
  /** `$XDG_CONFIG_HOME/notation`: trustpolicy.json and truststore/ live here. */
  readonly configDir: string;
  /** Async on purpose: a sync spawn would stop this process draining the test registry's log pipe. */
  run(args: string[]): Promise<{ status: number; output: string }>;
  /** `notation sign --insecure-registry --key KEY [extra] REF`; throws with notation's output unless it signed. */
  sign(ref: string, key: string, extra?: readonly string[]): Promise<void>;
  addKey(name: string, keyPath: string, certPath: string): void;
  trust(type: 'ca' | 'signingAuthority' | 'tsa', store: string, certFile: string): void;
  writeTrustPolicy(statements: unknown[]): void;
  dispose(): void;
}

export function notationSandbox(): NotationSandbox {
  const home = mkdtempSync(join(tmpdir(), 'pg-notation-'));
  const configDir = join(home, 'config', 'notation');
  mkdirSync(configDir, { recursive: true });
  const keys: { name: string; keyPath: string; certPath: string }[] = [];
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, XDG_CONFIG_HOME: join(home, 'config') };
  return {
    home,
    configDir,
    run(args) {
      return new Promise((resolve) => {
        const p = spawn(tool('notation'), args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
        let output = '';
        p.stdout.on('data', (b: Buffer) => (output += b.toString()));
        p.stderr.on('data', (b: Buffer) => (output += b.toString()));
        const timer = setTimeout(() => p.kill('SIGKILL'), 60_000);
        p.on('close', (code) => {
          clearTimeout(timer);
          resolve({ status: code ?? -1, output });
        });
      });
    },
    async sign(ref, key, extra = []) {
      const r = await this.run(['sign', '--insecure-registry', '--key', key, ...extra, ref]);
      if (r.status !== 0) throw new Error(`notation sign ${ref}: ${r.output}`);
    },
    addKey(name, keyPath, certPath) {
      // generate-test keys are already in signingkeys.json; merge with what notation wrote.
      const file = join(configDir, 'signingkeys.json');
      let doc: { default?: string; keys: typeof keys } = { keys: [] };
      try {
        doc = JSON.parse(readFileSync(file, 'utf8'));
      } catch {
        /* first key */
      }
      doc.keys = [...(doc.keys ?? []).filter((k) => k.name !== name), { name, keyPath, certPath }];
      writeFileSync(file, JSON.stringify(doc, null, 2));
    },
    trust(type, store, certFile) {
      const d = join(configDir, 'truststore', 'x509', type, store);
      mkdirSync(d, { recursive: true });
      writeFileSync(
        join(d, `${store}-${Date.now()}-${Math.random().toString(36).slice(2)}.crt`),
        readFileSync(certFile),
      );
    },
    writeTrustPolicy(statements) {
      writeFileSync(
        join(configDir, 'trustpolicy.json'),
        JSON.stringify({ version: '1.0', trustPolicies: statements }, null, 2),
      );
    },
    dispose() {
      rmSync(home, { recursive: true, force: true });
    },
  };
}

// Moved to its own file; re-exported here so tests that import it from notation.js still compile.
export { RegistryWriter } from './registry-writer.js';

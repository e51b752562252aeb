import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tool } from './tools.js';

/**
 * Test-time PKI (openssl `ca`, so validity can be set to the second) and a sandboxed real notation
 * 1.3.2 (HOME and XDG_CONFIG_HOME in a temp dir) for signing and for the reference verdict.
 */
export type KeyKind = 'rsa2048' | 'rsa3072' | 'rsa4096' | 'p256' | 'p384';

export interface Issued {
  readonly key: string;
  readonly cert: string;
  readonly subject: string;
}

const sha = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

export class Pki {
  private serial = 1;
  constructor(readonly dir: string) {}

  static create(): Pki {
    return new Pki(mkdtempSync(join(tmpdir(), 'pg-pki-')));
  }

  dispose(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }

  key(name: string, kind: KeyKind): string {
    const out = join(this.dir, `${name}.key`);
    const args = kind.startsWith('rsa')
      ? ['genpkey', '-algorithm', 'RSA', '-pkeyopt', `rsa_keygen_bits:${kind.slice(3)}`, '-out', out]
      : ['genpkey', '-algorithm', 'EC', '-pkeyopt', `ec_paramgen_curve:${kind === 'p256' ? 'P-256' : 'P-384'}`, '-out', out];
    execFileSync('openssl', args, { stdio: 'pipe' });
    return out;
  }

  /** Issues (or self-signs when `issuer` is undefined) a certificate with `openssl ca`. */
  issue(name: string, opts: { kind: KeyKind; subject: string; issuer?: Issued; ca?: boolean; pathLen?: number; endSeconds?: number; extraExt?: string }): Issued {
    const key = this.key(name, opts.kind);
    const csr = join(this.dir, `${name}.csr`);
    execFileSync('openssl', ['req', '-new', '-key', key, '-subj', opts.subject, '-out', csr], { stdio: 'pipe' });
    const cadir = join(this.dir, `ca-${name}`);
    mkdirSync(cadir, { recursive: true });
    writeFileSync(join(cadir, 'index.txt'), '');
    const hex = (this.serial++ * 7919 + 0x1000).toString(16);
    writeFileSync(join(cadir, 'serial'), `${hex.length % 2 ? `0${hex}` : hex}\n`);
    const ext = opts.ca
      ? `basicConstraints=critical,CA:TRUE${opts.pathLen !== undefined ? `,pathlen:${opts.pathLen}` : ''}\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash`
      : `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=codeSigning\nsubjectKeyIdentifier=hash`;
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
      ].join('\n'),
    );
    const cert = join(this.dir, `${name}.crt`);
    const fmt = (d: Date) => d.toISOString().replace(/[-:T]/g, '').slice(0, 14) + 'Z';
    const start = new Date(Date.now() - 3600_000);
    const end = new Date(Date.now() + (opts.endSeconds ?? 30 * 86400) * 1000);
    const args = ['ca', '-batch', '-config', join(cadir, 'ca.cnf'), '-in', csr, '-out', cert, '-extensions', 'x', '-notext', '-startdate', fmt(start), '-enddate', fmt(end)];
    if (opts.issuer) args.push('-cert', opts.issuer.cert, '-keyfile', opts.issuer.key);
    else args.push('-selfsign', '-keyfile', key);
    execFileSync('openssl', args, { stdio: 'pipe' });
    return { key, cert, subject: opts.subject };
  }

  /** leaf + issuers as one PEM file, leaf first: notation's certPath. */
  bundle(name: string, chain: readonly Issued[]): string {
    const p = join(this.dir, `${name}.chain.pem`);
    writeFileSync(p, chain.map((c) => readFileSync(c.cert, 'utf8')).join(''));
    return p;
  }
}

export interface NotationSandbox {
  readonly home: string;
  /** `$XDG_CONFIG_HOME/notation`: trustpolicy.json and truststore/ live here. */
  readonly configDir: string;
  /** Async on purpose: a sync spawn would stop this process draining the test registry's log pipe. */
  run(args: string[]): Promise<{ status: number; output: string }>;
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
      writeFileSync(join(d, `${store}-${Date.now()}-${Math.random().toString(36).slice(2)}.crt`), readFileSync(certFile));
    },
    writeTrustPolicy(statements) {
      writeFileSync(join(configDir, 'trustpolicy.json'), JSON.stringify({ version: '1.0', trustPolicies: statements }, null, 2));
    },
    dispose() {
      rmSync(home, { recursive: true, force: true });
    },
  };
}

/** Minimal distribution API writes, to push hand-made or tampered signatures the way notation would. */
export class RegistryWriter {
  constructor(readonly url: string) {}

  async putBlob(repo: string, bytes: Uint8Array): Promise<{ digest: string; size: number }> {
    const digest = sha(bytes);
    const start = await fetch(`${this.url}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
    if (start.status !== 202) throw new Error(`blob upload start: ${start.status}`);
    const loc = new URL(start.headers.get('location')!, this.url);
    loc.searchParams.set('digest', digest);
    const put = await fetch(loc, { method: 'PUT', body: Buffer.from(bytes), headers: { 'content-type': 'application/octet-stream' } });
    if (put.status !== 201) throw new Error(`blob upload: ${put.status}`);
    return { digest, size: bytes.length };
  }

  async getBlob(repo: string, digest: string): Promise<Buffer> {
    const r = await fetch(`${this.url}/v2/${repo}/blobs/${digest}`);
    if (!r.ok) throw new Error(`get blob ${digest}: ${r.status}`);
    return Buffer.from(await r.arrayBuffer());
  }

  async getManifest(repo: string, ref: string): Promise<{ bytes: Buffer; json: any } | undefined> {
    const r = await fetch(`${this.url}/v2/${repo}/manifests/${ref}`, {
      headers: { accept: 'application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json' },
    });
    if (r.status === 404) return undefined;
    if (!r.ok) throw new Error(`get manifest ${ref}: ${r.status}`);
    const bytes = Buffer.from(await r.arrayBuffer());
    return { bytes, json: JSON.parse(bytes.toString('utf8')) };
  }

  async putManifest(repo: string, ref: string, json: unknown): Promise<{ digest: string; size: number }> {
    const bytes = Buffer.from(JSON.stringify(json));
    const mediaType = (json as { mediaType: string }).mediaType;
    const r = await fetch(`${this.url}/v2/${repo}/manifests/${ref}`, { method: 'PUT', body: bytes, headers: { 'content-type': mediaType } });
    if (r.status !== 201) throw new Error(`put manifest ${ref}: ${r.status} ${await r.text()}`);
    return { digest: sha(bytes), size: bytes.length };
  }

  /** The notation signature manifests listed in `subject`'s referrers tag index. */
  async signatures(repo: string, subject: string): Promise<{ digest: string; manifest: any }[]> {
    const idx = await this.getManifest(repo, subject.replace(':', '-'));
    const out: { digest: string; manifest: any }[] = [];
    for (const m of idx?.json.manifests ?? []) {
      const man = await this.getManifest(repo, m.digest);
      if (man?.json.config?.mediaType === 'application/vnd.cncf.notary.signature') out.push({ digest: m.digest, manifest: man.json });
    }
    return out;
  }

  /**
   * Pushes a signature manifest (as notation lays it out) for `subject` and lists it in the referrers
   * tag index; `replace` drops the entries that were there.
   */
  async pushSignature(
    repo: string,
    subject: { mediaType: string; digest: string; size: number },
    envelope: Uint8Array,
    mediaType: 'application/jose+json' | 'application/cose',
    opts: { replace?: boolean; annotations?: Record<string, string> } = {},
  ): Promise<string> {
    const config = await this.putBlob(repo, Buffer.from('{}'));
    const layer = await this.putBlob(repo, envelope);
    const manifest = {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.cncf.notary.signature', ...config },
      layers: [{ mediaType, ...layer }],
      subject,
      annotations: { 'org.opencontainers.image.created': new Date().toISOString(), ...opts.annotations },
    };
    const m = await this.putManifest(repo, sha(Buffer.from(JSON.stringify(manifest))), manifest);
    await this.addReferrer(repo, subject.digest, { mediaType: manifest.mediaType, ...m, artifactType: 'application/vnd.cncf.notary.signature', annotations: manifest.annotations }, opts.replace);
    return m.digest;
  }

  async addReferrer(repo: string, subjectDigest: string, entry: unknown, replace = false): Promise<void> {
    const tag = subjectDigest.replace(':', '-');
    const idx = await this.getManifest(repo, tag);
    const manifests = replace ? [] : (idx?.json.manifests ?? []);
    await this.putManifest(repo, tag, { schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [...manifests, entry] });
  }
}

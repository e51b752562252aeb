import { createHash, sign, type KeyObject } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OCI_EMPTY_DIGEST } from '../registry/classify.js';
import type { OciDescriptor } from '../registry/types.js';

/**
 * Material for the snapshot warm-up (cli/warmup.ts) beyond the cosign YAML path: a notation JWS
 * signature by a self-signed code-signing certificate made here (no openssl at build time), and a
 * temporary directory holding a notation configuration (trustpolicy.json + truststore/) and policy
 * files in every format pullguard reads, so that loading them from disk runs too. Everything is
 * deleted before the snapshot is taken; the key lives only in this process.
 */
export interface WarmFiles {
  readonly dir: string;
  /** A notation configuration directory trusting the certificate (store ca:warm). */
  readonly notationDir: string;
  /** Writes a file under dir and returns its path. */
  write(name: string, text: string): string;
  dispose(): void;
}

export function warmFiles(certificateDer: Buffer): WarmFiles {
  const dir = mkdtempSync(join(tmpdir(), 'pullguard-warmup-'));
  const notationDir = join(dir, 'notation');
  mkdirSync(join(notationDir, 'truststore', 'x509', 'ca', 'warm'), { recursive: true });
  const base64 = certificateDer.toString('base64').replace(/(.{64})/g, '$1\n');
  const pem = `-----BEGIN CERTIFICATE-----\n${base64}\n-----END CERTIFICATE-----\n`;
  writeFileSync(join(notationDir, 'truststore', 'x509', 'ca', 'warm', 'warm.pem'), pem);
  writeFileSync(
    join(notationDir, 'trustpolicy.json'),
    JSON.stringify({
      version: '1.0',
      trustPolicies: [
        {
          name: 'warm',
          registryScopes: ['*'],
          signatureVerification: { level: 'strict' },
          trustStores: ['ca:warm'],
          trustedIdentities: ['*'],
        },
      ],
    }),
  );
  return {
    dir,
    notationDir,
    write(name, text) {
      const p = join(dir, name);
      writeFileSync(p, text);
      return p;
    },
    dispose: () => rmSync(dir, { recursive: true, force: true }),
  };
}

// --- a minimal X.509 writer (RFC 5280), enough for one self-signed ECDSA P-256 signing certificate ---

function tlv(tag: number, ...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  const n = body.length;
  const len = n < 0x80 ? Buffer.from([n]) : n < 0x100 ? Buffer.from([0x81, n]) : Buffer.from([0x82, n >> 8, n & 0xff]);
  return Buffer.concat([Buffer.from([tag]), len, body]);
}
const seq = (...p: Buffer[]) => tlv(0x30, ...p);
function oid(dotted: string): Buffer {
  const arcs = dotted.split('.').map(Number);
  const out: number[] = [arcs[0]! * 40 + arcs[1]!];
  for (const a of arcs.slice(2)) {
    const chunk = [a & 0x7f];
    for (let v = Math.floor(a / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift((v & 0x7f) | 0x80);
    out.push(...chunk);
  }
  return tlv(0x06, Buffer.from(out));
}

/** Self-signed, valid 2020-2120, keyUsage digitalSignature (critical), extKeyUsage codeSigning. */
export function selfSignedCodeSigningCertificate(publicKey: KeyObject, privateKey: KeyObject): Buffer {
  const ecdsaSha256 = seq(oid('1.2.840.10045.4.3.2'));
  const name = seq(tlv(0x31, seq(oid('2.5.4.3'), tlv(0x0c, Buffer.from('pullguard warm-up')))));
  const validity = seq(tlv(0x17, Buffer.from('200101000000Z')), tlv(0x18, Buffer.from('21200101000000Z')));
  const keyUsage = seq(
    oid('2.5.29.15'),
    tlv(0x01, Buffer.from([0xff])),
    tlv(0x04, tlv(0x03, Buffer.from([0x07, 0x80]))),
  );
  const extKeyUsage = seq(oid('2.5.29.37'), tlv(0x04, seq(oid('1.3.6.1.5.5.7.3.3'))));
  const tbs = seq(
    tlv(0xa0, tlv(0x02, Buffer.from([2]))),
    tlv(0x02, Buffer.from([0x01])),
    ecdsaSha256,
    name,
    validity,
    name,
    publicKey.export({ type: 'spki', format: 'der' }),
    tlv(0xa3, seq(keyUsage, extKeyUsage)),
  );
  return seq(tbs, ecdsaSha256, tlv(0x03, Buffer.from([0]), sign('sha256', tbs, privateKey)));
}

/** A notation signature (JWS envelope, notary.x509) over `subject`, as notation lays it out: its manifest and blob. */
export function notationSignature(
  subject: OciDescriptor,
  certificateDer: Buffer,
  privateKey: KeyObject,
): { manifest: Buffer; envelope: Buffer } {
  const b64u = (b: Buffer | string) => Buffer.from(b).toString('base64url');
  const protectedHeader = b64u(
    JSON.stringify({
      alg: 'ES256',
      crit: ['io.cncf.notary.signingScheme'],
      cty: 'application/vnd.cncf.notary.payload.v1+json',
      'io.cncf.notary.signingScheme': 'notary.x509',
      'io.cncf.notary.signingTime': new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    }),
  );
  const payload = b64u(
    JSON.stringify({ targetArtifact: { mediaType: subject.mediaType, digest: subject.digest, size: subject.size } }),
  );
  const signature = sign('sha256', Buffer.from(`${protectedHeader}.${payload}`), {
    key: privateKey,
    dsaEncoding: 'ieee-p1363',
  });
  const envelope = Buffer.from(
    JSON.stringify({
      payload,
      protected: protectedHeader,
      header: { x5c: [certificateDer.toString('base64')] },
      signature: b64u(signature),
    }),
  );
  const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
  const layer: OciDescriptor = { mediaType: 'application/jose+json', digest: sha(envelope), size: envelope.length };
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.cncf.notary.signature', digest: OCI_EMPTY_DIGEST, size: 2 },
      layers: [layer],
      subject,
    }),
  );
  return { manifest, envelope };
}

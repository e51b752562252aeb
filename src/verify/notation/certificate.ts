import { createHash, X509Certificate as NodeX509, type KeyObject } from 'node:crypto';
import { ASN1Obj } from '@sigstore/core';
import { encodedLength, rawDer } from './der.js';
import { guard, MalformedInputError } from '../../common/malformed.js';
import { nameToAttributes, type DnAttributes } from '../../common/dn.js';

/**
 * One X.509 certificate, parsed once. Node's X509Certificate (OpenSSL) gives the public key and checks
 * signatures; @sigstore/core's ASN.1 reader gives what Node hides: extension criticality, key-usage bits,
 * the raw subject/issuer Names and the signature algorithm OID.
 */
export interface Certificate {
  readonly der: Buffer;
  /** SHA-256 of the DER, lowercase hex: what notation's thumbprint annotation lists. */
  readonly sha256: string;
  readonly subjectDer: Buffer;
  readonly issuerDer: Buffer;
  /** Subject as attribute map (notation compares DNs as sets), or an error text when it has none. */
  readonly subject: DnAttributes | string;
  /** Subject for messages, RFC 4514-ish. */
  readonly subjectText: string;
  readonly serial: Buffer;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly signatureAlgorithmOid: string;
  /** Hash behind the certificate's own signature; 'sha1'/'md5' are refused by the rules. */
  readonly signatureHash: string;
  readonly keyUsage?: { readonly critical: boolean; readonly bits: ReadonlySet<KeyUsage> };
  readonly basicConstraints?: { readonly critical: boolean; readonly ca: boolean; readonly pathLen?: number };
  readonly extKeyUsage?: { readonly critical: boolean; readonly oids: readonly string[] };
  readonly crlUrls: readonly string[];
  /** OCSP access descriptions in authorityInfoAccess (any name form). */
  readonly hasOcsp: boolean;
  /** Their uniformResourceIdentifier locations, in certificate order (what Go's x509 calls OCSPServer). */
  readonly ocspUrls: readonly string[];
  readonly publicKey: KeyObject;
  readonly key:
    | { readonly type: 'rsa'; readonly bits: number }
    | { readonly type: 'ec'; readonly curve: string; readonly bits: number }
    | { readonly type: string; readonly bits: 0 };
  readonly node: NodeX509;
}

export type KeyUsage =
  | 'digitalSignature'
  | 'contentCommitment'
  | 'keyEncipherment'
  | 'dataEncipherment'
  | 'keyAgreement'
  | 'keyCertSign'
  | 'cRLSign'
  | 'encipherOnly'
  | 'decipherOnly';

const KEY_USAGE_BITS: readonly KeyUsage[] = [
  'digitalSignature',
  'contentCommitment',
  'keyEncipherment',
  'dataEncipherment',
  'keyAgreement',
  'keyCertSign',
  'cRLSign',
  'encipherOnly',
  'decipherOnly',
];

export const OID = {
  keyUsage: '2.5.29.15',
  basicConstraints: '2.5.29.19',
  extKeyUsage: '2.5.29.37',
  crlDistributionPoints: '2.5.29.31',
  authorityInfoAccess: '1.3.6.1.5.5.7.1.1',
  ocsp: '1.3.6.1.5.5.7.48.1',
  ekuServerAuth: '1.3.6.1.5.5.7.3.1',
  ekuClientAuth: '1.3.6.1.5.5.7.3.2',
  ekuCodeSigning: '1.3.6.1.5.5.7.3.3',
  ekuEmailProtection: '1.3.6.1.5.5.7.3.4',
  ekuTimeStamping: '1.3.6.1.5.5.7.3.8',
  ekuOcspSigning: '1.3.6.1.5.5.7.3.9',
  ekuAny: '2.5.29.37.0',
} as const;

/** Signature algorithm OIDs to the hash they use. PSS is resolved from its parameters. */
const SIG_HASH: Record<string, string> = {
  '1.2.840.113549.1.1.4': 'md5',
  '1.2.840.113549.1.1.5': 'sha1',
  '1.2.840.113549.1.1.11': 'sha256',
  '1.2.840.113549.1.1.12': 'sha384',
  '1.2.840.113549.1.1.13': 'sha512',
  '1.2.840.10045.4.1': 'sha1',
  '1.2.840.10045.4.3.2': 'sha256',
  '1.2.840.10045.4.3.3': 'sha384',
  '1.2.840.10045.4.3.4': 'sha512',
  '1.2.840.10040.4.3': 'sha1',
};
const HASH_OIDS: Record<string, string> = {
  '1.3.14.3.2.26': 'sha1',
  '2.16.840.1.101.3.4.2.1': 'sha256',
  '2.16.840.1.101.3.4.2.2': 'sha384',
  '2.16.840.1.101.3.4.2.3': 'sha512',
};
export const RSA_PSS_OID = '1.2.840.113549.1.1.10';

export function hashOfAlgorithmIdentifier(algId: ASN1Obj): string {
  const oid = algId.subs[0]!.toOID();
  if (oid === RSA_PSS_OID) {
    // RSASSA-PSS-params: hashAlgorithm [0] defaults to SHA-1, which the rules refuse anyway.
    const params = algId.subs[1];
    const hashParam = params?.subs.find((s) => s.tag.isContextSpecific(0));
    const hashOid = hashParam?.subs[0]?.subs[0]?.toOID();
    return hashOid ? (HASH_OIDS[hashOid] ?? `unknown(${hashOid})`) : 'sha1';
  }
  return SIG_HASH[oid] ?? HASH_OIDS[oid] ?? `unknown(${oid})`;
}

export function hashFromOid(oid: string): string | undefined {
  return HASH_OIDS[oid];
}

/** Parses DER or PEM bytes holding exactly one certificate. Throws MalformedInputError on anything else. */
export function parseCertificate(input: Uint8Array): Certificate {
  const der = Buffer.from(input);
  return guard('malformed certificate', () => {
    if (der.length === 0 || der[0] !== 0x30) throw new MalformedInputError('malformed certificate: not DER');
    const asn1 = ASN1Obj.parseBuffer(der);
    if (encodedLength(asn1) !== der.length) throw new MalformedInputError('malformed certificate: trailing data');
    const tbs = asn1.subs[0];
    if (!tbs || asn1.subs.length !== 3 || !tbs.tag.constructed)
      throw new MalformedInputError('malformed certificate: not a Certificate');
    // TBSCertificate: [0] version?, serial, sigAlg, issuer, validity, subject, spki, [1]?, [2]?, [3] extensions?
    const off = tbs.subs[0]?.tag.isContextSpecific(0) ? 1 : 0;
    const at = (i: number) => {
      const o = tbs.subs[off + i];
      if (!o) throw new MalformedInputError('malformed certificate: truncated TBSCertificate');
      return o;
    };
    const serial = at(0).value;
    const issuer = at(2);
    const validity = at(3);
    const subject = at(4);
    const notBefore = validity.subs[0]!.toDate();
    const notAfter = validity.subs[1]!.toDate();
    const signatureAlgorithmOid = asn1.subs[1]!.subs[0]!.toOID();
    const signatureHash = hashOfAlgorithmIdentifier(asn1.subs[1]!);

    let keyUsage: Certificate['keyUsage'];
    let basicConstraints: Certificate['basicConstraints'];
    let extKeyUsage: Certificate['extKeyUsage'];
    let crlUrls: string[] = [];
    let hasOcsp = false;
    const ocspUrls: string[] = [];
    const extsWrapper = tbs.subs.slice(off + 6).find((s) => s.tag.isContextSpecific(3));
    const seen = new Set<string>();
    for (const ext of extsWrapper?.subs[0]?.subs ?? []) {
      const oid = ext.subs[0]!.toOID();
      if (seen.has(oid)) throw new MalformedInputError(`malformed certificate: duplicate extension ${oid}`);
      seen.add(oid);
      const critical = ext.subs.length === 3 ? ext.subs[1]!.toBoolean() : false;
      const valueObj = ext.subs[ext.subs.length - 1]!;
      if (!valueObj.tag.isOctetString()) throw new MalformedInputError(`malformed certificate: extension ${oid} value`);
      const inner = () => ASN1Obj.parseBuffer(valueObj.value as Buffer<ArrayBuffer>);
      switch (oid) {
        case OID.keyUsage: {
          const bs = inner();
          if (!bs.tag.isBitString() || bs.value.length < 1)
            throw new MalformedInputError('malformed certificate: keyUsage');
          const bits = new Set<KeyUsage>();
          KEY_USAGE_BITS.forEach((name, i) => {
            const byte = bs.value[1 + (i >> 3)];
            if (byte !== undefined && (byte & (0x80 >> (i & 7))) !== 0) bits.add(name);
          });
          keyUsage = { critical, bits };
          break;
        }
        case OID.basicConstraints: {
          const seq = inner();
          let ca = false;
          let pathLen: number | undefined;
          for (const s of seq.subs) {
            if (s.tag.isBoolean()) ca = s.toBoolean();
            else if (s.tag.isInteger()) pathLen = Number(s.toInteger());
          }
          basicConstraints = { critical, ca, pathLen };
          break;
        }
        case OID.extKeyUsage:
          extKeyUsage = { critical, oids: inner().subs.map((s) => s.toOID()) };
          break;
        case OID.crlDistributionPoints:
          crlUrls = collectUris(inner());
          break;
        case OID.authorityInfoAccess:
          for (const ad of inner().subs) {
            if (!ad.subs[0]?.tag.isOID() || ad.subs[0].toOID() !== OID.ocsp) continue;
            hasOcsp = true;
            const loc = ad.subs[1];
            if (loc?.tag.isContextSpecific(6) && !loc.tag.constructed) ocspUrls.push(loc.value.toString('latin1'));
          }
          break;
      }
    }

    const node = new NodeX509(der);
    const publicKey = node.publicKey;
    const details = publicKey.asymmetricKeyDetails ?? {};
    const type = publicKey.asymmetricKeyType ?? 'unknown';
    const key: Certificate['key'] =
      type === 'rsa'
        ? { type: 'rsa', bits: details.modulusLength ?? 0 }
        : type === 'ec'
          ? { type: 'ec', curve: details.namedCurve ?? 'unknown', bits: curveBits(details.namedCurve) }
          : { type, bits: 0 };
    const attrs = (() => {
      try {
        return nameToAttributes(subject);
      } catch (e) {
        return (e as Error).message;
      }
    })();
    return {
      der,
      sha256: createHash('sha256').update(der).digest('hex'),
      subjectDer: Buffer.from(rawDer(subject)),
      issuerDer: Buffer.from(rawDer(issuer)),
      subject: attrs,
      subjectText: node.subject.split('\n').join(', '),
      serial,
      notBefore,
      notAfter,
      signatureAlgorithmOid,
      signatureHash,
      keyUsage,
      basicConstraints,
      extKeyUsage,
      crlUrls,
      hasOcsp,
      ocspUrls,
      publicKey,
      key,
      node,
    };
  });
}

function curveBits(curve: string | undefined): number {
  switch (curve) {
    case 'prime256v1':
    case 'P-256':
      return 256;
    case 'secp384r1':
    case 'P-384':
      return 384;
    case 'secp521r1':
    case 'P-521':
      return 521;
    default:
      return 0;
  }
}

/** uniformResourceIdentifier GeneralNames ([6] IA5String) anywhere under `obj`. */
function collectUris(obj: ASN1Obj, out: string[] = []): string[] {
  if (obj.tag.isContextSpecific(6) && !obj.tag.constructed) out.push(obj.value.toString('latin1'));
  for (const s of obj.subs) collectUris(s, out);
  return out;
}

/** Splits a PEM bundle or returns the DER as-is. */
export function certificatesFromFile(bytes: Buffer): Buffer[] {
  const text = bytes.toString('latin1');
  if (text.includes('-----BEGIN')) {
    const out: Buffer[] = [];
    const re = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;
    for (let m = re.exec(text); m; m = re.exec(text)) {
      if (m[1] === 'CERTIFICATE' || m[1] === 'X509 CERTIFICATE' || m[1] === 'TRUSTED CERTIFICATE')
        out.push(Buffer.from(m[2]!.replace(/\s+/g, ''), 'base64'));
    }
    return out;
  }
  return [bytes];
}

/** True when `child` names `parent` as issuer and `parent`'s key verifies `child`'s signature. */
export function isIssuedBy(child: Certificate, parent: Certificate): boolean {
  if (!child.issuerDer.equals(parent.subjectDer)) return false;
  try {
    return child.node.verify(parent.publicKey);
  } catch {
    return false;
  }
}

export function isSelfSigned(cert: Certificate): boolean {
  return isIssuedBy(cert, cert);
}

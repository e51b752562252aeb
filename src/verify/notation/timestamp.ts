import { createHash, constants, verify as cryptoVerify } from 'node:crypto';
import { ASN1Obj } from '@sigstore/core';
import {
  hashFromOid,
  hashOfAlgorithmIdentifier,
  isIssuedBy,
  parseCertificate,
  RSA_PSS_OID,
  type Certificate,
} from './certificate.js';
import { validateTimestampingChain } from './chain.js';
import { guard, MalformedInputError } from '../../common/malformed.js';

const OID_SIGNED_DATA = '1.2.840.113549.1.7.2';
const OID_TSTINFO = '1.2.840.113549.1.9.16.1.4';
const OID_CONTENT_TYPE = '1.2.840.113549.1.9.3';
const OID_MESSAGE_DIGEST = '1.2.840.113549.1.9.4';

export interface VerifiedTimestamp {
  /** genTime - accuracy and genTime + accuracy: the interval the signature provably existed in. */
  readonly earliest: Date;
  readonly latest: Date;
  readonly tsa: string;
  /** The TSA chain as verified, signer first, ending at the trusted certificate: for its revocation check. */
  readonly chain: readonly Certificate[];
}

const GENERALIZED_TIME = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(?:\.(\d{1,9}))?Z$/;

/**
 * TSTInfo genTime: GeneralizedTime in UTC with optional fractional seconds of any precision (RFC 3161
 * 2.4.2 allows them and strips trailing zeros, so `.5Z` and `.123456Z` both occur). @sigstore/core's
 * toDate only reads exactly three digits, and rejected such tokens that notation accepts.
 */
export function parseGeneralizedTime(raw: Buffer): Date {
  const m = GENERALIZED_TIME.exec(raw.toString('latin1'));
  if (!m) throw new MalformedInputError('timestamp genTime is not a UTC GeneralizedTime');
  const [y, mo, d, h, mi, s] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60)
    throw new MalformedInputError('timestamp genTime is out of range');
  const ms = m[7] ? Math.floor(Number(`0.${m[7]}`) * 1000) : 0;
  return new Date(Date.UTC(y, mo - 1, d, h, mi, s, ms));
}

/**
 * Verifies an RFC 3161 TimeStampToken countersignature over `signature` (the envelope's signature
 * bytes) against trusted TSA roots, as notation does (verifier.go verifyTimestamp): message imprint,
 * CMS signer over the signed attributes, the TSA chain built from the token's certificates up to a
 * trusted certificate and valid at genTime, and the TSA leaf's timeStamping EKU.
 * @sigstore/core's RFC3161Timestamp reads a TimeStampResp and only ECDSA signers; notation carries the
 * bare token and TSAs are usually RSA, so the CMS walk is done here with its ASN.1 reader.
 */
export function verifyTimestampToken(
  token: Buffer,
  signature: Buffer,
  trusted: readonly Certificate[],
): VerifiedTimestamp {
  const p = parseToken(token);
  if (!p.imprintHash || p.imprintHash === 'sha1')
    throw new MalformedInputError('timestamp message imprint uses an unsupported hash');
  if (!createHash(p.imprintHash).update(signature).digest().equals(p.imprintValue)) {
    throw new MalformedInputError('timestamp does not cover this signature (message imprint mismatch)');
  }
  if (!p.digestHash || p.digestHash === 'sha1')
    throw new MalformedInputError('timestamp signer uses an unsupported digest');
  if (p.contentType !== OID_TSTINFO)
    throw new MalformedInputError('timestamp signed attributes do not name TSTInfo as content type');
  const md = p.messageDigest;
  if (!md || !createHash(p.digestHash).update(p.tstInfoDer).digest().equals(md))
    throw new MalformedInputError('timestamp signed attributes do not match the TSTInfo');

  const signer = findSigner(p);

  const genTime = p.genTime;
  const earliest = new Date(genTime.getTime() - p.accuracyMs);
  const latest = new Date(genTime.getTime() + p.accuracyMs);
  const path = tsaChain(signer, p.certs, trusted);
  for (const c of path) {
    if (genTime < c.notBefore || genTime > c.notAfter)
      throw new MalformedInputError(
        `TSA certificate ${c.subjectText} was not valid at the timestamp ${genTime.toISOString()}`,
      );
  }
  // A chain ending at a self-signed root gets the full TSA chain rules; one anchored at a trusted
  // intermediate gets the leaf rules (timeStamping EKU, key usage) on the signer.
  const root = path[path.length - 1]!;
  if (path.length > 1 && isIssuedBy(root, root)) validateTimestampingChain(path);
  else validateTimestampingChain([signer], { leafOnly: !isIssuedBy(signer, signer) });
  return { earliest, latest, tsa: signer.subjectText, chain: path };
}

function parseToken(token: Buffer) {
  return guard('malformed timestamp countersignature', () => {
    const ci = ASN1Obj.parseBuffer(token as Buffer<ArrayBuffer>);
    if (ci.subs[0]?.toOID() !== OID_SIGNED_DATA)
      throw new MalformedInputError('timestamp countersignature is not CMS SignedData');
    const sd = ci.subs[1]?.subs[0];
    if (!sd) throw new MalformedInputError('timestamp countersignature has no SignedData');
    const encap = sd.subs[2]!;
    if (encap.subs[0]!.toOID() !== OID_TSTINFO)
      throw new MalformedInputError('timestamp countersignature does not hold a TSTInfo');
    const eContent = encap.subs[1]!.subs[0]!; // [0] EXPLICIT OCTET STRING
    const tstInfoDer = eContent.value;
    const tst = ASN1Obj.parseBuffer(tstInfoDer as Buffer<ArrayBuffer>);
    // TSTInfo: version, policy, messageImprint, serialNumber, genTime, accuracy?, ordering?, nonce?, [0] tsa?, [1] ext?
    const imprint = tst.subs[2]!;
    const imprintHash = hashFromOid(imprint.subs[0]!.subs[0]!.toOID());
    const imprintValue = imprint.subs[1]!.value;
    const gt = tst.subs[4]!;
    if (!gt.tag.isGeneralizedTime()) throw new MalformedInputError('timestamp genTime is not a GeneralizedTime');
    const genTime = parseGeneralizedTime(gt.value);
    let accuracyMs = 0;
    const acc = tst.subs[5];
    if (acc?.tag.constructed && acc.tag.number === 0x10) {
      for (const a of acc.subs) {
        if (a.tag.isInteger()) accuracyMs += Number(a.toInteger()) * 1000;
        else if (a.tag.isContextSpecific(0)) accuracyMs += Number(BigInt('0x' + (a.value.toString('hex') || '0')));
        else if (a.tag.isContextSpecific(1))
          accuracyMs += Number(BigInt('0x' + (a.value.toString('hex') || '0'))) / 1000;
      }
    }
    const certsObj = sd.subs.find((s) => s.tag.isContextSpecific(0) && s.tag.constructed);
    const certs = (certsObj?.subs ?? []).map((c) => parseCertificate(c.toDER()));
    const signerInfos = sd.subs[sd.subs.length - 1]!;
    if (signerInfos.subs.length !== 1)
      throw new MalformedInputError('timestamp countersignature must have exactly one signer');
    const si = signerInfos.subs[0]!;
    const sid = si.subs[1]!;
    const digestHash = hashFromOid(si.subs[2]!.subs[0]!.toOID());
    // SignerInfo: version, sid, digestAlgorithm, [0] signedAttrs, signatureAlgorithm, signature. The sid
    // itself is [0] when it is a SubjectKeyIdentifier, so the attributes are looked for at their index.
    const signedAttrs = si.subs[3];
    if (!signedAttrs?.tag.isContextSpecific(0) || !signedAttrs.tag.constructed)
      throw new MalformedInputError('timestamp countersignature has no signed attributes');
    const sigAlgIdx = 4;
    const sigAlg = si.subs[sigAlgIdx]!;
    const sigValue = si.subs[sigAlgIdx + 1]!.value;
    const attr = (oid: string) => signedAttrs.subs.find((a) => a.subs[0]!.toOID() === oid)?.subs[1]?.subs[0];
    const contentType = attr(OID_CONTENT_TYPE)?.toOID();
    const messageDigest = attr(OID_MESSAGE_DIGEST)?.value;
    // sid: IssuerAndSerialNumber, or [0] SubjectKeyIdentifier (then the signer is found by trying each key).
    const sidIssuer = sid.tag.isContextSpecific(0)
      ? undefined
      : { issuerDer: sid.subs[0]!.toDER(), serial: sid.subs[1]!.value };
    const sigAlgOid = sigAlg.subs[0]!.toOID();
    return {
      tstInfoDer,
      imprintHash,
      imprintValue,
      genTime,
      accuracyMs,
      certs,
      digestHash,
      signedAttrs,
      sigAlg,
      sigAlgOid,
      sigValue,
      contentType,
      messageDigest,
      sidIssuer,
    };
  });
}

type ParsedToken = ReturnType<typeof parseToken>;

/** The CMS signer: the token certificate whose key verifies the signed attributes. */
function findSigner(p: ParsedToken): Certificate {
  const sidIssuer = p.sidIssuer;
  const signerCandidates = sidIssuer
    ? p.certs.filter((c) => c.issuerDer.equals(sidIssuer.issuerDer) && c.serial.equals(sidIssuer.serial))
    : p.certs;
  const attrsDer = Buffer.from(p.signedAttrs.toDER());
  attrsDer[0] = 0x31; // signed over as SET OF, not [0] IMPLICIT
  const sigAlgOid = p.sigAlgOid;
  const signer = signerCandidates.find((c) => {
    try {
      if (sigAlgOid === RSA_PSS_OID) {
        const h = hashOfAlgorithmIdentifier(p.sigAlg);
        return cryptoVerify(
          h,
          attrsDer,
          { key: c.publicKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_AUTO },
          p.sigValue,
        );
      }
      return cryptoVerify(p.digestHash!, attrsDer, c.publicKey, p.sigValue);
    } catch {
      return false;
    }
  });
  if (!signer) throw new MalformedInputError('timestamp signature does not verify with any certificate in the token');
  return signer;
}

/** signer -> ... -> a certificate of the tsa trust store, with the token's certificates as intermediates. */
function tsaChain(signer: Certificate, certs: readonly Certificate[], trusted: readonly Certificate[]): Certificate[] {
  const path: Certificate[] = [signer];
  for (let depth = 0; depth < 8; depth++) {
    const cur = path[path.length - 1]!;
    if (trusted.some((t) => t.der.equals(cur.der))) break;
    const anchor = trusted.find((t) => isIssuedBy(cur, t));
    if (anchor) {
      path.push(anchor);
      break;
    }
    const next = certs.find((c) => !path.includes(c) && isIssuedBy(cur, c));
    if (!next)
      throw new MalformedInputError(
        `timestamp signer ${signer.subjectText} does not chain to a certificate in the tsa trust store`,
      );
    path.push(next);
    if (depth === 7) throw new MalformedInputError('timestamp certificate chain is too long');
  }
  if (!trusted.some((t) => t.der.equals(path[path.length - 1]!.der)))
    throw new MalformedInputError(
      `timestamp signer ${signer.subjectText} does not chain to a certificate in the tsa trust store`,
    );
  return path;
}

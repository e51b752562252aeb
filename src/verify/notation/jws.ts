import {
  ALGORITHMS,
  checkCritical,
  checkScheme,
  H,
  isRecord,
  parseRfc3339,
  PAYLOAD_CONTENT_TYPE,
  type Algorithm,
  type Envelope,
} from './envelope.js';
import { guard, MalformedInputError } from '../../common/malformed.js';

/** Header names RFC 7515 defines: they must never appear in `crit`. */
const JOSE_STANDARD = new Set(['alg', 'jku', 'jwk', 'kid', 'x5u', 'x5c', 'x5t', 'x5t#S256', 'typ', 'cty', 'crit']);
const PROTECTED_ALLOWED = new Set<string>([
  'alg',
  'crit',
  'cty',
  H.signingScheme,
  H.signingTime,
  H.authenticSigningTime,
  H.expiry,
  H.verificationPlugin,
  H.verificationPluginMinVersion,
]);
const UNPROTECTED_ALLOWED = new Set<string>(['x5c', H.timestampSignature, H.signingAgent]);

const B64URL = /^[A-Za-z0-9_-]*$/;
const B64STD = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function b64url(s: unknown, what: string): Buffer {
  if (typeof s !== 'string' || !B64URL.test(s) || s.length % 4 === 1)
    throw new MalformedInputError(`malformed JWS: ${what} is not base64url`);
  return Buffer.from(s, 'base64url');
}

function b64std(s: unknown, what: string): Buffer {
  if (typeof s !== 'string' || !B64STD.test(s)) throw new MalformedInputError(`malformed JWS: ${what} is not base64`);
  return Buffer.from(s, 'base64');
}

/**
 * Parses a JWS in flattened JSON serialization as notation writes it (signature-envelope-jws.md) and
 * checks every envelope rule that does not need a key. Throws MalformedInputError for anything else.
 */
export function parseJws(bytes: Uint8Array): Envelope {
  return guard('malformed JWS', () => {
    let doc: unknown;
    try {
      doc = JSON.parse(Buffer.from(bytes).toString('utf8'));
    } catch {
      throw new MalformedInputError('malformed JWS: not JSON');
    }
    if (!isRecord(doc)) throw new MalformedInputError('malformed JWS: not a JSON object');
    if ('signatures' in doc)
      throw new MalformedInputError('malformed JWS: general serialization is not allowed, only flattened');
    const protectedB64 = doc.protected;
    const payloadB64 = doc.payload;
    const protectedBytes = b64url(protectedB64, '"protected"');
    const payload = b64url(payloadB64, '"payload"');
    const signature = b64url(doc.signature, '"signature"');
    if (signature.length === 0) throw new MalformedInputError('malformed JWS: empty signature');

    let ph: unknown;
    try {
      ph = JSON.parse(protectedBytes.toString('utf8'));
    } catch {
      throw new MalformedInputError('malformed JWS: protected header is not JSON');
    }
    if (!isRecord(ph)) throw new MalformedInputError('malformed JWS: protected header is not an object');
    for (const k of Object.keys(ph)) {
      // Extended (non-notary) attributes are allowed only as plain, non-critical headers; checkCritical
      // refuses them in crit. Unknown io.cncf.notary.* names are reserved and refused outright.
      if (!PROTECTED_ALLOWED.has(k) && (k.startsWith('io.cncf.notary') || JOSE_STANDARD.has(k))) {
        throw new MalformedInputError(`malformed JWS: unexpected protected header ${JSON.stringify(k)}`);
      }
    }
    const alg = ph.alg;
    if (typeof alg !== 'string' || !ALGORITHMS.includes(alg as Algorithm))
      throw new MalformedInputError(`unsupported JWS alg ${JSON.stringify(alg)}`);
    if (ph.cty !== PAYLOAD_CONTENT_TYPE)
      throw new MalformedInputError(`malformed JWS: cty must be ${PAYLOAD_CONTENT_TYPE}`);
    const crit = ph.crit;
    if (!Array.isArray(crit) || !crit.every((c): c is string => typeof c === 'string'))
      throw new MalformedInputError('malformed JWS: "crit" must be an array of strings');
    checkCritical(crit, (n) => n in ph, JOSE_STANDARD);

    const signingTime = ph[H.signingTime] !== undefined ? parseRfc3339(ph[H.signingTime], H.signingTime) : undefined;
    const authenticSigningTime =
      ph[H.authenticSigningTime] !== undefined
        ? parseRfc3339(ph[H.authenticSigningTime], H.authenticSigningTime)
        : undefined;
    const expiry = ph[H.expiry] !== undefined ? parseRfc3339(ph[H.expiry], H.expiry) : undefined;
    const signingScheme = checkScheme(ph[H.signingScheme], signingTime, authenticSigningTime);
    const plugin = ph[H.verificationPlugin];
    if (plugin !== undefined && typeof plugin !== 'string')
      throw new MalformedInputError(`malformed JWS: ${H.verificationPlugin} must be a string`);

    const header = doc.header;
    if (!isRecord(header)) throw new MalformedInputError('malformed JWS: unprotected "header" is missing');
    for (const k of Object.keys(header)) {
      if (!UNPROTECTED_ALLOWED.has(k))
        throw new MalformedInputError(`malformed JWS: unexpected unprotected header ${JSON.stringify(k)}`);
      if (k in ph)
        throw new MalformedInputError(`malformed JWS: header ${JSON.stringify(k)} is both protected and unprotected`);
    }
    const x5c = header.x5c;
    if (!Array.isArray(x5c) || x5c.length === 0)
      throw new MalformedInputError('malformed JWS: "x5c" certificate chain is missing or empty');
    const certChain = x5c.map((c, i) => b64std(c, `x5c[${i}]`));
    const ts = header[H.timestampSignature];
    const timestampToken = ts !== undefined ? b64std(ts, H.timestampSignature) : undefined;
    const agent = header[H.signingAgent];

    return {
      format: 'jws',
      alg: alg as Algorithm,
      signingScheme,
      signingTime,
      authenticSigningTime,
      expiry,
      verificationPlugin: plugin,
      payload,
      signedBytes: Buffer.from(`${protectedB64 as string}.${payloadB64 as string}`, 'ascii'),
      signature,
      certChain,
      timestampToken,
      signingAgent: typeof agent === 'string' ? agent : undefined,
    };
  });
}

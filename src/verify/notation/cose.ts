import { decode, encode, Tagged, type TagDecodeControl } from 'cborg';
import { checkCritical, checkScheme, H, PAYLOAD_CONTENT_TYPE, type Algorithm, type Envelope } from './envelope.js';
import { guard, MalformedInputError } from '../../common/malformed.js';

/** COSE algorithm ids (RFC 9053 / RFC 8230) notation uses. */
const COSE_ALG: ReadonlyMap<number, Algorithm> = new Map([
  [-37, 'PS256'],
  [-38, 'PS384'],
  [-39, 'PS512'],
  [-7, 'ES256'],
  [-35, 'ES384'],
  [-36, 'ES512'],
]);
const LABEL_ALG = 1;
const LABEL_CRIT = 2;
const LABEL_CTY = 3;
const LABEL_X5CHAIN = 33;
const TAG_SIGN1 = 18;
const TAG_EPOCH = 1;

/** Integer labels are COSE's own header parameters: listing them in crit is not ours to honour. */
const COSE_STANDARD_LABELS = new Set(['1', '2', '3', '4', '5', '6', '33']);
const PROTECTED_TEXT_ALLOWED = new Set<string>([
  H.signingScheme,
  H.signingTime,
  H.authenticSigningTime,
  H.expiry,
  H.verificationPlugin,
  H.verificationPluginMinVersion,
]);

const DECODE_OPTIONS = {
  useMaps: true,
  rejectDuplicateMapKeys: true,
  allowUndefined: false,
  allowIndefinite: false,
  allowBigInt: false,
  tags: {
    [TAG_SIGN1]: (d: TagDecodeControl) => new Tagged(TAG_SIGN1, d()),
    [TAG_EPOCH]: (d: TagDecodeControl) => new Tagged(TAG_EPOCH, d()),
  },
};

function asMap(v: unknown, what: string): Map<unknown, unknown> {
  if (!(v instanceof Map)) throw new MalformedInputError(`malformed COSE: ${what} is not a map`);
  return v;
}

function asBytes(v: unknown, what: string): Buffer {
  if (!(v instanceof Uint8Array)) throw new MalformedInputError(`malformed COSE: ${what} is not a byte string`);
  return Buffer.from(v);
}

function epoch(v: unknown, what: string): Date {
  // notation writes times as tag 1 (epoch-based date/time) around an integer.
  if (!(v instanceof Tagged) || v.tag !== TAG_EPOCH || typeof v.value !== 'number' || !Number.isSafeInteger(v.value)) {
    throw new MalformedInputError(`malformed COSE: ${what} must be a tag-1 integer time`);
  }
  const d = new Date(v.value * 1000);
  if (Number.isNaN(d.getTime())) throw new MalformedInputError(`malformed COSE: ${what} is out of range`);
  return d;
}

/**
 * Parses a COSE_Sign1_Tagged message as notation writes it (signature-envelope-cose.md): tag 18,
 * protected alg/crit/cty and io.cncf.notary.* labels, unprotected x5chain (label 33), attached payload.
 */
export function parseCose(bytes: Uint8Array): Envelope {
  return guard('malformed COSE', () => {
    if (bytes.length === 0) throw new MalformedInputError('malformed COSE: empty');
    const top: unknown = decode(bytes, DECODE_OPTIONS);
    if (!(top instanceof Tagged) || top.tag !== TAG_SIGN1)
      throw new MalformedInputError('malformed COSE: not a COSE_Sign1_Tagged message (tag 18)');
    const msg = top.value;
    if (!Array.isArray(msg) || msg.length !== 4)
      throw new MalformedInputError('malformed COSE: COSE_Sign1 must be a 4-element array');
    const protectedBytes = asBytes(msg[0], 'protected header');
    const unprotected = asMap(msg[1], 'unprotected header');
    if (msg[2] === null) throw new MalformedInputError('malformed COSE: detached payloads are not allowed');
    const payload = asBytes(msg[2], 'payload');
    const signature = asBytes(msg[3], 'signature');
    if (signature.length === 0) throw new MalformedInputError('malformed COSE: empty signature');
    if (protectedBytes.length === 0) throw new MalformedInputError('malformed COSE: protected header is empty');
    const ph = asMap(decode(protectedBytes, DECODE_OPTIONS), 'protected header');

    for (const k of ph.keys()) {
      if (typeof k === 'number') {
        if (![LABEL_ALG, LABEL_CRIT, LABEL_CTY, LABEL_X5CHAIN].includes(k))
          throw new MalformedInputError(`malformed COSE: unexpected protected label ${k}`);
      } else if (typeof k === 'string') {
        if (k.startsWith('io.cncf.notary') && !PROTECTED_TEXT_ALLOWED.has(k))
          throw new MalformedInputError(`malformed COSE: unexpected protected header ${JSON.stringify(k)}`);
      } else throw new MalformedInputError('malformed COSE: header labels must be integers or text');
    }
    const algId = ph.get(LABEL_ALG);
    const alg = typeof algId === 'number' ? COSE_ALG.get(algId) : undefined;
    if (!alg) throw new MalformedInputError(`unsupported COSE alg ${JSON.stringify(algId)}`);
    if (ph.get(LABEL_CTY) !== PAYLOAD_CONTENT_TYPE)
      throw new MalformedInputError(`malformed COSE: content type must be ${PAYLOAD_CONTENT_TYPE}`);
    const critRaw = ph.get(LABEL_CRIT);
    if (!Array.isArray(critRaw) || !critRaw.every((c) => typeof c === 'string' || typeof c === 'number')) {
      throw new MalformedInputError('malformed COSE: crit (label 2) must be an array of labels');
    }
    const crit = critRaw.map((c) => String(c));
    checkCritical(crit, (n) => ph.has(n) || (/^-?\d+$/.test(n) && ph.has(Number(n))), COSE_STANDARD_LABELS);

    const time = (label: string) => (ph.has(label) ? epoch(ph.get(label), label) : undefined);
    const signingTime = time(H.signingTime);
    const authenticSigningTime = time(H.authenticSigningTime);
    const expiry = time(H.expiry);
    const signingScheme = checkScheme(ph.get(H.signingScheme), signingTime, authenticSigningTime);
    const plugin = ph.get(H.verificationPlugin);
    if (plugin !== undefined && typeof plugin !== 'string')
      throw new MalformedInputError(`malformed COSE: ${H.verificationPlugin} must be text`);

    for (const k of unprotected.keys()) {
      if (k !== LABEL_X5CHAIN && k !== H.timestampSignature && k !== H.signingAgent) {
        throw new MalformedInputError(`malformed COSE: unexpected unprotected header ${JSON.stringify(String(k))}`);
      }
      if (ph.has(k))
        throw new MalformedInputError(`malformed COSE: header ${String(k)} is both protected and unprotected`);
    }
    // x5chain may sit in either bucket (RFC 9360); it is an array of bstr, or one bstr for a single cert.
    const x5 = unprotected.get(LABEL_X5CHAIN) ?? ph.get(LABEL_X5CHAIN);
    const chainItems = x5 instanceof Uint8Array ? [x5] : x5;
    if (!Array.isArray(chainItems) || chainItems.length === 0)
      throw new MalformedInputError('malformed COSE: x5chain (label 33) is missing or empty');
    const certChain = chainItems.map((c, i) => asBytes(c, `x5chain[${i}]`));
    const ts = unprotected.get(H.timestampSignature);
    const timestampToken = ts !== undefined ? asBytes(ts, H.timestampSignature) : undefined;
    const agent = unprotected.get(H.signingAgent);

    // Sig_structure = ["Signature1", body_protected, external_aad = h'', payload]
    const signedBytes = Buffer.from(encode(['Signature1', protectedBytes, new Uint8Array(0), payload]));
    return {
      format: 'cose',
      alg,
      signingScheme,
      signingTime,
      authenticSigningTime,
      expiry,
      verificationPlugin: plugin,
      payload,
      signedBytes,
      signature,
      certChain,
      timestampToken,
      signingAgent: typeof agent === 'string' ? agent : undefined,
    };
  });
}

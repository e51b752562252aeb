import { isRecord, MalformedInputError } from '../../common/malformed.js';

export { isRecord };

/**
 * What both envelope formats (JWS, COSE_Sign1) boil down to, after every wire-level rule of the
 * Notary Project envelope specifications has been checked. Anything that fails those rules never
 * becomes an Envelope: the parsers throw MalformedInputError and the signature fails integrity.
 */
export type SigningScheme = 'notary.x509' | 'notary.x509.signingAuthority';
export type Algorithm = 'PS256' | 'PS384' | 'PS512' | 'ES256' | 'ES384' | 'ES512';

export interface Envelope {
  readonly format: 'jws' | 'cose';
  readonly alg: Algorithm;
  readonly signingScheme: SigningScheme;
  readonly signingTime?: Date;
  readonly authenticSigningTime?: Date;
  readonly expiry?: Date;
  readonly verificationPlugin?: string;
  /** The payload bytes exactly as signed. */
  readonly payload: Buffer;
  /** The bytes the signature covers (JWS signing input, or the COSE Sig_structure). */
  readonly signedBytes: Buffer;
  readonly signature: Buffer;
  /** DER certificates, leaf first. */
  readonly certChain: readonly Buffer[];
  /** RFC 3161 TimeStampToken (CMS ContentInfo), when the signer attached one. */
  readonly timestampToken?: Buffer;
  readonly signingAgent?: string;
}

export const PAYLOAD_CONTENT_TYPE = 'application/vnd.cncf.notary.payload.v1+json';
export const MEDIA_TYPE_JWS = 'application/jose+json';
export const MEDIA_TYPE_COSE = 'application/cose';
export const ALGORITHMS: readonly Algorithm[] = ['PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512'];

export const H = {
  signingScheme: 'io.cncf.notary.signingScheme',
  signingTime: 'io.cncf.notary.signingTime',
  authenticSigningTime: 'io.cncf.notary.authenticSigningTime',
  expiry: 'io.cncf.notary.expiry',
  verificationPlugin: 'io.cncf.notary.verificationPlugin',
  verificationPluginMinVersion: 'io.cncf.notary.verificationPluginMinVersion',
  timestampSignature: 'io.cncf.notary.timestampSignature',
  signingAgent: 'io.cncf.notary.signingAgent',
} as const;

/** The critical headers this verifier understands; any other name in `crit` fails verification. */
const KNOWN_CRITICAL = new Set<string>([
  H.signingScheme,
  H.expiry,
  H.authenticSigningTime,
  H.verificationPlugin,
  H.verificationPluginMinVersion,
]);
/** Present => must be listed in `crit` (signature-specification: "MUST be marked critical"). */
const MUST_BE_CRITICAL = [
  H.signingScheme,
  H.expiry,
  H.authenticSigningTime,
  H.verificationPlugin,
  H.verificationPluginMinVersion,
];

/**
 * The crit rules shared by both formats: `crit` lists the signing scheme and every present critical
 * header, names only present headers, and names nothing this verifier does not understand.
 */
export function checkCritical(
  crit: readonly string[],
  present: (name: string) => boolean,
  reservedByFormat: ReadonlySet<string>,
): void {
  if (crit.length === 0) throw new MalformedInputError('malformed envelope: "crit" is empty');
  if (new Set(crit).size !== crit.length) throw new MalformedInputError('malformed envelope: "crit" has duplicates');
  for (const name of crit) {
    if (reservedByFormat.has(name))
      throw new MalformedInputError(
        `malformed envelope: "crit" must not list the standard header ${JSON.stringify(name)}`,
      );
    if (!KNOWN_CRITICAL.has(name))
      throw new MalformedInputError(
        `unsupported critical header ${JSON.stringify(name)}: this verifier does not understand it`,
      );
    if (!present(name))
      throw new MalformedInputError(`malformed envelope: "crit" lists ${JSON.stringify(name)}, which is not present`);
  }
  for (const name of MUST_BE_CRITICAL) {
    if (present(name) && !crit.includes(name))
      throw new MalformedInputError(`malformed envelope: header ${JSON.stringify(name)} must be listed in "crit"`);
  }
}

/** The signing-scheme rules shared by both formats. */
export function checkScheme(
  scheme: unknown,
  signingTime: Date | undefined,
  authenticSigningTime: Date | undefined,
): SigningScheme {
  if (scheme === 'notary.x509') {
    if (!signingTime)
      throw new MalformedInputError(
        `malformed envelope: "${H.signingTime}" header must be present for signing scheme notary.x509`,
      );
    if (authenticSigningTime)
      throw new MalformedInputError(
        `malformed envelope: "${H.authenticSigningTime}" is only allowed with signing scheme ` +
          'notary.x509.signingAuthority',
      );
    return scheme;
  }
  if (scheme === 'notary.x509.signingAuthority') {
    if (!authenticSigningTime) {
      throw new MalformedInputError(
        `malformed envelope: "${H.authenticSigningTime}" header must be present for signing scheme ` +
          'notary.x509.signingAuthority',
      );
    }
    return scheme;
  }
  throw new MalformedInputError(`malformed envelope: unsupported signing scheme ${JSON.stringify(scheme)}`);
}

export interface TargetArtifact {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
}

/** Parses the signed payload: `{"targetArtifact": {mediaType, digest, size, ...}}`. */
export function parsePayload(bytes: Buffer): TargetArtifact {
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new MalformedInputError('malformed payload: not JSON');
  }
  const t = isRecord(json) ? json.targetArtifact : undefined;
  if (!isRecord(t)) throw new MalformedInputError('malformed payload: "targetArtifact" is missing');
  const { mediaType, digest, size } = t;
  if (
    typeof mediaType !== 'string' ||
    typeof digest !== 'string' ||
    typeof size !== 'number' ||
    !Number.isSafeInteger(size) ||
    size < 0
  ) {
    throw new MalformedInputError('malformed payload: "targetArtifact" needs mediaType, digest and size');
  }
  return { mediaType, digest, size };
}

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

export function parseRfc3339(v: unknown, what: string): Date {
  if (typeof v !== 'string' || !RFC3339.test(v))
    throw new MalformedInputError(`malformed envelope: ${what} is not an RFC 3339 time`);
  const d = new Date(v);
  if (Number.isNaN(d.getTime())) throw new MalformedInputError(`malformed envelope: ${what} is not a valid time`);
  return d;
}

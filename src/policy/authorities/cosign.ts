import { createHash, createPublicKey, X509Certificate, type KeyObject } from 'node:crypto';
import { isAbsolute } from 'node:path';
import * as z from 'zod/mini';
import { compiledSchema } from '../../common/schema.js';
import { PullguardError } from '../../common/errors.js';
import { FileReadError, readRegularFile } from '../../common/files.js';
import { isRegistryHost, parseReference, repositoryOf } from '../../common/reference.js';

/**
 * The settings of a `cosign:` authority in pullguard's policy, and their compiled form.
 *
 * The schema compiles while it validates: key files, certificate bundles and trusted roots are read and
 * parsed at policy load, so a missing or malformed file is a policy error (`pullguard policy check`
 * finds it, with the line) and not a per-pull surprise. File material is small and read once per run.
 *
 *   cosign:
 *     keys: [/etc/pullguard/keys/release.pub]        # or inline PEM; ECDSA P-256/384/521, RSA, Ed25519
 *     # or: certificates: {roots: [/etc/pki/root.pem], intermediates: [/etc/pki/inter.pem]}
 *     # or: keyless: true                             # Fulcio CAs from the trusted root
 *     identities: [{email: signer@example.com}]       # certificates/keyless: who may sign
 *     trustedRoot: /etc/pullguard/trusted_root.json   # default: the Sigstore public-good root built in
 *     rekorKeys: [/etc/pullguard/rekor.pub]           # extra Rekor keys (containers-policy rekorPublicKey*)
 *     tlog: false                                     # require a verified Rekor entry (default: keyless only)
 *     sct: false                                      # require a verified embedded SCT (default: keyless only)
 *     signatureRepository: registry.example/sigs/app  # where signatures live (COSIGN_REPOSITORY)
 *     signedIdentity: {type: matchRepository}         # containers-policy.json(5) semantics
 */

// ---------------------------------------------------------------------------------------------------------
// Compiled form (what the verifier reads). Plain data plus node KeyObjects; no @sigstore types, so the
// policy layer stays independent of the verification library.

export interface CosignKey {
  /** Where the key came from (a path, or "inline key #n"), for messages. */
  readonly source: string;
  readonly key: KeyObject;
  /** base64(SHA-256(SPKI DER)): what cosign writes as the bundle's `publicKey.hint`. */
  readonly hint: string;
  readonly description: string;
}

export interface CosignCertificate {
  readonly source: string;
  readonly der: Buffer;
}

/** One accepted signer. Every constraint present must hold; an authority accepts any one identity. */
export interface CosignIdentity {
  readonly issuer?: string;
  readonly issuerRegexp?: RegExp;
  /** Any email or URI SAN. */
  readonly subject?: string;
  readonly subjectRegexp?: RegExp;
  readonly email?: string;
  readonly emailRegexp?: RegExp;
  readonly uri?: string;
  readonly uriRegexp?: RegExp;
  /** A DNS SAN, matched like Go's VerifyHostname (exact, case-insensitive, `*.` wildcard in the SAN). */
  readonly hostname?: string;
}

export type SignedIdentity =
  | { readonly type: 'matchExact' }
  | { readonly type: 'matchRepoDigestOrExact' }
  | { readonly type: 'matchRepository' }
  | { readonly type: 'exactReference'; readonly dockerReference: string }
  | { readonly type: 'exactRepository'; readonly dockerRepository: string }
  | { readonly type: 'remapIdentity'; readonly prefix: string; readonly signedPrefix: string };

export interface TrustedRootFile {
  readonly source: string;
  /** The parsed JSON (a sigstore TrustedRoot, media type application/vnd.dev.sigstore.trustedroot+json). */
  readonly json: unknown;
}

/** A cosign authority, by what it trusts: keys, a private CA's certificates, or Sigstore keyless. */
export type CosignSpec = CosignKeysSpec | CosignCertificatesSpec | CosignKeylessSpec;

export interface CosignKeysSpec extends CosignCommonSpec {
  readonly mode: 'keys';
  readonly keys: readonly CosignKey[];
}

/** Signing certificates that chain to the policy's own roots (containers-policy fulcio/pki, or `certificates`). */
export interface CosignCertificatesSpec extends CosignCommonSpec {
  readonly mode: 'certificates';
  readonly roots: readonly CosignCertificate[];
  readonly intermediates: readonly CosignCertificate[];
  readonly identities: readonly CosignIdentity[];
}

/** Fulcio certificates under the trusted root (embedded or `trustedRoot`). */
export interface CosignKeylessSpec extends CosignCommonSpec {
  readonly mode: 'keyless';
  readonly identities: readonly CosignIdentity[];
}

interface CosignCommonSpec {
  /** undefined: the Sigstore public-good root embedded in the executable. */
  readonly trustedRoot?: TrustedRootFile;
  readonly rekorKeys: readonly CosignKey[];
  readonly tlog: boolean;
  readonly sct: boolean;
  readonly signatureRepository?: string;
  readonly signedIdentity: SignedIdentity;
}

// ---------------------------------------------------------------------------------------------------------
// Loading helpers, shared with the containers-policy.json translator.

/** Policy material (a key, a certificate, a trusted root) that cannot be used: the policy is invalid. */
export class MaterialError extends PullguardError {
  constructor(message: string) {
    super('POLICY_INVALID', message);
    this.name = 'MaterialError';
  }
}

const MAX_MATERIAL_BYTES = 1024 * 1024;

/**
 * Reads an absolute path, capped; relative paths are refused because containerd's working directory is not ours to
 * guess.
 */
export function readMaterial(path: string, what: string): Buffer {
  if (!isAbsolute(path)) throw new MaterialError(`${what} path ${JSON.stringify(path)} must be absolute`);
  try {
    return readRegularFile(path, { maxBytes: MAX_MATERIAL_BYTES, code: 'POLICY_INVALID', what });
  } catch (e) {
    if (!(e instanceof FileReadError)) throw e;
    throw new MaterialError(e.errno === 'EFBIG' ? `${what} ${path} ${e.why}` : e.message);
  }
}

const isInlinePem = (s: string) => s.trimStart().startsWith('-----BEGIN ');

/** All PEM blocks of one type, in order. */
export function pemBlocks(text: string, type: string): Buffer[] {
  const out: Buffer[] = [];
  const re = new RegExp(`-----BEGIN ${type}-----([\\s\\S]*?)-----END ${type}-----`, 'g');
  for (let m = re.exec(text); m; m = re.exec(text)) out.push(Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64'));
  return out;
}

export function describeKey(key: KeyObject): string {
  const d = key.asymmetricKeyDetails;
  switch (key.asymmetricKeyType) {
    case 'ec': {
      const c = d?.namedCurve;
      const name = c === 'prime256v1' ? 'P-256' : c === 'secp384r1' ? 'P-384' : c === 'secp521r1' ? 'P-521' : String(c);
      return `ECDSA ${name}`;
    }
    case 'rsa':
      return `RSA-${d?.modulusLength ?? '?'}`;
    case 'ed25519':
      return 'Ed25519';
    default:
      return String(key.asymmetricKeyType);
  }
}

/** Parses one PEM public key (SPKI, or an RSA PKCS#1 public key) and checks it is a kind cosign signs with. */
export function parsePublicKey(pem: Buffer | string, source: string): CosignKey {
  let key: KeyObject;
  try {
    key = createPublicKey({ key: pem, format: 'pem' });
  } catch {
    throw new MaterialError(`${source}: not a PEM public key`);
  }
  const type = key.asymmetricKeyType;
  const curve = key.asymmetricKeyDetails?.namedCurve;
  if (type === 'ec' && !['prime256v1', 'secp384r1', 'secp521r1'].includes(curve ?? ''))
    throw new MaterialError(`${source}: unsupported EC curve ${curve}`);
  if (type === 'rsa' && (key.asymmetricKeyDetails?.modulusLength ?? 0) < 2048)
    throw new MaterialError(`${source}: RSA keys under 2048 bits are refused`);
  if (type !== 'ec' && type !== 'rsa' && type !== 'ed25519')
    throw new MaterialError(`${source}: unsupported key type ${type} (use ECDSA, RSA or Ed25519)`);
  return { source, key, hint: keyHint(pem, key), description: describeKey(key) };
}

/**
 * base64(SHA-256(SPKI DER)). For an SPKI PEM (the only kind cosign writes) that DER is the PEM's own
 * body, which OpenSSL has just parsed as DER, so it is hashed as it is: `KeyObject.export` costs ~0.65 ms
 * on the first call of every run (OpenSSL's encoders start cold; the snapshot cannot hold them). The
 * hint only ever picks a key to try and words a failure: the key tried is always the policy's.
 */
function keyHint(pem: Buffer | string, key: KeyObject): string {
  const spki = pemBlocks(pem.toString(), 'PUBLIC KEY');
  const der = spki.length === 1 ? spki[0]! : key.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(der).digest('base64');
}

export function loadKey(ref: string, index: number, what = 'key'): CosignKey {
  if (isInlinePem(ref)) return parsePublicKey(ref, `inline ${what} #${index + 1}`);
  return parsePublicKey(readMaterial(ref, what), ref);
}

/** Every certificate in a PEM bundle; at least one, each parseable. */
export function parseCertificates(pem: Buffer | string, source: string): CosignCertificate[] {
  const ders = pemBlocks(pem.toString(), 'CERTIFICATE');
  if (ders.length === 0) throw new MaterialError(`${source}: no PEM certificate found`);
  return ders.map((der, i) => {
    try {
      new X509Certificate(der);
    } catch {
      throw new MaterialError(`${source}: certificate #${i + 1} does not parse`);
    }
    return { source: ders.length > 1 ? `${source} #${i + 1}` : source, der };
  });
}

export function loadCertificates(ref: string, what: string): CosignCertificate[] {
  return isInlinePem(ref) ? parseCertificates(ref, `inline ${what}`) : parseCertificates(readMaterial(ref, what), ref);
}

export function loadTrustedRoot(path: string): TrustedRootFile {
  const text = readMaterial(path, 'trusted root').toString('utf8');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new MaterialError(`trusted root ${path} is not JSON`);
  }
  const mt = (json as { mediaType?: unknown } | null)?.mediaType;
  if (typeof mt !== 'string' || !mt.startsWith('application/vnd.dev.sigstore.trustedroot')) {
    throw new MaterialError(
      `trusted root ${path} has mediaType ${JSON.stringify(mt)}; expected ` +
        'application/vnd.dev.sigstore.trustedroot+json',
    );
  }
  return { source: path, json };
}

/** A repository name as containers-policy writes it: fully expanded, no tag, no digest. */
export function checkRepositoryName(s: string): string | undefined {
  try {
    const ref = parseReference(s);
    if (ref.digest || s.endsWith(`:${ref.tag}`))
      return `${JSON.stringify(s)} must name a repository, without tag or digest`;
    // Fully expanded means a registry host and the whole path; the host's spelling (case, :443, Docker
    // Hub aliases) is canonicalized like every image name.
    const slash = s.indexOf('/');
    const expanded = slash > 0 && isRegistryHost(s.slice(0, slash)) && s.slice(slash + 1) === ref.path;
    if (expanded) return undefined;
    return `${JSON.stringify(s)} must be written fully expanded, as ${JSON.stringify(repositoryOf(ref))}`;
  } catch (e) {
    return (e as Error).message;
  }
}

function checkReferenceWithTagOrDigest(s: string): string | undefined {
  try {
    const ref = parseReference(s);
    if (!ref.digest && !s.endsWith(`:${ref.tag}`)) return `${JSON.stringify(s)} must carry a tag or digest`;
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}

/** Host[:port], a namespace or a repository; never a tag or digest (containers-policy.json(5) remapIdentity). */
function checkPrefix(s: string): string | undefined {
  if (s.length === 0 || /[@\s]/.test(s) || s.endsWith('/')) return `invalid prefix ${JSON.stringify(s)}`;
  const last = s.slice(s.lastIndexOf('/') + 1);
  if (s.includes('/') && last.includes(':')) return `prefix ${JSON.stringify(s)} must not carry a tag`;
  return undefined;
}

// ---------------------------------------------------------------------------------------------------------
// Schemas.

const nonEmpty = z.string().check(z.minLength(1));

function custom<T>(check: (v: T) => string | undefined) {
  return z.superRefine<T>((v, ctx) => {
    const problem = check(v);
    if (problem) ctx.issues.push({ code: 'custom', message: problem, input: v });
  });
}

export const signedIdentitySchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('matchExact') }),
  z.strictObject({ type: z.literal('matchRepoDigestOrExact') }),
  z.strictObject({ type: z.literal('matchRepository') }),
  z.strictObject({
    type: z.literal('exactReference'),
    dockerReference: nonEmpty.check(custom(checkReferenceWithTagOrDigest)),
  }),
  z.strictObject({ type: z.literal('exactRepository'), dockerRepository: nonEmpty.check(custom(checkRepositoryName)) }),
  z.strictObject({
    type: z.literal('remapIdentity'),
    prefix: nonEmpty.check(custom(checkPrefix)),
    signedPrefix: nonEmpty.check(custom(checkPrefix)),
  }),
]);

function compileRegexp(s: string): RegExp {
  // Anchored: a policy regexp must match the whole value. cosign's Go regexps are unanchored, which
  // turns `.*@example.com` into "contains" and is a classic way to trust `attacker@example.com.evil`.
  return new RegExp(`^(?:${s})$`, 'u');
}

const regexp = nonEmpty.check(
  custom((s: string) => {
    try {
      compileRegexp(s);
      return undefined;
    } catch (e) {
      return `invalid regular expression: ${(e as Error).message}`;
    }
  }),
);

const identitySchema = z
  .strictObject({
    issuer: z.optional(nonEmpty),
    issuerRegexp: z.optional(regexp),
    subject: z.optional(nonEmpty),
    subjectRegexp: z.optional(regexp),
    email: z.optional(nonEmpty),
    emailRegexp: z.optional(regexp),
    uri: z.optional(nonEmpty),
    uriRegexp: z.optional(regexp),
    hostname: z.optional(nonEmpty),
  })
  .check(
    custom((i) => {
      if (i.issuer !== undefined && i.issuerRegexp !== undefined) return 'use issuer or issuerRegexp, not both';
      const san = [i.subject, i.subjectRegexp, i.email, i.emailRegexp, i.uri, i.uriRegexp, i.hostname].filter(
        (v) => v !== undefined,
      );
      if (san.length === 0)
        return (
          'an identity needs a subject constraint: subject, subjectRegexp, email, emailRegexp, uri, ' +
          'uriRegexp or hostname'
        );
      return undefined;
    }),
  );

type RawIdentity = z.output<typeof identitySchema>;

const materialList = z.array(nonEmpty).check(z.minLength(1));

export const cosignRawSchema = z.strictObject({
  keys: z.optional(materialList),
  certificates: z.optional(z.strictObject({ roots: materialList, intermediates: z.optional(z.array(nonEmpty)) })),
  keyless: z.optional(z.literal(true)),
  identities: z.optional(z.array(identitySchema).check(z.minLength(1))),
  trustedRoot: z.optional(nonEmpty),
  rekorKeys: z.optional(materialList),
  tlog: z.optional(z.boolean()),
  sct: z.optional(z.boolean()),
  signatureRepository: z.optional(nonEmpty.check(custom(checkRepositoryName))),
  signedIdentity: z.optional(signedIdentitySchema),
});

export type CosignRawSpec = z.output<typeof cosignRawSchema>;

/**
 * pullguard's default identity rule is matchRepository, unlike containers-policy.json's
 * matchRepoDigestOrExact: cosign writes only the repository into `docker-reference`, and
 * containers/image's matchRepoDigestOrExact rejects a name without tag or digest, so that default would
 * refuse every signature cosign can make. The containers-policy.json translator keeps its own default.
 */
export const NATIVE_DEFAULT_SIGNED_IDENTITY: SignedIdentity = { type: 'matchRepository' };

export function compileIdentity(i: RawIdentity): CosignIdentity {
  const re = (s: string | undefined) => (s === undefined ? undefined : compileRegexp(s));
  return {
    issuer: i.issuer,
    issuerRegexp: re(i.issuerRegexp),
    subject: i.subject,
    subjectRegexp: re(i.subjectRegexp),
    email: i.email,
    emailRegexp: re(i.emailRegexp),
    uri: i.uri,
    uriRegexp: re(i.uriRegexp),
    hostname: i.hostname,
  };
}

/** Validates the combination and loads every file. Throws MaterialError with a one-line reason. */
export function compileCosignSpec(
  raw: CosignRawSpec,
  defaultSignedIdentity: SignedIdentity = NATIVE_DEFAULT_SIGNED_IDENTITY,
): CosignSpec {
  const modes = (['keys', 'certificates', 'keyless'] as const).filter((m) => raw[m] !== undefined);
  if (modes.length !== 1)
    throw new MaterialError('a cosign authority needs exactly one of: keys, certificates, keyless');
  const mode = modes[0]!;
  if (mode === 'keys' && raw.identities)
    throw new MaterialError('identities apply to certificates and keyless, not to keys');
  if (mode !== 'keys' && !raw.identities)
    throw new MaterialError(`${mode} needs identities: who may sign (e.g. [{email: signer@example.com}])`);
  if (mode === 'keyless') {
    const bad = raw.identities!.findIndex((i) => i.issuer === undefined && i.issuerRegexp === undefined);
    if (bad >= 0)
      throw new MaterialError(`keyless identity #${bad + 1} needs issuer or issuerRegexp (the OIDC provider)`);
  }
  const tlog = raw.tlog ?? mode === 'keyless';
  const sct = raw.sct ?? mode === 'keyless';
  // keyless with tlog: false is allowed, but Fulcio certificates live ten minutes: without a log time
  // only a bundle carrying an RFC 3161 timestamp from a trusted TSA can still pass.
  const keys = (raw.keys ?? []).map((k, i) => loadKey(k, i));
  const roots = (raw.certificates?.roots ?? []).flatMap((r) => loadCertificates(r, 'root certificate'));
  const intermediates = (raw.certificates?.intermediates ?? []).flatMap((r) =>
    loadCertificates(r, 'intermediate certificate'),
  );
  const identities = (raw.identities ?? []).map(compileIdentity);
  const common: CosignCommonSpec = {
    trustedRoot: raw.trustedRoot !== undefined ? loadTrustedRoot(raw.trustedRoot) : undefined,
    rekorKeys: (raw.rekorKeys ?? []).map((k, i) => loadKey(k, i, 'Rekor key')),
    tlog,
    sct,
    signatureRepository: raw.signatureRepository,
    signedIdentity: raw.signedIdentity ?? defaultSignedIdentity,
  };
  switch (mode) {
    case 'keys':
      return { ...common, mode, keys };
    case 'certificates':
      return { ...common, mode, roots, intermediates, identities };
    case 'keyless':
      return { ...common, mode, identities };
  }
}

/** The schema registered for `cosign:` in the native policy: validates, then compiles (reads files). */
export const cosignAuthoritySchema = compiledSchema(cosignRawSchema, (raw: CosignRawSpec) => compileCosignSpec(raw));

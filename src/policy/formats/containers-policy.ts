import { isNode, type Document, type LineCounter } from 'yaml';
import { lazyYamlDocument, parseStrictJson } from './json.js';
import { PullguardError } from '../../common/errors.js';
import * as z from 'zod/mini';
import { describeIssue, PARSE_OPTIONS, refineWith } from '../../common/schema.js';
import {
  MaterialError,
  loadCertificates,
  loadKey,
  parseCertificates,
  parsePublicKey,
  readMaterial,
  signedIdentitySchema,
  type CosignIdentity,
  type CosignKey,
  type CosignSpec,
  type SignedIdentity,
} from '../authorities/cosign.js';
import { validatePattern } from '../match.js';
import { excessiveNesting } from './nesting.js';
import { authorityOf, DEFAULT_TIMEOUT_MS, type Authority, type Policy, type Rule } from '../model.js';

/**
 * containers-policy.json(5) (what CRI-O and podman read from /etc/containers/policy.json), translated
 * into pullguard's policy model, so one file can serve both runtimes. Semantics follow containers/image
 * (signature/policy_config*.go, policy_eval_sigstore.go): strict parsing, every requirement of the most
 * specific scope must hold, `sigstoreSigned` accepts an image when one of its signatures is accepted.
 *
 * Scopes become rule patterns: `host`, `host/namespace`, `host/repo` match themselves and everything
 * below (pattern `S` and `S/**`); `*.domain` matches every host under domain; `""` matches everything.
 * The most specific scope wins in both; pullguard's "most literal characters" order agrees with
 * containers/image's "longest prefix, then wildcard domains" for every pair of scopes that can both match.
 *
 * Transports other than `docker` (`docker-daemon`, `dir`, `containers-storage`, ...) never apply to a
 * registry pull: they are ignored, and `policy check` says so. Fedora and RHEL ship such a section in
 * /etc/containers/policy.json, and one file must serve CRI-O and containerd.
 * `signedBy` (GPG simple signing) cannot be verified here: its scope denies every image, with a reason
 * (failing closed), and `policy check` says so; the rest of the file still applies.
 * Refused at load: scopes with a tag (containerd verifies digests; a tag cannot be bound),
 * `fulcio.buildSignerURI`, unknown fields.
 */

/** A containers-policy.json document: JSON, a "default" array, and no pullguard "version". */
export function looksLikeContainersPolicy(text: string): boolean {
  const t = text.trimStart();
  if (!t.startsWith('{')) return false;
  try {
    const doc = JSON.parse(t) as Record<string, unknown>;
    return !!doc && typeof doc === 'object' && Array.isArray(doc.default) && !('version' in doc);
  } catch {
    return false;
  }
}

export function parseContainersPolicy(text: string, source: string): Policy {
  const deep = excessiveNesting(text);
  if (deep) {
    throw new PullguardError('POLICY_INVALID', `invalid containers policy ${source}:${deep.line}: ${deep.why}`, {
      path: source,
    });
  }
  // Strict JSON skips the YAML parser; the YAML document is built only for an error's line (or to report
  // what JSON.parse would have let through, such as a duplicate key).
  const yaml = lazyYamlDocument(text);
  const where = (path: readonly (string | number)[]) => {
    const line = lineOf(yaml().doc, yaml().lc, path);
    return line !== undefined ? `${source}:${line}` : source;
  };
  const invalid = (path: readonly (string | number)[], msg: string) =>
    new PullguardError('POLICY_INVALID', `invalid containers policy ${where(path)}: ${msg}`, { path: source });
  const unsupported = (path: readonly (string | number)[], msg: string) =>
    new PullguardError('POLICY_UNSUPPORTED', `unsupported in containers policy ${where(path)}: ${msg}`, {
      path: source,
    });
  let root = parseStrictJson(text);
  if (root === undefined) {
    const { doc } = yaml();
    if (doc.errors[0]) throw invalid([], doc.errors[0].message.split('\n')[0]!);
    root = doc.toJS({ maxAliasCount: 0 }) as unknown;
  }
  const ctx: Ctx = { invalid, unsupported };
  const doc = validate(documentSchema, root, [], ctx);
  const notes: string[] = [];
  const defaultReqs = compileRequirements(doc.default, ['default'], ctx);

  const rules: (Rule & { unverifiable?: boolean })[] = [];
  let dockerDefault: Requirement[] | undefined;
  // Walked on the document itself, not on zod's record output: every key counts, `__proto__` too.
  for (const [transport, scopes] of Object.entries((root as { transports?: object }).transports ?? {})) {
    const at = ['transports', transport];
    if (transport !== 'docker') {
      notes.push(
        `${where(at)}: transport "${transport}" ignored: containerd pulls only from registries (the docker transport)`,
      );
      continue;
    }
    for (const [scope, reqs] of Object.entries(scopes as object)) {
      const path = ['transports', transport, scope];
      const requirements = compileRequirements(validate(requirementsSchema, reqs, path, ctx), path, ctx);
      if (scope === '') {
        dockerDefault = requirements;
        continue;
      }
      rules.push(toRule(`docker:${scope}`, scopePatterns(scope, path, ctx), requirements));
    }
  }

  // The docker transport's "" scope replaces the global default for every docker image; pullguard
  // sees nothing else, so then the global default never applies.
  let defaultAction: Policy['defaultAction'] = 'deny';
  const fallback = dockerDefault ?? defaultReqs;
  for (const r of rules) {
    if (r.unverifiable) notes.push(`scope ${r.name.slice('docker:'.length)}: ${UNVERIFIABLE}; its images are denied`);
  }
  if (fallback.some((r) => r.type === 'signedBy')) {
    const which = dockerDefault ? 'the docker transport default' : 'default';
    notes.push(`${which}: ${UNVERIFIABLE}; images no scope covers are denied`);
  }
  const fallbackName = dockerDefault ? 'docker:(transport default)' : 'default';
  const fallbackRule = toRule(fallbackName, ['**'], fallback);
  if (fallbackRule.action === 'verify') rules.push(fallbackRule);
  else defaultAction = fallbackRule.action;

  const plain = rules.map(({ unverifiable: _, ...r }) => r);
  return { source, mode: 'enforce', timeoutMs: DEFAULT_TIMEOUT_MS, defaultAction, rules: plain, registry: {}, notes };
}

const UNVERIFIABLE = 'signedBy (GPG simple signing) cannot be verified by pullguard';

// ---------------------------------------------------------------------------------------------------------

interface Ctx {
  invalid(path: readonly (string | number)[], msg: string): PullguardError;
  unsupported(path: readonly (string | number)[], msg: string): PullguardError;
}

type Requirement =
  | { type: 'insecureAcceptAnything' }
  | { type: 'reject' }
  | { type: 'signedBy' }
  | { type: 'sigstoreSigned'; spec: CosignSpec };

function toRule(name: string, match: string[], reqs: Requirement[]): Rule & { unverifiable?: boolean } {
  // Every requirement must hold: one reject rejects; insecureAcceptAnything adds nothing to the others.
  if (reqs.some((r) => r.type === 'reject'))
    return {
      name,
      match,
      action: 'deny',
      message: `rejected by containers policy scope ${name}`,
      authorities: [],
      require: 'all',
    };
  // A requirement pullguard cannot check is one that is never met: deny, and say why.
  if (reqs.some((r) => r.type === 'signedBy')) {
    const message = `containers policy scope ${name} requires signedBy (GPG) signatures, which pullguard cannot verify`;
    return { name, match, action: 'deny', message, authorities: [], require: 'all', unverifiable: true };
  }
  const signed = reqs.flatMap((r) => (r.type === 'sigstoreSigned' ? [r.spec] : []));
  if (signed.length === 0) return { name, match, action: 'allow', authorities: [], require: 'all' };
  const authorities: Authority[] = signed.map((spec, i) =>
    authorityOf('cosign', `${name} sigstoreSigned#${i + 1}`, spec),
  );
  return { name, match, action: 'verify', authorities, require: 'all' };
}

function scopePatterns(scope: string, path: readonly string[], ctx: Ctx): string[] {
  if (/^\*\.[^*/@:]+$/.test(scope)) return [`${scope}/**`];
  if (scope.includes('*'))
    throw ctx.invalid(path, `scope ${JSON.stringify(scope)}: only "*.domain" wildcards are allowed`);
  const at = scope.indexOf('@');
  const repo = at >= 0 ? scope.slice(0, at) : scope;
  const first = repo.split('/')[0]!;
  if (!/[.:]/.test(first) && first !== 'localhost') {
    throw ctx.invalid(
      path,
      `scope ${JSON.stringify(scope)} must be fully expanded, starting with a registry host ` +
        '(e.g. docker.io/library/busybox)',
    );
  }
  if (at < 0 && repo.includes('/') && repo.slice(repo.lastIndexOf('/') + 1).includes(':')) {
    throw ctx.unsupported(
      path,
      `scope ${JSON.stringify(scope)} names a tag: containerd verifies the digest it pulls, and a tag cannot be ` +
        'bound to it; use the repository scope',
    );
  }
  const patterns = at >= 0 ? [scope] : repo.includes('/') ? [repo, `${repo}/**`] : [`${repo}/**`];
  for (const p of patterns) {
    const problem = validatePattern(p);
    if (problem) throw ctx.invalid(path, `scope ${JSON.stringify(scope)}: ${problem}`);
  }
  return patterns;
}

// The schema: containers/image's shape checks (policy_config*.go), each with the reason it gives.

type Path = readonly (string | number)[];

/** `unknown field "k"` (with `for <type>` or `in <object>`), or `wrong` when the value is not an object. */
const objectErrors = (wrong: string, suffix = '') => ({
  error: (iss: { code: string; keys?: string[] }) =>
    iss.code === 'unrecognized_keys' ? `unknown field "${iss.keys![0]}"${suffix}` : wrong,
});
// Field schemas are shared: one zod instance is ~2.5 KiB of the startup snapshot, so there is one per
// kind of field, not one per key. Their issues carry a `field:<kind>` tag that validate() turns into the
// message with the field's name (FIELD_MESSAGES).
const FIELD_MESSAGES: Record<string, (k: string) => string> = {
  string: (k) => `"${k}" must be a non-empty string`,
  strings: (k) => `"${k}" must be a non-empty array of strings`,
  base64: (k) => `"${k}" must be base64 (of the PEM data)`,
  entries: (k) => `"${k}" contains no entries`,
};
const nonEmptyString = z.string({ error: 'field:string' }).check(z.minLength(1, 'field:string'));
const optionalString = z.optional(nonEmptyString);
const optionalStrings = z.optional(
  z.array(nonEmptyString, { error: 'field:strings' }).check(z.minLength(1, 'field:strings')),
);
// Go decodes []byte JSON fields from base64: keyData and friends are base64 of the PEM text.
const base64 = nonEmptyString.check(
  refineWith((s: string) => /^[A-Za-z0-9+/]*={0,2}$/.test(s) && s.length % 4 === 0, 'field:base64'),
);
const optionalBase64 = z.optional(base64);
const optionalBase64s = z.optional(z.array(base64, { error: 'field:entries' }).check(z.minLength(1, 'field:entries')));
const present = (v: Record<string, unknown>, ...ks: string[]) => ks.filter((k) => v[k] !== undefined);
/** The checks of a whole object, in order, each with containers/image's message; the first that fails counts. */
const rules = <T extends Record<string, unknown>>(...checks: [bad: (v: T) => boolean, message: string][]) =>
  z.superRefine((v: T, ctx) => {
    const failed = checks.find(([bad]) => bad(v));
    if (failed) ctx.issues.push({ code: 'custom', message: failed[1], input: v });
  });

const signedIdentity = z.pipe(
  z.unknown(),
  z.transform((v, ctx): SignedIdentity => {
    const parsed = signedIdentitySchema.safeParse(v);
    if (parsed.success) return parsed.data;
    ctx.issues.push({ code: 'custom', message: describeIssue(parsed.error.issues[0]!), input: v });
    return z.NEVER;
  }),
);

const fulcioSchema = z
  .strictObject(
    {
      buildSignerURI: z.optional(
        z.never({
          error:
            "fulcio.buildSignerURI is not supported yet; use pullguard's native keyless identities (uri/uriRegexp)",
        }),
      ),
      caPath: optionalString,
      caData: optionalBase64,
      oidcIssuer: nonEmptyString,
      subjectEmail: nonEmptyString,
    },
    objectErrors('"fulcio" must be an object', ' in fulcio'),
  )
  .check(
    rules([
      (f) => (f.caPath === undefined) === (f.caData === undefined),
      'exactly one of caPath and caData must be specified',
    ]),
  );

const pkiSchema = z
  .strictObject(
    {
      caRootsPath: optionalString,
      caRootsData: optionalBase64,
      caIntermediatesPath: optionalString,
      caIntermediatesData: optionalBase64,
      subjectEmail: optionalString,
      subjectHostname: optionalString,
    },
    objectErrors('"pki" must be an object', ' in pki'),
  )
  .check(
    rules(
      [
        (p) => (p.caRootsPath === undefined) === (p.caRootsData === undefined),
        'exactly one of caRootsPath and caRootsData must be specified',
      ],
      [
        (p) => p.caIntermediatesPath !== undefined && p.caIntermediatesData !== undefined,
        'caIntermediatesPath and caIntermediatesData cannot be used simultaneously',
      ],
      [
        (p) => p.subjectEmail === undefined && p.subjectHostname === undefined,
        'at least one of subjectEmail, subjectHostname must be specified',
      ],
    ),
  );

const REKOR_KEYS = ['rekorPublicKeyPath', 'rekorPublicKeyPaths', 'rekorPublicKeyData', 'rekorPublicKeyDatas'];

const sigstoreSignedSchema = z
  .strictObject(
    {
      type: z.literal('sigstoreSigned'),
      keyPath: optionalString,
      keyPaths: optionalStrings,
      keyData: optionalBase64,
      keyDatas: optionalBase64s,
      fulcio: z.optional(fulcioSchema),
      pki: z.optional(pkiSchema),
      rekorPublicKeyPath: optionalString,
      rekorPublicKeyPaths: optionalStrings,
      rekorPublicKeyData: optionalBase64,
      rekorPublicKeyDatas: optionalBase64s,
      signedIdentity: z.optional(signedIdentity),
    },
    objectErrors('', ' for sigstoreSigned'),
  )
  .check(
    rules(
      [
        (r) => present(r, 'keyPath', 'keyPaths', 'keyData', 'keyDatas', 'fulcio', 'pki').length !== 1,
        'exactly one of keyPath, keyPaths, keyData, keyDatas, fulcio, and pki must be specified',
      ],
      [
        (r) => present(r, ...REKOR_KEYS).length > 1,
        'at most one of rekorPublicKeyPath, rekorPublicKeyPaths, rekorPublicKeyData and rekorPublicKeyDatas ' +
          'can be used',
      ],
      [
        (r) => r.fulcio !== undefined && present(r, ...REKOR_KEYS).length === 0,
        'a Rekor public key (rekorPublicKey*) must be specified if fulcio is used',
      ],
      [(r) => r.pki !== undefined && present(r, ...REKOR_KEYS).length > 0, 'rekorPublicKey* is not supported with pki'],
    ),
  );

const SIGNED_BY_KEY_TYPES = ['GPGKeys', 'signedByGPGKeys', 'X509Certificates', 'signedByX509CAs'];

// Checked as strictly as containers/image does (policy_config.go), then denied at pull time.
const signedBySchema = z
  .strictObject(
    {
      type: z.literal('signedBy'),
      keyType: z.optional(z.unknown()),
      keyPath: z.optional(z.unknown()),
      keyPaths: z.optional(z.unknown()),
      keyData: z.optional(z.unknown()),
      signedIdentity: z.optional(z.unknown()),
    },
    objectErrors('', ' for signedBy'),
  )
  .check(
    z.superRefine((r, ctx) => {
      if (!SIGNED_BY_KEY_TYPES.includes(String(r.keyType))) {
        const message = `unknown signedBy keyType ${JSON.stringify(r.keyType)}`;
        ctx.issues.push({ code: 'custom', message, input: r, path: ['keyType'] });
      } else if (present(r, 'keyPath', 'keyPaths', 'keyData').length !== 1) {
        const message = 'exactly one of keyPath, keyPaths and keyData must be specified';
        ctx.issues.push({ code: 'custom', message, input: r });
      }
    }),
  );

const requirementSchema = z.discriminatedUnion(
  'type',
  [
    z.strictObject({ type: z.literal('insecureAcceptAnything') }, objectErrors('', ' for insecureAcceptAnything')),
    z.strictObject({ type: z.literal('reject') }, objectErrors('', ' for reject')),
    signedBySchema,
    sigstoreSignedSchema,
  ],
  {
    error: (iss) => {
      const type = (iss.input as { type?: unknown } | undefined)?.type;
      return iss.code === 'invalid_union' && typeof type === 'string'
        ? `unknown requirement type ${JSON.stringify(type)}`
        : 'a requirement must be an object with a "type"';
    },
  },
);

const requirementsSchema = z
  .array(requirementSchema, { error: 'requirements must be a non-empty array' })
  .check(z.minLength(1, 'requirements must be a non-empty array'));

const documentSchema = z.strictObject(
  {
    default: z
      .array(requirementSchema, { error: '"default" (an array of requirements) is mandatory' })
      .check(z.minLength(1, 'requirements must be a non-empty array')),
    transports: z.optional(
      z.record(
        z.string(),
        z.record(z.string(), z.unknown(), { error: 'a transport must map scopes to requirement arrays' }),
        { error: '"transports" must be an object' },
      ),
    ),
  },
  objectErrors('the document must be a JSON object'),
);

type RawRequirement = z.output<typeof requirementSchema>;
type RawSigstoreSigned = z.output<typeof sigstoreSignedSchema>;

/** Parses `value` (found at `path`) with `schema`; the first issue becomes the load error, at its line. */
function validate<S extends z.ZodMiniType>(schema: S, value: unknown, path: Path, ctx: Ctx): z.output<S> {
  const parsed = schema.safeParse(value, PARSE_OPTIONS);
  if (parsed.success) return parsed.data;
  // An unknown key first, as containers/image's strict decoder does: `defualt` is a typo, not a missing key.
  const issues = parsed.error.issues;
  const issue = issues.find((i) => i.code === 'unrecognized_keys') ?? issues[0]!;
  // An unknown key is reported at the key itself, as containers/image does.
  const key = issue.code === 'unrecognized_keys' ? [issue.keys[0]!] : [];
  const at = [...path, ...(issue.path as (string | number)[]), ...key];
  const field = FIELD_MESSAGES[/^field:(\w+)$/.exec(issue.message)?.[1] ?? ''];
  // A field's name is the last key on the path (`keyPaths` for keyPaths[1]).
  const name = String([...issue.path].reverse().find((p) => typeof p === 'string'));
  const message = field
    ? field(name)
    : issue.message && issue.message !== 'Invalid input'
      ? issue.message
      : describeIssue(issue);
  // fulcio.buildSignerURI is a feature pullguard lacks (POLICY_UNSUPPORTED), not a broken file.
  throw at.at(-1) === 'buildSignerURI' ? ctx.unsupported(at, message) : ctx.invalid(at, message);
}

// The compile step: files are read and keys parsed here, after the shape is known to be right.

function compileRequirements(reqs: readonly RawRequirement[], path: Path, ctx: Ctx): Requirement[] {
  return reqs.map((r, i) => {
    if (r.type !== 'sigstoreSigned') return { type: r.type };
    try {
      return { type: 'sigstoreSigned', spec: sigstoreSigned(r, [...path, i], ctx) };
    } catch (e) {
      if (e instanceof MaterialError) throw ctx.invalid([...path, i], e.message);
      throw e;
    }
  });
}

function sigstoreSigned(r: RawSigstoreSigned, path: Path, ctx: Ctx): CosignSpec {
  const pem = (b64: string) => Buffer.from(b64, 'base64');
  let rekorKeys: CosignKey[] = [];
  if (r.rekorPublicKeyPath !== undefined) rekorKeys = [loadKey(r.rekorPublicKeyPath, 0, 'Rekor public key')];
  if (r.rekorPublicKeyPaths !== undefined)
    rekorKeys = r.rekorPublicKeyPaths.map((p, i) => loadKey(p, i, 'Rekor public key'));
  if (r.rekorPublicKeyData !== undefined) rekorKeys = [parsePublicKey(pem(r.rekorPublicKeyData), 'rekorPublicKeyData')];
  if (r.rekorPublicKeyDatas !== undefined)
    rekorKeys = r.rekorPublicKeyDatas.map((d, i) => parsePublicKey(pem(d), `rekorPublicKeyDatas[${i}]`));
  for (const k of rekorKeys)
    if (k.key.asymmetricKeyType !== 'ec') throw ctx.invalid(path, `Rekor public key ${k.source} is not ECDSA`);

  // What every mode shares; each return below adds only its own mode's material (CosignSpec is a union).
  const base = {
    rekorKeys,
    tlog: rekorKeys.length > 0,
    sct: false,
    signedIdentity: r.signedIdentity ?? ({ type: 'matchRepoDigestOrExact' } as SignedIdentity),
  };

  if (r.keyPath !== undefined) return { ...base, mode: 'keys', keys: [loadKey(r.keyPath, 0)] };
  if (r.keyPaths !== undefined) return { ...base, mode: 'keys', keys: r.keyPaths.map((p, i) => loadKey(p, i)) };
  if (r.keyData !== undefined) return { ...base, mode: 'keys', keys: [parsePublicKey(pem(r.keyData), 'keyData')] };
  if (r.keyDatas !== undefined)
    return { ...base, mode: 'keys', keys: r.keyDatas.map((d, i) => parsePublicKey(pem(d), `keyDatas[${i}]`)) };

  if (r.fulcio !== undefined) {
    const f = r.fulcio;
    const ca =
      f.caPath !== undefined
        ? loadCertificates(f.caPath, 'Fulcio CA')
        : parseCertificates(pem(f.caData!), 'fulcio.caData');
    // containers/image puts every caPath certificate in the root pool and checks the chain at the
    // Rekor SET's time; SCTs are not checked (see its fulcio_cert.go), so neither are they here.
    return {
      ...base,
      mode: 'certificates',
      roots: ca,
      intermediates: [],
      identities: [{ issuer: f.oidcIssuer, email: f.subjectEmail }],
    };
  }

  const p = r.pki!;
  const roots =
    p.caRootsPath !== undefined
      ? loadCertificates(p.caRootsPath, 'PKI root')
      : parseCertificates(pem(p.caRootsData!), 'pki.caRootsData');
  const intermediates =
    p.caIntermediatesPath !== undefined
      ? parseCertificates(readMaterial(p.caIntermediatesPath, 'PKI intermediates'), p.caIntermediatesPath)
      : p.caIntermediatesData !== undefined
        ? parseCertificates(pem(p.caIntermediatesData), 'pki.caIntermediatesData')
        : [];
  const identity: CosignIdentity = { email: p.subjectEmail, hostname: p.subjectHostname };
  // containers/image verifies a pki certificate at the current time, with no log: tlog and sct stay off.
  return { ...base, mode: 'certificates', roots, intermediates, identities: [identity] };
}

function lineOf(doc: Document, lc: LineCounter, path: readonly (string | number)[]): number | undefined {
  for (let n = path.length; n >= 0; n--) {
    const node = doc.getIn(path.slice(0, n) as unknown[], true);
    if (isNode(node) && node.range) return lc.linePos(node.range[0]).line;
  }
  return undefined;
}

/** For a native policy's `containersPolicy: path`: read and translate the referenced file. */
export function loadContainersPolicyFile(path: string, referencedFrom: string): Policy {
  let text: string;
  try {
    text = readMaterial(path, 'containers policy').toString('utf8');
  } catch (e) {
    throw new PullguardError('POLICY_INVALID', `${referencedFrom}: containersPolicy: ${(e as Error).message}`, {
      path: referencedFrom,
    });
  }
  return parseContainersPolicy(text, path);
}

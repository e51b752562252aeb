import { isNode, type Document, type LineCounter } from 'yaml';
import { lazyYamlDocument, parseStrictJson } from './json.js';
import { PullguardError } from '../../common/errors.js';
import { describeIssue } from '../../common/schema.js';
import {
  MaterialError,
  loadCertificates,
  loadKey,
  parseCertificates,
  parsePublicKey,
  readMaterial,
  signedIdentitySchema,
  type CosignCertificate,
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

const TOP_KEYS = new Set(['default', 'transports']);

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
  if (!isObject(root)) throw invalid([], 'the document must be a JSON object');
  for (const k of Object.keys(root)) if (!TOP_KEYS.has(k)) throw invalid([k], `unknown field "${k}"`);
  if (!Array.isArray(root.default)) throw invalid(['default'], '"default" (an array of requirements) is mandatory');

  const ctx: Ctx = { invalid, unsupported };
  const notes: string[] = [];
  const defaultReqs = parseRequirements(root.default, ['default'], ctx);

  const rules: (Rule & { unverifiable?: boolean })[] = [];
  let dockerDefault: Requirement[] | undefined;
  if (root.transports !== undefined) {
    if (!isObject(root.transports)) throw invalid(['transports'], '"transports" must be an object');
    for (const [transport, scopes] of Object.entries(root.transports)) {
      const at = ['transports', transport];
      if (!isObject(scopes)) throw invalid(at, 'a transport must map scopes to requirement arrays');
      if (transport !== 'docker') {
        notes.push(
          `${where(at)}: transport "${transport}" ignored: containerd pulls only from registries (the docker transport)`,
        );
        continue;
      }
      for (const [scope, reqs] of Object.entries(scopes)) {
        const path = ['transports', transport, scope];
        const requirements = parseRequirements(reqs, path, ctx);
        if (scope === '') {
          dockerDefault = requirements;
          continue;
        }
        rules.push(toRule(`docker:${scope}`, scopePatterns(scope, path, ctx), requirements));
      }
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
      `scope ${JSON.stringify(scope)} must be fully expanded, starting with a registry host (e.g. docker.io/library/busybox)`,
    );
  }
  if (at < 0 && repo.includes('/') && repo.slice(repo.lastIndexOf('/') + 1).includes(':')) {
    throw ctx.unsupported(
      path,
      `scope ${JSON.stringify(scope)} names a tag: containerd verifies the digest it pulls, and a tag cannot be bound to it; use the repository scope`,
    );
  }
  const patterns = at >= 0 ? [scope] : repo.includes('/') ? [repo, `${repo}/**`] : [`${repo}/**`];
  for (const p of patterns) {
    const problem = validatePattern(p);
    if (problem) throw ctx.invalid(path, `scope ${JSON.stringify(scope)}: ${problem}`);
  }
  return patterns;
}

function parseRequirements(value: unknown, path: readonly (string | number)[], ctx: Ctx): Requirement[] {
  if (!Array.isArray(value) || value.length === 0) throw ctx.invalid(path, 'requirements must be a non-empty array');
  return value.map((r, i) => parseRequirement(r, [...path, i], ctx));
}

function parseRequirement(r: unknown, path: readonly (string | number)[], ctx: Ctx): Requirement {
  if (!isObject(r) || typeof r.type !== 'string')
    throw ctx.invalid(path, 'a requirement must be an object with a "type"');
  const only = (allowed: string[]) => {
    for (const k of Object.keys(r))
      if (!allowed.includes(k)) throw ctx.invalid([...path, k], `unknown field "${k}" for ${r.type}`);
  };
  switch (r.type) {
    case 'insecureAcceptAnything':
    case 'reject':
      only(['type']);
      return { type: r.type };
    case 'signedBy':
      // Checked as strictly as containers/image does (policy_config.go), then denied at pull time.
      only(['type', 'keyType', 'keyPath', 'keyPaths', 'keyData', 'signedIdentity']);
      if (!['GPGKeys', 'signedByGPGKeys', 'X509Certificates', 'signedByX509CAs'].includes(String(r.keyType))) {
        throw ctx.invalid([...path, 'keyType'], `unknown signedBy keyType ${JSON.stringify(r.keyType)}`);
      }
      if (['keyPath', 'keyPaths', 'keyData'].filter((k) => r[k] !== undefined).length !== 1) {
        throw ctx.invalid(path, 'exactly one of keyPath, keyPaths and keyData must be specified');
      }
      return { type: 'signedBy' };
    case 'sigstoreSigned':
      only([
        'type',
        'keyPath',
        'keyPaths',
        'keyData',
        'keyDatas',
        'fulcio',
        'pki',
        'rekorPublicKeyPath',
        'rekorPublicKeyPaths',
        'rekorPublicKeyData',
        'rekorPublicKeyDatas',
        'signedIdentity',
      ]);
      try {
        return { type: 'sigstoreSigned', spec: sigstoreSigned(r, path, ctx) };
      } catch (e) {
        if (e instanceof MaterialError) throw ctx.invalid(path, e.message);
        throw e;
      }
    default:
      throw ctx.invalid([...path, 'type'], `unknown requirement type ${JSON.stringify(r.type)}`);
  }
}

function sigstoreSigned(r: Record<string, unknown>, path: readonly (string | number)[], ctx: Ctx): CosignSpec {
  const str = (k: string, v: unknown = r[k]): string => {
    if (typeof v !== 'string' || v.length === 0) throw ctx.invalid([...path, k], `"${k}" must be a non-empty string`);
    return v;
  };
  const strs = (k: string): string[] => {
    const v = r[k];
    if (!Array.isArray(v) || v.length === 0)
      throw ctx.invalid([...path, k], `"${k}" must be a non-empty array of strings`);
    return v.map((x) => str(k, x));
  };
  // Go decodes []byte JSON fields from base64: keyData and friends are base64 of the PEM text.
  const b64 = (k: string, v: unknown = r[k]): Buffer => {
    const s = str(k, v);
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(s) || s.length % 4 !== 0)
      throw ctx.invalid([...path, k], `"${k}" must be base64 (of the PEM data)`);
    return Buffer.from(s, 'base64');
  };
  const present = (...ks: string[]) => ks.filter((k) => r[k] !== undefined);

  const keySources = present('keyPath', 'keyPaths', 'keyData', 'keyDatas', 'fulcio', 'pki');
  if (keySources.length !== 1)
    throw ctx.invalid(path, 'exactly one of keyPath, keyPaths, keyData, keyDatas, fulcio, and pki must be specified');
  const rekorSources = present(
    'rekorPublicKeyPath',
    'rekorPublicKeyPaths',
    'rekorPublicKeyData',
    'rekorPublicKeyDatas',
  );
  if (rekorSources.length > 1)
    throw ctx.invalid(
      path,
      'at most one of rekorPublicKeyPath, rekorPublicKeyPaths, rekorPublicKeyData and rekorPublicKeyDatas can be used',
    );
  if (r.fulcio !== undefined && rekorSources.length === 0)
    throw ctx.invalid(path, 'a Rekor public key (rekorPublicKey*) must be specified if fulcio is used');
  if (r.pki !== undefined && rekorSources.length > 0)
    throw ctx.invalid(path, 'rekorPublicKey* is not supported with pki');

  let signedIdentity: SignedIdentity = { type: 'matchRepoDigestOrExact' };
  if (r.signedIdentity !== undefined) {
    const parsed = signedIdentitySchema.safeParse(r.signedIdentity);
    if (!parsed.success) throw ctx.invalid([...path, 'signedIdentity'], describeIssue(parsed.error.issues[0]!));
    signedIdentity = parsed.data;
  }

  let rekorKeys: CosignKey[] = [];
  if (r.rekorPublicKeyPath !== undefined) rekorKeys = [loadKey(str('rekorPublicKeyPath'), 0, 'Rekor public key')];
  if (r.rekorPublicKeyPaths !== undefined)
    rekorKeys = strs('rekorPublicKeyPaths').map((p, i) => loadKey(p, i, 'Rekor public key'));
  if (r.rekorPublicKeyData !== undefined) rekorKeys = [parsePublicKey(b64('rekorPublicKeyData'), 'rekorPublicKeyData')];
  if (r.rekorPublicKeyDatas !== undefined)
    rekorKeys = (r.rekorPublicKeyDatas as unknown[]).map((d, i) =>
      parsePublicKey(b64('rekorPublicKeyDatas', d), `rekorPublicKeyDatas[${i}]`),
    );
  if (r.rekorPublicKeyDatas !== undefined && rekorKeys.length === 0)
    throw ctx.invalid([...path, 'rekorPublicKeyDatas'], 'contains no entries');
  for (const k of rekorKeys)
    if (k.key.asymmetricKeyType !== 'ec') throw ctx.invalid(path, `Rekor public key ${k.source} is not ECDSA`);
  const tlog = rekorKeys.length > 0;

  const base = {
    roots: [] as CosignCertificate[],
    intermediates: [] as CosignCertificate[],
    identities: [] as CosignIdentity[],
    rekorKeys,
    tlog,
    sct: false,
    signedIdentity,
    keys: [] as CosignKey[],
  };

  if (r.keyPath !== undefined) return { ...base, mode: 'keys', keys: [loadKey(str('keyPath'), 0)] };
  if (r.keyPaths !== undefined) return { ...base, mode: 'keys', keys: strs('keyPaths').map((p, i) => loadKey(p, i)) };
  if (r.keyData !== undefined) return { ...base, mode: 'keys', keys: [parsePublicKey(b64('keyData'), 'keyData')] };
  if (r.keyDatas !== undefined) {
    const v = r.keyDatas;
    if (!Array.isArray(v) || v.length === 0) throw ctx.invalid([...path, 'keyDatas'], '"keyDatas" contains no entries');
    return { ...base, mode: 'keys', keys: v.map((d, i) => parsePublicKey(b64('keyDatas', d), `keyDatas[${i}]`)) };
  }

  if (r.fulcio !== undefined) {
    const f = r.fulcio;
    const fp = [...path, 'fulcio'];
    if (!isObject(f)) throw ctx.invalid(fp, '"fulcio" must be an object');
    for (const k of Object.keys(f)) {
      if (k === 'buildSignerURI')
        throw ctx.unsupported(
          [...fp, k],
          "fulcio.buildSignerURI is not supported yet; use pullguard's native keyless identities (uri/uriRegexp)",
        );
      if (!['caPath', 'caData', 'oidcIssuer', 'subjectEmail'].includes(k))
        throw ctx.invalid([...fp, k], `unknown field "${k}" in fulcio`);
    }
    if ((f.caPath === undefined) === (f.caData === undefined))
      throw ctx.invalid(fp, 'exactly one of caPath and caData must be specified');
    const ca =
      f.caPath !== undefined
        ? loadCertificates(str('caPath', f.caPath), 'Fulcio CA')
        : parseCertificates(b64('caData', f.caData), 'fulcio.caData');
    const issuer = str('oidcIssuer', f.oidcIssuer);
    const email = str('subjectEmail', f.subjectEmail);
    // containers/image puts every caPath certificate in the root pool and checks the chain at the
    // Rekor SET's time; SCTs are not checked (see its fulcio_cert.go), so neither are they here.
    return { ...base, mode: 'certificates', roots: ca, identities: [{ issuer, email }] };
  }

  const p = r.pki;
  const pp = [...path, 'pki'];
  if (!isObject(p)) throw ctx.invalid(pp, '"pki" must be an object');
  for (const k of Object.keys(p)) {
    if (
      ![
        'caRootsPath',
        'caRootsData',
        'caIntermediatesPath',
        'caIntermediatesData',
        'subjectEmail',
        'subjectHostname',
      ].includes(k)
    )
      throw ctx.invalid([...pp, k], `unknown field "${k}" in pki`);
  }
  if ((p.caRootsPath === undefined) === (p.caRootsData === undefined))
    throw ctx.invalid(pp, 'exactly one of caRootsPath and caRootsData must be specified');
  if (p.caIntermediatesPath !== undefined && p.caIntermediatesData !== undefined)
    throw ctx.invalid(pp, 'caIntermediatesPath and caIntermediatesData cannot be used simultaneously');
  if (p.subjectEmail === undefined && p.subjectHostname === undefined)
    throw ctx.invalid(pp, 'at least one of subjectEmail, subjectHostname must be specified');
  const roots =
    p.caRootsPath !== undefined
      ? loadCertificates(str('caRootsPath', p.caRootsPath), 'PKI root')
      : parseCertificates(b64('caRootsData', p.caRootsData), 'pki.caRootsData');
  const intermediates =
    p.caIntermediatesPath !== undefined
      ? parseCertificates(
          readMaterial(str('caIntermediatesPath', p.caIntermediatesPath), 'PKI intermediates'),
          String(p.caIntermediatesPath),
        )
      : p.caIntermediatesData !== undefined
        ? parseCertificates(b64('caIntermediatesData', p.caIntermediatesData), 'pki.caIntermediatesData')
        : [];
  const identity: CosignIdentity = {
    email: p.subjectEmail !== undefined ? str('subjectEmail', p.subjectEmail) : undefined,
    hostname: p.subjectHostname !== undefined ? str('subjectHostname', p.subjectHostname) : undefined,
  };
  // containers/image verifies a pki certificate at the current time, with no log: tlog and sct stay off.
  return { ...base, mode: 'certificates', roots, intermediates, identities: [identity] };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
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

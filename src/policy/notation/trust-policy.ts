import { parseDn, type DnAttributes, isSubsetDn } from '../../common/dn.js';
import { isRecord, MalformedInputError } from '../../common/malformed.js';
import { canonicalRegistryHost } from '../../common/reference.js';

/**
 * notation's trust policy (trust-store-trust-policy.md, version 1.0), validated the way notation-go
 * validates it at load, plus the spec's "skip is not allowed on *" rule. Used both for a notation
 * configuration directory and for pullguard's inline notation authority.
 */
export type Level = 'strict' | 'permissive' | 'audit' | 'skip';
export type CheckType = 'integrity' | 'authenticity' | 'authenticTimestamp' | 'expiry' | 'revocation';
export type Action = 'enforce' | 'log' | 'skip';
export type TrustStoreType = 'ca' | 'signingAuthority' | 'tsa';

export interface TrustStoreRef {
  readonly type: TrustStoreType;
  readonly name: string;
}

export interface Statement {
  readonly name: string;
  readonly registryScopes: readonly string[];
  readonly level: Level;
  readonly enforcement: Readonly<Record<CheckType, Action>>;
  readonly verifyTimestamp: 'always' | 'afterCertExpiry';
  readonly trustStores: readonly TrustStoreRef[];
  /** undefined = `*` (any identity). */
  readonly trustedIdentities?: readonly { readonly raw: string; readonly dn: DnAttributes }[];
}

export const LEVELS: Readonly<Record<Level, Readonly<Record<CheckType, Action>>>> = {
  strict: {
    integrity: 'enforce',
    authenticity: 'enforce',
    authenticTimestamp: 'enforce',
    expiry: 'enforce',
    revocation: 'enforce',
  },
  permissive: {
    integrity: 'enforce',
    authenticity: 'enforce',
    authenticTimestamp: 'log',
    expiry: 'log',
    revocation: 'log',
  },
  audit: { integrity: 'enforce', authenticity: 'log', authenticTimestamp: 'log', expiry: 'log', revocation: 'log' },
  skip: { integrity: 'skip', authenticity: 'skip', authenticTimestamp: 'skip', expiry: 'skip', revocation: 'skip' },
};

const CHECK_TYPES: readonly CheckType[] = ['integrity', 'authenticity', 'authenticTimestamp', 'expiry', 'revocation'];
const STORE_TYPES: readonly TrustStoreType[] = ['ca', 'signingAuthority', 'tsa'];
const STORE_NAME = /^[a-zA-Z0-9_.-]+$/;
const DOMAIN =
  /^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))+)?(?::[0-9]+)?$/;
const REPOSITORY =
  /^[a-z0-9]+(?:(?:(?:[._]|__|[-]*)[a-z0-9]+)+)?(?:(?:\/[a-z0-9]+(?:(?:(?:[._]|__|[-]*)[a-z0-9]+)+)?)+)?$/;

function bad(msg: string): MalformedInputError {
  return new MalformedInputError(msg, 'POLICY_INVALID');
}

function stringArray(v: unknown, what: string): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v) || !v.every((s) => typeof s === 'string')) throw bad(`${what} must be an array of strings`);
  return v;
}

function canonicalScope(scope: string): string {
  const slash = scope.indexOf('/');
  return `${canonicalRegistryHost(scope.slice(0, slash))}${scope.slice(slash)}`;
}

/** One statement, without the document-level rules (scope uniqueness, names). */
export function parseStatement(raw: unknown, where: string, opts: { requireScopes: boolean }): Statement {
  if (!isRecord(raw)) throw bad(`${where}: a trust policy statement must be an object`);
  const allowed = new Set(['name', 'registryScopes', 'signatureVerification', 'trustStores', 'trustedIdentities']);
  for (const k of Object.keys(raw)) if (!allowed.has(k)) throw bad(`${where}: unknown key ${JSON.stringify(k)}`);
  const name = raw.name;
  if (typeof name !== 'string' || name.length === 0) throw bad(`${where}: every statement needs a non-empty "name"`);
  const at = `${where}: statement "${name}"`;
  const written = stringArray(raw.registryScopes, `${at}: registryScopes`);
  // Matched against canonical image names (common/reference.ts): `Registry.Example.com/app` is the
  // registry `registry.example.com`, as it is to containerd.
  const registryScopes = written.map((s) => (s === '*' || s.indexOf('/') <= 0 ? s : canonicalScope(s)));
  if (opts.requireScopes) {
    if (registryScopes.length === 0) throw bad(`${at} has no registryScopes`);
    if (registryScopes.includes('*') && registryScopes.length > 1)
      throw bad(`${at}: the wildcard scope "*" cannot be combined with other scopes`);
    for (const s of written) {
      if (s === '*') continue;
      const slash = s.indexOf('/');
      if (slash <= 0 || !DOMAIN.test(s.slice(0, slash)) || !REPOSITORY.test(s.slice(slash + 1))) {
        throw bad(
          `${at}: registry scope ${JSON.stringify(s)} is not a fully qualified repository (e.g. registry.example.com/team/app) or "*"`,
        );
      }
    }
  }
  const sv = raw.signatureVerification;
  if (!isRecord(sv)) throw bad(`${at}: "signatureVerification" is required`);
  for (const k of Object.keys(sv))
    if (!['level', 'override', 'verifyTimestamp'].includes(k))
      throw bad(`${at}: unknown signatureVerification key ${JSON.stringify(k)}`);
  const level = sv.level;
  if (typeof level !== 'string' || !(level in LEVELS))
    throw bad(`${at}: signatureVerification.level must be strict, permissive, audit or skip`);
  const enforcement: Record<CheckType, Action> = { ...LEVELS[level as Level] };
  if (sv.override !== undefined) {
    if (!isRecord(sv.override)) throw bad(`${at}: signatureVerification.override must be an object`);
    if (level === 'skip' && Object.keys(sv.override).length > 0)
      throw bad(`${at}: level "skip" cannot be customized with override`);
    for (const [k, v] of Object.entries(sv.override)) {
      if (!CHECK_TYPES.includes(k as CheckType))
        throw bad(
          `${at}: override of unknown check ${JSON.stringify(k)} (authenticity, authenticTimestamp, expiry, revocation)`,
        );
      if (v !== 'enforce' && v !== 'log' && v !== 'skip')
        throw bad(`${at}: override action for ${k} must be enforce, log or skip`);
      if (k === 'integrity') throw bad(`${at}: integrity cannot be overridden; it is always enforced`);
      if (v === 'skip' && k !== 'revocation') throw bad(`${at}: ${k} cannot be skipped, only revocation can`);
      enforcement[k as CheckType] = v;
    }
  }
  const vt = sv.verifyTimestamp ?? 'always';
  if (vt !== 'always' && vt !== 'afterCertExpiry')
    throw bad(`${at}: verifyTimestamp must be "always" or "afterCertExpiry"`);

  const storesRaw = stringArray(raw.trustStores, `${at}: trustStores`);
  const idsRaw = stringArray(raw.trustedIdentities, `${at}: trustedIdentities`);
  if (level === 'skip') {
    if (storesRaw.length > 0 || idsRaw.length > 0)
      throw bad(`${at}: level "skip" must not configure trustStores or trustedIdentities`);
    if (registryScopes.includes('*'))
      throw bad(
        `${at}: level "skip" is not allowed on the wildcard scope "*" (it would turn verification off for everything)`,
      );
    return {
      name,
      registryScopes,
      level,
      enforcement,
      verifyTimestamp: vt,
      trustStores: [],
      trustedIdentities: undefined,
    };
  }
  if (storesRaw.length === 0 || idsRaw.length === 0) throw bad(`${at} needs both trustStores and trustedIdentities`);
  const trustStores = storesRaw.map((s) => {
    const i = s.indexOf(':');
    const type = s.slice(0, i) as TrustStoreType;
    const storeName = s.slice(i + 1);
    if (i < 0) throw bad(`${at}: trust store ${JSON.stringify(s)} must be <type>:<name>`);
    if (!STORE_TYPES.includes(type))
      throw bad(`${at}: trust store type ${JSON.stringify(type)} must be ca, signingAuthority or tsa`);
    if (!STORE_NAME.test(storeName))
      throw bad(`${at}: trust store name ${JSON.stringify(storeName)} must match [a-zA-Z0-9_.-]+`);
    return { type, name: storeName };
  });
  let trustedIdentities: Statement['trustedIdentities'];
  if (idsRaw.includes('*')) {
    if (idsRaw.length > 1) throw bad(`${at}: the wildcard identity "*" cannot be combined with other identities`);
  } else {
    trustedIdentities = idsRaw.map((id) => {
      const i = id.indexOf(':');
      if (i < 0) throw bad(`${at}: trusted identity ${JSON.stringify(id)} must be "x509.subject: <DN>" or "*"`);
      const prefix = id.slice(0, i);
      const value = id.slice(i + 1).trim();
      if (prefix !== 'x509.subject')
        throw bad(`${at}: trusted identity type ${JSON.stringify(prefix)} is not supported (only x509.subject)`);
      if (value.length === 0) throw bad(`${at}: trusted identity ${JSON.stringify(id)} has no DN`);
      try {
        return { raw: id, dn: parseDn(value) };
      } catch (e) {
        throw bad(`${at}: ${(e as Error).message}`);
      }
    });
    for (const [i, a] of trustedIdentities.entries())
      for (const [j, b] of trustedIdentities.entries())
        if (i !== j && isSubsetDn(a.dn, b.dn))
          throw bad(`${at}: trusted identities ${JSON.stringify(a.raw)} and ${JSON.stringify(b.raw)} overlap`);
  }
  return {
    name,
    registryScopes,
    level: level as Level,
    enforcement,
    verifyTimestamp: vt,
    trustStores,
    trustedIdentities,
  };
}

/** A whole trustpolicy.json / trustpolicy.oci.json document. */
export function parseTrustPolicyDocument(text: string, source: string): Statement[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw bad(`invalid notation trust policy ${source}: not JSON (${(e as Error).message})`);
  }
  if (!isRecord(doc)) throw bad(`invalid notation trust policy ${source}: not a JSON object`);
  for (const k of Object.keys(doc))
    if (k !== 'version' && k !== 'trustPolicies')
      throw bad(`invalid notation trust policy ${source}: unknown key ${JSON.stringify(k)}`);
  if (doc.version !== '1.0')
    throw bad(`invalid notation trust policy ${source}: version must be "1.0", got ${JSON.stringify(doc.version)}`);
  if (!Array.isArray(doc.trustPolicies) || doc.trustPolicies.length === 0)
    throw bad(`invalid notation trust policy ${source}: "trustPolicies" must list at least one statement`);
  const statements = doc.trustPolicies.map((s, i) => {
    try {
      return parseStatement(s, `trustPolicies[${i}]`, { requireScopes: true });
    } catch (e) {
      throw bad(`invalid notation trust policy ${source}: ${(e as Error).message}`);
    }
  });
  const names = new Set<string>();
  const scopes = new Map<string, string>();
  for (const s of statements) {
    if (names.has(s.name)) throw bad(`invalid notation trust policy ${source}: duplicate statement name "${s.name}"`);
    names.add(s.name);
    for (const scope of s.registryScopes) {
      const other = scopes.get(scope);
      if (other)
        throw bad(
          `invalid notation trust policy ${source}: registry scope "${scope}" appears in both "${other}" and "${s.name}"`,
        );
      scopes.set(scope, s.name);
    }
  }
  return statements;
}

/** notation's selection: the statement naming the repository exactly, else the `*` one, else none. */
export function selectStatement(statements: readonly Statement[], repository: string): Statement | undefined {
  return (
    statements.find((s) => s.registryScopes.includes(repository)) ??
    statements.find((s) => s.registryScopes.includes('*'))
  );
}

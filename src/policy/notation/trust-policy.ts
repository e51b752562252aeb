import { parseDn, type DnAttributes, isSubsetDn } from '../../common/dn.js';
import { isRecord, MalformedInputError } from '../../common/malformed.js';
import { canonicalRegistryHost } from '../../common/reference.js';
import { PARSE_OPTIONS } from '../../common/schema.js';
import * as z from 'zod/mini';

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

const CHECK_TYPES = ['integrity', 'authenticity', 'authenticTimestamp', 'expiry', 'revocation'] as const;
const STORE_TYPES: readonly TrustStoreType[] = ['ca', 'signingAuthority', 'tsa'];
const STORE_NAME = /^[a-zA-Z0-9_.-]+$/;
const LABEL = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const DOMAIN = new RegExp(`^${LABEL}(?:(?:\\.${LABEL})+)?(?::[0-9]+)?$`);
const REPOSITORY =
  /^[a-z0-9]+(?:(?:(?:[._]|__|[-]*)[a-z0-9]+)+)?(?:(?:\/[a-z0-9]+(?:(?:(?:[._]|__|[-]*)[a-z0-9]+)+)?)+)?$/;

// The schema. Its messages follow the statement's name ("trustPolicies[0]: statement "s": <message>");
// one that starts with a blank reads on without a colon ("statement "s" has no registryScopes").

type Issues = { issues: z.core.$ZodRawIssue[] };
/** Records an issue; returns z.NEVER, so a transform can `return fail(...)`. */
function fail(ctx: Issues, input: unknown, message: string, path: PropertyKey[] = []): never {
  ctx.issues.push({ code: 'custom', message, input, path });
  return z.NEVER;
}

// One shared instance for the three string lists (a zod instance is ~2.5 KiB of the startup snapshot);
// parseStatement names the list in the message.
const STRINGS_TAG = 'field:strings';
const optionalStrings = z.optional(z.array(z.string({ error: STRINGS_TAG }), { error: STRINGS_TAG }));

const ACTIONS: readonly unknown[] = ['enforce', 'log', 'skip'];
// The object as written (z.record would drop a `__proto__` key, which notation refuses as an unknown check).
const overrideSchema = z.custom<Record<string, unknown>>(isRecord, {
  error: 'signatureVerification.override must be an object',
});

const signatureVerificationSchema = z
  .strictObject(
    {
      level: z.enum(['strict', 'permissive', 'audit', 'skip'], {
        error: 'signatureVerification.level must be strict, permissive, audit or skip',
      }),
      override: z.optional(overrideSchema),
      verifyTimestamp: z.optional(
        z.enum(['always', 'afterCertExpiry'], { error: 'verifyTimestamp must be "always" or "afterCertExpiry"' }),
      ),
    },
    {
      error: (iss) =>
        iss.code === 'unrecognized_keys'
          ? `unknown signatureVerification key ${JSON.stringify(iss.keys[0])}`
          : '"signatureVerification" is required',
    },
  )
  .check(
    z.superRefine((sv, ctx) => {
      const override = Object.entries(sv.override ?? {});
      if (sv.level === 'skip' && override.length > 0)
        return fail(ctx, sv, 'level "skip" cannot be customized with override');
      for (const [check, action] of override) {
        if (!(CHECK_TYPES as readonly string[]).includes(check))
          return fail(
            ctx,
            sv,
            `override of unknown check ${JSON.stringify(check)} (authenticity, authenticTimestamp, expiry, revocation)`,
          );
        if (!ACTIONS.includes(action))
          return fail(ctx, sv, `override action for ${check} must be enforce, log or skip`);
        if (check === 'integrity') return fail(ctx, sv, 'integrity cannot be overridden; it is always enforced');
        if (action === 'skip' && check !== 'revocation')
          return fail(ctx, sv, `${check} cannot be skipped, only revocation can`);
      }
    }),
  );

const trustStoreSchema = z.pipe(
  z.string(),
  z.transform((s, ctx): TrustStoreRef => {
    const i = s.indexOf(':');
    const type = s.slice(0, i) as TrustStoreType;
    const name = s.slice(i + 1);
    if (i < 0) return fail(ctx, s, `trust store ${JSON.stringify(s)} must be <type>:<name>`);
    if (!STORE_TYPES.includes(type))
      return fail(ctx, s, `trust store type ${JSON.stringify(type)} must be ca, signingAuthority or tsa`);
    if (!STORE_NAME.test(name))
      return fail(ctx, s, `trust store name ${JSON.stringify(name)} must match [a-zA-Z0-9_.-]+`);
    return { type, name };
  }),
);

type Identity = NonNullable<Statement['trustedIdentities']>[number];

const identitySchema = z.pipe(
  z.string(),
  z.transform((id, ctx): Identity => {
    const i = id.indexOf(':');
    if (i < 0) return fail(ctx, id, `trusted identity ${JSON.stringify(id)} must be "x509.subject: <DN>" or "*"`);
    const prefix = id.slice(0, i);
    const value = id.slice(i + 1).trim();
    if (prefix !== 'x509.subject')
      return fail(ctx, id, `trusted identity type ${JSON.stringify(prefix)} is not supported (only x509.subject)`);
    if (value.length === 0) return fail(ctx, id, `trusted identity ${JSON.stringify(id)} has no DN`);
    try {
      return { raw: id, dn: parseDn(value) };
    } catch (e) {
      return fail(ctx, id, (e as Error).message);
    }
  }),
);

const trustStoresSchema = z.array(trustStoreSchema);
const identitiesSchema = z.array(identitySchema);

const statementShape = z.strictObject(
  {
    name: z
      .string({ error: 'every statement needs a non-empty "name"' })
      .check(z.minLength(1, 'every statement needs a non-empty "name"')),
    registryScopes: optionalStrings,
    signatureVerification: signatureVerificationSchema,
    trustStores: optionalStrings,
    trustedIdentities: optionalStrings,
  },
  {
    error: (iss) =>
      iss.code === 'unrecognized_keys'
        ? `unknown key ${JSON.stringify(iss.keys[0])}`
        : 'a trust policy statement must be an object',
  },
);

function statementSchema(requireScopes: boolean) {
  return z.pipe(
    statementShape,
    z.transform((raw, ctx): Statement => {
      const written = raw.registryScopes ?? [];
      // Matched against canonical image names (common/reference.ts): `Registry.Example.com/app` is the
      // registry `registry.example.com`, as it is to containerd.
      const registryScopes = written.map((s) => (s === '*' || s.indexOf('/') <= 0 ? s : canonicalScope(s)));
      if (requireScopes) {
        if (registryScopes.length === 0) return fail(ctx, raw, ' has no registryScopes');
        if (registryScopes.includes('*') && registryScopes.length > 1)
          return fail(ctx, raw, 'the wildcard scope "*" cannot be combined with other scopes');
        const bad = written.find((s) => s !== '*' && !isRepositoryScope(s));
        if (bad !== undefined) {
          const message =
            `registry scope ${JSON.stringify(bad)} is not a fully qualified repository ` +
            '(e.g. registry.example.com/team/app) or "*"';
          return fail(ctx, raw, message);
        }
      }
      const { level, override, verifyTimestamp = 'always' } = raw.signatureVerification;
      const enforcement: Record<CheckType, Action> = {
        ...LEVELS[level],
        ...(override as Partial<Record<CheckType, Action>>),
      };
      const stores = raw.trustStores ?? [];
      const ids = raw.trustedIdentities ?? [];
      const base = { name: raw.name, registryScopes, level, enforcement, verifyTimestamp };
      if (level === 'skip') {
        if (stores.length > 0 || ids.length > 0)
          return fail(ctx, raw, 'level "skip" must not configure trustStores or trustedIdentities');
        if (registryScopes.includes('*'))
          return fail(
            ctx,
            raw,
            'level "skip" is not allowed on the wildcard scope "*" (it would turn verification off for everything)',
          );
        return { ...base, trustStores: [], trustedIdentities: undefined };
      }
      if (stores.length === 0 || ids.length === 0)
        return fail(ctx, raw, ' needs both trustStores and trustedIdentities');
      const trustStores = trustStoresSchema.safeParse(stores);
      if (!trustStores.success) return fail(ctx, raw, trustStores.error.issues[0]!.message);
      if (ids.includes('*')) {
        if (ids.length > 1) return fail(ctx, raw, 'the wildcard identity "*" cannot be combined with other identities');
        return { ...base, trustStores: trustStores.data, trustedIdentities: undefined };
      }
      const parsed = identitiesSchema.safeParse(ids);
      if (!parsed.success) return fail(ctx, raw, parsed.error.issues[0]!.message);
      const identities = parsed.data;
      for (const a of identities)
        for (const b of identities)
          if (a !== b && isSubsetDn(a.dn, b.dn))
            return fail(ctx, raw, `trusted identities ${JSON.stringify(a.raw)} and ${JSON.stringify(b.raw)} overlap`);
      return { ...base, trustStores: trustStores.data, trustedIdentities: identities };
    }),
  );
}

// Built once, when the module is evaluated (so at snapshot time): a policy load only runs them.
const DOCUMENT_STATEMENT = statementSchema(true);
const INLINE_STATEMENT = statementSchema(false);

function isRepositoryScope(s: string): boolean {
  const slash = s.indexOf('/');
  return slash > 0 && DOMAIN.test(s.slice(0, slash)) && REPOSITORY.test(s.slice(slash + 1));
}

function canonicalScope(scope: string): string {
  const slash = scope.indexOf('/');
  return `${canonicalRegistryHost(scope.slice(0, slash))}${scope.slice(slash)}`;
}

function bad(msg: string): MalformedInputError {
  return new MalformedInputError(msg, 'POLICY_INVALID');
}

/** One statement, without the document-level rules (scope uniqueness, names). */
export function parseStatement(raw: unknown, where: string, opts: { requireScopes: boolean }): Statement {
  const parsed = (opts.requireScopes ? DOCUMENT_STATEMENT : INLINE_STATEMENT).safeParse(raw, PARSE_OPTIONS);
  if (parsed.success) return parsed.data;
  // As notation-go reads a statement: its keys, then its name, then the rest.
  const issues = parsed.error.issues;
  const first =
    issues.find((i) => i.code === 'unrecognized_keys' && i.path.length === 0) ??
    issues.find((i) => i.path[0] === 'name') ??
    issues[0]!;
  const message =
    first.message === STRINGS_TAG ? `${String(first.path[0])} must be an array of strings` : first.message;
  const name = isRecord(raw) && typeof raw.name === 'string' && raw.name.length > 0 ? raw.name : undefined;
  if (name === undefined || (first.path[0] === undefined && first.code !== 'custom')) throw bad(`${where}: ${message}`);
  const at = `${where}: statement "${name}"`;
  throw bad(message.startsWith(' ') ? `${at}${message}` : `${at}: ${message}`);
}

const documentSchema = z.strictObject(
  {
    version: z.unknown().check(
      z.superRefine((v, ctx) => {
        if (v !== '1.0') fail(ctx, v, `version must be "1.0", got ${JSON.stringify(v)}`);
      }),
    ),
    trustPolicies: z
      .array(z.unknown(), { error: '"trustPolicies" must list at least one statement' })
      .check(z.minLength(1, '"trustPolicies" must list at least one statement')),
  },
  {
    error: (iss) =>
      iss.code === 'unrecognized_keys' ? `unknown key ${JSON.stringify(iss.keys[0])}` : 'not a JSON object',
  },
);

/** A whole trustpolicy.json / trustpolicy.oci.json document. */
export function parseTrustPolicyDocument(text: string, source: string): Statement[] {
  const invalid = (msg: string) => bad(`invalid notation trust policy ${source}: ${msg}`);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw invalid(`not JSON (${(e as Error).message})`);
  }
  const parsed = documentSchema.safeParse(json, PARSE_OPTIONS);
  if (!parsed.success) {
    const issues = parsed.error.issues;
    const order = ['unrecognized_keys', 'version', 'trustPolicies'];
    const rank = (i: (typeof issues)[number]) =>
      order.indexOf(i.code === 'unrecognized_keys' ? i.code : String(i.path[0]));
    throw invalid([...issues].sort((a, b) => rank(a) - rank(b))[0]!.message);
  }
  const statements = parsed.data.trustPolicies.map((s, i) => {
    try {
      return parseStatement(s, `trustPolicies[${i}]`, { requireScopes: true });
    } catch (e) {
      throw invalid((e as Error).message);
    }
  });
  const names = new Set<string>();
  const scopes = new Map<string, string>();
  for (const s of statements) {
    if (names.has(s.name)) throw invalid(`duplicate statement name "${s.name}"`);
    names.add(s.name);
    for (const scope of s.registryScopes) {
      const other = scopes.get(scope);
      if (other) throw invalid(`registry scope "${scope}" appears in both "${other}" and "${s.name}"`);
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

/**
 * Help for people writing a policy: the keys the schema accepts at a path, the nearest one to a typo,
 * and the pullguard spelling of cosign CLI flags and sigstore policy-controller fields people copy in.
 */
import type * as z from 'zod/mini';

interface Def {
  readonly type: string;
  readonly shape?: Record<string, z.ZodMiniType>;
  readonly innerType?: z.ZodMiniType;
  readonly in?: z.ZodMiniType;
  readonly element?: z.ZodMiniType;
  readonly options?: readonly z.ZodMiniType[];
}

const defOf = (s: z.ZodMiniType): Def => (s as unknown as { _zod: { def: Def } })._zod.def;

/** The object schemas `path` can lead to (several through a union). */
function schemasAt(schema: z.ZodMiniType, path: readonly PropertyKey[]): z.ZodMiniType[] {
  const d = defOf(schema);
  switch (d.type) {
    case 'optional':
    case 'default':
    case 'nullable':
    case 'prefault':
    case 'nonoptional':
    case 'readonly':
      return schemasAt(d.innerType!, path);
    case 'pipe':
      return schemasAt(d.in!, path);
    case 'union':
      return (d.options ?? []).flatMap((o) => schemasAt(o, path));
  }
  if (path.length === 0) return [schema];
  const [head, ...rest] = path;
  if (d.type === 'array' && typeof head === 'number') return schemasAt(d.element!, rest);
  if (d.type === 'object' && typeof head === 'string' && d.shape?.[head]) return schemasAt(d.shape[head], rest);
  return [];
}

/** The keys an object at `path` may have, per the schema. */
export function keysAt(schema: z.ZodMiniType, path: readonly PropertyKey[]): string[] {
  const keys = new Set<string>();
  for (const s of schemasAt(schema, path)) {
    const d = defOf(s);
    if (d.type === 'object' && d.shape) for (const k of Object.keys(d.shape)) keys.add(k);
  }
  return [...keys];
}

export function levenshtein(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j]!;
      prev[j] = Math.min(up + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return prev[b.length]!;
}

/**
 * cosign CLI flags (`cosign verify --help`) and sigstore policy-controller fields, and what pullguard
 * calls them. Keys are compared without dashes, underscores and case.
 */
const COSIGN_VOCABULARY: Record<string, string> = {
  key: '`keys: [FILE]` (a list of public keys)',
  publickey: '`keys: [FILE]`',
  certificateoidcissuer: '`issuer` (under `identities:`)',
  certificateoidcissuerregexp: '`issuerRegexp` (under `identities:`)',
  certificateidentity: '`subject` (under `identities:`)',
  certificateidentityregexp: '`subjectRegexp` (under `identities:`)',
  certemail: '`email` (under `identities:`)',
  certificateemail: '`email` (under `identities:`)',
  identity: '`identities: [{issuer, subject}]`',
  keylessidentities: '`keyless: true` with `identities:`',
  insecureignoretlog: '`tlog: false`',
  insecureignoresct: '`sct: false`',
  trustedroot: '`trustedRoot: FILE`',
  certificatechain: '`certificates: {roots: [FILE], intermediates: [FILE]}`',
  certchain: '`certificates: {roots: [FILE], intermediates: [FILE]}`',
  caroots: '`certificates: {roots: [FILE]}`',
  caintermediates: '`certificates: {intermediates: [FILE]}`',
  cert: '`certificates: {roots: [FILE]}` (pullguard trusts CA roots, not one leaf certificate)',
  certificate: '`certificates: {roots: [FILE]}` (pullguard trusts CA roots, not one leaf certificate)',
  rekorurl: '`rekorKeys: [FILE]` or `trustedRoot: FILE` (pullguard verifies offline, from the bundle)',
  signaturerepository: '`signatureRepository` (what COSIGN_REPOSITORY sets for the CLI)',
  cosignrepository: '`signatureRepository`',
  ctlog: '`sct: true|false`',
  tlog: '`tlog: true|false`',
};

const norm = (k: string) => k.toLowerCase().replace(/[-_]/g, '');

/** "did you mean ..." for an unknown key, or undefined when nothing is close. */
export function suggestKey(unknown: string, known: readonly string[]): string | undefined {
  const exact = known.find((k) => norm(k) === norm(unknown));
  if (exact) return `did you mean \`${exact}\`?`;
  const vocab = COSIGN_VOCABULARY[norm(unknown)];
  if (vocab && !known.includes(unknown)) return `that is cosign's name; pullguard's is ${vocab}`;
  let best: { key: string; d: number } | undefined;
  for (const k of known) {
    const d = levenshtein(unknown.toLowerCase(), k.toLowerCase());
    if (!best || d < best.d) best = { key: k, d };
  }
  if (best && best.d <= Math.max(1, Math.min(3, Math.floor(best.key.length / 3))))
    return `did you mean \`${best.key}\`?`;
  return undefined;
}

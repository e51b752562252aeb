/**
 * zod/mini, not the classic `zod` API: the classic build adds ~420 KiB to the bundle (~13 ms to every
 * pull's start-up) and cannot be tree-shaken. mini ships no English messages, so issues are described here.
 * Import it as `import * as z from 'zod/mini'` and never re-export the namespace: a namespace used as a
 * value defeats tree-shaking and drags in every locale (~260 KiB).
 */
import * as z from 'zod/mini';

export type Issue = z.core.$ZodIssue;

export function describeIssue(issue: Issue): string {
  const path = formatPath(issue.path);
  return path ? `${path}: ${issueMessage(issue)}` : issueMessage(issue);
}

export function formatPath(path: readonly PropertyKey[]): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : `${i === 0 ? '' : '.'}${String(p)}`)).join('');
}

/** Parse options that keep the offending input in issues, so messages can say "got array" or "missing". */
export const PARSE_OPTIONS = { reportInput: true } as const;

function issueMessage(issue: Issue): string {
  const i = issue as Issue & Record<string, unknown>;
  switch (issue.code) {
    case 'invalid_type':
      return !('input' in i) || i.input === undefined
        ? `required ${String(i.expected)} is missing`
        : `expected ${String(i.expected)}, got ${typeName(i.input)}`;
    case 'invalid_value': {
      const values = (i.values as unknown[]).map((v) => JSON.stringify(v)).join(', ');
      if (!('input' in i) || i.input === undefined) return `required, one of ${values}`;
      return `must be one of ${values}, got ${JSON.stringify(i.input)}`;
    }
    case 'unrecognized_keys': {
      const keys = i.keys as string[];
      return `unknown key${keys.length > 1 ? 's' : ''} ${keys.map((k) => `"${k}"`).join(', ')}`;
    }
    case 'too_small':
      return i.origin === 'array'
        ? `needs at least ${String(i.minimum)} item(s)`
        : i.origin === 'string'
          ? `must have at least ${String(i.minimum)} character(s)`
          : `must be ${i.inclusive ? '>=' : '>'} ${String(i.minimum)}`;
    case 'too_big':
      return i.origin === 'array'
        ? `at most ${String(i.maximum)} item(s)`
        : i.origin === 'string'
          ? `at most ${String(i.maximum)} characters`
          : `must be ${i.inclusive ? '<=' : '<'} ${String(i.maximum)}`;
    case 'invalid_format':
      return `malformed ${String(i.format)}`;
    case 'invalid_union': {
      // Report the branch that got past the type check: that is the form the author meant.
      const branches = (i.errors as Issue[][] | undefined) ?? [];
      const meant = branches.find((b) => b[0] && b[0].code !== 'invalid_type')?.[0];
      if (!meant) return 'matches none of the allowed forms';
      const sub = formatPath(meant.path);
      return sub ? `${sub}: ${issueMessage(meant)}` : issueMessage(meant);
    }
    default:
      return issue.message && issue.message !== 'Invalid input' ? issue.message : 'invalid value';
  }
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

/** A custom check with a fixed message, the mini spelling of `.refine(fn, message)`. */
export function refineWith<T>(fn: (v: T) => boolean, message: string) {
  return z.refine<T>(fn, { error: message });
}

/**
 * A schema that validates with `raw`, then compiles the value (reading the files it names): anything
 * `compile` throws becomes an issue at that value, so a bad key file is a policy error with its line.
 */
export function compiledSchema<R extends z.ZodMiniType, T>(raw: R, compile: (value: z.output<R>) => T) {
  return z.pipe(
    raw,
    z.transform((value: z.output<R>, ctx): T => {
      try {
        return compile(value);
      } catch (e) {
        ctx.issues.push({ code: 'custom', message: e instanceof Error ? e.message : String(e), input: value });
        return z.NEVER;
      }
    }),
  );
}

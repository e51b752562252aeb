import { isAlias, isMap, isNode, isScalar, visit, type Document, type LineCounter } from 'yaml';
import { PullguardError } from '../../common/errors.js';
import { describeIssue, formatPath, PARSE_OPTIONS, type Issue } from '../../common/schema.js';
import { keysAt, suggestKey } from '../suggest.js';
import { AUTHORITY_KINDS } from '../authorities/index.js';
import { loadContainersPolicyFile } from './containers-policy.js';
import { lazyYamlDocument, parseStrictJson } from './json.js';
import { excessiveNesting } from './nesting.js';
import { DEFAULT_CACHE_DIR, DEFAULT_TIMEOUT_MS, type Authority, type Policy } from '../model.js';

const DEFAULT_CACHE_TTL_MS = 10 * 60_000;
const DEFAULT_REVOCATION_INTERVAL_MS = 5 * 60_000;
import { policyDocumentSchema, type PolicyDocument } from '../schema.js';

/** pullguard's own YAML policy (also accepts JSON, which is YAML). */
export function parseNativePolicy(text: string, source: string): Policy {
  const deep = excessiveNesting(text);
  if (deep) throw invalid(source, deep.line, deep.why);
  // JSON skips the YAML parser; the YAML document is still built, lazily, for the line of an error.
  const yaml = lazyYamlDocument(text);
  const lineAt = (path: readonly PropertyKey[]) => lineOf(yaml().doc, yaml().lc, path);
  let js = parseStrictJson(text) as Record<string, unknown> | undefined;
  if (js === undefined) {
    const { doc, lc } = yaml();
    if (doc.errors.length > 0) {
      throw invalidAll(
        source,
        doc.errors.map((e) => ({ ...lc.linePos(e.pos[0]), message: e.message.split('\n')[0]! })),
      );
    }
    js = toPlain(doc, lc, source);
  }
  // `containersPolicy: /etc/containers/policy.json` takes the rules and the default from that file, as
  // CRI-O would read it; this document then only adds mode, timeout and registry settings.
  const containersPolicy = typeof js === 'object' && js !== null ? js.containersPolicy : undefined;
  if (containersPolicy !== undefined) {
    const line = lineAt(['containersPolicy']);
    if (typeof containersPolicy !== 'string' || containersPolicy.length === 0)
      throw invalid(source, line, 'containersPolicy: expected the path of a containers-policy.json file');
    for (const k of ['rules', 'default'] as const) {
      if (k in js)
        throw invalid(source, lineAt([k]), `${k}: comes from containersPolicy ${containersPolicy}; remove it here`);
    }
    delete js.containersPolicy;
  }
  const parsed = policyDocumentSchema.safeParse(js, PARSE_OPTIONS);
  if (!parsed.success) {
    const found = parsed.error.issues.flatMap((i) => locateIssue(yaml().doc, yaml().lc, i));
    throw invalidAll(
      source,
      found.sort((a, b) => (a.line ?? 0) - (b.line ?? 0)),
    );
  }
  const policy = toModel(parsed.data, source);
  if (typeof containersPolicy !== 'string') return policy;
  const imported = loadContainersPolicyFile(containersPolicy, source);
  const { defaultAction, rules, notes } = imported;
  return { ...policy, source: `${source} (rules from ${containersPolicy})`, defaultAction, rules, notes };
}

/** One problem in a policy file, at the line (and column) of the offending key. */
export interface PolicyProblem {
  readonly line?: number;
  readonly col?: number;
  readonly message: string;
}

/**
 * Where an issue points: an unknown key at its own line (not the mapping's), with a suggestion for the
 * key that was meant; anything else at the deepest node that exists along its path.
 */
function locateIssue(doc: Document, lc: LineCounter, issue: Issue): PolicyProblem[] {
  if (issue.code === 'unrecognized_keys') {
    const known = keysAt(policyDocumentSchema, issue.path);
    const map = doc.getIn(issue.path as unknown[], true);
    return issue.keys.map((key) => {
      const pair = isMap(map) ? map.items.find((p) => isScalar(p.key) && p.key.value === key) : undefined;
      const pos = isScalar(pair?.key) && pair.key.range ? lc.linePos(pair.key.range[0]) : undefined;
      const hint = suggestKey(key, known);
      const at = formatPath(issue.path);
      const message = `${at ? `${at}: ` : ''}unknown key "${key}"${hint ? `; ${hint}` : ''}`;
      return { line: pos?.line ?? lineOf(doc, lc, issue.path), col: pos?.col, message };
    });
  }
  const node = nodeAlong(doc, issue.path);
  const pos = node?.range ? lc.linePos(node.range[0]!) : undefined;
  return [{ line: pos?.line, col: pos?.col, message: describeIssue(issue) }];
}

function toModel(doc: PolicyDocument, source: string): Policy {
  return {
    source,
    mode: doc.mode,
    timeoutMs: doc.timeout ?? DEFAULT_TIMEOUT_MS,
    defaultAction: doc.default,
    registry: doc.registry,
    ...(doc.log ? { log: doc.log } : {}),
    ...(doc.cache
      ? {
          cache: {
            dir: doc.cache.dir ?? DEFAULT_CACHE_DIR,
            ttlMs: doc.cache.ttl ?? DEFAULT_CACHE_TTL_MS,
            revocationIntervalMs: doc.cache.revocationInterval ?? DEFAULT_REVOCATION_INTERVAL_MS,
          },
        }
      : {}),
    rules: doc.rules.map((r) => ({
      name: r.name,
      match: typeof r.match === 'string' ? [r.match] : r.match,
      action: r.action,
      message: r.message,
      require: r.require,
      ...(r.staleIfError !== undefined ? { staleIfErrorMs: r.staleIfError } : {}),
      authorities: (r.authorities ?? []).map((a, i): Authority => {
        // The schema admits exactly one kind per authority, compiled by that kind's own schema.
        const kind = AUTHORITY_KINDS.find((k) => a[k] !== undefined)!;
        return { name: a.name ?? `${r.name}/${kind}#${i + 1}`, kind, spec: a[kind] } as Authority;
      }),
    })),
  };
}

/**
 * The document as plain data. Aliases are expanded with yaml's cap (`maxAliasCount`), which stops a
 * "billion laughs" document (aliases of aliases, exponential when expanded) after a few hundred nodes;
 * that is a configuration error at the first alias, not an internal one.
 */
function toPlain(doc: Document, lc: LineCounter, source: string): Record<string, unknown> {
  try {
    return (doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT }) ?? {}) as Record<string, unknown>;
  } catch (e) {
    if (!(e instanceof ReferenceError)) throw e;
    let line: number | undefined;
    visit(doc, {
      Alias(_, node) {
        if (isAlias(node) && node.range) line = lc.linePos(node.range[0]).line;
        return visit.BREAK;
      },
    });
    const why =
      `too many YAML alias expansions (more than ${MAX_ALIAS_COUNT}); write the values out ` +
      'instead of nesting aliases';
    throw invalid(source, line, why);
  }
}

const MAX_ALIAS_COUNT = 100;

/** The line of the deepest YAML node that exists along `path`: the offending key, or its parent. */
function lineOf(doc: Document, lc: LineCounter, path: readonly PropertyKey[]): number | undefined {
  const node = nodeAlong(doc, path);
  return node?.range ? lc.linePos(node.range[0]!).line : undefined;
}

/**
 * The deepest node along `path`. For a value, its key: "timeout: 3 days" is reported where `timeout`
 * is written; for a missing key, the mapping that lacks it.
 */
function nodeAlong(doc: Document, path: readonly PropertyKey[]): { range?: readonly number[] | null } | undefined {
  for (let n = path.length; n >= 0; n--) {
    const parent = n > 0 ? doc.getIn(path.slice(0, n - 1) as unknown[], true) : undefined;
    if (n > 0 && isMap(parent)) {
      const pair = parent.items.find((p) => isScalar(p.key) && p.key.value === path[n - 1]);
      if (pair && isScalar(pair.key) && pair.key.range) return pair.key;
    }
    const node = n === 0 ? doc.contents : doc.getIn(path.slice(0, n) as unknown[], true);
    if (isNode(node) && node.range) return node;
  }
  return undefined;
}

/** All problems at once: the message names the first (it is the event line), `detail.problems` has every one. */
function invalidAll(source: string, problems: readonly PolicyProblem[]): PullguardError {
  const first = problems[0] ?? { message: 'invalid' };
  const more =
    problems.length > 1
      ? ` (and ${problems.length - 1} more ` + `problem${problems.length > 2 ? 's' : ''}: run pullguard policy check)`
      : '';
  const where = first.line !== undefined ? `${source}:${first.line}` : source;
  const detail = { path: source, line: first.line, problems };
  return new PullguardError('POLICY_INVALID', `invalid policy ${where}: ${first.message}${more}`, detail);
}

function invalid(source: string, line: number | undefined, message: string): PullguardError {
  return invalidAll(source, [{ line, message }]);
}

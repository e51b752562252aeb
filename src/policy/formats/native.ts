import { isAlias, isNode, LineCounter, parseDocument, visit, type Document } from 'yaml';
import { PullguardError } from '../../common/errors.js';
import { describeIssue, PARSE_OPTIONS } from '../../common/schema.js';
import { AUTHORITY_KINDS } from '../authorities/index.js';
import { loadContainersPolicyFile } from './containers-policy.js';
import { excessiveNesting } from './nesting.js';
import { DEFAULT_TIMEOUT_MS, type Authority, type Policy } from '../model.js';
import { policyDocumentSchema, type PolicyDocument } from '../schema.js';

/** pullguard's own YAML policy (also accepts JSON, which is YAML). */
export function parseNativePolicy(text: string, source: string): Policy {
  const deep = excessiveNesting(text);
  if (deep) throw invalid(source, deep.line, deep.why);
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: false });
  const syntaxError = doc.errors[0];
  if (syntaxError) {
    const line = lineCounter.linePos(syntaxError.pos[0]).line;
    throw invalid(source, line, syntaxError.message.split('\n')[0]!);
  }
  const js = toPlain(doc, lineCounter, source);
  // `containersPolicy: /etc/containers/policy.json` takes the rules and the default from that file, as
  // CRI-O would read it; this document then only adds mode, timeout and registry settings.
  const containersPolicy = typeof js === 'object' && js !== null ? js.containersPolicy : undefined;
  if (containersPolicy !== undefined) {
    const line = lineOf(doc, lineCounter, ['containersPolicy']);
    if (typeof containersPolicy !== 'string' || containersPolicy.length === 0) throw invalid(source, line, 'containersPolicy: expected the path of a containers-policy.json file');
    for (const k of ['rules', 'default'] as const) {
      if (k in js) throw invalid(source, lineOf(doc, lineCounter, [k]), `${k}: comes from containersPolicy ${containersPolicy}; remove it here`);
    }
    delete js.containersPolicy;
  }
  const parsed = policyDocumentSchema.safeParse(js, PARSE_OPTIONS);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw invalid(source, lineOf(doc, lineCounter, issue.path), describeIssue(issue));
  }
  const policy = toModel(parsed.data, source);
  if (typeof containersPolicy !== 'string') return policy;
  const imported = loadContainersPolicyFile(containersPolicy, source);
  const { defaultAction, rules, notes } = imported;
  return { ...policy, source: `${source} (rules from ${containersPolicy})`, defaultAction, rules, notes };
}

function toModel(doc: PolicyDocument, source: string): Policy {
  return {
    source,
    mode: doc.mode,
    timeoutMs: doc.timeout ?? DEFAULT_TIMEOUT_MS,
    defaultAction: doc.default,
    registry: doc.registry,
    rules: doc.rules.map((r) => ({
      name: r.name,
      match: typeof r.match === 'string' ? [r.match] : r.match,
      action: r.action,
      message: r.message,
      require: r.require,
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
    const why = `too many YAML alias expansions (more than ${MAX_ALIAS_COUNT}); write the values out instead of nesting aliases`;
    throw invalid(source, line, why);
  }
}

const MAX_ALIAS_COUNT = 100;

/** The line of the deepest YAML node that exists along `path`: the offending key, or its parent. */
function lineOf(doc: Document, lc: LineCounter, path: readonly PropertyKey[]): number | undefined {
  for (let n = path.length; n >= 0; n--) {
    const node = doc.getIn(path.slice(0, n) as unknown[], true);
    if (isNode(node) && node.range) return lc.linePos(node.range[0]).line;
  }
  return undefined;
}

function invalid(source: string, line: number | undefined, message: string): PullguardError {
  const where = line !== undefined ? `${source}:${line}` : source;
  return new PullguardError('POLICY_INVALID', `invalid policy ${where}: ${message}`, { path: source, line });
}

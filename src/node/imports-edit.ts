/**
 * Adds or removes one entry of the top-level `imports` array of a containerd config.toml, as a text
 * edit that leaves every other byte alone (comments, layout, key order): an operator's diff shows one
 * line. Handles the array inline or over several lines, with comments and a trailing comma, and a
 * file with no `imports` (a line is added after `version`, or before the first key or table).
 *
 * The scanner knows just enough TOML to find that array: table headers, comments, basic, literal and
 * multi-line strings, nested arrays and inline tables. Every result is checked by the caller against
 * a real TOML parse (plan.ts `checkEdit`): a file this scanner misreads is refused, never damaged.
 */
import { PullguardError } from '../common/errors.js';

interface ArraySpan {
  /** Offsets of `[` and `]`. */
  readonly open: number;
  readonly close: number;
  readonly elements: readonly { readonly start: number; readonly end: number; readonly value: string | undefined }[];
}

interface TopLevel {
  /** The `imports` value, when the key exists. */
  readonly imports?: ArraySpan | 'not-an-array';
  /** Offset just after the `version = N` line (its newline included), when there is one. */
  readonly afterVersion?: number;
  /** Offset of the first top-level key or table header (text.length when none). */
  readonly firstItem: number;
}

const refuse = (why: string) => new PullguardError('CONTAINERD_CONFIG', `cannot edit imports: ${why}`);

function skipWsAndComments(t: string, i: number, newlines: boolean): number {
  for (;;) {
    const c = t[i];
    if (c === ' ' || c === '\t' || (newlines && (c === '\n' || c === '\r'))) i++;
    else if (c === '#') {
      while (i < t.length && t[i] !== '\n') i++;
    } else return i;
  }
}

/** End offset (exclusive) of the string starting at `i`, and its value for single-line basic/literal strings. */
function scanString(t: string, i: number): { end: number; value: string | undefined } {
  const q = t[i]!;
  if (t.startsWith(q.repeat(3), i)) {
    const close = t.indexOf(q.repeat(3), i + 3);
    if (close < 0) throw refuse('unterminated multi-line string');
    let end = close + 3;
    while (t[end] === q) end++;
    return { end, value: undefined };
  }
  let j = i + 1;
  while (j < t.length && t[j] !== q && t[j] !== '\n') j += q === '"' && t[j] === '\\' ? 2 : 1;
  if (t[j] !== q) throw refuse('unterminated string');
  const raw = t.slice(i, j + 1);
  let value: string | undefined;
  if (q === "'") value = raw.slice(1, -1);
  else {
    try {
      value = JSON.parse(raw) as string;
    } catch {
      value = undefined;
    }
  }
  return { end: j + 1, value };
}

/** End offset of any value starting at `i` (arrays and inline tables over several lines). */
function scanValue(t: string, i: number): number {
  const c = t[i];
  if (c === '"' || c === "'") return scanString(t, i).end;
  if (c === '[' || c === '{') {
    const close = c === '[' ? ']' : '}';
    let j = i + 1;
    for (;;) {
      j = skipWsAndComments(t, j, true);
      if (j >= t.length) throw refuse('unterminated array or table');
      if (t[j] === close) return j + 1;
      if (t[j] === ',' || t[j] === '=' || t[j] === '.') j++;
      else if (c === '{' && /[A-Za-z0-9_-]/.test(t[j]!)) while (/[A-Za-z0-9_-]/.test(t[j] ?? '')) j++;
      else j = scanValue(t, j);
    }
  }
  let j = i;
  while (j < t.length && !/[\s,\]}#]/.test(t[j]!)) j++;
  if (j === i) throw refuse(`unexpected ${JSON.stringify(t[i] ?? 'end of file')}`);
  return j;
}

function arraySpan(t: string, open: number): ArraySpan {
  const elements: { start: number; end: number; value: string | undefined }[] = [];
  let j = open + 1;
  for (;;) {
    j = skipWsAndComments(t, j, true);
    if (j >= t.length) throw refuse('unterminated imports array');
    if (t[j] === ']') return { open, close: j, elements };
    if (t[j] === ',') {
      j++;
      continue;
    }
    const start = j;
    const isString = t[j] === '"' || t[j] === "'";
    const s = isString ? scanString(t, j) : { end: scanValue(t, j), value: undefined };
    elements.push({ start, end: s.end, value: s.value });
    j = s.end;
  }
}

/** Finds the top-level keys that matter, stopping at the first table header. */
function scanTopLevel(t: string): TopLevel {
  let i = 0;
  let imports: TopLevel['imports'];
  let afterVersion: number | undefined;
  let firstItem = t.length;
  for (;;) {
    i = skipWsAndComments(t, i, true);
    if (i >= t.length || t[i] === '[') {
      firstItem = Math.min(firstItem, i);
      break;
    }
    firstItem = Math.min(firstItem, i);
    const keyStart = i;
    // A key: bare, quoted or dotted.
    while (i < t.length && t[i] !== '=' && t[i] !== '\n')
      i = t[i] === '"' || t[i] === "'" ? scanString(t, i).end : i + 1;
    if (t[i] !== '=') throw refuse(`cannot read the key at offset ${keyStart}`);
    const key = t
      .slice(keyStart, i)
      .trim()
      .replace(/^"imports"$|^'imports'$/, 'imports');
    i = skipWsAndComments(t, i + 1, false);
    const valueStart = i;
    if (key === 'imports') imports = t[i] === '[' ? arraySpan(t, i) : 'not-an-array';
    i = scanValue(t, i);
    if (key === 'version') {
      const nl = t.indexOf('\n', i);
      afterVersion = nl < 0 ? t.length : nl + 1;
    }
    if (i === valueStart) throw refuse('empty value');
  }
  return { imports, afterVersion, firstItem };
}

const lineStart = (t: string, i: number) => t.lastIndexOf('\n', i - 1) + 1;
const indentAt = (t: string, i: number) => /^[ \t]*/.exec(t.slice(lineStart(t, i)))![0];

function quoted(entry: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters cannot be written into a TOML string
  if (/["\\\u0000-\u001f\u007f]/.test(entry))
    throw refuse(`${JSON.stringify(entry)}: quotes, backslashes and control characters are not supported`);
  return JSON.stringify(entry);
}

/** The text with `entry` appended to the top-level imports (created when absent). */
export function addImport(text: string, entry: string): string {
  const q = quoted(entry);
  const top = scanTopLevel(text);
  if (top.imports === 'not-an-array') throw refuse('imports is not an array');
  if (!top.imports) {
    const line = `imports = [${q}]\n`;
    if (top.afterVersion !== undefined) {
      const at = top.afterVersion;
      return `${text.slice(0, at)}${at === text.length && !text.endsWith('\n') ? '\n' : ''}${line}${text.slice(at)}`;
    }
    return `${text.slice(0, top.firstItem)}${line}${text.slice(top.firstItem)}`;
  }
  const { open, close, elements } = top.imports;
  const last = elements[elements.length - 1];
  if (!last) {
    return /^\s*$/.test(text.slice(open + 1, close))
      ? `${text.slice(0, open)}[${q}]${text.slice(close + 1)}`
      : `${text.slice(0, close)}${q}, ${text.slice(close)}`;
  }
  const afterLast = skipWsAndComments(text, last.end, true);
  const trailingComma = text[afterLast] === ',' ? afterLast : undefined;
  const multiLine = text.slice(open, close).includes('\n');
  if (multiLine) {
    const indent = indentAt(text, last.start);
    if (trailingComma !== undefined)
      return `${text.slice(0, trailingComma + 1)}\n${indent}${q},${text.slice(trailingComma + 1)}`;
    return `${text.slice(0, last.end)},\n${indent}${q}${text.slice(last.end)}`;
  }
  if (trailingComma !== undefined) return `${text.slice(0, trailingComma + 1)} ${q}${text.slice(trailingComma + 1)}`;
  return `${text.slice(0, last.end)}, ${q}${text.slice(last.end)}`;
}

/** The text without the imports element equal to `entry`; undefined when it is not there. */
export function removeImport(text: string, entry: string): string | undefined {
  const top = scanTopLevel(text);
  if (!top.imports || top.imports === 'not-an-array') return undefined;
  const { open, close, elements } = top.imports;
  const k = elements.findIndex((e) => e.value === entry);
  if (k < 0) return undefined;
  const el = elements[k]!;
  if (elements.length === 1) return `${text.slice(0, open)}[]${text.slice(close + 1)}`;
  const afterEl = skipWsAndComments(text, el.end, false);
  const comma = text[afterEl] === ',' ? afterEl : undefined;
  const ls = lineStart(text, el.start);
  const lineEnd = text.indexOf('\n', el.end);
  const restOfLine = text.slice(comma !== undefined ? comma + 1 : el.end, lineEnd < 0 ? text.length : lineEnd);
  const aloneOnLine =
    /^[ \t]*$/.test(text.slice(ls, el.start)) &&
    /^[ \t]*(#.*)?$/.test(restOfLine) &&
    ls > open &&
    lineEnd >= 0 &&
    lineEnd < close;
  if (aloneOnLine) return `${text.slice(0, ls)}${text.slice(lineEnd + 1)}`;
  if (k > 0) {
    const prev = elements[k - 1]!;
    const prevComma = text.indexOf(',', prev.end);
    return `${text.slice(0, prevComma)}${text.slice(el.end)}`;
  }
  const next = elements[k + 1]!;
  return `${text.slice(0, el.start)}${text.slice(next.start)}`;
}

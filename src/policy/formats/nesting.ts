/**
 * A cheap, linear look at a YAML or JSON policy before the real parser sees it. The parser's cost grows
 * much faster than the input on deep nesting: 3 MB of `x: - - - ...` took 15 s and 1 GB, 200,000 `[`
 * took 4 s and 400 MB before failing with a stack overflow. A policy is a few kilobytes nested a
 * dozen levels deep; anything far past that is refused at once, with its line.
 */
export const MAX_NESTING = 100;

/** The first line that nests deeper than MAX_NESTING, or undefined. */
export function excessiveNesting(text: string): { line: number; why: string } | undefined {
  let depth = 0;
  let line = 1;
  let quote: '"' | "'" | undefined;
  let comment = false;
  let atLineStart = true;
  let indent = 0;
  let dashes = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '\n') {
      line++;
      comment = false;
      atLineStart = true;
      indent = 0;
      dashes = 0;
      if (quote === "'") quote = undefined; // YAML single quotes may span lines; good enough for a bound
      continue;
    }
    if (comment) continue;
    if (quote) {
      if (c === '\\' && quote === '"') i++;
      else if (c === quote) quote = undefined;
      continue;
    }
    if (atLineStart && c === ' ') {
      if (++indent > MAX_NESTING * 4) return { line, why: `indented more than ${MAX_NESTING * 4} columns` };
      continue;
    }
    atLineStart = false;
    if (c === '"' || c === "'") quote = c;
    else if (c === '#') comment = true;
    else if (c === '[' || c === '{') {
      if (++depth > MAX_NESTING) return { line, why: `nested more than ${MAX_NESTING} levels deep` };
    } else if (c === ']' || c === '}') depth = Math.max(0, depth - 1);
    else if (c === '-' && (text[i + 1] === ' ' || text[i + 1] === '\t') && ++dashes > MAX_NESTING) {
      return { line, why: `more than ${MAX_NESTING} sequence markers on one line` };
    }
  }
  return undefined;
}

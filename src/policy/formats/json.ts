import { LineCounter, parseDocument, type Document } from 'yaml';

/**
 * JSON policy documents (containers-policy.json, a native policy written as JSON) without the YAML
 * parser: JSON.parse is ~10x faster than building a YAML document, which stays the path for YAML and
 * for every error message (it knows lines). The one difference that matters is duplicate keys: the
 * YAML path refuses them (uniqueKeys), JSON.parse keeps the last one silently, so they are looked for
 * here and such a document takes the YAML path, which then reports it.
 *
 * Returns the parsed value, or undefined when the text is not strict JSON (let the YAML path decide).
 */
export function parseStrictJson(text: string): unknown {
  const t = text.trimStart();
  if (!t.startsWith('{') && !t.startsWith('[')) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(t);
  } catch {
    return undefined;
  }
  return hasDuplicateKeys(t) ? undefined : value;
}

/** Scans text that JSON.parse accepted: a key seen twice in one object. */
function hasDuplicateKeys(t: string): boolean {
  const stack: (Set<string> | null)[] = [];
  let expectKey = false;
  for (let i = 0; i < t.length; i++) {
    const c = t.charCodeAt(i);
    if (c === 0x7b /* { */) {
      stack.push(new Set());
      expectKey = true;
    } else if (c === 0x5b /* [ */) {
      stack.push(null);
      expectKey = false;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      stack.pop();
      expectKey = false;
    } else if (c === 0x2c /* , */) {
      expectKey = stack[stack.length - 1] instanceof Set;
    } else if (c === 0x22 /* " */) {
      const start = i;
      let escaped = false;
      for (i++; i < t.length; i++) {
        const d = t.charCodeAt(i);
        if (d === 0x5c /* \ */) {
          escaped = true;
          i++;
        } else if (d === 0x22) break;
      }
      const keys = stack[stack.length - 1];
      if (expectKey && keys) {
        const raw = t.slice(start, i + 1);
        const key = escaped ? (JSON.parse(raw) as string) : raw.slice(1, -1);
        if (keys.has(key)) return true;
        keys.add(key);
        expectKey = false;
      }
    }
  }
  return false;
}

/** The YAML document of `text` with its line counter, built on first use: for the line of an error. */
export function lazyYamlDocument(text: string): () => { doc: Document; lc: LineCounter } {
  let built: { doc: Document; lc: LineCounter } | undefined;
  return () => {
    if (!built) {
      const lc = new LineCounter();
      built = { doc: parseDocument(text, { lineCounter: lc, uniqueKeys: true, prettyErrors: false }), lc };
    }
    return built;
  };
}

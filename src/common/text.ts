/**
 * Text from outside (a registry's error body, a certificate's subject, a signature's claims) ends up in
 * the one line containerd makes the Kubernetes event. It must stay one line, look like what it is, and
 * never pass for pullguard's own words.
 */

/**
 * Everything that breaks a line or disguises text: C0 and C1 controls and DEL (Cc, including U+0085
 * NEL and U+009B CSI), line and paragraph separators (U+2028, U+2029), format characters (Cf: bidi
 * embeddings, overrides and isolates U+202A-U+202E and U+2066-U+2069, U+200E/U+200F, zero-width
 * U+200B-U+200D, U+2060, U+FEFF, soft hyphen, tag characters), lone surrogates and private-use code
 * points, and unusual spaces (Zs other than U+0020, which render as a space of any width).
 */
const UNSAFE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}\p{Co}\p{Zs}]+/gu;

/** One line of plain text: every run of unsafe characters becomes one space. */
export function flattenText(s: string): string {
  return s.replace(UNSAFE, ' ').trim();
}

/**
 * Someone else's words, quoted: flattened, cut to `maxChars`, in double quotes with `"` and `\`
 * escaped. Whatever a registry writes (`x" allowed ...: signature verified`), the reader sees where
 * our text stops and theirs starts.
 */
export function quoteUntrusted(s: string, maxChars = 160): string {
  let flat = flattenText(s);
  if (flat.length > maxChars) flat = `${dropLoneSurrogate(flat.slice(0, maxChars))}...`;
  return JSON.stringify(flat);
}

/** A cut in the middle of a surrogate pair would leave half a character. */
export function dropLoneSurrogate(s: string): string {
  const last = s.charCodeAt(s.length - 1);
  return last >= 0xd800 && last <= 0xdbff ? s.slice(0, -1) : s;
}

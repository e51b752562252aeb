/**
 * The one duration parser. Go's time.ParseDuration grammar (`1m30s`, `500ms`, `1.5h`) is what containerd,
 * kubelet and Kubernetes users write; policy values take the same grammar plus a bare number of seconds.
 */

const UNIT_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  '\u00b5s': 1e-3,
  '\u03bcs': 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};
const UNITS = '(ns|us|\u00b5s|\u03bcs|ms|s|m|h)';
const NUMBER = '(\\d+(?:\\.\\d*)?|\\.\\d+)';
const WHOLE = new RegExp(`^([+-]?)((?:${NUMBER.replace('(', '(?:')}${UNITS})+)$`);
const PART = new RegExp(`${NUMBER}${UNITS}`, 'g');

/** Go's time.ParseDuration, in milliseconds; undefined when malformed. Used for containerd and kubelet values. */
export function parseGoDuration(s: string): number | undefined {
  const t = s.trim();
  if (t === '0' || t === '+0' || t === '-0') return 0;
  const m = WHOLE.exec(t);
  if (!m) return undefined;
  let ms = 0;
  for (const p of m[2]!.matchAll(PART)) ms += Number(p[1]) * UNIT_MS[p[2]!]!;
  return m[1] === '-' ? -ms : ms;
}

/**
 * A policy duration in whole milliseconds: a Go duration (`8s`, `1500ms`, `2m`, `1m30s`), a number of
 * seconds (`8`, or a YAML number), with blanks allowed between a number and its unit (`8 s`). Undefined
 * when malformed, zero or negative.
 */
export function parseDuration(s: string | number): number | undefined {
  let ms: number | undefined;
  if (typeof s === 'number') ms = Number.isFinite(s) ? s * 1000 : undefined;
  else {
    const t = s.trim();
    ms = /^\d+(?:\.\d+)?$/.test(t)
      ? Number(t) * 1000
      : parseGoDuration(t.replace(/(\d)\s+(?=[a-z\u00b5\u03bc])/g, '$1'));
  }
  if (ms === undefined) return undefined;
  const rounded = Math.round(ms);
  return rounded > 0 ? rounded : undefined;
}

/** Go's time.ParseDuration, in milliseconds; undefined when malformed. Used for containerd and kubelet values. */
export function parseGoDuration(s: string): number | undefined {
  const t = s.trim();
  if (t === '0' || t === '+0' || t === '-0') return 0;
  const units = '(ns|us|\u00b5s|\u03bcs|ms|s|m|h)';
  const m = new RegExp(`^([+-]?)((?:(?:\\d+(?:\\.\\d*)?|\\.\\d+)${units})+)$`).exec(t);
  if (!m) return undefined;
  const unit: Record<string, number> = {
    ns: 1e-6,
    us: 1e-3,
    '\u00b5s': 1e-3,
    '\u03bcs': 1e-3,
    ms: 1,
    s: 1000,
    m: 60_000,
    h: 3_600_000,
  };
  let ms = 0;
  for (const p of m[2]!.matchAll(new RegExp(`(\\d+(?:\\.\\d*)?|\\.\\d+)${units}`, 'g')))
    ms += Number(p[1]) * unit[p[2]!]!;
  return m[1] === '-' ? -ms : ms;
}

import { PullguardError } from '../common/errors.js';
import type { PolicyProblem } from '../policy/formats/native.js';

/**
 * `policy check` lists every problem, one per line, as `FILE:LINE:COL: message` (the form editors and
 * CI annotations understand), on stderr. One problem keeps the one-line error every command prints.
 * Returns how many it printed; 0 when there was no list to print.
 */
export function printPolicyProblems(e: unknown, path: string, out: (line: string) => void): number {
  if (!(e instanceof PullguardError) || e.code !== 'POLICY_INVALID') return 0;
  const problems = e.detail?.problems as readonly PolicyProblem[] | undefined;
  if (!problems || problems.length < 2) return 0;
  const source = typeof e.detail?.path === 'string' ? e.detail.path : path;
  out(`pullguard: policy ${source} is invalid: ${problems.length} problems [POLICY_INVALID]`);
  for (const p of problems)
    out(`${source}${p.line !== undefined ? `:${p.line}${p.col !== undefined ? `:${p.col}` : ''}` : ''}: ${p.message}`);
  return problems.length;
}

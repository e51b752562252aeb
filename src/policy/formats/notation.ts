import { PullguardError } from '../../common/errors.js';
import { DEFAULT_REVOCATION, type NotationSpec } from '../notation/spec.js';
import { loadNotationConfigDir } from '../notation/config-dir.js';

import { authorityOf, DEFAULT_TIMEOUT_MS, type Policy, type Rule } from '../model.js';

/**
 * A notation configuration directory used as pullguard's whole policy (PULLGUARD_POLICY=<dir>), so a
 * notation CLI or Bottlerocket user keeps their files. Each trust policy statement becomes one rule:
 * an exact registry scope becomes a literal repository pattern, `*` becomes the catch-all `**` (the
 * matcher prefers the longer literal, i.e. the exact scope, as notation does), `skip` becomes `allow`,
 * and the default is deny, because notation fails an artifact that no statement covers.
 */
export function parseNotationDirectory(dir: string): Policy {
  let cfg: ReturnType<typeof loadNotationConfigDir>;
  try {
    cfg = loadNotationConfigDir(dir);
  } catch (e) {
    const err = e as PullguardError;
    throw new PullguardError(err.code ?? 'POLICY_INVALID', err.message, { path: dir });
  }
  const rules: Rule[] = cfg.statements.map((st) => {
    const match = st.registryScopes.map((s) => (s === '*' ? '**' : s));
    if (st.level === 'skip') return { name: st.name, match, action: 'allow', authorities: [], require: 'all' };
    const spec: NotationSpec = {
      resolved: 'notation',
      source: cfg.source,
      truststoreDir: cfg.truststoreDir,
      select: 'fixed',
      statements: [st],
      revocation: DEFAULT_REVOCATION,
    };
    return {
      name: st.name,
      match,
      action: 'verify',
      authorities: [authorityOf('notation', st.name, spec)],
      require: 'all',
    };
  });
  return {
    source: cfg.source,
    mode: 'enforce',
    timeoutMs: DEFAULT_TIMEOUT_MS,
    defaultAction: 'deny',
    rules,
    registry: {},
  };
}

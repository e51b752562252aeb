import type { ErrorCode } from '../common/errors.js';
import type { Authority, ResolvedAuthority } from './model.js';
import { selectStatement } from './notation/trust-policy.js';

/** An authority that policy answers by itself for this repository, without looking for signatures. */
export interface SettledAuthority {
  readonly satisfied: boolean;
  readonly reason: string;
  readonly code?: ErrorCode;
}

export type Resolution = { readonly verify: ResolvedAuthority } | { readonly settled: SettledAuthority };

/**
 * Policy's part of an authority, for one pulled repository: which settings apply, or the answer when
 * policy alone decides. Today only notation has such a part: notation-go's trust-policy selection
 * (`verifier/trustpolicy` GetApplicableTrustPolicy: the statement naming the repository, else `*`) and its
 * `level: skip`, which verifies nothing. Verifiers then check signatures and never choose policy.
 */
export function resolveAuthority(authority: Authority, repository: string): Resolution {
  if (authority.kind !== 'notation') return { verify: authority };
  const { spec } = authority;
  const st = spec.select === 'fixed' ? spec.statements[0] : selectStatement(spec.statements, repository);
  if (!st) {
    return {
      settled: {
        satisfied: false,
        reason:
          `no notation trust policy statement in ${spec.source} applies to ${repository}` +
          ' (no exact scope and no "*")',
        code: 'SIGNATURE_UNTRUSTED',
      },
    };
  }
  if (st.level === 'skip') {
    return {
      settled: {
        satisfied: true,
        reason: `signature verification skipped by notation trust policy statement "${st.name}" (level skip)`,
      },
    };
  }
  const { resolved, source, truststoreDir, revocation } = spec;
  return {
    verify: {
      name: authority.name,
      kind: 'notation',
      spec: { resolved, source, truststoreDir, revocation, statement: st },
    },
  };
}

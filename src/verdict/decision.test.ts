import { describe, expect, test } from 'vitest';
import type { Rule } from '../policy/model.js';
import type { AuthorityResult, SignatureResult } from '../verify/types.js';
import { applyMode, verifyDecision } from './decision.js';

const rule = (require: 'all' | 'any'): Rule => ({
  name: 'prod',
  match: ['**'],
  action: 'verify',
  authorities: [],
  require,
});
const sig = { valid: false } as SignatureResult;
const result = (
  authority: string,
  satisfied: boolean,
  reason: string,
  signatures: SignatureResult[] = [],
): AuthorityResult => ({
  authority,
  kind: 'cosign',
  satisfied,
  reason,
  code: satisfied ? undefined : signatures.length ? 'SIGNATURE_UNTRUSTED' : 'NO_SIGNATURE',
  signatures,
});

describe('verifyDecision', () => {
  test('all: every authority must be satisfied', () => {
    expect(verifyDecision(rule('all'), [result('a', true, 'ok'), result('b', true, 'ok')])).toMatchObject({
      verdict: 'allow',
      reason: 'signature verified by a, b',
    });
    const d = verifyDecision(rule('all'), [result('a', true, 'ok'), result('b', false, 'no notation signature found')]);
    expect(d).toMatchObject({ verdict: 'deny', exitCode: 1, code: 'NO_SIGNATURE' });
    expect(d.reason).toBe('1 of 2 required authorities not satisfied; b: no notation signature found');
  });

  test('any: one satisfied authority is enough', () => {
    expect(verifyDecision(rule('any'), [result('a', false, 'none'), result('b', true, 'ok')])).toMatchObject({
      verdict: 'allow',
      reason: 'signature verified by b',
    });
  });

  test('a deny leads with the authority that found and rejected signatures', () => {
    const d = verifyDecision(rule('any'), [
      result('cosign-key', false, 'no cosign signature found'),
      result('corp', false, 'untrusted certificate', [sig]),
    ]);
    expect(d.reason).toBe('corp: untrusted certificate (and 1 more authority not satisfied)');
    expect(d.code).toBe('SIGNATURE_UNTRUSTED');
  });

  test('a single authority needs no name in the reason', () => {
    expect(verifyDecision(rule('all'), [result('a', false, 'signature does not verify')]).reason).toBe(
      'signature does not verify',
    );
  });

  test('a deny caused by the node configuration keeps exit code 2', () => {
    const r = { ...result('a', false, 'cannot read containerd config /x: ENOENT'), code: 'CONTAINERD_CONFIG' as const };
    expect(verifyDecision(rule('all'), [r])).toMatchObject({ verdict: 'deny', exitCode: 2, code: 'CONTAINERD_CONFIG' });
  });

  test('audit mode allows and keeps the policy verdict', () => {
    const d = applyMode(verifyDecision(rule('all'), [result('a', false, 'bad')]), 'audit');
    expect(d).toMatchObject({
      verdict: 'allow',
      policyVerdict: 'deny',
      exitCode: 0,
      reason: 'audit mode, would deny: bad',
    });
  });
});

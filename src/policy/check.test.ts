import { describe, expect, test } from 'vitest';
import { PullguardError } from '../common/errors.js';
import { parsePolicyText } from './load.js';
import type { PolicyProblem } from './formats/native.js';
import { keysAt, levenshtein, suggestKey } from './suggest.js';
import { policyDocumentSchema } from './schema.js';

function problems(text: string, source = 'p.yaml'): { message: string; problems: PolicyProblem[] } {
  try {
    parsePolicyText(text, source);
  } catch (e) {
    if (!(e instanceof PullguardError)) throw e;
    return { message: e.message, problems: (e.detail?.problems as PolicyProblem[]) ?? [] };
  }
  throw new Error('policy was accepted');
}

describe('policy check for people', () => {
  test('every problem at once, each at the line of the offending key, with did-you-mean', () => {
    const r = problems(
      [
        'version: 1', //                                          1
        'mode: audti', //                                         2
        'rules:', //                                              3
        '  - name: prod', //                                      4
        '    match: registry.example/*', //                       5
        '    action: verify', //                                  6
        '    authorites:', //                                     7
        '      - cosign: {keys: [k.pub]}', //                     8
        '  - name: other', //                                     9
        '    match: x', //                                        10
        '    action: verify', //                                  11
        '    authorities:', //                                    12
        '      - cosign:', //                                     13
        '          keyless: true', //                             14
        '          identities:', //                               15
        '            - certificate-oidc-issuer: https://accounts.google.com', // 16
        '              subjet: me@example.com', //                17
        '',
      ].join('\n'),
    );
    expect(r.problems.map((p) => `${p.line}: ${p.message}`)).toEqual(
      [
        '2: mode: must be one of "enforce", "audit", got "audti"',
        '4: rules[0].authorities: a verify rule needs at least one authority',
        '7: rules[0]: unknown key "authorites"; did you mean `authorities`?',
        '16: rules[1].authorities[0].cosign.identities[0]: unknown key "certificate-oidc-issuer"; ' +
          "that is cosign's name; pullguard's is `issuer` (under `identities:`)",
        '16: rules[1].authorities[0].cosign.identities[0]: an identity needs a subject constraint',
        '17: rules[1].authorities[0].cosign.identities[0]: unknown key "subjet"; did you mean `subject`?',
      ].map((l) => expect.stringMatching(`^${l.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`)),
    );
    expect(r.message).toMatch(
      /^invalid policy p\.yaml:2: mode: .* \(and \d+ more problems: run pullguard policy check\)$/,
    );
  });

  test('a trailing comma in a policy.json is a JSON syntax error at its line and column', () => {
    const r = problems('{\n  "version": 1,\n  "default": "deny",\n}\n', 'policy.json');
    expect(r.message).toBe(
      'invalid policy policy.json:4: JSON syntax error at line 4, column 1: Expected double-quoted property name',
    );
    const cp = problems('{\n  "default": [{"type": "reject"}],\n}\n', '/etc/containers/policy.json');
    expect(cp.message).toMatch(
      /^invalid policy \/etc\/containers\/policy\.json:3: JSON syntax error at line 3, column 1/,
    );
  });

  test('schema keys at a path, through defaults, unions and arrays', () => {
    expect(keysAt(policyDocumentSchema, [])).toEqual(expect.arrayContaining(['version', 'mode', 'rules', 'log']));
    expect(keysAt(policyDocumentSchema, ['rules', 0])).toEqual(expect.arrayContaining(['authorities', 'require']));
    expect(keysAt(policyDocumentSchema, ['rules', 0, 'authorities', 0, 'cosign'])).toEqual(
      expect.arrayContaining(['keys', 'identities']),
    );
    expect(keysAt(policyDocumentSchema, ['log'])).toEqual(expect.arrayContaining(['file', 'metricsFile']));
  });

  test('suggestions', () => {
    expect(levenshtein('authorites', 'authorities')).toBe(1);
    expect(suggestKey('Authorities', ['authorities'])).toBe('did you mean `authorities`?');
    expect(suggestKey('insecure-ignore-tlog', ['keys', 'tlog'])).toMatch(/`tlog: false`/);
    expect(suggestKey('subjectRegExp', ['subjectRegexp'])).toBe('did you mean `subjectRegexp`?');
    expect(suggestKey('zzzzzz', ['keys', 'tlog'])).toBeUndefined();
  });
});

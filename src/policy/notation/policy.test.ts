import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadPolicy, parsePolicyText } from '../load.js';
import { isNotationSpec } from './spec.js';

const dir = mkdtempSync(join(tmpdir(), 'pg-notation-policy-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const inline = (ids: string) => `version: 1
rules:
  - name: acme
    match: registry.example.com/**
    action: verify
    authorities:
      - name: acme-notation
        notation:
          truststore: /etc/pullguard/notation/truststore
          signatureVerification: { level: permissive, override: { revocation: skip } }
          trustStores: ["ca:acme"]
          trustedIdentities: [${JSON.stringify(ids)}]
`;

describe('notation policy forms', () => {
  it('an inline authority resolves to a fixed statement', () => {
    const p = parsePolicyText(inline('x509.subject: C=US, ST=WA, O=Acme'), 'p.yaml');
    const spec = p.rules[0]!.authorities[0]!.spec;
    expect(isNotationSpec(spec) && spec.select).toBe('fixed');
    expect(isNotationSpec(spec) && spec.statements[0]!.enforcement.revocation).toBe('skip');
  });
  it('a malformed DN is POLICY_INVALID at load, with the line', () => {
    expect(() => parsePolicyText(inline('x509.subject: CN=other'), 'p.yaml')).toThrow(
      /invalid policy p\.yaml:\d+: .*must contain C, ST and O/,
    );
  });
  it('a notation directory is a policy; duplicate scopes and skip on * are refused', () => {
    const d = join(dir, 'n1');
    mkdirSync(d);
    const st = (name: string, scopes: string[], level = 'strict') =>
      level === 'skip'
        ? { name, registryScopes: scopes, signatureVerification: { level } }
        : {
            name,
            registryScopes: scopes,
            signatureVerification: { level },
            trustStores: ['ca:x'],
            trustedIdentities: ['*'],
          };
    writeFileSync(
      join(d, 'trustpolicy.json'),
      JSON.stringify({ version: '1.0', trustPolicies: [st('a', ['r.example.com/app']), st('b', ['*'])] }),
    );
    const p = loadPolicy(d);
    expect(p.rules.map((r) => [r.name, r.match])).toEqual([
      ['a', ['r.example.com/app']],
      ['b', ['**']],
    ]);
    expect(p.defaultAction).toBe('deny');
    writeFileSync(
      join(d, 'trustpolicy.oci.json'),
      JSON.stringify({
        version: '1.0',
        trustPolicies: [st('a', ['r.example.com/app']), st('b', ['r.example.com/app'])],
      }),
    );
    expect(() => loadPolicy(d)).toThrow(/appears in both/);
    writeFileSync(
      join(d, 'trustpolicy.oci.json'),
      JSON.stringify({ version: '1.0', trustPolicies: [st('s', ['*'], 'skip')] }),
    );
    expect(() => loadPolicy(d)).toThrow(expect.objectContaining({ code: 'POLICY_INVALID' }));
  });
});

describe('notation registryScopes see canonical registry hosts (issue 8 item 1)', () => {
  it('a scope written "R.Example.com:443/app" matches r.example.com/app, and the reverse', async () => {
    const { RuleMatcher } = await import('../match.js');
    const { parseReference } = await import('../../common/reference.js');
    const d = join(dir, 'n-case');
    mkdirSync(d);
    const st = {
      name: 'a',
      registryScopes: ['R.Example.com:443/app'],
      signatureVerification: { level: 'strict' },
      trustStores: ['ca:x'],
      trustedIdentities: ['*'],
    };
    writeFileSync(join(d, 'trustpolicy.json'), JSON.stringify({ version: '1.0', trustPolicies: [st] }));
    const p = loadPolicy(d);
    const m = new RuleMatcher(p.rules);
    for (const image of ['r.example.com/app', 'R.EXAMPLE.COM/app'])
      expect(m.find(parseReference(image), 'sha256:' + '0'.repeat(64))?.rule.name).toBe('a');
    expect(p.rules[0]!.match).toEqual(['r.example.com/app']);
  });
});

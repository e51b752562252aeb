import { describe, expect, it } from 'vitest';
import { parseTrustPolicyDocument } from './trust-policy.js';

// The zod schema keeps notation-go's order and pullguard's reasons; these pin what the port could lose.
describe('trust policy schema', () => {
  const statement = (override: string) =>
    `{"version":"1.0","trustPolicies":[{"name":"s","registryScopes":["r.example.com/app"],` +
    `"signatureVerification":{"level":"strict","override":${override}},` +
    '"trustStores":["ca:a"],"trustedIdentities":["*"]}]}';
  it('a "__proto__" override is an unknown check, not dropped', () => {
    expect(() => parseTrustPolicyDocument(statement('{"__proto__":"log"}'), 'tp.json')).toThrow(
      'invalid notation trust policy tp.json: trustPolicies[0]: statement "s": override of unknown check "__proto__"',
    );
  });
  it('an unknown key comes before a missing name, and is reported without a statement name', () => {
    expect(() => parseTrustPolicyDocument('{"version":"1.0","trustPolicies":[{"nmae":"s"}]}', 'tp.json')).toThrow(
      /^invalid notation trust policy tp\.json: trustPolicies\[0\]: unknown key "nmae"$/,
    );
  });
  it('reads on without a colon where the reason is a predicate of the statement', () => {
    expect(() => parseTrustPolicyDocument(statement('{}').replace('["ca:a"]', '[]'), 'tp.json')).toThrow(
      /statement "s" needs both trustStores and trustedIdentities$/,
    );
  });
});

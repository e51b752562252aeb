import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseTrustPolicyDocument } from '../notation/trust-policy.js';
import { parseContainersPolicy } from './containers-policy.js';

/**
 * Whatever a policy file holds, loading it either works or fails with a policy error (POLICY_*, exit 2),
 * never with a TypeError that would surface as INTERNAL (exit 3).
 */
const noise = fc.oneof(fc.jsonValue({ maxDepth: 2 }), fc.constant(undefined));
/** `{}` three times in four: optional parts stay out of the way of the checks after them. */
const rare = <T>(arb: fc.Arbitrary<T>) =>
  fc.oneof({ arbitrary: fc.constant({}), weight: 3 }, { arbitrary: arb, weight: 1 });
const field = <T>(keys: readonly string[], values: fc.Arbitrary<T>) =>
  fc.dictionary(fc.constantFrom(...keys), values, { maxKeys: 4 });

function policyErrorOrNothing(load: () => unknown): void {
  try {
    load();
  } catch (e) {
    expect(e, String(e)).toMatchObject({ code: expect.stringMatching(/^POLICY_/) });
  }
}

describe('policy formats never crash on a hostile document', () => {
  it('containers-policy.json', () => {
    const b64 = fc.constantFrom('AAAA', 'x', '', 'LS0tLQ==');
    const value = fc.oneof(noise, b64, fc.array(fc.oneof(noise, b64), { maxLength: 3 }));
    const sub = field(['caPath', 'caData', 'oidcIssuer', 'subjectEmail', 'caRootsData', 'subjectHostname', 'x'], value);
    const sources = ['keyPath', 'keyPaths', 'keyData', 'keyDatas'];
    const rekor = ['rekorPublicKeyPath', 'rekorPublicKeyPaths', 'rekorPublicKeyData', 'rekorPublicKeyDatas'];
    // Mostly one key source and one Rekor key, as a real file has, so the checks past the first run too.
    const sigstoreSigned = fc
      .tuple(
        fc.dictionary(fc.constantFrom(...sources), value, { minKeys: 1, maxKeys: 1 }),
        fc.dictionary(fc.constantFrom(...rekor), value, { maxKeys: 1 }),
        rare(fc.record({ signedIdentity: noise })),
        rare(fc.record({ fulcio: fc.oneof(sub, noise) })),
        rare(fc.record({ pki: fc.oneof(sub, noise) })),
      )
      .map(([key, rekorKey, identity, fulcio, pki]) => ({
        type: 'sigstoreSigned',
        ...key,
        ...rekorKey,
        ...identity,
        ...fulcio,
        ...pki,
      }));
    const other = fc
      .tuple(
        fc.constantFrom('signedBy', 'reject', 'insecureAcceptAnything', 'other'),
        field(['keyType', 'keyPath', 'keyData', 'x'], value),
      )
      .map(([type, rest]) => ({ type, ...rest }));
    const requirement = fc.oneof(sigstoreSigned, other, noise);
    const reqs = fc.oneof(fc.array(requirement, { maxLength: 3 }), noise);
    const doc = fc.record(
      {
        default: reqs,
        transports: fc.oneof(
          fc.record({ docker: fc.dictionary(fc.constantFrom('', 'r.example/a', 'x'), reqs) }),
          noise,
        ),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(doc, (d) => policyErrorOrNothing(() => parseContainersPolicy(JSON.stringify(d), 'p.json'))),
      {
        numRuns: 1000,
      },
    );
  });

  it('notation trust policy', () => {
    const value = fc.oneof(
      noise,
      fc.array(fc.oneof(noise, fc.constantFrom('ca:a', '*', 'x509.subject: C=US')), { maxLength: 3 }),
    );
    const sv = fc.oneof(
      noise,
      field(['level', 'override', 'verifyTimestamp', 'x'], fc.oneof(noise, fc.constantFrom('strict', 'skip'))),
    );
    const statement = fc.oneof(
      noise,
      fc.record(
        {
          name: fc.oneof(noise, fc.constant('s')),
          registryScopes: value,
          signatureVerification: sv,
          trustStores: value,
          trustedIdentities: value,
        },
        { requiredKeys: [] },
      ),
    );
    const doc = fc.record(
      {
        version: fc.oneof(fc.constant('1.0'), noise),
        trustPolicies: fc.oneof(fc.array(statement, { maxLength: 3 }), noise),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(doc, (d) => policyErrorOrNothing(() => parseTrustPolicyDocument(JSON.stringify(d), 'tp.json'))),
      {
        numRuns: 1000,
      },
    );
  });
});

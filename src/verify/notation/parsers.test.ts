import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encode, Tagged } from 'cborg';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { certificatesFromFile, parseCertificate } from './certificate.js';
import { parseCose } from './cose.js';
import { isSubsetDn, parseDn } from '../../common/dn.js';
import { MalformedInputError } from '../../common/malformed.js';
import { parseJws } from './jws.js';
import { parseStatement, parseTrustPolicyDocument } from '../../policy/notation/trust-policy.js';
import { selfSigned } from '../../../test/helpers/pki.js';

/** Parsers must turn every malformed input into a MalformedInputError: never another exception. */
function onlyFormatErrors(fn: () => unknown): void {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof MalformedInputError)) throw e;
  }
}

const dir = mkdtempSync(join(tmpdir(), 'pg-parsers-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
await selfSigned(join(dir, 'k'), join(dir, 'c'), '/C=US/ST=WA/O=Acme/CN=x', [
  'keyUsage=critical,digitalSignature',
  'extendedKeyUsage=codeSigning',
]);
const certDer = certificatesFromFile(readFileSync(join(dir, 'c')))[0]!;

const b64u = (s: string | Buffer) => Buffer.from(s).toString('base64url');
const goodProtected = {
  alg: 'ES256',
  crit: ['io.cncf.notary.signingScheme'],
  cty: 'application/vnd.cncf.notary.payload.v1+json',
  'io.cncf.notary.signingScheme': 'notary.x509',
  'io.cncf.notary.signingTime': '2026-01-01T00:00:00Z',
};
function jws(
  ph: Record<string, unknown>,
  header: Record<string, unknown> = { x5c: [certDer.toString('base64')] },
): Buffer {
  return Buffer.from(
    JSON.stringify({ payload: b64u('{}'), protected: b64u(JSON.stringify(ph)), header, signature: b64u('sig') }),
  );
}
function cose(ph: Map<unknown, unknown>, uh: Map<unknown, unknown> = new Map([[33, [certDer]]])): Uint8Array {
  return encode(new Tagged(18, [encode(ph), uh, Buffer.from('{}'), Buffer.from('sig')]));
}
const goodCoseProtected = () =>
  new Map<unknown, unknown>([
    [1, -7],
    [2, ['io.cncf.notary.signingScheme']],
    [3, 'application/vnd.cncf.notary.payload.v1+json'],
    ['io.cncf.notary.signingScheme', 'notary.x509'],
    ['io.cncf.notary.signingTime', new Tagged(1, 1767225600)],
  ]);

describe('JWS parser', () => {
  it('accepts a notation-shaped envelope', () => {
    const env = parseJws(jws(goodProtected));
    expect(env.alg).toBe('ES256');
    expect(env.signingTime?.toISOString()).toBe('2026-01-01T00:00:00.000Z');
  });
  it.each([
    [
      'unknown critical header',
      { ...goodProtected, crit: [...goodProtected.crit, 'x-custom'], 'x-custom': 1 },
      /unsupported critical header/,
    ],
    [
      'expiry not critical',
      { ...goodProtected, 'io.cncf.notary.expiry': '2027-01-01T00:00:00Z' },
      /must be listed in "crit"/,
    ],
    [
      'crit names absent header',
      { ...goodProtected, crit: [...goodProtected.crit, 'io.cncf.notary.expiry'] },
      /not present/,
    ],
    ['crit lists alg', { ...goodProtected, crit: [...goodProtected.crit, 'alg'] }, /standard header/],
    ['RS256', { ...goodProtected, alg: 'RS256' }, /unsupported JWS alg/],
    ['no signing time', { ...goodProtected, 'io.cncf.notary.signingTime': undefined }, /signingTime/],
    [
      'signingAuthority without authenticSigningTime',
      { ...goodProtected, 'io.cncf.notary.signingScheme': 'notary.x509.signingAuthority' },
      /authenticSigningTime/,
    ],
    ['bad time', { ...goodProtected, 'io.cncf.notary.signingTime': 'yesterday' }, /RFC 3339/],
    ['wrong cty', { ...goodProtected, cty: 'application/json' }, /cty/],
  ])('rejects %s', (_n, ph, re) => {
    expect(() => parseJws(jws(ph as Record<string, unknown>))).toThrow(re);
  });
  it('rejects a missing x5c and unknown unprotected headers', () => {
    expect(() => parseJws(jws(goodProtected, {}))).toThrow(/x5c/);
    expect(() => parseJws(jws(goodProtected, { x5c: [certDer.toString('base64')], kid: 'x' }))).toThrow(
      /unexpected unprotected/,
    );
  });
  it('property: arbitrary bytes and JSON never crash it', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (b) => onlyFormatErrors(() => parseJws(b))),
      { numRuns: 500 },
    );
    fc.assert(
      fc.property(fc.json(), (j) => onlyFormatErrors(() => parseJws(Buffer.from(j)))),
      { numRuns: 500 },
    );
    const field = fc.oneof(fc.string(), fc.integer(), fc.constant(null), fc.array(fc.string()), fc.base64String());
    fc.assert(
      fc.property(
        fc.record({
          payload: field,
          protected: field,
          signature: field,
          header: fc.oneof(field, fc.dictionary(fc.string(), field)),
        }),
        (o) => onlyFormatErrors(() => parseJws(Buffer.from(JSON.stringify(o)))),
      ),
      { numRuns: 500 },
    );
    // Mutations of a valid protected header: every outcome is a parse or a MalformedInputError.
    fc.assert(
      fc.property(
        fc.dictionary(
          fc.constantFrom(
            'alg',
            'crit',
            'cty',
            'io.cncf.notary.signingScheme',
            'io.cncf.notary.signingTime',
            'io.cncf.notary.expiry',
            'zz',
          ),
          fc.jsonValue(),
        ),
        (patch) => onlyFormatErrors(() => parseJws(jws({ ...goodProtected, ...patch }))),
      ),
      { numRuns: 500 },
    );
  });
});

describe('COSE parser', () => {
  it('accepts a notation-shaped COSE_Sign1', () => {
    const env = parseCose(cose(goodCoseProtected()));
    expect(env.alg).toBe('ES256');
    expect(env.signingTime?.getTime()).toBe(1767225600_000);
    expect(env.certChain).toHaveLength(1);
  });
  it('rejects unknown critical labels, missing tag, detached payloads', () => {
    const ph = goodCoseProtected();
    ph.set(2, ['io.cncf.notary.signingScheme', 'x-custom']);
    ph.set('x-custom', 1);
    expect(() => parseCose(cose(ph))).toThrow(/unsupported critical header/);
    expect(() =>
      parseCose(encode([encode(goodCoseProtected()), new Map(), Buffer.from('{}'), Buffer.from('s')])),
    ).toThrow(/tag 18/);
    expect(() =>
      parseCose(
        encode(new Tagged(18, [encode(goodCoseProtected()), new Map([[33, [certDer]]]), null, Buffer.from('s')])),
      ),
    ).toThrow(/detached/);
    const noTime = goodCoseProtected();
    noTime.set('io.cncf.notary.signingTime', 1767225600);
    expect(() => parseCose(cose(noTime))).toThrow(/tag-1/);
  });
  it('property: arbitrary bytes and CBOR never crash it', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (b) => onlyFormatErrors(() => parseCose(b))),
      { numRuns: 500 },
    );
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.uint8Array(), fc.integer(), fc.string(), fc.constant(null)), { maxLength: 5 }),
        (arr) => onlyFormatErrors(() => parseCose(encode(new Tagged(18, arr)))),
      ),
      { numRuns: 500 },
    );
    const value = fc.oneof(
      fc.integer(),
      fc.string(),
      fc.uint8Array({ maxLength: 8 }),
      fc.array(fc.oneof(fc.string(), fc.integer()), { maxLength: 3 }),
    );
    fc.assert(
      fc.property(
        fc.array(
          fc.tuple(
            fc.oneof(
              fc.constantFrom(
                1,
                2,
                3,
                33,
                'io.cncf.notary.signingScheme',
                'io.cncf.notary.signingTime',
                'io.cncf.notary.expiry',
              ),
              fc.integer(),
            ),
            value,
          ),
          { maxLength: 6 },
        ),
        (entries) => {
          const ph = goodCoseProtected();
          for (const [k, v] of entries) ph.set(k, v);
          onlyFormatErrors(() => parseCose(cose(ph)));
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe('certificate parser', () => {
  it('parses a real certificate', () => {
    const c = parseCertificate(certDer);
    expect(c.key).toMatchObject({ type: 'ec', bits: 256 });
    expect(c.keyUsage?.critical).toBe(true);
    expect([...c.keyUsage!.bits]).toEqual(['digitalSignature']);
    expect(c.subject instanceof Map && c.subject.get('CN')).toBe('x');
  });
  it('property: random bytes and single-byte corruptions never crash it', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), (b) => onlyFormatErrors(() => parseCertificate(b))),
      { numRuns: 500 },
    );
    fc.assert(
      fc.property(fc.nat(certDer.length - 1), fc.integer({ min: 0, max: 255 }), (i, v) => {
        const b = Buffer.from(certDer);
        b[i] = v;
        onlyFormatErrors(() => parseCertificate(b));
      }),
      { numRuns: 1000 },
    );
    fc.assert(
      fc.property(fc.nat(certDer.length - 1), (n) => onlyFormatErrors(() => parseCertificate(certDer.subarray(0, n)))),
      { numRuns: 300 },
    );
  });
});

describe('DN parser and comparison', () => {
  it('parses RFC 4514 and compares as attribute sets', () => {
    const trusted = parseDn('C=US, ST=WA, O=Acme\\, Inc.');
    expect(trusted.get('O')).toBe('Acme, Inc.');
    const leaf = parseDn('CN=build,O=Acme\\, Inc.,S=WA,C=US');
    expect(isSubsetDn(trusted, leaf)).toBe(true);
    expect(isSubsetDn(parseDn('C=US, ST=WA, O=acme\\, Inc.'), leaf)).toBe(false);
  });
  it.each([
    'CN=other',
    'C=US, ST=WA',
    'C=US+ST=WA, O=A',
    'C=US, C=CA, ST=WA, O=A',
    'C=US, ST=WA, O=',
    'C=US, ST=WA, O=A,',
    'C=US, ST=WA, O=#0101',
    'C=US; ST=WA; O=A\\',
  ])('rejects %j', (dn) => {
    expect(() => parseDn(dn)).toThrow(MalformedInputError);
  });
  it('property: any string is a DN or a MalformedInputError, and a parsed DN matches itself', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 80 }), (s) =>
        onlyFormatErrors(() => {
          const dn = parseDn(s);
          expect(isSubsetDn(dn, dn)).toBe(true);
        }),
      ),
      { numRuns: 1000 },
    );
    const safe = fc
      .string({ minLength: 1, maxLength: 10 })
      .filter((v) => v.trim() === v && !/[\\,+"<>;=#]/.test(v) && v.length > 0);
    fc.assert(
      fc.property(safe, safe, safe, (c, st, o) => {
        const dn = parseDn(`O=${o}, ST=${st}, C=${c}`);
        expect([dn.get('C'), dn.get('ST'), dn.get('O')]).toEqual([c, st, o]);
      }),
    );
  });
});

describe('trust policy validation', () => {
  const stmt = (over: Record<string, unknown> = {}) => ({
    name: 's',
    registryScopes: ['registry.example.com/app'],
    signatureVerification: { level: 'strict' },
    trustStores: ['ca:acme'],
    trustedIdentities: ['*'],
    ...over,
  });
  const doc = (...s: unknown[]) => JSON.stringify({ version: '1.0', trustPolicies: s });
  it('accepts a valid document and applies overrides', () => {
    const [s] = parseTrustPolicyDocument(
      doc(
        stmt({ signatureVerification: { level: 'permissive', override: { revocation: 'skip', expiry: 'enforce' } } }),
      ),
      'x',
    );
    expect(s!.enforcement).toEqual({
      integrity: 'enforce',
      authenticity: 'enforce',
      authenticTimestamp: 'log',
      expiry: 'enforce',
      revocation: 'skip',
    });
  });
  it.each([
    ['duplicate scope', doc(stmt(), stmt({ name: 't' })), /appears in both/],
    [
      'skip on *',
      doc(
        stmt({
          registryScopes: ['*'],
          signatureVerification: { level: 'skip' },
          trustStores: [],
          trustedIdentities: [],
        }),
      ),
      /not allowed on the wildcard/,
    ],
    ['malformed DN', doc(stmt({ trustedIdentities: ['x509.subject: CN=other'] })), /must contain C, ST and O/],
    [
      'integrity override',
      doc(stmt({ signatureVerification: { level: 'strict', override: { integrity: 'log' } } })),
      /integrity cannot be overridden/,
    ],
    [
      'skip authenticity',
      doc(stmt({ signatureVerification: { level: 'strict', override: { authenticity: 'skip' } } })),
      /cannot be skipped/,
    ],
    ['bad store type', doc(stmt({ trustStores: ['x509:acme'] })), /must be ca, signingAuthority or tsa/],
    ['version', JSON.stringify({ version: '2.0', trustPolicies: [stmt()] }), /version must be "1.0"/],
    ['duplicate name', doc(stmt(), stmt({ registryScopes: ['registry.example.com/b'] })), /duplicate statement name/],
    [
      'overlapping identities',
      doc(stmt({ trustedIdentities: ['x509.subject: C=US, ST=WA, O=A', 'x509.subject: C=US, ST=WA, O=A, CN=b'] })),
      /overlap/,
    ],
    ['bad scope', doc(stmt({ registryScopes: ['app'] })), /not a fully qualified repository/],
  ])('rejects %s', (_n, text, re) => {
    expect(() => parseTrustPolicyDocument(text, 'x')).toThrow(re);
  });
  it('inline statements need no scope', () => {
    expect(parseStatement(stmt({ registryScopes: undefined }), 'inline', { requireScopes: false }).level).toBe(
      'strict',
    );
  });
});

import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parsePolicyText } from './load.js';
import { resolveAuthority } from './resolve.js';

const dir = mkdtempSync(join(tmpdir(), 'pg-resolve-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A pullguard rule whose notation authority reads a notation directory (statements chosen per repository). */
function notationAuthority(statements: object[]) {
  const d = mkdtempSync(join(dir, 'n-'));
  mkdirSync(join(d, 'truststore'));
  writeFileSync(join(d, 'trustpolicy.json'), JSON.stringify({ version: '1.0', trustPolicies: statements }));
  const text =
    'version: 1\nrules:\n' + `  - {name: r, match: "**", action: verify, authorities: [{notation: {config: ${d}}}]}\n`;
  return parsePolicyText(text, 'p.yaml').rules[0]!.authorities[0]!;
}
const strict = (name: string, scopes: string[]) => ({
  name,
  registryScopes: scopes,
  signatureVerification: { level: 'strict' },
  trustStores: ['ca:x'],
  trustedIdentities: ['*'],
});
const skip = (name: string, scopes: string[]) => ({
  name,
  registryScopes: scopes,
  signatureVerification: { level: 'skip' },
});

describe('resolveAuthority: policy settles what it can before any verifier runs', () => {
  it('notation: the statement naming the repository wins over "*", and the verifier gets only it', () => {
    const a = notationAuthority([strict('any', ['*']), strict('app', ['r.example/app'])]);
    const exact = resolveAuthority(a, 'r.example/app');
    const wild = resolveAuthority(a, 'r.example/other');
    expect('verify' in exact && exact.verify.kind === 'notation' && exact.verify.spec.statement.name).toBe('app');
    expect('verify' in wild && wild.verify.kind === 'notation' && wild.verify.spec.statement.name).toBe('any');
  });
  it('notation: level skip is satisfied by policy, with no verifier and no signature lookup', () => {
    const a = notationAuthority([skip('dev', ['r.example/dev']), strict('any', ['*'])]);
    expect(resolveAuthority(a, 'r.example/dev')).toEqual({
      settled: {
        satisfied: true,
        reason: 'signature verification skipped by notation trust policy statement "dev" (level skip)',
      },
    });
  });
  it('notation: no statement applies -> unsatisfied, SIGNATURE_UNTRUSTED', () => {
    const a = notationAuthority([strict('app', ['r.example/app'])]);
    const r = resolveAuthority(a, 'r.example/other');
    expect('settled' in r && r.settled).toMatchObject({ satisfied: false, code: 'SIGNATURE_UNTRUSTED' });
    expect('settled' in r && r.settled.reason).toMatch(
      /no notation trust policy statement in .* applies to r\.example\/other/,
    );
  });
  it('cosign: nothing for policy to settle; the authority goes to its verifier unchanged', () => {
    const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'pem' });
    writeFileSync(join(dir, 'k.pub'), key);
    const text =
      'version: 1\nrules:\n' +
      `  - {name: r, match: "**", action: verify, authorities: [{cosign: {keys: [${dir}/k.pub]}}]}\n`;
    const a = parsePolicyText(text, 'p.yaml').rules[0]!.authorities[0]!;
    expect(resolveAuthority(a, 'r.example/app')).toEqual({ verify: a });
  });
});

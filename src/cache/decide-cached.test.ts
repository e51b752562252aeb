import { generateKeyPairSync } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Deadline } from '../common/deadline.js';
import { loadPolicy } from '../policy/load.js';
import type { Policy } from '../policy/model.js';
import { ruleDecision, verifyDecision, type Decision } from '../verdict/decision.js';
import type { AuthorityResult, SignatureResult, Subject } from '../verify/types.js';
import { runCacheCommand } from './command.js';
import { decideCached, type Decided } from './decide-cached.js';

const digest = `sha256:${'ab'.repeat(32)}`;
const subject: Subject = {
  reference: { domain: 'registry.example', path: 'team/app', digest },
  descriptor: { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest, size: 512 },
};
const pem = () =>
  generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'pem' }).toString();

let dir: string;
let keyFile: string;
let policyFile: string;
const write = (extra = '', rule = '') => {
  writeFileSync(
    policyFile,
    [
      'version: 1',
      `cache: {dir: ${join(dir, 'cache')}, ttl: 10m, revocationInterval: 1m${extra}}`,
      'rules:',
      '  - {name: signed, match: registry.example/team/**, action: verify, ' +
        `authorities: [{name: release, cosign: {keys: [${keyFile}]}}]${rule}}`,
      '',
    ].join('\n'),
  );
  return loadPolicy(policyFile);
};

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'pg-cache-'));
  keyFile = join(dir, 'release.pub');
  policyFile = join(dir, 'policy.yaml');
  writeFileSync(keyFile, pem());
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function signature(over: Partial<SignatureResult> = {}): SignatureResult {
  return {
    class: 'cosign-legacy',
    foundVia: 'cosign-sig-tag',
    repository: 'registry.example/team/app',
    artifact: 'sha256:x#0',
    valid: true,
    reason: 'valid',
    checks: [],
    ...over,
  };
}

/** A decide() that counts its calls and answers what it is told. */
function verifier(answer: (policy: Policy) => Decision) {
  const calls = { n: 0 };
  const run = (policy: Policy, now = () => Date.now()) => {
    const deadline = new Deadline(5000);
    return decideCached(
      subject,
      policy,
      deadline,
      async (): Promise<Decided> => {
        calls.n++;
        return { decision: answer(policy), discovery: [] };
      },
      now,
    ).finally(() => deadline.dispose());
  };
  return { calls, run };
}

const allowWith = (sigs: SignatureResult[]) => (policy: Policy) => {
  const result: AuthorityResult = {
    authority: 'release',
    kind: 'cosign',
    satisfied: true,
    reason: 'ok',
    signatures: sigs,
  };
  return verifyDecision(policy.rules[0]!, [result]);
};
const unreachable = (policy: Policy) =>
  verifyDecision(policy.rules[0]!, [
    {
      authority: 'release',
      kind: 'cosign',
      satisfied: false,
      reason: 'cannot reach http://registry.example: ECONNREFUSED',
      code: 'REGISTRY_UNREACHABLE',
      signatures: [],
    },
  ]);

describe('decision cache', () => {
  it('answers a repeat of a verified allow from the cache, without verifying again', async () => {
    const policy = write();
    const v = verifier(allowWith([signature()]));
    const first = await v.run(policy);
    expect(first.decision.cache).toMatchObject({ status: 'miss', expiry: 'ttl' });
    const second = await v.run(loadPolicy(policyFile));
    expect(v.calls.n).toBe(1);
    expect(second.decision).toMatchObject({ verdict: 'allow', rule: 'signed', cache: { status: 'hit' } });
    expect(second.decision.reason).toMatch(/^signature verified by release \(cached: verified \d+s ago\)$/);
    const st = statSync(join(dir, 'cache'));
    expect(st.mode & 0o777).toBe(0o700);
    for (const f of readdirSync(join(dir, 'cache'))) expect(statSync(join(dir, 'cache', f)).mode & 0o777).toBe(0o600);
  });

  it('misses when a key file the policy names changes, even with the same path, size and second', async () => {
    const v = verifier(allowWith([signature()]));
    await v.run(write());
    writeFileSync(keyFile, pem());
    const again = await v.run(loadPolicy(policyFile));
    expect(v.calls.n).toBe(2);
    expect(again.decision.cache?.status).toBe('miss');
  });

  it('misses when the policy text changes', async () => {
    const v = verifier(allowWith([signature()]));
    await v.run(write());
    await v.run(write());
    expect(v.calls.n).toBe(1);
    writeFileSync(policyFile, `# edited\n${readFileSync(policyFile, 'utf8')}`);
    await v.run(loadPolicy(policyFile));
    expect(v.calls.n).toBe(2);
  });

  it('ends an entry at the notAfter of a certificate judged valid now, and at the revocation interval', async () => {
    const t = Date.now();
    const notAfter = new Date(t + 30_000).toISOString();
    const v = verifier(allowWith([signature({ validUntil: notAfter })]));
    const policy = write();
    const first = await v.run(policy, () => t);
    expect(first.decision.cache).toMatchObject({ status: 'miss', expiry: 'certificate', expiresAt: notAfter });
    expect((await v.run(policy, () => t + 29_000)).decision.cache?.status).toBe('hit');
    expect((await v.run(policy, () => t + 31_000)).decision.cache?.status).toBe('miss');
    expect(v.calls.n).toBe(2);

    rmSync(join(dir, 'cache'), { recursive: true });
    const revoked = verifier(
      allowWith([signature({ checks: [{ check: 'revocation', result: 'pass', enforcement: 'enforced' }] })]),
    );
    const r = await revoked.run(policy, () => t);
    expect(r.decision.cache).toMatchObject({ expiry: 'revocation', expiresAt: new Date(t + 60_000).toISOString() });
  });

  it('does not store an allow whose certificate already expired, nor any denial', async () => {
    const policy = write();
    const expired = verifier(allowWith([signature({ validUntil: new Date(Date.now() - 1000).toISOString() })]));
    await expired.run(policy);
    await expired.run(policy);
    expect(expired.calls.n).toBe(2);
    const deny = verifier((p) => ruleDecision(p.rules[0], 'deny', 'no signature', [], 'NO_SIGNATURE'));
    await deny.run(policy);
    await deny.run(policy);
    expect(deny.calls.n).toBe(2);
  });

  it('ignores a corrupt entry and refuses a directory others can read', async () => {
    const policy = write();
    const v = verifier(allowWith([signature()]));
    await v.run(policy);
    const [entry] = readdirSync(join(dir, 'cache'));
    writeFileSync(join(dir, 'cache', entry!), '{"v":1,"key":');
    expect((await v.run(policy)).decision.cache?.status).toBe('miss');
    expect(v.calls.n).toBe(2);
    chmodSync(join(dir, 'cache'), 0o755);
    const off = await v.run(policy);
    expect(off.decision.cache).toMatchObject({ status: 'off' });
    expect(off.decision.cache?.note).toContain('must be 0700');
    expect(v.calls.n).toBe(3);
  });

  it('staleIfError: an unreachable registry is ridden out within the window, and only under it', async () => {
    const t = Date.now();
    const withStale = write('', ', staleIfError: 1h');
    const ok = verifier(allowWith([signature()]));
    await ok.run(withStale, () => t);
    const down = verifier(unreachable);
    const stale = await down.run(withStale, () => t + 20 * 60_000);
    expect(stale.decision).toMatchObject({ verdict: 'allow', cache: { status: 'stale' } });
    expect(stale.decision.reason).toMatch(
      /^registry unreachable, allowed by staleIfError \(verified 20m ago, window 3600s\): cannot reach .*ECONNREFUSED/,
    );
    expect((await down.run(withStale, () => t + 61 * 60_000)).decision.verdict).toBe('deny');

    rmSync(join(dir, 'cache'), { recursive: true });
    const plain = write();
    await ok.run(plain, () => t);
    expect((await down.run(plain, () => t + 20 * 60_000)).decision).toMatchObject({
      verdict: 'deny',
      code: 'REGISTRY_UNREACHABLE',
    });
  });

  it('never rides out a deny that is about the image', async () => {
    const t = Date.now();
    const policy = write('', ', staleIfError: 1h');
    await verifier(allowWith([signature()])).run(policy, () => t);
    const bad = verifier((p) =>
      verifyDecision(p.rules[0]!, [
        {
          authority: 'release',
          kind: 'cosign',
          satisfied: false,
          reason: 'bad',
          code: 'SIGNATURE_INVALID',
          signatures: [signature({ valid: false })],
        },
      ]),
    );
    expect((await bad.run(policy, () => t + 20 * 60_000)).decision.verdict).toBe('deny');
  });

  it('pullguard cache ls and clear', async () => {
    const policy = write();
    await verifier(allowWith([signature()])).run(policy);
    const lines: string[] = [];
    expect(
      runCacheCommand(
        ['ls'],
        () => policy,
        (l) => lines.push(l),
      ),
    ).toBe(0);
    expect(lines[0]).toMatch(/: 1 entry$/);
    expect(lines[1]).toMatch(
      /^ {2}fresh +registry\.example\/team\/app@sha256:abab.* rule "signed" verified .* \(ttl\)$/,
    );
    lines.length = 0;
    runCacheCommand(
      ['clear'],
      () => policy,
      (l) => lines.push(l),
    );
    expect(lines[0]).toMatch(/^removed 1 file\(s\)/);
    expect(readdirSync(join(dir, 'cache'))).toEqual([]);
  });

  it('a rule without verification, or a policy without cache:, never touches the cache', async () => {
    mkdirSync(join(dir, 'x'));
    writeFileSync(
      policyFile,
      'version: 1\nrules:\n  - {name: signed, match: registry.example/team/**, action: verify, ' +
        `authorities: [{cosign: {keys: [${keyFile}]}}]}\n`,
    );
    const v = verifier(allowWith([signature()]));
    const r = await v.run(loadPolicy(policyFile));
    expect(r.decision.cache).toBeUndefined();
    await v.run(loadPolicy(policyFile));
    expect(v.calls.n).toBe(2);
  });
});

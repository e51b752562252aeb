import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { loadPolicy, parsePolicyText, policyPath } from './load.js';

const dir = mkdtempSync(join(tmpdir(), 'pg-policy-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// A YAML double-quoted scalar (YAML turns each \n escape into a newline).
const PUBKEY =
  '"-----BEGIN PUBLIC KEY-----\\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEXyNKXR1itK8UIEAsth+B35Lb2a7Z\\n' +
  '68IDTy9yLlgoKhEXR9JbCK+Vyog7bcDAxVlfZP62Htat6Iba3SS2HZGqkg==\\n-----END PUBLIC KEY-----\\n"';
const VALID = `
version: 1
mode: audit
timeout: 5s
default: allow
rules:
  - name: pause
    match: registry.k8s.io/pause
    action: allow
  - name: prod
    match: [ghcr.io/org/**, localhost:5000/app]
    action: verify
    require: any
    authorities:
      - name: release
        cosign: {keys: [${PUBKEY}]}
  - name: blocked
    match: docker.io/**
    action: deny
    message: Docker Hub is not allowed here
`;

describe('native policy', () => {
  test('a valid policy becomes the model', () => {
    const p = parsePolicyText(VALID, 'p.yaml');
    expect(p).toMatchObject({ mode: 'audit', timeoutMs: 5000, defaultAction: 'allow', source: 'p.yaml' });
    expect(p.rules.map((r) => r.name)).toEqual(['pause', 'prod', 'blocked']);
    expect(p.rules[1]).toMatchObject({
      match: ['ghcr.io/org/**', 'localhost:5000/app'],
      require: 'any',
      authorities: [{ name: 'release', kind: 'cosign' }],
    });
    expect(p.rules[2]!.message).toBe('Docker Hub is not allowed here');
  });

  test('defaults: enforce, deny, 8s', () => {
    expect(parsePolicyText('version: 1\n', 'p')).toMatchObject({
      mode: 'enforce',
      defaultAction: 'deny',
      timeoutMs: 8000,
      rules: [],
    });
  });

  test.each([
    [
      'version: 1\nrules:\n  - name: a\n    match: x\n    action: alow\n',
      'p.yaml:5',
      /rules\[0\]\.action: must be one of "allow", "deny", "verify"/,
    ],
    [
      'version: 1\nrules:\n  - name: a\n    match: x\n    action: allow\n    colour: red\n',
      'p.yaml:6',
      /unknown key "colour"/,
    ],
    ['version: 1\nrules:\n  - name: a\n    match: nginx:latest\n    action: allow\n', 'p.yaml:4', /not tags/],
    [
      'version: 1\nrules:\n  - name: a\n    match: x\n    action: verify\n',
      'p.yaml:3',
      /authorities: a verify rule needs at least one authority/,
    ],
    [
      'version: 1\nrules:\n  - name: a\n    match: x\n    action: verify\n    authorities:\n      - name: k\n',
      'p.yaml:7',
      /exactly one of: cosign, notation/,
    ],
    [
      'version: 1\nrules:\n  - {name: a, match: x, action: allow}\n  - {name: a, match: y, action: deny}\n',
      'p.yaml:4',
      /duplicate rule name "a"/,
    ],
    ['version: 2\n', 'p.yaml:1', /version/],
    ['version: 1\ntimeout: forever\n', 'p.yaml:2', /invalid duration "forever"/],
    ['version: 1\nrules: [\n', 'p.yaml', /invalid policy p.yaml/],
    ['version: 1\nversion: 1\n', 'p.yaml:2', /unique/i],
    ['- just\n- a list\n', 'p.yaml', /expected object, got array/],
  ])('rejects with key and line: %j', (text, where, message) => {
    let err: Error | undefined;
    try {
      parsePolicyText(text, 'p.yaml');
    } catch (e) {
      err = e as Error;
    }
    expect(err?.message).toMatch(message);
    expect(err?.message).toContain(`invalid policy ${where}`);
    expect((err as { code?: string }).code).toBe('POLICY_INVALID');
  });

  test('an empty file is a valid... no: it lacks a version', () => {
    expect(() => parsePolicyText('', 'p.yaml')).toThrow(/version/);
  });
});

describe('loadPolicy fails closed with the path in the reason', () => {
  test('missing', () => {
    expect(() => loadPolicy(join(dir, 'nope.yaml'))).toThrow(`no policy at ${join(dir, 'nope.yaml')}`);
  });
  test('unreadable (a path under a regular file: ENOTDIR, which root cannot read either)', () => {
    const file = join(dir, 'not-a-dir');
    writeFileSync(file, 'version: 1\n');
    const f = join(file, 'policy.yaml');
    expect(() => loadPolicy(f)).toThrow(
      expect.objectContaining({
        code: 'POLICY_UNREADABLE',
        message: expect.stringMatching(new RegExp(`^cannot read policy ${f}: `)),
      }),
    );
  });
  test('a file', () => {
    const f = join(dir, 'ok.yaml');
    writeFileSync(f, VALID);
    expect(loadPolicy(f).rules).toHaveLength(3);
  });
  test('PULLGUARD_POLICY overrides the default path', () => {
    expect(policyPath({ PULLGUARD_POLICY: '/x/p.yaml' })).toBe('/x/p.yaml');
    expect(policyPath({})).toBe('/etc/pullguard/policy.yaml');
  });
});

describe('hostile policy files (issue 8 items 3 and 10)', () => {
  const bomb = ['version: 1', 'default: deny', 'a0: &a0 [x, x, x, x, x, x, x, x, x, x]'];
  for (let i = 1; i < 10; i++)
    bomb.push(
      `a${i}: &a${i} [${Array(10)
        .fill(`*a${i - 1}`)
        .join(', ')}]`,
    );
  bomb.push('rules: []');

  test('a YAML alias bomb is a configuration error with the path and the first alias line', () => {
    const f = join(dir, 'bomb.yaml');
    writeFileSync(f, `${bomb.join('\n')}\n`);
    expect(() => loadPolicy(f)).toThrow(
      expect.objectContaining({
        code: 'POLICY_INVALID',
        message: expect.stringMatching(new RegExp(`^invalid policy ${f}:4: too many YAML alias`)),
      }),
    );
  });
  test('a FIFO, /dev/zero and a directory-less path are refused by name, at once', () => {
    const fifo = join(dir, 'policy.fifo');
    execFileSync('mkfifo', [fifo]);
    expect(() => loadPolicy(fifo)).toThrow(
      expect.objectContaining({
        code: 'POLICY_UNREADABLE',
        message: `cannot read policy ${fifo}: is a FIFO, not a regular file`,
      }),
    );
    expect(() => loadPolicy('/dev/zero')).toThrow(
      expect.objectContaining({ code: 'POLICY_UNREADABLE', message: expect.stringMatching(/character device/) }),
    );
    const under = join(dir, 'ok-file');
    writeFileSync(under, 'x');
    expect(() => loadPolicy(join(under, 'policy.yaml'))).toThrow(
      expect.objectContaining({ code: 'POLICY_UNREADABLE' }),
    );
  });
  test('a policy over 4 MiB is refused after reading at most 4 MiB + 1 byte', () => {
    const f = join(dir, 'huge.yaml');
    writeFileSync(f, `version: 1\n#${'x'.repeat(4 * 1024 * 1024)}\n`);
    expect(() => loadPolicy(f)).toThrow(
      expect.objectContaining({ code: 'POLICY_INVALID', message: expect.stringMatching(/larger than 4 MiB/) }),
    );
  });
});

describe('deeply nested policies are refused before parsing (issue 8 hardening)', () => {
  test.each([
    [
      'flow brackets',
      `version: 1\nrules: ${'['.repeat(200_000)}${']'.repeat(200_000)}\n`,
      2,
      /nested more than 100 levels deep/,
    ],
    [
      'sequence markers on one line',
      `version: 1\nx: ${'- '.repeat(1_500_000)}a\n`,
      2,
      /more than 100 sequence markers on one line/,
    ],
    [
      'indentation',
      `version: 1\nx:\n${Array.from({ length: 1900 }, (_, i) => `${' '.repeat(i + 1)}k:\n`).join('')}`,
      403,
      /indented more/,
    ],
    [
      'JSON (containers-policy.json)',
      `{"default": ${'['.repeat(200_000)}${']'.repeat(200_000)}}`,
      1,
      /containers policy .*:1: nested more/,
    ],
  ])('%s: POLICY_INVALID with the line', (_, text, line, why) => {
    const f = join(dir, `deep-${line}.yaml`);
    writeFileSync(f, text);
    expect(() => loadPolicy(f)).toThrow(
      expect.objectContaining({ code: 'POLICY_INVALID', message: expect.stringMatching(why) }),
    );
    expect(() => loadPolicy(f)).toThrow(new RegExp(`${f}:${line}: `));
  });
  test('a real policy nests far less', () => {
    expect(() => parsePolicyText(VALID, 'p.yaml')).not.toThrow();
  });
});

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, describe, expect, test } from 'vitest';
import { settlesAtDeadline, settlesWithoutWaiting } from '../../test/helpers/deadline.js';
import { STDIN_DEADLINE_MS } from '../contract/stdin.js';
import { runPull } from './pull.js';

const dir = mkdtempSync(join(tmpdir(), 'pg-pull-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const D = `sha256:${'e'.repeat(64)}`;
const DESC = JSON.stringify({ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: D, size: 100 });
const MT = 'application/vnd.oci.descriptor.v1+json';

function policy(text: string): string {
  const f = join(dir, `p${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(f, text);
  return f;
}

async function run(argv: string[], stdin: string | undefined, env: Record<string, string>) {
  const input = new PassThrough();
  if (stdin !== undefined) input.end(stdin);
  const out: string[] = [];
  const err: string[] = [];
  const code = await runPull(argv, { argv, stdin: input, env, write: (fd, t) => (fd === 1 ? out : err).push(t) });
  return { code, stdout: out.join(''), record: JSON.parse(err.join('')) as Record<string, unknown> };
}

const args = (name = 'localhost:5000/app:v1', digest = D) => [
  '-name',
  name,
  '-digest',
  digest,
  '-stdin-media-type',
  MT,
];

// A YAML double-quoted scalar (YAML turns each \n escape into a newline).
const PUBKEY =
  '"-----BEGIN PUBLIC KEY-----\\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEXyNKXR1itK8UIEAsth+B35Lb2a7Z\\n' +
  '68IDTy9yLlgoKhEXR9JbCK+Vyog7bcDAxVlfZP62Htat6Iba3SS2HZGqkg==\\n-----END PUBLIC KEY-----\\n"';
const ALLOW_DENY = policy(`
version: 1
rules:
  - {name: ok, match: localhost:5000/app, action: allow}
  - {name: nope, match: localhost:5000/blocked, action: deny}
  - {name: signed, match: localhost:5000/signed, action: verify, authorities: [{name: k, cosign: {keys: [${PUBKEY}]}}]}
`);

describe('containerd mode', () => {
  test('allow: exit 0, one line, a decision record', async () => {
    const r = await run(args(), DESC, { PULLGUARD_POLICY: ALLOW_DENY });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`allowed localhost:5000/app@sha256:eeeeeeeeeeee\u2026: allowed by policy (rule "ok")\n`);
    expect(r.record).toMatchObject({
      component: 'pullguard',
      name: 'localhost:5000/app:v1',
      digest: D,
      rule: 'ok',
      verdict: 'allow',
      mode: 'enforce',
      exitCode: 0,
    });
    expect(typeof r.record.durationMs).toBe('number');
  });

  test('deny by rule: exit 1', async () => {
    const r = await run(args('localhost:5000/blocked:v1'), DESC, { PULLGUARD_POLICY: ALLOW_DENY });
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^denied localhost:5000\/blocked@sha256:eeee.*: denied by policy \(rule "nope"\)\n$/);
  });

  test('no rule: the default (deny)', async () => {
    const r = await run(args('ghcr.io/other/app:v1'), DESC, { PULLGUARD_POLICY: ALLOW_DENY });
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('no rule matches; default is deny');
  });

  test('verify against an unreachable registry denies, naming the registry', async () => {
    const r = await run(args('localhost:5000/signed:v1'), DESC, { PULLGUARD_POLICY: ALLOW_DENY });
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(
      /^denied localhost:5000\/signed@sha256:e+\u2026: .*localhost:5000.*ECONNREFUSED.*\(rule "signed"\)\n$/,
    );
  });

  test('audit mode allows but records the deny', async () => {
    const p = policy('version: 1\nmode: audit\nrules: [{name: nope, match: "**", action: deny}]\n');
    const r = await run(args(), DESC, { PULLGUARD_POLICY: p });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('audit mode, would deny: denied by policy');
    expect(r.record).toMatchObject({ verdict: 'allow', policyVerdict: 'deny', mode: 'audit' });
  });

  test('missing policy: config error exit 2, path in the reason', async () => {
    const r = await run(args(), DESC, { PULLGUARD_POLICY: join(dir, 'absent.yaml') });
    expect(r.code).toBe(2);
    expect(r.stdout).toContain(`no policy at ${join(dir, 'absent.yaml')}`);
  });

  test('broken policy: config error exit 2 with file:line', async () => {
    const p = policy('version: 1\nrules:\n  - name: a\n    match: x\n    action: maybe\n');
    const r = await run(args(), DESC, { PULLGUARD_POLICY: p });
    expect(r.code).toBe(2);
    expect(r.stdout).toContain(`invalid policy ${p}:5: rules[0].action`);
  });

  test.each([
    ['missing args', ['-name', 'x'], DESC, /bad verifier arguments: missing -digest/],
    [
      'bad stdin media type',
      ['-name', 'localhost:5000/app', '-digest', D, '-stdin-media-type', 'text/plain'],
      DESC,
      /unsupported -stdin-media-type/,
    ],
    ['malformed digest', args('localhost:5000/app', 'sha256:zz'), DESC, /malformed -digest/],
    ['malformed name', args('NOT A REF'), DESC, /invalid image reference/],
    [
      'name pins another digest',
      args(`localhost:5000/app@sha256:${'f'.repeat(64)}`),
      DESC,
      /-name pins sha256:f+ but -digest is/,
    ],
    ['empty stdin', args(), '', /stdin is empty/],
    ['malformed stdin', args(), '{"mediaType":', /stdin is not JSON/],
    ['oversized stdin', args(), 'x'.repeat(70_000), /stdin larger than/],
    [
      'digest mismatch',
      args(),
      DESC.replace(/e{64}/, 'a'.repeat(64)),
      /descriptor digest sha256:aaaa.* does not match -digest/,
    ],
    ['layer media type', args(), DESC.replace('manifest.v1+json', 'layer.v1.tar+gzip'), /mediaType: must be one of/],
  ])('%s is denied with a one-line reason', async (_what, argv, stdin, reason) => {
    const r = await settlesWithoutWaiting(() => run(argv, stdin, { PULLGUARD_POLICY: ALLOW_DENY }));
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(reason);
    expect(r.stdout.trimEnd().split('\n')).toHaveLength(1);
    expect(r.stdout).not.toMatch(/\n\s+at /);
  });

  test('an open stdin is denied at the read deadline (750 ms)', async () => {
    const settled = await settlesAtDeadline(STDIN_DEADLINE_MS, () =>
      run(args(), undefined, { PULLGUARD_POLICY: ALLOW_DENY }),
    );
    if (settled.status !== 'fulfilled') throw settled.reason;
    expect(settled.value.code).toBe(1);
    expect(settled.value.stdout).toMatch(/stdin was not closed within 750ms/);
  });

  // The contract is checked before the policy is read, so audit mode cannot reach a contract violation:
  // this fails if the policy (and its mode) is loaded before the arguments and stdin are checked.
  test.each([
    ['digest mismatch', args(), DESC.replace(/e{64}/, 'a'.repeat(64)), /does not match -digest/],
    ['malformed stdin', args(), '{"mediaType":', /stdin is not JSON/],
  ])('contract violations deny even in audit mode: %s', async (_what, argv, stdin, reason) => {
    const p = policy('version: 1\nmode: audit\ndefault: allow\n');
    const r = await run(argv, stdin, { PULLGUARD_POLICY: p });
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(reason);
    expect(r.stdout).not.toMatch(/audit mode/);
  });
});

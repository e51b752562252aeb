import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { parseReference } from '../common/reference.js';
import { compilePattern, RuleMatcher, validatePattern } from './match.js';
import type { Rule } from './model.js';

const D1 = `sha256:${'1'.repeat(64)}`;
const D2 = `sha256:${'2'.repeat(64)}`;
const rule = (name: string, ...match: string[]): Rule => ({
  name,
  match,
  action: 'allow',
  authorities: [],
  require: 'all',
});
const find = (m: RuleMatcher, ref: string, digest = D1) => m.find(parseReference(ref), digest)?.rule.name;

describe('pattern normalization', () => {
  test.each([
    ['nginx', 'docker.io/library/nginx'],
    ['bitnami/*', 'docker.io/bitnami/*'],
    ['index.docker.io/library/busybox', 'docker.io/library/busybox'],
    ['ghcr.io/org/**', 'ghcr.io/org/**'],
    ['localhost:5000/app', 'localhost:5000/app'],
    ['**', '**'],
    [`nginx@${D1}`, `docker.io/library/nginx@${D1}`],
  ])('%s -> %s', (p, n) => expect(compilePattern(p).normalized).toBe(n));
});

describe('validatePattern', () => {
  test.each([
    ['nginx:latest', /not tags/],
    ['ghcr.io/a/b:v1', /not tags/],
    ['ghcr.io/*@' + D1, /cannot contain wildcards/],
    ['ghcr.io/a@sha256:x', /malformed digest/],
    ['a b', /spaces/],
    ['ghcr.io/***', /not \*\*\*/],
    ['', /empty/],
  ])('rejects %s', (p, m) => expect(validatePattern(p)).toMatch(m));
  test.each(['localhost:5000/app', 'ghcr.io/org/**', '*.example.com/**', 'registry.k8s.io/pause'])('accepts %s', (p) =>
    expect(validatePattern(p)).toBeUndefined(),
  );
});

describe('RuleMatcher: the most specific pattern wins', () => {
  const m = new RuleMatcher([
    rule('everything', '**'),
    rule('org', 'ghcr.io/org/**'),
    rule('org-one-level', 'ghcr.io/org/*'),
    rule('app', 'ghcr.io/org/app'),
    rule('pinned', `ghcr.io/org/app@${D2}`),
    rule('hub', 'nginx'),
    rule('pause', 'registry.k8s.io/pause'),
  ]);

  test('exact repository beats globs', () => expect(find(m, 'ghcr.io/org/app:v1')).toBe('app'));
  test('a digest-pinned pattern beats everything for that digest only', () => {
    expect(find(m, 'ghcr.io/org/app:v1', D2)).toBe('pinned');
    expect(find(m, `ghcr.io/org/app@${D2}`, D2)).toBe('pinned');
    expect(find(m, 'ghcr.io/org/app:v1', D1)).toBe('app');
  });
  test('* stays within one component, ** crosses them', () => {
    expect(find(m, 'ghcr.io/org/other')).toBe('org-one-level');
    expect(find(m, 'ghcr.io/org/team/other')).toBe('org');
  });
  test('** catches the rest', () => expect(find(m, 'quay.io/x/y')).toBe('everything'));
  test('docker.io normalization applies to references and patterns', () => {
    expect(find(m, 'nginx:1.27')).toBe('hub');
    expect(find(m, 'docker.io/library/nginx:latest')).toBe('hub');
  });
  test('tags never decide', () => expect(find(m, 'registry.k8s.io/pause:3.10')).toBe('pause'));
  test('no rule, no match', () =>
    expect(new RuleMatcher([rule('a', 'ghcr.io/a')]).find(parseReference('ghcr.io/b'), D1)).toBeUndefined());
  test('ties go to the earlier rule', () => {
    const t = new RuleMatcher([rule('first', 'ghcr.io/*/app'), rule('second', 'ghcr.io/org/*')]);
    expect(find(t, 'ghcr.io/org/app')).toBe('first');
  });
});

describe('registry hosts are matched as containerd reaches them (issue 8 item 1)', () => {
  const verify = (name: string, ...match: string[]): Rule => ({
    name,
    match,
    action: 'verify',
    authorities: [],
    require: 'all',
  });
  test.each([
    ['VM:5214/prod/unsigned:v1', 'vm:5214/**'],
    ['Vm:5214/prod/unsigned:v1', 'vm:5214/**'],
    ['vm:5214/prod/unsigned:v1', 'VM:5214/**'],
    ['Registry.Example.COM/prod/app', 'registry.example.com/prod/**'],
    ['registry.example.com:443/prod/app', 'registry.example.com/prod/**'],
    ['registry.example.com/prod/app', 'registry.example.com:443/prod/**'],
    ['registry-1.docker.io/library/nginx', 'nginx'],
    ['index.docker.io/library/nginx', 'docker.io/library/nginx'],
    ['registry.hub.docker.com/library/nginx', 'nginx'],
    ['Docker.IO/library/nginx', 'nginx'],
    ['LOCALHOST:5000/app', 'localhost:5000/app'],
    ['VM/prod/app', 'vm:443/prod/app'],
    ['a.B.example.com/app', '*.example.com/**'],
  ])('%s is caught by %s', (ref, pattern) => {
    expect(find(new RuleMatcher([verify('v', pattern)]), ref)).toBe('v');
  });
  test.each([
    // Different endpoints to containerd: not folded.
    ['vm:80/app', 'vm:443/**'],
    ['127.0.0.1:5000/app', 'localhost:5000/**'],
    // `vm/app` is docker.io/vm/app, not the host vm.
    ['vm/app', 'vm:443/**'],
  ])('%s is not %s', (ref, pattern) => {
    expect(find(new RuleMatcher([verify('v', pattern)]), ref)).toBeUndefined();
  });
  test('a host spelled with a trailing dot or an empty label is refused in a pattern', () => {
    expect(validatePattern('vm.:5214/**')).toMatch(/trailing dot/);
    expect(validatePattern('example..com/app')).toMatch(/trailing dot/);
  });
});

describe('glob matching is linear (issue 8 item 2)', () => {
  /** The semantics the old RegExp compilation had: `*` = [^/]*, `**` = .*, the rest literal. */
  const oldSemantics = (pattern: string, name: string) => {
    let re = '';
    for (let i = 0; i < pattern.length; i++) {
      if (pattern[i] === '*') {
        if (pattern[i + 1] === '*') {
          re += '.*';
          i++;
        } else re += '[^/]*';
      } else re += pattern[i]!.replace(/[.+?^${}()|[\]\\]/g, '\\$&');
    }
    return new RegExp(`^${re}$`).test(name);
  };
  const alphabet = fc.constantFrom('a', 'b', '/', '.');
  const patternArb = fc
    .array(fc.constantFrom('a', 'b', '/', '.', '*', '**'), { maxLength: 10 })
    .map((xs) => xs.join('').replace(/\*{3,}/g, '**'));
  const nameArb = fc.array(alphabet, { maxLength: 14 }).map((xs) => xs.join(''));

  test('agrees with the old RegExp semantics on random inputs', () => {
    fc.assert(
      fc.property(patternArb, nameArb, (body, name) => {
        const pattern = `**/x/${body}`;
        const compiled = compilePattern(pattern);
        expect(compiled.test(`h.io/x/${name}`)).toBe(oldSemantics(compiled.normalized, `h.io/x/${name}`));
      }),
      { numRuns: 3000 },
    );
  });

  test('adversarial patterns answer within a step budget, not a time limit', () => {
    // Deadline-based: 200 adversarial cases must all finish before a generous deadline. The old RegExp
    // took hours for a single one of them (`*a` x 8 then `b` against 60 `a`s was killed at 20 s).
    const deadline = Date.now() + 20_000;
    fc.assert(
      fc.property(
        fc.integer({ min: 4, max: 40 }),
        fc.integer({ min: 30, max: 240 }),
        fc.constantFrom('*', '**'),
        (stars, len, star) => {
          const pattern = `localhost:5999/${`${star}a`.repeat(stars)}${star}b`;
          const compiled = compilePattern(pattern);
          expect(compiled.test(`localhost:5999/${'a'.repeat(len)}`)).toBe(false);
          expect(Date.now()).toBeLessThan(deadline);
        },
      ),
      { numRuns: 200 },
    );
    const m = new RuleMatcher([rule('evil', 'localhost:5999/*a*a*a*a*a*a*a*a*b')]);
    expect(find(m, `localhost:5999/${'a'.repeat(60)}`)).toBeUndefined();
    expect(find(m, `localhost:5999/${'a'.repeat(60)}b`)).toBe('evil');
  });
});

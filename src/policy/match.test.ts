import { describe, expect, test } from 'vitest';
import { parseReference } from '../common/reference.js';
import { compilePattern, RuleMatcher, validatePattern } from './match.js';
import type { Rule } from './model.js';

const D1 = `sha256:${'1'.repeat(64)}`;
const D2 = `sha256:${'2'.repeat(64)}`;
const rule = (name: string, ...match: string[]): Rule => ({ name, match, action: 'allow', authorities: [], require: 'all' });
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
  test.each(['localhost:5000/app', 'ghcr.io/org/**', '*.example.com/**', 'registry.k8s.io/pause'])('accepts %s', (p) => expect(validatePattern(p)).toBeUndefined());
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
  test('no rule, no match', () => expect(new RuleMatcher([rule('a', 'ghcr.io/a')]).find(parseReference('ghcr.io/b'), D1)).toBeUndefined());
  test('ties go to the earlier rule', () => {
    const t = new RuleMatcher([rule('first', 'ghcr.io/*/app'), rule('second', 'ghcr.io/org/*')]);
    expect(find(t, 'ghcr.io/org/app')).toBe('first');
  });
});

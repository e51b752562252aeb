/**
 * The cases of kubernetes pkg/credentialprovider/keyring_test.go (TestUrlsMatch, TestDockerKeyringForGlob,
 * TestKeyringMiss, TestIsDefaultRegistryMatch, TestDockerKeyringLookup, TestIssue3797), run against the port.
 */
import { describe, expect, test } from 'vitest';
import { credentialKey, goGlob, isDefaultRegistryMatch, matchingEntries, urlsMatch } from './kubelet-match.js';

describe('urlsMatch (keyring.go URLsMatchStr)', () => {
  test.each([
    ['*.kubernetes.io', 'prefix.kubernetes.io', true],
    ['prefix.*.io', 'prefix.kubernetes.io', true],
    ['prefix.kubernetes.*', 'prefix.kubernetes.io', true],
    ['*-good.kubernetes.io', 'prefix-good.kubernetes.io', true],
    ['*.kubernetes.io/blah', 'prefix.kubernetes.io/blah', true],
    ['prefix.*.io/foo', 'prefix.kubernetes.io/foo/bar', true],
    ['*.kubernetes.io:1111/blah', 'prefix.kubernetes.io:1111/blah', true],
    ['prefix.*.io:1111/foo', 'prefix.kubernetes.io:1111/foo/bar', true],
    ['*.kubernetes.io', 'kubernetes.io', false],
    ['*.*.kubernetes.io', 'prefix.kubernetes.io', false],
    ['*.*.kubernetes.io', 'kubernetes.io', false],
    ['kubernetes.io', 'kubernetes.com', false],
    ['k*.io', 'quay.io', false],
    ['*.kubernetes.io:1234/blah', 'prefix.kubernetes.io:1111/blah', false],
    ['prefix.*.io/foo', 'prefix.kubernetes.io:1111/foo/bar', false],
    // EKS's matchImages against a real ECR image; the path prefix is a plain string prefix.
    ['*.dkr.ecr.*.amazonaws.com', '123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/app', true],
    ['*.dkr.ecr.*.amazonaws.com', '123456789012.dkr.ecr.eu-west-1.amazonaws.com.cn/app', false],
    ['registry.example.com/team', 'registry.example.com/teamster/app', true],
    ['127.0.0.1:5000', '127.0.0.1:5000/private', true],
    ['127.0.0.1', '127.0.0.1:5000/private', false],
    ['*', 'localhost/x', true],
    ['*', 'a.b/x', false],
    ['x[abc].io', 'xb.io', true],
    ['x[^abc].io', 'xb.io', false],
    ['x[a-c]*.io', 'xbz.io', true],
    ['[abc].io', 'b.io', false], // a leading '[' is an IPv6 literal to url.Parse: an error
    ['a[]a].io', 'aa.io', false], // ErrBadPattern never matches
    ['a?.io', 'ab.io', false], // url.Parse cuts the glob at '?' (a query): kubelet never matches it either
    ['a\\*.io', 'a*.io', false], // a backslash is not allowed in a host
    ['[::1]:5000', '[::1]:5000/x', true],
    ['host:port', 'host:port/x', false], // a non-numeric port is a parse error in Go
  ])('%s vs %s -> %s', (glob, target, want) => {
    expect(urlsMatch(glob, target)).toBe(want);
  });

  test('a trailing backslash and an unclosed class are bad patterns', () => {
    expect(goGlob('a\\')).toBeUndefined();
    expect(goGlob('[ab')).toBeUndefined();
    expect(goGlob('[-a]')).toBeUndefined();
  });
});

describe('keyring lookup (BasicDockerKeyring.Add + Lookup)', () => {
  const hits = (loc: string, image: string) =>
    matchingEntries(image, [{ key: credentialKey(loc)!, value: 'cred' }]).length > 0;

  test.each([
    ['https://hello.kubernetes.io', 'hello.kubernetes.io'],
    ['https://*.docker.io', 'prefix.docker.io'],
    ['https://prefix.*.io', 'prefix.docker.io'],
    ['https://prefix.docker.*', 'prefix.docker.io'],
    ['https://*.docker.io/path', 'prefix.docker.io/path'],
    ['https://prefix.*.io/path', 'prefix.docker.io/path/subpath'],
    ['https://prefix.docker.*/path', 'prefix.docker.io/path'],
    ['https://*.docker.io:8888', 'prefix.docker.io:8888'],
    ['https://prefix.*.io:8888', 'prefix.docker.io:8888'],
    ['https://prefix.docker.*:8888', 'prefix.docker.io:8888'],
    ['https://*.docker.io/path:1111', 'prefix.docker.io/path:1111'],
    ['https://*.docker.io/v1/', 'prefix.docker.io/path:1111'],
    ['https://*.docker.io/v2/', 'prefix.docker.io/path:1111'],
    ['https://prefix.docker.*/path:1111', 'prefix.docker.io/path:1111'],
    ['prefix.docker.io:1111', 'prefix.docker.io:1111/path'],
    ['*.docker.io:1111', 'prefix.docker.io:1111/path'],
  ])('%s covers %s/foo/bar', (loc, target) => {
    expect(hits(loc, `${target}/foo/bar`)).toBe(true);
  });

  test.each([
    ['https://hello.kubernetes.io', 'world.mesos.org/foo/bar'],
    ['https://*.docker.com', 'prefix.docker.io'],
    ['https://suffix.*.io', 'prefix.docker.io'],
    ['https://prefix.docker.c*', 'prefix.docker.io'],
    ['https://prefix.*.io/path:1111', 'prefix.docker.io/path/subpath:1111'],
    ['suffix.*.io', 'prefix.docker.io'],
  ])('%s misses %s/foo/bar', (loc, target) => {
    expect(hits(loc, `${target}/foo/bar`)).toBe(false);
  });

  test('Docker Hub credentials filed under https://index.docker.io/v1/', () => {
    expect(hits('https://index.docker.io/v1/', 'world.mesos.org/foo/bar')).toBe(false);
    expect(hits('https://index.docker.io/v1/', 'google/docker-registry')).toBe(true);
    expect(hits('https://index.docker.io/v1/', 'jenkins')).toBe(true);
    expect(hits('https://index.docker.io/v1/', 'docker.io/library/nginx')).toBe(true);
  });

  test('isDefaultRegistryMatch', () => {
    for (const s of ['foo/bar', 'docker.io/foo/bar', 'index.docker.io/foo/bar', 'foo'])
      expect(isDefaultRegistryMatch(s)).toBe(true);
    for (const s of ['', 'registry.tld/foo/bar', 'registry:5000/foo/bar', 'myhostdocker.io/foo/bar'])
      expect(isDefaultRegistryMatch(s)).toBe(false);
  });

  test('the most specific key first, then the order added (TestDockerKeyringLookup, TestIssue3797)', () => {
    const entries = [
      { key: credentialKey('bar.example.com/pong')!, value: 'grace' },
      { key: credentialKey('bar.example.com')!, value: 'ada' },
    ];
    expect(matchingEntries('bar.example.com', entries)).toEqual(['ada']);
    expect(matchingEntries('bar.example.com/pong', entries)).toEqual(['grace', 'ada']);
    expect(matchingEntries('bar.example.com/ping', entries)).toEqual(['ada']);
    expect(matchingEntries('bar.example.com/pongz', entries)).toEqual(['grace', 'ada']);
    expect(matchingEntries('bar.example.com/pong/pang', entries)).toEqual(['grace', 'ada']);
    expect(matchingEntries('example.com', entries)).toEqual([]);
    expect(matchingEntries('foo.example.com', entries)).toEqual([]);
    const rex = [{ key: credentialKey('https://quay.io/v1/')!, value: 'rex' }];
    for (const image of ['quay.io', 'quay.io/foo', 'quay.io/foo/bar'])
      expect(matchingEntries(image, rex)).toEqual(['rex']);
  });
});

import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, test } from 'vitest';
import { PullguardError } from '../common/errors.js';
import { Deadline } from '../common/deadline.js';
import { dockerConfigPaths } from './auth.js';
import { CredentialCache } from './credential-cache.js';
import { loadCredentialProviderConfig, parseCredentialProviderConfig } from './credential-provider-config.js';
import { CredentialProviders, parseProviderResponse, redactedExcerpt } from './credential-provider.js';
import { urlsMatch } from './kubelet-match.js';
import { DistributionClient } from './client.js';
import { OCI_MANIFEST, startFakeRegistry } from '../../test/helpers/fake-registry.js';
import { rejects } from '../../test/helpers/errors.js';

const work = mkdtempSync(join(tmpdir(), 'pg-credprov-unit-'));
const HEAD = 'kind: CredentialProviderConfig\napiVersion: kubelet.config.k8s.io/v1\n';
const V1 = 'credentialprovider.kubelet.k8s.io/v1';
afterAll(() => rmSync(work, { recursive: true, force: true }));

// The shape EKS AL2023 AMIs ship in /etc/eks/image-credential-provider/config.json.
const EKS = JSON.stringify({
  apiVersion: 'kubelet.config.k8s.io/v1',
  kind: 'CredentialProviderConfig',
  providers: [
    {
      name: 'ecr-credential-provider',
      matchImages: [
        '*.dkr.ecr.*.amazonaws.com',
        '*.dkr.ecr.*.amazonaws.com.cn',
        '*.dkr.ecr-fips.*.amazonaws.com',
        '*.dkr.ecr.*.c2s.ic.gov',
        '*.dkr.ecr.*.sc2s.sgov.gov',
      ],
      defaultCacheDuration: '12h0m0s',
      apiVersion: 'credentialprovider.kubelet.k8s.io/v1',
      env: [{ name: 'AWS_PROFILE', value: 'default' }],
    },
  ],
});
// cloud-provider-azure's documented /var/lib/kubelet/credential-provider-config.yaml.
const AKS = `kind: CredentialProviderConfig
apiVersion: kubelet.config.k8s.io/v1
providers:
- name: acr-credential-provider
  apiVersion: credentialprovider.kubelet.k8s.io/v1
  defaultCacheDuration: 10m
  matchImages:
  - "*.azurecr.io"
  - "*.azurecr.cn"
  args:
  - /etc/kubernetes/azure.json
`;

describe('CredentialProviderConfig', () => {
  test('EKS (JSON) and AKS (YAML) configs as the platforms ship them', () => {
    const [ecr] = parseCredentialProviderConfig(EKS, 'eks.json');
    expect(ecr).toMatchObject({
      name: 'ecr-credential-provider',
      defaultCacheDurationMs: 12 * 3_600_000,
      env: [{ name: 'AWS_PROFILE', value: 'default' }],
      args: [],
    });
    const [acr] = parseCredentialProviderConfig(AKS, 'aks.yaml');
    expect(acr).toMatchObject({
      name: 'acr-credential-provider',
      defaultCacheDurationMs: 600_000,
      args: ['/etc/kubernetes/azure.json'],
      requiresServiceAccount: false,
    });
  });

  test.each([
    ['kind: Other\napiVersion: kubelet.config.k8s.io/v1\n', /kind is "Other"/],
    ['kind: CredentialProviderConfig\napiVersion: v1\n', /apiVersion "v1" is not kubelet.config.k8s.io/],
    [HEAD + 'providers: [{name: a/b}]\n', /providers\[0\].name "a\/b" may not contain/],
    [HEAD + 'providers: [{name: a, apiVersion: x}]\n', /providers\[0\].apiVersion "x" is not one of/],
    [`${HEAD}providers: [{name: a, apiVersion: ${V1}, matchImages: []}]\n`, /matchImages needs at least one/],
    [`${HEAD}providers: [{name: a, apiVersion: ${V1}, matchImages: ["x"]}]\n`, /defaultCacheDuration is required/],
    [
      `${HEAD}providers: [{name: a, apiVersion: ${V1}, matchImages: ["x:y"], defaultCacheDuration: 1h}]\n`,
      /matchImages\[0\] "x:y" is not valid/,
    ],
    ['{not yaml', /not valid YAML or JSON/],
  ])('rejects %#', (text, why) => {
    expect(() => parseCredentialProviderConfig(text, 'c.yaml')).toThrow(why);
  });

  test('a directory merges in lexicographic order; duplicate names fail; service-account plugins are marked', () => {
    const dir = join(work, 'conf.d');
    mkdirSync(dir);
    const one = (name: string, extra = '') =>
      `${HEAD}providers:\n- {name: ${name}, apiVersion: ${V1}, matchImages: ["*.example.com"], ` +
      `defaultCacheDuration: 1m${extra}}\n`;
    writeFileSync(
      join(dir, 'b.yaml'),
      one(
        'second',
        ', tokenAttributes: {serviceAccountTokenAudience: x, requireServiceAccount: true, cacheType: Token}',
      ),
    );
    writeFileSync(join(dir, 'a.json'), one('first'));
    writeFileSync(join(dir, 'notes.txt'), 'ignored');
    expect(loadCredentialProviderConfig(dir).map((p) => [p.name, p.requiresServiceAccount])).toEqual([
      ['first', false],
      ['second', true],
    ]);
    writeFileSync(join(dir, 'c.yml'), one('first'));
    expect(() => loadCredentialProviderConfig(dir)).toThrow(/duplicate provider name "first"/);
    expect(() => loadCredentialProviderConfig(join(work, 'nope.yaml'))).toThrow(
      /cannot read kubelet credential provider config .*nope.yaml.*: ENOENT/,
    );
  });
});

describe('CredentialProviderResponse', () => {
  const spec = { name: 'p', apiVersion: 'credentialprovider.kubelet.k8s.io/v1' };
  const res = (o: object) => JSON.stringify({ kind: 'CredentialProviderResponse', apiVersion: spec.apiVersion, ...o });

  test('cacheKeyType, cacheDuration (Go format), auth', () => {
    expect(
      parseProviderResponse(
        res({
          cacheKeyType: 'Registry',
          cacheDuration: '6h0m0s',
          auth: { 'r.example.com': { username: 'u', password: 'p' } },
        }),
        spec,
      ),
    ).toEqual({
      cacheKeyType: 'Registry',
      cacheDurationMs: 6 * 3_600_000,
      auth: { 'r.example.com': { username: 'u', password: 'p' } },
    });
    expect(parseProviderResponse(res({ cacheKeyType: 'Image' }), spec)).toEqual({
      cacheKeyType: 'Image',
      cacheDurationMs: undefined,
      auth: {},
    });
  });

  test.each([
    ['{"password":"hunter2"', /not JSON/],
    [res({ kind: 'Other', cacheKeyType: 'Image' }), /kind "Other"/],
    [
      res({ apiVersion: 'credentialprovider.kubelet.k8s.io/v1beta1', cacheKeyType: 'Image' }),
      /apiVersion "credentialprovider.kubelet.k8s.io\/v1beta1", not credentialprovider.kubelet.k8s.io\/v1/,
    ],
    [res({ cacheKeyType: 'hunter2 secret' }), /cacheKeyType another, not Image, Registry or Global/],
    [res({ cacheKeyType: 'Image', cacheDuration: 'soon' }), /cacheDuration that is not a duration/],
    [
      res({ cacheKeyType: 'Image', auth: { h: { username: 'u', password: 7 } } }),
      /username or password is not a string/,
    ],
  ])('rejects %#, without echoing the output', (out, why) => {
    let message = '';
    try {
      parseProviderResponse(out, spec);
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toMatch(why);
    expect(message).not.toContain('hunter2');
  });

  test('stderr excerpts: last line, env values and token-like runs blanked', () => {
    expect(
      redactedExcerpt('first\nfailed for key=supersecretvalue: token eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9x\n\n', [
        'supersecretvalue',
      ]),
    ).toBe('failed for key=[redacted]: token [redacted]');
    expect(redactedExcerpt('x'.repeat(500), [])).toBe('[redacted]');
    expect(redactedExcerpt(`${'a b '.repeat(100)}`, []).length).toBeLessThanOrEqual(203);
  });
});

describe('the shared cache', () => {
  test('entries expire exactly when kubelet says; the most specific key is looked up first', () => {
    const c = new CredentialCache(join(work, 'cache1'));
    expect(c.put('fp', 'r.example.com', { 'r.example.com': { username: 'u', password: 'reg' } }, 1000)).toBeUndefined();
    expect(
      c.put('fp', 'r.example.com/app', { 'r.example.com': { username: 'u', password: 'img' } }, 2000),
    ).toBeUndefined();
    expect(c.get('fp', ['r.example.com/app', 'r.example.com', 'global'], 1000)?.auth['r.example.com']?.password).toBe(
      'img',
    );
    expect(c.get('fp', ['r.example.com/other', 'r.example.com', 'global'], 1000)?.key).toBe('r.example.com');
    expect(c.get('fp', ['r.example.com/other', 'r.example.com', 'global'], 1001)).toBeUndefined();
    expect(c.get('other-fingerprint', ['r.example.com/app'], 0)).toBeUndefined();
    expect(readdirSync(join(work, 'cache1')).every((f) => f.endsWith('.json'))).toBe(true);
  });

  test('a file that is not 0600 or not a JSON entry is a miss', () => {
    const dir = join(work, 'cache2');
    const c = new CredentialCache(dir);
    c.put('fp', 'k', { k: { username: 'u', password: 'p' } }, Number.MAX_SAFE_INTEGER);
    const [file] = readdirSync(dir);
    chmodSync(join(dir, file!), 0o644);
    expect(c.get('fp', ['k'])).toBeUndefined();
    chmodSync(join(dir, file!), 0o600);
    expect(c.get('fp', ['k'])).toBeDefined();
    writeFileSync(join(dir, file!), '[]');
    expect(c.get('fp', ['k'])).toBeUndefined();
  });

  test('an injected clock: an entry past its cacheDuration makes the plugin run again', async () => {
    const dir = join(work, 'prov');
    mkdirSync(join(dir, 'bin'), { recursive: true });
    const plugin = join(dir, 'bin', 'p');
    // A shell plugin: counts its runs, answers with a 10s cache.
    writeFileSync(
      plugin,
      `#!/bin/sh\necho run >> ${join(dir, 'runs')}\ncat >/dev/null\nprintf '%s' '${JSON.stringify({
        kind: 'CredentialProviderResponse',
        apiVersion: V1,
        cacheKeyType: 'Image',
        cacheDuration: '10s',
        auth: { 'r.example.com': { username: 'u', password: 'p' } },
      })}'\n`,
    );
    chmodSync(plugin, 0o755);
    writeFileSync(
      join(dir, 'c.yaml'),
      `${HEAD}providers:\n- {name: p, apiVersion: ${V1}, matchImages: ["r.example.com"], defaultCacheDuration: 1m}\n`,
    );
    let now = 1_000_000;
    const settings = { config: join(dir, 'c.yaml'), binDir: join(dir, 'bin'), cacheDir: join(dir, 'cache') };
    const lookup = async () => {
      const notes: string[] = [];
      const cred = await new CredentialProviders(settings, { PATH: process.env.PATH }, () => now).lookup(
        'r.example.com/app',
        new Deadline(5000),
        notes,
      );
      return { cred, notes };
    };
    const runs = () => readFileSync(join(dir, 'runs'), 'utf8').split('\n').filter(Boolean).length;
    expect((await lookup()).cred).toMatchObject({ username: 'u', password: 'p' });
    now += 10_000;
    expect((await lookup()).notes.join()).toMatch(/cached \(Image\)/);
    expect(runs()).toBe(1);
    now += 1;
    expect((await lookup()).notes.join()).toMatch(/fresh, cached \(Image\)/);
    expect(runs()).toBe(2);
    expect(
      await new CredentialProviders(settings, {}, () => now).lookup('other.example.com/app', new Deadline(5000), []),
    ).toBeUndefined();
    const e = await rejects(
      new CredentialProviders({ ...settings, binDir: join(dir, 'nowhere') }, {}, () => 0).lookup(
        'r.example.com/x',
        new Deadline(5000),
        [],
      ),
    );
    expect(e.message).toMatch(/kubelet credential provider p is not installed: no .*nowhere\/p/);
  });
});

describe('the search order', () => {
  test('policy file, $DOCKER_CONFIG, the DaemonSet secret, root, kubelet; each once', () => {
    expect(dockerConfigPaths('/p.json', { DOCKER_CONFIG: '/d' })).toEqual([
      '/p.json',
      '/d/config.json',
      '/etc/pullguard/docker/config.json',
      '/root/.docker/config.json',
      '/var/lib/kubelet/config.json',
    ]);
    expect(dockerConfigPaths('/etc/pullguard/docker/config.json', {})).toEqual([
      '/etc/pullguard/docker/config.json',
      '/root/.docker/config.json',
      '/var/lib/kubelet/config.json',
    ]);
  });
});

describe('fuzzing: plugin output and configs are untrusted input', () => {
  const spec = { name: 'p', apiVersion: V1 };
  const onlyOurErrors = (f: () => unknown) => {
    try {
      f();
    } catch (e) {
      if (!(e instanceof PullguardError)) throw e;
      return e.message;
    }
    return '';
  };

  test('parseProviderResponse: only PullguardErrors, and never the output in the message', () => {
    const secret = 'Zm9vYmFyc2VjcmV0';
    const json = fc.oneof(
      fc.json(),
      fc
        .record({
          kind: fc.constantFrom('CredentialProviderResponse', secret),
          apiVersion: fc.constantFrom(V1, secret),
          cacheKeyType: fc.oneof(fc.constantFrom('Image', 'Registry', 'Global'), fc.string()),
          cacheDuration: fc.oneof(fc.constant(undefined), fc.string(), fc.integer()),
          auth: fc.dictionary(
            fc.string(),
            fc.record({ username: fc.oneof(fc.string(), fc.integer()), password: fc.constant(secret) }),
          ),
        })
        .map((o) => JSON.stringify(o)),
    );
    fc.assert(
      fc.property(json, (out) => {
        expect(onlyOurErrors(() => parseProviderResponse(out, spec))).not.toContain(secret);
      }),
      { numRuns: 500 },
    );
  });

  test('parseCredentialProviderConfig and urlsMatch never throw anything else', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.json()), (text) => {
        onlyOurErrors(() => parseCredentialProviderConfig(text, 'c.yaml'));
        onlyOurErrors(() => parseCredentialProviderConfig(`${HEAD}providers: ${text}`, 'c.yaml'));
      }),
      { numRuns: 300 },
    );
    fc.assert(
      fc.property(fc.string(), fc.string(), (a, b) => {
        expect(typeof urlsMatch(a, b)).toBe('boolean');
        expect(typeof urlsMatch(`${a}.example.com`, `${b}.example.com/x`)).toBe('boolean');
      }),
      { numRuns: 500 },
    );
  });
});

describe("a token-auth registry (the ACR / Artifact Registry flow) with a provider's credentials", () => {
  test("the provider's username and password go to the token server only; the registry gets a bearer", async () => {
    const reg = await startFakeRegistry();
    try {
      const cfg = reg.putBlob('team/app', '{"architecture":"amd64","os":"linux"}');
      const img = reg.putManifest('team/app', {
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...cfg },
        layers: [],
      });
      const basic = `Basic ${Buffer.from('00000000-0000-0000-0000-000000000000:refresh-token-1').toString('base64')}`;
      reg.handler = (q, res, url) => {
        if (url.pathname === '/oauth2/token') {
          const ok = q.headers.authorization === basic && url.searchParams.get('scope') === 'repository:team/app:pull';
          res.writeHead(ok ? 200 : 401, { 'content-type': 'application/json' });
          res.end(ok ? JSON.stringify({ access_token: 'bearer-for-team-app' }) : '{}');
          return true;
        }
        if (q.headers.authorization !== 'Bearer bearer-for-team-app') {
          const challenge = `Bearer realm="${reg.url}/oauth2/token",service="${reg.host}"`;
          res.writeHead(401, { 'www-authenticate': challenge });
          res.end();
          return true;
        }
        return false;
      };
      const dir = mkdtempSync(join(work, 'token-'));
      mkdirSync(join(dir, 'bin'));
      const answer = {
        kind: 'CredentialProviderResponse',
        apiVersion: V1,
        cacheKeyType: 'Registry',
        auth: { [reg.host]: { username: '00000000-0000-0000-0000-000000000000', password: 'refresh-token-1' } },
      };
      writeFileSync(join(dir, 'bin', 'acr'), `#!/bin/sh\ncat >/dev/null\nprintf '%s' '${JSON.stringify(answer)}'\n`);
      chmodSync(join(dir, 'bin', 'acr'), 0o755);
      writeFileSync(
        join(dir, 'c.yaml'),
        `${HEAD}providers:\n- {name: acr, apiVersion: ${V1}, matchImages: ["${reg.host}"], ` +
          'defaultCacheDuration: 10m}\n',
      );
      writeFileSync(join(dir, 'containerd.toml'), 'version = 3\n');
      const c = new DistributionClient(
        {
          containerdConfig: join(dir, 'containerd.toml'),
          credentialProviders: { config: join(dir, 'c.yaml'), binDir: join(dir, 'bin'), cacheDir: join(dir, 'cache') },
        },
        { env: { PATH: process.env.PATH } },
      );
      try {
        const [domain] = reg.host.split('/');
        const r = await c.discover(
          { subject: { domain: domain!, path: 'team/app', digest: img.digest }, classes: new Set(['cosign-legacy']) },
          new Deadline(5000),
        );
        expect(r.artifacts).toEqual([]);
        expect(r.notes.join('\n')).toMatch(
          /credentials for 127\.0\.0\.1:\d+\/team\/app from kubelet credential provider acr/,
        );
        const toRegistry = reg.log.filter((l) => !l.url.startsWith('/oauth2/'));
        expect(toRegistry.some((l) => l.headers.authorization === 'Bearer bearer-for-team-app')).toBe(true);
        expect(toRegistry.every((l) => !String(l.headers.authorization ?? '').startsWith('Basic'))).toBe(true);
      } finally {
        c.close();
      }
    } finally {
      await reg.close();
    }
  });
});

describe('hostile files never hang the pull', () => {
  test('a FIFO as the provider config, or planted in the cache, is refused at once', () => {
    const dir = mkdtempSync(join(work, 'fifo-'));
    execFileSync('mkfifo', [join(dir, 'config.yaml')]);
    expect(() => loadCredentialProviderConfig(join(dir, 'config.yaml'))).toThrow(
      /credential provider config .*config.yaml.*FIFO, not a regular file/,
    );
    const cacheDir = join(dir, 'cache');
    const c = new CredentialCache(cacheDir);
    c.put('fp', 'k', { k: { username: 'u', password: 'p' } }, Number.MAX_SAFE_INTEGER);
    const [file] = readdirSync(cacheDir);
    rmSync(join(cacheDir, file!));
    execFileSync('mkfifo', ['-m', '600', join(cacheDir, file!)]);
    expect(c.get('fp', ['k'])).toBeUndefined();
  });
});

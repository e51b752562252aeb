import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { Deadline } from '../common/deadline.js';
import { CredentialStore, HELPER_TIMEOUT_MS, normalizeAuthKey, parseChallenges } from './auth.js';
import { classify } from './classify.js';
import {
  DEFAULT_CONFIG_PATH,
  endpointsFor,
  hostDirectory,
  hostsDirFromContainerdConfig,
  isLocalhost,
} from './hosts.js';
import type { OciManifest } from './types.js';

const tmp = mkdtempSync(join(tmpdir(), 'pg-hosts-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const file = (rel: string, text: string) => {
  const p = join(tmp, rel);
  mkdirSync(join(p, '..'), { recursive: true });
  writeFileSync(p, text);
  return p;
};

describe('containerd config', () => {
  test('version 2 (CRI grpc plugin) and version 3 (cri.v1.images)', () => {
    expect(
      hostsDirFromContainerdConfig(
        file('v2.toml', 'version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\nconfig_path = "/a"\n'),
      ).dir,
    ).toBe('/a');
    expect(
      hostsDirFromContainerdConfig(
        file('v3.toml', "version = 3\n[plugins.'io.containerd.cri.v1.images'.registry]\nconfig_path = '/b'\n"),
      ).dir,
    ).toBe('/b');
    // v2 keys are migrated over v3 ones of the same name
    expect(
      hostsDirFromContainerdConfig(
        file(
          'mix.toml',
          'version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\nconfig_path = ' +
            '"/a"\n[plugins."io.containerd.cri.v1.images".registry]\nconfig_path = "/b"\n',
        ),
      ).dir,
    ).toBe('/a');
    expect(hostsDirFromContainerdConfig(file('none.toml', 'version = 3\n')).dir).toBe(DEFAULT_CONFIG_PATH);
  });
  test('imports: drop-ins are read after the main file, and the last config_path wins', () => {
    file('conf.d/10-other.toml', 'version = 3\n');
    file(
      'conf.d/50-pullguard.toml',
      "version = 3\n[plugins.'io.containerd.cri.v1.images'.registry]\nconfig_path = '/etc/containerd/certs.d'\n",
    );
    file(
      'conf.d/ignored.txt',
      "version = 3\n[plugins.'io.containerd.cri.v1.images'.registry]\nconfig_path = '/nope'\n",
    );
    const main = file(
      'main.toml',
      'version = 2\nimports = ["conf.d/*.toml"]\n[plugins."io.containerd.grpc.v1.cri".registry]\nconfig_path = ' +
        '"/etc/containerd/certs.d:/etc/docker/certs.d"\n',
    );
    expect(hostsDirFromContainerdConfig(main).dir).toBe('/etc/containerd/certs.d');
    // containerd 2.1.9 stops loading at a missing import and runs on what it read so far (checked with
    // `containerd config dump` in src/containerd/config.test.ts): so do we.
    const missing = file(
      'main2.toml',
      'version = 3\nimports = ["/nonexistent/pullguard.toml", ' +
        '"conf.d/50-pullguard.toml"]\n[plugins."io.containerd.cri.v1.images".registry]\nconfig_path = "/m"\n',
    );
    expect(hostsDirFromContainerdConfig(missing).dir).toBe('/m');
  });
  test(
    "a version 2 main file importing a version 3 drop-in: containerd ignores the main file's config_path, " +
      'so do we',
    () => {
      // Issue 8: the pull path used to read /etc/containerd/certs.d here (the version 2 key of the main
      // file) while containerd 2.1.9 (config dump) and doctor have config_path unset.
      file(
        'v2v3/conf.d/pullguard.toml',
        'version = 3\n[plugins."io.containerd.image-verifier.v1.bindir"]\nbin_dir = ' +
          '"/opt/containerd/image-verifier/bin"\n',
      );
      const main = file(
        'v2v3/config.toml',
        'version = 2\nimports = ' +
          '["conf.d/pullguard.toml"]\n[plugins."io.containerd.grpc.v1.cri".registry]\nconfig_path = ' +
          '"/etc/containerd/certs.d"\n',
      );
      expect(hostsDirFromContainerdConfig(main).dir).toBe(DEFAULT_CONFIG_PATH);
      // No version line: read as version 3 when nothing before it declared 2, so version 2 names are ignored too.
      expect(
        hostsDirFromContainerdConfig(
          file('nover.toml', '[plugins."io.containerd.grpc.v1.cri".registry]\nconfig_path = "/a"\n'),
        ).dir,
      ).toBe(DEFAULT_CONFIG_PATH);
    },
  );
  test('errors name the file and what to fix', () => {
    expect(() => hostsDirFromContainerdConfig(join(tmp, 'missing.toml'))).toThrow(
      /cannot read containerd config .*missing.toml: ENOENT; fix registry.containerdConfig/,
    );
    expect(() => hostsDirFromContainerdConfig(file('bad.toml', 'version = \n'))).toThrow(/is not valid TOML/);
  });
});

describe('hosts.toml', () => {
  test('lookup order: <host>_<port>_, <host>:<port>, _default', () => {
    const root = join(tmp, 'order');
    mkdirSync(join(root, '_default'), { recursive: true });
    expect(hostDirectory(root, 'r.example:5000')).toBe(join(root, '_default'));
    mkdirSync(join(root, 'r.example:5000'));
    expect(hostDirectory(root, 'r.example:5000')).toBe(join(root, 'r.example:5000'));
    mkdirSync(join(root, 'r.example_5000_'));
    expect(hostDirectory(root, 'r.example:5000')).toBe(join(root, 'r.example_5000_'));
    expect(hostDirectory(join(tmp, 'a:b'), 'x')).toBeUndefined(); // the default path list is one (missing) root
  });

  test('ordered mirrors with capabilities, ca, client, skip_verify, header, override_path; then the server', () => {
    const root = join(tmp, 'mirrors');
    file(
      'mirrors/docker.io/hosts.toml',
      `server = "https://registry-1.docker.io"
[host."https://m2.example/base"]
  capabilities = ["pull"]
  ca = "ca.pem"
  client = [["c.pem", "k.pem"]]
  [host."https://m2.example/base".header]
    X-Team = ["a", "b"]
[host."http://m1.example:8080/custom/api"]
  override_path = true
  skip_verify = true
`,
    );
    const eps = endpointsFor('docker.io', root);
    expect(eps.map((e) => [e.scheme, e.host, e.path, e.mirror])).toEqual([
      ['https', 'm2.example', '/base/v2', true],
      // http with TLS settings and an ambiguous port: https first, http fallback (containerd's HTTPFallback)
      ['https', 'm1.example:8080', '/custom/api', true],
      ['https', 'registry-1.docker.io', '/v2', false],
    ]);
    expect(eps[1]!.httpFallback).toBe(true);
    expect(eps[0]!.capabilities).toEqual({ pull: true, resolve: false, push: false, referrers: false });
    expect(eps[0]!.tls.caFiles).toEqual([join(root, 'docker.io', 'ca.pem')]);
    expect(eps[0]!.tls.clientPairs).toEqual([[join(root, 'docker.io', 'c.pem'), join(root, 'docker.io', 'k.pem')]]);
    expect(eps[0]!.headers).toEqual({ 'X-Team': ['a', 'b'] });
  });

  test('defaults: docker.io, loopback (http with https probe), other hosts https', () => {
    expect(endpointsFor('docker.io', undefined).map((e) => `${e.scheme}://${e.host}${e.path}`)).toEqual([
      'https://registry-1.docker.io/v2',
    ]);
    const local = endpointsFor('127.0.0.1:5000', undefined)[0]!;
    expect([local.scheme, local.httpFallback, local.tls.skipVerify, local.mirror]).toEqual([
      'https',
      true,
      true,
      false,
    ]);
    expect(endpointsFor('localhost:80', undefined)[0]!.scheme).toBe('http');
    expect(endpointsFor('localhost', undefined)[0]!.scheme).toBe('https');
    expect(endpointsFor('ghcr.io', undefined)[0]!).toMatchObject({
      scheme: 'https',
      host: 'ghcr.io',
      httpFallback: false,
    });
    expect(['localhost:1', '127.0.0.1', '127.9.9.9:5', '[::1]:5000', '::1'].every(isLocalhost)).toBe(true);
    expect(['128.0.0.1', 'example.com', 'localhost.example'].some(isLocalhost)).toBe(false);
  });

  test('without hosts.toml, Docker cert files are the TLS settings', () => {
    const root = join(tmp, 'certfiles');
    file('certfiles/r.example/ca.crt', 'x');
    file('certfiles/r.example/client.cert', 'x');
    file('certfiles/r.example/client.key', 'x');
    const [ep] = endpointsFor('r.example', root);
    expect(ep!.tls.caFiles).toEqual([join(root, 'r.example', 'ca.crt')]);
    expect(ep!.tls.clientPairs).toEqual([
      [join(root, 'r.example', 'client.cert'), join(root, 'r.example', 'client.key')],
    ]);
  });
});

describe('credentials', () => {
  test('challenges and auth keys', () => {
    expect(
      parseChallenges(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",' +
          'scope="repository:library/nginx:pull", Basic realm="x"',
      ),
    ).toEqual([
      {
        scheme: 'bearer',
        params: {
          realm: 'https://auth.docker.io/token',
          service: 'registry.docker.io',
          scope: 'repository:library/nginx:pull',
        },
      },
      { scheme: 'basic', params: { realm: 'x' } },
    ]);
    expect(['https://index.docker.io/v1/', 'registry-1.docker.io', 'docker.io'].map(normalizeAuthKey)).toEqual([
      'docker.io',
      'docker.io',
      'docker.io',
    ]);
    expect(normalizeAuthKey('http://R.example:5000/v2/')).toBe('r.example:5000');
  });

  test('search order, credHelpers before credsStore before auths, helpers under a timeout', async () => {
    const bin = join(tmp, 'bin');
    mkdirSync(bin);
    const helper = (name: string, body: string) => {
      writeFileSync(join(bin, `docker-credential-${name}`), `#!/bin/sh\n${body}\n`);
      chmodSync(join(bin, `docker-credential-${name}`), 0o755);
    };
    helper('good', 'read s; echo "{\\"ServerURL\\":\\"$s\\",\\"Username\\":\\"u-$s\\",\\"Secret\\":\\"p\\"}"');
    helper('none', 'echo "credentials not found in native keychain"; exit 1');
    helper('slow', 'sleep 30');
    const first = file(
      'dc1/config.json',
      JSON.stringify({
        auths: { 'a.example': { auth: Buffer.from('alice:pw').toString('base64') } },
        credHelpers: { 'h.example': 'good', 's.example': 'slow' },
      }),
    );
    file(
      'dc2/config.json',
      JSON.stringify({
        credsStore: 'none',
        auths: {
          'b.example': { username: 'bob', password: 'pw2' },
          'a.example': { username: 'not-me', password: 'x' },
        },
      }),
    );
    const env = { PATH: `${bin}:/usr/bin:/bin`, DOCKER_CONFIG: join(tmp, 'dc2') };
    const store = new CredentialStore([first, join(tmp, 'dc2', 'config.json'), join(tmp, 'nope.json')], first, env);
    const d = new Deadline(10_000);
    expect(await store.lookup('a.example', d)).toMatchObject({
      username: 'alice',
      password: 'pw',
      source: `${first} auths`,
    });
    expect(await store.lookup('h.example', d)).toMatchObject({ username: 'u-h.example', password: 'p' });
    expect(await store.lookup('b.example', d)).toMatchObject({ username: 'bob' }); // credsStore had none; auths answer
    expect(await store.lookup('c.example', d)).toBeUndefined();
    // Deadline-based: the 800 ms budget ends it (DEADLINE_EXCEEDED), before the helper's own timeout
    // could have (the only bound on time here, and a generous one: 5 s against 0.8 s).
    const started = Date.now();
    await expect(store.lookup('s.example', new Deadline(800))).rejects.toMatchObject({
      code: 'DEADLINE_EXCEEDED',
      message: expect.stringMatching(/docker-credential-slow .* did not answer/),
    });
    expect(Date.now() - started).toBeLessThan(HELPER_TIMEOUT_MS);
  });
});

describe('classification from the manifest (shapes from signature-formats.md)', () => {
  const empty = { mediaType: 'application/vnd.oci.empty.v1+json', digest: `sha256:${'4'.repeat(64)}`, size: 2 };
  const layer = (mediaType: string) => ({ mediaType, digest: `sha256:${'a'.repeat(64)}`, size: 10 });
  const m = (x: Partial<OciManifest>): OciManifest => ({ schemaVersion: 2, config: empty, layers: [], ...x });
  const BUNDLE = 'application/vnd.dev.sigstore.bundle.v0.3+json';
  test.each([
    [
      'cosign .sig tag',
      m({
        config: { ...empty, mediaType: 'application/vnd.oci.image.config.v1+json' },
        layers: [layer('application/vnd.dev.cosign.simplesigning.v1+json')],
      }),
      'cosign-sig-tag',
      'cosign-legacy',
    ],
    [
      'cosign bundle',
      m({
        artifactType: BUNDLE,
        layers: [layer(BUNDLE)],
        annotations: { 'dev.sigstore.bundle.predicateType': 'https://sigstore.dev/cosign/sign/v1' },
      }),
      'referrers-tag',
      'cosign-bundle',
    ],
    [
      'cosign bundle, predicate unknown until the blob is read',
      m({ artifactType: BUNDLE, layers: [layer(BUNDLE)] }),
      'referrers-tag',
      'cosign-bundle',
    ],
    [
      'attestation bundle',
      m({
        artifactType: BUNDLE,
        layers: [layer(BUNDLE)],
        annotations: { 'dev.sigstore.bundle.predicateType': 'https://slsa.dev/provenance/v1' },
      }),
      'referrers-api',
      'attestation',
    ],
    [
      'legacy payload as a referrer',
      m({
        artifactType: 'application/vnd.dev.cosign.artifact.sig.v1+json',
        layers: [layer('application/vnd.dev.cosign.simplesigning.v1+json')],
      }),
      'referrers-api',
      'cosign-legacy-referrer',
    ],
    [
      'notation (config.mediaType)',
      m({
        config: { ...empty, mediaType: 'application/vnd.cncf.notary.signature' },
        layers: [layer('application/jose+json')],
      }),
      'referrers-tag',
      'notation',
    ],
    [
      'notation (artifactType)',
      m({ artifactType: 'application/vnd.cncf.notary.signature', layers: [layer('application/cose')] }),
      'referrers-api',
      'notation',
    ],
    [
      'cosign .att tag',
      m({ layers: [layer('application/vnd.dsse.envelope.v1+json')] }),
      'cosign-att-tag',
      'attestation',
    ],
    [
      'an SBOM',
      m({ artifactType: 'application/spdx+json', layers: [layer('application/spdx+json')] }),
      'referrers-api',
      'unknown',
    ],
  ] as const)('%s', (_name, manifest, via, cls) => {
    expect(classify(manifest, via)).toBe(cls);
  });
});

import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { parsePolicyText } from '../policy/load.js';
import { credentialChecks, kubeletCredentialFlags } from './credentials.js';
import {
  credentialProviderChecks,
  imageCredentialChecks,
  runningKubeletFlags,
  tokenRealmChecks,
} from './credentials-run.js';
import { formatCheck } from './diagnose.js';

const work = mkdtempSync(join(tmpdir(), 'pg-doctor-cred-'));
const BIN = '/var/lib/kubelet/credential-provider';
afterAll(() => rmSync(work, { recursive: true, force: true }));

// EKS AL2 bootstrap.sh starts kubelet like this (flag and value as separate words).
const EKS_ARGV = [
  '/usr/bin/kubelet',
  '--config',
  '/etc/kubernetes/kubelet/kubelet-config.json',
  '--image-credential-provider-config',
  '/etc/eks/image-credential-provider/config.json',
  '--image-credential-provider-bin-dir=/etc/eks/image-credential-provider',
];

describe('kubelet flags', () => {
  test('both spellings, from argv', () => {
    expect(kubeletCredentialFlags(EKS_ARGV)).toEqual({
      config: '/etc/eks/image-credential-provider/config.json',
      binDir: '/etc/eks/image-credential-provider',
    });
    expect(kubeletCredentialFlags(['/usr/bin/kubelet', '--v=2'])).toEqual({});
  });

  test('from /proc: the process whose comm is kubelet', () => {
    const proc = join(work, 'proc');
    for (const [pid, comm, argv] of [
      ['1', 'systemd', ['/sbin/init']],
      ['4242', 'kubelet', EKS_ARGV],
    ] as const) {
      mkdirSync(join(proc, pid), { recursive: true });
      writeFileSync(join(proc, pid, 'comm'), `${comm}\n`);
      writeFileSync(join(proc, pid, 'cmdline'), `${argv.join('\0')}\0`);
    }
    mkdirSync(join(proc, 'self'));
    expect(runningKubeletFlags(proc)).toEqual({
      config: '/etc/eks/image-credential-provider/config.json',
      binDir: '/etc/eks/image-credential-provider',
    });
    expect(runningKubeletFlags(join(work, 'no-proc'))).toBeUndefined();
  });
});

describe('doctor --image', () => {
  // What doctor prints for credentials: the provider config's checks, then the image's.
  const lines = (ref: string, policyYaml: string, proc = join(work, 'empty-proc')) => {
    const policy = parsePolicyText(policyYaml, 'policy.yaml');
    return [...credentialProviderChecks(policy, {}), ...imageCredentialChecks(ref, policy, {}, proc)].map(formatCheck);
  };

  test('config.json auths, a credHelper, none: each named, no value printed', () => {
    const dc = join(work, 'docker.json');
    writeFileSync(
      dc,
      JSON.stringify({
        auths: { 'r.example.com': { auth: Buffer.from('u:s3cret').toString('base64') } },
        credHelpers: { 'gcr.io': 'gcloud' },
      }),
    );
    const policy = `version: 1\nregistry: {dockerConfig: ${dc}}\n`;
    const auths = lines('r.example.com/app:v1', policy);
    expect(auths).toEqual([
      `ok    credentials for r.example.com/app: the auths entry in docker config ${dc} (values not shown)`,
    ]);
    expect(lines('gcr.io/p/app', policy)[0]).toContain(
      `credential helper docker-credential-gcloud, named by credHelper in ${dc}`,
    );
    expect(lines('nginx', policy)[0]).toMatch(
      /^ok {4}credentials for docker.io\/library\/nginx: none; pullguard asks docker.io anonymously/,
    );
    expect(auths.join()).not.toContain('s3cret');
  });

  test('a kubelet provider: named; a missing binary FAILs; kubelet flags that differ WARN', () => {
    const conf = join(work, 'cp.yaml');
    writeFileSync(
      conf,
      'kind: CredentialProviderConfig\napiVersion: kubelet.config.k8s.io/v1\nproviders:\n' +
        '- {name: ecr-credential-provider, apiVersion: credentialprovider.kubelet.k8s.io/v1, ' +
        'matchImages: ["*.dkr.ecr.*.amazonaws.com"], defaultCacheDuration: 12h}\n',
    );
    const bin = join(work, 'cp-bin');
    mkdirSync(bin);
    const cache = join(work, 'cache');
    const cp = `{config: ${conf}, binDir: ${bin}, cacheDir: ${cache}}`;
    const policy = `version: 1\nregistry:\n  credentialProviders: ${cp}\n`;
    const ecr = '123456789012.dkr.ecr.eu-west-1.amazonaws.com/app';
    const missing = lines(ecr, policy);
    expect(missing).toEqual([
      `ok    kubelet credential provider config ${conf}: ecr-credential-provider`,
      expect.stringMatching(
        /^FAIL {2}credential provider ecr-credential-provider: .*cp-bin\/ecr-credential-provider does not exist/,
      ),
      `ok    credentials for ${ecr}: kubelet credential provider ecr-credential-provider from ${conf} ` +
        '(run at pull time)',
    ]);
    writeFileSync(join(bin, 'ecr-credential-provider'), '#!/bin/sh\n');
    chmodSync(join(bin, 'ecr-credential-provider'), 0o755);
    expect(lines(ecr, policy)).toHaveLength(2);
    expect(lines('quay.io/app', policy)[1]).toMatch(/none; pullguard asks quay.io anonymously/);
    writeFileSync(conf, 'kind: CredentialProviderConfig\n');
    const broken = lines(ecr, policy);
    expect(broken[0]).toMatch(/^FAIL {2}kubelet credential provider config .*cp.yaml: apiVersion undefined is not/);
    expect(broken.slice(1)).toEqual([
      `WARN  credentials for ${ecr}: not known: the credential provider config does not load`,
    ]);
  });

  test('kubelet has providers the policy does not use: WARN with the exact policy lines', () => {
    const proc = join(work, 'proc2');
    mkdirSync(join(proc, '77'), { recursive: true });
    const conf = join(work, 'kubelet-cp.json');
    writeFileSync(
      conf,
      JSON.stringify({
        apiVersion: 'kubelet.config.k8s.io/v1',
        kind: 'CredentialProviderConfig',
        providers: [
          {
            name: 'acr-credential-provider',
            apiVersion: 'credentialprovider.kubelet.k8s.io/v1',
            matchImages: ['*.azurecr.io'],
            defaultCacheDuration: '10m',
          },
        ],
      }),
    );
    writeFileSync(join(proc, '77', 'comm'), 'kubelet\n');
    writeFileSync(
      join(proc, '77', 'cmdline'),
      [
        'kubelet',
        `--image-credential-provider-config=${conf}`,
        '--image-credential-provider-bin-dir=/var/lib/kubelet/credential-provider',
      ].join('\0'),
    );
    const out = lines('myreg.azurecr.io/app', 'version: 1\n', proc);
    expect(out[1]).toBe(
      'WARN  kubelet on this node gets credentials from provider plugins ' +
        '(its acr-credential-provider matches myreg.azurecr.io/app): ' +
        `--image-credential-provider-config ${conf} --image-credential-provider-bin-dir ${BIN}; ` +
        `fix: add to the policy: registry: {credentialProviders: {config: ${conf}, binDir: ${BIN}}}`,
    );
  });

  test('pure: a broken source is a FAIL', () => {
    expect(
      credentialChecks({
        image: 'h/r',
        source: { kind: 'error', error: 'docker config x is not valid JSON' },
      })[0]!.status,
    ).toBe('FAIL');
  });
});

describe('doctor: registry.tokenRealmCache', () => {
  test('a usable directory is ok; one another user could write is a WARN with the fix', () => {
    const ok = join(work, 'realms-ok');
    const loose = join(work, 'realms-loose');
    mkdirSync(loose, { mode: 0o700 });
    chmodSync(loose, 0o775);
    const checks = (dir: string) =>
      tokenRealmChecks(parsePolicyText(`version: 1\nregistry: {tokenRealmCache: {dir: ${dir}}}\n`, 'p.yaml')).map(
        formatCheck,
      );
    expect(checks(ok)).toEqual([`ok    token realms remembered in ${ok}`]);
    expect(checks(loose).join('\n')).toMatch(/^WARN {2}token realm cache not used: .*has mode 775; it must be 0700/);
    expect(tokenRealmChecks(parsePolicyText('version: 1\n', 'p.yaml'))).toEqual([]);
  });
});

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPairSync } from 'node:crypto';
import { afterAll, describe, expect, test } from 'vitest';
import { parseReference } from '../../common/reference.js';
import { RuleMatcher } from '../match.js';
import { loadPolicy, parsePolicyText } from '../load.js';
import type { CosignSpec } from '../authorities/cosign.js';
import { looksLikeContainersPolicy, parseContainersPolicy } from './containers-policy.js';

// Made at collection time: test.each tables below are built before any hook runs.
const dir = mkdtempSync(join(tmpdir(), 'pg-cp-'));
const keyPem = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  .publicKey.export({ type: 'spki', format: 'pem' })
  .toString();
const key = join(dir, 'key.pub');
writeFileSync(key, keyPem);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const signed = (extra: Record<string, unknown> = {}) => [{ type: 'sigstoreSigned', keyPath: key, ...extra }];
const doc = (docker: Record<string, unknown>, def: unknown[] = [{ type: 'reject' }]) =>
  JSON.stringify({ default: def, transports: { docker } });
const ruleFor = (text: string, image: string) => {
  const p = parseContainersPolicy(text, 'policy.json');
  const ref = parseReference(image);
  return { policy: p, match: new RuleMatcher(p.rules).find(ref, ref.digest ?? 'sha256:' + '0'.repeat(64)) };
};

describe('containers-policy.json translation', () => {
  test('is detected by parsePolicyText, native YAML is not', () => {
    expect(looksLikeContainersPolicy(doc({}))).toBe(true);
    expect(looksLikeContainersPolicy('version: 1\nrules: []\n')).toBe(false);
    expect(parsePolicyText(doc({}), 'p.json').defaultAction).toBe('deny');
  });

  test('most specific scope wins; *.domain wildcards; transport default', () => {
    const text = doc({
      '': [{ type: 'insecureAcceptAnything' }],
      'registry.example.com': [{ type: 'reject' }],
      'registry.example.com/team': signed(),
      'registry.example.com/team/app': [{ type: 'insecureAcceptAnything' }],
      '*.example.com': signed({ signedIdentity: { type: 'matchRepository' } }),
      '*.dev.example.com': [{ type: 'reject' }],
    });
    const rule = (image: string) => ruleFor(text, image).match?.rule;
    expect(rule('registry.example.com/team/app:1')?.action).toBe('allow');
    expect(rule('registry.example.com/team/app/sub:1')?.action).toBe('allow');
    expect(rule('registry.example.com/team/other:1')?.action).toBe('verify');
    expect(rule('registry.example.com/x:1')?.action).toBe('deny');
    expect(rule('other.example.com/x:1')?.name).toBe('docker:*.example.com');
    expect(rule('a.b.example.com/x:1')?.name).toBe('docker:*.example.com');
    expect(rule('a.dev.example.com/x:1')?.name).toBe('docker:*.dev.example.com');
    // The "" scope accepting anything becomes the policy default, not a rule.
    expect(rule('quay.io/x:1')).toBeUndefined();
    expect(parseContainersPolicy(text, 'p').defaultAction).toBe('allow');
  });

  test('global default applies when the docker transport has no "" scope', () => {
    expect(parseContainersPolicy(doc({}, [{ type: 'insecureAcceptAnything' }]), 'p').defaultAction).toBe('allow');
    const p = parseContainersPolicy(doc({}, signed()), 'p');
    expect(p.rules.map((r) => [r.name, r.match, r.action])).toEqual([['default', ['**'], 'verify']]);
  });

  test('sigstoreSigned: keyPath/keyData, default signedIdentity matchRepoDigestOrExact, reject beats the rest', () => {
    const b64 = Buffer.from(keyPem).toString('base64');
    const p = parseContainersPolicy(
      doc({
        'r.example/a': [{ type: 'sigstoreSigned', keyData: b64 }],
        'r.example/b': [...signed(), { type: 'reject' }],
      }),
      'p',
    );
    const spec = p.rules[0]!.authorities[0]!.spec as CosignSpec;
    expect(spec.mode).toBe('keys');
    expect(spec.signedIdentity).toEqual({ type: 'matchRepoDigestOrExact' });
    expect(spec.tlog).toBe(false);
    expect(p.rules[1]!.action).toBe('deny');
  });

  test('a Rekor key turns on the transparency-log requirement; fulcio needs one', () => {
    const p = parseContainersPolicy(doc({ 'r.example/a': signed({ rekorPublicKeyPath: key }) }), 'p');
    expect((p.rules[0]!.authorities[0]!.spec as CosignSpec).tlog).toBe(true);
    expect(() =>
      parseContainersPolicy(
        doc({
          'r.example/a': [{ type: 'sigstoreSigned', fulcio: { caPath: key, oidcIssuer: 'x', subjectEmail: 'y' } }],
        }),
        'p',
      ),
    ).toThrow(/Rekor public key/);
  });

  test.each([
    [
      'signedBy without a key',
      { 'r.example/a': [{ type: 'signedBy', keyType: 'GPGKeys' }] },
      /exactly one of keyPath, keyPaths and keyData/,
    ],
    ['a tag scope', { 'r.example/a:latest': signed() }, /names a tag/],
    ['an unexpanded scope', { busybox: signed() }, /fully expanded/],
    ['two key sources', { 'r.example/a': signed({ keyData: 'AAAA' }) }, /exactly one of/],
    ['an unknown field', { 'r.example/a': signed({ keyPathz: 'x' }) }, /unknown field "keyPathz"/],
    [
      'a missing key file',
      { 'r.example/a': [{ type: 'sigstoreSigned', keyPath: '/nonexistent/k.pub' }] },
      /no such file/,
    ],
    ['an empty requirement list', { 'r.example/a': [] }, /non-empty array/],
    [
      'pki with a Rekor key',
      {
        'r.example/a': [
          { type: 'sigstoreSigned', pki: { caRootsPath: key, subjectEmail: 'a@b' }, rekorPublicKeyPath: key },
        ],
      },
      /not supported with pki/,
    ],
  ])('refuses %s at load', (_, docker, message) => {
    expect(() => parseContainersPolicy(doc(docker), 'p.json')).toThrow(message);
  });

  test('other transports are ignored, with a note; signedBy scopes deny with the reason', () => {
    const text = JSON.stringify({
      default: [{ type: 'reject' }],
      transports: { 'docker-daemon': { '': [{ type: 'insecureAcceptAnything' }] } },
    });
    const p = parseContainersPolicy(text, 'p.json');
    expect(p.rules).toEqual([]);
    expect(p.defaultAction).toBe('deny');
    expect(p.notes).toEqual([
      'p.json:1: transport "docker-daemon" ignored: containerd pulls only from registries (the docker transport)',
    ]);
  });

  test("Fedora's /etc/containers/policy.json loads (issue 8: a distro policy.json is refused)", () => {
    const fedora = join(import.meta.dirname, '../../../test/fixtures/containers-policy/fedora-policy.json');
    const p = loadPolicy(fedora);
    expect(p.defaultAction).toBe('allow');
    expect(p.notes).toEqual([
      `${fedora}:24: transport "docker-daemon" ignored: containerd pulls only from registries (the docker transport)`,
      'scope registry.access.redhat.com: signedBy (GPG simple signing) cannot be verified by pullguard; ' +
        'its images are denied',
      'scope registry.redhat.io: signedBy (GPG simple signing) cannot be verified by pullguard; its images are denied',
    ]);
    const m = new RuleMatcher(p.rules);
    const D = `sha256:${'0'.repeat(64)}`;
    const redhat = m.find(parseReference('registry.redhat.io/ubi9/ubi:latest'), D)!.rule;
    expect(redhat).toMatchObject({
      action: 'deny',
      message: expect.stringMatching(/requires signedBy \(GPG\) signatures, which pullguard cannot verify/),
    });
    expect(m.find(parseReference('Registry.Access.RedHat.com/ubi9'), D)!.rule.action).toBe('deny');
    expect(m.find(parseReference('quay.io/podman/hello'), D)).toBeUndefined();
  });

  test('a native policy can take its rules from a containers-policy.json', () => {
    const cp = join(dir, 'policy.json');
    writeFileSync(cp, doc({ 'r.example/a': signed() }));
    const p = parsePolicyText(`version: 1\nmode: audit\ncontainersPolicy: ${cp}\n`, 'native.yaml');
    expect(p.mode).toBe('audit');
    expect(p.rules[0]!.name).toBe('docker:r.example/a');
    expect(() => parsePolicyText(`version: 1\ncontainersPolicy: ${cp}\nrules: []\n`, 'native.yaml')).toThrow(
      /comes from containersPolicy/,
    );
  });
});

describe('scopes see canonical registry hosts (issue 8 item 1)', () => {
  test.each(['VM:5214/prod/unsigned:v1', 'Vm:5214/prod/unsigned:v1', 'vm:5214/prod/unsigned:v1'])(
    'a reject scope "vm:5214" rejects %s',
    (image) => {
      const text = doc({ 'vm:5214': [{ type: 'reject' }] }, [{ type: 'insecureAcceptAnything' }]);
      expect(ruleFor(text, image).match?.rule.action).toBe('deny');
    },
  );
  test('an upper-case scope and a Docker Hub alias are folded too', () => {
    const text = doc({ 'VM:5214/prod': [{ type: 'reject' }], 'docker.io/library': [{ type: 'reject' }] }, [
      { type: 'insecureAcceptAnything' },
    ]);
    expect(ruleFor(text, 'vm:5214/prod/app').match?.rule.action).toBe('deny');
    expect(ruleFor(text, 'registry-1.docker.io/library/nginx').match?.rule.action).toBe('deny');
  });
});

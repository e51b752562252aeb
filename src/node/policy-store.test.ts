import { generateKeyPairSync } from 'node:crypto';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadPolicy } from '../policy/load.js';
import { writeKubeletVolume } from '../../test/helpers/kubelet-volume.js';
import { fateFromResponse } from './kube.js';
import {
  applyVersionToHost,
  currentHostVersion,
  readMountedVersion,
  removeFromHost,
  syncDockerConfig,
  validateVersion,
  HOST_DOCKER_CONFIG,
} from './policy-store.js';

let tmp: string;
beforeEach(() => {
  tmp = mkdtempSync(join(tmpdir(), 'pg-store-'));
});
afterEach(() => rmSync(tmp, { recursive: true, force: true }));

const policy = (keyPath: string) =>
  'version: 1\ndefault: deny\nrules:\n  - name: signed\n    match: registry.example/**\n    action: verify\n' +
  `    authorities:\n      - name: k\n        cosign: {keys: [${JSON.stringify(keyPath)}]}\n`;
const pem = () =>
  generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'pem' }) as string;

describe('readMountedVersion', () => {
  it('reads one version through ..data and sees the swap kubelet makes', () => {
    const vol = join(tmp, 'vol');
    writeKubeletVolume(vol, { 'policy.yaml': 'a', 'truststore/x509/ca/r/cert.pem': 'c' });
    const v1 = readMountedVersion(vol)!;
    expect([...v1.files.keys()].sort()).toEqual(['policy.yaml', 'truststore/x509/ca/r/cert.pem']);
    writeKubeletVolume(vol, { 'policy.yaml': 'b', 'truststore/x509/ca/r/cert.pem': 'c' });
    const v2 = readMountedVersion(vol)!;
    expect(v2.files.get('policy.yaml')!.toString()).toBe('b');
    expect(v2.id).not.toBe(v1.id);
    expect(readMountedVersion(join(tmp, 'absent'))).toBeUndefined();
  });
});

describe('validateVersion', () => {
  it('uses the verifier loader at the staging directory the policy names, and refuses with its reason', () => {
    const stage = join(tmp, 'stage');
    const good = {
      id: 'x',
      files: new Map([
        ['policy.yaml', Buffer.from(policy(join(stage, 'release.pub')))],
        ['release.pub', Buffer.from(pem())],
      ]),
    };
    expect(() => validateVersion(good, stage)).not.toThrow();
    expect(loadPolicy(join(stage, 'policy.yaml')).rules).toHaveLength(1);
    // The key the policy names is not in this version: refused, even though the previous one left it.
    const missingKey = { id: 'y', files: new Map([['policy.yaml', Buffer.from(policy(join(stage, 'release.pub')))]]) };
    expect(() => validateVersion(missingKey, stage)).toThrow(/release\.pub/);
    const broken = { id: 'z', files: new Map([['policy.yaml', Buffer.from('version: 1\nrules: [')]]) };
    expect(() => validateVersion(broken, stage)).toThrow(/policy/);
    expect(() => validateVersion({ id: 'w', files: new Map() }, stage)).toThrow(/no policy\.yaml key/);
    for (const reserved of ['current', 'docker/config.json', '.versions/x']) {
      const files = new Map([...good.files, [reserved, Buffer.from('x')]]);
      expect(() => validateVersion({ id: 'r', files }, stage), reserved).toThrow(/reserved in \/etc\/pullguard/);
    }
  });
});

describe('applyVersionToHost', () => {
  it('swaps versions by one symlink, keeps the policy path resolving through it, and removes cleanly', () => {
    const root = join(tmp, 'host');
    const base = join(root, 'etc/pullguard');
    mkdirSync(base, { recursive: true });
    writeFileSync(join(base, 'policy.yaml'), 'hand-made');
    writeFileSync(join(base, 'unrelated.txt'), 'keep me');
    const v = (p: string, k: string) => ({
      id: `${p}${k}`
        .padEnd(12, '0')
        .slice(0, 12)
        .replace(/[^0-9a-f]/g, 'a'),
      files: new Map([
        ['policy.yaml', Buffer.from(p)],
        ['k.pub', Buffer.from(k)],
      ]),
    });
    const v1 = v('1', 'a');
    applyVersionToHost(root, v1);
    expect(readlinkSync(join(base, 'policy.yaml'))).toBe('current/policy.yaml');
    expect(realpathSync(join(base, 'policy.yaml'))).toBe(join(base, '.versions', v1.id, 'policy.yaml'));
    expect(readFileSync(join(base, 'k.pub'), 'utf8')).toBe('a');
    expect(currentHostVersion(root)).toBe(v1.id);
    // The hand-made file was kept aside, not lost.
    const aside = readdirSync(join(base, '.versions')).find((n) => n.startsWith('.replaced-'))!;
    expect(readFileSync(join(base, '.versions', aside, 'policy.yaml'), 'utf8')).toBe('hand-made');

    const v2 = v('2', 'b');
    applyVersionToHost(root, v2);
    expect(readFileSync(join(base, 'policy.yaml'), 'utf8')).toBe('2');
    const v3 = { id: 'ccc000000000', files: new Map([['policy.yaml', Buffer.from('3')]]) };
    applyVersionToHost(root, v3);
    expect(readFileSync(join(base, 'policy.yaml'), 'utf8')).toBe('3');
    expect(existsSync(join(base, 'k.pub'))).toBe(false); // no longer in the version
    // current and the previous version are kept; older ones are gone.
    expect(
      readdirSync(join(base, '.versions'))
        .filter((n) => !n.startsWith('.'))
        .sort(),
    ).toEqual([v2.id, v3.id].sort());

    removeFromHost(root);
    expect(readdirSync(base).sort()).toEqual(['unrelated.txt']);
  });
});

describe('syncDockerConfig', () => {
  it('places the Secret root-only and refuses a malformed one without quoting it', () => {
    const root = join(tmp, 'host');
    const secret = {
      id: 's',
      files: new Map([['.dockerconfigjson', Buffer.from('{"auths":{"r.example":{"auth":"c2VjcmV0"}}}')]]),
    };
    expect(syncDockerConfig(root, secret)).toBe(true);
    const dest = join(root, HOST_DOCKER_CONFIG);
    expect(statSync(dest).mode & 0o777).toBe(0o600);
    expect(statSync(join(dest, '..')).mode & 0o777).toBe(0o700);
    expect(lstatSync(dest).isFile()).toBe(true);
    const bad = { id: 's', files: new Map([['.dockerconfigjson', Buffer.from('{"auths": "hunter2"')]]) };
    expect(() => syncDockerConfig(root, bad)).toThrow(/not valid JSON/);
    try {
      syncDockerConfig(root, bad);
    } catch (e) {
      expect(String(e)).not.toContain('hunter2');
    }
    expect(readFileSync(dest, 'utf8')).toContain('c2VjcmV0'); // the last good one stays
    expect(syncDockerConfig(root, undefined)).toBe(false);
    expect(existsSync(dest)).toBe(false);
  });
});

describe('fateFromResponse', () => {
  it('uninstalls only for a DaemonSet that is gone or being deleted', () => {
    expect(fateFromResponse(404, '')).toBe('deleted');
    expect(
      fateFromResponse(
        200,
        JSON.stringify({ kind: 'DaemonSet', metadata: { deletionTimestamp: '2026-12-01T10:00:00Z' } }),
      ),
    ).toBe('deleted');
    expect(fateFromResponse(200, JSON.stringify({ kind: 'DaemonSet', metadata: {} }))).toBe('present');
    expect(fateFromResponse(403, '')).toBe('unknown');
    expect(fateFromResponse(200, 'garbage')).toBe('unknown');
  });
});

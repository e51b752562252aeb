import { describe, expect, it } from 'vitest';
import type { Authority, Policy, Rule } from '../policy/model.js';
import { nodeImageChecks, staticPodImages, type NodeImage } from './node-images.js';

const rule = (name: string, match: string[], action: Rule['action'], authorities: Rule['authorities'] = []): Rule => ({
  name,
  match,
  action,
  authorities,
  require: 'all',
});
const policy = (rules: Rule[], extra: Partial<Pick<Policy, 'defaultAction' | 'mode'>> = {}) => ({
  rules,
  defaultAction: 'deny' as const,
  mode: 'enforce' as const,
  ...extra,
});
const sandbox: NodeImage = { image: 'registry.k8s.io/pause:3.10', role: 'the sandbox image (pinned_images.sandbox)' };
const etcd: NodeImage = {
  image: 'registry.k8s.io/etcd:3.5.21-0',
  role: 'static pod etcd-cp container etcd (/m/etcd.yaml)',
  pullPolicy: 'IfNotPresent',
};
const statuses = (checks: { status: string }[]) => checks.map((c) => c.status);

// Only the fields node-images reads; the rest of a compiled spec does not matter here.
const cosignKeys = { name: 'release', kind: 'cosign', spec: { mode: 'keys', keys: [] } } as unknown as Authority;
const notation = (revocation: 'enforce' | 'log' | 'skip') =>
  ({
    name: 'corp',
    kind: 'notation',
    spec: {
      resolved: 'notation',
      source: 'x',
      truststoreDir: '/t',
      select: 'fixed',
      statements: [{ enforcement: { revocation } }],
      revocation: { timeoutMs: 1, maxCrlBytes: 1 },
    },
  }) as unknown as Authority;

describe('nodeImageChecks', () => {
  it('an allow rule exempts the node images', () => {
    const checks = nodeImageChecks(policy([rule('system', ['registry.k8s.io/**'], 'allow')]), [sandbox, etcd]);
    expect(statuses(checks)).toEqual(['ok', 'ok']);
    expect(checks[0]!.message).toContain('exempt (rule "system")');
  });

  it('a deny (or the default deny) is a FAIL naming what breaks, with the rule to add', () => {
    const checks = nodeImageChecks(policy([rule('hub', ['docker.io/**'], 'deny')]), [sandbox, etcd]);
    expect(statuses(checks)).toEqual(['FAIL', 'FAIL']);
    expect(checks[0]!.message).toContain('no rule matches; default is deny');
    expect(checks[0]!.message).toContain('no pod can start');
    expect(checks[1]!.message).toContain('this static pod cannot start');
    expect(checks[0]!.fix).toContain('match: [registry.k8s.io/pause], action: allow');
    expect(statuses(nodeImageChecks(policy([rule('k8s', ['registry.k8s.io/*'], 'deny')]), [sandbox]))).toEqual([
      'FAIL',
    ]);
  });

  it('audit mode turns the FAIL into a WARN: allowed today, not after enforce', () => {
    const checks = nodeImageChecks(policy([], { mode: 'audit' }), [sandbox]);
    expect(statuses(checks)).toEqual(['WARN']);
    expect(checks[0]!.message).toContain('audit mode allows it today');
  });

  it('verify with key-based cosign needs only the registry: ok', () => {
    const checks = nodeImageChecks(policy([rule('signed', ['registry.k8s.io/**'], 'verify', [cosignKeys])]), [etcd]);
    expect(statuses(checks)).toEqual(['ok']);
    expect(checks[0]!.message).toContain('nothing but the registry');
  });

  it('verify that needs more than the registry (online revocation, signatures elsewhere): WARN', () => {
    expect(
      statuses(nodeImageChecks(policy([rule('n', ['registry.k8s.io/**'], 'verify', [notation('enforce')])]), [etcd])),
    ).toEqual(['WARN']);
    expect(
      statuses(nodeImageChecks(policy([rule('n', ['registry.k8s.io/**'], 'verify', [notation('log')])]), [etcd])),
    ).toEqual(['ok']);
    const elsewhere = {
      ...cosignKeys,
      spec: { ...cosignKeys.spec, signatureRepository: 'sigs.example/k8s' },
    } as Authority;
    const atproto = { name: 'atcr', kind: 'atproto', spec: {} } as unknown as Authority;
    expect(statuses(nodeImageChecks(policy([rule('a', ['registry.k8s.io/**'], 'verify', [atproto])]), [etcd]))).toEqual(
      ['WARN'],
    );
    const c = nodeImageChecks(policy([rule('s', ['registry.k8s.io/**'], 'verify', [elsewhere])]), [etcd]);
    expect(c[0]).toMatchObject({ status: 'WARN' });
    expect(c[0]!.message).toContain('reads signatures from sigs.example/k8s');
  });

  it('a static pod pulled Always (written, or the default for :latest) cannot restart without the registry', () => {
    const allow = policy([rule('system', ['registry.k8s.io/**'], 'allow')]);
    expect(statuses(nodeImageChecks(allow, [{ ...etcd, pullPolicy: 'Always' }]))).toEqual(['WARN', 'ok']);
    expect(statuses(nodeImageChecks(allow, [{ ...etcd, image: 'registry.k8s.io/etcd', pullPolicy: '' }]))).toEqual([
      'WARN',
      'ok',
    ]);
    expect(statuses(nodeImageChecks(allow, [{ ...etcd, pullPolicy: '' }]))).toEqual(['ok']);
  });

  it('an exemption pinned by digest cannot be judged for a tag: WARN, not FAIL', () => {
    const pinned = policy([rule('pause', [`registry.k8s.io/pause@sha256:${'e'.repeat(64)}`], 'allow')]);
    expect(statuses(nodeImageChecks(pinned, [sandbox]))).toEqual(['WARN']);
    expect(
      statuses(nodeImageChecks(pinned, [{ ...sandbox, image: `registry.k8s.io/pause@sha256:${'e'.repeat(64)}` }])),
    ).toEqual(['ok']);
  });

  it('no policy: nothing to say here (the policy check FAILs)', () => {
    expect(nodeImageChecks(undefined, [sandbox])).toEqual([]);
  });
});

describe('staticPodImages', () => {
  it('reads init and regular containers with their pull policies', () => {
    const pod = {
      metadata: { name: 'kube-apiserver-cp' },
      spec: {
        initContainers: [{ name: 'init', image: 'a.test/init:1' }],
        containers: [
          { name: 'api', image: 'registry.k8s.io/kube-apiserver:v1.34.0', imagePullPolicy: 'IfNotPresent' },
          { name: 'x' },
        ],
      },
    };
    expect(staticPodImages(pod, '/m/api.yaml')).toEqual([
      { pod: 'kube-apiserver-cp', container: 'init', image: 'a.test/init:1', pullPolicy: undefined },
      {
        pod: 'kube-apiserver-cp',
        container: 'api',
        image: 'registry.k8s.io/kube-apiserver:v1.34.0',
        pullPolicy: 'IfNotPresent',
      },
    ]);
    expect(staticPodImages('not a pod', '/m/x')).toEqual([]);
  });
});

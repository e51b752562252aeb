/**
 * deploy/ renders offline with Debian's kubectl (`kubectl kustomize`), and the rendered objects have
 * the properties the rollout depends on: checked on the parsed YAML, and the ConfigMap's policy is
 * loaded with the verifier's own loader.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseAgentArgs } from '../../src/node/agent.js';
import { loadPolicy } from '../../src/policy/load.js';
import { ROOT, tool } from '../helpers/tools.js';

type Obj = {
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [k: string]: unknown;
};
// Rendered manifests are loosely typed; the tests assert on their shape.
type Any = any;

function render(dir: string): Obj[] {
  const text = execFileSync(tool('kubectl'), ['kustomize', dir], { encoding: 'utf8', timeout: 30_000 });
  return parseAllDocuments(text).map((d) => d.toJS() as Obj);
}

let objs: Obj[];
const get = (kind: string) => {
  const o = objs.filter((x) => x.kind === kind);
  expect(o, kind).toHaveLength(1);
  return o[0] as Any;
};

beforeAll(() => {
  objs = render(join(ROOT, 'deploy'));
});

describe('kubectl kustomize deploy/', () => {
  it('renders a Namespace, the RBAC, the policy ConfigMap and the DaemonSet, all in that namespace', () => {
    expect(objs.map((o) => o.kind).sort()).toEqual([
      'ConfigMap',
      'DaemonSet',
      'Namespace',
      'Role',
      'RoleBinding',
      'ServiceAccount',
    ]);
    const ns = get('Namespace').metadata.name;
    for (const o of objs) if (o.kind !== 'Namespace') expect(o.metadata.namespace, o.kind).toBe(ns);
  });

  it('runs the agent on every node, privileged where it must be, with a one-node rolling update', () => {
    const ds = get('DaemonSet');
    const pod = ds.spec.template.spec;
    expect(pod.hostPID).toBe(true);
    expect(pod.priorityClassName).toBe('system-node-critical');
    // Tolerates every taint (control plane, NoExecute, anything): a toleration with no key and Exists.
    expect(pod.tolerations).toContainEqual({ operator: 'Exists' });
    expect(ds.spec.updateStrategy).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1 } });
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(60);
    expect(pod.serviceAccountName).toBe(get('ServiceAccount').metadata.name);
    const [c] = pod.containers;
    expect(c.securityContext.privileged).toBe(true);
    expect(c.image).toMatch(/^localhost\/pullguard:\d+\.\d+\.\d+$/);
    expect(c.args.slice(0, 2)).toEqual(['node', 'agent']);
    expect(ds.spec.selector.matchLabels).toEqual(ds.spec.template.metadata.labels);
  });

  it('mounts exactly what the agent reads, at the paths its defaults name', () => {
    const ds = get('DaemonSet');
    const pod = ds.spec.template.spec;
    const [c] = pod.containers;
    const opts = parseAgentArgs(c.args.slice(2), {
      PULLGUARD_DAEMONSET: c.env.find((e: Any) => e.name === 'PULLGUARD_DAEMONSET').value,
    });
    const volume = (mountPath: string) => {
      const m = c.volumeMounts.find((x: Any) => x.mountPath === mountPath);
      expect(m, mountPath).toBeDefined();
      return { mount: m, volume: pod.volumes.find((v: Any) => v.name === m.name) };
    };
    const host = volume(opts.root);
    expect(host.volume.hostPath).toEqual({ path: '/', type: 'Directory' });
    const policy = volume(opts.configDir);
    expect(policy.mount.readOnly).toBe(true);
    expect(policy.volume.configMap.name).toBe(get('ConfigMap').metadata.name);
    const docker = volume(opts.dockerConfigDir!);
    expect(docker.volume.secret).toMatchObject({ secretName: 'pullguard-docker-config', optional: true });
    expect(volume(opts.stageDir).volume.emptyDir).toBeDefined();
    // The health port the probes use is the one the agent listens on.
    expect(c.readinessProbe.httpGet.path).toBe('/readyz');
    expect(c.ports.find((p: Any) => p.name === c.readinessProbe.httpGet.port).containerPort).toBe(opts.healthPort);
    // The DaemonSet name the agent asks the API about (uninstall on delete) is this DaemonSet's.
    expect(opts.daemonSet).toBe(ds.metadata.name);
  });

  it('grants one permission: get on its own DaemonSet', () => {
    const role = get('Role');
    expect(role.rules).toEqual([
      {
        apiGroups: ['apps'],
        resources: ['daemonsets'],
        resourceNames: [get('DaemonSet').metadata.name],
        verbs: ['get'],
      },
    ]);
    const rb = get('RoleBinding');
    expect(rb.roleRef.name).toBe(role.metadata.name);
    expect(rb.subjects).toEqual([
      { kind: 'ServiceAccount', name: get('ServiceAccount').metadata.name, namespace: get('Namespace').metadata.name },
    ]);
  });

  it('ships a policy the verifier loads, in audit mode, that allows pause and pullguard itself', () => {
    const cm = get('ConfigMap');
    // No hash suffix: kubelet updates the mounted files in place and the agent takes them up.
    expect(cm.metadata.name).toBe('pullguard-policy');
    const dir = mkdtempSync(join(tmpdir(), 'pg-deploy-'));
    try {
      writeFileSync(join(dir, 'policy.yaml'), cm.data['policy.yaml']);
      const p = loadPolicy(join(dir, 'policy.yaml'));
      expect(p.mode).toBe('audit');
      const image = get('DaemonSet').spec.template.spec.containers[0].image.replace(/:[^:/]+$/, '');
      const allowed = p.rules.filter((r) => r.action === 'allow').flatMap((r) => r.match);
      expect(allowed).toEqual(expect.arrayContaining(['registry.k8s.io/pause', image]));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

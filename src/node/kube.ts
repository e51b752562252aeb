/**
 * The one question the node agent asks the Kubernetes API, on SIGTERM: is my DaemonSet being
 * deleted? A SIGTERM also comes with a rolling update, a `kubectl delete pod` or a node shutdown;
 * uninstalling then would leave the node unverified until the next pod installs again. So the agent
 * uninstalls only when its DaemonSet is gone (404) or carries a deletionTimestamp. It needs `get` on
 * that one DaemonSet (deploy/base/rbac.yaml). In-cluster access as client-go does it: the service
 * account token and CA under /var/run/secrets/kubernetes.io/serviceaccount, KUBERNETES_SERVICE_HOST/PORT.
 */
import { readFileSync } from 'node:fs';

const SA = '/var/run/secrets/kubernetes.io/serviceaccount';

export type DaemonSetFate = 'deleted' | 'present' | 'unknown';

/** The decision from an API answer: pure, so it is tested without a cluster. */
export function fateFromResponse(status: number, body: string): DaemonSetFate {
  if (status === 404) return 'deleted';
  if (status !== 200) return 'unknown';
  try {
    const ds = JSON.parse(body) as { kind?: string; metadata?: { deletionTimestamp?: string } };
    if (ds.kind !== 'DaemonSet') return 'unknown';
    return ds.metadata?.deletionTimestamp ? 'deleted' : 'present';
  } catch {
    return 'unknown';
  }
}

export interface KubeTarget {
  readonly namespace: string;
  readonly daemonSet: string;
}

/** In-cluster GET of the DaemonSet, bounded by `timeoutMs`. Never throws: 'unknown' on any failure. */
export async function daemonSetFate(
  t: KubeTarget,
  env: NodeJS.ProcessEnv,
  timeoutMs = 5_000,
): Promise<{ fate: DaemonSetFate; detail: string }> {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT ?? '443';
  if (!host) return { fate: 'unknown', detail: 'not running in a cluster (no KUBERNETES_SERVICE_HOST)' };
  let token: string;
  let ca: Buffer;
  try {
    token = readFileSync(`${SA}/token`, 'utf8').trim();
    ca = readFileSync(`${SA}/ca.crt`);
  } catch (e) {
    return {
      fate: 'unknown',
      detail: `no service account credentials: ${(e as NodeJS.ErrnoException).code ?? String(e)}`,
    };
  }
  // getBuiltinModule: node:https is not in the startup snapshot, and a snapshotted executable has no import().
  const { request } = process.getBuiltinModule('node:https');
  const ns = encodeURIComponent(t.namespace);
  const path = `/apis/apps/v1/namespaces/${ns}/daemonsets/${encodeURIComponent(t.daemonSet)}`;
  return new Promise((resolve) => {
    const req = request(
      {
        hostname: host,
        port,
        path,
        method: 'GET',
        ca,
        headers: { authorization: `Bearer ${token}`, accept: 'application/json' },
        timeout: timeoutMs,
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size <= 1024 * 1024) chunks.push(c);
        });
        res.on('end', () => {
          const fate = fateFromResponse(res.statusCode ?? 0, Buffer.concat(chunks).toString('utf8'));
          resolve({ fate, detail: `GET daemonset ${t.namespace}/${t.daemonSet}: HTTP ${res.statusCode}` });
        });
        res.on('error', (e) => resolve({ fate: 'unknown', detail: e.message }));
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (e) =>
      resolve({ fate: 'unknown', detail: `GET daemonset ${t.namespace}/${t.daemonSet}: ${e.message}` }),
    );
    req.end();
  });
}

export function serviceAccountNamespace(): string | undefined {
  try {
    return readFileSync(`${SA}/namespace`, 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

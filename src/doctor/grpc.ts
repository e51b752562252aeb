/**
 * The calls doctor makes to the running daemon (containerd api/services/version/v1 and
 * introspection/v1), through the one containerd API client (src/containerd/api.ts: HTTP/2 gRPC framing
 * and a bounded protobuf decoder, no gRPC dependency).
 */
import { containerdApi } from '../containerd/api.js';
import { isPullguardError } from '../common/errors.js';

export interface DaemonInfo {
  readonly version: string;
  readonly revision: string;
  readonly pid?: number;
  /** The inode of the daemon's PID namespace: its pid means something in /proc only if it is ours. */
  readonly pidns?: number;
  readonly deprecations: readonly { id: string; message: string }[];
  readonly plugins: readonly { type: string; id: string; initError?: string }[];
}

/** Asks the daemon on `socket` for its version, pid, deprecation warnings and plugins. */
export async function queryDaemon(socket: string, timeoutMs = 5000): Promise<DaemonInfo> {
  const api = containerdApi(socket, { callTimeoutMs: timeoutMs });
  const introspection = 'containerd.services.introspection.v1.Introspection';
  try {
    const version = await api.unary('containerd.services.version.v1.Version', 'Version');
    const server = await api.unary(introspection, 'Server').catch(() => undefined);
    const plugins = await api.unary(introspection, 'Plugins').catch(() => undefined);
    const num = (v: bigint | undefined) => (v === undefined ? undefined : Number(v));
    return {
      version: version.string(1),
      revision: version.string(2),
      pid: num(server?.varint(2)),
      pidns: num(server?.varint(3)),
      deprecations: (server?.messages(4) ?? []).map((d) => ({ id: d.string(1), message: d.string(2) })),
      plugins: (plugins?.messages(1) ?? []).map((p) => {
        const err = p.messages(7)[0];
        const initError = err ? err.string(2) || `code ${err.varint(1)}` : undefined;
        return { type: p.string(1), id: p.string(2), ...(initError ? { initError } : {}) };
      }),
    };
  } catch (e) {
    // Doctor names a socket error as the system does (ECONNREFUSED), anything else by its message.
    if (!isPullguardError(e)) throw e;
    const errno = e.detail?.errno;
    throw Object.assign(new Error(e.message), typeof errno === 'string' ? { code: errno } : {});
  } finally {
    api.close();
  }
}

/**
 * The two containerd calls doctor makes, over its socket with plain HTTP/2 gRPC framing and a hand
 * decoder for the few protobuf fields read (containerd api/services/version/v1 and
 * introspection/v1). No gRPC or protobuf dependency: doctor is a human command and these messages are
 * flat. (CRI's Version would also do, but it drags in the CRI schema for one string.)
 */
import { PullguardError } from '../common/errors.js';

type Fields = Map<number, (Uint8Array | number)[]>;

/** Protobuf wire format: varints (type 0) and length-delimited fields (type 2); others are skipped. */
export function decodeFields(buf: Uint8Array): Fields {
  const out: Fields = new Map();
  let i = 0;
  const varint = (): number => {
    let v = 0;
    let mul = 1;
    for (;;) {
      if (i >= buf.length) throw new PullguardError('INTERNAL', 'truncated protobuf varint');
      const b = buf[i++]!;
      v += (b & 0x7f) * mul;
      if ((b & 0x80) === 0) return v;
      mul *= 128;
    }
  };
  while (i < buf.length) {
    const key = varint();
    const field = Math.floor(key / 8);
    const wire = key & 7;
    let value: Uint8Array | number;
    if (wire === 0) value = varint();
    else if (wire === 2) {
      const len = varint();
      value = buf.subarray(i, i + len);
      i += len;
    } else if (wire === 1) {
      i += 8;
      continue;
    } else if (wire === 5) {
      i += 4;
      continue;
    } else throw new PullguardError('INTERNAL', `unsupported protobuf wire type ${wire}`);
    const list = out.get(field) ?? [];
    list.push(value);
    out.set(field, list);
  }
  return out;
}

const text = (f: Fields, n: number) => {
  const v = f.get(n)?.[0];
  return v instanceof Uint8Array ? Buffer.from(v).toString('utf8') : '';
};
const num = (f: Fields, n: number) => {
  const v = f.get(n)?.[0];
  return typeof v === 'number' ? v : undefined;
};
const messages = (f: Fields, n: number) =>
  (f.get(n) ?? []).filter((v): v is Uint8Array => v instanceof Uint8Array).map(decodeFields);

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
  // Loaded here: http2 and net are not part of the executable's startup snapshot.
  const http2 = process.getBuiltinModule('node:http2');
  const net = process.getBuiltinModule('node:net');
  const session = http2.connect('http://containerd', { createConnection: () => net.connect(socket) });
  const timer = setTimeout(
    () => session.destroy(new PullguardError('DEADLINE_EXCEEDED', `no answer within ${timeoutMs / 1000}s`)),
    timeoutMs,
  );
  const failed = new Promise<never>((_, reject) => session.once('error', reject));
  failed.catch(() => undefined);
  const call = (path: string, body: Uint8Array = new Uint8Array()): Promise<Fields> =>
    Promise.race([
      failed,
      new Promise<Fields>((resolve, reject) => {
        const req = session.request({
          ':method': 'POST',
          ':path': path,
          'content-type': 'application/grpc',
          te: 'trailers',
        });
        const chunks: Buffer[] = [];
        let status: string | undefined;
        let message = '';
        req.on('response', (h) => {
          if (h['grpc-status'] !== undefined) status = String(h['grpc-status']);
        });
        req.on('trailers', (t) => {
          status = String(t['grpc-status'] ?? status ?? '');
          message = decodeURIComponent(String(t['grpc-message'] ?? ''));
        });
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('error', reject);
        req.on('end', () => {
          if (status !== '0')
            return reject(
              new PullguardError(
                'INTERNAL',
                `${path}: gRPC status ${status ?? 'missing'}${message ? ` (${message})` : ''}`,
              ),
            );
          const all = Buffer.concat(chunks);
          if (all.length < 5) return reject(new PullguardError('INTERNAL', `${path}: empty gRPC answer`));
          resolve(decodeFields(all.subarray(5, 5 + all.readUInt32BE(1))));
        });
        const frame = Buffer.alloc(5 + body.length);
        frame.writeUInt32BE(body.length, 1);
        frame.set(body, 5);
        req.end(frame);
      }),
    ]);
  try {
    const version = await call('/containerd.services.version.v1.Version/Version');
    const server = await call('/containerd.services.introspection.v1.Introspection/Server').catch(() => undefined);
    const plugins = await call('/containerd.services.introspection.v1.Introspection/Plugins').catch(() => undefined);
    return {
      version: text(version, 1),
      revision: text(version, 2),
      pid: server ? num(server, 2) : undefined,
      pidns: server ? num(server, 3) : undefined,
      deprecations: server ? messages(server, 4).map((d) => ({ id: text(d, 1), message: text(d, 2) })) : [],
      plugins: plugins
        ? messages(plugins, 1).map((p) => {
            const err = messages(p, 7)[0];
            const initError = err ? text(err, 2) || `code ${num(err, 1) ?? '?'}` : undefined;
            return { type: text(p, 1), id: text(p, 2), ...(initError ? { initError } : {}) };
          })
        : [],
    };
  } finally {
    clearTimeout(timer);
    session.destroy();
  }
}

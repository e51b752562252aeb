/**
 * containerd's own gRPC API over its unix socket, for `pullguard scan`: list namespaces, images,
 * containers and tasks, and delete an image. gRPC is HTTP/2 with length-prefixed protobuf messages, so
 * this is node:http2 (a built-in) plus src/scan/protobuf.ts.
 *
 * Why not `ctr`: its output is a table for people (no JSON), it does not show an image's target
 * descriptor size, `ctr images rm` cannot be made conditional on the target digest, and the node's
 * ctr version is whatever the distribution shipped. Why not @grpc/grpc-js: it would add its code (and
 * @grpc/proto-loader's) to the single executable that containerd starts on every pull.
 *
 * Field numbers are containerd's (api/services/images/v1/images.proto, containers/v1/containers.proto,
 * tasks/v1/tasks.proto, namespaces/v1/namespace.proto, api/types/descriptor.proto, task.proto).
 * The namespace travels as the `containerd-namespace` metadata header, as containerd's client sends it.
 */
import type { ClientHttp2Session } from 'node:http2';
import { PullguardError } from '../common/errors.js';
import { Message, Writer } from './protobuf.js';

export const DEFAULT_CONTAINERD_SOCKET = '/run/containerd/containerd.sock';
const MAX_RESPONSE_BYTES = 64 * 1024 * 1024;
const DEFAULT_CALL_TIMEOUT_MS = 15_000;

export interface ImageDescriptor {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
}

export interface ContainerdImage {
  readonly name: string;
  readonly target: ImageDescriptor;
  readonly labels: Readonly<Record<string, string>>;
}

export interface ContainerdContainer {
  readonly id: string;
  /** The image name the container was created from ("" when it was created from a bare rootfs). */
  readonly image: string;
}

export type TaskStatus = 'unknown' | 'created' | 'running' | 'stopped' | 'paused' | 'pausing';

export interface ContainerdTask {
  readonly containerId: string;
  readonly pid: number;
  readonly status: TaskStatus;
}

/** What scan needs from containerd; tests and other callers can supply their own. */
export interface ContainerdApi {
  namespaces(): Promise<string[]>;
  images(namespace: string): Promise<ContainerdImage[]>;
  containers(namespace: string): Promise<ContainerdContainer[]>;
  tasks(namespace: string): Promise<ContainerdTask[]>;
  /**
   * Deletes image `name` only while it still points at `target` (containerd 2.x refuses the delete
   * otherwise), so a tag re-pulled meanwhile is never removed. `sync` waits for garbage collection.
   */
  deleteImage(namespace: string, name: string, target: ImageDescriptor, sync: boolean): Promise<void>;
  /** Any other unary call: `service` like `containerd.services.version.v1.Version`, the answer decoded. */
  unary(service: string, method: string, namespace?: string, request?: Uint8Array): Promise<Message>;
  close(): void;
}

const STATUSES: readonly TaskStatus[] = ['unknown', 'created', 'running', 'stopped', 'paused', 'pausing'];

/** gRPC status codes containerd's errdefs map to (only those scan's messages name). */
const GRPC_CODES: Record<number, string> = {
  1: 'canceled',
  2: 'unknown',
  3: 'invalid argument',
  4: 'deadline exceeded',
  5: 'not found',
  6: 'already exists',
  7: 'permission denied',
  9: 'failed precondition',
  12: 'unimplemented',
  13: 'internal',
  14: 'unavailable',
  16: 'unauthenticated',
};

export class GrpcError extends PullguardError {
  constructor(
    readonly method: string,
    readonly status: number,
    message: string,
  ) {
    super('CONTAINERD_API', `containerd ${method}: ${GRPC_CODES[status] ?? `grpc status ${status}`}: ${message}`);
  }
}

function frame(msg: Uint8Array): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(msg.length, 1);
  return Buffer.concat([head, msg]);
}

function unframe(method: string, body: Buffer): Uint8Array[] {
  const out: Uint8Array[] = [];
  let pos = 0;
  while (pos < body.length) {
    if (body.length - pos < 5) throw new PullguardError('CONTAINERD_API', `containerd ${method}: truncated gRPC frame`);
    if (body[pos] !== 0)
      throw new PullguardError('CONTAINERD_API', `containerd ${method}: compressed gRPC frame (not requested)`);
    const len = body.readUInt32BE(pos + 1);
    if (len > body.length - pos - 5)
      throw new PullguardError('CONTAINERD_API', `containerd ${method}: truncated gRPC frame`);
    out.push(body.subarray(pos + 5, pos + 5 + len));
    pos += 5 + len;
  }
  return out;
}

function descriptorOf(m: Message | undefined): ImageDescriptor {
  return { mediaType: m?.string(1) ?? '', digest: m?.string(2) ?? '', size: Number(m?.varint(3) ?? 0n) };
}

function descriptorBytes(d: ImageDescriptor): Uint8Array {
  return new Writer().string(1, d.mediaType).string(2, d.digest).varint(3, d.size).finish();
}

/** A client on containerd's socket (`--address`, default /run/containerd/containerd.sock). Connects lazily. */
export function containerdApi(
  socket: string = DEFAULT_CONTAINERD_SOCKET,
  { callTimeoutMs = DEFAULT_CALL_TIMEOUT_MS }: { callTimeoutMs?: number } = {},
): ContainerdApi {
  let session: ClientHttp2Session | undefined;
  const connect = (): ClientHttp2Session => {
    if (session && !session.closed && !session.destroyed) return session;
    // Loaded here, not imported: like node:http, http2 and net cannot be part of the startup snapshot.
    const http2 = process.getBuiltinModule('node:http2');
    const net = process.getBuiltinModule('node:net');
    const s = http2.connect('http://containerd', { createConnection: () => net.connect(socket) });
    s.on('error', () => undefined); // surfaced per call through the stream
    session = s;
    return s;
  };

  const call = (
    service: string,
    method: string,
    namespace: string | undefined,
    request: Uint8Array,
  ): Promise<Message> => {
    const path = `/${service}/${method}`;
    const short = `${service.split('.').at(-1)}.${method}`;
    return new Promise((resolve, reject) => {
      let s: ClientHttp2Session;
      try {
        s = connect();
      } catch (e) {
        reject(
          new PullguardError('CONTAINERD_API', `cannot connect to containerd at ${socket}: ${(e as Error).message}`),
        );
        return;
      }
      const headers: Record<string, string> = {
        ':method': 'POST',
        ':path': path,
        'content-type': 'application/grpc',
        te: 'trailers',
        'grpc-timeout': `${callTimeoutMs}m`,
      };
      if (namespace !== undefined) headers['containerd-namespace'] = namespace;
      const stream = s.request(headers);
      const chunks: Buffer[] = [];
      let size = 0;
      let status: number | undefined;
      let message = '';
      const fail = (e: Error) => {
        clearTimeout(timer);
        stream.destroy();
        reject(e);
      };
      const timer = setTimeout(
        () =>
          fail(new PullguardError('CONTAINERD_API', `containerd ${short}: no answer within ${callTimeoutMs / 1000}s`)),
        callTimeoutMs,
      );
      const takeStatus = (h: Record<string, unknown>) => {
        if (h['grpc-status'] !== undefined) status = Number(h['grpc-status']);
        if (typeof h['grpc-message'] === 'string') message = decodeURIComponent(h['grpc-message']);
      };
      stream.on('response', (h) => takeStatus(h));
      stream.on('trailers', (h) => takeStatus(h));
      stream.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_RESPONSE_BYTES)
          fail(
            new PullguardError('CONTAINERD_API', `containerd ${short}: answer over ${MAX_RESPONSE_BYTES >> 20} MiB`),
          );
        else chunks.push(c);
      });
      stream.on('error', (e) => {
        // A failed connect surfaces as a cancelled stream whose cause is the socket error.
        const cause = (e as { cause?: unknown }).cause;
        const code = ((cause instanceof Error ? cause : e) as NodeJS.ErrnoException).code;
        const why =
          code === 'ENOENT'
            ? 'no such socket'
            : code === 'EACCES'
              ? 'permission denied (run as root)'
              : (cause instanceof Error ? cause : e).message;
        fail(new PullguardError('CONTAINERD_API', `cannot reach containerd at ${socket}: ${why}`, { errno: code }));
      });
      stream.on('end', () => {
        clearTimeout(timer);
        if (status === undefined)
          return reject(
            new PullguardError(
              'CONTAINERD_API',
              `containerd ${short}: no gRPC status (is ${socket} containerd's socket?)`,
            ),
          );
        if (status !== 0) return reject(new GrpcError(short, status, message));
        try {
          const frames = unframe(short, Buffer.concat(chunks));
          resolve(Message.decode(frames[0] ?? new Uint8Array()));
        } catch (e) {
          reject(e);
        }
      });
      stream.end(frame(request));
    });
  };

  const empty = new Uint8Array();
  return {
    async namespaces() {
      const res = await call('containerd.services.namespaces.v1.Namespaces', 'List', undefined, empty);
      return res.messages(1).map((n) => n.string(1));
    },
    async images(namespace) {
      const res = await call('containerd.services.images.v1.Images', 'List', namespace, empty);
      return res
        .messages(1)
        .map((m) => ({ name: m.string(1), labels: m.stringMap(2), target: descriptorOf(m.message(3)) }));
    },
    async containers(namespace) {
      const res = await call('containerd.services.containers.v1.Containers', 'List', namespace, empty);
      return res.messages(1).map((m) => ({ id: m.string(1), image: m.string(3) }));
    },
    async tasks(namespace) {
      const res = await call('containerd.services.tasks.v1.Tasks', 'List', namespace, empty);
      // containerd's List fills `id` (2), the task's ID, which for a task is its container's ID;
      // `container_id` (1) stays empty.
      return res.messages(1).map((m) => ({
        containerId: m.string(1) || m.string(2),
        pid: Number(m.varint(3)),
        status: STATUSES[Number(m.varint(4))] ?? 'unknown',
      }));
    },
    async deleteImage(namespace, name, target, sync) {
      const req = new Writer().string(1, name).varint(2, sync).bytes(3, descriptorBytes(target)).finish();
      await call('containerd.services.images.v1.Images', 'Delete', namespace, req);
    },
    unary: (service, method, namespace, request = empty) => call(service, method, namespace, request),
    close() {
      session?.close();
      session = undefined;
    },
  };
}

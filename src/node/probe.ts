/**
 * Asks containerd's socket whether it answers, with two unary gRPC calls over HTTP/2 (node:http2, no
 * gRPC library): Introspection.Server for the daemon's pid (a restart shows as a new pid) and the CRI
 * RuntimeService.Version (the CRI plugin loaded, so kubelet can pull). Both requests are empty
 * messages; only the fields read here are decoded.
 */
export interface ContainerdAnswer {
  readonly pid: number;
  /** The CRI runtime version, e.g. "v2.1.9"; undefined when the CRI plugin did not answer. */
  readonly cri?: string;
}

/** Protobuf: the value of one varint field and one string field, at the top level of a message. */
function fields(msg: Buffer): Map<number, bigint | string> {
  const out = new Map<number, bigint | string>();
  let i = 0;
  const varint = (): bigint => {
    let v = 0n;
    let shift = 0n;
    for (;;) {
      if (i >= msg.length) throw new RangeError('truncated varint');
      const b = msg[i++]!;
      v |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return v;
      shift += 7n;
    }
  };
  while (i < msg.length) {
    const key = Number(varint());
    const field = key >> 3;
    const wire = key & 7;
    if (wire === 0) out.set(field, varint());
    else if (wire === 2) {
      const len = Number(varint());
      out.set(field, msg.subarray(i, i + len).toString('utf8'));
      i += len;
    } else if (wire === 1) i += 8;
    else if (wire === 5) i += 4;
    else throw new RangeError(`wire type ${wire}`);
  }
  return out;
}

function unary(socket: string, path: string, timeoutMs: number): Promise<Buffer> {
  const http2 = process.getBuiltinModule('node:http2');
  const net = process.getBuiltinModule('node:net');
  return new Promise((resolve, reject) => {
    const session = http2.connect('http://containerd', { createConnection: () => net.connect(socket) });
    const timer = setTimeout(() => {
      session.destroy();
      reject(new Error(`no answer within ${timeoutMs}ms`));
    }, timeoutMs);
    const fail = (e: Error) => {
      clearTimeout(timer);
      session.destroy();
      reject(e);
    };
    session.on('error', fail);
    const req = session.request({
      ':method': 'POST',
      ':path': path,
      'content-type': 'application/grpc',
      te: 'trailers',
    });
    const chunks: Buffer[] = [];
    let status: string | undefined;
    req.on('response', (h) => {
      if (h['grpc-status'] !== undefined) status = String(h['grpc-status']);
    });
    req.on('trailers', (h) => {
      if (h['grpc-status'] !== undefined) status = String(h['grpc-status']);
    });
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', fail);
    req.on('end', () => {
      clearTimeout(timer);
      session.close();
      const body = Buffer.concat(chunks);
      if (status !== '0') return reject(new Error(`grpc-status ${status ?? 'missing'}`));
      resolve(body.length >= 5 ? body.subarray(5, 5 + body.readUInt32BE(1)) : Buffer.alloc(0));
    });
    req.end(Buffer.alloc(5));
  });
}

/** The daemon behind `socket`, or undefined when nothing answers within `timeoutMs`. */
export async function probeContainerd(socket: string, timeoutMs = 2000): Promise<ContainerdAnswer | undefined> {
  let pid: number;
  try {
    const server = fields(await unary(socket, '/containerd.services.introspection.v1.Introspection/Server', timeoutMs));
    pid = Number(server.get(2) ?? 0n);
  } catch {
    return undefined;
  }
  let cri: string | undefined;
  try {
    const v = fields(await unary(socket, '/runtime.v1.RuntimeService/Version', timeoutMs));
    cri = typeof v.get(3) === 'string' ? (v.get(3) as string) : '';
  } catch {
    cri = undefined;
  }
  return { pid, cri };
}

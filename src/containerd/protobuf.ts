/**
 * Just enough of the protobuf wire format for the handful of containerd API messages `pullguard scan`
 * exchanges (images, containers, tasks, namespaces): varints, length-delimited fields, and skipping
 * fixed-width fields it does not read. Pure and bounded: malformed input throws a PullguardError,
 * never reads past the buffer, never loops on itself.
 *
 * Why not a protobuf library: the messages are six small, stable ones (field numbers from containerd's
 * api/services/{images,containers,tasks,namespaces}/v1 and api/types protos, unchanged since 1.x), and
 * protobufjs or @grpc/proto-loader would add their code and a .proto loader to the executable that
 * every pull starts.
 */
import { PullguardError } from '../common/errors.js';

export type FieldValue = bigint | Uint8Array;

const malformed = (why: string): never => {
  throw new PullguardError('CONTAINERD_API', `malformed protobuf from containerd: ${why}`);
};

function readVarint(buf: Uint8Array, pos: number): [bigint, number] {
  let value = 0n;
  for (let shift = 0n; shift < 70n; shift += 7n) {
    if (pos >= buf.length) malformed('truncated varint');
    const b = buf[pos++]!;
    value |= BigInt(b & 0x7f) << shift;
    if ((b & 0x80) === 0) return [value & 0xffff_ffff_ffff_ffffn, pos];
  }
  return malformed('varint longer than 10 bytes');
}

/** Every field of one message, by field number, in wire order. Groups and unknown wire types are refused. */
export function decodeFields(buf: Uint8Array): Map<number, FieldValue[]> {
  const out = new Map<number, FieldValue[]>();
  let pos = 0;
  while (pos < buf.length) {
    const [key, afterKey] = readVarint(buf, pos);
    pos = afterKey;
    const field = Number(key >> 3n);
    const wire = Number(key & 7n);
    if (field === 0 || field > 0x1fffffff) malformed(`field number ${field}`);
    let value: FieldValue | undefined;
    switch (wire) {
      case 0: {
        const [v, next] = readVarint(buf, pos);
        value = v;
        pos = next;
        break;
      }
      case 1:
        pos += 8;
        break;
      case 5:
        pos += 4;
        break;
      case 2: {
        const [len, next] = readVarint(buf, pos);
        if (len > BigInt(buf.length - next)) malformed(`field ${field} runs past the end`);
        value = buf.subarray(next, next + Number(len));
        pos = next + Number(len);
        break;
      }
      default:
        malformed(`wire type ${wire}`);
    }
    if (pos > buf.length) malformed(`field ${field} runs past the end`);
    if (value !== undefined) {
      const list = out.get(field);
      if (list) list.push(value);
      else out.set(field, [value]);
    }
  }
  return out;
}

const text = new TextDecoder('utf-8', { fatal: false });

/** A message view with typed accessors; a field of the wrong wire type reads as absent (proto3 default). */
export class Message {
  private constructor(private readonly fields: Map<number, FieldValue[]>) {}

  static decode(buf: Uint8Array): Message {
    return new Message(decodeFields(buf));
  }

  private bytesList(n: number): Uint8Array[] {
    return (this.fields.get(n) ?? []).filter((v): v is Uint8Array => v instanceof Uint8Array);
  }

  string(n: number): string {
    const last = this.bytesList(n).at(-1);
    return last ? text.decode(last) : '';
  }

  varint(n: number): bigint {
    const last = (this.fields.get(n) ?? []).filter((v): v is bigint => typeof v === 'bigint').at(-1);
    return last ?? 0n;
  }

  message(n: number): Message | undefined {
    const parts = this.bytesList(n);
    if (parts.length === 0) return undefined;
    // Repeated occurrences of a singular message field merge; concatenation is the wire form of a merge.
    return Message.decode(parts.length === 1 ? parts[0]! : Buffer.concat(parts));
  }

  messages(n: number): Message[] {
    return this.bytesList(n).map((b) => Message.decode(b));
  }

  /** A `map<string,string>` field (entries: key = 1, value = 2). */
  stringMap(n: number): Record<string, string> {
    const out: Record<string, string> = {};
    for (const entry of this.messages(n)) out[entry.string(1)] = entry.string(2);
    return out;
  }
}

function varintBytes(v: bigint): number[] {
  const out: number[] = [];
  let x = BigInt.asUintN(64, v);
  do {
    let b = Number(x & 0x7fn);
    x >>= 7n;
    if (x !== 0n) b |= 0x80;
    out.push(b);
  } while (x !== 0n);
  return out;
}

/** Builds a message field by field, in the order written. */
export class Writer {
  private readonly parts: number[] = [];

  string(n: number, s: string): this {
    return this.bytes(n, Buffer.from(s, 'utf8'));
  }

  bytes(n: number, b: Uint8Array): this {
    this.parts.push(...varintBytes(BigInt((n << 3) | 2)), ...varintBytes(BigInt(b.length)), ...b);
    return this;
  }

  varint(n: number, v: bigint | number | boolean): this {
    this.parts.push(
      ...varintBytes(BigInt((n << 3) | 0)),
      ...varintBytes(BigInt(typeof v === 'boolean' ? Number(v) : v)),
    );
    return this;
  }

  finish(): Uint8Array {
    return Uint8Array.from(this.parts);
  }
}

import type { ASN1Obj } from '@sigstore/core';

/**
 * DER bytes of parsed ASN.1 nodes without re-encoding them. @sigstore/core's `ASN1Obj.toDER()` rebuilds
 * the whole subtree through a growing byte stream (2.5 ms for the first 1.3 KiB certificate of a run,
 * 0.5 ms each after), and the notation path called it several times per certificate.
 *
 * Re-encoding can only ever make a length shorter (it writes every length in minimal form; tags and
 * values are copied as they are), so `encodedLength(root) === input.length` holds exactly when
 * `root.toDER()` equals the input byte for byte: the same "DER, no trailing data" check, computed
 * without allocating. Once that holds for the root, every node's header is minimal and `rawDer(node)`
 * (a view of the parsed bytes) equals `node.toDER()`.
 */
export function encodedLength(obj: ASN1Obj): number {
  const content = obj.subs.length > 0 ? obj.subs.reduce((n, s) => n + encodedLength(s), 0) : obj.value.length;
  return 1 + lengthOfLength(content) + content;
}

/** The node's tag, length and value as they appear in the input. Only for nodes under a checked root. */
export function rawDer(obj: ASN1Obj): Buffer {
  const v = obj.value;
  const header = 1 + lengthOfLength(v.length);
  return Buffer.from(v.buffer, v.byteOffset - header, header + v.length);
}

function lengthOfLength(n: number): number {
  if (n < 0x80) return 1;
  let bytes = 0;
  for (let x = n; x > 0; x = Math.floor(x / 256)) bytes++;
  return 1 + bytes;
}

/**
 * A tiny bcrypt ($2b$) for htpasswd files: docker-registry accepts only bcrypt, and neither openssl nor
 * python's crypt makes it. Blowfish's initial state is the hex expansion of pi, computed here with
 * BigInt (Machin's formula) instead of pasting 4 KiB of constants. Test-only; slow on purpose is fine.
 */
import { randomBytes } from 'node:crypto';

const WORDS = 18 + 4 * 256;

function piWords(): Uint32Array {
  const bits = BigInt(WORDS * 32 + 64);
  const one = 1n << bits;
  const arctanInv = (x: bigint) => {
    let sum = 0n;
    let term = one / x;
    const x2 = x * x;
    for (let n = 1n, sign = 1n; term !== 0n; n += 2n, sign = -sign, term /= x2) sum += (sign * term) / n;
    return sum;
  };
  const pi = 16n * arctanInv(5n) - 4n * arctanInv(239n);
  const frac = (pi - (3n << bits)) >> 64n; // drop the guard bits
  const out = new Uint32Array(WORDS);
  for (let i = 0; i < WORDS; i++) out[i] = Number((frac >> BigInt((WORDS - 1 - i) * 32)) & 0xffffffffn);
  return out;
}

let INIT: Uint32Array | undefined;

class Blowfish {
  readonly P: Uint32Array;
  readonly S: Uint32Array;
  constructor() {
    INIT ??= piWords();
    this.P = INIT.slice(0, 18);
    this.S = INIT.slice(18);
  }
  private f(x: number): number {
    const S = this.S;
    return ((((S[x >>> 24]! + S[256 + ((x >>> 16) & 0xff)]!) >>> 0) ^ S[512 + ((x >>> 8) & 0xff)]!) + S[768 + (x & 0xff)]!) >>> 0;
  }
  encipher(lr: Uint32Array, off: number): void {
    let l = lr[off]!;
    let r = lr[off + 1]!;
    for (let i = 0; i < 16; i += 2) {
      l = (l ^ this.P[i]!) >>> 0;
      r = (r ^ this.f(l)) >>> 0;
      r = (r ^ this.P[i + 1]!) >>> 0;
      l = (l ^ this.f(r)) >>> 0;
    }
    lr[off] = (r ^ this.P[17]!) >>> 0;
    lr[off + 1] = (l ^ this.P[16]!) >>> 0;
  }
  expand(key: Uint8Array, salt?: Uint8Array): void {
    let kp = 0;
    const word = (data: Uint8Array, pos: { p: number }) => {
      let w = 0;
      for (let i = 0; i < 4; i++) {
        w = ((w << 8) | data[pos.p]!) >>> 0;
        pos.p = (pos.p + 1) % data.length;
      }
      return w;
    };
    const kpos = { p: kp };
    for (let i = 0; i < 18; i++) this.P[i] = (this.P[i]! ^ word(key, kpos)) >>> 0;
    kp = kpos.p;
    const lr = new Uint32Array(2);
    const spos = { p: 0 };
    const fill = (arr: Uint32Array) => {
      for (let i = 0; i < arr.length; i += 2) {
        if (salt) {
          lr[0] = (lr[0]! ^ word(salt, spos)) >>> 0;
          lr[1] = (lr[1]! ^ word(salt, spos)) >>> 0;
        }
        this.encipher(lr, 0);
        arr[i] = lr[0]!;
        arr[i + 1] = lr[1]!;
      }
    };
    fill(this.P);
    fill(this.S);
  }
}

const B64 = './ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

function encode(data: Uint8Array, len: number): string {
  let out = '';
  for (let i = 0; i < len; ) {
    let c1 = data[i++]!;
    out += B64[(c1 >> 2) & 0x3f];
    c1 = (c1 & 0x03) << 4;
    if (i >= len) {
      out += B64[c1];
      break;
    }
    let c2 = data[i++]!;
    c1 |= (c2 >> 4) & 0x0f;
    out += B64[c1];
    c1 = (c2 & 0x0f) << 2;
    if (i >= len) {
      out += B64[c1];
      break;
    }
    c2 = data[i++]!;
    c1 |= (c2 >> 6) & 0x03;
    out += B64[c1]! + B64[c2 & 0x3f]!;
  }
  return out;
}

function decode(s: string, len: number): Uint8Array {
  const out: number[] = [];
  const v = (i: number) => B64.indexOf(s[i]!);
  for (let i = 0; out.length < len && i + 1 < s.length; i += 4) {
    const c1 = v(i);
    const c2 = v(i + 1);
    out.push(((c1 << 2) | ((c2 & 0x30) >> 4)) & 0xff);
    if (out.length >= len || i + 2 >= s.length) break;
    const c3 = v(i + 2);
    out.push((((c2 & 0x0f) << 4) | ((c3 & 0x3c) >> 2)) & 0xff);
    if (out.length >= len || i + 3 >= s.length) break;
    const c4 = v(i + 3);
    out.push((((c3 & 0x03) << 6) | c4) & 0xff);
  }
  return Uint8Array.from(out);
}

/** bcrypt(password) with `$2b$` (or the prefix/cost/salt of `setting`, e.g. a known test vector). */
export function bcrypt(password: string, setting?: string): string {
  const m = setting ? /^\$(2[aby])\$(\d\d)\$([./A-Za-z0-9]{22})/.exec(setting) : null;
  const variant = m?.[1] ?? '2b';
  const cost = m ? Number(m[2]) : 4;
  const salt = m ? decode(m[3]!, 16) : randomBytes(16);
  const key = Buffer.concat([Buffer.from(password, 'utf8').subarray(0, 72), Buffer.from([0])]).subarray(0, 72);
  const bf = new Blowfish();
  bf.expand(key, salt);
  for (let i = 0; i < 2 ** cost; i++) {
    bf.expand(key);
    bf.expand(salt);
  }
  const ctext = new Uint32Array(6);
  const magic = Buffer.from('OrpheanBeholderScryDoubt');
  for (let i = 0; i < 6; i++) ctext[i] = magic.readUInt32BE(i * 4);
  for (let i = 0; i < 64; i++) for (let j = 0; j < 6; j += 2) bf.encipher(ctext, j);
  const bytes = Buffer.alloc(24);
  for (let i = 0; i < 6; i++) bytes.writeUInt32BE(ctext[i]!, i * 4);
  return `$${variant}$${String(cost).padStart(2, '0')}$${encode(salt, 16)}${encode(bytes, 23)}`;
}

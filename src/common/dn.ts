import type { ASN1Obj } from '@sigstore/core';
import { MalformedInputError } from './malformed.js';

/**
 * Distinguished names the way notation compares them: as a set of attribute type -> value (one value per
 * type, no multi-valued RDNs), where a trusted identity matches a certificate when every attribute it
 * names is present in the leaf's subject with the same value. Order and spacing do not matter; value
 * case does (notation compares strings exactly).
 */
export type DnAttributes = ReadonlyMap<string, string>;

/** Attribute type names as Go's pkix.Name.String() prints them (what notation parses the leaf subject from). */
const SHORT_NAMES: Record<string, string> = {
  '2.5.4.3': 'CN',
  '2.5.4.5': 'SERIALNUMBER',
  '2.5.4.6': 'C',
  '2.5.4.7': 'L',
  '2.5.4.8': 'ST',
  '2.5.4.9': 'STREET',
  '2.5.4.10': 'O',
  '2.5.4.11': 'OU',
  '2.5.4.17': 'POSTALCODE',
};
/** Spellings users write in trust policies, normalized to the names above. `S` is notation's alias for ST. */
const ALIASES: Record<string, string> = { S: 'ST' };

const MANDATORY = ['C', 'ST', 'O'] as const;

/**
 * Parses an RFC 4514 string as notation does for `x509.subject:` identities. Throws MalformedInputError
 * (POLICY_INVALID) with a message naming the problem; the caller adds where it came from.
 */
export function parseDn(input: string): DnAttributes {
  const fail = (why: string) =>
    new MalformedInputError(`distinguished name ${JSON.stringify(input)} is not valid: ${why}`, 'POLICY_INVALID');
  const attrs = new Map<string, string>();
  let i = 0;
  const s = input;
  const skipSpaces = () => {
    while (s[i] === ' ') i++;
  };
  skipSpaces();
  if (i >= s.length) throw fail('it is empty');
  while (i < s.length) {
    skipSpaces();
    const eq = s.indexOf('=', i);
    if (eq < 0) throw fail('an attribute has no "="');
    const rawType = s.slice(i, eq).trim();
    if (!/^(?:[A-Za-z][A-Za-z0-9-]*|\d+(?:\.\d+)+)$/.test(rawType))
      throw fail(`bad attribute type ${JSON.stringify(rawType)}`);
    const upper = rawType.toUpperCase();
    const type = ALIASES[upper] ?? upper;
    i = eq + 1;
    skipSpaces();
    let value = '';
    if (s[i] === '#') throw fail('hex-encoded values are not supported');
    let trailingSpaces = 0;
    for (; i < s.length; i++) {
      const c = s[i]!;
      if (c === ',' || c === ';') break;
      if (c === '+') throw fail('multi-valued RDNs are not supported');
      if (c === '\\') {
        const next = s[i + 1];
        if (next === undefined) throw fail('dangling escape');
        if (/[0-9a-fA-F]/.test(next)) {
          // \XX hex pairs form UTF-8 bytes; collect consecutive pairs.
          const bytes: number[] = [];
          while (s[i] === '\\' && /^[0-9a-fA-F]{2}$/.test(s.slice(i + 1, i + 3))) {
            bytes.push(parseInt(s.slice(i + 1, i + 3), 16));
            i += 3;
          }
          if (bytes.length === 0) throw fail('bad hex escape');
          const decoded = Buffer.from(bytes).toString('utf8');
          if (decoded.includes('\uFFFD')) throw fail('hex escape is not UTF-8');
          value += decoded;
          i--;
          trailingSpaces = 0;
          continue;
        }
        if (!' "#+,;<=>\\'.includes(next)) throw fail(`bad escape "\\${next}"`);
        value += next;
        i++;
        trailingSpaces = 0;
        continue;
      }
      if (c === '"' || c === '<' || c === '>' || c === '=') throw fail(`unescaped ${JSON.stringify(c)}`);
      value += c;
      trailingSpaces = c === ' ' ? trailingSpaces + 1 : 0;
    }
    if (trailingSpaces > 0) value = value.slice(0, -trailingSpaces);
    if (attrs.has(type)) throw fail(`duplicate attribute ${type}`);
    if (value.length === 0) throw fail(`empty value for ${type}`);
    attrs.set(type, value);
    if (i < s.length) {
      i++; // separator
      skipSpaces();
      if (i >= s.length) throw fail('trailing separator');
    }
  }
  for (const m of MANDATORY) if (!attrs.has(m)) throw fail(`it must contain C, ST and O; ${m} is missing`);
  return attrs;
}

/**
 * A certificate Name (RDNSequence) as attributes. Types without a short name are keyed by dotted OID,
 * as Go prints them; multi-valued RDNs and duplicate types are refused as notation refuses them, which
 * makes such a leaf match no `x509.subject` identity.
 */
export function nameToAttributes(name: ASN1Obj): DnAttributes {
  const attrs = new Map<string, string>();
  for (const rdn of name.subs) {
    if (rdn.subs.length !== 1) throw new MalformedInputError('certificate subject has a multi-valued RDN');
    const atv = rdn.subs[0]!;
    const oid = atv.subs[0]!.toOID();
    const type = SHORT_NAMES[oid] ?? oid;
    const v = atv.subs[1]!;
    // BMPString is UTF-16BE; every other string type notation meets is ASCII/UTF-8.
    const value = v.tag.number === 0x1e ? Buffer.from(v.value).swap16().toString('utf16le') : v.value.toString('utf8');
    if (attrs.has(type)) throw new MalformedInputError(`certificate subject has duplicate attribute ${type}`);
    attrs.set(type, value);
  }
  return attrs;
}

/** notation's IsSubsetDN: every attribute of `identity` is in `subject` with the same value. */
export function isSubsetDn(identity: DnAttributes, subject: DnAttributes): boolean {
  for (const [k, v] of identity) if (subject.get(k) !== v) return false;
  return true;
}

export function formatDn(attrs: DnAttributes): string {
  return [...attrs].map(([k, v]) => `${k}=${v.replace(/([,+"\\<>;=])/g, '\\$1')}`).join(', ');
}

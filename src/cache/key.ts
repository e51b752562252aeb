import { createHash, type Hash } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { COMMIT, VERSION } from '../common/build.js';
import type { Policy, Rule } from '../policy/model.js';
import { isNotationSpec } from '../policy/notation/spec.js';
import type { Subject } from '../verify/types.js';

/** The build (stamped by scripts/build.mjs): a new executable never trusts an old one's entries. */
const BUILD = `${VERSION}+${COMMIT}`;

const MAX_STORE_FILE = 1024 * 1024;

/**
 * The cache key of one decision: the exact subject (digest, media type, size, repository), the rule,
 * and a fingerprint of everything the verdict was computed from: pullguard's own build (its embedded
 * Sigstore root and its code), the content of every file the policy load read (the policy itself, key
 * files, CA bundles, trusted roots, notation trust policies, pinned DID documents; see
 * common/inputs.ts), and the notation trust stores and ATProto TLS roots the rule's authorities read
 * at verification time. Content hashes, never mtimes: a key file rewritten with new bytes in the same
 * second is still a miss. undefined: no fingerprint can be made (a policy not loaded from disk).
 */
export function cacheKey(subject: Subject, repository: string, rule: Rule, policy: Policy): string | undefined {
  if (!policy.inputs) return undefined;
  const h = createHash('sha256');
  const line = (...parts: readonly string[]) => h.update(`${parts.join('\0')}\n`);
  line('pullguard-cache-v1', BUILD);
  line('subject', subject.reference.digest, subject.descriptor.mediaType, String(subject.descriptor.size), repository);
  line('rule', rule.name);
  for (const input of policy.inputs)
    line('input', input.path, createHash('sha256').update(input.content).digest('hex'));
  for (const authority of rule.authorities) {
    if (authority.kind === 'atproto') {
      // The TLS roots DID documents are fetched under decide which signing keys count.
      for (const file of authority.spec.caFiles) hashFile(h, file);
    }
    if (!isNotationSpec(authority.spec)) continue;
    for (const st of authority.spec.statements) {
      for (const ref of st.trustStores)
        hashDirectory(h, join(authority.spec.truststoreDir, 'x509', ref.type, ref.name));
    }
  }
  return h.digest('hex');
}

function hashFile(h: Hash, path: string): void {
  try {
    h.update(`file\0${path}\0${createHash('sha256').update(readFileSync(path)).digest('hex')}\n`);
  } catch (e) {
    h.update(`unreadable\0${path}\0${(e as NodeJS.ErrnoException).code ?? 'error'}\n`);
  }
}

/** A notation trust store directory: every name in it, and the content of every regular file. */
function hashDirectory(h: Hash, dir: string): void {
  h.update(`store\0${dir}\n`);
  let names: string[];
  try {
    names = readdirSync(dir).sort();
  } catch (e) {
    h.update(`unreadable\0${(e as NodeJS.ErrnoException).code ?? 'error'}\n`);
    return;
  }
  for (const name of names) {
    const p = join(dir, name);
    try {
      const st = lstatSync(p);
      if (st.isFile() && st.size <= MAX_STORE_FILE) {
        h.update(`file\0${name}\0${createHash('sha256').update(readFileSync(p)).digest('hex')}\n`);
      } else h.update(`other\0${name}\0${st.mode}\0${st.size}\n`);
    } catch (e) {
      h.update(`unreadable\0${name}\0${(e as NodeJS.ErrnoException).code ?? 'error'}\n`);
    }
  }
}

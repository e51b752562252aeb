import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { noteInput } from '../../common/inputs.js';
import { MalformedInputError } from '../../common/malformed.js';
import { parseTrustPolicyDocument, type Statement } from './trust-policy.js';

export interface NotationConfig {
  readonly source: string;
  readonly truststoreDir: string;
  readonly statements: readonly Statement[];
}

/**
 * A notation configuration directory as notation itself reads it: `trustpolicy.oci.json` (notation
 * 1.2+) or else `trustpolicy.json`, plus `truststore/`. Throws POLICY_* errors at load.
 */
export function loadNotationConfigDir(dir: string): NotationConfig {
  const candidates = ['trustpolicy.oci.json', 'trustpolicy.json'].map((f) => join(dir, f));
  const file = candidates.find((f) => existsSync(f));
  if (!file) throw new MalformedInputError(`notation configuration ${dir} has no trustpolicy.oci.json or trustpolicy.json`, 'POLICY_MISSING');
  let text: string;
  try {
    if (statSync(file).size > 4 * 1024 * 1024) throw new MalformedInputError(`${file} is larger than 4 MiB`, 'POLICY_INVALID');
    text = readFileSync(file, 'utf8');
    noteInput(file, text);
  } catch (e) {
    if (e instanceof MalformedInputError) throw e;
    throw new MalformedInputError(`cannot read notation trust policy ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, 'POLICY_UNREADABLE');
  }
  return { source: file, truststoreDir: join(dir, 'truststore'), statements: parseTrustPolicyDocument(text, file) };
}

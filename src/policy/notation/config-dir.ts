import { existsSync } from 'node:fs';
import { readRegularText } from '../../common/files.js';
import { join } from 'node:path';
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
  if (!file)
    throw new MalformedInputError(
      `notation configuration ${dir} has no trustpolicy.oci.json or trustpolicy.json`,
      'POLICY_MISSING',
    );
  const opts = { maxBytes: 4 * 1024 * 1024, code: 'POLICY_UNREADABLE', what: 'notation trust policy' } as const;
  const text = readRegularText(file, opts);
  return { source: file, truststoreDir: join(dir, 'truststore'), statements: parseTrustPolicyDocument(text, file) };
}

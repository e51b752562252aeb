import { statSync } from 'node:fs';
import { FileReadError, readRegularText } from '../common/files.js';
import { PullguardError } from '../common/errors.js';
import { looksLikeContainersPolicy, parseContainersPolicy } from './formats/containers-policy.js';
import { parseNativePolicy } from './formats/native.js';
import { parseNotationDirectory } from './formats/notation.js';
import { DEFAULT_POLICY_PATH, type Policy } from './model.js';

const MAX_POLICY_BYTES = 4 * 1024 * 1024;

/** `PULLGUARD_POLICY` wins over the default location; containerd passes its environment to verifiers. */
export function policyPath(env: NodeJS.ProcessEnv = process.env): string {
  return env.PULLGUARD_POLICY && env.PULLGUARD_POLICY.length > 0 ? env.PULLGUARD_POLICY : DEFAULT_POLICY_PATH;
}

/**
 * Loads and validates a policy. Every failure is a PullguardError naming the path, because an operator
 * reading a denied pull's event must be able to find and fix the file without the debug log.
 */
export function loadPolicy(path: string): Policy {
  let text: string;
  try {
    // A directory is a notation configuration (trustpolicy[.oci].json + truststore/), used as-is.
    if (isDirectory(path)) return parseNotationDirectory(path);
    text = readRegularText(path, { maxBytes: MAX_POLICY_BYTES, code: 'POLICY_UNREADABLE', what: 'policy' });
  } catch (e) {
    if (!(e instanceof FileReadError)) throw e;
    if (e.errno === 'ENOENT') throw new PullguardError('POLICY_MISSING', `no policy at ${path}`, { path });
    if (e.errno === 'EFBIG') throw new PullguardError('POLICY_INVALID', e.message, { path });
    throw e;
  }
  return parsePolicyText(text, path);
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false; // the reader names what is wrong
  }
}

export function parsePolicyText(text: string, source: string): Policy {
  // A containers-policy.json(5) document (CRI-O's /etc/containers/policy.json) is used as-is.
  if (looksLikeContainersPolicy(text)) return parseContainersPolicy(text, source);
  return parseNativePolicy(text, source);
}

import { readFileSync, statSync } from 'node:fs';
import { PullguardError } from '../common/errors.js';
import { collectInputs, noteInput } from '../common/inputs.js';
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
  const { result, inputs } = collectInputs(() => loadPolicyFile(path));
  return { ...result, inputs };
}

function loadPolicyFile(path: string): Policy {
  let text: string;
  try {
    const st = statSync(path);
    // A directory is a notation configuration (trustpolicy[.oci].json + truststore/), used as-is.
    if (st.isDirectory()) return parseNotationDirectory(path);
    if (st.size > MAX_POLICY_BYTES) throw new PullguardError('POLICY_INVALID', `policy ${path} is larger than 4 MiB`, { path });
    text = readFileSync(path, 'utf8');
    noteInput(path, text);
  } catch (e) {
    if (e instanceof PullguardError) throw e;
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT') throw new PullguardError('POLICY_MISSING', `no policy at ${path}`, { path });
    throw new PullguardError('POLICY_UNREADABLE', `cannot read policy ${path}: ${err.code ?? err.message}`, { path });
  }
  return parsePolicyText(text, path);
}

export function parsePolicyText(text: string, source: string): Policy {
  // A containers-policy.json(5) document (CRI-O's /etc/containers/policy.json) is used as-is.
  if (looksLikeContainersPolicy(text)) return parseContainersPolicy(text, source);
  return parseNativePolicy(text, source);
}

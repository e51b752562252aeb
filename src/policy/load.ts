import { statSync } from 'node:fs';
import { FileReadError, readRegularText } from '../common/files.js';
import { PullguardError } from '../common/errors.js';
import { collectInputs } from '../common/inputs.js';
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
  checkJsonSyntax(text, source);
  // A containers-policy.json(5) document (CRI-O's /etc/containers/policy.json) is used as-is.
  if (looksLikeContainersPolicy(text)) return parseContainersPolicy(text, source);
  return parseNativePolicy(text, source);
}

/**
 * A JSON policy (CRI-O's policy.json, or pullguard's in JSON) gets JSON's syntax errors: as YAML, a
 * trailing comma parses and the file fails later with a misleading "version: required".
 */
function checkJsonSyntax(text: string, source: string): void {
  const t = text.trimStart();
  if (!/\.json$/i.test(source) && !/^\{\s*"/.test(t)) return;
  if (!t.startsWith('{') && !t.startsWith('[')) return;
  try {
    JSON.parse(text);
  } catch (e) {
    const msg = (e as Error).message;
    const m = /\(line (\d+) column (\d+)\)/.exec(msg);
    const what = msg
      .replace(/ in JSON at position \d+.*$/, '')
      .replace(/^Unexpected token .*, "(.*)" is not valid JSON$/, 'unexpected token');
    const line = m ? Number(m[1]) : undefined;
    const where = m ? ` at line ${m[1]}, column ${m[2]}` : '';
    const col = m ? Number(m[2]) : undefined;
    const problems = [{ line, col, message: `JSON syntax error: ${what}` }];
    const message = `invalid policy ${source}${line ? `:${line}` : ''}: JSON syntax error${where}: ${what}`;
    throw new PullguardError('POLICY_INVALID', message, { path: source, line, problems });
  }
}

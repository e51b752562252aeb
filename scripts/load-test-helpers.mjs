// Loads the TypeScript test helpers (test/helpers/*.ts) for the plain-Node scripts (scripts/demo.mjs,
// bench/pull-latency.mjs), so that the demo and the benchmark start containerd, the registry and
// test images exactly as the e2e tests do: one implementation, not two.
// esbuild (a dev dependency, installed by `make`) bundles them into dist/.scripts/helpers.mjs;
// npm packages stay external and resolve from node_modules. The output sits two levels under the
// repository root, like test/helpers/, so the helpers' ROOT (import.meta.dirname/../..) holds.
import { build } from 'esbuild';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const ROOT = join(import.meta.dirname, '..');

export async function loadTestHelpers() {
  const outfile = join(ROOT, 'dist', '.scripts', 'helpers.mjs');
  await build({
    stdin: {
      contents: ['containerd', 'cosign-cli', 'cri', 'oci', 'pki', 'proc', 'registry', 'tools']
        .map((m) => `export * from './test/helpers/${m}.ts';`)
        .join('\n'),
      resolveDir: ROOT,
      sourcefile: 'test-helpers-entry.ts',
      loader: 'ts',
    },
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node22',
    packages: 'external',
    outfile,
    logLevel: 'warning',
  });
  return import(pathToFileURL(outfile).href);
}

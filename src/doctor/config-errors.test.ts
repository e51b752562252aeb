import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { runDoctor } from './run.js';

const dir = mkdtempSync(join(tmpdir(), 'pg-doc-cfg-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const policy = join(dir, 'policy.yaml');
writeFileSync(policy, 'version: 1\nrules:\n  - {name: system, match: registry.k8s.io/**, action: allow}\n');

async function doctor(args: string[]): Promise<string[]> {
  const out: string[] = [];
  await runDoctor(
    [...args, '--policy', policy, '--bin-dir', dir, '--address', join(dir, 'no.sock')],
    (l) => out.push(l),
    { PATH: '' },
  );
  return out;
}

test('a TOML error names its line and column', async () => {
  const file = join(dir, 'bad.toml');
  writeFileSync(file, 'version = 3\n[plugins\n');
  const fail = (await doctor(['--containerd-config', file])).find((l) => l.includes('not valid TOML'));
  expect(fail).toMatch(
    new RegExp(
      /^FAIL {2}cannot check containerd's settings: /.source +
        /containerd config .*bad\.toml is not valid TOML at line 2, column 9: /.source,
    ),
  );
});

test("a missing config: one fix, not the loader's advice glued to doctor's", async () => {
  const fail = (await doctor(['--containerd-config', join(dir, 'missing.toml')])).find((l) =>
    l.includes('cannot check'),
  )!;
  expect(fail).toBe(
    `FAIL  cannot check containerd's settings: cannot read containerd config ${join(dir, 'missing.toml')}: ENOENT; ` +
      'fix: pass --containerd-config PATH, or fix registry.containerdConfig in the policy',
  );
  expect(fail.match(/fix/g)).toHaveLength(2); // "fix: ..., or fix registry..." and nothing more
});

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, describe, expect, test } from 'vitest';
import { runPull } from './pull.js';

const dir = mkdtempSync(join(tmpdir(), 'pg-pullrec-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const D = `sha256:${'e'.repeat(64)}`;
const DESC = JSON.stringify({ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: D, size: 100 });
const args = (name: string) => [
  '-name',
  name,
  '-digest',
  D,
  '-stdin-media-type',
  'application/vnd.oci.descriptor.v1+json',
];

async function run(policyText: string, name: string) {
  const policy = join(dir, `p${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(policy, policyText);
  const input = new PassThrough();
  input.end(DESC);
  const writes: { fd: number; text: string }[] = [];
  const argv = args(name);
  const code = await runPull(argv, {
    argv,
    stdin: input,
    env: { PULLGUARD_POLICY: policy },
    write: (fd, text) => writes.push({ fd, text }),
  });
  return { code, writes };
}

const rules =
  'rules:\n  - {name: ok, match: localhost:5000/app, action: allow}\n' +
  '  - {name: nope, match: localhost:5000/blocked, action: deny}\n';

describe('containerd mode records its decision', () => {
  test('after the verdict line: a decision log entry and the metrics', async () => {
    const log = join(dir, 'd.jsonl');
    const prom = join(dir, 'm.prom');
    const r = await run(
      `version: 1\nmode: audit\nlog: {file: ${log}, metricsFile: ${prom}}\n${rules}`,
      'localhost:5000/blocked:v1',
    );
    expect(r.code).toBe(0);
    expect(r.writes[0]).toEqual({
      fd: 1,
      text: expect.stringMatching(/^allowed .*audit mode, would deny: denied by policy/),
    });
    expect(r.writes.filter((w) => w.fd === 2)).toHaveLength(1); // the record, no warning
    const entry = JSON.parse(readFileSync(log, 'utf8').trim());
    expect(entry).toMatchObject({
      name: 'localhost:5000/blocked:v1',
      verdict: 'allow',
      policyVerdict: 'deny',
      wouldDeny: true,
      rule: 'nope',
      code: 'POLICY_DENIED',
    });
    expect(readFileSync(prom, 'utf8')).toContain(
      'pullguard_decisions_total{verdict="allow",policy_verdict="deny",mode="audit",rule="nope",' +
        'code="POLICY_DENIED"} 1',
    );
  });

  test('an unwritable log: the same stdout and exit code, and one warning', async () => {
    const blocker = join(dir, 'not-a-dir');
    writeFileSync(blocker, '');
    const good = await run(`version: 1\nlog: {file: ${join(dir, 'ok.jsonl')}}\n${rules}`, 'localhost:5000/blocked:v1');
    const bad = await run(
      `version: 1\nlog: {file: ${join(blocker, 'd.jsonl')}, metricsFile: ${join(blocker, 'm.prom')}}\n${rules}`,
      'localhost:5000/blocked:v1',
    );
    expect(bad.code).toBe(good.code);
    expect(bad.code).toBe(1);
    expect(bad.writes[0]).toEqual(good.writes[0]);
    const warnings = bad.writes.filter((w) => w.fd === 2 && w.text.startsWith('pullguard: warning:'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]!.text).toMatch(/decision log .*ENOTDIR.*metrics .*ENOTDIR.*the verdict is unaffected\n$/);
  });
});

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ContainerdApi, ContainerdImage } from '../containerd/api.js';
import { parseScanArgs, runScan } from './run.js';

const D1 = `sha256:${'1'.repeat(64)}`;
const t = (digest: string) => ({ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest, size: 100 });
let dir: string;
let policy: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'pg-scan-unit-'));
  policy = join(dir, 'policy.yaml');
  const rules =
    'rules:\n  - {name: ok, match: "ok.test/**", action: allow}\n  - {name: no, match: "bad.test/**", action: deny}\n';
  const log = `log: {file: ${JSON.stringify(join(dir, 'decisions.jsonl'))}}\n`;
  writeFileSync(policy, `version: 1\ndefault: deny\n${log}${rules}`);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** containerd as scan sees it, in memory: deletes are recorded, never performed. */
function fakeApi(images: ContainerdImage[], deleted: string[] = []): ContainerdApi {
  return {
    namespaces: async () => ['k8s.io', 'default'],
    images: async (ns) => (ns === 'k8s.io' ? images : []),
    containers: async () => [],
    tasks: async () => [],
    deleteImage: async (_ns, name) => void deleted.push(name),
    unary: async () => {
      throw new Error('not used by scan');
    },
    close: () => undefined,
  };
}

async function run(args: string[], api: ContainerdApi) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runScan(
    ['--policy', policy, ...args],
    (l) => out.push(l),
    (l) => err.push(l),
    {},
    api,
  );
  return { code, out, err };
}

describe('runScan', () => {
  it('allow and deny rules decide without the network; exit 1 when any would be denied', async () => {
    const images = [
      { name: 'ok.test/app:v1', target: t(D1), labels: {} },
      { name: 'bad.test/app:v1', target: t(D1), labels: {} },
    ];
    const r = await run([], fakeApi(images));
    expect(r.code).toBe(1);
    expect(r.out.filter((l) => /^(ALLOW|WOULD-DENY)/.test(l)).map((l) => l.split(/\s+/).slice(0, 3).join(' '))).toEqual(
      ['WOULD-DENY k8s.io bad.test/app:v1', 'ALLOW k8s.io ok.test/app:v1'],
    );
    expect(r.out).toContain('           rule "no": denied by policy');
    // Each decision is in the node's decision log too, marked as scan's.
    const log = readFileSync(join(dir, 'decisions.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(log.slice(-2).map((e) => [e.source, e.name, e.verdict, e.rule])).toEqual([
      ['scan', 'bad.test/app:v1', 'deny', 'no'],
      ['scan', 'ok.test/app:v1', 'allow', 'ok'],
    ]);
  });

  it('an image with no repository name is denied, and removed when unused', async () => {
    const deleted: string[] = [];
    const r = await run(
      ['--json', '--remove-denied'],
      fakeApi([{ name: `sha256:${'a'.repeat(64)}`, target: t(D1), labels: {} }], deleted),
    );
    const json = JSON.parse(r.out[0]!) as {
      images: { repository: string | null; reason: string; removed: string[] }[];
    };
    expect(json.images[0]).toMatchObject({ repository: null, removed: [`sha256:${'a'.repeat(64)}`] });
    expect(json.images[0]!.reason).toContain('only its image ID names it');
    expect(deleted).toEqual([`sha256:${'a'.repeat(64)}`]);
  });

  it('control characters in names never reach the terminal', async () => {
    const r = await run([], fakeApi([{ name: 'bad.test/app:v1\u001b[2J\u2028x', target: t(D1), labels: {} }]));
    // biome-ignore lint/suspicious/noControlCharactersInRegex: no control character may reach the output
    expect(r.out.join('\n')).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u2028]/);
  });

  it('options: defaults, --all-namespaces, and mistakes', () => {
    expect(parseScanArgs([], {})).toMatchObject({ address: '/run/containerd/containerd.sock', namespaces: ['k8s.io'] });
    expect(parseScanArgs(['-A'], { CONTAINERD_ADDRESS: '/x.sock' })).toMatchObject({
      address: '/x.sock',
      namespaces: undefined,
    });
    expect(parseScanArgs(['--namespace=a', '-n', 'b'], {}).namespaces).toEqual(['a', 'b']);
    expect(() => parseScanArgs(['-A', '-n', 'x'], {})).toThrow(/exclude each other/);
    expect(() => parseScanArgs(['--namespace'], {})).toThrow(/needs a value/);
    expect(() => parseScanArgs(['--nope'], {})).toThrow(/unknown option --nope/);
  });
});

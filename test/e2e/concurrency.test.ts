/**
 * 50 CRI pulls at once through a real containerd 2.1.9 (the drop-in config, pullguard in its bin_dir):
 * images signed with the real cosign (legacy and bundle), unsigned ones, and images behind a hostile
 * registry that floods their referrers with deeply nested junk and answers other lookups with huge 404
 * pages. Every pull must be judged right (the image is there exactly when it should be, and a denied
 * pull carries pullguard's reason), and every decision must come well before the 8 s policy deadline.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startContainerd, type Containerd } from '../helpers/containerd.js';
import { cosignOk, cosignSignKey } from '../helpers/cosign.js';
import { criClient, pullError, type CriClient } from '../helpers/cri.js';
import {
  bigBody,
  path,
  serve,
  sha256,
  startHostileRegistry,
  type HostileRegistry,
} from '../helpers/hostile-registry.js';
import { RegistryWriter } from '../helpers/notation.js';
import { pushTestImage, type PushedImage } from '../helpers/oci.js';
import { startRegistry, type Registry } from '../helpers/registry.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const BUNDLE = 'application/vnd.dev.sigstore.bundle.v0.3+json';
const DEADLINE_MS = 8000;

type Kind = 'legacy' | 'bundle' | 'unsigned' | 'hostile-signed' | 'hostile-unsigned';
const MIX: [Kind, number][] = [
  ['legacy', 14],
  ['bundle', 10],
  ['unsigned', 10],
  ['hostile-signed', 8],
  ['hostile-unsigned', 8],
];
const expected: Record<Kind, 'allow' | 'deny'> = {
  legacy: 'allow',
  bundle: 'allow',
  unsigned: 'deny',
  'hostile-signed': 'allow',
  'hostile-unsigned': 'deny',
};

let registry: Registry;
let hostile: HostileRegistry;
let ctd: Containerd;
let cri: CriClient;
let work: string;
const cases: { kind: Kind; image: PushedImage; name: string }[] = [];

/** Runs `fn` over `items`, `limit` at a time. */
async function pool<T>(items: readonly T[], limit: number, fn: (t: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: limit }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'pg-concurrency-'));
  registry = await startRegistry();
  hostile = await startHostileRegistry(registry.url);
  const writer = new RegistryWriter(registry.url);
  const home = join(work, 'cosign-home');
  const key = join(work, 'release');
  await cosignOk(home, ['generate-key-pair', '--output-key-prefix', key]);

  for (const [kind, count] of MIX) {
    for (let i = 0; i < count; i++) {
      const repo = `${kind}/app${i}`;
      const image = await pushTestImage(registry.host, repo, 'v1', `concurrency-${kind}-${i}-${Date.now()}`);
      const host = kind.startsWith('hostile') ? hostile.host : registry.host;
      cases.push({ kind, image, name: `${host}/${repo}:v1` });
    }
  }
  // Signed under the name they are pulled by (a legacy signature names its repository).
  const signed = cases.filter((c) => c.kind === 'legacy' || c.kind === 'bundle' || c.kind === 'hostile-signed');
  await pool(signed, 4, (c) =>
    cosignSignKey(home, `${key}.key`, `${c.name.replace(/:v1$/, '')}@${c.image.digest}`, {
      bundle: c.kind === 'bundle',
    }),
  );

  // The hostile registry: 20 referrers of 1 MB nested 500 000 deep listed for every hostile image, and
  // 200 KiB 404 pages for the .att tags nobody pushed.
  const body = Buffer.concat([Buffer.alloc(500_000, '['), Buffer.alloc(500_000, ']')]);
  const junk = Array.from({ length: 20 }, (_, i) => {
    const parts = [Buffer.alloc(i + 1, ' '), body];
    return {
      parts,
      entry: { mediaType: OCI_MANIFEST, digest: sha256(...parts), size: body.length + i + 1, artifactType: BUNDLE },
    };
  });
  for (const c of cases.filter((x) => x.kind.startsWith('hostile'))) {
    const repo = c.name.slice(c.name.indexOf('/') + 1, c.name.lastIndexOf(':'));
    const tag = c.image.digest.replace(':', '-');
    const real = (await writer.getManifest(repo, tag))?.json.manifests ?? [];
    const index = Buffer.from(
      JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [...junk.map((j) => j.entry), ...real] }),
    );
    hostile.on(path(new RegExp(`^/v2/${repo}/manifests/${tag}$`)), serve(OCI_INDEX, [index]));
    for (const j of junk)
      hostile.on(path(new RegExp(`^/v2/${repo}/manifests/${j.entry.digest}$`)), serve(OCI_MANIFEST, j.parts));
  }
  hostile.on(path(/\.att$/), bigBody(404, 200 * 1024));

  const policy = join(work, 'policy.yaml');
  writeFileSync(
    policy,
    [
      'version: 1',
      'timeout: 8s',
      'default: deny',
      'rules:',
      '  - name: signed',
      `    match: ["${registry.host}/**", "${hostile.host}/**"]`,
      '    action: verify',
      `    authorities: [{name: release, cosign: {keys: [${key}.pub]}}]`,
      '',
    ].join('\n'),
  );
  ctd = await startContainerd({ mode: 'dropin', policy });
  cri = criClient(ctd.socket);
}, 300_000);

afterAll(async () => {
  cri?.close();
  await ctd?.stop();
  await hostile?.close();
  await registry?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('50 parallel CRI pulls through containerd 2.1.9', () => {
  test('every signed, unsigned and hostile image is judged right, none past the deadline', async () => {
    expect(cases).toHaveLength(50);
    const started = Date.now();
    const outcomes = await Promise.all(cases.map(async (c) => ({ c, err: await pullError(cri, c.name) })));
    const wall = Date.now() - started;
    const wrong = outcomes.filter(({ c, err }) => (expected[c.kind] === 'allow') !== (err === undefined));
    expect(wrong.map(({ c, err }) => `${c.kind} ${c.name}: ${err?.details ?? 'pulled'}`)).toEqual([]);
    for (const { c, err } of outcomes) {
      if (expected[c.kind] === 'allow') {
        expect(await cri.imageStatus(c.name), c.name).not.toBeNull();
      } else {
        expect(err?.details, `${c.kind} ${c.name}`).toContain(
          'verifier pullguard rejected image (exit code 1): denied',
        );
        expect(await cri.imageStatus(c.name), c.name).toBeNull();
      }
    }
    const records = await Promise.all(
      cases.map((c) => ctd.waitForRecord((r) => r.name === c.name && r.digest === c.image.digest)),
    );
    const slowest = Math.max(...records.map((r) => r.durationMs));
    console.log(`50 parallel pulls: ${wall} ms wall, slowest decision ${slowest} ms`);
    for (const [i, r] of records.entries())
      console.log(`  ${cases[i]!.kind} ${r.durationMs} ms ${r.verdict}: ${r.reason.slice(0, 160)}`);
    for (const [i, r] of records.entries()) {
      expect(r.verdict, cases[i]!.name).toBe(expected[cases[i]!.kind]);
      expect(r.durationMs, cases[i]!.name).toBeLessThan(DEADLINE_MS);
      if (cases[i]!.kind === 'hostile-unsigned') expect(r.reason).toMatch(/nested more than 64 levels deep/);
      if (cases[i]!.kind === 'unsigned') expect(r.reason).toMatch(/no .*signature/i);
    }
  });
});

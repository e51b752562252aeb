import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PullguardError } from '../common/errors.js';
import type { ContainerdImage } from '../containerd/api.js';
import { groupImages, removalPlan, StaleListing, usageByDigest, type ScanUnit } from './plan.js';
import { decodeFields, Message, Writer } from '../containerd/protobuf.js';

const D1 = `sha256:${'1'.repeat(64)}`;
const D2 = `sha256:${'2'.repeat(64)}`;
const ID1 = `sha256:${'a'.repeat(64)}`;
const ID2 = `sha256:${'b'.repeat(64)}`;
const t = (digest: string) => ({ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest, size: 100 });
const img = (name: string, digest: string): ContainerdImage => ({ name, target: t(digest), labels: {} });

describe('groupImages', () => {
  it('one unit per repository and target: tag, digest and ID names together; the CRI normalization applies', () => {
    const units = groupImages('k8s.io', [
      img('reg.test/app:v1', D1),
      img(`reg.test/app@${D1}`, D1),
      img(ID1, D1),
      img('nginx:1', D2),
      img('other.test/app:v1', D1),
    ]);
    expect(units.map((u) => [u.repository, u.names])).toEqual([
      ['docker.io/library/nginx', ['nginx:1']],
      ['other.test/app', ['other.test/app:v1', ID1]],
      ['reg.test/app', ['reg.test/app:v1', `reg.test/app@${D1}`, ID1]],
    ]);
  });

  it('an image named only by its ID, or by something that is not a reference, has no repository', () => {
    const units = groupImages('default', [img(ID2, D2), img('Not A Ref', D1)]);
    expect(units.map((u) => [u.repository, u.unnamed, u.names])).toEqual([
      [undefined, '"Not A Ref" is not an image reference', ['Not A Ref']],
      [undefined, 'only its image ID names it', [ID2]],
    ]);
  });
});

describe('usageByDigest', () => {
  const images = [img('reg.test/app:v1', D1), img(ID1, D1), img('reg.test/db:v1', D2)];
  it('a container uses its image by any name; running means it has a live task', () => {
    const u = usageByDigest(
      images,
      [
        { id: 'c1', image: ID1 },
        { id: 'c2', image: 'reg.test/app:v1' },
        { id: 'c3', image: '' },
      ],
      [{ containerId: 'c2', pid: 5, status: 'running' }],
    );
    expect(u.get(D1)).toEqual({ containers: ['c1', 'c2'], running: ['c2'] });
    expect(u.has(D2)).toBe(false);
  });
  it('a stopped task is not running, but its container still uses the image', () => {
    const u = usageByDigest(
      images,
      [{ id: 'c1', image: 'reg.test/db:v1' }],
      [{ containerId: 'c1', pid: 0, status: 'stopped' }],
    );
    expect(u.get(D2)).toEqual({ containers: ['c1'], running: [] });
  });
  it('a task without a listed container means the listing is stale', () => {
    expect(() => usageByDigest(images, [], [{ containerId: 'new', pid: 7, status: 'running' }])).toThrow(StaleListing);
  });
});

describe('removalPlan', () => {
  const units = groupImages('k8s.io', [
    img('reg.test/app:v1', D1),
    img(ID1, D1),
    img('ok.test/app:v1', D1),
    img('reg.test/db:v1', D2),
    img(ID2, D2),
  ]);
  const deny = (repos: string[]) => (u: ScanUnit) => repos.includes(u.repository ?? '');

  it('removes every name of a denied target no container uses, the ID last and synchronously', () => {
    expect(removalPlan(units, deny(['reg.test/db']), new Map())).toEqual([
      { name: 'reg.test/db:v1', target: t(D2), sync: false },
      { name: ID2, target: t(D2), sync: true },
    ]);
  });

  it('keeps the ID (and so the content) while another repository of the same target is allowed', () => {
    expect(removalPlan(units, deny(['reg.test/app']), new Map()).map((r) => [r.name, r.sync])).toEqual([
      ['reg.test/app:v1', false],
    ]);
  });

  it('never removes an image the CRI pins (the sandbox image), whatever the verdict', () => {
    const pinned = groupImages('k8s.io', [
      { ...img('registry.k8s.io/pause:3.10', D1), labels: { 'io.cri-containerd.pinned': 'pinned' } },
      img(ID1, D1),
    ]);
    expect(pinned[0]!.pinned).toBe(true);
    expect(removalPlan(pinned, () => true, new Map())).toEqual([]);
  });

  it('never removes a target a container uses, running or not', () => {
    const usage = new Map([[D2, { containers: ['c'], running: [] }]]);
    expect(removalPlan(units, deny(['reg.test/db', 'reg.test/app', 'ok.test/app']), usage).map((r) => r.name)).toEqual([
      'ok.test/app:v1',
      'reg.test/app:v1',
      ID1,
    ]);
  });
});

describe('protobuf', () => {
  it('round-trips what the containerd client writes', () => {
    const d = new Writer().string(1, 'application/vnd.oci.image.index.v1+json').string(2, D1).varint(3, 1234).finish();
    const req = new Writer().string(1, 'reg.test/app:v1').varint(2, true).bytes(3, d).finish();
    const m = Message.decode(req);
    expect([m.string(1), m.varint(2), m.message(3)?.string(2), m.message(3)?.varint(3)]).toEqual([
      'reg.test/app:v1',
      1n,
      D1,
      1234n,
    ]);
    expect(Message.decode(new Writer().varint(4, -1).finish()).varint(4)).toBe(0xffff_ffff_ffff_ffffn);
  });

  it('reads map entries and repeated messages; an absent field is the proto3 default', () => {
    const entry = (k: string, v: string) => new Writer().string(1, k).string(2, v).finish();
    const m = Message.decode(new Writer().bytes(2, entry('a', '1')).bytes(2, entry('b', '2')).finish());
    expect(m.stringMap(2)).toEqual({ a: '1', b: '2' });
    expect([m.string(1), m.varint(9), m.message(3), m.messages(5)]).toEqual(['', 0n, undefined, []]);
  });

  it('malformed input: a PullguardError, never a crash or an overread (fuzzed)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        try {
          const m = Message.decode(bytes);
          for (const n of [1, 2, 3]) for (const x of m.messages(n)) x.string(1);
        } catch (e) {
          expect(e).toBeInstanceOf(PullguardError);
        }
      }),
      { numRuns: 2000 },
    );
    expect(() => decodeFields(Uint8Array.from([0x0a, 0x05, 0x61]))).toThrow(/runs past the end/);
    expect(() =>
      decodeFields(Uint8Array.from([0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])),
    ).toThrow(/varint/);
  });
});

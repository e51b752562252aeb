import { describe, expect, test } from 'vitest';
import { matchSignedIdentity, type ImageIdentity } from './identity.js';

const byDigest: ImageIdentity = { name: 'r.example/ns/app', digest: 'sha256:' + 'a'.repeat(64) };
const byTag: ImageIdentity = { name: 'r.example/ns/app', tag: 'v1' };

describe('signedIdentity (containers/image policy_reference_match.go semantics)', () => {
  test.each([
    // rule, image, signed docker-reference, ok
    [{ type: 'matchRepository' } as const, byDigest, 'r.example/ns/app', true],
    [{ type: 'matchRepository' } as const, byDigest, 'r.example/ns/other', false],
    [{ type: 'matchRepoDigestOrExact' } as const, byDigest, 'r.example/ns/app', false], // name-only never matches
    [{ type: 'matchRepoDigestOrExact' } as const, byDigest, 'r.example/ns/app:v9', true],
    [{ type: 'matchRepoDigestOrExact' } as const, byTag, 'r.example/ns/app:v1', true],
    [{ type: 'matchRepoDigestOrExact' } as const, byTag, 'r.example/ns/app:v2', false],
    [{ type: 'matchExact' } as const, byTag, 'r.example/ns/app:v1', true],
    [{ type: 'matchExact' } as const, byDigest, 'r.example/ns/app', false],
    [
      { type: 'exactReference', dockerReference: 'vendor.example/app:1' } as const,
      byDigest,
      'vendor.example/app:1',
      true,
    ],
    [
      { type: 'exactReference', dockerReference: 'vendor.example/app:1' } as const,
      byDigest,
      'vendor.example/app',
      false,
    ],
    [
      { type: 'exactRepository', dockerRepository: 'vendor.example/app' } as const,
      byDigest,
      'vendor.example/app',
      true,
    ],
    [{ type: 'exactRepository', dockerRepository: 'vendor.example/app' } as const, byDigest, 'r.example/ns/app', false],
    [
      { type: 'remapIdentity', prefix: 'r.example/ns', signedPrefix: 'vendor.example' } as const,
      byDigest,
      'vendor.example/app:1',
      true,
    ],
    [
      { type: 'remapIdentity', prefix: 'r.example/ns', signedPrefix: 'vendor.example' } as const,
      byDigest,
      'r.example/ns/app:1',
      false,
    ],
    [
      { type: 'remapIdentity', prefix: 'r.example/n', signedPrefix: 'vendor.example' } as const,
      byDigest,
      'r.example/ns/app:1',
      true,
    ], // prefix must end at a '/'
    [
      { type: 'matchRepository' } as const,
      { name: 'docker.io/library/busybox', digest: byDigest.digest },
      'busybox',
      true,
    ], // normalized
    [{ type: 'matchRepository' } as const, byDigest, 'NOT A REF', false],
  ])('%j on %j signed %s -> %s', (rule, image, signed, ok) => {
    expect(matchSignedIdentity(rule, image, signed).ok).toBe(ok);
  });
});

import { describe, expect, test } from 'vitest';
import { checkArgs, checkDescriptorMatches, parseDescriptor } from './descriptor.js';

const D = `sha256:${'b'.repeat(64)}`;
const ok = { mediaType: 'application/vnd.oci.image.index.v1+json', digest: D, size: 512 };

describe('parseDescriptor', () => {
  test('accepts the four pullable media types and ignores extra fields', () => {
    for (const mediaType of [
      'application/vnd.oci.image.index.v1+json',
      'application/vnd.oci.image.manifest.v1+json',
      'application/vnd.docker.distribution.manifest.list.v2+json',
      'application/vnd.docker.distribution.manifest.v2+json',
    ]) {
      expect(parseDescriptor(JSON.stringify({ ...ok, mediaType, annotations: { a: 'b' } }))).toEqual({
        ...ok,
        mediaType,
      });
    }
  });

  test.each([
    ['', 'CONTRACT_STDIN', /stdin is empty/],
    ['{', 'CONTRACT_DESCRIPTOR', /not JSON/],
    ['[]', 'CONTRACT_DESCRIPTOR', /expected object, got array/],
    [
      JSON.stringify({ ...ok, mediaType: 'application/vnd.oci.image.layer.v1.tar' }),
      'CONTRACT_DESCRIPTOR',
      /mediaType: must be one of/,
    ],
    [JSON.stringify({ digest: D, size: 1 }), 'CONTRACT_DESCRIPTOR', /mediaType: required, one of/],
    [JSON.stringify({ ...ok, digest: 'sha256:xyz' }), 'CONTRACT_DESCRIPTOR', /digest: malformed digest/],
    [JSON.stringify({ ...ok, size: 0 }), 'CONTRACT_DESCRIPTOR', /size: must be > 0/],
    [JSON.stringify({ ...ok, size: 1.5 }), 'CONTRACT_DESCRIPTOR', /size/],
    [JSON.stringify({ ...ok, size: 64 * 1024 * 1024 }), 'CONTRACT_DESCRIPTOR', /size: must be <=/],
  ])('rejects %s', (text, code, message) => {
    expect(() => parseDescriptor(text)).toThrow(message);
    try {
      parseDescriptor(text);
    } catch (e) {
      expect((e as { code: string }).code).toBe(code);
    }
  });
});

describe('binding stdin to the arguments', () => {
  const args = { name: 'x', digest: D, stdinMediaType: 'application/vnd.oci.descriptor.v1+json' };
  test('a matching call passes', () => {
    expect(() => checkArgs(args)).not.toThrow();
    expect(() => checkDescriptorMatches(args, ok)).not.toThrow();
  });
  test('the stdin media type must be the OCI descriptor type', () => {
    expect(() => checkArgs({ ...args, stdinMediaType: 'application/json' })).toThrow(/unsupported -stdin-media-type/);
  });
  test('-digest must be well formed', () => {
    expect(() => checkArgs({ ...args, digest: 'sha256:nope' })).toThrow(/malformed -digest/);
  });
  test('the descriptor digest must equal -digest', () => {
    expect(() => checkDescriptorMatches(args, { ...ok, digest: `sha256:${'c'.repeat(64)}` })).toThrow(
      /does not match -digest/,
    );
  });
});

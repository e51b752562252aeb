import { describe, expect, test } from 'vitest';
import { looksLikeVerifierInvocation, parseVerifierArgs } from './args.js';

const D = `sha256:${'a'.repeat(64)}`;
const MT = 'application/vnd.oci.descriptor.v1+json';

describe('parseVerifierArgs', () => {
  test.each([
    [['-name', 'r/x:1', '-digest', D, '-stdin-media-type', MT]],
    [['--name', 'r/x:1', '--digest', D, '--stdin-media-type', MT]],
    [['-name=r/x:1', '-digest=' + D, '-stdin-media-type=' + MT]],
    [['--name=r/x:1', '-digest', D, '--stdin-media-type=' + MT]],
  ])('accepts Go flag forms %j', (argv) => {
    expect(parseVerifierArgs(argv)).toEqual({ name: 'r/x:1', digest: D, stdinMediaType: MT });
  });

  test.each([
    [[], /missing -name, -digest, -stdin-media-type/],
    [['-name', 'x', '-digest', D], /missing -stdin-media-type/],
    [['-name', 'x', '-digest', D, '-stdin-media-type'], /needs a value/],
    [['-name', 'x', '-name', 'y', '-digest', D, '-stdin-media-type', MT], /given twice/],
    [['-name', 'x', '-digest', D, '-stdin-media-type', MT, '-operation', 'run'], /unknown flag -operation/],
    [['-name', 'x', '-digest', D, '-stdin-media-type', MT, 'extra'], /unexpected argument "extra"/],
    [['-name', '', '-digest', D, '-stdin-media-type', MT], /missing -name/],
  ])('rejects %j', (argv, message) => {
    expect(() => parseVerifierArgs(argv)).toThrow(message);
  });

  test('only dash-led argv is a containerd invocation', () => {
    expect(looksLikeVerifierInvocation(['-name', 'x'])).toBe(true);
    expect(looksLikeVerifierInvocation(['verify', 'x'])).toBe(false);
    expect(looksLikeVerifierInvocation(['--version'])).toBe(false);
    expect(looksLikeVerifierInvocation([])).toBe(false);
  });
});

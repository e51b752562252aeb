import { isDigest, shortDigest } from '../common/digest.js';
import { PullguardError } from '../common/errors.js';
import { describeIssue, PARSE_OPTIONS, refineWith } from '../common/schema.js';
import * as z from 'zod/mini';
import { OCI_DESCRIPTOR, PULLABLE_MEDIA_TYPES } from './media-types.js';
import type { VerifierArgs } from './args.js';

/** Largest manifest or index containerd itself accepts (core/remotes/docker: 4 MiB). */
export const MAX_MANIFEST_SIZE = 4 * 1024 * 1024;

export const descriptorSchema = z.looseObject({
  mediaType: z.enum(PULLABLE_MEDIA_TYPES),
  digest: z.string().check(refineWith(isDigest, 'malformed digest')),
  size: z.number().check(z.int(), z.positive(), z.maximum(MAX_MANIFEST_SIZE)),
});

export type Descriptor = { mediaType: string; digest: string; size: number };

export function parseDescriptor(stdin: Buffer | string): Descriptor {
  const text = typeof stdin === 'string' ? stdin : stdin.toString('utf8');
  if (text.trim().length === 0)
    throw new PullguardError('CONTRACT_STDIN', 'stdin is empty (expected the image descriptor)');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new PullguardError('CONTRACT_DESCRIPTOR', `stdin is not JSON: ${(e as Error).message}`);
  }
  const parsed = descriptorSchema.safeParse(json, PARSE_OPTIONS);
  if (!parsed.success) {
    throw new PullguardError(
      'CONTRACT_DESCRIPTOR',
      `bad descriptor on stdin: ${describeIssue(parsed.error.issues[0]!)}`,
    );
  }
  const { mediaType, digest, size } = parsed.data;
  return { mediaType, digest, size };
}

/** Checks the arguments on their own, before stdin is read: a malformed call is denied at once. */
export function checkArgs(args: VerifierArgs): void {
  if (args.stdinMediaType !== OCI_DESCRIPTOR) {
    throw new PullguardError(
      'CONTRACT_ARGS',
      `unsupported -stdin-media-type ${JSON.stringify(args.stdinMediaType)} (expected ${OCI_DESCRIPTOR})`,
    );
  }
  if (!isDigest(args.digest))
    throw new PullguardError('CONTRACT_ARGS', `malformed -digest ${JSON.stringify(args.digest)}`);
}

/** Binds stdin to the arguments: the verifier must judge exactly what will be pulled. */
export function checkDescriptorMatches(args: VerifierArgs, descriptor: Descriptor): void {
  if (descriptor.digest !== args.digest) {
    throw new PullguardError(
      'CONTRACT_DIGEST_MISMATCH',
      `descriptor digest ${shortDigest(descriptor.digest)} does not match -digest ${shortDigest(args.digest)}`,
    );
  }
}

import * as z from 'zod/mini';
import { atprotoAuthoritySchema } from './atproto.js';
import { cosignAuthoritySchema } from './cosign.js';
import { notationAuthoritySchema } from './notation.js';

/**
 * The verifier kinds a policy may name, each with the schema of its settings. A kind listed here is
 * validated at load time; whether a verifier for it is built in is the verify stage's business.
 */
export const authoritySpecSchemas = {
  cosign: cosignAuthoritySchema,
  notation: notationAuthoritySchema,
  atproto: atprotoAuthoritySchema,
} as const satisfies Record<string, z.ZodMiniType>;

export type AuthorityKind = keyof typeof authoritySpecSchemas;
export const AUTHORITY_KINDS = Object.keys(authoritySpecSchemas) as AuthorityKind[];

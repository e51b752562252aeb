import type * as z from 'zod/mini';
import { atprotoAuthoritySchema } from './atproto.js';
import { cosignAuthoritySchema } from './cosign.js';
import { notationAuthoritySchema } from './notation.js';
import type { AuthorityKind, AuthoritySpecs } from '../model.js';

/**
 * The verifier kinds a policy may name, each with the schema that validates and compiles its settings
 * at load time. The compiler checks that every kind of the model has one.
 */
export const authoritySpecSchemas = {
  cosign: cosignAuthoritySchema,
  notation: notationAuthoritySchema,
  atproto: atprotoAuthoritySchema,
} as const satisfies { [K in AuthorityKind]: z.ZodMiniType<AuthoritySpecs[K], unknown> };

export const AUTHORITY_KINDS = Object.keys(authoritySpecSchemas) as AuthorityKind[];

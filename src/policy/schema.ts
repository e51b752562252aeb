import { parseDuration } from '../common/go-duration.js';
import { refineWith } from '../common/schema.js';
import * as z from 'zod/mini';
import { AUTHORITY_KINDS, authoritySpecSchemas } from './authorities/index.js';
import { validatePattern } from './match.js';

const name = z.string().check(z.minLength(1), z.maxLength(128));

const pattern = z.string().check(
  z.superRefine((p, ctx) => {
    const problem = validatePattern(p);
    if (problem) ctx.issues.push({ code: 'custom', message: problem, input: p });
  }),
);

const duration = z.pipe(
  z.union([z.string(), z.number()]),
  z.transform((v: string | number, ctx) => {
    const ms = parseDuration(v);
    if (ms === undefined || ms > 300_000) {
      ctx.issues.push({
        code: 'custom',
        message: `invalid duration ${JSON.stringify(v)} (use e.g. "8s" or "1500ms", at most 5m)`,
        input: v,
      });
      return z.NEVER;
    }
    return ms;
  }),
);

/** Cache lifetimes: hours are fine here (the request deadline above stays capped at 5m). */
const longDuration = (max: number, what: string) =>
  z.pipe(
    z.union([z.string(), z.number()]),
    z.transform((v: string | number, ctx) => {
      const ms = parseDuration(v);
      if (ms === undefined || ms > max) {
        ctx.issues.push({
          code: 'custom',
          message: `invalid ${what} ${JSON.stringify(v)} (use e.g. "10m" or "1h", at most ${max / 3_600_000}h)`,
          input: v,
        });
        return z.NEVER;
      }
      return ms;
    }),
  );

const authority = z
  .strictObject({
    name: z.optional(name),
    ...(Object.fromEntries(AUTHORITY_KINDS.map((k) => [k, z.optional(authoritySpecSchemas[k])])) as {
      [K in keyof typeof authoritySpecSchemas]: z.ZodMiniOptional<(typeof authoritySpecSchemas)[K]>;
    }),
  })
  .check(
    z.superRefine((a, ctx) => {
      const kinds = AUTHORITY_KINDS.filter((k) => a[k] !== undefined);
      if (kinds.length !== 1)
        ctx.issues.push({
          code: 'custom',
          message: `an authority needs exactly one of: ${AUTHORITY_KINDS.join(', ')}`,
          input: a,
        });
    }),
  );

const rule = z
  .strictObject({
    name,
    match: z.union([pattern, z.array(pattern).check(z.minLength(1))]),
    action: z.enum(['allow', 'deny', 'verify']),
    message: z.optional(z.string().check(z.maxLength(200))),
    require: z._default(z.enum(['all', 'any']), 'all'),
    authorities: z.optional(z.array(authority)),
    staleIfError: z.optional(longDuration(7 * 24 * 3_600_000, 'staleIfError')),
  })
  .check(
    z.superRefine((r, ctx) => {
      if (r.action === 'verify' && (!r.authorities || r.authorities.length === 0)) {
        ctx.issues.push({
          code: 'custom',
          path: ['authorities'],
          message: 'a verify rule needs at least one authority',
          input: r,
        });
      }
      if (r.action !== 'verify' && r.authorities) {
        ctx.issues.push({
          code: 'custom',
          path: ['authorities'],
          message: `authorities only apply to action "verify", not "${r.action}"`,
          input: r,
        });
      }
      if (r.action !== 'verify' && r.staleIfError !== undefined) {
        ctx.issues.push({
          code: 'custom',
          path: ['staleIfError'],
          message: 'staleIfError only applies to action "verify"',
          input: r,
        });
      }
    }),
  );

/** Where decisions are recorded (src/output): the decision log, its rotation, metrics, the journal. */
const ABSOLUTE = 'must be an absolute path (containerd runs pullguard from its own working directory)';
const absolutePath = z.string().check(refineWith((p: string) => p.startsWith('/'), ABSOLUTE));

const logSection = z.strictObject({
  /** The JSON-lines decision log; `false` turns it off. */
  file: z.optional(z.union([absolutePath, z.literal(false)])),
  maxBytes: z.optional(z.number().check(z.int(), z.minimum(4096), z.maximum(1024 * 1024 * 1024))),
  keep: z.optional(z.number().check(z.int(), z.minimum(1), z.maximum(20))),
  /** A Prometheus textfile (node_exporter's textfile collector), written atomically. */
  metricsFile: z.optional(absolutePath),
  /** Also send each decision to journald (`journalctl -t pullguard`); a string names a journal namespace. */
  journal: z.optional(z.union([z.boolean(), z.string().check(z.regex(/^[A-Za-z0-9_-]{1,64}$/))])),
});

export const policyDocumentSchema = z
  .strictObject({
    version: z.literal(1),
    mode: z._default(z.enum(['enforce', 'audit']), 'enforce'),
    timeout: z.optional(duration),
    default: z._default(z.enum(['allow', 'deny']), 'deny'),
    registry: z._default(
      z.strictObject({
        containerdConfig: z.optional(z.string().check(z.minLength(1))),
        dockerConfig: z.optional(z.string().check(z.minLength(1))),
        credentialProviders: z.optional(
          z.strictObject({
            config: z.string().check(z.minLength(1)),
            binDir: z.string().check(z.minLength(1)),
            cacheDir: z.optional(z.string().check(z.minLength(1))),
          }),
        ),
        /** `true`, or where and how long: remember each registry's token realm across pulls. */
        tokenRealmCache: z.optional(
          z.pipe(
            z.union([
              z.boolean(),
              z.strictObject({
                dir: z.optional(absolutePath),
                ttl: z.optional(longDuration(30 * 24 * 3_600_000, 'registry.tokenRealmCache.ttl')),
              }),
            ]),
            z.transform((v) => (v === false ? undefined : v === true ? {} : { dir: v.dir, ttlMs: v.ttl })),
          ),
        ),
        maxBlobBytes: z.optional(z.number().check(z.int(), z.positive(), z.maximum(64 * 1024 * 1024))),
        maxReferrers: z.optional(z.number().check(z.int(), z.positive(), z.maximum(10_000))),
        maxTotalBytes: z.optional(z.number().check(z.int(), z.positive(), z.maximum(1024 * 1024 * 1024))),
      }),
      {},
    ),
    rules: z._default(z.array(rule), []),
    cache: z.optional(
      z.strictObject({
        dir: z.optional(z.string().check(z.minLength(1), z.startsWith('/'))),
        ttl: z.optional(longDuration(24 * 3_600_000, 'cache.ttl')),
        revocationInterval: z.optional(longDuration(24 * 3_600_000, 'cache.revocationInterval')),
      }),
    ),
    log: z.optional(logSection),
  })
  .check(
    z.superRefine((doc, ctx) => {
      const seen = new Set<string>();
      doc.rules.forEach((r, i) => {
        if (seen.has(r.name))
          ctx.issues.push({
            code: 'custom',
            path: ['rules', i, 'name'],
            message: `duplicate rule name "${r.name}"`,
            input: r.name,
          });
        seen.add(r.name);
        if (r.staleIfError !== undefined && !doc.cache) {
          ctx.issues.push({
            code: 'custom',
            path: ['rules', i, 'staleIfError'],
            message: 'staleIfError needs the decision cache: add a top-level "cache:" (e.g. cache: {ttl: 10m})',
            input: r,
          });
        }
      });
    }),
  );

export type PolicyDocument = z.output<typeof policyDocumentSchema>;

import * as z from 'zod/mini';
import { compiledSchema } from '../../common/schema.js';
import { parseDuration } from '../../common/deadline.js';
import { DEFAULT_REVOCATION, type NotationSpec, type RevocationSettings } from '../notation/spec.js';
import { parseStatement } from '../notation/trust-policy.js';
import { loadNotationConfigDir } from '../notation/config-dir.js';
import { PullguardError } from '../../common/errors.js';

/**
 * A notation authority in pullguard's YAML policy. Either a reference to a notation configuration
 * directory (its trust policy picks the statement for the pulled repository, exactly as notation does):
 *
 *     notation: { config: /etc/containerd/image-verifiers/notation }
 *
 * or one inline trust policy statement with the trust store root it names stores under:
 *
 *     notation:
 *       truststore: /etc/pullguard/notation/truststore     # holds x509/{ca,signingAuthority,tsa}/<name>/
 *       signatureVerification: { level: strict, override: { revocation: log }, verifyTimestamp: always }
 *       trustStores: [ "ca:acme" ]
 *       trustedIdentities: [ "x509.subject: C=US, ST=WA, O=Acme, CN=release" ]
 *       revocation: { cacheDir: /var/cache/pullguard/crl, timeout: 2s }
 *
 * Both are fully validated at load (the trust policy file is read and parsed then) and resolve to a
 * NotationSpec, which is what the verifier receives.
 */
const revocationSchema = z.strictObject({
  cacheDir: z.optional(z.string().check(z.minLength(1))),
  timeout: z.optional(z.union([z.string(), z.number()])),
});

const raw = z.strictObject({
  config: z.optional(z.string().check(z.minLength(1))),
  truststore: z.optional(z.string().check(z.minLength(1))),
  signatureVerification: z.optional(z.unknown()),
  trustStores: z.optional(z.array(z.string())),
  trustedIdentities: z.optional(z.array(z.string())),
  revocation: z.optional(revocationSchema),
});

export function revocationSettings(r: z.output<typeof revocationSchema> | undefined): RevocationSettings {
  if (!r) return DEFAULT_REVOCATION;
  let timeoutMs = DEFAULT_REVOCATION.timeoutMs;
  if (r.timeout !== undefined) {
    const ms = parseDuration(r.timeout);
    if (ms === undefined || ms > 60_000)
      throw new PullguardError(
        'POLICY_INVALID',
        `revocation.timeout ${JSON.stringify(r.timeout)} must be a duration up to 60s (e.g. "2s")`,
      );
    timeoutMs = ms;
  }
  return { ...DEFAULT_REVOCATION, timeoutMs, cacheDir: r.cacheDir };
}

function resolve(v: z.output<typeof raw>): NotationSpec {
  const revocation = revocationSettings(v.revocation);
  if (v.config !== undefined) {
    const extra = (['truststore', 'signatureVerification', 'trustStores', 'trustedIdentities'] as const).filter(
      (k) => v[k] !== undefined,
    );
    if (extra.length)
      throw new PullguardError(
        'POLICY_INVALID',
        `"config" references a notation directory; remove ${extra.join(', ')} (they come from its trust policy)`,
      );
    const cfg = loadNotationConfigDir(v.config);
    return {
      resolved: 'notation',
      source: cfg.source,
      truststoreDir: cfg.truststoreDir,
      select: 'scope',
      statements: cfg.statements,
      revocation,
    };
  }
  if (v.truststore === undefined)
    throw new PullguardError(
      'POLICY_INVALID',
      'a notation authority needs either "config" (a notation configuration directory) or "truststore" ' +
        'with an inline statement',
    );
  const st = parseStatement(
    {
      name: 'inline',
      signatureVerification: v.signatureVerification,
      trustStores: v.trustStores,
      trustedIdentities: v.trustedIdentities,
    },
    'notation authority',
    { requireScopes: false },
  );
  if (st.level === 'skip')
    throw new PullguardError(
      'POLICY_INVALID',
      'level "skip" is not allowed inline; use a rule with action: allow instead',
    );
  return {
    resolved: 'notation',
    source: 'inline notation authority',
    truststoreDir: v.truststore,
    select: 'fixed',
    statements: [st],
    revocation,
  };
}

export const notationAuthoritySchema = compiledSchema(raw, resolve);

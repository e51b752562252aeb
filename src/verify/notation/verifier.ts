import type { Deadline } from '../../common/deadline.js';
import { shortDigest } from '../../common/digest.js';
import type { ErrorCode } from '../../common/errors.js';
import { repositoryOf } from '../../common/reference.js';
import type { OciDescriptor, SignatureArtifact } from '../../registry/types.js';
import type { AuthorityResult, CheckOutcome, SignatureResult, Subject, Verifier } from '../types.js';
import type { Certificate } from './certificate.js';
import { verifyEnvelopeSignature } from './chain.js';
import { parseCose } from './cose.js';
import { formatDn, isSubsetDn } from '../../common/dn.js';
import { MEDIA_TYPE_COSE, MEDIA_TYPE_JWS, parsePayload, type Envelope } from './envelope.js';
import { parseJws } from './jws.js';
import { checkRevocation } from './revocation.js';
import type { NotationStatementSpec } from '../../policy/notation/spec.js';
import { verifyTimestampToken } from './timestamp.js';
import type { Action, CheckType, Statement, TrustStoreType } from '../../policy/notation/trust-policy.js';
import { loadTrustStore } from './truststore.js';

export const THUMBPRINT_ANNOTATION = 'io.cncf.notary.x509chain.thumbprint#S256';

const CHECK_ORDER: readonly CheckType[] = ['integrity', 'authenticity', 'expiry', 'authenticTimestamp', 'revocation'];
const ENFORCEMENT: Record<Action, CheckOutcome['enforcement']> = {
  enforce: 'enforced',
  log: 'logged',
  skip: 'skipped',
};

class CheckRecorder {
  readonly checks: CheckOutcome[] = [];
  failedEnforced?: { check: CheckType; detail: string };
  constructor(private readonly st: Statement) {}

  /** Records a check; returns true when the signature is already lost (an enforced check failed). */
  record(check: CheckType, ok: boolean, detail: string): boolean {
    const action = this.st.enforcement[check];
    this.checks.push({ check, result: ok ? 'pass' : 'fail', enforcement: ENFORCEMENT[action], detail });
    if (!ok && action === 'enforce' && !this.failedEnforced) this.failedEnforced = { check, detail };
    return this.failedEnforced !== undefined;
  }

  skipped(check: CheckType, detail: string): void {
    this.checks.push({ check, result: 'skip', enforcement: ENFORCEMENT[this.st.enforcement[check]], detail });
  }

  /** Marks every check not yet recorded as not evaluated, so --explain always shows all five. */
  finish(): CheckOutcome[] {
    for (const c of CHECK_ORDER)
      if (!this.checks.some((x) => x.check === c)) this.skipped(c, 'not evaluated: an earlier enforced check failed');
    return this.checks;
  }
}

interface Ctx {
  readonly spec: NotationStatementSpec;
  readonly st: Statement;
  readonly subject: Subject;
  readonly deadline: Deadline;
  readonly now: Date;
}

function storesOfType(ctx: Ctx, type: TrustStoreType): Certificate[] {
  const refs = ctx.st.trustStores.filter((r) => r.type === type);
  return refs.flatMap((r) => loadTrustStore(ctx.spec.truststoreDir, r));
}

/** The thumbprint annotation lets us skip a signature without downloading it; it never makes one trusted. */
function thumbprintMismatch(art: SignatureArtifact, ctx: Ctx): string | undefined {
  if (ctx.st.enforcement.authenticity !== 'enforce') return undefined;
  const raw = art.manifest.annotations?.[THUMBPRINT_ANNOTATION];
  if (!raw) return undefined;
  let prints: unknown;
  try {
    prints = JSON.parse(raw);
  } catch {
    return undefined;
  }
  if (!Array.isArray(prints) || prints.length === 0 || !prints.every((p) => typeof p === 'string')) return undefined;
  let anchors: Certificate[];
  try {
    anchors = [...storesOfType(ctx, 'ca'), ...storesOfType(ctx, 'signingAuthority')];
  } catch {
    return undefined; // let the full check report the trust store problem
  }
  const set = new Set((prints as string[]).map((p) => p.toLowerCase()));
  return anchors.some((a) => set.has(a.sha256))
    ? undefined
    : 'no certificate of its chain (per its thumbprint annotation) is in the trust store; not downloaded';
}

function chainValidAt(chain: readonly Certificate[], t: Date): string | undefined {
  for (const c of chain) {
    if (t < c.notBefore) return `certificate ${c.subjectText} is not valid until ${c.notBefore.toISOString()}`;
    if (t > c.notAfter) return `certificate ${c.subjectText} expired at ${c.notAfter.toISOString()}`;
  }
  return undefined;
}

/**
 * The authentic timestamp check, as notation-go's verifyTimestamp: without a `tsa` store (or with
 * `afterCertExpiry` while the chain is unexpired) the chain must be valid now; otherwise a timestamp
 * countersignature must be present, verify against the tsa store, bound a time inside every
 * certificate's validity, and its TSA chain must not be revoked or of unknown revocation status.
 * Like notation, the signer's claimed signingTime is not compared with the TSA time.
 */
async function authenticTimestamp(
  env: Envelope,
  chain: readonly Certificate[],
  ctx: Ctx,
): Promise<{ ok: boolean; detail: string; validUntil?: Date }> {
  if (env.signingScheme === 'notary.x509.signingAuthority') {
    const t = env.authenticSigningTime!;
    const bad = chainValidAt(chain, t);
    return bad
      ? { ok: false, detail: `at the authentic signing time ${t.toISOString()}, ${bad}` }
      : { ok: true, detail: `chain valid at the authentic signing time ${t.toISOString()}` };
  }
  const tsaRefs = ctx.st.trustStores.filter((r) => r.type === 'tsa');
  let useTimestamp = tsaRefs.length > 0;
  if (useTimestamp && ctx.st.verifyTimestamp === 'afterCertExpiry' && !chain.some((c) => ctx.now > c.notAfter))
    useTimestamp = false;
  if (!useTimestamp) {
    const why =
      tsaRefs.length === 0
        ? 'no tsa trust store in the trust policy'
        : 'verifyTimestamp is afterCertExpiry and the chain has not expired';
    const bad = chainValidAt(chain, ctx.now);
    if (bad) return { ok: false, detail: `timestamp not used (${why}), so the chain must be valid now: ${bad}` };
    const validUntil = new Date(Math.min(...chain.map((c) => c.notAfter.getTime())));
    return { ok: true, detail: `certificate chain is valid now (timestamp not used: ${why})`, validUntil };
  }
  if (!env.timestampToken)
    return {
      ok: false,
      detail: 'no timestamp countersignature in the signature, but the trust policy has a tsa trust store',
    };
  let tsa: Certificate[];
  try {
    tsa = storesOfType(ctx, 'tsa');
  } catch (e) {
    return { ok: false, detail: (e as Error).message };
  }
  let ts: ReturnType<typeof verifyTimestampToken>;
  try {
    ts = verifyTimestampToken(env.timestampToken, env.signature, tsa);
  } catch (e) {
    return { ok: false, detail: `timestamp countersignature: ${(e as Error).message}` };
  }
  for (const c of chain) {
    if (ts.earliest < c.notBefore || ts.latest > c.notAfter) {
      return {
        ok: false,
        detail:
          `timestamp ${ts.earliest.toISOString()}..${ts.latest.toISOString()} is not inside the ` +
          `validity of certificate ${c.subjectText}`,
      };
    }
  }
  // notation 1.2+ checks the TSA chain's revocation as part of this check (revoked or unknown fails it).
  let rev: Awaited<ReturnType<typeof checkRevocation>>;
  try {
    rev = await checkRevocation(ts.chain, ctx.spec.revocation, ctx.deadline, ctx.now);
  } catch (e) {
    rev = { result: 'unknown' as const, detail: `revocation check could not run: ${(e as Error).message}` };
  }
  if (rev.result !== 'ok') return { ok: false, detail: `timestamping certificate chain: ${rev.detail}` };
  return { ok: true, detail: `timestamped ${ts.earliest.toISOString()} by ${ts.tsa}; chain was valid then` };
}

type Check = { readonly ok: boolean; readonly detail: string };

/**
 * Integrity (notation-go verifyIntegrity): envelope rules, certificate rules, alg vs key, the signature
 * itself, and the payload naming exactly the pulled descriptor (digest, size and mediaType). Always
 * enforced, whatever the level.
 */
async function checkIntegrity(
  art: SignatureArtifact,
  layer: OciDescriptor,
  ctx: Ctx,
): Promise<{ ok: true; detail: string; env: Envelope; chain: Certificate[] } | { ok: false; detail: string }> {
  let env: Envelope;
  let chain: Certificate[];
  try {
    const blob = await art.fetchBlob(layer);
    env = layer.mediaType === MEDIA_TYPE_JWS ? parseJws(blob) : parseCose(blob);
    chain = verifyEnvelopeSignature(env);
  } catch (e) {
    return { ok: false, detail: (e as Error).message };
  }
  if (env.verificationPlugin) {
    return {
      ok: false,
      detail: `the signature requires verification plugin "${env.verificationPlugin}", which pullguard does not run`,
    };
  }
  let target: ReturnType<typeof parsePayload>;
  try {
    target = parsePayload(env.payload);
  } catch (e) {
    return { ok: false, detail: (e as Error).message };
  }
  const want = ctx.subject.descriptor;
  if (target.digest !== want.digest || target.size !== want.size || target.mediaType !== want.mediaType) {
    const signed = `${target.mediaType} ${shortDigest(target.digest)} (${target.size} bytes)`;
    return {
      ok: false,
      detail:
        `signature is for ${signed}, not the pulled ${want.mediaType} ${shortDigest(want.digest)} ` +
        `(${want.size} bytes)`,
    };
  }
  const detail =
    `${env.format.toUpperCase()} ${env.alg} signature over ${shortDigest(want.digest)} ` +
    `verifies with ${chain[0]!.subjectText}`;
  return { ok: true, detail, env, chain };
}

/**
 * Authenticity (notation-go verifyAuthenticity): a certificate of the chain is in a trust store of the
 * type the signing scheme requires, and the leaf subject matches a trusted identity.
 */
function checkAuthenticity(env: Envelope, chain: readonly Certificate[], ctx: Ctx): Check {
  const type: TrustStoreType = env.signingScheme === 'notary.x509' ? 'ca' : 'signingAuthority';
  const refs = ctx.st.trustStores.filter((r) => r.type === type);
  if (refs.length === 0) {
    return {
      ok: false,
      detail:
        `no trusted certificates: signing scheme ${env.signingScheme} needs a ${type} trust store, ` +
        `and statement "${ctx.st.name}" has none`,
    };
  }
  let anchors: Certificate[];
  try {
    anchors = storesOfType(ctx, type);
  } catch (e) {
    return { ok: false, detail: (e as Error).message };
  }
  const anchor = chain.find((c) => anchors.some((a) => a.der.equals(c.der)));
  if (!anchor) {
    const stores = refs.map((r) => `${r.type}:${r.name}`).join(', ');
    return {
      ok: false,
      detail:
        `no certificate of the chain (root ${chain[chain.length - 1]!.subjectText}) is in ` +
        `trust store(s) ${stores}`,
    };
  }
  const ids = ctx.st.trustedIdentities;
  const leaf = chain[0]!;
  if (ids) {
    if (typeof leaf.subject === 'string')
      return { ok: false, detail: `signing certificate subject cannot be compared: ${leaf.subject}` };
    const subj = leaf.subject;
    if (!ids.some((id) => isSubsetDn(id.dn, subj))) {
      return {
        ok: false,
        detail:
          `signing certificate subject "${formatDn(subj)}" matches none of the trusted identities ` +
          `of statement "${ctx.st.name}"`,
      };
    }
  }
  return {
    ok: true,
    detail: `chain anchored at ${anchor.subjectText} in ${type} trust store; identity ${ids ? 'matches' : '"*" (any)'}`,
  };
}

async function verifyOne(art: SignatureArtifact, ctx: Ctx): Promise<SignatureResult> {
  const base = { class: art.class, foundVia: art.foundVia, repository: art.repository, artifact: art.digest };
  const rec = new CheckRecorder(ctx.st);
  let validUntil: Date | undefined;
  const done = (code?: ErrorCode, signer?: string): SignatureResult => {
    const lost = rec.failedEnforced;
    const logged = rec.checks.filter((c) => c.result === 'fail' && c.enforcement === 'logged').map((c) => c.check);
    const signedBy = signer ? ` (signed by ${signer})` : '';
    const loggedFailures = logged.length ? `; logged failures: ${logged.join(', ')}` : '';
    return {
      ...base,
      valid: !lost,
      reason: lost ? `${lost.check} failed: ${lost.detail}` : `verified${signedBy}${loggedFailures}`,
      code: lost ? (code ?? (lost.check === 'authenticity' ? 'SIGNATURE_UNTRUSTED' : 'SIGNATURE_INVALID')) : undefined,
      signer,
      checks: rec.finish(),
      ...(!lost && validUntil ? { validUntil: validUntil.toISOString() } : {}),
    };
  };

  const layer: OciDescriptor | undefined = art.manifest.layers[0];
  if (
    art.manifest.layers.length !== 1 ||
    !layer ||
    (layer.mediaType !== MEDIA_TYPE_JWS && layer.mediaType !== MEDIA_TYPE_COSE)
  ) {
    rec.record(
      'integrity',
      false,
      `signature manifest must have exactly one ${MEDIA_TYPE_JWS} or ${MEDIA_TYPE_COSE} layer`,
    );
    return done();
  }
  const skip = thumbprintMismatch(art, ctx);
  if (skip) {
    rec.skipped('integrity', 'not evaluated: skipped by thumbprint');
    rec.record('authenticity', false, skip);
    return done('SIGNATURE_UNTRUSTED');
  }
  if (ctx.deadline.signal.aborted) {
    rec.record('integrity', false, 'deadline exceeded before the signature was checked');
    return done('DEADLINE_EXCEEDED');
  }

  const integrity = await checkIntegrity(art, layer, ctx);
  if (!integrity.ok) {
    rec.record('integrity', false, integrity.detail);
    return done();
  }
  const { env, chain } = integrity;
  const signer = chain[0]!.subjectText;
  rec.record('integrity', true, integrity.detail);

  const authenticity = checkAuthenticity(env, chain, ctx);
  if (rec.record('authenticity', authenticity.ok, authenticity.detail)) return done(undefined, signer);

  // Expiry: the signer's own `io.cncf.notary.expiry`.
  {
    const exp = env.expiry;
    const ok = !exp || ctx.now < exp;
    if (
      rec.record(
        'expiry',
        ok,
        !exp
          ? 'signature has no expiry'
          : ok
            ? `signature valid until ${exp.toISOString()}`
            : `signature expired at ${exp.toISOString()}`,
      )
    ) {
      return done(undefined, signer);
    }
  }

  {
    const at = await authenticTimestamp(env, chain, ctx);
    // What an enforced check judged against the current time bounds a cached allow (src/cache/).
    if (ctx.st.enforcement.authenticTimestamp === 'enforce') validUntil = at.validUntil;
    if (env.expiry && ctx.st.enforcement.expiry === 'enforce' && (!validUntil || env.expiry < validUntil))
      validUntil = env.expiry;
    if (rec.record('authenticTimestamp', at.ok, at.detail)) return done(undefined, signer);
  }

  if (ctx.st.enforcement.revocation === 'skip') {
    rec.skipped('revocation', 'revocation checking is skipped by the trust policy');
  } else {
    let out: Awaited<ReturnType<typeof checkRevocation>>;
    try {
      out = await checkRevocation(chain, ctx.spec.revocation, ctx.deadline, ctx.now);
    } catch (e) {
      out = { result: 'unknown' as const, detail: `revocation check could not run: ${(e as Error).message}` };
    }
    rec.record('revocation', out.result === 'ok', out.detail);
  }
  return done(undefined, signer);
}

/** Ranks failed signatures so the reason shown is the most informative one (the one that got furthest). */
function progress(r: SignatureResult): number {
  return r.checks.filter((c) => c.result === 'pass').length;
}

/** The notation verifier, reading the time from `clock` (tests inject one to judge expiry without waiting). */
export function createNotationVerifier(clock: () => Date = () => new Date()): Verifier<'notation'> {
  return {
    ...notationVerifier,
    verify: (authority, subject, artifacts, deadline) => verifyAt(clock(), authority, subject, artifacts, deadline),
  };
}

export const notationVerifier: Verifier<'notation'> = {
  kind: 'notation',
  needs: () => ({ classes: ['notation'] }),
  verify: (authority, subject, artifacts, deadline) => verifyAt(new Date(), authority, subject, artifacts, deadline),
};

async function verifyAt(
  now: Date,
  authority: Parameters<Verifier<'notation'>['verify']>[0],
  subject: Subject,
  artifacts: readonly SignatureArtifact[],
  deadline: Deadline,
): Promise<AuthorityResult> {
  const head = { authority: authority.name, kind: 'notation' };
  const { spec } = authority;
  const repository = repositoryOf(subject.reference);
  const st = spec.statement;

  const sigs = artifacts.filter((a) => a.class === 'notation');
  if (sigs.length === 0) {
    return {
      ...head,
      satisfied: false,
      reason: `no notation signature found for ${repository}@${shortDigest(subject.descriptor.digest)}`,
      code: 'NO_SIGNATURE',
      signatures: [],
    };
  }
  const ctx: Ctx = { spec, st, subject, deadline, now };
  const results = await Promise.all(sigs.map((a) => verifyOne(a, ctx)));
  const good = results.find((r) => r.valid);
  if (good) {
    return {
      ...head,
      satisfied: true,
      reason:
        `notation signature ${shortDigest(good.artifact)} ${good.reason} under statement ` +
        `"${st.name}" (${st.level})`,
      signatures: results,
    };
  }
  const best = [...results].sort((a, b) => progress(b) - progress(a))[0]!;
  const more = results.length > 1 ? ` (${results.length} notation signatures, none valid)` : '';
  return {
    ...head,
    satisfied: false,
    reason: `notation signature ${shortDigest(best.artifact)}: ${best.reason}${more}`,
    code: best.code ?? 'SIGNATURE_INVALID',
    signatures: results,
  };
}

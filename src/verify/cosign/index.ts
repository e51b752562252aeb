import { X509Certificate } from '@sigstore/core';
import {
  Verifier as SigstoreVerifier,
  VerificationError,
  type SignedEntity,
  type TrustMaterial,
} from '@sigstore/verify';
// Not exported from the package index: the chain and SCT checks on their own, for certificates that come
// with no transparency-log or TSA time (a private CA without Rekor). The Verifier class cannot express
// "verify this certificate now"; these are the same functions it calls, pinned with the package.
import { verifyCertificateChain } from '@sigstore/verify/dist/key/certificate.js';
import { verifySCTs } from '@sigstore/verify/dist/key/sct.js';
import { getTLogTimestamp, getTSATimestamp } from '@sigstore/verify/dist/timestamp/index.js';
import type { TransparencyLogEntry } from '@sigstore/bundle';
import type { Deadline } from '../../common/deadline.js';
import { shortDigest } from '../../common/digest.js';
import { isPullguardError, type ErrorCode } from '../../common/errors.js';
import type {
  CosignCertificatesSpec,
  CosignKey,
  CosignKeylessSpec,
  CosignKeysSpec,
  CosignSpec,
} from '../../policy/authorities/cosign.js';
import type { ArtifactClass, SignatureArtifact } from '../../registry/types.js';
import { Checks, Rejection } from '../checks.js';
import type { AuthorityResult, SignatureResult, Subject, Verifier } from '../types.js';
import {
  candidatesOf,
  FormatError,
  NotASignature,
  parseCandidate,
  type Candidate,
  type ParsedSignature,
} from './formats.js';
import {
  certificateFacts,
  describeCertificate,
  identityMatches,
  matchSignedIdentity,
  type CertificateFacts,
  type ImageIdentity,
} from './identity.js';
import { admitChain, spkiKey, trustFor, type AuthorityTrust } from './trust.js';

const SIGNATURE_CLASSES: readonly ArtifactClass[] = ['cosign-legacy', 'cosign-legacy-referrer', 'cosign-bundle'];
/** Bound on signatures judged per authority: each costs a blob fetch. */
const MAX_CANDIDATES = 64;

export const cosignVerifier: Verifier<'cosign'> = {
  kind: 'cosign',

  needs({ spec }) {
    // Attestations (.att, attestation bundles) are not asked for: they are never signatures.
    return { classes: SIGNATURE_CLASSES, signatureRepository: spec.signatureRepository };
  },

  async verify(
    authority,
    subject: Subject,
    artifacts: readonly SignatureArtifact[],
    deadline: Deadline,
  ): Promise<AuthorityResult> {
    const { spec } = authority;
    const trust = trustFor(spec);
    const signatures: SignatureResult[] = [];
    const jobs: Candidate[] = [];
    for (const artifact of artifacts) {
      if (!SIGNATURE_CLASSES.includes(artifact.class)) {
        if (artifact.class === 'attestation')
          signatures.push(notASignature(artifact, 'an attestation, not a signature'));
        continue;
      }
      const { candidates, skipped } = candidatesOf(artifact);
      if (candidates.length === 0)
        signatures.push(notASignature(artifact, `no cosign signature layer (${skipped.join('; ') || 'no layers'})`));
      jobs.push(...candidates);
    }
    const judged = jobs.slice(0, MAX_CANDIDATES);
    // In parallel: each needs a blob fetch, and the pull waits for the slowest, not the sum.
    signatures.push(...(await Promise.all(judged.map((c) => judge(c, spec, trust, subject, deadline)))));

    const base = { authority: authority.name, kind: 'cosign', signatures };
    const valid = signatures.find((s) => s.valid);
    if (valid)
      return {
        ...base,
        satisfied: true,
        reason: `verified ${valid.class} signature${valid.signer ? ` by ${valid.signer}` : ''}`,
      };
    const where = `${subject.reference.domain}/${subject.reference.path}@${shortDigest(subject.reference.digest)}`;
    const extra = jobs.length > MAX_CANDIDATES ? ` (only the first ${MAX_CANDIDATES} of ${jobs.length} checked)` : '';
    if (signatures.length === 0)
      return { ...base, satisfied: false, code: 'NO_SIGNATURE', reason: `no cosign signature found for ${where}` };
    // The most telling failure is the one that got furthest (e.g. "identity mismatch" beats "untrusted key").
    const best = [...signatures].sort((a, b) => passed(b) - passed(a))[0]!;
    const count = signatures.length > 1 ? ` (${signatures.length} signatures, none valid${extra})` : extra;
    return { ...base, satisfied: false, code: best.code ?? 'SIGNATURE_INVALID', reason: `${best.reason}${count}` };
  },
};

const passed = (s: SignatureResult) => s.checks.filter((c) => c.result === 'pass').length;

function notASignature(artifact: SignatureArtifact, reason: string): SignatureResult {
  return {
    class: artifact.class,
    foundVia: artifact.foundVia,
    repository: artifact.repository,
    artifact: artifact.digest,
    valid: false,
    reason,
    code: 'NO_SIGNATURE',
    checks: [{ check: 'format', result: 'fail', enforcement: 'enforced', detail: reason }],
  };
}

async function judge(
  c: Candidate,
  spec: CosignSpec,
  trust: AuthorityTrust,
  subject: Subject,
  deadline: Deadline,
): Promise<SignatureResult> {
  const checks = new Checks();
  const base = {
    class: c.artifact.class,
    foundVia: c.artifact.foundVia,
    repository: c.artifact.repository,
    artifact: `${c.artifact.digest}#${c.layerIndex}`,
  };
  let signer: string | undefined;
  try {
    let parsed: ParsedSignature;
    try {
      parsed = await parseCandidate(c);
    } catch (e) {
      if (e instanceof NotASignature) checks.fail('predicate-type', 'NO_SIGNATURE', e.message);
      if (e instanceof FormatError) checks.fail('format', 'SIGNATURE_INVALID', e.message);
      if (isPullguardError(e)) checks.fail('fetch', e.code, e.message);
      throw e;
    }
    if (deadline.signal.aborted) checks.fail('deadline', 'DEADLINE_EXCEEDED', 'out of time before verifying');
    checks.pass(
      'format',
      parsed.format === 'simple-signing'
        ? 'cosign simple-signing payload'
        : 'sigstore bundle v0.3, DSSE in-toto statement, predicate cosign/sign/v1',
    );

    // 1. The signature is about this exact image. Cheap, and independent of who signed.
    const want = subject.reference.digest;
    if (!parsed.signedDigests.includes(want)) {
      checks.fail(
        'digest',
        'SIGNATURE_INVALID',
        `signed for ${parsed.signedDigests.map(shortDigest).join(', ') || 'no digest'}, not the pulled ` +
          `${shortDigest(want)}`,
      );
    }
    checks.pass('digest', `signed digest is ${shortDigest(want)}`);

    // 2. Cryptography and trust, by @sigstore/verify.
    signer =
      spec.mode === 'keys'
        ? verifyWithKeys(parsed, spec, trust, checks)
        : verifyWithCertificate(parsed, spec, trust, checks);

    // 3. The repository the signer vouched for.
    if (parsed.dockerReference !== undefined) {
      const intended: ImageIdentity = {
        name: `${subject.reference.domain}/${subject.reference.path}`,
        tag: subject.reference.tag,
        digest: subject.reference.tag === undefined ? subject.reference.digest : undefined,
      };
      const v = matchSignedIdentity(spec.signedIdentity, intended, parsed.dockerReference);
      if (!v.ok) checks.fail('signed-identity', 'SIGNATURE_UNTRUSTED', v.detail);
      checks.pass('signed-identity', `${spec.signedIdentity.type}: ${v.detail}`);
    } else {
      checks.skip(
        'signed-identity',
        'a bundle names no repository: it binds the digest only, so signedIdentity cannot be checked',
      );
    }
    return {
      ...base,
      valid: true,
      reason: 'valid',
      signer,
      checks: checks.list,
      ...(checks.validUntil ? { validUntil: checks.validUntil.toISOString() } : {}),
    };
  } catch (e) {
    if (e instanceof Rejection)
      return { ...base, valid: false, reason: e.message, code: e.code, signer, checks: checks.list };
    const message = e instanceof Error ? e.message : String(e);
    checks.list.push({ check: 'internal', result: 'fail', enforcement: 'enforced', detail: message });
    return {
      ...base,
      valid: false,
      reason: `cannot verify: ${message}`,
      code: 'INTERNAL',
      signer,
      checks: checks.list,
    };
  }
}

/** Rekor v1 entries with an inclusion promise carry a signed time; @sigstore/verify checks it. */
function tlogTimestamps(entries: readonly TransparencyLogEntry[]): SignedEntity['timestamps'] {
  return entries
    .filter((e) => e.integratedTime && e.integratedTime !== '0')
    .map((tlogEntry) => ({ $case: 'transparency-log' as const, tlogEntry }));
}

function describeTlog(entries: readonly TransparencyLogEntry[]): string {
  return entries
    .map((e) => {
      const set = e.inclusionPromise ? ' (SET)' : '';
      const proof = e.inclusionProof ? ' (inclusion proof)' : '';
      return `Rekor logIndex ${e.logIndex}${set}${proof}`;
    })
    .join(', ');
}

function errorText(e: unknown): string {
  const err = e as { message?: string; cause?: { message?: string } };
  const cause = err.cause?.message;
  return cause && cause !== err.message ? `${err.message}: ${cause}` : (err.message ?? String(e));
}

/**
 * Which check a @sigstore/verify VerificationError belongs to, by its `code`. A bad chain and a bad or
 * missing SCT share CERTIFICATE_ERROR; `certificateCheck` tells them apart (given for certificates only).
 */
function checkOf(e: unknown, certificateCheck?: () => 'sct' | 'certificate-chain'): { check: string; code: ErrorCode } {
  const code = e instanceof VerificationError ? e.code : undefined;
  if (code?.startsWith('TLOG')) return { check: 'tlog', code: 'SIGNATURE_UNTRUSTED' };
  if (code === 'TIMESTAMP_ERROR') return { check: 'timestamp', code: 'SIGNATURE_UNTRUSTED' };
  if (code === 'CERTIFICATE_ERROR')
    return { check: certificateCheck?.() ?? 'certificate-chain', code: 'SIGNATURE_UNTRUSTED' };
  if (code === 'SIGNATURE_ERROR') return { check: 'signature', code: 'SIGNATURE_INVALID' };
  if (code === 'PUBLIC_KEY_ERROR') return { check: 'key', code: 'SIGNATURE_UNTRUSTED' };
  return { check: 'verification', code: 'SIGNATURE_INVALID' };
}

/**
 * After a CERTIFICATE_ERROR from the Verifier: was it the chain or the SCT? Its Verifier checks the chain
 * (verifyCertificateChain) at every signed time before it looks at any SCT, so if the chain holds at all
 * of them here, the SCT check is what failed. Only on the failure path; the same functions it calls.
 */
function chainOrSct(entity: SignedEntity, leaf: X509Certificate, material: TrustMaterial): 'sct' | 'certificate-chain' {
  try {
    for (const t of entity.timestamps) {
      const at =
        t.$case === 'transparency-log'
          ? getTLogTimestamp(t.tlogEntry)
          : getTSATimestamp(t.timestamp, entity.signature.signature, material.timestampAuthorities);
      if (at) verifyCertificateChain(at.timestamp, leaf, material.certificateAuthorities);
    }
  } catch {
    return 'certificate-chain';
  }
  return 'sct';
}

// --- public keys -------------------------------------------------------------------------------------------

function verifyWithKeys(parsed: ParsedSignature, spec: CosignKeysSpec, trust: AuthorityTrust, checks: Checks): string {
  const tlogEntries = spec.tlog ? parsed.tlogEntries : [];
  const failures: { key: CosignKey; error: unknown }[] = [];
  for (const key of spec.keys) {
    const entity: SignedEntity = {
      signature: parsed.content,
      // The hint is only a lookup key into the trust material; the key tried is the policy's.
      key: { $case: 'public-key', hint: key.hint },
      tlogEntries: [...tlogEntries],
      timestamps: tlogTimestamps(tlogEntries),
    };
    try {
      new SigstoreVerifier(trust.material(key), {
        tlogThreshold: spec.tlog ? 1 : 0,
        ctlogThreshold: 0,
        timestampThreshold: 0,
      }).verify(entity);
      recordTlog(spec, parsed, checks);
      const who = `${key.description} key ${key.source}`;
      checks.pass('signature', `verified with the ${who}`);
      return who;
    } catch (error) {
      failures.push({ key, error });
    }
  }
  // Prefer a failure other than "wrong key": a tlog problem with the right key says more.
  const notSignature = failures.find((f) => checkOf(f.error).check !== 'signature');
  if (notSignature) {
    const { check, code } = checkOf(notSignature.error);
    checks.fail(check, code, `${check}: ${errorText(notSignature.error)}`);
  }
  const ed = spec.keys.some((k) => k.key.asymmetricKeyType === 'ed25519')
    ? ' (Ed25519 is verified as pure Ed25519; cosign 3.1.1 signs Ed25519ph, which neither cosign nor pullguard accepts)'
    : '';
  const named = parsed.keyHint !== undefined ? spec.keys.find((k) => k.hint === parsed.keyHint) : undefined;
  if (named)
    checks.fail(
      'signature',
      'SIGNATURE_INVALID',
      `signature does not verify with the trusted ${named.description} key ${named.source} it names: ` +
        `the signature or payload was altered${ed}`,
    );
  const keys =
    spec.keys.length === 1
      ? `the trusted ${spec.keys[0]!.description} key ${spec.keys[0]!.source}`
      : `any of the ${spec.keys.length} trusted keys`;
  return checks.fail(
    'signature',
    'SIGNATURE_UNTRUSTED',
    `signature does not verify with ${keys}: signed by another key, or altered${ed}`,
  );
}

function recordTlog(spec: CosignSpec, parsed: ParsedSignature, checks: Checks): void {
  if (spec.tlog) checks.pass('tlog', `${describeTlog(parsed.tlogEntries)} verified offline`);
  else
    checks.skip(
      'tlog',
      parsed.tlogEntries.length > 0
        ? `not required by policy; ${describeTlog(parsed.tlogEntries)} not checked`
        : 'not required by policy',
    );
}

// --- certificates (private CA, or keyless Fulcio) -----------------------------------------------------------

function verifyWithCertificate(
  parsed: ParsedSignature,
  spec: CosignCertificatesSpec | CosignKeylessSpec,
  trust: AuthorityTrust,
  checks: Checks,
): string {
  if (!parsed.leaf)
    checks.fail(
      'certificate',
      'SIGNATURE_UNTRUSTED',
      'signature carries no certificate, but this authority trusts certificates only',
    );
  let facts: CertificateFacts;
  let leaf: X509Certificate;
  try {
    facts = certificateFacts(parsed.leaf!);
    leaf = X509Certificate.parse(parsed.leaf! as Buffer<ArrayBuffer>);
  } catch (e) {
    return checks.fail('certificate', 'SIGNATURE_INVALID', `certificate does not parse: ${(e as Error).message}`);
  }
  const who = describeCertificate(facts);
  if (!facts.codeSigning)
    checks.fail(
      'certificate-usage',
      'SIGNATURE_UNTRUSTED',
      `certificate of ${who} is not for code signing (extended key usage)`,
    );

  const material: TrustMaterial = trust.material(undefined, admitChain(trust.cas, parsed.chain));
  const tlogEntries = spec.tlog ? parsed.tlogEntries : [];
  const tsa = material.timestampAuthorities.length > 0 ? parsed.tsaTimestamps : [];
  const timestamps = [
    ...tlogTimestamps(tlogEntries),
    ...tsa.map((timestamp) => ({ $case: 'timestamp-authority' as const, timestamp })),
  ];

  if (timestamps.length > 0) {
    // The normal sigstore path: the chain is checked at the signed times (log integration, TSA), so a
    // ten-minute Fulcio certificate still verifies years later.
    const entity: SignedEntity = {
      signature: parsed.content,
      key: { $case: 'certificate', certificate: leaf },
      tlogEntries: [...tlogEntries],
      timestamps,
    };
    try {
      new SigstoreVerifier(material, {
        tlogThreshold: spec.tlog ? 1 : 0,
        ctlogThreshold: spec.sct ? 1 : 0,
        timestampThreshold: 1,
      }).verify(entity);
    } catch (e) {
      const { check, code } = checkOf(e, () => chainOrSct(entity, leaf, material));
      checks.fail(check, code, `${check} (${who}): ${errorText(e)}`);
    }
    const when = timestamps
      .map((t) =>
        t.$case === 'transparency-log'
          ? `log time ${new Date(Number(t.tlogEntry.integratedTime) * 1000).toISOString()}`
          : 'TSA time',
      )
      .join(', ');
    const roots =
      trust.rootSource === 'none' ? 'policy roots' : spec.mode === 'keyless' ? trust.rootSource : 'policy roots';
    checks.pass('certificate-chain', `chains to a trusted CA (${roots}) at ${when}`);
    if (spec.sct) checks.pass('sct', 'embedded SCT verified');
    recordTlog(spec, parsed, checks);
    checks.pass('signature', `verified with the certificate key of ${who}`);
  } else {
    // No signed time: the certificate must be valid now, as cosign does without tlog or TSA ("expected
    // a signed timestamp to verify an expired certificate").
    if (spec.tlog)
      checks.fail(
        'tlog',
        'SIGNATURE_UNTRUSTED',
        'policy requires a transparency-log entry; the signature has none with a signed time',
      );
    const now = new Date();
    let path: X509Certificate[];
    try {
      path = verifyCertificateChain(now, leaf, material.certificateAuthorities);
    } catch (e) {
      return checks.fail(
        'certificate-chain',
        'SIGNATURE_UNTRUSTED',
        `certificate of ${who} does not chain to a trusted CA at ${now.toISOString()} ` +
          `(no log or TSA time to check it at instead): ${errorText(e)}`,
      );
    }
    checks.pass('certificate-chain', `chains to a trusted CA now (${path.length} certificates; no log or TSA time)`);
    checks.validUntil = new Date(Math.min(...path.map((c) => c.notAfter.getTime())));
    if (spec.sct) {
      try {
        if (path.length < 2 || verifySCTs(path[0]!, path[1]!, material.ctlogs).length < 1)
          checks.fail('sct', 'SIGNATURE_UNTRUSTED', `certificate of ${who} has no SCT, and the policy requires one`);
      } catch (e) {
        if (e instanceof Rejection) throw e;
        checks.fail('sct', 'SIGNATURE_UNTRUSTED', `SCT of ${who}: ${errorText(e)}`);
      }
      checks.pass('sct', 'embedded SCT verified');
    } else checks.skip('sct', 'not required by policy');
    checks.skip('tlog', 'not required by policy');
    if (!parsed.content.verifySignature(spkiKey(leaf.publicKey))) {
      checks.fail(
        'signature',
        'SIGNATURE_INVALID',
        `signature does not verify with the certificate key of ${who}: the signature or payload was altered`,
      );
    }
    checks.pass('signature', `verified with the certificate key of ${who}`);
  }

  if (!spec.identities.some((id) => identityMatches(id, facts))) {
    const issuerNote = facts.issuerProblem ? `; ${facts.issuerProblem}` : '';
    checks.fail(
      'certificate-identity',
      'SIGNATURE_UNTRUSTED',
      `certificate identity ${who} matches none of the ${spec.identities.length} allowed identities${issuerNote}`,
    );
  }
  checks.pass('certificate-identity', `${who} is an allowed identity`);
  return who;
}

/**
 * The atproto verifier: an image is signed when a trusted DID's AT Protocol repository holds a record
 * for exactly this digest and repository, proven by the repository's signed commit. One function per
 * check, in the order they run (each throws a Rejection that ends the signature's judgement):
 *
 *   artifact   the referrer's blob is a record pointer (pointer.ts)
 *   trust      its DID is one the policy trusts
 *   identity   the DID document (pinned, PLC directory or did:web) gives the #atproto key, and the handle
 *   pds        the document names a PDS the policy allows, and it serves the record proof
 *   commit     the proof's root is a v3 commit of that DID (proof.ts)
 *   signature  signed by the DID's current #atproto key
 *   inclusion  the MST holds the record, every block hashing to its CID
 *   record     the record is an io.atcr.manifest for this digest and repository (record.ts)
 */
import type { Deadline } from '../../common/deadline.js';
import { shortDigest } from '../../common/digest.js';
import { isPullguardError, type ErrorCode } from '../../common/errors.js';
import type { AtprotoSpec, AtprotoTrustedDid } from '../../policy/authorities/atproto.js';
import type { SignatureArtifact } from '../../registry/types.js';
import { USER_AGENT } from '../../common/build.js';
import { Checks, Rejection } from '../checks.js';
import type { AuthorityResult, SignatureResult, Subject, Verifier } from '../types.js';
import { didDocumentUrl, parseDidDocument, type AtprotoIdentity } from './did.js';
import { createFetcher, type AtprotoFetcher } from './fetch.js';
import { checkCommitSignature, findRecord, ProofError, readCommit } from './proof.js';
import { ATPROTO_SIGNATURE_MEDIA_TYPE, parsePointer, type RecordPointer } from './pointer.js';
import { checkRecord } from './record.js';

/** Bound on signatures judged per authority: each costs a blob, a DID document and a proof fetch. */
const MAX_CANDIDATES = 16;

interface Run {
  readonly spec: AtprotoSpec;
  readonly subject: Subject;
  readonly deadline: Deadline;
  readonly fetcher: AtprotoFetcher;
  /** One resolution per DID per pull, shared by every artifact that names it. */
  readonly identities: Map<string, Promise<AtprotoIdentity>>;
}

const errorText = (e: unknown) => (e instanceof Error ? e.message : String(e)).split('\n')[0]!;
const codeOf = (e: unknown, fallback: ErrorCode): ErrorCode => (isPullguardError(e) ? e.code : fallback);

export function createAtprotoVerifier(makeFetcher: (spec: AtprotoSpec) => AtprotoFetcher): Verifier<'atproto'> {
  return {
    kind: 'atproto',
    needs: () => ({ classes: ['atproto'] }),
    async verify(
      authority,
      subject: Subject,
      artifacts: readonly SignatureArtifact[],
      deadline: Deadline,
    ): Promise<AuthorityResult> {
      const { spec } = authority;
      const run: Run = { spec, subject, deadline, fetcher: makeFetcher(spec), identities: new Map() };
      const candidates = artifacts.filter((a) => a.class === 'atproto');
      const signatures = await Promise.all(candidates.slice(0, MAX_CANDIDATES).map((a) => judge(a, run)));
      const base = { authority: authority.name, kind: 'atproto', signatures };
      const valid = signatures.find((s) => s.valid);
      if (valid) return { ...base, satisfied: true, reason: `verified atproto record signed by ${valid.signer}` };
      const where = `${subject.reference.domain}/${subject.reference.path}@${shortDigest(subject.reference.digest)}`;
      if (signatures.length === 0)
        return { ...base, satisfied: false, code: 'NO_SIGNATURE', reason: `no atproto signature found for ${where}` };
      const best = [...signatures].sort((a, b) => passed(b) - passed(a))[0]!;
      const count = signatures.length > 1 ? ` (${signatures.length} signatures, none valid)` : '';
      return { ...base, satisfied: false, code: best.code ?? 'SIGNATURE_INVALID', reason: `${best.reason}${count}` };
    },
  };
}

export const atprotoVerifier: Verifier<'atproto'> = createAtprotoVerifier((spec) =>
  createFetcher(spec.caFiles, USER_AGENT),
);

const passed = (s: SignatureResult) => s.checks.filter((c) => c.result === 'pass').length;

async function judge(artifact: SignatureArtifact, run: Run): Promise<SignatureResult> {
  const checks = new Checks();
  const base = {
    class: artifact.class,
    foundVia: artifact.foundVia,
    repository: artifact.repository,
    artifact: artifact.digest,
  };
  let signer: string | undefined;
  try {
    const pointer = await readPointer(artifact, run, checks);
    const trusted = checkTrust(pointer, run, checks);
    signer = trusted.handle ? `${trusted.did} (${trusted.handle})` : trusted.did;
    const identity = await resolveIdentity(trusted, run, checks);
    const proof = await fetchProof(pointer, identity, run, checks);
    const commit = await step(checks, 'commit', () => readCommit(proof, identity.did));
    checks.pass('commit', `commit ${commit.cid.slice(0, 16)}... rev ${commit.rev} of ${commit.did}`);
    await step(checks, 'signature', () =>
      checkCommitSignature(commit, identity.signingKey, `${identity.did}'s #atproto key`),
    );
    checks.pass(
      'signature',
      `signed by ${identity.did}'s #atproto ${identity.signingKey.type} key ` +
        `${identity.signingKeyMultibase.slice(0, 16)}...`,
    );
    const found = await step(checks, 'inclusion', () =>
      findRecord(proof, identity.did, pointer.collection, pointer.rkey),
    );
    checks.pass('inclusion', `MST holds ${pointer.collection}/${pointer.rkey} as ${found.cid.slice(0, 16)}...`);
    checkRecordContent(pointer, found, trusted, run, checks);
    return {
      ...base,
      valid: true,
      reason: `record at://${pointer.did}/${pointer.collection}/${pointer.rkey} verified`,
      signer,
      checks: checks.list,
    };
  } catch (e) {
    if (e instanceof Rejection)
      return { ...base, valid: false, reason: e.message, code: e.code, signer, checks: checks.list };
    return {
      ...base,
      valid: false,
      reason: `internal error: ${errorText(e)}`,
      code: 'INTERNAL',
      signer,
      checks: checks.list,
    };
  }
}

/** Runs a proof step; its ProofError becomes that check's failure with the step's own code. */
async function step<T>(checks: Checks, check: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof ProofError) checks.fail(e.step, e.code, e.message);
    return checks.fail(check, codeOf(e, 'SIGNATURE_INVALID'), errorText(e));
  }
}

async function readPointer(artifact: SignatureArtifact, run: Run, checks: Checks): Promise<RecordPointer> {
  const layer = artifact.manifest.layers.find((l) => l.mediaType === ATPROTO_SIGNATURE_MEDIA_TYPE);
  if (!layer)
    return checks.fail(
      'artifact',
      'SIGNATURE_INVALID',
      `atproto signature artifact has no ${ATPROTO_SIGNATURE_MEDIA_TYPE} layer`,
    );
  let pointer: RecordPointer;
  try {
    pointer = parsePointer(await artifact.fetchBlob(layer));
  } catch (e) {
    return checks.fail('artifact', codeOf(e, 'SIGNATURE_INVALID'), errorText(e));
  }
  if (pointer.collection !== run.spec.collection) {
    return checks.fail(
      'artifact',
      'SIGNATURE_INVALID',
      `atproto signature points at a ${pointer.collection} record, not an ${run.spec.collection} record`,
    );
  }
  checks.pass('artifact', `points at at://${pointer.did}/${pointer.collection}/${pointer.rkey}`);
  return pointer;
}

function checkTrust(pointer: RecordPointer, run: Run, checks: Checks): AtprotoTrustedDid {
  const trusted = run.spec.trusted.find((t) => t.did === pointer.did);
  if (!trusted) {
    const list = run.spec.trusted.map((t) => t.did).join(', ');
    return checks.fail(
      'trust',
      'SIGNATURE_UNTRUSTED',
      `atproto record of ${pointer.did.slice(0, 80)}, which is not a trusted DID (trusted: ${list})`,
    );
  }
  checks.pass('trust', `${trusted.did} is trusted`);
  return trusted;
}

async function resolveIdentity(trusted: AtprotoTrustedDid, run: Run, checks: Checks): Promise<AtprotoIdentity> {
  let pending = run.identities.get(trusted.did);
  if (!pending) {
    pending = (async () => {
      const doc = trusted.pinned
        ? trusted.pinned.document
        : await run.fetcher.getJson(
            didDocumentUrl(trusted.did, run.spec.plcDirectory),
            `the DID document of ${trusted.did}`,
            run.deadline,
          );
      return parseDidDocument(doc, trusted.did);
    })();
    run.identities.set(trusted.did, pending);
  }
  let identity: AtprotoIdentity;
  try {
    identity = await pending;
  } catch (e) {
    return checks.fail('identity', codeOf(e, 'SIGNATURE_UNTRUSTED'), `cannot resolve ${trusted.did}: ${errorText(e)}`);
  }
  if (trusted.handle !== undefined && !identity.handles.includes(trusted.handle)) {
    const claimed = identity.handles.length ? identity.handles.join(', ') : 'none';
    return checks.fail(
      'identity',
      'SIGNATURE_UNTRUSTED',
      `DID document of ${trusted.did} does not claim the trusted handle ${trusted.handle} (alsoKnownAs: ${claimed})`,
    );
  }
  const from = trusted.pinned
    ? `pinned ${trusted.pinned.source}`
    : trusted.did.startsWith('did:web:')
      ? 'did:web'
      : run.spec.plcDirectory;
  checks.pass('identity', `DID document from ${from}${trusted.handle ? `, handle ${trusted.handle}` : ''}`);
  return identity;
}

async function fetchProof(
  pointer: RecordPointer,
  identity: AtprotoIdentity,
  run: Run,
  checks: Checks,
): Promise<Uint8Array> {
  const pds = identity.pds;
  if (!pds)
    return checks.fail('pds', 'SIGNATURE_UNTRUSTED', `DID document of ${identity.did} names no #atproto_pds service`);
  if (run.spec.pdsHosts && !run.spec.pdsHosts.includes(pds.host.toLowerCase())) {
    return checks.fail(
      'pds',
      'SIGNATURE_UNTRUSTED',
      `PDS ${pds.host} of ${identity.did} is not an allowed PDS host (${run.spec.pdsHosts.join(', ')})`,
    );
  }
  try {
    const proof = await run.fetcher.getRecordProof(pds, identity.did, pointer.collection, pointer.rkey, run.deadline);
    checks.pass('pds', `record proof from ${pds.host} (${proof.length} bytes)`);
    return proof;
  } catch (e) {
    return checks.fail('pds', codeOf(e, 'REGISTRY_UNREACHABLE'), `PDS ${pds.host}: ${errorText(e)}`);
  }
}

function checkRecordContent(
  pointer: RecordPointer,
  found: { cid: string; record: unknown },
  trusted: AtprotoTrustedDid,
  run: Run,
  checks: Checks,
): void {
  if (pointer.cid !== undefined && pointer.cid !== found.cid) {
    checks.fail(
      'record',
      'SIGNATURE_INVALID',
      `record at://${pointer.did}/${pointer.collection}/${pointer.rkey} is now ` +
        `${found.cid.slice(0, 16)}..., not the signed ${pointer.cid.slice(0, 16)}...: it was rewritten`,
    );
  }
  const { domain, path, digest } = run.subject.reference;
  const verdict = checkRecord(found.record, run.spec.collection, { domain, path, digest }, pointer.did, trusted.handle);
  if (!verdict.ok) checks.fail('record', 'SIGNATURE_UNTRUSTED', verdict.detail);
  checks.pass('record', verdict.detail);
}

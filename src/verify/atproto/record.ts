/**
 * The manifest record itself (lexicon io.atcr.manifest): what it says must be the image being pulled.
 * Pure.
 */
import { isRecord } from '../../common/malformed.js';

export interface RecordSubject {
  readonly domain: string;
  readonly path: string;
  readonly digest: string;
}

export type RecordVerdict =
  | { readonly ok: true; readonly detail: string }
  | { readonly ok: false; readonly detail: string };

/**
 * ATCR names images `<registry>/<owner>/<repository>`, where the owner is the publisher's handle or DID,
 * and its record's `repository` is the part after the owner. A record matches the pulled repository when
 * its `repository` is the full name, the path, or the path after an owner segment that is the signing
 * DID itself or the handle the policy trusts for it (a handle the DID document merely claims is not
 * enough: it is unverified without a reverse lookup).
 */
export function repositoryMatches(
  recordRepository: string,
  subject: RecordSubject,
  did: string,
  trustedHandle?: string,
): boolean {
  if (recordRepository === `${subject.domain}/${subject.path}` || recordRepository === subject.path) return true;
  const slash = subject.path.indexOf('/');
  if (slash < 0) return false;
  const owner = subject.path.slice(0, slash).toLowerCase();
  const rest = subject.path.slice(slash + 1);
  return (
    rest === recordRepository &&
    (owner === did.toLowerCase() || (trustedHandle !== undefined && owner === trustedHandle))
  );
}

export function checkRecord(
  record: unknown,
  collection: string,
  subject: RecordSubject,
  did: string,
  trustedHandle?: string,
): RecordVerdict {
  if (!isRecord(record)) return { ok: false, detail: 'record is not a map' };
  if (record.$type !== collection)
    return { ok: false, detail: `record is a ${JSON.stringify(record.$type)}, not a ${collection}` };
  if (record.digest !== subject.digest) {
    const other = typeof record.digest === 'string' ? record.digest.slice(0, 80) : String(record.digest);
    return { ok: false, detail: `record is for ${other}, not for the pulled ${subject.digest}` };
  }
  if (typeof record.repository !== 'string' || !repositoryMatches(record.repository, subject, did, trustedHandle)) {
    const other =
      typeof record.repository === 'string' ? JSON.stringify(record.repository.slice(0, 120)) : 'no repository';
    return { ok: false, detail: `record is for repository ${other}, not for ${subject.domain}/${subject.path}` };
  }
  return { ok: true, detail: `record names ${subject.digest.slice(0, 19)}... in repository ${record.repository}` };
}

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MalformedInputError } from '../../common/malformed.js';
import { didDocumentUrl, parseDidDocument } from './did.js';
import { parsePointer } from './pointer.js';
import { findRecord, readCommit } from './proof.js';
import { checkRecord, repositoryMatches } from './record.js';

const DID = 'did:plc:ewvi7nxzyoun6zhxrhs64oiz';
// A secp256k1 multikey made by @atproto/crypto's Secp256k1Keypair.
const K256 = 'zQ3shsEnEUkxiXt8ikecCLaAP8oADDE1G17qi7uFPGug1VokS';
const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));

describe('record pointer', () => {
  it('reads did, collection, rkey and the optional cid', () => {
    const p = parsePointer(
      enc({
        did: DID,
        uri: `at://${DID}/io.atcr.manifest/3labc`,
        cid: 'bafyreibpfdoz2wtfzlplmwe7phwn4en7q7oa5ppiwhzkurktfg3vi2bteu',
      }),
    );
    expect(p).toMatchObject({ did: DID, collection: 'io.atcr.manifest', rkey: '3labc' });
  });
  it.each([
    [{ did: DID }, /"uri" missing/],
    [{ did: DID, uri: 'at://did:plc:other/io.atcr.manifest/x' }, /not the artifact's DID/],
    [{ did: DID, uri: `at://${DID}/io.atcr.manifest` }, /is not at:\/\//],
    [{ did: DID, uri: `at://${DID}/io.atcr.manifest/x`, cid: 'nope' }, /"cid" is not a CID/],
    [[1], /not a JSON object/],
  ])('rejects %j', (doc, why) => {
    expect(() => parsePointer(enc(doc))).toThrow(why);
  });
  it('property: arbitrary bytes are a typed error, never a crash', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), (b) => {
        try {
          parsePointer(b);
        } catch (e) {
          expect(e).toBeInstanceOf(MalformedInputError);
        }
      }),
    );
  });
});

describe('DID documents', () => {
  const doc = {
    id: DID,
    alsoKnownAs: ['at://Alice.Example.com'],
    verificationMethod: [{ id: `${DID}#atproto`, type: 'Multikey', controller: DID, publicKeyMultibase: K256 }],
    service: [{ id: '#atproto_pds', type: 'AtprotoPersonalDataServer', serviceEndpoint: 'https://pds.example.com' }],
  };
  it('takes the #atproto key, the handles and the PDS', () => {
    const id = parseDidDocument(doc, DID);
    expect(id.signingKey.type).toBe('secp256k1');
    expect(id.handles).toEqual(['alice.example.com']);
    expect(id.pds?.host).toBe('pds.example.com');
  });
  it.each([
    [{ ...doc, id: 'did:plc:someoneelse' }, /its id is/],
    [{ ...doc, verificationMethod: [] }, /no #atproto verification method/],
    [{ ...doc, verificationMethod: [{ ...doc.verificationMethod[0], type: 'JsonWebKey2020' }] }, /not Multikey/],
    [
      { ...doc, verificationMethod: [{ ...doc.verificationMethod[0], publicKeyMultibase: 'zNotAKey' }] },
      /not a K-256 or P-256 multikey/,
    ],
    [
      { ...doc, verificationMethod: [{ ...doc.verificationMethod[0], controller: 'did:plc:x' }] },
      /controlled by another DID/,
    ],
  ])('rejects a bad document (%#)', (d, why) => {
    expect(() => parseDidDocument(d, DID)).toThrow(why);
  });
  it('resolves did:plc through the directory and did:web at the well-known path', () => {
    expect(didDocumentUrl(DID, 'https://plc.directory').href).toBe(`https://plc.directory/${DID}`);
    expect(didDocumentUrl('did:web:localhost%3A8443', 'x').href).toBe('https://localhost:8443/.well-known/did.json');
  });
  it('property: arbitrary JSON never crashes the parser', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        try {
          parseDidDocument(v, DID);
        } catch (e) {
          expect(e).toBeInstanceOf(MalformedInputError);
        }
      }),
    );
  });
});

describe('record proofs', () => {
  it('property: arbitrary bytes are a typed error, never a crash or a hang', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 2048 }), async (b) => {
        await expect(readCommit(b, DID)).rejects.toBeInstanceOf(MalformedInputError);
        await expect(findRecord(b, DID, 'io.atcr.manifest', 'x')).rejects.toBeInstanceOf(MalformedInputError);
      }),
      { numRuns: 200 },
    );
  });
});

describe('the record', () => {
  const subject = { domain: 'atcr.io', path: 'alice.example.com/app', digest: `sha256:${'a'.repeat(64)}` };
  const rec = { $type: 'io.atcr.manifest', repository: 'app', digest: subject.digest };
  it('matches by full name, path, or the path after the signing DID or trusted handle', () => {
    expect(repositoryMatches('atcr.io/alice.example.com/app', subject, DID)).toBe(true);
    expect(repositoryMatches('alice.example.com/app', subject, DID)).toBe(true);
    expect(repositoryMatches('app', subject, DID, 'alice.example.com')).toBe(true);
    expect(repositoryMatches('app', subject, DID)).toBe(false);
    expect(repositoryMatches('app', { ...subject, path: `${DID}/app` }, DID)).toBe(true);
    expect(repositoryMatches('app', { ...subject, path: 'bob.example.com/app' }, DID, 'alice.example.com')).toBe(false);
  });
  it('must be of the collection, for the digest and the repository', () => {
    expect(checkRecord(rec, 'io.atcr.manifest', subject, DID, 'alice.example.com').ok).toBe(true);
    expect(checkRecord({ ...rec, $type: 'app.bsky.feed.post' }, 'io.atcr.manifest', subject, DID).detail).toMatch(
      /not a io\.atcr\.manifest/,
    );
    expect(
      checkRecord({ ...rec, digest: 'sha256:00' }, 'io.atcr.manifest', subject, DID, 'alice.example.com').detail,
    ).toMatch(/record is for sha256:00/);
    expect(checkRecord('x', 'io.atcr.manifest', subject, DID).ok).toBe(false);
  });
});

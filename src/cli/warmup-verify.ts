import { createHash, sign } from 'node:crypto';
import { parsePolicyText } from '../policy/load.js';
import { clearTrustStoreCache } from '../verify/notation/truststore.js';
import { parseDidDocument } from '../verify/atproto/did.js';
import { parsePointer } from '../verify/atproto/pointer.js';
import { notationArtifact } from './warmup-formats.js';
import {
  COSIGN_SIGN_PREDICATE,
  COSIGN_SIMPLE_SIGNING,
  IN_TOTO,
  OCI_EMPTY_DIGEST,
  parseIndex,
  parseManifest,
  SIGSTORE_BUNDLE_V03,
} from '../registry/classify.js';
import { referrersTag } from '../registry/client.js';
import { endpointsFor } from '../registry/hosts.js';
import type { DiscoveryResult, OciDescriptor, RegistryClient, SignatureArtifact } from '../registry/types.js';
import { decide } from './decide.js';
import { WARM_DID, WARM_DIGEST, WARM_REPO, warmMaterial, warmPolicyFiles, warmPull } from './warmup.js';

/**
 * The warm-up of the on-demand bundle (cli/lazy.ts): scripts/build.mjs runs it once, then stores the
 * bundle's V8 code cache, so a verifying pull starts with these functions compiled, as the snapshot
 * does for the start-up path (cli/warmup.ts). Every verifier and every policy format runs: cosign
 * (legacy .sig and v3 bundle) and notation (JWS) signatures through decide() against an in-memory
 * registry, each policy format from disk with the decision cache, the ATProto and registry stages' pure
 * parts. The ATProto proof itself (CAR, commit signature, MST) needs a signed repository, which only the
 * test-time @atproto/repo can build: that part runs cold.
 */
export async function warmUpVerifiers(): Promise<void> {
  const material = warmMaterial();
  const digest = WARM_DIGEST;
  const notationSignature = notationArtifact(
    WARM_REPO,
    material.subjectDescriptor,
    material.certificate,
    material.notationPrivateKey,
  );
  const registry = fakeRegistry(WARM_REPO, digest, material.privateKey, [notationSignature]);
  const verifying = {
    decide:
      (subject: Parameters<typeof decide>[0], policy: Parameters<typeof decide>[1]) =>
      (d: Parameters<typeof decide>[3]) =>
        decide(subject, policy, () => registry, d),
  };

  // pullguard's YAML, as text: cosign (legacy and bundle).
  const yamlPolicy = parsePolicyText(material.policyText, '<warm-up>');
  await warmPull(yamlPolicy, `${WARM_REPO}:v1`, 'allow', verifying);
  // Every policy format from disk, notation signatures, and the decision cache (a miss, then a hit).
  try {
    await warmPolicyFiles(material, (policy, cached) =>
      warmPull(policy, `${WARM_REPO}:v1`, 'allow', { ...verifying, cached }),
    );
  } finally {
    clearTrustStoreCache();
  }

  // ATProto: the pure parts of its verifier (pointer, DID document).
  const did = WARM_DID;
  parsePointer(
    Buffer.from(
      JSON.stringify({
        did,
        uri: `at://${did}/io.atcr.manifest/3labc`,
        cid: 'bafyreibpfdoz2wtfzlplmwe7phwn4en7q7oa5ppiwhzkurktfg3vi2bteu',
      }),
    ),
  );
  parseDidDocument(
    {
      id: did,
      alsoKnownAs: ['at://warm.example.com'],
      verificationMethod: [
        {
          id: `${did}#atproto`,
          type: 'Multikey',
          controller: did,
          publicKeyMultibase: 'zQ3shsEnEUkxiXt8ikecCLaAP8oADDE1G17qi7uFPGug1VokS',
        },
      ],
      service: [{ id: '#atproto_pds', type: 'AtprotoPersonalDataServer', serviceEndpoint: 'https://pds.example.com' }],
    },
    did,
  );

  // The registry stage's pure parts (its HTTP needs node:http, which is loaded on first use).
  endpointsFor('127.0.0.1:5000', undefined);
  endpointsFor('registry.example', undefined);
  referrersTag(digest);
  parseIndex(
    Buffer.from(
      JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [] }),
    ),
    '<warm-up>',
  );
}
/** A registry holding one legacy (.sig) and one bundle signature of `digest`, both by `privateKey`. */
function fakeRegistry(
  repo: string,
  digest: string,
  privateKey: Parameters<typeof sign>[2],
  extra: readonly SignatureArtifact[],
): RegistryClient {
  const hex = digest.slice('sha256:'.length);
  const blobs = new Map<string, Buffer>();
  const descriptor = (mediaType: string, bytes: Buffer, annotations?: Record<string, string>): OciDescriptor => {
    const d = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    blobs.set(d, bytes);
    return { mediaType, digest: d, size: bytes.length, ...(annotations ? { annotations } : {}) };
  };
  const empty: OciDescriptor = { mediaType: 'application/vnd.oci.empty.v1+json', digest: OCI_EMPTY_DIGEST, size: 2 };

  const payload = Buffer.from(
    JSON.stringify({
      critical: {
        identity: { 'docker-reference': repo },
        image: { 'docker-manifest-digest': digest },
        type: 'cosign container image signature',
      },
      optional: null,
    }),
  );
  const legacyLayer = descriptor(COSIGN_SIMPLE_SIGNING, payload, {
    'dev.cosignproject.cosign/signature': sign('sha256', payload, privateKey).toString('base64'),
  });

  const statement = Buffer.from(
    JSON.stringify({
      _type: 'https://in-toto.io/Statement/v1',
      subject: [{ name: repo, digest: { sha256: hex } }],
      predicateType: COSIGN_SIGN_PREDICATE,
      predicate: {},
    }),
  );
  const pae = Buffer.concat([Buffer.from(`DSSEv1 ${IN_TOTO.length} ${IN_TOTO} ${statement.length} `), statement]);
  const bundle = Buffer.from(
    JSON.stringify({
      mediaType: 'application/vnd.dev.sigstore.bundle.v0.3+json',
      verificationMaterial: { publicKey: { hint: 'warm-up' }, tlogEntries: [] },
      dsseEnvelope: {
        payload: statement.toString('base64'),
        payloadType: IN_TOTO,
        signatures: [{ sig: sign('sha256', pae, privateKey).toString('base64'), keyid: '' }],
      },
    }),
  );
  const bundleLayer = descriptor(SIGSTORE_BUNDLE_V03, bundle);

  const artifact = (
    cls: SignatureArtifact['class'],
    foundVia: SignatureArtifact['foundVia'],
    manifestJson: object,
  ): SignatureArtifact => {
    const bytes = Buffer.from(JSON.stringify(manifestJson));
    const manifest = parseManifest(bytes, '<warm-up>');
    return {
      class: cls,
      foundVia,
      repository: repo,
      digest: `sha256:${createHash('sha256').update(bytes).digest('hex')}`,
      manifest,
      fetchBlob: async (d) => blobs.get(d.digest) ?? Buffer.from('{}'),
    };
  };
  const artifacts = [
    artifact('cosign-legacy', 'cosign-sig-tag', {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: empty,
      layers: [legacyLayer],
    }),
    artifact('cosign-bundle', 'referrers-tag', {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      artifactType: SIGSTORE_BUNDLE_V03,
      config: empty,
      layers: [bundleLayer],
      subject: { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest, size: 512 },
    }),
  ];
  return {
    discover: async (request): Promise<DiscoveryResult> => ({
      artifacts: [...artifacts, ...extra].filter((a) => request.classes.has(a.class)),
      notes: [],
    }),
    resolve: async () => {
      throw new Error('not in the warm-up');
    },
  };
}

import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import { Deadline } from '../common/deadline.js';
import { PullguardError } from '../common/errors.js';
import { parseReference } from '../common/reference.js';
import { parseVerifierArgs } from '../contract/args.js';
import { checkArgs, checkDescriptorMatches, parseDescriptor } from '../contract/descriptor.js';
import { formatLine, formatRecord } from '../output/emit.js';
import { loadPolicy, parsePolicyText } from '../policy/load.js';
import type { Policy } from '../policy/model.js';
import { clearTrustStoreCache } from '../verify/notation/truststore.js';
import { decideCached } from '../cache/decide-cached.js';
import { parseDidDocument } from '../verify/atproto/did.js';
import { parsePointer } from '../verify/atproto/pointer.js';
import { notationArtifact, selfSignedCodeSigningCertificate, warmFiles } from './warmup-formats.js';
import { serializeEntry } from '../output/decision-log.js';
import { formatMetrics, observe, parseMetrics } from '../output/metrics.js';
import { toEntry } from '../output/record.js';
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
import { applyMode } from '../verdict/decision.js';
import { decide } from './decide.js';

/**
 * Runs a pull's hot path once while the single executable's startup snapshot is built (src/main.ts), on
 * made-up data held in memory: V8 compiles functions lazily, on their first call, and keeps the
 * bytecode of those that ran in the snapshot. Without this every pull compiles the YAML parser, zod,
 * the cosign verifier and @sigstore/verify from scratch (~10 ms). No file is read, no network touched,
 * nothing is cached: everything built here is garbage by the time the snapshot is taken.
 */
export async function warmUp(): Promise<void> {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const digest = `sha256:${'ab'.repeat(32)}`;
  const repo = 'registry.example:5000/warm/app';
  const policyText = [
    'version: 1',
    'mode: enforce',
    'timeout: 8s',
    'default: deny',
    'rules:',
    '  - {name: cosign, match: [registry.example:5000/warm/**], action: verify, authorities: [{name: release, ' +
      `cosign: {keys: [${JSON.stringify(pem)}]}}]}`,
    '  - name: notation',
    '    match: registry.example:5000/notation',
    '    action: verify',
    '    authorities:',
    '      - name: corp',
    '        notation: {truststore: /nonexistent/truststore, signatureVerification: {level: strict}, ' +
      'trustStores: ["ca:corp"], trustedIdentities: ["*"]}',
    '  - {name: open, match: registry.example:5000/open, action: allow}',
    '  - {name: closed, match: "docker.io/**", action: deny, message: no}',
    'registry:',
    '  containerdConfig: /nonexistent/config.toml',
    '',
  ].join('\n');

  const notationKeys = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const certificate = selfSignedCodeSigningCertificate(notationKeys.publicKey, notationKeys.privateKey);
  const subjectDescriptor: OciDescriptor = {
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    digest,
    size: 512,
  };
  const notationSignature = notationArtifact(repo, subjectDescriptor, certificate, notationKeys.privateKey);
  const registry = () => fakeRegistry(repo, digest, privateKey, [notationSignature]);

  /** One pull's path through `policy`; the verdict must be `want`, every signature found valid. */
  const pull = async (policy: Policy, name: string, want: 'allow' | 'deny', cached = false): Promise<void> => {
    const args = parseVerifierArgs([
      '-name',
      name,
      '-digest',
      digest,
      '-stdin-media-type',
      'application/vnd.oci.descriptor.v1+json',
    ]);
    checkArgs(args);
    const parsed = parseReference(args.name);
    const descriptor = parseDescriptor(JSON.stringify(subjectDescriptor));
    checkDescriptorMatches(args, descriptor);
    const subject = { reference: { domain: parsed.domain, path: parsed.path, digest: args.digest }, descriptor };
    const deadline = new Deadline(policy.timeoutMs);
    try {
      const run = (d: Deadline) => decide(subject, policy, registry, d);
      const { decision } = cached ? await decideCached(subject, policy, deadline, run) : await run(deadline);
      // Every signature must verify, or the warm-up missed the path it exists for.
      const signatures = decision.results.flatMap((r) => r.signatures);
      if (decision.verdict !== want || signatures.some((s) => !s.valid))
        throw new PullguardError('INTERNAL', `unexpected warm-up decision for ${name}: ${JSON.stringify(decision)}`);
      const ctx = { name, digest, startedAt: Date.now() };
      formatLine(applyMode(decision, policy.mode), ctx);
      formatRecord(applyMode(decision, policy.mode), ctx);
      // The output stage's pure parts (the decision log line, the metrics text); no file is touched.
      const entry = toEntry(applyMode(decision, policy.mode), ctx, Date.now());
      serializeEntry(entry);
      const state = parseMetrics('');
      observe(state, { entry });
      parseMetrics(formatMetrics(state));
    } finally {
      deadline.dispose();
    }
  };

  // pullguard's YAML, as text: cosign (legacy and bundle), allow, deny.
  const yamlPolicy = parsePolicyText(policyText, '<warm-up>');
  await pull(yamlPolicy, `${repo}:v1`, 'allow');
  await pull(yamlPolicy, 'registry.example:5000/open:v1', 'allow');
  await pull(yamlPolicy, 'docker.io/library/busybox:latest', 'deny');

  // Every policy format from disk, notation signatures, and the decision cache (a miss, then a hit).
  const files = warmFiles(certificate);
  try {
    const keyFile = files.write('release.pub', pem);
    await pull(loadPolicy(files.notationDir), `${repo}:v1`, 'allow');
    const native = {
      version: 1,
      cache: { dir: `${files.dir}/cache`, ttl: '10m' },
      rules: [
        {
          name: 'both',
          match: 'registry.example:5000/warm/**',
          action: 'verify',
          staleIfError: '1h',
          authorities: [{ cosign: { keys: [keyFile] } }, { notation: { config: files.notationDir } }],
        },
      ],
    };
    const nativeYaml = loadPolicy(
      files.write(
        'policy.yaml',
        `version: 1\ncache: {dir: ${files.dir}/cache}\nrules:\n  - {name: n, match: "**", action: verify, ` +
          `authorities: [{notation: {config: ${files.notationDir}}}]}\n`,
      ),
    );
    await pull(nativeYaml, `${repo}:v1`, 'allow', true);
    await pull(nativeYaml, `${repo}:v1`, 'allow', true);
    const nativeJson = loadPolicy(files.write('policy.json', JSON.stringify(native)));
    await pull(nativeJson, `${repo}:v1`, 'allow', true);
    await pull(nativeJson, `${repo}:v1`, 'allow', true);
    const containersPolicy = {
      default: [{ type: 'reject' }],
      transports: {
        docker: {
          'registry.example:5000/warm': [
            { type: 'sigstoreSigned', keyPath: keyFile, signedIdentity: { type: 'matchRepository' } },
          ],
        },
      },
    };
    await pull(
      loadPolicy(files.write('containers-policy.json', JSON.stringify(containersPolicy))),
      `${repo}:v1`,
      'allow',
    );
    const imported = files.write('imports.yaml', `version: 1\ncontainersPolicy: ${files.dir}/containers-policy.json\n`);
    await pull(loadPolicy(imported), `${repo}:v1`, 'allow');
  } finally {
    files.dispose();
    clearTrustStoreCache();
  }

  // ATProto: its policy schema and the pure parts of its verifier (pointer, DID document, record checks).
  // The proof itself (CAR, commit signature, MST) needs a signed repository, which only the test-time
  // @atproto/repo can build: that part runs cold.
  const did = 'did:plc:ewvi7nxzyoun6zhxrhs64oiz';
  parsePolicyText(
    'version: 1\nrules:\n  - {name: at, match: "**", action: verify, authorities: [{atproto: {trusted: [{did: ' +
      `"${did}"}]}}]}\n`,
    '<warm-up>',
  );
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

  // The registry stage's pure parts (its HTTP needs node:http, which the snapshot cannot hold).
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
      throw new PullguardError('INTERNAL', 'not in the warm-up');
    },
  };
}

import { generateKeyPairSync, sign } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { Deadline } from '../common/deadline.js';
import { PullguardError } from '../common/errors.js';
import { parseReference } from '../common/reference.js';
import { parseVerifierArgs } from '../contract/args.js';
import { checkArgs, checkDescriptorMatches, parseDescriptor } from '../contract/descriptor.js';
import { formatLine, formatRecord } from '../output/emit.js';
import { loadPolicy, parsePolicyText } from '../policy/load.js';
import type { Policy, RegistrySettings } from '../policy/model.js';
import { clearTrustStoreCache } from '../verify/notation/truststore.js';
import { decideCached } from '../cache/decide-cached.js';
import { parseDidDocument } from '../verify/atproto/did.js';
import { parsePointer } from '../verify/atproto/pointer.js';
import { notationSignature, selfSignedCodeSigningCertificate, warmFiles } from './warmup-formats.js';
import { memoryRegistry, type MemoryRegistry } from './warmup-wire.js';
import { DistributionClient } from '../registry/client.js';
import { serializeEntry } from '../output/decision-log.js';
import { formatMetrics, observe, parseMetrics } from '../output/metrics.js';
import { toEntry } from '../output/record.js';
import {
  COSIGN_SIGN_PREDICATE,
  COSIGN_SIMPLE_SIGNING,
  IN_TOTO,
  OCI_EMPTY_DIGEST,
  parseIndex,
  SIGSTORE_BUNDLE_V03,
} from '../registry/classify.js';
import { referrersTag } from '../registry/client.js';
import { endpointsFor } from '../registry/hosts.js';
import type { OciDescriptor } from '../registry/types.js';
import { applyMode } from '../verdict/decision.js';
import { decide } from './decide.js';
import { runPull } from './pull.js';
import { Readable } from 'node:stream';

/**
 * Runs a pull's hot path once while the single executable's startup snapshot is built (src/main.ts), on
 * made-up data held in memory: V8 compiles functions lazily, on their first call, and keeps the
 * bytecode of those that ran in the snapshot. Without this every pull compiles the YAML parser, zod,
 * the cosign verifier and @sigstore/verify from scratch (~10 ms). The registry stage runs for real, over
 * an in-memory registry behind stand-ins for node:http (warmup-wire.ts), and so does containerd's
 * invocation (cli/pull.ts, with the descriptor on a stream): a network pull compiled about half as much
 * of our code lazily without that (V8 --log-function-events: 12.7 ms -> 5.1 ms on a loopback bundle
 * pull). No network is touched; files live in a temporary directory deleted before the snapshot.
 */
export async function warmUp(): Promise<void> {
  const timers = trackTimers();
  try {
    await warmUpPaths();
  } finally {
    timers.restore();
  }
  // A timer left pending here would be in the snapshot without the native timer behind it: after
  // start-up, a pull's timer of the same duration (its deadline) would never fire, and the pull would hang.
  const pending = timers.pending();
  if (pending.length > 0) {
    throw new PullguardError('INTERNAL', `the warm-up left ${pending.length} timer(s) pending:\n${pending.join('\n')}`);
  }
  // Defensive: Node remembers the expiry it last armed libuv's timer for (lib/internal/timers.js
  // `nextExpiry`), and clearing timers does not reset it; a timer that fires on an empty queue does.
  // The measured failure was the unreferenced timers' lists (trackTimers); this leaves nothing else.
  await new Promise<void>((resolve) => setTimeout(resolve, 1));
}

/**
 * setTimeout and clearTimeout, watched: which timers the warm-up started and neither fired nor cleared.
 * No timer may be pending, or even have been unreferenced, when the snapshot is taken (see below).
 */
function trackTimers(): { pending(): string[]; restore(): void } {
  const live = new Map<NodeJS.Timeout, string>();
  const realSet = globalThis.setTimeout;
  const realClear = globalThis.clearTimeout;
  const watchedSet = (fn: (...a: unknown[]) => void, ms?: number, ...args: unknown[]): NodeJS.Timeout => {
    const t: NodeJS.Timeout = realSet(() => {
      live.delete(t);
      fn(...args);
    }, ms);
    live.set(t, `${ms} ms, from ${new Error().stack?.split('\n').slice(2, 5).join(' <- ')}`);
    // Kept referenced: Node keeps the empty list of an unreferenced timer's duration after it is cleared
    // (lib/internal/timers.js: "unrefed ones are incredibly likely to come from http"), and that list,
    // with its build-time expiry, would be in the snapshot: a pull's timers of the same duration would
    // join it and fire late, if at all (a stalled registry then hung past every deadline).
    t.unref = () => t;
    return t;
  };
  globalThis.setTimeout = watchedSet as typeof setTimeout;
  globalThis.clearTimeout = ((t?: NodeJS.Timeout | string | number) => {
    if (t !== undefined && typeof t === 'object') live.delete(t);
    realClear(t);
  }) as typeof clearTimeout;
  return {
    pending: () => [...live.values()],
    restore() {
      globalThis.setTimeout = realSet;
      globalThis.clearTimeout = realClear;
    },
  };
}

async function warmUpPaths(): Promise<void> {
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
  const notation = notationSignature(subjectDescriptor, certificate, notationKeys.privateKey);
  const files = warmFiles(certificate);
  const wire = warmRegistry(repo, digest, privateKey, notation);
  // The real client over the in-memory registry: containerd's config and hosts.toml read from disk, the
  // token flow (401, token, the realm remembered by the first pull and recalled by the next ones).
  const certsDir = `${files.dir}/certs.d`;
  mkdirSync(`${certsDir}/registry.example:5000`, { recursive: true });
  files.write(
    'certs.d/registry.example:5000/hosts.toml',
    'server = "http://registry.example:5000"\n\n[host."http://registry.example:5000"]\n' +
      '  capabilities = ["pull", "resolve"]\n',
  );
  const containerdConfig = files.write(
    'config.toml',
    `version = 3\n[plugins."io.containerd.cri.v1.images".registry]\n  config_path = ${JSON.stringify(certsDir)}\n`,
  );
  const client = (s: RegistrySettings) => new DistributionClient(s, { env: {}, httpModules: wire.modules });
  const registry = () => client({ containerdConfig, tokenRealmCache: { dir: `${files.dir}/token-realms` } });

  /** containerd's arguments for a pull of `name` (src/contract). */
  const verifierArgv = (name: string) => [
    '-name',
    name,
    '-digest',
    digest,
    '-stdin-media-type',
    'application/vnd.oci.descriptor.v1+json',
  ];

  /** One pull's path through `policy`; the verdict must be `want`, every signature found valid. */
  const pull = async (policy: Policy, name: string, want: 'allow' | 'deny', cached = false): Promise<void> => {
    const args = parseVerifierArgs(verifierArgv(name));
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

  try {
    // pullguard's YAML, as text: cosign (legacy and bundle), allow, deny.
    const yamlPolicy = parsePolicyText(policyText, '<warm-up>');
    await pull(yamlPolicy, `${repo}:v1`, 'allow');
    await pull(yamlPolicy, 'registry.example:5000/open:v1', 'allow');
    await pull(yamlPolicy, 'docker.io/library/busybox:latest', 'deny');

    // Every policy format from disk, notation signatures, and the decision cache (a miss, then a hit).
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

    // containerd's invocation end to end (cli/pull.ts): arguments, the descriptor on stdin, the policy
    // file, the stdout line and stderr record, the decision log and the metrics file.
    const pullPolicy = files.write(
      'pull.yaml',
      `${policyText.replace('/nonexistent/config.toml', containerdConfig)}` +
        `log: {file: ${files.dir}/decisions.jsonl, metricsFile: ${files.dir}/pullguard.prom}\n`,
    );
    for (const name of [`${repo}:v1`, 'docker.io/library/busybox:latest']) {
      const argv = verifierArgv(name);
      const written: string[] = [];
      const code = await runPull(argv, {
        argv,
        stdin: Readable.from([Buffer.from(JSON.stringify(subjectDescriptor))]),
        env: { PULLGUARD_POLICY: pullPolicy },
        write: (_fd, text) => void written.push(text),
        registry: client,
      });
      if (code !== (name.startsWith('docker.io') ? 1 : 0))
        throw new PullguardError('INTERNAL', `unexpected warm-up pull for ${name}: exit ${code}: ${written.join('')}`);
    }
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

/**
 * The in-memory registry of the warm-up: one legacy (.sig) and one bundle signature of `digest`, both
 * by `privateKey`, and a notation signature, listed by the referrers API and the referrers tag.
 */
function warmRegistry(
  repo: string,
  digest: string,
  privateKey: Parameters<typeof sign>[2],
  notation: { manifest: Buffer; envelope: Buffer },
): MemoryRegistry {
  const reg = memoryRegistry('http://registry.example:5000');
  const hex = digest.slice('sha256:'.length);
  const descriptor = (mediaType: string, bytes: Buffer, annotations?: Record<string, string>): OciDescriptor => {
    const d = reg.putBlob(bytes);
    return { mediaType, digest: d, size: bytes.length, ...(annotations ? { annotations } : {}) };
  };
  const empty: OciDescriptor = { mediaType: 'application/vnd.oci.empty.v1+json', digest: OCI_EMPTY_DIGEST, size: 2 };
  reg.putBlob(Buffer.from('{}'));
  const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

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
  const legacy = { schemaVersion: 2, mediaType: OCI_MANIFEST, config: empty, layers: [legacyLayer] };
  reg.putManifest(Buffer.from(JSON.stringify(legacy)), OCI_MANIFEST, `sha256-${hex}.sig`);

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
  const subject = { mediaType: OCI_MANIFEST, digest, size: 512 };
  const bundleManifest = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    artifactType: SIGSTORE_BUNDLE_V03,
    config: empty,
    layers: [descriptor(SIGSTORE_BUNDLE_V03, bundle)],
    subject,
  };
  const listed = [
    reg.putManifest(Buffer.from(JSON.stringify(bundleManifest)), OCI_MANIFEST, undefined, digest),
    reg.putManifest(notation.manifest, OCI_MANIFEST, undefined, digest),
  ];
  reg.putBlob(notation.envelope);
  // The referrers tag (distribution-spec 1.1's fallback) lists the same two.
  const index = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [
      {
        mediaType: OCI_MANIFEST,
        digest: listed[0],
        size: JSON.stringify(bundleManifest).length,
        artifactType: SIGSTORE_BUNDLE_V03,
      },
      {
        mediaType: OCI_MANIFEST,
        digest: listed[1],
        size: notation.manifest.length,
        artifactType: 'application/vnd.cncf.notary.signature',
      },
    ],
  };
  reg.putManifest(Buffer.from(JSON.stringify(index)), index.mediaType, referrersTag(digest));
  return reg;
}

import { generateKeyPairSync } from 'node:crypto';
import { Deadline } from '../common/deadline.js';
import { parseReference } from '../common/reference.js';
import { parseVerifierArgs } from '../contract/args.js';
import { checkArgs, checkDescriptorMatches, parseDescriptor } from '../contract/descriptor.js';
import { formatLine, formatRecord } from '../output/emit.js';
import { loadPolicy, parsePolicyText } from '../policy/load.js';
import type { Policy, Rule } from '../policy/model.js';
import { RuleMatcher } from '../policy/match.js';
import { decideCached } from '../cache/decide-cached.js';
import { selfSignedCodeSigningCertificate, warmFiles, type WarmFiles } from './warmup-formats.js';
import { serializeEntry } from '../output/decision-log.js';
import { formatMetrics, observe, parseMetrics } from '../output/metrics.js';
import { recordDecision } from '../output/observe.js';
import { toEntry } from '../output/record.js';
import type { OciDescriptor } from '../registry/types.js';
import { applyMode, verifyDecision } from '../verdict/decision.js';
import type { Subject } from '../verify/types.js';
import { decide, type DecideResult } from './decide.js';

/**
 * Runs the start-up path once while the single executable's startup snapshot is built (src/main.ts), on
 * made-up data: V8 compiles functions lazily, on their first call, and keeps the bytecode of those that
 * ran in the snapshot. This covers what every pull runs before (or instead of) verifying: the contract,
 * every policy format from text and from disk, rule matching, allow and deny rules, the decision cache
 * (a miss, then a hit), the output line and record, the decision log and the metrics file. The verifiers
 * and the registry client are not in the snapshot (cli/lazy.ts): they are warmed in their own bundle's
 * code cache by warmUpVerifiers (cli/warmup-verify.ts), with the same helpers. No network is touched;
 * the files written live in a temporary directory, deleted before the snapshot is taken.
 */
export async function warmUp(): Promise<void> {
  const material = warmMaterial();
  // A verify rule's verification is stood in for here (no verifier is loaded into the snapshot).
  const standIn = (subject: Subject, policy: Policy) => async (): Promise<DecideResult> => {
    const match = decideMatch(subject, policy);
    return {
      decision: verifyDecision(match, [
        { authority: 'warm-up', kind: 'cosign', satisfied: true, reason: 'verified', signatures: [] },
      ]),
      discovery: [],
    };
  };
  const yamlPolicy = parsePolicyText(material.policyText, '<warm-up>');
  await warmPull(yamlPolicy, 'registry.example:5000/open:v1', 'allow', { decide: realDecide });
  await warmPull(yamlPolicy, 'docker.io/library/busybox:latest', 'deny', { decide: realDecide });
  await warmPull(yamlPolicy, 'quay.example/nobody/none:v1', 'deny', { decide: realDecide });
  await warmPolicyFiles(material, async (policy, cached, files) => {
    await warmPull(policy, `${WARM_REPO}:v1`, 'allow', { decide: standIn, cached, logDir: files.dir });
  });
  parsePolicyText(ATPROTO_POLICY, '<warm-up>');
}

/** The verify rule decide() would apply. */
function decideMatch(subject: Subject, policy: Policy): Rule {
  const rule = new RuleMatcher(policy.rules).find(subject.reference, subject.reference.digest)?.rule;
  if (rule?.action !== 'verify') throw new Error(`warm-up: no verify rule for ${subject.reference.path}`);
  return rule;
}

export const WARM_DIGEST = `sha256:${'ab'.repeat(32)}`;
export const WARM_REPO = 'registry.example:5000/warm/app';
const did = 'did:plc:ewvi7nxzyoun6zhxrhs64oiz';
export const WARM_DID = did;
const ATPROTO_POLICY = `version: 1\nrules:\n  - {name: at, match: "**", action: verify, authorities: [{atproto: {trusted: [{did: "${did}"}]}}]}\n`;

export interface WarmMaterial {
  readonly pem: string;
  readonly privateKey: ReturnType<typeof generateKeyPairSync>['privateKey'];
  readonly certificate: Buffer;
  readonly notationPrivateKey: ReturnType<typeof generateKeyPairSync>['privateKey'];
  readonly policyText: string;
  readonly subjectDescriptor: OciDescriptor;
}

/** Keys, a self-signed notation certificate and a pullguard YAML policy using both (no openssl). */
export function warmMaterial(): WarmMaterial {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const notationKeys = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const policyText = [
    'version: 1',
    'mode: enforce',
    'timeout: 8s',
    'default: deny',
    'rules:',
    `  - {name: cosign, match: [registry.example:5000/warm/**], action: verify, authorities: [{name: release, cosign: {keys: [${JSON.stringify(pem)}]}}]}`,
    '  - name: notation',
    '    match: registry.example:5000/notation',
    '    action: verify',
    '    authorities:',
    '      - name: corp',
    '        notation: {truststore: /nonexistent/truststore, signatureVerification: {level: strict}, trustStores: ["ca:corp"], trustedIdentities: ["*"]}',
    '  - {name: open, match: registry.example:5000/open, action: allow}',
    '  - {name: closed, match: "docker.io/**", action: deny, message: no}',
    'registry:',
    '  containerdConfig: /nonexistent/config.toml',
    '',
  ].join('\n');
  return {
    pem,
    privateKey,
    certificate: selfSignedCodeSigningCertificate(notationKeys.publicKey, notationKeys.privateKey),
    notationPrivateKey: notationKeys.privateKey,
    policyText,
    subjectDescriptor: { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: WARM_DIGEST, size: 512 },
  };
}

type WarmDecide = (subject: Subject, policy: Policy) => (deadline: Deadline) => Promise<DecideResult>;

const realDecide: WarmDecide = (subject, policy) => (d) =>
  decide(
    subject,
    policy,
    () => {
      throw new Error('warm-up: no registry for an allow or deny rule');
    },
    d,
  );

/**
 * One pull's path through `policy`, as cli/pull.ts runs it, with `decide` in place of the registry and
 * the verifiers; the verdict must be `want`, every signature found valid, or the warm-up missed the path
 * it exists for. `log`: a directory for the decision log and metrics file (written, then deleted).
 */
export async function warmPull(
  policy: Policy,
  name: string,
  want: 'allow' | 'deny',
  opts: { decide: WarmDecide; cached?: boolean; logDir?: string },
): Promise<void> {
  const args = parseVerifierArgs([
    '-name',
    name,
    '-digest',
    WARM_DIGEST,
    '-stdin-media-type',
    'application/vnd.oci.descriptor.v1+json',
  ]);
  checkArgs(args);
  const parsed = parseReference(args.name);
  const descriptor = parseDescriptor(
    JSON.stringify({ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: WARM_DIGEST, size: 512 }),
  );
  checkDescriptorMatches(args, descriptor);
  const subject = { reference: { domain: parsed.domain, path: parsed.path, digest: args.digest }, descriptor };
  const deadline = new Deadline(policy.timeoutMs);
  try {
    const run = opts.decide(subject, policy);
    const { decision } = opts.cached ? await decideCached(subject, policy, deadline, run) : await run(deadline);
    const signatures = decision.results.flatMap((r) => r.signatures);
    if (decision.verdict !== want || signatures.some((s) => !s.valid))
      throw new Error(`unexpected warm-up decision for ${name}: ${JSON.stringify(decision)}`);
    const ctx = { name, digest: WARM_DIGEST, startedAt: Date.now() };
    const final = applyMode(decision, policy.mode);
    formatLine(final, ctx);
    formatRecord(final, ctx);
    // The output stage's pure parts (the decision log line, the metrics text).
    const entry = toEntry(final, ctx, Date.now());
    serializeEntry(entry);
    const state = parseMetrics('');
    observe(state, { entry });
    parseMetrics(formatMetrics(state));
    if (opts.logDir) {
      await recordDecision(
        final,
        ctx,
        { file: `${opts.logDir}/decisions.jsonl`, metricsFile: `${opts.logDir}/pullguard.prom` },
        { warn: () => undefined, cacheHit: !!decision.cache },
      );
    }
  } finally {
    deadline.dispose();
  }
}

/**
 * Every policy format pullguard reads, loaded from disk: a notation configuration directory, pullguard's
 * YAML and JSON (with the decision cache: `pull` runs each twice, a miss then a hit), a
 * containers-policy.json and a policy importing one. `pull(policy, cached)` must allow WARM_REPO.
 */
export async function warmPolicyFiles(
  material: WarmMaterial,
  pull: (policy: Policy, cached: boolean, files: WarmFiles) => Promise<void>,
): Promise<void> {
  const files = warmFiles(material.certificate);
  try {
    const keyFile = files.write('release.pub', material.pem);
    await pull(loadPolicy(files.notationDir), false, files);
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
        `version: 1\ncache: {dir: ${files.dir}/cache}\nrules:\n  - {name: n, match: "**", action: verify, authorities: [{notation: {config: ${files.notationDir}}}]}\n`,
      ),
    );
    await pull(nativeYaml, true, files);
    await pull(nativeYaml, true, files);
    const nativeJson = loadPolicy(files.write('policy.json', JSON.stringify(native)));
    await pull(nativeJson, true, files);
    await pull(nativeJson, true, files);
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
    await pull(loadPolicy(files.write('containers-policy.json', JSON.stringify(containersPolicy))), false, files);
    const imported = files.write('imports.yaml', `version: 1\ncontainersPolicy: ${files.dir}/containers-policy.json\n`);
    await pull(loadPolicy(imported), false, files);
  } finally {
    files.dispose();
  }
}

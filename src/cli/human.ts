import { Deadline, formatDuration } from '../common/deadline.js';
import { asPullguardError, PullguardError } from '../common/errors.js';
import { parseFlags } from '../common/flags.js';
import { formatReference, parseReference } from '../common/reference.js';
import { loadPolicy, policyPath } from '../policy/load.js';
import type { Policy } from '../policy/model.js';
import { applyMode, EXIT, exitCodeFor } from '../verdict/decision.js';
import { createRegistryClient } from '../registry/index.js';
import { DEFAULT_TOKEN_REALM_DIR, DEFAULT_TOKEN_REALM_TTL_MS } from '../registry/token-realms.js';
import { decide, type DecideResult } from './decide.js';
import { runDoctor } from '../doctor/run.js';
import { runScan } from '../scan/run.js';
import { runCacheCommand } from '../cache/command.js';
import { runNode } from '../node/cli.js';
import { versionLine } from './version.js';
import { runAgent } from '../node/agent.js';
import { printPolicyProblems } from './policy-problems.js';
import { describeLogSettings, explainJson, offlineReport, printOffline } from './verify-report.js';
import { runLog } from './log.js';

const USAGE = `pullguard: containerd image verifier for cosign and Notation signatures

containerd runs it as:
  pullguard -name <ref> -digest <digest> -stdin-media-type application/vnd.oci.descriptor.v1+json

Commands for people:
  pullguard verify [--explain] [--json] [--policy FILE] <ref>
                                                       decide for an image, as a pull would
  pullguard verify --offline [--json] <ref@digest>     which rule and authorities apply (no registry)
  pullguard policy check [FILE]                        validate a policy
  pullguard doctor [--containerd-config PATH] [--bin-dir DIR] [--policy FILE]
                   [--address SOCKET] [--containerd-log FILE] [--pull-test REF] [--image REF]
                   [--static-pod-dir DIR]
                                                       check that containerd really runs pullguard on
                                                       every pull (CRI local-pull fallback, bin_dir,
                                                       timeouts, policy, the node's own images);
                                                       exit 2 on any FAIL
  pullguard scan [--namespace NS | --all-namespaces] [--address SOCKET] [--policy FILE]
                 [--json] [--remove-denied]            decide every image containerd already holds, as a
                                                       pull would (k8s.io namespace by default); exit 1 if
                                                       any would be denied; --remove-denied removes those
                                                       no container uses, so their next pull is verified
  pullguard cache ls|clear [--policy FILE]             list or empty the decision cache (policy cache:)
  pullguard node install|uninstall|status [--root DIR] [--policy FILE|DIR] [--no-restart] ...
                                                       install pullguard on this node (or the host
                                                       root DIR) safely, take it off, or show whether
                                                       verification is on; \`pullguard node\` for all flags
  pullguard node agent [--root DIR] ...                the DaemonSet's node agent: installs, keeps the
                                                       host's policy in step with the mounted ConfigMap
                                                       (only validated versions), uninstalls on delete
  pullguard log [--since 1h] [--verdict deny] [--would-deny] [--image TEXT] [--rule NAME] [--json] [-f]
                                                       what pullguard decided on this node (the decision
                                                       log), grouped by rule, image and reason
  pullguard version                                    print version and commit

Policy: $PULLGUARD_POLICY, else /etc/pullguard/policy.yaml.
Exit codes: 0 allow, 1 deny, 2 configuration error (deny), 3 internal error (deny).`;

type Out = (line: string) => void;

export async function runHuman(
  argv: readonly string[],
  out: Out,
  err: Out,
  env: NodeJS.ProcessEnv = process.env,
): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'version':
      case '--version':
      case '-version':
        out(versionLine());
        return 0;
      case 'policy': {
        if (rest[0] !== 'check') return usage(err);
        const { positionals } = parseFlags(rest.slice(1), {}, 'usage: pullguard policy check [FILE]', true);
        if (positionals.length > 1) return usage(err);
        return policyCheck(positionals[0] ?? policyPath(env), out, err);
      }
      case 'verify':
        return await verifyCommand(rest, out, env);
      case 'doctor':
        return await runDoctor(rest, out, env);
      case 'scan':
        return await runScan(rest, out, err, env);
      case 'cache':
        return runCacheCommand(rest, (file) => loadPolicy(file ?? policyPath(env)), out);
      case 'node':
        if (rest[0] === 'agent') return await runAgent(rest.slice(1), out, env);
        return await runNode(rest, out, err);
      case 'log':
        return await runLog(rest, out, env);
      case undefined:
      case 'help':
      case '-h':
      case '-help':
      case '--help':
        out(USAGE);
        return command === undefined ? EXIT.configError : 0;
      default:
        err(`pullguard: unknown command ${JSON.stringify(command)}`);
        return usage(err);
    }
  } catch (e) {
    const pe = asPullguardError(e);
    err(`pullguard: ${pe.message} [${pe.code}]`);
    // A mistyped command is a usage error (2), not a verdict about an image.
    if (pe.code === 'CONTRACT_ARGS') return EXIT.configError;
    return exitCodeFor('deny', pe.code);
  }
}

function usage(err: Out): number {
  err(USAGE);
  return EXIT.configError;
}

function policyCheck(path: string, out: Out, err: Out): number {
  let policy: Policy;
  try {
    policy = loadPolicy(path);
  } catch (e) {
    const problems = printPolicyProblems(e, path, err);
    if (problems === 0) throw e;
    return EXIT.configError;
  }
  out(`policy ${path} is valid`);
  out(
    `  mode ${policy.mode}, default ${policy.defaultAction}, timeout ${formatDuration(policy.timeoutMs)}, ` +
      `${policy.rules.length} rule(s)`,
  );
  out(`  ${describeLogSettings(policy.log)}`);
  const realms = policy.registry.tokenRealmCache;
  if (realms) {
    const ttlMs = realms.ttlMs ?? DEFAULT_TOKEN_REALM_TTL_MS;
    const ttl = ttlMs % 3_600_000 === 0 ? `${ttlMs / 3_600_000}h` : formatDuration(ttlMs);
    out(`  token realms remembered in ${realms.dir ?? DEFAULT_TOKEN_REALM_DIR} for ${ttl}`);
  }
  for (const r of policy.rules) {
    const authorities = r.authorities.map((a) => `${a.kind}:${a.name}`).join(', ');
    out(`  - ${r.name}: ${r.action} ${r.match.join(', ')}${authorities ? ` [${r.require} of ${authorities}]` : ''}`);
  }
  for (const note of policy.notes ?? []) out(`  note: ${note}`);
  if (policy.timeoutMs >= 10_000) {
    out(
      `  warning: timeout ${formatDuration(policy.timeoutMs)} is not under containerd's default ` +
        'per_verifier_timeout (10s); raise that too',
    );
  }
  return 0;
}

const VERIFY_FLAGS = {
  explain: { type: 'boolean' },
  json: { type: 'boolean' },
  offline: { type: 'boolean' },
  policy: { type: 'string' },
} as const;

async function verifyCommand(args: readonly string[], out: Out, env: NodeJS.ProcessEnv): Promise<number> {
  const usage = 'usage: pullguard verify [--explain] [--json] [--offline] [--policy FILE] <ref>';
  const { values, positionals: refs } = parseFlags(args, VERIFY_FLAGS, usage, true);
  const { explain = false, json = false, offline = false } = values;
  if (refs.length !== 1) throw new PullguardError('CONTRACT_ARGS', usage);
  const policy = loadPolicy(values.policy ?? policyPath(env));
  const ref = parseReference(refs[0]!);
  if (offline) {
    const report = offlineReport(policy, ref);
    if (json) out(JSON.stringify(report));
    else printOffline(report, policy, out);
    return report.outcome === 'deny' && policy.mode !== 'audit' ? EXIT.deny : 0;
  }
  const deadline = new Deadline(policy.timeoutMs);
  try {
    const registry = createRegistryClient(policy.registry);
    // Human mode only: a tag is resolved here; containerd always hands us the digest it will pull.
    const descriptor = await registry.resolve(ref, deadline);
    const subject = { reference: { domain: ref.domain, path: ref.path, digest: descriptor.digest }, descriptor };
    const result = await decide(subject, policy, () => registry, deadline);
    if (json) out(JSON.stringify(explainJson(result, policy, formatReference(subject.reference))));
    else printDecision(result, policy, formatReference(subject.reference), explain, out);
    return applyMode(result.decision, policy.mode).exitCode;
  } finally {
    deadline.dispose();
  }
}

export function printDecision(result: DecideResult, policy: Policy, subject: string, explain: boolean, out: Out): void {
  const decision = applyMode(result.decision, policy.mode);
  out(`${decision.verdict === 'allow' ? 'ALLOW' : 'DENY'} ${subject}`);
  out(`  reason: ${decision.reason}`);
  out(
    result.match
      ? `  rule:   "${result.match.rule.name}" (${result.match.rule.action}), ` +
          `matched by pattern ${result.match.pattern.source}`
      : `  rule:   none matched; policy default is ${policy.defaultAction}`,
  );
  out(`  policy: ${policy.source} (mode ${policy.mode})`);
  if (!explain) return;
  for (const d of result.discovery) {
    for (const note of d.notes) out(`  note:   ${note}`);
    out(
      `  found ${d.artifacts.length} signature ` +
        `artifact(s)${d.artifacts.length === 0 && d.tried?.length ? '; looked at:' : ':'}`,
    );
    if (d.artifacts.length === 0) for (const t of d.tried ?? []) out(`    ${t}`);
    for (const a of d.artifacts) {
      out(
        `    ${a.class} ${a.digest} via ${a.foundVia} in ${a.repository}` +
          `${a.signerHint ? ` (signer hint: ${a.signerHint})` : ''}`,
      );
    }
  }
  for (const a of decision.results) {
    out(`  authority ${a.authority} (${a.kind}): ${a.satisfied ? 'satisfied' : 'NOT satisfied'}: ${a.reason}`);
    for (const s of a.signatures) {
      out(
        `    ${s.valid ? 'valid  ' : 'invalid'} ${s.class} ${s.artifact} via ${s.foundVia} in ${s.repository}` +
          `${s.signer ? ` signer ${s.signer}` : ''}: ${s.reason}`,
      );
      for (const c of s.checks)
        out(`      ${c.result.padEnd(4)} ${c.check} [${c.enforcement}]${c.detail ? `: ${c.detail}` : ''}`);
    }
  }
}

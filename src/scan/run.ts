/**
 * `pullguard scan`: decides every image containerd already holds, exactly as a pull of it would be
 * decided (same policy, same rule, same registry lookups and verification, on the image's target digest
 * and descriptor), because images that arrived without a verified pull (already present before
 * pullguard, imported, preloaded, pulled through a client that bypasses the transfer service) are
 * otherwise never checked. `--remove-denied` deletes the denied ones no container uses, so the next
 * pull of them goes through the verifier.
 *
 * Each decision also goes to the node's decision log (the policy's `log.file`, as pulls do), marked
 * `source: "scan"`, so `pullguard log` and whoever reads the log see them, and to the metrics file
 * (`log.metricsFile`) in its own family, `pullguard_scan_decisions_total`: the pull counters stay
 * about pulls. Decisions go through the decision cache as pulls do (src/cache/decide-cached.ts).
 */
import { Deadline } from '../common/deadline.js';
import { asPullguardError, PullguardError } from '../common/errors.js';
import { parseFlags, usageError } from '../common/flags.js';
import { parseReference } from '../common/reference.js';
import { flattenText } from '../common/text.js';
import { decideCached } from '../cache/decide-cached.js';
import { decide } from '../cli/decide.js';
import { loadPolicy, policyPath } from '../policy/load.js';
import { DEFAULT_DECISION_LOG, type Policy } from '../policy/model.js';
import { appendDecision } from '../output/decision-log.js';
import { recordMetrics } from '../output/metrics.js';
import type { RunContext } from '../output/emit.js';
import { toEntry } from '../output/record.js';
import { createRegistryClient } from '../registry/index.js';
import type { RegistryClient } from '../registry/types.js';
import { applyMode, errorDecision, EXIT, type Decision } from '../verdict/decision.js';
import { containerdApi, DEFAULT_CONTAINERD_SOCKET, type ContainerdApi } from '../containerd/api.js';
import { groupImages, removalPlan, StaleListing, usageByDigest, type ScanUnit, type Usage } from './plan.js';

type Out = (line: string) => void;

export const DEFAULT_NAMESPACE = 'k8s.io';
const CONCURRENCY = 4;

export interface ScanOptions {
  readonly address: string;
  /** Namespaces to scan; undefined: every namespace containerd has. */
  readonly namespaces?: readonly string[];
  readonly policy: string;
  readonly json: boolean;
  readonly removeDenied: boolean;
  /** Where each decision goes besides the output; runScan passes the node's decision log. */
  readonly record?: (decision: Decision, ctx: RunContext) => void;
}

export interface ScannedImage {
  readonly unit: ScanUnit;
  readonly decision: Decision;
  readonly usage: Usage;
  removed: string[];
  removeError?: string;
}

const USAGE =
  'usage: pullguard scan [--namespace NS | --all-namespaces] [--address SOCKET] [--policy FILE] [--json] ' +
  '[--remove-denied]';

const SCAN_FLAGS = {
  namespace: { type: 'string', short: 'n', multiple: true },
  'all-namespaces': { type: 'boolean', short: 'A' },
  address: { type: 'string', short: 'a' },
  policy: { type: 'string' },
  json: { type: 'boolean' },
  'remove-denied': { type: 'boolean' },
} as const;

export function parseScanArgs(args: readonly string[], env: NodeJS.ProcessEnv): ScanOptions {
  const { values } = parseFlags(args, SCAN_FLAGS, USAGE);
  const namespaces = values.namespace ?? [];
  const all = values['all-namespaces'] === true;
  if (all && namespaces.length > 0) throw usageError('--namespace and --all-namespaces exclude each other', USAGE);
  return {
    address: values.address ?? (env.CONTAINERD_ADDRESS || DEFAULT_CONTAINERD_SOCKET),
    namespaces: all ? undefined : namespaces.length > 0 ? namespaces : [DEFAULT_NAMESPACE],
    policy: values.policy ?? policyPath(env),
    json: values.json === true,
    removeDenied: values['remove-denied'] === true,
  };
}

/** Decides one unit the way runPull decides a pull of it: one deadline of the policy's timeout, audit mode applied. */
async function decideUnit(unit: ScanUnit, policy: Policy, registry: () => RegistryClient): Promise<Decision> {
  if (unit.repository === undefined) {
    return applyMode(
      errorDecision(
        new PullguardError(
          'POLICY_DENIED',
          `${unit.unnamed}: no rule can match it, and no pull of it was ever verified`,
        ),
      ),
      policy.mode,
    );
  }
  const ref = parseReference(unit.repository);
  const deadline = new Deadline(policy.timeoutMs);
  try {
    const subject = {
      reference: { domain: ref.domain, path: ref.path, digest: unit.target.digest },
      descriptor: unit.target,
    };
    // The same decision cache a pull uses (policy `cache:`): a fresh verified allow answers from it.
    const decided = decideCached(subject, policy, deadline, (d) => decide(subject, policy, registry, d));
    const { decision } = await deadline.race(decided);
    return applyMode(decision, policy.mode);
  } catch (e) {
    return applyMode(errorDecision(asPullguardError(e)), policy.mode);
  } finally {
    deadline.dispose();
  }
}

async function mapLimited<T, R>(items: readonly T[], limit: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

const wouldDeny = (s: { decision: Decision }) => s.decision.policyVerdict === 'deny';

export interface ScanResult {
  readonly namespaces: readonly string[];
  readonly images: readonly ScannedImage[];
  readonly notes: readonly string[];
}

/** Lists, decides and (with removeDenied) removes; the caller prints. */
export async function scanNode(opts: ScanOptions, policy: Policy, api: ContainerdApi): Promise<ScanResult> {
  const namespaces = opts.namespaces ?? (await api.namespaces()).sort();
  const registry = createRegistryClient(policy.registry);
  const images: ScannedImage[] = [];
  const notes: string[] = [];
  for (const namespace of namespaces) {
    const records = await api.images(namespace);
    const units = groupImages(namespace, records);
    const started = Date.now();
    const decisions = await mapLimited(units, CONCURRENCY, (u) => decideUnit(u, policy, () => registry));
    // Containers and tasks are listed after the decisions, right before any removal: the picture
    // removal acts on is as fresh as it can be.
    const containers = await api.containers(namespace);
    const tasks = await api.tasks(namespace);
    let usage: Map<string, Usage>;
    let stale: string | undefined;
    try {
      usage = usageByDigest(records, containers, tasks);
    } catch (e) {
      if (!(e instanceof StaleListing)) throw e;
      stale = e.message;
      usage = new Map();
    }
    const scanned = units.map(
      (unit, i): ScannedImage => ({
        unit,
        decision: decisions[i]!,
        usage: usage.get(unit.target.digest) ?? { containers: [], running: [] },
        removed: [],
      }),
    );
    for (const s of scanned) {
      opts.record?.(s.decision, { name: s.unit.names[0]!, digest: s.unit.target.digest, startedAt: started });
    }
    if (opts.removeDenied) {
      if (policy.mode === 'audit')
        notes.push(
          `${namespace}: policy ${policy.source} is in audit mode: ` +
            'a pull would allow these images, so --remove-denied removes nothing',
        );
      else if (stale)
        notes.push(`${namespace}: containers changed while scanning (${stale}): nothing removed; run scan again`);
      else await remove(api, namespace, scanned, usage);
    }
    images.push(...scanned);
  }
  return { namespaces, images, notes };
}

async function remove(
  api: ContainerdApi,
  namespace: string,
  scanned: ScannedImage[],
  usage: ReadonlyMap<string, Usage>,
): Promise<void> {
  const denied = new Set(scanned.filter(wouldDeny).map((s) => s.unit));
  const plan = removalPlan(
    scanned.map((s) => s.unit),
    (u) => denied.has(u),
    usage,
  );
  for (const r of plan) {
    const owners = scanned.filter((s) => s.unit.names.includes(r.name) && denied.has(s.unit));
    try {
      await api.deleteImage(namespace, r.name, r.target, r.sync);
      for (const o of owners) o.removed.push(r.name);
    } catch (e) {
      for (const o of owners) o.removeError ??= `${r.name}: ${asPullguardError(e).message}`;
    }
  }
}

function exitCodeOf(result: ScanResult): number {
  if (result.images.some((s) => s.decision.exitCode === EXIT.configError)) return EXIT.configError;
  return result.images.some(wouldDeny) || result.images.some((s) => s.removeError) ? EXIT.deny : EXIT.allow;
}

function printHuman(result: ScanResult, policy: Policy, opts: ScanOptions, rawOut: Out): void {
  // Names come from whoever put the image there (an archive, a registry's error text): no control
  // characters reach the terminal.
  // Word by word, so that the spaces laid out here survive (flattenText turns any run of them into one).
  const out: Out = (line) => rawOut(line.split(' ').map(flattenText).join(' '));
  out(
    `pullguard scan: containerd ${opts.address}, namespace ${result.namespaces.join(', ') || '(none)'}, ` +
      `policy ${policy.source} (mode ${policy.mode})`,
  );
  for (const s of result.images) {
    const verdict = wouldDeny(s) ? (policy.mode === 'audit' ? 'AUDIT-DENY' : 'WOULD-DENY') : 'ALLOW';
    const names = s.unit.names.join(', ');
    const rule = s.decision.rule ? `rule "${s.decision.rule}"` : 'no rule';
    out(`${verdict.padEnd(10)} ${s.unit.namespace}  ${names}  ${s.unit.target.digest}`);
    out(`           ${rule}: ${s.decision.reason}`);
    if (s.usage.containers.length > 0) {
      out(
        `           in use by ${s.usage.containers.length} container(s), ${s.usage.running.length} running: ` +
          s.usage.containers.join(', '),
      );
    }
    if (s.removed.length > 0) out(`           removed: ${s.removed.join(', ')} (the next pull is verified)`);
    else if (opts.removeDenied && wouldDeny(s) && policy.mode !== 'audit') {
      if (s.usage.containers.length > 0) out('           kept: a container uses it');
      else if (s.unit.pinned) {
        out(
          '           kept: the CRI pins it (the sandbox image?); exempt it in the policy instead (pullguard doctor)',
        );
      }
    }
    if (s.removeError) out(`           NOT removed: ${s.removeError}`);
  }
  for (const n of result.notes) out(`note: ${n}`);
  const s = summary(result);
  out(
    `summary: ${s.images} image(s) in ${result.namespaces.length} namespace(s): ` +
      `${s.allow} allow, ${s.deny} would deny` +
      (opts.removeDenied
        ? `; ${s.removed} removed, ${s.keptInUse} kept (in use), ${s.keptPinned} kept (pinned), ` +
          `${s.removeErrors} failed`
        : s.deny > 0
          ? ' (--remove-denied removes the unused ones)'
          : ''),
  );
}

function summary(result: ScanResult) {
  const denied = result.images.filter(wouldDeny);
  return {
    images: result.images.length,
    allow: result.images.length - denied.length,
    deny: denied.length,
    removed: denied.filter((s) => s.removed.length > 0).length,
    keptInUse: denied.filter((s) => s.usage.containers.length > 0).length,
    keptPinned: denied.filter((s) => s.usage.containers.length === 0 && s.unit.pinned).length,
    removeErrors: denied.filter((s) => s.removeError).length,
  };
}

function printJson(result: ScanResult, policy: Policy, opts: ScanOptions, out: Out): void {
  out(
    JSON.stringify({
      address: opts.address,
      namespaces: result.namespaces,
      policy: policy.source,
      mode: policy.mode,
      images: result.images.map((s) => ({
        namespace: s.unit.namespace,
        repository: s.unit.repository ?? null,
        names: s.unit.names,
        digest: s.unit.target.digest,
        mediaType: s.unit.target.mediaType,
        size: s.unit.target.size,
        verdict: s.decision.verdict,
        policyVerdict: s.decision.policyVerdict,
        rule: s.decision.rule ?? null,
        reason: s.decision.reason,
        code: s.decision.code ?? null,
        pinned: s.unit.pinned,
        containers: s.usage.containers,
        running: s.usage.running,
        removed: s.removed,
        removeError: s.removeError ?? null,
      })),
      notes: result.notes,
      summary: summary(result),
    }),
  );
}

/** Appends each decision to the policy's decision log; a failure is one warning, never a verdict. */
function decisionLog(policy: Policy, err: Out): (decision: Decision, ctx: RunContext) => void {
  const file = policy.log?.file ?? DEFAULT_DECISION_LOG;
  if (file === false && !policy.log?.metricsFile) return () => undefined;
  let warned = false;
  return (decision, ctx) => {
    try {
      const entry = toEntry(decision, ctx, Date.now(), { source: 'scan' });
      if (file !== false) appendDecision(entry, { path: file, maxBytes: policy.log?.maxBytes, keep: policy.log?.keep });
      if (policy.log?.metricsFile) recordMetrics(policy.log.metricsFile, { entry });
    } catch (e) {
      if (warned) return;
      warned = true;
      const why = (e as NodeJS.ErrnoException).code ?? asPullguardError(e).message;
      err(`pullguard scan: warning: decisions not recorded in the decision log or metrics (${why})`);
    }
  };
}

/**
 * Exit codes: 0 every image would be allowed; 1 some image would be denied (or a removal failed);
 * 2 configuration error (the policy); 3 the scan could not run (containerd unreachable, ...).
 */
export async function runScan(
  args: readonly string[],
  out: Out,
  err: Out,
  env: NodeJS.ProcessEnv,
  api?: ContainerdApi,
): Promise<number> {
  const opts = parseScanArgs(args, env);
  const policy = loadPolicy(opts.policy);
  const client = api ?? containerdApi(opts.address);
  try {
    const result = await scanNode({ ...opts, record: opts.record ?? decisionLog(policy, err) }, policy, client);
    (opts.json ? printJson : printHuman)(result, policy, opts, out);
    return exitCodeOf(result);
  } catch (e) {
    const pe = asPullguardError(e);
    if (pe.code !== 'CONTAINERD_API') throw pe;
    err(`pullguard scan: ${pe.message} [${pe.code}]`);
    return EXIT.internalError;
  } finally {
    client.close();
  }
}

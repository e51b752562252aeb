import { DeadlineExceeded, type Deadline } from '../common/deadline.js';
import { asPullguardError, type PullguardError } from '../common/errors.js';
import type { Policy, Rule } from '../policy/model.js';
import { RuleMatcher, type RuleMatch } from '../policy/match.js';
import { resolveAuthority } from '../policy/resolve.js';
import { repositoryOf } from '../common/reference.js';
import type { ArtifactClass, DiscoveryResult, RegistryClient } from '../registry/types.js';
import { ruleDecision, verifyDecision, type Decision } from '../verdict/decision.js';
import { verifierFor } from '../verify/index.js';
import type { AuthorityResult, Subject } from '../verify/types.js';

export interface DecideResult {
  readonly decision: Decision;
  readonly match?: RuleMatch;
  readonly discovery: readonly DiscoveryResult[];
}

/**
 * The spine of a decision: policy -> discovery -> verification -> verdict. Pure orchestration: each
 * stage is called once, in order, and nothing here knows a wire format.
 */
export async function decide(
  subject: Subject,
  policy: Policy,
  registry: () => RegistryClient,
  deadline: Deadline,
): Promise<DecideResult> {
  const match = new RuleMatcher(policy.rules).find(subject.reference, subject.reference.digest);
  if (!match) {
    const verdict = policy.defaultAction;
    const code = verdict === 'deny' ? 'POLICY_DENIED' : undefined;
    return {
      decision: ruleDecision(undefined, verdict, `no rule matches; default is ${verdict}`, [], code),
      discovery: [],
    };
  }
  const { rule } = match;
  switch (rule.action) {
    case 'allow':
      return { decision: ruleDecision(rule, 'allow', 'allowed by policy'), match, discovery: [] };
    case 'deny':
      return {
        decision: ruleDecision(rule, 'deny', rule.message ?? 'denied by policy', [], 'POLICY_DENIED'),
        match,
        discovery: [],
      };
    case 'verify': {
      try {
        const { results, discovery } = await deadline.race(verifyRule(rule, subject, registry, deadline));
        return { decision: verifyDecision(rule, results), match, discovery };
      } catch (e) {
        if (!(e instanceof DeadlineExceeded)) throw e;
        return {
          decision: ruleDecision(
            rule,
            'deny',
            `${e.message} while looking up and verifying signatures`,
            [],
            'DEADLINE_EXCEEDED',
          ),
          match,
          discovery: [],
        };
      }
    }
  }
}

async function verifyRule(rule: Rule, subject: Subject, registry: () => RegistryClient, deadline: Deadline) {
  const discovery: DiscoveryResult[] = [];
  // One discovery per signature repository, shared by every authority that looks there.
  const lookups = new Map<
    string,
    { classes: Set<ArtifactClass>; signatureRepository?: string; result?: Promise<DiscoveryResult> }
  >();
  // Policy's own part first (which settings apply to this repository, or the answer when policy alone
  // decides); only what remains goes to a verifier and, through it, to the registry.
  const repository = repositoryOf(subject.reference);
  const resolutions = rule.authorities.map((a) => ({ authority: a, resolution: resolveAuthority(a, repository) }));
  // Aligned with the rule's authorities: undefined where policy settled the authority by itself.
  const plans = resolutions.map(({ resolution }) => {
    if (!('verify' in resolution)) return undefined;
    const verifier = verifierFor(resolution.verify);
    const needs = verifier.needs();
    const key = needs.signatureRepository ?? '';
    const lookup = lookups.get(key) ?? {
      classes: new Set<ArtifactClass>(),
      signatureRepository: needs.signatureRepository,
    };
    for (const c of needs.classes) lookup.classes.add(c);
    lookups.set(key, lookup);
    return { verifier, lookup };
  });

  // Created only when some authority needs the network: an allow or deny rule never builds a client.
  const client = lookups.size > 0 ? registry() : undefined;
  for (const lookup of lookups.values()) {
    lookup.result = client!.discover(
      { subject: subject.reference, classes: lookup.classes, signatureRepository: lookup.signatureRepository },
      deadline,
    );
    lookup.result.then((r) => discovery.push(r)).catch(() => undefined);
  }

  const results = await Promise.all(
    resolutions.map(async ({ authority, resolution }, i): Promise<AuthorityResult> => {
      if ('settled' in resolution)
        return { authority: authority.name, kind: authority.kind, ...resolution.settled, signatures: [] };
      const plan = plans[i]!;
      try {
        const found = await plan.lookup.result!;
        return await plan.verifier.verify(subject, found.artifacts, deadline);
      } catch (e) {
        return unsatisfied(authority.name, authority.kind, asPullguardError(e));
      }
    }),
  );
  return { results, discovery };
}

function unsatisfied(authority: string, kind: string, err: PullguardError): AuthorityResult {
  return { authority, kind, satisfied: false, reason: err.message, code: err.code, signatures: [] };
}

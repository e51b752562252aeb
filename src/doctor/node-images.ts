/**
 * `pullguard doctor`: can this node start pods and restart its control plane whatever the registry does?
 *
 * Two kinds of image are the node's own: the CRI sandbox (pause) image, which every pod needs
 * (`pinned_images.sandbox`, version 2 `sandbox_image`), and the static pods' images (etcd,
 * kube-apiserver... from kubelet's staticPodPath, /etc/kubernetes/manifests by kubeadm). While they are
 * present kubelet does not pull them (IfNotPresent); when it must (image garbage collection, a new node
 * image, `imagePullPolicy: Always`), containerd runs pullguard, and a deny then stops every pod or the
 * control plane. So each must be either exempt (an `allow` rule) or verifiable with nothing but the
 * registry containerd pulls from: keys, certificates or keyless cosign (the trusted root is built in, the
 * Rekor and CT proofs are in the bundle), or notation without online revocation. "Offline" here means
 * that nothing but that registry (or its hosts.toml mirror) may be needed: an OCSP responder, a CRL
 * server or a signature repository elsewhere is one more thing that can be down when the node reboots.
 *
 * Pure: run.ts reads the manifests and the config; this decides.
 */
import { parseReference, type Reference } from '../common/reference.js';
import { RuleMatcher } from '../policy/match.js';
import type { Policy, Rule } from '../policy/model.js';
import type { Check } from './diagnose.js';

export const DEFAULT_STATIC_POD_DIR = '/etc/kubernetes/manifests';

export interface NodeImage {
  readonly image: string;
  /** `the sandbox image (pinned_images.sandbox)`, `static pod etcd (/etc/kubernetes/manifests/etcd.yaml)` */
  readonly role: string;
  /** The container's imagePullPolicy as written (static pods only). */
  readonly pullPolicy?: string;
}

export interface StaticPodImage {
  readonly pod: string;
  readonly container: string;
  readonly image: string;
  readonly pullPolicy?: string;
}

type PodLike = { metadata?: { name?: unknown }; spec?: { containers?: unknown; initContainers?: unknown } };

/** The images of one static pod manifest (a Pod, YAML or JSON, already parsed). */
export function staticPodImages(doc: unknown, file: string): StaticPodImage[] {
  const pod = (typeof doc === 'object' && doc !== null ? doc : {}) as PodLike;
  const name = typeof pod.metadata?.name === 'string' ? pod.metadata.name : file;
  const out: StaticPodImage[] = [];
  for (const list of [pod.spec?.initContainers, pod.spec?.containers]) {
    if (!Array.isArray(list)) continue;
    for (const c of list as { name?: unknown; image?: unknown; imagePullPolicy?: unknown }[]) {
      if (typeof c?.image !== 'string') continue;
      out.push({
        pod: name,
        container: typeof c.name === 'string' ? c.name : '?',
        image: c.image,
        pullPolicy: typeof c.imagePullPolicy === 'string' ? c.imagePullPolicy : undefined,
      });
    }
  }
  return out;
}

/** kubelet's default: Always for `:latest` or no tag (and no digest), IfNotPresent otherwise. */
function effectivePullPolicy(ref: Reference, written: string | undefined, image: string): string {
  if (written) return written;
  const tagged = /:[^:/@]+$/.test(image.split('@')[0]!);
  return ref.digest || (tagged && ref.tag !== 'latest') ? 'IfNotPresent' : 'Always';
}

/** What a verify rule needs besides the registry; empty when nothing. */
function onlineNeeds(rule: Rule): string[] {
  const needs: string[] = [];
  for (const a of rule.authorities) {
    switch (a.kind) {
      case 'cosign':
        if (a.spec.signatureRepository !== undefined)
          needs.push(`authority "${a.name}" reads signatures from ${a.spec.signatureRepository}`);
        break;
      case 'notation':
        if (a.spec.statements.some((s) => s.enforcement.revocation === 'enforce')) {
          const cached = a.spec.revocation.cacheDir
            ? `, or a CRL cached in ${a.spec.revocation.cacheDir} still be current`
            : '';
          needs.push(`authority "${a.name}" enforces revocation (OCSP or CRL servers must answer${cached})`);
        }
        break;
      case 'atproto':
        needs.push(`authority "${a.name}" fetches the record and its proof from the publisher's PDS`);
        break;
    }
  }
  return needs;
}

/** A digest-pinned allow rule for this repository: doctor cannot know which digest a tag resolves to. */
function pinnedAllow(policy: Pick<Policy, 'rules'>, ref: Reference): Rule | undefined {
  for (const rule of policy.rules) {
    if (rule.action !== 'allow') continue;
    for (const p of rule.match) {
      const at = p.indexOf('@');
      if (at < 0) continue;
      if (new RuleMatcher([{ ...rule, match: [p] }]).find(ref, p.slice(at + 1))) return rule;
    }
  }
  return undefined;
}

const EXEMPT_FIX = (repo: string) =>
  `exempt it: a rule {name: node-images, match: [${repo}], action: allow} ` +
  `(pin it by digest, ${repo}@sha256:..., for the strictest form)`;

/** One check per node image; `policy` undefined means the policy did not load (reported elsewhere). */
export function nodeImageChecks(
  policy: Pick<Policy, 'rules' | 'defaultAction' | 'mode'> | undefined,
  images: readonly NodeImage[],
): Check[] {
  if (!policy) return [];
  const matcher = new RuleMatcher(policy.rules);
  const out: Check[] = [];
  const audit = policy.mode === 'audit' ? ' (audit mode allows it today; enforce mode will not)' : '';
  for (const img of images) {
    let ref: Reference;
    try {
      ref = parseReference(img.image);
    } catch (e) {
      out.push({ status: 'WARN', message: `${img.role}: ${(e as Error).message}` });
      continue;
    }
    const repo = `${ref.domain}/${ref.path}`;
    const what = `${img.role} ${img.image}`;
    const always = img.pullPolicy !== undefined && effectivePullPolicy(ref, img.pullPolicy, img.image) === 'Always';
    if (always) {
      out.push({
        status: 'WARN',
        message:
          `${what} has imagePullPolicy Always${img.pullPolicy ? '' : ' (the default for :latest or no tag)'}: ` +
          'every restart pulls it, so the control plane cannot restart while the registry is unreachable, ' +
          'exempt or not',
        fix: 'pin a tag or digest and set imagePullPolicy: IfNotPresent',
      });
    }
    const match = matcher.find(ref, ref.digest ?? '');
    const action = match?.rule.action ?? policy.defaultAction;
    const by = match ? `rule "${match.rule.name}"` : `no rule matches; default is ${policy.defaultAction}`;
    if (action === 'allow') {
      out.push({
        status: 'ok',
        message:
          `${what}: exempt (${match ? by : 'the policy default is allow'}): ` +
          'pulled without a signature check, also while the registry is unreachable',
      });
      continue;
    }
    if (action === 'deny') {
      const stops = img.role.startsWith('the sandbox') ? 'no pod can start' : 'this static pod cannot start';
      const pinned = !ref.digest ? pinnedAllow(policy, ref) : undefined;
      if (pinned) {
        out.push({
          status: 'WARN',
          message:
            `${what}: allowed only at the digest rule "${pinned.name}" pins; ` +
            'doctor cannot tell which digest the tag resolves to',
          fix: `name it by that digest (${repo}@sha256:...)`,
        });
        continue;
      }
      out.push({
        status: audit ? 'WARN' : 'FAIL',
        message:
          `${what}: would be denied (${by})${audit}: the day it must be pulled again ` +
          `(image GC, a new node, a pull policy of Always) ${stops}`,
        fix: EXEMPT_FIX(repo),
      });
      continue;
    }
    const needs = onlineNeeds(match!.rule);
    if (needs.length > 0) {
      out.push({
        status: 'WARN',
        message:
          `${what}: verified by rule "${match!.rule.name}", which needs more than the registry: ` +
          `${needs.join('; ')}; while that is unreachable its pull is denied`,
        fix: EXEMPT_FIX(repo),
      });
    } else {
      out.push({
        status: 'ok',
        message:
          `${what}: verified by rule "${match!.rule.name}" with nothing but the registry containerd pulls it from ` +
          '(signatures beside the image; no online revocation or transparency-log lookups)',
      });
    }
  }
  return out;
}

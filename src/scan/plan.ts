/**
 * `pullguard scan`, the pure part: what containerd holds in a namespace, grouped into the units a pull
 * decision is about, and which image records `--remove-denied` may delete.
 *
 * A pull decision is about a repository and a digest (rules match the repository; the verifier checks
 * the digest), so containerd's image records are grouped by (repository, target digest):
 * `reg/app:v1` and `reg/app@sha256:X` are one unit, `other/app@sha256:X` another. The CRI also names
 * every image by its ID (`sha256:<config digest>`, same target); such records join the units of their
 * target, or, when nothing else names that target, form a unit with no repository (no rule can match
 * it: reported as denied).
 *
 * In use means: some container in the namespace was created from one of the target's names (running or
 * not). A target in use is never removed, whatever its verdict; removal is per target digest, never per
 * name, so a running container's image keeps all its names.
 */
import { isDigest } from '../common/digest.js';
import { parseReference, repositoryOf } from '../common/reference.js';
import type { ContainerdContainer, ContainerdImage, ContainerdTask, ImageDescriptor } from '../containerd/api.js';

export interface ScanUnit {
  readonly namespace: string;
  /** `domain/path`, normalized as the CRI does; undefined when no record names a repository. */
  readonly repository?: string;
  /** Why there is no repository (the records' names are image IDs, or not references). */
  readonly unnamed?: string;
  readonly target: ImageDescriptor;
  /** containerd image record names of this unit (repository names, then IDs). */
  readonly names: readonly string[];
  /**
   * The CRI pins it (`io.cri-containerd.pinned=pinned`: the sandbox image, images pinned by the node):
   * never removed, since the node pulls it again at once and a deny would stop every pod.
   */
  readonly pinned: boolean;
}

export const PINNED_LABEL = 'io.cri-containerd.pinned';

export interface Usage {
  readonly containers: readonly string[];
  readonly running: readonly string[];
}

const IMAGE_ID = /^sha256:[a-f0-9]{64}$/;
const ACTIVE: ReadonlySet<ContainerdTask['status']> = new Set(['created', 'running', 'paused', 'pausing', 'unknown']);

export function groupImages(namespace: string, images: readonly ContainerdImage[]): ScanUnit[] {
  const units = new Map<string, { repository?: string; unnamed?: string; target: ImageDescriptor; names: string[] }>();
  const ids = new Map<string, string[]>();
  const invalid: ContainerdImage[] = [];
  for (const image of images) {
    if (IMAGE_ID.test(image.name)) {
      ids.set(image.target.digest, [...(ids.get(image.target.digest) ?? []), image.name]);
      continue;
    }
    let repository: string;
    try {
      repository = repositoryOf(parseReference(image.name));
    } catch {
      invalid.push(image);
      continue;
    }
    const key = `${repository}@${image.target.digest}`;
    const unit = units.get(key) ?? { repository, target: image.target, names: [] };
    unit.names.push(image.name);
    units.set(key, unit);
  }
  for (const image of invalid) {
    units.set(`\u0000${image.name}`, {
      unnamed: `"${image.name}" is not an image reference`,
      target: image.target,
      names: [image.name],
    });
  }
  for (const [digest, names] of ids) {
    const named = [...units.values()].filter((u) => u.target.digest === digest && u.repository !== undefined);
    if (named.length > 0) for (const u of named) u.names.push(...names);
    else
      units.set(`\u0000${digest}`, {
        unnamed: 'only its image ID names it',
        target: images.find((i) => i.name === names[0])!.target,
        names,
      });
  }
  const pinnedNames = new Set(images.filter((i) => i.labels[PINNED_LABEL] === 'pinned').map((i) => i.name));
  return [...units.values()]
    .map((u) => ({ namespace, ...u, names: [...new Set(u.names)], pinned: u.names.some((n) => pinnedNames.has(n)) }))
    .sort(
      (a, b) =>
        (a.repository ?? '\uffff').localeCompare(b.repository ?? '\uffff') || a.names[0]!.localeCompare(b.names[0]!),
    );
}

/**
 * Which target digests containers use. Throws when a task's container is not among `containers` (one
 * was created between the two listings): removal must then not go ahead on a stale picture.
 */
export function usageByDigest(
  images: readonly ContainerdImage[],
  containers: readonly ContainerdContainer[],
  tasks: readonly ContainerdTask[],
): Map<string, Usage> {
  const targetOf = new Map(images.map((i) => [i.name, i.target.digest]));
  const active = new Set(tasks.filter((t) => ACTIVE.has(t.status)).map((t) => t.containerId));
  const known = new Set(containers.map((c) => c.id));
  const stray = tasks.find((t) => !known.has(t.containerId));
  if (stray) throw new StaleListing(`task of container ${stray.containerId} has no container in the listing`);
  const usage = new Map<string, { containers: string[]; running: string[] }>();
  for (const c of containers) {
    if (c.image === '') continue;
    const digest = targetOf.get(c.image) ?? (isDigest(c.image) ? c.image : undefined);
    if (!digest) continue;
    const u = usage.get(digest) ?? { containers: [], running: [] };
    u.containers.push(c.id);
    if (active.has(c.id)) u.running.push(c.id);
    usage.set(digest, u);
  }
  return usage;
}

export class StaleListing extends Error {}

export interface Removal {
  readonly name: string;
  readonly target: ImageDescriptor;
  /** The last record of its target: containerd collects the content before answering. */
  readonly sync: boolean;
}

/**
 * The image records to delete so that the next pull of each denied unit is verified: all names of the
 * denied units whose target no container uses and the CRI does not pin. An ID record (`sha256:...`)
 * goes only when every unit of its target goes, so an allowed repository never loses its image under
 * another name's verdict.
 */
export function removalPlan(
  units: readonly ScanUnit[],
  denied: (u: ScanUnit) => boolean,
  usage: ReadonlyMap<string, Usage>,
): Removal[] {
  const out: Removal[] = [];
  const byDigest = new Map<string, ScanUnit[]>();
  for (const u of units) byDigest.set(u.target.digest, [...(byDigest.get(u.target.digest) ?? []), u]);
  for (const [digest, group] of byDigest) {
    if ((usage.get(digest)?.containers.length ?? 0) > 0 || group.some((u) => u.pinned)) continue;
    const all = group.every(denied);
    const names = new Set<string>();
    for (const u of group) {
      if (!denied(u)) continue;
      for (const n of u.names) if (all || !IMAGE_ID.test(n)) names.add(n);
    }
    const list = [...names].sort((a, b) => Number(IMAGE_ID.test(a)) - Number(IMAGE_ID.test(b)));
    list.forEach((name, i) => {
      out.push({ name, target: group[0]!.target, sync: all && i === list.length - 1 });
    });
  }
  return out;
}

/**
 * The node agent's policy store: reads one consistent version of a mounted ConfigMap, validates it
 * with the verifier's own loader, and swaps it into the host's /etc/pullguard atomically.
 *
 * Host layout (every link relative, so it resolves the same on the host and under the agent's --root):
 *
 *   /etc/pullguard/.versions/<id>/...        one complete, never modified copy per version
 *   /etc/pullguard/current -> .versions/<id> the one atomic switch (symlink + rename(2))
 *   /etc/pullguard/policy.yaml -> current/policy.yaml   and one such link per top-level entry
 *
 * The path containerd's pullguard reads, /etc/pullguard/policy.yaml, therefore resolves through
 * `current`; a new version becomes visible in one rename, and a file is never seen half written.
 */
import { createHash, randomBytes } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import type { Stats } from 'node:fs';
import { dirname, join } from 'node:path';
import { PullguardError } from '../common/errors.js';
import { loadPolicy } from '../policy/load.js';

export const POLICY_FILE = 'policy.yaml';
const RESERVED = new Set(['current', 'docker']);
const topLevel = (files: ReadonlyMap<string, Buffer>) => [...new Set([...files.keys()].map((p) => p.split('/')[0]!))];
const MAX_FILES = 256;
const MAX_TOTAL_BYTES = 8 * 1024 * 1024;

export interface PolicyVersion {
  /** sha256 of the sorted (path, content) pairs, first 12 hex digits. */
  readonly id: string;
  /** Relative path (with `/`) to content. */
  readonly files: ReadonlyMap<string, Buffer>;
}

/**
 * One version of a mounted ConfigMap or Secret. kubelet writes every version into a fresh
 * `..<timestamp>` directory and swaps the `..data` symlink to it; reading through one readlink of
 * `..data` gives one version, never a mix. A plain directory (a hostPath, tests) is read as is.
 * Returns undefined when the directory does not exist (an optional Secret that is not there).
 */
export function readMountedVersion(dir: string): PolicyVersion | undefined {
  if (!existsSync(dir)) return undefined;
  let base = dir;
  try {
    const target = readlinkSync(join(dir, '..data'));
    base = join(dir, target);
  } catch {
    /* not a kubelet atomic-writer volume */
  }
  const files = new Map<string, Buffer>();
  let total = 0;
  const walk = (rel: string): void => {
    for (const name of readdirSync(join(base, rel)).sort()) {
      if (rel === '' && name.startsWith('..')) continue; // kubelet's ..data and ..<timestamp>
      const relPath = rel === '' ? name : `${rel}/${name}`;
      const full = join(base, relPath);
      const st = lstatSync(full);
      if (st.isDirectory()) walk(relPath);
      else if (st.isFile() || (st.isSymbolicLink() && base === dir && rel === '')) {
        // A kubelet volume without ..data does not exist; top-level links in a plain dir are followed.
        const content = readFileSync(full);
        total += content.length;
        if (files.size >= MAX_FILES || total > MAX_TOTAL_BYTES) {
          throw new PullguardError(
            'POLICY_INVALID',
            `${dir} holds more than ${MAX_FILES} files or ${MAX_TOTAL_BYTES} bytes`,
          );
        }
        files.set(relPath, content);
      } else throw new PullguardError('POLICY_INVALID', `${dir}: ${relPath} is neither a file nor a directory`);
    }
  };
  walk('');
  const h = createHash('sha256');
  for (const [p, c] of [...files].sort(([a], [b]) => (a < b ? -1 : 1))) {
    h.update(`${p}\0${c.length}\0`);
    h.update(c);
  }
  return { id: h.digest('hex').slice(0, 12), files };
}

function writeTree(dir: string, files: ReadonlyMap<string, Buffer>, mode = 0o644): void {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  for (const [rel, content] of files) {
    const p = join(dir, rel);
    mkdirSync(dirname(p), { recursive: true, mode: 0o755 });
    writeFileSync(p, content, { mode });
  }
}

/**
 * Validates a version with the verifier's loader (src/policy/load.ts) at `stageDir`, which must be the
 * directory the policy's own absolute paths name (/etc/pullguard in the agent's container): keys and
 * trust stores are then read from this version, exactly as pullguard on the host will read them.
 * Throws a PullguardError with the loader's reason.
 */
export function validateVersion(version: PolicyVersion, stageDir: string): void {
  if (!version.files.has(POLICY_FILE)) {
    throw new PullguardError('POLICY_MISSING', `the policy ConfigMap has no ${POLICY_FILE} key`);
  }
  // The host layout's own names: a key called `current` would break the swap, `docker` would shadow
  // the docker config Secret's directory.
  for (const top of topLevel(version.files)) {
    if (RESERVED.has(top) || top.startsWith('.')) {
      throw new PullguardError(
        'POLICY_INVALID',
        `the policy ConfigMap must not have a key or path named ${JSON.stringify(top)} (reserved in /etc/pullguard)`,
      );
    }
  }
  for (const name of existsSync(stageDir) ? readdirSync(stageDir) : [])
    rmSync(join(stageDir, name), { recursive: true, force: true });
  writeTree(stageDir, version.files);
  loadPolicy(join(stageDir, POLICY_FILE));
}

const pullguardDir = (root: string) => join(root, 'etc', 'pullguard');

/** rename(2) a fresh symlink over `path`: readers see the old link or the new one, nothing between. */
function atomicSymlink(target: string, path: string): void {
  const tmp = `${path}.tmp-${randomBytes(4).toString('hex')}`;
  symlinkSync(target, tmp);
  try {
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

const isLinkTo = (path: string, target: string) => {
  try {
    return lstatSync(path).isSymbolicLink() && readlinkSync(path) === target;
  } catch {
    return false;
  }
};

/** The version `current` points at on the host, if any. */
export function currentHostVersion(root: string): string | undefined {
  try {
    const t = readlinkSync(join(pullguardDir(root), 'current'));
    return /^\.versions\/([0-9a-f]{12})$/.exec(t)?.[1];
  } catch {
    return undefined;
  }
}

/**
 * Puts a validated version on the host and makes it current. The version directory is written
 * under a temporary name and renamed whole; then `current` is swapped; then every top-level name
 * gets its `name -> current/name` link (only the first version, or a new file name, needs one; the
 * policy's own link comes last, so the files it names exist when it appears). A regular file or
 * directory in the way (an install by hand) is moved into .versions/.replaced-<time>/ first.
 */
export function applyVersionToHost(root: string, version: PolicyVersion): void {
  const base = pullguardDir(root);
  const versions = join(base, '.versions');
  mkdirSync(versions, { recursive: true, mode: 0o755 });
  const vdir = join(versions, version.id);
  if (!existsSync(vdir)) {
    const tmp = join(versions, `.tmp-${version.id}-${randomBytes(4).toString('hex')}`);
    writeTree(tmp, version.files);
    renameSync(tmp, vdir);
  }
  const previous = currentHostVersion(root);
  atomicSymlink(`.versions/${version.id}`, join(base, 'current'));

  const names = topLevel(version.files).sort((a, b) => Number(a === POLICY_FILE) - Number(b === POLICY_FILE));
  for (const name of names) {
    const link = join(base, name);
    const target = `current/${name}`;
    if (isLinkTo(link, target)) continue;
    let st: Stats | undefined;
    try {
      st = lstatSync(link);
    } catch {
      /* nothing there */
    }
    if (st && !st.isSymbolicLink()) {
      const aside = join(versions, `.replaced-${Date.now()}`);
      mkdirSync(aside, { recursive: true });
      if (st.isDirectory()) renameSync(link, join(aside, name));
      else writeFileSync(join(aside, name), readFileSync(link)); // a file is replaced by the rename below
    }
    atomicSymlink(target, link);
  }
  // Links into current/ for names this version no longer has, then versions nobody points at
  // (the previous one stays: a pull that resolved a path just before the swap may still open it).
  for (const name of readdirSync(base)) {
    if (names.includes(name) || name === 'current') continue;
    const link = join(base, name);
    if (lstatSync(link).isSymbolicLink() && readlinkSync(link) === `current/${name}`) rmSync(link);
  }
  for (const name of readdirSync(versions)) {
    if (name === version.id || name === previous || name.startsWith('.replaced-')) continue;
    rmSync(join(versions, name), { recursive: true, force: true });
  }
}

/** Removes what applyVersionToHost made (links into current/, current, .versions); leaves anything else. */
export function removeFromHost(root: string): void {
  const base = pullguardDir(root);
  if (!existsSync(base)) return;
  // The policy link first: from then on no pull finds a policy through the agent's files.
  const names = readdirSync(base).sort((a, b) => Number(b === POLICY_FILE) - Number(a === POLICY_FILE));
  for (const name of names) {
    const link = join(base, name);
    if (lstatSync(link).isSymbolicLink() && readlinkSync(link) === `current/${name}`) rmSync(link);
  }
  rmSync(join(base, 'current'), { force: true });
  rmSync(join(base, '.versions'), { recursive: true, force: true });
}

/** Where the mounted dockerconfigjson Secret goes on the host: pullguard's own docker config. */
export const HOST_DOCKER_CONFIG = '/etc/pullguard/docker/config.json';

/**
 * Places a kubernetes.io/dockerconfigjson Secret's `.dockerconfigjson` on the host as
 * /etc/pullguard/docker/config.json, root only (directory 0700, file 0600), by rename. Returns
 * false when there is no such key (the file is then removed, if the agent had placed one).
 * The content is never logged; a malformed one is refused with a reason that does not quote it.
 */
export function syncDockerConfig(root: string, secret: PolicyVersion | undefined): boolean {
  const dest = join(root, HOST_DOCKER_CONFIG);
  const content = secret?.files.get('.dockerconfigjson');
  if (!content) {
    rmSync(dest, { force: true });
    return false;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(content.toString('utf8'));
  } catch {
    throw new PullguardError('POLICY_INVALID', "the docker config Secret's .dockerconfigjson is not valid JSON");
  }
  const auths = (parsed as { auths?: unknown } | null)?.auths;
  if (typeof auths !== 'object' || auths === null || Array.isArray(auths)) {
    throw new PullguardError('POLICY_INVALID', 'the docker config Secret\'s .dockerconfigjson has no "auths" object');
  }
  mkdirSync(dirname(dest), { recursive: true, mode: 0o700 });
  chmodSync(dirname(dest), 0o700);
  const tmp = `${dest}.tmp-${randomBytes(4).toString('hex')}`;
  writeFileSync(tmp, content, { mode: 0o600 });
  renameSync(tmp, dest);
  return true;
}

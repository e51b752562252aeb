/** The I/O for `doctor --image`: config.json files, the provider config and bin dir, kubelet's command line. */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { asPullguardError } from '../common/errors.js';
import { parseReference } from '../common/reference.js';
import type { Policy } from '../policy/model.js';
import { CredentialStore, dockerConfigPaths, normalizeAuthKey } from '../registry/auth.js';
import { CredentialProviders } from '../registry/credential-provider.js';
import { TokenRealmMemory } from '../registry/token-realms.js';
import {
  credentialChecks,
  kubeletCredentialFlags,
  providerConfigChecks,
  type CredentialInput,
  type KubeletCredentialFlags,
} from './credentials.js';
import type { Check } from './diagnose.js';

/** The running kubelet's flags, from /proc/<pid>/cmdline: exactly what it was started with. */
export function runningKubeletFlags(proc = '/proc'): KubeletCredentialFlags | undefined {
  let pids: string[];
  try {
    pids = readdirSync(proc).filter((p) => /^\d+$/.test(p));
  } catch {
    return undefined;
  }
  for (const pid of pids) {
    try {
      if (readFileSync(join(proc, pid, 'comm'), 'utf8').trim() !== 'kubelet') continue;
      return kubeletCredentialFlags(
        readFileSync(join(proc, pid, 'cmdline'), 'utf8')
          .split('\0')
          .filter(Boolean),
      );
    } catch {
      /* gone, or not ours to read */
    }
  }
  return undefined;
}

function executableProblem(path: string): string | undefined {
  try {
    const st = statSync(path);
    if (!st.isFile()) return 'is not a file';
    return (st.mode & 0o111) === 0 ? 'is not executable' : undefined;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ENOENT'
      ? 'does not exist'
      : `cannot be read (${(e as NodeJS.ErrnoException).code})`;
  }
}

/** The checks for `doctor --image REF` under `policy` (or defaults when it does not load). */
export function imageCredentialChecks(
  ref: string,
  policy: Policy | undefined,
  env: NodeJS.ProcessEnv,
  proc = '/proc',
): Check[] {
  let parsed: ReturnType<typeof parseReference>;
  try {
    parsed = parseReference(ref);
  } catch (e) {
    return [{ status: 'FAIL', message: `--image: ${asPullguardError(e).message}` }];
  }
  const image = `${normalizeAuthKey(parsed.domain)}/${parsed.path}`;
  const settings = policy?.registry ?? {};
  const providers = settings.credentialProviders
    ? new CredentialProviders(settings.credentialProviders, env)
    : undefined;
  const store = new CredentialStore(
    dockerConfigPaths(settings.dockerConfig, env),
    settings.dockerConfig,
    env,
    providers,
  );
  let source: CredentialInput['source'];
  try {
    source = store.explain(parsed.domain, parsed.path);
  } catch (e) {
    const err = asPullguardError(e);
    // A provider config that does not load is already a FAIL of its own (credentialProviderChecks).
    const cfg = settings.credentialProviders?.config;
    const reported = cfg !== undefined && String(err.detail?.path ?? '').startsWith(cfg);
    source = reported
      ? { kind: 'unknown', why: 'the credential provider config does not load' }
      : { kind: 'error', error: err.message };
  }
  const kubelet = runningKubeletFlags(proc);
  let kubeletProviders: string[] | undefined;
  if (kubelet?.config && kubelet.binDir && !settings.credentialProviders) {
    try {
      kubeletProviders = new CredentialProviders({ config: kubelet.config, binDir: kubelet.binDir }, env)
        .matching(image)
        .map((p) => p.name);
    } catch {
      kubeletProviders = undefined;
    }
  }
  return credentialChecks({
    image,
    source,
    providers: settings.credentialProviders,
    kubelet,
    kubeletProviders,
  });
}

/** registry.tokenRealmCache: can its directory be used (none when the policy does not turn it on)? */
export function tokenRealmChecks(policy: Policy | undefined): Check[] {
  const settings = policy?.registry.tokenRealmCache;
  if (!settings) return [];
  const memory = new TokenRealmMemory(settings);
  const problem = memory.problem;
  if (!problem) return [{ status: 'ok', message: `token realms remembered in ${memory.dir}` }];
  return [
    {
      status: 'WARN',
      message: `token realm cache not used: ${problem}`,
      fix:
        'every pull learns its token realm from a 401 again; let pullguard create the directory (root, 0700) ' +
        'or set registry.tokenRealmCache.dir',
    },
  ];
}

/** The checks for the policy's registry.credentialProviders (none when it names none). */
export function credentialProviderChecks(policy: Policy | undefined, env: NodeJS.ProcessEnv): Check[] {
  const settings = policy?.registry.credentialProviders;
  if (!settings) return [];
  const cp = new CredentialProviders(settings, env);
  let names: string[];
  try {
    names = cp.providers().map((p) => p.name);
  } catch (e) {
    return providerConfigChecks({ ...settings, providers: { error: asPullguardError(e).message }, binaries: [] });
  }
  const binaries = names.map((name) => {
    const path = join(settings.binDir, name);
    return { name, path, problem: executableProblem(path) };
  });
  return providerConfigChecks({ ...settings, providers: names, binaries, cacheProblem: cp.cacheProblem });
}

/**
 * `pullguard doctor --image REF`: which credentials pullguard would send for that image's registry,
 * and whether that source can work, without running a helper or plugin and without printing a secret.
 * Pure: the I/O (reading config.json files, the provider config, the bin dir, kubelet's command line)
 * is in credentials-run.ts.
 */
import type { CredentialSourceInfo } from '../registry/auth.js';
import type { Check } from './diagnose.js';

export interface KubeletCredentialFlags {
  readonly config?: string;
  readonly binDir?: string;
}

export interface CredentialInput {
  /** `host/repository`, as kubelet and pullguard match it. */
  readonly image: string;
  /** What CredentialStore.explain found, or why it could not look (a broken config.json or provider config). */
  readonly source:
    | CredentialSourceInfo
    | { readonly kind: 'error'; readonly error: string }
    | { readonly kind: 'unknown'; readonly why: string };
  /** The policy's registry.credentialProviders, if any. */
  readonly providers?: { readonly config: string; readonly binDir: string };
  /** The running kubelet's --image-credential-provider-* flags, when a kubelet runs on this node. */
  readonly kubelet?: KubeletCredentialFlags;
  /** Providers in kubelet's own config that match the image (only when the policy has none configured). */
  readonly kubeletProviders?: readonly string[];
}

export interface ProviderConfigInput {
  readonly config: string;
  readonly binDir: string;
  /** The providers the config names, or why it does not load. */
  readonly providers: readonly string[] | { readonly error: string };
  /** For each provider: is `<binDir>/<name>` an executable file? */
  readonly binaries: readonly { readonly name: string; readonly path: string; readonly problem?: string }[];
  /** Why the shared credential cache cannot be used, if so. */
  readonly cacheProblem?: string;
}

/** Pure: registry.credentialProviders: does the config load, is every plugin there, is the cache usable. */
export function providerConfigChecks(input: ProviderConfigInput): Check[] {
  const p = input.providers;
  if (!Array.isArray(p)) {
    const error = (p as { error: string }).error;
    return [{ status: 'FAIL', message: `${error}: pulls that need a provider's credentials are denied` }];
  }
  const checks: Check[] = [
    { status: 'ok', message: `kubelet credential provider config ${input.config}: ${p.join(', ')}` },
  ];
  for (const b of input.binaries) {
    if (!b.problem) continue;
    checks.push({
      status: 'FAIL',
      message: `credential provider ${b.name}: ${b.path} ${b.problem}`,
      fix: 'install the plugin there or correct registry.credentialProviders.binDir',
    });
  }
  if (input.cacheProblem) {
    checks.push({
      status: 'WARN',
      message: `credential cache not used: ${input.cacheProblem}`,
      fix:
        'every pull runs the plugin; let pullguard create the directory (root, 0700) ' +
        'or set registry.credentialProviders.cacheDir',
    });
  }
  return checks;
}

/** kubelet's two flags from its argv (`--flag=value` or `--flag value`), as in /proc/<pid>/cmdline. */
export function kubeletCredentialFlags(argv: readonly string[]): KubeletCredentialFlags {
  const out: { config?: string; binDir?: string } = {};
  const names: Record<string, 'config' | 'binDir'> = {
    '--image-credential-provider-config': 'config',
    '--image-credential-provider-bin-dir': 'binDir',
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const eq = a.indexOf('=');
    const flag = (eq > 0 ? a.slice(0, eq) : a).replace(/^-(?=[^-])/, '--');
    const key = names[flag];
    if (!key) continue;
    const value = eq > 0 ? a.slice(eq + 1) : argv[++i];
    if (value) out[key] = value;
  }
  return out;
}

/** Pure: the credential lines doctor prints for one image. */
export function credentialChecks(input: CredentialInput): Check[] {
  const checks: Check[] = [];
  const s = input.source;
  const head = `credentials for ${input.image}`;
  switch (s.kind) {
    case 'error':
      checks.push({
        status: 'FAIL',
        message: `${head}: ${s.error}`,
        fix: 'fix the file named; pulls that need credentials are denied meanwhile',
      });
      break;
    case 'unknown':
      checks.push({ status: 'WARN', message: `${head}: not known: ${s.why}` });
      break;
    case 'auths':
      checks.push({ status: 'ok', message: `${head}: the auths entry in docker config ${s.file} (values not shown)` });
      break;
    case 'credHelper':
    case 'credsStore':
      checks.push({
        status: 'ok',
        message: `${head}: credential helper ${s.helper}, named by ${s.kind} in ${s.file} (run at pull time)`,
      });
      break;
    case 'provider': {
      checks.push({
        status: 'ok',
        message: `${head}: kubelet credential provider ${s.providers.join(', ')} from ${s.file} (run at pull time)`,
      });
      break;
    }
    case 'none':
      checks.push({
        status: 'ok',
        message:
          `${head}: none; pullguard asks ${input.image.split('/')[0]} anonymously, ` +
          'so a registry that requires credentials denies the pull',
      });
      break;
  }
  const k = input.kubelet;
  if (k?.config && k.binDir) {
    const p = input.providers;
    if (!p) {
      const matched = input.kubeletProviders?.length
        ? ` (its ${input.kubeletProviders.join(', ')} matches ${input.image})`
        : '';
      checks.push({
        status: input.kubeletProviders?.length && s.kind === 'none' ? 'WARN' : 'ok',
        message:
          `kubelet on this node gets credentials from provider plugins${matched}: ` +
          `--image-credential-provider-config ${k.config} --image-credential-provider-bin-dir ${k.binDir}`,
        fix:
          input.kubeletProviders?.length && s.kind === 'none'
            ? `add to the policy: registry: {credentialProviders: {config: ${k.config}, binDir: ${k.binDir}}}`
            : undefined,
      });
    } else if (p.config !== k.config || p.binDir !== k.binDir) {
      checks.push({
        status: 'WARN',
        message:
          `registry.credentialProviders (${p.config}, ${p.binDir}) ` +
          `differs from kubelet's flags (${k.config}, ${k.binDir})`,
        fix: 'use the same paths as kubelet unless the difference is intended',
      });
    }
  }
  return checks;
}

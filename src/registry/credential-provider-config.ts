/**
 * kubelet's CredentialProviderConfig (the file behind `--image-credential-provider-config`), read the
 * way kubernetes pkg/credentialprovider/plugin/config.go reads it: YAML or JSON, `kind:
 * CredentialProviderConfig` in group kubelet.config.k8s.io (v1, v1beta1 or v1alpha1), a file or a
 * directory of `*.json|*.yaml|*.yml` merged in lexicographic order, and validated as kubelet
 * validates it. Unknown fields are ignored rather than rejected: a newer kubelet may know more.
 */
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { PullguardError } from '../common/errors.js';
import { FileReadError, readRegularText } from '../common/files.js';
import { parseGoDuration } from '../common/go-duration.js';
import { parseSchemelessUrl } from './kubelet-match.js';

export const PROVIDER_API_VERSIONS = [
  'credentialprovider.kubelet.k8s.io/v1',
  'credentialprovider.kubelet.k8s.io/v1beta1',
  'credentialprovider.kubelet.k8s.io/v1alpha1',
] as const;
const CONFIG_GROUP = 'kubelet.config.k8s.io';
const MAX_CONFIG_BYTES = 1024 * 1024;

export interface CredentialProviderSpec {
  readonly name: string;
  readonly apiVersion: string;
  readonly matchImages: readonly string[];
  readonly defaultCacheDurationMs: number;
  readonly args: readonly string[];
  readonly env: readonly { readonly name: string; readonly value: string }[];
  /**
   * `tokenAttributes.requireServiceAccount`: such a plugin wants the pod's service account token, which
   * containerd never gives a verifier, so kubelet would not run it for pullguard either.
   */
  readonly requiresServiceAccount: boolean;
  /** The file it was read from, for messages. */
  readonly file: string;
}

const isObject = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v);

/** Pure: one document's providers, or a one-line reason naming the file and the field. */
export function parseCredentialProviderConfig(text: string, file: string): CredentialProviderSpec[] {
  const bad = (why: string): never => {
    throw new PullguardError('POLICY_INVALID', `kubelet credential provider config ${file}: ${why}`, { path: file });
  };
  let doc: unknown;
  try {
    doc = parseYaml(text, { maxAliasCount: 0, prettyErrors: false });
  } catch (e) {
    bad(`not valid YAML or JSON (${String((e as Error).message).split('\n')[0]})`);
  }
  if (!isObject(doc)) return bad('not a CredentialProviderConfig object');
  if (doc.kind !== 'CredentialProviderConfig')
    bad(`kind is ${JSON.stringify(doc.kind)}, not "CredentialProviderConfig"`);
  const apiVersion = typeof doc.apiVersion === 'string' ? doc.apiVersion : '';
  if (!/^kubelet\.config\.k8s\.io\/v1(?:beta1|alpha1)?$/.test(apiVersion)) {
    bad(`apiVersion ${JSON.stringify(doc.apiVersion)} is not ${CONFIG_GROUP}/v1, v1beta1 or v1alpha1`);
  }
  const providers = doc.providers ?? [];
  if (!Array.isArray(providers)) return bad('providers is not a list');
  return providers.map((p, i): CredentialProviderSpec => {
    const at = `providers[${i}]`;
    if (!isObject(p)) return bad(`${at} is not an object`);
    const name = p.name;
    if (typeof name !== 'string' || name.length === 0) return bad(`${at}.name is required`);
    if (name.includes('/') || name.includes(' ') || name === '.' || name === '..') {
      bad(`${at}.name ${JSON.stringify(name)} may not contain '/' or spaces or be '.' or '..'`);
    }
    const pv = p.apiVersion;
    if (typeof pv !== 'string' || !(PROVIDER_API_VERSIONS as readonly string[]).includes(pv)) {
      bad(`${at}.apiVersion ${JSON.stringify(pv)} is not one of ${PROVIDER_API_VERSIONS.join(', ')}`);
    }
    const matchImages = p.matchImages;
    if (!Array.isArray(matchImages) || matchImages.length === 0)
      return bad(`${at}.matchImages needs at least one entry`);
    matchImages.forEach((m, j) => {
      if (typeof m !== 'string' || !parseSchemelessUrl(m))
        bad(`${at}.matchImages[${j}] ${JSON.stringify(m)} is not valid`);
    });
    const dcd = p.defaultCacheDuration;
    if (dcd === undefined || dcd === null) bad(`${at}.defaultCacheDuration is required`);
    const defaultCacheDurationMs = typeof dcd === 'string' ? parseGoDuration(dcd) : undefined;
    if (defaultCacheDurationMs === undefined || defaultCacheDurationMs < 0) {
      bad(`${at}.defaultCacheDuration ${JSON.stringify(dcd)} is not a duration >= 0 (e.g. "12h")`);
    }
    const args = p.args ?? [];
    if (!Array.isArray(args) || !args.every((a) => typeof a === 'string'))
      return bad(`${at}.args is not a list of strings`);
    const env = p.env ?? [];
    if (!Array.isArray(env)) return bad(`${at}.env is not a list`);
    const envOut = env.map((e, j) => {
      if (!isObject(e) || typeof e.name !== 'string' || e.name === '' || e.name.includes('=')) {
        return bad(`${at}.env[${j}] needs a name`);
      }
      return { name: e.name, value: typeof e.value === 'string' ? e.value : '' };
    });
    const ta = p.tokenAttributes;
    if (ta !== undefined && ta !== null && !isObject(ta)) bad(`${at}.tokenAttributes is not an object`);
    const requiresServiceAccount = isObject(ta) && ta.requireServiceAccount !== false;
    return {
      name,
      apiVersion: pv as string,
      matchImages: matchImages as string[],
      defaultCacheDurationMs: defaultCacheDurationMs!,
      args: args as string[],
      env: envOut,
      requiresServiceAccount,
      file,
    };
  });
}

/** Reads the file or directory `path` (config.go readCredentialProviderConfig). */
export function loadCredentialProviderConfig(path: string): CredentialProviderSpec[] {
  const fail = (why: string): never => {
    throw new PullguardError(
      'POLICY_INVALID',
      `cannot read kubelet credential provider config ${path} (registry.credentialProviders.config): ${why}`,
      { path },
    );
  };
  let files: string[];
  try {
    if (statSync(path).isDirectory()) {
      files = readdirSync(path, { withFileTypes: true })
        .filter((e) => !e.isDirectory() && /\.(?:json|ya?ml)$/.test(e.name))
        .map((e) => join(path, e.name))
        .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
      if (files.length === 0) fail('no *.json, *.yaml or *.yml files in the directory');
    } else files = [path];
  } catch (e) {
    if (e instanceof PullguardError) throw e;
    return fail((e as NodeJS.ErrnoException).code ?? String(e));
  }
  const out: CredentialProviderSpec[] = [];
  const seen = new Set<string>();
  for (const f of files) {
    let text: string;
    try {
      // A FIFO or /dev/zero here must not hang the pull: the safe reader refuses what is not a regular file.
      text = readRegularText(f, {
        maxBytes: MAX_CONFIG_BYTES,
        code: 'POLICY_INVALID',
        what: 'credential provider config',
      });
    } catch (e) {
      if (!(e instanceof FileReadError)) throw e;
      return fail(f === path ? e.why : `${f} ${e.why}`);
    }
    for (const p of parseCredentialProviderConfig(text, f)) {
      if (seen.has(p.name)) fail(`duplicate provider name ${JSON.stringify(p.name)}`);
      seen.add(p.name);
      out.push(p);
    }
  }
  if (out.length === 0) fail('no providers (kubelet requires at least one)');
  return out;
}

import { PullguardError } from '../common/errors.js';
import { DEFAULT_CACHE_DIR, type Policy } from '../policy/model.js';
import { CacheStore } from './store.js';

type Out = (line: string) => void;

/**
 * `pullguard cache ls|clear [--policy FILE]`: the decision cache of the policy (its `cache.dir`, or the
 * default directory when the policy has no cache). Exit 0, or 2 when the cache cannot be used.
 */
export function runCacheCommand(
  args: readonly string[],
  loadPolicy: (file?: string) => Policy,
  out: Out,
  now: number = Date.now(),
): number {
  const [sub, ...rest] = args;
  let file: string | undefined;
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i]!;
    if (a === '--policy' && rest[i + 1]) file = rest[++i];
    else if (a.startsWith('--policy=')) file = a.slice('--policy='.length);
    else
      throw new PullguardError(
        'CONTRACT_ARGS',
        `unknown argument ${JSON.stringify(a)}; usage: pullguard cache ls|clear [--policy FILE]`,
      );
  }
  if (sub !== 'ls' && sub !== 'clear')
    throw new PullguardError('CONTRACT_ARGS', 'usage: pullguard cache ls|clear [--policy FILE]');
  const policy = loadPolicy(file);
  const dir = policy.cache?.dir ?? DEFAULT_CACHE_DIR;
  const store = CacheStore.open(dir, false);
  if (!(store instanceof CacheStore)) {
    if (store.problem.startsWith('no cache at')) {
      out(sub === 'ls' ? `${store.problem}: no entries` : `${store.problem}: nothing to clear`);
      return 0;
    }
    throw new PullguardError('POLICY_INVALID', store.problem, { path: dir });
  }
  if (sub === 'clear') {
    out(`removed ${store.clear()} file(s) from ${dir}`);
    return 0;
  }
  const { entries, unreadable } = store.list();
  const unused = policy.cache ? '' : ' (this policy has no cache: section, so none are used)';
  out(`${dir}: ${entries.length} entr${entries.length === 1 ? 'y' : 'ies'}${unused}`);
  for (const e of entries.sort((a, b) => b.verifiedAt - a.verifiedAt)) {
    const state = now < e.expiresAt ? 'fresh' : now < e.staleUntil ? 'stale-only' : 'expired';
    const stale = e.staleUntil > 0 ? `, staleIfError until ${new Date(e.staleUntil).toISOString()}` : '';
    const verified = new Date(e.verifiedAt).toISOString();
    const expires = new Date(e.expiresAt).toISOString();
    out(
      `  ${state.padEnd(10)} ${e.repository}@${e.digest} rule "${e.rule}"` +
        ` verified ${verified}, expires ${expires} (${e.expiry})${stale}`,
    );
  }
  if (unreadable > 0)
    out(
      `  ${unreadable} unreadable entr${unreadable === 1 ? 'y' : 'ies'}` +
        ' (ignored; `pullguard cache clear` removes them)',
    );
  return 0;
}

/**
 * The parts of pullguard that an allow rule, a deny rule and a decision-cache hit never run: the
 * verifiers (cosign, notation, ATProto, with @sigstore/*), the registry client, and the human commands.
 * They are loaded on first use, so that the single executable's startup snapshot holds only the start-up
 * path (contract, policy, match, cache, output): every object in the snapshot is deserialized on every
 * pull, used or not. From source (tests) and in a plain bundle this is an ordinary dynamic import; the
 * single-executable build (scripts/build.mjs) replaces this module with one that loads a second bundle,
 * with its V8 code cache, from the executable (cli/lazy-part.ts).
 */
export const loadVerifiers = () => import('../verify/index.js');
export const loadRegistry = () => import('../registry/index.js');
export const loadHuman = () => import('./human.js');
/** The single-executable build may warm more in its snapshot (scripts/build.mjs); here, nothing. */
export const snapshotWarmUp: (() => Promise<void>) | undefined = undefined;

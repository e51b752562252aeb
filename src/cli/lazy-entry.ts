// What the single executable loads on demand (cli/lazy.ts, cli/lazy-part.ts): the second bundle's entry.
// The human commands are one more step away (a dynamic import, which esbuild turns into a module
// initialized on first use), so that a verifying pull does not evaluate doctor, install, scan and the rest.
export * as verify from '../verify/index.js';
export * as registry from '../registry/index.js';
export const loadHumanCommands = () => import('./human.js');
export { warmUpVerifiers } from './warmup-verify.js';

declare const __PULLGUARD_VERSION__: string | undefined;
declare const __PULLGUARD_COMMIT__: string | undefined;

/** Stamped in by esbuild (scripts/build.mjs); unstamped when run from source under vitest. */
export const VERSION = typeof __PULLGUARD_VERSION__ === 'string' ? __PULLGUARD_VERSION__ : '0.0.0-dev';
export const COMMIT = typeof __PULLGUARD_COMMIT__ === 'string' ? __PULLGUARD_COMMIT__ : 'unknown';
/** What every HTTP request pullguard makes (registry, PDS, PLC, OCSP, CRL) says it is. */
export const USER_AGENT = `pullguard/${VERSION}`;

import { closeSync, fstatSync, openSync, readFileSync, readSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Script } from 'node:vm';
import type * as LazyEntry from './lazy-entry.js';

/** The on-demand bundle (cli/lazy-entry.ts and what it imports beyond the start-up path). */
export type LazyPart = typeof LazyEntry;

/** The asset name in the single executable, the file name beside a plain bundle (scripts/build.mjs). */
const SOURCE = 'pullguard-lazy.js';
/** Ends the executable: `<code cache><length, 8 bytes LE><CODE_CACHE_MAGIC>` (scripts/build.mjs appends it). */
export const CODE_CACHE_MAGIC = 'pullguard-cache1';
const TRAILER = 8 + CODE_CACHE_MAGIC.length;
const MAX_CODE_CACHE = 16 * 1024 * 1024;

let loaded: { part: LazyPart; script: Script; rejected: boolean | undefined } | undefined;
let pending: Promise<LazyPart> | undefined;
let coreModules: () => Readonly<Record<string, unknown>> = () => ({});
let useAppendedCache = true;

/**
 * Loads the on-demand bundle once. scripts/build.mjs wraps it as
 * `(function (require, core, module, exports) { ... })`; its imports of start-up modules are
 * `core(path)`, answered from `coreModules`, so both bundles share one instance of every module (one
 * PullguardError class, one policy model).
 *
 * Its V8 code cache: V8 accepts a code cache only from an isolate started from the very same startup
 * snapshot (the cache refers to the snapshot's read-only heap, by checksum), and a snapshot is not
 * reproducible from one build to the next. So the finished executable makes its own, once, at build
 * time (buildCodeCache, after a warm-up through every verifier), and the build appends it to the
 * executable's file, outside the SEA blob and so outside the snapshot. V8 checks it (version, flags,
 * snapshot, source length) and compiles from source if it does not match: slower, same behaviour.
 * @public (used by the code that scripts/build.mjs generates in place of cli/lazy.ts)
 */
export function lazyPartLoader(modules: () => Readonly<Record<string, unknown>>): () => Promise<LazyPart> {
  coreModules = modules;
  return loadLazyPart;
}

function loadLazyPart(): Promise<LazyPart> {
  pending ??= new Promise<LazyPart>((resolve) => resolve(loadPart(coreModules(), useAppendedCache)));
  return pending;
}

function loadPart(modules: Readonly<Record<string, unknown>>, useCache: boolean): LazyPart {
  const vm = process.getBuiltinModule('node:vm');
  const sea = process.getBuiltinModule('node:sea');
  const inSea = sea?.isSea() ?? false;
  // A plain bundle (dist/pullguard.cjs run by node, in tests): the file beside it, no code cache.
  const source = inSea ? sea!.getAsset(SOURCE, 'utf8') : readFileSync(join(__dirname, SOURCE), 'utf8');
  const cachedData = inSea && useCache ? appendedCodeCache(process.execPath) : undefined;
  const script = new vm.Script(source, { filename: SOURCE, ...(cachedData ? { cachedData } : {}) });
  const wrapper = script.runInThisContext() as (
    req: NodeJS.Require,
    core: (path: string) => unknown,
    module: { exports: object },
    exports: object,
  ) => void;
  const module = { exports: {} };
  wrapper(
    require,
    (path) => {
      if (!(path in modules)) throw new Error(`pullguard: ${path} is not a start-up module`);
      return modules[path];
    },
    module,
    module.exports,
  );
  loaded = { part: module.exports as LazyPart, script, rejected: cachedData ? script.cachedDataRejected : undefined };
  return loaded.part;
}

/** The code cache at the end of `file`, if the build appended one. */
function appendedCodeCache(file: string): Buffer | undefined {
  let fd: number | undefined;
  try {
    fd = openSync(file, 'r');
    const size = fstatSync(fd).size;
    if (size < TRAILER) return undefined;
    const trailer = Buffer.alloc(TRAILER);
    readSync(fd, trailer, 0, TRAILER, size - TRAILER);
    if (trailer.toString('latin1', 8) !== CODE_CACHE_MAGIC) return undefined;
    const length = Number(trailer.readBigUInt64LE(0));
    if (length <= 0 || length > MAX_CODE_CACHE || length > size - TRAILER) return undefined;
    const cache = Buffer.alloc(length);
    if (readSync(fd, cache, 0, length, size - TRAILER - length) !== length) return undefined;
    return cache;
  } catch {
    return undefined; // compiled from source instead
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * Build time only (scripts/build.mjs runs the finished executable with PULLGUARD_BUILD_CODE_CACHE set to
 * `make:<file>` or `check:<file>`; src/main.ts): `make` loads the on-demand bundle from source, runs the
 * verifiers' warm-up and writes the code cache to the file; `check` loads the bundle with the appended
 * cache and writes whether V8 accepted it.
 */
export async function buildCodeCache(mode: 'make' | 'check', out: string): Promise<void> {
  if (mode === 'make') {
    useAppendedCache = false;
    const part = await loadLazyPart();
    await part.warmUpVerifiers();
    writeFileSync(out, loaded!.script.createCachedData());
  } else {
    await loadLazyPart();
    writeFileSync(out, JSON.stringify({ rejected: loaded?.rejected ?? null }));
  }
}

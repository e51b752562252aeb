import { mkdirSync, readdirSync, readlinkSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/**
 * Writes a ConfigMap or Secret volume the way kubelet's atomic writer does
 * (pkg/volume/util/atomic_writer.go): the files go into a fresh `..<timestamp>` directory, the
 * `..data` symlink is swapped to it by rename(2), each top-level name is a `name -> ..data/name`
 * link, and the previous timestamp directory is removed afterwards.
 */
let seq = 0;
export function writeKubeletVolume(dir: string, files: Record<string, string | Buffer>): void {
  mkdirSync(dir, { recursive: true });
  const ts = `..2026_12_01_10_00_00.${process.pid}${++seq}`;
  for (const [k, v] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, ts, k)), { recursive: true });
    writeFileSync(join(dir, ts, k), v, { mode: 0o644 });
  }
  let old: string | undefined;
  try {
    old = readlinkSync(join(dir, '..data'));
  } catch {
    /* first version */
  }
  symlinkSync(ts, join(dir, '..data_tmp'));
  renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
  const tops = new Set(Object.keys(files).map((k) => k.split('/')[0]!));
  for (const name of readdirSync(dir)) {
    if (!name.startsWith('..') && !tops.has(name)) rmSync(join(dir, name));
  }
  for (const top of tops) {
    try {
      symlinkSync(`..data/${top}`, join(dir, top));
    } catch {
      /* exists */
    }
  }
  if (old) rmSync(join(dir, old), { recursive: true, force: true });
}

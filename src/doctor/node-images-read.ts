/** The I/O of the node-images check: which images the node itself needs (node-images.ts decides). */
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { readRegularText } from '../common/files.js';
import type { Check, EffectiveConfig } from './diagnose.js';
import { sandboxImageOf } from './node-checks.js';
import { staticPodImages, type NodeImage } from './node-images.js';

const MAX_MANIFEST_BYTES = 1024 * 1024;

/**
 * The images the node itself needs: the CRI sandbox image (containerd's default when unset) and the
 * images of kubelet's static pods. Unreadable manifests become WARN lines in `problems`.
 */
export function readNodeImages(eff: EffectiveConfig | undefined, staticPodDir: string, problems: Check[]): NodeImage[] {
  const sandbox = sandboxImageOf(eff?.images ?? {}, (k) => eff?.origin('images', k));
  const images: NodeImage[] = [{ image: sandbox.image, role: `the sandbox (pause) image${sandbox.where}` }];
  let names: string[];
  try {
    names = readdirSync(staticPodDir)
      .filter((n) => !n.startsWith('.'))
      .sort();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    problems.push(
      code === 'ENOENT'
        ? {
            status: 'ok',
            message:
              `no static pod manifests in ${staticPodDir} ` +
              "(not a kubeadm control-plane node, or kubelet's staticPodPath is elsewhere: --static-pod-dir)",
          }
        : { status: 'WARN', message: `cannot read static pod manifests in ${staticPodDir}: ${code ?? String(e)}` },
    );
    return images;
  }
  for (const name of names) {
    const file = join(staticPodDir, name);
    try {
      if (!statSync(file).isFile()) continue;
      // kubelet's own files, but read as any operator file is: bounded, never a FIFO swapped in.
      const what = 'static pod manifest';
      const text = readRegularText(file, { maxBytes: MAX_MANIFEST_BYTES, code: 'CONTAINERD_CONFIG', what });
      for (const doc of parseAllDocuments(text)) {
        for (const i of staticPodImages(doc.toJS(), file)) {
          // '' = not written: kubelet's default applies (nodeImageChecks works it out from the reference).
          images.push({
            image: i.image,
            role: `static pod ${i.pod} container ${i.container} (${file})`,
            pullPolicy: i.pullPolicy ?? '',
          });
        }
      }
    } catch (e) {
      problems.push({
        status: 'WARN',
        message: `cannot read static pod manifest ${file}: ${(e as Error).message.split('\n')[0]}`,
      });
    }
  }
  return images;
}

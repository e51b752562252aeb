import { decide } from '../../src/cli/decide.js';
import { Deadline } from '../../src/common/deadline.js';
import { parseReference } from '../../src/common/reference.js';
import type { Policy } from '../../src/policy/model.js';
import { createRegistryClient } from '../../src/registry/index.js';
import type { Decision } from '../../src/verdict/decision.js';

/**
 * pullguard's whole decision, in process, for `host/repo@digest` (the policy -> discovery -> verify ->
 * verdict spine the executable runs), against the real registry the reference names.
 */
export async function decidePinned(
  policy: Policy,
  pinned: string,
  descriptor?: { mediaType: string; size: number },
): Promise<Decision> {
  const ref = parseReference(pinned);
  if (!ref.digest) throw new Error(`decidePinned needs repo@digest, got ${pinned}`);
  const deadline = new Deadline(20_000);
  try {
    const subject = {
      reference: { domain: ref.domain, path: ref.path, digest: ref.digest },
      descriptor: {
        mediaType: descriptor?.mediaType ?? 'application/vnd.oci.image.manifest.v1+json',
        digest: ref.digest,
        size: descriptor?.size ?? 1,
      },
    };
    const { decision } = await decide(subject, policy, () => createRegistryClient(policy.registry), deadline);
    return decision;
  } finally {
    deadline.dispose();
  }
}

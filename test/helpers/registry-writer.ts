import { createHash } from 'node:crypto';

const sha = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** Minimal distribution API writes, to push hand-made or tampered signatures the way notation would. */
export class RegistryWriter {
  constructor(readonly url: string) {}

  async putBlob(repo: string, bytes: Uint8Array): Promise<{ digest: string; size: number }> {
    const digest = sha(bytes);
    const start = await fetch(`${this.url}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
    if (start.status !== 202) throw new Error(`blob upload start: ${start.status}`);
    const loc = new URL(start.headers.get('location')!, this.url);
    loc.searchParams.set('digest', digest);
    const put = await fetch(loc, {
      method: 'PUT',
      body: Buffer.from(bytes),
      headers: { 'content-type': 'application/octet-stream' },
    });
    if (put.status !== 201) throw new Error(`blob upload: ${put.status}`);
    return { digest, size: bytes.length };
  }

  async getBlob(repo: string, digest: string): Promise<Buffer> {
    const r = await fetch(`${this.url}/v2/${repo}/blobs/${digest}`);
    if (!r.ok) throw new Error(`get blob ${digest}: ${r.status}`);
    return Buffer.from(await r.arrayBuffer());
  }

  async getManifest(repo: string, ref: string): Promise<{ bytes: Buffer; json: any } | undefined> {
    const r = await fetch(`${this.url}/v2/${repo}/manifests/${ref}`, {
      headers: { accept: 'application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json' },
    });
    if (r.status === 404) return undefined;
    if (!r.ok) throw new Error(`get manifest ${ref}: ${r.status}`);
    const bytes = Buffer.from(await r.arrayBuffer());
    return { bytes, json: JSON.parse(bytes.toString('utf8')) };
  }

  async putManifest(repo: string, ref: string, json: unknown): Promise<{ digest: string; size: number }> {
    const bytes = Buffer.from(JSON.stringify(json));
    const mediaType = (json as { mediaType: string }).mediaType;
    const r = await fetch(`${this.url}/v2/${repo}/manifests/${ref}`, {
      method: 'PUT',
      body: bytes,
      headers: { 'content-type': mediaType },
    });
    if (r.status !== 201) throw new Error(`put manifest ${ref}: ${r.status} ${await r.text()}`);
    return { digest: sha(bytes), size: bytes.length };
  }

  /** The notation signature manifests listed in `subject`'s referrers tag index. */
  async signatures(repo: string, subject: string): Promise<{ digest: string; manifest: any }[]> {
    const idx = await this.getManifest(repo, subject.replace(':', '-'));
    const out: { digest: string; manifest: any }[] = [];
    for (const m of idx?.json.manifests ?? []) {
      const man = await this.getManifest(repo, m.digest);
      if (man?.json.config?.mediaType === 'application/vnd.cncf.notary.signature')
        out.push({ digest: m.digest, manifest: man.json });
    }
    return out;
  }

  /**
   * Pushes a signature manifest (as notation lays it out) for `subject` and lists it in the referrers
   * tag index; `replace` drops the entries that were there.
   */
  async pushSignature(
    repo: string,
    subject: { mediaType: string; digest: string; size: number },
    envelope: Uint8Array,
    mediaType: 'application/jose+json' | 'application/cose',
    opts: { replace?: boolean; annotations?: Record<string, string> } = {},
  ): Promise<string> {
    const config = await this.putBlob(repo, Buffer.from('{}'));
    const layer = await this.putBlob(repo, envelope);
    const manifest = {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.cncf.notary.signature', ...config },
      layers: [{ mediaType, ...layer }],
      subject,
      annotations: { 'org.opencontainers.image.created': new Date().toISOString(), ...opts.annotations },
    };
    const m = await this.putManifest(repo, sha(Buffer.from(JSON.stringify(manifest))), manifest);
    await this.addReferrer(
      repo,
      subject.digest,
      {
        mediaType: manifest.mediaType,
        ...m,
        artifactType: 'application/vnd.cncf.notary.signature',
        annotations: manifest.annotations,
      },
      opts.replace,
    );
    return m.digest;
  }

  async addReferrer(repo: string, subjectDigest: string, entry: unknown, replace = false): Promise<void> {
    const tag = subjectDigest.replace(':', '-');
    const idx = await this.getManifest(repo, tag);
    const manifests = replace ? [] : (idx?.json.manifests ?? []);
    await this.putManifest(repo, tag, {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [...manifests, entry],
    });
  }
}

import { credentials, loadPackageDefinition, type Client, type ServiceError } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { join } from 'node:path';
import { ROOT } from './tools.js';

/**
 * A CRI client for runtime.v1.ImageService over containerd's unix socket: the calls kubelet makes
 * to pull an image (PullImage), check for it (ImageStatus) and remove it (RemoveImage).
 * The proto is the minimal subset in cri.proto, field numbers as in k8s.io/cri-api.
 */

export interface CriImage {
  readonly id: string;
  readonly repoTags: string[];
  readonly repoDigests: string[];
  readonly size: string;
}

export class CriError extends Error {
  constructor(
    readonly method: string,
    readonly code: number | undefined,
    /** The server's message: for a blocked pull, containerd's error with pullguard's reason in it. */
    readonly details: string,
  ) {
    super(`CRI ${method} failed (grpc code ${code}): ${details}`);
  }
}

/** CRI AuthConfig (the fields the tests send). */
export interface CriAuth {
  readonly username?: string;
  readonly password?: string;
}

export interface CriClient {
  /**
   * PullImage, as kubelet calls it. Resolves to `image_ref` (the image id, `sha256:…`). `auth` is what
   * kubelet sends from an imagePullSecret or a credential provider (containerd uses it; verifiers never see it).
   */
  pullImage(image: string, timeoutMs?: number, auth?: CriAuth): Promise<string>;
  /** ImageStatus: the image, or null when containerd does not have it. */
  imageStatus(image: string, timeoutMs?: number): Promise<CriImage | null>;
  removeImage(image: string, timeoutMs?: number): Promise<void>;
  close(): void;
}

const PROTO = join(ROOT, 'test', 'helpers', 'cri.proto');

type Unary = (req: unknown, opts: { deadline: number }, cb: (err: ServiceError | null, res: unknown) => void) => void;

let ImageService: (new (target: string, creds: ReturnType<typeof credentials.createInsecure>) => Client) | undefined;

/** A promise for one unary call of a loaded gRPC service client, its error as a CriError. */
export function unaryCaller(client: Client): <T>(method: string, req: unknown, timeoutMs: number) => Promise<T> {
  return <T>(method: string, req: unknown, timeoutMs: number): Promise<T> =>
    new Promise((resolve, reject) => {
      const fn = (client as unknown as Record<string, Unary>)[method]!.bind(client);
      fn(req, { deadline: Date.now() + timeoutMs }, (err, res) => {
        if (err) reject(new CriError(method, err.code, err.details ?? err.message));
        else resolve(res as T);
      });
    });
}

export function criClient(socket: string): CriClient {
  if (!ImageService) {
    const def = loadSync(PROTO, { keepCase: false, longs: String, enums: String, defaults: true, oneofs: true });
    const pkg = loadPackageDefinition(def) as unknown as { runtime: { v1: { ImageService: typeof ImageService } } };
    ImageService = pkg.runtime.v1.ImageService;
  }
  const client = new ImageService!(`unix://${socket}`, credentials.createInsecure());
  const call = unaryCaller(client);
  return {
    async pullImage(image, timeoutMs = 60_000, auth?: CriAuth) {
      const req = { image: { image }, ...(auth ? { auth } : {}) };
      const res = await call<{ imageRef: string }>('PullImage', req, timeoutMs);
      return res.imageRef;
    },
    async imageStatus(image, timeoutMs = 15_000) {
      const res = await call<{ image: CriImage | null }>('ImageStatus', { image: { image } }, timeoutMs);
      return res.image ?? null;
    },
    async removeImage(image, timeoutMs = 15_000) {
      await call('RemoveImage', { image: { image } }, timeoutMs);
    },
    close: () => client.close(),
  };
}

/**
 * The error containerd returns for a CRI pull (its reason carries pullguard's line), or undefined if the pull
 * succeeded.
 */
export async function pullError(cri: CriClient, ref: string): Promise<CriError | undefined> {
  try {
    await cri.pullImage(ref);
    return undefined;
  } catch (e) {
    if (e instanceof CriError) return e;
    throw e;
  }
}

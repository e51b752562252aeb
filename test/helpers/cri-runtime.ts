import { credentials, loadPackageDefinition, type Client } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { join } from 'node:path';
import { unaryCaller } from './cri.js';
import { ROOT } from './tools.js';

/**
 * A CRI client for runtime.v1.RuntimeService over containerd's unix socket: the calls kubelet makes to
 * run a pod. The proto is the subset in cri-runtime.proto (field numbers as in k8s.io/cri-api).
 */

export interface PodSandboxConfig {
  readonly metadata: { name: string; uid: string; namespace: string; attempt?: number };
  readonly hostname?: string;
  readonly logDirectory: string;
  readonly linux?: { securityContext?: { namespaceOptions?: { network?: string; pid?: string; ipc?: string } } };
}

export interface ContainerConfig {
  readonly metadata: { name: string; attempt?: number };
  readonly image: { image: string };
  readonly command?: string[];
  readonly args?: string[];
  readonly logPath: string;
}

export interface ContainerStatus {
  readonly id: string;
  readonly state: 'CONTAINER_CREATED' | 'CONTAINER_RUNNING' | 'CONTAINER_EXITED' | 'CONTAINER_UNKNOWN';
  readonly exitCode: number;
  readonly reason: string;
  readonly message: string;
  readonly logPath: string;
  readonly imageRef: string;
}

export interface CriRuntime {
  runPodSandbox(config: PodSandboxConfig, timeoutMs?: number): Promise<string>;
  stopPodSandbox(id: string): Promise<void>;
  removePodSandbox(id: string): Promise<void>;
  createContainer(sandboxId: string, config: ContainerConfig, sandbox: PodSandboxConfig): Promise<string>;
  startContainer(id: string): Promise<void>;
  containerStatus(id: string): Promise<ContainerStatus>;
  close(): void;
}

let RuntimeService: (new (target: string, creds: ReturnType<typeof credentials.createInsecure>) => Client) | undefined;

export function criRuntime(socket: string): CriRuntime {
  if (!RuntimeService) {
    const def = loadSync(join(ROOT, 'test', 'helpers', 'cri-runtime.proto'), {
      keepCase: false,
      longs: Number,
      enums: String,
      defaults: true,
      oneofs: true,
      includeDirs: [join(ROOT, 'test', 'helpers')],
    });
    const pkg = loadPackageDefinition(def) as unknown as { runtime: { v1: { RuntimeService: typeof RuntimeService } } };
    RuntimeService = pkg.runtime.v1.RuntimeService;
  }
  const client = new RuntimeService!(`unix://${socket}`, credentials.createInsecure());
  const unary = unaryCaller(client);
  const call = <T>(method: string, req: unknown, timeoutMs = 60_000): Promise<T> => unary<T>(method, req, timeoutMs);
  return {
    async runPodSandbox(config, timeoutMs = 90_000) {
      return (await call<{ podSandboxId: string }>('RunPodSandbox', { config }, timeoutMs)).podSandboxId;
    },
    async stopPodSandbox(id) {
      await call('StopPodSandbox', { podSandboxId: id });
    },
    async removePodSandbox(id) {
      await call('RemovePodSandbox', { podSandboxId: id });
    },
    async createContainer(sandboxId, config, sandbox) {
      return (
        await call<{ containerId: string }>('CreateContainer', {
          podSandboxId: sandboxId,
          config,
          sandboxConfig: sandbox,
        })
      ).containerId;
    },
    async startContainer(id) {
      await call('StartContainer', { containerId: id });
    },
    async containerStatus(id) {
      return (await call<{ status: ContainerStatus }>('ContainerStatus', { containerId: id })).status;
    },
    close: () => client.close(),
  };
}

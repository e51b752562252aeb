/**
 * Whether containerd answers on its socket, through doctor's gRPC client (doctor/grpc.ts): the
 * daemon's pid (a restart shows as a new pid) and whether its CRI plugin loaded (kubelet can pull).
 */
import { queryDaemon } from '../doctor/grpc.js';

export interface ContainerdAnswer {
  readonly pid: number;
  /** containerd's version when the CRI plugin is up; undefined when it is not. */
  readonly cri?: string;
}

/** The daemon behind `socket`, or undefined when nothing answers within `timeoutMs`. */
export async function probeContainerd(socket: string, timeoutMs = 2000): Promise<ContainerdAnswer | undefined> {
  try {
    const d = await queryDaemon(socket, timeoutMs);
    const cri = d.plugins.find((p) => p.type === 'io.containerd.grpc.v1' && p.id === 'cri');
    return { pid: d.pid ?? 0, cri: cri && !cri.initError ? d.version : undefined };
  } catch {
    return undefined;
  }
}

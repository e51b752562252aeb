/**
 * The node agent's state file, on the host at /var/lib/pullguard/agent.json: what `pullguard node
 * status` shows about the policy rollout (applied version, a refused version and why, readiness).
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

export const AGENT_STATE_PATH = '/var/lib/pullguard/agent.json';

export interface AgentState {
  readonly updatedAt: string;
  /** The policy version in the host's /etc/pullguard/current, and when it was applied. */
  readonly applied?: { readonly version: string; readonly at: string };
  /** The newest ConfigMap version that failed validation, if it is still the ConfigMap's content. */
  readonly refused?: { readonly version: string; readonly at: string; readonly reason: string };
  /** Whether `pullguard node install` succeeded; its last error otherwise. */
  readonly installed: boolean;
  readonly installError?: string;
  readonly dockerConfig: 'placed' | 'absent' | 'refused';
  readonly dockerConfigError?: string;
  /** Ready: installed, and the ConfigMap's current content is the applied version. */
  readonly ready: boolean;
  readonly phase: 'starting' | 'running' | 'uninstalling' | 'uninstalled' | 'stopped';
  readonly healthPort?: number;
}

export const agentStatePath = (root: string) => join(root, AGENT_STATE_PATH);

export function writeAgentState(root: string, state: AgentState): void {
  const p = agentStatePath(root);
  mkdirSync(dirname(p), { recursive: true, mode: 0o755 });
  const tmp = `${p}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o644 });
  renameSync(tmp, p);
}

export function readAgentState(root: string): AgentState | undefined {
  try {
    return JSON.parse(readFileSync(agentStatePath(root), 'utf8')) as AgentState;
  } catch {
    return undefined;
  }
}

/** Lines for `pullguard node status`. */
export function formatAgentState(s: AgentState | undefined): string[] {
  if (!s) return ['agent: no state file (the node agent has not run here)'];
  const out = [`agent: ${s.phase}, ${s.ready ? 'ready' : 'NOT ready'} (updated ${s.updatedAt})`];
  out.push(s.applied ? `  policy version ${s.applied.version} applied ${s.applied.at}` : '  no policy version applied');
  if (s.refused) out.push(`  REFUSED policy version ${s.refused.version} (${s.refused.at}): ${s.refused.reason}`);
  out.push(s.installed ? '  installed' : `  NOT installed${s.installError ? `: ${s.installError}` : ''}`);
  out.push(`  docker config: ${s.dockerConfig}${s.dockerConfigError ? `: ${s.dockerConfigError}` : ''}`);
  return out;
}

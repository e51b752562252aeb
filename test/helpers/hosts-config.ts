import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * A containerd config.toml (version 3) under a fresh directory in `parent`, whose CRI config_path holds
 * the given hosts.toml files (namespace `host:port` -> directory `host_port_`, as containerd looks it up).
 */
export function containerdConfigWithHosts(parent: string, hosts: Record<string, string>): string {
  const dir = mkdtempSync(join(parent, 'containerd-'));
  const certs = join(dir, 'certs.d');
  mkdirSync(certs);
  for (const [ns, toml] of Object.entries(hosts)) {
    const d = join(certs, ns.replace(/:(\d+)$/, '_$1_'));
    mkdirSync(d);
    writeFileSync(join(d, 'hosts.toml'), toml);
  }
  writeFileSync(
    join(dir, 'config.toml'),
    `version = 3\n[plugins."io.containerd.cri.v1.images".registry]\n  config_path = ${JSON.stringify(certs)}\n`,
  );
  return join(dir, 'config.toml');
}

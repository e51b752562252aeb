import { describe, expect, it } from 'vitest';
import { parseAgentArgs } from './agent.js';

describe('pullguard node agent arguments', () => {
  it('defaults to the DaemonSet layout', () => {
    const o = parseAgentArgs([], {});
    expect(o).toMatchObject({
      root: '/host',
      configDir: '/etc/pullguard-config',
      dockerConfigDir: '/etc/pullguard-docker',
      stageDir: '/etc/pullguard',
      noRestart: false,
      uninstallOnExit: 'auto',
      healthPort: undefined,
      resyncMs: 30_000,
      daemonSet: 'pullguard-node',
    });
    expect(
      parseAgentArgs(['--health-port', '0', '--resync', '2', '--no-restart'], { PULLGUARD_DAEMONSET: 'x' }),
    ).toMatchObject({ healthPort: 0, resyncMs: 2000, noRestart: true, daemonSet: 'x' });
  });

  it('refuses what it does not understand, as a usage error', () => {
    for (const bad of [
      ['--bogus'],
      ['--root'],
      ['--uninstall-on-exit', 'sometimes'],
      ['--health-port', '70000'],
      ['--resync', '0'],
    ]) {
      expect(() => parseAgentArgs(bad, {}), bad.join(' ')).toThrow(expect.objectContaining({ code: 'CONTRACT_ARGS' }));
    }
  });
});

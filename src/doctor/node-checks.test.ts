import { describe, expect, test } from 'vitest';
import { formatCheck, type Check } from './diagnose.js';
import { Message } from '../containerd/protobuf.js';
import { configArgOf, nodeChecks, sandboxImageOf, type NodeInput } from './node-checks.js';

const info = {
  version: 'v2.1.9',
  revision: 'abcdef0123456789',
  pid: 42,
  deprecations: [],
  plugins: [{ type: 'io.containerd.image-verifier.v1', id: 'bindir' }],
};
const base: NodeInput = {
  socket: { address: '/run/containerd/containerd.sock', explicit: false, info },
  daemon: { pid: 42, startedAtMs: 1_000_000, configArg: '/etc/containerd/config.toml' },
  config: { path: '/etc/containerd/config.toml', files: [{ path: '/etc/containerd/config.toml', mtimeMs: 500_000 }] },
  journal: { source: 'journalctl -u containerd', lines: [] },
  outputs: [{ what: 'decision log', path: '/var/log/pullguard/decisions.jsonl', freeBytes: 1e9 }],
  policy: {
    mode: 'enforce',
    defaultAction: 'deny',
    rules: [{ name: 'system', match: ['registry.k8s.io/**'], action: 'allow', authorities: [], require: 'all' }],
  },
};
const run = (over: Partial<NodeInput>) => nodeChecks({ ...base, ...over });
const by = (c: Check[], s: Check['status']) => c.filter((x) => x.status === s).map(formatCheck);

describe('running-node checks', () => {
  test('a healthy node: all ok', () => {
    const c = run({});
    expect(by(c, 'FAIL')).toEqual([]);
    expect(by(c, 'WARN')).toEqual([]);
    expect(c.map((x) => x.message)).toEqual([
      'containerd answers on /run/containerd/containerd.sock: v2.1.9 (abcdef012345), pid 42',
      'the running containerd loaded its image-verifier plugin (bindir)',
      'the running containerd (pid 42) uses /etc/containerd/config.toml, unchanged since it started: ' +
        'the checks above describe it',
      'no "Falling back to local image pull mode" in containerd\'s log since it started (journalctl -u containerd)',
      'decision log /var/log/pullguard/decisions.jsonl is writable',
    ]);
  });

  test('no socket: ok unless asked for; a socket that does not answer: FAIL', () => {
    expect(by(run({ socket: { address: '/x.sock', explicit: false, missing: true } }), 'FAIL')).toEqual([]);
    expect(
      by(run({ socket: { address: '/x.sock', explicit: true, missing: true, error: 'no such socket' } }), 'FAIL'),
    ).toHaveLength(1);
    expect(by(run({ socket: { address: '/x.sock', explicit: false, error: 'ECONNREFUSED' } }), 'FAIL')[0]).toMatch(
      /does not answer on \/x\.sock \(ECONNREFUSED\)/,
    );
  });

  test('the daemon runs another config file, or its files changed since it started', () => {
    expect(
      by(run({ daemon: { pid: 42, startedAtMs: 1_000_000, configArg: '/etc/k3s/containerd.toml' } }), 'FAIL')[0],
    ).toMatch(
      new RegExp(
        /started with --config \/etc\/k3s\/containerd\.toml, /.source +
          /but doctor checked \/etc\/containerd\/config\.toml/.source +
          /.*fix: run pullguard doctor --containerd-config \/etc\/k3s\/containerd\.toml/.source,
      ),
    );
    const changed = run({
      config: {
        path: '/etc/containerd/config.toml',
        files: [{ path: '/etc/containerd/config.toml', mtimeMs: 2_000_000 }],
      },
    });
    expect(by(changed, 'WARN')[0]).toMatch(/changed after containerd started.*restart containerd.*never SIGHUP/);
  });

  test('verifier plugin missing or failed; deprecations', () => {
    expect(
      by(
        run({ socket: { ...base.socket, info: { ...info, plugins: [{ type: 'io.containerd.grpc.v1', id: 'cri' }] } } }),
        'FAIL',
      )[0],
    ).toMatch(/no io\.containerd\.image-verifier\.v1\.bindir plugin/);
    expect(
      by(
        run({
          socket: { ...base.socket, info: { ...info, plugins: [{ ...info.plugins[0]!, initError: 'bad bin_dir' }] } },
        }),
        'FAIL',
      )[0],
    ).toMatch(/failed to start: bad bin_dir/);
    expect(
      by(
        run({
          socket: {
            ...base.socket,
            info: {
              ...info,
              deprecations: [{ id: 'io.containerd.deprecation/config-v2', message: 'version 2 is deprecated' }],
            },
          },
        }),
        'WARN',
      ),
    ).toHaveLength(1);
  });

  test('the fallback warning in the log: FAIL', () => {
    const line = 'time="2026-12-01T10:00:00Z" level=warning msg="Falling back to local image pull mode"';
    expect(by(run({ journal: { source: '/var/log/containerd.log', lines: [line] } }), 'FAIL')[0]).toMatch(
      /logged "Falling back to local image pull mode" since it started \(\/var\/log\/containerd\.log\)/,
    );
  });

  test('an unwritable or full output path: WARN (verdicts are unaffected)', () => {
    expect(
      by(run({ outputs: [{ what: 'metrics file', path: '/ro/pullguard.prom', error: 'EROFS' }] }), 'WARN')[0],
    ).toMatch(/metrics file \/ro\/pullguard\.prom cannot be written \(EROFS\).*log\.metricsFile/);
    expect(by(run({ outputs: [{ what: 'decision log', path: '/d.jsonl', freeBytes: 1024 }] }), 'WARN')[0]).toMatch(
      /only 1 KiB free/,
    );
  });

  test('the decision log: a summary; in audit mode with would-denies, a WARN pointing at pullguard log', () => {
    const decisions = {
      path: '/var/log/pullguard/decisions.jsonl',
      total: 12,
      wouldDeny: 3,
      denied: 0,
      last: '2026-12-01T10:00:00.000Z',
    };
    expect(by(run({ decisions }), 'WARN')).toEqual([]);
    const audit = run({ decisions, policy: { ...base.policy!, mode: 'audit' } });
    expect(by(audit, 'WARN')[0]).toMatch(
      new RegExp(
        /12 decision\(s\) in the last 7 days .*3 would-deny: enforce mode would have denied 3 pull\(s\); /.source +
          /fix: read `pullguard log --would-deny --since 7d`/.source,
      ),
    );
  });

  // The sandbox image against the policy: node-images.test.ts.
  test('sandbox image from the config, migrated key included', () => {
    expect(
      sandboxImageOf({ pinned_images: { sandbox: 'k8s.example/pause:3.9' } }, () => ({
        file: 'c.toml',
        key: 'plugins."io.containerd.grpc.v1.cri".sandbox_image',
      })),
    ).toEqual({
      image: 'k8s.example/pause:3.9',
      where: ' (plugins."io.containerd.grpc.v1.cri".sandbox_image in c.toml)',
    });
    expect(sandboxImageOf({}, () => undefined).image).toBe('registry.k8s.io/pause:3.10');
  });

  test('--config from /proc cmdline; protobuf fields', () => {
    expect(configArgOf('/usr/bin/containerd\0--config\0/etc/c.toml\0')).toBe('/etc/c.toml');
    expect(configArgOf('containerd\0-c=/x.toml\0')).toBe('/x.toml');
    expect(configArgOf('containerd\0')).toBeUndefined();
    // field 1 "v2.1.9", field 2 varint 300
    const f = Message.decode(Uint8Array.from([0x0a, 6, ...Buffer.from('v2.1.9'), 0x10, 0xac, 0x02]));
    expect(f.string(1)).toBe('v2.1.9');
    expect(f.varint(2)).toBe(300n);
  });
});

/**
 * The DaemonSet's container, for real: the image `make image` builds (dist/pullguard-image.tar) is
 * imported into a real containerd 2.1.9 (the "kubelet side") and run with `ctr run` and the mounts
 * deploy/base/daemonset.yaml gives it: a scratch host root at /host, the policy ConfigMap and the
 * dockerconfigjson Secret as kubelet writes such volumes (..data swaps). The node's own containerd
 * 2.1.9 runs chroot'ed in that host root (its own mount namespace, /proc, /dev, /sys), once on a
 * Kind-style version 2 config and once on a version 3 config. Checked: after install CRI pulls are
 * verified; a new policy version takes effect; a broken one is refused (log, state, readiness) while
 * the last good one keeps working; after SIGTERM (uninstall) config.toml is back byte for byte and
 * pulls are unverified again.
 *
 * The agent runs with --no-restart (no init system here): the test restarts the node's containerd
 * where the installer would, and says so.
 */
import { execFile, spawnSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AgentState } from '../../src/node/agent-state.js';
import { KIND_NODE_CONFIG, parseDecisionRecords, startContainerd, type Containerd } from '../helpers/containerd.js';
import { bcrypt } from '../helpers/bcrypt.js';
import { cosignOk, cosignSignKey } from '../helpers/cosign.js';
import { criClient, pullError, type CriClient } from '../helpers/cri.js';
import { writeKubeletVolume } from '../helpers/kubelet-volume.js';
import { pushTestImage, type PushedImage } from '../helpers/oci.js';
import { Pki, tlsServer } from '../helpers/pki.js';
import { startDaemon, waitFor, type Daemon } from '../helpers/proc.js';
import { startRegistry, type Registry } from '../helpers/registry.js';
import { pullguardBinary, ROOT, tool } from '../helpers/tools.js';

const IMAGE_TAR = join(ROOT, 'dist', 'pullguard-image.tar');
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const IMAGE = `localhost/pullguard:${VERSION}`;

let registry: Registry;
/** A registry with htpasswd auth: its signatures are reachable only with the dockerconfigjson Secret. */
let privateRegistry: Registry;
let privateImage: PushedImage;
let kubelet: Containerd;
let api: FakeApi;
let work: string;
let home: string;
let libs: string[] = [];
const timings: string[] = [];

function run(
  argv: readonly string[],
  timeoutMs = 60_000,
): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      argv[0]!,
      argv.slice(1),
      { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 16 << 20 },
      (err, stdout, stderr) => {
        resolve({ status: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr });
      },
    );
  });
}

function place(from: string, to: string): void {
  mkdirSync(dirname(to), { recursive: true });
  try {
    linkSync(realpathSync(from), to);
  } catch {
    copyFileSync(realpathSync(from), to);
    chmodSync(to, statSync(from).mode & 0o777);
  }
}

beforeAll(async () => {
  if (!existsSync(IMAGE_TAR))
    throw new Error(`${IMAGE_TAR} is missing: run \`make image\` (or make image-amd64) first`);
  work = mkdtempSync('/tmp/pgds-');
  home = join(work, 'home');
  registry = await startRegistry();
  await cosignOk(home, ['generate-key-pair', '--output-key-prefix', join(work, 'release')]);
  writeFileSync(join(work, 'htpasswd'), `pg:${bcrypt('s3cret')}\n`);
  privateRegistry = await startRegistry({ htpasswd: join(work, 'htpasswd') });
  const docker = join(work, 'docker');
  mkdirSync(docker);
  writeFileSync(join(docker, 'config.json'), dockerConfigJson('s3cret'));
  process.env.DOCKER_CONFIG = docker; // oras, for the push
  try {
    privateImage = await pushTestImage(privateRegistry.host, 'private', 'v1', `private-${Math.random()}`);
  } finally {
    delete process.env.DOCKER_CONFIG;
  }
  await cosignSignKey(home, join(work, 'release.key'), `${privateRegistry.host}/private@${privateImage.digest}`, {
    env: { DOCKER_CONFIG: docker },
  });
  // What the chroot'ed host binaries need (containerd, the installed pullguard, the installer's sh).
  const ldd = spawnSync('ldd', [tool('containerd'), pullguardBinary(), '/bin/sh'], { encoding: 'utf8' });
  libs = [...new Set(ldd.stdout.match(/\/\S+\.so[.\d]*/g) ?? [])].filter((l) => !l.endsWith(':'));
  api = await startFakeApi(join(work, 'api'));
  kubelet = await startContainerd({ verifier: false });
  const imp = await kubelet.ctr(['images', 'import', IMAGE_TAR], { timeoutMs: 120_000 });
  expect(imp.status, imp.stderr).toBe(0);
  expect((await kubelet.ctr(['images', 'ls', '-q'])).stdout).toContain(IMAGE);
});

afterAll(async () => {
  if (timings.length) console.log(`daemonset e2e timings:\n  ${timings.join('\n  ')}`);
  await kubelet?.stop();
  api?.close();
  await registry?.stop();
  await privateRegistry?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

interface FakeApi {
  readonly port: number;
  /** The service account directory to mount (token, ca.crt, namespace). */
  readonly serviceAccount: string;
  /** What GET .../daemonsets/pullguard-node answers. */
  daemonSet: 'present' | 'deleted';
  /** Authorized GETs of that DaemonSet so far. */
  requests: number;
  close(): void;
}

/**
 * The one Kubernetes API call the agent makes (GET its DaemonSet), over HTTPS with a CA and a bearer
 * token as in a pod: a self-signed certificate for 127.0.0.1 (test/helpers/pki.ts).
 */
async function startFakeApi(dir: string): Promise<FakeApi> {
  const sa = join(dir, 'sa');
  mkdirSync(sa, { recursive: true });
  const cert = await tlsServer(Pki.create(join(dir, 'pki')), 'kubernetes', { subject: '/CN=kubernetes' });
  copyFileSync(cert.cert, join(sa, 'ca.crt'));
  writeFileSync(join(sa, 'token'), 'test-token');
  writeFileSync(join(sa, 'namespace'), 'pullguard-system');
  const self: FakeApi = { port: 0, serviceAccount: sa, daemonSet: 'present', requests: 0, close: () => server.close() };
  const server = createHttpsServer({ key: readFileSync(cert.key), cert: readFileSync(cert.cert) }, (req, res) => {
    const path = '/apis/apps/v1/namespaces/pullguard-system/daemonsets/pullguard-node';
    if (req.headers.authorization !== 'Bearer test-token') return void res.writeHead(401).end();
    if (req.url !== path) return void res.writeHead(404).end();
    self.requests++;
    if (self.daemonSet === 'deleted')
      return void res.writeHead(404, { 'content-type': 'application/json' }).end('{"kind":"Status","code":404}');
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        kind: 'DaemonSet',
        apiVersion: 'apps/v1',
        metadata: { name: 'pullguard-node', namespace: 'pullguard-system' },
      }),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  (self as { port: number }).port = (server.address() as AddressInfo).port;
  return self;
}

/** The node's containerd, chroot'ed into the host root in a private mount namespace (its mounts vanish with it). */
function startNodeContainerd(root: string): Daemon {
  const script = [
    'set -e',
    // The root must be a mount point: /proc/self/mountinfo shows mounts relative to the chroot, and
    // containerd looks up the mount holding /var/lib/containerd at start.
    `mount --bind ${root} ${root}`,
    `mount -t proc proc ${root}/proc`,
    `mount --rbind /dev ${root}/dev`,
    `mount --rbind /sys ${root}/sys`,
    `exec chroot ${root} /usr/bin/containerd --config /etc/containerd/config.toml`,
  ].join('\n');
  return startDaemon('unshare', ['--mount', '--propagation', 'private', '/bin/sh', '-c', script], {
    env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' },
  });
}

interface Node {
  readonly root: string;
  readonly socket: string;
  daemon: Daemon;
  cri: CriClient;
  /** Every daemon's log so far, oldest first (restarts replace the daemon). */
  logs: string[];
}

async function bootNode(node: Node): Promise<void> {
  node.daemon = startNodeContainerd(node.root);
  await waitFor(
    'node containerd',
    async () =>
      /msg="containerd successfully booted/.test(node.daemon.output()) &&
      existsSync(node.socket) &&
      (await run([tool('ctr'), '-a', node.socket, 'version'])).status === 0,
    60_000,
    node.daemon,
  );
  node.cri = criClient(node.socket);
}

async function restartNode(node: Node): Promise<void> {
  node.cri.close();
  node.logs.push(node.daemon.output());
  await node.daemon.stop();
  await bootNode(node);
}

function makeHostRoot(name: string, config: string): Node {
  const root = join(work, name);
  place(tool('containerd'), join(root, 'usr/bin/containerd'));
  place('/bin/sh', join(root, 'bin/sh'));
  for (const l of libs) place(l, join(root, l));
  for (const d of ['proc', 'dev', 'sys', 'tmp', 'run']) mkdirSync(join(root, d), { recursive: true });
  mkdirSync(join(root, 'etc/containerd'), { recursive: true });
  writeFileSync(join(root, 'etc/containerd/config.toml'), config);
  const spec = spawnSync(tool('ctr'), ['oci', 'spec'], { encoding: 'utf8' });
  writeFileSync(join(root, 'etc/containerd/cri-base.json'), spec.stdout);
  return {
    root,
    socket: join(root, 'run/containerd/containerd.sock'),
    daemon: undefined as never,
    cri: undefined as never,
    logs: [],
  };
}

const dockerConfigJson = (password: string) =>
  JSON.stringify({ auths: { [privateRegistry.host]: { auth: Buffer.from(`pg:${password}`).toString('base64') } } });

const readState = (node: Node): AgentState | undefined => {
  try {
    return JSON.parse(readFileSync(join(node.root, 'var/lib/pullguard/agent.json'), 'utf8')) as AgentState;
  } catch {
    return undefined;
  }
};

/** The agent's HTTP health endpoint (the port it picked is in its state file): the status code. */
async function probe(node: Node, path: string): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${readState(node)!.healthPort}${path}`);
  await res.text();
  return res.status;
}

/** The policy ConfigMap: a key release.pub, named by the policy at its host path /etc/pullguard/release.pub. */
function policyVersion(
  host: string,
  open: 'allow' | 'deny',
  mode: 'enforce' | 'audit' = 'enforce',
): Record<string, string> {
  return {
    'policy.yaml': [
      'version: 1',
      `mode: ${mode}`,
      'default: deny',
      'rules:',
      '  - name: signed',
      `    match: ${host}/signed-*`,
      '    action: verify',
      '    authorities:',
      '      - name: release',
      '        cosign: {keys: [/etc/pullguard/release.pub]}',
      '  - name: open',
      `    match: ${host}/open-*`,
      `    action: ${open}`,
      '  - name: private',
      `    match: ${privateRegistry.host}/**`,
      '    action: verify',
      '    authorities:',
      '      - name: release',
      '        cosign: {keys: [/etc/pullguard/release.pub]}',
      '',
    ].join('\n'),
    'release.pub': readFileSync(join(work, 'release.pub'), 'utf8'),
  };
}

async function signedImage(repo: string): Promise<PushedImage> {
  const i = await pushTestImage(registry.host, repo, 'v1', `${repo}-${Math.random()}`);
  await cosignSignKey(home, join(work, 'release.key'), `${i.ref.replace(/:[^:/]+$/, '')}@${i.digest}`);
  return i;
}

const V3_CONFIG = [
  '# a version 3 node config',
  'version = 3',
  '[debug]',
  '  level = "debug"',
  '[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]',
  '  runtime_type = "io.containerd.runc.v2"',
  '',
].join('\n');
// Kind's node config plus debug logging (decision records are logged at debug level).
const V2_CONFIG = `${KIND_NODE_CONFIG}\n[debug]\n  level = "debug"\n`;

describe.each([
  ['Kind-style version 2', 'v2', V2_CONFIG],
  ['version 3', 'v3', V3_CONFIG],
])('the DaemonSet container on a node with a %s config', (_title, name, config) => {
  let node: Node;
  let cfg: string;
  let secret: string;
  let agentLog: string;
  const ctrName = `pullguard-agent-${name}`;
  let n = 0;
  const fresh = (repo: string) =>
    pushTestImage(registry.host, `${repo}-${name}-${++n}`, 'v1', `${repo}-${name}-${n}-${Math.random()}`);
  const records = () => parseDecisionRecords([...node.logs, node.daemon.output()].join('\n'));
  /** The DaemonSet's pod: its mounts, a fake service account, and the Kubernetes API at 127.0.0.1. */
  const runAgentContainer = async () => {
    await kubelet.ctr(['container', 'rm', ctrName]);
    return kubelet.ctr([
      // Host network only so that the test can reach the readiness endpoint (the DaemonSet's probe)
      // and the fake API server.
      ...['run', '-d', '--privileged', '--net-host', '--log-uri', `file://${agentLog}`],
      ...['--mount', `type=bind,src=${node.root},dst=/host,options=rbind:rw`],
      ...['--mount', `type=bind,src=${cfg},dst=/etc/pullguard-config,options=rbind:ro`],
      ...['--mount', `type=bind,src=${secret},dst=/etc/pullguard-docker,options=rbind:ro`],
      ...[
        '--mount',
        `type=bind,src=${api.serviceAccount},dst=/var/run/secrets/kubernetes.io/serviceaccount,options=rbind:ro`,
      ],
      ...['--env', 'KUBERNETES_SERVICE_HOST=127.0.0.1', '--env', `KUBERNETES_SERVICE_PORT=${api.port}`],
      ...[IMAGE, ctrName, '/usr/bin/pullguard', 'node', 'agent', '--root', '/host', '--no-restart', '--resync', '2'],
      ...['--health-port', '0', '--health-address', '127.0.0.1'],
    ]);
  };
  const sigterm = async () => {
    expect((await kubelet.ctr(['task', 'kill', '-s', 'SIGTERM', ctrName])).status).toBe(0);
    await waitFor('agent exit', async () => !/\bRUNNING\b/.test((await kubelet.ctr(['task', 'ls'])).stdout), 90_000);
  };
  const verdict = async (image: PushedImage): Promise<string> => {
    const err = await pullError(node.cri, image.ref);
    const rec = await waitFor('decision record', () => records().some((r) => r.digest === image.digest), 3000).then(
      () => records().find((r) => r.digest === image.digest),
      () => undefined,
    );
    const by = rec ? ` (pullguard: ${rec.verdict}${rec.rule ? ` by ${rec.rule}` : ''})` : ' (unverified)';
    return `${err ? 'denied' : 'allowed'}${by}`;
  };

  beforeAll(async () => {
    node = makeHostRoot(`host-${name}`, config);
    await bootNode(node);
    cfg = join(work, `configmap-${name}`);
    secret = join(work, `secret-${name}`);
    agentLog = join(work, `agent-${name}.log`);
  });
  afterAll(async () => {
    await kubelet.ctr(['task', 'kill', '-s', 'SIGKILL', ctrName]);
    await kubelet.ctr(['container', 'rm', ctrName]);
    node?.cri?.close();
    await node?.daemon?.stop();
  });

  it('before install: pulls are not verified', async () => {
    expect(await verdict(await fresh('other'))).toBe('allowed (unverified)');
  });

  it('the agent installs from the image, and after the restart every CRI pull is verified', async () => {
    writeKubeletVolume(cfg, policyVersion(registry.host, 'allow'));
    writeKubeletVolume(secret, { '.dockerconfigjson': dockerConfigJson('s3cret') });
    const t0 = performance.now();
    const r = await runAgentContainer();
    expect(r.status, r.stderr).toBe(0);
    await waitFor('agent installed', () => readState(node)?.installed === true, 90_000).catch((e: Error) => {
      throw new Error(`${e.message}\nagent log:\n${readFileSync(agentLog, 'utf8')}`);
    });
    const installMs = Math.round(performance.now() - t0);
    timings.push(`${name}: ctr run -> installed ${installMs} ms (policy, drop-in, executable; no restart)`);
    const state = readState(node)!;
    expect(state.ready).toBe(true);
    expect(await probe(node, '/readyz')).toBe(200);
    expect(await probe(node, '/healthz')).toBe(200);
    expect(state.dockerConfig).toBe('placed');
    // The policy path containerd's pullguard reads resolves through the one swapped symlink.
    expect(realpathSync(join(node.root, 'etc/pullguard/policy.yaml'))).toBe(
      join(node.root, 'etc/pullguard/.versions', state.applied!.version, 'policy.yaml'),
    );
    const docker = join(node.root, 'etc/pullguard/docker/config.json');
    expect(statSync(docker).mode & 0o777).toBe(0o600);
    expect(readFileSync(docker, 'utf8')).toBe(dockerConfigJson('s3cret'));
    expect(readdirSync(join(node.root, 'opt/containerd/image-verifier/bin'))).toEqual(['pullguard']);

    const r0 = performance.now();
    await restartNode(node); // the installer's restart, left to us by --no-restart
    timings.push(`${name}: node containerd restart until the CRI answers ${Math.round(performance.now() - r0)} ms`);
    expect(node.daemon.output()).not.toContain('Falling back to local image pull mode');
    const signed = await signedImage(`signed-${name}-1`);
    expect(await verdict(signed)).toBe('allowed (pullguard: allow by signed)');
    expect(await verdict(await fresh('signed-unsigned'))).toMatch(/^denied \(pullguard: deny by signed\)$/);
    expect(await verdict(await fresh('open'))).toBe('allowed (pullguard: allow by open)');
    expect(await verdict(await fresh('other'))).toBe('denied (pullguard: deny)');
  });

  it('a private registry: pullguard reads signatures with the dockerconfigjson Secret the agent placed', async () => {
    // containerd pulls with its own credentials (ctr --user, like kubelet's pull secret); pullguard gets
    // none from containerd and must use /etc/pullguard/docker/config.json.
    const pull = () =>
      run([
        tool('ctr'),
        '-a',
        node.socket,
        '-n',
        'k8s.io',
        'image',
        'pull',
        '--plain-http',
        '--user',
        'pg:s3cret',
        privateImage.ref,
      ]);
    const r = await pull();
    expect(r.status, r.stderr).toBe(0);
    const rec = await waitFor('record', () => records().some((x) => x.digest === privateImage.digest), 5000).then(
      () => records().find((x) => x.digest === privateImage.digest)!,
    );
    expect(rec).toMatchObject({ verdict: 'allow', rule: 'private' });
    // The control: a Secret with a wrong password (kubelet swaps it in) and the same pull is denied.
    writeKubeletVolume(secret, { '.dockerconfigjson': dockerConfigJson('Wr0ngPassw0rd') });
    await waitFor(
      'new docker config',
      () =>
        readFileSync(join(node.root, 'etc/pullguard/docker/config.json'), 'utf8') === dockerConfigJson('Wr0ngPassw0rd'),
      30_000,
    );
    await run([tool('ctr'), '-a', node.socket, '-n', 'k8s.io', 'image', 'rm', privateImage.ref]);
    const denied = await pull();
    expect(denied.status).not.toBe(0);
    expect(denied.stderr).toMatch(/pullguard rejected image.*401/);
    expect(denied.stderr).not.toContain('Wr0ngPassw0rd');
    writeKubeletVolume(secret, { '.dockerconfigjson': dockerConfigJson('s3cret') });
  });

  it('a new valid policy version (a ..data swap) takes effect without a restart', async () => {
    const before = readState(node)!.applied!.version;
    writeKubeletVolume(cfg, policyVersion(registry.host, 'deny'));
    await waitFor(
      'new version applied',
      () => {
        const s = readState(node);
        return s?.applied?.version !== before && s?.ready === true;
      },
      30_000,
    );
    expect(await verdict(await fresh('open'))).toBe('denied (pullguard: deny by open)');
    expect(await verdict(await signedImage(`signed-${name}-2`))).toBe('allowed (pullguard: allow by signed)');
  });

  it('audit mode arrives the same way: would-be denials are allowed and recorded', async () => {
    const enforced = readState(node)!.applied!.version;
    writeKubeletVolume(cfg, policyVersion(registry.host, 'deny', 'audit'));
    await waitFor(
      'audit version',
      () => readState(node)?.applied?.version !== enforced && readState(node)?.ready === true,
      30_000,
    );
    const image = await fresh('other');
    expect(await verdict(image)).toBe('allowed (pullguard: allow)');
    expect(records().find((r) => r.digest === image.digest)).toMatchObject({ mode: 'audit', policyVerdict: 'deny' });
    writeKubeletVolume(cfg, policyVersion(registry.host, 'deny'));
    await waitFor(
      'enforce again',
      () => readState(node)?.applied?.version === enforced && readState(node)?.ready === true,
      30_000,
    );
    expect(await verdict(await fresh('other'))).toBe('denied (pullguard: deny)');
  });

  it('a broken version is refused (log, state, readiness) and the last good policy keeps working', async () => {
    const good = readState(node)!.applied!.version;
    // Names a key the ConfigMap does not hold: valid YAML, invalid policy.
    const broken = policyVersion(registry.host, 'allow');
    broken['policy.yaml'] = broken['policy.yaml']!.replace('/etc/pullguard/release.pub', '/etc/pullguard/rotated.pub');
    writeKubeletVolume(cfg, broken);
    await waitFor('refusal', () => readState(node)?.refused !== undefined, 30_000);
    const s = readState(node)!;
    expect(s.ready).toBe(false);
    expect(await probe(node, '/readyz')).toBe(503);
    expect(await probe(node, '/healthz')).toBe(200);
    expect(s.applied!.version).toBe(good);
    expect(s.refused!.reason).toContain('/etc/pullguard/rotated.pub');
    // The pod log (ctr writes it asynchronously, like kubelet's log files).
    const refusedLine = new RegExp(
      `REFUSED policy version ${s.refused!.version}: .*rotated\\.pub.*keeping version ${good}`,
    );
    await waitFor('refusal in the pod log', () => refusedLine.test(readFileSync(agentLog, 'utf8')), 10_000);
    expect(realpathSync(join(node.root, 'etc/pullguard/policy.yaml'))).toContain(`/.versions/${good}/`);
    // `pullguard node status`, run in the agent's container as an operator would (kubectl exec).
    const status = await kubelet.ctr([
      'task',
      'exec',
      '--exec-id',
      `status-${name}`,
      ctrName,
      '/usr/bin/pullguard',
      'node',
      'status',
      '--root',
      '/host',
    ]);
    expect(status.stdout).toContain(`REFUSED policy version ${s.refused!.version}`);
    expect(status.stdout).toContain(`policy version ${good} applied`);
    // Still the last good policy: open-* denied, signed allowed (had the broken one been applied, both would differ).
    expect(await verdict(await fresh('open'))).toBe('denied (pullguard: deny by open)');
    expect(await verdict(await signedImage(`signed-${name}-3`))).toBe('allowed (pullguard: allow by signed)');
    // Syntax errors too.
    writeKubeletVolume(cfg, { ...policyVersion(registry.host, 'allow'), 'policy.yaml': 'version: 1\nrules: [\n' });
    await waitFor('second refusal', () => readState(node)?.refused?.version !== s.refused!.version, 30_000);
    expect(readState(node)!.applied!.version).toBe(good);
  });

  it('SIGTERM while the DaemonSet exists (rolling update) stays installed; the next pod takes over', async () => {
    api.daemonSet = 'present';
    const asked = api.requests;
    await sigterm();
    expect(api.requests).toBe(asked + 1);
    await waitFor(
      'stop in the pod log',
      () => readFileSync(agentLog, 'utf8').includes('leaving pullguard installed'),
      10_000,
    );
    expect(readState(node)).toMatchObject({ phase: 'stopped', installed: true });
    expect(readdirSync(join(node.root, 'opt/containerd/image-verifier/bin'))).toEqual(['pullguard']);
    expect(await verdict(await fresh('other'))).toBe('denied (pullguard: deny)');
    // The next pod starts while the ConfigMap still holds the refused version: it installs (again: no
    // change) with the last good policy on the host, and is not ready until the ConfigMap is fixed.
    const good = readState(node)!.applied!.version;
    expect((await runAgentContainer()).status).toBe(0);
    await waitFor(
      'next agent installed',
      () => readState(node)?.phase === 'running' && readState(node)?.installed === true,
      60_000,
    );
    expect(readState(node)).toMatchObject({ ready: false, applied: { version: good } });
    expect(readState(node)!.refused).toBeDefined();
    expect(await verdict(await fresh('open'))).toBe('denied (pullguard: deny by open)');
    writeKubeletVolume(cfg, policyVersion(registry.host, 'deny'));
    await waitFor('next agent ready', () => readState(node)?.ready === true, 30_000);
    expect(readState(node)!.applied!.version).toBe(good); // the same content as the last good version
  });

  it('SIGTERM when the DaemonSet is deleted uninstalls: config.toml back byte for byte, pulls unverified', async () => {
    api.daemonSet = 'deleted';
    const t0 = performance.now();
    await sigterm();
    timings.push(`${name}: SIGTERM -> uninstalled ${Math.round(performance.now() - t0)} ms (no restart)`);
    await waitFor('uninstalled in the pod log', () => readFileSync(agentLog, 'utf8').includes('uninstalled'), 10_000);
    expect(readFileSync(agentLog, 'utf8')).toMatch(
      /DaemonSet pullguard-system\/pullguard-node is deleted \(.*HTTP 404\); uninstalling/,
    );
    expect(readFileSync(join(node.root, 'etc/containerd/config.toml'), 'utf8')).toBe(config);
    expect(existsSync(join(node.root, 'opt/containerd/image-verifier/bin/pullguard'))).toBe(false);
    expect(existsSync(join(node.root, 'etc/pullguard/policy.yaml'))).toBe(false);
    expect(existsSync(join(node.root, 'etc/pullguard/docker/config.json'))).toBe(false);
    expect(readState(node)).toMatchObject({ phase: 'uninstalled', installed: false });
    await restartNode(node);
    expect(await verdict(await fresh('other'))).toBe('allowed (unverified)');
  });
});

describe('the image itself', () => {
  it('copies from the OCI layout with oras, and holds the executable, its runtime and the licenses only', async () => {
    const ref = `${registry.host}/pullguard:${VERSION}`;
    const layout = join(ROOT, 'dist', 'image');
    const cp = await run([tool('oras'), 'cp', '--from-oci-layout', `${layout}:${VERSION}`, ref, '--to-plain-http']);
    expect(cp.status, cp.stderr).toBe(0);
    const fetched = await run([tool('oras'), 'manifest', 'fetch', '--plain-http', ref]);
    expect(fetched.status, fetched.stderr).toBe(0);
    const index = JSON.parse(fetched.stdout) as { manifests: { platform: { architecture: string } }[] };
    expect(index.manifests.map((m) => m.platform.architecture)).toContain('amd64');
    // Every file of every layer (the amd64 manifest from the layout).
    const blob = (d: string) => readFileSync(join(layout, 'blobs', 'sha256', d.slice(7)));
    const top = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
    const idx = JSON.parse(blob(top.manifests[0]!.digest).toString()) as {
      manifests: { digest: string; platform: { architecture: string } }[];
    };
    const amd64 = idx.manifests.find((m) => m.platform.architecture === 'amd64')!;
    const manifest = JSON.parse(blob(amd64.digest).toString()) as { layers: { digest: string }[] };
    const files: string[] = [];
    for (const l of manifest.layers) {
      const t = spawnSync('tar', ['-tzf', join(layout, 'blobs', 'sha256', l.digest.slice(7))], { encoding: 'utf8' });
      files.push(...t.stdout.split('\n').filter((f) => f !== '' && !f.endsWith('/')));
    }
    const executables = files.filter((f) => /^usr\/s?bin\//.test(f)).sort();
    expect(executables).toEqual(['usr/bin/nsenter', 'usr/bin/pullguard', 'usr/sbin/chroot']);
    for (const pkg of ['libc6', 'gcc-14-base', 'util-linux', 'coreutils', 'libselinux1', 'libpcre2-8-0']) {
      expect(files, pkg).toContain(`usr/share/doc/${pkg}/copyright`);
    }
    expect(files).toContain('usr/share/doc/pullguard/third-party/node/LICENSE');
    expect(files).toContain('usr/share/doc/pullguard-image/debian-packages.txt');
    expect(files.some((f) => /\/(sh|bash|busybox)$/.test(f))).toBe(false);
  });
});

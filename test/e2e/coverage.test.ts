/**
 * Rows of the README coverage table that need a client of their own: Docker Engine 28.5.2 (Debian's
 * dockerd, no CLI: its Engine API over a unix socket) with the containerd image store, on the same
 * real containerd 2.1.9 that runs pullguard. containerd's own pull (`ctr image pull`) of the image is
 * denied; Docker's pull of it is not, because dockerd pulls with containerd's client library, not the
 * transfer service (moby daemon/containerd/image_pull.go; moby/moby#49820 would change that). The
 * BuildKit inside the same dockerd builds FROM a denied image just as freely. Then
 * `pullguard scan --namespace moby` finds both and removes what no container uses.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startContainerd, type Containerd } from '../helpers/containerd.js';
import { pushTestImage, tar, type PushedImage } from '../helpers/oci.js';
import { startDaemon, waitFor, type Daemon } from '../helpers/proc.js';
import { startRegistry, type Registry } from '../helpers/registry.js';
import { pullguardBinary, tool, toolsBin } from '../helpers/tools.js';

let registry: Registry;
let ctd: Containerd;
let dockerd: Daemon;
let dockerSock: string;
let work: string;
let policyFile: string;
let blocked: PushedImage;
let base: PushedImage;

/** One Engine API call; the pull answer is a stream of JSON lines, read to the end. */
function engine(method: string, path: string, body?: Buffer): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const headers = body ? { 'content-type': 'application/x-tar' } : {};
    const req = request({ socketPath: dockerSock, method, path, headers, timeout: 60_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`dockerd ${method} ${path}: no answer`)));
    req.on('error', reject);
    req.end(body);
  });
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'pg-coverage-'));
  policyFile = join(work, 'policy.yaml');
  const log = `log: {file: ${JSON.stringify(join(work, 'decisions.jsonl'))}}\n`;
  writeFileSync(policyFile, `version: 1\ndefault: deny\n${log}`);
  registry = await startRegistry();
  blocked = await pushTestImage(registry.host, 'blocked', 'v1', 'coverage-docker-blocked');
  base = await pushTestImage(registry.host, 'base', 'v1', 'coverage-buildkit-base');
  ctd = await startContainerd({ mode: 'dropin', policy: policyFile });
  // Everything dockerd writes stays under the daemon's temp dir, removed with it.
  const d = join(ctd.dir, 'dk');
  mkdirSync(d);
  writeFileSync(join(d, 'daemon.json'), JSON.stringify({ features: { 'containerd-snapshotter': true } }));
  dockerSock = join(d, 'd.sock');
  const args = [
    ...['--containerd', ctd.socket, '--config-file', join(d, 'daemon.json')],
    ...[
      '--data-root',
      join(d, 'root'),
      '--exec-root',
      join(d, 'x'),
      '--pidfile',
      join(d, 'pid'),
      '-H',
      `unix://${dockerSock}`,
    ],
    ...['--iptables=false', '--ip6tables=false', '--bridge=none', '--userland-proxy=false'],
  ];
  dockerd = startDaemon(tool('dockerd'), args, { env: { PATH: `${toolsBin()}:/usr/sbin:/usr/bin:/sbin:/bin` } });
  await waitFor(
    'dockerd API',
    async () => existsSync(dockerSock) && (await engine('GET', '/_ping').catch(() => ({ status: 0 }))).status === 200,
    60_000,
    dockerd,
  );
}, 180_000);

afterAll(async () => {
  await dockerd?.stop();
  await ctd?.stop();
  await registry?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('Docker Engine with the containerd image store', () => {
  it('runs on the containerd that runs pullguard, with the containerd snapshotter', async () => {
    const info = JSON.parse((await engine('GET', '/info')).body) as { DriverStatus: string[][]; ServerVersion: string };
    expect(info.ServerVersion).toMatch(/^28\./);
    expect(info.DriverStatus).toContainEqual(['driver-type', 'io.containerd.snapshotter.v1']);
  });

  it("control: containerd's own pull of the image is denied by pullguard", async () => {
    const r = await ctd.ctr(['image', 'pull', '--plain-http', blocked.ref]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain('verifier pullguard rejected image (exit code 1)');
  });

  it('is NOT verified: docker pull of the same image succeeds (namespace moby), pullguard never runs', async () => {
    const before = ctd.decisionRecords().filter((r) => r.name.includes('/blocked')).length;
    const r = await engine('POST', `/images/create?fromImage=${encodeURIComponent(`${registry.host}/blocked`)}&tag=v1`);
    expect(r.status, r.body).toBe(200);
    expect(r.body).toContain(`Digest: ${blocked.digest}`);
    expect(r.body).not.toContain('errorDetail');
    const ls = await ctd.ctr(['images', 'ls', '-q'], { namespace: 'moby' });
    expect(ls.stdout.split('\n')).toContain(blocked.ref);
    // A transfer pull afterwards as a marker: once its record is in, a record of Docker's pull would be too.
    await ctd.ctr(['image', 'pull', '--plain-http', blocked.ref], { namespace: 'marker' });
    await waitFor(
      'marker record',
      () => ctd.decisionRecords().filter((x) => x.name === blocked.ref).length === before + 1,
      5_000,
    );
  });

  it('BuildKit is NOT verified: a build FROM a denied image pulls it and stores the result', async () => {
    // Docker's BuildKit backend (version=2) with the context as a tar body: no session, no CLI needed.
    const context = tar([{ name: 'Dockerfile', content: Buffer.from(`FROM ${base.ref}\nLABEL built.by=buildkit\n`) }]);
    const r = await engine('POST', '/build?version=2&t=pg-built:1', context);
    expect(r.status, r.body).toBe(200);
    expect(r.body).toContain('moby.image.id');
    expect(r.body).not.toContain('errorDetail');
    expect((await ctd.ctr(['images', 'ls', '-q'], { namespace: 'moby' })).stdout).toContain(
      'docker.io/library/pg-built:1',
    );
    await ctd.ctr(['image', 'pull', '--plain-http', base.ref], { namespace: 'marker' });
    await waitFor('marker record', () => ctd.decisionRecords().some((x) => x.name === base.ref), 5_000);
    // The one record is the marker's, a deny: BuildKit's pull of the same image never ran pullguard.
    expect(
      ctd
        .decisionRecords()
        .filter((x) => x.name === base.ref)
        .map((x) => x.verdict),
    ).toEqual(['deny']);
  });

  it('pullguard scan --namespace moby finds it, and --remove-denied removes it from Docker too', async () => {
    const scan = (args: string[]) =>
      new Promise<{ code: number | null; stdout: string }>((resolve) =>
        execFile(
          pullguardBinary(),
          ['scan', '--address', ctd.socket, '--namespace', 'moby', '--json', ...args],
          { env: { PULLGUARD_POLICY: policyFile }, encoding: 'utf8', timeout: 60_000 },
          (err, stdout) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout }),
        ),
      );
    const r = await scan(['--remove-denied']);
    expect(r.code).toBe(1);
    const json = JSON.parse(r.stdout) as {
      images: { repository: string; verdict: string; reason: string; removed: string[] }[];
    };
    const mine = json.images.find((i) => i.repository === `${registry.host}/blocked`);
    expect(mine).toMatchObject({
      repository: `${registry.host}/blocked`,
      verdict: 'deny',
      reason: 'no rule matches; default is deny',
    });
    expect(mine!.removed).toContain(blocked.ref);
    // The image BuildKit built from an unverified base: no rule matches it either.
    expect(json.images.find((i) => i.repository === 'docker.io/library/pg-built')).toMatchObject({ verdict: 'deny' });
    const images = JSON.parse((await engine('GET', '/images/json')).body) as { RepoTags?: string[] }[];
    expect(images.flatMap((i) => i.RepoTags ?? [])).not.toContain(blocked.ref);
  });
});

/**
 * Decisions visible in production: a real containerd 2.1.9 at INFO level (what nodes run; verifier
 * stderr is dropped there), pullguard in audit mode. What pullguard decided must be in its own decision
 * log, in `pullguard log` and in the metrics file; under 50 concurrent pulls every line stays intact
 * and every counter exact; a full or read-only log directory never changes a verdict.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startContainerd, type Containerd } from '../helpers/containerd.js';
import { criClient, pullError, type CriClient } from '../helpers/cri.js';
import { pushTestImage, type PushedImage } from '../helpers/oci.js';
import { waitFor } from '../helpers/proc.js';
import { startRegistry, type Registry } from '../helpers/registry.js';
import { pullguardBinary, tool, toolsBin } from '../helpers/tools.js';

const CONCURRENT = 50;
let registry: Registry;
let work: string;
let policyFile: string;
let logFile: string;
let metricsFile: string;
let keyFile: string;
let ctd: Containerd;
let cri: CriClient;
const img: Record<'app' | 'unsigned' | 'blocked', PushedImage> = {} as never;
const mounts: string[] = [];

function writePolicy(opts: { mode: 'audit' | 'enforce'; log?: string; metrics?: string }): void {
  const h = registry.host;
  writeFileSync(
    policyFile,
    [
      'version: 1',
      `mode: ${opts.mode}`,
      'default: deny',
      'log:',
      `  file: ${JSON.stringify(opts.log ?? logFile)}`,
      `  metricsFile: ${JSON.stringify(opts.metrics ?? metricsFile)}`,
      'rules:',
      `  - {name: app, match: ${h}/app, action: allow}`,
      `  - {name: blocked, match: ${h}/blocked, action: deny, message: blocked by the platform team}`,
      `  - name: needs-signature`,
      `    match: ${h}/unsigned`,
      '    action: verify',
      `    authorities: [{name: release-key, cosign: {keys: [${JSON.stringify(keyFile)}]}}]`,
      '',
    ].join('\n'),
  );
}

const logLines = (file = logFile) => {
  try {
    return readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l !== '');
  } catch {
    return [];
  }
};
const records = (file = logFile) => logLines(file).map((l) => JSON.parse(l) as Record<string, unknown>);
const metric = (series: string) => {
  const text = readFileSync(metricsFile, 'utf8');
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
};
const pg = (args: string[]) =>
  spawnSync(pullguardBinary(), args, { encoding: 'utf8', timeout: 30_000, env: { PATH: '/usr/bin:/bin' } });

/** dist/pullguard as containerd runs it: the verifier arguments, the descriptor on stdin. */
function runVerifier(name: string, image: PushedImage, policy: string) {
  const args = ['-name', name, '-digest', image.digest, '-stdin-media-type', 'application/vnd.oci.descriptor.v1+json'];
  const input = JSON.stringify({ mediaType: image.mediaType, digest: image.digest, size: image.size });
  return spawnSync(pullguardBinary(), args, {
    input,
    encoding: 'utf8',
    timeout: 30_000,
    env: { PULLGUARD_POLICY: policy },
  });
}

function mountTmpfs(dir: string, size: string, readOnly = false): void {
  mkdirSync(dir, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0755`, 'tmpfs', dir]);
  mounts.push(dir);
  if (readOnly) execFileSync('mount', ['-o', 'remount,ro', dir]);
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'pg-obs-'));
  policyFile = join(work, 'policy.yaml');
  logFile = join(work, 'log', 'decisions.jsonl');
  metricsFile = join(work, 'textfile', 'pullguard.prom');
  mkdirSync(join(work, 'textfile'));
  registry = await startRegistry();
  img.app = await pushTestImage(registry.host, 'app', 'v1', 'app');
  img.unsigned = await pushTestImage(registry.host, 'unsigned', 'v1', 'unsigned');
  img.blocked = await pushTestImage(registry.host, 'blocked', 'v1', 'blocked');
  // 50 names for one image: each CRI pull of a new name is its own verifier run.
  const tags = Array.from({ length: CONCURRENT }, (_, i) => `t${i}`);
  execFileSync(tool('oras'), ['tag', '--plain-http', img.app.ref, ...tags], {
    stdio: 'pipe',
    env: { ...process.env, HOME: work },
    timeout: 60_000,
  });
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  keyFile = join(work, 'release.pub');
  writeFileSync(keyFile, publicKey.export({ type: 'spki', format: 'pem' }));
  writePolicy({ mode: 'audit' });
  ctd = await startContainerd({ mode: 'dropin', policy: policyFile, logLevel: 'info' });
  cri = criClient(ctd.socket);
});

afterAll(async () => {
  cri?.close();
  await ctd?.stop();
  await registry?.stop();
  for (const m of mounts.reverse()) spawnSync('umount', ['-l', m], { timeout: 10_000 });
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('containerd at info level, audit mode', () => {
  it('a would-deny is in the decision log, in `pullguard log --would-deny` and in the metrics file', async () => {
    expect(await pullError(cri, img.unsigned.ref)).toBeUndefined(); // audit: the pull goes through
    const rec = records().find((r) => r.name === img.unsigned.ref);
    expect(rec).toMatchObject({
      v: 1,
      verdict: 'allow',
      policyVerdict: 'deny',
      wouldDeny: true,
      mode: 'audit',
      rule: 'needs-signature',
      code: 'NO_SIGNATURE',
      digest: img.unsigned.digest,
      exitCode: 0,
    });
    // containerd at info level says nothing about it: the decision log is the only trace.
    expect(ctd.log()).not.toContain('image_verifier=pullguard');

    const report = pg(['log', '--would-deny', '--policy', policyFile]);
    expect(report.status, report.stderr).toBe(0);
    const lines = report.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^1 of \d+ decision\(s\) in /);
    expect(lines[1]).toBe(`WOULD-DENY     1x  ${registry.host}/unsigned  rule "needs-signature"  [NO_SIGNATURE]`);
    expect(lines[2]).toMatch(/^ {11}no cosign signature found/);
    expect(lines[3]).toMatch(/^ {11}first \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ, last .*, 1 digest\(s\)$/);
    process.stdout.write(`\n$ pullguard log --would-deny\n${report.stdout}\n`);

    const series =
      'pullguard_decisions_total{verdict="allow",policy_verdict="deny",mode="audit",rule="needs-signature",' +
      'code="NO_SIGNATURE"}';
    expect(metric(series)).toBe(1);
    expect(readFileSync(metricsFile, 'utf8')).toMatch(/^# TYPE pullguard_decisions_total counter$/m);
  });

  it(`${CONCURRENT} concurrent pulls: ${CONCURRENT} intact log lines and exact counters`, async () => {
    const allowSeries =
      'pullguard_decisions_total{verdict="allow",policy_verdict="allow",mode="audit",rule="app",code="OK"}';
    const before = {
      lines: logLines().length,
      allow: metric(allowSeries),
      count: metric('pullguard_decision_duration_seconds_count'),
    };
    const refs = Array.from({ length: CONCURRENT }, (_, i) => `${registry.host}/app:t${i}`);
    const errors = await Promise.all(refs.map((r) => pullError(cri, r)));
    expect(errors.filter((e) => e !== undefined).map((e) => e!.message)).toEqual([]);
    const lines = logLines().slice(before.lines);
    expect(lines).toHaveLength(CONCURRENT);
    const parsed = lines.map((l) => JSON.parse(l) as { name: string; verdict: string });
    expect(new Set(parsed.map((p) => p.name))).toEqual(new Set(refs));
    expect(metric(allowSeries) - before.allow, readdirSync(join(work, 'textfile')).join(' ')).toBe(CONCURRENT);
    expect(metric('pullguard_decision_duration_seconds_count') - before.count).toBe(CONCURRENT);
    expect(metric('pullguard_decision_duration_seconds_bucket{le="+Inf"}')).toBe(
      metric('pullguard_decision_duration_seconds_count'),
    );
    const total = readFileSync(metricsFile, 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('pullguard_decisions_total{'))
      .reduce((n, l) => n + Number(l.split(' ').pop()), 0);
    expect(total).toBe(metric('pullguard_decision_duration_seconds_count'));
  });
});

describe('doctor against this running containerd', () => {
  const doctor = (args: string[]) =>
    spawnSync(pullguardBinary(), ['doctor', '--containerd-config', ctd.configFile, '--policy', policyFile, ...args], {
      encoding: 'utf8',
      timeout: 90_000,
      env: { PATH: `${toolsBin()}:/usr/bin:/bin` },
    });

  it(
    'the socket answers with its version, the daemon runs the checked config, ' + 'and --pull-test shows the decision',
    () => {
      writePolicy({ mode: 'audit' });
      const r = doctor(['--pull-test', `${registry.host}/unsigned:v1`]);
      const lines = r.stdout.split('\n');
      expect(
        lines.filter((l) => l.startsWith('FAIL')),
        r.stdout,
      ).toEqual([]);
      expect(r.stdout).toMatch(
        new RegExp(
          `^ok {4}containerd answers on ${ctd.socket}: v?2\\.1\\.9\\S*( \\(\\w+\\))?, pid ${ctd.daemon.pid}$`,
          'm',
        ),
      );
      expect(lines).toContain('ok    the running containerd loaded its image-verifier plugin (bindir)');
      expect(lines).toContain(
        `ok    the running containerd (pid ${ctd.daemon.pid}) uses ${ctd.configFile}, ` +
          'unchanged since it started: the checks above describe it',
      );
      expect(lines).toContain(`ok    decision log ${logFile} is writable`);
      expect(r.stdout).toMatch(
        new RegExp(
          /^WARN {2}\d+ decision\(s\) in the last 7 days in .*\d+ would-deny: /.source +
            /enforce mode would have denied [1-9]\d* pull\(s\); /.source +
            /fix: read `pullguard log --would-deny --since 7d`/.source,
          'm',
        ),
      );
      expect(r.stdout).toMatch(
        new RegExp(
          /^WARN {2}policy .* is in audit mode: /.source +
            /.*fix: set mode: enforce once `pullguard log --would-deny --since 7d` shows nothing/.source,
          'm',
        ),
      );
      expect(r.stdout).toMatch(
        new RegExp(
          `^ok {4}pull test: ${registry.host.replace(/\./g, '\\.')}/unsigned:v1 pulled; ` +
            'pullguard would deny \\(audit mode, pulled\\): no cosign signature found ' +
            '.*\\(rule "needs-signature"\\) in \\d+ ms$',
          'm',
        ),
      );
    },
  );

  it('a config file other than the one the daemon runs: FAIL naming both', () => {
    const other = join(work, 'other.toml');
    writeFileSync(other, readFileSync(ctd.configFile, 'utf8'));
    const r = spawnSync(
      pullguardBinary(),
      ['doctor', '--containerd-config', other, '--address', ctd.socket, '--policy', policyFile],
      {
        encoding: 'utf8',
        timeout: 60_000,
        env: { PATH: `${toolsBin()}:/usr/bin:/bin` },
      },
    );
    expect(r.status).toBe(2);
    expect(r.stdout).toContain(
      `FAIL  the running containerd (pid ${ctd.daemon.pid}) was started with --config ${ctd.configFile}, ` +
        `but doctor checked ${other}`,
    );
  });

  it('a socket nothing listens on, given explicitly: FAIL', () => {
    const r = doctor(['--address', join(work, 'nothing.sock')]);
    expect(r.status).toBe(2);
    expect(r.stdout).toMatch(/^FAIL {2}containerd does not answer on .*nothing\.sock \(no such socket\)/m);
  });
});

describe('a log directory that cannot be written leaves every verdict as it was', () => {
  const verdicts = async () => ({
    app: await pullError(cri, `${registry.host}/app:v1`),
    blocked: (await pullError(cri, img.blocked.ref))?.message.match(/denied .*/)?.[0],
  });

  it('full (a 64 KiB tmpfs) and read-only directories: same CRI outcomes, one warning on stderr', async () => {
    writePolicy({ mode: 'enforce' });
    const baseline = await verdicts();
    expect(baseline.app).toBeUndefined();
    expect(baseline.blocked).toMatch(/^denied .*blocked by the platform team \(rule "blocked"\)/);

    const full = join(work, 'full');
    mountTmpfs(full, '64k');
    // Fill it up: the next append gets ENOSPC.
    spawnSync('dd', ['if=/dev/zero', `of=${join(full, 'filler')}`, 'bs=4k'], { timeout: 10_000 });
    const ro = join(work, 'ro');
    mountTmpfs(ro, '64k', true);

    for (const dir of [full, ro]) {
      writePolicy({ mode: 'enforce', log: join(dir, 'decisions.jsonl'), metrics: join(dir, 'pullguard.prom') });
      expect(await verdicts()).toEqual(baseline);
      // The binary directly, as containerd runs it: same stdout and exit code, one warning line.
      const r = runVerifier(img.blocked.ref, img.blocked, policyFile);
      expect(r.status).toBe(1);
      expect(r.stdout).toMatch(/^denied .*blocked by the platform team \(rule "blocked"\)\n$/);
      const warnings = r.stderr.split('\n').filter((l) => l.startsWith('pullguard: warning:'));
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatch(dir === ro ? /EROFS/ : /ENOSPC/);
    }
  });

  it('a metrics lock left by a killed pull delays no pull and loses no count', async () => {
    writePolicy({ mode: 'enforce' });
    const series =
      'pullguard_decisions_total{verdict="allow",policy_verdict="allow",mode="enforce",rule="app",code="OK"}';
    const before = metric(series);
    mkdirSync(`${metricsFile}.lock`);
    const run = () => runVerifier(`${registry.host}/app:v1`, img.app, policyFile);
    const held = run();
    expect(held.status).toBe(0);
    expect(held.stdout).toMatch(/^allowed /);
    expect(held.stderr).not.toContain('warning');
    expect(metric(series)).toBe(before);
    // The holder "died": its lock goes stale, and the next pull breaks it and folds both observations.
    const old = (Date.now() - 60_000) / 1000;
    utimesSync(`${metricsFile}.lock`, old, old);
    expect(run().status).toBe(0);
    expect(metric(series)).toBe(before + 2);
  });
});

describe('journald (log.journal)', () => {
  // A journal namespace of our own (journald@NAME), so the machine's journal is not touched.
  const ns = `pullguard-e2e-${process.pid}`;
  let journald: ReturnType<typeof spawn> | undefined;
  const journalBin = ['/lib/systemd/systemd-journald', '/usr/lib/systemd/systemd-journald'].find((p) => existsSync(p));
  const cleanup = () => {
    rmSync(`/run/systemd/journal.${ns}`, { recursive: true, force: true });
    for (const root of ['/var/log/journal', '/run/log/journal']) {
      if (!existsSync(root)) continue;
      for (const d of readdirSync(root))
        if (d.endsWith(`.${ns}`)) rmSync(join(root, d), { recursive: true, force: true });
    }
  };
  afterAll(() => {
    if (journald?.pid) process.kill(journald.pid, 'SIGTERM');
    cleanup();
  });

  it.runIf(journalBin !== undefined)(
    'a decision lands in `journalctl -t pullguard`, warning priority for a deny',
    async () => {
      journald = spawn(journalBin!, [ns], { stdio: 'ignore' });
      const socketPath = `/run/systemd/journal.${ns}/stdout`;
      await waitFor('the journal namespace socket', () => existsSync(socketPath), 10_000);
      writeFileSync(
        join(work, 'journal.yaml'),
        `version: 1\nlog: {file: false, journal: ${ns}}\nrules:\n` +
          `  - {name: blocked, match: ${registry.host}/blocked, action: deny}\n`,
      );
      const r = runVerifier(img.blocked.ref, img.blocked, join(work, 'journal.yaml'));
      expect(r.status).toBe(1);
      expect(r.stderr).not.toContain('warning');
      let out = '';
      await waitFor('the decision in the journal', () => {
        out = spawnSync('journalctl', [`--namespace=${ns}`, '-t', 'pullguard', '--no-pager', '-o', 'verbose'], {
          encoding: 'utf8',
          timeout: 10_000,
        }).stdout;
        return out.includes('SYSLOG_IDENTIFIER=pullguard');
      });
      expect(out).toContain('PRIORITY=4');
      expect(out).toContain(
        `MESSAGE=denied ${img.blocked.ref}@${img.blocked.digest}: denied by policy (rule "blocked") [POLICY_DENIED]`,
      );
    },
  );
});

/**
 * The commands for people (`pullguard verify`, `pullguard policy check`), run as users run them: the
 * shipped single executable (dist/pullguard) in an empty environment, against a real docker-registry
 * 2.8.3 holding images signed by the real cosign 3.1.1 (legacy `.sig` tag and v3 bundle) and the real
 * notation 1.3.2, with a policy file on disk. Every expected value (digests of images and of signature
 * manifests, certificate thumbprints) is read from the registry or from the signing material, not
 * copied from pullguard's own output.
 */
import { execFile } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { cosignOk, cosignSignKey } from '../helpers/cosign.js';
import { notationSandbox, RegistryWriter, type NotationSandbox } from '../helpers/notation.js';
import { pushTestImage, type PushedImage } from '../helpers/oci.js';
import { startRegistry, type Registry } from '../helpers/registry.js';
import { pullguardBinary } from '../helpers/tools.js';

const sha = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

let registry: Registry;
let writer: RegistryWriter;
let work: string;
let cosignHome: string;
let nt: NotationSandbox;
let policyFile: string;
const img: Record<
  'legacy' | 'bundle' | 'forged' | 'unsigned' | 'notation' | 'ntStranger' | 'open' | 'blocked' | 'elsewhere',
  PushedImage
> = {} as never;
let host: string;

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly lines: string[];
}

/** dist/pullguard with an empty environment (no PATH, no HOME, no PULLGUARD_POLICY unless given). */
function pg(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      pullguardBinary(),
      args,
      { env, encoding: 'utf8', timeout: 30_000, killSignal: 'SIGKILL' },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
        resolve({ code, stdout, stderr, lines: stdout.split('\n').filter((l) => l.length > 0) });
      },
    );
  });
}

const verify = (ref: string, ...flags: string[]) => pg(['verify', ...flags, '--policy', policyFile, ref]);

/** The digest of the manifest `ref` (tag or digest) names, from the registry's own bytes. */
async function manifestDigest(repo: string, ref: string): Promise<string> {
  const m = await writer.getManifest(repo, ref);
  if (!m) throw new Error(`${repo}:${ref} not in the registry`);
  return sha(m.bytes);
}

/** The referrers-tag index entries (`sha256-<hex>`) of `digest`: what cosign bundles and notation list there. */
async function referrersTag(repo: string, digest: string): Promise<{ digest: string; artifactType?: string }[]> {
  const idx = await writer.getManifest(repo, digest.replace(':', '-'));
  if (!idx) throw new Error(`no referrers tag for ${repo}@${digest}`);
  return idx.json.manifests;
}

beforeAll(async () => {
  registry = await startRegistry();
  host = registry.host;
  writer = new RegistryWriter(registry.url);
  work = mkdtempSync(join(tmpdir(), 'pg-cli-'));
  cosignHome = join(work, 'cosign-home');

  const push = (repo: string, seed: string) => pushTestImage(host, repo, 'v1', `cli-${seed}-${Date.now()}`);
  img.legacy = await push('cosign/legacy', 'legacy');
  img.bundle = await push('cosign/bundle', 'bundle');
  img.forged = await push('cosign/forged', 'forged');
  img.unsigned = await push('cosign/unsigned', 'unsigned');
  img.notation = await push('notation/signed', 'notation');
  img.ntStranger = await push('notation/stranger', 'nt-stranger');
  img.open = await push('open/tool', 'open');
  img.blocked = await push('blocked/tool', 'blocked');
  img.elsewhere = await push('elsewhere/tool', 'elsewhere');

  // cosign: the release key the policy trusts, and a stranger's key. Offline signing (no Rekor).
  const release = join(work, 'release');
  const stranger = join(work, 'stranger');
  await cosignOk(cosignHome, ['generate-key-pair', '--output-key-prefix', release]);
  await cosignOk(cosignHome, ['generate-key-pair', '--output-key-prefix', stranger]);
  const sign = (key: string, image: PushedImage, bundle: boolean) =>
    cosignSignKey(cosignHome, `${key}.key`, `${image.ref.replace(/:v1$/, '')}@${image.digest}`, { bundle });
  await sign(release, img.legacy, false);
  await sign(release, img.bundle, true);
  await sign(stranger, img.forged, false);
  await sign(stranger, img.forged, true);

  // notation: a generate-test certificate (it lands in trust store ca:cli.example) and a stranger's.
  nt = notationSandbox();
  for (const name of ['cli.example', 'stranger.example']) {
    const r = await nt.run(['cert', 'generate-test', name]);
    if (r.status !== 0) throw new Error(`notation cert generate-test ${name}: ${r.output}`);
  }
  nt.writeTrustPolicy([
    {
      name: 'cli',
      registryScopes: ['*'],
      signatureVerification: { level: 'strict' },
      trustStores: ['ca:cli.example'],
      trustedIdentities: ['*'],
    },
  ]);
  for (const [key, image] of [
    ['cli.example', img.notation],
    ['stranger.example', img.ntStranger],
  ] as const) {
    await nt.sign(`${image.ref.replace(/:v1$/, '')}@${image.digest}`, key);
  }

  // A containerd config with a hosts.toml directory that is empty: loopback must work on plain http by itself.
  mkdirSync(join(work, 'certs.d'));
  writeFileSync(
    join(work, 'containerd.toml'),
    `version = 3\n[plugins."io.containerd.cri.v1.images".registry]\n` +
      `  config_path = ${JSON.stringify(join(work, 'certs.d'))}\n`,
  );

  policyFile = join(work, 'policy.yaml');
  writeFileSync(
    policyFile,
    [
      'version: 1',
      'mode: enforce',
      'default: deny',
      'rules:',
      '  - name: cosign-signed',
      `    match: ${host}/cosign/*`,
      '    action: verify',
      '    authorities:',
      '      - name: release-key',
      `        cosign: {keys: [${release}.pub]}`,
      '  - name: notation-signed',
      `    match: ${host}/notation/*`,
      '    action: verify',
      '    authorities:',
      '      - name: corp',
      `        notation: {config: ${nt.configDir}}`,
      '  - name: open',
      `    match: ${host}/open/**`,
      '    action: allow',
      '  - name: blocked',
      `    match: ${host}/blocked/*`,
      '    action: deny',
      '    message: blocked/ images are not for this cluster',
      'registry:',
      `  containerdConfig: ${join(work, 'containerd.toml')}`,
      '',
    ].join('\n'),
  );
}, 180_000);

afterAll(async () => {
  await registry?.stop();
  nt?.dispose();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('pullguard verify <tag ref>: resolves the tag, prints the decision, the rule and the pattern', () => {
  test('cosign legacy signature by the trusted key: ALLOW, exit 0', async () => {
    const r = await verify(img.legacy.ref);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    // The tag is resolved to exactly the digest the registry holds for it.
    expect(await manifestDigest('cosign/legacy', 'v1')).toBe(img.legacy.digest);
    expect(r.lines).toEqual([
      `ALLOW ${host}/cosign/legacy@${img.legacy.digest}`,
      '  reason: signature verified by release-key',
      `  rule:   "cosign-signed" (verify), matched by pattern ${host}/cosign/*`,
      `  policy: ${policyFile} (mode enforce)`,
    ]);
  });

  test('a digest reference is decided without resolving a tag', async () => {
    const r = await verify(`${host}/cosign/bundle@${img.bundle.digest}`);
    expect(r.code, r.stderr).toBe(0);
    expect(r.lines[0]).toBe(`ALLOW ${host}/cosign/bundle@${img.bundle.digest}`);
  });

  test('allow rule (no signature needed) and deny rule, with their patterns', async () => {
    const open = await verify(img.open.ref);
    expect(open.code).toBe(0);
    expect(open.lines[0]).toBe(`ALLOW ${host}/open/tool@${img.open.digest}`);
    expect(open.lines).toContain(`  rule:   "open" (allow), matched by pattern ${host}/open/**`);

    const blocked = await verify(img.blocked.ref);
    expect(blocked.code).toBe(1);
    expect(blocked.lines[0]).toBe(`DENY ${host}/blocked/tool@${img.blocked.digest}`);
    expect(blocked.lines).toContain('  reason: blocked/ images are not for this cluster');
    expect(blocked.lines).toContain(`  rule:   "blocked" (deny), matched by pattern ${host}/blocked/*`);
  });

  test('no rule matches: the policy default (deny), exit 1', async () => {
    const r = await verify(img.elsewhere.ref);
    expect(r.code).toBe(1);
    expect(r.lines[0]).toBe(`DENY ${host}/elsewhere/tool@${img.elsewhere.digest}`);
    expect(r.lines).toContain('  rule:   none matched; policy default is deny');
  });

  test('unsigned image under a verify rule: DENY, exit 1', async () => {
    const r = await verify(img.unsigned.ref);
    expect(r.code).toBe(1);
    expect(r.lines[0]).toBe(`DENY ${host}/cosign/unsigned@${img.unsigned.digest}`);
    expect(r.lines[1]).toMatch(/^ {2}reason: no cosign signature found for /);
    expect(r.lines).toContain(`  rule:   "cosign-signed" (verify), matched by pattern ${host}/cosign/*`);
  });

  test('an unknown tag: a clear one-line error naming the reference, no decision, non-zero exit', async () => {
    const r = await verify(`${host}/cosign/legacy:no-such-tag`);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(
      new RegExp(
        `^pullguard: ${host.replace(/\./g, '\\.')}/cosign/legacy:no-such-tag not found .*\\[REGISTRY_NOT_FOUND\\]\\n$`,
      ),
    );
    // An unknown repository too.
    const repo = await verify(`${host}/nobody/here:v1`);
    expect(repo.code).toBe(1);
    expect(repo.stderr).toMatch(/nobody\/here:v1 not found/);
  });
});

describe('pullguard verify --explain: every signature found and every check', () => {
  test('cosign legacy: found via the .sig tag, key signer hint, each check', async () => {
    const sigManifest = await manifestDigest('cosign/legacy', `${img.legacy.digest.replace(':', '-')}.sig`);
    const r = await verify(img.legacy.ref, '--explain');
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const out = r.stdout;
    expect(out).toContain('  found 1 signature artifact(s):\n');
    expect(out).toContain(
      `    cosign-legacy ${sigManifest} via cosign-sig-tag in ${host}/cosign/legacy (signer hint: key)\n`,
    );
    expect(out).toMatch(
      new RegExp(
        / {2}authority release-key \(cosign\): satisfied: /.source +
          /verified cosign-legacy signature by ECDSA P-256 key .*release\.pub\n/.source,
      ),
    );
    expect(out).toMatch(
      new RegExp(
        ` {4}valid {3}cosign-legacy ${sigManifest}#0 via cosign-sig-tag in ` +
          `${host.replace(/\./g, '\\.')}/cosign/legacy signer ECDSA P-256 key .*release\\.pub: valid\\n`,
      ),
    );
    expect(out).toContain('      pass format [enforced]: cosign simple-signing payload\n');
    expect(out).toContain(`      pass digest [enforced]: signed digest is ${img.legacy.digest.slice(0, 19)}`);
    expect(out).toContain('      skip tlog [skipped]: not required by policy\n');
    expect(out).toMatch(/ {6}pass signature \[enforced\]: verified with the ECDSA P-256 key .*release\.pub\n/);
    expect(out).toContain(
      '      pass signed-identity [enforced]: matchRepository: ' +
        `signed repository ${host}/cosign/legacy is the image's\n`,
    );
    // Only the tags were used: docker-registry has no referrers API, and explain says so.
    expect(out).toContain(
      `  note:   ${host} has no referrers API for ${host}/cosign/legacy; used the referrers tag schema\n`,
    );
  });

  test('cosign v3 bundle: found via the referrers tag, each check', async () => {
    const [entry, ...more] = await referrersTag('cosign/bundle', img.bundle.digest);
    expect(more).toHaveLength(0);
    const r = await verify(img.bundle.ref, '--explain');
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const out = r.stdout;
    expect(out).toContain('  found 1 signature artifact(s):\n');
    expect(out).toMatch(
      new RegExp(
        `\\n {4}cosign-bundle ${entry!.digest} via referrers-tag in ${host.replace(/\./g, '\\.')}/cosign/bundle` +
          '( \\(signer hint: [^)]+\\))?\\n',
      ),
    );
    expect(out).toMatch(
      / {6}pass format \[enforced\]: sigstore bundle v0\.3, DSSE in-toto statement, predicate cosign\/sign\/v1\n/,
    );
    expect(out).toMatch(/ {6}pass signature \[enforced\]: verified with the ECDSA P-256 key .*release\.pub\n/);
    expect(out).toContain(`      pass digest [enforced]: signed digest is ${img.bundle.digest.slice(0, 19)}`);
    expect(out).toMatch(/ {6}skip signed-identity \[skipped\]: a bundle names no repository/);
  });

  test('cosign, untrusted key in both formats: both found, each fails its signature check; DENY exit 1', async () => {
    const sigManifest = await manifestDigest('cosign/forged', `${img.forged.digest.replace(':', '-')}.sig`);
    const [bundle] = await referrersTag('cosign/forged', img.forged.digest);
    const r = await verify(img.forged.ref, '--explain');
    expect(r.code).toBe(1);
    const out = r.stdout;
    expect(r.lines[0]).toBe(`DENY ${host}/cosign/forged@${img.forged.digest}`);
    expect(r.lines[1]).toMatch(
      new RegExp(
        /^ {2}reason: signature does not verify with the trusted ECDSA P-256 key .*release\.pub: /.source +
          /signed by another key, or altered \(2 signatures, none valid\)$/.source,
      ),
    );
    expect(out).toContain('  found 2 signature artifact(s):\n');
    expect(out).toContain(
      `    cosign-legacy ${sigManifest} via cosign-sig-tag in ${host}/cosign/forged (signer hint: key)\n`,
    );
    expect(out).toMatch(new RegExp(`\\n {4}cosign-bundle ${bundle!.digest} via referrers-tag in `));
    expect(out).toContain('  authority release-key (cosign): NOT satisfied: ');
    const invalid = r.lines.filter((l) => l.startsWith('    invalid '));
    expect(invalid).toHaveLength(2);
    expect(
      r.lines.filter((l) => /^ {6}fail signature \[enforced\]: signature does not verify with the trusted/.test(l)),
    ).toHaveLength(2);
    // The checks before the signature passed: the format is right and the signed digest is this image's.
    expect(r.lines.filter((l) => l.startsWith('      pass digest [enforced]'))).toHaveLength(2);
  });

  test('unsigned: zero signatures found, and where it looked', async () => {
    const r = await verify(img.unsigned.ref, '--explain');
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('  found 0 signature artifact(s); looked at:\n');
    const hex = img.unsigned.digest.slice('sha256:'.length);
    expect(r.stdout).toContain(`    tag ${host}/cosign/unsigned:sha256-${hex}.sig on ${host}\n`);
    expect(r.stdout).toMatch(
      new RegExp(`    referrers API http://${host.replace(/[.]/g, '\\.')}/v2/cosign/unsigned/referrers/sha256:${hex}`),
    );
    expect(r.stdout).toMatch(/ {2}authority release-key \(cosign\): NOT satisfied: no cosign signature found for /);
  });

  test('--explain --json: one JSON document for scripts', async () => {
    const r = await verify(img.unsigned.ref, '--explain', '--json');
    expect(r.code).toBe(1);
    const j = JSON.parse(r.stdout) as Record<string, any>;
    expect(j).toMatchObject({
      verdict: 'deny',
      policyVerdict: 'deny',
      code: 'NO_SIGNATURE',
      exitCode: 1,
      rule: { name: 'cosign-signed', action: 'verify' },
    });
    expect(j.discovery[0].artifacts).toEqual([]);
    expect(j.discovery[0].tried.length).toBeGreaterThan(0);
    expect(j.authorities[0]).toMatchObject({ authority: 'release-key', satisfied: false });
  });

  test('--offline: the rule and authorities that apply, with no registry at all', async () => {
    const ref = `${host}/cosign/unsigned@${img.unsigned.digest}`;
    const env = { PULLGUARD_POLICY: policyFile, HTTPS_PROXY: 'http://127.0.0.1:9', HTTP_PROXY: 'http://127.0.0.1:9' };
    // A host that does not resolve: nothing is looked up, the default decides.
    const r = await pg(['verify', '--offline', `nowhere.invalid/x@${img.unsigned.digest}`], env);
    expect(r.code, r.stderr).toBe(1);
    expect(r.lines.slice(0, 3)).toEqual([
      `DENY nowhere.invalid/x@${img.unsigned.digest} (offline: the policy alone, no registry)`,
      '  rule:   none matched; policy default is deny',
      '  effect: denied: no rule matches; default is deny',
    ]);
    const v = await pg(['verify', '--offline', ref], env);
    expect(v.code, v.stderr).toBe(0);
    expect(v.lines[0]).toBe(`VERIFY ${ref} (offline: the policy alone, no registry)`);
    expect(v.lines[1]).toBe(`  rule:   "cosign-signed" (verify), matched by pattern ${host}/cosign/*`);
    expect(v.lines[2]).toBe('  effect: decided by signatures: each of cosign:release-key');
    expect(v.lines.some((l) => /^ {2}authority cosign:release-key \(.*keys: 1[,)]/.test(l))).toBe(true);
    const blocked = await pg(['verify', '--offline', '--json', `${host}/blocked/x@${img.unsigned.digest}`], env);
    expect(blocked.code).toBe(1);
    expect(JSON.parse(blocked.stdout)).toMatchObject({ outcome: 'deny', rule: { name: 'blocked', action: 'deny' } });
  });

  test('notation: found via the referrers tag, certificate thumbprint as signer hint, each check', async () => {
    const entries = await referrersTag('notation/signed', img.notation.digest);
    const sig = entries.find((e) => e.artifactType === 'application/vnd.cncf.notary.signature');
    expect(sig).toBeDefined();
    const cert = new X509Certificate(readFileSync(join(nt.configDir, 'localkeys', 'cli.example.crt')));
    const thumbprint = cert.fingerprint256.replace(/:/g, '').toLowerCase();
    const r = await verify(img.notation.ref, '--explain');
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const out = r.stdout;
    expect(r.lines[0]).toBe(`ALLOW ${host}/notation/signed@${img.notation.digest}`);
    expect(out).toContain(`  rule:   "notation-signed" (verify), matched by pattern ${host}/notation/*\n`);
    expect(out).toContain('  found 1 signature artifact(s):\n');
    expect(out).toContain(
      `    notation ${sig!.digest} via referrers-tag in ${host}/notation/signed (signer hint: ` +
        `certificate sha256:${thumbprint})\n`,
    );
    expect(out).toMatch(
      new RegExp(
        / {2}authority corp \(notation\): satisfied: notation signature sha256:[0-9a-f]{12}… verified /.source +
          /\(signed by C=US, ST=WA, L=Seattle, O=Notary, CN=cli\.example\) under statement "cli" \(strict\)\n/.source,
      ),
    );
    expect(out).toContain(
      `    valid   notation ${sig!.digest} via referrers-tag in ${host}/notation/signed signer C=US, ` +
        'ST=WA, L=Seattle, O=Notary, CN=cli.example: ',
    );
    for (const check of ['integrity', 'authenticity', 'expiry', 'authenticTimestamp', 'revocation']) {
      expect(out).toMatch(new RegExp(`\\n {6}pass ${check} \\[enforced\\]: `));
    }
    expect(out).toContain(
      `      pass integrity [enforced]: JWS PS256 signature over ${img.notation.digest.slice(0, 19)}`,
    );
    // The notation rule needs no cosign signatures: the .sig tag is not even asked for.
    expect(out).not.toContain('cosign-sig-tag');
  });

  test(
    'notation, certificate not in the trust store: authenticity fails from the thumbprints alone; ' + 'DENY exit 1',
    async () => {
      const r = await verify(img.ntStranger.ref, '--explain');
      expect(r.code).toBe(1);
      expect(r.lines[0]).toBe(`DENY ${host}/notation/stranger@${img.ntStranger.digest}`);
      expect(r.stdout).toContain('  found 1 signature artifact(s):\n');
      expect(r.stdout).toContain('  authority corp (notation): NOT satisfied: ');
      expect(r.stdout).toMatch(/\n {4}invalid notation sha256:[0-9a-f]{64} via referrers-tag /);
      // The manifest's thumbprint annotation names no trusted certificate: the envelope is not even downloaded.
      expect(r.stdout).toMatch(/\n {6}skip integrity \[enforced\]: not evaluated: skipped by thumbprint\n/);
      expect(r.stdout).toMatch(
        /\n {6}fail authenticity \[enforced\]: no certificate of its chain .* is in the trust store/,
      );
      for (const check of ['expiry', 'authenticTimestamp', 'revocation']) {
        expect(r.stdout).toMatch(
          new RegExp(`\\n {6}skip ${check} \\[enforced\\]: not evaluated: an earlier enforced check failed\\n`),
        );
      }
    },
  );
});

describe('exit code 2: configuration errors', () => {
  test('verify with a missing policy file', async () => {
    const missing = join(work, 'missing.yaml');
    const r = await pg(['verify', '--policy', missing, img.legacy.ref]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(`pullguard: no policy at ${missing} [POLICY_MISSING]\n`);
  });

  test('verify with PULLGUARD_POLICY pointing at an invalid policy', async () => {
    const bad = join(work, 'verify-bad.yaml');
    writeFileSync(bad, 'version: 1\ndefault: maybe\n');
    const r = await pg(['verify', img.legacy.ref], { PULLGUARD_POLICY: bad });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(new RegExp(`^pullguard: invalid policy ${bad}:2: default: `));
  });

  test('verify with registry.containerdConfig naming a file that does not exist', async () => {
    const p = join(work, 'no-containerd.yaml');
    writeFileSync(
      p,
      `version: 1\nrules:\n  - {name: open, match: ${host}/open/**, action: allow}\nregistry:\n` +
        `  containerdConfig: ${join(work, 'nope.toml')}\n`,
    );
    const r = await pg(['verify', '--policy', p, img.open.ref]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      /cannot read containerd config .*nope\.toml: ENOENT; fix registry\.containerdConfig in the policy/,
    );
  });
});

describe('pullguard policy check', () => {
  test('a valid policy: exit 0, a summary of every rule', async () => {
    const r = await pg(['policy', 'check', policyFile]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.lines).toEqual([
      `policy ${policyFile} is valid`,
      '  mode enforce, default deny, timeout 8s, 4 rule(s)',
      '  decision log /var/log/pullguard/decisions.jsonl (rotated past 10 MiB, 3 kept); metrics off',
      `  - cosign-signed: verify ${host}/cosign/* [all of cosign:release-key]`,
      `  - notation-signed: verify ${host}/notation/* [all of notation:corp]`,
      `  - open: allow ${host}/open/**`,
      `  - blocked: deny ${host}/blocked/*`,
    ]);
  });

  test('registry.tokenRealmCache is named with its directory and lifetime', async () => {
    const file = join(work, 'policy-realms.yaml');
    writeFileSync(file, 'version: 1\nregistry:\n  tokenRealmCache: {dir: /run/pg-realms, ttl: 12h}\n');
    const r = await pg(['policy', 'check', file]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.lines).toContain('  token realms remembered in /run/pg-realms for 12h');
  });

  test('the file from PULLGUARD_POLICY when no file is given', async () => {
    const r = await pg(['policy', 'check'], { PULLGUARD_POLICY: policyFile });
    expect(r.code).toBe(0);
    expect(r.lines[0]).toBe(`policy ${policyFile} is valid`);
  });

  const cases: [string, string, RegExp][] = [
    [
      'a bad action (file:line and key)',
      'version: 1\ndefault: deny\nrules:\n  - name: a\n    match: x.io/a\n    action: allow\n' +
        '  - name: b\n    match: x.io/b\n    action: maybe\n',
      /:9: rules\[1\]\.action: must be one of "allow", "deny", "verify", got "maybe" \[POLICY_INVALID\]$/,
    ],
    [
      'a cosign key file that does not exist (checked at load)',
      'version: 1\nrules:\n  - name: a\n    match: x.io/a\n    action: verify\n    authorities:\n' +
        '      - name: k\n        cosign: {keys: [/nonexistent/k.pub]}\n',
      new RegExp(
        /:8: rules\[0\]\.authorities\[0\]\.cosign: /.source +
          /cannot read key \/nonexistent\/k\.pub: no such file \[POLICY_INVALID\]$/.source,
      ),
    ],
    [
      'an unknown key',
      'version: 1\nrules:\n  - name: a\n    match: x.io/a\n    action: allow\n    colour: blue\n',
      /:\d+: rules\[0\].*colour/,
    ],
    [
      'a YAML syntax error',
      'version: 1\nrules:\n  - name: a\n    match: [x.io/a\n',
      /^pullguard: invalid policy .*bad-4\.yaml:\d+: /,
    ],
  ];
  cases.forEach(([name, text, expected], i) => {
    test(`invalid: ${name}: exit 2, file:line in the error`, async () => {
      const file = join(work, `bad-${i + 1}.yaml`);
      writeFileSync(file, text);
      const r = await pg(['policy', 'check', file]);
      expect(r.code).toBe(2);
      expect(r.stdout).toBe('');
      const line = r.stderr.trimEnd();
      expect(line.split('\n')).toHaveLength(1);
      expect(line.startsWith(`pullguard: invalid policy ${file}:`)).toBe(true);
      expect(line).toMatch(expected);
    });
  });

  test('several problems: every one on its own line, at the offending key, with what was meant', async () => {
    const file = join(work, 'typos.yaml');
    writeFileSync(
      file,
      'version: 1\nmode: audti\nrules:\n  - name: a\n    match: x.io/a\n    action: verify\n' +
        '    authorities:\n      - cosign:\n          keyless: true\n          identities:\n' +
        '            - {certificate-oidc-issuer: https://a.example, subject: me}\n  - name: b\n' +
        '    match: x.io/b\n    action: allow\n    mesage: hi\n',
    );
    const r = await pg(['policy', 'check', file]);
    expect(r.code).toBe(2);
    expect(r.stderr.trimEnd().split('\n')).toEqual([
      `pullguard: policy ${file} is invalid: 4 problems [POLICY_INVALID]`,
      `${file}:2:1: mode: must be one of "enforce", "audit", got "audti"`,
      `${file}:8:9: rules[0].authorities[0].cosign: keyless identity #1 needs issuer or issuerRegexp ` +
        '(the OIDC provider)',
      `${file}:11:16: rules[0].authorities[0].cosign.identities[0]: ` +
        `unknown key "certificate-oidc-issuer"; that is cosign's name; pullguard's is \`issuer\` ` +
        `(under \`identities:\`)`,
      `${file}:15:5: rules[1]: unknown key "mesage"; did you mean \`message\`?`,
    ]);
  });

  test('a trailing comma in a JSON policy: a JSON syntax error, not "version: required"', async () => {
    const file = join(work, 'policy.json');
    writeFileSync(file, '{\n  "version": 1,\n  "rules": [],\n}\n');
    const r = await pg(['policy', 'check', file]);
    expect(r.code).toBe(2);
    expect(r.stderr.trimEnd()).toBe(
      `pullguard: invalid policy ${file}:4: JSON syntax error at line 4, column 1: ` +
        'Expected double-quoted property name [POLICY_INVALID]',
    );
  });

  test('a missing file: exit 2', async () => {
    const r = await pg(['policy', 'check', join(work, 'nothing.yaml')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/no policy at .*nothing\.yaml \[POLICY_MISSING\]/);
  });
});

/**
 * Real public-good keyless signatures (test/fixtures/sigstore-public, with their provenance and
 * licenses), verified offline against the trusted root built into pullguard.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import { compileCosignSpec, type CosignRawSpec } from '../../policy/authorities/cosign.js';
import { memoryArtifact, requireSigstoreFixtures, subjectOf, verifyWith } from '../../../test/helpers/cosign.js';
import { ANN_CERTIFICATE, ANN_CHAIN, ANN_REKOR_BUNDLE, ANN_SIGNATURE, BUNDLE_V03, SIMPLE_SIGNING } from './formats.js';
import { embeddedTrustedRoot } from './trust.js';
import { TrustedRoot } from '@sigstore/protobuf-specs';

let FIX = '';
beforeAll(() => {
  FIX = requireSigstoreFixtures();
});

const read = (dir: string, f: string) => readFileSync(join(FIX, dir, f));

interface Legacy {
  payload: Buffer;
  annotations: Record<string, string>;
}

function legacy(dir: string): Legacy {
  return {
    payload: read(dir, 'payload.json'),
    annotations: {
      [ANN_SIGNATURE]: read(dir, 'signature.b64').toString().trim(),
      [ANN_CERTIFICATE]: read(dir, 'cert.pem').toString(),
      ...(dir === 'cosign-legacy-2021-pre-ct' ? {} : { [ANN_CHAIN]: read(dir, 'chain.pem').toString() }),
      [ANN_REKOR_BUNDLE]: read(dir, 'rekor-bundle.json').toString().trim(),
    },
  };
}

const artifactOf = (l: Legacy) =>
  memoryArtifact({
    class: 'cosign-legacy',
    layers: [{ mediaType: SIMPLE_SIGNING, blob: l.payload, annotations: l.annotations }],
  });
const keyless = (identities: CosignRawSpec['identities'], extra: Partial<CosignRawSpec> = {}) =>
  compileCosignSpec({ keyless: true, identities, signedIdentity: { type: 'matchRepository' }, ...extra });

const CI2023 = 'cosign-legacy-containers-image-2023';
const CI2023_REPO = '192.168.64.2:5000/cosign-signed/fulcio-rekor-1';
const CI2023_DIGEST = 'sha256:0489474da8ea22426ece86ace6c1c0026ab2fd3cdfbbd62b7e94650266c37d9a';
const MITR = [{ email: 'mitr@redhat.com', issuer: 'https://github.com/login/oauth' }];

describe('embedded trusted root', () => {
  test('is byte-for-byte the public-good trusted_root.json', () => {
    const shipped = TrustedRoot.fromJSON(JSON.parse(read('trusted-root', 'trusted_root.json').toString()));
    expect(TrustedRoot.toJSON(embeddedTrustedRoot())).toEqual(TrustedRoot.toJSON(shipped));
  });
});

describe('legacy keyless signatures, offline', () => {
  test('containers/image 2023: valid for its digest, identity and issuer (SET + SCT + chain at log time)', async () => {
    const r = await verifyWith(keyless(MITR), subjectOf(CI2023_REPO, CI2023_DIGEST), [artifactOf(legacy(CI2023))]);
    expect(r.reason).toMatch(/verified cosign-legacy signature by mitr@redhat.com/);
    expect(r.satisfied).toBe(true);
    const checks = r.signatures[0]!.checks.map((c) => `${c.check}:${c.result}`);
    expect(checks).toEqual([
      'format:pass',
      'digest:pass',
      'certificate-chain:pass',
      'sct:pass',
      'tlog:pass',
      'signature:pass',
      'certificate-identity:pass',
      'signed-identity:pass',
    ]);
  });

  test('an identity regexp is anchored and matches', async () => {
    const ok = await verifyWith(
      keyless([{ emailRegexp: '.*@redhat\\.com', issuer: 'https://github.com/login/oauth' }]),
      subjectOf(CI2023_REPO, CI2023_DIGEST),
      [artifactOf(legacy(CI2023))],
    );
    expect(ok.satisfied).toBe(true);
    const partial = await verifyWith(
      keyless([{ emailRegexp: 'mitr', issuer: 'https://github.com/login/oauth' }]),
      subjectOf(CI2023_REPO, CI2023_DIGEST),
      [artifactOf(legacy(CI2023))],
    );
    expect(partial.satisfied).toBe(false);
  });

  test.each([
    [
      'another issuer',
      [{ email: 'mitr@redhat.com', issuer: 'https://token.actions.githubusercontent.com' }],
      /matches none of the 1 allowed identities/,
    ],
    ['another email', [{ email: 'someone@redhat.com', issuer: 'https://github.com/login/oauth' }], /matches none/],
  ])('denies %s', async (_, ids, reason) => {
    const r = await verifyWith(keyless(ids), subjectOf(CI2023_REPO, CI2023_DIGEST), [artifactOf(legacy(CI2023))]);
    expect(r.satisfied).toBe(false);
    expect(r.code).toBe('SIGNATURE_UNTRUSTED');
    expect(r.reason).toMatch(reason);
  });

  test('denies the modified image (payload names another digest)', async () => {
    const r = await verifyWith(
      keyless(MITR),
      subjectOf(CI2023_REPO, 'sha256:d9dcafdb480aa7c475e91737b96925e45844213dcb0290b4a90017459121f71f'),
      [artifactOf(legacy(CI2023))],
    );
    expect(r.satisfied).toBe(false);
    expect(r.reason).toMatch(/signed for sha256:0489474da8ea\u2026, not the pulled sha256:d9dcafdb480a\u2026/);
  });

  test('denies when the signed repository is not the pulled one (signedIdentity)', async () => {
    const r = await verifyWith(keyless(MITR), subjectOf('registry.example/other', CI2023_DIGEST), [
      artifactOf(legacy(CI2023)),
    ]);
    expect(r.satisfied).toBe(false);
    expect(r.reason).toMatch(
      new RegExp(
        /signed for repository 192.168.64.2:5000\/cosign-signed\/fulcio-rekor-1, /.source +
          /but the image is registry.example\/other/.source,
      ),
    );
  });

  test(
    'default containers-policy identity (matchRepoDigestOrExact) ' + 'refuses a repository-only docker-reference',
    async () => {
      const r = await verifyWith(
        keyless(MITR, { signedIdentity: { type: 'matchRepoDigestOrExact' } }),
        subjectOf(CI2023_REPO, CI2023_DIGEST),
        [artifactOf(legacy(CI2023))],
      );
      expect(r.satisfied).toBe(false);
      expect(r.reason).toMatch(/use signedIdentity matchRepository or exactRepository/);
    },
  );

  describe('tampering', () => {
    const tampered: [string, (l: Legacy) => void, RegExp][] = [
      [
        'a payload byte',
        (l) => (l.payload = Buffer.from(l.payload.toString().replace('"optional":null', '"optional":{}'))),
        /tlog|signature/,
      ],
      [
        'a signature bit',
        (l) => {
          const s = Buffer.from(l.annotations[ANN_SIGNATURE]!, 'base64');
          s[s.length - 5]! ^= 1;
          l.annotations[ANN_SIGNATURE] = s.toString('base64');
        },
        /tlog|signature/,
      ],
      [
        'the integratedTime',
        (l) => {
          const b = JSON.parse(l.annotations[ANN_REKOR_BUNDLE]!);
          b.Payload.integratedTime += 1;
          l.annotations[ANN_REKOR_BUNDLE] = JSON.stringify(b);
        },
        /inclusion promise|tlog/,
      ],
      [
        'the logIndex',
        (l) => {
          const b = JSON.parse(l.annotations[ANN_REKOR_BUNDLE]!);
          b.Payload.logIndex += 1;
          l.annotations[ANN_REKOR_BUNDLE] = JSON.stringify(b);
        },
        /inclusion promise|tlog/,
      ],
      [
        'a SET bit',
        (l) => {
          const b = JSON.parse(l.annotations[ANN_REKOR_BUNDLE]!);
          const set = Buffer.from(b.SignedEntryTimestamp, 'base64');
          set[10]! ^= 1;
          b.SignedEntryTimestamp = set.toString('base64');
          l.annotations[ANN_REKOR_BUNDLE] = JSON.stringify(b);
        },
        /inclusion promise|tlog/,
      ],
      [
        'the certificate (swapped for the 2022 one)',
        (l) => (l.annotations[ANN_CERTIFICATE] = read('cosign-legacy-containers-image-2022', 'cert.pem').toString()),
        /.+/,
      ],
    ];
    test.each(tampered)('denies a changed %s', async (_, change, reason) => {
      const l = legacy(CI2023);
      change(l);
      const r = await verifyWith(keyless(MITR), subjectOf(CI2023_REPO, CI2023_DIGEST), [artifactOf(l)]);
      expect(r.satisfied).toBe(false);
      expect(r.reason).toMatch(reason);
    });

    test('denies when the Rekor entry is missing and the policy requires it', async () => {
      const l = legacy(CI2023);
      delete l.annotations[ANN_REKOR_BUNDLE];
      const r = await verifyWith(keyless(MITR), subjectOf(CI2023_REPO, CI2023_DIGEST), [artifactOf(l)]);
      expect(r.satisfied).toBe(false);
      expect(r.reason).toMatch(/requires a transparency-log entry/);
    });

    test(
      'denies with tlog disabled: ' + 'a ten-minute Fulcio certificate has expired and there is no log time',
      async () => {
        const r = await verifyWith(keyless(MITR, { tlog: false }), subjectOf(CI2023_REPO, CI2023_DIGEST), [
          artifactOf(legacy(CI2023)),
        ]);
        expect(r.satisfied).toBe(false);
        expect(r.reason).toMatch(/does not chain to a trusted CA at .* \(no log or TSA time/);
      },
    );

    test('denies with a trusted root that lacks the Rekor key', async () => {
      const root = JSON.parse(read('trusted-root', 'trusted_root.json').toString());
      root.tlogs = root.tlogs.filter((t: { baseUrl: string }) => !t.baseUrl.includes('rekor.sigstore.dev'));
      const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
      const { tmpdir } = await import('node:os');
      const dir = mkdtempSync(join(tmpdir(), 'pg-root-'));
      try {
        writeFileSync(join(dir, 'root.json'), JSON.stringify(root));
        const r = await verifyWith(
          keyless(MITR, { trustedRoot: join(dir, 'root.json') }),
          subjectOf(CI2023_REPO, CI2023_DIGEST),
          [artifactOf(legacy(CI2023))],
        );
        expect(r.satisfied).toBe(false);
        expect(r.reason).toMatch(/tlog/);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });

  test('containers/image 2022, Google SA 2022 (old CT log) and 2023 all verify', async () => {
    const cases: [string, string, string, { email: string; issuer: string }][] = [
      [
        'cosign-legacy-containers-image-2022',
        '192.168.64.2:5000/test-repo-2100826901021538654/alpine',
        'sha256:fa93b01658e3a5a1686dc3ae55f170d8de487006fb53a28efcd12ab0710a2e5f',
        MITR[0]!,
      ],
      [
        'cosign-legacy-google-sa-2022',
        'us-central1-docker.pkg.dev/cosign-test-365209/repo1/myimage',
        'sha256:83ab2ba6689713f2d68104cd208feadfebdd6bc881c455dcb55d2b45ac3a0753',
        { email: 'cosign@cosign-test-365209.iam.gserviceaccount.com', issuer: 'https://accounts.google.com' },
      ],
      [
        'cosign-legacy-google-sa-2023',
        'us-central1-docker.pkg.dev/mineral-minutia-820/repo1/securebuild-bazel',
        'sha256:a2b109fb9baea555556561317fdd13cef9c3dfac22c8f8fea0c5a0b06ece9d00',
        {
          email: 'cosign-svc-account@mineral-minutia-820.iam.gserviceaccount.com',
          issuer: 'https://accounts.google.com',
        },
      ],
    ];
    for (const [dir, repo, digest, id] of cases) {
      const r = await verifyWith(keyless([id]), subjectOf(repo, digest), [artifactOf(legacy(dir))]);
      expect({ dir, ok: r.satisfied, reason: r.reason }).toMatchObject({ dir, ok: true });
    }
  });

  test(
    'GitHub Actions 2026 signs an index: valid for the index with a URI identity regexp; ' +
      'not for a platform manifest',
    async () => {
      const dir = 'cosign-legacy-github-actions-2026';
      const ids = [
        {
          uriRegexp:
            'https://github\\.com/salrashid123/go-bazel-github-workflow/' +
            '\\.github/workflows/release\\.yaml@refs/tags/v.*',
          issuer: 'https://token.actions.githubusercontent.com',
        },
      ];
      const repo = 'docker.io/salrashid123/server_image';
      const index = 'sha256:c05263d2ff654c3a94243662440913f045075d59c436e2c69e9145ec2b87a321';
      const ok = await verifyWith(keyless(ids), subjectOf(repo, index, 'application/vnd.oci.image.index.v1+json'), [
        artifactOf(legacy(dir)),
      ]);
      expect(ok.reason).toMatch(/verified/);
      const child = await verifyWith(
        keyless(ids),
        subjectOf(repo, 'sha256:81f575aa00000000000000000000000000000000000000000000000000000b75'),
        [artifactOf(legacy(dir))],
      );
      expect(child.satisfied).toBe(false);
      const mainBranch = await verifyWith(
        keyless([
          {
            uri:
              'https://github.com/salrashid123/go-bazel-github-workflow/' +
              '.github/workflows/release.yaml@refs/heads/main',
            issuer: 'https://token.actions.githubusercontent.com',
          },
        ]),
        subjectOf(repo, index),
        [artifactOf(legacy(dir))],
      );
      expect(mainBranch.satisfied).toBe(false);
    },
  );

  test('2021 pre-CT signature: denied by default (no SCT), and it has no issuer to match', async () => {
    const dir = 'cosign-legacy-2021-pre-ct';
    const repo = 'registry-testing.svc.lan/kubewarden/disallow-service-nodeport';
    const digest = 'sha256:5f481572d088dc4023afb35fced9530ced3d9b03bf7299c6f492163cb9f0452e';
    const r = await verifyWith(
      keyless([{ email: 'flavio@castelli.me', issuerRegexp: '.*' }]),
      subjectOf(repo, digest),
      [artifactOf(legacy(dir))],
    );
    expect(r.satisfied).toBe(false);
    // The chain holds at the log time; the SCT is what is missing (both are CERTIFICATE_ERROR to @sigstore).
    expect(r.signatures[0]!.checks.filter((c) => c.result !== 'pass').map((c) => c.check)).toEqual(['sct']);
  });
});

describe('attestations are not signatures', () => {
  test(
    'a valid public-good attestation bundle for the digest is refused as a signature, ' +
      'even if labelled cosign-bundle',
    async () => {
      const bundle = read('cosign-bundle-oci-attestation-2025', 'oci-attestation.sigstore.json');
      const art = memoryArtifact({ class: 'cosign-bundle', layers: [{ mediaType: BUNDLE_V03, blob: bundle }] });
      const r = await verifyWith(
        keyless([{ email: 'cody@soyland.com', issuer: 'https://github.com/login/oauth' }]),
        subjectOf('127.0.0.1:60943/repo', 'sha256:732112270d7e59418a8c080b134b24cabd67d250d0d0147a97ed95ba5c280aa4'),
        [art],
      );
      expect(r.satisfied).toBe(false);
      expect(r.reason).toMatch(
        /an attestation \(predicateType "https:\/\/cosign.sigstore.dev\/attestation\/v1"\), not a cosign signature/,
      );
    },
  );

  test('an artifact classified as attestation is reported and never verified', async () => {
    const art = memoryArtifact({
      class: 'attestation',
      foundVia: 'cosign-att-tag',
      layers: [{ mediaType: 'application/vnd.dsse.envelope.v1+json', blob: Buffer.from('{}') }],
    });
    const r = await verifyWith(keyless(MITR), subjectOf(CI2023_REPO, CI2023_DIGEST), [art]);
    expect(r.satisfied).toBe(false);
    expect(r.signatures[0]!.reason).toBe('an attestation, not a signature');
  });
});

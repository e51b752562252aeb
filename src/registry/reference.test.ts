import { describe, expect, test } from 'vitest';
import { formatReference, parseReference } from '../common/reference.js';
import { parseRepository, referrersTag } from './client.js';

const D = `sha256:${'a'.repeat(64)}`;

describe(
  'the -name forms CRI passes (distribution/reference ParseDockerRef) ' + 'reach the right registry and repository',
  () => {
    test.each([
      ['docker.io/library/nginx:latest', 'docker.io/library/nginx:latest'],
      ['nginx', 'docker.io/library/nginx:latest'],
      ['localhost:5001/app:1.0', 'localhost:5001/app:1.0'],
      [`docker.io/library/repo@${D}`, `docker.io/library/repo@${D}`],
      [`repo:tag@${D}`, `docker.io/library/repo@${D}`],
      ['docker.io/library/alpine:3.20', 'docker.io/library/alpine:3.20'],
      ['registry.example.com/image:abc', 'registry.example.com/image:abc'],
      ['index.docker.io/x/y', 'docker.io/x/y:latest'],
      ['127.0.0.1:5000/team/app:v1', '127.0.0.1:5000/team/app:v1'],
    ])('%s', (input, normalized) => {
      expect(formatReference(parseReference(input))).toBe(normalized);
    });

    test('relocated signature repositories and the referrers tag', () => {
      expect(parseRepository('127.0.0.1:5000/sigs')).toEqual({
        namespace: '127.0.0.1:5000',
        path: 'sigs',
        name: '127.0.0.1:5000/sigs',
      });
      expect(parseRepository('busybox').name).toBe('docker.io/library/busybox');
      expect(() => parseRepository('r.example/sigs:v1')).toThrow(/without a tag or digest/);
      expect(referrersTag(D)).toBe(`sha256-${'a'.repeat(64)}`);
    });
  },
);

import { describe, expect, test } from 'vitest';
import { formatReference, parseReference, repositoryOf } from './reference.js';

const D = `sha256:${'d'.repeat(64)}`;

describe('parseReference normalizes like containerd CRI', () => {
  test.each([
    ['nginx', 'docker.io/library/nginx:latest'],
    ['nginx:1.27', 'docker.io/library/nginx:1.27'],
    ['docker.io/library/nginx:latest', 'docker.io/library/nginx:latest'],
    ['index.docker.io/library/nginx', 'docker.io/library/nginx:latest'],
    ['bitnami/redis:7', 'docker.io/bitnami/redis:7'],
    ['localhost:5000/app:v1', 'localhost:5000/app:v1'],
    ['localhost/app', 'localhost/app:latest'],
    ['127.0.0.1:5001/team/app:1.0', '127.0.0.1:5001/team/app:1.0'],
    ['registry.k8s.io/pause:3.10', 'registry.k8s.io/pause:3.10'],
    [`ghcr.io/org/app@${D}`, `ghcr.io/org/app@${D}`],
    [`ghcr.io/org/app:v1@${D}`, `ghcr.io/org/app@${D}`],
    [`nginx@${D}`, `docker.io/library/nginx@${D}`],
    ['[::1]:5000/app:v1', '[::1]:5000/app:v1'],
    // One spelling per registry (issue 8 item 1): host case, :443, Docker Hub's aliases.
    ['VM:5214/prod/unsigned:v1', 'vm:5214/prod/unsigned:v1'],
    ['Registry.Example.com:443/a/b', 'registry.example.com/a/b:latest'],
    ['registry-1.docker.io/library/nginx', 'docker.io/library/nginx:latest'],
    ['registry.hub.docker.com/nginx', 'docker.io/library/nginx:latest'],
    ['VM/app', 'vm:443/app:latest'],
    ['LOCALHOST/app', 'localhost/app:latest'],
    ['localhost:443/app', 'localhost/app:latest'],
    ['[::1]:443/app', '[::1]/app:latest'],
    ['xn--bcher-kva.example/app', 'xn--bcher-kva.example/app:latest'],
  ])('%s -> %s', (input, expected) => {
    expect(formatReference(parseReference(input))).toBe(expected);
  });

  test('repositoryOf drops tag and digest', () => {
    expect(repositoryOf(parseReference(`ghcr.io/org/app:v1@${D}`))).toBe('ghcr.io/org/app');
  });

  test('a canonical name parses back to itself', () => {
    for (const n of ['VM/app', 'vm:443/app', 'Example.com:443/a', 'registry-1.docker.io/x/y']) {
      const once = formatReference(parseReference(n));
      expect(formatReference(parseReference(once))).toBe(once);
    }
  });

  test.each(['vm.:5214/app', 'vm..x/app', 'b\u00fccher.example/app', '.vm/app', 'Upper/Case'])(
    'rejects the host or path of %j',
    (input) => {
      expect(() => parseReference(input)).toThrow(/invalid image reference/);
    },
  );

  test.each(['', 'Upper', 'a//b', 'app@sha256:short', 'app:bad tag', 'ghcr.io/', `${'a'.repeat(300)}/x`])(
    'rejects %j',
    (input) => {
      expect(() => parseReference(input)).toThrow(/invalid image reference/);
    },
  );
});

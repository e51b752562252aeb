// A kubelet image credential provider plugin for the tests, speaking the real exec protocol
// (k8s.io/kubelet/pkg/apis/credentialprovider/v1): a CredentialProviderRequest on stdin, a
// CredentialProviderResponse on stdout. installCredentialPlugin() writes it into a bin dir with a
// shebang naming the project's pinned node. What it does comes from its first argument:
//   ok       answer with $PLUGIN_STATE/answer.json ({auth, cacheKeyType, cacheDuration})
//   hang     start a grandchild that holds stdout (its pid in $PLUGIN_STATE/child.pid), never answer
//   garbage  print something that is not JSON (with a fake secret in it)
//   error    fail like a real plugin does: a message on stderr, exit 1
//   big      print more than pullguard accepts
// Every run appends the requested image to $PLUGIN_STATE/calls, so tests can count runs across processes.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { spawn } = require('node:child_process');

const state = process.env.PLUGIN_STATE;
const mode = process.argv[2] || 'ok';
let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (d) => (input += d));
process.stdin.on('end', () => {
  let req;
  try {
    req = JSON.parse(input);
  } catch {
    process.stderr.write('request is not JSON\n');
    process.exit(3);
  }
  if (
    req.kind !== 'CredentialProviderRequest' ||
    req.apiVersion !== 'credentialprovider.kubelet.k8s.io/v1' ||
    !req.image
  ) {
    process.stderr.write(`unexpected request ${JSON.stringify(req)}\n`);
    process.exit(3);
  }
  fs.appendFileSync(path.join(state, 'calls'), `${req.image}\n`);
  switch (mode) {
    case 'ok': {
      const answer = JSON.parse(fs.readFileSync(path.join(state, 'answer.json'), 'utf8'));
      const res = { kind: 'CredentialProviderResponse', apiVersion: 'credentialprovider.kubelet.k8s.io/v1', ...answer };
      process.stdout.write(JSON.stringify(res));
      break;
    }
    case 'hang': {
      const child = spawn('sleep', ['600'], { stdio: ['ignore', 'inherit', 'inherit'] });
      fs.writeFileSync(path.join(state, 'child.pid'), String(child.pid));
      setInterval(() => undefined, 1000);
      break;
    }
    case 'garbage':
      process.stdout.write('password=hunter2-plugin-secret and not JSON at all');
      break;
    case 'error':
      process.stderr.write('E1201 plugin.go:42] getting token\n');
      process.stderr.write('error: cannot get a token: AKIAIOSFODNN7EXAMPLESECRETVALUE1234567890 expired\n');
      process.exit(1);
      break;
    case 'big':
      process.stdout.write('x'.repeat(1024 * 1024));
      break;
    default:
      process.exit(4);
  }
});

// A distribution token server for the bench (bench/remote.mjs): RS256 JWTs with an x5c chain that
// docker-registry checks against its rootcertbundle (docs/spec/auth/jwt.md). Anonymous, and it grants
// whatever is asked: the bench measures the token round trip, not access control (that is
// test/e2e/registry.test.ts). Prints READY <port>, then one `LOG <json>` line per token request.
//   node bench/token-server.cjs '{"key": ..., "cert": ..., "issuer": ..., "service": ...}'
const { createServer } = require('node:http');
const { createSign, randomUUID, X509Certificate } = require('node:crypto');
const { readFileSync } = require('node:fs');

const opts = JSON.parse(process.argv[2]);
const key = readFileSync(opts.key);
const der = new X509Certificate(readFileSync(opts.cert)).raw.toString('base64');
const b64u = (b) => Buffer.from(b).toString('base64url');
const server = createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  const scopes = url.searchParams.getAll('scope');
  console.log('LOG ' + JSON.stringify({ method: req.method, scopes }));
  const access = scopes.flatMap((s) => {
    const m = /^repository:([^:]+):(.+)$/.exec(s);
    return m ? [{ type: 'repository', name: m[1], actions: m[2].split(',') }] : [];
  });
  const now = Math.floor(Date.now() / 1000);
  const header = b64u(JSON.stringify({ alg: 'RS256', typ: 'JWT', x5c: [der] }));
  const claims = b64u(
    JSON.stringify({
      iss: opts.issuer,
      sub: '',
      aud: opts.service,
      exp: now + 300,
      nbf: now - 10,
      iat: now,
      jti: randomUUID(),
      access,
    }),
  );
  const sig = createSign('RSA-SHA256').update(header + '.' + claims).sign(key);
  const token = header + '.' + claims + '.' + b64u(sig);
  res
    .writeHead(200, { 'content-type': 'application/json' })
    .end(JSON.stringify({ token, access_token: token, expires_in: 300 }));
});
server.listen(0, '127.0.0.1', () => console.log('READY ' + server.address().port));
for (const sig of ['SIGINT', 'SIGTERM']) process.once(sig, () => process.exit(0));

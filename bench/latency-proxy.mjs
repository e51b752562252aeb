#!/usr/bin/env node
// A TCP proxy that delays every byte by a fixed time in each direction: a registry that is really
// remote (bench/run.mjs part 3), without leaving loopback. TLS passes through untouched.
//
//   node bench/latency-proxy.mjs <upstream-port> <delay-ms> [<slow-delay-ms>]
//
// Listens on a free loopback port and prints `READY <port>`; prints `CONN <n>` for every accepted
// connection, so the bench counts TCP (and TLS) connections per verification. Chunks are forwarded in
// order (timers of one duration fire first in, first out); a close is delayed the same way.
// SIGUSR1 switches new chunks to <slow-delay-ms>, SIGUSR2 back to <delay-ms>; each switch prints
// `DELAY <ms> <n>` (n counts switches). The bench times the same command at both delays: the difference
// divided by the added round-trip time is the number of round trips on the command's critical path.
import { connect, createServer } from 'node:net';

const [upstreamPort, delayArg, slowArg] = process.argv.slice(2).map(Number);
if (!Number.isInteger(upstreamPort) || !Number.isFinite(delayArg)) {
  process.stderr.write('usage: latency-proxy.mjs <upstream-port> <delay-ms> [<slow-delay-ms>]\n');
  process.exit(2);
}
let delay = delayArg;
let connections = 0;
let switches = 0;

/** Forwards `from` to `to`, each chunk and the end `delay` ms late. */
function pipeLate(from, to) {
  from.on('data', (chunk) => setTimeout(() => to.destroyed || to.write(chunk), delay));
  from.on('end', () => setTimeout(() => to.destroyed || to.end(), delay));
  from.on('error', () => setTimeout(() => to.destroy(), delay));
  from.on('close', () => setTimeout(() => to.destroy(), delay + 1));
}

const server = createServer((client) => {
  client.setNoDelay(true);
  process.stdout.write(`CONN ${++connections}\n`);
  const upstream = connect({ port: upstreamPort, host: '127.0.0.1', noDelay: true });
  // The SYN/SYN-ACK of a real connection costs one round trip before the first byte.
  client.pause();
  upstream.once('connect', () => setTimeout(() => client.resume(), 2 * delay));
  pipeLate(client, upstream);
  pipeLate(upstream, client);
});
server.listen(0, '127.0.0.1', () => process.stdout.write(`READY ${server.address().port}\n`));
for (const sig of ['SIGINT', 'SIGTERM']) process.once(sig, () => process.exit(0));
const setDelay = (ms) => {
  delay = ms;
  process.stdout.write(`DELAY ${ms} ${++switches}\n`);
};
if (Number.isFinite(slowArg)) {
  process.on('SIGUSR1', () => setDelay(slowArg));
  process.on('SIGUSR2', () => setDelay(delayArg));
}

#!/usr/bin/env node
// What recording a decision costs a pull: dist/pullguard in containerd mode on an allow rule (no
// network), spawned as `env -i PULLGUARD_POLICY=... dist/pullguard ...`, round-robin N times each with
// (a) `log: {file: false}` (nothing recorded) and (b) the decision log plus the metrics file. Wall
// time from spawn to exit. Then the size of the decision log per 1000 decisions.
//
//   node bench/observe.mjs [--runs N]          (after `make build`)
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

const runs = Number(process.argv[process.argv.indexOf('--runs') + 1]) || 40;
const bin = join(import.meta.dirname, '..', 'dist', 'pullguard');
const dir = mkdtempSync(join(tmpdir(), 'pg-bench-obs-'));
const D = `sha256:${'e'.repeat(64)}`;
const desc = JSON.stringify({ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: D, size: 100 });
const rule = 'rules:\n  - {name: ok, match: localhost:5000/app, action: allow}\n';
const off = join(dir, 'off.yaml');
const on = join(dir, 'on.yaml');
const log = join(dir, 'decisions.jsonl');
writeFileSync(off, `version: 1\nlog: {file: false}\n${rule}`);
writeFileSync(
  on,
  `version: 1\nlog: {file: ${JSON.stringify(log)}, metricsFile: ` +
    `${JSON.stringify(join(dir, 'pullguard.prom'))}}\n${rule}`,
);
const args = [
  '-name',
  'localhost:5000/app:v1',
  '-digest',
  D,
  '-stdin-media-type',
  'application/vnd.oci.descriptor.v1+json',
];

// CPU time of waited-for children (user + system, clock ticks of 10 ms) from /proc/self/stat: on a
// loaded machine wall time mostly measures the scheduler; summed over all runs the ticks are precise enough.
const childTicks = () => {
  const f = readFileSync('/proc/self/stat', 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return Number(rest[13]) + Number(rest[14]);
};
const cpu = { off: 0, on: 0 };
const once = (policy) => {
  const t = performance.now();
  const c = childTicks();
  const r = spawnSync('env', ['-i', `PULLGUARD_POLICY=${policy}`, bin, ...args], { input: desc, encoding: 'utf8' });
  const ms = performance.now() - t;
  cpu[policy === on ? 'on' : 'off'] += childTicks() - c;
  if (r.status !== 0 || r.stderr.includes('warning')) throw new Error(`unexpected: ${r.status} ${r.stdout}${r.stderr}`);
  return ms;
};
for (let i = 0; i < 3; i++) {
  once(off);
  once(on);
}
cpu.off = 0;
cpu.on = 0;
const t = { off: [], on: [] };
for (let i = 0; i < runs; i++) {
  // Alternate which goes first, so neither always runs in the other's wake.
  if (i % 2 === 0) {
    t.off.push(once(off));
    t.on.push(once(on));
  } else {
    t.on.push(once(on));
    t.off.push(once(off));
  }
}
const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
const mOff = median(t.off);
const mOn = median(t.on);
console.log(
  `runs ${runs} each, median wall time: nothing recorded ${mOff.toFixed(1)} ms, ` +
    `decision log + metrics ${mOn.toFixed(1)} ms`,
);
console.log(`ratio ${(mOn / mOff).toFixed(3)} (+${(mOn - mOff).toFixed(1)} ms per pull)`);
const cOff = (cpu.off * 10) / runs;
const cOn = (cpu.on * 10) / runs;
console.log(
  `CPU time (user+sys) per pull: nothing recorded ${cOff.toFixed(1)} ms, ` +
    `decision log + metrics ${cOn.toFixed(1)} ms, ratio ${(cOn / cOff).toFixed(3)}`,
);
const lines = runs + 3;
console.log(
  `decision log: ${statSync(log).size} bytes for ${lines} decisions = ` +
    `${(((statSync(log).size / lines) * 1000) / 1024).toFixed(0)} KiB per 1000 decisions (allow rule, no authorities)`,
);
rmSync(dir, { recursive: true, force: true });

import { spawnSync } from 'node:child_process';
import { expect, test } from 'vitest';
import { processStartedAt } from './process-start.js';

test('the process start comes from /proc: before now, and no later than when this test file started', () => {
  const now = Date.now();
  const started = processStartedAt(now);
  expect(started).toBeLessThanOrEqual(now);
  expect(now - started).toBeGreaterThanOrEqual(Math.floor(process.uptime() * 1000) - 30);
});

test('a process that sleeps before its JavaScript runs is measured from its exec', () => {
  // `sleep 0.3 && exec node` keeps the PID: the exec'd node inherits the start time of the shell.
  const script = `import('${new URL('./process-start.ts', import.meta.url).pathname}')`;
  const print = `${script}.then((m) => console.log(Date.now() - m.processStartedAt()))`;
  const r = spawnSync('sh', ['-c', `sleep 0.3; exec "${process.execPath}" -e "${print}"`], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  expect(Number(r.stdout)).toBeGreaterThanOrEqual(280);
});

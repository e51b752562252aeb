import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { applyMode, ruleDecision } from '../verdict/decision.js';
import { sendToJournal } from './journal.js';
import { toEntry } from './record.js';

const dir = mkdtempSync(join(tmpdir(), 'pg-jr-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const rule = { name: 'prod', match: ['*'], action: 'verify' as const, authorities: [], require: 'all' as const };

test('one stream per decision: the stdout-stream header journald expects, then the line', async () => {
  const socket = join(dir, 'stdout');
  const got: string[] = [];
  const server = createServer((c) => {
    let buf = '';
    c.on('data', (d) => (buf += d.toString()));
    c.on('end', () => got.push(buf));
  });
  await new Promise<void>((r) => server.listen(socket, r));
  const d = applyMode(ruleDecision(rule, 'deny', 'no signature found\nsecond line', [], 'NO_SIGNATURE'), 'audit');
  await sendToJournal(toEntry(d, { name: 'r.example/app:v1', digest: 'sha256:ab', startedAt: 0 }, 10), 1000, socket);
  await new Promise<void>((r) => server.close(() => r()));
  // identifier, unit id, priority (4: warning for a would-deny), level prefix, syslog, kmsg, console
  expect(got).toEqual([
    'pullguard\n\n4\n0\n0\n0\n0\nwould deny (audit mode) r.example/app:v1@sha256:ab: ' +
      'audit mode, would deny: no signature found second line (rule "prod") [NO_SIGNATURE]\n',
  ]);
});

test('no journald: a rejection the caller turns into a warning', async () => {
  const e = toEntry(
    applyMode(ruleDecision(rule, 'allow', 'ok'), 'enforce'),
    { name: 'x', digest: 'y', startedAt: 0 },
    1,
  );
  await expect(sendToJournal(e, 1000, join(dir, 'nothing'))).rejects.toMatchObject({ code: 'ENOENT' });
});

import { describe, expect, it } from 'vitest';
import { runHuman } from './human.js';

/** Each command for people refuses an unknown flag before it touches anything: exit 2, one line that names it. */
describe('the commands for people refuse an unknown flag', () => {
  const commands: string[][] = [
    ['verify', 'registry.example/app:v1'],
    ['policy', 'check'],
    ['doctor'],
    ['scan'],
    ['cache', 'ls'],
    ['log'],
    ['node', 'install'],
    ['node', 'status'],
    ['node', 'agent'],
  ];
  for (const command of commands) {
    it(command.join(' '), async () => {
      const out: string[] = [];
      const err: string[] = [];
      const code = await runHuman(
        [...command, '--bogus'],
        (l) => out.push(l),
        (l) => err.push(l),
        { PULLGUARD_POLICY: '/nonexistent/policy.yaml' },
      );
      expect(code).toBe(2);
      expect(out).toEqual([]);
      expect(err.join('\n').split('\n')[0]).toMatch(
        /^pullguard( node)?: unknown option --bogus[;\n ]*(usage: .*)?(\[CONTRACT_ARGS\])?$/,
      );
    });
  }
});

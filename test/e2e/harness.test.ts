import { createServer } from 'node:net';
import { expect, test } from 'vitest';
import { onFreePort } from '../helpers/proc.js';
import { startRegistryOn } from '../helpers/registry.js';

test('a registry started on a port someone else took is restarted on another, not mistaken for ready', async () => {
  const blocker = createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
  const taken = (blocker.address() as { port: number }).port;
  const tried: number[] = [];
  const reg = await onFreePort((port) => {
    tried.push(port);
    return startRegistryOn(tried.length === 1 ? taken : port, {});
  });
  expect(tried).toHaveLength(2);
  expect(reg.port).not.toBe(taken);
  await reg.stop();
  blocker.close();
});

/**
 * `log.journal: true`: each decision also goes to journald (`journalctl -t pullguard`), through its
 * stdout stream socket, the one `systemd-cat` uses. Node has no unix datagram sockets, so the native
 * protocol (/run/systemd/journal/socket) and /dev/log are out of reach; the stream socket takes a
 * seven-line header (systemd journald-stream.c: identifier, unit id, priority, level prefix, forward to
 * syslog, kmsg, console), then one message per line.
 */
import type { DecisionEntry } from './record.js';

export const JOURNAL_STREAM = '/run/systemd/journal/stdout';

/** The stream socket of the default journal, or of a namespace (`journalctl --namespace=NAME`). */
export const journalStream = (namespace?: string) =>
  namespace ? `/run/systemd/journal.${namespace}/stdout` : JOURNAL_STREAM;
const LOG_WARNING = 4;
const LOG_INFO = 6;

export function journalMessage(e: DecisionEntry): string {
  const verb = e.wouldDeny ? 'would deny (audit mode)' : e.verdict === 'allow' ? 'allowed' : 'denied';
  // biome-ignore lint/suspicious/noControlCharactersInRegex: flattening control characters is the point
  const flat = (s: string) => s.replace(/[\u0000-\u001f\u007f]/g, ' ');
  return flat(
    `${verb} ${e.name}@${e.digest}: ${e.reason}${e.rule ? ` (rule "${e.rule}")` : ''}${e.code ? ` [${e.code}]` : ''}`,
  );
}

/** Sends one line; resolves when journald has it or after `timeoutMs`; rejects on a connection error. */
export function sendToJournal(e: DecisionEntry, timeoutMs: number, socket = JOURNAL_STREAM): Promise<void> {
  // Loaded here: node:net is not part of the executable's startup snapshot.
  const net = process.getBuiltinModule('node:net');
  const priority = e.verdict === 'deny' || e.wouldDeny ? LOG_WARNING : LOG_INFO;
  const header = `pullguard\n\n${priority}\n0\n0\n0\n0\n`;
  return new Promise((resolve, reject) => {
    const s = net.connect(socket);
    const timer = setTimeout(() => {
      s.destroy();
      reject(Object.assign(new Error('journald did not take the line in time'), { code: 'ETIMEDOUT' }));
    }, timeoutMs);
    s.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    s.once('connect', () => s.end(`${header}${journalMessage(e)}\n`));
    s.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

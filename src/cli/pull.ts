import { writeSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { Deadline, formatDuration } from '../common/deadline.js';
import { asPullguardError, PullguardError } from '../common/errors.js';
import { parseReference } from '../common/reference.js';
import { parseVerifierArgs, type VerifierArgs } from '../contract/args.js';
import { checkArgs, checkDescriptorMatches, parseDescriptor } from '../contract/descriptor.js';
import { readFd, readStdin } from '../contract/stdin.js';
import { loadPolicy, policyPath } from '../policy/load.js';
import { DEFAULT_TIMEOUT_MS, type LogSettings, type Policy } from '../policy/model.js';
import { formatLine, formatRecord, type RunContext } from '../output/emit.js';
import { recordDecision } from '../output/observe.js';
import { applyMode, errorDecision, type Decision } from '../verdict/decision.js';
import { createRegistryClient } from '../registry/index.js';
import type { RegistryClientFactory } from '../registry/types.js';
import { decide } from './decide.js';
import { decideCached } from '../cache/decide-cached.js';
import { processStartedAt } from '../common/process-start.js';

export interface PullIo {
  readonly argv: readonly string[];
  /** The descriptor's stream; absent: fd 0, read directly (contract/stdin.ts readFd). */
  readonly stdin?: Readable;
  readonly env: NodeJS.ProcessEnv;
  /** Writes a chunk to stdout (fd 1) or stderr (fd 2), synchronously: we may exit right after. */
  readonly write: (fd: 1 | 2, text: string) => void;
  /** When the run began (ms since the epoch): the process's exec for the real executable; default now. */
  readonly startedAt?: number;
  /** The registry stage; default the real one (the snapshot warm-up passes its in-memory registry). */
  readonly registry?: RegistryClientFactory;
}

const HARD_STOP_GRACE_MS = 250;

const defaultIo = (argv: readonly string[]): PullIo => ({
  argv,
  env: process.env,
  write: (fd, text) => {
    try {
      writeSync(fd, text);
    } catch (e) {
      // A closed pipe (the reader went away) must not turn the verdict into a crash.
      if ((e as NodeJS.ErrnoException).code !== 'EPIPE') throw e;
    }
  },
  // containerd's timeout runs from exec; a loaded node can take seconds to get to our first line.
  startedAt: processStartedAt(),
});

/**
 * containerd mode: one decision, one stdout line, one stderr record, one exit code. Whatever happens
 * (bad input, a broken policy, a hung registry, a bug) ends in a deny with a reason before the budget
 * runs out, so containerd never has to kill us.
 */
export async function runPull(argv: readonly string[], io: PullIo = defaultIo(argv)): Promise<number> {
  const out: Emitted = {};
  const code = await decideAndEmit(io, out);
  // After the verdict is on stdout: the decision log and metrics (output/observe.ts) cannot change it,
  // and are cut off before the hard stop would fire.
  await recordEmitted(out, io);
  return code;
}

/** The decision log and metrics are synchronous (the journal is not, and is skipped on the way out). */
function recordEmitted(out: Emitted, io: PullIo, slackMs = 0): Promise<void> | undefined {
  if (!out.decision || !out.ctx || out.recorded) return undefined;
  out.recorded = true;
  const until = out.ctx.startedAt + (out.budgetMs ?? DEFAULT_TIMEOUT_MS) + HARD_STOP_GRACE_MS + slackMs;
  const cacheHit = out.cacheHit !== undefined ? { cacheHit: out.cacheHit } : {};
  return recordDecision(out.decision, out.ctx, out.log, { until, warn: (l) => io.write(2, `${l}\n`), ...cacheHit });
}

interface Emitted {
  decision?: Decision;
  ctx?: RunContext;
  budgetMs?: number;
  log?: LogSettings;
  recorded?: boolean;
  /** For the decision cache: set when the verdict came from it (counted as pullguard_cache_hits_total). */
  cacheHit?: boolean;
}

async function decideAndEmit(io: PullIo, out: Emitted): Promise<number> {
  const ctx: { -readonly [K in keyof RunContext]: RunContext[K] } = {
    name: '',
    digest: '',
    startedAt: io.startedAt ?? Date.now(),
  };
  let emitted: number | undefined;
  const emit = (decision: Decision): number => {
    if (emitted !== undefined) return emitted;
    io.write(1, `${formatLine(decision, ctx)}\n`);
    io.write(2, `${formatRecord(decision, ctx)}\n`);
    emitted = decision.exitCode;
    out.decision = decision;
    out.ctx = { ...ctx };
    return emitted;
  };

  let mode: Policy['mode'] | undefined;
  let budget = DEFAULT_TIMEOUT_MS;
  let hardStop: NodeJS.Timeout | undefined;
  // The last line of defence if something blocks the event loop's normal path: it fires a little after
  // the deadline every stage honours, and still well inside containerd's per_verifier_timeout.
  const armHardStop = (ms: number) => {
    clearTimeout(hardStop);
    hardStop = setTimeout(
      () => {
        const err = new PullguardError('DEADLINE_EXCEEDED', `timed out after ${formatDuration(ms)}`);
        process.exitCode = emit(applyMode(errorDecision(err), mode ?? 'enforce'));
        // A timed-out pull is the one an operator most needs to find in the log.
        void recordEmitted(out, io, HARD_STOP_GRACE_MS);
        process.exit(process.exitCode);
      },
      ms + HARD_STOP_GRACE_MS - (Date.now() - ctx.startedAt),
    );
  };
  armHardStop(budget);
  const onCrash = (e: unknown) => {
    const err = new PullguardError('INTERNAL', `internal error: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(emit(errorDecision(err)));
  };
  process.once('uncaughtException', onCrash);

  try {
    let args: VerifierArgs;
    try {
      args = parseVerifierArgs(io.argv);
    } finally {
      const loose = looseArgs(io.argv);
      ctx.name = loose.name;
      ctx.digest = loose.digest;
    }
    checkArgs(args);
    const parsed = parseReference(args.name);
    if (parsed.digest && parsed.digest !== args.digest) {
      throw new PullguardError('CONTRACT_DIGEST_MISMATCH', `-name pins ${parsed.digest} but -digest is ${args.digest}`);
    }
    const descriptor = parseDescriptor(
      await (io.stdin ? readStdin(io.stdin) : (readFd(0) ?? readStdin(process.stdin))),
    );
    checkDescriptorMatches(args, descriptor);

    const policy = loadPolicy(policyPath(io.env));
    mode = policy.mode;
    budget = policy.timeoutMs;
    out.budgetMs = budget;
    out.log = policy.log;
    armHardStop(budget);

    const deadline = new Deadline(budget, ctx.startedAt);
    try {
      const subject = { reference: { domain: parsed.domain, path: parsed.path, digest: args.digest }, descriptor };
      const registry = () => (io.registry ?? createRegistryClient)(policy.registry);
      const { decision } = await deadline.race(
        decideCached(subject, policy, deadline, (d) => decide(subject, policy, registry, d)),
      );
      if (decision.cache) out.cacheHit = decision.cache.status === 'hit' || decision.cache.status === 'stale';
      return emit(applyMode(decision, policy.mode));
    } finally {
      deadline.dispose();
    }
  } catch (e) {
    const err = asPullguardError(e); // a DeadlineExceeded is already one, with its code
    // Contract violations are denied whatever the mode: they mean the caller is broken, not the image.
    // Every contract check runs before the policy (and so its mode) is read, so `mode` is unset there.
    return emit(applyMode(errorDecision(err), mode ?? 'enforce'));
  } finally {
    clearTimeout(hardStop);
    process.off('uncaughtException', onCrash);
  }
}

/** Best-effort name and digest for the output line even when the arguments are malformed. */
function looseArgs(argv: readonly string[]): { name: string; digest: string } {
  const get = (flag: string) => {
    for (let i = 0; i < argv.length; i++) {
      const a = argv[i]!;
      if (a === `-${flag}` || a === `--${flag}`) return argv[i + 1] ?? '';
      if (a.startsWith(`-${flag}=`) || a.startsWith(`--${flag}=`)) return a.slice(a.indexOf('=') + 1);
    }
    return '';
  };
  const clip = (s: string) => (s.length > 256 ? `${s.slice(0, 256)}\u2026` : s);
  return { name: clip(get('name')), digest: clip(get('digest')) };
}

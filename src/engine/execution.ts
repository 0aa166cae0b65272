import { sql, type Kysely } from 'kysely';
import { deserializeError, InfraflowError, serializeError, TimeoutError, type SerializedError } from '../core/errors.js';
import type { Engine } from './index.js';
import { cancelledError, LeaseLostError, nondeterminism, runTimeout, stepTimeout, versionMismatch } from './errors.js';
import { backoffMs, isRetryable, mergePolicy } from './retry.js';
import type { EventInput, StepRow, WriteEntry } from './writer.js';
import type { PollOptions, RetryPolicy, StepContext, StepOptions, StepRecord, WorkflowContext, WorkflowDefinition, ChildOptions } from './types.js';

/** Far-future due time: "wait until woken". */
export const FOREVER = 8_640_000_000_000_000;

export interface LoadedRun {
  id: string;
  workflow: string;
  version: number;
  status: string;
  input: unknown;
  labels: Record<string, string>;
  queue: string;
  concurrencyKey: string | null;
  parentRunId: string | null;
  deadlineAt: number | null;
  timeoutMs: number | null;
  epoch: number;
  cancelRequested: boolean;
  cancelReason: string | null;
  progress: Record<string, unknown> | null;
}

export interface JournalEntry {
  seq: number;
  name: string;
  kind: StepRecord['kind'];
  status: StepRecord['status'];
  attempts: number;
  output: unknown;
  error: SerializedError | null;
  logs: StepRecord['logs'];
  startedAt: number;
  finishedAt: number | null;
}

export function parseJson(text: string | null | undefined): unknown {
  return text === null || text === undefined ? undefined : JSON.parse(text);
}

export function toJournalEntry(r: StepRow): JournalEntry {
  return {
    seq: Number(r.seq),
    name: r.name,
    kind: r.kind as StepRecord['kind'],
    status: r.status as StepRecord['status'],
    attempts: Number(r.attempts),
    output: parseJson(r.output),
    error: (parseJson(r.error) as SerializedError | undefined) ?? null,
    logs: (parseJson(r.logs) as StepRecord['logs'] | undefined) ?? [],
    startedAt: Number(r.started_at),
    finishedAt: r.finished_at === null ? null : Number(r.finished_at),
  };
}

function json(v: unknown): string | null {
  return v === undefined ? null : JSON.stringify(v);
}

/** JSON round trip so a first execution returns exactly what a replay would. */
function roundTrip<T>(v: T, what = 'value'): T {
  if (v === undefined) return v;
  let text: string;
  try {
    text = JSON.stringify(v);
  } catch (e) {
    throw new InfraflowError('engine.not_serializable', `${what} is not JSON-serializable (${(e as Error).message}); return plain data: objects, arrays, strings, numbers, booleans, null`, 500, { retryable: false });
  }
  return text === undefined ? (undefined as T) : (JSON.parse(text) as T);
}

/** Abort reason for cleanup (an Error built once: abort() without a reason builds a DOMException each time). */
export const DONE = new Error('done');
const NEVER: Promise<never> = new Promise<never>(() => {});
/** Thrown inside an op to park it: the run is suspended once quiescent. */
const SUSPEND = Symbol('suspend');

interface SuspendRequest {
  due: number;
  names: string[];
  waitingFor: string;
  release?: boolean;
}

interface Compensation {
  seq: number;
  name: string;
  result: unknown;
  fn: (result: any, sc: StepContext) => Promise<void>;
  retry?: RetryPolicy;
}

type Halt = { kind: 'suspend' } | { kind: 'abandon' };
type Outcome = { ok: true; v: unknown } | { ok: false; e: unknown };

function abortPromise(signal: AbortSignal): { promise: Promise<never>; dispose: () => void } {
  let onAbort: () => void = () => {};
  const promise = new Promise<never>((_, reject) => {
    if (signal.aborted) return reject(signal.reason);
    onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
  });
  promise.catch(() => {});
  return { promise, dispose: () => signal.removeEventListener('abort', onAbort) };
}

/**
 * One in-memory execution of a run on this worker: replays the journal, runs
 * new steps, and ends by completing, failing, suspending (timer / signal /
 * child) or abandoning (lease lost). Every write is fenced by the lease epoch.
 */
export class RunExecution {
  private seq = 0;
  private active = 0;
  private suspends: SuspendRequest[] = [];
  private comps: Compensation[] = [];
  private halted = false;
  private abandoned = false;
  private bodySettled = false;
  private checkScheduled = false;
  private fatal: InfraflowError | null = null;
  private interrupt: { kind: 'cancel' | 'timeout'; reason?: string | null } | null = null;
  private haltResolve!: (h: Halt) => void;
  private readonly haltPromise: Promise<Halt>;
  /** Aborted when the run is abandoned (lease lost, hard stop). */
  private readonly life = new AbortController();
  /** Aborted on cancel or run timeout. */
  private readonly intr = new AbortController();
  /** Aborted when the worker drains (graceful shutdown). */
  private readonly drainAc = new AbortController();
  private readonly timers = new AbortController();
  /** Signals a step body observes: abandon or cancel/timeout. */
  private readonly stepSignals = [this.life.signal, this.intr.signal];
  private readonly stepSignal = AbortSignal.any(this.stepSignals);
  private pendingLogs: StepRecord['logs'] = [];
  private readonly idleWaiters: (() => void)[] = [];
  private progressState: Record<string, unknown> | null;
  readonly done: Promise<void>;
  private doneResolve!: () => void;

  constructor(
    private readonly engine: Engine,
    readonly run: LoadedRun,
    private readonly journal: Map<number, JournalEntry>,
  ) {
    this.haltPromise = new Promise((r) => (this.haltResolve = r));
    this.done = new Promise((r) => (this.doneResolve = r));
    this.progressState = run.progress;
    if (run.cancelRequested) this.interrupt = { kind: 'cancel', reason: run.cancelReason };
  }

  get id(): string {
    return this.run.id;
  }
  get epoch(): number {
    return this.run.epoch;
  }

  private get clock() {
    return this.engine.clock;
  }

  // ---- control from the engine ---------------------------------------------------------------

  /** Cancel or time out the run: in-flight steps are aborted, compensations run. */
  interruptWith(kind: 'cancel' | 'timeout', reason?: string | null): void {
    if (this.interrupt || this.halted || this.abandoned) {
      if (!this.interrupt) this.interrupt = { kind, reason: reason ?? null };
      return;
    }
    this.interrupt = { kind, reason: reason ?? null };
    this.intr.abort(this.interruptError());
  }

  /** Stop working on the run without writing anything more (lease lost). */
  abandon(): void {
    if (this.abandoned) return;
    this.abandoned = true;
    this.life.abort(new LeaseLostError(this.id));
    this.haltResolve({ kind: 'abandon' });
    for (const w of this.idleWaiters.splice(0)) w();
  }

  /** Graceful shutdown: finish in-flight steps, then hand the run back. */
  drain(): void {
    if (this.drainAc.signal.aborted) return;
    this.drainAc.abort(new Error('draining'));
    if (this.active === 0 && !this.bodySettled) {
      this.suspends.push({ due: 0, names: [], waitingFor: 'worker shutdown', release: true });
      this.scheduleCheck();
    }
  }

  private interruptError(): InfraflowError {
    if (this.interrupt?.kind === 'timeout') return runTimeout(this.id, this.run.timeoutMs ?? 0);
    return cancelledError(this.id, this.interrupt?.reason);
  }

  // ---- main ----------------------------------------------------------------------------------

  async execute(def: WorkflowDefinition | undefined): Promise<void> {
    try {
      if (!def) {
        const versions = this.engine.registeredVersions(this.run.workflow);
        await this.finish('failed', versionMismatch(this.id, this.run.workflow, this.run.version, versions));
        return;
      }
      const now = this.clock.now();
      if (this.run.deadlineAt !== null) {
        if (now >= this.run.deadlineAt) {
          if (!this.interrupt) this.interrupt = { kind: 'timeout' };
        } else {
          this.clock.sleep(this.run.deadlineAt - now, this.timers.signal).then(
            () => this.interruptWith('timeout'),
            () => {},
          );
        }
      }
      const ctx = this.context(def);
      const body = (async () => def.run(ctx, this.run.input))().then(
        (v): Outcome => ({ ok: true, v }),
        (e): Outcome => ({ ok: false, e }),
      );
      const first = await Promise.race([body, this.haltPromise]);
      if ('kind' in first || this.abandoned) return;
      this.bodySettled = true;
      await this.settle();
      if (this.abandoned) return;
      if (first.ok && !this.fatal) {
        const leftover = [...this.journal.values()].find((j) => j.seq >= this.seq && j.kind !== 'compensate');
        if (leftover) {
          await this.finish('failed', nondeterminism(this.id, leftover.seq, leftover, { name: '(end of workflow)', kind: 'return' }));
          return;
        }
        let output: unknown;
        try {
          output = roundTrip(first.v, `the output of run ${this.id}`);
        } catch (e) {
          await this.finish('failed', e);
          return;
        }
        await this.finish('succeeded', output);
        return;
      }
      if (this.fatal) {
        await this.finish('failed', this.fatal);
        return;
      }
      let err: unknown = first.ok ? new Error('unreachable') : first.e;
      const status = this.interrupt?.kind === 'cancel' ? 'cancelled' : 'failed';
      if (this.interrupt) err = this.interruptError();
      const compErr = await this.compensate();
      if (this.abandoned) return;
      if (compErr) {
        const base = serializeError(err);
        await this.finish(
          'failed',
          new InfraflowError('engine.compensation_failed', `run ${this.id} ${status === 'cancelled' ? 'was cancelled' : `failed (${base.code}: ${base.message})`} and its compensation failed: ${compErr.message}; undo the remaining resources by hand`, 500, {
            details: { cause: base, compensation: serializeError(compErr) },
          }),
        );
        return;
      }
      await this.finish(status, err);
    } catch (e) {
      if (!(e instanceof LeaseLostError) && !this.abandoned) {
        this.engine.logger.error({ err: e, runId: this.id }, 'run execution crashed; the run is handed back when its lease expires');
      }
      this.abandon();
    } finally {
      this.timers.abort(DONE);
      this.engine.executionEnded(this);
      this.doneResolve();
    }
  }

  /** Waits until no op is in flight (e.g. parallel branches still running after one failed). */
  private async settle(): Promise<void> {
    while (this.active > 0 && !this.abandoned) {
      await new Promise<void>((r) => this.idleWaiters.push(r));
    }
  }

  private async finish(status: 'succeeded' | 'failed' | 'cancelled', value: unknown): Promise<void> {
    const now = this.clock.now();
    const error = status === 'succeeded' ? null : serializeError(value);
    const parent = this.run.parentRunId;
    const entry: WriteEntry = {
      fence: { runId: this.id, epoch: this.epoch },
      finish: {
        status,
        output: status === 'succeeded' ? json(value) : null,
        error: error ? JSON.stringify(error) : null,
        progress: json(this.progressState ? { ...this.progressState, stage: status, waitingFor: undefined, since: now } : null),
        at: now,
      },
      events: [{ type: `run.${status}`, subject: this.id, runId: this.id, data: { workflow: this.run.workflow, ...(error ? { error } : {}) }, at: now }],
      ...(parent ? { extra: (trx: Kysely<any>) => notifyParent(trx, parent, this.id, now) } : {}),
    };
    this.halted = true;
    await this.engine.writer.submit(entry);
  }

  // ---- suspension ----------------------------------------------------------------------------

  private scheduleCheck(): void {
    if (this.checkScheduled || !this.suspends.length) return;
    this.checkScheduled = true;
    setImmediate(() => {
      this.checkScheduled = false;
      if (!this.halted && !this.abandoned && !this.bodySettled && this.active === 0 && this.suspends.length) void this.suspendNow();
    });
  }

  private requestSuspend(req: SuspendRequest): never {
    this.suspends.push(req);
    throw SUSPEND;
  }

  private async suspendNow(): Promise<void> {
    this.halted = true;
    const now = this.clock.now();
    const release = this.suspends.some((s) => s.release);
    let due = Math.min(...this.suspends.map((s) => s.due));
    if (this.run.deadlineAt !== null) due = Math.min(due, this.run.deadlineAt);
    const names = [...new Set(this.suspends.flatMap((s) => s.names))];
    const waitingFor = [...new Set(this.suspends.map((s) => s.waitingFor))].join(', ');
    const progress = { ...(this.progressState ?? {}), waitingFor, since: now };
    const run: Record<string, unknown> = { lease_owner: null, lease_expires_at: null, updated_at: now };
    if (release) {
      run.available_at = now;
    } else {
      run.status = sql`case when cancel_requested = 1 then 'cancelling' else 'waiting' end`;
      run.progress = JSON.stringify(progress);
      run.available_at = names.length
        ? sql`case when cancel_requested = 1 or exists (select 1 from engine_signals s where s.run_id = engine_runs.id and s.consumed_seq is null and s.name in (${sql.join(names)})) then cast(${now} as bigint) else cast(${due} as bigint) end`
        : sql`case when cancel_requested = 1 then cast(${now} as bigint) else cast(${due} as bigint) end`;
    }
    try {
      await this.engine.writer.submit({
        fence: { runId: this.id, epoch: this.epoch },
        run,
        events: release ? [] : [{ type: 'run.waiting', subject: this.id, runId: this.id, data: { workflow: this.run.workflow, waitingFor, until: due >= FOREVER ? null : due }, at: now }],
      });
      this.haltResolve({ kind: 'suspend' });
      if (due <= now + 5) this.engine.kick();
      else this.engine.noteDue(due);
    } catch (e) {
      if (!(e instanceof LeaseLostError)) this.engine.logger.error({ err: e, runId: this.id }, 'suspending the run failed; it is handed back when its lease expires');
      this.abandon();
    }
  }

  // ---- op plumbing ---------------------------------------------------------------------------

  private async op<T>(fn: () => Promise<T>): Promise<T> {
    if (this.abandoned || this.halted) return NEVER;
    this.active++;
    try {
      return await fn();
    } catch (e) {
      if (e === SUSPEND || this.abandoned || e instanceof LeaseLostError) {
        if (e instanceof LeaseLostError) this.abandon();
        return NEVER;
      }
      throw e;
    } finally {
      this.active--;
      this.scheduleCheck();
      if (this.active === 0 && this.idleWaiters.length) for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  private replay(seq: number, name: string, kind: StepRecord['kind']): JournalEntry | undefined {
    const rec = this.journal.get(seq);
    if (rec && (rec.name !== name || rec.kind !== kind)) {
      this.fatal = nondeterminism(this.id, seq, rec, { name, kind });
      throw this.fatal;
    }
    return rec;
  }

  /** Called before doing anything new (not replayed from the journal). */
  private checkNew(): void {
    if (this.fatal) throw this.fatal;
    if (this.interrupt) throw this.interruptError();
    if (this.drainAc.signal.aborted) this.requestSuspend({ due: 0, names: [], waitingFor: 'worker shutdown', release: true });
  }

  /**
   * Fenced write. Any failure (lease lost, database error) abandons the run:
   * a database error must not count as a step failure; the run resumes from
   * its journal when the lease expires.
   */
  private async write(entry: Omit<WriteEntry, 'fence'>): Promise<unknown> {
    try {
      return await this.engine.writer.submit({ ...entry, fence: { runId: this.id, epoch: this.epoch } });
    } catch (e) {
      if (!(e instanceof LeaseLostError)) this.engine.logger.error({ err: e, runId: this.id }, 'journal write failed; abandoning the run (it resumes from its journal when the lease expires)');
      this.abandon();
      throw e instanceof LeaseLostError ? e : new LeaseLostError(this.id);
    }
  }

  private stepRow(seq: number, name: string, kind: StepRecord['kind'], status: string, attempts: number, startedAt: number, extra: { output?: unknown; error?: SerializedError | null; logs?: StepRecord['logs']; finishedAt?: number | null } = {}): StepRow {
    const logs = [...this.pendingLogs, ...(extra.logs ?? [])];
    this.pendingLogs = [];
    return {
      run_id: this.id,
      seq,
      name,
      kind,
      status,
      attempts,
      output: json(extra.output),
      error: extra.error ? JSON.stringify(extra.error) : null,
      logs: logs.length ? JSON.stringify(logs) : null,
      started_at: startedAt,
      finished_at: extra.finishedAt === undefined ? this.clock.now() : extra.finishedAt,
      worker: this.engine.workerId,
    };
  }

  private event(type: string, data: Record<string, unknown>): EventInput {
    return { type, subject: this.id, runId: this.id, data, at: this.clock.now() };
  }

  /** Waits until `at`: in memory when short, else suspends the run (durable timer). */
  private async waitUntil(at: number, waitingFor: string): Promise<void> {
    const now = this.clock.now();
    if (at <= now) return;
    if (this.interrupt) throw this.interruptError();
    if (at - now > this.engine.holdMs) this.requestSuspend({ due: at, names: [], waitingFor });
    const sig = AbortSignal.any([this.life.signal, this.intr.signal, this.drainAc.signal]);
    try {
      await this.clock.sleep(at - now, sig);
    } catch {
      if (this.abandoned) throw SUSPEND;
      if (this.interrupt) throw this.interruptError();
      this.requestSuspend({ due: at, names: [], waitingFor });
    }
  }

  private stepContext(seq: number, attempt: number, signal: AbortSignal, logs: StepRecord['logs']): StepContext {
    const clock = this.clock;
    return {
      idempotencyKey: `${this.id}:${seq}`,
      runId: this.id,
      attempt,
      signal,
      log: (message, data) => {
        logs.push({ at: clock.now(), message, ...(data ? { data } : {}) });
      },
    };
  }

  /** Runs one attempt with an optional timeout; rejects with the abort reason if aborted. */
  private async attempt<T>(name: string, seq: number, attempt: number, fn: (sc: StepContext) => Promise<T>, timeoutMs: number | undefined, logs: StepRecord['logs'], signals: AbortSignal[]): Promise<T> {
    let signal: AbortSignal;
    let timer: AbortController | undefined;
    if (timeoutMs !== undefined) {
      const ac = new AbortController();
      timer = new AbortController();
      signal = AbortSignal.any([ac.signal, ...signals]);
      this.clock.sleep(timeoutMs, timer.signal).then(
        () => ac.abort(stepTimeout(name, timeoutMs)),
        () => {},
      );
    } else {
      signal = signals.length === 1 ? signals[0]! : signals === this.stepSignals ? this.stepSignal : AbortSignal.any(signals);
    }
    const ab = abortPromise(signal);
    try {
      return await Promise.race([fn(this.stepContext(seq, attempt, signal, logs)), ab.promise]);
    } finally {
      ab.dispose();
      timer?.abort(DONE);
    }
  }

  // ---- the workflow context ------------------------------------------------------------------

  private context(def: WorkflowDefinition): WorkflowContext {
    const run = this.run;
    return {
      runId: run.id,
      workflow: run.workflow,
      version: run.version,
      input: run.input,
      labels: run.labels,
      now: () => this.nowOp(),
      step: (name, fn, opts) => this.stepOp(def, name, fn, opts),
      sleep: (name, ms) => this.sleepOp(name, ms),
      waitFor: (signalName, opts) => this.waitOp(signalName, opts ?? {}),
      poll: (name, fn, opts) => this.pollOp(def, name, fn, opts),
      child: (workflow, input, opts) => this.childOp(workflow, input, opts ?? {}),
      progress: (p) => this.progressOp(p),
      emit: (type, data, subject) => this.emitOp(type, data, subject),
      log: (message, data) => {
        this.engine.logger.info({ runId: run.id, ...data }, message);
        this.pendingLogs.push({ at: this.clock.now(), message, ...(data ? { data } : {}) });
      },
    };
  }

  private nowOp(): Promise<number> {
    const seq = this.seq++;
    return this.op(async () => {
      const rec = this.replay(seq, 'now', 'now');
      if (rec) return rec.output as number;
      this.checkNew();
      const t = this.clock.now();
      await this.write({ steps: [this.stepRow(seq, 'now', 'now', 'succeeded', 1, t, { output: t, finishedAt: t })] });
      return t;
    });
  }

  private emitOp(type: string, data: Record<string, unknown>, subject?: string): Promise<void> {
    const seq = this.seq++;
    const name = `emit:${type}`;
    return this.op(async () => {
      if (this.replay(seq, name, 'emit')) return;
      this.checkNew();
      const t = this.clock.now();
      await this.write({
        steps: [this.stepRow(seq, name, 'emit', 'succeeded', 1, t, { output: { type, subject: subject ?? this.id } })],
        events: [{ type, subject: subject ?? this.id, runId: this.id, data, at: t }],
      });
    });
  }

  private progressOp(p: { stage?: string; waitingFor?: string; percent?: number; message?: string }): void {
    if (this.halted || this.abandoned) return;
    const now = this.clock.now();
    this.progressState = { ...p, since: now };
    this.write({ run: { progress: JSON.stringify(this.progressState), updated_at: now } }).catch(() => {});
  }

  private stepOp<T>(def: WorkflowDefinition, name: string, fn: (sc: StepContext) => Promise<T>, opts: StepOptions<T> = {}): Promise<T> {
    const seq = this.seq++;
    return this.op(async () => {
      const rec = this.replay(seq, name, 'step');
      let attempt = 1;
      let startedAt = this.clock.now();
      if (rec) {
        if (rec.status === 'succeeded' || rec.status === 'skipped') {
          if (opts.compensate && rec.status === 'succeeded') this.comps.push({ seq, name, result: rec.output, fn: opts.compensate, retry: opts.retry });
          return rec.output as T;
        }
        if (rec.status === 'failed') throw deserializeError(rec.error!);
        // Retrying: the backoff due time is journaled.
        attempt = rec.attempts + 1;
        startedAt = rec.startedAt;
        this.checkNew();
        await this.waitUntil((rec.output as { retryAt?: number } | undefined)?.retryAt ?? 0, `retry of step ${name}`);
      }
      const policy = mergePolicy(def.retry, opts.retry);
      for (;;) {
        this.checkNew();
        const logs: StepRecord['logs'] = [];
        try {
          const out = roundTrip(await this.attempt(name, seq, attempt, fn, opts.timeoutMs, logs, this.stepSignals), `the result of step "${name}"`);
          await this.write({
            steps: [this.stepRow(seq, name, 'step', 'succeeded', attempt, startedAt, { output: out, logs })],
            events: [this.event('step.succeeded', { step: name, seq, attempts: attempt })],
          });
          if (opts.compensate) this.comps.push({ seq, name, result: out, fn: opts.compensate, retry: opts.retry });
          return out;
        } catch (e) {
          if (e === SUSPEND || e instanceof LeaseLostError || this.abandoned) throw e;
          if (this.interrupt) throw this.interruptError();
          const err = serializeError(e);
          if (!isRetryable(e, policy) || attempt >= policy.maxAttempts) {
            await this.write({
              steps: [this.stepRow(seq, name, 'step', 'failed', attempt, startedAt, { error: err, logs })],
              events: [this.event('step.failed', { step: name, seq, attempts: attempt, error: err })],
            });
            throw e instanceof InfraflowError ? e : deserializeError(err);
          }
          const delay = backoffMs(policy, attempt, this.engine.rng);
          const retryAt = this.clock.now() + delay;
          await this.write({
            steps: [this.stepRow(seq, name, 'step', 'running', attempt, startedAt, { error: err, logs, output: { retryAt }, finishedAt: null })],
            events: [this.event('step.retrying', { step: name, seq, attempt, retryAt, error: err })],
          });
          await this.waitUntil(retryAt, `retry of step ${name}`);
          attempt++;
        }
      }
    });
  }

  private sleepOp(name: string, ms: number): Promise<void> {
    const seq = this.seq++;
    return this.op(async () => {
      const rec = this.replay(seq, name, 'sleep');
      let until: number;
      if (rec) {
        until = (rec.output as { until: number }).until;
        if (until <= this.clock.now()) return;
      } else {
        this.checkNew();
        const now = this.clock.now();
        until = now + Math.max(0, ms);
        await this.write({ steps: [this.stepRow(seq, name, 'sleep', 'succeeded', 1, now, { output: { until }, finishedAt: until })] });
        // The journaled row holds the due time; losing the worker now only delays the wake-up.
        if (!this.journal.has(seq)) this.journal.set(seq, { seq, name, kind: 'sleep', status: 'succeeded', attempts: 1, output: { until }, error: null, logs: [], startedAt: now, finishedAt: until });
      }
      await this.waitUntil(until, `sleep ${name}`);
    });
  }

  private waitOp<T>(signalName: string, opts: { timeoutMs?: number; name?: string }): Promise<T> {
    const seq = this.seq++;
    const name = opts.name ?? `wait:${signalName}`;
    return this.op(async () => {
      const rec = this.replay(seq, name, 'wait');
      if (rec?.status === 'succeeded' || rec?.status === 'skipped') return rec.output as T;
      if (rec?.status === 'failed') throw deserializeError(rec.error!);
      const now = this.clock.now();
      const startedAt = rec?.startedAt ?? now;
      const deadline = rec ? ((rec.output as { deadline?: number | null } | undefined)?.deadline ?? null) : opts.timeoutMs !== undefined ? now + opts.timeoutMs : null;
      // A buffered signal (sent before or during the wait) completes it.
      const got = await this.consumeSignal(seq, signalName, (payload) => this.stepRow(seq, name, 'wait', 'succeeded', 1, startedAt, { output: payload }));
      if (got) return got.payload as T;
      if (deadline !== null && now >= deadline) {
        const err = new TimeoutError('engine.wait_timeout', `run ${this.id}: no signal "${signalName}" arrived within ${opts.timeoutMs ?? deadline - startedAt} ms`, { retryable: false, details: { signal: signalName } });
        await this.write({
          steps: [this.stepRow(seq, name, 'wait', 'failed', 1, startedAt, { error: serializeError(err) })],
          events: [this.event('step.failed', { step: name, seq, error: serializeError(err) })],
        });
        throw err;
      }
      this.checkNew();
      if (!rec) {
        await this.write({ steps: [this.stepRow(seq, name, 'wait', 'running', 1, startedAt, { output: { signal: signalName, deadline }, finishedAt: null })] });
        this.journal.set(seq, { seq, name, kind: 'wait', status: 'running', attempts: 1, output: { signal: signalName, deadline }, error: null, logs: [], startedAt, finishedAt: null });
      }
      return this.requestSuspend({ due: deadline ?? FOREVER, names: [signalName], waitingFor: `signal ${signalName}` });
    });
  }

  /** Consumes the oldest unconsumed signal `name` for this run, journaling the step row in the same transaction. */
  private async consumeSignal(seq: number, signalName: string, row: (payload: unknown) => StepRow): Promise<{ payload: unknown } | undefined> {
    const sig = await this.engine.findSignal(this.id, signalName);
    if (!sig) return undefined;
    await this.write({
      steps: [row(sig.payload)],
      extra: async (trx) => {
        await trx.updateTable('engine_signals').set({ consumed_seq: seq }).where('id', '=', sig.id).execute();
      },
    });
    return { payload: sig.payload };
  }

  private pollOp<T>(def: WorkflowDefinition, name: string, fn: (sc: StepContext) => Promise<{ done: boolean; value?: T; status?: string }>, opts: PollOptions): Promise<T> {
    const seq = this.seq++;
    return this.op(async () => {
      const rec = this.replay(seq, name, 'poll');
      if (rec?.status === 'succeeded' || rec?.status === 'skipped') return rec.output as T;
      if (rec?.status === 'failed') throw deserializeError(rec.error!);
      this.checkNew();
      const startedAt = rec?.startedAt ?? this.clock.now();
      const deadline = startedAt + opts.timeoutMs;
      const policy = mergePolicy(def.retry, opts.retry);
      let polls = 0;
      let errors = 0;
      let wroteRunning = !!rec;
      let lastStatus: string | undefined;
      for (;;) {
        this.checkNew();
        polls++;
        const logs: StepRecord['logs'] = [];
        let res: { done: boolean; value?: T; status?: string } | undefined;
        try {
          res = await this.attempt(name, seq, polls, fn, undefined, logs, this.stepSignals);
          errors = 0;
        } catch (e) {
          if (e === SUSPEND || e instanceof LeaseLostError || this.abandoned) throw e;
          if (this.interrupt) throw this.interruptError();
          errors++;
          if (!isRetryable(e, policy) || errors >= policy.maxAttempts) {
            const err = serializeError(e);
            await this.write({
              steps: [this.stepRow(seq, name, 'poll', 'failed', polls, startedAt, { error: err, logs })],
              events: [this.event('step.failed', { step: name, seq, attempts: polls, error: err })],
            });
            throw e instanceof InfraflowError ? e : deserializeError(err);
          }
        }
        if (res?.done) {
          const value = roundTrip(res.value as T, `the result of poll "${name}"`);
          await this.write({
            steps: [this.stepRow(seq, name, 'poll', 'succeeded', polls, startedAt, { output: value, logs })],
            events: [this.event('step.succeeded', { step: name, seq, attempts: polls })],
          });
          return value;
        }
        if (res?.status && res.status !== lastStatus) {
          lastStatus = res.status;
          this.progressOp({ ...(this.progressState ?? {}), stage: name, message: res.status });
        }
        const now = this.clock.now();
        if (now >= deadline) {
          const err = new TimeoutError('engine.poll_timeout', `poll "${name}" did not complete within ${opts.timeoutMs} ms${lastStatus ? ` (last status: ${lastStatus})` : ''}`, { retryable: false, details: { step: name, timeoutMs: opts.timeoutMs } });
          await this.write({
            steps: [this.stepRow(seq, name, 'poll', 'failed', polls, startedAt, { error: serializeError(err), logs })],
            events: [this.event('step.failed', { step: name, seq, attempts: polls, error: serializeError(err) })],
          });
          throw err;
        }
        if (!wroteRunning) {
          // One write per poll step (its start time, for the timeout across restarts), not one per poll.
          wroteRunning = true;
          await this.write({ steps: [this.stepRow(seq, name, 'poll', 'running', polls, startedAt, { finishedAt: null })] });
          this.journal.set(seq, { seq, name, kind: 'poll', status: 'running', attempts: polls, output: undefined, error: null, logs: [], startedAt, finishedAt: null });
        }
        const delay = errors ? backoffMs(policy, errors, this.engine.rng) : opts.intervalMs;
        await this.waitUntil(Math.min(deadline, now + delay), `poll ${name}`);
      }
    });
  }

  private childOp<O>(workflow: string, input: unknown, opts: ChildOptions & { name?: string }): Promise<O> {
    const seq = this.seq++;
    const name = opts.name ?? `child:${workflow}`;
    return this.op(async () => {
      const rec = this.replay(seq, name, 'child');
      if (rec?.status === 'succeeded' || rec?.status === 'skipped') return rec.output as O;
      if (rec?.status === 'failed') throw deserializeError(rec.error!);
      const now = this.clock.now();
      const startedAt = rec?.startedAt ?? now;
      let childId = (rec?.output as { childRunId?: string } | undefined)?.childRunId;
      if (!childId) {
        this.checkNew();
        childId = opts.id ?? `${this.id}.${seq}`;
        const row = this.engine.prepareRun(workflow, input, { id: childId, labels: opts.labels ?? {}, parentRunId: this.id });
        await this.write({
          steps: [this.stepRow(seq, name, 'child', 'running', 1, startedAt, { output: { childRunId: childId, workflow }, finishedAt: null })],
          extra: (trx) => this.engine.insertRunTx(trx, row),
        });
        this.journal.set(seq, { seq, name, kind: 'child', status: 'running', attempts: 1, output: { childRunId: childId }, error: null, logs: [], startedAt, finishedAt: null });
        this.engine.kick();
      }
      const cid = childId;
      const doneRow = (info: { status: string; output: unknown; error: SerializedError | null }): { row: StepRow; err?: InfraflowError } => {
        if (info.status === 'succeeded') return { row: this.stepRow(seq, name, 'child', 'succeeded', 1, startedAt, { output: info.output }) };
        const err = new InfraflowError(info.status === 'cancelled' ? 'engine.child_cancelled' : 'engine.child_failed', `child run ${cid} (${workflow}) ${info.status}${info.error ? `: ${info.error.code}: ${info.error.message}` : ''}`, 500, {
          retryable: false,
          details: { childRunId: cid, ...(info.error ? { cause: info.error } : {}) },
        });
        return { row: this.stepRow(seq, name, 'child', 'failed', 1, startedAt, { error: serializeError(err), output: { childRunId: cid, workflow } }), err };
      };
      const info = await this.engine.childState(cid);
      if (info && ['succeeded', 'failed', 'cancelled'].includes(info.status)) {
        const { row, err } = doneRow(info);
        const sig = await this.engine.findSignal(this.id, `child:${cid}`);
        await this.write({
          steps: [row],
          ...(sig ? { extra: async (trx: Kysely<any>) => void (await trx.updateTable('engine_signals').set({ consumed_seq: seq }).where('id', '=', sig.id).execute()) } : {}),
        });
        if (err) throw err;
        return roundTrip(info.output as O);
      }
      this.checkNew();
      return this.requestSuspend({ due: FOREVER, names: [`child:${cid}`], waitingFor: `child run ${cid}` });
    });
  }

  // ---- compensation --------------------------------------------------------------------------

  /** Runs the undos of succeeded steps in reverse order, each journaled. Returns the first failure. */
  private async compensate(): Promise<Error | null> {
    const comps = [...this.comps].sort((a, b) => b.seq - a.seq);
    for (const c of comps) {
      const seq = this.seq++;
      const name = `compensate:${c.name}`;
      const rec = this.journal.get(seq);
      if (rec) {
        if (rec.name !== name) return nondeterminism(this.id, seq, rec, { name, kind: 'compensate' });
        if (rec.status === 'succeeded' || rec.status === 'skipped') continue;
        if (rec.status === 'failed') return deserializeError(rec.error!);
      }
      const policy = mergePolicy({ maxAttempts: 5 }, c.retry);
      const startedAt = this.clock.now();
      for (let attempt = 1; ; attempt++) {
        if (this.abandoned) return null;
        const logs: StepRecord['logs'] = [];
        try {
          await this.attempt(name, seq, attempt, (sc) => c.fn(c.result, sc), undefined, logs, [this.life.signal]);
          await this.write({
            steps: [this.stepRow(seq, name, 'compensate', 'succeeded', attempt, startedAt, { logs })],
            events: [this.event('step.succeeded', { step: name, seq, attempts: attempt, compensation: true })],
          });
          break;
        } catch (e) {
          if (this.abandoned || e instanceof LeaseLostError) {
            this.abandon();
            return null;
          }
          const err = serializeError(e);
          if (!isRetryable(e, policy) || attempt >= policy.maxAttempts) {
            await this.write({
              steps: [this.stepRow(seq, name, 'compensate', 'failed', attempt, startedAt, { error: err, logs })],
              events: [this.event('step.failed', { step: name, seq, attempts: attempt, error: err, compensation: true })],
            });
            return e instanceof Error ? e : deserializeError(err);
          }
          await this.write({ events: [this.event('step.retrying', { step: name, seq, attempt, error: err, compensation: true })] });
          try {
            await this.clock.sleep(backoffMs(policy, attempt, this.engine.rng), this.life.signal);
          } catch {
            return null;
          }
        }
      }
    }
    return null;
  }
}

/** Wakes a parent waiting on this child: a signal row plus an immediate due time. */
export async function notifyParent(trx: Kysely<any>, parentId: string, childId: string, now: number): Promise<void> {
  await trx.insertInto('engine_signals').values({ run_id: parentId, name: `child:${childId}`, payload: null, created_at: now, consumed_seq: null }).execute();
  await wakeRun(trx, parentId, now);
}

/**
 * Makes a waiting run due now. Always updates (and so row-locks) the run, so it
 * serializes with a concurrent suspend of that run: either the suspend sees the
 * new signal row, or this update runs after it and sees status 'waiting'.
 */
export async function wakeRun(trx: Kysely<any>, runId: string, now: number): Promise<void> {
  await trx
    .updateTable('engine_runs')
    .set({ available_at: sql`case when status in ('waiting', 'cancelling') and lease_owner is null then cast(${now} as bigint) else available_at end` })
    .where('id', '=', runId)
    .where('available_at', 'is not', null)
    .execute();
}

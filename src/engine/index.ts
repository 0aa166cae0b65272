import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { sql, type Kysely } from 'kysely';
import type pg from 'pg';
import { Cron } from 'croner';
import { systemClock, type Clock } from '../core/clock.js';
import { ConflictError, NotFoundError, TimeoutError, ValidationError, type SerializedError } from '../core/errors.js';
import { newId } from '../core/ids.js';
import { silentLogger, type Logger } from '../core/log.js';
import { seededRng, type Rng } from '../core/rng.js';
import type { Store } from '../store/store.js';
import { invalidInput, runFinished, runNotFound, workflowNotFound } from './errors.js';
import { DONE, FOREVER, notifyParent, parseJson, RunExecution, toJournalEntry, wakeRun, type JournalEntry, type LoadedRun } from './execution.js';
import { EVENTS_LOCK, GroupWriter, insertEvents, limitIdleInTransaction, preparedName, type EventInput, type StepRow } from './writer.js';
import {
  TERMINAL_STATUSES,
  type EngineApi,
  type EngineEvent,
  type EventFilter,
  type HistoryEntry,
  type OverlapPolicy,
  type RunFilter,
  type RunInfo,
  type RunStatus,
  type ScheduleSpec,
  type StartOptions,
  type StepRecord,
  type TriggerSpec,
  type WorkflowDefinition,
} from './types.js';

export * from './types.js';
export { engineMigrations } from './schema.js';
export { FOREVER } from './execution.js';

/** PostgreSQL LISTEN/NOTIFY channel: workers of other processes wake at once instead of at their next poll. */
export const NOTIFY_CHANNEL = 'infraflow_engine';

export interface QueueLimits {
  /** Runs of this queue in progress at once (across all workers). */
  concurrency: number;
  /** Runs with the same concurrency key in progress at once (default 1). */
  perKey?: number;
}

export interface EngineOptions {
  store: Store;
  clock?: Clock;
  logger?: Logger;
  /** Unique per process; default `<hostname-ish>-<random>`. */
  workerId?: string;
  /** Runs this worker executes at once. Default 64. */
  concurrency?: number;
  /** Lease length; a worker that stops heartbeating loses its runs after this. Default 30 s. */
  leaseMs?: number;
  heartbeatMs?: number;
  /** How often an idle worker looks for work from other processes (real milliseconds). Default 250. */
  pollMs?: number;
  queues?: Record<string, QueueLimits>;
  rng?: Rng;
  /** Waits up to this long (clock ms) are held in memory; longer ones suspend the run. Default 1000. */
  holdMs?: number;
  /** Graceful stop waits this long (real ms) for in-flight steps before handing runs back. Default leaseMs. */
  drainTimeoutMs?: number;
}

export interface PreparedRun {
  row: Record<string, unknown>;
  labels: Record<string, string>;
  event: EventInput;
  /** Set when the run is inserted already leased to this worker (see Engine.start): its run.started event. */
  started?: EventInput;
}

const ACTIVE_STATUSES = ['running', 'waiting', 'cancelling'];
/**
 * PostgreSQL: every worker holds a session advisory lock (this class, the
 * hash of its id) on its LISTEN connection for as long as it lives. When its
 * process dies, PostgreSQL ends the session and the lock goes with it, so
 * another worker that can take the lock knows the worker is dead and takes
 * its runs over at once instead of waiting for the leases to expire.
 */
const WORKER_LOCK_CLASS = 0x1f10_a11e;
/** Workers running in this process, by store (a test may run several engines on one store). */
const localWorkers = new WeakMap<Store, Set<string>>();
const CLAIM_LOCK = 0x1f10_c1a1;

function matches(f: EventFilter, e: EngineEvent): boolean {
  if (f.afterSeq !== undefined && e.seq <= f.afterSeq) return false;
  if (f.types && f.types.length && !f.types.includes(e.type)) return false;
  if (f.typePrefix && !e.type.startsWith(f.typePrefix)) return false;
  if (f.subject !== undefined && e.subject !== f.subject) return false;
  return true;
}

function triggerMatches(t: TriggerSpec, e: EngineEvent): boolean {
  const ok = t.eventType.endsWith('*') ? e.type.startsWith(t.eventType.slice(0, -1)) : e.type === t.eventType;
  return ok && (t.subject === undefined || t.subject === e.subject);
}

function nextFire(cron: string, timezone: string | undefined | null, after: number): number | null {
  const c = new Cron(cron, { ...(timezone ? { timezone } : {}), paused: true });
  const d = c.nextRun(new Date(after));
  return d ? d.getTime() : null;
}

function toRunInfo(r: any): RunInfo {
  return {
    id: r.id,
    workflow: r.workflow,
    version: Number(r.version),
    status: r.status as RunStatus,
    input: parseJson(r.input),
    ...(r.output !== null && r.output !== undefined ? { output: parseJson(r.output) } : {}),
    ...(r.error ? { error: parseJson(r.error) as SerializedError } : {}),
    labels: (parseJson(r.labels) as Record<string, string>) ?? {},
    queue: r.queue,
    concurrencyKey: r.concurrency_key ?? null,
    parentRunId: r.parent_run_id ?? null,
    progress: (parseJson(r.progress) as RunInfo['progress']) ?? null,
    createdAt: Number(r.created_at),
    startedAt: r.started_at === null ? null : Number(r.started_at),
    finishedAt: r.finished_at === null ? null : Number(r.finished_at),
    updatedAt: Number(r.updated_at),
    worker: r.worker ?? null,
    takenOverAt: r.taken_over_at === null || r.taken_over_at === undefined ? null : Number(r.taken_over_at),
    takenOverFrom: r.taken_over_from ?? null,
  };
}

/** A run row (as claimed, or as inserted leased) as an execution loads it. */
function toLoadedRun(r: any): LoadedRun {
  return {
    id: r.id,
    workflow: r.workflow,
    version: Number(r.version),
    status: r.status,
    input: parseJson(r.input),
    labels: (parseJson(r.labels) as Record<string, string>) ?? {},
    queue: r.queue,
    concurrencyKey: r.concurrency_key,
    parentRunId: r.parent_run_id,
    deadlineAt: r.deadline_at === null ? null : Number(r.deadline_at),
    timeoutMs: r.timeout_ms === null ? null : Number(r.timeout_ms),
    epoch: Number(r.lease_epoch),
    cancelRequested: Number(r.cancel_requested) === 1,
    cancelReason: r.cancel_reason,
    progress: (parseJson(r.progress) as Record<string, unknown>) ?? null,
  };
}

function toEvent(r: any): EngineEvent {
  return { seq: Number(r.seq), type: r.type, subject: r.subject, runId: r.run_id ?? null, data: parseJson(r.data) as Record<string, unknown>, at: Number(r.at) };
}

/**
 * The durable workflow engine. See docs/engine.md for guarantees.
 *
 * One `Engine` per process: it registers workflows, starts runs, and (after
 * `startWorker()`) claims runnable runs with leases, executes them, and
 * journals every step through a group-commit writer.
 */
export class Engine implements EngineApi {
  readonly store: Store;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly workerId: string;
  readonly rng: Rng;
  readonly concurrency: number;
  readonly leaseMs: number;
  readonly heartbeatMs: number;
  readonly pollMs: number;
  readonly holdMs: number;
  readonly drainTimeoutMs: number;
  readonly queues: Record<string, QueueLimits>;
  /** @internal */
  readonly writer: GroupWriter;
  private readonly db: Kysely<any>;
  private readonly defs = new Map<string, Map<number, WorkflowDefinition>>();
  private readonly active = new Map<string, RunExecution>();
  private readonly subscribers = new Set<{ filter: EventFilter; fn: (e: EngineEvent) => void; remote: boolean }>();
  /** Highest event seq delivered to subscribers (null until known). */
  private tailSeq: number | null = null;
  private tailRunning: Promise<void> | null = null;
  private tailAgain = false;
  /** Engine time of the first remote subscription: the tail starts with the events created from then on. */
  private tailFrom: number | null = null;
  private tailTimer: NodeJS.Timeout | null = null;
  private readonly triggers = new Map<string, TriggerSpec & { registeredAt: number }>();
  private running = false;
  /** @internal */
  draining = false;
  private kicked = false;
  private kickResolve: (() => void) | null = null;
  private loopDone: Promise<void> | null = null;
  private heartbeatDone: Promise<void> | null = null;
  private listenDone: Promise<void> | null = null;
  private stopAc = new AbortController();
  private heartbeatOn = false;
  private nextHousekeeping = 0;
  private nextDueCheck = 0;
  private triggersDirty = true;
  private earliestDue = FOREVER;

  constructor(opts: EngineOptions) {
    this.store = opts.store;
    this.db = opts.store.db as unknown as Kysely<any>;
    this.clock = opts.clock ?? systemClock;
    this.logger = (opts.logger ?? silentLogger).child({ component: 'engine' });
    // host-pid-nonce: says which process executes a run (API, CLI describe, logs)
    this.workerId = opts.workerId ?? `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
    this.rng = opts.rng ?? seededRng(Number.parseInt(randomBytes(4).toString('hex'), 16));
    this.concurrency = opts.concurrency ?? 64;
    this.leaseMs = opts.leaseMs ?? 30_000;
    this.heartbeatMs = opts.heartbeatMs ?? Math.max(1, Math.floor(this.leaseMs / 3));
    this.pollMs = opts.pollMs ?? 250;
    this.holdMs = opts.holdMs ?? 1000;
    this.drainTimeoutMs = opts.drainTimeoutMs ?? this.leaseMs;
    this.queues = opts.queues ?? {};
    this.writer = new GroupWriter(this.store, this.workerId, (evs) => this.dispatch(evs));
    this.writer.idleInTransactionMs = this.leaseMs;
  }

  // ---- registry ------------------------------------------------------------------------------

  register(def: WorkflowDefinition): void {
    if (!def.name || !/^[A-Za-z0-9_.:/-]+$/.test(def.name)) throw new ValidationError('engine.invalid_workflow', `workflow name "${def.name}" is invalid: use letters, digits and . _ : / -`);
    if (!Number.isInteger(def.version) || def.version < 1) throw new ValidationError('engine.invalid_workflow', `workflow "${def.name}" needs an integer version >= 1`);
    let m = this.defs.get(def.name);
    if (!m) this.defs.set(def.name, (m = new Map()));
    m.set(def.version, def);
  }

  /** @internal */
  registeredVersions(name: string): number[] {
    return [...(this.defs.get(name)?.keys() ?? [])].sort((a, b) => a - b);
  }

  private latest(name: string): WorkflowDefinition {
    const m = this.defs.get(name);
    if (!m || m.size === 0) throw workflowNotFound(name, [...this.defs.keys()]);
    return m.get(Math.max(...m.keys()))!;
  }

  // ---- starting runs -------------------------------------------------------------------------

  /** @internal Validates and builds the row for a new run. */
  prepareRun(workflow: string, input: unknown, opts: StartOptions & { parentRunId?: string | null } = {}): PreparedRun {
    const def = this.latest(workflow);
    let value = input;
    if (def.input) {
      const r = def.input.safeParse(input);
      if (!r.success) throw invalidInput(workflow, r.error.issues);
      value = r.data;
    }
    const now = this.clock.now();
    const id = opts.id ?? newId('run', now);
    if (id.length > 200) throw new ValidationError('engine.invalid_run_id', `run id is ${id.length} characters long; use at most 200`);
    const labels = opts.labels ?? {};
    let inputText: string;
    try {
      inputText = JSON.stringify(value ?? null);
    } catch (e) {
      throw new ValidationError('engine.invalid_input', `input for workflow "${workflow}" is not JSON-serializable (${(e as Error).message}); pass plain data`, { details: { workflow } });
    }
    for (const [k, v] of Object.entries(labels)) {
      if (typeof v !== 'string') throw new ValidationError('engine.invalid_labels', `label "${k}" must be a string`, { details: { label: k } });
    }
    const queue = opts.queue ?? def.queue ?? 'default';
    const concurrencyKey = opts.concurrencyKey ?? def.concurrencyKey?.(value as never) ?? null;
    return {
      labels,
      row: {
        id,
        workflow,
        version: def.version,
        status: 'pending',
        input: inputText,
        output: null,
        error: null,
        labels: JSON.stringify(labels),
        queue,
        concurrency_key: concurrencyKey,
        parent_run_id: opts.parentRunId ?? null,
        progress: null,
        created_at: now,
        started_at: null,
        finished_at: null,
        updated_at: now,
        available_at: opts.startAt ?? now,
        timeout_ms: def.timeoutMs ?? null,
        deadline_at: null,
        lease_owner: null,
        lease_epoch: 0,
        lease_expires_at: null,
        cancel_requested: 0,
        cancel_reason: null,
        worker: null,
        taken_over_at: null,
        taken_over_from: null,
      },
      event: { type: 'run.created', subject: id, runId: id, data: { workflow, version: def.version, ...(opts.parentRunId ? { parentRunId: opts.parentRunId } : {}) }, at: now },
    };
  }

  private insertLabelStmt: import('better-sqlite3').Statement | undefined;

  /** SQLite: insertRunTx on the raw handle (the caller holds the transaction). */
  private insertRunSync(p: PreparedRun): EventInput[] {
    const raw = this.store.sqlite!;
    const cols = Object.keys(p.row);
    this.insertRunStmt ??= raw.prepare(`insert into engine_runs (${cols.join(', ')}) values (${cols.map(() => '?').join(', ')}) on conflict (id) do nothing`);
    if (this.insertRunStmt.run(...cols.map((c) => p.row[c])).changes === 0) return [];
    const entries = Object.entries(p.labels);
    if (entries.length) {
      this.insertLabelStmt ??= raw.prepare('insert into engine_run_labels (run_id, key, value) values (?, ?, ?)');
      for (const [key, value] of entries) this.insertLabelStmt.run(p.row.id, key, value);
    }
    return p.started ? [p.event, p.started] : [p.event];
  }

  /** @internal Inserts a run unless its id exists; returns the run.created event if inserted. */
  async insertRunTx(trx: Kysely<any>, p: PreparedRun): Promise<EventInput[]> {
    const raw = this.store.sqlite;
    if (raw) {
      // Inside the caller's transaction (same connection): a cached statement.
      const cols = Object.keys(p.row);
      this.insertRunStmt ??= raw.prepare(`insert into engine_runs (${cols.join(', ')}) values (${cols.map(() => '?').join(', ')}) on conflict (id) do nothing`);
      if (this.insertRunStmt.run(...cols.map((c) => p.row[c])).changes === 0) return [];
    } else {
      const res = await trx.insertInto('engine_runs').values(p.row).onConflict((oc) => oc.column('id').doNothing()).returning('id').execute();
      if (!res.length) return [];
    }
    const entries = Object.entries(p.labels);
    if (entries.length) await trx.insertInto('engine_run_labels').values(entries.map(([key, value]) => ({ run_id: p.row.id, key, value }))).execute();
    return p.started ? [p.event, p.started] : [p.event];
  }

  private async startPg(p: PreparedRun): Promise<boolean> {
    const cols = Object.keys(p.row);
    const labels = Object.entries(p.labels);
    const n = cols.length;
    const evs = p.started ? [p.event, p.started] : [p.event];
    // a run leased to this worker already is not announced to other workers
    const notify = p.started ? '' : `,
      nt as (select pg_notify('${NOTIFY_CHANNEL}', 'run') from ins)`;
    const text = `with ins as (insert into engine_runs (${cols.join(', ')}) values (${cols.map((_, i) => `$${i + 1}`).join(', ')}) on conflict (id) do nothing returning id),
      lab as (insert into engine_run_labels (run_id, key, value) select ins.id, x.k, x.v from ins, unnest($${n + 1}::text[], $${n + 2}::text[]) as x(k, v) returning 1),
      l as materialized (select pg_advisory_xact_lock($${n + 3}) as x from ins),
      ev as (insert into engine_events (type, subject, run_id, data, at)
        select e.type, e.subject, e.run_id, e.data, e.at from l, unnest($${n + 4}::text[], $${n + 5}::text[], $${n + 6}::text[], $${n + 7}::text[], $${n + 8}::bigint[]) with ordinality as e(type, subject, run_id, data, at, ord)
        order by e.ord returning seq)${notify}
      select 'i' as k, id as v from ins union all select 'e', seq::text from ev union all select 'l', count(*)::text from lab${p.started ? '' : ` union all select 'n', '' from nt`}`;
    const res = await this.store.pool!.query({ name: preparedName(text), text, values: [
      ...cols.map((c) => p.row[c]), labels.map((x) => x[0]), labels.map((x) => x[1]), EVENTS_LOCK,
      evs.map((e) => e.type), evs.map((e) => e.subject), evs.map((e) => e.runId ?? null), evs.map((e) => JSON.stringify(e.data)), evs.map((e) => e.at),
    ] });
    const seqs = (res.rows as { k: string; v: string }[]).filter((r) => r.k === 'e').map((r) => Number(r.v)).sort((a, b) => a - b);
    if (!seqs.length) return false;
    this.dispatch(evs.map((e, i) => ({ seq: seqs[i]!, type: e.type, subject: e.subject, runId: e.runId ?? null, data: e.data, at: e.at })));
    return true;
  }

  /**
   * A run this worker can execute at once: the worker runs and has a free
   * slot, the run is due now, and no queue or concurrency-key limit applies
   * (those are decided by the claim, which counts what runs everywhere).
   * Such a run is inserted already leased to this worker (status running,
   * run.created and run.started in the one transaction) and starts executing
   * without a claim transaction or a wake-up of the worker loop.
   */
  private leaseAtStart(p: PreparedRun): boolean {
    const r = p.row;
    if (!this.running || this.draining || this.active.size + this.starting >= this.concurrency) return false;
    if (r.concurrency_key !== null || this.queueLimit(r.queue as string) || (r.available_at as number) > (r.created_at as number)) return false;
    if (!this.defs.get(r.workflow as string)?.has(r.version as number)) return false;
    const now = r.created_at as number;
    Object.assign(r, {
      status: 'running',
      started_at: now,
      lease_owner: this.workerId,
      lease_epoch: 1,
      lease_expires_at: now + this.leaseMs,
      deadline_at: r.timeout_ms === null ? null : now + (r.timeout_ms as number),
      worker: this.workerId,
    });
    p.started = { type: 'run.started', subject: r.id as string, runId: r.id as string, data: { workflow: r.workflow, worker: this.workerId }, at: now };
    return true;
  }

  /** Runs leased at start whose execution has not been created yet (they hold a slot). */
  private starting = 0;

  async start<I>(workflow: string, input: I, opts: StartOptions = {}): Promise<RunInfo> {
    const p = this.prepareRun(workflow, input, opts);
    const here = this.leaseAtStart(p);
    if (here) this.starting++;
    try {
      return await this.insertAndStart(p, workflow, here);
    } finally {
      if (here) this.starting--;
    }
  }

  private async insertAndStart(p: PreparedRun, workflow: string, here: boolean): Promise<RunInfo> {
    let inserted = false;
    if (this.store.pool) {
      // PostgreSQL: one statement on its own connection, alongside the group-commit flush.
      inserted = await this.startPg(p);
    } else {
      // SQLite: cached statements inside the writer's synchronous transaction
      await this.writer.submit({
        extraSync: () => {
          const evs = this.insertRunSync(p);
          inserted = evs.length > 0;
          return evs;
        },
      });
    }
    if (inserted && here) {
      this.execute(toLoadedRun(p.row), new Map());
      return toRunInfo(p.row);
    }
    if (inserted) {
      this.mayBeWaiting = true;
      this.kick();
      return toRunInfo(p.row);
    }
    const existing = await this.get(p.row.id as string);
    if (existing.workflow !== workflow) {
      throw new ConflictError('engine.run_id_conflict', `run id ${existing.id} is already used by a run of workflow "${existing.workflow}"; choose another id`, { details: { runId: existing.id } });
    }
    return existing;
  }

  // ---- reading -------------------------------------------------------------------------------

  private insertRunStmt: import('better-sqlite3').Statement | undefined;
  private getRunStmt: import('better-sqlite3').Statement | undefined;

  private async row(runId: string): Promise<any> {
    const raw = this.store.sqlite;
    const r = raw
      ? await this.store.db.connection().execute(async () => (this.getRunStmt ??= raw.prepare('select * from engine_runs where id = ?')).get(runId))
      : await this.db.selectFrom('engine_runs').selectAll().where('id', '=', runId).executeTakeFirst();
    if (!r) throw runNotFound(runId);
    return r;
  }

  async get(runId: string): Promise<RunInfo> {
    return toRunInfo(await this.row(runId));
  }

  async list(filter: RunFilter = {}): Promise<RunInfo[]> {
    let q = this.db.selectFrom('engine_runs as r').selectAll('r');
    if (filter.workflow) q = q.where('r.workflow', '=', filter.workflow);
    if (filter.status) q = q.where('r.status', 'in', Array.isArray(filter.status) ? filter.status : [filter.status]);
    if (filter.createdAfter !== undefined) q = q.where('r.created_at', '>=', filter.createdAfter);
    if (filter.createdBefore !== undefined) q = q.where('r.created_at', '<', filter.createdBefore);
    if (filter.parentRunId) q = q.where('r.parent_run_id', '=', filter.parentRunId);
    if (filter.after) q = q.where('r.id', '>', filter.after);
    for (const [k, v] of Object.entries(filter.labels ?? {})) {
      q = q.where((eb) => eb.exists(eb.selectFrom('engine_run_labels as l').select('l.run_id').whereRef('l.run_id', '=', 'r.id').where('l.key', '=', k).where('l.value', '=', v)));
    }
    const rows = await q.orderBy('r.id').limit(Math.min(Math.max(filter.limit ?? 100, 1), 1000)).execute();
    return rows.map(toRunInfo);
  }

  async timeline(runId: string): Promise<StepRecord[]> {
    await this.row(runId);
    const rows = await this.db.selectFrom('engine_steps').selectAll().where('run_id', '=', runId).orderBy('seq').execute();
    return rows.map((r: any) => {
      const j = toJournalEntry(r);
      return {
        runId,
        seq: j.seq,
        name: j.name,
        kind: j.kind,
        status: j.status,
        attempts: j.attempts,
        ...(j.output !== undefined ? { output: j.output } : {}),
        ...(j.error ? { error: j.error } : {}),
        logs: j.logs,
        startedAt: j.startedAt,
        finishedAt: j.finishedAt,
        worker: (r.worker as string | null) ?? null,
      };
    });
  }

  /** Operator actions on a run (retry, skip), oldest first. */
  async history(runId: string): Promise<HistoryEntry[]> {
    const rows = await this.db.selectFrom('engine_history').selectAll().where('run_id', '=', runId).orderBy('id').execute();
    return rows.map((r: any) => ({ runId: r.run_id, actor: r.actor, action: r.action, data: (parseJson(r.data) as Record<string, unknown>) ?? null, at: Number(r.at) }));
  }

  async result(runId: string, opts: { timeoutMs?: number } = {}): Promise<RunInfo> {
    const deadline = opts.timeoutMs !== undefined ? this.clock.now() + opts.timeoutMs : undefined;
    const timeoutAc = new AbortController();
    let timedOut = false;
    const clockTimeout = deadline !== undefined ? this.clock.sleep(deadline - this.clock.now(), timeoutAc.signal).then(() => void (timedOut = true), () => {}) : null;
    try {
      for (;;) {
        let wake!: () => void;
        const woke = new Promise<void>((r) => (wake = r));
        const unsub = this.subscribe(
          { subject: runId, typePrefix: 'run.' },
          (e) => {
            if (e.type === 'run.succeeded' || e.type === 'run.failed' || e.type === 'run.cancelled') wake();
          },
          { remote: false },
        );
        try {
          const info = await this.get(runId);
          if (TERMINAL_STATUSES.includes(info.status)) return info;
          if (timedOut) throw new TimeoutError('engine.result_timeout', `run ${runId} did not finish within ${opts.timeoutMs} ms (status ${info.status}); wait longer or check engine.timeline()`, { details: { runId, status: info.status } });
          let t: NodeJS.Timeout | undefined;
          await Promise.race([woke, new Promise<void>((r) => (t = setTimeout(r, this.pollMs))), ...(clockTimeout ? [clockTimeout] : [])]);
          clearTimeout(t);
        } finally {
          unsub();
        }
      }
    } finally {
      timeoutAc.abort(DONE);
    }
  }

  // ---- signals, cancel, operator actions -----------------------------------------------------

  /** @internal */
  async findSignal(runId: string, name: string): Promise<{ id: number; payload: unknown } | undefined> {
    const r = await this.db.selectFrom('engine_signals').select(['id', 'payload']).where('run_id', '=', runId).where('name', '=', name).where('consumed_seq', 'is', null).orderBy('id').limit(1).executeTakeFirst();
    return r ? { id: Number(r.id), payload: parseJson(r.payload) } : undefined;
  }

  /** @internal */
  async childState(childId: string): Promise<{ status: string; output: unknown; error: SerializedError | null } | undefined> {
    const r = await this.db.selectFrom('engine_runs').select(['status', 'output', 'error']).where('id', '=', childId).executeTakeFirst();
    return r ? { status: r.status, output: parseJson(r.output), error: (parseJson(r.error) as SerializedError) ?? null } : undefined;
  }

  async signal(runId: string, name: string, payload?: unknown): Promise<void> {
    const r = await this.row(runId);
    if (TERMINAL_STATUSES.includes(r.status)) throw runFinished(runId, r.status, `signal "${name}" to`);
    if (!name || name.startsWith('child:')) throw new ValidationError('engine.invalid_signal', `signal name "${name}" is invalid: use a non-empty name not starting with "child:"`);
    const now = this.clock.now();
    await this.tx(async (trx) => {
      await trx.insertInto('engine_signals').values({ run_id: runId, name, payload: payload === undefined ? null : JSON.stringify(payload), created_at: now, consumed_seq: null }).execute();
      await wakeRun(trx, runId, now);
      return [{ type: 'run.signalled', subject: runId, runId, data: { signal: name }, at: now }];
    }, 'run');
    this.kick();
  }

  /**
   * Cancels a run: pending runs end at once; running or waiting runs abort their
   * current step, run their compensations in reverse order, then end `cancelled`.
   * Cancelling a run that is already cancelled or cancelling is an idempotent
   * success (returns the run); cancelling a succeeded or failed run fails with
   * `engine.run_finished`. Child runs are cancelled with their parent.
   */
  async cancel(runId: string, reason?: string): Promise<RunInfo> {
    const r = await this.row(runId);
    if (r.status === 'cancelled' || r.status === 'cancelling' || Number(r.cancel_requested) === 1) return toRunInfo(r);
    if (TERMINAL_STATUSES.includes(r.status)) throw runFinished(runId, r.status, 'cancel');
    const now = this.clock.now();
    await this.tx(async (trx) => {
      const err = { name: 'InfraflowError', code: 'engine.cancelled', message: `run ${runId} was cancelled${reason ? `: ${reason}` : ''}`, retryable: false };
      const direct = await trx
        .updateTable('engine_runs')
        .set({ status: 'cancelled', finished_at: now, updated_at: now, available_at: null, cancel_requested: 1, cancel_reason: reason ?? null, error: JSON.stringify(err) })
        .where('id', '=', runId)
        .where('status', '=', 'pending')
        .where('lease_owner', 'is', null)
        .executeTakeFirst();
      if (Number(direct.numUpdatedRows) > 0) {
        if (r.parent_run_id) await notifyParent(trx, r.parent_run_id, runId, now);
        return [{ type: 'run.cancelled', subject: runId, runId, data: { workflow: r.workflow, error: err, ...(reason ? { reason } : {}) }, at: now }];
      }
      await trx
        .updateTable('engine_runs')
        .set({
          cancel_requested: 1,
          cancel_reason: reason ?? null,
          updated_at: now,
          status: sql`case when status = 'waiting' then 'cancelling' else status end`,
          available_at: sql`case when lease_owner is null then cast(${now} as bigint) else available_at end`,
        })
        .where('id', '=', runId)
        .where('available_at', 'is not', null)
        .execute();
      return [{ type: 'run.cancelling', subject: runId, runId, data: { workflow: r.workflow, ...(reason ? { reason } : {}) }, at: now }];
    }, `cancel:${runId}`);
    this.active.get(runId)?.interruptWith('cancel', reason ?? null);
    const children = await this.db.selectFrom('engine_runs').select('id').where('parent_run_id', '=', runId).where('available_at', 'is not', null).execute();
    for (const c of children) {
      try {
        await this.cancel(c.id, `parent run ${runId} was cancelled`);
      } catch {
        /* finished meanwhile */
      }
    }
    this.kick();
    return this.get(runId);
  }

  private assertResumable(r: any, steps: JournalEntry[], action: string): void {
    if (!this.defs.get(r.workflow)?.has(Number(r.version))) {
      throw new ConflictError(
        'engine.version_mismatch',
        `cannot ${action} run ${r.id}: it was started with workflow "${r.workflow}" version ${r.version}, which this process does not have (registered: ${this.registeredVersions(r.workflow).join(', ') || 'none'}); keep old versions registered until their runs drain, or start a new run`,
        { details: { runId: r.id, workflow: r.workflow, version: Number(r.version) } },
      );
    }
    if (steps.some((s) => s.kind === 'compensate' && s.status === 'succeeded')) {
      throw new ConflictError('engine.already_compensated', `cannot ${action} run ${r.id}: its compensations already undid completed steps; start a new run instead`, { details: { runId: r.id } });
    }
  }

  private async journalOf(runId: string): Promise<JournalEntry[]> {
    const rows = await this.db.selectFrom('engine_steps').selectAll().where('run_id', '=', runId).orderBy('seq').execute();
    return rows.map((r: any) => toJournalEntry(r));
  }

  private reopen(now: number): Record<string, unknown> {
    return {
      status: 'waiting',
      error: null,
      output: null,
      finished_at: null,
      available_at: now,
      updated_at: now,
      cancel_requested: 0,
      cancel_reason: null,
      lease_owner: null,
      lease_expires_at: null,
      deadline_at: sql`case when timeout_ms is null then null else cast(${now} as bigint) + timeout_ms end`,
    };
  }

  async retry(runId: string, opts: { actor?: string } = {}): Promise<RunInfo> {
    const r = await this.row(runId);
    if (r.status !== 'failed') throw new ConflictError('engine.run_not_failed', `run ${runId} is ${r.status}; only failed runs can be retried`, { details: { runId, status: r.status } });
    const steps = await this.journalOf(runId);
    this.assertResumable(r, steps, 'retry');
    const failed = steps.filter((s) => s.status === 'failed' && s.kind !== 'compensate').at(-1);
    const firstComp = steps.find((s) => s.kind === 'compensate');
    const fromSeq = failed?.seq ?? firstComp?.seq;
    // A failed child step: retry the child run too, and wait for it again.
    const childId = failed?.kind === 'child' ? (failed.output as { childRunId?: string } | undefined)?.childRunId : undefined;
    if (childId) {
      const child = await this.row(childId);
      if (child.status !== 'failed') throw new ConflictError('engine.run_not_failed', `cannot retry run ${runId}: its child run ${childId} is ${child.status}, not failed; start a new run instead`, { details: { runId, childRunId: childId } });
      await this.retry(childId, opts);
    }
    const now = this.clock.now();
    const actor = opts.actor ?? 'system';
    await this.tx(async (trx) => {
      if (childId && failed) {
        await trx.deleteFrom('engine_steps').where('run_id', '=', runId).where('seq', '>', failed.seq).execute();
        await trx.updateTable('engine_steps').set({ status: 'running', error: null, finished_at: null }).where('run_id', '=', runId).where('seq', '=', failed.seq).execute();
        // The child's old completion notice was consumed; the retried child sends a new one.
      } else if (fromSeq !== undefined) await trx.deleteFrom('engine_steps').where('run_id', '=', runId).where('seq', '>=', fromSeq).execute();
      const u = await trx.updateTable('engine_runs').set(this.reopen(now)).where('id', '=', runId).where('status', '=', 'failed').executeTakeFirst();
      if (Number(u.numUpdatedRows) === 0) throw new ConflictError('engine.run_not_failed', `run ${runId} changed state meanwhile; reload it and try again`);
      await trx.insertInto('engine_history').values({ run_id: runId, actor, action: 'retry', data: JSON.stringify({ fromSeq: fromSeq ?? null, step: failed?.name ?? null }), at: now }).execute();
      return [{ type: 'run.retried', subject: runId, runId, data: { actor, step: failed?.name ?? null }, at: now }];
    }, 'run');
    this.kick();
    return this.get(runId);
  }

  async skipStep(runId: string, stepName: string, result: unknown, opts: { actor?: string } = {}): Promise<RunInfo> {
    const r = await this.row(runId);
    if (TERMINAL_STATUSES.includes(r.status) && r.status !== 'failed') throw runFinished(runId, r.status, `skip step "${stepName}" of`);
    const steps = await this.journalOf(runId);
    const target = steps.filter((s) => s.name === stepName && s.kind !== 'compensate' && (s.status === 'failed' || s.status === 'running')).at(-1);
    if (!target) {
      throw new NotFoundError('engine.step_not_found', `run ${runId} has no failed or retrying step named "${stepName}" (steps: ${steps.map((s) => `${s.name}=${s.status}`).join(', ') || 'none'})`, { details: { runId, step: stepName } });
    }
    if (r.status === 'failed') this.assertResumable(r, steps, 'skip a step of');
    else if (r.lease_owner) throw new ConflictError('engine.run_busy', `run ${runId} is executing on worker ${r.lease_owner}; skip the step once the run waits or fails`, { details: { runId } });
    const now = this.clock.now();
    const actor = opts.actor ?? 'system';
    await this.tx(async (trx) => {
      await trx.deleteFrom('engine_steps').where('run_id', '=', runId).where('seq', '>', target.seq).execute();
      await trx.updateTable('engine_steps').set({ status: 'skipped', output: result === undefined ? null : JSON.stringify(result), finished_at: now }).where('run_id', '=', runId).where('seq', '=', target.seq).execute();
      const u =
        r.status === 'failed'
          ? await trx.updateTable('engine_runs').set(this.reopen(now)).where('id', '=', runId).where('status', '=', 'failed').executeTakeFirst()
          : await trx.updateTable('engine_runs').set({ available_at: now, updated_at: now }).where('id', '=', runId).where('lease_owner', 'is', null).where('available_at', 'is not', null).executeTakeFirst();
      if (Number(u.numUpdatedRows) === 0) throw new ConflictError('engine.run_busy', `run ${runId} changed state meanwhile; reload it and try again`);
      await trx.insertInto('engine_history').values({ run_id: runId, actor, action: 'skip_step', data: JSON.stringify({ step: stepName, seq: target.seq, result: result ?? null }), at: now }).execute();
      return [{ type: 'run.step_skipped', subject: runId, runId, data: { actor, step: stepName, seq: target.seq }, at: now }];
    }, 'run');
    this.kick();
    return this.get(runId);
  }

  // ---- events --------------------------------------------------------------------------------

  /** Runs `fn` in a write transaction; events it returns are inserted last and dispatched after commit. */
  /**
   * One transaction with its events. `notify` (PostgreSQL): tell the other
   * processes' workers at commit (LISTEN/NOTIFY) — `run` when a run became
   * due, `cancel:<id>` when a running run must stop.
   */
  private async tx(fn: (trx: Kysely<any>) => Promise<EventInput[] | void>, notify?: string): Promise<EngineEvent[]> {
    const evs = await this.store.transaction(async (trx0) => {
      const trx = trx0 as unknown as Kysely<any>;
      await limitIdleInTransaction(trx, this.store.dialect, this.leaseMs);
      const more = (await fn(trx)) ?? [];
      if (notify && this.store.dialect === 'postgres') await sql`select pg_notify(${NOTIFY_CHANNEL}, ${notify})`.execute(trx);
      return insertEvents(trx, this.store.dialect, more);
    });
    if (evs.length) this.dispatch(evs);
    return evs;
  }

  /**
   * Called after every local commit with its events. Subscribers get events in
   * seq order: a batch that continues the delivered sequence is delivered at
   * once; otherwise (a gap: another process's events, a concurrent local
   * commit, a rolled-back seq) the missing range is read from the table. Seq
   * order is commit order (see insertEvents), so once seq n is visible every
   * lower seq is final.
   */
  private dispatch(evs: EngineEvent[]): void {
    if (!evs.length) return;
    const sorted = [...evs].sort((a, b) => a.seq - b.seq);
    if (this.tailSeq === null) {
      // where remote subscribers start is being read from the table: let the tail deliver these too
      if (this.tailFrom !== null) return this.requestTail();
      this.tailSeq = sorted[0]!.seq - 1;
    }
    const contiguous = sorted.every((e, i) => e.seq === this.tailSeq! + 1 + i);
    if (contiguous && !this.tailRunning) this.deliver(sorted);
    else if (sorted.at(-1)!.seq > this.tailSeq) this.requestTail();
  }

  private deliver(evs: EngineEvent[]): void {
    let triggers = false;
    for (const e of evs) {
      if (this.tailSeq !== null && e.seq <= this.tailSeq) continue;
      this.tailSeq = e.seq;
      for (const s of this.subscribers) {
        if (!matches(s.filter, e)) continue;
        try {
          s.fn(e);
        } catch (err) {
          this.logger.warn({ err }, 'event subscriber threw');
        }
      }
      if (!triggers && this.triggers.size && [...this.triggers.values()].some((t) => triggerMatches(t, e))) triggers = true;
    }
    if (triggers) {
      this.triggersDirty = true;
      this.kick();
    }
  }

  /** Reads events after the last delivered seq from the table and delivers them in order. */
  private requestTail(): void {
    if (this.tailRunning) {
      this.tailAgain = true;
      return;
    }
    this.tailRunning = (async () => {
      do {
        this.tailAgain = false;
        try {
          if (this.tailSeq === null) {
            // start after the events created before the first remote subscription, not after
            // whatever happens to be committed when this query runs (that would skip events)
            const from = this.tailFrom ?? this.clock.now();
            const m = await this.db.selectFrom('engine_events').select((eb) => eb.fn.max('seq').as('m')).where('at', '<', from).executeTakeFirst();
            if (this.tailSeq === null) this.tailSeq = Number(m?.m ?? 0);
            this.tailAgain = true;
            continue;
          }
          for (;;) {
            const rows = await this.events({ afterSeq: this.tailSeq, limit: 1000 });
            this.deliver(rows);
            if (rows.length < 1000) break;
          }
        } catch (err) {
          this.logger.warn({ err }, 'reading the event stream failed; retrying on the next poll');
        }
      } while (this.tailAgain);
      this.tailRunning = null;
    })();
  }

  private updateTailTimer(): void {
    const remote = [...this.subscribers].some((s) => s.remote);
    if (remote && !this.tailTimer) {
      this.tailFrom ??= this.clock.now();
      // Events committed by other processes reach subscribers within pollMs.
      this.tailTimer = setInterval(() => this.requestTail(), this.pollMs);
      this.tailTimer.unref();
      this.requestTail();
    } else if (!remote && this.tailTimer) {
      clearInterval(this.tailTimer);
      this.tailTimer = null;
    }
  }

  async events(filter: EventFilter = {}): Promise<EngineEvent[]> {
    let q = this.db.selectFrom('engine_events').selectAll();
    if (filter.afterSeq !== undefined) q = q.where('seq', '>', filter.afterSeq);
    if (filter.types && filter.types.length) q = q.where('type', 'in', filter.types);
    if (filter.typePrefix) q = q.where(sql`substr(type, 1, ${filter.typePrefix.length})`, '=', filter.typePrefix);
    if (filter.subject !== undefined) q = q.where('subject', '=', filter.subject);
    const rows = await q.orderBy('seq').limit(Math.min(Math.max(filter.limit ?? 1000, 1), 10_000)).execute();
    return rows.map(toEvent);
  }

  /**
   * Live events, in seq order, after commit: this process's at once, other
   * processes' within pollMs (pass `{ remote: false }` to get only this
   * process's events without polling the table). Returns an unsubscribe function.
   */
  subscribe(filter: EventFilter, onEvent: (e: EngineEvent) => void, opts: { remote?: boolean } = {}): () => void {
    const s = { filter, fn: onEvent, remote: opts.remote ?? true };
    this.subscribers.add(s);
    if (s.remote) this.updateTailTimer();
    return () => {
      this.subscribers.delete(s);
      if (s.remote) this.updateTailTimer();
    };
  }

  async publish(type: string, subject: string, data: Record<string, unknown>): Promise<EngineEvent> {
    if (!type) throw new ValidationError('engine.invalid_event', 'event type must not be empty');
    const [e] = await this.writer.submit({ events: [{ type, subject, runId: null, data, at: this.clock.now() }] });
    return e!;
  }

  // ---- retention and metrics -----------------------------------------------------------------

  /**
   * Retention: deletes runs that finished before `runsFinishedBefore` (with their
   * journal, labels, signals and history; children go with parents only if they
   * finished too) and events older than `eventsBefore`. Returns what was deleted.
   */
  async prune(opts: { runsFinishedBefore?: number; eventsBefore?: number; limit?: number }): Promise<{ runs: number; events: number }> {
    let runs = 0;
    let events = 0;
    if (opts.runsFinishedBefore !== undefined) {
      const ids = (
        await this.db
          .selectFrom('engine_runs')
          .select('id')
          .where('status', 'in', TERMINAL_STATUSES as RunStatus[])
          .where('finished_at', '<', opts.runsFinishedBefore)
          .orderBy('finished_at')
          .limit(opts.limit ?? 10_000)
          .execute()
      ).map((r: any) => r.id as string);
      for (let k = 0; k < ids.length; k += 500) {
        const chunk = ids.slice(k, k + 500);
        await this.store.transaction(async (trx0) => {
          const trx = trx0 as unknown as Kysely<any>;
          for (const t of ['engine_steps', 'engine_signals', 'engine_run_labels', 'engine_history']) await trx.deleteFrom(t).where('run_id', 'in', chunk).execute();
          await trx.deleteFrom('engine_runs').where('id', 'in', chunk).where('available_at', 'is', null).execute();
        });
        runs += chunk.length;
      }
    }
    if (opts.eventsBefore !== undefined) {
      const r = await this.db.deleteFrom('engine_events').where('at', '<', opts.eventsBefore).executeTakeFirst();
      events = Number(r.numDeletedRows);
    }
    return { runs, events };
  }

  /** Worker and group-commit counters, for /metrics and benchmarks. */
  metrics(): { activeRuns: number; batches: number; entries: number; maxBatch: number; oneStatementBatches: number; flushMs: number } {
    const s = this.writer.stats;
    return { activeRuns: this.active.size, batches: s.batches, entries: s.entries, maxBatch: s.maxBatch, oneStatementBatches: s.oneStatement, flushMs: s.flushMs };
  }

  // ---- schedules and triggers ----------------------------------------------------------------

  async upsertSchedule(spec: ScheduleSpec): Promise<void> {
    this.latest(spec.workflow);
    const now = this.clock.now();
    let next: number | null;
    try {
      next = nextFire(spec.cron, spec.timezone, now);
    } catch (e) {
      throw new ValidationError('engine.invalid_cron', `schedule ${spec.id}: cron expression "${spec.cron}" is invalid (${(e as Error).message}); use 5 or 6 fields, e.g. "*/5 * * * *"`, { details: { id: spec.id } });
    }
    if (next === null) throw new ValidationError('engine.invalid_cron', `schedule ${spec.id}: cron expression "${spec.cron}" never fires`);
    const overlap: OverlapPolicy = spec.overlap ?? 'skip';
    const values = { cron: spec.cron, timezone: spec.timezone ?? null, workflow: spec.workflow, input: JSON.stringify(spec.input ?? null), overlap, paused: spec.paused ? 1 : 0, labels: JSON.stringify(spec.labels ?? {}), next_at: next, updated_at: now };
    await this.db
      .insertInto('engine_schedules')
      .values({ id: spec.id, ...values, last_run_id: null, buffered: 0, created_at: now })
      .onConflict((oc) => oc.column('id').doUpdateSet(values))
      .execute();
    this.noteDue(next);
  }

  async deleteSchedule(id: string): Promise<void> {
    await this.db.deleteFrom('engine_schedules').where('id', '=', id).execute();
  }

  async listSchedules(): Promise<(ScheduleSpec & { nextAt: number; lastRunId: string | null })[]> {
    const rows = await this.db.selectFrom('engine_schedules').selectAll().orderBy('id').execute();
    return rows.map((r: any) => {
      const labels = parseJson(r.labels) as Record<string, string> | null;
      return { id: r.id, cron: r.cron, ...(r.timezone ? { timezone: r.timezone } : {}), workflow: r.workflow, input: parseJson(r.input), overlap: r.overlap, paused: Number(r.paused) === 1,
        ...(labels && Object.keys(labels).length > 0 ? { labels } : {}), nextAt: Number(r.next_at), lastRunId: r.last_run_id };
    });
  }

  addTrigger(spec: TriggerSpec): void {
    if (!spec.id || !spec.eventType) throw new ValidationError('engine.invalid_trigger', 'a trigger needs an id and an eventType');
    this.triggers.set(spec.id, { ...spec, registeredAt: this.clock.now() });
    this.triggersDirty = true;
    this.kick();
  }

  private async runSchedules(now: number): Promise<void> {
    const rows = await this.db
      .selectFrom('engine_schedules')
      .selectAll()
      .where('paused', '=', 0)
      .where((eb) => eb.or([eb('next_at', '<=', now), eb('buffered', '=', 1)]))
      .limit(100)
      .execute();
    for (const s of rows) {
      if (!this.defs.has(s.workflow)) continue;
      try {
        await this.tx(async (trx) => {
          const isDue = Number(s.next_at) <= now;
          const fireAt = Number(s.next_at);
          let busy = false;
          if (s.last_run_id) {
            const last = await trx.selectFrom('engine_runs').select('status').where('id', '=', s.last_run_id).executeTakeFirst();
            busy = !!last && !TERMINAL_STATUSES.includes(last.status);
          }
          if (isDue) {
            const next = nextFire(s.cron, s.timezone, now) ?? FOREVER;
            const u = await trx.updateTable('engine_schedules').set({ next_at: next, updated_at: now }).where('id', '=', s.id).where('next_at', '=', s.next_at).executeTakeFirst();
            if (Number(u.numUpdatedRows) === 0) return; // another worker fired it
            this.noteDue(next);
            if (busy && s.overlap !== 'allow_all') {
              if (s.overlap === 'buffer_one') await trx.updateTable('engine_schedules').set({ buffered: 1 }).where('id', '=', s.id).execute();
              return [{ type: 'schedule.skipped', subject: `schedule:${s.id}`, data: { schedule: s.id, at: fireAt, buffered: s.overlap === 'buffer_one' }, at: now }];
            }
          } else {
            // A buffered fire starts once the previous run has ended.
            if (busy) return;
            const u = await trx.updateTable('engine_schedules').set({ buffered: 0 }).where('id', '=', s.id).where('buffered', '=', 1).executeTakeFirst();
            if (Number(u.numUpdatedRows) === 0) return;
          }
          const p = this.prepareRun(s.workflow, parseJson(s.input), { id: `${s.id}@${isDue ? fireAt : now}`, labels: { ...(parseJson(s.labels) as Record<string, string> | null), schedule: s.id } });
          const evs = await this.insertRunTx(trx, p);
          await trx.updateTable('engine_schedules').set({ last_run_id: p.row.id as string }).where('id', '=', s.id).execute();
          return evs;
        });
      } catch (e) {
        this.logger.warn({ err: e, schedule: s.id }, 'schedule could not fire');
      }
    }
  }

  private async runTriggers(): Promise<void> {
    for (const t of this.triggers.values()) {
      for (let rounds = 0; rounds < 10; rounds++) {
        let cur = await this.db.selectFrom('engine_trigger_cursors').select('last_seq').where('trigger_id', '=', t.id).executeTakeFirst();
        if (!cur) {
          const m = await this.db.selectFrom('engine_events').select((eb) => eb.fn.max('seq').as('m')).where('at', '<', t.registeredAt).executeTakeFirst();
          await this.db.insertInto('engine_trigger_cursors').values({ trigger_id: t.id, last_seq: Number(m?.m ?? 0) }).onConflict((oc) => oc.column('trigger_id').doNothing()).execute();
          cur = await this.db.selectFrom('engine_trigger_cursors').select('last_seq').where('trigger_id', '=', t.id).executeTakeFirst();
        }
        const from = Number(cur!.last_seq);
        const top = await this.db.selectFrom('engine_events').select((eb) => eb.fn.max('seq').as('m')).executeTakeFirst();
        const to = Number(top?.m ?? 0);
        if (to <= from) break;
        let q = this.db.selectFrom('engine_events').selectAll().where('seq', '>', from).where('seq', '<=', to);
        q = t.eventType.endsWith('*') ? q.where(sql`substr(type, 1, ${t.eventType.length - 1})`, '=', t.eventType.slice(0, -1)) : q.where('type', '=', t.eventType);
        if (t.subject !== undefined) q = q.where('subject', '=', t.subject);
        const rows = (await q.orderBy('seq').limit(100).execute()).map(toEvent);
        const upTo = rows.length === 100 ? rows[99]!.seq : to;
        const preps: ReturnType<Engine['prepareRun']>[] = [];
        for (const e of rows) {
          try {
            preps.push(this.prepareRun(t.workflow, t.input ? t.input(e) : { event: e }, { id: `${t.id}:${e.seq}`, labels: { trigger: t.id } }));
          } catch (err) {
            this.logger.warn({ err, trigger: t.id, seq: e.seq }, 'trigger could not start its workflow for this event; skipped');
          }
        }
        await this.tx(async (trx) => {
          const u = await trx.updateTable('engine_trigger_cursors').set({ last_seq: upTo }).where('trigger_id', '=', t.id).where('last_seq', '=', from).executeTakeFirst();
          if (Number(u.numUpdatedRows) === 0) return;
          const evs: EventInput[] = [];
          for (const p of preps) evs.push(...(await this.insertRunTx(trx, p)));
          return evs;
        });
        if (rows.length < 100) break;
      }
    }
  }

  // ---- worker --------------------------------------------------------------------------------

  /** @internal Wakes the worker loop. */
  kick(): void {
    this.kicked = true;
    const r = this.kickResolve;
    this.kickResolve = null;
    r?.();
  }

  /** @internal Remembers a future due time so an idle worker wakes for it. */
  noteDue(at: number): void {
    if (at < this.earliestDue) {
      this.earliestDue = at;
      this.kick();
    }
  }

  startWorker(): void {
    if (this.running) return;
    let local = localWorkers.get(this.store);
    if (!local) localWorkers.set(this.store, (local = new Set()));
    local.add(this.workerId);
    this.running = true;
    this.draining = false;
    this.stopAc = new AbortController();
    this.heartbeatOn = true;
    this.loopDone = this.loop();
    this.heartbeatDone = this.heartbeat();
    this.listenDone = this.listen();
  }

  /**
   * PostgreSQL: LISTEN on one dedicated connection, so a run another process
   * starts, signals or retries is claimed at once, and a cancel requested
   * elsewhere interrupts the step running here at once, not at the next poll
   * or heartbeat. Polling stays as the safety net: a lost connection only
   * costs latency, and the listener reconnects.
   */
  private async listen(): Promise<void> {
    const pool = this.store.pool;
    if (!pool) return;
    while (this.running) {
      let client: pg.PoolClient | undefined;
      try {
        client = await pool.connect();
        const c = client;
        c.on('notification', (m) => this.onNotify(m.payload ?? ''));
        const lost = new Promise<void>((resolve) => {
          c.once('error', () => resolve());
          c.once('end', () => resolve());
          if (this.stopAc.signal.aborted) resolve();
          else this.stopAc.signal.addEventListener('abort', () => resolve(), { once: true });
        });
        await c.query(`LISTEN ${NOTIFY_CHANNEL}`);
        // this worker's liveness lock: held while this session lives (see WORKER_LOCK_CLASS)
        const got = await c.query<{ got: boolean }>('select pg_try_advisory_lock($1, hashtext($2)) as got', [WORKER_LOCK_CLASS, this.workerId]);
        this.holdsLivenessLock = Boolean(got.rows[0]?.got);
        if (!this.holdsLivenessLock) this.logger.warn({ worker: this.workerId }, 'engine: another session holds this worker id\'s liveness lock (two workers with one id?); dead-worker detection is off for this worker');
        // anything that happened while not listening is found by one pass now
        this.kick();
        await lost;
      } catch (err) {
        if (this.running) this.logger.warn({ err }, 'engine: LISTEN connection failed; polling until it is back');
      } finally {
        // never hand a LISTENing connection back to the pool (destroying it also frees the liveness lock)
        this.holdsLivenessLock = false;
        client?.removeAllListeners('notification');
        client?.release(true);
      }
      // real time, not the engine clock: this waits for a database connection
      if (this.running) await new Promise<void>((r) => {
        const t = setTimeout(r, Math.max(1000, this.pollMs * 4));
        this.stopAc.signal.addEventListener('abort', () => { clearTimeout(t); r(); }, { once: true });
      });
    }
  }

  private onNotify(payload: string): void {
    if (!payload.startsWith('cancel:')) {
      this.kick();
      return;
    }
    const id = payload.slice('cancel:'.length);
    const e = this.active.get(id);
    if (!e) return;
    void this.db.selectFrom('engine_runs').select(['cancel_requested', 'cancel_reason', 'lease_epoch']).where('id', '=', id).executeTakeFirst()
      .then((r: any) => {
        if (r && Number(r.cancel_requested) === 1 && Number(r.lease_epoch) === e.epoch && this.active.get(id) === e) e.interruptWith('cancel', r.cancel_reason);
      })
      .catch((err: unknown) => this.logger.warn({ err, runId: id }, 'engine: could not read a cancel request; the heartbeat will'));
  }

  /** Number of runs executing in this process now. */
  get activeRuns(): number {
    return this.active.size;
  }

  /**
   * Stops the worker. Graceful (default): stop claiming, let in-flight steps
   * finish and journal, then hand each run back (lease released, run due now)
   * so another worker continues it; after `drainTimeoutMs` the remaining runs
   * are handed back with their steps still running. Not graceful: abandon at
   * once (leases expire after leaseMs). Does not close the store.
   */
  async stop(opts: { graceful?: boolean } = {}): Promise<void> {
    const graceful = opts.graceful ?? true;
    if (!this.running && !this.active.size) return;
    this.draining = true;
    this.running = false;
    // Runs already executing start no new step from now on.
    if (graceful) for (const e of this.active.values()) e.drain();
    this.kick();
    // 1. Stop claiming (a claim in progress completes; its runs are drained below).
    await this.loopDone;
    // 2. Drain: in-flight steps finish and are journaled, then each run is handed back.
    //    The heartbeat keeps the leases alive meanwhile.
    if (graceful) {
      for (const e of this.active.values()) e.drain();
      const until = Date.now() + this.drainTimeoutMs;
      while (this.active.size && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
    }
    const left = [...this.active.values()];
    for (const e of left) e.abandon();
    this.heartbeatOn = false;
    this.stopAc.abort(DONE);
    if (this.tailTimer) {
      clearInterval(this.tailTimer);
      this.tailTimer = null;
    }
    await this.heartbeatDone;
    await this.listenDone;
    await this.writer.drain();
    if (graceful && left.length) {
      // Steps still running after the drain timeout: hand the runs back now (fenced by epoch).
      const now = this.clock.now();
      for (const e of left) {
        await this.db
          .updateTable('engine_runs')
          .set({ lease_owner: null, lease_expires_at: null, available_at: now })
          .where('id', '=', e.id)
          .where('lease_owner', '=', this.workerId)
          .where('lease_epoch', '=', e.epoch)
          .execute()
          .catch(() => {});
      }
    }
    this.active.clear();
    this.loopDone = null;
    this.heartbeatDone = null;
    this.listenDone = null;
    localWorkers.get(this.store)?.delete(this.workerId);
  }

  // ---- dead workers --------------------------------------------------------------------------

  private sqliteSwept = false;
  private nextDeadCheck = 0;
  /** PostgreSQL: workers found without their liveness lock, and since when (confirmed on a second look). */
  private readonly suspects = new Map<string, number>();
  /** PostgreSQL: the LISTEN connection holds this worker's liveness lock. */
  private holdsLivenessLock = false;

  /**
   * Ends at once the leases of workers known to be dead, so that the next
   * claim takes their runs over instead of waiting for the leases to expire:
   * on SQLite, when this process owns the database file, every worker not in
   * this process (a server killed and restarted on the same file); on
   * PostgreSQL, workers whose liveness lock is free (their session ended)
   * on two looks a few seconds apart. Each takeover is logged and recorded.
   */
  private async expireDeadLeases(): Promise<void> {
    const sqliteOwner = this.store.ownsDatabase;
    if (sqliteOwner ? this.sqliteSwept : !(this.store.pool && this.holdsLivenessLock)) return;
    if (!sqliteOwner && Date.now() < this.nextDeadCheck) return;
    const confirmMs = Math.max(2000, this.pollMs * 8);
    this.nextDeadCheck = Date.now() + Math.max(1000, this.pollMs * 4);
    this.sqliteSwept = true;
    const now = this.clock.now();
    const local = [...(localWorkers.get(this.store) ?? [this.workerId])];
    const owners = (await this.db.selectFrom('engine_runs').select('lease_owner').distinct()
      .where('available_at', 'is not', null).where('lease_owner', 'is not', null).where('lease_expires_at', '>=', now)
      .where('lease_owner', 'not in', local).execute()).map((r: { lease_owner: string }) => r.lease_owner);
    let dead: string[] = owners;
    let why = 'this process owns the SQLite database file, so the process of that worker is gone';
    if (!sqliteOwner) {
      why = 'its database session ended (liveness lock free)';
      dead = [];
      const free = new Set<string>();
      if (owners.length) {
        const client = await this.store.pool!.connect();
        try {
          for (const o of owners) {
            const r = await client.query<{ got: boolean }>('select pg_try_advisory_lock($1, hashtext($2)) as got', [WORKER_LOCK_CLASS, o]);
            if (r.rows[0]?.got) {
              free.add(o);
              await client.query('select pg_advisory_unlock($1, hashtext($2))', [WORKER_LOCK_CLASS, o]);
            }
          }
        } finally {
          client.release();
        }
      }
      for (const o of [...this.suspects.keys()]) if (!free.has(o)) this.suspects.delete(o);
      for (const o of free) {
        const since = this.suspects.get(o);
        if (since === undefined) this.suspects.set(o, Date.now());
        else if (Date.now() - since >= confirmMs) {
          dead.push(o);
          this.suspects.delete(o);
        }
      }
      // look again soon for the suspects
      if (this.suspects.size) this.nextDeadCheck = Math.min(this.nextDeadCheck, Date.now() + confirmMs);
    }
    if (!dead.length) return;
    const rows = await this.db.updateTable('engine_runs').set({ lease_expires_at: now - 1 })
      .where('available_at', 'is not', null).where('lease_owner', 'in', dead).where('lease_expires_at', '>=', now)
      .returning(['id', 'lease_owner']).execute();
    for (const o of dead) {
      const runs = rows.filter((r: { lease_owner: string }) => r.lease_owner === o).map((r: { id: string }) => r.id);
      if (runs.length) this.logger.warn({ deadWorker: o, runs: runs.slice(0, 20), count: runs.length, worker: this.workerId }, `worker ${o} is gone (${why}); taking over its ${runs.length} run(s) now instead of when their leases expire`);
    }
    this.kick();
  }

  /**
   * Whether runs may be due that this worker left unclaimed: its last claim
   * filled every free slot or held runs back for queue or key limits, or a
   * run was started while no slot was free. Only then does a run that ends
   * wake the worker loop at once (a lone run ending needs no claim).
   */
  private mayBeWaiting = true;

  /** @internal */
  executionEnded(e: RunExecution): void {
    if (this.active.get(e.id) === e) this.active.delete(e.id);
    // a child's end makes its parent due; a freed slot matters if runs may wait for one
    if (this.mayBeWaiting || e.run.parentRunId || this.draining) this.kick();
  }

  private async loop(): Promise<void> {
    while (this.running) {
      this.kicked = false;
      let idleUntil: number;
      try {
        idleUntil = await this.tick();
      } catch (e) {
        if (!this.running) break;
        this.logger.error({ err: e }, 'worker tick failed; retrying');
        idleUntil = this.clock.now() + this.pollMs;
      }
      if (!this.running) break;
      if (this.kicked) continue;
      await this.idle(idleUntil);
    }
  }

  private async idle(until: number): Promise<void> {
    const ac = new AbortController();
    const waits: Promise<unknown>[] = [
      new Promise<void>((r) => (this.kickResolve = r)),
      new Promise<void>((r) => {
        const t = setTimeout(r, this.pollMs);
        ac.signal.addEventListener('abort', () => clearTimeout(t), { once: true });
      }),
    ];
    const now = this.clock.now();
    if (until < FOREVER && until > now) waits.push(this.clock.sleep(until - now, ac.signal).catch(() => {}));
    await Promise.race(waits);
    ac.abort(DONE);
    this.kickResolve = null;
  }

  /** One pass: claim and start runs, fire schedules and triggers. Returns when to look again (clock ms). */
  private async tick(): Promise<number> {
    // before `now` is taken: the claim stamps started_at with it, and a run held back by a
    // concurrency key must not start "before" the run it waited for finished
    await this.expireDeadLeases();
    const now = this.clock.now();
    if (now >= this.earliestDue) this.earliestDue = FOREVER;
    const capacity = this.concurrency - this.active.size - this.starting;
    let claimed = 0;
    this.mayBeWaiting = capacity <= 0;
    if (capacity > 0 && !this.draining && this.defs.size) claimed = await this.claim(capacity, now);
    if (claimed >= capacity) this.mayBeWaiting = true;
    // One cheap query: the next due run, the next schedule fire, and whether a buffered fire waits.
    // A busy worker (kicked again while claiming) checks it at most every pollMs.
    if (this.kicked && Date.now() < this.nextDueCheck) return now;
    this.nextDueCheck = Date.now() + this.pollMs;
    const due = await this.dueInfo();
    if (due.schedule <= now || due.buffered) await this.runSchedules(now);
    if (this.triggers.size && (this.triggersDirty || Date.now() >= this.nextHousekeeping)) {
      this.triggersDirty = false;
      this.nextHousekeeping = Date.now() + this.pollMs;
      await this.runTriggers();
    }
    if (claimed >= capacity && capacity > 0) {
      this.kicked = true;
      return now;
    }
    // Due-but-blocked runs (full, or held by concurrency limits) are re-checked on a kick or the poll interval.
    const future = [due.run, due.schedule].filter((v) => v > now);
    const next = Math.min(this.earliestDue, ...future);
    return this.active.size >= this.concurrency ? Math.min(this.earliestDue, due.schedule > now ? due.schedule : FOREVER) : next;
  }

  private async dueInfo(): Promise<{ run: number; schedule: number; buffered: boolean }> {
    const names = [...this.defs.keys()];
    const r = await sql<{ r: number | string | null; s: number | string | null; b: number | string | null }>`select
        (select min(available_at) from engine_runs where available_at is not null and lease_owner is null and workflow in (${sql.join(names.length ? names : [''])})) as r,
        (select min(next_at) from engine_schedules where paused = 0) as s,
        (select count(*) from engine_schedules where paused = 0 and buffered = 1) as b`.execute(this.db);
    const row = r.rows[0];
    return {
      run: row?.r === null || row?.r === undefined ? FOREVER : Number(row.r),
      schedule: row?.s === null || row?.s === undefined ? FOREVER : Number(row.s),
      buffered: Number(row?.b ?? 0) > 0,
    };
  }

  private queueLimit(queue: string): QueueLimits | undefined {
    return this.queues[queue];
  }

  private async claim(max: number, now: number): Promise<number> {
    const names = [...this.defs.keys()];
    const activeIds = [...this.active.keys()];
    const isPg = this.store.dialect === 'postgres';
    const claimed: any[] = [];
    const fresh = new Set<string>();
    /** Runs whose lease (expired, or of a dead worker) another worker held: taken over. */
    const takenFrom = new Map<string, string>();
    await this.tx(async (trx) => {
      if (isPg) await sql`select pg_advisory_xact_lock(${CLAIM_LOCK})`.execute(trx);
      const limit = max * 4 + 16;
      const qCount = new Map<string, number>();
      const kCount = new Map<string, number>();
      const blockedKeys = new Set<string>();
      const blockedQueues = new Set<string>();
      const chosen: string[] = [];
      // Runs held back by queue or key limits are excluded in the next round, so a
      // long line of runs for one busy key cannot starve runs behind it.
      for (let round = 0; round < 4 && chosen.length < max; round++) {
        let q = trx
          .selectFrom('engine_runs')
          .select(['id', 'queue', 'concurrency_key', 'started_at', 'status', 'lease_owner'])
          .where('available_at', '<=', now)
          .where((eb) => eb.or([eb('lease_expires_at', 'is', null), eb('lease_expires_at', '<', now)]))
          .where('workflow', 'in', names);
        const exclude = [...(activeIds.length <= 500 ? activeIds : []), ...chosen];
        if (exclude.length) q = q.where('id', 'not in', exclude);
        if (blockedKeys.size || blockedQueues.size) {
          const bk = [...blockedKeys];
          const bq = [...blockedQueues];
          q = q.where((eb) =>
            eb.or([
              eb('started_at', 'is not', null),
              eb.and([
                ...(bk.length ? [eb.or([eb('concurrency_key', 'is', null), eb('concurrency_key', 'not in', bk)])] : []),
                ...(bq.length ? [eb('queue', 'not in', bq)] : []),
              ]),
            ]),
          );
        }
        q = q.orderBy('available_at').orderBy('id').limit(limit);
        if (isPg) q = q.forUpdate().skipLocked();
        let cands: any[] = await q.execute();
        const full = cands.length === limit;
        if (activeIds.length > 500) cands = cands.filter((c) => !this.active.has(c.id));
        const newOnes = cands.filter((c) => c.started_at === null && (this.queueLimit(c.queue) || c.concurrency_key));
        const queues = [...new Set(newOnes.map((c) => c.queue as string).filter((x) => this.queueLimit(x) && !qCount.has(x)))];
        if (queues.length) {
          for (const x of queues) qCount.set(x, 0);
          const rows = await trx.selectFrom('engine_runs').select(['queue', (eb) => eb.fn.countAll().as('n')]).where('queue', 'in', queues).where('status', 'in', ACTIVE_STATUSES).where('available_at', 'is not', null).groupBy('queue').execute();
          for (const r of rows) qCount.set(r.queue, Number(r.n));
        }
        const keys = [...new Set(newOnes.map((c) => c.concurrency_key as string | null).filter((x): x is string => !!x && !blockedKeys.has(x)))].filter((k) => ![...kCount.keys()].some((kk) => kk.endsWith(`\u0000${k}`)));
        if (keys.length) {
          const rows = await trx.selectFrom('engine_runs').select(['queue', 'concurrency_key', (eb) => eb.fn.countAll().as('n')]).where('concurrency_key', 'in', keys).where('status', 'in', ACTIVE_STATUSES).where('available_at', 'is not', null).groupBy(['queue', 'concurrency_key']).execute();
          for (const r of rows) kCount.set(`${r.queue}\u0000${r.concurrency_key}`, Number(r.n));
        }
        let rejected = 0;
        for (const c of cands) {
          if (chosen.length >= max) break;
          if (c.started_at === null) {
            const ql = this.queueLimit(c.queue);
            if (ql && (qCount.get(c.queue) ?? 0) >= ql.concurrency) {
              blockedQueues.add(c.queue);
              rejected++;
              continue;
            }
            const kk = `${c.queue}\u0000${c.concurrency_key}`;
            if (c.concurrency_key && (kCount.get(kk) ?? 0) >= (ql?.perKey ?? 1)) {
              blockedKeys.add(c.concurrency_key);
              rejected++;
              continue;
            }
            if (ql) qCount.set(c.queue, (qCount.get(c.queue) ?? 0) + 1);
            if (c.concurrency_key) kCount.set(kk, (kCount.get(kk) ?? 0) + 1);
            fresh.add(c.id);
          }
          chosen.push(c.id);
          if (c.lease_owner !== null && c.lease_owner !== this.workerId) takenFrom.set(c.id, c.lease_owner);
        }
        if (rejected > 0) this.mayBeWaiting = true;
        if (!full || rejected === 0) break;
      }
      if (!chosen.length) return;
      // started_at: read the clock after the candidates were selected, so that a run that waited
      // for another (same concurrency key) never starts "before" that one's committed finish
      const startAt = Math.max(now, this.clock.now());
      const rows = await trx
        .updateTable('engine_runs')
        .set({
          lease_owner: this.workerId,
          lease_epoch: sql`lease_epoch + 1`,
          lease_expires_at: now + this.leaseMs,
          status: sql`case when status in ('pending', 'waiting') then 'running' else status end`,
          started_at: sql`coalesce(started_at, cast(${startAt} as bigint))`,
          deadline_at: sql`coalesce(deadline_at, case when timeout_ms is null then null else cast(${now} as bigint) + timeout_ms end)`,
          updated_at: now,
          worker: this.workerId,
          taken_over_at: sql`case when lease_owner is not null and lease_owner <> ${this.workerId} then cast(${now} as bigint) else taken_over_at end`,
          taken_over_from: sql`case when lease_owner is not null and lease_owner <> ${this.workerId} then lease_owner else taken_over_from end`,
        })
        .where('id', 'in', chosen)
        .returningAll()
        .execute();
      claimed.push(...rows);
      const evs = rows.filter((r: any) => fresh.has(r.id)).map((r: any): EventInput => ({ type: 'run.started', subject: r.id, runId: r.id, data: { workflow: r.workflow, worker: this.workerId }, at: now }));
      for (const r of rows) {
        const from = takenFrom.get(r.id);
        if (from) evs.push({ type: 'run.taken_over', subject: r.id, runId: r.id, data: { workflow: r.workflow, from, worker: this.workerId }, at: now });
      }
      return evs;
    });
    for (const r of claimed) {
      const from = takenFrom.get(r.id);
      if (from) this.logger.warn({ runId: r.id, workflow: r.workflow, from, worker: this.workerId, epoch: Number(r.lease_epoch) }, `run taken over from worker ${from}`);
    }
    if (!claimed.length) return 0;
    // Replay only on (re)claim: load journals of runs that ran before.
    const resumed = claimed.filter((r) => !fresh.has(r.id)).map((r) => r.id as string);
    const journals = new Map<string, Map<number, JournalEntry>>();
    for (let k = 0; k < resumed.length; k += 500) {
      const rows = await this.db.selectFrom('engine_steps').selectAll().where('run_id', 'in', resumed.slice(k, k + 500)).execute();
      for (const r of rows) {
        let m = journals.get(r.run_id);
        if (!m) journals.set(r.run_id, (m = new Map()));
        m.set(Number(r.seq), toJournalEntry(r as StepRow));
      }
    }
    for (const r of claimed) this.execute(toLoadedRun(r), journals.get(r.id) ?? new Map());
    return claimed.length;
  }

  /** Starts executing a run leased to this worker. */
  private execute(run: LoadedRun, journal: Map<number, JournalEntry>): void {
    const exec = new RunExecution(this, run, journal);
    this.active.set(run.id, exec);
    // stopping meanwhile: the run starts no step and is handed back (drain)
    if (this.draining) exec.drain();
    void exec.execute(this.defs.get(run.workflow)?.get(run.version));
  }

  private async heartbeat(): Promise<void> {
    while (this.heartbeatOn) {
      try {
        await this.clock.sleep(this.heartbeatMs, this.stopAc.signal);
      } catch {
        break;
      }
      if (!this.heartbeatOn) break;
      const execs = [...this.active.values()];
      if (!execs.length) continue;
      try {
        const now = this.clock.now();
        const seen = new Map<string, any>();
        for (let k = 0; k < execs.length; k += 500) {
          const ids = execs.slice(k, k + 500).map((e) => e.id);
          // Rows are locked in id order (as the writer's fence does) so the two never deadlock.
          const rows = await this.db
            .updateTable('engine_runs')
            .set({ lease_expires_at: now + this.leaseMs })
            .where('id', 'in', (eb: any) => {
              let sub = eb.selectFrom('engine_runs').select('id').where('lease_owner', '=', this.workerId).where('id', 'in', ids).orderBy('id');
              if (this.store.dialect === 'postgres') sub = sub.forUpdate();
              return sub;
            })
            .returning(['id', 'lease_epoch', 'cancel_requested', 'cancel_reason'])
            .execute();
          for (const r of rows) seen.set(r.id, r);
        }
        for (const e of execs) {
          if (this.active.get(e.id) !== e) continue;
          const r = seen.get(e.id);
          if (!r || Number(r.lease_epoch) !== e.epoch) {
            this.logger.warn({ runId: e.id }, 'lease lost; abandoning the run (another worker continues it)');
            e.abandon();
          } else if (Number(r.cancel_requested) === 1) {
            e.interruptWith('cancel', r.cancel_reason);
          }
        }
      } catch (err) {
        this.logger.warn({ err }, 'heartbeat failed');
      }
    }
  }
}

export type { JournalEntry };

import { CompiledQuery, type Kysely } from 'kysely';
import type BetterSqlite3 from 'better-sqlite3';
import type { Store } from '../store/store.js';
import type { EngineEvent } from './types.js';
import { LeaseLostError } from './errors.js';
import type { EngineStepTable } from './schema.js';

/** A journal row as written by the group-commit writer (the engine_steps table). */
export type StepRow = EngineStepTable;

export interface EventInput {
  type: string;
  subject: string;
  runId?: string | null;
  data: Record<string, unknown>;
  at: number;
}

/**
 * PostgreSQL: if the session stalls inside this transaction for `ms` (a
 * frozen or paused worker, a lost client), the server ends the session and
 * its locks go with it. Without this, a worker frozen while it holds the
 * claim or events lock would stop every other worker until it woke up.
 */
export async function limitIdleInTransaction(trx: Kysely<any>, dialect: string, ms: number): Promise<void> {
  if (dialect !== 'postgres') return;
  await trx.executeQuery(CompiledQuery.raw(`select set_config('idle_in_transaction_session_timeout', '${Math.max(1, Math.ceil(ms))}', true)`));
}

/** One unit of work submitted to the group-commit writer. */
export interface WriteEntry {
  /** Fenced entries only commit if this worker still holds the run's lease at this epoch. */
  fence?: { runId: string; epoch: number };
  steps?: StepRow[];
  events?: EventInput[];
  /** Ends the fenced run: terminal status, output or error; clears the lease and due time. */
  finish?: { status: string; output: string | null; error: string | null; progress: string | null; at: number };
  /** Columns to set on the fenced run. */
  run?: Record<string, unknown>;
  /** Extra statements inside the same transaction; may return more events. */
  extra?: (trx: Kysely<any>) => Promise<EventInput[] | void>;
  /** SQLite only: extra statements run synchronously on the raw handle inside the transaction; may return more events. */
  extraSync?: () => EventInput[] | void;
}

interface Pending {
  entry: WriteEntry;
  resolve: (events: EngineEvent[]) => void;
  reject: (e: unknown) => void;
}

/** PostgreSQL advisory lock key serializing event inserts so seq order = commit order. */
export const EVENTS_LOCK = 0x1f10_e7e7;

/**
 * Group commit: entries submitted while a flush is running are written
 * together in the next transaction (one fence check per run, one multi-row
 * insert for journal rows, one for events). Throughput grows with the number
 * of concurrent runs instead of being capped by the commit (fsync) rate.
 */
export class GroupWriter {
  private queue: Pending[] = [];
  private flushing = false;
  private scheduled = false;
  /** Statistics for benchmarks. */
  readonly stats = { batches: 0, entries: 0, maxBatch: 0, oneStatement: 0, flushMs: 0 };

  constructor(
    private readonly store: Store,
    private readonly owner: string,
    private readonly onCommitted: (events: EngineEvent[]) => void,
    private readonly maxBatch = 256,
  ) {}

  /** See limitIdleInTransaction; the engine sets it to its lease length. */
  idleInTransactionMs = 30_000;

  private readonly runUpdates = new Map<string, BetterSqlite3.Statement>();
  private sqliteStmts: { fence: BetterSqlite3.Statement; step: BetterSqlite3.Statement; event: BetterSqlite3.Statement } | undefined;

  /** SQLite: cached statements run on the connection the transaction holds (better-sqlite3 is synchronous). */
  private get sqlite(): { fence: BetterSqlite3.Statement; step: BetterSqlite3.Statement; event: BetterSqlite3.Statement } | undefined {
    const raw = this.store.sqlite;
    if (raw && !this.sqliteStmts) {
      this.sqliteStmts = {
        fence: raw.prepare('select lease_owner, lease_epoch from engine_runs where id = ?'),
        step: raw.prepare(`insert into engine_steps (run_id, seq, name, kind, status, attempts, output, error, logs, started_at, finished_at, worker) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ${STEPS_UPSERT}`),
        event: raw.prepare('insert into engine_events (type, subject, run_id, data, at) values (?, ?, ?, ?, ?)'),
      };
    }
    return this.sqliteStmts;
  }

  submit(entry: WriteEntry): Promise<EngineEvent[]> {
    return new Promise((resolve, reject) => {
      this.queue.push({ entry, resolve, reject });
      if (!this.flushing && !this.scheduled) {
        this.scheduled = true;
        setImmediate(() => {
          this.scheduled = false;
          void this.flush();
        });
      }
    });
  }

  /** Resolves when everything submitted so far is written. */
  async drain(): Promise<void> {
    while (this.queue.length || this.flushing || this.scheduled) await new Promise((r) => setImmediate(r));
  }

  private async flush(): Promise<void> {
    if (this.flushing) return;
    this.flushing = true;
    try {
      while (this.queue.length) {
        const batch = this.queue.splice(0, this.maxBatch);
        this.stats.batches++;
        this.stats.entries += batch.length;
        if (batch.length > this.stats.maxBatch) this.stats.maxBatch = batch.length;
        const t0 = performance.now();
        try {
          const results = await this.writeBatch(batch);
          this.stats.flushMs += performance.now() - t0;
          this.finish(batch, results);
        } catch (e) {
          if (batch.length === 1) {
            batch[0]!.reject(e);
            continue;
          }
          // Isolate the failing entry: write each one alone.
          for (const p of batch) {
            try {
              const r = await this.writeBatch([p]);
              this.finish([p], r);
            } catch (e2) {
              p.reject(e2);
            }
          }
        }
      }
    } finally {
      this.flushing = false;
    }
  }

  private finish(batch: Pending[], results: (EngineEvent[] | Error)[]): void {
    const all: EngineEvent[] = [];
    batch.forEach((p, i) => {
      const r = results[i]!;
      if (r instanceof Error) p.reject(r);
      else {
        all.push(...r);
      }
    });
    all.sort((a, b) => a.seq - b.seq);
    if (all.length) this.onCommitted(all);
    batch.forEach((p, i) => {
      const r = results[i]!;
      if (!(r instanceof Error)) p.resolve(r);
    });
  }

  private async writeBatch(batch: Pending[]): Promise<(EngineEvent[] | Error)[]> {
    if (this.store.dialect === 'postgres' && batch.every((p) => !p.entry.run && !p.entry.extra && (!p.entry.finish || p.entry.fence))) {
      this.stats.oneStatement++;
      return this.writePurePg(batch);
    }
    const raw = this.store.sqlite;
    // SQLite, no caller statements and plain column values (every step, event and finish):
    // the whole batch as one synchronous transaction on the raw handle — no query
    // building and no promise hop between statements. Not while a Kysely
    // transaction is open on the (single) connection: that one waits its turn below.
    if (raw && !raw.inTransaction && batch.every((p) => !p.entry.extra && plainRun(p.entry))) {
      this.stats.oneStatement++;
      this.sqliteBatch ??= raw.transaction((b: Pending[]) => this.writeSqliteSync(b));
      return this.sqliteBatch.immediate(batch);
    }
    return this.store.transaction(async (trx0) => {
      const trx = trx0 as unknown as Kysely<any>;
      await limitIdleInTransaction(trx, this.store.dialect, this.idleInTransactionMs);
      const results: (EngineEvent[] | Error)[] = batch.map(() => []);
      // 1. Fence: one read of the lease columns for every fenced run in the batch (row-locked on PostgreSQL).
      const fenced = batch.filter((p) => p.entry.fence);
      const lost = new Set<number>();
      if (fenced.length) {
        const ids = [...new Set(fenced.map((p) => p.entry.fence!.runId))];
        const byId = new Map<string, { lease_owner: string | null; lease_epoch: number }>();
        if (this.sqlite) {
          const st = this.sqlite.fence;
          for (const id of ids) {
            const r = st.get(id) as { lease_owner: string | null; lease_epoch: number } | undefined;
            if (r) byId.set(id, r);
          }
        } else {
          const r = await trx.executeQuery<any>(CompiledQuery.raw('select id, lease_owner, lease_epoch from engine_runs where id = any($1) order by id for update', [ids]));
          for (const row of r.rows) byId.set(row.id, row);
        }
        batch.forEach((p, i) => {
          const f = p.entry.fence;
          if (!f) return;
          const r = byId.get(f.runId);
          if (!r || r.lease_owner !== this.owner || Number(r.lease_epoch) !== f.epoch) {
            lost.add(i);
            results[i] = new LeaseLostError(f.runId);
          }
        });
      }
      const live = batch.map((p, i) => ({ p, i })).filter(({ i }) => !lost.has(i));
      // 2. Journal rows.
      const steps = dedupeSteps(live.map(({ p }) => p.entry.steps ?? []));
      if (steps.length) {
        if (this.sqlite) {
          const st = this.sqlite.step;
          for (const r of steps) st.run(r.run_id, r.seq, r.name, r.kind, r.status, r.attempts, r.output, r.error, r.logs, r.started_at, r.finished_at, r.worker);
        } else {
          await trx.executeQuery(CompiledQuery.raw(`insert into engine_steps (run_id, seq, name, kind, status, attempts, output, error, logs, started_at, finished_at, worker) ${PG_STEPS_SELECT} ${STEPS_UPSERT}`, stepArrays(steps)));
        }
      }
      // 3. Run updates and extra statements, in submission order.
      const evIn: { idx: number; ev: EventInput }[] = [];
      for (const { p, i } of live) {
        const e = p.entry;
        const f = e.finish;
        if (f) {
          e.run = { ...e.run, status: f.status, output: f.output, error: f.error, progress: f.progress, finished_at: f.at, updated_at: f.at, available_at: null, lease_owner: null, lease_expires_at: null };
        }
        if (e.run) {
          const id = e.fence?.runId;
          if (!id) throw new Error('run update needs a fence');
          const cols = Object.keys(e.run);
          if (this.store.sqlite && cols.every((c) => /^[a-z_]+$/.test(c) && (e.run![c] === null || typeof e.run![c] !== 'object'))) {
            // Plain values: a cached statement per column set (no query building, no re-prepare).
            const key = cols.join(',');
            let st = this.runUpdates.get(key);
            if (!st) this.runUpdates.set(key, (st = this.store.sqlite.prepare(`update engine_runs set ${cols.map((c) => `${c} = ?`).join(', ')} where id = ?`)));
            st.run(...cols.map((c) => e.run![c]), id);
          } else {
            await trx.updateTable('engine_runs').set(e.run).where('id', '=', id).execute();
          }
        }
        if (e.extraSync) {
          const more = e.extraSync();
          if (more) for (const ev of more) evIn.push({ idx: i, ev });
        }
        if (e.extra) {
          const more = await e.extra(trx);
          if (more) for (const ev of more) evIn.push({ idx: i, ev });
        }
        for (const ev of e.events ?? []) evIn.push({ idx: i, ev });
      }
      // 4. Events last (PostgreSQL: under an advisory lock so seq order is commit order).
      if (evIn.length) {
        const evs = evIn.map((x) => x.ev);
        const inserted = this.sqlite ? this.sqliteEvents(evs) : await insertEvents(trx, 'postgres', evs);
        evIn.forEach((x, k) => (results[x.idx] as EngineEvent[]).push(inserted[k]!));
      }
      return results;
    });
  }

  private sqliteBatch: BetterSqlite3.Transaction<(b: Pending[]) => (EngineEvent[] | Error)[]> | undefined;

  /** The SQLite batch, synchronously, inside `raw.transaction(...).immediate` (see writeBatch). */
  private writeSqliteSync(batch: Pending[]): (EngineEvent[] | Error)[] {
    const st = this.sqlite!;
    const raw = this.store.sqlite!;
    const results: (EngineEvent[] | Error)[] = batch.map(() => []);
    const leases = new Map<string, { lease_owner: string | null; lease_epoch: number } | undefined>();
    const live: { p: Pending; i: number }[] = [];
    batch.forEach((p, i) => {
      const f = p.entry.fence;
      if (f) {
        if (!leases.has(f.runId)) leases.set(f.runId, st.fence.get(f.runId) as { lease_owner: string | null; lease_epoch: number } | undefined);
        const r = leases.get(f.runId);
        if (!r || r.lease_owner !== this.owner || Number(r.lease_epoch) !== f.epoch) {
          results[i] = new LeaseLostError(f.runId);
          return;
        }
      }
      live.push({ p, i });
    });
    for (const r of dedupeSteps(live.map(({ p }) => p.entry.steps ?? []))) st.step.run(r.run_id, r.seq, r.name, r.kind, r.status, r.attempts, r.output, r.error, r.logs, r.started_at, r.finished_at, r.worker);
    const evIn: { idx: number; ev: EventInput }[] = [];
    for (const { p, i } of live) {
      const e = p.entry;
      const run = runColumns(e);
      if (run) {
        const id = e.fence?.runId;
        if (!id) throw new Error('run update needs a fence');
        const cols = Object.keys(run);
        const key = cols.join(',');
        let u = this.runUpdates.get(key);
        if (!u) this.runUpdates.set(key, (u = raw.prepare(`update engine_runs set ${cols.map((c) => `${c} = ?`).join(', ')} where id = ?`)));
        u.run(...cols.map((c) => run[c]), id);
      }
      const more = e.extraSync?.();
      if (more) for (const ev of more) evIn.push({ idx: i, ev });
      for (const ev of e.events ?? []) evIn.push({ idx: i, ev });
    }
    if (evIn.length) {
      const inserted = this.sqliteEvents(evIn.map((x) => x.ev));
      evIn.forEach((x, k) => (results[x.idx] as EngineEvent[]).push(inserted[k]!));
    }
    return results;
  }

  private sqliteEvents(evs: EventInput[]): EngineEvent[] {
    const st = this.sqlite!.event;
    return evs.map((e) => {
      const info = st.run(e.type, e.subject, e.runId ?? null, JSON.stringify(e.data), e.at);
      return { seq: Number(info.lastInsertRowid), type: e.type, subject: e.subject, runId: e.runId ?? null, data: e.data, at: e.at };
    });
  }

  /**
   * PostgreSQL, batch of journal rows and events only (the common case): ONE
   * statement, so one round trip and one commit. The fence CTE row-locks the
   * runs still leased to this worker at the expected epoch; journal rows and
   * events of other runs are dropped; the events advisory lock is taken after
   * the fence (lock order: run rows, then events).
   */
  private async writePurePg(batch: Pending[]): Promise<(EngineEvent[] | Error)[]> {
    const fenceIds: string[] = [];
    const fenceEpochs: number[] = [];
    const seen = new Set<string>();
    for (const p of batch) {
      const f = p.entry.fence;
      if (f && !seen.has(`${f.runId}\u0000${f.epoch}`)) {
        seen.add(`${f.runId}\u0000${f.epoch}`);
        fenceIds.push(f.runId);
        fenceEpochs.push(f.epoch);
      }
    }
    const steps = dedupeSteps(batch.map((p) => p.entry.steps ?? []));
    const evIn: { idx: number; ev: EventInput; fence: string | null }[] = [];
    batch.forEach((p, i) => {
      for (const ev of p.entry.events ?? []) evIn.push({ idx: i, ev, fence: p.entry.fence?.runId ?? null });
    });
    const sa = stepArrays(steps);
    const fins = batch.filter((p) => p.entry.finish && p.entry.fence);
    const params: unknown[] = [
      fenceIds, fenceEpochs, this.owner, ...sa.slice(0, 11), EVENTS_LOCK,
      evIn.map((x) => x.ev.type), evIn.map((x) => x.ev.subject), evIn.map((x) => x.ev.runId ?? null), evIn.map((x) => JSON.stringify(x.ev.data)), evIn.map((x) => x.ev.at), evIn.map((x) => x.fence),
      fins.map((p) => p.entry.fence!.runId), fins.map((p) => p.entry.finish!.status), fins.map((p) => p.entry.finish!.output), fins.map((p) => p.entry.finish!.error), fins.map((p) => p.entry.finish!.progress), fins.map((p) => p.entry.finish!.at),
      sa[11],
    ];
    const text = `with f as (
        select r.id from engine_runs r join unnest($1::text[], $2::int[]) as fx(id, epoch) on r.id = fx.id and r.lease_epoch = fx.epoch
        where r.lease_owner = $3 order by r.id for update of r
      ),
      s as (
        insert into engine_steps (run_id, seq, name, kind, status, attempts, output, error, logs, started_at, finished_at, worker)
        select u.* from unnest($4::text[], $5::int[], $6::text[], $7::text[], $8::text[], $9::int[], $10::text[], $11::text[], $12::text[], $13::bigint[], $14::bigint[], $28::text[])
          as u(run_id, seq, name, kind, status, attempts, output, error, logs, started_at, finished_at, worker)
        where u.run_id in (select id from f)
        ${STEPS_UPSERT}
        returning 1
      ),
      fin as (
        update engine_runs r set status = u.status, output = u.output, error = u.error, progress = u.progress, finished_at = u.at, updated_at = u.at,
               available_at = null, lease_owner = null, lease_expires_at = null
          from unnest($22::text[], $23::text[], $24::text[], $25::text[], $26::text[], $27::bigint[]) as u(id, status, output, error, progress, at)
         where r.id = u.id and r.id in (select id from f)
        returning 1
      ),
      l as materialized (select pg_advisory_xact_lock($15) as x from (select count(*) from f) c, (select count(*) from s) c2, (select count(*) from fin) c3 where $16::text[] <> '{}'),
      e as (
        insert into engine_events (type, subject, run_id, data, at)
        select ev.type, ev.subject, ev.run_id, ev.data, ev.at
          from l, unnest($16::text[], $17::text[], $18::text[], $19::text[], $20::bigint[], $21::text[]) with ordinality as ev(type, subject, run_id, data, at, fence, ord)
         where ev.fence is null or ev.fence in (select id from f)
         order by ev.ord
        returning seq
      )
      select 'f' as k, id as v from f
      union all select 's', count(*)::text from s
      union all select 'u', count(*)::text from fin
      union all select 'e', seq::text from e`;
    const res = await this.store.pool!.query({ name: preparedName(text), text, values: params });
    const okRuns = new Set<string>();
    const seqs: number[] = [];
    for (const r of res.rows as { k: string; v: string }[]) {
      if (r.k === 'f') okRuns.add(r.v);
      else if (r.k === 'e') seqs.push(Number(r.v));
    }
    seqs.sort((a, b) => a - b);
    const results: (EngineEvent[] | Error)[] = batch.map((p) => (p.entry.fence && !okRuns.has(p.entry.fence.runId) ? new LeaseLostError(p.entry.fence.runId) : []));
    let k = 0;
    for (const x of evIn) {
      if (x.fence !== null && !okRuns.has(x.fence)) continue;
      const e = x.ev;
      (results[x.idx] as EngineEvent[]).push({ seq: seqs[k++]!, type: e.type, subject: e.subject, runId: e.runId ?? null, data: e.data, at: e.at });
    }
    return results;
  }
}

const preparedNames = new Map<string, string>();

/**
 * PostgreSQL: a name for a statement the engine runs on every step or start,
 * so that each connection parses and plans it once (a named prepared
 * statement) instead of on every call.
 */
export function preparedName(text: string): string {
  let n = preparedNames.get(text);
  if (!n) preparedNames.set(text, (n = `infraflow_engine_${preparedNames.size + 1}`));
  return n;
}

/** The run columns an entry sets: `run`, plus the terminal columns of `finish`. */
function runColumns(e: WriteEntry): Record<string, unknown> | undefined {
  const f = e.finish;
  if (!f) return e.run;
  return { ...e.run, status: f.status, output: f.output, error: f.error, progress: f.progress, finished_at: f.at, updated_at: f.at, available_at: null, lease_owner: null, lease_expires_at: null };
}

/** True when the entry's run columns are plain values a cached statement can bind. */
function plainRun(e: WriteEntry): boolean {
  const run = runColumns(e);
  if (!run) return true;
  for (const [c, v] of Object.entries(run)) if (!/^[a-z_]+$/.test(c) || (v !== null && typeof v === 'object')) return false;
  return true;
}

const STEPS_UPSERT = `on conflict (run_id, seq) do update set name = excluded.name, kind = excluded.kind, status = excluded.status, attempts = excluded.attempts,
  output = excluded.output, error = excluded.error, logs = excluded.logs, started_at = excluded.started_at, finished_at = excluded.finished_at, worker = excluded.worker`;
const PG_STEPS_SELECT = `select * from unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::text[], $6::int[], $7::text[], $8::text[], $9::text[], $10::bigint[], $11::bigint[], $12::text[])`;

function dedupeSteps(groups: StepRow[][]): StepRow[] {
  const m = new Map<string, StepRow>();
  for (const g of groups) for (const s of g) m.set(`${s.run_id}\u0000${s.seq}`, s);
  return [...m.values()];
}

function stepArrays(steps: StepRow[]): unknown[] {
  return [
    steps.map((s) => s.run_id),
    steps.map((s) => s.seq),
    steps.map((s) => s.name),
    steps.map((s) => s.kind),
    steps.map((s) => s.status),
    steps.map((s) => s.attempts),
    steps.map((s) => s.output),
    steps.map((s) => s.error),
    steps.map((s) => s.logs),
    steps.map((s) => s.started_at),
    steps.map((s) => s.finished_at),
    steps.map((s) => s.worker),
  ];
}

/** Inserts events in order and returns them with their seq. Must be the last lock taken in the transaction. */
export async function insertEvents(trx: Kysely<any>, dialect: string, evs: EventInput[]): Promise<EngineEvent[]> {
  if (!evs.length) return [];
  let seqs: number[];
  if (dialect === 'postgres') {
    const r = await trx.executeQuery<{ seq: string | number }>(
      CompiledQuery.raw(
        `with l as materialized (select pg_advisory_xact_lock($1) as x)
         insert into engine_events (type, subject, run_id, data, at)
         select ev.type, ev.subject, ev.run_id, ev.data, ev.at from l, unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[]) with ordinality as ev(type, subject, run_id, data, at, ord)
         order by ev.ord returning seq`,
        [EVENTS_LOCK, evs.map((e) => e.type), evs.map((e) => e.subject), evs.map((e) => e.runId ?? null), evs.map((e) => JSON.stringify(e.data)), evs.map((e) => e.at)],
      ),
    );
    seqs = r.rows.map((x) => Number(x.seq));
  } else {
    seqs = [];
    for (const e of evs) {
      const r = await trx.insertInto('engine_events').values({ type: e.type, subject: e.subject, run_id: e.runId ?? null, data: JSON.stringify(e.data), at: e.at }).returning('seq').executeTakeFirstOrThrow();
      seqs.push(Number(r.seq));
    }
  }
  seqs.sort((a, b) => a - b);
  return evs.map((e, j) => ({ seq: seqs[j]!, type: e.type, subject: e.subject, runId: e.runId ?? null, data: e.data, at: e.at }));
}

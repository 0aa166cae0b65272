import { sql, type Kysely } from 'kysely';
import type { Store } from '../store/store.js';
import type { EngineEvent } from './types.js';
import { LeaseLostError } from './errors.js';

export interface StepRow {
  run_id: string;
  seq: number;
  name: string;
  kind: string;
  status: string;
  attempts: number;
  output: string | null;
  error: string | null;
  logs: string | null;
  started_at: number;
  finished_at: number | null;
}

export interface EventInput {
  type: string;
  subject: string;
  runId?: string | null;
  data: Record<string, unknown>;
  at: number;
}

/** One unit of work submitted to the group-commit writer. */
export interface WriteEntry {
  /** Fenced entries only commit if this worker still holds the run's lease at this epoch. */
  fence?: { runId: string; epoch: number };
  steps?: StepRow[];
  events?: EventInput[];
  /** Columns to set on the fenced run (or `runId`'s row). */
  run?: Record<string, unknown>;
  /** Extra statements inside the same transaction; may return more events. */
  extra?: (trx: Kysely<any>) => Promise<EventInput[] | void>;
}

interface Pending {
  entry: WriteEntry;
  resolve: (events: EngineEvent[]) => void;
  reject: (e: unknown) => void;
}

/** PostgreSQL advisory lock key serializing event inserts so seq order = commit order. */
const EVENTS_LOCK = 0x1f10_e7e7;

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
  readonly stats = { batches: 0, entries: 0, maxBatch: 0 };

  constructor(
    private readonly store: Store,
    private readonly owner: string,
    private readonly onCommitted: (events: EngineEvent[]) => void,
    private readonly maxBatch = 256,
  ) {}

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
        try {
          const results = await this.writeBatch(batch);
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
    return this.store.transaction(async (trx0) => {
      const trx = trx0 as unknown as Kysely<any>;
      const results: (EngineEvent[] | Error)[] = batch.map(() => []);
      // 1. Fence: one read of the lease columns for every fenced run in the batch.
      const fenced = batch.filter((p) => p.entry.fence);
      const lost = new Set<number>();
      if (fenced.length) {
        const ids = [...new Set(fenced.map((p) => p.entry.fence!.runId))];
        let q = trx.selectFrom('engine_runs').select(['id', 'lease_owner', 'lease_epoch']).where('id', 'in', ids);
        if (this.store.dialect === 'postgres') q = q.forUpdate();
        const rows = await q.execute();
        const byId = new Map(rows.map((r: any) => [r.id as string, r]));
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
      // 2. Journal rows: one multi-row upsert.
      const stepMap = new Map<string, StepRow>();
      for (const { p } of live) for (const s of p.entry.steps ?? []) stepMap.set(`${s.run_id}\u0000${s.seq}`, s);
      const steps = [...stepMap.values()];
      for (let k = 0; k < steps.length; k += 200) {
        await trx
          .insertInto('engine_steps')
          .values(steps.slice(k, k + 200))
          .onConflict((oc) =>
            oc.columns(['run_id', 'seq']).doUpdateSet({
              name: (eb: any) => eb.ref('excluded.name'),
              kind: (eb: any) => eb.ref('excluded.kind'),
              status: (eb: any) => eb.ref('excluded.status'),
              attempts: (eb: any) => eb.ref('excluded.attempts'),
              output: (eb: any) => eb.ref('excluded.output'),
              error: (eb: any) => eb.ref('excluded.error'),
              logs: (eb: any) => eb.ref('excluded.logs'),
              started_at: (eb: any) => eb.ref('excluded.started_at'),
              finished_at: (eb: any) => eb.ref('excluded.finished_at'),
            }),
          )
          .execute();
      }
      // 3. Run updates and extra statements, in submission order.
      const evIn: { idx: number; ev: EventInput }[] = [];
      for (const { p, i } of live) {
        const e = p.entry;
        if (e.run) {
          const id = e.fence?.runId;
          if (!id) throw new Error('run update needs a fence');
          await trx.updateTable('engine_runs').set(e.run).where('id', '=', id).execute();
        }
        if (e.extra) {
          const more = await e.extra(trx);
          if (more) for (const ev of more) evIn.push({ idx: i, ev });
        }
        for (const ev of e.events ?? []) evIn.push({ idx: i, ev });
      }
      // 4. Events last (PostgreSQL: under an advisory lock so seq order is commit order).
      if (evIn.length) {
        const inserted = await insertEvents(trx, this.store.dialect, evIn.map((x) => x.ev));
        evIn.forEach((x, k) => (results[x.idx] as EngineEvent[]).push(inserted[k]!));
      }
      return results;
    });
  }
}

/** Inserts events in order and returns them with their seq. Must be the last lock taken in the transaction. */
export async function insertEvents(trx: Kysely<any>, dialect: string, evs: EventInput[]): Promise<EngineEvent[]> {
  if (!evs.length) return [];
  if (dialect === 'postgres') await sql`select pg_advisory_xact_lock(${EVENTS_LOCK})`.execute(trx);
  const out: EngineEvent[] = [];
  for (let k = 0; k < evs.length; k += 200) {
    const chunk = evs.slice(k, k + 200);
    const rows = await trx
      .insertInto('engine_events')
      .values(chunk.map((e) => ({ type: e.type, subject: e.subject, run_id: e.runId ?? null, data: JSON.stringify(e.data), at: e.at })))
      .returning('seq')
      .execute();
    const seqs = rows.map((r: any) => Number(r.seq)).sort((a: number, b: number) => a - b);
    chunk.forEach((e, j) => out.push({ seq: seqs[j]!, type: e.type, subject: e.subject, runId: e.runId ?? null, data: e.data, at: e.at }));
  }
  return out;
}

import { sql, type Kysely } from 'kysely';
import { col, type AreaMigration } from '../store/migrate.js';
import type { DialectName } from '../store/store.js';

/**
 * The engine's tables. Timestamps are bigint ms, JSON is text, booleans are 0/1.
 *
 * - engine_runs: one row per run; also the lease (owner, epoch, expiry) and the
 *   due time (`available_at`: when a worker may pick the run up; null once terminal).
 * - engine_steps: the journal, one row per (run, seq).
 * - engine_signals: buffered signals (also child-completion notices), consumed by a wait.
 * - engine_events: append-only event stream with a monotonically increasing `seq`.
 * - engine_history: operator actions on runs (audit).
 * - engine_schedules, engine_trigger_cursors: cron schedules and event-trigger progress.
 */
export interface EngineRunTable {
  id: string;
  workflow: string;
  version: number;
  status: string;
  input: string;
  output: string | null;
  error: string | null;
  labels: string;
  queue: string;
  concurrency_key: string | null;
  parent_run_id: string | null;
  progress: string | null;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
  updated_at: number;
  available_at: number | null;
  timeout_ms: number | null;
  deadline_at: number | null;
  lease_owner: string | null;
  lease_epoch: number;
  lease_expires_at: number | null;
  cancel_requested: number;
  cancel_reason: string | null;
  /** The worker that executes (or last executed) the run. */
  worker: string | null;
  /** When and from which worker the run was last taken over (its lease expired or its worker died). */
  taken_over_at: number | null;
  taken_over_from: string | null;
}

export interface EngineStepTable {
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
  /** The worker that wrote this journal row (executed the step). */
  worker: string | null;
}

export interface EngineSignalTable {
  id: number;
  run_id: string;
  name: string;
  payload: string | null;
  created_at: number;
  consumed_seq: number | null;
}

export interface EngineEventTable {
  seq: number;
  type: string;
  subject: string;
  run_id: string | null;
  data: string;
  at: number;
}

export interface EngineHistoryTable {
  id: number;
  run_id: string;
  actor: string;
  action: string;
  data: string | null;
  at: number;
}

export interface EngineScheduleTable {
  id: string;
  cron: string;
  timezone: string | null;
  workflow: string;
  input: string;
  overlap: string;
  paused: number;
  next_at: number;
  last_run_id: string | null;
  buffered: number;
  /** JSON object: labels every run it starts carries (besides `schedule`). */
  labels: string;
  created_at: number;
  updated_at: number;
}

export interface EngineTriggerCursorTable {
  trigger_id: string;
  last_seq: number;
}

export interface EngineRunLabelTable {
  run_id: string;
  key: string;
  value: string;
}

declare module '../store/schema.js' {
  interface Database {
    engine_runs: EngineRunTable;
    engine_steps: EngineStepTable;
    engine_signals: EngineSignalTable;
    engine_events: EngineEventTable;
    engine_history: EngineHistoryTable;
    engine_schedules: EngineScheduleTable;
    engine_trigger_cursors: EngineTriggerCursorTable;
    engine_run_labels: EngineRunLabelTable;
  }
}

function serialPk(dialect: DialectName): string {
  return dialect === 'postgres' ? 'bigserial primary key' : 'integer primary key autoincrement';
}

export const engineMigrations: AreaMigration[] = [
  {
    name: '0100_engine_runs',
    async up(db: Kysely<any>, dialect: DialectName) {
      await db.schema
        .createTable('engine_runs')
        .addColumn('id', col.id, (c) => c.primaryKey())
        .addColumn('workflow', col.text, (c) => c.notNull())
        .addColumn('version', col.int, (c) => c.notNull())
        .addColumn('status', col.text, (c) => c.notNull())
        .addColumn('input', col.json, (c) => c.notNull())
        .addColumn('output', col.json)
        .addColumn('error', col.json)
        .addColumn('labels', col.json, (c) => c.notNull())
        .addColumn('queue', col.text, (c) => c.notNull())
        .addColumn('concurrency_key', col.text)
        .addColumn('parent_run_id', col.text)
        .addColumn('progress', col.json)
        .addColumn('created_at', col.ts, (c) => c.notNull())
        .addColumn('started_at', col.ts)
        .addColumn('finished_at', col.ts)
        .addColumn('updated_at', col.ts, (c) => c.notNull())
        .addColumn('available_at', col.ts)
        .addColumn('timeout_ms', col.bigint)
        .addColumn('deadline_at', col.ts)
        .addColumn('lease_owner', col.text)
        .addColumn('lease_epoch', col.int, (c) => c.notNull().defaultTo(0))
        .addColumn('lease_expires_at', col.ts)
        .addColumn('cancel_requested', col.bool, (c) => c.notNull().defaultTo(0))
        .addColumn('cancel_reason', col.text)
        .execute();
      // Runnable runs by due time (terminal runs have available_at null).
      await sql`create index engine_runs_due on engine_runs (available_at) where available_at is not null`.execute(db);
      await sql`create index engine_runs_active_key on engine_runs (concurrency_key, status) where concurrency_key is not null and available_at is not null`.execute(db);
      await sql`create index engine_runs_active_queue on engine_runs (queue, status) where available_at is not null`.execute(db);
      await db.schema.createIndex('engine_runs_workflow').on('engine_runs').columns(['workflow', 'created_at']).execute();
      await db.schema.createIndex('engine_runs_status').on('engine_runs').columns(['status', 'created_at']).execute();
      await sql`create index engine_runs_parent on engine_runs (parent_run_id) where parent_run_id is not null`.execute(db);

      await db.schema
        .createTable('engine_run_labels')
        .addColumn('run_id', col.id, (c) => c.notNull())
        .addColumn('key', col.text, (c) => c.notNull())
        .addColumn('value', col.text, (c) => c.notNull())
        .addPrimaryKeyConstraint('engine_run_labels_pk', ['run_id', 'key'])
        .execute();
      await db.schema.createIndex('engine_run_labels_kv').on('engine_run_labels').columns(['key', 'value']).execute();

      await db.schema
        .createTable('engine_steps')
        .addColumn('run_id', col.id, (c) => c.notNull())
        .addColumn('seq', col.int, (c) => c.notNull())
        .addColumn('name', col.text, (c) => c.notNull())
        .addColumn('kind', col.text, (c) => c.notNull())
        .addColumn('status', col.text, (c) => c.notNull())
        .addColumn('attempts', col.int, (c) => c.notNull())
        .addColumn('output', col.json)
        .addColumn('error', col.json)
        .addColumn('logs', col.json)
        .addColumn('started_at', col.ts, (c) => c.notNull())
        .addColumn('finished_at', col.ts)
        .addPrimaryKeyConstraint('engine_steps_pk', ['run_id', 'seq'])
        .execute();

      await sql.raw(`create table engine_signals (id ${serialPk(dialect)}, run_id text not null, name text not null, payload text, created_at bigint not null, consumed_seq integer)`).execute(db);
      await sql`create index engine_signals_pending on engine_signals (run_id, name) where consumed_seq is null`.execute(db);

      await sql.raw(`create table engine_events (seq ${serialPk(dialect)}, type text not null, subject text not null, run_id text, data text not null, at bigint not null)`).execute(db);
      await db.schema.createIndex('engine_events_subject').on('engine_events').columns(['subject', 'seq']).execute();
      await db.schema.createIndex('engine_events_type').on('engine_events').columns(['type', 'seq']).execute();

      await sql.raw(`create table engine_history (id ${serialPk(dialect)}, run_id text not null, actor text not null, action text not null, data text, at bigint not null)`).execute(db);
      await db.schema.createIndex('engine_history_run').on('engine_history').columns(['run_id', 'id']).execute();

      await db.schema
        .createTable('engine_schedules')
        .addColumn('id', col.id, (c) => c.primaryKey())
        .addColumn('cron', col.text, (c) => c.notNull())
        .addColumn('timezone', col.text)
        .addColumn('workflow', col.text, (c) => c.notNull())
        .addColumn('input', col.json, (c) => c.notNull())
        .addColumn('overlap', col.text, (c) => c.notNull())
        .addColumn('paused', col.bool, (c) => c.notNull().defaultTo(0))
        .addColumn('next_at', col.ts, (c) => c.notNull())
        .addColumn('last_run_id', col.text)
        .addColumn('buffered', col.bool, (c) => c.notNull().defaultTo(0))
        .addColumn('created_at', col.ts, (c) => c.notNull())
        .addColumn('updated_at', col.ts, (c) => c.notNull())
        .execute();

      await db.schema
        .createTable('engine_trigger_cursors')
        .addColumn('trigger_id', col.id, (c) => c.primaryKey())
        .addColumn('last_seq', col.bigint, (c) => c.notNull())
        .execute();
    },
  },
  {
    // Labels for a schedule's runs, so that e.g. a stack's scheduled drift
    // checks are found with the stack's other drift runs.
    name: '0101_engine_schedule_labels',
    async up(db: Kysely<any>) {
      await db.schema.alterTable('engine_schedules').addColumn('labels', col.json, (c) => c.notNull().defaultTo('{}')).execute();
    },
  },
  {
    // Which worker (host-pid-nonce) executes a run and wrote each journal row,
    // and when a run was taken over from another worker.
    name: '0102_engine_workers',
    async up(db: Kysely<any>) {
      await db.schema.alterTable('engine_runs').addColumn('worker', col.text).execute();
      await db.schema.alterTable('engine_runs').addColumn('taken_over_at', col.ts).execute();
      await db.schema.alterTable('engine_runs').addColumn('taken_over_from', col.text).execute();
      await db.schema.alterTable('engine_steps').addColumn('worker', col.text).execute();
    },
  },
];

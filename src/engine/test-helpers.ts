import { afterAll } from 'vitest';
import { sql } from 'kysely';
import { ManualClock, type Clock } from '../core/clock.js';
import { seededRng } from '../core/rng.js';
import type { DialectName } from '../store/store.js';
import { openTestStore, type TestDb } from '../../test/support/dialects.js';
import { Engine, engineMigrations, type EngineOptions, type EngineEvent, type EventFilter } from './index.js';

/** Test support for engine tests: a fresh database and an engine on a manual clock. */
export interface EngineHarness {
  t: TestDb;
  engine: Engine;
  clock: ManualClock;
  /** Resolves with the first live event matching `filter` and `pred` (checks already-committed events too). */
  waitEvent(filter: EventFilter, pred?: (e: EngineEvent) => boolean): Promise<EngineEvent>;
  /** A second engine on the same store (another worker). */
  another(opts?: Partial<EngineOptions>): Engine;
  close(): Promise<void>;
}

/**
 * PostgreSQL: one database per test file, emptied between tests (creating and
 * dropping a database per test dominated the suite's time). SQLite: a fresh
 * file per test. Only the engine's tables are migrated.
 */
let pgShared: TestDb | undefined;
afterAll(async () => {
  await pgShared?.cleanup();
  pgShared = undefined;
});

async function testStore(dialect: DialectName): Promise<TestDb> {
  if (dialect === 'sqlite') return openTestStore(dialect, { migrations: engineMigrations });
  pgShared ??= await openTestStore('postgres', { migrations: engineMigrations });
  const shared = pgShared;
  return {
    store: shared.store,
    url: shared.url,
    cleanup: async () => {
      // Every table, not only the engine's: other areas' tests migrate their tables into this database too.
      const tables = await sql<{ tablename: string }>`select tablename from pg_tables where schemaname = current_schema() and tablename not like 'schema_migrations%'`.execute(shared.store.db);
      const names = tables.rows.map((r) => `"${r.tablename}"`).join(', ');
      if (names) await sql.raw(`truncate table ${names} restart identity cascade`).execute(shared.store.db);
    },
  };
}

export async function engineHarness(dialect: DialectName, opts: Partial<EngineOptions> = {}): Promise<EngineHarness> {
  const t = await testStore(dialect);
  const clock = (opts.clock as ManualClock | undefined) ?? new ManualClock();
  const engines: Engine[] = [];
  const make = (o: Partial<EngineOptions> = {}) => {
    const e = new Engine({ store: t.store, clock: clock as Clock, pollMs: 20, leaseMs: 30_000, heartbeatMs: 10_000, rng: seededRng(7), ...opts, ...o });
    engines.push(e);
    return e;
  };
  const engine = make();
  return {
    t,
    engine,
    clock,
    another: make,
    waitEvent: (filter, pred = () => true) =>
      new Promise<EngineEvent>((resolve, reject) => {
        let done = false;
        const unsubs: (() => void)[] = [];
        const finish = (e: EngineEvent) => {
          if (done) return;
          done = true;
          for (const u of unsubs) u();
          resolve(e);
        };
        for (const e of engines) unsubs.push(e.subscribe(filter, (ev) => pred(ev) && finish(ev)));
        // Events committed by other processes/engines: look in the table too.
        const started = Date.now();
        const look = () => {
          if (done) return;
          engine.events(filter).then((evs) => {
            const e = evs.find(pred);
            if (e) finish(e);
            else if (Date.now() - started > 30_000) reject(new Error(`no event matching ${JSON.stringify(filter)}`));
            else setTimeout(look, 10);
          }, reject);
        };
        look();
      }),
    close: async () => {
      for (const e of engines) await e.stop({ graceful: false });
      await t.cleanup();
    },
  };
}

/** Polls `cond` on the event loop (no clock involved) until true; for conditions without an event. */
export async function until(cond: () => boolean | Promise<boolean>, what = 'condition', maxMs = 20_000): Promise<void> {
  const start = Date.now();
  while (!(await cond())) {
    if (Date.now() - start > maxMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

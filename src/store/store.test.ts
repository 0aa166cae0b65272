import { afterEach, describe, expect, it, vi } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { sql } from 'kysely';
import { createPgDatabase, DIALECTS, openTestStore, type TestDb } from '../../test/support/dialects.js';
import { Store } from './store.js';
import { col, type AreaMigration } from './migrate.js';

const testMigration: AreaMigration = {
  name: '9900_test_items',
  async up(db) {
    await db.schema.createTable('test_items').addColumn('id', col.id, (c) => c.primaryKey()).addColumn('n', col.int, (c) => c.notNull()).addColumn('at', col.ts).execute();
  },
};

describe.each(DIALECTS)('store on %s', (dialect) => {
  let t: TestDb;
  afterEach(async () => t?.cleanup());

  it('migrates, commits and rolls back transactions', async () => {
    t = await openTestStore(dialect, { migrations: [testMigration] });
    const db = t.store.db as any;
    await t.store.transaction(async (trx: any) => {
      await trx.insertInto('test_items').values({ id: 'a', n: 1, at: 1_700_000_000_123 }).execute();
    });
    await expect(t.store.transaction(async (trx: any) => {
      await trx.insertInto('test_items').values({ id: 'b', n: 2 }).execute();
      throw new Error('boom');
    })).rejects.toThrow('boom');
    const rows = await db.selectFrom('test_items').selectAll().execute();
    expect(rows).toEqual([{ id: 'a', n: 1, at: 1_700_000_000_123 }]);
  });

  it('re-running migrations is a no-op', async () => {
    t = await openTestStore(dialect, { migrations: [testMigration] });
    const { migrate } = await import('./migrate.js');
    expect(await migrate(t.store, [testMigration])).toEqual([]);
    const r = await sql<{ c: number }>`select count(*) as c from schema_migrations`.execute(t.store.db);
    expect(Number(r.rows[0]!.c)).toBe(1);
  });
});

describe('postgres pool', () => {
  it('close ends every pooled connection, also when only the raw pool was used', async () => {
    const pg = await createPgDatabase('store');
    try {
      const store = Store.open({ url: pg.url, poolSize: 4 });
      await Promise.all(Array.from({ length: 8 }, () => store.pool!.query('select pg_sleep(0.01)')));
      expect(store.pool!.totalCount).toBe(4);
      await store.close();
      expect(store.pool!.totalCount).toBe(0);
      // the server sees none of them any more (a backend exits just after its client says goodbye)
      const admin = Store.open({ url: pg.url, poolSize: 1 });
      let others = -1;
      for (let i = 0; i < 50 && others !== 0; i++) {
        const r = await admin.pool!.query<{ n: string }>('select count(*) as n from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()');
        others = Number(r.rows[0]!.n);
        if (others !== 0) await new Promise((res) => setTimeout(res, 20));
      }
      await admin.close();
      expect(others).toBe(0);
    } finally {
      await pg.drop();
    }
  });
});

describe('sqlite single-process lock', () => {
  it('refuses a second process on the same file with a clear error', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'infraflow-lock-'));
    const file = join(dir, 'x.db');
    const store = Store.open({ url: `sqlite:${file}` });
    try {
      const script = `import('${join(process.cwd(), 'src/store/store.ts')}').then(({Store}) => { try { Store.open({url: 'sqlite:${file}'}); console.log('opened'); } catch (e) { console.log(e.code + ' ' + e.message); } })`;
      const r = spawnSync(process.execPath, ['--import', 'tsx', '-e', script], { encoding: 'utf8' });
      expect(r.stdout).toContain('store.sqlite_in_use');
      expect(r.stdout).toContain(`process ${process.pid}`);
      expect(r.stdout).toContain('PostgreSQL');
    } finally {
      await store.close();
    }
    // after close, the lock is gone and another open succeeds
    const again = Store.open({ url: `sqlite:${file}` });
    await again.close();
    rmSync(dir, { recursive: true, force: true });
  });
});

describe('sqlite prepared statement cache', () => {
  it('reuses statements by SQL text: fresh data, schema changes, streams, bounded size', async () => {
    const store = Store.open({ url: ':memory:', statementCache: 2 });
    try {
      const db = store.db as any;
      await sql`create table c (id integer primary key, v text not null)`.execute(db);
      const read = () => db.selectFrom('c').selectAll().orderBy('id').execute();
      for (let i = 1; i <= 5; i++) {
        await db.insertInto('c').values({ id: i, v: `v${i}` }).execute();
        expect((await read()).length).toBe(i); // the kept statement sees every new row
      }
      // more distinct statements than the cache holds: each still runs correctly
      for (let i = 1; i <= 5; i++) expect((await db.selectFrom('c').select('v').where('id', '=', i).where('v', 'like', `v${i}%`).execute())[0].v).toBe(`v${i}`);
      // a schema change re-prepares the kept statement: `select *` now returns the new column
      await sql`alter table c add column w text not null default 'x'`.execute(db);
      expect((await read())[0]).toEqual({ id: 1, v: 'v1', w: 'x' });
      // a stream left early frees its statement for the next run of the same SQL
      for await (const row of db.selectFrom('c').selectAll().orderBy('id').stream()) if (row.id === 2) break;
      const seen: number[] = [];
      for await (const row of db.selectFrom('c').selectAll().orderBy('id').stream()) seen.push(row.id);
      expect(seen).toEqual([1, 2, 3, 4, 5]);
      // writes through kept statements inside store.transaction roll back as before
      await expect(store.transaction(async (trx: any) => {
        await trx.insertInto('c').values({ id: 6, v: 'v6' }).execute();
        throw new Error('boom');
      })).rejects.toThrow('boom');
      expect((await read()).length).toBe(5);
    } finally {
      await store.close();
    }
  });
});

describe('SQLite FULL: commits made durable off the event loop', () => {
  it('every write resolves after a WAL fsync; concurrent writes share fsyncs; SQLite itself does not fsync at commit', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'infraflow-durable-'));
    const store = Store.open({ url: `sqlite:${join(dir, 'd.db')}`, synchronous: 'FULL' });
    try {
      const { migrate } = await import('./migrate.js');
      await migrate(store, [testMigration]);
      const db = store.db as any;
      // the connection does not fsync at commit: the store does, through libuv
      expect(store.sqlite!.pragma('synchronous', { simple: true })).toBe(1); // NORMAL
      const before = store.walSyncs;
      await store.transaction(async (trx: any) => trx.insertInto('test_items').values({ id: 't1', n: 1 }).execute());
      expect(store.walSyncs).toBeGreaterThan(before); // resolved only after an fsync
      const mid = store.walSyncs;
      await db.insertInto('test_items').values({ id: 'a1', n: 2 }).execute(); // autocommit, outside a transaction
      expect(store.walSyncs).toBeGreaterThan(mid);
      // 100 concurrent writes: each waits for an fsync begun after its commit, but they share them
      const start = store.walSyncs;
      await Promise.all(Array.from({ length: 100 }, (_, i) => i % 2
        ? store.transaction(async (trx: any) => trx.insertInto('test_items').values({ id: `c${i}`, n: i }).execute())
        : db.insertInto('test_items').values({ id: `c${i}`, n: i }).execute()));
      const used = store.walSyncs - start;
      expect(used).toBeGreaterThan(0);
      expect(used).toBeLessThan(100);
      expect((await db.selectFrom('test_items').select('id').execute()).length).toBe(102);
      // reads never wait for an fsync
      const r0 = store.walSyncs;
      await db.selectFrom('test_items').selectAll().execute();
      expect(store.walSyncs).toBe(r0);
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('NORMAL never fsyncs per commit', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'infraflow-durable-'));
    const store = Store.open({ url: `sqlite:${join(dir, 'd.db')}`, synchronous: 'NORMAL' });
    try {
      const { migrate } = await import('./migrate.js');
      await migrate(store, [testMigration]);
      await store.transaction(async (trx: any) => trx.insertInto('test_items').values({ id: 't1', n: 1 }).execute());
      expect(store.walSyncs).toBe(0);
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('SQLite FULL: checkpoints off the event loop', () => {
  it('the connection never checkpoints by itself; a thread of its own keeps the WAL from growing without bound', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'infraflow-ckpt-'));
    const store = Store.open({ url: `sqlite:${join(dir, 'c.db')}`, synchronous: 'FULL' });
    try {
      const { migrate } = await import('./migrate.js');
      await migrate(store, [testMigration]);
      expect(store.sqlite!.pragma('wal_autocheckpoint', { simple: true })).toBe(0);
      const db = store.db as any;
      const blob = 'x'.repeat(4000);
      for (let i = 0; i < 3000; i++) await db.insertInto('test_items').values({ id: `${i}-${blob}`, n: i }).execute();
      const { statSync } = await import('node:fs');
      // ~12 MB written; the checkpointer copies it to the database file (PASSIVE), then the next write restarts the WAL
      await vi.waitFor(() => {
        expect(statSync(join(dir, 'c.db')).size).toBeGreaterThan(8 * 1024 * 1024);
      }, { timeout: 30_000, interval: 100 });
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});

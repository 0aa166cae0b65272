import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';
import { Store, type DialectName } from '../../src/store/store.js';
import { migrate, type AreaMigration } from '../../src/store/migrate.js';
import { allMigrations } from '../../src/app/migrations.js';

/** Every store and engine test loops over these (Kysely's model). */
export const DIALECTS: DialectName[] = ['sqlite', 'postgres'];

export function pgServerUrl(): string {
  return process.env.DATABASE_URL ?? inject('pgUrl');
}

/** Creates an empty database on the test PostgreSQL server and returns its url. */
export async function createPgDatabase(prefix = 't'): Promise<{ url: string; drop(): Promise<void> }> {
  const serverUrl = pgServerUrl();
  const name = `${prefix}_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();
  const u = new URL(serverUrl);
  u.pathname = `/${name}`;
  return {
    url: u.toString(),
    drop: async () => {
      const c = new pg.Client({ connectionString: serverUrl });
      await c.connect();
      await c.query(`drop database if exists ${name} with (force)`);
      await c.end();
    },
  };
}

export interface TestDb {
  store: Store;
  url: string;
  /** Closes the store and removes the database. */
  cleanup(): Promise<void>;
}

/** A fresh, migrated database of the given dialect. */
export async function openTestStore(dialect: DialectName, opts: { migrations?: AreaMigration[]; poolSize?: number; synchronous?: 'FULL' | 'NORMAL' } = {}): Promise<TestDb> {
  const migrations = opts.migrations ?? allMigrations;
  if (dialect === 'sqlite') {
    const dir = mkdtempSync(join(tmpdir(), 'infraflow-test-'));
    const url = `sqlite:${join(dir, 'test.db')}`;
    const store = Store.open({ url, synchronous: opts.synchronous ?? 'NORMAL' });
    await migrate(store, migrations);
    return { store, url, cleanup: async () => { await store.close(); rmSync(dir, { recursive: true, force: true }); } };
  }
  const pgDb = await createPgDatabase();
  const store = Store.open({ url: pgDb.url, poolSize: opts.poolSize ?? 10 });
  await migrate(store, migrations);
  return { store, url: pgDb.url, cleanup: async () => { await store.close(); await pgDb.drop(); } };
}

import { sql, type Transaction } from 'kysely';
import { TransientError } from '../core/errors.js';
import type { Database } from '../store/schema.js';
import type { Store, Trx } from '../store/store.js';

/**
 * Transactions for allocators. Correctness never depends on this retry: the
 * database constraints (unique indexes, conditional updates, row locks)
 * refuse every double allocation. The retry only turns a lost race on
 * PostgreSQL (serialization failure, deadlock, unique violation) or a busy
 * SQLite file into another attempt instead of an error for the caller.
 */
const RETRYABLE_PG = new Set(['40001', '40P01', '23505', '55P03']);

/** Thrown inside an allocation transaction when a conditional update found the row already taken: the transaction is retried. */
export class RaceLost extends Error {
  readonly code = 'alloc.race';
}

export function isRetryableDbError(e: unknown): boolean {
  if (e instanceof RaceLost) return true;
  const code = (e as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return false;
  return RETRYABLE_PG.has(code) || code === 'SQLITE_BUSY' || code === 'SQLITE_BUSY_SNAPSHOT';
}

/** Re-exported from the store (one definition for every area). */
export { isUniqueViolation } from '../store/errors.js';

export async function withTx<T>(store: Store, fn: (trx: Transaction<Database>) => Promise<T>, opts: { attempts?: number } = {}): Promise<T> {
  const attempts = opts.attempts ?? 30;
  let last: unknown;
  for (let i = 0; i < attempts; i++) {
    try {
      return await store.transaction(fn);
    } catch (e) {
      if (!isRetryableDbError(e)) throw e;
      last = e;
      // small randomized backoff so racing processes spread out
      await new Promise((r) => setTimeout(r, Math.min(50, 1 + i * 2) * Math.random()));
    }
  }
  throw new TransientError('alloc.contention', `the allocation lost ${attempts} races in a row against concurrent requests; try again`, { cause: last });
}

/** `select … for update` on PostgreSQL; SQLite's BEGIN IMMEDIATE already serializes writers. */
export async function lockRow(trx: Trx, dialect: 'sqlite' | 'postgres', table: string, id: string): Promise<boolean> {
  if (dialect === 'postgres') {
    const r = await sql<{ id: string }>`select id from ${sql.table(table)} where id = ${id} for update`.execute(trx);
    return r.rows.length > 0;
  }
  const r = await sql<{ id: string }>`select id from ${sql.table(table)} where id = ${id}`.execute(trx);
  return r.rows.length > 0;
}

export function parseJson<T>(text: string | null | undefined, fallback: T): T {
  if (text === null || text === undefined || text === '') return fallback;
  return JSON.parse(text) as T;
}

/**
 * SQLite hot path: one write transaction run with better-sqlite3's
 * synchronous API on the Store's own connection, holding Kysely's
 * connection lock so that no other transaction of this process interleaves.
 * `fn` must only use `store.sqlite` (synchronous) while it runs.
 */
export async function sqliteRawTx<T>(store: Store, fn: () => Promise<T>): Promise<T> {
  const db = store.sqlite;
  if (!db) throw new Error('sqliteRawTx needs a SQLite store');
  const out = await store.db.connection().execute(async () => {
    db.exec('BEGIN IMMEDIATE');
    try {
      const r = await fn();
      db.exec('COMMIT');
      return r;
    } catch (e) {
      if (db.inTransaction) db.exec('ROLLBACK');
      throw e;
    }
  });
  await store.durable();
  return out;
}

/**
 * PostgreSQL hot path: one transaction on a pooled client with named
 * (server-side prepared) statements, retried like `withTx` on lost races.
 */
export async function pgRawTx<T>(store: Store, fn: (client: PgClient) => Promise<T>, opts: { attempts?: number } = {}): Promise<T> {
  const pool = store.pool;
  if (!pool) throw new Error('pgRawTx needs a PostgreSQL store');
  const attempts = opts.attempts ?? 30;
  let last: unknown;
  for (let i = 0; i < attempts; i++) {
    const client = await pool.connect();
    let broken = false;
    try {
      await client.query('begin');
      const r = await fn(client);
      await client.query('commit');
      return r;
    } catch (e) {
      try {
        await client.query('rollback');
      } catch {
        broken = true;
      }
      if (!isRetryableDbError(e)) throw e;
      last = e;
    } finally {
      client.release(broken);
    }
    await new Promise((r) => setTimeout(r, Math.min(50, 1 + i * 2) * Math.random()));
  }
  throw new TransientError('alloc.contention', `the allocation lost ${attempts} races in a row against concurrent requests; try again`, { cause: last });
}

export interface PgClient {
  query<R extends Record<string, unknown> = Record<string, unknown>>(q: { name?: string; text: string; values?: unknown[] } | string): Promise<{ rows: R[]; rowCount: number | null }>;
}

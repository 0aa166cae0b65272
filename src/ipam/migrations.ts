import { sql } from 'kysely';
import { col, rebuildSqliteTable, type AreaMigration } from '../store/migrate.js';
import './tables.js';

export const ipamMigrations: AreaMigration[] = [
  {
    name: '0300_ipam_initial',
    async up(db) {
      await db.schema.createTable('ipam_prefixes')
        .addColumn('id', col.id, (c) => c.primaryKey())
        .addColumn('scope', col.text, (c) => c.notNull())
        .addColumn('family', col.int, (c) => c.notNull())
        .addColumn('cidr', col.text, (c) => c.notNull())
        .addColumn('network_hex', col.text, (c) => c.notNull())
        .addColumn('last_hex', col.text, (c) => c.notNull())
        .addColumn('length', col.int, (c) => c.notNull())
        .addColumn('parent_id', col.id, (c) => c.references('ipam_prefixes.id'))
        .addColumn('kind', col.text, (c) => c.notNull())
        .addColumn('gateway', col.text)
        .addColumn('reserved', col.json, (c) => c.notNull().defaultTo('[]'))
        .addColumn('cursor_hex', col.text, (c) => c.notNull())
        .addColumn('holder', col.text)
        .addColumn('reservation_id', col.text)
        .addColumn('expires_at', col.ts)
        .addColumn('idem_key', col.text)
        .addColumn('description', col.text, (c) => c.notNull().defaultTo(''))
        .addColumn('labels', col.json, (c) => c.notNull().defaultTo('{}'))
        .addColumn('created_at', col.ts, (c) => c.notNull())
        .execute();
      // one row per (scope, family, network, length): the same prefix twice is refused by the database
      await db.schema.createIndex('ipam_prefixes_net').on('ipam_prefixes').columns(['scope', 'family', 'network_hex', 'length']).unique().execute();
      await db.schema.createIndex('ipam_prefixes_parent').on('ipam_prefixes').columns(['parent_id', 'network_hex']).execute();
      await db.schema.createIndex('ipam_prefixes_key').on('ipam_prefixes').column('idem_key').unique().execute();
      await db.schema.createIndex('ipam_prefixes_resv').on('ipam_prefixes').column('reservation_id').execute();
      await db.schema.createIndex('ipam_prefixes_exp').on('ipam_prefixes').column('expires_at').execute();

      await db.schema.createTable('ipam_addresses')
        .addColumn('id', col.id, (c) => c.primaryKey())
        .addColumn('prefix_id', col.id, (c) => c.notNull().references('ipam_prefixes.id'))
        .addColumn('family', col.int, (c) => c.notNull())
        .addColumn('address_hex', col.text, (c) => c.notNull())
        .addColumn('address', col.text, (c) => c.notNull())
        .addColumn('holder', col.text, (c) => c.notNull())
        .addColumn('target', col.text)
        .addColumn('reservation_id', col.text)
        .addColumn('expires_at', col.ts)
        .addColumn('idem_key', col.text)
        .addColumn('created_at', col.ts, (c) => c.notNull())
        .execute();
      // THE guarantee: one address is held by at most one allocation
      await db.schema.createIndex('ipam_addresses_uniq').on('ipam_addresses').columns(['prefix_id', 'address_hex']).unique().execute();
      await db.schema.createIndex('ipam_addresses_key').on('ipam_addresses').column('idem_key').unique().execute();
      await db.schema.createIndex('ipam_addresses_resv').on('ipam_addresses').column('reservation_id').execute();
      await db.schema.createIndex('ipam_addresses_exp').on('ipam_addresses').column('expires_at').execute();
      await db.schema.createIndex('ipam_addresses_holder').on('ipam_addresses').column('holder').execute();

      await db.schema.createTable('ipam_vlan_pools')
        .addColumn('id', col.id, (c) => c.primaryKey())
        .addColumn('name', col.text, (c) => c.notNull().unique())
        .addColumn('scope', col.text, (c) => c.notNull())
        .addColumn('kind', col.text, (c) => c.notNull())
        .addColumn('min_id', col.int, (c) => c.notNull())
        .addColumn('max_id', col.int, (c) => c.notNull())
        .addColumn('reserved', col.json, (c) => c.notNull().defaultTo('[]'))
        .addColumn('cursor_id', col.int, (c) => c.notNull())
        .addColumn('created_at', col.ts, (c) => c.notNull())
        .execute();
      await db.schema.createTable('ipam_vlan_allocs')
        .addColumn('id', col.id, (c) => c.primaryKey())
        .addColumn('pool_id', col.id, (c) => c.notNull().references('ipam_vlan_pools.id'))
        .addColumn('vid', col.int, (c) => c.notNull())
        .addColumn('holder', col.text, (c) => c.notNull())
        .addColumn('reservation_id', col.text)
        .addColumn('expires_at', col.ts)
        .addColumn('idem_key', col.text)
        .addColumn('created_at', col.ts, (c) => c.notNull())
        .execute();
      await db.schema.createIndex('ipam_vlan_allocs_uniq').on('ipam_vlan_allocs').columns(['pool_id', 'vid']).unique().execute();
      await db.schema.createIndex('ipam_vlan_allocs_key').on('ipam_vlan_allocs').column('idem_key').unique().execute();
      await db.schema.createIndex('ipam_vlan_allocs_resv').on('ipam_vlan_allocs').column('reservation_id').execute();
      await db.schema.createIndex('ipam_vlan_allocs_exp').on('ipam_vlan_allocs').column('expires_at').execute();
    },
  },
  {
    // Partial indexes: rows without an idempotency key, reservation or expiry (most
    // allocations) write no entry in those indexes, so a commit touches fewer pages.
    name: '0301_ipam_partial_indexes',
    async up(db) {
      const partial: [string, string, string][] = [
        ['ipam_prefixes', 'idem_key', 'ipam_prefixes_key'], ['ipam_prefixes', 'reservation_id', 'ipam_prefixes_resv'], ['ipam_prefixes', 'expires_at', 'ipam_prefixes_exp'],
        ['ipam_addresses', 'idem_key', 'ipam_addresses_key'], ['ipam_addresses', 'reservation_id', 'ipam_addresses_resv'], ['ipam_addresses', 'expires_at', 'ipam_addresses_exp'],
        ['ipam_vlan_allocs', 'idem_key', 'ipam_vlan_allocs_key'], ['ipam_vlan_allocs', 'reservation_id', 'ipam_vlan_allocs_resv'], ['ipam_vlan_allocs', 'expires_at', 'ipam_vlan_allocs_exp'],
      ];
      for (const [table, column, name] of partial) {
        await db.schema.dropIndex(name).execute();
        let b = db.schema.createIndex(name).on(table).column(column).where(sql.ref(column), 'is not', null);
        if (column === 'idem_key') b = b.unique();
        await b.execute();
      }
    },
  },
  {
    // A container's child_seq counts every change to its children (carve, create
    // inside, delete, release), each made under the container's row lock. The
    // one-statement carve (fast.ts) is conditional on it: a carve computed from
    // what this process last saw applies only if no child changed since.
    name: '0302_ipam_child_seq',
    async up(db) {
      await db.schema.alterTable('ipam_prefixes').addColumn('child_seq', col.bigint, (c) => c.notNull().defaultTo(0)).execute();
    },
  },
  {
    // SQLite: address and VLAN allocations become WITHOUT ROWID tables keyed by
    // their id, so an allocation writes one b-tree fewer (no separate rowid
    // table beside the id index). PostgreSQL has no rowid: nothing to do.
    name: '0303_ipam_without_rowid',
    async up(db, dialect) {
      if (dialect !== 'sqlite') return;
      const rebuild = (table: string, columns: string, indexes: string[]) =>
        rebuildSqliteTable(db, table, `create table ${table}_new (${columns}, primary key (id)) without rowid`, indexes);
      await rebuild('ipam_addresses',
        'id text not null, prefix_id text not null references ipam_prefixes (id), family integer not null, address_hex text not null, address text not null, holder text not null, target text, reservation_id text, expires_at bigint, idem_key text, created_at bigint not null',
        [
          'create unique index ipam_addresses_uniq on ipam_addresses (prefix_id, address_hex)',
          'create unique index ipam_addresses_key on ipam_addresses (idem_key) where idem_key is not null',
          'create index ipam_addresses_resv on ipam_addresses (reservation_id) where reservation_id is not null',
          'create index ipam_addresses_exp on ipam_addresses (expires_at) where expires_at is not null',
          'create index ipam_addresses_holder on ipam_addresses (holder)',
        ]);
      await rebuild('ipam_vlan_allocs',
        'id text not null, pool_id text not null references ipam_vlan_pools (id), vid integer not null, holder text not null, reservation_id text, expires_at bigint, idem_key text, created_at bigint not null',
        [
          'create unique index ipam_vlan_allocs_uniq on ipam_vlan_allocs (pool_id, vid)',
          'create unique index ipam_vlan_allocs_key on ipam_vlan_allocs (idem_key) where idem_key is not null',
          'create index ipam_vlan_allocs_resv on ipam_vlan_allocs (reservation_id) where reservation_id is not null',
          'create index ipam_vlan_allocs_exp on ipam_vlan_allocs (expires_at) where expires_at is not null',
        ]);
    },
  },
];

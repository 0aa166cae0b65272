import { sql } from 'kysely';
import { col, rebuildSqliteTable, type AreaMigration } from '../store/migrate.js';
import './tables.js';

export const inventoryMigrations: AreaMigration[] = [
  {
    name: '0200_inventory_initial',
    async up(db) {
      await db.schema.createTable('inv_datacenters')
        .addColumn('id', col.id, (c) => c.primaryKey())
        .addColumn('region', col.text, (c) => c.notNull())
        .addColumn('description', col.text, (c) => c.notNull().defaultTo(''))
        .addColumn('labels', col.json, (c) => c.notNull().defaultTo('{}'))
        .addColumn('created_at', col.ts, (c) => c.notNull())
        .execute();
      await db.schema.createTable('inv_racks')
        .addColumn('id', col.id, (c) => c.primaryKey())
        .addColumn('datacenter_id', col.id, (c) => c.notNull().references('inv_datacenters.id'))
        .addColumn('name', col.text, (c) => c.notNull())
        .addColumn('row', col.text)
        .addColumn('height_u', col.int, (c) => c.notNull().defaultTo(42))
        .addColumn('created_at', col.ts, (c) => c.notNull())
        .addUniqueConstraint('inv_racks_name', ['datacenter_id', 'name'])
        .execute();
      await db.schema.createTable('inv_server_types')
        .addColumn('id', col.id, (c) => c.primaryKey())
        .addColumn('cpu_model', col.text, (c) => c.notNull())
        .addColumn('cpu_cores', col.int, (c) => c.notNull())
        .addColumn('ram_gb', col.int, (c) => c.notNull())
        .addColumn('disks', col.json, (c) => c.notNull().defaultTo('[]'))
        .addColumn('nics', col.json, (c) => c.notNull().defaultTo('[]'))
        .addColumn('gpus', col.json, (c) => c.notNull().defaultTo('[]'))
        .addColumn('labels', col.json, (c) => c.notNull().defaultTo('{}'))
        .addColumn('alloc_seq', col.bigint, (c) => c.notNull().defaultTo(0))
        .addColumn('created_at', col.ts, (c) => c.notNull())
        .execute();
      await db.schema.createTable('inv_servers')
        .addColumn('id', col.id, (c) => c.primaryKey())
        .addColumn('serial', col.text, (c) => c.notNull().unique())
        .addColumn('type_id', col.id, (c) => c.notNull().references('inv_server_types.id'))
        .addColumn('datacenter_id', col.id, (c) => c.notNull().references('inv_datacenters.id'))
        .addColumn('rack_id', col.id, (c) => c.references('inv_racks.id'))
        .addColumn('position', col.int)
        .addColumn('state', col.text, (c) => c.notNull())
        .addColumn('state_reason', col.text, (c) => c.notNull().defaultTo(''))
        .addColumn('state_changed_at', col.ts, (c) => c.notNull())
        .addColumn('labels', col.json, (c) => c.notNull().defaultTo('{}'))
        .addColumn('bmc_address', col.text)
        .addColumn('bmc_credentials', col.text)
        .addColumn('nics', col.json, (c) => c.notNull().defaultTo('[]'))
        .addColumn('failure_count', col.int, (c) => c.notNull().defaultTo(0))
        .addColumn('failure_reasons', col.json, (c) => c.notNull().defaultTo('[]'))
        .addColumn('holder', col.text)
        .addColumn('reservation_id', col.text)
        .addColumn('expires_at', col.ts)
        .addColumn('idem_key', col.text)
        .addColumn('allocated_at', col.ts)
        .addColumn('created_at', col.ts, (c) => c.notNull())
        .addColumn('updated_at', col.ts, (c) => c.notNull())
        .execute();
      await db.schema.createIndex('inv_servers_pick').on('inv_servers').columns(['type_id', 'datacenter_id', 'state', 'id']).execute();
      await db.schema.createIndex('inv_servers_holder').on('inv_servers').column('holder').execute();
      await db.schema.createIndex('inv_servers_resv').on('inv_servers').column('reservation_id').execute();
      await db.schema.createIndex('inv_servers_exp').on('inv_servers').column('expires_at').execute();
      await db.schema.createIndex('inv_servers_key').on('inv_servers').column('idem_key').unique().execute();
      await db.schema.createTable('inv_server_events')
        .addColumn('id', col.id, (c) => c.primaryKey())
        .addColumn('server_id', col.id, (c) => c.notNull())
        .addColumn('from_state', col.text)
        .addColumn('to_state', col.text, (c) => c.notNull())
        .addColumn('reason', col.text, (c) => c.notNull())
        .addColumn('actor', col.text, (c) => c.notNull())
        .addColumn('at', col.ts, (c) => c.notNull())
        .execute();
      await db.schema.createIndex('inv_server_events_srv').on('inv_server_events').columns(['server_id', 'id']).execute();
      await db.schema.createTable('inv_switches')
        .addColumn('id', col.id, (c) => c.primaryKey())
        .addColumn('datacenter_id', col.id, (c) => c.notNull().references('inv_datacenters.id'))
        .addColumn('rack_id', col.id, (c) => c.references('inv_racks.id'))
        .addColumn('name', col.text, (c) => c.notNull())
        .addColumn('model', col.text, (c) => c.notNull().defaultTo(''))
        .addColumn('mgmt_address', col.text)
        .addColumn('port_count', col.int, (c) => c.notNull())
        .addColumn('created_at', col.ts, (c) => c.notNull())
        .addUniqueConstraint('inv_switches_name', ['datacenter_id', 'name'])
        .execute();
      await db.schema.createTable('inv_switch_ports')
        .addColumn('switch_id', col.id, (c) => c.notNull().references('inv_switches.id'))
        .addColumn('port', col.text, (c) => c.notNull())
        .addColumn('server_id', col.id)
        .addColumn('nic', col.text)
        .addPrimaryKeyConstraint('inv_switch_ports_pk', ['switch_id', 'port'])
        .execute();
      await db.schema.createIndex('inv_switch_ports_srv').on('inv_switch_ports').columns(['server_id', 'nic']).unique().execute();
      await db.schema.createTable('inv_hubs')
        .addColumn('id', col.id, (c) => c.primaryKey())
        .addColumn('region', col.text, (c) => c.notNull())
        .addColumn('datacenter_id', col.id)
        .addColumn('capacity', col.int, (c) => c.notNull())
        .addColumn('used', col.int, (c) => c.notNull().defaultTo(0))
        .addColumn('labels', col.json, (c) => c.notNull().defaultTo('{}'))
        .addColumn('created_at', col.ts, (c) => c.notNull())
        .execute();
      await db.schema.createTable('inv_hot_pools')
        .addColumn('id', col.id, (c) => c.primaryKey())
        .addColumn('type_id', col.id, (c) => c.notNull().references('inv_server_types.id'))
        .addColumn('datacenter_id', col.id, (c) => c.notNull().references('inv_datacenters.id'))
        .addColumn('min_ready', col.int, (c) => c.notNull())
        .addColumn('enabled', col.bool, (c) => c.notNull().defaultTo(1))
        .addColumn('created_at', col.ts, (c) => c.notNull())
        .addUniqueConstraint('inv_hot_pools_uniq', ['type_id', 'datacenter_id'])
        .execute();
      await db.schema.createTable('inv_capacity_waiters')
        .addColumn('run_id', col.text, (c) => c.notNull())
        .addColumn('type_id', col.id, (c) => c.notNull())
        .addColumn('datacenter_id', col.id, (c) => c.notNull())
        .addColumn('count', col.int, (c) => c.notNull())
        .addColumn('created_at', col.ts, (c) => c.notNull())
        .addPrimaryKeyConstraint('inv_capacity_waiters_pk', ['run_id', 'type_id', 'datacenter_id'])
        .execute();
      await db.schema.createIndex('inv_capacity_waiters_type').on('inv_capacity_waiters').columns(['type_id', 'datacenter_id']).execute();
    },
  },
  {
    // Partial indexes on the columns that are NULL while a server is available
    // (holder, reservation, expiry, idempotency key): available servers have no
    // entry in them, and on PostgreSQL — where an update that changes an indexed
    // column adds an entry to every index of the table — allocating a server
    // without a hold writes three index entries fewer. Every query on these
    // columns compares them with a value, which implies NOT NULL.
    name: '0201_inventory_partial_indexes',
    async up(db) {
      const partial: [string, string, boolean][] = [
        ['inv_servers_holder', 'holder', false], ['inv_servers_resv', 'reservation_id', false], ['inv_servers_exp', 'expires_at', false], ['inv_servers_key', 'idem_key', true],
      ];
      for (const [name, column, unique] of partial) {
        await db.schema.dropIndex(name).execute();
        let b = db.schema.createIndex(name).on('inv_servers').column(column).where(sql.ref(column), 'is not', null);
        if (unique) b = b.unique();
        await b.execute();
      }
    },
  },
  {
    // A server's lifecycle events are keyed by (server_id, id): they are only
    // ever read per server in id order, and an allocation's event is one entry
    // in one b-tree instead of three on SQLite (rowid table, id index,
    // server index: two pages fewer per allocation commit) and one index entry
    // instead of two on PostgreSQL.
    name: '0202_inventory_events_by_server',
    async up(db, dialect) {
      if (dialect === 'sqlite') {
        await rebuildSqliteTable(db, 'inv_server_events',
          'create table inv_server_events_new (id text not null, server_id text not null, from_state text, to_state text not null, reason text not null, actor text not null, at bigint not null, primary key (server_id, id)) without rowid',
          []);
        return;
      }
      await sql`drop index inv_server_events_srv`.execute(db);
      await sql`alter table inv_server_events drop constraint inv_server_events_pkey, add primary key (server_id, id)`.execute(db);
    },
  },
  {
    // PostgreSQL: the pick index holds available servers only, (type,
    // datacenter, id) WHERE state = 'available'. A claim is a non-HOT update
    // (state and holder are indexed), and a non-HOT update adds an entry to
    // every index whose predicate the new row version meets: an allocated
    // server now gets none in this one (WAL per claim: 4 index entries -> 3;
    // -15 µs of about 420 in an experiment). Counting by state (capacity,
    // utilization) reads the table instead. SQLite writes only the indexes
    // whose columns an update changes, where a claim wrote the same pages
    // either way (3.3 WAL frames per claim): its index stays.
    name: '0203_inventory_pick_available_pg',
    async up(db, dialect) {
      if (dialect !== 'postgres') return;
      await db.schema.dropIndex('inv_servers_pick').execute();
      await db.schema.createIndex('inv_servers_pick').on('inv_servers').columns(['type_id', 'datacenter_id', 'id']).where(sql.ref('state'), '=', 'available').execute();
    },
  },
];

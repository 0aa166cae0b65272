import { sql } from 'kysely';
import { col, type AreaMigration } from '../../store/migrate.js';

/** One object of the simulated datacenter (a VM, a subnet, a cluster…). */
export interface SimObjectTable {
  id: string;
  kind: string;
  project: string;
  name: string;
  /** Idempotency key of the create call: the same key returns this object. */
  create_key: string;
  /** Desired spec as last accepted. */
  spec: string;
  /** Actual configuration (differs from spec after drift). */
  actual: string;
  outputs: string;
  /** Kind-specific internal state (nodes, pods, load, health, power…). */
  state: string;
  phase: string;
  /** Pending operation: create | update | delete; null when idle. */
  op: string | null;
  op_started: number | null;
  /** When the pending operation completes (clock ms). */
  op_due: number | null;
  /** Remaining simulated duration at op_started, for speed changes. */
  op_sim_ms: number | null;
  /** 1 when a fault made the operation never finish. */
  op_stuck: number;
  /** JSON { reason, message } when the operation fails at its due time. */
  op_fail: string | null;
  /** JSON { reason, message } of the failure once failed. */
  failure: string | null;
  host: string | null;
  created_at: number;
  updated_at: number;
  deleted_at: number | null;
  /**
   * Credentials the backend generated for the object (a cluster's admin
   * password and API token), random per object. Sealed with the
   * installation key when the simulator has it (`v1.…`), else `plain:…`.
   * Never part of SimObject: only the provider's read returns them.
   */
  secrets: string | null;
}

export interface SimCallTable {
  key: string;
  op: string;
  object_id: string | null;
  attempts: number;
  created_at: number;
}

export interface SimHostTable {
  id: string;
  name: string;
  zone: string;
  vcpus: number;
  ram_mb: number;
  used_vcpus: number;
  used_ram_mb: number;
  /** vCPU overcommit ratio. */
  cpu_ratio: number;
  enabled: number;
}

export interface SimAllocationTable {
  pool: string;
  value: string;
  owner: string;
  created_at: number;
}

export interface SimPlacementTable {
  owner: string;
  host: string;
  vcpus: number;
  ram_mb: number;
}

export interface SimSettingTable {
  key: string;
  value: string;
}

declare module '../../store/schema.js' {
  interface Database {
    sim_objects: SimObjectTable;
    sim_calls: SimCallTable;
    sim_hosts: SimHostTable;
    sim_allocations: SimAllocationTable;
    sim_placements: SimPlacementTable;
    sim_settings: SimSettingTable;
  }
}

export const simMigrations: AreaMigration[] = [
  {
    name: '0410_sim',
    async up(db) {
      await db.schema.createTable('sim_objects')
        .addColumn('id', col.id, (c) => c.primaryKey())
        .addColumn('kind', col.text, (c) => c.notNull())
        .addColumn('project', col.text, (c) => c.notNull())
        .addColumn('name', col.text, (c) => c.notNull())
        .addColumn('create_key', col.text, (c) => c.notNull().unique())
        .addColumn('spec', col.json, (c) => c.notNull())
        .addColumn('actual', col.json, (c) => c.notNull())
        .addColumn('outputs', col.json, (c) => c.notNull())
        .addColumn('state', col.json, (c) => c.notNull())
        .addColumn('phase', col.text, (c) => c.notNull())
        .addColumn('op', col.text)
        .addColumn('op_started', col.ts)
        .addColumn('op_due', col.ts)
        .addColumn('op_sim_ms', col.real)
        .addColumn('op_stuck', col.int, (c) => c.notNull().defaultTo(0))
        .addColumn('op_fail', col.json)
        .addColumn('failure', col.json)
        .addColumn('host', col.text)
        .addColumn('created_at', col.ts, (c) => c.notNull())
        .addColumn('updated_at', col.ts, (c) => c.notNull())
        .addColumn('deleted_at', col.ts)
        .execute();
      await db.schema.createIndex('sim_objects_due').on('sim_objects').columns(['op_due']).execute();
      await db.schema.createIndex('sim_objects_kind').on('sim_objects').columns(['kind', 'deleted_at']).execute();
      await db.schema.createTable('sim_calls')
        .addColumn('key', col.text, (c) => c.primaryKey())
        .addColumn('op', col.text, (c) => c.notNull())
        .addColumn('object_id', col.text)
        .addColumn('attempts', col.int, (c) => c.notNull())
        .addColumn('created_at', col.ts, (c) => c.notNull())
        .execute();
      await db.schema.createTable('sim_hosts')
        .addColumn('id', col.id, (c) => c.primaryKey())
        .addColumn('name', col.text, (c) => c.notNull())
        .addColumn('zone', col.text, (c) => c.notNull())
        .addColumn('vcpus', col.int, (c) => c.notNull())
        .addColumn('ram_mb', col.int, (c) => c.notNull())
        .addColumn('used_vcpus', col.int, (c) => c.notNull())
        .addColumn('used_ram_mb', col.int, (c) => c.notNull())
        .addColumn('cpu_ratio', col.real, (c) => c.notNull())
        .addColumn('enabled', col.bool, (c) => c.notNull())
        .execute();
      await db.schema.createTable('sim_allocations')
        .addColumn('pool', col.text, (c) => c.notNull())
        .addColumn('value', col.text, (c) => c.notNull())
        .addColumn('owner', col.text, (c) => c.notNull())
        .addColumn('created_at', col.ts, (c) => c.notNull())
        .addPrimaryKeyConstraint('sim_allocations_pk', ['pool', 'value'])
        .execute();
      await db.schema.createIndex('sim_allocations_owner').on('sim_allocations').columns(['owner']).execute();
      await db.schema.createTable('sim_placements')
        .addColumn('owner', col.text, (c) => c.notNull())
        .addColumn('host', col.text, (c) => c.notNull())
        .addColumn('vcpus', col.int, (c) => c.notNull())
        .addColumn('ram_mb', col.int, (c) => c.notNull())
        .execute();
      await db.schema.createIndex('sim_placements_owner').on('sim_placements').columns(['owner']).execute();
      await db.schema.createTable('sim_settings')
        .addColumn('key', col.text, (c) => c.primaryKey())
        .addColumn('value', col.json, (c) => c.notNull())
        .execute();
    },
  },
  {
    name: '0411_sim_secrets',
    async up(db) {
      await db.schema.alterTable('sim_objects').addColumn('secrets', col.text).execute();
    },
  },
  {
    name: '0412_sim_objects_project',
    async up(db) {
      // listObjects for a caller's visible projects, paged by id
      await db.schema.createIndex('sim_objects_project').on('sim_objects').columns(['project', 'id']).execute();
    },
  },
  {
    name: '0419_sim_objects_pending_ops',
    async up(db) {
      // The simulator's tick looks for operations due (`op is not null and op_due <= now`). A finished
      // operation keeps its op_due, so on the full op_due index that range grew with every object ever
      // created: one tick per operation scanned them all, and applying a stack grew quadratically.
      // This index holds only objects with an operation in flight.
      await sql`create index sim_objects_pending_ops on sim_objects (op_due) where op is not null`.execute(db);
    },
  },
];

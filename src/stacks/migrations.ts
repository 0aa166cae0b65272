import { col, type AreaMigration } from '../store/migrate.js';

/**
 * Stacks tables.
 * - stacks: one row per stack; `revision` increases with every accepted document (optimistic concurrency).
 * - stack_revisions: every accepted document, so an apply runs exactly the revision it was started for.
 * - stack_resources: the recorded state per resource instance (what the last apply did), read by plan.
 */
export interface StackTable {
  id: string;
  project: string;
  name: string;
  revision: number;
  /** Revision of the last apply that succeeded. */
  applied_revision: number | null;
  /** new | applying | applied | failed | destroying | destroyed | cancelled */
  status: string;
  /** Run id of the latest apply/destroy/reconcile. */
  last_run_id: string | null;
  /** JSON: the stack outputs after the last apply. */
  outputs: string;
  /** JSON: last failure (SerializedError) or null. */
  error: string | null;
  /** in_sync | drifted | unknown */
  drift: string;
  observed_at: number | null;
  labels: string;
  created_at: number;
  updated_at: number;
}

export interface StackRevisionTable {
  stack_id: string;
  revision: number;
  /** The document as submitted (YAML or JSON text). */
  source: string;
  file: string;
  /** JSON parameter values given with this revision. */
  params: string;
  created_by: string | null;
  created_at: number;
}

export interface StackResourceTable {
  stack_id: string;
  address: string;
  resource: string;
  kind: string;
  resource_id: string | null;
  /** JSON: the resolved spec applied. */
  spec: string;
  spec_hash: string;
  outputs: string;
  /** ready | creating | updating | deleting | failed */
  status: string;
  phase: number;
  ord: number;
  /** JSON list of resource names it depends on. */
  depends_on: string;
  /** JSON list of drifted fields, or null. */
  drift: string | null;
  cbd: number;
  /** The apply run that last wrote this row. */
  run_id: string | null;
  created_at: number;
  updated_at: number;
}

declare module '../store/schema.js' {
  interface Database {
    stacks: StackTable;
    stack_revisions: StackRevisionTable;
    stack_resources: StackResourceTable;
  }
}

export const stackMigrations: AreaMigration[] = [
  {
    name: '0500_stacks_init',
    async up(db) {
      await db.schema.createTable('stacks')
        .addColumn('id', col.id, (c) => c.primaryKey())
        .addColumn('project', col.text, (c) => c.notNull())
        .addColumn('name', col.text, (c) => c.notNull())
        .addColumn('revision', col.int, (c) => c.notNull())
        .addColumn('applied_revision', col.int)
        .addColumn('status', col.text, (c) => c.notNull())
        .addColumn('last_run_id', col.text)
        .addColumn('outputs', col.json, (c) => c.notNull())
        .addColumn('error', col.json)
        .addColumn('drift', col.text, (c) => c.notNull())
        .addColumn('observed_at', col.ts)
        .addColumn('labels', col.json, (c) => c.notNull())
        .addColumn('created_at', col.ts, (c) => c.notNull())
        .addColumn('updated_at', col.ts, (c) => c.notNull())
        .addUniqueConstraint('stacks_project_name', ['project', 'name'])
        .execute();
      await db.schema.createTable('stack_revisions')
        .addColumn('stack_id', col.id, (c) => c.notNull())
        .addColumn('revision', col.int, (c) => c.notNull())
        .addColumn('source', col.text, (c) => c.notNull())
        .addColumn('file', col.text, (c) => c.notNull())
        .addColumn('params', col.json, (c) => c.notNull())
        .addColumn('created_by', col.text)
        .addColumn('created_at', col.ts, (c) => c.notNull())
        .addPrimaryKeyConstraint('stack_revisions_pk', ['stack_id', 'revision'])
        .execute();
      await db.schema.createTable('stack_resources')
        .addColumn('stack_id', col.id, (c) => c.notNull())
        .addColumn('address', col.text, (c) => c.notNull())
        .addColumn('resource', col.text, (c) => c.notNull())
        .addColumn('kind', col.text, (c) => c.notNull())
        .addColumn('resource_id', col.text)
        .addColumn('spec', col.json, (c) => c.notNull())
        .addColumn('spec_hash', col.text, (c) => c.notNull())
        .addColumn('outputs', col.json, (c) => c.notNull())
        .addColumn('status', col.text, (c) => c.notNull())
        .addColumn('phase', col.int, (c) => c.notNull())
        .addColumn('ord', col.int, (c) => c.notNull())
        .addColumn('depends_on', col.json, (c) => c.notNull())
        .addColumn('drift', col.json)
        .addColumn('cbd', col.bool, (c) => c.notNull())
        .addColumn('run_id', col.text)
        .addColumn('created_at', col.ts, (c) => c.notNull())
        .addColumn('updated_at', col.ts, (c) => c.notNull())
        .addPrimaryKeyConstraint('stack_resources_pk', ['stack_id', 'address'])
        .execute();
    },
  },
];

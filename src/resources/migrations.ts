import { sql } from 'kysely';
import { col, type AreaMigration } from '../store/migrate.js';

export interface ResourceTable {
  id: string;
  kind: string;
  name: string;
  project: string;
  spec: string;
  status: string;
  /** Secret outputs (kubeconfig, passwords): AES-256-GCM when a key is configured. */
  secrets: string | null;
  labels: string;
  owner: string | null;
  phase: string;
  external_id: string | null;
  generation: number;
  observed_generation: number;
  created_at: number;
  updated_at: number;
  deleted_at: number | null;
}

export interface ResourceLabelTable {
  resource_id: string;
  key: string;
  value: string;
}

declare module '../store/schema.js' {
  interface Database {
    resources: ResourceTable;
    resource_labels: ResourceLabelTable;
  }
}

export const resourceMigrations: AreaMigration[] = [
  {
    name: '0400_resources',
    async up(db) {
      await db.schema.createTable('resources')
        .addColumn('id', col.id, (c) => c.primaryKey())
        .addColumn('kind', col.text, (c) => c.notNull())
        .addColumn('name', col.text, (c) => c.notNull())
        .addColumn('project', col.text, (c) => c.notNull())
        .addColumn('spec', col.json, (c) => c.notNull())
        .addColumn('status', col.json, (c) => c.notNull())
        .addColumn('secrets', col.text)
        .addColumn('labels', col.json, (c) => c.notNull())
        .addColumn('owner', col.text)
        .addColumn('phase', col.text, (c) => c.notNull())
        .addColumn('external_id', col.text)
        .addColumn('generation', col.int, (c) => c.notNull())
        .addColumn('observed_generation', col.int, (c) => c.notNull())
        .addColumn('created_at', col.ts, (c) => c.notNull())
        .addColumn('updated_at', col.ts, (c) => c.notNull())
        .addColumn('deleted_at', col.ts)
        .execute();
      // A name is unique in (project, kind) among resources that are not deleted.
      await db.schema.createIndex('resources_live_name').unique().on('resources').columns(['project', 'kind', 'name']).where(sql.ref('deleted_at'), 'is', null).execute();
      await db.schema.createIndex('resources_project').on('resources').columns(['project', 'id']).execute();
      await db.schema.createIndex('resources_owner').on('resources').columns(['owner', 'id']).execute();
      await db.schema.createIndex('resources_kind').on('resources').columns(['kind', 'id']).execute();
      await db.schema.createTable('resource_labels')
        .addColumn('resource_id', col.id, (c) => c.notNull().references('resources.id').onDelete('cascade'))
        .addColumn('key', col.text, (c) => c.notNull())
        .addColumn('value', col.text, (c) => c.notNull())
        .addPrimaryKeyConstraint('resource_labels_pk', ['resource_id', 'key'])
        .execute();
      await db.schema.createIndex('resource_labels_kv').on('resource_labels').columns(['key', 'value', 'resource_id']).execute();
    },
  },
];

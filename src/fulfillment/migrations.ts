import { sql } from 'kysely';
import { col, type AreaMigration } from '../store/migrate.js';

/** Fulfillment tables (migration 0850). Only src/fulfillment reads or writes them. */
export interface FulTemplateTable { id: string; doc: string; source: string; revision: number; created_at: number; updated_at: number }
export interface FulClusterTable {
  id: string;
  name: string;
  project: string;
  template: string;
  labels: string;
  spec: string;
  status: string;
  state: string;
  revision: number;
  /** Sealed (cluster:<id>): pull secret, kubeconfig, admin password. */
  secrets: string | null;
  created_at: number;
  updated_at: number;
  deleted_at: number | null;
}
/** One stage of one run (create, scale, delete) of a cluster. */
export interface FulStageTable {
  run_id: string;
  stage: string;
  cluster_id: string;
  operation: string;
  seq: number;
  status: string;
  started_at: number | null;
  finished_at: number | null;
  waiting_on: string | null;
  message: string | null;
  error: string | null;
  logs: string;
}
/** What a cluster holds, for reverse teardown: kind (agent, port, vlan…) and key, with data. */
export interface FulPartTable { cluster_id: string; kind: string; key: string; data: string; created_at: number }

declare module '../store/schema.js' {
  interface Database {
    ful_templates: FulTemplateTable;
    ful_clusters: FulClusterTable;
    ful_stages: FulStageTable;
    ful_parts: FulPartTable;
  }
}

export const fulfillmentMigrations: AreaMigration[] = [{
  name: '0850_fulfillment_initial',
  async up(db) {
    await db.schema.createTable('ful_templates')
      .addColumn('id', col.id, (c) => c.primaryKey())
      .addColumn('doc', col.json, (c) => c.notNull())
      .addColumn('source', col.text, (c) => c.notNull())
      .addColumn('revision', col.int, (c) => c.notNull())
      .addColumn('created_at', col.ts, (c) => c.notNull())
      .addColumn('updated_at', col.ts, (c) => c.notNull())
      .execute();
    await db.schema.createTable('ful_clusters')
      .addColumn('id', col.id, (c) => c.primaryKey())
      .addColumn('name', col.text, (c) => c.notNull())
      .addColumn('project', col.text, (c) => c.notNull())
      .addColumn('template', col.text, (c) => c.notNull())
      .addColumn('labels', col.json, (c) => c.notNull())
      .addColumn('spec', col.json, (c) => c.notNull())
      .addColumn('status', col.json, (c) => c.notNull())
      .addColumn('state', col.text, (c) => c.notNull())
      .addColumn('revision', col.int, (c) => c.notNull())
      .addColumn('secrets', col.text)
      .addColumn('created_at', col.ts, (c) => c.notNull())
      .addColumn('updated_at', col.ts, (c) => c.notNull())
      .addColumn('deleted_at', col.ts)
      .execute();
    // one live cluster per (project, name); a deleted one keeps its row for its history
    await db.schema.createIndex('ful_clusters_name').on('ful_clusters').columns(['project', 'name']).where(sql.ref('deleted_at'), 'is', null).unique().execute();
    await db.schema.createIndex('ful_clusters_state').on('ful_clusters').columns(['state', 'id']).execute();
    await db.schema.createTable('ful_stages')
      .addColumn('run_id', col.text, (c) => c.notNull())
      .addColumn('stage', col.text, (c) => c.notNull())
      .addColumn('cluster_id', col.text, (c) => c.notNull())
      .addColumn('operation', col.text, (c) => c.notNull())
      .addColumn('seq', col.int, (c) => c.notNull())
      .addColumn('status', col.text, (c) => c.notNull())
      .addColumn('started_at', col.ts)
      .addColumn('finished_at', col.ts)
      .addColumn('waiting_on', col.text)
      .addColumn('message', col.text)
      .addColumn('error', col.json)
      .addColumn('logs', col.json, (c) => c.notNull())
      .addPrimaryKeyConstraint('ful_stages_pk', ['run_id', 'stage'])
      .execute();
    await db.schema.createIndex('ful_stages_cluster').on('ful_stages').columns(['cluster_id', 'seq']).execute();
    await db.schema.createIndex('ful_stages_history').on('ful_stages').columns(['operation', 'stage', 'status', 'finished_at']).execute();
    await db.schema.createTable('ful_parts')
      .addColumn('cluster_id', col.text, (c) => c.notNull())
      .addColumn('kind', col.text, (c) => c.notNull())
      .addColumn('key', col.text, (c) => c.notNull())
      .addColumn('data', col.json, (c) => c.notNull())
      .addColumn('created_at', col.ts, (c) => c.notNull())
      .addPrimaryKeyConstraint('ful_parts_pk', ['cluster_id', 'kind', 'key'])
      .execute();
  },
}];

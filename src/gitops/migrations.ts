import { col, type AreaMigration } from '../store/migrate.js';

/**
 * GitOps tables.
 * - gitops_sources: a Git repository and ref (branch, tag or commit), with the
 *   commit last seen there.
 * - gitops_apps: an application: a path in a source whose stack documents it
 *   keeps applied, its sync policy, and its last computed status.
 * - gitops_app_stacks: what the application last applied per document (the
 *   Git blob, the stack revision it became), so "in sync" is a comparison of
 *   two ids, not a re-plan.
 * - gitops_syncs: the sync history (commit, run, result) per application.
 */
export interface GitopsSourceTable {
  id: string;
  project: string;
  name: string;
  url: string;
  ref: string;
  /** Secret store id of the credentials (user:password, a token, or an SSH key), or null. */
  credentials_secret: string | null;
  /** Sealed HMAC secret of the push webhook, or null (webhook refused). */
  webhook_secret: string | null;
  poll_interval_s: number;
  /** The commit the ref pointed at when last fetched. */
  last_sha: string | null;
  last_fetched_at: number | null;
  /** JSON: last fetch error (code, message) or null. */
  last_error: string | null;
  created_at: number;
  updated_at: number;
}

export interface GitopsAppTable {
  id: string;
  project: string;
  name: string;
  source_id: string;
  path: string;
  /** JSON { automated, prune, selfHeal } */
  sync_policy: string;
  /** JSON list of application names (same project) that must be Healthy before this one syncs. */
  depends_on: string;
  /** Commit to sync to instead of the source's ref (rollback), or null. */
  pinned_sha: string | null;
  /** JSON: the last computed status (sync, health, resources, conditions). */
  status: string;
  synced_sha: string | null;
  last_run_id: string | null;
  revision: number;
  created_at: number;
  updated_at: number;
}

export interface GitopsAppStackTable {
  app_id: string;
  file: string;
  stack_id: string | null;
  stack_name: string;
  blob: string;
  /** The stack revision this blob became. */
  stack_revision: number;
  wave: number;
  hook: string | null;
  updated_at: number;
}

export interface GitopsSyncTable {
  app_id: string;
  seq: number;
  sha: string;
  run_id: string;
  reason: string;
  /** running | succeeded | failed */
  result: string;
  message: string | null;
  started_at: number;
  finished_at: number | null;
}

declare module '../store/schema.js' {
  interface Database {
    gitops_sources: GitopsSourceTable;
    gitops_apps: GitopsAppTable;
    gitops_app_stacks: GitopsAppStackTable;
    gitops_syncs: GitopsSyncTable;
  }
}

export const gitopsMigrations: AreaMigration[] = [
  {
    name: '1300_gitops_init',
    async up(db) {
      await db.schema.createTable('gitops_sources')
        .addColumn('id', col.id, (c) => c.primaryKey())
        .addColumn('project', col.text, (c) => c.notNull())
        .addColumn('name', col.text, (c) => c.notNull())
        .addColumn('url', col.text, (c) => c.notNull())
        .addColumn('ref', col.text, (c) => c.notNull())
        .addColumn('credentials_secret', col.text)
        .addColumn('webhook_secret', col.text)
        .addColumn('poll_interval_s', col.int, (c) => c.notNull())
        .addColumn('last_sha', col.text)
        .addColumn('last_fetched_at', col.ts)
        .addColumn('last_error', col.json)
        .addColumn('created_at', col.ts, (c) => c.notNull())
        .addColumn('updated_at', col.ts, (c) => c.notNull())
        .addUniqueConstraint('gitops_sources_project_name', ['project', 'name'])
        .execute();
      await db.schema.createTable('gitops_apps')
        .addColumn('id', col.id, (c) => c.primaryKey())
        .addColumn('project', col.text, (c) => c.notNull())
        .addColumn('name', col.text, (c) => c.notNull())
        .addColumn('source_id', col.id, (c) => c.notNull())
        .addColumn('path', col.text, (c) => c.notNull())
        .addColumn('sync_policy', col.json, (c) => c.notNull())
        .addColumn('depends_on', col.json, (c) => c.notNull())
        .addColumn('pinned_sha', col.text)
        .addColumn('status', col.json, (c) => c.notNull())
        .addColumn('synced_sha', col.text)
        .addColumn('last_run_id', col.text)
        .addColumn('revision', col.int, (c) => c.notNull())
        .addColumn('created_at', col.ts, (c) => c.notNull())
        .addColumn('updated_at', col.ts, (c) => c.notNull())
        .addUniqueConstraint('gitops_apps_project_name', ['project', 'name'])
        .execute();
      await db.schema.createIndex('gitops_apps_source').on('gitops_apps').column('source_id').execute();
      await db.schema.createTable('gitops_app_stacks')
        .addColumn('app_id', col.id, (c) => c.notNull())
        .addColumn('file', col.text, (c) => c.notNull())
        .addColumn('stack_id', col.id)
        .addColumn('stack_name', col.text, (c) => c.notNull())
        .addColumn('blob', col.text, (c) => c.notNull())
        .addColumn('stack_revision', col.int, (c) => c.notNull())
        .addColumn('wave', col.int, (c) => c.notNull())
        .addColumn('hook', col.text)
        .addColumn('updated_at', col.ts, (c) => c.notNull())
        .addPrimaryKeyConstraint('gitops_app_stacks_pk', ['app_id', 'file'])
        .execute();
      await db.schema.createTable('gitops_syncs')
        .addColumn('app_id', col.id, (c) => c.notNull())
        .addColumn('seq', col.int, (c) => c.notNull())
        .addColumn('sha', col.text, (c) => c.notNull())
        .addColumn('run_id', col.text, (c) => c.notNull())
        .addColumn('reason', col.text, (c) => c.notNull())
        .addColumn('result', col.text, (c) => c.notNull())
        .addColumn('message', col.text)
        .addColumn('started_at', col.ts, (c) => c.notNull())
        .addColumn('finished_at', col.ts)
        .addPrimaryKeyConstraint('gitops_syncs_pk', ['app_id', 'seq'])
        .execute();
      await db.schema.createIndex('gitops_syncs_run').on('gitops_syncs').column('run_id').unique().execute();
    },
  },
];

import { col, type AreaMigration } from '../store/migrate.js';

/**
 * What `POST /servers` creates implicitly for a project (a network with its
 * subnet, a security group, a keypair) is created by one shared stack per
 * (project, kind, name). The primary key is the rule that makes it exactly
 * one under any concurrency: of all the requests that need it, the one whose
 * insert lands owns it and applies its stack; every other one waits for that
 * stack and reuses what it made.
 */
export interface ServerSharedTable {
  project: string;
  /** network | secgroup | keypair */
  kind: string;
  /** The name the requests gave (network name, group name, key name). */
  name: string;
  /** The shared stack that creates it. */
  stack_name: string;
  /** The run that won the insert and applies the stack. */
  owner_run: string;
  created_at: number;
}

declare module '../store/schema.js' {
  interface Database {
    server_shared: ServerSharedTable;
  }
}

export const serverMigrations: AreaMigration[] = [
  {
    name: '0800_servers_shared',
    async up(db) {
      await db.schema.createTable('server_shared')
        .addColumn('project', col.text, (c) => c.notNull())
        .addColumn('kind', col.text, (c) => c.notNull())
        .addColumn('name', col.text, (c) => c.notNull())
        .addColumn('stack_name', col.text, (c) => c.notNull())
        .addColumn('owner_run', col.id, (c) => c.notNull())
        .addColumn('created_at', col.ts, (c) => c.notNull())
        .addPrimaryKeyConstraint('server_shared_pk', ['project', 'kind', 'name'])
        .execute();
    },
  },
];

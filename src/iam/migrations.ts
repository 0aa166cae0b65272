import { col, type AreaMigration } from '../store/migrate.js';
import { oidcMigrations } from './oidc-migrations.js';

/**
 * Identity and access tables. Built-in roles (admin, member, reader) live in
 * code; `iam_roles` holds custom roles only.
 */
export interface IamUserTable {
  id: string;
  name: string;
  display_name: string | null;
  email: string | null;
  password_hash: string | null;
  disabled: number;
  revision: number;
  created_at: number;
  updated_at: number;
}
export interface IamGroupTable {
  id: string;
  name: string;
  description: string | null;
  revision: number;
  created_at: number;
  updated_at: number;
}
export interface IamGroupMemberTable {
  group_id: string;
  user_id: string;
}
export interface IamRoleTable {
  id: string;
  name: string;
  description: string | null;
  permissions: string;
  revision: number;
  created_at: number;
  updated_at: number;
}
export interface IamProjectTable {
  id: string;
  name: string;
  description: string | null;
  revision: number;
  created_at: number;
  updated_at: number;
}
export interface IamAssignmentTable {
  id: string;
  role: string;
  principal_type: string;
  principal_id: string;
  /** '*' for a system assignment, else the project name. */
  scope: string;
  created_at: number;
}
export interface IamTokenTable {
  id: string;
  kind: string;
  user_id: string;
  name: string | null;
  hash: string;
  project: string | null;
  permissions: string | null;
  expires_at: number;
  revoked_at: number | null;
  last_used_at: number | null;
  created_at: number;
}
export interface IamAuditTable {
  id: string;
  at: number;
  actor_id: string | null;
  actor_name: string | null;
  token_id: string | null;
  action: string;
  method: string;
  route: string;
  target: string | null;
  project: string | null;
  outcome: string;
  status: number;
  request_id: string | null;
  message: string | null;
}
export interface IamSecretTable {
  id: string;
  project: string;
  name: string;
  description: string | null;
  ciphertext: string;
  owner: string | null;
  revision: number;
  created_at: number;
  updated_at: number;
}

declare module '../store/schema.js' {
  interface Database {
    iam_users: IamUserTable;
    iam_groups: IamGroupTable;
    iam_group_members: IamGroupMemberTable;
    iam_roles: IamRoleTable;
    iam_projects: IamProjectTable;
    iam_assignments: IamAssignmentTable;
    iam_tokens: IamTokenTable;
    iam_audit: IamAuditTable;
    iam_secrets: IamSecretTable;
  }
}

export const iamMigrations: AreaMigration[] = [
  {
    name: '0600_iam_init',
    async up(db) {
      const s = db.schema;
      await s.createTable('iam_users')
        .addColumn('id', col.id, (c) => c.primaryKey())
        .addColumn('name', col.text, (c) => c.notNull().unique())
        .addColumn('display_name', col.text)
        .addColumn('email', col.text)
        .addColumn('password_hash', col.text)
        .addColumn('disabled', col.bool, (c) => c.notNull().defaultTo(0))
        .addColumn('revision', col.int, (c) => c.notNull().defaultTo(1))
        .addColumn('created_at', col.ts, (c) => c.notNull())
        .addColumn('updated_at', col.ts, (c) => c.notNull())
        .execute();
      await s.createTable('iam_groups')
        .addColumn('id', col.id, (c) => c.primaryKey())
        .addColumn('name', col.text, (c) => c.notNull().unique())
        .addColumn('description', col.text)
        .addColumn('revision', col.int, (c) => c.notNull().defaultTo(1))
        .addColumn('created_at', col.ts, (c) => c.notNull())
        .addColumn('updated_at', col.ts, (c) => c.notNull())
        .execute();
      await s.createTable('iam_group_members')
        .addColumn('group_id', col.id, (c) => c.notNull())
        .addColumn('user_id', col.id, (c) => c.notNull())
        .addPrimaryKeyConstraint('iam_group_members_pk', ['group_id', 'user_id'])
        .execute();
      await s.createIndex('iam_group_members_user').on('iam_group_members').column('user_id').execute();
      await s.createTable('iam_roles')
        .addColumn('id', col.id, (c) => c.primaryKey())
        .addColumn('name', col.text, (c) => c.notNull().unique())
        .addColumn('description', col.text)
        .addColumn('permissions', col.json, (c) => c.notNull())
        .addColumn('revision', col.int, (c) => c.notNull().defaultTo(1))
        .addColumn('created_at', col.ts, (c) => c.notNull())
        .addColumn('updated_at', col.ts, (c) => c.notNull())
        .execute();
      await s.createTable('iam_projects')
        .addColumn('id', col.id, (c) => c.primaryKey())
        .addColumn('name', col.text, (c) => c.notNull().unique())
        .addColumn('description', col.text)
        .addColumn('revision', col.int, (c) => c.notNull().defaultTo(1))
        .addColumn('created_at', col.ts, (c) => c.notNull())
        .addColumn('updated_at', col.ts, (c) => c.notNull())
        .execute();
      await s.createTable('iam_assignments')
        .addColumn('id', col.id, (c) => c.primaryKey())
        .addColumn('role', col.text, (c) => c.notNull())
        .addColumn('principal_type', col.text, (c) => c.notNull())
        .addColumn('principal_id', col.id, (c) => c.notNull())
        .addColumn('scope', col.text, (c) => c.notNull())
        .addColumn('created_at', col.ts, (c) => c.notNull())
        .addUniqueConstraint('iam_assignments_unique', ['role', 'principal_type', 'principal_id', 'scope'])
        .execute();
      await s.createIndex('iam_assignments_principal').on('iam_assignments').columns(['principal_type', 'principal_id']).execute();
      await s.createTable('iam_tokens')
        .addColumn('id', col.id, (c) => c.primaryKey())
        .addColumn('kind', col.text, (c) => c.notNull())
        .addColumn('user_id', col.id, (c) => c.notNull())
        .addColumn('name', col.text)
        .addColumn('hash', col.text, (c) => c.notNull().unique())
        .addColumn('project', col.text)
        .addColumn('permissions', col.json)
        .addColumn('expires_at', col.ts, (c) => c.notNull())
        .addColumn('revoked_at', col.ts)
        .addColumn('last_used_at', col.ts)
        .addColumn('created_at', col.ts, (c) => c.notNull())
        .execute();
      await s.createIndex('iam_tokens_user').on('iam_tokens').column('user_id').execute();
      await s.createTable('iam_audit')
        .addColumn('id', col.id, (c) => c.primaryKey())
        .addColumn('at', col.ts, (c) => c.notNull())
        .addColumn('actor_id', col.id)
        .addColumn('actor_name', col.text)
        .addColumn('token_id', col.id)
        .addColumn('action', col.text, (c) => c.notNull())
        .addColumn('method', col.text, (c) => c.notNull())
        .addColumn('route', col.text, (c) => c.notNull())
        .addColumn('target', col.text)
        .addColumn('project', col.text)
        .addColumn('outcome', col.text, (c) => c.notNull())
        .addColumn('status', col.int, (c) => c.notNull())
        .addColumn('request_id', col.text)
        .addColumn('message', col.text)
        .execute();
      await s.createIndex('iam_audit_actor').on('iam_audit').columns(['actor_id', 'id']).execute();
      await s.createTable('iam_secrets')
        .addColumn('id', col.id, (c) => c.primaryKey())
        .addColumn('project', col.text, (c) => c.notNull())
        .addColumn('name', col.text, (c) => c.notNull())
        .addColumn('description', col.text)
        .addColumn('ciphertext', col.text, (c) => c.notNull())
        .addColumn('owner', col.text)
        .addColumn('revision', col.int, (c) => c.notNull().defaultTo(1))
        .addColumn('created_at', col.ts, (c) => c.notNull())
        .addColumn('updated_at', col.ts, (c) => c.notNull())
        .addUniqueConstraint('iam_secrets_project_name', ['project', 'name'])
        .execute();
    },
  },
  ...oidcMigrations,
];

import { hash as digest, randomBytes } from 'node:crypto';
import type { Store } from '../store/store.js';
import { isUniqueViolation } from '../store/errors.js';
import { systemClock, type Clock } from '../core/clock.js';
import { ConflictError, InfraflowError, NotFoundError, UnauthorizedError, ValidationError } from '../core/errors.js';
import { newId } from '../core/ids.js';
import type { SecretBox } from '../core/secrets.js';
import type { Logger } from '../core/log.js';
import { silentLogger } from '../core/log.js';
import { ALL_PERMISSIONS, BUILTIN_ROLES, isBuiltinRole, isPermission, SYSTEM_SCOPE, type Permission } from './permissions.js';
import type { Principal } from './policy.js';
import { checkPasswordStrength, hashPassword, verifyPassword } from './passwords.js';
import './migrations.js';

export interface User { id: string; name: string; displayName: string | null; email: string | null; disabled: boolean; hasPassword: boolean; revision: number; createdAt: number; updatedAt: number }
export interface Group { id: string; name: string; description: string | null; revision: number; createdAt: number; updatedAt: number }
export interface Role { id: string; name: string; description: string | null; permissions: Permission[]; builtin: boolean; revision: number; createdAt: number; updatedAt: number }
export interface Project { id: string; name: string; description: string | null; revision: number; createdAt: number; updatedAt: number }
export interface Assignment { id: string; role: string; user: string | null; group: string | null; project: string | null; system: boolean; createdAt: number }
export interface TokenInfo { id: string; kind: 'session' | 'api'; userId: string; name: string | null; project: string | null; permissions: Permission[] | null; expiresAt: number; revokedAt: number | null; lastUsedAt: number | null; createdAt: number }
export interface AuditEntry { id: string; at: number; actorId: string | null; actorName: string | null; tokenId: string | null; action: string; method: string; route: string; target: string | null; project: string | null; outcome: 'allowed' | 'denied' | 'failed'; status: number; requestId: string | null; message: string | null }
export interface SecretMeta { id: string; project: string; name: string; description: string | null; owner: string | null; revision: number; createdAt: number; updatedAt: number }

export interface Page<T> { items: T[]; next: string | null }
export interface PageQuery { after?: string | undefined; limit?: number | undefined }

/** Names of users, groups, roles and projects: lower-case slugs (projects are referenced by name everywhere). */
export const NAME_RE = /^[a-z0-9](?:[a-z0-9._@-]{0,62}[a-z0-9])?$/;
export const NAME_HINT = 'use 1-64 lower-case letters, digits, ".", "_", "-" or "@", starting and ending with a letter or digit';

export const SESSION_TTL_MS = 12 * 3600_000;
export const MAX_API_TOKEN_TTL_MS = 366 * 24 * 3600_000;

function checkName(field: string, name: string): void {
  if (!NAME_RE.test(name)) throw new ValidationError('iam.invalid_name', `${field}: not a valid name; ${NAME_HINT}`, { details: { field } });
}

function sha256(s: string): string {
  return digest('sha256', s, 'hex'); // one-shot: a third of createHash().update().digest()'s cost, paid on every request
}

export function revisionMismatch(kind: string, id: string, expected: number, actual: number): InfraflowError {
  return new InfraflowError('api.precondition_failed', `${kind} ${id} has changed (revision ${actual}, If-Match said ${expected}); fetch it again and retry with the new ETag`, 412, { details: { revision: actual } });
}

const uniqueViolation = isUniqueViolation;

/**
 * Identity and access: users, groups, roles, projects, role assignments,
 * session and API tokens, audit log and the encrypted secret store.
 */
export class Iam {
  readonly store: Store;
  readonly clock: Clock;
  readonly box: SecretBox;
  private readonly logger: Logger;
  private readonly principalCache = new Map<string, { principal: Principal; until: number }>();
  /** Token lookups under way, by token hash: concurrent requests with one token share one lookup. */
  private readonly resolving = new Map<string, Promise<Principal | null>>();
  /** Bumped by `invalidate()`: a lookup that started before a change is not cached after it. */
  private generation = 0;
  private readonly lastUsedWritten = new Map<string, number>();
  /** Token hashes whose lookup failed, until when: a bad token repeated costs no database lookup. */
  private readonly failedLookups = new Map<string, number>();
  /** How long a failed lookup is remembered (default 5 s; cleared by `invalidate()`). */
  readonly failedLookupTtlMs: number;
  /** Token lookups that reached the database (for tests and metrics). */
  tokenLookups = 0;
  /**
   * How long a resolved token is cached in this process (default 2 s). A
   * revocation, a disabled user or a changed role assignment made through
   * this process takes effect at once (`invalidate()`); one made by another
   * process sharing the database, within this time.
   */
  readonly cacheTtlMs: number;

  constructor(opts: { store: Store; box: SecretBox; clock?: Clock; logger?: Logger; cacheTtlMs?: number; failedLookupTtlMs?: number }) {
    this.store = opts.store;
    this.box = opts.box;
    this.clock = opts.clock ?? systemClock;
    this.logger = opts.logger ?? silentLogger;
    this.cacheTtlMs = opts.cacheTtlMs ?? 2000;
    this.failedLookupTtlMs = opts.failedLookupTtlMs ?? 5000;
  }

  private get db() {
    return this.store.db;
  }

  /** Called after every change that may alter someone's rights. */
  invalidate(): void {
    this.generation++;
    this.principalCache.clear();
    this.resolving.clear();
    this.failedLookups.clear();
  }

  // ---------------------------------------------------------------- bootstrap

  /**
   * First start: when there are no users, creates `admin` with a system admin
   * role. The password comes from `adminPassword` (INFRAFLOW_ADMIN_PASSWORD) or
   * is generated and returned once (the caller prints it). No default password.
   * Also creates the project `default`.
   */
  async bootstrap(opts: { adminPassword?: string | undefined; adminName?: string } = {}): Promise<{ created: boolean; name?: string; password?: string; generated?: boolean }> {
    const any = await this.db.selectFrom('iam_users').select('id').limit(1).executeTakeFirst();
    if (any) return { created: false };
    const name = opts.adminName ?? 'admin';
    const generated = !opts.adminPassword;
    const password = opts.adminPassword || randomBytes(18).toString('base64url');
    try {
      const user = await this.createUser({ name, displayName: 'Administrator', password });
      await this.assign({ role: 'admin', user: user.id, system: true });
      // the project documents name when they name none (stacks' metadata.project defaults to it)
      if (!(await this.findProject('default'))) await this.createProject({ name: 'default', description: 'the project of documents that name none' });
    } catch (e) {
      if (e instanceof ConflictError) return { created: false };
      throw e;
    }
    return { created: true, name, password, generated };
  }

  // ---------------------------------------------------------------- users

  private toUser(r: any): User {
    return { id: r.id, name: r.name, displayName: r.display_name, email: r.email, disabled: !!r.disabled, hasPassword: !!r.password_hash, revision: r.revision, createdAt: r.created_at, updatedAt: r.updated_at };
  }

  async createUser(input: { name: string; displayName?: string | null | undefined; email?: string | null | undefined; password?: string | undefined }): Promise<User> {
    checkName('name', input.name);
    if (input.password !== undefined) checkPasswordStrength(input.password);
    const now = this.clock.now();
    const row = {
      id: newId('usr', now), name: input.name, display_name: input.displayName ?? null, email: input.email ?? null,
      password_hash: input.password !== undefined ? await hashPassword(input.password) : null,
      disabled: 0, revision: 1, created_at: now, updated_at: now,
    };
    try {
      await this.db.insertInto('iam_users').values(row).execute();
    } catch (e) {
      if (uniqueViolation(e)) throw new ConflictError('iam.name_taken', `name: a user named "${input.name}" already exists; pick another name`, { details: { field: 'name' } });
      throw e;
    }
    return this.toUser(row);
  }

  async getUser(idOrName: string): Promise<User> {
    const r = await this.db.selectFrom('iam_users').selectAll().where((eb) => eb.or([eb('id', '=', idOrName), eb('name', '=', idOrName)])).executeTakeFirst();
    if (!r) throw new NotFoundError('iam.user_not_found', `user ${idOrName} not found`);
    return this.toUser(r);
  }

  async listUsers(q: PageQuery & { name?: string | undefined } = {}): Promise<Page<User>> {
    let query = this.db.selectFrom('iam_users').selectAll().orderBy('id').limit((q.limit ?? 50) + 1);
    if (q.after) query = query.where('id', '>', q.after);
    if (q.name) query = query.where('name', 'like', `%${q.name}%`);
    return page((await query.execute()).map((r) => this.toUser(r)), q.limit ?? 50);
  }

  async updateUser(id: string, patch: { displayName?: string | null | undefined; email?: string | null | undefined; disabled?: boolean | undefined; password?: string | undefined }, ifMatch?: number): Promise<User> {
    const cur = await this.getUser(id);
    if (ifMatch !== undefined && ifMatch !== cur.revision) throw revisionMismatch('user', cur.id, ifMatch, cur.revision);
    if (patch.password !== undefined) checkPasswordStrength(patch.password);
    const set: Record<string, unknown> = { revision: cur.revision + 1, updated_at: this.clock.now() };
    if (patch.displayName !== undefined) set.display_name = patch.displayName;
    if (patch.email !== undefined) set.email = patch.email;
    if (patch.disabled !== undefined) set.disabled = patch.disabled ? 1 : 0;
    if (patch.password !== undefined) set.password_hash = await hashPassword(patch.password);
    const res = await this.db.updateTable('iam_users').set(set).where('id', '=', cur.id).where('revision', '=', cur.revision).executeTakeFirst();
    if (Number(res.numUpdatedRows) !== 1) throw revisionMismatch('user', cur.id, cur.revision, cur.revision + 1);
    if (patch.disabled || patch.password !== undefined) await this.db.updateTable('iam_tokens').set({ revoked_at: this.clock.now() }).where('user_id', '=', cur.id).where('kind', '=', 'session').where('revoked_at', 'is', null).execute();
    this.invalidate();
    return this.getUser(cur.id);
  }

  async deleteUser(id: string): Promise<void> {
    const u = await this.getUser(id);
    await this.store.transaction(async (trx) => {
      await trx.deleteFrom('iam_group_members').where('user_id', '=', u.id).execute();
      await trx.deleteFrom('iam_assignments').where('principal_type', '=', 'user').where('principal_id', '=', u.id).execute();
      await trx.updateTable('iam_tokens').set({ revoked_at: this.clock.now() }).where('user_id', '=', u.id).where('revoked_at', 'is', null).execute();
      await trx.deleteFrom('iam_users').where('id', '=', u.id).execute();
    });
    this.invalidate();
  }

  // ---------------------------------------------------------------- groups

  private toGroup(r: any): Group {
    return { id: r.id, name: r.name, description: r.description, revision: r.revision, createdAt: r.created_at, updatedAt: r.updated_at };
  }

  async createGroup(input: { name: string; description?: string | null | undefined }): Promise<Group> {
    checkName('name', input.name);
    const now = this.clock.now();
    const row = { id: newId('grp', now), name: input.name, description: input.description ?? null, revision: 1, created_at: now, updated_at: now };
    try {
      await this.db.insertInto('iam_groups').values(row).execute();
    } catch (e) {
      if (uniqueViolation(e)) throw new ConflictError('iam.name_taken', `name: a group named "${input.name}" already exists; pick another name`, { details: { field: 'name' } });
      throw e;
    }
    return this.toGroup(row);
  }

  async getGroup(idOrName: string): Promise<Group> {
    const r = await this.db.selectFrom('iam_groups').selectAll().where((eb) => eb.or([eb('id', '=', idOrName), eb('name', '=', idOrName)])).executeTakeFirst();
    if (!r) throw new NotFoundError('iam.group_not_found', `group ${idOrName} not found`);
    return this.toGroup(r);
  }

  async listGroups(q: PageQuery & { name?: string | undefined } = {}): Promise<Page<Group>> {
    let query = this.db.selectFrom('iam_groups').selectAll().orderBy('id').limit((q.limit ?? 50) + 1);
    if (q.after) query = query.where('id', '>', q.after);
    if (q.name) query = query.where('name', 'like', `%${q.name}%`);
    return page((await query.execute()).map((r) => this.toGroup(r)), q.limit ?? 50);
  }

  async updateGroup(id: string, patch: { description?: string | null | undefined }, ifMatch?: number): Promise<Group> {
    const cur = await this.getGroup(id);
    if (ifMatch !== undefined && ifMatch !== cur.revision) throw revisionMismatch('group', cur.id, ifMatch, cur.revision);
    const res = await this.db.updateTable('iam_groups').set({ description: patch.description === undefined ? cur.description : patch.description, revision: cur.revision + 1, updated_at: this.clock.now() }).where('id', '=', cur.id).where('revision', '=', cur.revision).executeTakeFirst();
    if (Number(res.numUpdatedRows) !== 1) throw revisionMismatch('group', cur.id, cur.revision, cur.revision + 1);
    return this.getGroup(cur.id);
  }

  async deleteGroup(id: string): Promise<void> {
    const g = await this.getGroup(id);
    await this.store.transaction(async (trx) => {
      await trx.deleteFrom('iam_group_members').where('group_id', '=', g.id).execute();
      await trx.deleteFrom('iam_assignments').where('principal_type', '=', 'group').where('principal_id', '=', g.id).execute();
      await trx.deleteFrom('iam_groups').where('id', '=', g.id).execute();
    });
    this.invalidate();
  }

  async addMember(groupId: string, userId: string): Promise<void> {
    const g = await this.getGroup(groupId);
    const u = await this.getUser(userId);
    const exists = await this.db.selectFrom('iam_group_members').select('user_id').where('group_id', '=', g.id).where('user_id', '=', u.id).executeTakeFirst();
    if (!exists) await this.db.insertInto('iam_group_members').values({ group_id: g.id, user_id: u.id }).execute();
    this.invalidate();
  }

  async removeMember(groupId: string, userId: string): Promise<void> {
    const g = await this.getGroup(groupId);
    const u = await this.getUser(userId);
    const res = await this.db.deleteFrom('iam_group_members').where('group_id', '=', g.id).where('user_id', '=', u.id).executeTakeFirst();
    if (Number(res.numDeletedRows) === 0) throw new NotFoundError('iam.member_not_found', `user ${u.name} is not a member of group ${g.name}`);
    this.invalidate();
  }

  async listMembers(groupId: string): Promise<User[]> {
    const g = await this.getGroup(groupId);
    const rows = await this.db.selectFrom('iam_users').innerJoin('iam_group_members', 'iam_group_members.user_id', 'iam_users.id').selectAll('iam_users').where('iam_group_members.group_id', '=', g.id).orderBy('iam_users.id').execute();
    return rows.map((r) => this.toUser(r));
  }

  // ---------------------------------------------------------------- roles

  private builtinRoles(): Role[] {
    return Object.entries(BUILTIN_ROLES).map(([name, r]) => ({ id: name, name, description: r.description, permissions: [...r.permissions], builtin: true, revision: 1, createdAt: 0, updatedAt: 0 }));
  }

  private toRole(r: any): Role {
    return { id: r.id, name: r.name, description: r.description, permissions: JSON.parse(r.permissions) as Permission[], builtin: false, revision: r.revision, createdAt: r.created_at, updatedAt: r.updated_at };
  }

  private checkPermissions(perms: string[]): Permission[] {
    const bad = perms.filter((p) => !isPermission(p));
    if (bad.length) throw new ValidationError('iam.unknown_permission', `permissions: unknown permission ${bad.map((b) => `"${b.slice(0, 40)}"`).join(', ')}; valid ones are ${ALL_PERMISSIONS.join(', ')}`, { details: { field: 'permissions' } });
    return [...new Set(perms)] as Permission[];
  }

  async createRole(input: { name: string; description?: string | null | undefined; permissions: string[] }): Promise<Role> {
    checkName('name', input.name);
    if (isBuiltinRole(input.name)) throw new ConflictError('iam.name_taken', `name: "${input.name}" is a built-in role; pick another name`, { details: { field: 'name' } });
    const permissions = this.checkPermissions(input.permissions);
    const now = this.clock.now();
    const row = { id: newId('rol', now), name: input.name, description: input.description ?? null, permissions: JSON.stringify(permissions), revision: 1, created_at: now, updated_at: now };
    try {
      await this.db.insertInto('iam_roles').values(row).execute();
    } catch (e) {
      if (uniqueViolation(e)) throw new ConflictError('iam.name_taken', `name: a role named "${input.name}" already exists; pick another name`, { details: { field: 'name' } });
      throw e;
    }
    return this.toRole(row);
  }

  async getRole(idOrName: string): Promise<Role> {
    const b = this.builtinRoles().find((r) => r.name === idOrName);
    if (b) return b;
    const r = await this.db.selectFrom('iam_roles').selectAll().where((eb) => eb.or([eb('id', '=', idOrName), eb('name', '=', idOrName)])).executeTakeFirst();
    if (!r) throw new NotFoundError('iam.role_not_found', `role ${idOrName} not found; built-in roles are admin, member, reader`);
    return this.toRole(r);
  }

  async listRoles(): Promise<Role[]> {
    const rows = await this.db.selectFrom('iam_roles').selectAll().orderBy('name').execute();
    return [...this.builtinRoles(), ...rows.map((r) => this.toRole(r))];
  }

  async updateRole(id: string, patch: { description?: string | null | undefined; permissions?: string[] | undefined }, ifMatch?: number): Promise<Role> {
    const cur = await this.getRole(id);
    if (cur.builtin) throw new ConflictError('iam.builtin_role', `role ${cur.name} is built in and cannot be changed; create a custom role instead`);
    if (ifMatch !== undefined && ifMatch !== cur.revision) throw revisionMismatch('role', cur.id, ifMatch, cur.revision);
    const permissions = patch.permissions ? this.checkPermissions(patch.permissions) : cur.permissions;
    const res = await this.db.updateTable('iam_roles').set({ description: patch.description === undefined ? cur.description : patch.description, permissions: JSON.stringify(permissions), revision: cur.revision + 1, updated_at: this.clock.now() }).where('id', '=', cur.id).where('revision', '=', cur.revision).executeTakeFirst();
    if (Number(res.numUpdatedRows) !== 1) throw revisionMismatch('role', cur.id, cur.revision, cur.revision + 1);
    this.invalidate();
    return this.getRole(cur.id);
  }

  async deleteRole(id: string): Promise<void> {
    const cur = await this.getRole(id);
    if (cur.builtin) throw new ConflictError('iam.builtin_role', `role ${cur.name} is built in and cannot be deleted`);
    await this.store.transaction(async (trx) => {
      await trx.deleteFrom('iam_assignments').where('role', '=', cur.name).execute();
      await trx.deleteFrom('iam_roles').where('id', '=', cur.id).execute();
    });
    this.invalidate();
  }

  // ---------------------------------------------------------------- projects

  private toProject(r: any): Project {
    return { id: r.id, name: r.name, description: r.description, revision: r.revision, createdAt: r.created_at, updatedAt: r.updated_at };
  }

  async createProject(input: { name: string; description?: string | null | undefined }): Promise<Project> {
    checkName('name', input.name);
    const now = this.clock.now();
    const row = { id: newId('prj', now), name: input.name, description: input.description ?? null, revision: 1, created_at: now, updated_at: now };
    try {
      await this.db.insertInto('iam_projects').values(row).execute();
    } catch (e) {
      if (uniqueViolation(e)) throw new ConflictError('iam.name_taken', `name: a project named "${input.name}" already exists; pick another name`, { details: { field: 'name' } });
      throw e;
    }
    return this.toProject(row);
  }

  async getProject(idOrName: string): Promise<Project> {
    const r = await this.findProject(idOrName);
    if (!r) throw new NotFoundError('iam.project_not_found', `project ${idOrName} not found`);
    return r;
  }

  async findProject(idOrName: string): Promise<Project | null> {
    const r = await this.db.selectFrom('iam_projects').selectAll().where((eb) => eb.or([eb('id', '=', idOrName), eb('name', '=', idOrName)])).executeTakeFirst();
    return r ? this.toProject(r) : null;
  }

  async listProjects(q: PageQuery & { names?: string[] | undefined; name?: string | undefined } = {}): Promise<Page<Project>> {
    if (q.names && q.names.length === 0) return { items: [], next: null };
    let query = this.db.selectFrom('iam_projects').selectAll().orderBy('id').limit((q.limit ?? 50) + 1);
    if (q.after) query = query.where('id', '>', q.after);
    if (q.names) query = query.where('name', 'in', q.names);
    if (q.name) query = query.where('name', 'like', `%${q.name}%`);
    return page((await query.execute()).map((r) => this.toProject(r)), q.limit ?? 50);
  }

  async updateProject(id: string, patch: { description?: string | null | undefined }, ifMatch?: number): Promise<Project> {
    const cur = await this.getProject(id);
    if (ifMatch !== undefined && ifMatch !== cur.revision) throw revisionMismatch('project', cur.id, ifMatch, cur.revision);
    const res = await this.db.updateTable('iam_projects').set({ description: patch.description === undefined ? cur.description : patch.description, revision: cur.revision + 1, updated_at: this.clock.now() }).where('id', '=', cur.id).where('revision', '=', cur.revision).executeTakeFirst();
    if (Number(res.numUpdatedRows) !== 1) throw revisionMismatch('project', cur.id, cur.revision, cur.revision + 1);
    return this.getProject(cur.id);
  }

  async deleteProject(id: string): Promise<void> {
    const cur = await this.getProject(id);
    const secrets = await this.db.selectFrom('iam_secrets').select('id').where('project', '=', cur.name).limit(1).executeTakeFirst();
    if (secrets) throw new ConflictError('iam.project_not_empty', `project ${cur.name} still holds secrets; delete them first`);
    await this.store.transaction(async (trx) => {
      await trx.deleteFrom('iam_assignments').where('scope', '=', cur.name).execute();
      await trx.deleteFrom('iam_projects').where('id', '=', cur.id).execute();
    });
    this.invalidate();
  }

  // ---------------------------------------------------------------- role assignments

  private toAssignment(r: any): Assignment {
    return { id: r.id, role: r.role, user: r.principal_type === 'user' ? r.principal_id : null, group: r.principal_type === 'group' ? r.principal_id : null, project: r.scope === SYSTEM_SCOPE ? null : r.scope, system: r.scope === SYSTEM_SCOPE, createdAt: r.created_at };
  }

  async assign(input: { role: string; user?: string | undefined; group?: string | undefined; project?: string | undefined; system?: boolean | undefined }): Promise<Assignment> {
    if ((input.user === undefined) === (input.group === undefined)) throw new ValidationError('iam.invalid_assignment', 'give exactly one of user or group', { details: { field: 'user' } });
    if ((input.project === undefined) === !input.system) throw new ValidationError('iam.invalid_assignment', 'give exactly one of project or system: true', { details: { field: 'project' } });
    const role = await this.getRole(input.role);
    const principal = input.user !== undefined ? { type: 'user', id: (await this.getUser(input.user)).id } : { type: 'group', id: (await this.getGroup(input.group!)).id };
    const scope = input.system ? SYSTEM_SCOPE : (await this.getProject(input.project!)).name;
    const existing = await this.db.selectFrom('iam_assignments').selectAll().where('role', '=', role.name).where('principal_type', '=', principal.type).where('principal_id', '=', principal.id).where('scope', '=', scope).executeTakeFirst();
    if (existing) return this.toAssignment(existing);
    const now = this.clock.now();
    const row = { id: newId('ras', now), role: role.name, principal_type: principal.type, principal_id: principal.id, scope, created_at: now };
    await this.db.insertInto('iam_assignments').values(row).execute();
    this.invalidate();
    return this.toAssignment(row);
  }

  async getAssignment(id: string): Promise<Assignment> {
    const r = await this.db.selectFrom('iam_assignments').selectAll().where('id', '=', id).executeTakeFirst();
    if (!r) throw new NotFoundError('iam.assignment_not_found', `role assignment ${id} not found`);
    return this.toAssignment(r);
  }

  async unassign(id: string): Promise<void> {
    const a = await this.getAssignment(id);
    await this.db.deleteFrom('iam_assignments').where('id', '=', a.id).execute();
    this.invalidate();
  }

  async listAssignments(q: PageQuery & { user?: string | undefined; group?: string | undefined; project?: string | undefined; projects?: string[] | undefined; role?: string | undefined; system?: boolean | undefined } = {}): Promise<Page<Assignment>> {
    let query = this.db.selectFrom('iam_assignments').selectAll().orderBy('id').limit((q.limit ?? 50) + 1);
    if (q.after) query = query.where('id', '>', q.after);
    if (q.user) query = query.where('principal_type', '=', 'user').where('principal_id', '=', (await this.getUser(q.user)).id);
    if (q.group) query = query.where('principal_type', '=', 'group').where('principal_id', '=', (await this.getGroup(q.group)).id);
    if (q.project) query = query.where('scope', '=', q.project);
    if (q.projects) {
      if (q.projects.length === 0) return { items: [], next: null };
      query = query.where('scope', 'in', q.projects);
    }
    if (q.system) query = query.where('scope', '=', SYSTEM_SCOPE);
    if (q.role) query = query.where('role', '=', q.role);
    return page((await query.execute()).map((r) => this.toAssignment(r)), q.limit ?? 50);
  }

  // ---------------------------------------------------------------- tokens and principals

  private toToken(r: any): TokenInfo {
    return { id: r.id, kind: r.kind, userId: r.user_id, name: r.name, project: r.project, permissions: r.permissions ? JSON.parse(r.permissions) : null, expiresAt: r.expires_at, revokedAt: r.revoked_at, lastUsedAt: r.last_used_at, createdAt: r.created_at };
  }

  /** Password login: a session token valid for 12 hours. Wrong name and wrong password give the same answer. */
  async login(name: string, password: string): Promise<{ token: string; expiresAt: number; user: User }> {
    const r = await this.db.selectFrom('iam_users').selectAll().where('name', '=', name).executeTakeFirst();
    const ok = await verifyPassword(r?.password_hash ?? null, password);
    if (!r || !ok || r.disabled) throw new UnauthorizedError('wrong user name or password (or the account is disabled)');
    const { token, expiresAt } = await this.createSession(r.id, SESSION_TTL_MS);
    return { token, expiresAt, user: this.toUser(r) };
  }

  /** A new session token for a user who has proven who they are (password, or an OpenID provider: src/iam/oidc.ts). */
  async createSession(userId: string, ttlMs: number = SESSION_TTL_MS): Promise<{ token: string; tokenId: string; expiresAt: number }> {
    const now = this.clock.now();
    const token = 'ifs_' + randomBytes(32).toString('base64url');
    const expiresAt = now + Math.min(ttlMs, SESSION_TTL_MS);
    const tokenId = newId('tok', now);
    await this.db.insertInto('iam_tokens').values({ id: tokenId, kind: 'session', user_id: userId, name: null, hash: sha256(token), project: null, permissions: null, expires_at: expiresAt, revoked_at: null, last_used_at: now, created_at: now }).execute();
    return { token, tokenId, expiresAt };
  }

  /**
   * Checks a user's password without issuing a token (the OpenStack
   * Keystone façade issues its own project-scoped tokens). Same answer for a
   * wrong name and a wrong password.
   */
  async verifyCredentials(name: string, password: string): Promise<User> {
    const r = await this.db.selectFrom('iam_users').selectAll().where('name', '=', name).executeTakeFirst();
    const ok = await verifyPassword(r?.password_hash ?? null, password);
    if (!r || !ok || r.disabled) throw new UnauthorizedError('wrong user name or password (or the account is disabled)');
    return this.toUser(r);
  }

  /**
   * A session token for a user already authenticated by the caller (the
   * Keystone façade after password or application-credential auth), scoped
   * to a project and optionally to a subset of permissions. Returned once.
   */
  async issueSessionToken(userId: string, opts: { project?: string | null; permissions?: Permission[] | null; ttlMs?: number } = {}): Promise<{ token: string; info: TokenInfo }> {
    const now = this.clock.now();
    const token = 'ifs_' + randomBytes(32).toString('base64url');
    const row = { id: newId('tok', now), kind: 'session', user_id: userId, name: null, hash: sha256(token), project: opts.project ?? null, permissions: opts.permissions ? JSON.stringify(opts.permissions) : null, expires_at: now + Math.min(opts.ttlMs ?? SESSION_TTL_MS, SESSION_TTL_MS), revoked_at: null, last_used_at: now, created_at: now };
    await this.db.insertInto('iam_tokens').values(row).execute();
    return { token, info: this.toToken(row) };
  }

  /** A new API token for `userId`, optionally limited to a project and to a subset of permissions. The token is returned once. */
  async createApiToken(userId: string, input: { name: string; project?: string | undefined; permissions?: string[] | undefined; expiresInDays?: number | undefined }): Promise<{ token: string; info: TokenInfo }> {
    const user = await this.getUser(userId);
    const permissions = input.permissions ? this.checkPermissions(input.permissions) : null;
    const project = input.project !== undefined ? (await this.getProject(input.project)).name : null;
    const days = input.expiresInDays ?? 90;
    if (!(days > 0) || days * 24 * 3600_000 > MAX_API_TOKEN_TTL_MS) throw new ValidationError('iam.invalid_expiry', 'expiresInDays: must be between 1 and 366', { details: { field: 'expiresInDays' } });
    const now = this.clock.now();
    const token = 'ifk_' + randomBytes(32).toString('base64url');
    const row = { id: newId('tok', now), kind: 'api', user_id: user.id, name: input.name, hash: sha256(token), project, permissions: permissions ? JSON.stringify(permissions) : null, expires_at: now + Math.round(days * 24 * 3600_000), revoked_at: null, last_used_at: null, created_at: now };
    await this.db.insertInto('iam_tokens').values(row).execute();
    return { token, info: this.toToken(row) };
  }

  async getToken(id: string): Promise<TokenInfo> {
    const r = await this.db.selectFrom('iam_tokens').selectAll().where('id', '=', id).executeTakeFirst();
    if (!r) throw new NotFoundError('iam.token_not_found', `token ${id} not found`);
    return this.toToken(r);
  }

  async listTokens(q: PageQuery & { userId?: string | undefined; kind?: 'session' | 'api' | undefined; active?: boolean | undefined } = {}): Promise<Page<TokenInfo>> {
    let query = this.db.selectFrom('iam_tokens').selectAll().orderBy('id').limit((q.limit ?? 50) + 1);
    if (q.after) query = query.where('id', '>', q.after);
    if (q.userId) query = query.where('user_id', '=', q.userId);
    if (q.kind) query = query.where('kind', '=', q.kind);
    if (q.active) query = query.where('revoked_at', 'is', null).where('expires_at', '>', this.clock.now());
    return page((await query.execute()).map((r) => this.toToken(r)), q.limit ?? 50);
  }

  async revokeToken(id: string): Promise<TokenInfo> {
    const t = await this.getToken(id);
    if (t.revokedAt === null) await this.db.updateTable('iam_tokens').set({ revoked_at: this.clock.now() }).where('id', '=', t.id).execute();
    this.invalidate();
    return this.getToken(t.id);
  }

  /** Revokes the token presented (logout). */
  async revokeBearer(bearer: string): Promise<void> {
    await this.db.updateTable('iam_tokens').set({ revoked_at: this.clock.now() }).where('hash', '=', sha256(bearer)).where('revoked_at', 'is', null).execute();
    this.invalidate();
  }

  /**
   * Resolves a bearer token to a principal, or null when it is unknown,
   * expired, revoked or its user is disabled. Cached per process for
   * `cacheTtlMs` (never past the token's expiry); concurrent requests with the
   * same token while it is being resolved share one lookup.
   */
  async authenticate(bearer: string): Promise<Principal | null> {
    if (!bearer.startsWith('ifs_') && !bearer.startsWith('ifk_')) return null;
    const hash = sha256(bearer);
    const now = this.clock.now();
    const cached = this.principalCache.get(hash);
    if (cached && cached.until > now) return cached.principal;
    const failed = this.failedLookups.get(hash);
    if (failed !== undefined) {
      if (failed > now) return null;
      this.failedLookups.delete(hash);
    }
    const pending = this.resolving.get(hash);
    if (pending) return pending;
    const lookup = this.resolve(hash, now).finally(() => {
      if (this.resolving.get(hash) === lookup) this.resolving.delete(hash);
    });
    this.resolving.set(hash, lookup);
    return lookup;
  }

  private async resolve(hash: string, now: number): Promise<Principal | null> {
    const generation = this.generation;
    this.tokenLookups++;
    const t = await this.db.selectFrom('iam_tokens').innerJoin('iam_users', 'iam_users.id', 'iam_tokens.user_id')
      .select(['iam_tokens.id as id', 'iam_tokens.kind as kind', 'iam_tokens.project as project', 'iam_tokens.permissions as permissions', 'iam_tokens.expires_at as expires_at', 'iam_tokens.revoked_at as revoked_at', 'iam_users.id as user_id', 'iam_users.name as user_name', 'iam_users.disabled as disabled'])
      .where('iam_tokens.hash', '=', hash).executeTakeFirst();
    if (!t || t.revoked_at !== null || t.expires_at <= now || t.disabled) {
      this.principalCache.delete(hash);
      if (generation === this.generation && this.failedLookupTtlMs > 0) {
        // bounded: the oldest entries go first
        if (this.failedLookups.size >= 10_000) this.failedLookups.delete(this.failedLookups.keys().next().value!);
        this.failedLookups.set(hash, now + this.failedLookupTtlMs);
      }
      return null;
    }
    const principal = await this.principalFor(t.user_id, t.user_name, { id: t.id, kind: t.kind as 'session' | 'api', project: t.project, permissions: t.permissions ? JSON.parse(t.permissions) : null });
    // a change of rights committed while this lookup ran: answer this request, but do not keep it
    if (generation === this.generation) {
      if (this.principalCache.size > 10_000) this.principalCache.clear();
      this.principalCache.set(hash, { principal, until: Math.min(now + this.cacheTtlMs, t.expires_at) });
    }
    const last = this.lastUsedWritten.get(t.id) ?? 0;
    if (now - last > 60_000) {
      this.lastUsedWritten.set(t.id, now);
      void this.db.updateTable('iam_tokens').set({ last_used_at: now }).where('id', '=', t.id).execute().catch((e: unknown) => this.logger.warn({ err: e }, 'could not record token use'));
    }
    return principal;
  }

  /** Computes a user's effective permissions from their own and their groups' assignments. */
  async principalFor(userId: string, userName: string, token: { id: string; kind: 'session' | 'api'; project: string | null; permissions: Permission[] | null }): Promise<Principal> {
    const groups = await this.db.selectFrom('iam_group_members').select('group_id').where('user_id', '=', userId).execute();
    const rows = await this.db.selectFrom('iam_assignments').select(['role', 'scope']).where((eb) => eb.or([
      eb.and([eb('principal_type', '=', 'user'), eb('principal_id', '=', userId)]),
      ...(groups.length ? [eb.and([eb('principal_type', '=', 'group'), eb('principal_id', 'in', groups.map((g) => g.group_id))])] : []),
    ])).execute();
    const customNames = [...new Set(rows.map((r) => r.role).filter((n) => !isBuiltinRole(n)))];
    const custom = new Map<string, Permission[]>();
    if (customNames.length) {
      for (const r of await this.db.selectFrom('iam_roles').select(['name', 'permissions']).where('name', 'in', customNames).execute()) custom.set(r.name, JSON.parse(r.permissions));
    }
    const system = new Set<Permission>();
    const projects = new Map<string, Set<Permission>>();
    for (const r of rows) {
      const perms = isBuiltinRole(r.role) ? BUILTIN_ROLES[r.role]!.permissions : custom.get(r.role) ?? [];
      const target = r.scope === SYSTEM_SCOPE ? system : projects.get(r.scope) ?? projects.set(r.scope, new Set()).get(r.scope)!;
      for (const p of perms) target.add(p);
    }
    return {
      userId, userName, tokenId: token.id, tokenKind: token.kind, system, projects,
      tokenProject: token.project, tokenPermissions: token.permissions ? new Set(token.permissions) : null,
    };
  }

  // ---------------------------------------------------------------- audit

  async audit(entry: Omit<AuditEntry, 'id' | 'at'>): Promise<void> {
    const at = this.clock.now();
    await this.db.insertInto('iam_audit').values({
      id: newId('aud', at), at, actor_id: entry.actorId, actor_name: entry.actorName, token_id: entry.tokenId, action: entry.action, method: entry.method,
      route: entry.route, target: entry.target, project: entry.project, outcome: entry.outcome, status: entry.status, request_id: entry.requestId, message: entry.message,
    }).execute();
  }

  async listAudit(q: PageQuery & { actor?: string | undefined; outcome?: string | undefined; action?: string | undefined; project?: string | undefined; since?: number | undefined } = {}): Promise<Page<AuditEntry>> {
    // newest first: the cursor is the last id seen, walking down
    let query = this.db.selectFrom('iam_audit').selectAll().orderBy('id', 'desc').limit((q.limit ?? 50) + 1);
    if (q.after) query = query.where('id', '<', q.after);
    if (q.actor) query = query.where((eb) => eb.or([eb('actor_id', '=', q.actor!), eb('actor_name', '=', q.actor!)]));
    if (q.outcome) query = query.where('outcome', '=', q.outcome);
    if (q.action) query = query.where('action', '=', q.action);
    if (q.project) query = query.where('project', '=', q.project);
    if (q.since !== undefined) query = query.where('at', '>=', q.since);
    const rows = await query.execute();
    return page(rows.map((r) => ({ id: r.id, at: r.at, actorId: r.actor_id, actorName: r.actor_name, tokenId: r.token_id, action: r.action, method: r.method, route: r.route, target: r.target, project: r.project, outcome: r.outcome as AuditEntry['outcome'], status: r.status, requestId: r.request_id, message: r.message })), q.limit ?? 50);
  }

  // ---------------------------------------------------------------- secrets

  private toSecret(r: any): SecretMeta {
    return { id: r.id, project: r.project, name: r.name, description: r.description, owner: r.owner, revision: r.revision, createdAt: r.created_at, updatedAt: r.updated_at };
  }

  async createSecret(input: { project: string; name: string; value: string; description?: string | null | undefined; owner?: string | null | undefined }): Promise<SecretMeta> {
    checkName('name', input.name);
    const project = (await this.getProject(input.project)).name;
    const now = this.clock.now();
    const id = newId('sec', now);
    const row = { id, project, name: input.name, description: input.description ?? null, ciphertext: this.box.seal(input.value, id), owner: input.owner ?? null, revision: 1, created_at: now, updated_at: now };
    try {
      await this.db.insertInto('iam_secrets').values(row).execute();
    } catch (e) {
      if (uniqueViolation(e)) throw new ConflictError('iam.name_taken', `name: project ${project} already has a secret named "${input.name}"; pick another name or replace its value`, { details: { field: 'name' } });
      throw e;
    }
    return this.toSecret(row);
  }

  async findSecret(id: string): Promise<SecretMeta | null> {
    const r = await this.db.selectFrom('iam_secrets').selectAll().where('id', '=', id).executeTakeFirst();
    return r ? this.toSecret(r) : null;
  }

  async getSecret(id: string): Promise<SecretMeta> {
    const s = await this.findSecret(id);
    if (!s) throw new NotFoundError('iam.secret_not_found', `secret ${id} not found`);
    return s;
  }

  async listSecrets(q: PageQuery & { projects?: string[] | undefined; owner?: string | undefined; name?: string | undefined } = {}): Promise<Page<SecretMeta>> {
    if (q.projects && q.projects.length === 0) return { items: [], next: null };
    let query = this.db.selectFrom('iam_secrets').select(['id', 'project', 'name', 'description', 'owner', 'revision', 'created_at', 'updated_at']).orderBy('id').limit((q.limit ?? 50) + 1);
    if (q.after) query = query.where('id', '>', q.after);
    if (q.projects) query = query.where('project', 'in', q.projects);
    if (q.owner) query = query.where('owner', '=', q.owner);
    if (q.name) query = query.where('name', '=', q.name);
    return page((await query.execute()).map((r) => this.toSecret(r)), q.limit ?? 50);
  }

  /** The plaintext. Callers must authorize and audit (the API's explicit endpoint does both). */
  async revealSecret(id: string): Promise<string> {
    const r = await this.db.selectFrom('iam_secrets').select(['id', 'ciphertext']).where('id', '=', id).executeTakeFirst();
    if (!r) throw new NotFoundError('iam.secret_not_found', `secret ${id} not found`);
    return this.box.open(r.ciphertext, r.id);
  }

  async updateSecret(id: string, patch: { value?: string | undefined; description?: string | null | undefined }, ifMatch?: number): Promise<SecretMeta> {
    const cur = await this.getSecret(id);
    if (ifMatch !== undefined && ifMatch !== cur.revision) throw revisionMismatch('secret', cur.id, ifMatch, cur.revision);
    const set: Record<string, unknown> = { revision: cur.revision + 1, updated_at: this.clock.now() };
    if (patch.value !== undefined) set.ciphertext = this.box.seal(patch.value, cur.id);
    if (patch.description !== undefined) set.description = patch.description;
    const res = await this.db.updateTable('iam_secrets').set(set).where('id', '=', cur.id).where('revision', '=', cur.revision).executeTakeFirst();
    if (Number(res.numUpdatedRows) !== 1) throw revisionMismatch('secret', cur.id, cur.revision, cur.revision + 1);
    return this.getSecret(cur.id);
  }

  async deleteSecret(id: string): Promise<void> {
    const cur = await this.getSecret(id);
    await this.db.deleteFrom('iam_secrets').where('id', '=', cur.id).execute();
  }
}

function page<T extends { id: string }>(rows: T[], limit: number): Page<T> {
  if (rows.length > limit) {
    const items = rows.slice(0, limit);
    return { items, next: items[items.length - 1]!.id };
  }
  return { items: rows, next: null };
}

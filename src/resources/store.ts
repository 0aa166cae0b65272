import { systemClock, type Clock } from '../core/clock.js';
import { ConflictError, NotFoundError, ValidationError } from '../core/errors.js';
import { newId } from '../core/ids.js';
import { isSealed, SecretBox } from '../core/secrets.js';
import type { Store, Trx } from '../store/store.js';
import type { EngineApi, EngineEvent, EventFilter } from '../engine/types.js';
import { KINDS, parseSpec } from './kinds.js';
import type { ResourceTable } from './migrations.js';
import type { Condition, Phase, Resource, ResourceStatus } from './types.js';
import './migrations.js';

export interface ResourceStoreOptions {
  clock?: Clock;
  /** When given, resource events are published through the engine's event stream. */
  engine?: Pick<EngineApi, 'publish'> | undefined;
  /** Base64 32-byte key (core/secrets resolveSecretKey): secrets are sealed with AES-256-GCM at rest. Without it they are stored unencrypted. */
  secretKey?: string | undefined;
  /** Accept kinds not in KINDS (validated only by their provider). Default false. */
  allowUnknownKinds?: boolean;
}

export interface CreateResourceInput {
  kind: string;
  name: string;
  project: string;
  spec: Record<string, unknown>;
  labels?: Record<string, string>;
  owner?: string | null;
  /** Caller-chosen id (e.g. derived by a stack); default a new `res_…` id. */
  id?: string;
}

export interface ResourceFilter {
  project?: string;
  kind?: string | string[];
  owner?: string;
  phase?: Phase | Phase[];
  /** All of these labels must match. */
  labels?: Record<string, string>;
  /** Name prefix. */
  namePrefix?: string;
  includeDeleted?: boolean;
  /** Cursor: ids sort by creation; return resources with id > after. */
  after?: string;
  /** Default 100, at most 1000. */
  limit?: number;
}

export interface ResourcePage {
  items: Resource[];
  /** Pass as `after` for the next page; absent on the last page. */
  nextCursor?: string;
}

export interface StatusPatch {
  phase?: Phase;
  /** Conditions to set (merged by type; lastTransitionTime kept when status is unchanged). */
  conditions?: Omit<Condition, 'lastTransitionTime'>[];
  /** Replaces outputs when given. */
  outputs?: Record<string, unknown>;
  externalId?: string | null;
  observedGeneration?: number;
  /** Stored apart, never returned by get/list. */
  secrets?: Record<string, string>;
  /** Human-readable one-liner about the last thing that happened. */
  message?: string;
  /** The spec last applied to the backend. */
  appliedSpec?: Record<string, unknown> | null;
}

export const RESOURCE_EVENT_TYPES = ['resource.created', 'resource.spec_updated', 'resource.phase_changed', 'resource.condition_changed', 'resource.deleted'] as const;

/** Merges conditions by type; keeps lastTransitionTime when the status does not change. */
export function mergeConditions(current: Condition[], updates: Omit<Condition, 'lastTransitionTime'>[], now: number): { conditions: Condition[]; changed: Condition[] } {
  const out = [...current];
  const changed: Condition[] = [];
  for (const u of updates) {
    const i = out.findIndex((c) => c.type === u.type);
    const prev = i >= 0 ? out[i] : undefined;
    if (prev && prev.status === u.status && prev.reason === u.reason && prev.message === u.message) continue;
    const next: Condition = { ...u, lastTransitionTime: prev && prev.status === u.status ? prev.lastTransitionTime : now };
    if (i >= 0) out[i] = next;
    else out.push(next);
    changed.push(next);
  }
  return { conditions: out, changed };
}

/** The resource store: one row per resource, soft-deleted so history and events stay readable. */
export class ResourceStore {
  readonly store: Store;
  readonly clock: Clock;
  private engine: Pick<EngineApi, 'publish'> | undefined;
  private readonly box: SecretBox | undefined;
  private readonly allowUnknownKinds: boolean;

  constructor(store: Store, opts: ResourceStoreOptions = {}) {
    this.store = store;
    this.clock = opts.clock ?? systemClock;
    this.engine = opts.engine;
    this.allowUnknownKinds = opts.allowUnknownKinds ?? false;
    if (opts.secretKey) this.box = new SecretBox(Buffer.from(opts.secretKey, 'base64'));
  }

  /** Attach the engine after construction (composition roots build the engine later). */
  setEngine(engine: Pick<EngineApi, 'publish'> | undefined): void {
    this.engine = engine;
  }

  async create(input: CreateResourceInput): Promise<Resource> {
    const spec = KINDS[input.kind] || !this.allowUnknownKinds ? parseSpec(input.kind, input.spec) : input.spec;
    if (!/^[a-z0-9]([a-z0-9._-]{0,252}[a-z0-9])?$/i.test(input.name)) {
      throw new ValidationError('resources.invalid_name', `resource name "${input.name}" must be 1-254 letters, digits, dots, dashes or underscores, starting and ending with a letter or digit`);
    }
    if (!input.project) throw new ValidationError('resources.invalid_project', 'a resource needs a project');
    const now = this.clock.now();
    const id = input.id ?? newId('res', now);
    const status: ResourceStatus = { phase: 'pending', conditions: [], outputs: {}, externalId: null, observedGeneration: 0 };
    const labels = input.labels ?? {};
    const row: ResourceTable = {
      id, kind: input.kind, name: input.name, project: input.project, spec: JSON.stringify(spec), status: JSON.stringify(status), secrets: null,
      labels: JSON.stringify(labels), owner: input.owner ?? null, phase: 'pending', external_id: null, generation: 1, observed_generation: 0,
      created_at: now, updated_at: now, deleted_at: null,
    };
    await this.store.transaction(async (trx) => {
      const clash = await trx.selectFrom('resources').select(['id']).where('project', '=', input.project).where('kind', '=', input.kind).where('name', '=', input.name).where('deleted_at', 'is', null).executeTakeFirst();
      if (clash) throw new ConflictError('resources.name_taken', `a ${input.kind} named "${input.name}" already exists in project ${input.project} (${clash.id}): choose another name or update that one`, { details: { id: clash.id } });
      const byId = await trx.selectFrom('resources').select(['id']).where('id', '=', id).executeTakeFirst();
      if (byId) throw new ConflictError('resources.id_taken', `resource id ${id} already exists`, { details: { id } });
      await trx.insertInto('resources').values(row).execute();
      await this.writeLabels(trx, id, labels);
    });
    const r = rowToResource(row);
    await this.publish('resource.created', r, { generation: 1 });
    return r;
  }

  private findStmt: import('better-sqlite3').Statement | undefined;

  async find(id: string): Promise<Resource | undefined> {
    const raw = this.store.sqlite;
    if (raw && !raw.inTransaction) {
      // SQLite, the API's GET by id: one statement compiled once, no query building per call
      const row = (this.findStmt ??= raw.prepare('select * from resources where id = ?')).get(id) as ResourceTable | undefined;
      return row ? rowToResource(row) : undefined;
    }
    const row = await this.store.db.selectFrom('resources').selectAll().where('id', '=', id).executeTakeFirst();
    return row ? rowToResource(row) : undefined;
  }

  async get(id: string): Promise<Resource> {
    const r = await this.find(id);
    if (!r) throw new NotFoundError('resources.not_found', `resource ${id} does not exist`, { details: { id } });
    return r;
  }

  /** The live (not deleted) resource with this name. */
  async getByName(project: string, kind: string, name: string): Promise<Resource | undefined> {
    const row = await this.store.db.selectFrom('resources').selectAll().where('project', '=', project).where('kind', '=', kind).where('name', '=', name).where('deleted_at', 'is', null).executeTakeFirst();
    return row ? rowToResource(row) : undefined;
  }

  /** SQLite: compiled page queries by shape and page size (see list). */
  private readonly pageStmts = new Map<string, import('better-sqlite3').Statement>();

  async list(filter: ResourceFilter = {}): Promise<ResourcePage> {
    const limit = Math.min(Math.max(filter.limit ?? 100, 1), 1000);
    const raw = this.store.sqlite;
    const plain = !filter.kind && !filter.owner && !filter.phase && !filter.namePrefix && !filter.includeDeleted && !(filter.labels && Object.keys(filter.labels).length);
    if (raw && plain && !raw.inTransaction) {
      // The API's list page: a statement compiled once per shape and page size, with the LIMIT
      // as a literal (SQLite plans `order by id limit ?` several times slower than with a
      // literal), walking the (project, id) index or the primary key from the cursor.
      const key = `${filter.project !== undefined ? 'p' : '-'}${filter.after !== undefined ? 'a' : '-'}${limit + 1}`;
      let st = this.pageStmts.get(key);
      if (!st) {
        const where = ['deleted_at is null', ...(filter.project !== undefined ? ['project = @project'] : []), ...(filter.after !== undefined ? ['id > @after'] : [])];
        st = raw.prepare(`select * from resources where ${where.join(' and ')} order by id limit ${limit + 1}`);
        if (this.pageStmts.size >= 256) this.pageStmts.delete(this.pageStmts.keys().next().value!); // oldest shape goes
        this.pageStmts.set(key, st);
      }
      const rows = st.all({ ...(filter.project !== undefined ? { project: filter.project } : {}), ...(filter.after !== undefined ? { after: filter.after } : {}) }) as ResourceTable[];
      const items = rows.slice(0, limit).map(rowToResource);
      return rows.length > limit ? { items, nextCursor: items[items.length - 1]!.id } : { items };
    }
    let q = this.store.db.selectFrom('resources').selectAll();
    if (filter.project) q = q.where('project', '=', filter.project);
    if (filter.kind) q = Array.isArray(filter.kind) ? q.where('kind', 'in', filter.kind.length ? filter.kind : ['']) : q.where('kind', '=', filter.kind);
    if (filter.owner) q = q.where('owner', '=', filter.owner);
    if (filter.phase) q = Array.isArray(filter.phase) ? q.where('phase', 'in', filter.phase.length ? filter.phase : ['']) : q.where('phase', '=', filter.phase);
    if (filter.namePrefix) q = q.where('name', '>=', filter.namePrefix).where('name', '<', filter.namePrefix + '\uffff');
    if (!filter.includeDeleted) q = q.where('deleted_at', 'is', null);
    if (filter.after) q = q.where('id', '>', filter.after);
    for (const [k, v] of Object.entries(filter.labels ?? {})) {
      q = q.where(({ exists, selectFrom }) => exists(selectFrom('resource_labels').select('resource_labels.key').whereRef('resource_labels.resource_id', '=', 'resources.id').where('resource_labels.key', '=', k).where('resource_labels.value', '=', v)));
    }
    const rows = await q.orderBy('id').limit(limit + 1).execute();
    const items = rows.slice(0, limit).map(rowToResource);
    return rows.length > limit ? { items, nextCursor: items[items.length - 1]!.id } : { items };
  }

  /** Replaces the spec and bumps the generation. `expectedGeneration` fences concurrent writers. */
  async updateSpec(id: string, spec: Record<string, unknown>, opts: { expectedGeneration?: number; labels?: Record<string, string> } = {}): Promise<Resource> {
    const current = await this.get(id);
    if (current.status.phase === 'deleted') throw new ConflictError('resources.deleted', `resource ${id} is deleted; create a new one`, { details: { id } });
    const parsed = KINDS[current.kind] || !this.allowUnknownKinds ? parseSpec(current.kind, spec) : spec;
    const now = this.clock.now();
    const labels = opts.labels ?? current.labels;
    const res = await this.store.transaction(async (trx) => {
      let q = trx.updateTable('resources').set({ spec: JSON.stringify(parsed), generation: current.generation + 1, labels: JSON.stringify(labels), updated_at: now }).where('id', '=', id).where('generation', '=', opts.expectedGeneration ?? current.generation);
      q = q.where('deleted_at', 'is', null);
      const r = await q.executeTakeFirst();
      if (Number(r.numUpdatedRows) !== 1) return false;
      if (opts.labels) await this.writeLabels(trx, id, labels);
      return true;
    });
    if (!res) throw new ConflictError('resources.stale_generation', `resource ${id} changed meanwhile (generation is no longer ${opts.expectedGeneration ?? current.generation}); read it again and retry`, { details: { id } });
    const updated = await this.get(id);
    await this.publish('resource.spec_updated', updated, { generation: updated.generation });
    return updated;
  }

  /** Updates status; publishes phase and condition changes. */
  async updateStatus(id: string, patch: StatusPatch): Promise<Resource> {
    const now = this.clock.now();
    let before: Resource | undefined;
    let after: Resource | undefined;
    let changedConds: Condition[] = [];
    await this.store.transaction(async (trx) => {
      const row = await trx.selectFrom('resources').selectAll().where('id', '=', id).executeTakeFirst();
      if (!row) throw new NotFoundError('resources.not_found', `resource ${id} does not exist`, { details: { id } });
      before = rowToResource(row);
      const status: ResourceStatus = { ...before.status };
      if (patch.phase) status.phase = patch.phase;
      if (patch.outputs) status.outputs = patch.outputs;
      if (patch.externalId !== undefined) status.externalId = patch.externalId;
      if (patch.observedGeneration !== undefined) status.observedGeneration = patch.observedGeneration;
      if (patch.message !== undefined) status.message = patch.message;
      if (patch.appliedSpec !== undefined) status.appliedSpec = patch.appliedSpec;
      if (patch.conditions) {
        const m = mergeConditions(status.conditions, patch.conditions, now);
        status.conditions = m.conditions;
        changedConds = m.changed;
      }
      const set: Partial<ResourceTable> = {
        status: JSON.stringify(status), phase: status.phase, external_id: status.externalId ?? null, observed_generation: status.observedGeneration, updated_at: now,
      };
      if (patch.secrets) set.secrets = this.seal(id, patch.secrets);
      if (status.phase === 'deleted' && row.deleted_at === null) set.deleted_at = now;
      await trx.updateTable('resources').set(set).where('id', '=', id).execute();
      after = rowToResource({ ...row, ...set } as ResourceTable);
    });
    if (before!.status.phase !== after!.status.phase) {
      const failed = after!.status.conditions.find((c) => c.status === 'False');
      await this.publish(after!.status.phase === 'deleted' ? 'resource.deleted' : 'resource.phase_changed', after!, {
        from: before!.status.phase, to: after!.status.phase, ...(failed ? { reason: failed.reason, message: failed.message } : {}),
      });
    }
    for (const c of changedConds) await this.publish('resource.condition_changed', after!, { condition: c });
    return after!;
  }

  /** Marks the resource deleted (frees its name). Does not call any provider: use the delete step for that. */
  async delete(id: string): Promise<Resource> {
    const r = await this.get(id);
    if (r.status.phase === 'deleted') return r;
    return this.updateStatus(id, { phase: 'deleted' });
  }

  async getSecrets(id: string): Promise<Record<string, string>> {
    const row = await this.store.db.selectFrom('resources').select(['secrets']).where('id', '=', id).executeTakeFirst();
    if (!row) throw new NotFoundError('resources.not_found', `resource ${id} does not exist`, { details: { id } });
    return row.secrets ? this.unseal(id, row.secrets) : {};
  }

  /** The resource's events (needs the engine). */
  async events(id: string, filter: Omit<EventFilter, 'subject'> = {}, engine?: Pick<EngineApi, 'events'>): Promise<EngineEvent[]> {
    const e = engine ?? (this.engine as Partial<EngineApi> | undefined);
    if (!e?.events) return [];
    return e.events({ typePrefix: 'resource.', ...filter, subject: id });
  }

  private async writeLabels(trx: Trx, id: string, labels: Record<string, string>): Promise<void> {
    await trx.deleteFrom('resource_labels').where('resource_id', '=', id).execute();
    const rows = Object.entries(labels).map(([key, value]) => ({ resource_id: id, key, value: String(value) }));
    if (rows.length) await trx.insertInto('resource_labels').values(rows).execute();
  }

  private async publish(type: string, r: Resource, data: Record<string, unknown>): Promise<void> {
    if (!this.engine) return;
    await this.engine.publish(type, r.id, { kind: r.kind, name: r.name, project: r.project, phase: r.status.phase, ...data });
  }

  /** Secrets are sealed with the installation's key, bound to the resource id (a copied ciphertext does not open elsewhere). */
  private seal(id: string, secrets: Record<string, string>): string {
    if (!this.box) return 'plain:' + Buffer.from(JSON.stringify(secrets)).toString('base64');
    return this.box.sealJson(secrets, `resource:${id}`);
  }

  private unseal(id: string, text: string): Record<string, string> {
    if (text.startsWith('plain:')) return JSON.parse(Buffer.from(text.slice(6), 'base64').toString()) as Record<string, string>;
    if (!isSealed(text)) throw new ValidationError('resources.secret_unreadable', `the secrets of resource ${id} are in an unknown format`);
    if (!this.box) throw new ValidationError('resources.secret_key_missing', 'resource secrets are encrypted: configure the secretKey they were written with');
    return this.box.openJson<Record<string, string>>(text, `resource:${id}`);
  }
}

export function rowToResource(row: ResourceTable): Resource {
  const status = JSON.parse(row.status) as ResourceStatus;
  return {
    id: row.id,
    kind: row.kind,
    name: row.name,
    project: row.project,
    spec: JSON.parse(row.spec) as Record<string, unknown>,
    status: { ...status, phase: row.phase as Phase, observedGeneration: Number(row.observed_generation) },
    labels: JSON.parse(row.labels) as Record<string, string>,
    owner: row.owner,
    generation: Number(row.generation),
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
  };
}

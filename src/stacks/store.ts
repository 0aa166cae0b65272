import type { Clock } from '../core/clock.js';
import { ConflictError, NotFoundError } from '../core/errors.js';
import { newId } from '../core/ids.js';
import { SecretBox, SENSITIVE } from '../core/secrets.js';

const SEALED_PARAM = '$sealed';
function maskSealed(params: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(params).map(([k, v]) => [k, isSealedParam(v) ? SENSITIVE : v]));
}
function isSealedParam(v: unknown): v is { [SEALED_PARAM]: string } {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && typeof (v as Record<string, unknown>)[SEALED_PARAM] === 'string' && Object.keys(v).length === 1;
}
import type { Store } from '../store/store.js';
import type { StackResourceTable, StackTable } from './migrations.js';
import type { RecordedResource } from './plan.js';
import './migrations.js';

/**
 * The stacks tables. One SQL operation per method; every write of the
 * `stacks` row that accepts a document checks the revision (optimistic
 * concurrency), and recorded resources are upserted one row per address.
 */

export type StackStatus = 'new' | 'applying' | 'applied' | 'failed' | 'destroying' | 'destroyed' | 'cancelled';

export interface StackRow {
  id: string;
  project: string;
  name: string;
  revision: number;
  appliedRevision: number | null;
  status: StackStatus;
  lastRunId: string | null;
  outputs: Record<string, unknown>;
  error: Record<string, unknown> | null;
  drift: 'in_sync' | 'drifted' | 'unknown';
  observedAt: number | null;
  labels: Record<string, string>;
  createdAt: number;
  updatedAt: number;
}

export interface RevisionRow {
  stackId: string;
  revision: number;
  source: string;
  file: string;
  params: Record<string, unknown>;
  createdBy: string | null;
  createdAt: number;
}

function toStack(r: StackTable): StackRow {
  return {
    id: r.id, project: r.project, name: r.name, revision: Number(r.revision), appliedRevision: r.applied_revision === null ? null : Number(r.applied_revision),
    status: r.status as StackStatus, lastRunId: r.last_run_id, outputs: JSON.parse(r.outputs) as Record<string, unknown>,
    error: r.error ? (JSON.parse(r.error) as Record<string, unknown>) : null, drift: r.drift as StackRow['drift'], observedAt: r.observed_at === null ? null : Number(r.observed_at),
    labels: JSON.parse(r.labels) as Record<string, string>, createdAt: Number(r.created_at), updatedAt: Number(r.updated_at),
  };
}

export function toRecorded(r: StackResourceTable): RecordedResource {
  return {
    address: r.address, resource: r.resource, kind: r.kind, resourceId: r.resource_id, spec: JSON.parse(r.spec) as Record<string, unknown>, specHash: r.spec_hash,
    outputs: JSON.parse(r.outputs) as Record<string, unknown>, status: r.status, phase: Number(r.phase), dependsOn: JSON.parse(r.depends_on) as string[], order: Number(r.ord),
    drift: r.drift ? (JSON.parse(r.drift) as string[]) : null, createBeforeDestroy: Number(r.cbd) === 1, updatedAt: Number(r.updated_at),
  };
}

export class StackStore {
  /** Seals the values of `sensitive` parameters at rest (a random key per process when not given: tests). */
  private readonly box: SecretBox;
  constructor(readonly store: Store, readonly clock: Clock, box?: SecretBox) {
    this.box = box ?? SecretBox.random();
  }

  /** Parameters as stored: values of sensitive ones sealed (`{ "$sealed": "v1.…" }`, bound to the stack and name). */
  private sealParams(project: string, name: string, params: Record<string, unknown>, sensitive: readonly string[]): Record<string, unknown> {
    const out: Record<string, unknown> = { ...params };
    for (const k of sensitive) if (k in out && out[k] !== undefined) out[k] = { [SEALED_PARAM]: this.box.seal(JSON.stringify(out[k]), `stack-param:${project}/${name}:${k}`) };
    return out;
  }

  private openParams(project: string, name: string, params: Record<string, unknown>): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(params)) out[k] = isSealedParam(v) ? JSON.parse(this.box.open(v[SEALED_PARAM], `stack-param:${project}/${name}:${k}`)) as unknown : v;
    return out;
  }

  private get db() {
    return this.store.db;
  }

  async find(idOrName: string, project?: string): Promise<StackRow | undefined> {
    let q = this.db.selectFrom('stacks').selectAll();
    q = idOrName.startsWith('stk_') ? q.where('id', '=', idOrName) : q.where('name', '=', idOrName).where('project', '=', project ?? 'default');
    const r = await q.executeTakeFirst();
    return r ? toStack(r) : undefined;
  }

  async get(idOrName: string, project?: string): Promise<StackRow> {
    const s = await this.find(idOrName, project);
    if (!s) throw new NotFoundError('stacks.not_found', `stack ${idOrName}${idOrName.startsWith('stk_') ? '' : ` in project ${project ?? 'default'}`} does not exist`, { details: { stack: idOrName } });
    return s;
  }

  async list(filter: { project?: string; after?: string; limit?: number } = {}): Promise<StackRow[]> {
    let q = this.db.selectFrom('stacks').selectAll();
    if (filter.project) q = q.where('project', '=', filter.project);
    if (filter.after) q = q.where('id', '>', filter.after);
    const rows = await q.orderBy('id').limit(Math.min(Math.max(filter.limit ?? 100, 1), 1000)).execute();
    return rows.map(toStack);
  }

  /**
   * Stores a new revision of a stack's document. With `expectedRevision`,
   * refuses when the stack has moved on (someone else applied meanwhile).
   */
  async putRevision(input: { project: string; name: string; source: string; file: string; params: Record<string, unknown>; sensitive?: readonly string[] | undefined; expectedRevision?: number | undefined; createdBy?: string | undefined; labels?: Record<string, string> | undefined }): Promise<{ stack: StackRow; revision: number }> {
    const now = this.clock.now();
    return this.store.transaction(async (trx) => {
      const cur = await trx.selectFrom('stacks').selectAll().where('project', '=', input.project).where('name', '=', input.name).executeTakeFirst();
      const have = cur ? Number(cur.revision) : 0;
      if (input.expectedRevision !== undefined && input.expectedRevision !== have) {
        throw new ConflictError('stacks.stale_revision', `stack ${input.name} is at revision ${have}, but this change was planned against revision ${input.expectedRevision}: someone changed it meanwhile — run plan again and review the new diff`, {
          details: { stack: input.name, currentRevision: have, expectedRevision: input.expectedRevision },
        });
      }
      const revision = have + 1;
      let id: string;
      if (!cur) {
        id = newId('stk', now);
        await trx.insertInto('stacks').values({
          id, project: input.project, name: input.name, revision, applied_revision: null, status: 'new', last_run_id: null, outputs: '{}', error: null,
          drift: 'unknown', observed_at: null, labels: JSON.stringify(input.labels ?? {}), created_at: now, updated_at: now,
        }).execute();
      } else {
        id = cur.id;
        const u = await trx.updateTable('stacks').set({ revision, updated_at: now, ...(input.labels ? { labels: JSON.stringify(input.labels) } : {}) }).where('id', '=', id).where('revision', '=', have).executeTakeFirst();
        if (Number(u.numUpdatedRows) !== 1) throw new ConflictError('stacks.stale_revision', `stack ${input.name} changed meanwhile: run plan again`);
      }
      await trx.insertInto('stack_revisions').values({ stack_id: id, revision, source: input.source, file: input.file, params: JSON.stringify(this.sealParams(input.project, input.name, input.params, input.sensitive ?? [])), created_by: input.createdBy ?? null, created_at: now }).execute();
      const row = await trx.selectFrom('stacks').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
      return { stack: toStack(row), revision };
    });
  }

  /** A revision; sensitive parameters opened for use, or with `masked` shown as (sensitive) (for serving). */
  async revision(stackId: string, revision: number, opts: { masked?: boolean } = {}): Promise<RevisionRow> {
    const r = await this.db.selectFrom('stack_revisions').selectAll().where('stack_id', '=', stackId).where('revision', '=', revision).executeTakeFirst();
    if (!r) throw new NotFoundError('stacks.revision_not_found', `stack ${stackId} has no revision ${revision}`);
    const s = await this.db.selectFrom('stacks').select(['project', 'name']).where('id', '=', stackId).executeTakeFirstOrThrow();
    return { stackId: r.stack_id, revision: Number(r.revision), source: r.source, file: r.file, params: opts.masked ? maskSealed(JSON.parse(r.params) as Record<string, unknown>) : this.openParams(s.project, s.name, JSON.parse(r.params) as Record<string, unknown>), createdBy: r.created_by, createdAt: Number(r.created_at) };
  }

  async revisions(stackId: string): Promise<Omit<RevisionRow, 'source'>[]> {
    const rows = await this.db.selectFrom('stack_revisions').select(['stack_id', 'revision', 'file', 'params', 'created_by', 'created_at']).where('stack_id', '=', stackId).orderBy('revision', 'desc').execute();
    // sensitive values are never served: shown as (sensitive)
    return rows.map((r) => ({ stackId: r.stack_id, revision: Number(r.revision), file: r.file, params: maskSealed(JSON.parse(r.params) as Record<string, unknown>), createdBy: r.created_by, createdAt: Number(r.created_at) }));
  }

  async setStatus(stackId: string, patch: { status?: StackStatus; lastRunId?: string; appliedRevision?: number; outputs?: Record<string, unknown>; error?: Record<string, unknown> | null; drift?: StackRow['drift']; observedAt?: number }): Promise<void> {
    const set: Partial<StackTable> = { updated_at: this.clock.now() };
    if (patch.status) set.status = patch.status;
    if (patch.lastRunId) set.last_run_id = patch.lastRunId;
    if (patch.appliedRevision !== undefined) set.applied_revision = patch.appliedRevision;
    if (patch.outputs) set.outputs = JSON.stringify(patch.outputs);
    if (patch.error !== undefined) set.error = patch.error ? JSON.stringify(patch.error) : null;
    if (patch.drift) set.drift = patch.drift;
    if (patch.observedAt !== undefined) set.observed_at = patch.observedAt;
    await this.db.updateTable('stacks').set(set).where('id', '=', stackId).execute();
  }

  async recorded(stackId: string): Promise<RecordedResource[]> {
    const rows = await this.db.selectFrom('stack_resources').selectAll().where('stack_id', '=', stackId).execute();
    return rows.map(toRecorded);
  }

  async recordedOne(stackId: string, address: string): Promise<RecordedResource | undefined> {
    const r = await this.db.selectFrom('stack_resources').selectAll().where('stack_id', '=', stackId).where('address', '=', address).executeTakeFirst();
    return r ? toRecorded(r) : undefined;
  }

  async record(stackId: string, runId: string, r: Omit<RecordedResource, 'updatedAt'>): Promise<void> {
    const now = this.clock.now();
    const row: StackResourceTable = {
      stack_id: stackId, address: r.address, resource: r.resource, kind: r.kind, resource_id: r.resourceId, spec: JSON.stringify(r.spec), spec_hash: r.specHash,
      outputs: JSON.stringify(r.outputs), status: r.status, phase: r.phase, ord: r.order, depends_on: JSON.stringify(r.dependsOn), drift: r.drift ? JSON.stringify(r.drift) : null,
      cbd: r.createBeforeDestroy ? 1 : 0, run_id: runId, created_at: now, updated_at: now,
    };
    const { stack_id: _s, address: _a, created_at: _c, ...update } = row;
    await this.db.insertInto('stack_resources').values(row).onConflict((oc) => oc.columns(['stack_id', 'address']).doUpdateSet(update)).execute();
  }

  async setRecordedStatus(stackId: string, address: string, status: string): Promise<void> {
    await this.db.updateTable('stack_resources').set({ status, updated_at: this.clock.now() }).where('stack_id', '=', stackId).where('address', '=', address).execute();
  }

  async setDrift(stackId: string, address: string, drift: string[] | null, status?: string): Promise<void> {
    await this.db.updateTable('stack_resources').set({ drift: drift ? JSON.stringify(drift) : null, ...(status ? { status } : {}), updated_at: this.clock.now() }).where('stack_id', '=', stackId).where('address', '=', address).execute();
  }

  async unrecord(stackId: string, address: string): Promise<void> {
    await this.db.deleteFrom('stack_resources').where('stack_id', '=', stackId).where('address', '=', address).execute();
  }

  async countRecorded(stackId: string): Promise<number> {
    const r = await this.db.selectFrom('stack_resources').select((eb) => eb.fn.countAll<number>().as('n')).where('stack_id', '=', stackId).executeTakeFirst();
    return Number(r?.n ?? 0);
  }

  /** Removes a destroyed stack and its history. */
  async remove(stackId: string): Promise<void> {
    await this.store.transaction(async (trx) => {
      await trx.deleteFrom('stack_resources').where('stack_id', '=', stackId).execute();
      await trx.deleteFrom('stack_revisions').where('stack_id', '=', stackId).execute();
      await trx.deleteFrom('stacks').where('id', '=', stackId).execute();
    });
  }
}

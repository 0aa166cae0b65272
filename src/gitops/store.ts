import type { Clock } from '../core/clock.js';
import { ConflictError, NotFoundError } from '../core/errors.js';
import { newId } from '../core/ids.js';
import type { Store } from '../store/store.js';
import type { GitopsAppTable, GitopsSourceTable } from './migrations.js';
import type { HealthCode, SyncCode } from './status.js';
import './migrations.js';

/** The GitOps tables, one SQL operation per method. */

export interface SyncPolicy {
  /** Sync by itself when the ref moves to a new commit. */
  automated: boolean;
  /** Destroy stacks whose document was removed from Git. */
  prune: boolean;
  /** Sync again when a stack drifts or is changed outside GitOps. */
  selfHeal: boolean;
}

export interface SourceRow {
  id: string;
  project: string;
  name: string;
  url: string;
  ref: string;
  credentialsSecret: string | null;
  hasWebhookSecret: boolean;
  pollIntervalS: number;
  lastSha: string | null;
  lastFetchedAt: number | null;
  lastError: { code: string; message: string } | null;
  createdAt: number;
  updatedAt: number;
}

export interface ResourceStatus {
  file: string;
  stack: string;
  stackId: string | null;
  wave: number;
  hook: string | null;
  sync: SyncCode;
  health: HealthCode;
  reason?: string | undefined;
  message?: string | undefined;
}

export interface OperationState {
  phase: 'Running' | 'Succeeded' | 'Failed';
  runId: string;
  sha: string;
  reason: string;
  startedAt: number;
  finishedAt?: number | null;
  message?: string | null;
  /** What the running sync waits on, and since when. */
  waitingFor?: string | null;
  since?: number | null;
}

export interface AppStatus {
  sync: SyncCode;
  health: HealthCode;
  /** The commit the application should be at (the source's ref, or a rollback's pin). */
  targetSha: string | null;
  syncedSha: string | null;
  resources: ResourceStatus[];
  conditions: { type: string; message: string; at: number }[];
  operation: OperationState | null;
  reconciledAt: number | null;
}

export const EMPTY_STATUS: AppStatus = { sync: 'Unknown', health: 'Unknown', targetSha: null, syncedSha: null, resources: [], conditions: [], operation: null, reconciledAt: null };

export interface AppRow {
  id: string;
  project: string;
  name: string;
  sourceId: string;
  path: string;
  syncPolicy: SyncPolicy;
  dependsOn: string[];
  pinnedSha: string | null;
  status: AppStatus;
  syncedSha: string | null;
  lastRunId: string | null;
  revision: number;
  createdAt: number;
  updatedAt: number;
}

export interface AppStackRow {
  appId: string;
  file: string;
  stackId: string | null;
  stackName: string;
  blob: string;
  stackRevision: number;
  wave: number;
  hook: string | null;
}

export interface SyncRow {
  appId: string;
  seq: number;
  sha: string;
  runId: string;
  reason: string;
  result: 'running' | 'succeeded' | 'failed';
  message: string | null;
  startedAt: number;
  finishedAt: number | null;
}

function toSource(r: GitopsSourceTable): SourceRow {
  return {
    id: r.id, project: r.project, name: r.name, url: r.url, ref: r.ref, credentialsSecret: r.credentials_secret, hasWebhookSecret: r.webhook_secret !== null,
    pollIntervalS: Number(r.poll_interval_s), lastSha: r.last_sha, lastFetchedAt: r.last_fetched_at === null ? null : Number(r.last_fetched_at),
    lastError: r.last_error ? (JSON.parse(r.last_error) as SourceRow['lastError']) : null, createdAt: Number(r.created_at), updatedAt: Number(r.updated_at),
  };
}

function toApp(r: GitopsAppTable): AppRow {
  return {
    id: r.id, project: r.project, name: r.name, sourceId: r.source_id, path: r.path, syncPolicy: JSON.parse(r.sync_policy) as SyncPolicy,
    dependsOn: JSON.parse(r.depends_on) as string[], pinnedSha: r.pinned_sha, status: JSON.parse(r.status) as AppStatus, syncedSha: r.synced_sha,
    lastRunId: r.last_run_id, revision: Number(r.revision), createdAt: Number(r.created_at), updatedAt: Number(r.updated_at),
  };
}

function isUnique(e: unknown): boolean {
  const x = e as { code?: string; message?: string };
  return x?.code === '23505' || x?.code === 'SQLITE_CONSTRAINT_UNIQUE' || x?.code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || /UNIQUE constraint failed/.test(x?.message ?? '');
}

export class GitopsStore {
  constructor(readonly store: Store, readonly clock: Clock) {}

  private get db() {
    return this.store.db;
  }

  // ---------------------------------------------------------------- sources

  async createSource(input: { project: string; name: string; url: string; ref: string; credentialsSecret: string | null; webhookSecret: string | null; pollIntervalS: number }): Promise<SourceRow> {
    const now = this.clock.now();
    const row: GitopsSourceTable = {
      id: newId('gsrc'), project: input.project, name: input.name, url: input.url, ref: input.ref, credentials_secret: input.credentialsSecret, webhook_secret: input.webhookSecret,
      poll_interval_s: input.pollIntervalS, last_sha: null, last_fetched_at: null, last_error: null, created_at: now, updated_at: now,
    };
    try {
      await this.db.insertInto('gitops_sources').values(row).execute();
    } catch (e) {
      if (isUnique(e)) throw new ConflictError('gitops.source_exists', `a Git source named ${input.name} already exists in project ${input.project}`, { details: { field: 'name' } });
      throw e;
    }
    return toSource(row);
  }

  async findSource(idOrName: string, project?: string): Promise<SourceRow | undefined> {
    let q = this.db.selectFrom('gitops_sources').selectAll();
    q = idOrName.startsWith('gsrc_') ? q.where('id', '=', idOrName) : q.where('name', '=', idOrName).where('project', '=', project ?? 'default');
    const r = await q.executeTakeFirst();
    return r ? toSource(r) : undefined;
  }

  async getSource(idOrName: string, project?: string): Promise<SourceRow> {
    const s = await this.findSource(idOrName, project);
    if (!s) throw new NotFoundError('gitops.source_not_found', `Git source ${idOrName} not found`);
    return s;
  }

  /** The sealed webhook secret (only for signature checks). */
  async webhookSecret(id: string): Promise<string | null> {
    const r = await this.db.selectFrom('gitops_sources').select('webhook_secret').where('id', '=', id).executeTakeFirst();
    return r?.webhook_secret ?? null;
  }

  async listSources(filter: { project?: string; projects?: string[]; after?: string; limit?: number } = {}): Promise<SourceRow[]> {
    let q = this.db.selectFrom('gitops_sources').selectAll().orderBy('id');
    if (filter.project) q = q.where('project', '=', filter.project);
    if (filter.projects) q = filter.projects.length ? q.where('project', 'in', filter.projects) : q.where('id', '=', '');
    if (filter.after) q = q.where('id', '>', filter.after);
    return (await q.limit(filter.limit ?? 1000).execute()).map(toSource);
  }

  async updateSource(id: string, patch: Partial<{ url: string; ref: string; credentialsSecret: string | null; webhookSecret: string | null; pollIntervalS: number }>): Promise<void> {
    await this.db.updateTable('gitops_sources').set({
      ...(patch.url !== undefined ? { url: patch.url } : {}),
      ...(patch.ref !== undefined ? { ref: patch.ref } : {}),
      ...(patch.credentialsSecret !== undefined ? { credentials_secret: patch.credentialsSecret } : {}),
      ...(patch.webhookSecret !== undefined ? { webhook_secret: patch.webhookSecret } : {}),
      ...(patch.pollIntervalS !== undefined ? { poll_interval_s: patch.pollIntervalS } : {}),
      updated_at: this.clock.now(),
    }).where('id', '=', id).execute();
  }

  async recordFetch(id: string, result: { sha: string } | { error: { code: string; message: string } }): Promise<void> {
    const now = this.clock.now();
    await this.db.updateTable('gitops_sources').set('sha' in result ? { last_sha: result.sha, last_error: null, last_fetched_at: now } : { last_error: JSON.stringify(result.error), last_fetched_at: now })
      .where('id', '=', id).execute();
  }

  async deleteSource(id: string): Promise<void> {
    const used = await this.db.selectFrom('gitops_apps').select('name').where('source_id', '=', id).limit(5).execute();
    if (used.length) throw new ConflictError('gitops.source_in_use', `the source is used by application${used.length > 1 ? 's' : ''} ${used.map((u) => u.name).join(', ')}: delete ${used.length > 1 ? 'them' : 'it'} first`);
    await this.db.deleteFrom('gitops_sources').where('id', '=', id).execute();
  }

  // ---------------------------------------------------------------- applications

  async createApp(input: { project: string; name: string; sourceId: string; path: string; syncPolicy: SyncPolicy; dependsOn: string[] }): Promise<AppRow> {
    const now = this.clock.now();
    const row: GitopsAppTable = {
      id: newId('gapp'), project: input.project, name: input.name, source_id: input.sourceId, path: input.path, sync_policy: JSON.stringify(input.syncPolicy),
      depends_on: JSON.stringify(input.dependsOn), pinned_sha: null, status: JSON.stringify(EMPTY_STATUS), synced_sha: null, last_run_id: null, revision: 1, created_at: now, updated_at: now,
    };
    try {
      await this.db.insertInto('gitops_apps').values(row).execute();
    } catch (e) {
      if (isUnique(e)) throw new ConflictError('gitops.app_exists', `an application named ${input.name} already exists in project ${input.project}`, { details: { field: 'name' } });
      throw e;
    }
    return toApp(row);
  }

  async findApp(idOrName: string, project?: string): Promise<AppRow | undefined> {
    let q = this.db.selectFrom('gitops_apps').selectAll();
    q = idOrName.startsWith('gapp_') ? q.where('id', '=', idOrName) : q.where('name', '=', idOrName).where('project', '=', project ?? 'default');
    const r = await q.executeTakeFirst();
    return r ? toApp(r) : undefined;
  }

  async getApp(idOrName: string, project?: string): Promise<AppRow> {
    const a = await this.findApp(idOrName, project);
    if (!a) throw new NotFoundError('gitops.app_not_found', `application ${idOrName} not found`);
    return a;
  }

  async listApps(filter: { project?: string; projects?: string[]; sourceId?: string; after?: string; limit?: number } = {}): Promise<AppRow[]> {
    let q = this.db.selectFrom('gitops_apps').selectAll().orderBy('id');
    if (filter.project) q = q.where('project', '=', filter.project);
    if (filter.projects) q = filter.projects.length ? q.where('project', 'in', filter.projects) : q.where('id', '=', '');
    if (filter.sourceId) q = q.where('source_id', '=', filter.sourceId);
    if (filter.after) q = q.where('id', '>', filter.after);
    return (await q.limit(filter.limit ?? 1000).execute()).map(toApp);
  }

  async updateApp(id: string, patch: Partial<{ path: string; syncPolicy: SyncPolicy; dependsOn: string[]; pinnedSha: string | null }>, expectedRevision?: number): Promise<AppRow> {
    let q = this.db.updateTable('gitops_apps').set((eb) => ({
      ...(patch.path !== undefined ? { path: patch.path } : {}),
      ...(patch.syncPolicy !== undefined ? { sync_policy: JSON.stringify(patch.syncPolicy) } : {}),
      ...(patch.dependsOn !== undefined ? { depends_on: JSON.stringify(patch.dependsOn) } : {}),
      ...(patch.pinnedSha !== undefined ? { pinned_sha: patch.pinnedSha } : {}),
      revision: eb('revision', '+', 1),
      updated_at: this.clock.now(),
    })).where('id', '=', id);
    if (expectedRevision !== undefined) q = q.where('revision', '=', expectedRevision);
    const r = await q.executeTakeFirst();
    if (Number(r.numUpdatedRows) === 0) {
      const cur = await this.getApp(id);
      throw new ConflictError('gitops.stale_revision', `application ${cur.name} is at revision ${cur.revision}, not ${expectedRevision}; read it again and retry`);
    }
    return this.getApp(id);
  }

  async setStatus(id: string, status: AppStatus, extra: { syncedSha?: string | null; lastRunId?: string | null } = {}): Promise<void> {
    await this.db.updateTable('gitops_apps').set({
      status: JSON.stringify(status),
      ...(extra.syncedSha !== undefined ? { synced_sha: extra.syncedSha } : {}),
      ...(extra.lastRunId !== undefined ? { last_run_id: extra.lastRunId } : {}),
    }).where('id', '=', id).execute();
  }

  async deleteApp(id: string): Promise<void> {
    await this.store.transaction(async (tx) => {
      await tx.deleteFrom('gitops_app_stacks').where('app_id', '=', id).execute();
      await tx.deleteFrom('gitops_syncs').where('app_id', '=', id).execute();
      await tx.deleteFrom('gitops_apps').where('id', '=', id).execute();
    });
  }

  // ---------------------------------------------------------------- what was applied

  async appStacks(appId: string): Promise<AppStackRow[]> {
    const rows = await this.db.selectFrom('gitops_app_stacks').selectAll().where('app_id', '=', appId).orderBy('file').execute();
    return rows.map((r) => ({ appId: r.app_id, file: r.file, stackId: r.stack_id, stackName: r.stack_name, blob: r.blob, stackRevision: Number(r.stack_revision), wave: Number(r.wave), hook: r.hook }));
  }

  async recordApplied(row: AppStackRow): Promise<void> {
    const values = { app_id: row.appId, file: row.file, stack_id: row.stackId, stack_name: row.stackName, blob: row.blob, stack_revision: row.stackRevision, wave: row.wave, hook: row.hook, updated_at: this.clock.now() };
    await this.db.insertInto('gitops_app_stacks').values(values)
      .onConflict((oc) => oc.columns(['app_id', 'file']).doUpdateSet({ stack_id: values.stack_id, stack_name: values.stack_name, blob: values.blob, stack_revision: values.stack_revision, wave: values.wave, hook: values.hook, updated_at: values.updated_at }))
      .execute();
  }

  async forgetApplied(appId: string, file: string): Promise<void> {
    await this.db.deleteFrom('gitops_app_stacks').where('app_id', '=', appId).where('file', '=', file).execute();
  }

  // ---------------------------------------------------------------- sync history

  /**
   * Records a new sync as running and returns its sequence number; null when
   * another sync of the application is running (in this or another process).
   */
  async beginSync(appId: string, sha: string, reason: string, runIdFor: (seq: number) => string): Promise<SyncRow | null> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const last = await this.db.selectFrom('gitops_syncs').selectAll().where('app_id', '=', appId).orderBy('seq', 'desc').limit(1).executeTakeFirst();
      if (last && last.result === 'running') return null;
      const seq = (last ? Number(last.seq) : 0) + 1;
      const row = { app_id: appId, seq, sha, run_id: runIdFor(seq), reason, result: 'running', message: null, started_at: this.clock.now(), finished_at: null };
      try {
        await this.db.insertInto('gitops_syncs').values(row).execute();
        return { appId, seq, sha, runId: row.run_id, reason, result: 'running', message: null, startedAt: row.started_at, finishedAt: null };
      } catch (e) {
        if (!isUnique(e)) throw e; // another process took this seq: look again
      }
    }
    return null;
  }

  async finishSync(appId: string, seq: number, result: 'succeeded' | 'failed', message: string | null): Promise<void> {
    await this.db.updateTable('gitops_syncs').set({ result, message: message?.slice(0, 2000) ?? null, finished_at: this.clock.now() })
      .where('app_id', '=', appId).where('seq', '=', seq).where('result', '=', 'running').execute();
  }

  async syncs(appId: string, limit = 100): Promise<SyncRow[]> {
    const rows = await this.db.selectFrom('gitops_syncs').selectAll().where('app_id', '=', appId).orderBy('seq', 'desc').limit(limit).execute();
    return rows.map((r) => ({ appId: r.app_id, seq: Number(r.seq), sha: r.sha, runId: r.run_id, reason: r.reason, result: r.result as SyncRow['result'], message: r.message, startedAt: Number(r.started_at), finishedAt: r.finished_at === null ? null : Number(r.finished_at) }));
  }
}

import { createHmac, timingSafeEqual } from 'node:crypto';
import { join } from 'node:path';
import { parseDocument } from 'yaml';
import { systemClock, type Clock } from '../core/clock.js';
import { ConflictError, InfraflowError, UnauthorizedError, ValidationError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { SecretBox } from '../core/secrets.js';
import type { EngineApi, RunInfo } from '../engine/types.js';
import type { Stacks, StackInfo } from '../stacks/index.js';
import type { Store } from '../store/store.js';
import { GitError, GitMirror, parseCredentials, safeUrl, type FetchResult } from './git.js';
import {
  HOOK_DELETE_POLICIES, HOOK_PHASES, LABEL_APP, LABEL_HOOK, LABEL_HOOK_DELETE, LABEL_WAVE, RETRY, jittered, retryDelayMs, stackHealth, stackSync, worstHealth,
  type HealthCode, type HookDeletePolicy, type HookPhase, type StackView,
} from './status.js';
import { GitopsStore, type AppRow, type AppStatus, type OperationState, type ResourceStatus, type SourceRow, type SyncPolicy, type SyncRow } from './store.js';
import { SYNC_WORKFLOW, syncWorkflow, type SyncInput } from './sync.js';

/** A document of the application at one commit, checked and ready to apply. */
export interface AppDocument {
  file: string;
  blob: string;
  stack: string;
  wave: number;
  hook: HookPhase | null;
  deletePolicy: HookDeletePolicy;
}

export interface GitopsOptions {
  store: Store;
  engine: EngineApi;
  stacks: Stacks;
  /** Seals webhook secrets at rest. */
  box: SecretBox;
  /** Bare mirrors live under `<workDir>/mirrors`. */
  workDir: string;
  clock?: Clock;
  logger?: Logger;
  /** Reads a secret's value from the secret store (credentials of a source); set later by the composition root. */
  revealSecret?: (id: string) => Promise<string>;
  /** How often the poller looks for sources that are due (real ms; default 1000). */
  tickMs?: number;
  /** Longest a sync waits for a dependency or a wave to become healthy (default 30 min). */
  waitTimeoutMs?: number;
  /** Interval of the health checks while a sync waits (default 1000 ms). */
  waitIntervalMs?: number;
  random?: () => number;
  /** Register the sync workflow on the engine (default true; false for a second instance on the same engine). */
  register?: boolean;
}

const NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * GitOps: Git sources and the applications that keep a path of a source
 * applied as stacks (Argo CD's model, on Infraflow's stacks).
 *
 *   gitops.createSource({ project, name, url, ref, … })
 *   gitops.createApp({ project, name, source, path, syncPolicy, dependsOn })
 *   await gitops.refresh(app)        → status (fetches the source, compares Git with the stacks)
 *   await gitops.sync(app, { sha?, prune?, reason })  → the sync run (durable: waves, hooks, prune)
 *   await gitops.diff(app)           → per out-of-sync document, the plan that a sync would apply
 *   gitops.history(app) / rollback(app, sha)
 *   gitops.start() / stop()          → the poller (automated sync, self-heal, retries with backoff)
 *   await gitops.webhook(source, rawBody, signature) → a push: refresh now
 */
export class Gitops {
  readonly db: GitopsStore;
  private readonly clock: Clock;
  private readonly engine: EngineApi;
  private readonly stacks: Stacks;
  private readonly fetching = new Map<string, Promise<FetchResult>>();
  private readonly nextPoll = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private ticking = false;
  private revealSecret: ((id: string) => Promise<string>) | undefined;
  private readonly random: () => number;
  private readonly trees = new Map<string, { file: string; blob: string }[]>();
  private readonly blobCache = new Map<string, string>();
  private blobBytes = 0;
  private readonly parseCache = new Map<string, { name: string; project: string | undefined; labels: Record<string, string> }>();

  constructor(private readonly opts: GitopsOptions) {
    this.clock = opts.clock ?? systemClock;
    this.engine = opts.engine;
    this.stacks = opts.stacks;
    this.db = new GitopsStore(opts.store, this.clock);
    this.revealSecret = opts.revealSecret;
    this.random = opts.random ?? Math.random;
    if (opts.register !== false) this.engine.register(syncWorkflow(this, { waitTimeoutMs: opts.waitTimeoutMs ?? 30 * 60_000, waitIntervalMs: opts.waitIntervalMs ?? 1000 }));
  }

  /** The secret store reader (the IAM module is built after the areas). */
  useSecrets(reveal: (id: string) => Promise<string>): void {
    this.revealSecret = reveal;
  }

  // ================================================================ sources

  async createSource(input: { project: string; name: string; url: string; ref?: string; credentialsSecret?: string | null; webhookSecret?: string | null; pollIntervalS?: number }): Promise<SourceRow> {
    checkName(input.name, 'name');
    checkUrl(input.url);
    return this.db.createSource({
      project: input.project, name: input.name, url: input.url, ref: input.ref ?? 'main', credentialsSecret: input.credentialsSecret ?? null,
      webhookSecret: input.webhookSecret ? this.opts.box.seal(input.webhookSecret) : null, pollIntervalS: input.pollIntervalS ?? 180,
    });
  }

  async updateSource(idOrName: string, patch: { url?: string; ref?: string; credentialsSecret?: string | null; webhookSecret?: string | null; pollIntervalS?: number }, project?: string): Promise<SourceRow> {
    const s = await this.db.getSource(idOrName, project);
    if (patch.url !== undefined) checkUrl(patch.url);
    await this.db.updateSource(s.id, {
      ...(patch.url !== undefined ? { url: patch.url } : {}),
      ...(patch.ref !== undefined ? { ref: patch.ref } : {}),
      ...(patch.credentialsSecret !== undefined ? { credentialsSecret: patch.credentialsSecret } : {}),
      ...(patch.webhookSecret !== undefined ? { webhookSecret: patch.webhookSecret ? this.opts.box.seal(patch.webhookSecret) : null } : {}),
      ...(patch.pollIntervalS !== undefined ? { pollIntervalS: patch.pollIntervalS } : {}),
    });
    this.nextPoll.delete(s.id);
    return this.db.getSource(s.id);
  }

  private async mirror(s: SourceRow): Promise<GitMirror> {
    let creds;
    if (s.credentialsSecret) {
      if (!this.revealSecret) throw new InfraflowError('gitops.no_secret_store', 'this process cannot read the secret store to get the source\'s credentials', 500);
      creds = parseCredentials(await this.revealSecret(s.credentialsSecret));
    }
    return new GitMirror(join(this.opts.workDir, 'mirrors', `${s.id}.git`), s.url, creds);
  }

  /** Fetches the source and resolves its ref (or `ref`); one fetch per source at a time in this process. */
  async fetch(s: SourceRow, ref?: string): Promise<FetchResult> {
    const key = `${s.id}@${ref ?? s.ref}`;
    const inflight = this.fetching.get(key);
    if (inflight) return inflight;
    const p = (async () => {
      try {
        const r = await (await this.mirror(s)).fetch(ref ?? s.ref);
        if (!ref) await this.db.recordFetch(s.id, { sha: r.sha });
        return r;
      } catch (e) {
        const err = e instanceof InfraflowError ? e : new GitError('gitops.unreachable', (e as Error).message);
        if (!ref) await this.db.recordFetch(s.id, { error: { code: err.code, message: err.message } });
        throw err;
      }
    })();
    this.fetching.set(key, p);
    try {
      return await p;
    } finally {
      this.fetching.delete(key);
    }
  }

  /** A commit's files: fetched first when this process's mirror does not have it. */
  private async readCommit(s: SourceRow, sha: string, path: string): Promise<{ files: { file: string; blob: string }[]; texts: Map<string, string> }> {
    // a commit never changes: its listing and its blobs are read from Git once
    const key = `${s.id}@${sha}:${path}`;
    let files = this.trees.get(key);
    const m = await this.mirror(s);
    if (!files) {
      try {
        files = await m.list(sha, path);
      } catch {
        await this.fetch(s);
        files = await m.list(sha, path);
      }
      this.trees.set(key, files);
      if (this.trees.size > 1000) this.trees.delete(this.trees.keys().next().value!);
    }
    const texts = new Map<string, string>();
    const missing: string[] = [];
    for (const f of files) {
      const t = this.blobCache.get(f.blob);
      if (t === undefined) missing.push(f.blob);
      else texts.set(f.blob, t);
    }
    if (missing.length) {
      for (const [id, t] of await m.blobs(missing)) {
        texts.set(id, t);
        this.blobCache.set(id, t);
        this.blobBytes += t.length;
      }
      for (const [id, t] of this.blobCache) {
        if (this.blobBytes <= 64 * 1024 * 1024) break;
        this.blobCache.delete(id);
        this.blobBytes -= t.length;
      }
    }
    return { files, texts };
  }

  // ================================================================ applications

  async createApp(input: { project: string; name: string; source: string; path?: string; syncPolicy?: Partial<SyncPolicy>; dependsOn?: string[] }): Promise<AppRow> {
    checkName(input.name, 'name');
    const source = await this.db.findSource(input.source, input.project);
    if (!source || source.project !== input.project) throw new ValidationError('gitops.source_not_found', `source: no Git source ${input.source} in project ${input.project}; add it first (infraflow gitops source add)`, { details: { field: 'source' } });
    const path = normalizePath(input.path ?? '');
    const dependsOn = [...new Set(input.dependsOn ?? [])];
    for (const d of dependsOn) checkName(d, 'dependsOn');
    if (dependsOn.includes(input.name)) throw new ValidationError('gitops.invalid_dependency', 'dependsOn: an application cannot depend on itself', { details: { field: 'dependsOn' } });
    return this.db.createApp({ project: input.project, name: input.name, sourceId: source.id, path, syncPolicy: { automated: false, prune: false, selfHeal: false, ...input.syncPolicy }, dependsOn });
  }

  async updateApp(idOrName: string, patch: { path?: string; syncPolicy?: Partial<SyncPolicy>; dependsOn?: string[] }, opts: { project?: string; expectedRevision?: number } = {}): Promise<AppRow> {
    const app = await this.db.getApp(idOrName, opts.project);
    if (patch.dependsOn?.includes(app.name)) throw new ValidationError('gitops.invalid_dependency', 'dependsOn: an application cannot depend on itself', { details: { field: 'dependsOn' } });
    return this.db.updateApp(app.id, {
      ...(patch.path !== undefined ? { path: normalizePath(patch.path) } : {}),
      ...(patch.syncPolicy ? { syncPolicy: { ...app.syncPolicy, ...patch.syncPolicy } } : {}),
      ...(patch.dependsOn ? { dependsOn: [...new Set(patch.dependsOn)] } : {}),
    }, opts.expectedRevision);
  }

  /**
   * Deletes an application. With `cascade`, its stacks are destroyed first
   * (returns the destroy runs); without, they stay and lose their owner.
   */
  async deleteApp(idOrName: string, opts: { project?: string; cascade?: boolean } = {}): Promise<{ destroyRuns: string[] }> {
    const app = await this.db.getApp(idOrName, opts.project);
    const running = (await this.db.syncs(app.id, 1))[0];
    if (running?.result === 'running') throw new ConflictError('gitops.sync_in_progress', `application ${app.name} is syncing (run ${running.runId}); wait for it or cancel the run first`);
    const runs: string[] = [];
    if (opts.cascade) {
      for (const r of (await this.db.appStacks(app.id)).sort((a, b) => b.wave - a.wave)) {
        const s = r.stackId ? await this.stacks.stacks.find(r.stackId) : undefined;
        if (s && s.status !== 'destroyed') runs.push((await this.stacks.destroy(s.id)).run.id);
      }
    }
    await this.db.deleteApp(app.id);
    return { destroyRuns: runs };
  }

  /** The commit the application should be at: a rollback's pin, else the source's ref now. */
  async target(app: AppRow, opts: { fetch?: boolean } = {}): Promise<{ sha: string; source: SourceRow }> {
    const source = await this.db.getSource(app.sourceId);
    if (app.pinnedSha) return { sha: app.pinnedSha, source };
    if (opts.fetch !== false || !source.lastSha) return { sha: (await this.fetch(source)).sha, source };
    return { sha: source.lastSha, source };
  }

  /**
   * Reads and checks every document of the application at `sha`: each one
   * parses and validates as a stack (errors name file:line), belongs to the
   * application's project, names a stack no other file names, and is not a
   * stack another application (or a person) owns. Nothing is applied when
   * one fails.
   */
  async documents(app: AppRow, sha: string): Promise<{ docs: AppDocument[]; texts: Map<string, string> }> {
    const source = await this.db.getSource(app.sourceId);
    const { files, texts } = await this.readCommit(source, sha, app.path);
    const docs: AppDocument[] = [];
    const byStack = new Map<string, string>();
    for (const f of files) {
      const where = `${f.file}@${sha.slice(0, 12)}`;
      const model = this.parsed(f.file, f.blob, texts.get(f.blob)!, where, sha);
      if (model.project !== undefined && model.project !== app.project) {
        throw new ValidationError('gitops.wrong_project', `${where}: the document is for project ${model.project}, but application ${app.name} deploys to project ${app.project}`, { details: { file: f.file } });
      }
      const other = byStack.get(model.name);
      if (other) throw new ValidationError('gitops.duplicate_stack', `${where}: stack ${model.name} is also defined by ${other}; each stack must come from one file`, { details: { file: f.file } });
      byStack.set(model.name, f.file);
      const labels = model.labels;
      const waveText = labels[LABEL_WAVE];
      const wave = waveText === undefined ? 0 : Number(waveText);
      if (!Number.isInteger(wave)) throw new ValidationError('gitops.invalid_wave', `${where}: label ${LABEL_WAVE} must be an integer, not "${waveText}"`, { details: { file: f.file } });
      const hook = labels[LABEL_HOOK];
      if (hook !== undefined && !HOOK_PHASES.includes(hook as HookPhase)) throw new ValidationError('gitops.invalid_hook', `${where}: label ${LABEL_HOOK} must be one of ${HOOK_PHASES.join(', ')}`, { details: { file: f.file } });
      const del = labels[LABEL_HOOK_DELETE] ?? 'BeforeHookCreation';
      if (!HOOK_DELETE_POLICIES.includes(del as HookDeletePolicy)) throw new ValidationError('gitops.invalid_hook', `${where}: label ${LABEL_HOOK_DELETE} must be one of ${HOOK_DELETE_POLICIES.join(', ')}`, { details: { file: f.file } });
      docs.push({ file: f.file, blob: f.blob, stack: model.name, wave, hook: (hook as HookPhase | undefined) ?? null, deletePolicy: del as HookDeletePolicy });
    }
    // a stack that exists and is not this application's is never taken over
    for (const d of docs) {
      const s = await this.stacks.stacks.find(d.stack, app.project);
      const owner = s?.labels[LABEL_APP];
      if (s && s.status !== 'destroyed' && owner !== app.name) {
        throw new ConflictError('gitops.not_owned', `${d.file}: stack ${d.stack} already exists in project ${app.project} and is ${owner ? `managed by application ${owner}` : 'not managed by GitOps'}; rename it or delete that stack`, { details: { file: d.file } });
      }
    }
    return { docs, texts };
  }

  /**
   * A document parsed and checked as a stack, by file and blob: a blob is
   * content-addressed, so its result never changes (a sync that changes
   * nothing parses nothing). Errors name file@commit and line.
   */
  private parsed(file: string, blob: string, text: string, where: string, sha: string): { name: string; project: string | undefined; labels: Record<string, string> } {
    const key = `${file}\0${blob}`;
    const hit = this.parseCache.get(key);
    if (hit) return hit;
    let model;
    try {
      ({ model } = this.stacks.parse(text, { file }));
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      throw new ValidationError('gitops.invalid_document', `${where}: ${msg.startsWith(file) ? msg.slice(file.length).replace(/^:?\s*/, '') : msg}`, { details: { file, sha, ...(e instanceof InfraflowError && e.details ? { cause: e.details } : {}) } });
    }
    const out = { name: model.name, project: (model.document.metadata as { project?: string }).project, labels: (model.document.metadata.labels ?? {}) as Record<string, string> };
    this.parseCache.set(key, out);
    if (this.parseCache.size > 20_000) this.parseCache.delete(this.parseCache.keys().next().value!);
    return out;
  }

  /** The document as applied: the application's label added, the project filled in. */
  private applied(app: AppRow, text: string): string {
    const d = parseDocument(text);
    d.setIn(['metadata', 'labels', LABEL_APP], app.name);
    if (d.getIn(['metadata', 'project']) === undefined) d.setIn(['metadata', 'project'], app.project);
    return String(d);
  }

  // ================================================================ status

  private async view(stackId: string | null | undefined, name: string, project: string): Promise<(StackView & { info: StackInfo }) | undefined> {
    let info: StackInfo | undefined;
    try {
      info = await this.stacks.get(stackId ?? name, { project });
    } catch {
      return undefined;
    }
    const recs = info.resourceCount ? await this.stacks.stacks.recorded(info.id) : [];
    // drift per recorded resource: a reconcile clears it there (the stack's own flag waits for the next observe)
    const drift = recs.some((r) => r.drift && r.drift.length > 0) ? 'drifted' : 'in_sync';
    return {
      info, id: info.id, revision: info.revision, appliedRevision: info.appliedRevision, status: info.status, drift,
      run: info.run ? { status: info.run.status, progress: info.run.progress ?? null } : undefined,
      resourceStatuses: recs.map((r) => r.status),
    };
  }

  /**
   * Compares Git at the target commit with the stacks and stores the status.
   * `observe` also looks for drift of every stack (self-heal does).
   */
  async refresh(idOrName: string, opts: { project?: string; fetch?: boolean; observe?: boolean } = {}): Promise<AppRow> {
    const app = await this.db.getApp(idOrName, opts.project);
    const now = this.clock.now();
    const records = await this.db.appStacks(app.id);
    const conditions: AppStatus['conditions'] = [];
    let targetSha: string | null = null;
    let docs: AppDocument[] | undefined;
    try {
      targetSha = (await this.target(app, { fetch: opts.fetch ?? true })).sha;
      docs = (await this.documents(app, targetSha)).docs;
    } catch (e) {
      const err = e instanceof InfraflowError ? e : new InfraflowError('gitops.refresh_failed', String(e), 500);
      conditions.push({ type: err.code === 'gitops.unreachable' || err.code === 'gitops.bad_ref' ? 'ComparisonError' : 'InvalidSpecError', message: err.message, at: now });
    }
    const resources: ResourceStatus[] = [];
    const files = new Set<string>();
    for (const d of docs ?? []) {
      files.add(d.file);
      const rec = records.find((r) => r.file === d.file);
      if (opts.observe && rec?.stackId) await this.stacks.observe(rec.stackId).catch(() => undefined);
      const v = await this.view(rec?.stackId, d.stack, app.project);
      const s = stackSync(d.blob, rec, v);
      const h = stackHealth(v);
      resources.push({ file: d.file, stack: d.stack, stackId: v?.id ?? null, wave: d.wave, hook: d.hook, sync: d.hook ? 'Synced' : s.sync, health: h.health, reason: d.hook ? undefined : s.reason, message: h.message });
    }
    for (const rec of records) {
      if (files.has(rec.file) || !docs) continue;
      const v = await this.view(rec.stackId, rec.stackName, app.project);
      if (!v || v.status === 'destroyed') continue;
      const h = stackHealth(v);
      resources.push({ file: rec.file, stack: rec.stackName, stackId: v.id, wave: rec.wave, hook: rec.hook, sync: rec.hook ? 'Synced' : 'OutOfSync', health: h.health, reason: rec.hook ? undefined : 'deleted in Git: prune removes it', message: h.message });
    }
    const counted = resources.filter((r) => !r.hook);
    const sync = docs === undefined ? 'Unknown' : counted.every((r) => r.sync === 'Synced') ? 'Synced' : 'OutOfSync';
    const health: HealthCode = docs === undefined && counted.length === 0 ? 'Unknown' : worstHealth(counted.map((r) => r.health));
    const last = (await this.db.syncs(app.id, 1))[0];
    const status: AppStatus = { sync, health, targetSha, syncedSha: app.syncedSha, resources, conditions, operation: await this.operation(last), reconciledAt: now };
    const before = app.status;
    await this.db.setStatus(app.id, status);
    if (before.sync !== status.sync || before.health !== status.health) {
      await this.engine.publish('gitops.app.status', app.id, { app: app.name, project: app.project, sync, health, targetSha, previous: { sync: before.sync, health: before.health } });
    }
    return { ...app, status };
  }

  private async operation(last: SyncRow | undefined): Promise<OperationState | null> {
    if (!last) return null;
    const op: OperationState = { phase: last.result === 'running' ? 'Running' : last.result === 'succeeded' ? 'Succeeded' : 'Failed', runId: last.runId, sha: last.sha, reason: last.reason, startedAt: last.startedAt, finishedAt: last.finishedAt, message: last.message };
    if (last.result === 'running') {
      const run = await this.engine.get(last.runId).catch(() => undefined);
      if (run?.progress) {
        op.waitingFor = run.progress.waitingFor ?? null;
        op.since = run.progress.since ?? null;
        op.message = run.progress.message ?? op.message ?? null;
      }
    }
    return op;
  }

  /** The health of an application now (what a dependent application waits for). */
  async healthOf(project: string, name: string): Promise<{ health: HealthCode; sync: string; message: string }> {
    const app = await this.db.findApp(name, project);
    if (!app) return { health: 'Missing', sync: 'Unknown', message: `application ${name} does not exist in project ${project}` };
    const r = await this.refresh(app.id, { fetch: false });
    return { health: r.status.health, sync: r.status.sync, message: `application ${name} is ${r.status.health}, ${r.status.sync}` };
  }

  // ================================================================ sync

  /**
   * Starts a sync of the application to `sha` (default its target commit).
   * Refused while another sync of the application runs.
   */
  async sync(idOrName: string, opts: { project?: string; sha?: string; prune?: boolean; reason?: string; actor?: string } = {}): Promise<{ run: RunInfo; sync: SyncRow }> {
    const app = await this.db.getApp(idOrName, opts.project);
    let sha = opts.sha;
    if (sha && !/^[0-9a-f]{40}$/.test(sha)) {
      const source = await this.db.getSource(app.sourceId);
      sha = (await this.fetch(source, sha)).sha;
    }
    sha ??= (await this.target(app)).sha;
    // check every document before anything starts: a broken commit is refused here, with file:line
    await this.documents(app, sha);
    const row = await this.db.beginSync(app.id, sha, opts.reason ?? 'manual', (seq) => `gsync_${app.id.slice(5)}_${seq}`);
    if (!row) {
      const cur = (await this.db.syncs(app.id, 1))[0];
      throw new ConflictError('gitops.sync_in_progress', `application ${app.name} is already syncing (run ${cur?.runId}); wait for it or cancel that run`);
    }
    const input: SyncInput = { appId: app.id, sha, seq: row.seq, prune: opts.prune ?? app.syncPolicy.prune, reason: row.reason };
    const run = await this.engine.start(SYNC_WORKFLOW, input, { id: row.runId, labels: { gitopsApp: app.id, project: app.project, sha: sha.slice(0, 12) } });
    await this.db.setStatus(app.id, { ...app.status, operation: { phase: 'Running', runId: run.id, sha, reason: row.reason, startedAt: row.startedAt } }, { lastRunId: run.id });
    await this.engine.publish('gitops.sync.started', app.id, { app: app.name, project: app.project, sha, runId: run.id, reason: row.reason, ...(opts.actor ? { actor: opts.actor } : {}) });
    return { run, sync: row };
  }

  /** Rollback: pins the application to an earlier commit of its history and syncs it (automated sync pauses while pinned). */
  async rollback(idOrName: string, target: { sha?: string; seq?: number }, opts: { project?: string; actor?: string } = {}): Promise<{ run: RunInfo; sync: SyncRow }> {
    const app = await this.db.getApp(idOrName, opts.project);
    const history = await this.db.syncs(app.id, 1000);
    const entry = target.seq !== undefined ? history.find((h) => h.seq === target.seq) : history.find((h) => h.sha === target.sha || (target.sha && target.sha.length >= 7 && h.sha.startsWith(target.sha)));
    if (!entry) throw new ValidationError('gitops.unknown_revision', `application ${app.name} never synced ${target.seq !== undefined ? `history entry ${target.seq}` : `commit ${target.sha}`}; see its history`, { details: { field: target.seq !== undefined ? 'seq' : 'sha' } });
    if (entry.result !== 'succeeded') throw new ValidationError('gitops.unknown_revision', `history entry ${entry.seq} (${entry.sha.slice(0, 12)}) did not succeed; roll back to one that did`, { details: { field: 'seq' } });
    await this.db.updateApp(app.id, { pinnedSha: entry.sha });
    return this.sync(app.id, { sha: entry.sha, reason: `rollback to ${entry.sha.slice(0, 12)} (#${entry.seq})`, ...(opts.actor ? { actor: opts.actor } : {}) });
  }

  /** Removes a rollback's pin: the application follows its source's ref again. */
  async unpin(idOrName: string, opts: { project?: string } = {}): Promise<AppRow> {
    const app = await this.db.getApp(idOrName, opts.project);
    return this.db.updateApp(app.id, { pinnedSha: null });
  }

  /** For each document out of sync, what a sync would change (the stack plan, as text and JSON). */
  async diff(idOrName: string, opts: { project?: string } = {}): Promise<{ targetSha: string; items: { file: string; stack: string; sync: string; reason?: string | undefined; plan?: unknown; text?: string }[] }> {
    const app = await this.refresh(idOrName, { ...(opts.project ? { project: opts.project } : {}) });
    if (!app.status.targetSha) throw new InfraflowError('gitops.unreachable', app.status.conditions[0]?.message ?? 'the target commit cannot be read', 502);
    const { docs, texts } = await this.documents(app, app.status.targetSha);
    const items = [];
    for (const r of app.status.resources) {
      if (r.sync === 'Synced') continue;
      const d = docs.find((x) => x.file === r.file);
      if (!d) {
        items.push({ file: r.file, stack: r.stack, sync: r.sync, reason: r.reason, text: `stack ${r.stack}: deleted in Git; a sync with prune destroys it` });
        continue;
      }
      const plan = await this.stacks.plan({ document: this.applied(app, texts.get(d.blob)!), file: d.file });
      items.push({ file: r.file, stack: r.stack, sync: r.sync, reason: r.reason, plan: this.stacks.planToJson(plan), text: this.stacks.renderPlan(plan) });
    }
    return { targetSha: app.status.targetSha, items };
  }

  async history(idOrName: string, opts: { project?: string; limit?: number } = {}): Promise<SyncRow[]> {
    const app = await this.db.getApp(idOrName, opts.project);
    return this.db.syncs(app.id, opts.limit ?? 100);
  }

  // ---------------------------------------------------------------- steps of the sync run (called from sync.ts)

  /** Applies the documents of one wave that are not in sync; returns the runs to wait for. */
  async applyDocuments(appId: string, sha: string, docs: AppDocument[], opts: { hooks?: boolean } = {}): Promise<{ file: string; stackId: string; runId: string | null }[]> {
    const app = await this.db.getApp(appId);
    const source = await this.db.getSource(app.sourceId);
    const records = await this.db.appStacks(app.id);
    const text = async (blob: string) => (await this.readCommit(source, sha, app.path)).texts.get(blob)!;
    const out: { file: string; stackId: string; runId: string | null }[] = [];
    for (const d of docs) {
      const rec = records.find((r) => r.file === d.file);
      const v = await this.view(rec?.stackId, d.stack, app.project);
      if (!opts.hooks && rec && v && rec.blob === d.blob && v.revision === rec.stackRevision) {
        // this blob was applied already (by this run before a crash, or by an earlier sync)
        // its apply run is under way (or not begun: a stack at 'new' has its run queued)
        if ((v.status === 'applying' || v.status === 'new') && v.info.lastRunId) {
          out.push({ file: d.file, stackId: v.id, runId: v.info.lastRunId });
          continue;
        }
        if (v.appliedRevision === v.revision && v.drift !== 'drifted' && v.status === 'applied') {
          out.push({ file: d.file, stackId: v.id, runId: null });
          continue;
        }
        if (v.appliedRevision === v.revision && v.drift === 'drifted') {
          const run = await this.stacks.reconcile(v.id);
          out.push({ file: d.file, stackId: v.id, runId: run.id });
          continue;
        }
      }
      if (opts.hooks && rec && v && rec.blob === d.blob && v.revision === rec.stackRevision && v.status === 'applying' && v.info.lastRunId) {
        out.push({ file: d.file, stackId: v.id, runId: v.info.lastRunId });
        continue;
      }
      const document = this.applied(app, await text(d.blob));
      // the revision names the application and the Git blob it came from
      const createdBy = `gitops:${app.name}:${d.blob.slice(0, 12)}`;
      // A crash between the stack's apply and our record of it, or a second execution of this step
      // while the first still runs (a worker that lost its lease): the stack's latest revision is this
      // very document, written by this application — adopt it instead of applying it a second time.
      // The apply names the revision it saw, so of two concurrent ones exactly one lands.
      const adopt = async (): Promise<boolean> => {
        const now = await this.view(undefined, d.stack, app.project);
        // only a revision that is live (queued, applying or applied): a destroyed or failed stack is applied again
        if (!now || !['new', 'applying', 'applied'].includes(now.status)) return false;
        const latest = await this.stacks.document(now.id).catch(() => undefined);
        if (!latest || latest.createdBy !== createdBy) return false;
        await this.db.recordApplied({ appId: app.id, file: d.file, stackId: now.id, stackName: d.stack, blob: d.blob, stackRevision: now.revision, wave: d.wave, hook: d.hook });
        out.push({ file: d.file, stackId: now.id, runId: now.appliedRevision === now.revision ? null : now.info.lastRunId });
        return true;
      };
      if (v && (!rec || rec.blob !== d.blob || rec.stackRevision !== v.revision) && !opts.hooks && (await adopt())) continue;
      let r;
      try {
        r = await this.stacks.apply({ document, file: d.file, createdBy, expectedRevision: v?.revision ?? 0 });
      } catch (e) {
        if ((e as InfraflowError).code === 'stacks.stale_revision' && (await adopt())) continue;
        throw e;
      }
      await this.db.recordApplied({ appId: app.id, file: d.file, stackId: r.stack.id, stackName: d.stack, blob: d.blob, stackRevision: r.revision, wave: d.wave, hook: d.hook });
      out.push({ file: d.file, stackId: r.stack.id, runId: r.run.id });
    }
    return out;
  }

  /** Destroys a hook's stack from an earlier sync before it runs again (BeforeHookCreation). */
  async destroyStack(stackId: string): Promise<string | null> {
    const s = await this.stacks.stacks.find(stackId);
    if (!s || s.status === 'destroyed') return null;
    if ((await this.stacks.stacks.countRecorded(s.id)) === 0) return null;
    return (await this.stacks.destroy(s.id)).run.id;
  }

  /** Where the runs of a wave stand: done when all ended; failures named. */
  async runsState(runs: { file: string; stackId: string; runId: string | null }[]): Promise<{ done: boolean; failed: string[]; waiting: string }> {
    const failed: string[] = [];
    const waiting: string[] = [];
    for (const r of runs) {
      const v = await this.view(r.stackId, '', '');
      if (r.runId) {
        const run = await this.engine.get(r.runId);
        if (run.status === 'failed' || run.status === 'cancelled') {
          failed.push(`${r.file}: stack ${v?.info.name ?? r.stackId} ${run.status}${run.error ? `: ${run.error.message}` : ''}`);
          continue;
        }
        if (run.status !== 'succeeded') {
          waiting.push(`${r.file} (${run.progress?.message ?? run.progress?.stage ?? run.status})`);
          continue;
        }
      }
      const h = stackHealth(v);
      if (h.health === 'Degraded') failed.push(`${r.file}: ${h.message ?? 'Degraded'}`);
      else if (h.health !== 'Healthy' && !(v?.status === 'destroyed')) waiting.push(`${r.file} (${h.health}${h.message ? `: ${h.message}` : ''})`);
    }
    return { done: waiting.length === 0 || failed.length > 0, failed, waiting: waiting.join(', ') };
  }

  /** Stacks this application applied whose file is gone from Git (and are not destroyed). */
  async pruneCandidates(appId: string, docs: AppDocument[]): Promise<{ file: string; stackId: string; wave: number }[]> {
    const files = new Set(docs.map((d) => d.file));
    const out = [];
    for (const r of await this.db.appStacks(appId)) {
      if (files.has(r.file) || !r.stackId) continue;
      const s = await this.stacks.stacks.find(r.stackId);
      if (s && s.status !== 'destroyed') out.push({ file: r.file, stackId: s.id, wave: r.wave });
    }
    return out.sort((a, b) => b.wave - a.wave || (a.file < b.file ? 1 : -1));
  }

  async forgetPruned(appId: string, files: string[]): Promise<void> {
    for (const f of files) await this.db.forgetApplied(appId, f);
  }

  async finishSync(appId: string, seq: number, sha: string, result: 'succeeded' | 'failed', message: string | null): Promise<void> {
    await this.db.finishSync(appId, seq, result, message);
    const app = await this.db.getApp(appId);
    if (result === 'succeeded') await this.db.setStatus(app.id, app.status, { syncedSha: sha });
    await this.engine.publish(`gitops.sync.${result}`, app.id, { app: app.name, project: app.project, sha, seq, ...(message ? { message } : {}) });
    await this.refresh(app.id, { fetch: false }).catch(() => undefined);
  }

  // ================================================================ automation

  /**
   * One pass of the controller over an application: refresh, then start a
   * sync when automated and the target commit is not synced (once per
   * commit; a failed sync is retried with backoff up to RETRY.limit
   * attempts), or when self-heal is on and the application drifted.
   */
  async reconcileApp(app: AppRow, opts: { fetch?: boolean } = {}): Promise<'synced' | 'started' | 'waiting' | 'idle'> {
    const fresh = await this.refresh(app.id, { fetch: opts.fetch ?? false, observe: app.syncPolicy.selfHeal });
    if (!fresh.syncPolicy.automated || !fresh.status.targetSha) return 'idle';
    const target = fresh.status.targetSha;
    const history = await this.db.syncs(app.id, 20);
    if (history[0]?.result === 'running') return 'waiting';
    const forTarget = history.filter((h) => h.sha === target);
    const healing = fresh.syncedSha === target;
    if (healing && (!fresh.syncPolicy.selfHeal || fresh.status.sync === 'Synced')) return 'synced';
    const failures = [];
    for (const h of forTarget) {
      if (h.result !== 'failed') break;
      failures.push(h);
    }
    if (failures.length >= RETRY.limit) return 'idle';
    if (failures.length && this.clock.now() < (failures[0]!.finishedAt ?? 0) + retryDelayMs(failures.length)) return 'waiting';
    try {
      await this.sync(app.id, { sha: target, reason: healing ? 'self-heal' : failures.length ? `retry ${failures.length + 1}/${RETRY.limit}` : 'automated: new commit' });
      return 'started';
    } catch (e) {
      if ((e as InfraflowError).code === 'gitops.sync_in_progress') return 'waiting';
      this.opts.logger?.warn({ app: app.name, err: (e as Error).message }, 'gitops: automated sync not started');
      return 'idle';
    }
  }

  /** Refreshes a source now (a push arrived) and reconciles its applications. */
  async refreshSource(idOrName: string, project?: string): Promise<{ sha: string | null; apps: string[] }> {
    const s = await this.db.getSource(idOrName, project);
    let sha: string | null = null;
    try {
      sha = (await this.fetch(s)).sha;
    } catch (e) {
      this.opts.logger?.warn({ source: s.name, url: safeUrl(s.url), err: (e as Error).message }, 'gitops: fetch failed');
    }
    this.nextPoll.set(s.id, this.clock.now() + jittered(s.pollIntervalS * 1000, this.random));
    const apps = await this.db.listApps({ sourceId: s.id });
    for (const a of apps) await this.reconcileApp(a).catch((e: unknown) => this.opts.logger?.warn({ app: a.name, err: (e as Error).message }, 'gitops: reconcile failed'));
    return { sha, apps: apps.map((a) => a.name) };
  }

  /**
   * A push webhook: the body's HMAC-SHA256 with the source's webhook secret
   * must match `X-Hub-Signature-256: sha256=<hex>` (GitHub, Gitea, GitLab's
   * compatible mode). A source without a webhook secret accepts none.
   */
  async verifyWebhook(sourceId: string, rawBody: string | Buffer, signature: string | undefined): Promise<SourceRow> {
    const s = await this.db.findSource(sourceId);
    const sealed = s ? await this.db.webhookSecret(s.id) : null;
    const fail = () => new UnauthorizedError('webhook signature missing or wrong: sign the body with the source\'s webhook secret (X-Hub-Signature-256: sha256=<hmac>)');
    if (!s || !sealed || !signature || !signature.startsWith('sha256=')) throw fail();
    const want = createHmac('sha256', this.opts.box.open(sealed)).update(rawBody).digest();
    const got = Buffer.from(signature.slice(7), 'hex');
    if (got.length !== want.length || !timingSafeEqual(got, want)) throw fail();
    return s;
  }

  /** Starts the poller: every source is fetched at its interval (with jitter), its applications reconciled. */
  start(): void {
    if (this.timer) return;
    const tick = async () => {
      if (this.ticking) return;
      this.ticking = true;
      try {
        const now = this.clock.now();
        for (const s of await this.db.listSources()) {
          const due = this.nextPoll.get(s.id) ?? (s.lastFetchedAt ?? 0) + jittered(s.pollIntervalS * 1000, this.random);
          if (now >= due) await this.refreshSource(s.id);
          else {
            // automated retries and self-heal between fetches
            for (const a of await this.db.listApps({ sourceId: s.id })) {
              if (!a.syncPolicy.automated) continue;
              const last = (await this.db.syncs(a.id, 1))[0];
              if (last && last.result === 'failed') await this.reconcileApp(a).catch(() => undefined);
            }
          }
        }
      } catch (e) {
        this.opts.logger?.warn({ err: (e as Error).message }, 'gitops: poll failed');
      } finally {
        this.ticking = false;
      }
    };
    this.timer = setInterval(() => void tick(), this.opts.tickMs ?? 1000);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}

function checkName(name: string, field: string): void {
  if (!NAME.test(name)) throw new ValidationError('gitops.invalid_name', `${field}: use 1–63 lowercase letters, digits and '-', starting and ending with a letter or digit`, { details: { field } });
}

function checkUrl(url: string): void {
  const ok = /^(https?|ssh|git|file):\/\/\S+$/.test(url) || /^[\w.-]+@[\w.-]+:\S+$/.test(url);
  if (!ok || url.length > 2000) throw new ValidationError('gitops.invalid_url', 'url: give a Git URL (https://, ssh://, git://, file:// or user@host:path)', { details: { field: 'url' } });
  if (/^https?:\/\/[^/]*:[^/]*@/.test(url)) throw new ValidationError('gitops.credentials_in_url', 'url: do not put a password in the URL; store it as a secret and name it in credentialsSecret', { details: { field: 'url' } });
}

function normalizePath(p: string): string {
  const clean = p.replace(/^\/+|\/+$/g, '');
  if (clean.split('/').some((seg) => seg === '..')) throw new ValidationError('gitops.invalid_path', 'path: a path inside the repository, without ".."', { details: { field: 'path' } });
  return clean;
}

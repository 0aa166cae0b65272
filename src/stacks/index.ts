import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { systemClock, type Clock } from '../core/clock.js';
import { ConflictError, ValidationError, type InfraflowError } from '../core/errors.js';
import { issueMessage } from '../core/input.js';
import { maskValues, SENSITIVE, type SecretBox } from '../core/secrets.js';
import { containsUnknown } from './expr.js';
import type { Logger } from '../core/log.js';
import type { EngineApi, EngineEvent, RetryPolicy, RunInfo } from '../engine/types.js';
import { KINDS, KIND_NAMES, parseSpec } from '../resources/kinds.js';
import type { ProviderRegistry } from '../resources/registry.js';
import type { ResourceStore } from '../resources/store.js';
import type { Store } from '../store/store.js';
import { APPLY_WORKFLOW, DRIFT_WORKFLOW, observeStack, stackWorkflows, type ApplyInput, type DriftReport } from './apply.js';
import { compileStack, type KindCatalog, type StackModel } from './model.js';
import { parseStack, type ParsedStack } from './parse.js';
import { cbdCollisions, diffStack, planToJson, renderPlan, type Feasibility, type Plan, type RecordedResource } from './plan.js';
import { approvalSignal, type ApprovalPayload } from './steps.js';
import { StackStore, type StackRow, type StackStatus } from './store.js';
import type { FailurePolicy } from './schema.js';

/**
 * Stacks: declarative documents of resources, parameters, phases and
 * attached workflows, planned against their recorded state and applied or
 * destroyed by durable runs.
 *
 *   const stacks = new Stacks({ store, engine, resources, registry, clock })   // registers its workflows on the engine
 *   stacks.parse(text, { file })                          → ParsedStack (schema errors name file:line:column)
 *   await stacks.plan({ document, file?, params? })        → Plan (JSON) — renderPlan(plan) for text
 *   await stacks.apply({ document, file?, params?, expectedRevision? }) → { stack, revision, run, plan }
 *   await stacks.destroy(stack)                            → { stack, run, plan }
 *   await stacks.get(stack) / list({ project })            → StackInfo
 *   await stacks.resources(stack)                          → recorded resources
 *   await stacks.cancel(stack) / retry(stack)              → RunInfo
 *   await stacks.approve(stack, step, { approved, by })    → signals a waiting approval step
 *   await stacks.observe(stack) / reconcile(stack)         → drift report / apply run
 *   await stacks.wait(runId)                               → RunInfo when terminal
 *
 * `stack` is a stack id (`stk_…`) or a name (with `project`, default "default").
 */

export * from './schema.js';
export { parseStack, type ParsedStack, type SourceMap, type Position } from './parse.js';
export { compileStack, type StackModel, type KindCatalog, type KindInfo } from './model.js';
export { diffStack, renderPlan, planToJson, type Plan, type PlannedChange, type ChangeAction, type FieldChange, type Feasibility, type FeasibilityCheck, type RecordedResource } from './plan.js';
export { APPLY_WORKFLOW, INSTANCE_WORKFLOW, DRIFT_WORKFLOW, resourceName, type ApplyInput, type ApplyResult, type DriftReport } from './apply.js';
export { approvalSignal, type ApprovalPayload } from './steps.js';
export { stackMigrations } from './migrations.js';
export type { StackRow, StackStatus } from './store.js';

/** Checks what the plan would need from scarce pools (servers, addresses, VLANs) before anything is allocated. */
export type FeasibilityFn = (request: { project: string; creates: { address: string; kind: string; spec: Record<string, unknown> }[]; deletes: { address: string; kind: string; spec: Record<string, unknown> }[] }) => Promise<Feasibility>;

export interface StacksOptions {
  store: Store;
  engine: EngineApi;
  resources: ResourceStore;
  registry: ProviderRegistry;
  clock?: Clock;
  logger?: Logger;
  /** Known kinds (default: the resources module's KINDS). */
  kinds?: KindCatalog;
  feasibility?: FeasibilityFn;
  /** Working directories of shell and automation steps (default `<tmp>/infraflow-stacks`). */
  workDir?: string;
  /** Longest wait between two reads of a backend object while creating it (default 1000 ms). */
  pollIntervalMs?: number;
  /** Retry policy of one resource action. */
  actionRetry?: RetryPolicy;
  /** Register the workflows on the engine (default true). */
  register?: boolean;
  /** Seals `sensitive` parameters at rest (the project's secret box; a random key when not given). */
  secrets?: SecretBox;
}

export interface StackInfo extends StackRow {
  /** Status of the latest run when it ended otherwise than the row says (e.g. cancelled). */
  run?: Pick<RunInfo, 'id' | 'status' | 'progress' | 'error' | 'createdAt' | 'finishedAt'> | undefined;
  resourceCount: number;
}

export interface DocumentInput {
  /** YAML or JSON text, or the parsed object. */
  document: string | Record<string, unknown>;
  /** Shown in error positions. */
  file?: string;
  params?: Record<string, unknown>;
}

/** The kind catalog of the resources module (schemas and replace-on-change fields). */
export const resourceKinds: KindCatalog = {
  get: (kind) => {
    const info = KINDS[kind];
    if (!info) return undefined;
    return {
      kind, replaceOnChange: info.replaceOnChange,
      validate: (spec) => void parseSpec(kind, spec),
      check: (spec) => {
        const r = info.schema.safeParse(spec);
        if (!r.success) {
          return r.error.issues.map((i) => {
            const path = i.path.filter((p): p is string | number => typeof p !== 'symbol');
            if (i.code === 'unrecognized_keys' && i.keys.length === 1) path.push(i.keys[0]!);
            return { path, message: issueMessage(i), ...(i.code === 'custom' ? { custom: true } : {}) };
          });
        }
        if (containsUnknown(spec)) return [];
        try {
          info.validate?.(r.data as never);
        } catch (e) {
          const field = (e as InfraflowError).details?.field;
          return [{ path: typeof field === 'string' ? field.split('.') : [], message: (e as Error).message, custom: true }];
        }
        return [];
      },
    };
  },
  kinds: () => KIND_NAMES,
};

/** Names of the parameters declared `sensitive: true`. */
export function sensitiveParams(model: StackModel): string[] {
  return Object.entries(model.document.spec.parameters).filter(([, d]) => d.sensitive === true).map(([k]) => k);
}

/** The values of sensitive parameters, as they could appear in strings. */
export function sensitiveValues(model: StackModel): string[] {
  const out: string[] = [];
  for (const k of sensitiveParams(model)) {
    const v = model.params[k];
    if (v === undefined || v === null) continue;
    const s = typeof v === 'string' ? v : JSON.stringify(v);
    if (s.length >= 3) out.push(s);
  }
  return out;
}

/**
 * A plan with sensitive parameters masked: their values show as
 * `(sensitive)` in `params`, and wherever they appear in a spec (text and
 * JSON plans are both made from this).
 */
export function maskPlan(plan: Plan, model: StackModel): Plan {
  const names = sensitiveParams(model);
  if (names.length === 0) return plan;
  const masked = maskValues(plan, sensitiveValues(model));
  return { ...masked, params: Object.fromEntries(Object.entries(plan.params).map(([k, v]) => [k, names.includes(k) ? SENSITIVE : v])) };
}

export class Stacks {
  readonly stacks: StackStore;
  private readonly engine: EngineApi;
  private readonly kinds: KindCatalog;
  private readonly clock: Clock;

  constructor(private readonly opts: StacksOptions) {
    this.clock = opts.clock ?? systemClock;
    this.engine = opts.engine;
    this.kinds = opts.kinds ?? resourceKinds;
    this.stacks = new StackStore(opts.store, this.clock, opts.secrets);
    if (opts.register !== false) for (const wf of this.workflows()) this.engine.register(wf);
  }

  /** The workflow definitions (registered by the constructor unless `register: false`). */
  workflows() {
    return stackWorkflows({
      stacks: this.stacks, engine: this.engine, resources: this.opts.resources, registry: this.opts.registry, clock: this.clock, kinds: this.kinds,
      workDir: this.opts.workDir ?? join(tmpdir(), 'infraflow-stacks'),
      ...(this.opts.logger ? { logger: this.opts.logger } : {}),
      ...(this.opts.pollIntervalMs !== undefined ? { pollIntervalMs: this.opts.pollIntervalMs } : {}),
      ...(this.opts.actionRetry ? { actionRetry: this.opts.actionRetry } : {}),
    });
  }

  /** Parses and checks a document completely (schema, kinds, references, cycles); throws a positioned error. */
  parse(document: string | Record<string, unknown>, opts: { file?: string; params?: Record<string, unknown> } = {}): { parsed: ParsedStack; model: StackModel } {
    const parsed = parseStack(document, opts.file ? { file: opts.file } : {});
    const model = compileStack(parsed, { kinds: this.kinds, ...(opts.params ? { params: opts.params } : {}) });
    return { parsed, model };
  }

  /** Plans a document against the recorded state of the stack with the same name (a new stack plans all creates). */
  async plan(input: DocumentInput & { destroy?: boolean }): Promise<Plan> {
    const { model } = this.parse(input.document, { ...(input.file ? { file: input.file } : {}), ...(input.params ? { params: input.params } : {}) });
    const existing = await this.stacks.find(model.name, model.project);
    const recorded = existing ? await this.stacks.recorded(existing.id) : [];
    return this.planModel(model, recorded, existing?.revision ?? 0, input.destroy ?? false);
  }

  private async planModel(model: StackModel, recorded: RecordedResource[], baseRevision: number, destroy: boolean): Promise<Plan> {
    return maskPlan(await this.planModelRaw(model, recorded, baseRevision, destroy), model);
  }

  private async planModelRaw(model: StackModel, recorded: RecordedResource[], baseRevision: number, destroy: boolean): Promise<Plan> {
    let plan = diffStack(model, recorded, { baseRevision, destroy });
    const collisions = cbdCollisions(plan);
    if (collisions.length) plan = { ...plan, feasibility: { ok: false, checks: [...plan.feasibility.checks, ...collisions] } };
    if (this.opts.feasibility) {
      const creates = plan.changes.filter((c) => c.action === 'create' || c.action === 'replace').map((c) => ({ address: c.address, kind: c.kind, spec: (JSON.parse(JSON.stringify(c.after ?? {})) as Record<string, unknown>) }));
      const deletes = plan.changes.filter((c) => c.action === 'delete' || c.action === 'replace').map((c) => ({ address: c.address, kind: c.kind, spec: c.before ?? {} }));
      const feasibility = await this.opts.feasibility({ project: model.project, creates, deletes });
      plan = { ...plan, feasibility: { ok: feasibility.ok && plan.feasibility.ok, checks: [...plan.feasibility.checks, ...feasibility.checks] } };
    }
    return plan;
  }

  /** Plans a destroy of an existing stack. */
  async planDestroy(stack: string, opts: { project?: string } = {}): Promise<Plan> {
    const row = await this.stacks.get(stack, opts.project);
    const rev = await this.stacks.revision(row.id, row.revision);
    const { model } = this.parse(rev.source, { file: rev.file, params: rev.params });
    return this.planModel(model, await this.stacks.recorded(row.id), row.revision, true);
  }

  renderPlan = renderPlan;
  planToJson = planToJson;

  /**
   * Stores the document as the stack's next revision and starts an apply run.
   * With `expectedRevision` (the plan's `baseRevision`), a stack that changed
   * since the plan is refused (`stacks.stale_revision`). Applies of one stack
   * queue behind each other; none is lost.
   */
  async apply(input: DocumentInput & { expectedRevision?: number; createdBy?: string; parallelism?: number; failurePolicy?: FailurePolicy; requireFeasible?: boolean }): Promise<{ stack: StackRow; revision: number; run: RunInfo; plan: Plan }> {
    const { parsed, model } = this.parse(input.document, { ...(input.file ? { file: input.file } : {}), ...(input.params ? { params: input.params } : {}) });
    const existing = await this.stacks.find(model.name, model.project);
    if (existing && (existing.status === 'destroying')) {
      throw new ConflictError('stacks.busy', `stack ${model.name} is being destroyed (run ${existing.lastRunId}); wait for it to finish`);
    }
    const plan = await this.planModel(model, existing ? await this.stacks.recorded(existing.id) : [], existing?.revision ?? 0, false);
    if (input.requireFeasible !== false && !plan.feasibility.ok) {
      const failed = plan.feasibility.checks.filter((c) => !c.ok).map((c) => c.message);
      throw new ConflictError('stacks.infeasible', `stack ${model.name} cannot be applied: ${failed.join('; ')}`, { details: { checks: plan.feasibility.checks } });
    }
    const { stack, revision } = await this.stacks.putRevision({
      project: model.project, name: model.name, source: parsed.source, file: parsed.sourceMap.file, params: input.params ?? {}, sensitive: sensitiveParams(model),
      expectedRevision: input.expectedRevision, createdBy: input.createdBy, labels: model.document.metadata.labels,
    });
    const run = await this.startRun(stack, { stackId: stack.id, revision, mode: 'apply', reason: 'apply', ...(input.parallelism ? { parallelism: input.parallelism } : {}), ...(input.failurePolicy ? { failurePolicy: input.failurePolicy } : {}) });
    return { stack, revision, run, plan: { ...plan, baseRevision: revision - 1 } };
  }

  private async startRun(stack: StackRow, input: ApplyInput): Promise<RunInfo> {
    const run = await this.engine.start(APPLY_WORKFLOW, input, { labels: { stack: stack.id, stackName: stack.name, project: stack.project, mode: input.mode, reason: input.reason } });
    // the stack names its latest run at once (the run's first step does it again): a watch right after apply finds it
    await this.stacks.setStatus(stack.id, { lastRunId: run.id });
    return run;
  }

  /** Destroys every resource of the stack, in reverse dependency and phase order. */
  async destroy(stack: string, opts: { project?: string; parallelism?: number } = {}): Promise<{ stack: StackRow; run: RunInfo; plan: Plan }> {
    const row = await this.stacks.get(stack, opts.project);
    const plan = await this.planDestroy(row.id);
    const run = await this.startRun(row, { stackId: row.id, revision: row.revision, mode: 'destroy', reason: 'destroy', ...(opts.parallelism ? { parallelism: opts.parallelism } : {}) });
    return { stack: row, run, plan };
  }

  async get(stack: string, opts: { project?: string } = {}): Promise<StackInfo> {
    const row = await this.stacks.get(stack, opts.project);
    return this.info(row);
  }

  private async info(row: StackRow): Promise<StackInfo> {
    let run: StackInfo['run'];
    let status: StackStatus = row.status;
    if (row.lastRunId) {
      const r = await this.engine.get(row.lastRunId).catch(() => undefined);
      if (r) {
        run = { id: r.id, status: r.status, progress: await this.progressOf(r), ...(r.error ? { error: r.error } : {}), createdAt: r.createdAt, finishedAt: r.finishedAt ?? null };
        if ((status === 'applying' || status === 'destroying') && (r.status === 'cancelled' || r.status === 'failed')) status = r.status === 'cancelled' ? 'cancelled' : 'failed';
      }
    }
    return { ...row, status, run, resourceCount: await this.stacks.countRecorded(row.id) };
  }

  /** The run's progress; when it waits on instance runs (per-instance hooks), what they wait for. */
  private async progressOf(r: RunInfo): Promise<RunInfo['progress']> {
    const own = r.progress ?? null;
    if (r.status !== 'waiting') return own;
    const children = await this.engine.list({ parentRunId: r.id, status: 'waiting', limit: 100 });
    const messages = children.sort((a, b) => (a.id < b.id ? -1 : 1)).map((c) => c.progress?.message).filter((m): m is string => !!m && m.startsWith('waiting for'));
    if (!messages.length) return own;
    return { ...(own ?? {}), waitingFor: children.map((c) => c.progress?.waitingFor).filter(Boolean).join(', '), message: messages.length === 1 ? messages[0]! : `${messages.length} instances waiting: ${messages.join('; ')}` };
  }

  async list(filter: { project?: string; after?: string; limit?: number } = {}): Promise<StackInfo[]> {
    const rows = await this.stacks.list(filter);
    return Promise.all(rows.map((r) => this.info(r)));
  }

  /** The recorded state: one entry per resource instance. */
  async resources(stack: string, opts: { project?: string } = {}): Promise<RecordedResource[]> {
    const row = await this.stacks.get(stack, opts.project);
    const recs = await this.stacks.recorded(row.id);
    return recs.sort((a, b) => a.phase - b.phase || a.order - b.order || (a.address < b.address ? -1 : 1));
  }

  async revisions(stack: string, opts: { project?: string } = {}) {
    const row = await this.stacks.get(stack, opts.project);
    return this.stacks.revisions(row.id);
  }

  /** The document of a revision (default the latest). */
  async document(stack: string, opts: { project?: string; revision?: number } = {}) {
    const row = await this.stacks.get(stack, opts.project);
    // served: sensitive parameters as (sensitive)
    return this.stacks.revision(row.id, opts.revision ?? row.revision, { masked: true });
  }

  /** Runs of this stack, newest first. */
  async runs(stack: string, opts: { project?: string; limit?: number } = {}): Promise<RunInfo[]> {
    const row = await this.stacks.get(stack, opts.project);
    const runs = await this.engine.list({ labels: { stack: row.id }, limit: opts.limit ?? 100 });
    return runs.sort((a, b) => (a.id < b.id ? 1 : -1));
  }

  private async activeRun(row: StackRow): Promise<RunInfo> {
    const runs = await this.engine.list({ labels: { stack: row.id }, status: ['pending', 'running', 'waiting', 'cancelling'], limit: 100 });
    const run = runs.sort((a, b) => (a.id < b.id ? -1 : 1))[0];
    if (!run) throw new ConflictError('stacks.no_active_run', `stack ${row.name} has no apply or destroy in progress`);
    return run;
  }

  /** Cancels the stack's run in progress; what it finished stays recorded. */
  async cancel(stack: string, opts: { project?: string; reason?: string } = {}): Promise<RunInfo> {
    const row = await this.stacks.get(stack, opts.project);
    const run = await this.activeRun(row);
    return this.engine.cancel(run.id, opts.reason ?? 'cancelled by user');
  }

  /**
   * Retries after a failed or cancelled run: a new apply (or destroy) of the
   * same revision. Recorded resources that succeeded are left alone; the
   * failed and the not-started ones are done now.
   */
  async retry(stack: string, opts: { project?: string } = {}): Promise<RunInfo> {
    const info = await this.get(stack, opts);
    if (info.status !== 'failed' && info.status !== 'cancelled') throw new ConflictError('stacks.not_failed', `stack ${info.name} is ${info.status}; only a failed or cancelled apply or destroy can be retried`);
    const last = info.lastRunId ? await this.engine.get(info.lastRunId) : undefined;
    const mode = (last?.input as ApplyInput | undefined)?.mode ?? 'apply';
    return this.startRun(info, { stackId: info.id, revision: info.revision, mode, reason: 'retry' });
  }

  /**
   * Answers approval steps that are waiting: the one in `step.scope` (e.g.
   * `preDeploy`, or `before:nodes[2]` for one instance), or without a scope
   * every waiting approval step of that name (all instances of an array).
   */
  async approve(stack: string, step: { scope?: string; name: string }, payload: ApprovalPayload, opts: { project?: string } = {}): Promise<{ approved: string[] }> {
    const row = await this.stacks.get(stack, opts.project);
    const run = await this.activeRun(row);
    const waiting = await this.pendingApprovals(row.id, run.id, step.name);
    const targets = [...waiting].filter(([scope]) => step.scope === undefined || scope === step.scope).sort(([a], [b]) => a.localeCompare(b, 'en', { numeric: true }));
    if (targets.length === 0) {
      const others = [...waiting.keys()].sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
      throw new ValidationError('stacks.no_approval', `no approval step ${step.name}${step.scope !== undefined ? ` in ${step.scope}` : ''} is waiting in run ${run.id}${others.length ? `; waiting: ${others.map((o) => `${o}/${step.name}`).join(', ')}` : ''}`);
    }
    // each waiting step gets one signal, sent to the run that waits (the apply, or an instance's child run)
    for (const [scope, target] of targets) await this.engine.signal(target, approvalSignal(scope, step.name), payload);
    return { approved: targets.map(([scope]) => `${scope}/${step.name}`) };
  }

  /** Approval steps `name` the run (or its instance runs) asked for and that have not ended: scope → the run that waits. */
  private async pendingApprovals(stackId: string, runId: string, name: string): Promise<Map<string, string>> {
    const waiting = new Map<string, string>();
    let afterSeq = 0;
    for (;;) {
      // this stack's events only, every page (a long-lived system has many approvals)
      const page = await this.engine.events({ subject: stackId, types: ['stack.approval.requested', 'stack.step.succeeded', 'stack.step.failed'], afterSeq, limit: 1000 });
      for (const e of page) {
        if (e.data.runId !== runId || e.data.step !== name) continue;
        const scope = String(e.data.scope);
        if (e.type === 'stack.approval.requested') waiting.set(scope, String(e.data.childRunId ?? e.data.runId));
        else waiting.delete(scope);
      }
      if (page.length < 1000) break;
      afterSeq = page.at(-1)!.seq;
    }
    return waiting;
  }

  /** Observes every resource now; marks drift. */
  async observe(stack: string, opts: { project?: string } = {}): Promise<DriftReport> {
    const row = await this.stacks.get(stack, opts.project);
    return observeStack({ stacks: this.stacks, resources: this.opts.resources, registry: this.opts.registry, clock: this.clock, engine: this.engine }, row.id);
  }

  /** Brings the stack back to its applied revision (repairs drift). */
  async reconcile(stack: string, opts: { project?: string } = {}): Promise<RunInfo> {
    const row = await this.stacks.get(stack, opts.project);
    if (!row.appliedRevision) throw new ConflictError('stacks.never_applied', `stack ${row.name} has never been applied; apply it first`);
    return this.startRun(row, { stackId: row.id, revision: row.appliedRevision, mode: 'apply', reason: 'reconcile' });
  }

  /** Starts the drift workflow (what the schedule runs). */
  async startDriftCheck(stack: string, opts: { project?: string; reconcile?: boolean } = {}): Promise<RunInfo> {
    const row = await this.stacks.get(stack, opts.project);
    return this.engine.start(DRIFT_WORKFLOW, { stackId: row.id, ...(opts.reconcile !== undefined ? { reconcile: opts.reconcile } : {}) }, { labels: { stackDrift: row.id } });
  }

  /** Waits until the run is terminal. */
  async wait(runId: string, opts: { timeoutMs?: number } = {}): Promise<RunInfo> {
    return this.engine.result(runId, opts);
  }

  /** The stack's events (resource progress, steps, approvals, drift). */
  async events(stack: string, opts: { project?: string; afterSeq?: number; limit?: number } = {}): Promise<EngineEvent[]> {
    const row = await this.stacks.get(stack, opts.project);
    return this.engine.events({ subject: row.id, typePrefix: 'stack.', ...(opts.afterSeq !== undefined ? { afterSeq: opts.afterSeq } : {}), limit: opts.limit ?? 1000 });
  }

  /** Forgets a destroyed stack (its revisions and records). */
  async remove(stack: string, opts: { project?: string } = {}): Promise<void> {
    const info = await this.get(stack, opts);
    if (info.resourceCount > 0) throw new ConflictError('stacks.not_empty', `stack ${info.name} still records ${info.resourceCount} resources: destroy it first`);
    await this.stacks.remove(info.id);
  }
}
export { allocationFeasibility, type AllocationFeasibility } from './feasibility.js';

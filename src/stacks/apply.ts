import { z } from 'zod';
import type { Clock } from '../core/clock.js';
import { InfraflowError, serializeError, ValidationError, isInfraflowError, type SerializedError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { maskValues } from '../core/secrets.js';
import type { EngineApi, RetryPolicy, StepContext, WorkflowDefinition } from '../engine/types.js';
import { defineWorkflow } from '../engine/types.js';
import { observeNow } from '../resources/steps.js';
import type { Resource } from '../resources/types.js';
import { ensureResource, provision, remove, updateInPlace, type DriverDeps, type PollSettings } from './driver.js';
import { toCel, fromCel } from './expr.js';
import { compileStack, resourceOfAddress, type InstanceNode, type KindCatalog, type StackModel } from './model.js';
import { parseStack } from './parse.js';
import { canonicalJson, destroyOrder, diffStack, specHash, type RecordedResource } from './plan.js';
import { Resolver, type InstanceState } from './resolve.js';
import { runSteps, type StepRuntime } from './steps.js';
import type { StackStore } from './store.js';
import { FailurePolicy } from './schema.js';

/**
 * The apply and destroy workflows.
 *
 * One durable run per apply. Its journal holds, in order: the plan (the list
 * of actions), the pre-deploy steps, one step per resource action, then the
 * post-deploy (or on-failure, or rollback) steps and the final record.
 *
 * Parallelism without losing determinism: the engine matches journal entries
 * by sequence number, so the workflow must start its operations in the same
 * order on every replay. Actions are started strictly in plan order
 * (phases, then dependency order); action j starts once its dependencies
 * have settled and once action j-P has settled (a sliding window of P =
 * parallelism). Every decision — start, skip because a dependency failed,
 * stop after a failure — depends only on outcomes the workflow has awaited
 * by then, all of which are journaled, so a replay makes the same choices.
 * Each action is exactly one engine step (see driver.ts).
 */

export const APPLY_WORKFLOW = 'stacks.apply';
export const INSTANCE_WORKFLOW = 'stacks.instance';
export const DRIFT_WORKFLOW = 'stacks.drift';

/** The engine schedule that runs a stack's drift check (`options.drift.schedule`). */
export function driftScheduleId(stackId: string): string {
  return `stack-drift:${stackId}`;
}

export const ApplyInput = z.object({
  stackId: z.string(),
  revision: z.number().int().positive(),
  mode: z.enum(['apply', 'destroy']),
  /** apply | reconcile | retry — shown in events and history. */
  reason: z.string().default('apply'),
  parallelism: z.number().int().min(1).max(1000).optional(),
  failurePolicy: FailurePolicy.optional(),
});
export type ApplyInput = z.infer<typeof ApplyInput>;

export type ActionKind = 'create' | 'update' | 'replace' | 'delete';

interface Action {
  i: number;
  address: string;
  resource: string;
  kind: string;
  action: ActionKind;
  phase: number;
  /** Its group: `a:<resource>` (creates/updates/replaces) or `d:<resource>` (deletes). */
  group: string;
  /** Groups that must settle first (every action of each). */
  after: string[];
  /** Waits for every earlier action (a new phase starts). */
  barrier: boolean;
  cbd: boolean;
  before?: RecordedResource;
  /** Runs as a child workflow with per-instance hooks. */
  hooks: boolean;
}

interface PlanOutput {
  actions: Action[];
  /** State of unchanged instances that changed ones (or outputs, or workflows) read. */
  known: Record<string, InstanceState>;
  summary: Record<string, number>;
}

export interface ActionResult {
  resourceId: string | null;
  kind: string;
  outputs: Record<string, unknown>;
}

type Outcome = { ok: true; value: ActionResult | null } | { ok: false; error: SerializedError; skipped?: string };

export interface ApplyResult {
  stackId: string;
  revision: number;
  mode: 'apply' | 'destroy';
  summary: Record<string, number>;
  outputs: Record<string, unknown>;
}

export interface WorkflowDeps extends DriverDeps {
  stacks: StackStore;
  engine: EngineApi;
  logger?: Logger;
  kinds?: KindCatalog;
  /** Root of shell/automation working directories. */
  workDir: string;
  /** Longest wait between two reads of a backend object (default 1000 ms). */
  pollIntervalMs?: number;
  /** Retry policy of one resource action (transient backend failures). */
  actionRetry?: RetryPolicy;
  clock: Clock;
}

const DEFAULT_ACTION_RETRY: RetryPolicy = { maxAttempts: 6, initialIntervalMs: 200, backoffCoefficient: 2, maxIntervalMs: 5000, jitter: 0.2 };

/** Resource names on the backend: `<stack>-<address>` made safe. */
export function resourceName(stackName: string, address: string): string {
  const raw = address.replace(/\[(\d+)\]/g, '-$1').replace(/\["([^"]*)"\]/g, '-$1');
  const safe = raw.replace(/[^A-Za-z0-9._-]/g, '-');
  const base = `${stackName}-${safe}`.replace(/-+$/, '');
  return safe === raw ? base : `${base}-${specHash(address).slice(0, 6).toLowerCase().replace(/[^a-z0-9]/g, 'x')}`;
}

function outcomeOf(p: Promise<ActionResult | null>): Promise<Outcome> {
  return p.then((value) => ({ ok: true as const, value }), (e: unknown) => ({ ok: false as const, error: serializeError(e) }));
}

/**
 * Runs actions with a deterministic sliding window (see the file comment).
 * `start(a)` must start exactly one workflow operation synchronously.
 */
async function schedule(actions: readonly Action[], parallelism: number, policy: 'stop' | 'continue', start: (a: Action) => Promise<ActionResult | null>, onSettled?: (a: Action, o: Outcome) => void): Promise<Outcome[]> {
  const outcomes: Promise<Outcome>[] = [];
  const settled: Outcome[] = [];
  const members = new Map<string, number[]>();
  for (const a of actions) {
    let l = members.get(a.group);
    if (!l) members.set(a.group, (l = []));
    l.push(a.i);
  }
  // one promise per group: settles when all its actions have, with the first that did not succeed
  const groupDone = new Map<string, Promise<string | undefined>>();
  const groupOutcome = (g: string, before: number): Promise<string | undefined> => {
    let p = groupDone.get(g);
    if (!p) {
      const idx = (members.get(g) ?? []).filter((i) => i < before);
      p = Promise.all(idx.map((i) => outcomes[i]!)).then((os) => {
        const k = os.findIndex((o) => !o.ok);
        return k < 0 ? undefined : actions[idx[k]!]!.address;
      });
      groupDone.set(g, p);
    }
    return p;
  };
  let consumed = 0;
  let stopped: string | undefined;
  const consume = async () => {
    const o = await outcomes[consumed]!;
    settled[consumed] = o;
    if (!o.ok && !o.skipped && policy === 'stop' && !stopped) stopped = actions[consumed]!.address;
    consumed++;
  };
  for (let j = 0; j < actions.length; j++) {
    const a = actions[j]!;
    if (a.barrier) while (consumed < j) await consume();
    while (consumed <= j - parallelism) await consume();
    if (stopped) {
      outcomes[j] = Promise.resolve({ ok: false, error: { name: 'Skipped', code: 'stacks.skipped', message: `not started: ${stopped} failed and the failure policy is stop`, retryable: false }, skipped: stopped });
      continue;
    }
    let failedDep: string | undefined;
    for (const g of a.after) {
      failedDep = await groupOutcome(g, j);
      if (failedDep) break;
    }
    if (failedDep) {
      outcomes[j] = Promise.resolve({ ok: false, error: { name: 'Skipped', code: 'stacks.skipped', message: `not started: it depends on ${failedDep}, which did not succeed`, retryable: false }, skipped: failedDep });
      continue;
    }
    let p: Promise<ActionResult | null>;
    try {
      p = start(a);
    } catch (e) {
      p = Promise.reject(e);
    }
    outcomes[j] = outcomeOf(p).then((o) => {
      onSettled?.(a, o);
      return o;
    });
  }
  while (consumed < actions.length) await consume();
  return settled;
}

function isSkipped(o: Outcome): boolean {
  return !o.ok && o.skipped !== undefined;
}

// ---------------------------------------------------------------- plan → actions

function buildActions(model: StackModel | undefined, recorded: RecordedResource[], mode: 'apply' | 'destroy', stackDoc: { hooks: Set<string> }): PlanOutput {
  const byAddress = new Map(recorded.map((r) => [r.address, r]));
  const actions: Action[] = [];
  const summary: Record<string, number> = { create: 0, update: 0, replace: 0, delete: 0, noop: 0 };
  const known: Record<string, InstanceState> = {};
  if (mode === 'destroy' || !model) {
    const order = destroyOrder(recorded);
    // a resource is deleted after everything that depended on it
    const dependents = dependentsOf(order);
    let lastPhase = Number.POSITIVE_INFINITY;
    order.forEach((r, i) => {
      const barrier = r.phase < lastPhase && i > 0;
      lastPhase = Math.min(lastPhase, r.phase);
      actions.push({ i, address: r.address, resource: r.resource, kind: r.kind, action: 'delete', phase: r.phase, group: `d:${r.resource}`, after: [...(dependents.get(r.resource) ?? [])].filter((d) => d !== r.resource).map((d) => `d:${d}`), barrier, cbd: false, before: r, hooks: false });
      summary.delete!++;
    });
    return { actions, known, summary };
  }
  const plan = diffStack(model, recorded);
  const acting = new Set<string>();
  const byResource = new Map<string, number[]>();
  let lastPhase = -1;
  for (const ch of plan.changes) {
    summary[ch.action]!++;
    if (ch.action === 'noop' || ch.action === 'delete') continue;
    const node = model.resources.get(ch.resource)!;
    const i = actions.length;
    const after = node.deps.filter((d) => byResource.has(d)).map((d) => `a:${d}`);
    const barrier = node.phase > lastPhase && i > 0;
    lastPhase = Math.max(lastPhase, node.phase);
    actions.push({
      i, address: ch.address, resource: ch.resource, kind: ch.kind, action: ch.action, phase: node.phase, group: `a:${ch.resource}`, after, barrier,
      cbd: ch.createBeforeDestroy ?? false, ...(byAddress.get(ch.address) ? { before: byAddress.get(ch.address)! } : {}),
      hooks: stackDoc.hooks.has(ch.resource) && (ch.action === 'create' || ch.action === 'replace'),
    });
    let l = byResource.get(ch.resource);
    if (!l) byResource.set(ch.resource, (l = []));
    l.push(i);
    acting.add(ch.resource);
  }
  // deletes run after every create/update, in reverse dependency order
  const deletes = plan.changes.filter((c) => c.action === 'delete');
  const firstDelete = actions.length;
  const deleted = deletes.map((ch) => byAddress.get(ch.address)!);
  // wait for deletes of resources that depended on this one
  const delDependents = dependentsOf(deleted);
  deleted.forEach((r, k) => {
    const i = firstDelete + k;
    const after = [...(delDependents.get(r.resource) ?? [])].filter((d) => d !== r.resource).map((d) => `d:${d}`);
    actions.push({ i, address: r.address, resource: r.resource, kind: r.kind, action: 'delete', phase: r.phase, group: `d:${r.resource}`, after, barrier: k === 0 && i > 0, cbd: false, before: r, hooks: false });
  });
  // unchanged instances whose values someone reads
  const readers = new Set<string>();
  for (const name of acting) for (const d of model.resources.get(name)!.deps) readers.add(d);
  for (const r of model.outputs.resources) readers.add(r);
  const wf = model.workflows;
  for (const s of [...wf.preDeploy, ...wf.postDeploy, ...wf.onFailure, ...wf.perInstance.flatMap((p) => p.steps)]) for (const r of stepResources(s)) readers.add(r);
  for (const name of readers) {
    const node = model.resources.get(name);
    if (!node) continue;
    for (const inst of node.instances) {
      const r = byAddress.get(inst.address);
      if (r && r.status === 'ready') known[inst.address] = { id: r.resourceId, kind: r.kind, outputs: r.outputs, phase: r.status };
    }
  }
  return { actions, known, summary };
}

/** For each resource name, the names of the recorded resources that depend on it. */
function dependentsOf(rows: readonly RecordedResource[]): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const r of rows) {
    for (const d of r.dependsOn) {
      let s = out.get(d);
      if (!s) out.set(d, (s = new Set()));
      s.add(r.resource);
    }
  }
  return out;
}

function stepResources(s: StackModel['workflows']['preDeploy'][number]): Set<string> {
  const out = new Set(s.fields.resources);
  const def = s.def;
  const exprs = [def.when, def.type === 'waitUntil' ? def.condition : undefined].filter((x): x is string => !!x);
  for (const e of exprs) {
    for (const m of e.matchAll(/resources\s*(?:\.\s*([a-z][a-z0-9-]*)|\[\s*"([^"]+)"\s*\])/g)) out.add((m[1] ?? m[2])!);
  }
  return out;
}

// ---------------------------------------------------------------- the workflows

export interface CompiledRevision {
  model: StackModel;
  source: string;
  file: string;
}

function sensitiveValuesOf(model: StackModel): string[] {
  return Object.entries(model.document.spec.parameters).filter(([, d]) => d.sensitive === true).map(([k]) => model.params[k]).filter((v) => v !== undefined && v !== null).map((v) => (typeof v === 'string' ? v : JSON.stringify(v))).filter((s) => s.length >= 3);
}

export function compileRevision(source: string, file: string, params: Record<string, unknown>, kinds?: KindCatalog): StackModel {
  return compileStack(parseStack(source, { file }), { params, ...(kinds ? { kinds } : {}) });
}

export function stackWorkflows(deps: WorkflowDeps): WorkflowDefinition[] {
  const poll = (timeoutS: number): PollSettings => ({ timeoutMs: timeoutS * 1000, intervalMs: deps.pollIntervalMs ?? 1000 });
  const retry = deps.actionRetry ?? DEFAULT_ACTION_RETRY;
  const modelCache = new Map<string, StackModel>();

  async function loadModel(stackId: string, revision: number): Promise<StackModel> {
    const key = `${stackId}@${revision}`;
    const hit = modelCache.get(key);
    if (hit) return hit;
    const rev = await deps.stacks.revision(stackId, revision);
    const model = compileRevision(rev.source, rev.file, rev.params, deps.kinds);
    if (modelCache.size > 16) modelCache.clear();
    modelCache.set(key, model);
    return model;
  }

  const publish = (stackId: string, type: string, data: Record<string, unknown>) =>
    deps.engine.publish(type, stackId, data).then(() => undefined, (e: unknown) => deps.logger?.warn({ err: e }, 'stack event not published'));

  // ---- one resource action, inside one step

  function stackLabels(model: StackModel | undefined, resource: string): Record<string, string> | undefined {
    const own = model?.resources.get(resource)?.def.labels;
    const stack = model?.document.metadata.labels;
    return own || stack ? { ...stack, ...own } : undefined;
  }

  async function doCreate(sc: StepContext, stack: { id: string; name: string; project: string }, a: { address: string; resource: string; kind: string; phase: number; order: number; deps: string[]; cbd: boolean }, spec: Record<string, unknown>, timeoutS: number, labels?: Record<string, string>): Promise<ActionResult> {
    const r = await ensureResource(deps, { stackId: stack.id, project: stack.project, kind: a.kind, name: resourceName(stack.name, a.address), address: a.address, spec, ...(labels ? { labels } : {}) });
    const rec = { address: a.address, resource: a.resource, kind: a.kind, spec, specHash: specHash(spec), phase: a.phase, order: a.order, dependsOn: a.deps, drift: null, createBeforeDestroy: a.cbd };
    await deps.stacks.record(stack.id, sc.runId, { ...rec, resourceId: r.id, outputs: {}, status: 'creating' });
    const ready = await provision(deps, r, sc, poll(timeoutS));
    await deps.stacks.record(stack.id, sc.runId, { ...rec, resourceId: ready.id, outputs: ready.status.outputs, status: 'ready' });
    return { resourceId: ready.id, kind: ready.kind, outputs: ready.status.outputs };
  }

  async function actionBody(sc: StepContext, input: ApplyInput, stack: { id: string; name: string; project: string }, model: StackModel | undefined, a: Action, spec: Record<string, unknown> | undefined): Promise<ActionResult | null> {
    const node = model?.resources.get(a.resource);
    const timeoutS = node?.def.timeoutSeconds ?? model?.document.spec.options.resourceTimeoutSeconds ?? 900;
    const meta = { address: a.address, resource: a.resource, kind: a.kind, phase: a.phase, order: node?.order ?? a.before?.order ?? 0, deps: node?.deps ?? a.before?.dependsOn ?? [], cbd: a.cbd };
    // the stack's labels, then the resource's own (`labels:` in its definition)
    const labels = stackLabels(model, a.resource);
    void publish(stack.id, 'stack.resource.started', { runId: sc.runId, address: a.address, action: a.action, kind: a.kind, attempt: sc.attempt });
    let result: ActionResult | null = null;
    switch (a.action) {
      case 'create':
        result = await doCreate(sc, stack, meta, spec!, timeoutS, labels);
        break;
      case 'update': {
        const id = a.before!.resourceId!;
        const r = await deps.resources.get(id);
        const updated = await updateInPlace(deps, r, spec!, sc, poll(timeoutS));
        await deps.stacks.record(stack.id, sc.runId, { ...meta, dependsOn: meta.deps, createBeforeDestroy: a.cbd, spec: spec!, specHash: specHash(spec), resourceId: id, outputs: updated.status.outputs, status: 'ready', drift: null });
        result = { resourceId: id, kind: a.kind, outputs: updated.status.outputs };
        break;
      }
      case 'replace': {
        const old = a.before!;
        if (a.cbd && old.resourceId && old.kind === a.kind) {
          checkCbdCollision(a, old.spec, spec!);
          const name = `${resourceName(stack.name, a.address)}-${sc.runId.slice(-6)}`;
          const fresh = await ensureResource(deps, { stackId: stack.id, project: stack.project, kind: a.kind, name, address: a.address, spec: spec!, ...(labels ? { labels } : {}) });
          const ready = await provision(deps, fresh, sc, poll(timeoutS));
          await deps.stacks.record(stack.id, sc.runId, { ...meta, dependsOn: meta.deps, createBeforeDestroy: a.cbd, spec: spec!, specHash: specHash(spec), resourceId: ready.id, outputs: ready.status.outputs, status: 'ready', drift: null });
          await remove(deps, old.resourceId, sc, poll(timeoutS));
          result = { resourceId: ready.id, kind: a.kind, outputs: ready.status.outputs };
        } else {
          if (old.resourceId) {
            await deps.stacks.setRecordedStatus(stack.id, a.address, 'replacing');
            await remove(deps, old.resourceId, sc, poll(timeoutS));
          }
          result = await doCreate(sc, stack, meta, spec!, timeoutS, labels);
        }
        break;
      }
      case 'delete': {
        const old = a.before!;
        if (old.resourceId) {
          await deps.stacks.setRecordedStatus(stack.id, a.address, 'deleting');
          await remove(deps, old.resourceId, sc, poll(timeoutS));
        }
        await deps.stacks.unrecord(stack.id, a.address);
        break;
      }
    }
    void publish(stack.id, 'stack.resource.succeeded', { runId: sc.runId, address: a.address, action: a.action, kind: a.kind, resourceId: result?.resourceId ?? null, mode: input.mode });
    return result;
  }

  function checkCbdCollision(a: Action, before: Record<string, unknown>, after: Record<string, unknown>): void {
    for (const f of ['name', 'hostname', 'fqdn']) {
      if (typeof after[f] === 'string' && after[f] === before[f]) {
        throw new InfraflowError('stacks.name_collision', `create-before-destroy of ${a.address} would create a second ${a.kind} named "${String(after[f])}" while the old one still exists: change ${f} in the new spec, or set lifecycle.createBeforeDestroy: false`, 409, { retryable: false, details: { address: a.address, field: f } });
      }
    }
  }

  // ---- rollback of one settled action, inside one step

  async function undoBody(sc: StepContext, stack: { id: string; name: string; project: string }, model: StackModel | undefined, a: Action, done: ActionResult | null, failed: boolean): Promise<null> {
    const node = model?.resources.get(a.resource);
    const timeoutS = node?.def.timeoutSeconds ?? model?.document.spec.options.resourceTimeoutSeconds ?? 900;
    const current = await deps.stacks.recordedOne(stack.id, a.address);
    const dropCurrent = async () => {
      const id = done?.resourceId ?? current?.resourceId;
      if (id && id !== a.before?.resourceId) await remove(deps, id, sc, poll(timeoutS));
    };
    const restoreBefore = async () => {
      const b = a.before!;
      const still = b.resourceId ? await deps.resources.find(b.resourceId) : undefined;
      if (still && still.status.phase !== 'deleted') {
        const back = await updateInPlace(deps, still, b.spec, sc, poll(timeoutS));
        await deps.stacks.record(stack.id, sc.runId, { ...b, resourceId: still.id, outputs: back.status.outputs, status: 'ready', drift: null });
        return;
      }
      const re = await doCreate(sc, stack, { address: b.address, resource: b.resource, kind: b.kind, phase: b.phase, order: b.order, deps: b.dependsOn, cbd: b.createBeforeDestroy }, b.spec, timeoutS);
      void re;
    };
    switch (a.action) {
      case 'create':
        await dropCurrent();
        await deps.stacks.unrecord(stack.id, a.address);
        break;
      case 'update':
        if (a.before) await restoreBefore();
        break;
      case 'replace':
        await dropCurrent();
        await restoreBefore();
        break;
      case 'delete':
        if (!failed) await restoreBefore();
        break;
    }
    void publish(stack.id, 'stack.resource.rolled_back', { runId: sc.runId, address: a.address, action: a.action });
    return null;
  }

  const apply = defineWorkflow<ApplyInput, ApplyResult>({
    name: APPLY_WORKFLOW,
    version: 1,
    input: ApplyInput as unknown as z.ZodType<ApplyInput>,
    concurrencyKey: (i) => `stack:${i.stackId}`,
    async run(ctx, input) {
      const stackRow = await deps.stacks.get(input.stackId);
      const stack = { id: stackRow.id, name: stackRow.name, project: stackRow.project };
      const model = input.mode === 'apply' ? await loadModel(input.stackId, input.revision) : undefined;
      const hooks = new Set((model?.workflows.perInstance ?? []).map((p) => p.def.resource));

      const planned = await ctx.step('plan', async (sc) => {
        const recorded = await deps.stacks.recorded(input.stackId);
        let out: PlanOutput;
        try {
          out = buildActions(model, recorded, input.mode, { hooks });
        } catch (e) {
          // e.g. an expression that fails on the recorded outputs: the stack shows the failed run
          const err = serializeError(e);
          await deps.stacks.setStatus(input.stackId, { status: 'failed', lastRunId: sc.runId, error: { code: err.code, message: err.message } });
          throw e;
        }
        await deps.stacks.setStatus(input.stackId, { status: input.mode === 'apply' ? 'applying' : 'destroying', lastRunId: sc.runId, error: null });
        void publish(input.stackId, `stack.${input.mode}.started`, { runId: sc.runId, revision: input.revision, reason: input.reason, summary: out.summary });
        return out;
      });
      const actions = planned.actions;
      const options = model?.document.spec.options;
      const parallelism = input.parallelism ?? options?.parallelism ?? 10;
      const policy = input.failurePolicy ?? options?.failurePolicy ?? 'stop';

      const state = new Map<string, InstanceState>(Object.entries(planned.known));
      const resolver = model ? new Resolver(model, (addr) => state.get(addr)) : undefined;
      const instances = new Map<string, InstanceNode>();
      if (model) for (const n of model.resources.values()) for (const inst of n.instances) instances.set(inst.address, inst);
      const runCel = { id: ctx.runId, failures: [] as unknown[] };
      const rt: StepRuntime = {
        workDir: deps.workDir,
        stackName: stack.name,
        stackId: stack.id,
        context: () => (resolver ? resolver.globalContext(model!.resources.keys(), { run: toCel(runCel) }) : {}),
        liveContext: () => liveContext(model, state, resolver),
        publish: (type, data) => publish(stack.id, type, { runId: ctx.runId, ...data }),
      };

      let preFailed: SerializedError | undefined;
      if (model && model.workflows.preDeploy.length) {
        try {
          await runSteps(ctx, rt, model.workflows.preDeploy, 'preDeploy');
        } catch (e) {
          preFailed = serializeError(e);
        }
      }

      let done = 0;
      const total = actions.length;
      const onSettled = (a: Action, o: Outcome) => {
        done++;
        if (o.ok && o.value) state.set(a.address, { id: o.value.resourceId, kind: o.value.kind, outputs: o.value.outputs, phase: 'ready' });
        resolver?.invalidate(a.resource);
        ctx.progress({ stage: input.mode === 'apply' ? 'applying' : 'destroying', percent: total ? Math.floor((done * 100) / total) : 100, message: `${done}/${total} resources` });
      };
      const start = (a: Action): Promise<ActionResult | null> => {
        let spec: Record<string, unknown> | undefined;
        if (a.action !== 'delete' && model && resolver) {
          const node = model.resources.get(a.resource)!;
          spec = resolver.resolveSpec(node, instances.get(a.address)!).spec;
          spec = JSON.parse(canonicalJson(spec)) as Record<string, unknown>;
        }
        if (a.hooks) {
          // the child gets the state of what its spec and its hooks read, not the whole stack
          const reads = new Set(model!.resources.get(a.resource)!.deps);
          for (const h of model!.workflows.perInstance) if (h.def.resource === a.resource) for (const st of h.steps) for (const r of stepResources(st)) reads.add(r);
          const known: Record<string, InstanceState> = {};
          for (const r of reads) for (const inst of model!.resources.get(r)?.instances ?? []) {
            const v = state.get(inst.address);
            if (v) known[inst.address] = v;
          }
          return ctx.child<ActionResult>(INSTANCE_WORKFLOW, { stackId: stack.id, revision: input.revision, parentRunId: ctx.runId, action: { ...a }, spec, known }, { name: `instance:${a.address}` });
        }
        return ctx.step(`${a.action}:${a.address}`, (sc) => actionBody(sc, input, stack, model, a, spec), { retry, timeoutMs: ((model?.resources.get(a.resource)?.def.timeoutSeconds ?? options?.resourceTimeoutSeconds ?? 900) + 60) * 1000 });
      };
      const outcomes = preFailed ? [] : await schedule(actions, parallelism, policy === 'continue' ? 'continue' : 'stop', start, onSettled);

      const failures: { o: Outcome; a: Action }[] = outcomes.map((o, i) => ({ o, a: actions[i]! })).filter(({ o }) => !o.ok && !isSkipped(o));
      if (preFailed) failures.push({ o: { ok: false, error: preFailed }, a: { address: 'workflows.preDeploy' } as Action });
      const skipped = preFailed ? actions.length : outcomes.filter(isSkipped).length;
      const succeeded = outcomes.filter((o) => o.ok).length;
      if (failures.length === 0) {
        if (model && model.workflows.postDeploy.length) {
          try {
            await runSteps(ctx, rt, model.workflows.postDeploy, 'postDeploy');
          } catch (e) {
            failures.push({ o: { ok: false, error: serializeError(e) }, a: { address: 'workflows.postDeploy' } as Action });
          }
        }
      }
      if (failures.length === 0 && input.mode === 'destroy') {
        // anything this stack owns that was never recorded (e.g. a run cancelled between creating
        // the resource row and recording it) goes too: nothing is left orphaned
        try {
          await ctx.step('sweep', async (sc) => {
            const swept: string[] = [];
            let after: string | undefined;
            for (;;) {
              const page = await deps.resources.list({ owner: `stack:${stack.id}`, limit: 500, ...(after ? { after } : {}) });
              for (const r of page.items) {
                await remove(deps, r.id, sc, poll(900));
                swept.push(r.id);
              }
              if (!page.nextCursor) break;
              after = page.nextCursor;
            }
            return { swept };
          }, { retry });
        } catch (e) {
          failures.push({ o: { ok: false, error: serializeError(e) }, a: { address: '(sweep of unrecorded resources)' } as Action });
        }
      }
      if (failures.length === 0) {
        // outputs are served and stored in plain text: sensitive parameter values never are
        const outputs = model && resolver ? maskValues(fromCel(model.outputs.evaluate(resolver.globalContext(model.outputs.resources))) as Record<string, unknown>, sensitiveValuesOf(model)) : {};
        await ctx.step('finish', async () => {
          if (input.mode === 'destroy') {
            await deps.stacks.setStatus(stack.id, { status: 'destroyed', outputs: {}, error: null, drift: 'unknown' });
            await deps.engine.deleteSchedule(driftScheduleId(stack.id));
          } else {
            await deps.stacks.setStatus(stack.id, { status: 'applied', appliedRevision: input.revision, outputs, error: null });
            // the schedule follows the applied document: added, changed, or removed with it
            const drift = model?.document.spec.options.drift;
            if (drift?.schedule) await deps.engine.upsertSchedule({ id: driftScheduleId(stack.id), cron: drift.schedule, workflow: DRIFT_WORKFLOW, input: { stackId: stack.id }, overlap: 'skip', labels: { stackDrift: stack.id } });
            else await deps.engine.deleteSchedule(driftScheduleId(stack.id));
          }
          void publish(stack.id, `stack.${input.mode}.succeeded`, { runId: ctx.runId, revision: input.revision, succeeded });
        });
        return { stackId: stack.id, revision: input.revision, mode: input.mode, summary: planned.summary, outputs };
      }

      // failure: roll back if asked, run on-failure hooks, record, and fail the run
      runCel.failures = failures.map(({ o, a }) => ({ address: a.address, error: o.ok ? '' : o.error.message }));
      let rolledBack = false;
      if (policy === 'rollback' && input.mode === 'apply') {
        const toUndo = outcomes.map((o, i) => ({ o, a: actions[i]! })).filter(({ o }) => !isSkipped(o)).reverse();
        for (const { o, a } of toUndo) {
          try {
            await ctx.step(`rollback:${a.address}`, (sc) => undoBody(sc, stack, model, a, o.ok ? o.value : null, !o.ok), { retry, timeoutMs: ((options?.resourceTimeoutSeconds ?? 900) * 2 + 60) * 1000 });
          } catch (e) {
            failures.push({ o: { ok: false, error: serializeError(e) }, a: { ...a, address: `rollback of ${a.address}` } });
          }
        }
        rolledBack = true;
      }
      if (model && model.workflows.onFailure.length) {
        try {
          await runSteps(ctx, rt, model.workflows.onFailure, 'onFailure');
        } catch (e) {
          ctx.log('onFailure workflow failed', { error: (e as Error).message });
        }
      }
      const first = failures[0]!;
      const firstErr = first.o.ok ? undefined : first.o.error;
      const message = `${input.mode} of stack ${stack.name} failed: ${failures.length} failed, ${skipped} not started, ${succeeded} succeeded${rolledBack ? ', rolled back' : ''}. First failure: ${first.a.address}: ${firstErr?.message ?? 'unknown'}`;
      const details = { failed: failures.map(({ o, a }) => ({ address: a.address, error: o.ok ? null : o.error })).slice(0, 50), skipped, succeeded, rolledBack };
      await ctx.step('finish', async () => {
        await deps.stacks.setStatus(stack.id, { status: 'failed', error: { code: 'stacks.apply_failed', message, ...details } });
        void publish(stack.id, `stack.${input.mode}.failed`, { runId: ctx.runId, revision: input.revision, message, failed: details.failed.map((f) => f.address) });
      });
      throw new InfraflowError('stacks.apply_failed', message, 500, { retryable: false, details });
    },
  });

  async function liveContext(model: StackModel | undefined, state: Map<string, InstanceState>, resolver: Resolver | undefined): Promise<Record<string, unknown>> {
    if (!model || !resolver) return {};
    const resources: Record<string, unknown> = {};
    for (const node of model.resources.values()) {
      const one = async (inst: InstanceNode) => {
        const s = state.get(inst.address);
        let r: Resource | undefined;
        if (s?.id) r = await deps.resources.find(s.id);
        return {
          name: inst.address, address: inst.address, kind: node.kind, id: s?.id ?? null, outputs: r?.status.outputs ?? s?.outputs ?? {},
          status: { phase: r?.status.phase ?? 'pending', conditions: Object.fromEntries((r?.status.conditions ?? []).map((c) => [c.type, c.status === 'True'])), outputs: r?.status.outputs ?? {} },
        };
      };
      if (node.mode === 'single') resources[node.name] = node.instances[0] ? await one(node.instances[0]) : null;
      else if (node.mode === 'count') resources[node.name] = await Promise.all(node.instances.map(one));
      else resources[node.name] = Object.fromEntries(await Promise.all(node.instances.map(async (i) => [i.key!, await one(i)])));
    }
    return { ...(resolver.globalContext([])), resources: toCel(resources) };
  }

  // ---- per-instance hooks: a child run per instance (one operation in the parent)

  const InstanceInput = z.object({
    stackId: z.string(), revision: z.number(), parentRunId: z.string(),
    action: z.any(), spec: z.record(z.string(), z.unknown()).optional(), known: z.record(z.string(), z.any()),
  });
  type InstanceInput = z.infer<typeof InstanceInput>;

  const instance = defineWorkflow<InstanceInput, ActionResult>({
    name: INSTANCE_WORKFLOW,
    version: 1,
    input: InstanceInput as unknown as z.ZodType<InstanceInput>,
    async run(ctx, input) {
      const a = input.action as Action;
      const model = await loadModel(input.stackId, input.revision);
      const stackRow = await deps.stacks.get(input.stackId);
      const stack = { id: stackRow.id, name: stackRow.name, project: stackRow.project };
      const state = new Map<string, InstanceState>(Object.entries(input.known as Record<string, InstanceState>));
      const resolver = new Resolver(model, (addr) => state.get(addr));
      const node = model.resources.get(a.resource)!;
      const inst = node.instances.find((i) => i.address === a.address)!;
      const hooks = model.workflows.perInstance.filter((p) => p.def.resource === a.resource);
      const instanceValue = (extra: Record<string, unknown>) => toCel({ address: a.address, name: resourceName(stack.name, a.address), resource: a.resource, kind: a.kind, spec: input.spec ?? {}, ...(inst.index !== undefined ? { index: inst.index } : {}), ...(inst.key !== undefined ? { key: inst.key } : {}), ...extra });
      const rt: StepRuntime = {
        workDir: deps.workDir, stackName: stack.name, stackId: stack.id,
        context: () => resolver.globalContext(new Set(hooks.flatMap((h) => h.steps.flatMap((st) => [...stepResources(st)]))), { ...inst.local }),
        liveContext: () => liveContext(model, state, resolver),
        publish: (type, data) => publish(stack.id, type, { runId: input.parentRunId, childRunId: ctx.runId, address: a.address, ...data }),
      };
      for (const h of hooks.filter((x) => x.def.stage === 'before')) await runSteps(ctx, rt, h.steps, `before:${a.address}`, { instance: instanceValue({}) });
      let result: ActionResult;
      const instead = hooks.filter((x) => x.def.stage === 'instead');
      const timeoutS = node.def.timeoutSeconds ?? model.document.spec.options.resourceTimeoutSeconds;
      if (instead.length) {
        const outs: Record<string, unknown> = {};
        if (a.action === 'replace' && a.before?.resourceId) {
          await ctx.step(`remove-old:${a.address}`, async (sc) => {
            await remove(deps, a.before!.resourceId!, sc, poll(timeoutS));
            return null;
          });
        }
        for (const h of instead) Object.assign(outs, await runSteps(ctx, rt, h.steps, `instead:${a.address}`, { instance: instanceValue({}) }));
        result = await ctx.step(`record:${a.address}`, async (sc) => {
          const outputs = JSON.parse(JSON.stringify(outs)) as Record<string, unknown>;
          await deps.stacks.record(stack.id, sc.runId, { address: a.address, resource: a.resource, kind: a.kind, spec: input.spec ?? {}, specHash: specHash(input.spec ?? {}), phase: a.phase, order: node.order, dependsOn: node.deps, drift: null, createBeforeDestroy: false, resourceId: null, outputs, status: 'ready' });
          return { resourceId: null, kind: a.kind, outputs };
        });
      } else {
        result = (await ctx.step(`${a.action}:${a.address}`, (sc) => actionBody(sc, { stackId: stack.id, revision: input.revision, mode: 'apply', reason: 'apply' }, stack, model, a, input.spec), { retry, timeoutMs: (timeoutS + 60) * 1000 }))!;
      }
      state.set(a.address, { id: result.resourceId, kind: result.kind, outputs: result.outputs, phase: 'ready' });
      resolver.invalidate(a.resource);
      for (const h of hooks.filter((x) => x.def.stage === 'after')) {
        await runSteps(ctx, rt, h.steps, `after:${a.address}`, { instance: instanceValue({ id: result.resourceId, outputs: result.outputs, status: { phase: 'ready' } }) });
      }
      return result;
    },
  });

  // ---- drift: observe every recorded resource; reconcile when asked

  /** An apply, destroy or reconcile of the stack that has not ended (its id), if any. */
  async function activeStackRun(stackId: string): Promise<string | undefined> {
    const runs = await deps.engine.list({ labels: { stack: stackId }, status: ['pending', 'running', 'waiting', 'cancelling'], limit: 1 });
    return runs[0]?.id;
  }

  const drift = defineWorkflow<{ stackId: string; reconcile?: boolean }, DriftReport>({
    name: DRIFT_WORKFLOW,
    version: 1,
    async run(ctx, input) {
      const report = await ctx.step('observe', async () => {
        // while an apply or destroy of the stack runs, its resources are in motion: what differs is not drift
        const busy = await activeStackRun(input.stackId);
        if (busy) return { stackId: input.stackId, observedAt: deps.clock.now(), checked: 0, drifted: [], skipped: `run ${busy} of this stack is in progress` } satisfies DriftReport;
        return observeStack(deps, input.stackId);
      });
      if (report.drifted.length === 0) return report;
      // the policy is read inside the step, so a replay makes the same choice
      const decision = await ctx.step('reconcile', async (sc): Promise<{ runId?: string; skipped?: string }> => {
        const stackRow = await deps.stacks.get(input.stackId);
        if (!stackRow.appliedRevision) return { skipped: 'the stack was never applied' };
        const doc = await loadModel(stackRow.id, stackRow.appliedRevision).catch(() => undefined);
        const auto = input.reconcile ?? doc?.document.spec.options.drift?.autoReconcile ?? false;
        if (!auto) return {};
        // only a stack whose latest revision is applied is put back: otherwise reconciling would
        // undo a newer revision (applying now, or failed) by applying the older one again
        const busy = await activeStackRun(stackRow.id);
        if (busy) return { skipped: `run ${busy} of this stack is in progress` };
        if (stackRow.status !== 'applied' || stackRow.revision !== stackRow.appliedRevision) {
          return { skipped: `the stack is ${stackRow.status} at revision ${stackRow.revision} (applied: ${stackRow.appliedRevision}): apply or retry it first; reconciling would go back to revision ${stackRow.appliedRevision}` };
        }
        // one reconcile per drift run, even when this step runs again after a crash
        const r = await deps.engine.start(APPLY_WORKFLOW, { stackId: stackRow.id, revision: stackRow.appliedRevision, mode: 'apply', reason: 'reconcile' }, {
          id: `${sc.runId}:reconcile`, labels: { stack: stackRow.id, stackName: stackRow.name, project: stackRow.project, mode: 'apply', reason: 'reconcile' },
        });
        return { runId: r.id };
      });
      return { ...report, ...(decision.runId ? { reconcileRunId: decision.runId } : {}), ...(decision.skipped ? { reconcileSkipped: decision.skipped } : {}) };
    },
  });

  return [apply, instance, drift] as WorkflowDefinition[];
}

export interface DriftReport {
  stackId: string;
  observedAt: number;
  checked: number;
  drifted: { address: string; fields: string[]; missing: boolean }[];
  /** Why nothing was observed (an apply of the stack was in progress). */
  skipped?: string;
  reconcileRunId?: string;
  /** Why drift was found but not reconciled although reconciling was asked for. */
  reconcileSkipped?: string;
}

/** Reads every recorded resource from its backend and marks the ones that differ from their applied spec. */
export async function observeStack(deps: Pick<WorkflowDeps, 'stacks' | 'resources' | 'registry' | 'clock' | 'engine'>, stackId: string): Promise<DriftReport> {
  const recorded = await deps.stacks.recorded(stackId);
  const drifted: DriftReport['drifted'] = [];
  let checked = 0;
  for (const r of recorded) {
    // a resource found missing before is looked at again: it stays drifted until it is back or re-created
    if (!r.resourceId || (r.status !== 'ready' && r.status !== 'missing')) continue;
    checked++;
    let res;
    try {
      res = await observeNow({ resources: deps.resources, registry: deps.registry }, r.resourceId);
    } catch (e) {
      if (isInfraflowError(e) && e.code === 'resources.not_found') res = { state: 'absent' as const, drifted: true, driftedFields: [], outputs: {} };
      else throw e;
    }
    const missing = res.state === 'absent';
    const fields = missing ? ['(deleted outside Infraflow)'] : res.driftedFields;
    if (res.drifted) {
      drifted.push({ address: r.address, fields, missing });
      await deps.stacks.setDrift(stackId, r.address, fields, missing ? 'missing' : undefined);
    } else if (r.drift || r.status === 'missing') {
      await deps.stacks.setDrift(stackId, r.address, null, r.status === 'missing' ? 'ready' : undefined);
    }
  }
  const now = deps.clock.now();
  await deps.stacks.setStatus(stackId, { drift: drifted.length ? 'drifted' : 'in_sync', observedAt: now });
  if (drifted.length) await deps.engine.publish('stack.drift.detected', stackId, { drifted: drifted.map((d) => d.address) }).catch(() => undefined);
  return { stackId, observedAt: now, checked, drifted };
}

export { ValidationError, resourceOfAddress };

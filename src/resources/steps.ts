import { InfraflowError, isInfraflowError } from '../core/errors.js';
import type { RetryPolicy, StepContext, WorkflowContext } from '../engine/types.js';
import { ProviderError, reasonOf } from './errors.js';
import { diffSpecs } from './kinds.js';
import type { ProviderRegistry } from './registry.js';
import type { ResourceStore } from './store.js';
import type { DiffResult, KindHandler, ProviderCallContext, ProviderErrorReason, ReadResult, Resource } from './types.js';

/**
 * Resource steps: the durable building blocks a workflow uses to drive a
 * resource through its provider. Each helper is a short, fixed sequence of
 * journaled engine steps, so a crash anywhere resumes where it stopped and a
 * retried provider call carries the same idempotency key (one effect).
 *
 *   provisionResource(ctx, deps, id)  step `create:<id>` + poll `ready:<id>`   → ready Resource
 *     = startResource(ctx, deps, id) (create only) + awaitResource(ctx, deps, started) (poll only)
 *   updateResource(ctx, deps, id)     step `update:<id>:g<gen>` + poll `updated:<id>:g<gen>` (or a replace)
 *   deleteResource(ctx, deps, id)     step `delete:<id>` + poll `gone:<id>`      → void
 *   observeResource(ctx, deps, id, n) step `observe:<id>:<n>`                   → ObserveResult (drift)
 *
 * The resource's status tells the truth while this happens: phase plus
 * conditions (`Provisioned=False reason=Booting`, `Ready=True`…), so a
 * stuck resource and a working one can be told apart.
 */
export interface ResourceDeps {
  resources: ResourceStore;
  registry: ProviderRegistry;
}

export interface ResourceStepOptions {
  /** How long to wait for the backend to finish (poll timeout). Default 30 min. */
  timeoutMs?: number;
  /** How often to read the backend while waiting. Default 1000 ms. */
  pollIntervalMs?: number;
  /** Retry policy of the mutating call (create/update/delete). Default 5 attempts, 1 s → 30 s. */
  retry?: RetryPolicy;
  /** Per-attempt timeout of the mutating call (cuts a hung backend call). Default 60 s. */
  callTimeoutMs?: number;
  /** Appended to step names so one run can drive the same resource more than once (e.g. a replace). */
  stepSuffix?: string;
}

export interface ObserveResult {
  state: ReadResult['state'];
  /** True when the backend object is absent or differs from the applied spec. */
  drifted: boolean;
  /** Spec fields whose actual value differs from the applied one. */
  driftedFields: string[];
  outputs: Record<string, unknown>;
  observed?: Record<string, unknown>;
}

export interface UpdateOutcome {
  action: 'none' | 'update' | 'replace';
  changed: string[];
  resource: Resource;
}

const DEFAULT_RETRY: RetryPolicy = { maxAttempts: 5, initialIntervalMs: 1000, maxIntervalMs: 30_000 };

function callCtx(r: Resource, sc: StepContext): ProviderCallContext {
  return { idempotencyKey: sc.idempotencyKey, signal: sc.signal, project: r.project, resourceId: r.id, resourceName: r.name };
}

function readCtx(r: Resource, sc?: StepContext): Omit<ProviderCallContext, 'idempotencyKey'> {
  return { ...(sc ? { signal: sc.signal } : {}), project: r.project, resourceId: r.id, resourceName: r.name };
}

function condition(type: string, ok: boolean, reason: string, message: string) {
  return { type, status: ok ? 'True' as const : 'False' as const, reason, message };
}

/** What an update from `previous` to `next` would do, per the kind's handler. */
export function planChange(handler: KindHandler, previous: Record<string, unknown>, next: Record<string, unknown>): DiffResult {
  return handler.diff ? handler.diff(previous, next) : diffSpecs(previous, next, handler.replaceOnChange);
}

/** Records a failed mutating call on the resource, then rethrows. */
async function recordCallFailure(deps: ResourceDeps, r: Resource, e: unknown, op: string): Promise<never> {
  const reason = reasonOf(e) ?? (isInfraflowError(e) && e.code.includes('timeout') ? 'Timeout' : 'Internal');
  const retryable = isInfraflowError(e) ? e.retryable : true;
  const message = e instanceof Error ? e.message : String(e);
  await deps.resources.updateStatus(r.id, {
    ...(retryable ? {} : { phase: 'failed' as const }),
    conditions: [condition('Ready', false, reason, `${op} failed${retryable ? ' (will retry)' : ''}: ${message}`)],
    message,
  });
  throw e;
}

/** Marks the resource failed after a wait that ended badly (timeout, failed state), keeping the reason. */
async function failAfterWait(ctx: WorkflowContext, deps: ResourceDeps, id: string, e: unknown, stepName: string): Promise<never> {
  const reason: ProviderErrorReason = reasonOf(e) ?? (isInfraflowError(e) && /timeout/i.test(e.code) ? 'Timeout' : 'Internal');
  const message = e instanceof Error ? e.message : String(e);
  try {
    await ctx.step(stepName, async () => {
      await deps.resources.updateStatus(id, { phase: 'failed', conditions: [condition('Ready', false, reason, message)], message });
    });
  } catch {
    /* the run is being cancelled; the original error says why */
  }
  if (e instanceof ProviderError || (isInfraflowError(e) && reasonOf(e))) throw e;
  if (reason === 'Timeout') throw new ProviderError('Timeout', `resource ${id} did not become ready in time: ${message}`, { retryable: false, cause: e });
  throw e;
}

function mapRead(r: ReadResult): { done: boolean; failed: boolean; absent: boolean } {
  return { done: r.state === 'ready', failed: r.state === 'failed', absent: r.state === 'absent' };
}

/**
 * Creates the backend object for a stored resource and waits until it is
 * ready. Adopts an object created earlier (status.externalId) instead of
 * creating a second one; an earlier object that failed is deleted first.
 * Returns the ready resource (status.outputs filled).
 */
export async function provisionResource(ctx: WorkflowContext, deps: ResourceDeps, resource: string | Resource, opts: ResourceStepOptions = {}): Promise<Resource> {
  const started = await startResource(ctx, deps, resource, opts);
  return awaitResource(ctx, deps, started, opts);
}

/** A create accepted by the backend, to wait for with `awaitResource`. */
export interface StartedResource {
  id: string;
  externalId: string;
  generation: number;
}

/**
 * The first half of provisionResource: the create call only (step `create:<id>`).
 * Start several resources, then await them, to let the backend work on them in parallel.
 */
export async function startResource(ctx: WorkflowContext, deps: ResourceDeps, resource: string | Resource, opts: ResourceStepOptions = {}): Promise<StartedResource> {
  const id = typeof resource === 'string' ? resource : resource.id;
  const sfx = opts.stepSuffix ? `:${opts.stepSuffix}` : '';
  ctx.progress({ stage: 'provisioning', waitingFor: `create ${id}` });
  const created = await ctx.step(`create:${id}${sfx}`, async (sc) => {
    const r = await deps.resources.get(id);
    const handler = deps.registry.handler(r.kind);
    if (r.status.externalId) {
      const existing = await handler.read(r.status.externalId, readCtx(r, sc));
      if (existing.state !== 'absent' && existing.state !== 'failed' && existing.state !== 'deleting') {
        sc.log(`adopting existing ${r.kind} ${r.status.externalId} (${existing.state})`);
        if (!r.status.appliedSpec) await deps.resources.updateStatus(id, { appliedSpec: r.spec });
        return { externalId: r.status.externalId, generation: r.generation };
      }
      if (existing.state === 'failed') {
        sc.log(`deleting failed ${r.kind} ${r.status.externalId} before creating it again`);
        await handler.delete(r.status.externalId, { ...callCtx(r, sc), idempotencyKey: `${sc.idempotencyKey}:cleanup` });
      }
    }
    try {
      const res = await handler.create(r.spec, callCtx(r, sc));
      await deps.resources.updateStatus(id, {
        phase: res.ready ? 'ready' : 'creating', externalId: res.externalId, appliedSpec: r.spec,
        ...(res.outputs ? { outputs: res.outputs } : {}),
        conditions: [condition('Provisioned', res.ready, res.ready ? 'Created' : 'Creating', res.ready ? `${r.kind} ${res.externalId} created` : `${r.kind} ${res.externalId} is being created`)],
      });
      sc.log(`created ${r.kind} ${res.externalId}`, { ready: res.ready });
      return { externalId: res.externalId, generation: r.generation };
    } catch (e) {
      return recordCallFailure(deps, r, e, 'create');
    }
  }, { retry: opts.retry ?? DEFAULT_RETRY, timeoutMs: opts.callTimeoutMs ?? 60_000 });
  return { id, ...created };
}

/** The second half of provisionResource: polls `ready:<id>` until the backend object is ready. */
export async function awaitResource(ctx: WorkflowContext, deps: ResourceDeps, started: StartedResource, opts: ResourceStepOptions = {}): Promise<Resource> {
  const { id } = started;
  const created = started;
  const sfx = opts.stepSuffix ? `:${opts.stepSuffix}` : '';
  ctx.progress({ stage: 'provisioning', waitingFor: `${id} to become ready` });
  try {
    await ctx.poll(`ready:${id}${sfx}`, (sc) => waitState(deps, id, created.externalId, created.generation, 'create', sc), {
      intervalMs: opts.pollIntervalMs ?? 1000, timeoutMs: opts.timeoutMs ?? 30 * 60_000, retry: opts.retry ?? DEFAULT_RETRY,
    });
  } catch (e) {
    return failAfterWait(ctx, deps, id, e, `failed:${id}${sfx}`);
  }
  return deps.resources.get(id);
}

/** One poll: reads the backend, mirrors it into the resource status. */
async function waitState(deps: ResourceDeps, id: string, externalId: string, generation: number, op: 'create' | 'update', sc: StepContext): Promise<{ done: boolean; value?: true; status?: string }> {
  const r = await deps.resources.get(id);
  const handler = deps.registry.handler(r.kind);
  const read = await handler.read(externalId, readCtx(r, sc));
  const m = mapRead(read);
  const conds = read.conditions ?? [];
  if (m.done) {
    await deps.resources.updateStatus(id, {
      phase: 'ready', outputs: read.outputs, observedGeneration: generation,
      conditions: [...conds, condition('Provisioned', true, op === 'create' ? 'Created' : 'Updated', `${r.kind} ${externalId} is ready`), condition('Ready', true, 'Ready', 'ready')],
      ...(read.secrets ? { secrets: read.secrets } : {}), message: `${r.kind} ${externalId} is ready`,
    });
    return { done: true, value: true };
  }
  if (m.failed || m.absent) {
    const reason: ProviderErrorReason = read.failureReason ?? (m.absent ? 'NotFound' : 'Internal');
    const message = read.message ?? (m.absent ? `${r.kind} ${externalId} disappeared from the backend while it was being ${op}d` : `${r.kind} ${externalId} failed`);
    throw new ProviderError(reason, message, { retryable: false, details: { externalId, kind: r.kind } });
  }
  const waiting = conds.find((c) => c.status === 'False');
  await deps.resources.updateStatus(id, {
    phase: op === 'create' ? 'creating' : 'updating', outputs: { ...r.status.outputs, ...read.outputs },
    conditions: conds.length ? conds : [condition('Provisioned', false, op === 'create' ? 'Creating' : 'Updating', read.message ?? `${op} in progress`)],
  });
  return { done: false, status: waiting ? `${waiting.type}=False ${waiting.reason}` : read.state };
}

/**
 * Applies the resource's current spec (after `ResourceStore.updateSpec`) to
 * the backend: nothing if it equals the applied spec, an in-place update,
 * or a replace (delete, then create) when a replace-on-change field changed.
 */
export async function updateResource(ctx: WorkflowContext, deps: ResourceDeps, resourceId: string, opts: ResourceStepOptions = {}): Promise<UpdateOutcome> {
  const plan = await ctx.step(`plan-update:${resourceId}${opts.stepSuffix ? `:${opts.stepSuffix}` : ''}`, async () => {
    const r = await deps.resources.get(resourceId);
    const handler = deps.registry.handler(r.kind);
    const previous = r.status.appliedSpec ?? r.spec;
    const d = planChange(handler, previous, r.spec);
    const action: UpdateOutcome['action'] = !r.status.externalId ? 'replace' : d.changed.length === 0 ? 'none' : d.replaceFields.length > 0 || !handler.update ? 'replace' : 'update';
    return { action, changed: d.changed, generation: r.generation, externalId: r.status.externalId ?? null };
  });
  const sfx = `g${plan.generation}${opts.stepSuffix ? `:${opts.stepSuffix}` : ''}`;
  if (plan.action === 'none') {
    await ctx.step(`noop:${resourceId}:${sfx}`, async () => { await deps.resources.updateStatus(resourceId, { observedGeneration: plan.generation }); });
    return { action: 'none', changed: [], resource: await deps.resources.get(resourceId) };
  }
  if (plan.action === 'replace') {
    if (plan.externalId) await deleteBackend(ctx, deps, resourceId, { ...opts, stepSuffix: `replace:${sfx}` }, false);
    const resource = await provisionResource(ctx, deps, resourceId, { ...opts, stepSuffix: `replace:${sfx}` });
    return { action: 'replace', changed: plan.changed, resource };
  }
  ctx.progress({ stage: 'updating', waitingFor: `update ${resourceId}` });
  await ctx.step(`update:${resourceId}:${sfx}`, async (sc) => {
    const r = await deps.resources.get(resourceId);
    const handler = deps.registry.handler(r.kind);
    try {
      const res = await handler.update!(plan.externalId!, r.spec, (r.status.appliedSpec ?? r.spec), callCtx(r, sc));
      await deps.resources.updateStatus(resourceId, {
        phase: res.ready ? 'ready' : 'updating', appliedSpec: r.spec, ...(res.outputs ? { outputs: { ...r.status.outputs, ...res.outputs } } : {}),
        conditions: [condition('Provisioned', res.ready, res.ready ? 'Updated' : 'Updating', `updating ${plan.changed.join(', ')}`)],
      });
    } catch (e) {
      return recordCallFailure(deps, r, e, 'update');
    }
  }, { retry: opts.retry ?? DEFAULT_RETRY, timeoutMs: opts.callTimeoutMs ?? 60_000 });
  try {
    await ctx.poll(`updated:${resourceId}:${sfx}`, (sc) => waitState(deps, resourceId, plan.externalId!, plan.generation, 'update', sc), {
      intervalMs: opts.pollIntervalMs ?? 1000, timeoutMs: opts.timeoutMs ?? 30 * 60_000, retry: opts.retry ?? DEFAULT_RETRY,
    });
  } catch (e) {
    return failAfterWait(ctx, deps, resourceId, e, `update-failed:${resourceId}:${sfx}`);
  }
  return { action: 'update', changed: plan.changed, resource: await deps.resources.get(resourceId) };
}

async function deleteBackend(ctx: WorkflowContext, deps: ResourceDeps, id: string, opts: ResourceStepOptions, markDeleted: boolean): Promise<void> {
  const sfx = opts.stepSuffix ? `:${opts.stepSuffix}` : '';
  ctx.progress({ stage: 'deleting', waitingFor: `delete ${id}` });
  const target = await ctx.step(`delete:${id}${sfx}`, async (sc) => {
    const r = await deps.resources.get(id);
    if (r.status.phase === 'deleted') return { externalId: null };
    if (!r.status.externalId) {
      if (markDeleted) await deps.resources.updateStatus(id, { phase: 'deleted', conditions: [condition('Ready', false, 'Deleted', 'nothing was created on the backend')] });
      return { externalId: null };
    }
    const handler = deps.registry.handler(r.kind);
    try {
      await handler.delete(r.status.externalId, callCtx(r, sc));
    } catch (e) {
      if (reasonOf(e) !== 'NotFound') return recordCallFailure(deps, r, e, 'delete');
    }
    await deps.resources.updateStatus(id, { phase: 'deleting', conditions: [condition('Ready', false, 'Deleting', `${r.kind} ${r.status.externalId} is being deleted`)] });
    return { externalId: r.status.externalId };
  }, { retry: opts.retry ?? DEFAULT_RETRY, timeoutMs: opts.callTimeoutMs ?? 60_000 });
  if (!target.externalId) return;
  try {
    await ctx.poll(`gone:${id}${sfx}`, async (sc) => {
      const r = await deps.resources.get(id);
      const read = await deps.registry.handler(r.kind).read(target.externalId!, readCtx(r, sc));
      if (read.state === 'absent') {
        await deps.resources.updateStatus(id, markDeleted
          ? { phase: 'deleted', conditions: [condition('Ready', false, 'Deleted', `${r.kind} ${target.externalId} deleted`)] }
          : { externalId: null, outputs: {}, conditions: [condition('Provisioned', false, 'Replacing', `${r.kind} ${target.externalId} deleted for replacement`)] });
        return { done: true, value: true };
      }
      if (read.state === 'failed') throw new ProviderError(read.failureReason ?? 'Internal', read.message ?? `deleting ${r.kind} ${target.externalId} failed`, { retryable: false });
      return { done: false, status: read.state };
    }, { intervalMs: opts.pollIntervalMs ?? 1000, timeoutMs: opts.timeoutMs ?? 30 * 60_000, retry: opts.retry ?? DEFAULT_RETRY });
  } catch (e) {
    return failAfterWait(ctx, deps, id, e, `delete-failed:${id}${sfx}`);
  }
}

/** Deletes the backend object (absent is fine) and waits until it is gone; the resource ends `deleted`. */
export async function deleteResource(ctx: WorkflowContext, deps: ResourceDeps, resourceId: string, opts: ResourceStepOptions = {}): Promise<void> {
  await deleteBackend(ctx, deps, resourceId, opts, true);
}

/** Reads the backend object outside a workflow and compares it with the applied spec. */
export async function observeNow(deps: ResourceDeps, resourceId: string, signal?: AbortSignal): Promise<ObserveResult> {
  const r = await deps.resources.get(resourceId);
  if (!r.status.externalId) return { state: 'absent', drifted: r.status.phase === 'ready', driftedFields: [], outputs: {} };
  const read = await deps.registry.handler(r.kind).read(r.status.externalId, readCtx(r, signal ? ({ signal } as StepContext) : undefined));
  const applied = r.status.appliedSpec ?? r.spec;
  const driftedFields = read.observed ? Object.keys(read.observed).filter((k) => k in applied && JSON.stringify(read.observed![k]) !== JSON.stringify(applied[k])).sort() : [];
  const absent = read.state === 'absent';
  const drifted = absent || driftedFields.length > 0;
  const drift = absent
    ? condition('InSync', false, 'DeletedOutside', `${r.kind} ${r.status.externalId} no longer exists on the backend`)
    : driftedFields.length ? condition('InSync', false, 'Drifted', `changed outside Infraflow: ${driftedFields.join(', ')}`) : condition('InSync', true, 'InSync', 'matches the applied spec');
  if (r.status.phase !== 'deleted') await deps.resources.updateStatus(resourceId, { conditions: [drift] });
  return { state: read.state, drifted, driftedFields, outputs: read.outputs, ...(read.observed ? { observed: read.observed } : {}) };
}

/** Drift check as a journaled step (name it per check, e.g. with a counter or a time). */
export async function observeResource(ctx: WorkflowContext, deps: ResourceDeps, resourceId: string, checkName: string): Promise<ObserveResult> {
  return ctx.step(`observe:${resourceId}:${checkName}`, (sc) => observeNow(deps, resourceId, sc.signal), { retry: DEFAULT_RETRY });
}

/** A clearer error for code paths that need a backend id. */
export function requireExternalId(r: Resource): string {
  if (!r.status.externalId) throw new InfraflowError('resources.not_provisioned', `resource ${r.kind} ${r.name} (${r.id}) has no backend object yet: provision it first`, 409);
  return r.status.externalId;
}

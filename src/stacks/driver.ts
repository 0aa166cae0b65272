import type { Clock } from '../core/clock.js';
import { ConflictError, InfraflowError, TimeoutError, isInfraflowError } from '../core/errors.js';
import type { StepContext } from '../engine/types.js';
import { ProviderError, reasonOf } from '../resources/errors.js';
import type { ProviderRegistry } from '../resources/registry.js';
import type { ResourceStore } from '../resources/store.js';
import type { ProviderCallContext, ReadResult, Resource } from '../resources/types.js';

/**
 * Drives one resource through its provider inside ONE engine step.
 *
 * The apply workflow works on many resources at once. The engine journals
 * operations by sequence number, so a workflow that starts several
 * multi-step sequences concurrently would interleave them differently on
 * replay. Each resource action is therefore a single journaled step that
 * creates (or updates, or deletes) and then polls until done. The step is
 * idempotent: a retry or a re-execution after a crash adopts the resource
 * row (by owner and address) and the backend object (by externalId, and by
 * the step's stable idempotency key, which every attempt reuses), so nothing
 * is created twice.
 */
export interface DriverDeps {
  resources: ResourceStore;
  registry: ProviderRegistry;
  clock: Clock;
}

export interface PollSettings {
  timeoutMs: number;
  /** Longest wait between two reads; reads start fast and back off to this. */
  intervalMs: number;
}

export const ADDRESS_LABEL = 'infraflow.dev/address';
export const STACK_LABEL = 'infraflow.dev/stack';

function cond(type: string, ok: boolean, reason: string, message: string) {
  return { type, status: ok ? ('True' as const) : ('False' as const), reason, message };
}

function callCtx(r: Resource, sc: StepContext, suffix: string): ProviderCallContext {
  return { idempotencyKey: `${sc.idempotencyKey}:${suffix}`, signal: sc.signal, project: r.project, resourceId: r.id, resourceName: r.name };
}

function readCtx(r: Resource, sc: StepContext): Omit<ProviderCallContext, 'idempotencyKey'> {
  return { signal: sc.signal, project: r.project, resourceId: r.id, resourceName: r.name };
}

/** Finds this stack's resource row for an address, or creates it; a name held by someone else is a collision. */
export async function ensureResource(deps: DriverDeps, input: { stackId: string; project: string; kind: string; name: string; address: string; spec: Record<string, unknown>; labels?: Record<string, string> }): Promise<Resource> {
  const owner = `stack:${input.stackId}`;
  try {
    return await deps.resources.create({
      kind: input.kind, name: input.name, project: input.project, spec: input.spec, owner,
      labels: { ...(input.labels ?? {}), [ADDRESS_LABEL]: input.address, [STACK_LABEL]: input.stackId },
    });
  } catch (e) {
    if (!isInfraflowError(e) || e.code !== 'resources.name_taken') throw e;
  }
  // the name exists: ours from an earlier attempt (adopt it), or someone else's (a collision)
  const existing = await deps.resources.getByName(input.project, input.kind, input.name);
  if (existing && existing.owner === owner && existing.labels[ADDRESS_LABEL] === input.address) {
    if (JSON.stringify(existing.spec) !== JSON.stringify(input.spec) && existing.status.phase !== 'ready') return deps.resources.updateSpec(existing.id, input.spec);
    return existing;
  }
  throw new ConflictError('stacks.name_collision', `${input.kind} name "${input.name}" (for ${input.address}) is already used by resource ${existing?.id ?? '(unknown)'}${existing?.owner ? ` owned by ${existing.owner}` : ''}: rename the stack or remove that resource`, {
    details: { address: input.address, name: input.name, holder: existing?.id ?? null },
  });
}

async function pollUntil(deps: DriverDeps, r: Resource, externalId: string, sc: StepContext, poll: PollSettings, want: 'ready' | 'absent', what: string): Promise<ReadResult> {
  const handler = deps.registry.handler(r.kind);
  const started = deps.clock.now();
  let wait = Math.min(20, poll.intervalMs);
  for (;;) {
    const read = await handler.read(externalId, readCtx(r, sc));
    if (want === 'ready') {
      if (read.state === 'ready') return read;
      if (read.state === 'failed' || read.state === 'absent') {
        const reason = read.failureReason ?? (read.state === 'absent' ? 'NotFound' : 'Internal');
        throw new ProviderError(reason, read.message ?? `${r.kind} ${externalId} ${read.state === 'absent' ? 'disappeared' : 'failed'} while ${what}`, { retryable: false, details: { externalId, kind: r.kind } });
      }
    } else {
      if (read.state === 'absent') return read;
      if (read.state === 'failed') throw new ProviderError(read.failureReason ?? 'Internal', read.message ?? `deleting ${r.kind} ${externalId} failed`, { retryable: false });
    }
    if (deps.clock.now() - started >= poll.timeoutMs) {
      throw new TimeoutError('stacks.resource_timeout', `${r.kind} ${r.name} was not ${want === 'ready' ? 'ready' : 'gone'} within ${Math.round(poll.timeoutMs / 1000)} s while ${what} (last state: ${read.state}${read.message ? `, ${read.message}` : ''})`, { retryable: false, details: { resourceId: r.id, externalId } });
    }
    await deps.clock.sleep(wait, sc.signal);
    wait = Math.min(poll.intervalMs, wait * 2);
  }
}

async function failWith(deps: DriverDeps, r: Resource, e: unknown, op: string): Promise<never> {
  const retryable = isInfraflowError(e) ? e.retryable : true;
  const reason = reasonOf(e) ?? (e instanceof TimeoutError ? 'Timeout' : 'Internal');
  const message = e instanceof Error ? e.message : String(e);
  try {
    await deps.resources.updateStatus(r.id, {
      ...(retryable ? {} : { phase: 'failed' as const }),
      conditions: [cond('Ready', false, reason, `${op} failed${retryable ? ' (will retry)' : ''}: ${message}`)],
      message,
    });
  } catch {
    /* keep the original error */
  }
  throw e;
}

/** Creates the backend object (or adopts the one an earlier attempt created) and waits until it is ready. */
export async function provision(deps: DriverDeps, resource: Resource, sc: StepContext, poll: PollSettings): Promise<Resource> {
  let r = resource;
  const handler = deps.registry.handler(r.kind);
  try {
    let externalId = r.status.externalId ?? null;
    if (externalId && r.status.phase === 'ready') return r;
    if (externalId) {
      const existing = await handler.read(externalId, readCtx(r, sc));
      if (existing.state === 'failed') {
        sc.log(`deleting failed ${r.kind} ${externalId} before creating it again`);
        await handler.delete(externalId, callCtx(r, sc, `cleanup:${externalId}`));
        await pollUntil(deps, r, externalId, sc, poll, 'absent', 'cleaning up');
        externalId = null;
      } else if (existing.state === 'absent' || existing.state === 'deleting') {
        externalId = null;
      } else {
        sc.log(`adopting ${r.kind} ${externalId} (${existing.state})`);
      }
    }
    if (!externalId) {
      const res = await handler.create(r.spec, callCtx(r, sc, 'create'));
      externalId = res.externalId;
      if (res.ready) {
        return await deps.resources.updateStatus(r.id, {
          phase: 'ready', externalId, ...(res.outputs ? { outputs: res.outputs } : {}), appliedSpec: r.spec, observedGeneration: r.generation,
          conditions: [cond('Provisioned', true, 'Created', `${r.kind} ${externalId} created`), cond('Ready', true, 'Ready', 'ready')],
          message: `${r.kind} ${externalId} is ready`,
        });
      }
      r = await deps.resources.updateStatus(r.id, {
        phase: 'creating', externalId, ...(res.outputs ? { outputs: res.outputs } : {}),
        conditions: [cond('Provisioned', false, 'Creating', `${r.kind} ${externalId} is being created`)],
      });
    }
    const read = await pollUntil(deps, r, externalId, sc, poll, 'ready', 'creating');
    return await deps.resources.updateStatus(r.id, {
      phase: 'ready', outputs: { ...r.status.outputs, ...read.outputs }, appliedSpec: r.spec, observedGeneration: r.generation,
      conditions: [cond('Provisioned', true, 'Created', `${r.kind} ${externalId} is ready`), cond('Ready', true, 'Ready', 'ready')],
      message: `${r.kind} ${externalId} is ready`,
    });
  } catch (e) {
    return failWith(deps, r, e, 'create');
  }
}

/** Applies a new spec in place and waits until the backend reports ready. */
export async function updateInPlace(deps: DriverDeps, resource: Resource, spec: Record<string, unknown>, sc: StepContext, poll: PollSettings): Promise<Resource> {
  let r = resource;
  const handler = deps.registry.handler(r.kind);
  const applied = (r.status.appliedSpec ?? r.spec) as Record<string, unknown>;
  // no shortcut when the specs look equal: the plan asked for an update (e.g. to repair drift)
  if (!r.status.externalId) {
    if (JSON.stringify(r.spec) !== JSON.stringify(spec)) r = await deps.resources.updateSpec(r.id, spec);
    return provision(deps, r, sc, poll);
  }
  try {
    if (JSON.stringify(r.spec) !== JSON.stringify(spec)) r = await deps.resources.updateSpec(r.id, spec);
    if (!handler.update) throw new InfraflowError('stacks.update_unsupported', `${r.kind} cannot be updated in place`, 409);
    const res = await handler.update(r.status.externalId!, r.spec, applied, callCtx(r, sc, `update:g${r.generation}`));
    r = await deps.resources.updateStatus(r.id, {
      phase: res.ready ? 'ready' : 'updating', ...(res.outputs ? { outputs: { ...r.status.outputs, ...res.outputs } } : {}),
      conditions: [cond('Provisioned', res.ready, res.ready ? 'Updated' : 'Updating', 'updating')],
      ...(res.ready ? { appliedSpec: r.spec, observedGeneration: r.generation } : {}),
    });
    if (res.ready) return r;
    const read = await pollUntil(deps, r, r.status.externalId!, sc, poll, 'ready', 'updating');
    return await deps.resources.updateStatus(r.id, {
      phase: 'ready', outputs: { ...r.status.outputs, ...read.outputs }, appliedSpec: r.spec, observedGeneration: r.generation,
      conditions: [cond('Provisioned', true, 'Updated', 'updated'), cond('Ready', true, 'Ready', 'ready')],
    });
  } catch (e) {
    return failWith(deps, r, e, 'update');
  }
}

/** Deletes the backend object (absent is fine), waits until it is gone, and marks the resource deleted. */
export async function remove(deps: DriverDeps, resourceId: string, sc: StepContext, poll: PollSettings): Promise<void> {
  const r = await deps.resources.find(resourceId);
  if (!r || r.status.phase === 'deleted') return;
  const externalId = r.status.externalId;
  if (externalId) {
    const handler = deps.registry.handler(r.kind);
    try {
      try {
        await handler.delete(externalId, callCtx(r, sc, `delete:${externalId}`));
      } catch (e) {
        if (reasonOf(e) !== 'NotFound') throw e;
      }
      await deps.resources.updateStatus(r.id, { phase: 'deleting', conditions: [cond('Ready', false, 'Deleting', `${r.kind} ${externalId} is being deleted`)] });
      await pollUntil(deps, r, externalId, sc, poll, 'absent', 'deleting');
    } catch (e) {
      return failWith(deps, r, e, 'delete');
    }
  }
  await deps.resources.updateStatus(r.id, { phase: 'deleted', conditions: [cond('Ready', false, 'Deleted', externalId ? `${r.kind} ${externalId} deleted` : 'nothing was created on the backend')] });
}

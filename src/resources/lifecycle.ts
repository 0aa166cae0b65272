import { ConflictError } from '../core/errors.js';
import { defineWorkflow, type EngineApi, type RunInfo } from '../engine/types.js';
import { deleteResource, provisionResource, updateResource, type ResourceDeps } from './steps.js';
import type { Resource } from './types.js';

/**
 * Single resources driven on their own (`POST /resources`, `PATCH`,
 * `DELETE`, `infraflow resource …`), as `openstack network create` or a
 * Crossplane managed resource: one durable run per change, through the
 * same resource steps stacks use. Runs of one resource go through the
 * `resources` queue keyed by the resource id, so its create, updates and
 * delete run one after another, in the order they were asked for.
 */
export const RESOURCE_QUEUE = 'resources';
export const RESOURCE_WORKFLOWS = { provision: 'resource.provision', update: 'resource.update', delete: 'resource.delete' } as const;
export type ResourceAction = keyof typeof RESOURCE_WORKFLOWS;

interface Input { id: string }

export function resourceWorkflows(deps: ResourceDeps) {
  return [
    defineWorkflow({
      name: RESOURCE_WORKFLOWS.provision,
      version: 1,
      async run(ctx, input: Input) {
        ctx.progress({ stage: 'creating', waitingFor: `create ${input.id}` });
        const r = await provisionResource(ctx, deps, input.id);
        return { id: r.id, phase: r.status.phase, externalId: r.status.externalId ?? null };
      },
    }),
    defineWorkflow({
      name: RESOURCE_WORKFLOWS.update,
      version: 1,
      async run(ctx, input: Input) {
        const out = await updateResource(ctx, deps, input.id);
        return { id: input.id, action: out.action, changed: out.changed, phase: out.resource.status.phase };
      },
    }),
    defineWorkflow({
      name: RESOURCE_WORKFLOWS.delete,
      version: 1,
      async run(ctx, input: Input) {
        await deleteResource(ctx, deps, input.id);
        return { id: input.id, phase: 'deleted' };
      },
    }),
  ];
}

/** Resources a stack (or another owner) manages change through their owner, never one by one. */
export function assertUnowned(r: Resource, action: string): void {
  if (r.owner) {
    throw new ConflictError('resources.owned', `resource ${r.id} (${r.kind} ${r.name}) is managed by ${r.owner}: ${action} it by changing its owner (e.g. the stack document), not directly`, { details: { id: r.id, owner: r.owner } });
  }
}

/** Starts the run that applies `action` to a resource (queued behind earlier runs of the same resource). */
export function startResourceRun(engine: Pick<EngineApi, 'start'>, action: ResourceAction, r: Resource): Promise<RunInfo> {
  return engine.start(RESOURCE_WORKFLOWS[action], { id: r.id } satisfies Input, {
    queue: RESOURCE_QUEUE, concurrencyKey: r.id, labels: { project: r.project, resource: r.id, kind: r.kind },
  });
}

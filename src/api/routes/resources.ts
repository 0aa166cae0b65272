import { z } from 'zod';
import { InfraflowError, NotFoundError, ValidationError } from '../../core/errors.js';
import { redact } from '../../core/secrets.js';
import { dnsNameSchema, labelKeySchema, labelsSchema, labelValueSchema } from '../../core/names.js';
import type { Resource } from '../../resources/types.js';
import type { ResourceStore } from '../../resources/store.js';
import { KINDS } from '../../resources/kinds.js';
import { assertUnowned, startResourceRun, type ResourceAction } from '../../resources/lifecycle.js';
import { defineRoute, encodeCursor, decodeCursor, ID_PARAM, PageQuery, projectFrom, type AnyRoute, type ApiDeps, type ResolvedProject } from '../route.js';
import { lastEventId, streamEvents } from '../sse.js';
import { EventOut } from './events.js';
import { parseLabels, runView } from './runs.js';

const PHASES = ['pending', 'creating', 'ready', 'updating', 'deleting', 'deleted', 'failed'] as const;

export const ResourceOut = z.object({
  id: z.string(), kind: z.string(), name: z.string(), project: z.string(), spec: z.record(z.string(), z.unknown()),
  status: z.object({
    phase: z.enum(PHASES), conditions: z.array(z.object({ type: z.string(), status: z.string(), reason: z.string(), message: z.string(), lastTransitionTime: z.number() })),
    outputs: z.record(z.string(), z.unknown()), externalId: z.string().nullable().optional(), observedGeneration: z.number(),
  }).loose(),
  labels: z.record(z.string(), z.string()), owner: z.string().nullable().optional(), generation: z.number(), createdAt: z.number(), updatedAt: z.number(),
}).meta({ id: 'Resource' });

/** A resource as the API shows it: secret-named fields of spec and outputs redacted (values come only from /secrets). */
export function resourceView(r: Resource): z.infer<typeof ResourceOut> {
  return redact(r) as z.infer<typeof ResourceOut>;
}

export function resourceRoutes(deps: ApiDeps, resources: ResourceStore): AnyRoute[] {
  const tags = ['resources'];
  const byId = async ({ params }: { params: { id: string } }): Promise<ResolvedProject> => {
    const r = await resources.find(params.id);
    return r ? { project: r.project, object: r } : { missing: true };
  };
  const notFound = ({ params }: { params: { id: string } }) => new NotFoundError('resources.not_found', `resource ${params.id} does not exist`);
  const read = { scope: 'project', permission: 'resources:read' } as const;
  return [
    defineRoute({
      method: 'GET', url: '/resources', summary: 'List resources you can see (filters: project, kind, phase, owner, labels, name prefix)', tags, policy: read,
      project: projectFrom('query'),
      schema: {
        querystring: PageQuery.extend({
          project: z.string().max(64).optional(), kind: z.string().max(200).optional().describe('one kind or several separated by commas'),
          phase: z.string().max(200).optional(), owner: z.string().max(200).optional(), labels: z.string().max(1000).optional().describe('k=v pairs separated by commas'),
          name: z.string().max(200).optional().describe('name prefix'), includeDeleted: z.enum(['true', 'false']).optional(),
        }),
        response: { 200: z.object({ items: z.array(ResourceOut), nextCursor: z.string().nullable() }) },
      },
      handler: async ({ query, project, visible }) => {
        const phases = query.phase?.split(',').filter(Boolean);
        const bad = phases?.find((p) => !PHASES.includes(p as (typeof PHASES)[number]));
        if (bad) throw new ValidationError('api.invalid_request', `phase: unknown phase ${bad}; use one of ${PHASES.join(', ')}`, { details: { field: 'phase' } });
        const vis = typeof project === 'string' ? [project] : visible();
        const base = {
          ...(query.kind ? { kind: query.kind.includes(',') ? query.kind.split(',') : query.kind } : {}),
          ...(phases?.length ? { phase: phases as Resource['status']['phase'][] } : {}),
          ...(query.owner ? { owner: query.owner } : {}), ...(parseLabels(query.labels) ? { labels: parseLabels(query.labels) } : {}),
          ...(query.name ? { namePrefix: query.name } : {}), includeDeleted: query.includeDeleted === 'true',
          ...(decodeCursor(query.cursor) ? { after: decodeCursor(query.cursor) } : {}),
        };
        let items: Resource[];
        let next: string | null;
        if (vis === 'all' || vis.length === 1) {
          const page = await resources.list({ ...base, ...(vis === 'all' ? {} : { project: vis[0] }), limit: query.limit });
          items = page.items;
          next = page.nextCursor ?? null;
        } else {
          const pages = await Promise.all(vis.map((p) => resources.list({ ...base, project: p, limit: query.limit + 1 })));
          const all = pages.flatMap((p) => p.items).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
          items = all.slice(0, query.limit);
          next = all.length > query.limit ? items[items.length - 1]!.id : null;
        }
        return { items: items.map(resourceView), nextCursor: encodeCursor(next) };
      },
    }),
    defineRoute({
      method: 'GET', url: '/resources/:id', summary: 'Get a resource (ETag: its generation)', tags, policy: read, project: byId, notFound,
      schema: { params: ID_PARAM, response: { 200: ResourceOut } },
      handler: async ({ params, etag, object }) => {
        const r = (object as Resource | undefined) ?? await resources.get(params.id);
        etag(r.generation);
        return resourceView(r);
      },
    }),
    defineRoute({
      method: 'GET', url: '/resources/:id/events', summary: 'A resource\'s events (created, phase and condition changes, deleted)', tags, policy: { scope: 'project', permission: 'events:read' }, project: byId, notFound,
      schema: { params: ID_PARAM, querystring: z.object({ after: z.coerce.number().int().min(0).optional(), limit: z.coerce.number().int().min(1).max(1000).default(100) }), response: { 200: z.object({ items: z.array(EventOut), nextCursor: z.string().nullable() }) } },
      handler: async ({ params, query }) => {
        if (!deps.engine) return { items: [], nextCursor: null };
        const items = await deps.engine.events({ subject: params.id, afterSeq: query.after ?? 0, limit: query.limit });
        const r = await resources.get(params.id);
        return { items: items.map((e) => ({ ...redact(e), project: r.project })), nextCursor: items.length === query.limit ? String(items[items.length - 1]!.seq) : null };
      },
    }),
    ...(deps.engine ? [defineRoute({
      method: 'GET', url: '/resources/:id/events/stream', summary: 'Server-sent events of a resource; resumable with Last-Event-ID', tags, policy: { scope: 'project', permission: 'events:read' }, project: byId, notFound, sse: true,
      schema: { params: ID_PARAM, querystring: z.object({ after: z.coerce.number().int().min(0).optional() }) },
      handler: async ({ params, query, req, reply }) => {
        await streamEvents(req, reply, { engine: deps.engine!, afterSeq: lastEventId(req, query.after), subject: params.id, filter: (e) => e.subject === params.id });
      },
    })] : []),
    defineRoute({
      method: 'GET', url: '/resources/:id/secrets', summary: 'Reveal a resource\'s secrets (admin passwords, kubeconfigs…); secrets:read, every read audited', tags, policy: { scope: 'project', permission: 'secrets:read' }, project: byId, notFound, audit: 'always',
      schema: { params: ID_PARAM, response: { 200: z.object({ id: z.string(), secrets: z.record(z.string(), z.string()) }) } },
      handler: async ({ params, reply, auditNote }) => {
        const secrets = await resources.getSecrets(params.id);
        auditNote(`revealed resource secrets: ${Object.keys(secrets).join(', ') || '(none)'}`);
        reply.header('cache-control', 'no-store');
        return { id: params.id, secrets };
      },
    }),
    ...(deps.engine ? mutatingRoutes(deps, resources, byId, notFound) : []),
  ];
}

/** RFC 7396 JSON merge patch: objects merge, null removes a key, anything else replaces. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch;
  const out: Record<string, unknown> = target !== null && typeof target === 'object' && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

const NAME = dnsNameSchema(253);

/**
 * Single resources driven one by one (`openstack network create` style):
 * each change is a durable run in the `resources` queue, one at a time per
 * resource. Resources a stack manages are changed through the stack.
 */
function mutatingRoutes(deps: ApiDeps, resources: ResourceStore, byId: (i: { params: { id: string } }) => Promise<ResolvedProject>, notFound: (i: { params: { id: string } }) => InfraflowError): AnyRoute[] {
  const tags = ['resources'];
  const write = { scope: 'project', permission: 'resources:write' } as const;
  const engine = deps.engine!;
  const started = async (action: ResourceAction, r: Resource) => ({ resource: resourceView(r), run: runView(await startResourceRun(engine, action, r)) });
  return [
    defineRoute({
      method: 'POST', url: '/resources', tags, policy: write, project: projectFrom('body'),
      summary: 'Create a resource of a kind (202: the resource, pending, and the run that provisions it through its provider)',
      schema: {
        body: z.strictObject({
          project: z.string().min(1).max(64), kind: z.string().min(1).max(200).describe(`one of ${Object.keys(KINDS).join(', ')}`), name: NAME,
          spec: z.record(z.string(), z.unknown()).default({}), labels: labelsSchema.default({}),
        }),
      },
      handler: async ({ body, reply, auditNote }) => {
        if (!KINDS[body.kind]) throw new ValidationError('resources.unknown_kind', `kind: unknown kind ${body.kind}; use one of ${Object.keys(KINDS).join(', ')}`, { details: { field: 'kind' } });
        const r = await resources.create({ kind: body.kind, name: body.name, project: body.project, spec: body.spec, labels: body.labels });
        auditNote(`${r.kind} ${r.name} (${r.id})`);
        try {
          const out = await started('provision', r);
          reply.code(202);
          return out;
        } catch (e) {
          // no run, no resource: free the name again (nothing exists on the backend yet)
          await resources.delete(r.id).catch(() => {});
          throw e;
        }
      },
    }),
    defineRoute({
      method: 'PATCH', url: '/resources/:id', tags, policy: write, project: byId, notFound,
      summary: 'Change a resource\'s spec (JSON merge patch) and labels; If-Match: its generation. 202 with the run that applies it in place or replaces it; 200 without a run when nothing changed',
      schema: { params: ID_PARAM, body: z.strictObject({ spec: z.record(z.string(), z.unknown()).optional(), labels: z.record(labelKeySchema, labelValueSchema.nullable()).optional().describe('labels to set; null removes one') }) },
      handler: async ({ params, body, reply, ifMatch, etag, auditNote }) => {
        const current = await resources.get(params.id);
        assertUnowned(current, 'change');
        const expected = ifMatch();
        if (expected !== undefined && expected !== current.generation) {
          throw new InfraflowError('api.precondition_failed', `resource ${params.id} has changed (generation ${current.generation}, If-Match said ${expected}); fetch it again and retry with the new ETag`, 412, { details: { generation: current.generation } });
        }
        const spec = body.spec ? mergePatch(current.spec, body.spec) as Record<string, unknown> : current.spec;
        const labels = body.labels ? mergePatch(current.labels, body.labels) as Record<string, string> : undefined;
        if (JSON.stringify(spec) === JSON.stringify(current.spec) && (!labels || JSON.stringify(labels) === JSON.stringify(current.labels))) {
          etag(current.generation);
          return { resource: resourceView(current), run: null };
        }
        const r = await resources.updateSpec(params.id, spec, { expectedGeneration: current.generation, ...(labels ? { labels } : {}) });
        auditNote(`generation ${r.generation}`);
        etag(r.generation);
        reply.code(202);
        return started('update', r);
      },
    }),
    defineRoute({
      method: 'DELETE', url: '/resources/:id', tags, policy: write, project: byId, notFound,
      summary: 'Delete a resource from its backend (202 with the run; it runs after any change still in progress)',
      schema: { params: ID_PARAM },
      handler: async ({ params, reply, auditNote }) => {
        const r = await resources.get(params.id);
        assertUnowned(r, 'delete');
        if (r.status.phase === 'deleted') throw new NotFoundError('resources.not_found', `resource ${params.id} is already deleted`);
        auditNote(`${r.kind} ${r.name}`);
        reply.code(202);
        return started('delete', r);
      },
    }),
  ];
}

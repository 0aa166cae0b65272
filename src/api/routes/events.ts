import { z } from 'zod';
import { NotFoundError } from '../../core/errors.js';
import { redact } from '../../core/secrets.js';
import type { EngineEvent } from '../../engine/types.js';
import { defineRoute, projectFrom, type AnyRoute, type ApiDeps } from '../route.js';
import { EventProjects } from '../visibility.js';
import { lastEventId, streamEvents } from '../sse.js';

export const EventOut = z.object({
  seq: z.number(), type: z.string(), subject: z.string(), runId: z.string().nullable().optional(), project: z.string().nullable(), data: z.record(z.string(), z.unknown()), at: z.number(),
}).meta({ id: 'Event' });

const EventQuery = z.object({
  project: z.string().max(64).optional(),
  type: z.string().max(200).optional().describe('exact type, or a prefix ending in * (e.g. run.*)'),
  subject: z.string().max(200).optional(),
  after: z.coerce.number().int().min(0).optional().describe('events with seq greater than this'),
});

function typeMatch(type: string | undefined): (e: EngineEvent) => boolean {
  if (!type) return () => true;
  if (type.endsWith('*')) {
    const prefix = type.slice(0, -1);
    return (e) => e.type.startsWith(prefix);
  }
  return (e) => e.type === type;
}

export function eventRoutes(deps: ApiDeps): AnyRoute[] {
  const engine = deps.engine!;
  const projects = new EventProjects(engine);
  const tags = ['events'];
  const policy = { scope: 'project', permission: 'events:read' } as const;
  /** A filter that passes only events of projects the caller may read (and optionally one project). */
  const visibleFilter = (vis: 'all' | string[], only: string | undefined) => async (e: EngineEvent) => {
    if (vis === 'all' && only === undefined) return true;
    const p = await projects.projectOf(e);
    if (only !== undefined) return p === only;
    return p !== null && (vis as string[]).includes(p);
  };
  return [
    defineRoute({
      method: 'GET', url: '/events', summary: 'Events you can see, oldest first from `after` (cursor: the last seq)', tags, policy,
      project: projectFrom('query'),
      schema: {
        querystring: EventQuery.extend({ limit: z.coerce.number().int().min(1).max(1000).default(100) }),
        response: { 200: z.object({ items: z.array(EventOut), nextCursor: z.string().nullable() }) },
      },
      handler: async ({ query, project, visible }) => {
        const allowed = visibleFilter(typeof project === 'string' ? [project] : visible(), typeof project === 'string' ? project : undefined);
        const matchType = typeMatch(query.type);
        const out: (EngineEvent & { project: string | null })[] = [];
        let after = query.after ?? 0;
        let scanned = 0;
        // scan forward in batches until the page is full (bounded, so one call never reads the whole log)
        while (out.length < query.limit && scanned < 20_000) {
          const batch = await engine.events({ afterSeq: after, limit: 1000, ...(query.subject ? { subject: query.subject } : {}), ...(query.type && !query.type.endsWith('*') ? { types: [query.type] } : {}) });
          for (const e of batch) {
            after = e.seq;
            if (!matchType(e) || !(await allowed(e))) continue;
            out.push({ ...redact(e), project: await projects.projectOf(e) });
            if (out.length === query.limit) break;
          }
          scanned += batch.length;
          if (batch.length < 1000) break;
        }
        const more = out.length === query.limit || scanned >= 20_000;
        return { items: out, nextCursor: more ? String(after) : null };
      },
    }),
    defineRoute({
      method: 'GET', url: '/events/stream', summary: 'Server-sent events you can see (filters: project, type, subject); resumable with Last-Event-ID', tags, policy, sse: true,
      project: projectFrom('query'),
      schema: { querystring: EventQuery },
      handler: async ({ query, project, visible, req, reply }) => {
        const allowed = visibleFilter(typeof project === 'string' ? [project] : visible(), typeof project === 'string' ? project : undefined);
        const matchType = typeMatch(query.type);
        await streamEvents(req, reply, {
          engine, afterSeq: lastEventId(req, query.after), ...(query.subject ? { subject: query.subject } : {}),
          filter: async (e) => matchType(e) && (query.subject === undefined || e.subject === query.subject) && (await allowed(e)),
        });
      },
    }),
    defineRoute({
      method: 'GET', url: '/projects/:id/events/stream', summary: 'Server-sent events of one project; resumable with Last-Event-ID', tags, policy, sse: true,
      project: async ({ params }) => {
        const p = await deps.iam.findProject(params.id);
        return p ? { project: p.name } : { missing: true };
      },
      notFound: ({ params }) => new NotFoundError('iam.project_not_found', `project ${params.id} not found`),
      schema: { params: z.object({ id: z.string().min(1).max(200) }), querystring: EventQuery.omit({ project: true, subject: true }) },
      handler: async ({ query, project, req, reply }) => {
        const matchType = typeMatch(query.type);
        await streamEvents(req, reply, {
          engine, afterSeq: lastEventId(req, query.after),
          filter: async (e) => matchType(e) && (await projects.projectOf(e)) === project,
        });
      },
    }),
  ];
}

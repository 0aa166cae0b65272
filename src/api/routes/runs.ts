import { z } from 'zod';
import { NotFoundError, ValidationError } from '../../core/errors.js';
import { redact } from '../../core/secrets.js';
import { TERMINAL_STATUSES, type EngineApi, type RunFilter, type RunInfo, type RunStatus } from '../../engine/types.js';
import { defineRoute, encodeCursor, decodeCursor, ID_PARAM, PageQuery, projectFrom, type AnyRoute, type ApiDeps, type ResolvedProject } from '../route.js';
import { runProject } from '../visibility.js';
import { lastEventId, streamEvents } from '../sse.js';

const STATUSES = ['pending', 'running', 'waiting', 'succeeded', 'failed', 'cancelling', 'cancelled'] as const;

export const RunOut = z.object({
  id: z.string(), workflow: z.string(), version: z.number(), status: z.enum(STATUSES), project: z.string().nullable(),
  input: z.unknown(), output: z.unknown().optional(), error: z.unknown().optional(), labels: z.record(z.string(), z.string()), queue: z.string(),
  concurrencyKey: z.string().nullable().optional(), parentRunId: z.string().nullable().optional(), progress: z.unknown().optional(),
  createdAt: z.number(), startedAt: z.number().nullable().optional(), finishedAt: z.number().nullable().optional(), updatedAt: z.number(),
  worker: z.string().nullable().optional().describe('the worker (host-pid-nonce) executing the run now, or the last one that did'),
  takenOverAt: z.number().nullable().optional().describe('when the run was last taken over from a worker that died or lost its lease'),
  takenOverFrom: z.string().nullable().optional().describe('the worker it was taken over from'),
}).meta({ id: 'Run' });

export const StepOut = z.object({
  seq: z.number(), name: z.string(), kind: z.string(), status: z.string(), attempts: z.number(), output: z.unknown().optional(), error: z.unknown().optional(),
  logs: z.array(z.object({ at: z.number(), message: z.string(), data: z.unknown().optional() })), startedAt: z.number(), finishedAt: z.number().nullable().optional(),
  worker: z.string().nullable().optional().describe('the worker that executed the step'),
}).meta({ id: 'Step' });

/** A run as the API shows it: secret-named fields of input and output redacted. */
export function runView(r: RunInfo): z.infer<typeof RunOut> {
  return redact({ ...r, project: runProject(r) }) as z.infer<typeof RunOut>;
}

export function parseLabels(s: string | undefined): Record<string, string> | undefined {
  if (!s) return undefined;
  const out: Record<string, string> = {};
  for (const part of s.split(',')) {
    const i = part.indexOf('=');
    if (i > 0) out[part.slice(0, i)] = part.slice(i + 1);
  }
  return out;
}

/** Lists runs across several projects, merged in id order, with one cursor. */
export async function listRunsAcross(engine: EngineApi, projects: 'all' | string[], filter: RunFilter, limit: number): Promise<{ items: RunInfo[]; next: string | null }> {
  let rows: RunInfo[];
  if (projects === 'all') rows = await engine.list({ ...filter, limit: limit + 1 });
  else {
    const lists = await Promise.all(projects.map((p) => engine.list({ ...filter, labels: { ...filter.labels, project: p }, limit: limit + 1 })));
    rows = lists.flat();
  }
  rows.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const items = rows.slice(0, limit);
  return { items, next: rows.length > limit ? items[items.length - 1]!.id : null };
}

export function runRoutes(deps: ApiDeps): AnyRoute[] {
  const engine = deps.engine!;
  const tags = ['runs'];
  const byId = async ({ params }: { params: { id: string } }): Promise<ResolvedProject> => {
    try {
      const run = await engine.get(params.id);
      const p = runProject(run);
      return p === null ? { system: true, object: run } : { project: p, object: run };
    } catch (e) {
      if (e instanceof NotFoundError) return { missing: true };
      throw e;
    }
  };
  const notFound = ({ params }: { params: { id: string } }) => new NotFoundError('engine.run_not_found', `run ${params.id} not found`);
  const read = { scope: 'project', permission: 'runs:read' } as const;
  const operate = { scope: 'project', permission: 'runs:operate' } as const;
  return [
    defineRoute({
      method: 'GET', url: '/runs', summary: 'List runs you can see (filters: project, workflow, status, labels)', tags, policy: read,
      project: projectFrom('query'),
      schema: {
        querystring: PageQuery.extend({
          project: z.string().max(64).optional(), workflow: z.string().max(200).optional(),
          status: z.string().max(200).optional().describe('one status or several separated by commas'),
          labels: z.string().max(1000).optional().describe('k=v pairs separated by commas'), parentRunId: z.string().max(200).optional(),
        }),
        response: { 200: z.object({ items: z.array(RunOut), nextCursor: z.string().nullable() }) },
      },
      handler: async ({ query, project, visible }) => {
        const statuses = query.status?.split(',').filter(Boolean) as RunStatus[] | undefined;
        const bad = statuses?.filter((s) => !STATUSES.includes(s as (typeof STATUSES)[number]));
        if (bad?.length) throw new ValidationError('api.invalid_request', `status: unknown status ${bad[0]}; use one of ${STATUSES.join(', ')}`, { details: { field: 'status' } });
        const filter: RunFilter = {
          ...(query.workflow ? { workflow: query.workflow } : {}), ...(statuses?.length ? { status: statuses } : {}),
          ...(parseLabels(query.labels) ? { labels: parseLabels(query.labels) } : {}),
          ...(query.parentRunId ? { parentRunId: query.parentRunId } : {}),
          ...(decodeCursor(query.cursor) ? { after: decodeCursor(query.cursor) } : {}),
        };
        const page = await listRunsAcross(engine, typeof project === 'string' ? [project] : visible(), filter, query.limit);
        return { items: page.items.map(runView), nextCursor: encodeCursor(page.next) };
      },
    }),
    defineRoute({
      method: 'GET', url: '/runs/:id', summary: 'Get a run', tags, policy: read, project: byId, notFound,
      schema: { params: ID_PARAM, response: { 200: RunOut } },
      handler: async ({ params, etag, object }) => {
        const r = (object as RunInfo | undefined) ?? await engine.get(params.id);
        etag(r.updatedAt);
        return runView(r);
      },
    }),
    defineRoute({
      method: 'GET', url: '/runs/:id/timeline', summary: 'A run\'s steps in order, with attempts, results and errors', tags, policy: read, project: byId, notFound,
      schema: { params: ID_PARAM, response: { 200: z.object({ run: RunOut, steps: z.array(StepOut) }) } },
      handler: async ({ params }) => {
        const [run, steps] = await Promise.all([engine.get(params.id), engine.timeline(params.id)]);
        return { run: runView(run), steps: redact(steps) };
      },
    }),
    defineRoute({
      method: 'GET', url: '/runs/:id/logs', summary: 'A run\'s log lines, from every step, in time order', tags, policy: read, project: byId, notFound,
      schema: { params: ID_PARAM, querystring: z.object({ step: z.string().max(200).optional() }), response: { 200: z.object({ items: z.array(z.object({ at: z.number(), step: z.string(), message: z.string(), data: z.unknown().optional() })) }) } },
      handler: async ({ params, query }) => {
        const steps = await engine.timeline(params.id);
        const items = steps.filter((s) => !query.step || s.name === query.step)
          .flatMap((s) => s.logs.map((l) => ({ at: l.at, step: s.name, message: l.message, ...(l.data ? { data: redact(l.data) } : {}) })))
          .sort((a, b) => a.at - b.at);
        return { items };
      },
    }),
    defineRoute({
      method: 'GET', url: '/runs/:id/events', summary: 'A run\'s events (run and step changes), oldest first from `after`', tags, policy: { scope: 'project', permission: 'events:read' }, project: byId, notFound,
      schema: { params: ID_PARAM, querystring: z.object({ after: z.coerce.number().int().min(0).optional(), limit: z.coerce.number().int().min(1).max(1000).default(200) }) },
      handler: async ({ params, query }) => {
        const items = await engine.events({ subject: params.id, afterSeq: query.after ?? 0, limit: query.limit });
        return { items: items.map((e) => redact(e)), nextCursor: items.length === query.limit ? String(items[items.length - 1]!.seq) : null };
      },
    }),
    defineRoute({
      method: 'GET', url: '/runs/:id/events/stream', summary: 'Server-sent events of a run; resumable with Last-Event-ID; ends when the run is finished', tags, policy: { scope: 'project', permission: 'events:read' }, project: byId, notFound, sse: true,
      schema: { params: ID_PARAM, querystring: z.object({ after: z.coerce.number().int().min(0).optional() }) },
      handler: async ({ params, query, req, reply }) => {
        const id = params.id;
        const terminal = async () => TERMINAL_STATUSES.includes((await engine.get(id)).status);
        await streamEvents(req, reply, {
          engine, afterSeq: lastEventId(req, query.after),
          filter: (e) => e.runId === id || e.subject === id,
          endAfter: async (e) => (e.subject === id && (e.type === 'run.succeeded' || e.type === 'run.failed' || e.type === 'run.cancelled') ? terminal() : false),
          endNow: terminal,
        });
      },
    }),
    defineRoute({
      method: 'POST', url: '/runs/:id/cancel', summary: 'Cancel a run (its compensations run)', tags, policy: operate, project: byId, notFound,
      schema: { params: ID_PARAM, body: z.strictObject({ reason: z.string().max(1000).optional() }).nullish(), response: { 200: RunOut } },
      handler: async ({ params, body, principal }) => runView(await engine.cancel(params.id, body?.reason ?? `cancelled by ${principal.userName}`)),
    }),
    defineRoute({
      method: 'POST', url: '/runs/:id/retry', summary: 'Re-run a failed run from its failed step', tags, policy: operate, project: byId, notFound,
      schema: { params: ID_PARAM, response: { 200: RunOut } },
      handler: async ({ params, principal }) => runView(await engine.retry(params.id, { actor: principal.userName })),
    }),
    defineRoute({
      method: 'POST', url: '/runs/:id/skip', summary: 'Mark a failed or stuck step done with a supplied result', tags, policy: operate, project: byId, notFound,
      schema: { params: ID_PARAM, body: z.strictObject({ step: z.string().min(1).max(200), result: z.unknown().optional() }), response: { 200: RunOut } },
      handler: async ({ params, body, principal }) => runView(await engine.skipStep(params.id, body.step, body.result ?? null, { actor: principal.userName })),
    }),
    defineRoute({
      method: 'POST', url: '/runs/:id/signal', summary: 'Send a named signal with a payload to a waiting run', tags, policy: operate, project: byId, notFound,
      schema: { params: ID_PARAM, body: z.strictObject({ name: z.string().min(1).max(200), payload: z.unknown().optional() }) },
      handler: async ({ params, body, reply }) => {
        await engine.signal(params.id, body.name, body.payload ?? null);
        reply.code(202);
        return { accepted: true };
      },
    }),
    defineRoute({
      method: 'POST', url: '/runs/:id/approve', summary: 'Approve (or reject) a run waiting for approval: sends the signal "approve"', tags, policy: operate, project: byId, notFound,
      schema: { params: ID_PARAM, body: z.strictObject({ approved: z.boolean().default(true), comment: z.string().max(1000).optional() }).nullish() },
      handler: async ({ params, body, principal, reply }) => {
        await engine.signal(params.id, 'approve', { approved: body?.approved ?? true, by: principal.userName, ...(body?.comment ? { comment: body.comment } : {}) });
        reply.code(202);
        return { accepted: true };
      },
    }),
  ];
}

import { z } from 'zod';
import { parseDocument } from 'yaml';
import { NotFoundError, ValidationError } from '../../core/errors.js';
import { redact } from '../../core/secrets.js';
import type { EngineEvent, RunInfo } from '../../engine/types.js';
import { defineRoute, encodeCursor, decodeCursor, PageQuery, projectFrom, type AnyRoute, type ApiDeps, type ResolvedProject } from '../route.js';
import { EventProjects } from '../visibility.js';
import { lastEventId, streamEvents } from '../sse.js';
import { runView } from './runs.js';

/**
 * The part of the stacks module the API uses (src/stacks/index.ts `Stacks`),
 * kept narrow so the API does not depend on the module's internals.
 */
export interface StackRowLike { id: string; project: string; name: string; revision: number; status: string; lastRunId: string | null; [k: string]: unknown }
export interface StacksApi {
  stacks: { find(idOrName: string, project?: string): Promise<StackRowLike | undefined> };
  parse(document: string | Record<string, unknown>, opts?: { file?: string; params?: Record<string, unknown> }): { model: { project: string; name: string } };
  plan(input: { document: string | Record<string, unknown>; file?: string; params?: Record<string, unknown>; destroy?: boolean }): Promise<unknown>;
  planDestroy(stack: string, opts?: { project?: string }): Promise<unknown>;
  apply(input: { document: string | Record<string, unknown>; file?: string; params?: Record<string, unknown>; expectedRevision?: number; createdBy?: string }): Promise<{ stack: StackRowLike; revision: number; run: RunInfo; plan: unknown }>;
  destroy(stack: string, opts?: { project?: string }): Promise<{ stack: StackRowLike; run: RunInfo; plan: unknown }>;
  get(stack: string, opts?: { project?: string }): Promise<StackRowLike>;
  list(filter?: { project?: string; after?: string; limit?: number }): Promise<StackRowLike[]>;
  resources(stack: string, opts?: { project?: string }): Promise<unknown[]>;
  revisions(stack: string, opts?: { project?: string }): Promise<unknown[]>;
  document(stack: string, opts?: { project?: string; revision?: number }): Promise<unknown>;
  runs(stack: string, opts?: { project?: string; limit?: number }): Promise<RunInfo[]>;
  cancel(stack: string, opts?: { project?: string; reason?: string }): Promise<RunInfo>;
  retry(stack: string, opts?: { project?: string }): Promise<RunInfo>;
  approve(stack: string, step: { scope?: string; name: string }, payload: { approved: boolean; by?: string; comment?: string }, opts?: { project?: string }): Promise<unknown>;
  observe(stack: string, opts?: { project?: string }): Promise<unknown>;
  reconcile(stack: string, opts?: { project?: string }): Promise<RunInfo>;
  remove(stack: string, opts?: { project?: string }): Promise<void>;
}

export function isStacksApi(x: unknown): x is StacksApi {
  const s = x as Partial<StacksApi> | undefined;
  return !!s && typeof s.apply === 'function' && typeof s.plan === 'function' && typeof s.destroy === 'function' && typeof s.parse === 'function' && !!s.stacks;
}

/** Renders a plan as text when the module offers it. */
type Render = ((plan: any) => string) | undefined;

const DocumentBody = z.strictObject({
  document: z.union([z.string().min(1).max(1_000_000), z.record(z.string(), z.unknown())]).describe('the stack document: YAML or JSON text, or the parsed object'),
  file: z.string().max(500).optional().describe('file name shown in error positions'),
  params: z.record(z.string(), z.unknown()).optional(),
  project: z.string().min(1).max(64).optional().describe('project for a document that names none (metadata.project); must match when it does'),
});

/** Applies `project` to a document that names none; refuses a contradiction. */
export function withProject(doc: string | Record<string, unknown>, project: string | undefined): string | Record<string, unknown> {
  if (!project) return doc;
  if (typeof doc === 'string') {
    const d = parseDocument(doc);
    if (d.errors.length) return doc; // the module reports the syntax error with its position
    const cur = d.getIn(['metadata', 'project']);
    if (cur === undefined || cur === null) {
      if (d.getIn(['metadata']) === undefined) return doc;
      d.setIn(['metadata', 'project'], project);
      return String(d);
    }
    if (cur !== project) throw new ValidationError('api.project_mismatch', `project: the document says metadata.project: ${String(cur)}, but the request says ${project}; make them agree`, { details: { field: 'project' } });
    return doc;
  }
  const meta = (doc.metadata ?? {}) as Record<string, unknown>;
  if (meta.project === undefined) return { ...doc, metadata: { ...meta, project } };
  if (meta.project !== project) throw new ValidationError('api.project_mismatch', `project: the document says metadata.project: ${String(meta.project)}, but the request says ${project}; make them agree`, { details: { field: 'project' } });
  return doc;
}

export function stackRoutes(deps: ApiDeps, stacks: StacksApi, render: Render): AnyRoute[] {
  const tags = ['stacks'];
  const projects = deps.engine ? new EventProjects(deps.engine) : undefined;
  const Params = z.object({ id: z.string().min(1).max(200) });
  const ProjectQuery = z.object({ project: z.string().max(64).optional().describe('needed when the stack is named rather than given by id') });
  const byId = async ({ params, query }: { params: { id: string }; query: { project?: string | undefined } }): Promise<ResolvedProject> => {
    const s = await stacks.stacks.find(params.id, query?.project);
    return s ? { project: s.project } : { missing: true };
  };
  const notFound = ({ params }: { params: { id: string } }) => new NotFoundError('stacks.not_found', `stack ${params.id} not found`);
  const fromDocument = async ({ body }: { body: z.infer<typeof DocumentBody> }): Promise<ResolvedProject> => {
    const doc = withProject(body.document, body.project);
    const { model } = stacks.parse(doc, { ...(body.file ? { file: body.file } : {}), ...(body.params ? { params: body.params } : {}) });
    return { project: model.project, mustExist: true };
  };
  const stackId = async (id: string, project?: string) => (await stacks.stacks.find(id, project))!.id;
  const read = { scope: 'project', permission: 'stacks:read' } as const;
  const apply = { scope: 'project', permission: 'stacks:apply' } as const;
  const planText = (plan: unknown) => {
    try {
      return render ? render(plan) : undefined;
    } catch {
      return undefined;
    }
  };
  return [
    defineRoute({
      method: 'GET', url: '/stacks', summary: 'List stacks you can see', tags, policy: read, project: projectFrom('query'),
      schema: { querystring: PageQuery.extend({ project: z.string().max(64).optional() }) },
      handler: async ({ query, project, visible }) => {
        const vis = typeof project === 'string' ? [project] : visible();
        const after = decodeCursor(query.cursor);
        let rows: StackRowLike[];
        if (vis === 'all') rows = await stacks.list({ ...(after ? { after } : {}), limit: query.limit + 1 });
        else rows = (await Promise.all(vis.map((p) => stacks.list({ project: p, ...(after ? { after } : {}), limit: query.limit + 1 })))).flat().sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
        const items = rows.slice(0, query.limit);
        return { items: redact(items), nextCursor: encodeCursor(rows.length > query.limit ? items[items.length - 1]!.id : null) };
      },
    }),
    defineRoute({
      method: 'POST', url: '/stacks/plan', summary: 'Plan a stack document: what applying it would create, update, replace or delete', tags, policy: read, project: fromDocument,
      schema: { body: DocumentBody },
      handler: async ({ body }) => {
        const plan = await stacks.plan({ document: withProject(body.document, body.project), ...(body.file ? { file: body.file } : {}), ...(body.params ? { params: body.params } : {}) });
        return { plan: redact(plan), text: planText(redact(plan)) };
      },
    }),
    defineRoute({
      method: 'POST', url: '/stacks', summary: 'Apply a stack document (creates or updates the stack, starts the apply run). If-Match: the stack revision you planned against', tags, policy: apply, project: fromDocument,
      schema: { body: DocumentBody.extend({ expectedRevision: z.number().int().min(0).optional() }) },
      handler: async ({ body, principal, ifMatch, reply, etag, auditNote }) => {
        const expected = body.expectedRevision ?? ifMatch();
        const r = await stacks.apply({
          document: withProject(body.document, body.project), ...(body.file ? { file: body.file } : {}), ...(body.params ? { params: body.params } : {}),
          ...(expected !== undefined ? { expectedRevision: expected } : {}), createdBy: principal.userName,
        });
        etag(r.stack.revision);
        auditNote(`stack ${r.stack.id} revision ${r.revision}, run ${r.run.id}`);
        reply.code(202);
        return { stack: redact(r.stack), revision: r.revision, run: runView(r.run), plan: redact(r.plan), text: planText(redact(r.plan)) };
      },
    }),
    defineRoute({
      method: 'GET', url: '/stacks/:id', summary: 'Get a stack by id (or name with ?project=)', tags, policy: read, project: byId, notFound,
      schema: { params: Params, querystring: ProjectQuery },
      handler: async ({ params, query, etag }) => {
        const s = await stacks.get(params.id, query.project ? { project: query.project } : {});
        etag(s.revision);
        return redact(s);
      },
    }),
    ...(['resources', 'revisions', 'runs'] as const).map((what) => defineRoute({
      method: 'GET', url: `/stacks/:id/${what}`, summary: `A stack's ${what}`, tags, policy: read, project: byId, notFound,
      schema: { params: Params, querystring: ProjectQuery },
      handler: async ({ params, query }) => {
        const o = query.project ? { project: query.project } : {};
        const items = what === 'resources' ? await stacks.resources(params.id, o) : what === 'revisions' ? await stacks.revisions(params.id, o) : (await stacks.runs(params.id, o)).map(runView);
        return { items: redact(items), nextCursor: null };
      },
    })),
    defineRoute({
      method: 'GET', url: '/stacks/:id/document', summary: 'The stack document of a revision (default: the latest)', tags, policy: read, project: byId, notFound,
      schema: { params: Params, querystring: ProjectQuery.extend({ revision: z.coerce.number().int().min(1).optional() }) },
      handler: async ({ params, query }) => redact(await stacks.document(params.id, { ...(query.project ? { project: query.project } : {}), ...(query.revision ? { revision: query.revision } : {}) })),
    }),
    defineRoute({
      method: 'GET', url: '/stacks/:id/destroy-plan', summary: 'What destroying the stack would delete', tags, policy: read, project: byId, notFound,
      schema: { params: Params, querystring: ProjectQuery },
      handler: async ({ params, query }) => {
        const plan = await stacks.planDestroy(params.id, query.project ? { project: query.project } : {});
        return { plan: redact(plan), text: planText(redact(plan)) };
      },
    }),
    defineRoute({
      method: 'POST', url: '/stacks/:id/destroy', summary: 'Destroy every resource of the stack (starts a run)', tags, policy: apply, project: byId, notFound,
      schema: { params: Params, querystring: ProjectQuery },
      handler: async ({ params, query, reply }) => {
        const r = await stacks.destroy(params.id, query.project ? { project: query.project } : {});
        reply.code(202);
        return { stack: redact(r.stack), run: runView(r.run), plan: redact(r.plan), text: planText(redact(r.plan)) };
      },
    }),
    defineRoute({
      method: 'POST', url: '/stacks/:id/cancel', summary: 'Cancel the stack\'s active run', tags, policy: apply, project: byId, notFound,
      schema: { params: Params, querystring: ProjectQuery, body: z.strictObject({ reason: z.string().max(1000).optional() }).nullish() },
      handler: async ({ params, query, body }) => runView(await stacks.cancel(params.id, { ...(query.project ? { project: query.project } : {}), ...(body?.reason ? { reason: body.reason } : {}) })),
    }),
    defineRoute({
      method: 'POST', url: '/stacks/:id/retry', summary: 'Retry the stack\'s failed run from its failed step', tags, policy: apply, project: byId, notFound,
      schema: { params: Params, querystring: ProjectQuery },
      handler: async ({ params, query }) => runView(await stacks.retry(params.id, query.project ? { project: query.project } : {})),
    }),
    defineRoute({
      method: 'POST', url: '/stacks/:id/approve', summary: 'Approve (or reject) an approval step the stack\'s run waits on', tags, policy: apply, project: byId, notFound,
      schema: { params: Params, querystring: ProjectQuery, body: z.strictObject({ step: z.string().min(1).max(200), scope: z.string().max(200).optional(), approved: z.boolean().default(true), comment: z.string().max(1000).optional() }) },
      handler: async ({ params, query, body, principal, reply }) => {
        const answered = await stacks.approve(params.id, { name: body.step, ...(body.scope ? { scope: body.scope } : {}) }, { approved: body.approved, by: principal.userName, ...(body.comment ? { comment: body.comment } : {}) }, query.project ? { project: query.project } : {});
        reply.code(202);
        return { accepted: true, ...(answered && typeof answered === 'object' ? answered : {}) };
      },
    }),
    defineRoute({
      method: 'POST', url: '/stacks/:id/observe', summary: 'Compare the stack\'s resources with the backends (drift report)', tags, policy: read, project: byId, notFound,
      schema: { params: Params, querystring: ProjectQuery },
      handler: async ({ params, query }) => redact(await stacks.observe(params.id, query.project ? { project: query.project } : {})),
    }),
    defineRoute({
      method: 'POST', url: '/stacks/:id/reconcile', summary: 'Re-apply the stack\'s applied revision to repair drift (starts a run)', tags, policy: apply, project: byId, notFound,
      schema: { params: Params, querystring: ProjectQuery },
      handler: async ({ params, query, reply }) => {
        reply.code(202);
        return runView(await stacks.reconcile(params.id, query.project ? { project: query.project } : {}));
      },
    }),
    defineRoute({
      method: 'DELETE', url: '/stacks/:id', summary: 'Forget a destroyed stack (refused while it records resources)', tags, policy: { scope: 'project', permission: 'stacks:write' }, project: byId, notFound,
      schema: { params: Params, querystring: ProjectQuery },
      handler: async ({ params, query }) => {
        await stacks.remove(params.id, query.project ? { project: query.project } : {});
        return undefined;
      },
    }),
    ...(deps.engine && projects ? [defineRoute({
      method: 'GET', url: '/stacks/:id/events/stream', summary: 'Server-sent events of a stack and its runs; resumable with Last-Event-ID', tags, policy: { scope: 'project', permission: 'events:read' }, project: byId, notFound, sse: true,
      schema: { params: Params, querystring: ProjectQuery.extend({ after: z.coerce.number().int().min(0).optional() }) },
      handler: async ({ params, query, req, reply }) => {
        const id = await stackId(params.id, query.project);
        const mine = async (e: EngineEvent) => {
          if (e.subject === id || e.data?.stack === id || e.data?.stackId === id) return true;
          const runId = e.runId ?? (e.subject?.startsWith('run_') ? e.subject : null);
          if (!runId) return false;
          const info = await projects.runInfo(runId);
          return info?.labels.stack === id;
        };
        await streamEvents(req, reply, { engine: deps.engine!, afterSeq: lastEventId(req, query.after), filter: mine });
      },
    })] : []),
  ];
}

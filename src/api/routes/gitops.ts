import { z } from 'zod';
import { ForbiddenError, NotFoundError, ValidationError } from '../../core/errors.js';
import type { Gitops } from '../../gitops/index.js';
import { defineRoute, decodeCursor, encodeCursor, ID_PARAM, PageQuery, pageOf, projectFrom, type AnyRoute, type ApiDeps, type ResolvedProject } from '../route.js';
import { lastEventId, streamEvents } from '../sse.js';

/**
 * GitOps: Git sources, applications (a path of a source kept applied as
 * stacks), sync, diff, history, rollback, status and events, and the push
 * webhook. Reads need stacks:read, changes stacks:write, syncs stacks:apply
 * (an application applies stacks on its project).
 */
export function isGitopsApi(x: unknown): x is Gitops {
  const g = x as Partial<Gitops> | undefined;
  return !!g && typeof g.createApp === 'function' && typeof g.sync === 'function' && typeof g.verifyWebhook === 'function';
}

const Name = z.string().min(1).max(63).regex(/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/, 'lowercase letters, digits and -, starting and ending with a letter or digit');
const Project = z.string().min(1).max(64);
const SyncPolicy = z.strictObject({ automated: z.boolean().optional(), prune: z.boolean().optional(), selfHeal: z.boolean().optional() });

const SourceOut = z.object({
  id: z.string(), project: z.string(), name: z.string(), url: z.string(), ref: z.string(), credentialsSecret: z.string().nullable(), hasWebhookSecret: z.boolean(),
  pollIntervalS: z.number(), lastSha: z.string().nullable(), lastFetchedAt: z.number().nullable(), lastError: z.object({ code: z.string(), message: z.string() }).nullable(),
  createdAt: z.number(), updatedAt: z.number(),
});
const ResourceOut = z.object({
  file: z.string(), stack: z.string(), stackId: z.string().nullable(), wave: z.number(), hook: z.string().nullable(), sync: z.string(), health: z.string(),
  reason: z.string().optional(), message: z.string().optional(),
});
const OperationOut = z.object({
  phase: z.string(), runId: z.string(), sha: z.string(), reason: z.string(), startedAt: z.number(), finishedAt: z.number().nullable().optional(),
  message: z.string().nullable().optional(), waitingFor: z.string().nullable().optional(), since: z.number().nullable().optional(),
});
const StatusOut = z.object({
  sync: z.string(), health: z.string(), targetSha: z.string().nullable(), syncedSha: z.string().nullable(), resources: z.array(ResourceOut),
  conditions: z.array(z.object({ type: z.string(), message: z.string(), at: z.number() })), operation: OperationOut.nullable(), reconciledAt: z.number().nullable(),
});
const AppOut = z.object({
  id: z.string(), project: z.string(), name: z.string(), sourceId: z.string(), path: z.string(),
  syncPolicy: z.object({ automated: z.boolean(), prune: z.boolean(), selfHeal: z.boolean() }), dependsOn: z.array(z.string()), pinnedSha: z.string().nullable(),
  status: StatusOut, syncedSha: z.string().nullable(), lastRunId: z.string().nullable(), revision: z.number(), createdAt: z.number(), updatedAt: z.number(),
});
const SyncOut = z.object({
  appId: z.string(), seq: z.number(), sha: z.string(), runId: z.string(), reason: z.string(), result: z.string(), message: z.string().nullable(), startedAt: z.number(), finishedAt: z.number().nullable(),
});
const SyncStarted = z.object({ runId: z.string(), sha: z.string(), seq: z.number(), reason: z.string() });

export function gitopsRoutes(deps: ApiDeps, gitops: Gitops): AnyRoute[] {
  const tags = ['gitops'];
  const read = { scope: 'project', permission: 'stacks:read' } as const;
  const write = { scope: 'project', permission: 'stacks:write' } as const;
  const apply = { scope: 'project', permission: 'stacks:apply' } as const;
  const ProjectQuery = z.object({ project: Project.optional().describe('needed when the object is named rather than given by id') });
  const sourceById = async ({ params, query }: { params: { id: string }; query: { project?: string | undefined } }): Promise<ResolvedProject> => {
    const s = await gitops.db.findSource(params.id, query?.project);
    return s ? { project: s.project, object: s } : { missing: true };
  };
  const appById = async ({ params, query }: { params: { id: string }; query: { project?: string | undefined } }): Promise<ResolvedProject> => {
    const a = await gitops.db.findApp(params.id, query?.project);
    return a ? { project: a.project, object: a } : { missing: true };
  };
  const sourceNotFound = ({ params }: { params: { id: string } }) => new NotFoundError('gitops.source_not_found', `Git source ${params.id} not found`);
  const appNotFound = ({ params }: { params: { id: string } }) => new NotFoundError('gitops.app_not_found', `application ${params.id} not found`);
  const idOf = (o: unknown) => (o as { id: string }).id;
  const started = (r: { run: { id: string }; sync: { sha: string; seq: number; reason: string } }) => ({ runId: r.run.id, sha: r.sync.sha, seq: r.sync.seq, reason: r.sync.reason });

  return [
    // ------------------------------------------------------------ sources
    defineRoute({
      method: 'GET', url: '/gitops/sources', summary: 'List Git sources', tags, policy: read, project: projectFrom('query'),
      schema: { querystring: PageQuery.extend({ project: Project.optional() }), response: { 200: pageOf(SourceOut) } },
      handler: async ({ query, project, visible }) => {
        const vis = typeof project === 'string' ? [project] : visible();
        const after = decodeCursor(query.cursor);
        const rows = await gitops.db.listSources({ ...(vis === 'all' ? {} : { projects: vis }), ...(after ? { after } : {}), limit: query.limit + 1 });
        const items = rows.slice(0, query.limit);
        return { items, nextCursor: encodeCursor(rows.length > query.limit ? items.at(-1)!.id : null) };
      },
    }),
    defineRoute({
      method: 'POST', url: '/gitops/sources', summary: 'Add a Git source (URL and ref; credentials by secret id; a webhook secret for push events)', tags, policy: write, project: projectFrom('body'),
      schema: {
        body: z.strictObject({
          project: Project, name: Name, url: z.string().min(1).max(2000), ref: z.string().min(1).max(250).optional().describe('branch, tag or commit (default main)'),
          credentialsSecret: z.string().max(200).nullable().optional().describe('id of a secret holding user:password, a token, or an SSH private key'),
          webhookSecret: z.string().min(16).max(256).nullable().optional().describe('HMAC key of the push webhook (at least 16 characters); never returned'),
          pollIntervalS: z.number().int().min(5).max(86_400).optional().describe('seconds between fetches (default 180, jittered ±10 %)'),
        }),
        response: { 201: SourceOut },
      },
      handler: async ({ body, reply, can }) => {
        if (body.credentialsSecret) await checkSecret(deps, body.credentialsSecret, body.project, can);
        const s = await gitops.createSource(body);
        reply.code(201);
        return s;
      },
    }),
    defineRoute({
      method: 'GET', url: '/gitops/sources/:id', summary: 'A Git source', tags, policy: read, project: sourceById, notFound: sourceNotFound,
      schema: { params: ID_PARAM, querystring: ProjectQuery, response: { 200: SourceOut } },
      handler: async ({ object }) => gitops.db.getSource(idOf(object)),
    }),
    defineRoute({
      method: 'PATCH', url: '/gitops/sources/:id', summary: 'Change a Git source', tags, policy: write, project: sourceById, notFound: sourceNotFound,
      schema: {
        params: ID_PARAM, querystring: ProjectQuery,
        body: z.strictObject({ url: z.string().min(1).max(2000).optional(), ref: z.string().min(1).max(250).optional(), credentialsSecret: z.string().max(200).nullable().optional(), webhookSecret: z.string().min(16).max(256).nullable().optional(), pollIntervalS: z.number().int().min(5).max(86_400).optional() }),
        response: { 200: SourceOut },
      },
      handler: async ({ object, body, can }) => {
        const s = object as { id: string; project: string };
        if (body.credentialsSecret) await checkSecret(deps, body.credentialsSecret, s.project, can);
        return gitops.updateSource(s.id, body);
      },
    }),
    defineRoute({
      method: 'DELETE', url: '/gitops/sources/:id', summary: 'Delete a Git source (refused while applications use it)', tags, policy: write, project: sourceById, notFound: sourceNotFound,
      schema: { params: ID_PARAM, querystring: ProjectQuery },
      handler: async ({ object }) => {
        await gitops.db.deleteSource(idOf(object));
        return undefined;
      },
    }),
    defineRoute({
      method: 'POST', url: '/gitops/sources/:id/refresh', summary: 'Fetch the source now and reconcile its applications', tags, policy: apply, project: sourceById, notFound: sourceNotFound,
      schema: { params: ID_PARAM, querystring: ProjectQuery, response: { 200: z.object({ sha: z.string().nullable(), apps: z.array(z.string()) }) } },
      handler: async ({ object }) => gitops.refreshSource(idOf(object)),
    }),
    defineRoute({
      method: 'POST', url: '/gitops/webhooks/:id', summary: 'Push webhook of a Git source (signed: X-Hub-Signature-256)', tags, policy: { scope: 'public' }, rawBody: true,
      description: 'Git servers (GitHub, Gitea, GitLab in its compatible mode) call this on push. The body is signed with the source\'s webhook secret; an unsigned or wrongly signed call is refused with 401 and audited. Accepted calls answer 202 and fetch the source at once.',
      schema: { params: ID_PARAM, body: z.unknown().optional(), response: { 202: z.object({ accepted: z.boolean(), source: z.string() }) } },
      rateLimit: { max: 120, timeWindowMs: 60_000, keyBy: 'ip' },
      handler: async ({ req, params, reply, auditNote }) => {
        const sig = req.headers['x-hub-signature-256'];
        const s = await gitops.verifyWebhook(params.id, req.rawBody ?? Buffer.alloc(0), Array.isArray(sig) ? sig[0] : sig);
        auditNote(`push webhook for source ${s.name}`);
        // fetch and reconcile after answering: a Git server waits seconds at most
        setImmediate(() => void gitops.refreshSource(s.id).catch((e: unknown) => deps.logger.warn({ source: s.name, err: (e as Error).message }, 'gitops: webhook refresh failed')));
        reply.code(202);
        return { accepted: true, source: s.name };
      },
    }),

    // ------------------------------------------------------------ applications
    defineRoute({
      method: 'GET', url: '/gitops/apps', summary: 'List applications with their sync and health', tags, policy: read, project: projectFrom('query'),
      schema: { querystring: PageQuery.extend({ project: Project.optional() }), response: { 200: pageOf(AppOut) } },
      handler: async ({ query, project, visible }) => {
        const vis = typeof project === 'string' ? [project] : visible();
        const after = decodeCursor(query.cursor);
        const rows = await gitops.db.listApps({ ...(vis === 'all' ? {} : { projects: vis }), ...(after ? { after } : {}), limit: query.limit + 1 });
        const items = rows.slice(0, query.limit);
        return { items, nextCursor: encodeCursor(rows.length > query.limit ? items.at(-1)!.id : null) };
      },
    }),
    defineRoute({
      method: 'POST', url: '/gitops/apps', summary: 'Create an application: a path of a source kept applied as stacks', tags, policy: write, project: projectFrom('body'),
      schema: {
        body: z.strictObject({
          project: Project, name: Name, source: z.string().min(1).max(200).describe('source id or name'), path: z.string().max(500).optional().describe('folder in the repository (default: its root)'),
          syncPolicy: SyncPolicy.optional(), dependsOn: z.array(Name).max(50).optional().describe('applications (same project) that must be Healthy before this one syncs'),
        }),
        response: { 201: AppOut },
      },
      handler: async ({ body, reply }) => {
        const a = await gitops.createApp(body);
        reply.code(201);
        return a;
      },
    }),
    defineRoute({
      method: 'GET', url: '/gitops/apps/:id', summary: 'An application, its status refreshed from Git (?refresh=false for the stored status)', tags, policy: read, project: appById, notFound: appNotFound,
      schema: { params: ID_PARAM, querystring: ProjectQuery.extend({ refresh: z.enum(['true', 'false']).optional() }), response: { 200: AppOut } },
      handler: async ({ object, query }) => (query.refresh === 'false' ? gitops.db.getApp(idOf(object)) : gitops.refresh(idOf(object), { fetch: false })),
    }),
    defineRoute({
      method: 'PATCH', url: '/gitops/apps/:id', summary: 'Change an application (path, sync policy, dependencies; If-Match)', tags, policy: write, project: appById, notFound: appNotFound,
      schema: { params: ID_PARAM, querystring: ProjectQuery, body: z.strictObject({ path: z.string().max(500).optional(), syncPolicy: SyncPolicy.optional(), dependsOn: z.array(Name).max(50).optional() }), response: { 200: AppOut } },
      handler: async ({ object, body, ifMatch }) => {
        const rev = ifMatch();
        return gitops.updateApp(idOf(object), body, rev !== undefined ? { expectedRevision: rev } : {});
      },
    }),
    defineRoute({
      method: 'DELETE', url: '/gitops/apps/:id', summary: 'Delete an application (?cascade=true destroys its stacks too)', tags, policy: apply, project: appById, notFound: appNotFound,
      schema: { params: ID_PARAM, querystring: ProjectQuery.extend({ cascade: z.enum(['true', 'false']).optional() }), response: { 200: z.object({ destroyRuns: z.array(z.string()) }) } },
      handler: async ({ object, query }) => gitops.deleteApp(idOf(object), { cascade: query.cascade === 'true' }),
    }),
    defineRoute({
      method: 'POST', url: '/gitops/apps/:id/sync', summary: 'Sync an application now (to its target commit, or to `revision`)', tags, policy: apply, project: appById, notFound: appNotFound,
      schema: { params: ID_PARAM, querystring: ProjectQuery, body: z.strictObject({ revision: z.string().min(1).max(250).optional().describe('a commit, branch or tag (default: the source\'s ref)'), prune: z.boolean().optional() }).optional(), response: { 202: SyncStarted } },
      handler: async ({ object, body, reply, principal }) => {
        const r = await gitops.sync(idOf(object), { ...(body?.revision ? { sha: body.revision } : {}), ...(body?.prune !== undefined ? { prune: body.prune } : {}), reason: 'manual', actor: principal.userName });
        reply.code(202);
        return started(r);
      },
    }),
    defineRoute({
      method: 'GET', url: '/gitops/apps/:id/diff', summary: 'What a sync would change, per out-of-sync document (stack plans)', tags, policy: read, project: appById, notFound: appNotFound,
      schema: { params: ID_PARAM, querystring: ProjectQuery, response: { 200: z.object({ targetSha: z.string(), items: z.array(z.object({ file: z.string(), stack: z.string(), sync: z.string(), reason: z.string().optional(), plan: z.unknown().optional(), text: z.string().optional() })) }) } },
      handler: async ({ object }) => gitops.diff(idOf(object)),
    }),
    defineRoute({
      method: 'GET', url: '/gitops/apps/:id/history', summary: 'Sync history: commits, runs, results (newest first)', tags, policy: read, project: appById, notFound: appNotFound,
      schema: { params: ID_PARAM, querystring: ProjectQuery.extend({ limit: z.coerce.number().int().min(1).max(1000).optional() }), response: { 200: z.object({ items: z.array(SyncOut) }) } },
      handler: async ({ object, query }) => ({ items: await gitops.history(idOf(object), { ...(query.limit ? { limit: query.limit } : {}) }) }),
    }),
    defineRoute({
      method: 'POST', url: '/gitops/apps/:id/rollback', summary: 'Roll back to a commit of the history (pins the application there)', tags, policy: apply, project: appById, notFound: appNotFound,
      schema: { params: ID_PARAM, querystring: ProjectQuery, body: z.strictObject({ sha: z.string().min(7).max(40).optional(), seq: z.number().int().positive().optional() }), response: { 202: SyncStarted } },
      handler: async ({ object, body, reply, principal }) => {
        if (body.sha === undefined && body.seq === undefined) throw new ValidationError('api.invalid_body', 'give sha (a commit of the history) or seq (a history entry)', { details: { field: 'sha' } });
        const r = await gitops.rollback(idOf(object), { ...(body.sha ? { sha: body.sha } : {}), ...(body.seq !== undefined ? { seq: body.seq } : {}) }, { actor: principal.userName });
        reply.code(202);
        return started(r);
      },
    }),
    defineRoute({
      method: 'POST', url: '/gitops/apps/:id/unpin', summary: 'Follow the source\'s ref again after a rollback', tags, policy: apply, project: appById, notFound: appNotFound,
      schema: { params: ID_PARAM, querystring: ProjectQuery, response: { 200: AppOut } },
      handler: async ({ object }) => gitops.unpin(idOf(object)),
    }),
    defineRoute({
      method: 'GET', url: '/gitops/apps/:id/events', summary: 'Stream the application\'s status changes and syncs (SSE; resumes with Last-Event-ID)', tags, policy: read, project: appById, notFound: appNotFound, sse: true,
      schema: { params: ID_PARAM, querystring: ProjectQuery.extend({ after: z.coerce.number().int().min(0).optional() }) },
      handler: async ({ req, reply, object, query }) => {
        if (!deps.engine) throw new NotFoundError('api.not_found', 'events are not available');
        const id = idOf(object);
        await streamEvents(req, reply, { engine: deps.engine, subject: id, afterSeq: lastEventId(req, query.after), filter: (e) => e.subject === id && e.type.startsWith('gitops.') });
      },
    }),
  ];
}

async function checkSecret(deps: ApiDeps, id: string, project: string, can: (perm: 'secrets:read', project: string | null) => boolean): Promise<void> {
  const s = await deps.iam.findSecret(id);
  if (!s || s.project !== project) throw new ValidationError('gitops.secret_not_found', `credentialsSecret: no secret ${id} in project ${project}`, { details: { field: 'credentialsSecret' } });
  if (!can('secrets:read', project)) throw new ForbiddenError(`credentialsSecret: using a secret for Git credentials needs secrets:read on project ${project}`);
}


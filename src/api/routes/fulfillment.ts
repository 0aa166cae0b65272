import { z } from 'zod';
import { NotFoundError, ValidationError } from '../../core/errors.js';
import { redact } from '../../core/secrets.js';
import { Fulfillment } from '../../fulfillment/service.js';
import { CreateClusterSchema, PatchClusterSchema } from '../../fulfillment/schemas.js';
import { HubSchema, HotPoolPolicySchema } from '../../inventory/schemas.js';
import { SimClusterBackend } from '../../providers/sim/cluster.js';
import { lastEventId, streamEvents } from '../sse.js';
import { decodeCursor, defineRoute, encodeCursor, ID_PARAM, PageQuery, projectFrom, type AnyRoute, type ApiDeps, type ResolvedProject } from '../route.js';

export function isFulfillmentApi(x: unknown): x is Fulfillment {
  return x instanceof Fulfillment;
}

/**
 * Cluster fulfillment (src/fulfillment): templates (everyone reads, admins
 * manage), clusters (project-scoped orders: create, list, get, patch node
 * sets, delete, retry/skip a failed stage, approve), their stages, merged
 * timeline and event stream, credentials (secrets:read, every read
 * audited), hubs and host pools. Errors are problem+json naming the field.
 */
export function fulfillmentRoutes(deps: ApiDeps, f: Fulfillment): AnyRoute[] {
  const tags = ['fulfillment'];
  const read = { scope: 'project', permission: 'resources:read' } as const;
  const write = { scope: 'project', permission: 'resources:write' } as const;
  const operate = { scope: 'project', permission: 'runs:operate' } as const;
  const byId = async ({ params }: { params: { id: string } }): Promise<ResolvedProject> => {
    const p = await f.projectOf(params.id);
    return p ? { project: p } : { missing: true };
  };
  const notFound = ({ params }: { params: { id: string } }) => new NotFoundError('fulfillment.cluster_not_found', `cluster ${params.id} does not exist`);
  const TemplateBody = z.union([
    z.strictObject({ document: z.string().min(1).max(1024 * 1024).describe('the template as YAML or JSON text') }),
    z.record(z.string(), z.unknown()),
  ]);
  const stream = defineRoute({
    method: 'GET', url: '/clusters/:id/events/stream', tags, policy: { scope: 'project', permission: 'events:read' }, project: byId, notFound, sse: true,
    summary: 'Server-sent events of a cluster (stages, state, allocations); resumable with Last-Event-ID. Ends when the cluster reaches Ready, Failed or Deleted (and at once if it is there), unless follow=true',
    schema: { params: ID_PARAM, querystring: z.object({ after: z.coerce.number().int().min(0).optional(), follow: z.enum(['true', 'false']).optional() }) },
    handler: async ({ req, reply, params, query }) => {
      const subjects = new Set([params.id, `cluster:${params.id}`]);
      const terminal = ['Ready', 'Failed', 'Deleted'];
      const follow = query.follow === 'true';
      await streamEvents(req, reply, {
        engine: deps.engine!, afterSeq: lastEventId(req, query.after), filter: (e) => subjects.has(e.subject),
        ...(follow ? {} : {
          endAfter: (e) => e.type === 'cluster.state' && terminal.includes(String(e.data.state)),
          endNow: async () => terminal.includes((await f.get(params.id)).status.state),
        }),
      });
    },
  });
  return [
    // ------------------------------------------------------------ templates
    defineRoute({
      method: 'GET', url: '/cluster-templates', summary: 'Cluster templates (id, title, Markdown description, parameters, node sets)', tags, policy: { scope: 'authenticated' },
      schema: {},
      handler: async () => ({ items: await f.listTemplates() }),
    }),
    defineRoute({
      method: 'GET', url: '/cluster-templates/:id', summary: 'One cluster template', tags, policy: { scope: 'authenticated' },
      schema: { params: ID_PARAM },
      handler: async ({ params }) => f.getTemplate(params.id),
    }),
    defineRoute({
      method: 'PUT', url: '/cluster-templates', summary: 'Create or replace a cluster template (admin): the YAML/JSON document as `document`, or the template object', tags, policy: { scope: 'system', permission: 'inventory:write' },
      schema: { body: TemplateBody },
      handler: async ({ body, auditNote }) => {
        const t = await f.putTemplate(typeof body.document === 'string' ? body.document : body);
        auditNote(`cluster template ${t.id} revision ${t.revision}`);
        return t;
      },
    }),
    defineRoute({
      method: 'DELETE', url: '/cluster-templates/:id', summary: 'Delete a cluster template no live cluster uses (admin)', tags, policy: { scope: 'system', permission: 'inventory:write' },
      schema: { params: ID_PARAM },
      handler: async ({ params }) => { await f.deleteTemplate(params.id); },
    }),
    // ------------------------------------------------------------- clusters
    defineRoute({
      method: 'POST', url: '/clusters/feasibility', summary: 'Validate an order and say whether it could be met now (one reason per shortfall); creates nothing', tags, policy: read, project: projectFrom('body'),
      schema: { body: CreateClusterSchema },
      handler: async ({ body }) => {
        const r = await f.check(body);
        return { feasible: r.feasibility.feasible, shortfalls: r.feasibility.shortfalls, nodeSets: r.plan.nodeSets, needsApproval: r.plan.needsApproval };
      },
    }),
    defineRoute({
      method: 'POST', url: '/clusters', tags, policy: write, project: projectFrom('body'),
      summary: 'Order a cluster from a template. capacity: reserve (default) refuses an order that cannot be met now (409 with one reason per shortfall) and holds everything from acceptance; capacity: wait accepts it and waits for capacity holding nothing',
      schema: { body: CreateClusterSchema },
      handler: async ({ body, principal, reply, auditNote }) => {
        const c = await f.create(body, principal.userName);
        auditNote(`cluster ${c.name} (${c.id}) from template ${body.spec.template}`);
        reply.code(201);
        return c;
      },
    }),
    defineRoute({
      method: 'GET', url: '/clusters', summary: 'Clusters, newest first, in the projects you can read; filters: project, state, template, name, label=k=v', tags, policy: read, project: projectFrom('query'),
      schema: { querystring: PageQuery.extend({ project: z.string().max(128).optional(), state: z.enum(['PendingApproval', 'Progressing', 'Ready', 'Failed', 'Deleting', 'Deleted']).optional(), template: z.string().max(64).optional(), name: z.string().max(63).optional(), label: z.string().max(300).regex(/^[^=]+=.*$/, 'use key=value').optional() }) },
      handler: async ({ query, visible }) => {
        const vis = visible('resources:read');
        const projects = query.project ? [query.project] : vis;
        const label = query.label ? { [query.label.slice(0, query.label.indexOf('='))]: query.label.slice(query.label.indexOf('=') + 1) } : undefined;
        const after = decodeCursor(query.cursor);
        const rows = await f.list({ projects, ...(query.state ? { state: query.state } : {}), ...(query.template ? { template: query.template } : {}), ...(query.name ? { name: query.name } : {}), ...(label ? { label } : {}), ...(after ? { after } : {}), limit: query.limit });
        const page = rows.slice(0, query.limit);
        return { items: page, nextCursor: encodeCursor(rows.length > query.limit ? page[page.length - 1]!.id : null) };
      },
    }),
    defineRoute({
      method: 'GET', url: '/clusters/:id', summary: 'A cluster: spec (pull secret write-only), status with conditions, node sets, API and console URLs', tags, policy: read, project: byId, notFound,
      schema: { params: ID_PARAM },
      handler: async ({ params }) => f.get(params.id),
    }),
    defineRoute({
      method: 'PATCH', url: '/clusters/:id', summary: 'Change node set sizes (scale up/down, add or remove a set): a new revision built by its own run. Template, parameters and host types are immutable', tags, policy: write, project: byId, notFound,
      schema: { params: ID_PARAM, body: PatchClusterSchema },
      handler: async ({ params, body, principal, reply, auditNote }) => {
        const c = await f.patch(params.id, body, principal.userName);
        auditNote(`cluster ${c.name} revision ${c.revision}: ${c.status.message ?? ''}`);
        reply.code(202);
        return c;
      },
    }),
    defineRoute({
      method: 'DELETE', url: '/clusters/:id', summary: 'Delete a cluster: cancels what runs for it, then tears everything down in reverse order', tags, policy: write, project: byId, notFound,
      schema: { params: ID_PARAM },
      handler: async ({ params, principal, reply }) => {
        reply.code(202);
        return f.delete(params.id, principal.userName);
      },
    }),
    defineRoute({
      method: 'GET', url: '/clusters/:id/stages', summary: 'The stages of the cluster\'s current run (or ?run=): start, end, what each waits on, ETA from history, stuck flag, error and logs', tags, policy: read, project: byId, notFound,
      schema: { params: ID_PARAM, querystring: z.object({ run: z.string().max(200).optional() }) },
      handler: async ({ params, query }) => {
        const c = await f.get(params.id);
        return { cluster: c.id, state: c.status.state, operation: c.status.operation, runId: query.run ?? c.status.runId, stages: redact(await f.stages(params.id, query.run)) };
      },
    }),
    defineRoute({
      method: 'GET', url: '/clusters/:id/timeline', summary: 'One merged timeline: stages, steps (allocations, provider and backend calls), operator actions, events', tags, policy: read, project: byId, notFound,
      schema: { params: ID_PARAM },
      handler: async ({ params }) => ({ items: redact(await f.timeline(params.id)) }),
    }),
    stream,
    defineRoute({
      method: 'POST', url: '/clusters/:id/retry', summary: 'Retry a failed cluster run from its failed stage', tags, policy: operate, project: byId, notFound,
      schema: { params: ID_PARAM },
      handler: async ({ params, principal, auditNote }) => {
        auditNote('retry from the failed stage');
        return f.retry(params.id, principal.userName);
      },
    }),
    defineRoute({
      method: 'POST', url: '/clusters/:id/skip', summary: 'Skip a failed stage (dns, storage, postInstall, validation) and continue', tags, policy: operate, project: byId, notFound,
      schema: { params: ID_PARAM, body: z.strictObject({ stage: z.string().min(1).max(64) }) },
      handler: async ({ params, body, principal, auditNote }) => {
        auditNote(`skip stage ${body.stage}`);
        return f.skip(params.id, body.stage, principal.userName);
      },
    }),
    defineRoute({
      method: 'POST', url: '/clusters/:id/approve', summary: 'Approve an order or scaling above the size limit (admin); the comment goes into the audit log', tags, policy: { scope: 'system', permission: 'runs:operate' },
      schema: { params: ID_PARAM, body: z.strictObject({ comment: z.string().min(1, 'comment: say why it is approved').max(2048) }) },
      handler: async ({ params, body, principal, auditNote }) => {
        auditNote(`approved: ${body.comment}`);
        return f.approve(params.id, principal.userName, body.comment);
      },
    }),
    defineRoute({
      method: 'GET', url: '/clusters/:id/kubeconfig', summary: 'The admin kubeconfig (YAML); secrets:read, every read audited', tags, policy: { scope: 'project', permission: 'secrets:read' }, project: byId, notFound, audit: 'always',
      schema: { params: ID_PARAM },
      handler: async ({ params, reply, auditNote }) => {
        const kc = await f.kubeconfig(params.id);
        auditNote('revealed the admin kubeconfig');
        reply.header('cache-control', 'no-store').type('application/yaml; charset=utf-8');
        return kc;
      },
    }),
    defineRoute({
      method: 'GET', url: '/clusters/:id/password', summary: 'The admin user and password; secrets:read, every read audited', tags, policy: { scope: 'project', permission: 'secrets:read' }, project: byId, notFound, audit: 'always',
      schema: { params: ID_PARAM, response: { 200: z.object({ username: z.string(), password: z.string() }) } },
      handler: async ({ params, reply, auditNote }) => {
        const p = await f.password(params.id);
        auditNote('revealed the admin password');
        reply.header('cache-control', 'no-store');
        return p;
      },
    }),
    // ---------------------------------------------------- hubs, host pools
    defineRoute({
      method: 'GET', url: '/hubs', summary: 'Hubs (management clusters): capacity, used, labels', tags, policy: { scope: 'any', permission: 'inventory:read' },
      schema: {},
      handler: async () => ({ items: await f.listHubs() }),
    }),
    defineRoute({
      method: 'PUT', url: '/hubs', summary: 'Create or update a hub (admin)', tags, policy: { scope: 'system', permission: 'inventory:write' },
      schema: { body: HubSchema },
      handler: async ({ body }) => f.inventory.createHub(body),
    }),
    defineRoute({
      method: 'GET', url: '/host-pools', summary: 'Host pools: free agents per host type and datacenter, with the hot-pool minimum and deficit', tags, policy: { scope: 'any', permission: 'inventory:read' },
      schema: {},
      handler: async () => ({ items: await f.hostPools() }),
    }),
    defineRoute({
      method: 'PUT', url: '/host-pools', summary: 'Set a host pool\'s minimum of ready agents (admin; the hot pool discovers and inspects hardware to keep it)', tags, policy: { scope: 'system', permission: 'inventory:write' },
      schema: { body: HotPoolPolicySchema },
      handler: async ({ body }) => f.inventory.setHotPoolPolicy(body),
    }),
    defineRoute({
      method: 'PUT', url: '/sim/cluster-faults', summary: 'Fault rules of the simulated cluster backends (transientRate, permanent per operation, badAgents) (admin)', tags: ['sim'], policy: { scope: 'system', permission: 'sim:control' },
      schema: { body: z.record(z.string(), z.unknown()) },
      handler: async ({ body, auditNote }) => {
        if (!(f.backend instanceof SimClusterBackend)) throw new ValidationError('sim.not_simulated', 'the cluster backends are not simulated in this installation');
        const r = f.backend.setFaults(body);
        auditNote(`cluster backend faults: ${JSON.stringify(r)}`);
        return r;
      },
    }),
  ];
}

import { z } from 'zod';
import { Apps } from '../../apps/service.js';
import { redact } from '../../core/secrets.js';
import { defineRoute, projectFrom, type AnyRoute, type ApiDeps, type ResolvedProject } from '../route.js';

export function isAppsApi(x: unknown): x is Apps {
  return x instanceof Apps;
}

const NAME = z.string().min(1).max(63).regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'a lowercase DNS label');
const Files = z.record(z.string().max(200), z.string().max(1_000_000)).describe('template files: template.yaml and manifests, name → text');
const Template = z.object({ name: z.string().max(100).default(''), version: z.string().max(50).optional(), files: Files });
const Values = z.union([z.record(z.string(), z.unknown()), z.string().max(1_000_000)]).optional().describe('values: a map, or YAML text');
const AppParams = z.object({ project: z.string().min(1).max(64), name: NAME });
const ClusterParams = z.object({ project: z.string().min(1).max(64), cluster: z.string().min(1).max(254) });

function appView(r: { id: string; name: string; project: string; spec: Record<string, any>; status: Record<string, any>; generation: number; createdAt: number; updatedAt: number }) {
  const { template, ...spec } = r.spec;
  return {
    id: r.id, name: r.name, project: r.project, generation: r.generation, createdAt: r.createdAt, updatedAt: r.updatedAt,
    spec: { ...spec, template: { name: template?.name, version: template?.version, files: Object.keys(template?.files ?? {}) } },
    status: redact(r.status),
  };
}

/**
 * Applications (src/apps): render, deploy (create or upgrade, a durable run),
 * rollback, delete, status, revisions, watch and logs as server-sent events,
 * the simulator's load per app, simulated clusters' kubeconfigs and autoscalers.
 */
export function appRoutes(deps: ApiDeps, apps: Apps): AnyRoute[] {
  const tags = ['apps'];
  const read = { scope: 'project', permission: 'resources:read' } as const;
  const write = { scope: 'project', permission: 'resources:write' } as const;
  const fromParams = ({ params }: { params: { project: string } }): ResolvedProject => ({ project: params.project, mustExist: true });
  const sse = (reply: { hijack(): void; raw: NodeJS.WritableStream & { writeHead(s: number, h: Record<string, string>): void; on(e: 'close', f: () => void): void } }) => {
    reply.hijack();
    const raw = reply.raw;
    raw.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache, no-transform', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    raw.write(': infraflow app stream\n\n');
    let closed = false;
    const hb = setInterval(() => !closed && raw.write(': keepalive\n\n'), 15_000);
    hb.unref?.();
    const stops: (() => void)[] = [];
    const end = () => {
      if (closed) return;
      closed = true;
      clearInterval(hb);
      stops.forEach((s) => s());
      try {
        raw.write('event: end\ndata: {}\n\n');
        raw.end();
      } catch {
        /* gone */
      }
    };
    raw.on('close', () => {
      closed = true;
      clearInterval(hb);
      stops.forEach((s) => s());
    });
    return {
      send: (event: string, data: unknown) => {
        if (!closed) raw.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
      },
      onStop: (s: () => void) => stops.push(s),
      end,
    };
  };
  return [
    defineRoute({
      method: 'POST', url: '/apps/render', summary: 'Render a template with values into Kubernetes manifests (touches nothing); errors name the file and line', tags, policy: { scope: 'any', permission: 'resources:read' },
      schema: { body: z.object({ template: Template, values: Values, valuesFile: z.string().max(200).optional(), name: NAME.optional(), namespace: NAME.optional() }) },
      handler: async ({ body }) => {
        const r = apps.render({ files: body.template.files, ...(body.values !== undefined ? { values: body.values } : {}), ...(body.valuesFile ? { valuesFile: body.valuesFile } : {}), ...(body.name ? { name: body.name } : {}), ...(body.namespace ? { namespace: body.namespace } : {}) });
        return { yaml: r.yaml, manifests: r.manifests };
      },
    }),
    defineRoute({
      method: 'POST', url: '/apps', summary: 'Deploy an app from a template: created, or upgraded to a new revision; a durable run applies it and waits for the rollout', tags, policy: write, project: projectFrom('body'),
      schema: { body: z.object({ project: z.string().min(1).max(64), name: NAME, cluster: z.string().min(1).max(254), namespace: NAME.optional(), template: Template, values: Values, timeoutSeconds: z.number().int().positive().max(86_400).optional() }) },
      handler: async ({ body, reply, auditNote }) => {
        const r = await apps.deploy({ project: body.project, name: body.name, cluster: body.cluster, ...(body.namespace ? { namespace: body.namespace } : {}), template: body.template, ...(body.values !== undefined ? { values: body.values } : {}), ...(body.timeoutSeconds ? { timeoutSeconds: body.timeoutSeconds } : {}) });
        auditNote(`app ${body.name} ${r.action === 'create' ? 'created' : 'upgraded'} on cluster ${body.cluster}`);
        reply.code(r.action === 'create' ? 201 : 202);
        return { app: appView(r.app as never), run: { id: r.run.id, status: r.run.status }, action: r.action };
      },
    }),
    defineRoute({
      method: 'GET', url: '/apps/:project', summary: 'Apps of a project with their phase and revision', tags, policy: read, project: fromParams,
      schema: { params: z.object({ project: z.string().min(1).max(64) }) },
      handler: async ({ params }) => ({ items: (await apps.list(params.project)).map((a) => appView(a as never)), nextCursor: null }),
    }),
    defineRoute({
      method: 'GET', url: '/apps/:project/:name', summary: 'An app: its resource status (conditions, revision) and live workloads, pod problems and warning events', tags, policy: read, project: fromParams,
      schema: { params: AppParams },
      handler: async ({ params }) => {
        const s = await apps.status(params.project, params.name);
        return { app: appView(s.app as never), live: s.live ? { revision: s.live.revision?.revision, workloads: s.live.workloads, problems: s.live.problems, warnings: s.live.warnings } : null, ...(s.error ? { error: s.error } : {}) };
      },
    }),
    defineRoute({
      method: 'GET', url: '/apps/:project/:name/revisions', summary: 'Recorded revisions of an app (template, values, objects)', tags, policy: read, project: fromParams,
      schema: { params: AppParams },
      handler: async ({ params }) => ({ items: (await apps.revisions(params.project, params.name)).map((r) => ({ revision: r.revision, template: `${r.spec.template.name}@${r.spec.template.version}`, values: redact(r.spec.values), objects: r.objects.map((o) => `${o.kind}/${o.name}`), appliedAt: r.appliedAt })), nextCursor: null }),
    }),
    defineRoute({
      method: 'POST', url: '/apps/:project/:name/rollback', summary: 'Roll back to a recorded revision (default: the previous one) as a new revision', tags, policy: write, project: fromParams,
      schema: { params: AppParams, body: z.object({ revision: z.number().int().positive().optional() }).default({}) },
      handler: async ({ params, body, reply, auditNote }) => {
        const r = await apps.rollback(params.project, params.name, body.revision);
        auditNote(`app ${params.name} rolled back to revision ${r.to}`);
        reply.code(202);
        return { app: appView(r.app as never), run: { id: r.run.id, status: r.run.status }, to: r.to };
      },
    }),
    defineRoute({
      method: 'DELETE', url: '/apps/:project/:name', summary: 'Delete an app: a durable run removes its objects from the cluster', tags, policy: write, project: fromParams,
      schema: { params: AppParams },
      handler: async ({ params, reply, auditNote }) => {
        const r = await apps.remove(params.project, params.name);
        auditNote(`app ${params.name} deleted`);
        reply.code(202);
        return { app: appView(r.app as never), run: { id: r.run.id, status: r.run.status } };
      },
    }),
    defineRoute({
      method: 'GET', url: '/apps/:project/:name/watch', summary: 'Server-sent events: the app\'s pods and services as they change (event: pod, service)', tags, policy: read, project: fromParams, sse: true,
      schema: { params: AppParams },
      handler: async ({ params, reply }) => {
        // errors (unknown app, cluster down) answer as problem+json before the stream starts
        const buffered: { kind: string }[] = [];
        const sink: { send?: (e: { kind: string }) => void; end?: () => void } = {};
        const stop = await apps.watch(params.project, params.name, (e) => (sink.send ? sink.send(e) : buffered.push(e)), () => sink.end?.());
        const s = sse(reply as never);
        s.onStop(stop);
        for (const e of buffered) s.send(e.kind.toLowerCase(), e);
        sink.send = (e) => s.send(e.kind.toLowerCase(), e);
        sink.end = () => s.end();
      },
    }),
    defineRoute({
      method: 'GET', url: '/apps/:project/:name/logs', summary: 'Server-sent events: log lines of the app\'s pods (event: log {pod, line}); follow keeps streaming', tags, policy: read, project: fromParams, sse: true,
      schema: { params: AppParams, querystring: z.object({ pod: z.string().max(253).optional(), follow: z.enum(['true', 'false']).optional(), tail: z.coerce.number().int().min(0).max(10_000).optional() }) },
      handler: async ({ params, query, reply }) => {
        // errors (no pods, unknown pod) answer as problem+json before the stream starts
        const buffered: { pod: string; line: string }[] = [];
        const sink: { target?: (pod: string, line: string) => void; endStream?: () => void; ended?: boolean } = {};
        const stop = await apps.logs(params.project, params.name, (pod, line) => (sink.target ? sink.target(pod, line) : buffered.push({ pod, line })), {
          ...(query.pod ? { pod: query.pod } : {}), follow: query.follow === 'true', ...(query.tail !== undefined ? { tail: query.tail } : {}),
          onEnd: () => {
            sink.ended = true;
            sink.endStream?.();
          },
        });
        const s = sse(reply as never);
        s.onStop(stop);
        for (const b of redact(buffered)) s.send('log', b);
        sink.target = (pod, line) => s.send('log', redact({ pod, line }));
        sink.endStream = () => s.end();
        if (sink.ended) s.end();
      },
    }),
    defineRoute({
      method: 'PUT', url: '/apps/:project/:name/load', summary: 'Simulator: the requests per second offered to the app (drives CPU per pod and the autoscalers)', tags, policy: { scope: 'system', permission: 'sim:control' },
      schema: { params: AppParams, body: z.object({ rps: z.number().min(0).max(10_000_000) }) },
      handler: async ({ params, body, auditNote }) => {
        const r = await apps.setLoad(params.project, params.name, body.rps);
        auditNote(`sim load of app ${params.name} (${params.project}) set to ${body.rps} rps`);
        return { app: params.name, rps: body.rps, deployments: r.deployments };
      },
    }),
    defineRoute({
      method: 'GET', url: '/apps/clusters/:project/:cluster/kubeconfig', summary: 'A kubeconfig for a cluster (simulated clusters: their Kubernetes API with the cluster\'s token); secrets:read, audited', tags, policy: { scope: 'project', permission: 'secrets:read' }, project: ({ params }: { params: { project: string } }): ResolvedProject => ({ project: params.project, mustExist: true }), audit: 'always',
      schema: { params: ClusterParams },
      handler: async ({ params, reply, auditNote }) => {
        const kc = await apps.kubeconfig(params.project, params.cluster);
        auditNote(`revealed the kubeconfig of cluster ${params.cluster}`);
        reply.header('cache-control', 'no-store');
        return { cluster: params.cluster, kubeconfig: kc };
      },
    }),
    defineRoute({
      method: 'PUT', url: '/apps/clusters/:project/:cluster/autoscaler', summary: 'Cluster Autoscaler of a simulated cluster: node pools with min and max (nodes of the pool\'s size join when pods are unschedulable)', tags, policy: write, project: ({ params }: { params: { project: string } }): ResolvedProject => ({ project: params.project, mustExist: true }),
      schema: { params: ClusterParams, body: z.object({ pools: z.array(z.object({ name: z.string().min(1).max(63), min: z.number().int().min(0), max: z.number().int().min(1), cpu: z.number().int().positive().describe('millicores per node'), memoryMiB: z.number().int().positive(), priority: z.number().int().optional() })).min(1) }) },
      handler: async ({ params, body, auditNote }) => {
        const r = await apps.setClusterAutoscaler(params.project, params.cluster, body.pools);
        auditNote(`cluster autoscaler of ${params.cluster}: ${body.pools.map((p) => `${p.name} ${p.min}..${p.max}`).join(', ')}`);
        return r;
      },
    }),
  ];
}

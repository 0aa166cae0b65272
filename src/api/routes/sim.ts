import { z } from 'zod';
import { NotFoundError, ValidationError } from '../../core/errors.js';
import { ProviderError } from '../../resources/errors.js';
import { redact } from '../../core/secrets.js';
import { SimDatacenter } from '../../providers/sim/sim.js';
import { applyDrift, DriftAction, FaultsBody, QuotaBody, SeedBody, SpeedBody } from '../../providers/sim/controls.js';
import type { SimObject } from '../../providers/sim/model.js';
import { authDenials } from '../metrics.js';
import { defineRoute, decodeCursor, encodeCursor, PageQuery, type AnyRoute, type ApiDeps, type HandlerContext } from '../route.js';

export function isSimApi(x: unknown): x is SimDatacenter {
  return x instanceof SimDatacenter;
}

const PHASES = ['creating', 'ready', 'updating', 'deleting', 'deleted', 'failed'] as const;
const DNS_TYPES = ['A', 'AAAA', 'CNAME', 'TXT', 'MX', 'SRV', 'NS', 'PTR', 'CAA'] as const;
/** The public catalogue's project (flavors, images): visible to every sim:read holder. */
const CATALOGUE = '*';

/**
 * An object as the API shows it. Never its credentials: cluster secrets
 * (kubeconfig, admin password) are not part of SimObject (the simulator keeps
 * them sealed beside it; they come only from GET /resources/:id/secrets);
 * the create's idempotency key is left out, and secret-named fields anywhere
 * (a password in a job's variables) are redacted.
 */
export function simObjectView(o: SimObject) {
  const { createKey: _createKey, ...rest } = o;
  return redact(rest);
}

type Ctx = Pick<HandlerContext<unknown, unknown, unknown>, 'visible'> & { req?: HandlerContext<unknown, unknown, unknown>['req'] };

/**
 * A request for something in a project the caller may not see: recorded as a
 * denied attempt (the audit log has it, like every other route's), answered
 * with the same 404 as something that does not exist.
 */
function hidden(c: Ctx, project: string, err: Error): Error {
  if (c.req) {
    c.req.decision = { allow: false, reason: 'hidden' };
    c.req.authzProject = project;
    authDenials.inc({ reason: 'hidden' });
  }
  return err;
}

/** The listObjects filter for the caller's visible projects (and the public catalogue); none when they see all. */
function visibleFilter(c: Ctx): { projects?: string[] } {
  const vis = c.visible('sim:read');
  return vis === 'all' ? {} : { projects: [...vis, CATALOGUE] };
}

/** Whether the caller may see objects of `project` (sim:read there, or on the system). */
function sees(c: Ctx, project: string): boolean {
  if (project === CATALOGUE) return true;
  const vis = c.visible('sim:read');
  return vis === 'all' || vis.includes(project);
}

/**
 * The simulated datacenter's controls (src/providers/sim/controls.ts).
 * Reads need sim:read anywhere (every built-in role); objects, logs and
 * metrics are limited to the projects where the caller holds sim:read (an
 * object in another project is a 404, as if it did not exist). Every change
 * needs sim:control on the system and is audited with what changed.
 */
export function simRoutes(_deps: ApiDeps, sim: SimDatacenter): AnyRoute[] {
  const tags = ['sim'];
  const read = { scope: 'any', permission: 'sim:read' } as const;
  const control = { scope: 'system', permission: 'sim:control' } as const;
  const Id = z.object({ id: z.string().min(1).max(200) });
  const HostName = z.object({ name: z.string().min(1).max(253) });
  const Project = z.object({ project: z.string().min(1).max(128) });

  const notFound = (id: string) => new NotFoundError('sim.object_not_found', `simulator object ${id} does not exist (ids look like srv_…, net_…; list them with GET /sim/objects)`, { details: { field: 'id' } });
  /** The object, if the caller may see it; else the same 404 as a missing one. */
  const visibleObject = async (c: Ctx, id: string): Promise<SimObject> => {
    const o = await sim.getObject(id);
    if (!o) throw notFound(id);
    if (!sees(c, o.project)) throw hidden(c, o.project, notFound(id));
    return o;
  };
  const mustHost = async (name: string) => {
    const hosts = await sim.hosts();
    const h = hosts.find((x) => x.name === name);
    if (!h) throw new NotFoundError('sim.host_not_found', `hypervisor ${name} does not exist; the simulator has ${hosts.map((x) => x.name).join(', ') || 'none'}`, { details: { field: 'name' } });
    return h;
  };
  const mustProject = async (c: Ctx, deps: ApiDeps, project: string) => {
    const missing = () => new NotFoundError('iam.project_not_found', `project ${project} not found`, { details: { field: 'project' } });
    if (project !== CATALOGUE && !(await deps.iam.findProject(project))) throw missing();
    if (!sees(c, project)) throw hidden(c, project, missing());
  };
  const settings = async () => ({ speed: await sim.getSpeed(), seed: await sim.getSeed(), faults: await sim.getFaults() });
  const ObjectsQuery = PageQuery.extend({
    kind: z.string().max(64).optional().describe('e.g. compute/Server'),
    project: z.string().max(128).optional(),
    phase: z.enum(PHASES).optional(),
    includeDeleted: z.enum(['true', 'false']).optional().describe('also objects that were deleted (or drift-deleted)'),
    includeCatalogue: z.enum(['true', 'false']).optional().describe('also the public catalogue (flavors, images)'),
  });

  return [
    defineRoute({
      method: 'GET', url: '/sim', summary: 'The simulator: speed, seed, fault rules, capacity in use and objects by kind and phase', tags, policy: read,
      schema: {},
      handler: async (c) => {
        const [hosts, metal, objects] = await Promise.all([sim.hosts(), sim.metalInventory(), sim.listObjects({ includeDeleted: false, ...visibleFilter(c) })]);
        const byKind: Record<string, Record<string, number>> = {};
        for (const o of objects) {
          const k = (byKind[o.kind] ??= {});
          k[o.phase] = (k[o.phase] ?? 0) + 1;
        }
        const sum = (f: (h: (typeof hosts)[number]) => number) => hosts.reduce((a, h) => a + f(h), 0);
        return {
          ...(await settings()),
          hosts: {
            count: hosts.length, enabled: hosts.filter((h) => h.enabled).length,
            vcpuCapacity: sum((h) => h.vcpuCapacity), usedVcpus: sum((h) => h.usedVcpus), ramMb: sum((h) => h.ramMb), usedRamMb: sum((h) => h.usedRamMb),
          },
          metal,
          objects: byKind,
        };
      },
    }),
    defineRoute({
      method: 'PUT', url: '/sim/speed', summary: 'Change the speed factor; operations in flight keep the simulated time they still need (admin)', tags, policy: control,
      schema: { body: SpeedBody },
      handler: async ({ body, auditNote }) => {
        const old = await sim.getSpeed();
        await sim.setSpeed(body.speed);
        auditNote(`sim speed ${old} -> ${body.speed}`);
        return settings();
      },
    }),
    defineRoute({
      method: 'PUT', url: '/sim/seed', summary: 'Change the seed of latency draws and fault decisions (admin)', tags, policy: control,
      schema: { body: SeedBody },
      handler: async ({ body, auditNote }) => {
        const old = await sim.getSeed();
        await sim.setSeed(body.seed);
        auditNote(`sim seed ${old} -> ${body.seed}`);
        return settings();
      },
    }),
    defineRoute({ method: 'GET', url: '/sim/faults', summary: 'The fault injection rules', tags, policy: read, schema: {}, handler: async () => sim.getFaults() }),
    defineRoute({
      method: 'PUT', url: '/sim/faults', summary: 'Replace the fault injection rules ({ rules: [] } turns injection off) (admin)', tags, policy: control,
      schema: { body: FaultsBody },
      handler: async ({ body, auditNote }) => {
        const r = await sim.setFaults(body);
        auditNote(`sim fault rules set: ${r.rules.length ? r.rules.map((x) => `${x.kind} ${x.op}`).join(', ') : 'none'}`.slice(0, 500));
        return r;
      },
    }),
    defineRoute({
      method: 'DELETE', url: '/sim/faults', summary: 'Clear the fault injection rules (admin)', tags, policy: control,
      schema: {},
      handler: async ({ auditNote }) => {
        await sim.setFaults({ rules: [] });
        auditNote('sim fault rules cleared');
        return undefined;
      },
    }),
    defineRoute({
      method: 'GET', url: '/sim/quotas/:project', summary: 'A project\'s simulated cloud quota (its own, else the default)', tags, policy: read,
      schema: { params: Project },
      handler: async ({ params, deps, visible, req }) => {
        await mustProject({ visible, req }, deps, params.project);
        return { project: params.project, quota: await sim.getQuota(params.project) };
      },
    }),
    defineRoute({
      method: 'PUT', url: '/sim/quotas/:project', summary: 'Change (part of) a project\'s simulated cloud quota; fields not given stay as they are (admin)', tags, policy: control,
      schema: { params: Project, body: QuotaBody },
      handler: async ({ params, body, deps, visible, auditNote, req }) => {
        await mustProject({ visible, req }, deps, params.project);
        const quota = await sim.setQuota(params.project, body);
        auditNote(`sim quota of ${params.project}: ${Object.entries(body).map(([k, v]) => `${k}=${v}`).join(', ') || 'unchanged'}`);
        return { project: params.project, quota };
      },
    }),
    defineRoute({
      method: 'GET', url: '/sim/hosts', summary: 'Simulated hypervisors: capacity, use, enabled', tags, policy: read,
      schema: {},
      handler: async () => ({ items: await sim.hosts(), nextCursor: null }),
    }),
    ...([['disable', 'Put a hypervisor into maintenance: no new placements (admin)'], ['enable', 'Take a hypervisor out of maintenance (admin)']] as const).map(([verb, summary]) => defineRoute({
      method: 'POST', url: `/sim/hosts/:name/${verb}`, summary, tags, policy: control,
      schema: { params: HostName },
      handler: async ({ params, auditNote }) => {
        await mustHost(params.name);
        await sim.setHostEnabled(params.name, verb === 'enable');
        auditNote(`hypervisor ${params.name} ${verb}d`);
        return mustHost(params.name);
      },
    })),
    defineRoute({
      method: 'POST', url: '/sim/hosts/sync', summary: 'Re-read the hypervisors from the inventory (when the simulator uses it) (admin)', tags, policy: control,
      schema: {},
      handler: async ({ auditNote }) => {
        const listed = await sim.syncHosts();
        auditNote(`hypervisors synced from the inventory: ${listed} listed`);
        return { listed, items: await sim.hosts() };
      },
    }),
    defineRoute({
      method: 'GET', url: '/sim/catalogue', summary: 'The simulator\'s public catalogue: flavors, images, OS templates, bare-metal server types', tags, policy: read,
      schema: {},
      handler: async () => sim.catalogue(),
    }),
    defineRoute({
      method: 'GET', url: '/sim/objects', summary: 'Objects in the simulated backends (filters: kind, project, phase), in projects where you hold sim:read', tags, policy: read,
      schema: { querystring: ObjectsQuery },
      handler: async ({ query, visible, req, deps }) => {
        // a project the caller may not see (or that does not exist) is a 404, as on every other route
        if (query.project) await mustProject({ visible, req }, deps, query.project);
        const after = decodeCursor(query.cursor);
        // one more than the page: whether there is a next one
        const rows = await sim.listObjects({
          ...(query.kind ? { kind: query.kind } : {}), ...(query.project ? { project: query.project } : {}), ...(query.phase ? { phase: query.phase } : {}),
          ...visibleFilter({ visible }),
          includeDeleted: query.includeDeleted === 'true' || query.phase === 'deleted', includeCatalogue: query.includeCatalogue === 'true' || query.project === CATALOGUE,
          ...(after !== undefined ? { after } : {}), limit: query.limit + 1,
        });
        const page = rows.slice(0, query.limit);
        return { items: page.map(simObjectView), nextCursor: encodeCursor(rows.length > query.limit ? page[page.length - 1]!.id : null) };
      },
    }),
    defineRoute({
      method: 'GET', url: '/sim/objects/:id', summary: 'One simulator object: spec, actual configuration, outputs, phase, operation in flight (credentials never)', tags, policy: read,
      schema: { params: Id },
      handler: async ({ params, visible, req }) => simObjectView(await visibleObject({ visible, req }, params.id)),
    }),
    defineRoute({
      method: 'POST', url: '/sim/objects/:id/drift', summary: 'Change an object behind Infraflow\'s back: delete, modify, power, clusterHealth, load (admin)', tags, policy: control,
      schema: { params: Id, body: DriftAction },
      handler: async ({ params, body, visible, auditNote, req }) => {
        const o = await visibleObject({ visible, req }, params.id);
        await applyDrift(sim, params.id, body);
        auditNote(`sim drift ${body.action} on ${o.kind} ${o.name} (${o.project})${body.action === 'modify' ? `: ${Object.keys(body.patch).join(', ')}` : body.action === 'power' ? `: ${body.power}` : ''}`);
        return simObjectView((await sim.getObject(params.id))!);
      },
    }),
    defineRoute({
      method: 'GET', url: '/sim/objects/:id/logs', summary: 'Log lines of a job or of a workload\'s pods, up to now', tags, policy: read,
      schema: { params: Id, querystring: z.object({ pod: z.string().max(253).optional(), tail: z.coerce.number().int().min(1).max(10_000).optional().describe('only the last N lines') }) },
      handler: async ({ params, query, visible, req }) => {
        await visibleObject({ visible, req }, params.id);
        const lines = await sim.logs(params.id, { ...(query.pod ? { pod: query.pod } : {}), ...(query.tail ? { tail: query.tail } : {}) });
        return { items: redact(lines), nextCursor: null };
      },
    }),
    defineRoute({
      method: 'GET', url: '/sim/objects/:id/metrics', summary: 'Synthetic load metrics of a workload: replicas, requests per second, CPU and memory use per pod', tags, policy: read,
      schema: { params: Id },
      handler: async ({ params, visible, req }) => {
        const o = await visibleObject({ visible, req }, params.id);
        if (o.kind !== 'container/Workload') throw new ValidationError('sim.no_metrics', `${params.id} is a ${o.kind}; metrics exist for container/Workload objects`, { details: { field: 'id' } });
        return sim.workloadMetrics(params.id);
      },
    }),
    defineRoute({
      method: 'GET', url: '/sim/objects/:id/route', summary: 'Route one request through a load balancer to a healthy member, round robin (status 503 and no member when none is healthy or the port has no listener)', tags, policy: read,
      schema: { params: Id, querystring: z.object({ port: z.coerce.number().int().min(1).max(65535).optional() }) },
      handler: async ({ params, query, visible, req }) => {
        const o = await visibleObject({ visible, req }, params.id);
        if (o.kind !== 'network/LoadBalancer') throw new ValidationError('sim.not_a_load_balancer', `${params.id} is a ${o.kind}, not a network/LoadBalancer`, { details: { field: 'id' } });
        try {
          return { ...(await sim.route(params.id, query.port ? { port: query.port } : {})), status: 200 };
        } catch (e) {
          // the simulated load balancer's refusal is the answer, not a failure of this API
          if (e instanceof ProviderError && e.reason === 'BackendUnavailable') return { loadBalancer: params.id, member: null, status: 503, message: e.message };
          throw e;
        }
      },
    }),
    defineRoute({
      method: 'GET', url: '/sim/dns/resolve', summary: 'Ask the simulator\'s DNS resolver (live records, CNAMEs followed)', tags, policy: read,
      schema: { querystring: z.object({ name: z.string().min(1).max(253).describe('e.g. www.example.test'), type: z.enum(DNS_TYPES).default('A') }) },
      handler: async ({ query }) => sim.resolve(query.name, query.type),
    }),
  ];
}

import { createHash, randomUUID } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { isInfraflowError } from '../../core/errors.js';
import type { Principal } from '../../iam/policy.js';
import { can } from '../../iam/policy.js';
import type { Permission } from '../../iam/permissions.js';
import type { Iam } from '../../iam/service.js';
import type { EngineApi } from '../../engine/types.js';
import type { ResourceStore } from '../../resources/store.js';
import type { Resource } from '../../resources/types.js';
import { startResourceRun } from '../../resources/lifecycle.js';

/**
 * Shared pieces of the OpenStack-compatible façade: the error shapes each
 * service answers with, the caller's context (Keystone token → Infraflow
 * principal and project), and the bridge to Infraflow resources (every
 * create, change and delete is a durable resource run).
 */

export type Service = 'identity' | 'compute' | 'image' | 'network' | 'volume';

/** An error in the shape of the service that raises it. */
export class OsError extends Error {
  constructor(readonly status: number, message: string, readonly type?: string) {
    super(message);
  }
}

export const notFound = (what: string, id: string, type?: string) => new OsError(404, `${what} ${id} could not be found.`, type);
export const badRequest = (message: string, type?: string) => new OsError(400, message, type ?? 'BadRequest');
export const conflict = (message: string, type?: string) => new OsError(409, message, type ?? 'Conflict');

const NOVA_KEYS: Record<number, string> = { 400: 'badRequest', 401: 'unauthorized', 403: 'forbidden', 404: 'itemNotFound', 405: 'badMethod', 406: 'notAcceptable', 409: 'conflictingRequest', 413: 'overLimit', 415: 'badMediaType', 429: 'overLimit', 501: 'notImplemented', 503: 'serviceUnavailable' };
const TITLES: Record<number, string> = { 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed', 406: 'Not Acceptable', 409: 'Conflict', 413: 'Request Entity Too Large', 415: 'Unsupported Media Type', 429: 'Too Many Requests', 500: 'Internal Server Error', 503: 'Service Unavailable' };

/** Status and message of any error (ours, Infraflow's typed ones, Fastify's 4xx); 500s say only the request id. */
export function statusOf(err: unknown, req: FastifyRequest): { status: number; message: string; type: string | undefined } {
  if (err instanceof OsError) return { status: err.status, message: err.message, type: err.type };
  if (isInfraflowError(err)) {
    const status = err.status >= 400 && err.status < 600 ? err.status : 500;
    return { status, message: status >= 500 ? `${err.message} (request ${req.id})` : err.message, type: undefined };
  }
  const fe = err as { statusCode?: number; message?: string };
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) return { status: fe.statusCode, message: fe.message ?? 'bad request', type: undefined };
  return { status: 500, message: `The server has either erred or is incapable of performing the requested operation (request ${req.id}).`, type: undefined };
}

/** The body each service answers errors with, as its clients parse them. */
export function errorBody(service: Service, status: number, message: string, type?: string): unknown {
  switch (service) {
    case 'identity':
      return { error: { code: status, message, title: TITLES[status] ?? 'Error' } };
    case 'network':
      return { NeutronError: { type: type ?? (status === 404 ? 'NotFound' : TITLES[status]?.replace(/ /g, '') ?? 'Error'), message, detail: '' } };
    case 'image':
      return { code: status, title: TITLES[status] ?? 'Error', message, error: { code: status, title: TITLES[status] ?? 'Error', message } };
    default:
      return { [NOVA_KEYS[status] ?? 'computeFault']: { code: status, message } };
  }
}

export function sendError(service: Service, err: unknown, req: FastifyRequest, reply: FastifyReply): void {
  const { status, message, type } = statusOf(err, req);
  if (status >= 500) req.log.error({ err }, 'openstack façade error');
  if (status === 401 && service !== 'identity') reply.header('www-authenticate', `Keystone uri="${baseUrl(req)}/identity"`);
  void reply.code(status).header('content-type', 'application/json').header('x-openstack-request-id', `req-${req.id}`).send(JSON.stringify(errorBody(service, status, message, type)));
}

/** The façade's external base URL (`http://host:port/openstack`), from the request. */
export function baseUrl(req: FastifyRequest): string {
  const proto = (req.headers['x-forwarded-proto'] as string | undefined) ?? req.protocol;
  const host = (req.headers['x-forwarded-host'] as string | undefined) ?? req.headers.host ?? 'localhost';
  return `${proto}://${host}/openstack`;
}

/** Who is calling, on which project (a Keystone project-scoped token). */
export interface OsContext {
  principal: Principal;
  userId: string;
  userName: string;
  projectId: string;
  /** Infraflow project name (resources live under it). */
  project: string;
  base: string;
}

export const OS_DOMAIN = { id: 'default', name: 'Default' } as const;

/** Resolves X-Auth-Token to the caller; 401 without a valid project-scoped token. */
export async function osContext(iam: Iam, req: FastifyRequest): Promise<OsContext> {
  const token = req.headers['x-auth-token'];
  if (typeof token !== 'string' || !token) throw new OsError(401, 'The request you have made requires authentication.');
  const principal = await iam.authenticate(token);
  if (!principal) throw new OsError(401, 'The request you have made requires authentication.');
  if (!principal.tokenProject) throw new OsError(401, 'This call needs a project-scoped token: authenticate with a project scope (OS_PROJECT_NAME).');
  const project = await iam.findProject(principal.tokenProject);
  if (!project) throw new OsError(401, `project ${principal.tokenProject} of this token no longer exists`);
  const ctx = { principal, userId: principal.userId, userName: principal.userName, projectId: project.id, project: project.name, base: baseUrl(req) };
  (req as FastifyRequest & { osContext?: OsContext }).osContext = ctx;
  return ctx;
}

export function requirePerm(ctx: OsContext, perm: Permission): void {
  if (!can(ctx.principal, perm, ctx.project)) {
    throw new OsError(403, `Policy doesn't allow this operation: it needs ${perm} on project ${ctx.project}; ask an administrator for a role that grants it.`);
  }
}

/** A stable UUID for something that has no stored id of its own (a security group rule, a server's NIC port). */
export function derivedUuid(...parts: string[]): string {
  const h = createHash('sha256').update(parts.join('\u0000')).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-${((parseInt(h.slice(16, 18), 16) & 0x3f) | 0x80).toString(16)}${h.slice(18, 20)}-${h.slice(20, 32)}`;
}

export function isoTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

// ------------------------------------------------------------------ labels the façade keeps on resources

export const L = {
  name: 'openstack.org/name',
  description: 'openstack.org/description',
  network: 'openstack.org/network-id',
  subnet: 'openstack.org/subnet-id',
  port: 'openstack.org/port-id',
  image: 'openstack.org/image-id',
  extraRules: 'openstack.org/remote-group-rules',
  deviceOwner: 'openstack.org/device-owner',
  props: 'openstack.org/properties',
  user: 'openstack.org/user-id',
} as const;

export function osName(r: Resource): string {
  return r.labels[L.name] ?? r.name;
}

const RESOURCE_NAME = /^[a-z0-9]([a-z0-9._-]{0,252}[a-z0-9])?$/i;

/** The bridge to Infraflow resources: every change is a durable resource run. */
export class Backend {
  constructor(readonly resources: ResourceStore, readonly engine: EngineApi) {}

  /** Creates a resource for an OpenStack object and starts its provisioning run. */
  async create(ctx: OsContext, kind: string, name: string | undefined, spec: Record<string, unknown>, labels: Record<string, string> = {}): Promise<Resource> {
    const id = randomUUID();
    const display = name ?? '';
    const base = RESOURCE_NAME.test(display) ? display : `${kind.split('/')[1]!.toLowerCase()}-${id.slice(0, 8)}`;
    const all = { ...labels, [L.name]: display, [L.user]: ctx.userId };
    let r: Resource;
    try {
      r = await this.resources.create({ id, kind, name: base, project: ctx.project, spec, labels: all });
    } catch (e) {
      if (!(isInfraflowError(e) && e.code === 'resources.name_taken')) throw e;
      r = await this.resources.create({ id, kind, name: `${base.slice(0, 240)}-${id.slice(0, 8)}`, project: ctx.project, spec, labels: all });
    }
    try {
      await startResourceRun(this.engine, 'provision', r);
    } catch (e) {
      await this.resources.delete(r.id).catch(() => {});
      throw e;
    }
    return r;
  }

  /** Changes the spec (and labels) and starts the run that applies it. */
  async update(r: Resource, spec: Record<string, unknown>, labels?: Record<string, string>): Promise<Resource> {
    const next = await this.resources.updateSpec(r.id, spec, labels ? { labels } : {});
    await startResourceRun(this.engine, 'update', next);
    return next;
  }

  async remove(r: Resource): Promise<void> {
    if (r.status.phase === 'deleted') return;
    await startResourceRun(this.engine, 'delete', r);
  }

  /** Waits until the resource's current generation settled (ready, failed or deleted), up to `timeoutMs`. */
  async settle(id: string, timeoutMs = 60_000, opts: { gone?: boolean } = {}): Promise<Resource> {
    const until = Date.now() + timeoutMs;
    let delay = 10;
    for (;;) {
      const r = await this.resources.get(id);
      const p = r.status.phase;
      if (opts.gone ? p === 'deleted' || p === 'failed' : (p === 'ready' && r.status.observedGeneration >= r.generation) || p === 'failed' || p === 'deleted') return r;
      if (Date.now() > until) return r;
      await new Promise((res) => setTimeout(res, delay));
      delay = Math.min(delay * 2, 200);
    }
  }

  /** Live resources of a kind in the caller's project. */
  async list(ctx: OsContext, kind: string, labels?: Record<string, string>): Promise<Resource[]> {
    const out: Resource[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await this.resources.list({ project: ctx.project, kind, limit: 1000, ...(labels ? { labels } : {}), ...(after ? { after } : {}) });
      out.push(...page.items);
      if (!page.nextCursor) return out;
      after = page.nextCursor;
    }
  }

  /** The live resource of `kind` with OpenStack id `id` in the caller's project. */
  async find(ctx: OsContext, kind: string, id: string): Promise<Resource | undefined> {
    const r = await this.resources.find(id);
    if (!r || r.kind !== kind || r.project !== ctx.project || r.status.phase === 'deleted') return undefined;
    return r;
  }

  /** By id, else by exact OpenStack name (unique). */
  async findByIdOrName(ctx: OsContext, kind: string, ref: string): Promise<Resource | undefined> {
    const byId = await this.find(ctx, kind, ref);
    if (byId) return byId;
    const named = await this.list(ctx, kind, { [L.name]: ref });
    return named.length === 1 ? named[0] : undefined;
  }
}

/** The provider id other specs reference (outputs.id), once the resource has one. */
export function providerId(r: Resource): string | undefined {
  const id = r.status.outputs.id;
  return typeof id === 'string' && id ? id : undefined;
}

/** Waits for a referenced resource to have its provider id (it may still be creating). */
export async function refOf(backend: Backend, r: Resource, what: string): Promise<string> {
  let id = providerId(r);
  if (id) return id;
  const settled = await backend.settle(r.id, 60_000);
  id = providerId(settled);
  if (!id) throw conflict(`${what} ${r.id} is not ready (${settled.status.phase}${settled.status.message ? `: ${settled.status.message}` : ''}); retry when it is`);
  return id;
}

/** Failure message and reason of a failed resource. */
export function failureOf(r: Resource): { reason: string; message: string } {
  const ready = r.status.conditions.find((c) => c.type === 'Ready' && c.status === 'False');
  return { reason: ready?.reason ?? 'Internal', message: r.status.message ?? ready?.message ?? 'the operation failed' };
}

/** The HTTP status a failed synchronous create answers with. */
export function failureError(r: Resource, type?: string): OsError {
  const f = failureOf(r);
  const status = f.reason === 'InvalidSpec' ? 400 : f.reason === 'NotFound' ? 404 : f.reason === 'QuotaExceeded' ? 409 : f.reason === 'BackendUnavailable' ? 503 : f.reason === 'Internal' ? 500 : 409;
  return new OsError(status, f.reason === 'QuotaExceeded' ? `Quota exceeded: ${f.message}` : f.message, type ?? (f.reason === 'QuotaExceeded' ? 'OverQuota' : f.reason));
}

/**
 * Neutron/Glance-style filtering of a list by query parameters: every
 * parameter naming a field of the objects must match (several values of one
 * parameter: any of them); `fields` selects fields; `limit`/`marker` page.
 */
export function filterList<T extends Record<string, unknown>>(items: T[], query: Record<string, unknown>, opts: { skip?: string[] } = {}): { items: T[]; more: boolean } {
  const skip = new Set(['limit', 'marker', 'fields', 'sort_key', 'sort_dir', 'page_reverse', ...(opts.skip ?? [])]);
  let out = items.filter((it) => Object.entries(query).every(([k, v]) => {
    if (skip.has(k) || v === undefined) return true;
    if (!(k in it)) return true;
    const want = (Array.isArray(v) ? v : [v]).map(String);
    const have = it[k];
    if (Array.isArray(have)) return want.every((w) => have.map(String).includes(w));
    return want.includes(have === null ? '' : typeof have === 'object' ? JSON.stringify(have) : String(have));
  }));
  const sortKey = typeof query.sort_key === 'string' ? query.sort_key : undefined;
  if (sortKey) {
    const dir = query.sort_dir === 'desc' ? -1 : 1;
    out = [...out].sort((a, b) => (String(a[sortKey]) < String(b[sortKey]) ? -dir : String(a[sortKey]) > String(b[sortKey]) ? dir : 0));
  }
  if (typeof query.marker === 'string') {
    const i = out.findIndex((x) => x.id === query.marker);
    out = i >= 0 ? out.slice(i + 1) : out;
  }
  let more = false;
  const limit = Number(query.limit);
  if (Number.isInteger(limit) && limit > 0 && out.length > limit) {
    out = out.slice(0, limit);
    more = true;
  }
  const fields = query.fields === undefined ? undefined : (Array.isArray(query.fields) ? query.fields : [query.fields]).flatMap((f) => String(f).split(','));
  if (fields?.length) out = out.map((x) => Object.fromEntries(Object.entries(x).filter(([k]) => fields.includes(k))) as T);
  return { items: out, more };
}

/** A map from provider ids (outputs.id) to resources of the caller's project, for reverse references. */
export async function indexByProviderId(backend: Backend, ctx: OsContext, kinds: string[]): Promise<Map<string, Resource>> {
  const m = new Map<string, Resource>();
  for (const kind of kinds) for (const r of await backend.list(ctx, kind)) {
    const id = providerId(r);
    if (id) m.set(id, r);
  }
  return m;
}

import type { FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { InfraflowError, NotFoundError, ValidationError } from '../core/errors.js';
import { labelsSchema } from '../core/names.js';
import type { Store } from '../store/store.js';
import type { Clock } from '../core/clock.js';
import type { Logger } from '../core/log.js';
import type { EngineApi } from '../engine/types.js';
import type { Iam } from '../iam/service.js';
import type { Principal, RoutePolicy } from '../iam/policy.js';
import { visibleProjects, can } from '../iam/policy.js';
import type { Permission } from '../iam/permissions.js';

/**
 * The route table. Every route is declared with `defineRoute`: method, URL
 * (under /api/v1 unless `root`), schemas (validation + OpenAPI), and the
 * policy that authorizes it. The server refuses to start with a route that
 * has no policy, and the authorization matrix test is generated from this
 * table.
 */
export interface ApiDeps {
  store: Store;
  clock: Clock;
  logger: Logger;
  iam: Iam;
  engine?: EngineApi | undefined;
  /** Extra readiness checks (/readyz): throw when not ready. */
  readiness?: Record<string, () => Promise<void>>;
  /** Area modules, plugged in as they exist (kept loose so areas can land independently). */
  areas?: Record<string, unknown>;
}

type Z = z.ZodType;
type Out<T> = T extends Z ? z.output<T> : undefined;

export interface HandlerContext<P, Q, B> {
  req: FastifyRequest;
  reply: FastifyReply;
  params: P;
  query: Q;
  body: B;
  deps: ApiDeps;
  /** Null only on public routes. */
  principal: Principal;
  /** The project resolved for a project-scope route (null: a system object; undefined: none given). */
  project: string | null | undefined;
  /** The object the route's project resolver loaded, if it returned one. */
  object: unknown;
  /** Projects where the caller holds `perm` ('all' for system holders), for lists across projects. */
  visible(perm?: Permission): 'all' | string[];
  can(perm: Permission, project: string | null): boolean;
  /** The revision the caller sent in If-Match, if any (400 when malformed). */
  ifMatch(): number | undefined;
  /** Sets the ETag for a revision. */
  etag(revision: number | string): void;
  /** A message recorded with this request's audit entry (never a secret). */
  auditNote(message: string): void;
}

export interface ProjectResolverInput<P, Q, B> {
  params: P;
  query: Q;
  body: B;
  deps: ApiDeps;
}

export interface RouteSpec<P extends Z | undefined = undefined, Q extends Z | undefined = undefined, B extends Z | undefined = undefined> {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** Path under /api/v1, e.g. `/runs/:id` (or an absolute path with `root: true`). */
  url: string;
  root?: boolean;
  summary: string;
  tags: string[];
  description?: string;
  policy: RoutePolicy;
  /**
   * Project-scope routes: the project this request acts on. Return null when
   * the target object does not exist (404), a project name, `null` for
   * system-owned objects via `system: true`, or undefined for a list across
   * the caller's projects.
   */
  project?: (i: ProjectResolverInput<Out<P>, Out<Q>, Out<B>>) => Promise<ResolvedProject> | ResolvedProject;
  /** The 404 for this route's object: the same for "missing" and "in a project you cannot see". */
  notFound?: (i: { params: Out<P> }) => InfraflowError;
  schema: { params?: P; querystring?: Q; body?: B; response?: Record<number, Z> };
  /** Mutating routes are audited; `always` also audits a read (secret values). */
  audit?: 'always' | 'default';
  /** Server-sent events: the handler owns the raw response. */
  sse?: boolean;
  /** Keep the request body's bytes as `req.rawBody` (signed webhooks). */
  rawBody?: boolean;
  /** Rate limit override for this route (e.g. login). */
  rateLimit?: { max: number; timeWindowMs: number; keyBy?: 'ip' | 'token' };
  handler: (c: HandlerContext<Out<P>, Out<Q>, Out<B>>) => Promise<unknown> | unknown;
}

/** What a project resolver returns. */
/** `object`: the object the resolver loaded, handed to the handler (no second read). */
export type ResolvedProject = { project: string; mustExist?: boolean; object?: unknown } | { system: true; object?: unknown } | { missing: true } | { list: true };

export type AnyRoute = RouteSpec<any, any, any>;

export function defineRoute<P extends Z | undefined = undefined, Q extends Z | undefined = undefined, B extends Z | undefined = undefined>(spec: RouteSpec<P, Q, B>): AnyRoute {
  return spec as AnyRoute;
}

export function fullUrl(r: AnyRoute): string {
  return r.root ? r.url : `/api/v1${r.url}`;
}

// ------------------------------------------------------------------ shared schemas

export const ID_PARAM = z.object({ id: z.string().min(1).max(200) });

/** Cursor pagination: `?limit=&cursor=`; answers `{ items, nextCursor }`. */
export const PageQuery = z.object({
  limit: z.coerce.number().int().min(1).max(500).default(50).describe('page size, 1..500'),
  cursor: z.string().max(500).optional().describe('the nextCursor of the previous page'),
});

export function pageOf<T extends Z>(item: T) {
  return z.object({ items: z.array(item), nextCursor: z.string().nullable() });
}

export function encodeCursor(last: string | null | undefined): string | null {
  return last === null || last === undefined ? null : Buffer.from(JSON.stringify({ a: last }), 'utf8').toString('base64url');
}

export function decodeCursor(cursor: string | undefined): string | undefined {
  if (cursor === undefined || cursor === '') return undefined;
  try {
    const v = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as { a?: unknown };
    if (typeof v.a === 'string') return v.a;
  } catch {
    /* fall through */
  }
  throw new ValidationError('api.invalid_cursor', 'cursor: not a cursor this API issued; pass the nextCursor of the previous page unchanged', { details: { field: 'cursor' } });
}

export const Labels = labelsSchema;

export const projectNotFound = (name: string) => new NotFoundError('iam.project_not_found', `project ${name} not found`);

/** Resolver for routes whose project is a body or query field. */
export function projectFrom(field: 'body' | 'query', key = 'project') {
  return ({ body, query }: { body: any; query: any }): ResolvedProject => {
    const src = field === 'body' ? body : query;
    const p = src?.[key];
    return typeof p === 'string' ? { project: p, mustExist: true } : { list: true };
  };
}

export { visibleProjects, can };

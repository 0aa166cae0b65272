import { Readable } from 'node:stream';
import { isDeepStrictEqual } from 'node:util';
import Fastify, { LogController, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import fastifyRateLimit from '@fastify/rate-limit';
import fastifyCookie from '@fastify/cookie';
import { jsonSchemaTransform, jsonSchemaTransformObject, serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod';
import fastJsonStringify from 'fast-json-stringify';
import { z } from 'zod';
import { InfraflowError, NotFoundError, UnauthorizedError, ValidationError } from '../core/errors.js';
import { newId } from '../core/ids.js';
import { checkShape } from '../core/input.js';
import type { Logger } from '../core/log.js';
import { authorize, can, canSee, visibleProjects, type Decision, type Principal } from '../iam/policy.js';
import { notFoundHandler, problemFor, sendProblem } from './problem.js';
import { fullUrl, projectNotFound, type AnyRoute, type ApiDeps, type HandlerContext, type ResolvedProject } from './route.js';
import { authDenials, engineEvents, httpDuration, httpRequests, startDefaultMetrics } from './metrics.js';
import { closeAllStreams } from './sse.js';
import { systemRoutes } from './routes/system.js';
import { authRoutes } from './routes/auth.js';
import { iamRoutes } from './routes/iam.js';
import { secretRoutes } from './routes/secrets.js';
import { runRoutes } from './routes/runs.js';
import { eventRoutes } from './routes/events.js';
import { areaRoutes } from './routes/areas.js';
import { sessionRoutes } from './routes/session.js';
import { cookieBearer } from './session.js';
import { registerConsole } from './console.js';
import { OPENSTACK_PREFIX, registerOpenStack } from './openstack/index.js';

export interface ServerOptions {
  /** Largest request body accepted (413 above). */
  bodyLimitBytes?: number;
  /** Requests per window per token (per address when anonymous); false disables. */
  rateLimit?: { max: number; timeWindowMs: number } | false;
  /** Fastify's logger (request logs with request ids); default: deps.logger. */
  logger?: Logger;
  /** Swagger UI at /docs (default true). */
  docs?: boolean;
  /**
   * Check every response against its zod schema before sending it (a
   * response that does not match is a 500). Responses are always written by a
   * serializer compiled from the schema (only the declared fields leave the
   * server); this adds zod's full check on top, which costs more than the
   * rest of a list request. Default: on under Vitest and when
   * INFRAFLOW_VALIDATE_RESPONSES=1, off otherwise.
   */
  validateResponses?: boolean;
  /** The console's build output (web/dist): served at `/` (src/api/console.ts). */
  console?: string | undefined;
  /** Extra routes (tests, plug-ins). */
  extraRoutes?: AnyRoute[];
  /**
   * Authorization only: every route authenticates and authorizes, then
   * answers 200 `{ authorized: true }` without running its handler. The
   * authorization matrix test uses it to check every route × role × project
   * without side effects. Never set in a server that serves users.
   */
  authorizeOnly?: boolean;
}

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null;
    decision: Decision | null;
    authzProject: string | null | undefined;
    resolvedObject: unknown;
    auditMessage: string | null;
    auditActorName: string | null;
    /** The body's bytes, on routes declared with `rawBody` (signed webhooks). */
    rawBody?: Buffer;
  }
  interface FastifyContextConfig {
    routeSpec?: AnyRoute;
  }
}

/** Every route of the API, in one table (the authorization matrix test is generated from it). */
export function routeTable(deps: ApiDeps, extra: AnyRoute[] = []): AnyRoute[] {
  return [
    ...systemRoutes(deps),
    ...authRoutes(deps),
    ...sessionRoutes(deps),
    ...iamRoutes(deps),
    ...secretRoutes(deps),
    ...(deps.engine ? [...runRoutes(deps), ...eventRoutes(deps)] : []),
    ...areaRoutes(deps),
    ...extra,
  ];
}

const servedByApp = new WeakMap<FastifyInstance, string[]>();
/** Every `METHOD url` the server answers (route table, plug-ins, HEAD twins). */
export function servedRoutes(app: FastifyInstance): string[] {
  return [...(servedByApp.get(app) ?? [])];
}

/** Paths served by plug-ins rather than the route table (documentation UI assets). */
export const PLUGIN_PATH_PREFIXES = ['/docs', OPENSTACK_PREFIX];

const MUTATING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

function bearerOf(req: FastifyRequest): string | undefined {
  const h = req.headers.authorization;
  if (!h) return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
  return m ? m[1] : '';
}

export function parseIfMatch(h: string | string[] | undefined): number | undefined {
  const v = Array.isArray(h) ? h[0] : h;
  if (v === undefined || v.trim() === '*') return undefined;
  const m = /^\s*(?:W\/)?"?(\d{1,15})"?\s*$/.exec(v);
  if (!m) throw new ValidationError('api.invalid_if_match', 'If-Match: send the ETag you received, e.g. "3"', { details: { field: 'If-Match' } });
  return Number(m[1]);
}

/**
 * One access line per request ("request completed", with the method, URL and
 * caller's address that Fastify puts on a separate "incoming request" line).
 * Fastify's pair cost ~45 µs of CPU per request at info level (a child
 * logger, two serializations, two writes): as much as the rest of a GET by id.
 */
class AccessLog extends LogController {
  override incomingRequest(): void {}
  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    if (this.isLogDisabled(request)) return;
    // Fastify's serializer: method, url, host, remoteAddress, remotePort; sign-in callbacks carry a code and state in their query: never logged
    const req = request.url.startsWith('/api/v1/auth/oidc/') && request.url.includes('?') ? { method: request.method, url: request.url.slice(0, request.url.indexOf('?')) + '?[redacted]', remoteAddress: request.ip } : request;
    if (error) reply.log.error({ req, res: reply, err: error, responseTime: reply.elapsedTime }, 'request errored');
    else if ((reply.log as Logger).isLevelEnabled?.('info') ?? true) reply.log.info({ req, res: reply, responseTime: reply.elapsedTime }, 'request completed');
  }
}

// ------------------------------------------------------------------ response serialization

type JsonSchema = Record<string, unknown>;
const PRIMITIVE_TYPES = new Set(['string', 'number', 'integer', 'boolean', 'null']);

class UnsupportedSchema extends Error {}

/**
 * Rewrites a zod-generated JSON Schema (draft-7, output side) so that
 * fast-json-stringify writes exactly what zod's serializer would accept, and
 * refuses (UnsupportedSchema) the shapes where it would not:
 * - `const` becomes a one-value `enum` (fast-json-stringify writes a `const`
 *   whatever the value is; an `enum` writes the value);
 * - `anyOf [X, null]` (a `.nullable()`) becomes X with `null` added to its
 *   types (fast-json-stringify picks anyOf branches by validating them with
 *   `additionalProperties: false`, so an object with an extra field would fail
 *   to match instead of being stripped);
 * - any other union of objects, arrays or references, `not`, and `if` are
 *   refused: those schemas keep zod's serializer.
 */
function fastSchema(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(fastSchema);
  if (node === null || typeof node !== 'object') return node;
  const n = { ...(node as JsonSchema) };
  if ('not' in n || 'if' in n) throw new UnsupportedSchema('not/if');
  if ('const' in n) {
    const v = n.const;
    delete n.const;
    n.enum = [v];
    if (n.type === undefined) {
      const t = v === null ? 'null' : typeof v;
      if (!PRIMITIVE_TYPES.has(t)) throw new UnsupportedSchema('const of an object');
      n.type = t;
    }
  }
  for (const key of ['anyOf', 'oneOf'] as const) {
    const branches = n[key] as JsonSchema[] | undefined;
    if (!branches) continue;
    const isNull = (b: JsonSchema) => b.type === 'null' && Object.keys(b).length === 1;
    const others = branches.filter((b) => !isNull(b));
    if (others.length === 1 && others.length < branches.length) {
      const x = fastSchema(others[0]) as JsonSchema;
      delete n[key];
      if (Object.keys(x).length === 0) return n; // nullable unknown: anything
      if (typeof x.type !== 'string' || 'anyOf' in x || 'oneOf' in x || '$ref' in x) throw new UnsupportedSchema('nullable without a single type');
      Object.assign(n, x, { type: [x.type, 'null'] });
      if (Array.isArray(x.enum)) n.enum = [...x.enum, null];
      continue;
    }
    const primitive = branches.every((b) => typeof b.type === 'string' && PRIMITIVE_TYPES.has(b.type) && !('$ref' in b) && !('anyOf' in b) && !('oneOf' in b));
    if (!primitive) throw new UnsupportedSchema('union of non-primitive shapes');
    n[key] = branches.map(fastSchema);
  }
  // a record of unknown values (`z.record(z.string(), z.unknown())`: specs, outputs, free-form data) has nothing to
  // strip or coerce: written with one JSON.stringify instead of key by key (a third of a resource list's serialization)
  if (n.type === 'object' && !n.properties && !n.patternProperties && isAnything(n.additionalProperties) && (n.propertyNames === undefined || (n.propertyNames as JsonSchema).type === 'string')) {
    return {};
  }
  for (const key of ['properties', 'definitions', '$defs', 'patternProperties']) {
    const m = n[key] as Record<string, unknown> | undefined;
    if (m && typeof m === 'object') n[key] = Object.fromEntries(Object.entries(m).map(([k, v]) => [k, fastSchema(v)]));
  }
  for (const key of ['items', 'additionalProperties', 'allOf', 'prefixItems', 'additionalItems']) {
    if (n[key] !== undefined && typeof n[key] === 'object') n[key] = fastSchema(n[key]);
  }
  return n;
}

function isAnything(x: unknown): boolean {
  return x === true || (x !== null && typeof x === 'object' && Object.keys(x).length === 0);
}

const fastSerializers = new WeakMap<object, ((data: unknown) => string) | null>();

/** fast-json-stringify compiled from a zod schema's JSON Schema, or null when the schema has a shape it cannot write the way zod would. */
export function fastSerializerFor(schema: z.ZodType): ((data: unknown) => string) | null {
  let fast = fastSerializers.get(schema);
  if (fast !== undefined) return fast;
  try {
    const json = z.toJSONSchema(schema, { io: 'output', unrepresentable: 'throw', reused: 'inline', cycles: 'ref', target: 'draft-7' }) as JsonSchema;
    delete json.$schema;
    fast = fastJsonStringify(fastSchema(json) as Parameters<typeof fastJsonStringify>[0]) as (data: unknown) => string;
  } catch {
    fast = null; // transforms, dates, unions of objects…: zod's serializer
  }
  fastSerializers.set(schema, fast);
  return fast;
}

/**
 * Fastify serializer compiler for the routes' zod response schemas. The
 * schemas stay the source of truth (validation in tests, OpenAPI); the bytes
 * are written by fast-json-stringify compiled from the schema, which writes
 * only the declared fields (like zod's stripping) in a fraction of the time of
 * zod's encode + JSON.stringify (a page of 100 resources: ~1 ms → ~0.4 ms).
 * Schemas it cannot express faithfully keep zod's serializer. With
 * `validate` (tests), zod's check runs first and a mismatch is a 500, as
 * before, and the compiled output must equal zod's (same JSON value), so every
 * API test also checks the compiled serializers against zod.
 */
export function responseSerializerCompiler(opts: { validate: boolean }) {
  return (route: { schema: unknown; method: string; url: string; httpStatus?: string }) => {
    const zodSerialize = serializerCompiler(route as Parameters<typeof serializerCompiler>[0]) as (data: unknown) => string;
    const maybe = route.schema as { properties?: unknown } | z.ZodType;
    const schema = maybe instanceof z.ZodType ? maybe : maybe && (maybe as { properties?: unknown }).properties instanceof z.ZodType ? (maybe as { properties: z.ZodType }).properties : undefined;
    if (!schema) return zodSerialize;
    let fast: ((data: unknown) => string) | null | undefined; // compiled on first use: servers start fast
    return (data: unknown): string => {
      if (fast === undefined) fast = fastSerializerFor(schema);
      if (!fast) return zodSerialize(data);
      if (!opts.validate) return fast(data);
      // zod's check, and the compiled serializer must write what zod would have
      const checked = zodSerialize(data);
      const out = fast(data);
      if (!isDeepStrictEqual(JSON.parse(out), JSON.parse(checked))) {
        throw new Error(`response of ${route.method} ${route.url}: the compiled serializer wrote ${out.slice(0, 300)} where zod wrote ${checked.slice(0, 300)}`);
      }
      return out;
    };
  };
}

/** Nesting depth and number of values a JSON request body may have (see docs/api.md). */
export const BODY_MAX_DEPTH = 64;
export const BODY_MAX_VALUES = 200_000;

export async function createServer(deps: ApiDeps, opts: ServerOptions = {}): Promise<FastifyInstance> {
  const table = routeTable(deps, opts.extraRoutes);
  for (const r of table) {
    if (!r.policy) throw new Error(`route ${r.method} ${fullUrl(r)} has no policy: every route must declare one`);
    if (r.policy.scope === 'project' && !r.project) throw new Error(`route ${r.method} ${fullUrl(r)} is project-scoped but has no project resolver`);
  }
  const app = Fastify({
    loggerInstance: (opts.logger ?? deps.logger).child({ component: 'http' }),
    bodyLimit: opts.bodyLimitBytes ?? 1_048_576,
    genReqId: (req) => {
      const h = req.headers['x-request-id'];
      const v = Array.isArray(h) ? h[0] : h;
      return v && /^[A-Za-z0-9._-]{1,64}$/.test(v) ? v : newId('req');
    },
    routerOptions: { maxParamLength: 200 },
    forceCloseConnections: true,
    return503OnClosing: true,
    logController: new AccessLog(),
  });
  const served: string[] = [];
  servedByApp.set(app as unknown as FastifyInstance, served);
  app.addHook('onRoute', (r) => {
    for (const m of [r.method].flat()) served.push(`${m} ${r.url}`);
  });
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(responseSerializerCompiler({ validate: opts.validateResponses ?? (process.env.VITEST !== undefined || process.env.INFRAFLOW_VALIDATE_RESPONSES === '1') }));
  startDefaultMetrics();

  app.decorateRequest('principal', null);
  app.decorateRequest('decision', null);
  app.decorateRequest('authzProject', undefined);
  app.decorateRequest('resolvedObject', undefined);
  app.decorateRequest('auditMessage', null);
  app.decorateRequest('auditActorName', null);

  app.setErrorHandler((err, req, reply) => {
    const problem = problemFor(err, req);
    if (problem.status >= 500) req.log.error({ err }, 'request failed');
    else req.log.info({ code: problem.code, status: problem.status }, 'request refused');
    if (problem.status === 401) reply.header('www-authenticate', 'Bearer realm="infraflow"');
    if (problem.status === 429 && (err as { retryAfterSeconds?: number }).retryAfterSeconds) reply.header('retry-after', String((err as { retryAfterSeconds?: number }).retryAfterSeconds));
    return sendProblem(reply, problem);
  });
  await app.register(fastifyCookie);
  if (opts.console) await registerConsole(app as unknown as FastifyInstance, opts.console, notFoundHandler);
  else app.setNotFoundHandler(notFoundHandler);

  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'Infraflow API', version: '1', description: 'Infrastructure provisioning control plane. Errors are RFC 9457 problem+json; lists are cursor-paginated; updates take If-Match.' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'a session token from POST /api/v1/auth/login or an API token' } } },
    },
    transform: jsonSchemaTransform,
    transformObject: jsonSchemaTransformObject,
  });
  if (opts.docs !== false) await app.register(fastifySwaggerUi, { routePrefix: '/docs' });

  if (opts.rateLimit !== false) {
    const rl = opts.rateLimit ?? { max: 1200, timeWindowMs: 60_000 };
    await app.register(fastifyRateLimit, {
      global: true,
      max: rl.max,
      timeWindow: rl.timeWindowMs,
      // the budget belongs to the authenticated principal (every token of one
      // user shares it), else to the client address: a made-up bearer string
      // gets no budget of its own. The lookup is the one the route does next
      // (cached, failures too), so it costs nothing extra.
      keyGenerator: async (req) => {
        const b = bearerOf(req);
        if (b) {
          const p = await deps.iam.authenticate(b);
          if (p) {
            req.principal = p;
            return 'user:' + p.userId;
          }
        }
        return 'ip:' + req.ip;
      },
      errorResponseBuilder: (_req, ctx) => Object.assign(new InfraflowError('api.rate_limited', `too many requests: the limit is ${ctx.max} per ${ctx.after} for each user (or client address without a valid token); wait and retry`, 429), { retryAfterSeconds: Math.ceil(ctx.ttl / 1000) }),
    });
  }

  // request id on every response; metrics; audit
  // (callback-style hooks: no promise per request on the paths that have nothing to wait for)
  app.addHook('onRequest', (req, reply, done) => {
    reply.header('x-request-id', String(req.id));
    done();
  });
  // bodies are untrusted: refuse deep nesting and huge value counts before any schema or handler walks them
  app.addHook('preValidation', (req, _reply, done) => {
    const body = req.body;
    if (body === null || typeof body !== 'object') return done();
    // parsed JSON only: a raw upload (a Buffer or a stream, e.g. the OpenStack image data) is bytes, not a tree
    const proto = Object.getPrototypeOf(body) as unknown;
    if (!Array.isArray(body) && proto !== Object.prototype && proto !== null) return done();
    try {
      checkShape(body, { code: 'api.body_too_complex', what: 'the request body', maxDepth: BODY_MAX_DEPTH, maxNodes: BODY_MAX_VALUES });
    } catch (err) {
      return done(err as Error);
    }
    done();
  });
  app.addHook('onResponse', (req, reply, done) => {
    const route = req.routeOptions.url ?? 'unmatched';
    httpRequests.inc({ method: req.method, route, status: String(reply.statusCode) });
    httpDuration.observe({ method: req.method, route }, reply.elapsedTime / 1000);
    done();
  });
  const writeAudit = async (req: FastifyRequest, reply: FastifyReply, spec: AnyRoute, denied: boolean): Promise<void> => {
    const params = (req.params ?? {}) as Record<string, unknown>;
    try {
      await deps.iam.audit({
        actorId: req.principal?.userId ?? null,
        actorName: req.principal?.userName ?? req.auditActorName,
        tokenId: req.principal?.tokenId ?? null,
        action: 'permission' in spec.policy ? spec.policy.permission : spec.policy.scope,
        method: req.method,
        route: `${req.method} ${fullUrl(spec)}`,
        target: typeof params.id === 'string' ? params.id : Object.keys(params).length ? JSON.stringify(params).slice(0, 500) : null,
        project: typeof req.authzProject === 'string' ? req.authzProject : null,
        outcome: denied ? 'denied' : reply.statusCode >= 400 ? 'failed' : 'allowed',
        status: reply.statusCode,
        requestId: String(req.id),
        message: req.auditMessage,
      });
    } catch (err) {
      req.log.error({ err }, 'could not write the audit entry');
    }
  };
  // audit: every mutating call, every refusal, and reads marked `audit: 'always'` (written before the response leaves)
  app.addHook('onSend', (req, reply, payload, done) => {
    const spec = req.routeOptions.config.routeSpec;
    const denied = req.decision !== null && !req.decision.allow;
    if (!spec || (!denied && !MUTATING.has(req.method) && spec.audit !== 'always') || spec.url === '/healthz' || spec.url === '/readyz') {
      done(null, payload);
      return;
    }
    void writeAudit(req, reply, spec, denied).then(() => done(null, payload));
  });

  // engine metrics from the event stream: runs and steps by outcome, resource phase changes, allocations…
  const unsubscribeMetrics = deps.engine?.subscribe({}, (e) => engineEvents.inc({ type: e.type }));
  app.addHook('onClose', async () => {
    unsubscribeMetrics?.();
    closeAllStreams();
  });

  const deny = (req: FastifyRequest, d: Decision, hidden: () => InfraflowError): never => {
    req.decision = d;
    if (d.allow) throw new Error('deny called with an allow decision');
    authDenials.inc({ reason: d.reason });
    if (d.reason === 'unauthenticated') throw new UnauthorizedError();
    if (d.reason === 'hidden') throw hidden();
    const policy = req.routeOptions.config.routeSpec?.policy;
    const perm = policy && 'permission' in policy ? policy.permission : 'a permission';
    const where = typeof req.authzProject === 'string' ? ` on project ${req.authzProject}` : policy?.scope === 'system' ? ' on the system' : '';
    throw new InfraflowError('auth.forbidden', `you may not do this: it needs ${perm}${where}; ask an administrator for a role that grants it`, 403);
  };

  for (const spec of table) {
    const url = fullUrl(spec);
    const isPublic = spec.policy.scope === 'public';
    app.route({
      method: spec.method,
      url,
      schema: {
        ...spec.schema,
        summary: spec.summary,
        tags: spec.tags,
        ...(spec.description ? { description: spec.description } : {}),
        ...(isPublic ? {} : { security: [{ bearer: [] }] }),
        response: spec.schema.response,
      } as any,
      config: {
        routeSpec: spec,
        // health probes are never rate-limited: a load balancer probing often must not see 429
        ...(spec.url === '/healthz' || spec.url === '/readyz' ? { rateLimit: false } : {}),
        ...(spec.rateLimit ? {
          rateLimit: {
            max: spec.rateLimit.max,
            timeWindow: spec.rateLimit.timeWindowMs,
            ...(spec.rateLimit.keyBy === 'ip' ? { keyGenerator: (req: FastifyRequest) => 'ip:' + req.ip } : {}),
          },
        } : {}),
      },
      // authentication and function-level authorization run before the body is even parsed,
      // after the rate limit (onRequest): a refused token still spends its sender's budget;
      // on rawBody routes the body's bytes are then kept
      preParsing: [async (req: FastifyRequest) => {
        const bearer = bearerOf(req) ?? (isPublic ? undefined : cookieBearer(req));
        if (bearer && !req.principal) req.principal = await deps.iam.authenticate(bearer);
        if (bearer !== undefined && !req.principal && !isPublic) {
          deny(req, { allow: false, reason: 'unauthenticated' }, () => new UnauthorizedError());
        }
        if (spec.policy.scope === 'project') {
          if (!req.principal) deny(req, { allow: false, reason: 'unauthenticated' }, () => new UnauthorizedError());
          return; // object-level: after validation, in preHandler
        }
        const d = authorize(req.principal, spec.policy);
        if (!d.allow) deny(req, d, () => new NotFoundError('api.not_found', 'not found'));
        req.decision = d;
      }, ...(spec.rawBody ? [keepRawBody(opts.bodyLimitBytes ?? 1_048_576)] : [])],
      // object-level authorization of project-scope routes (other routes have no preHandler at all)
      ...(spec.policy.scope === 'project' ? { preHandler: async (req: FastifyRequest) => {
        const notFound = () => spec.notFound ? spec.notFound({ params: req.params as any }) : new NotFoundError('api.not_found', `${req.url.split('?')[0]} not found`);
        const r: ResolvedProject = await spec.project!({ params: req.params as any, query: req.query as any, body: req.body as any, deps });
        let project: string | null | undefined;
        // a missing object is not a denied attempt: 404 without an audit entry
        if ('missing' in r) throw notFound();
        else if ('system' in r) project = null;
        else if ('list' in r) project = undefined;
        else project = r.project;
        req.authzProject = project;
        if ('object' in r) req.resolvedObject = r.object;
        const d = authorize(req.principal, spec.policy, project);
        if (!d.allow) deny(req, d, () => ('project' in r && r.mustExist ? projectNotFound(r.project) : notFound()));
        req.decision = d;
        if ('project' in r && r.mustExist && !(await deps.iam.findProject(r.project))) throw projectNotFound(r.project);
      } } : {}),
      handler: async (req: FastifyRequest, reply: FastifyReply) => {
        if (opts.authorizeOnly) return reply.code(200).type('application/json').serializer((x) => JSON.stringify(x)).send({ authorized: true });
        const ctx = new RequestContext(req, reply, deps, spec);
        const out = await spec.handler(ctx);
        if (spec.sse || reply.sent) return reply;
        // conditional GET: the caller's copy is current
        const etag = reply.getHeader('etag');
        if (req.method === 'GET' && etag !== undefined && req.headers['if-none-match'] === etag) return reply.code(304).send();
        if (out === undefined) return reply.code(reply.statusCode === 200 ? 204 : reply.statusCode).send();
        return out;
      },
    });
  }

  // the OpenStack-compatible façade: its own plugin under /openstack (Keystone tokens, OpenStack error shapes)
  await registerOpenStack(app as unknown as FastifyInstance, deps);

  // /openapi.json is served from the same schemas
  app.get('/openapi.json', { schema: { hide: true }, config: { routeSpec: openapiSpec } }, async () => app.swagger());
  return app as unknown as FastifyInstance;
}

/**
 * What a handler receives. A class whose helpers are getters returning
 * closures made on use: a handler destructures the two or three it needs, and
 * no request pays for the rest (nor for naming them under tsx, which wraps
 * every named closure made per request in a defineProperty call).
 */
class RequestContext implements HandlerContext<any, any, any> {
  readonly principal: Principal;
  readonly params: any;
  readonly query: any;
  readonly body: any;
  readonly project: string | null | undefined;
  readonly object: unknown;
  constructor(readonly req: FastifyRequest, readonly reply: FastifyReply, readonly deps: ApiDeps, private readonly spec: AnyRoute) {
    this.principal = req.principal!;
    this.params = req.params;
    this.query = req.query;
    this.body = req.body;
    this.project = req.authzProject;
    this.object = req.resolvedObject;
  }
  get visible(): HandlerContext<any, any, any>['visible'] {
    return (perm) => {
      const p = perm ?? ('permission' in this.spec.policy ? this.spec.policy.permission : undefined);
      if (!this.principal || !p) return [];
      return visibleProjects(this.principal, p);
    };
  }
  get can(): HandlerContext<any, any, any>['can'] {
    return (perm, project) => !!this.principal && can(this.principal, perm, project);
  }
  get ifMatch(): HandlerContext<any, any, any>['ifMatch'] {
    return () => parseIfMatch(this.req.headers['if-match']);
  }
  get etag(): HandlerContext<any, any, any>['etag'] {
    return (rev) => {
      this.reply.header('etag', `"${rev}"`);
    };
  }
  get auditNote(): HandlerContext<any, any, any>['auditNote'] {
    return (m) => {
      this.req.auditMessage = m.slice(0, 500);
    };
  }
}

/** preParsing hook of `rawBody` routes: reads the body (within the limit), keeps its bytes, hands the parser a copy. */
function keepRawBody(limit: number) {
  return async (req: FastifyRequest, _reply: FastifyReply, payload: NodeJS.ReadableStream): Promise<NodeJS.ReadableStream> => {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const c of payload) {
      const b = typeof c === 'string' ? Buffer.from(c) : (c as Buffer);
      size += b.length;
      if (size > limit) throw new InfraflowError('api.body_too_large', `the request body is larger than ${limit} bytes`, 413);
      chunks.push(b);
    }
    req.rawBody = Buffer.concat(chunks);
    const copy = Readable.from([req.rawBody]) as Readable & { receivedEncodedLength?: number };
    copy.receivedEncodedLength = req.rawBody.length;
    return copy;
  };
}

/** /openapi.json in the route table (public). */
const openapiSpec: AnyRoute = {
  method: 'GET', url: '/openapi.json', root: true, summary: 'OpenAPI 3.1 document', tags: ['system'], policy: { scope: 'public' }, schema: {}, handler: () => undefined,
};
export const STATIC_ROUTES: AnyRoute[] = [openapiSpec];

export { canSee };

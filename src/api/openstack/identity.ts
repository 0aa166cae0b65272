import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { isInfraflowError } from '../../core/errors.js';
import type { Iam, Project } from '../../iam/service.js';
import type { Permission } from '../../iam/permissions.js';
import { can } from '../../iam/policy.js';
import { badRequest, baseUrl, isoTime, notFound, OS_DOMAIN, OsError, osContext, type OsContext } from './common.js';

/**
 * Keystone v3 on Infraflow's IAM: password auth issues a project-scoped
 * Infraflow session token (X-Subject-Token) whose body carries the user, the
 * project, the user's roles there and the service catalogue of this façade;
 * application credentials are project-scoped API tokens.
 */

const TOKEN_TTL_MS = 12 * 3600_000;
const APPCRED_PREFIX = 'appcred:';

export function catalogue(base: string, projectId: string) {
  const ep = (type: string, name: string, url: string) => ({
    type, name, id: `${type}-${name}`,
    endpoints: ['public', 'internal', 'admin'].map((iface) => ({ id: `${name}-${iface}`, interface: iface, region: 'RegionOne', region_id: 'RegionOne', url })),
  });
  return [
    ep('identity', 'keystone', `${base}/identity`),
    ep('compute', 'nova', `${base}/compute/v2.1`),
    ep('image', 'glance', `${base}/image`),
    ep('network', 'neutron', `${base}/network`),
    ep('block-storage', 'cinder', `${base}/volume/v3/${projectId}`),
    ep('volumev3', 'cinderv3', `${base}/volume/v3/${projectId}`),
  ];
}

const versionV3 = (base: string) => ({
  id: 'v3.14', status: 'stable', updated: '2020-04-07T00:00:00Z',
  links: [{ rel: 'self', href: `${base}/identity/v3/` }],
  'media-types': [{ base: 'application/json', type: 'application/vnd.openstack.identity-v3+json' }],
});

const AuthBody = z.object({
  auth: z.object({
    identity: z.object({
      methods: z.array(z.string()).min(1),
      password: z.object({ user: z.object({ id: z.string().optional(), name: z.string().optional(), password: z.string(), domain: z.object({ id: z.string().optional(), name: z.string().optional() }).optional() }) }).optional(),
      token: z.object({ id: z.string() }).optional(),
      application_credential: z.object({ id: z.string().optional(), name: z.string().optional(), secret: z.string(), user: z.object({ id: z.string().optional(), name: z.string().optional() }).optional() }).optional(),
    }),
    scope: z.union([
      z.object({ project: z.object({ id: z.string().optional(), name: z.string().optional(), domain: z.object({ id: z.string().optional(), name: z.string().optional() }).optional() }) }),
      z.object({ system: z.unknown() }),
      z.object({ domain: z.unknown() }),
      z.literal('unscoped'),
    ]).optional(),
  }),
});

function parse<T>(schema: z.ZodType<T>, body: unknown): T {
  const r = schema.safeParse(body);
  if (!r.success) {
    const i = r.error.issues[0]!;
    throw badRequest(`Invalid input for field '${i.path.join('.') || 'body'}': ${i.message}`);
  }
  return r.data;
}

interface Issued { token: string; userId: string; userName: string; project: Project | null; expiresAt: number; issuedAt: number; methods: string[]; permissions: Permission[] | null }

export function identityRoutes(app: FastifyInstance, iam: Iam): void {
  const rolesOf = async (userId: string, project: Project | null, permissions: Permission[] | null) => {
    const assignments = (await iam.listAssignments({ user: userId, limit: 1000 })).items;
    const names = new Set(assignments.filter((a) => a.system || (project && a.project === project.name)).map((a) => a.role));
    const roles = await iam.listRoles();
    return roles.filter((r) => names.has(r.name) && (!permissions || r.permissions.every((p) => permissions.includes(p)))).map((r) => ({ id: r.id, name: r.name, domain_id: null }));
  };

  const tokenBody = async (req: FastifyRequest, t: Issued) => {
    const base = baseUrl(req);
    const roles = t.project ? await rolesOf(t.userId, t.project, t.permissions) : [];
    return {
      token: {
        methods: t.methods,
        user: { id: t.userId, name: t.userName, domain: OS_DOMAIN, password_expires_at: null },
        audit_ids: [Buffer.from(t.token.slice(-16)).toString('base64url').slice(0, 22)],
        expires_at: new Date(t.expiresAt).toISOString(), issued_at: new Date(t.issuedAt).toISOString(),
        ...(t.project ? {
          project: { id: t.project.id, name: t.project.name, domain: OS_DOMAIN },
          is_domain: false, roles, catalog: catalogue(base, t.project.id),
        } : {}),
      },
    };
  };

  const scopeProject = async (userId: string, scope: z.infer<typeof AuthBody>['auth']['scope']): Promise<Project | null> => {
    if (!scope || scope === 'unscoped') return null;
    if (!('project' in scope)) throw new OsError(401, 'Only project scope is supported by this service; scope the token to a project.');
    const ref = scope.project.id ?? scope.project.name;
    if (!ref) throw badRequest('scope.project needs an id or a name');
    const p = await iam.findProject(ref);
    if (!p) throw new OsError(401, `Could not find project: ${ref}.`);
    const assignments = (await iam.listAssignments({ user: userId, limit: 1000 })).items;
    if (!assignments.some((a) => a.system || a.project === p.name)) throw new OsError(401, `The account is not authorized for project ${p.name}.`);
    return p;
  };

  const issue = async (userId: string, userName: string, project: Project | null, methods: string[], permissions: Permission[] | null, ttlMs = TOKEN_TTL_MS): Promise<Issued> => {
    const { token, info } = await iam.issueSessionToken(userId, { project: project?.name ?? null, permissions, ttlMs });
    return { token, userId, userName, project, expiresAt: info.expiresAt, issuedAt: info.createdAt, methods, permissions };
  };

  const describe = async (token: string): Promise<Issued> => {
    const principal = await iam.authenticate(token);
    if (!principal) throw new OsError(404, 'Failed to validate token');
    const info = await iam.getToken(principal.tokenId);
    const project = principal.tokenProject ? await iam.findProject(principal.tokenProject) : null;
    return { token, userId: principal.userId, userName: principal.userName, project, expiresAt: info.expiresAt, issuedAt: info.createdAt, methods: ['password'], permissions: info.permissions };
  };

  const versions = (req: FastifyRequest) => ({ versions: { values: [versionV3(baseUrl(req))] } });
  app.get('/', async (req, reply) => reply.code(300).send(versions(req)));
  app.get('/v3', async (req) => ({ version: versionV3(baseUrl(req)) }));
  app.get('/v3/', async (req) => ({ version: versionV3(baseUrl(req)) }));

  app.post('/v3/auth/tokens', { config: { rateLimit: { max: 300, timeWindow: 60_000 } } }, async (req, reply) => {
    const body = parse(AuthBody, req.body);
    const id = body.auth.identity;
    let issued: Issued;
    if (id.methods.includes('password') && id.password) {
      const u = id.password.user;
      let name = u.name;
      if (!name && u.id) name = (await iam.getUser(u.id).catch(() => null))?.name;
      if (!name) throw new OsError(401, 'The request you have made requires authentication.');
      let user;
      try {
        user = await iam.verifyCredentials(name, u.password);
      } catch (e) {
        if (isInfraflowError(e) && e.status === 401) throw new OsError(401, 'The request you have made requires authentication.');
        throw e;
      }
      const project = await scopeProject(user.id, body.auth.scope);
      issued = await issue(user.id, user.name, project, ['password'], null);
    } else if (id.methods.includes('application_credential') && id.application_credential) {
      const ac = id.application_credential;
      const principal = await iam.authenticate(ac.secret);
      const info = principal ? await iam.getToken(principal.tokenId) : null;
      const matches = principal && info && principal.tokenKind === 'api' && info.name?.startsWith(APPCRED_PREFIX)
        && (ac.id ? ac.id === info.id : info.name === APPCRED_PREFIX + ac.name && (!ac.user || ac.user.id === principal.userId || ac.user.name === principal.userName));
      if (!principal || !info || !matches) throw new OsError(401, 'The request you have made requires authentication.');
      const project = principal.tokenProject ? await iam.findProject(principal.tokenProject) : null;
      issued = await issue(principal.userId, principal.userName, project, ['application_credential'], info.permissions, Math.min(TOKEN_TTL_MS, info.expiresAt - Date.now()));
    } else if (id.methods.includes('token') && id.token) {
      const principal = await iam.authenticate(id.token.id);
      if (!principal) throw new OsError(401, 'The request you have made requires authentication.');
      const info = await iam.getToken(principal.tokenId);
      const project = await scopeProject(principal.userId, body.auth.scope) ?? (principal.tokenProject ? await iam.findProject(principal.tokenProject) : null);
      if (principal.tokenProject && project && project.name !== principal.tokenProject) throw new OsError(403, 'A token scoped to one project cannot be rescoped to another.');
      issued = await issue(principal.userId, principal.userName, project, ['token'], info.permissions, Math.min(TOKEN_TTL_MS, info.expiresAt - Date.now()));
    } else {
      throw new OsError(401, `Authentication method ${id.methods.join(', ')} is not supported: use password, token or application_credential.`);
    }
    reply.code(201).header('x-subject-token', issued.token);
    return tokenBody(req, issued);
  });

  const subject = (req: FastifyRequest) => {
    const s = req.headers['x-subject-token'];
    if (typeof s !== 'string' || !s) throw badRequest('X-Subject-Token header is required');
    return s;
  };
  const caller = async (req: FastifyRequest) => {
    const t = req.headers['x-auth-token'];
    if (typeof t !== 'string' || !(await iam.authenticate(t))) throw new OsError(401, 'The request you have made requires authentication.');
    return (await iam.authenticate(t))!;
  };
  app.get('/v3/auth/tokens', async (req, reply) => {
    await caller(req);
    const s = subject(req);
    const t = await describe(s);
    reply.header('x-subject-token', s);
    return tokenBody(req, t);
  });
  app.delete('/v3/auth/tokens', async (req, reply) => {
    await caller(req);
    await iam.revokeBearer(subject(req));
    return reply.code(204).send();
  });
  app.get('/v3/auth/catalog', async (req) => {
    const ctx = await osContext(iam, req);
    return { catalog: catalogue(ctx.base, ctx.projectId), links: { self: `${ctx.base}/identity/v3/auth/catalog` } };
  });

  const projectView = (p: Project, base: string) => ({ id: p.id, name: p.name, description: p.description ?? '', domain_id: OS_DOMAIN.id, enabled: true, is_domain: false, parent_id: OS_DOMAIN.id, tags: [], options: {}, links: { self: `${base}/identity/v3/projects/${p.id}` } });
  const myProjects = async (userId: string): Promise<Project[]> => {
    const a = (await iam.listAssignments({ user: userId, limit: 1000 })).items;
    if (a.some((x) => x.system)) return (await iam.listProjects({ limit: 1000 })).items;
    const names = [...new Set(a.map((x) => x.project).filter((x): x is string => !!x))];
    return names.length ? (await iam.listProjects({ names, limit: 1000 })).items : [];
  };
  const userProjects = async (req: FastifyRequest) => {
    const p = await caller(req);
    const items = await myProjects(p.userId);
    return { projects: items.map((x) => projectView(x, baseUrl(req))), links: { self: null, next: null, previous: null } };
  };
  app.get('/v3/auth/projects', userProjects);
  app.get('/v3/users/:uid/projects', userProjects);
  app.get('/v3/projects', async (req) => {
    const p = await caller(req);
    const q = req.query as Record<string, string>;
    const all = p.system.has('projects:read') && !p.tokenProject ? (await iam.listProjects({ limit: 1000 })).items : p.system.has('projects:read') ? (await iam.listProjects({ limit: 1000 })).items : await myProjects(p.userId);
    const items = all.filter((x) => !q.name || x.name === q.name);
    return { projects: items.map((x) => projectView(x, baseUrl(req))), links: { self: null, next: null, previous: null } };
  });
  app.get('/v3/projects/:id', async (req) => {
    const p = await caller(req);
    const id = (req.params as { id: string }).id;
    const proj = await iam.findProject(id);
    if (!proj || !(can(p, 'projects:read', proj.name))) throw notFound('Project', id);
    return { project: projectView(proj, baseUrl(req)) };
  });
  app.post('/v3/projects', async (req, reply) => {
    const p = await caller(req);
    if (!(p.system.has('projects:write') && !p.tokenProject) && !p.system.has('projects:write')) throw new OsError(403, 'You are not authorized to perform the requested action: identity:create_project (needs projects:write on the system).');
    const body = parse(z.object({ project: z.object({ name: z.string(), description: z.string().optional() }) }), req.body);
    const proj = await iam.createProject({ name: body.project.name, description: body.project.description ?? null });
    reply.code(201);
    return { project: projectView(proj, baseUrl(req)) };
  });
  app.get('/v3/domains', async (req) => {
    await caller(req);
    return { domains: [{ ...OS_DOMAIN, description: 'The default domain', enabled: true, tags: [], options: {}, links: { self: `${baseUrl(req)}/identity/v3/domains/default` } }], links: { self: null, next: null, previous: null } };
  });
  app.get('/v3/domains/:id', async (req) => {
    await caller(req);
    const id = (req.params as { id: string }).id;
    if (id !== OS_DOMAIN.id && id !== OS_DOMAIN.name) throw notFound('Domain', id);
    return { domain: { ...OS_DOMAIN, description: 'The default domain', enabled: true, tags: [], options: {}, links: { self: `${baseUrl(req)}/identity/v3/domains/default` } } };
  });
  app.get('/v3/roles', async (req) => {
    await caller(req);
    return { roles: (await iam.listRoles()).map((r) => ({ id: r.id, name: r.name, description: r.description, domain_id: null, options: {}, links: { self: `${baseUrl(req)}/identity/v3/roles/${r.id}` } })), links: { self: null, next: null, previous: null } };
  });
  app.get('/v3/users/:uid', async (req) => {
    const p = await caller(req);
    const uid = (req.params as { uid: string }).uid;
    if (uid !== p.userId && !p.system.has('iam:read')) throw new OsError(403, 'You are not authorized to perform the requested action: identity:get_user.');
    const u = await iam.getUser(uid).catch(() => null);
    if (!u) throw notFound('User', uid);
    return { user: { id: u.id, name: u.name, domain_id: OS_DOMAIN.id, enabled: !u.disabled, email: u.email, password_expires_at: null, options: {}, links: { self: `${baseUrl(req)}/identity/v3/users/${u.id}` } } };
  });

  // ---- application credentials: project-scoped API tokens named appcred:<name>
  const acView = (ctx: { base: string }, t: { id: string; name: string | null; project: string | null; expiresAt: number; permissions: Permission[] | null }, projectId: string | null, userId: string, secret?: string) => ({
    id: t.id, name: (t.name ?? '').slice(APPCRED_PREFIX.length), description: null, project_id: projectId, user_id: userId,
    expires_at: isoTime(t.expiresAt), unrestricted: false, access_rules: [], roles: [],
    links: { self: `${ctx.base}/identity/v3/users/${userId}/application_credentials/${t.id}` }, ...(secret ? { secret } : {}),
  });
  const own = async (req: FastifyRequest): Promise<OsContext> => {
    const ctx = await osContext(iam, req);
    const uid = (req.params as { uid: string }).uid;
    if (uid !== ctx.userId) throw new OsError(403, 'You may only manage your own application credentials.');
    return ctx;
  };
  app.post('/v3/users/:uid/application_credentials', async (req, reply) => {
    const ctx = await own(req);
    const body = parse(z.object({ application_credential: z.object({ name: z.string().min(1).max(255), description: z.string().nullable().optional(), secret: z.string().optional(), expires_at: z.string().nullable().optional(), roles: z.array(z.object({ id: z.string().optional(), name: z.string().optional() })).optional(), unrestricted: z.boolean().optional() }) }), req.body);
    const ac = body.application_credential;
    if (ac.secret) throw badRequest('application_credential.secret: this service generates the secret; leave it out and keep the one returned');
    const existing = (await iam.listTokens({ userId: ctx.userId, kind: 'api', active: true, limit: 500 })).items.find((t) => t.name === APPCRED_PREFIX + ac.name);
    if (existing) throw new OsError(409, `An application credential named ${ac.name} already exists.`);
    let permissions: Permission[] | undefined;
    if (ac.roles?.length) {
      const all = await iam.listRoles();
      const set = new Set<Permission>();
      for (const want of ac.roles) {
        const role = all.find((r) => r.id === want.id || r.name === want.name);
        if (!role) throw badRequest(`role ${want.id ?? want.name} does not exist`);
        for (const p of role.permissions) set.add(p);
      }
      permissions = [...set].filter((p) => ctx.principal.system.has(p) || ctx.principal.projects.get(ctx.project)?.has(p));
    } else if (ctx.principal.tokenPermissions) permissions = [...ctx.principal.tokenPermissions];
    const days = ac.expires_at ? Math.max(1 / 24, (Date.parse(ac.expires_at) - Date.now()) / 86_400_000) : 366;
    const { token, info } = await iam.createApiToken(ctx.userId, { name: APPCRED_PREFIX + ac.name, project: ctx.project, ...(permissions ? { permissions } : {}), expiresInDays: Math.min(days, 366) });
    reply.code(201);
    return { application_credential: acView(ctx, info, ctx.projectId, ctx.userId, token) };
  });
  app.get('/v3/users/:uid/application_credentials', async (req) => {
    const ctx = await own(req);
    const q = req.query as Record<string, string>;
    const items = (await iam.listTokens({ userId: ctx.userId, kind: 'api', active: true, limit: 500 })).items.filter((t) => t.name?.startsWith(APPCRED_PREFIX) && (!q.name || t.name === APPCRED_PREFIX + q.name));
    const out = [];
    for (const t of items) out.push(acView(ctx, t, t.project ? (await iam.findProject(t.project))?.id ?? null : null, ctx.userId));
    return { application_credentials: out, links: { self: null, next: null, previous: null } };
  });
  const oneAc = async (ctx: OsContext, id: string) => {
    const t = await iam.getToken(id).catch(() => null);
    if (!t || t.userId !== ctx.userId || !t.name?.startsWith(APPCRED_PREFIX) || t.revokedAt !== null) throw notFound('Application credential', id);
    return t;
  };
  app.get('/v3/users/:uid/application_credentials/:id', async (req) => {
    const ctx = await own(req);
    const t = await oneAc(ctx, (req.params as { id: string }).id);
    return { application_credential: acView(ctx, t, t.project ? (await iam.findProject(t.project))?.id ?? null : null, ctx.userId) };
  });
  app.delete('/v3/users/:uid/application_credentials/:id', async (req, reply) => {
    const ctx = await own(req);
    const t = await oneAc(ctx, (req.params as { id: string }).id);
    await iam.revokeToken(t.id);
    return reply.code(204).send();
  });
}

import { z } from 'zod';
import { ForbiddenError, NotFoundError } from '../../core/errors.js';
import { ALL_PERMISSIONS, PERMISSIONS, type Permission } from '../../iam/permissions.js';
import { defineRoute, encodeCursor, decodeCursor, ID_PARAM, PageQuery, pageOf, type AnyRoute, type ApiDeps } from '../route.js';
import { signInSettings } from '../session.js';
import { passwordLoginDisabled } from './session.js';
import { PermissionName, TokenName, TokenOut, UserOut, Password } from './schemas.js';

const LoginBody = z.strictObject({ name: z.string().min(1).max(320), password: Password });

export function authRoutes(deps: ApiDeps): AnyRoute[] {
  const { iam } = deps;
  return [
    defineRoute({
      method: 'POST', url: '/auth/login', summary: 'Log in with a password; returns a session token (12 h)', tags: ['auth'], policy: { scope: 'public' },
      rateLimit: { max: 20, timeWindowMs: 60_000, keyBy: 'ip' },
      schema: { body: LoginBody, response: { 200: z.object({ token: z.string(), expiresAt: z.number(), user: UserOut }) } },
      handler: async ({ body, req }) => {
        req.auditActorName = body.name;
        if (!signInSettings(deps).passwordLogin) throw passwordLoginDisabled();
        return iam.login(body.name, body.password);
      },
    }),
    defineRoute({
      method: 'POST', url: '/auth/logout', summary: 'Revoke the token used for this request', tags: ['auth'], policy: { scope: 'authenticated' },
      schema: {},
      handler: async ({ req }) => {
        const h = req.headers.authorization ?? '';
        await iam.revokeBearer(h.replace(/^Bearer\s+/i, '').trim());
        return undefined;
      },
    }),
    defineRoute({
      method: 'GET', url: '/auth/whoami', summary: 'The caller, its roles\' effective permissions, and the token\'s limits', tags: ['auth'], policy: { scope: 'authenticated' },
      schema: {
        response: {
          200: z.object({
            user: UserOut, tokenId: z.string(), tokenKind: z.string(), system: z.array(z.string()), projects: z.record(z.string(), z.array(z.string())),
            tokenProject: z.string().nullable(), tokenPermissions: z.array(z.string()).nullable(),
          }),
        },
      },
      handler: async ({ principal }) => ({
        user: await iam.getUser(principal.userId),
        tokenId: principal.tokenId,
        tokenKind: principal.tokenKind,
        system: [...principal.system].sort(),
        projects: Object.fromEntries([...principal.projects].map(([p, s]) => [p, [...s].sort()])),
        tokenProject: principal.tokenProject,
        tokenPermissions: principal.tokenPermissions ? [...principal.tokenPermissions].sort() : null,
      }),
    }),
    defineRoute({
      method: 'GET', url: '/permissions', summary: 'The permission catalogue custom roles are built from', tags: ['iam'], policy: { scope: 'authenticated' },
      schema: { response: { 200: z.object({ items: z.array(z.object({ name: z.string(), description: z.string() })) }) } },
      handler: () => ({ items: ALL_PERMISSIONS.map((p) => ({ name: p, description: PERMISSIONS[p] })) }),
    }),
    defineRoute({
      method: 'GET', url: '/tokens', summary: 'List tokens: your own; administrators (iam:write) may pass user=', tags: ['auth'], policy: { scope: 'authenticated' },
      schema: { querystring: PageQuery.extend({ user: z.string().max(200).optional(), kind: z.enum(['session', 'api']).optional(), active: z.enum(['true', 'false']).optional() }), response: { 200: pageOf(TokenOut) } },
      handler: async ({ query, principal, can }) => {
        let userId = principal.userId;
        if (query.user !== undefined) {
          if (!can('iam:write', null)) throw new ForbiddenError('listing another user\'s tokens needs the permission iam:write on the system');
          userId = (await iam.getUser(query.user)).id;
        }
        const page = await iam.listTokens({ userId, kind: query.kind, active: query.active === 'true', after: decodeCursor(query.cursor), limit: query.limit });
        return { items: page.items, nextCursor: encodeCursor(page.next) };
      },
    }),
    defineRoute({
      method: 'POST', url: '/tokens', summary: 'Create an API token for yourself, optionally limited to a project and permissions; the secret is returned once', tags: ['auth'], policy: { scope: 'authenticated' },
      schema: {
        body: z.strictObject({ name: TokenName, project: z.string().max(64).optional(), permissions: z.array(PermissionName).max(64).optional(), expiresInDays: z.number().int().min(1).max(366).optional() }),
        response: { 201: z.object({ token: z.string(), info: TokenOut }) },
      },
      handler: async ({ body, principal, reply, auditNote, can, visible }) => {
        // a token can only narrow the caller's own rights, never widen them
        const project = body.project ?? principal.tokenProject ?? undefined;
        if (principal.tokenProject !== null && project !== principal.tokenProject) throw new ForbiddenError(`project: this token is limited to project ${principal.tokenProject}; a token made with it must be too`);
        let permissions: Permission[] | undefined = body.permissions as Permission[] | undefined;
        if (principal.tokenPermissions) {
          permissions = (permissions ?? [...principal.tokenPermissions]);
          const extra = permissions.filter((p) => !principal.tokenPermissions!.has(p));
          if (extra.length) throw new ForbiddenError(`permissions: this token does not hold ${extra.join(', ')}; a token made with it cannot either`);
        }
        if (project !== undefined && !principal.system.size && !principal.projects.has(project)) throw new NotFoundError('iam.project_not_found', `project ${project} not found`);
        // refused at creation, not only on use: a token is never stored or shown with rights its creator lacks
        if (permissions?.length) {
          const lacking = permissions.filter((p) => (project !== undefined ? !can(p, project) : !can(p, null) && (visible(p) as string[]).length === 0));
          if (lacking.length) throw new ForbiddenError(`permissions: you do not hold ${lacking.join(', ')}${project !== undefined ? ` on project ${project}` : ''}; a token can only carry permissions its creator holds`);
        }
        const out = await iam.createApiToken(principal.userId, { name: body.name, project, permissions, expiresInDays: body.expiresInDays });
        auditNote(`created token ${out.info.id}`);
        reply.code(201);
        return out;
      },
    }),
    defineRoute({
      method: 'DELETE', url: '/tokens/:id', summary: 'Revoke a token: your own, or anyone\'s with iam:write', tags: ['auth'], policy: { scope: 'authenticated' },
      schema: { params: ID_PARAM, response: { 200: TokenOut } },
      handler: async ({ params, principal, can }) => {
        const t = await iam.getToken(params.id).catch(() => null);
        if (!t || (t.userId !== principal.userId && !can('iam:write', null))) throw new NotFoundError('iam.token_not_found', `token ${params.id} not found`);
        return iam.revokeToken(t.id);
      },
    }),
  ];
}

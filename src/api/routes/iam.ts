import { z } from 'zod';
import { ConflictError, NotFoundError } from '../../core/errors.js';
import { defineRoute, encodeCursor, decodeCursor, ID_PARAM, PageQuery, pageOf, type AnyRoute, type ApiDeps } from '../route.js';
import { displayTextSchema } from '../../core/names.js';
import { AssignmentOut, AuditOut, Description, GroupOut, Name, Password, PermissionName, ProjectOut, RoleOut, UserOut } from './schemas.js';



export function iamRoutes(deps: ApiDeps): AnyRoute[] {
  const { iam } = deps;
  const read = { scope: 'system', permission: 'iam:read' } as const;
  const write = { scope: 'system', permission: 'iam:write' } as const;
  const tags = ['iam'];
  return [
    // ------------------------------------------------------------ users
    defineRoute({
      method: 'GET', url: '/users', summary: 'List users', tags, policy: read,
      schema: { querystring: PageQuery.extend({ name: z.string().max(64).optional().describe('substring of the name') }), response: { 200: pageOf(UserOut) } },
      handler: async ({ query }) => {
        const p = await iam.listUsers({ after: decodeCursor(query.cursor), limit: query.limit, name: query.name });
        return { items: p.items, nextCursor: encodeCursor(p.next) };
      },
    }),
    defineRoute({
      method: 'POST', url: '/users', summary: 'Create a user', tags, policy: write,
      schema: { body: z.strictObject({ name: Name, displayName: displayTextSchema(200).nullable().optional(), email: z.email().max(320).nullable().optional(), password: Password.optional() }), response: { 201: UserOut } },
      handler: async ({ body, reply, etag }) => {
        const u = await iam.createUser(body);
        etag(u.revision);
        reply.code(201);
        return u;
      },
    }),
    defineRoute({
      method: 'GET', url: '/users/:id', summary: 'Get a user by id or name', tags, policy: read,
      schema: { params: ID_PARAM, response: { 200: UserOut } },
      handler: async ({ params, etag }) => {
        const u = await iam.getUser(params.id);
        etag(u.revision);
        return u;
      },
    }),
    defineRoute({
      method: 'PATCH', url: '/users/:id', summary: 'Change a user (If-Match: its ETag). Disabling or a new password ends its sessions', tags, policy: write,
      schema: { params: ID_PARAM, body: z.strictObject({ displayName: displayTextSchema(200).nullable().optional(), email: z.email().max(320).nullable().optional(), disabled: z.boolean().optional(), password: Password.optional() }), response: { 200: UserOut } },
      handler: async ({ params, body, ifMatch, etag }) => {
        const u = await iam.updateUser(params.id, body, ifMatch());
        etag(u.revision);
        return u;
      },
    }),
    defineRoute({
      method: 'DELETE', url: '/users/:id', summary: 'Delete a user, its memberships, role assignments and tokens', tags, policy: write,
      schema: { params: ID_PARAM },
      handler: async ({ params, principal }) => {
        const u = await iam.getUser(params.id);
        if (u.id === principal.userId) throw new ConflictError('iam.self_delete', 'you cannot delete your own account; ask another administrator');
        await iam.deleteUser(u.id);
        return undefined;
      },
    }),
    // ------------------------------------------------------------ groups
    defineRoute({
      method: 'GET', url: '/groups', summary: 'List groups', tags, policy: read,
      schema: { querystring: PageQuery.extend({ name: z.string().max(64).optional() }), response: { 200: pageOf(GroupOut) } },
      handler: async ({ query }) => {
        const p = await iam.listGroups({ after: decodeCursor(query.cursor), limit: query.limit, name: query.name });
        return { items: p.items, nextCursor: encodeCursor(p.next) };
      },
    }),
    defineRoute({
      method: 'POST', url: '/groups', summary: 'Create a group', tags, policy: write,
      schema: { body: z.strictObject({ name: Name, description: Description }), response: { 201: GroupOut } },
      handler: async ({ body, reply, etag }) => {
        const g = await iam.createGroup(body);
        etag(g.revision);
        reply.code(201);
        return g;
      },
    }),
    defineRoute({
      method: 'GET', url: '/groups/:id', summary: 'Get a group by id or name', tags, policy: read,
      schema: { params: ID_PARAM, response: { 200: GroupOut } },
      handler: async ({ params, etag }) => {
        const g = await iam.getGroup(params.id);
        etag(g.revision);
        return g;
      },
    }),
    defineRoute({
      method: 'PATCH', url: '/groups/:id', summary: 'Change a group (If-Match)', tags, policy: write,
      schema: { params: ID_PARAM, body: z.strictObject({ description: Description }), response: { 200: GroupOut } },
      handler: async ({ params, body, ifMatch, etag }) => {
        const g = await iam.updateGroup(params.id, body, ifMatch());
        etag(g.revision);
        return g;
      },
    }),
    defineRoute({
      method: 'DELETE', url: '/groups/:id', summary: 'Delete a group and its role assignments', tags, policy: write,
      schema: { params: ID_PARAM },
      handler: async ({ params }) => {
        await iam.deleteGroup(params.id);
        return undefined;
      },
    }),
    defineRoute({
      method: 'GET', url: '/groups/:id/members', summary: 'List a group\'s members', tags, policy: read,
      schema: { params: ID_PARAM, response: { 200: z.object({ items: z.array(UserOut), nextCursor: z.null() }) } },
      handler: async ({ params }) => ({ items: await iam.listMembers(params.id), nextCursor: null }),
    }),
    defineRoute({
      method: 'PUT', url: '/groups/:id/members/:user', summary: 'Add a user to a group', tags, policy: write,
      schema: { params: z.object({ id: z.string().min(1).max(200), user: z.string().min(1).max(200) }) },
      handler: async ({ params }) => {
        await iam.addMember(params.id, params.user);
        return undefined;
      },
    }),
    defineRoute({
      method: 'DELETE', url: '/groups/:id/members/:user', summary: 'Remove a user from a group', tags, policy: write,
      schema: { params: z.object({ id: z.string().min(1).max(200), user: z.string().min(1).max(200) }) },
      handler: async ({ params }) => {
        await iam.removeMember(params.id, params.user);
        return undefined;
      },
    }),
    // ------------------------------------------------------------ roles
    defineRoute({
      method: 'GET', url: '/roles', summary: 'List roles (built-in admin, member, reader and custom roles)', tags, policy: read,
      schema: { response: { 200: z.object({ items: z.array(RoleOut), nextCursor: z.null() }) } },
      handler: async () => ({ items: await iam.listRoles(), nextCursor: null }),
    }),
    defineRoute({
      method: 'POST', url: '/roles', summary: 'Create a custom role from listed permissions (GET /permissions)', tags, policy: write,
      schema: { body: z.strictObject({ name: Name, description: Description, permissions: z.array(PermissionName).min(1).max(64) }), response: { 201: RoleOut } },
      handler: async ({ body, reply, etag }) => {
        const r = await iam.createRole(body);
        etag(r.revision);
        reply.code(201);
        return r;
      },
    }),
    defineRoute({
      method: 'GET', url: '/roles/:id', summary: 'Get a role by id or name', tags, policy: read,
      schema: { params: ID_PARAM, response: { 200: RoleOut } },
      handler: async ({ params, etag }) => {
        const r = await iam.getRole(params.id);
        etag(r.revision);
        return r;
      },
    }),
    defineRoute({
      method: 'PATCH', url: '/roles/:id', summary: 'Change a custom role (If-Match)', tags, policy: write,
      schema: { params: ID_PARAM, body: z.strictObject({ description: Description, permissions: z.array(PermissionName).min(1).max(64).optional() }), response: { 200: RoleOut } },
      handler: async ({ params, body, ifMatch, etag }) => {
        const r = await iam.updateRole(params.id, body, ifMatch());
        etag(r.revision);
        return r;
      },
    }),
    defineRoute({
      method: 'DELETE', url: '/roles/:id', summary: 'Delete a custom role and its assignments', tags, policy: write,
      schema: { params: ID_PARAM },
      handler: async ({ params }) => {
        await iam.deleteRole(params.id);
        return undefined;
      },
    }),
    // ------------------------------------------------------------ projects
    defineRoute({
      method: 'GET', url: '/projects', summary: 'List the projects you can see', tags, policy: { scope: 'project', permission: 'projects:read' },
      project: () => ({ list: true }),
      schema: { querystring: PageQuery.extend({ name: z.string().max(64).optional() }), response: { 200: pageOf(ProjectOut) } },
      handler: async ({ query, visible }) => {
        const vis = visible();
        const p = await iam.listProjects({ after: decodeCursor(query.cursor), limit: query.limit, name: query.name, ...(vis === 'all' ? {} : { names: vis }) });
        return { items: p.items, nextCursor: encodeCursor(p.next) };
      },
    }),
    defineRoute({
      method: 'POST', url: '/projects', summary: 'Create a project', tags, policy: { scope: 'system', permission: 'projects:write' },
      schema: { body: z.strictObject({ name: Name, description: Description }), response: { 201: ProjectOut } },
      handler: async ({ body, reply, etag }) => {
        const p = await iam.createProject(body);
        etag(p.revision);
        reply.code(201);
        return p;
      },
    }),
    defineRoute({
      method: 'GET', url: '/projects/:id', summary: 'Get a project by id or name', tags, policy: { scope: 'project', permission: 'projects:read' },
      project: async ({ params }) => {
        const p = await iam.findProject(params.id);
        return p ? { project: p.name } : { missing: true };
      },
      notFound: ({ params }) => new NotFoundError('iam.project_not_found', `project ${params.id} not found`),
      schema: { params: ID_PARAM, response: { 200: ProjectOut } },
      handler: async ({ params, etag }) => {
        const p = await iam.getProject(params.id);
        etag(p.revision);
        return p;
      },
    }),
    defineRoute({
      method: 'PATCH', url: '/projects/:id', summary: 'Change a project (If-Match)', tags, policy: { scope: 'system', permission: 'projects:write' },
      schema: { params: ID_PARAM, body: z.strictObject({ description: Description }), response: { 200: ProjectOut } },
      handler: async ({ params, body, ifMatch, etag }) => {
        const p = await iam.updateProject(params.id, body, ifMatch());
        etag(p.revision);
        return p;
      },
    }),
    defineRoute({
      method: 'DELETE', url: '/projects/:id', summary: 'Delete a project and its role assignments', tags, policy: { scope: 'system', permission: 'projects:write' },
      schema: { params: ID_PARAM },
      handler: async ({ params }) => {
        await iam.deleteProject(params.id);
        return undefined;
      },
    }),
    // ------------------------------------------------------------ role assignments
    defineRoute({
      method: 'GET', url: '/role-assignments', summary: 'List role assignments', tags, policy: read,
      schema: { querystring: PageQuery.extend({ user: z.string().max(200).optional(), group: z.string().max(200).optional(), project: z.string().max(64).optional(), role: z.string().max(64).optional(), system: z.enum(['true', 'false']).optional() }), response: { 200: pageOf(AssignmentOut) } },
      handler: async ({ query }) => {
        const p = await iam.listAssignments({ after: decodeCursor(query.cursor), limit: query.limit, user: query.user, group: query.group, project: query.project, role: query.role, system: query.system === 'true' });
        return { items: p.items, nextCursor: encodeCursor(p.next) };
      },
    }),
    defineRoute({
      method: 'POST', url: '/role-assignments', summary: 'Give a user or group a role on a project or on the system', tags, policy: write,
      schema: {
        body: z.strictObject({ role: z.string().min(1).max(64), user: z.string().min(1).max(200).optional(), group: z.string().min(1).max(200).optional(), project: z.string().min(1).max(64).optional(), system: z.boolean().optional() }),
        response: { 201: AssignmentOut },
      },
      handler: async ({ body, reply }) => {
        const a = await iam.assign(body);
        reply.code(201);
        return a;
      },
    }),
    defineRoute({
      method: 'DELETE', url: '/role-assignments/:id', summary: 'Remove a role assignment', tags, policy: write,
      schema: { params: ID_PARAM },
      handler: async ({ params }) => {
        await iam.unassign(params.id);
        return undefined;
      },
    }),
    // ------------------------------------------------------------ audit
    defineRoute({
      method: 'GET', url: '/audit', summary: 'The audit log, newest first: every mutating call and every denied attempt', tags: ['audit'], policy: { scope: 'system', permission: 'audit:read' },
      schema: {
        querystring: PageQuery.extend({ actor: z.string().max(200).optional(), outcome: z.enum(['allowed', 'denied', 'failed']).optional(), action: z.string().max(64).optional(), project: z.string().max(64).optional(), since: z.coerce.number().int().min(0).optional() }),
        response: { 200: pageOf(AuditOut) },
      },
      handler: async ({ query }) => {
        const p = await iam.listAudit({ after: decodeCursor(query.cursor), limit: query.limit, actor: query.actor, outcome: query.outcome, action: query.action, project: query.project, since: query.since });
        return { items: p.items, nextCursor: encodeCursor(p.next) };
      },
    }),
  ];
}


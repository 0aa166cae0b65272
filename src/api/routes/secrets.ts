import { z } from 'zod';
import { NotFoundError } from '../../core/errors.js';
import { defineRoute, encodeCursor, decodeCursor, ID_PARAM, PageQuery, pageOf, projectFrom, type AnyRoute, type ApiDeps, type ResolvedProject } from '../route.js';
import { Description, Name, SecretOut } from './schemas.js';

/**
 * Secrets (BMC credentials, kubeconfigs, passwords): stored encrypted
 * (AES-256-GCM), listed by name only, and returned in plain text by one
 * explicit endpoint to callers holding secrets:read, each read audited.
 */
export function secretRoutes(deps: ApiDeps): AnyRoute[] {
  const { iam } = deps;
  const tags = ['secrets'];
  const byId = async ({ params }: { params: { id: string } }): Promise<ResolvedProject> => {
    const s = await iam.findSecret(params.id);
    return s ? { project: s.project, object: s } : { missing: true };
  };
  const notFound = ({ params }: { params: { id: string } }) => new NotFoundError('iam.secret_not_found', `secret ${params.id} not found`);
  const Value = z.string().min(1).max(65_536);
  return [
    defineRoute({
      method: 'GET', url: '/secrets', summary: 'List secrets (names and metadata, never values)', tags, policy: { scope: 'project', permission: 'secrets:list' },
      project: projectFrom('query'),
      schema: { querystring: PageQuery.extend({ project: z.string().max(64).optional(), owner: z.string().max(200).optional(), name: z.string().max(64).optional() }), response: { 200: pageOf(SecretOut) } },
      handler: async ({ query, visible, project }) => {
        const vis = typeof project === 'string' ? [project] : visible();
        const p = await iam.listSecrets({ after: decodeCursor(query.cursor), limit: query.limit, owner: query.owner, name: query.name, ...(vis === 'all' ? {} : { projects: vis }) });
        return { items: p.items, nextCursor: encodeCursor(p.next) };
      },
    }),
    defineRoute({
      method: 'POST', url: '/secrets', summary: 'Store a secret in a project (encrypted at rest)', tags, policy: { scope: 'project', permission: 'secrets:write' },
      project: projectFrom('body'),
      schema: { body: z.strictObject({ project: z.string().min(1).max(64), name: Name, value: Value, description: Description }), response: { 201: SecretOut } },
      handler: async ({ body, reply, etag }) => {
        const s = await iam.createSecret(body);
        etag(s.revision);
        reply.code(201);
        return s;
      },
    }),
    defineRoute({
      method: 'GET', url: '/secrets/:id', summary: 'A secret\'s metadata (not its value)', tags, policy: { scope: 'project', permission: 'secrets:list' },
      project: byId, notFound,
      schema: { params: ID_PARAM, response: { 200: SecretOut } },
      handler: async ({ params, etag }) => {
        const s = await iam.getSecret(params.id);
        etag(s.revision);
        return s;
      },
    }),
    defineRoute({
      method: 'GET', url: '/secrets/:id/value', summary: 'Reveal a secret\'s value (secrets:read; every read is audited)', tags, policy: { scope: 'project', permission: 'secrets:read' },
      project: byId, notFound, audit: 'always',
      schema: { params: ID_PARAM, response: { 200: z.object({ id: z.string(), name: z.string(), project: z.string(), value: z.string() }) } },
      handler: async ({ params, reply, auditNote }) => {
        const s = await iam.getSecret(params.id);
        const value = await iam.revealSecret(s.id);
        auditNote(`revealed secret ${s.name}`);
        reply.header('cache-control', 'no-store');
        return { id: s.id, name: s.name, project: s.project, value };
      },
    }),
    defineRoute({
      method: 'PATCH', url: '/secrets/:id', summary: 'Replace a secret\'s value or description (If-Match)', tags, policy: { scope: 'project', permission: 'secrets:write' },
      project: byId, notFound,
      schema: { params: ID_PARAM, body: z.strictObject({ value: Value.optional(), description: Description }), response: { 200: SecretOut } },
      handler: async ({ params, body, ifMatch, etag }) => {
        const s = await iam.updateSecret(params.id, body, ifMatch());
        etag(s.revision);
        return s;
      },
    }),
    defineRoute({
      method: 'DELETE', url: '/secrets/:id', summary: 'Delete a secret', tags, policy: { scope: 'project', permission: 'secrets:write' },
      project: byId, notFound,
      schema: { params: ID_PARAM },
      handler: async ({ params }) => {
        await iam.deleteSecret(params.id);
        return undefined;
      },
    }),
  ];
}

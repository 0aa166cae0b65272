import { z } from 'zod';
import { ServerCreateBody, serverStackName, type Servers } from '../../servers/index.js';
import { defineRoute, projectFrom, type AnyRoute, type ApiDeps } from '../route.js';
import { RunOut, runView } from './runs.js';

export { ServerCreateBody, NAME_LABEL, type ServerCreate } from '../../servers/index.js';

const ServerAccepted = z.object({
  server: z.object({
    name: z.string(), project: z.string(),
    stack: z.string().describe('the name of the stack the server lives in (GET /stacks/{name}?project=…)'),
    address: z.string().describe('the server\'s address in that stack'),
    resource: z.string().describe('the name of the server\'s resource once applied'),
  }),
  run: RunOut,
}).meta({ id: 'ServerAccepted' });

/**
 * `POST /servers` (`openstack server create`): the single-VM path in one
 * call. Accepting is cheap (is the name free? start a run); the
 * `server.create` run resolves or creates — exactly once per project and
 * name, whatever the concurrency — the networks, security groups and
 * keypair the server needs, then applies the server's stack
 * `server-<name>`. `watch` the run, then GET the server's resource.
 */
export function serverRoutes(_deps: ApiDeps, servers: Servers): AnyRoute[] {
  return [
    defineRoute({
      method: 'POST', url: '/servers', summary: 'Create a server and whatever it needs (networks, security groups, keypair); answers 202 with the run that does it', tags: ['servers'],
      policy: { scope: 'project', permission: 'resources:write' }, project: projectFrom('body'),
      schema: { body: ServerCreateBody, response: { 202: ServerAccepted } },
      handler: async ({ body, principal, reply, auditNote }) => {
        const run = await servers.accept(body, { createdBy: principal.userName });
        auditNote(`server ${body.name}: run ${run.id}`);
        reply.code(202);
        const stack = serverStackName(body.name);
        return { server: { name: body.name, project: body.project, stack, address: 'server', resource: `${stack}-server` }, run: runView(run) };
      },
    }),
  ];
}

import { z } from 'zod';
import { seedFrom } from '../../core/rng.js';
import type { ResourceStore } from '../../resources/store.js';
import { defineRoute, projectFrom, type AnyRoute, type ApiDeps } from '../route.js';
import { runView } from './runs.js';
import type { StacksApi } from './stacks.js';

const NAME = /^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$/;

export const ServerCreateBody = z.strictObject({
  project: z.string().min(1).max(64),
  name: z.string().regex(NAME, 'name: lower-case letters, digits and dashes, starting with a letter (at most 63)'),
  flavor: z.string().min(1).max(200),
  image: z.string().min(1).max(200),
  bootVolumeSize: z.number().int().min(1).max(65_536).optional().describe('GiB; boot from a new volume of this size'),
  networks: z.array(z.string().regex(NAME).max(63)).min(1).max(8).describe('network (or subnet) names; missing ones are created with a /24'),
  securityGroups: z.array(z.string().regex(NAME).max(63)).max(8).default([]).describe('security group names; missing ones are created allowing SSH'),
  keyName: z.string().min(1).max(200).optional().describe('keypair name'),
  publicKey: z.string().max(16_384).optional().describe('creates the keypair keyName from this OpenSSH public key when it does not exist'),
  userData: z.string().max(65_535).optional(),
});
export type ServerCreate = z.infer<typeof ServerCreateBody>;

/**
 * `POST /servers` (`openstack server create`): the single-VM path in one
 * call. Whatever the server needs and the project lacks (networks with a
 * subnet, security groups, keypair) is created with it as a small stack
 * `server-<name>`; existing ones are referenced by id. Returns the stack and
 * the apply run; `watch` the run, then GET the server's resource.
 */
export async function serverStackDocument(input: ServerCreate, resources: ResourceStore): Promise<Record<string, unknown>> {
  const res: Record<string, unknown> = {};
  const networks: Record<string, unknown>[] = [];
  for (const [i, n] of input.networks.entries()) {
    const subnet = await resources.getByName(input.project, 'network/Subnet', n);
    if (subnet) {
      networks.push({ subnet: subnet.id });
      continue;
    }
    const net = await resources.getByName(input.project, 'network/Network', n);
    if (net) {
      const subs = await resources.list({ project: input.project, kind: 'network/Subnet', limit: 1000 });
      const s = subs.items.find((x) => x.spec.network === net.id);
      if (s) {
        networks.push({ subnet: s.id });
        continue;
      }
    }
    const third = seedFrom(`${input.project}/${n}`) % 250;
    if (!net) res[`net-${n}`] = { kind: 'network/Network', spec: {} };
    res[`subnet-${n}`] = {
      kind: 'network/Subnet',
      spec: { network: net ? net.id : `\${ resources.net-${n}.outputs.id }`, cidr: `10.${200 + ((i + third) % 50)}.${third}.0/24` },
    };
    networks.push({ subnet: `\${ resources.subnet-${n}.outputs.id }` });
  }
  const groups: string[] = [];
  for (const g of input.securityGroups) {
    const sg = await resources.getByName(input.project, 'network/SecurityGroup', g);
    if (sg) groups.push(sg.id);
    else {
      res[`sg-${g}`] = { kind: 'network/SecurityGroup', spec: { description: `created for server ${input.name}`, rules: [{ direction: 'ingress', protocol: 'tcp', portMin: 22, portMax: 22, remoteCidr: '0.0.0.0/0', description: 'ssh' }] } };
      groups.push(`\${ resources.sg-${g}.outputs.id }`);
    }
  }
  if (input.keyName && input.publicKey) {
    const kp = await resources.getByName(input.project, 'compute/Keypair', input.keyName);
    if (!kp && NAME.test(input.keyName)) res[`key-${input.keyName}`] = { kind: 'compute/Keypair', spec: { name: input.keyName, publicKey: input.publicKey } };
  }
  res.server = {
    kind: 'compute/Server',
    spec: {
      flavor: input.flavor, image: input.image, networks, securityGroups: groups,
      ...(input.keyName ? { keypair: input.keyName } : {}),
      ...(input.bootVolumeSize ? { bootVolume: { sizeGb: input.bootVolumeSize } } : {}),
      ...(input.userData ? { userData: input.userData } : {}),
    },
  };
  return { apiVersion: 'infraflow.dev/v1', kind: 'Stack', metadata: { name: `server-${input.name}`, project: input.project, description: `server ${input.name} (POST /servers)` }, spec: { resources: res } };
}

export function serverRoutes(_deps: ApiDeps, stacks: StacksApi, resources: ResourceStore): AnyRoute[] {
  return [
    defineRoute({
      method: 'POST', url: '/servers', summary: 'Create a server and whatever it needs (networks, security groups, keypair) as a small stack; returns the stack and its run', tags: ['servers'],
      policy: { scope: 'project', permission: 'resources:write' }, project: projectFrom('body'),
      schema: { body: ServerCreateBody },
      handler: async ({ body, principal, reply, auditNote }) => {
        const document = await serverStackDocument(body, resources);
        const r = await stacks.apply({ document, file: `servers/${body.name}`, createdBy: principal.userName });
        auditNote(`server ${body.name}: stack ${r.stack.id}, run ${r.run.id}`);
        reply.code(202);
        return {
          server: { name: body.name, project: body.project, stack: r.stack.id, address: 'server', resource: `${r.stack.name}-server` },
          stack: r.stack, run: runView(r.run), plan: r.plan,
        };
      },
    }),
  ];
}

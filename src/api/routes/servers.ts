import { z } from 'zod';
import { seedFrom } from '../../core/rng.js';
import type { ResourceStore } from '../../resources/store.js';
import type { Resource } from '../../resources/types.js';
import { ValidationError } from '../../core/errors.js';
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
/** Label that names what POST /servers created, so that later servers find and reuse it. */
export const NAME_LABEL = 'infraflow.dev/name';

/** The backend id other resources reference (what `${ resources.x.outputs.id }` gives in a stack). */
function backendId(r: Resource): string {
  const id = r.status.outputs.id;
  return typeof id === 'string' && id ? id : r.id;
}

/**
 * An existing object named `name`: by resource name, by the name label, or
 * one an earlier POST /servers created at stack address `address` (stacks
 * name their resources `<stack>-<address>` and label them with the address).
 */
async function findNamed(resources: ResourceStore, project: string, kind: string, name: string, address: string): Promise<Resource | undefined> {
  const byName = await resources.getByName(project, kind, name);
  if (byName) return byName;
  const labelled = await resources.list({ project, kind, labels: { [NAME_LABEL]: name }, limit: 1 });
  if (labelled.items[0]) return labelled.items[0];
  const made = await resources.list({ project, kind, labels: { 'infraflow.dev/address': address }, limit: 100 });
  return made.items.find((r) => r.name.startsWith('server-') && r.name.endsWith(`-${address}`) && r.status.phase === 'ready');
}

export async function serverStackDocument(input: ServerCreate, resources: ResourceStore): Promise<Record<string, unknown>> {
  const res: Record<string, unknown> = {};
  const networks: Record<string, unknown>[] = [];
  for (const [i, n] of input.networks.entries()) {
    const subnet = await findNamed(resources, input.project, 'network/Subnet', n, `subnet-${n}`);
    if (subnet) {
      networks.push({ subnet: backendId(subnet) });
      continue;
    }
    const net = await findNamed(resources, input.project, 'network/Network', n, `net-${n}`);
    if (net) {
      const subs = await resources.list({ project: input.project, kind: 'network/Subnet', limit: 1000 });
      const sub = subs.items.find((x) => x.spec.network === backendId(net) || x.spec.network === net.id);
      if (sub) {
        networks.push({ subnet: backendId(sub) });
        continue;
      }
    }
    const third = seedFrom(`${input.project}/${n}`) % 250;
    if (!net) res[`net-${n}`] = { kind: 'network/Network', labels: { [NAME_LABEL]: n }, spec: {} };
    res[`subnet-${n}`] = {
      kind: 'network/Subnet', labels: { [NAME_LABEL]: n },
      spec: { network: net ? backendId(net) : `\${ resources['net-${n}'].outputs.id }`, cidr: `10.${200 + ((i + third) % 50)}.${third}.0/24` },
    };
    networks.push({ subnet: `\${ resources['subnet-${n}'].outputs.id }` });
  }
  const groups: string[] = [];
  for (const g of input.securityGroups) {
    const sg = await findNamed(resources, input.project, 'network/SecurityGroup', g, `sg-${g}`);
    if (sg) groups.push(backendId(sg));
    else {
      res[`sg-${g}`] = { kind: 'network/SecurityGroup', labels: { [NAME_LABEL]: g }, spec: { description: `created for server ${input.name}`, rules: [{ direction: 'ingress', protocol: 'tcp', portMin: 22, portMax: 22, remoteCidr: '0.0.0.0/0', description: 'ssh' }] } };
      groups.push(`\${ resources['sg-${g}'].outputs.id }`);
    }
  }
  let keypair: string | undefined;
  if (input.keyName) {
    const addr = `key-${input.keyName.toLowerCase().replace(/[^a-z0-9-]/g, '-')}`;
    const kp = await findNamed(resources, input.project, 'compute/Keypair', input.keyName, addr);
    if (kp) keypair = backendId(kp);
    else if (input.publicKey) {
      res[addr] = { kind: 'compute/Keypair', labels: { [NAME_LABEL]: input.keyName }, spec: { name: input.keyName, publicKey: input.publicKey } };
      keypair = `\${ resources['${addr}'].outputs.id }`;
    } else {
      throw new ValidationError('api.invalid_request', `keyName: no keypair named ${input.keyName} in project ${input.project}; pass publicKey to create it`, { details: { field: 'keyName' } });
    }
  }
  res.server = {
    kind: 'compute/Server', labels: { [NAME_LABEL]: input.name },
    spec: {
      flavor: input.flavor, image: input.image, networks, securityGroups: groups,
      ...(keypair ? { keypair } : {}),
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

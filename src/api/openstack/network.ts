import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Iam } from '../../iam/service.js';
import type { Resource } from '../../resources/types.js';
import { stableJson } from '../../resources/kinds.js';
import {
  Backend, badRequest, baseUrl, conflict, derivedUuid, failureError, filterList, indexByProviderId, isoTime, L, notFound, OsError, osContext, osName, providerId, refOf, requirePerm, type OsContext,
} from './common.js';

/**
 * Neutron (network v2.0) on Infraflow resources: networks, subnets, ports
 * (also the ports of servers and router interfaces, derived from their
 * resources), routers, security groups and rules, floating IPs. Neutron's
 * calls are synchronous: each create/update/delete starts the resource's
 * durable run and answers when it has settled.
 */

export interface NetworkApi {
  /** Provider id of a subnet of network `networkId` for a server NIC (the one holding `fixedIp` if given). */
  subnetForServer(ctx: OsContext, networkId: string, fixedIp?: string): Promise<string>;
  portRef(ctx: OsContext, portId: string): Promise<string>;
  securityGroupRef(ctx: OsContext, nameOrId: string): Promise<string>;
}

const nfe = (what: string, id: string) => new OsError(404, `${what} ${id} could not be found.`, `${what.replace(/ /g, '')}NotFound`);

function parse<T>(schema: z.ZodType<T>, value: unknown): T {
  const r = schema.safeParse(value);
  if (!r.success) {
    const i = r.error.issues[0]!;
    throw new OsError(400, `Invalid input for ${i.path.join('.') || 'body'}. Reason: ${i.message}.`, 'HTTPBadRequest');
  }
  return r.data;
}

function ipv4ToInt(ip: string): number {
  return ip.split('.').reduce((a, o) => a * 256 + Number(o), 0);
}
function intToIpv4(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');
}
function defaultPools(cidr: string | undefined, gateway: string | null | undefined): { start: string; end: string }[] {
  if (!cidr || cidr.includes(':')) return [];
  const [net, len] = cidr.split('/');
  const size = 2 ** (32 - Number(len));
  if (size < 4) return [];
  const first = ipv4ToInt(net!) + 1;
  const last = ipv4ToInt(net!) + size - 2;
  const gw = gateway ? ipv4ToInt(gateway) : -1;
  return [{ start: intToIpv4(gw === first ? first + 1 : first), end: intToIpv4(gw === last ? last - 1 : last) }];
}

const common = (r: Resource, ctx: OsContext) => ({
  tenant_id: ctx.projectId, project_id: ctx.projectId, description: r.labels[L.description] ?? '', tags: [] as string[],
  created_at: isoTime(r.createdAt), updated_at: isoTime(r.updatedAt), revision_number: r.generation,
});

const neutronStatus = (r: Resource, readyStatus = 'ACTIVE') => (r.status.phase === 'failed' ? 'ERROR' : r.status.phase === 'pending' || r.status.phase === 'creating' ? 'BUILD' : readyStatus);

type Rule = { id: string; security_group_id: string; direction: string; ethertype: string; protocol: string | null; port_range_min: number | null; port_range_max: number | null; remote_ip_prefix: string | null; remote_group_id: string | null; description: string };
interface SpecRule { direction: 'ingress' | 'egress'; protocol: 'tcp' | 'udp' | 'icmp' | 'any'; portMin?: number; portMax?: number; remoteCidr?: string; ethertype: 'IPv4' | 'IPv6'; description?: string }

const PROTOCOLS: Record<string, SpecRule['protocol']> = { tcp: 'tcp', '6': 'tcp', udp: 'udp', '17': 'udp', icmp: 'icmp', '1': 'icmp', any: 'any' };

export function networkRoutes(app: FastifyInstance, iam: Iam, backend: Backend): NetworkApi {
  const ctxOf = (req: FastifyRequest) => osContext(iam, req);
  const idOf = (req: FastifyRequest) => (req.params as { id: string }).id;
  const q = (req: FastifyRequest) => req.query as Record<string, unknown>;
  const list = <T extends Record<string, unknown>>(key: string, items: T[], req: FastifyRequest) => {
    const { items: page, more } = filterList(items, q(req));
    return { [key]: page, ...(more ? { [`${key}_links`]: [{ rel: 'next', href: `${baseUrl(req)}/network/v2.0/${key.replace(/_/g, '-')}?limit=${String(q(req).limit)}&marker=${String(page[page.length - 1]?.id)}` }] } : {}) };
  };
  /** Creates and waits; a create the backend refused is removed again and answered as an error. */
  const createSync = async (ctx: OsContext, kind: string, name: string | undefined, spec: Record<string, unknown>, labels: Record<string, string> = {}) => {
    const r = await backend.create(ctx, kind, name, spec, labels);
    const done = await backend.settle(r.id, 60_000);
    if (done.status.phase === 'failed') {
      await backend.remove(done);
      throw failureError(done);
    }
    return done;
  };
  const updateSync = async (r: Resource, spec: Record<string, unknown>, labels?: Record<string, string>) => {
    const next = await backend.update(r, spec, labels);
    const done = await backend.settle(next.id, 60_000);
    if (done.status.phase === 'failed') throw failureError(done);
    return done;
  };
  const deleteSync = async (r: Resource) => {
    await backend.remove(r);
    const done = await backend.settle(r.id, 60_000, { gone: true });
    if (done.status.phase === 'failed') throw failureError(done);
  };
  const must = async (ctx: OsContext, kind: string, id: string, what: string) => {
    const r = await backend.find(ctx, kind, id);
    if (!r) throw nfe(what, id);
    return r;
  };

  // ------------------------------------------------------------------ networks
  const subnetsByNetwork = async (ctx: OsContext) => {
    const m = new Map<string, string[]>();
    for (const s of await backend.list(ctx, 'network/Subnet')) {
      const n = s.labels[L.network];
      if (n) (m.get(n) ?? m.set(n, []).get(n)!).push(s.id);
    }
    return m;
  };
  const networkView = (r: Resource, ctx: OsContext, subnets: string[]) => {
    const s = r.spec as { mtu: number; external: boolean; adminStateUp: boolean; vlan?: number };
    return {
      id: r.id, name: osName(r), ...common(r, ctx), admin_state_up: s.adminStateUp, mtu: s.mtu, status: neutronStatus(r, s.adminStateUp ? 'ACTIVE' : 'DOWN'), subnets,
      shared: false, 'router:external': s.external, availability_zone_hints: [], availability_zones: ['nova'], ipv4_address_scope: null, ipv6_address_scope: null,
      port_security_enabled: true, is_default: false, 'provider:network_type': 'vlan', 'provider:physical_network': 'physnet1',
      'provider:segmentation_id': (r.status.outputs.vlan as number | undefined) ?? s.vlan ?? null, l2_adjacency: true,
    };
  };
  app.get('/v2.0/networks', async (req) => {
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:read');
    const subs = await subnetsByNetwork(ctx);
    return list('networks', (await backend.list(ctx, 'network/Network')).map((r) => networkView(r, ctx, subs.get(r.id) ?? [])), req);
  });
  app.get('/v2.0/networks/:id', async (req) => {
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:read');
    const r = await must(ctx, 'network/Network', idOf(req), 'Network');
    return { network: networkView(r, ctx, (await subnetsByNetwork(ctx)).get(r.id) ?? []) };
  });
  const NetBody = z.object({ name: z.string().max(255).optional(), admin_state_up: z.boolean().optional(), mtu: z.number().int().optional(), 'router:external': z.boolean().optional(), 'provider:segmentation_id': z.number().int().optional(), description: z.string().optional() }).loose();
  app.post('/v2.0/networks', async (req, reply) => {
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:write');
    const b = parse(z.object({ network: NetBody }), req.body).network;
    const r = await createSync(ctx, 'network/Network', b.name, {
      ...(b.mtu ? { mtu: b.mtu } : {}), external: b['router:external'] ?? false, adminStateUp: b.admin_state_up ?? true, ...(b['provider:segmentation_id'] ? { vlan: b['provider:segmentation_id'] } : {}),
    }, b.description ? { [L.description]: b.description } : {});
    reply.code(201);
    return { network: networkView(r, ctx, []) };
  });
  app.put('/v2.0/networks/:id', async (req) => {
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:write');
    const r = await must(ctx, 'network/Network', idOf(req), 'Network');
    const b = parse(z.object({ network: NetBody }), req.body).network;
    const spec = { ...r.spec, ...(b.mtu ? { mtu: b.mtu } : {}), ...(b.admin_state_up !== undefined ? { adminStateUp: b.admin_state_up } : {}) };
    if (b['router:external'] !== undefined && b['router:external'] !== (r.spec as { external: boolean }).external) throw badRequest('router:external cannot be changed on an existing network here: create a new network');
    const labels = { ...r.labels, ...(b.name !== undefined ? { [L.name]: b.name } : {}), ...(b.description !== undefined ? { [L.description]: b.description } : {}) };
    const done = await updateSync(r, spec, labels);
    return { network: networkView(done, ctx, (await subnetsByNetwork(ctx)).get(r.id) ?? []) };
  });
  app.delete('/v2.0/networks/:id', async (req, reply) => {
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:write');
    const r = await must(ctx, 'network/Network', idOf(req), 'Network');
    const inUse = (await allPorts(ctx)).filter((p) => p.network_id === r.id && p.device_owner !== 'network:router_interface');
    if (inUse.length) throw new OsError(409, `Unable to complete operation on network ${r.id}. There are one or more ports still in use on the network.`, 'NetworkInUse');
    const subnets = (await backend.list(ctx, 'network/Subnet')).filter((s) => s.labels[L.network] === r.id);
    for (const s of subnets) await deleteSync(s);
    await deleteSync(r);
    return reply.code(204).send();
  });

  // ------------------------------------------------------------------ subnets
  const subnetView = (r: Resource, ctx: OsContext) => {
    const s = r.spec as { cidr?: string; ipVersion: 4 | 6; gateway?: string | null; dhcp: boolean; dnsServers: string[]; allocationPools: { start: string; end: string }[] };
    const o = r.status.outputs;
    const cidr = (o.cidr as string | undefined) ?? s.cidr ?? null;
    const gateway = s.gateway === null ? null : (o.gateway as string | undefined) ?? s.gateway ?? null;
    return {
      id: r.id, name: osName(r), ...common(r, ctx), network_id: r.labels[L.network] ?? '', ip_version: s.ipVersion, cidr, gateway_ip: gateway, enable_dhcp: s.dhcp,
      dns_nameservers: s.dnsServers, allocation_pools: s.allocationPools.length ? s.allocationPools : defaultPools(cidr ?? undefined, gateway), host_routes: [],
      ipv6_ra_mode: null, ipv6_address_mode: null, subnetpool_id: null, service_types: [], segment_id: null, dns_publish_fixed_ip: false,
    };
  };
  app.get('/v2.0/subnets', async (req) => {
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:read');
    return list('subnets', (await backend.list(ctx, 'network/Subnet')).map((r) => subnetView(r, ctx)), req);
  });
  app.get('/v2.0/subnets/:id', async (req) => {
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:read');
    return { subnet: subnetView(await must(ctx, 'network/Subnet', idOf(req), 'Subnet'), ctx) };
  });
  app.post('/v2.0/subnets', async (req, reply) => {
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:write');
    const b = parse(z.object({
      subnet: z.object({
        network_id: z.string(), name: z.string().max(255).optional(), cidr: z.string().optional(), ip_version: z.union([z.literal(4), z.literal(6)]).optional(), gateway_ip: z.string().nullable().optional(),
        enable_dhcp: z.boolean().optional(), dns_nameservers: z.array(z.string()).optional(), allocation_pools: z.array(z.object({ start: z.string(), end: z.string() })).optional(),
        prefixlen: z.coerce.number().int().optional(), subnetpool_id: z.string().nullable().optional(), description: z.string().optional(),
      }).loose(),
    }), req.body).subnet;
    const net = await must(ctx, 'network/Network', b.network_id, 'Network');
    if (!b.cidr && !b.prefixlen) throw new OsError(400, 'Bad subnets request: a cidr must be specified in the absence of a subnet pool', 'BadRequest');
    const ipVersion = b.ip_version ?? (b.cidr?.includes(':') ? 6 : 4);
    if (b.cidr && (b.cidr.includes(':') ? 6 : 4) !== ipVersion) throw new OsError(400, `Invalid input for operation: ip_version ${ipVersion} does not match cidr ${b.cidr}.`, 'InvalidInput');
    const spec = {
      network: await refOf(backend, net, 'network'), ...(b.cidr ? { cidr: b.cidr } : { prefixLength: b.prefixlen }), ipVersion,
      ...(b.gateway_ip !== undefined ? { gateway: b.gateway_ip } : {}), dhcp: b.enable_dhcp ?? true, dnsServers: b.dns_nameservers ?? [], allocationPools: b.allocation_pools ?? [],
    };
    const r = await createSync(ctx, 'network/Subnet', b.name, spec, { [L.network]: net.id, ...(b.description ? { [L.description]: b.description } : {}) });
    reply.code(201);
    return { subnet: subnetView(r, ctx) };
  });
  app.put('/v2.0/subnets/:id', async (req) => {
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:write');
    const r = await must(ctx, 'network/Subnet', idOf(req), 'Subnet');
    const b = parse(z.object({ subnet: z.object({ name: z.string().max(255).optional(), gateway_ip: z.string().nullable().optional(), enable_dhcp: z.boolean().optional(), dns_nameservers: z.array(z.string()).optional(), description: z.string().optional() }).loose() }), req.body).subnet;
    const spec = { ...r.spec, ...(b.gateway_ip !== undefined ? { gateway: b.gateway_ip } : {}), ...(b.enable_dhcp !== undefined ? { dhcp: b.enable_dhcp } : {}), ...(b.dns_nameservers ? { dnsServers: b.dns_nameservers } : {}) };
    const labels = { ...r.labels, ...(b.name !== undefined ? { [L.name]: b.name } : {}), ...(b.description !== undefined ? { [L.description]: b.description } : {}) };
    return { subnet: subnetView(await updateSync(r, spec, labels), ctx) };
  });
  app.delete('/v2.0/subnets/:id', async (req, reply) => {
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:write');
    const r = await must(ctx, 'network/Subnet', idOf(req), 'Subnet');
    const used = (await allPorts(ctx)).filter((p) => p.fixed_ips.some((f) => f.subnet_id === r.id));
    if (used.length) throw new OsError(409, `Unable to complete operation on subnet ${r.id}: One or more ports have an IP allocation from this subnet.`, 'SubnetInUse');
    await deleteSync(r);
    return reply.code(204).send();
  });

  // ------------------------------------------------------------------ ports (own, servers' NICs, router interfaces)
  type PortView = ReturnType<typeof basePort>;
  const basePort = (id: string, name: string, ctx: OsContext, r: Resource, net: string, fixed: { subnet_id: string; ip_address: string }[], mac: string, deviceId: string, owner: string, status: string, groups: string[]) => ({
    id, name, ...common(r, ctx), network_id: net, mac_address: mac, admin_state_up: true, status, device_id: deviceId, device_owner: owner, fixed_ips: fixed,
    security_groups: groups, allowed_address_pairs: [] as unknown[], extra_dhcp_opts: [] as unknown[], 'binding:vnic_type': 'normal', 'binding:host_id': '', 'binding:vif_type': status === 'ACTIVE' ? 'tap' : 'unbound',
    'binding:vif_details': {}, 'binding:profile': {}, port_security_enabled: true, dns_name: '', dns_assignment: [] as unknown[], propagate_uplink_status: false, ip_allocation: 'immediate',
  });
  const allPorts = async (ctx: OsContext): Promise<PortView[]> => {
    const [nets, subs, groups, servers] = await Promise.all([
      indexByProviderId(backend, ctx, ['network/Network']), indexByProviderId(backend, ctx, ['network/Subnet']), indexByProviderId(backend, ctx, ['network/SecurityGroup']), indexByProviderId(backend, ctx, ['compute/Server']),
    ]);
    const out: PortView[] = [];
    for (const r of await backend.list(ctx, 'network/Port')) {
      const o = r.status.outputs;
      const s = r.spec as { securityGroups: string[]; fixedIp?: string; macAddress?: string };
      const server = typeof o.boundTo === 'string' ? servers.get(o.boundTo) : undefined;
      const subnet = typeof o.subnet === 'string' ? subs.get(o.subnet)?.id : r.labels[L.subnet];
      out.push(basePort(r.id, osName(r), ctx, r, r.labels[L.network] ?? '', subnet && (o.ip ?? s.fixedIp) ? [{ subnet_id: subnet, ip_address: String(o.ip ?? s.fixedIp) }] : [],
        String(o.mac ?? s.macAddress ?? ''), server?.id ?? r.labels['openstack.org/device-id'] ?? '', server ? 'compute:nova' : r.labels[L.deviceOwner] ?? '', server ? 'ACTIVE' : neutronStatus(r, 'DOWN'),
        s.securityGroups.map((g) => groups.get(g)?.id ?? g)));
    }
    for (const srv of servers.values()) {
      const nics = (srv.status.outputs.addresses ?? []) as { subnet?: string; network?: string; ip: string; mac?: string; port?: string }[];
      nics.forEach((nic, i) => {
        if (nic.port) return;
        const groupsOf = ((srv.spec as { securityGroups?: string[] }).securityGroups ?? []).map((g) => groups.get(g)?.id ?? g);
        out.push(basePort(derivedUuid(srv.id, 'nic', String(i)), '', ctx, srv, nic.network ? nets.get(nic.network)?.id ?? '' : '', nic.subnet && subs.get(nic.subnet) ? [{ subnet_id: subs.get(nic.subnet)!.id, ip_address: nic.ip }] : [],
          nic.mac ?? '', srv.id, 'compute:nova', srv.status.phase === 'ready' ? 'ACTIVE' : 'DOWN', groupsOf));
      });
    }
    for (const router of await backend.list(ctx, 'network/Router')) {
      // the gateway port on the external network, as Neutron shows it (device_owner network:router_gateway)
      const gwNet = router.labels[L.network];
      const gwIp = router.status.outputs.externalIp;
      if (gwNet && (router.spec as { externalGateway?: string }).externalGateway) {
        out.push(basePort(derivedUuid(router.id, 'gw'), '', ctx, router, gwNet, typeof gwIp === 'string' ? [{ subnet_id: '', ip_address: gwIp }] : [], '', router.id, 'network:router_gateway', 'ACTIVE', []));
      }
      for (const itf of (router.status.outputs.interfaces ?? []) as { subnet: string; ip?: string }[]) {
        const sub = subs.get(itf.subnet);
        if (!sub) continue;
        out.push(basePort(derivedUuid(router.id, 'if', itf.subnet), '', ctx, router, sub.labels[L.network] ?? '', itf.ip ? [{ subnet_id: sub.id, ip_address: itf.ip }] : [], '', router.id, 'network:router_interface', 'ACTIVE', []));
      }
    }
    return out;
  };
  app.get('/v2.0/ports', async (req) => {
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:read');
    return list('ports', await allPorts(ctx), req);
  });
  app.get('/v2.0/ports/:id', async (req) => {
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:read');
    const p = (await allPorts(ctx)).find((x) => x.id === idOf(req));
    if (!p) throw nfe('Port', idOf(req));
    return { port: p };
  });
  app.post('/v2.0/ports', async (req, reply) => {
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:write');
    const b = parse(z.object({ port: z.object({ network_id: z.string(), name: z.string().max(255).optional(), fixed_ips: z.array(z.object({ subnet_id: z.string().optional(), ip_address: z.string().optional() })).optional(), security_groups: z.array(z.string()).optional(), mac_address: z.string().optional(), device_owner: z.string().optional(), description: z.string().optional() }).loose() }), req.body).port;
    const net = await must(ctx, 'network/Network', b.network_id, 'Network');
    const fixed = b.fixed_ips?.[0];
    let subnetRes: Resource | undefined;
    if (fixed?.subnet_id) subnetRes = await must(ctx, 'network/Subnet', fixed.subnet_id, 'Subnet');
    const groups: string[] = [];
    for (const g of b.security_groups ?? ['default']) groups.push(await api.securityGroupRef(ctx, g));
    const spec = { network: await refOf(backend, net, 'network'), ...(subnetRes ? { subnet: await refOf(backend, subnetRes, 'subnet') } : {}), ...(fixed?.ip_address ? { fixedIp: fixed.ip_address } : {}), securityGroups: groups, ...(b.mac_address ? { macAddress: b.mac_address } : {}) };
    const r = await createSync(ctx, 'network/Port', b.name, spec, { [L.network]: net.id, ...(subnetRes ? { [L.subnet]: subnetRes.id } : {}), ...(b.device_owner ? { [L.deviceOwner]: b.device_owner } : {}), ...(b.description ? { [L.description]: b.description } : {}) });
    reply.code(201);
    return { port: (await allPorts(ctx)).find((p) => p.id === r.id) };
  });
  app.put('/v2.0/ports/:id', async (req) => {
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:write');
    const r = await backend.find(ctx, 'network/Port', idOf(req));
    if (!r) {
      if ((await allPorts(ctx)).some((p) => p.id === idOf(req))) throw new OsError(409, `Port ${idOf(req)} belongs to a server or router here and changes with it.`, 'PortInUse');
      throw nfe('Port', idOf(req));
    }
    const b = parse(z.object({ port: z.object({ name: z.string().max(255).optional(), security_groups: z.array(z.string()).optional(), description: z.string().optional() }).loose() }), req.body).port;
    const groups: string[] = [];
    for (const g of b.security_groups ?? []) groups.push(await api.securityGroupRef(ctx, g));
    const spec = { ...r.spec, ...(b.security_groups ? { securityGroups: groups } : {}) };
    await updateSync(r, spec, { ...r.labels, ...(b.name !== undefined ? { [L.name]: b.name } : {}), ...(b.description !== undefined ? { [L.description]: b.description } : {}) });
    return { port: (await allPorts(ctx)).find((p) => p.id === r.id) };
  });
  app.delete('/v2.0/ports/:id', async (req, reply) => {
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:write');
    const r = await backend.find(ctx, 'network/Port', idOf(req));
    if (!r) {
      if ((await allPorts(ctx)).some((p) => p.id === idOf(req))) throw new OsError(409, `Port ${idOf(req)} belongs to a server or router; delete the server or remove the router interface`, 'PortInUse');
      throw nfe('Port', idOf(req));
    }
    await deleteSync(r);
    return reply.code(204).send();
  });

  // ------------------------------------------------------------------ routers
  const routerView = async (r: Resource, ctx: OsContext) => {
    const s = r.spec as { externalGateway?: string; routes: { destination: string; nexthop: string }[] };
    const o = r.status.outputs;
    const extNet = r.labels[L.network];
    return {
      id: r.id, name: osName(r), ...common(r, ctx), admin_state_up: true, status: neutronStatus(r),
      external_gateway_info: s.externalGateway && extNet ? { network_id: extNet, enable_snat: true, external_fixed_ips: o.externalIp ? [{ subnet_id: '', ip_address: o.externalIp }] : [] } : null,
      routes: s.routes, distributed: false, ha: false, availability_zone_hints: [], availability_zones: ['nova'], flavor_id: null, enable_ndp_proxy: false,
    };
  };
  app.get('/v2.0/routers', async (req) => {
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:read');
    const views = [];
    for (const r of await backend.list(ctx, 'network/Router')) views.push(await routerView(r, ctx));
    return list('routers', views, req);
  });
  app.get('/v2.0/routers/:id', async (req) => {
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:read');
    return { router: await routerView(await must(ctx, 'network/Router', idOf(req), 'Router'), ctx) };
  });
  const GatewayInfo = z.object({ network_id: z.string(), enable_snat: z.boolean().optional(), external_fixed_ips: z.unknown().optional() }).loose().nullable();
  const gateway = async (ctx: OsContext, g: z.infer<typeof GatewayInfo> | undefined) => {
    if (g === undefined) return undefined;
    if (g === null) return null;
    const net = await must(ctx, 'network/Network', g.network_id, 'Network');
    if (!(net.spec as { external: boolean }).external) throw new OsError(400, `Bad router request: Network ${net.id} is not an external network.`, 'BadRequest');
    return { net, ref: await refOf(backend, net, 'network') };
  };
  app.post('/v2.0/routers', async (req, reply) => {
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:write');
    const b = parse(z.object({ router: z.object({ name: z.string().max(255).optional(), external_gateway_info: GatewayInfo.optional(), admin_state_up: z.boolean().optional(), description: z.string().optional() }).loose() }), req.body).router;
    const gw = await gateway(ctx, b.external_gateway_info);
    const r = await createSync(ctx, 'network/Router', b.name, { ...(gw ? { externalGateway: gw.ref } : {}), interfaces: [], routes: [] }, { ...(gw ? { [L.network]: gw.net.id } : {}), ...(b.description ? { [L.description]: b.description } : {}) });
    reply.code(201);
    return { router: await routerView(r, ctx) };
  });
  app.put('/v2.0/routers/:id', async (req) => {
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:write');
    const r = await must(ctx, 'network/Router', idOf(req), 'Router');
    const b = parse(z.object({ router: z.object({ name: z.string().max(255).optional(), external_gateway_info: GatewayInfo.optional(), routes: z.array(z.object({ destination: z.string(), nexthop: z.string() })).optional(), description: z.string().optional() }).loose() }), req.body).router;
    const gw = await gateway(ctx, b.external_gateway_info);
    const spec: Record<string, unknown> = { ...r.spec, ...(b.routes ? { routes: b.routes } : {}) };
    const labels: Record<string, string> = { ...r.labels, ...(b.name !== undefined ? { [L.name]: b.name } : {}), ...(b.description !== undefined ? { [L.description]: b.description } : {}) };
    if (gw === null) {
      delete spec.externalGateway;
      delete labels[L.network];
    } else if (gw) {
      spec.externalGateway = gw.ref;
      labels[L.network] = gw.net.id;
    }
    return { router: await routerView(await updateSync(r, spec, labels), ctx) };
  });
  app.delete('/v2.0/routers/:id', async (req, reply) => {
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:write');
    const r = await must(ctx, 'network/Router', idOf(req), 'Router');
    if ((r.spec as { interfaces: string[] }).interfaces.length) throw new OsError(409, `Router ${r.id} still has ports; remove its interfaces first`, 'RouterInUse');
    await deleteSync(r);
    return reply.code(204).send();
  });
  const interfaceChange = (add: boolean) => async (req: FastifyRequest) => {
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:write');
    const r = await must(ctx, 'network/Router', idOf(req), 'Router');
    const b = parse(z.object({ subnet_id: z.string().optional(), port_id: z.string().optional() }).loose(), req.body);
    let subnet: Resource;
    if (b.subnet_id) subnet = await must(ctx, 'network/Subnet', b.subnet_id, 'Subnet');
    else if (b.port_id) {
      const port = (await allPorts(ctx)).find((p) => p.id === b.port_id);
      if (!port?.fixed_ips[0]) throw nfe('Port', b.port_id);
      subnet = await must(ctx, 'network/Subnet', port.fixed_ips[0].subnet_id, 'Subnet');
    } else throw badRequest('Bad router request: Either subnet_id or port_id must be specified', 'BadRequest');
    const ref = await refOf(backend, subnet, 'subnet');
    const ifaces = (r.spec as { interfaces: string[] }).interfaces;
    if (add && ifaces.includes(ref)) throw new OsError(400, `Bad router request: Router already has a port on subnet ${subnet.id}.`, 'BadRequest');
    if (!add && !ifaces.includes(ref)) throw new OsError(404, `Router ${r.id} has no interface on subnet ${subnet.id}`, 'RouterInterfaceNotFoundForSubnet');
    const next = add ? [...ifaces, ref] : ifaces.filter((x) => x !== ref);
    await updateSync(r, { ...r.spec, interfaces: next });
    return { id: r.id, tenant_id: ctx.projectId, project_id: ctx.projectId, port_id: derivedUuid(r.id, 'if', ref), subnet_id: subnet.id, subnet_ids: [subnet.id], network_id: subnet.labels[L.network] ?? '' };
  };
  app.put('/v2.0/routers/:id/add_router_interface', interfaceChange(true));
  app.put('/v2.0/routers/:id/remove_router_interface', interfaceChange(false));

  // ------------------------------------------------------------------ security groups and rules
  const extraRules = (r: Resource): Rule[] => {
    try {
      return JSON.parse(r.labels[L.extraRules] ?? '[]') as Rule[];
    } catch {
      return [];
    }
  };
  const rulesOf = (r: Resource): Rule[] => {
    const own = ((r.spec as { rules: SpecRule[] }).rules ?? []).map((x): Rule => ({
      id: derivedUuid(r.id, stableJson(x)), security_group_id: r.id, direction: x.direction, ethertype: x.ethertype, protocol: x.protocol === 'any' ? null : x.protocol,
      port_range_min: x.portMin ?? null, port_range_max: x.portMax ?? null, remote_ip_prefix: x.remoteCidr ?? null, remote_group_id: null, description: x.description ?? '',
    }));
    return [...own, ...extraRules(r).map((x) => ({ ...x, security_group_id: r.id, remote_group_id: x.remote_group_id === 'self' ? r.id : x.remote_group_id }))];
  };
  const ruleView = (rule: Rule, r: Resource, ctx: OsContext) => ({ ...rule, ...common(r, ctx), remote_address_group_id: null, normalized_cidr: rule.remote_ip_prefix, belongs_to_default_sg: osName(r) === 'default' });
  const sgView = (r: Resource, ctx: OsContext) => ({ id: r.id, name: osName(r), ...common(r, ctx), description: (r.spec as { description: string }).description, stateful: true, security_group_rules: rulesOf(r).map((x) => ruleView(x, r, ctx)) });
  const ensuring = new Map<string, Promise<Resource>>();
  const ensureDefault = async (ctx: OsContext): Promise<Resource> => {
    const found = (await backend.list(ctx, 'network/SecurityGroup', { [L.name]: 'default' }))[0];
    if (found) return found;
    const pending = ensuring.get(ctx.project);
    if (pending) return pending;
    const p = createSync(ctx, 'network/SecurityGroup', 'default', {
      description: 'Default security group',
      rules: [{ direction: 'egress', protocol: 'any', remoteCidr: '0.0.0.0/0', ethertype: 'IPv4' }, { direction: 'egress', protocol: 'any', remoteCidr: '::/0', ethertype: 'IPv6' }],
    }, { [L.extraRules]: JSON.stringify([
      { id: derivedUuid(ctx.project, 'default-sg', 'v4'), direction: 'ingress', ethertype: 'IPv4', protocol: null, port_range_min: null, port_range_max: null, remote_ip_prefix: null, remote_group_id: 'self', description: '' },
      { id: derivedUuid(ctx.project, 'default-sg', 'v6'), direction: 'ingress', ethertype: 'IPv6', protocol: null, port_range_min: null, port_range_max: null, remote_ip_prefix: null, remote_group_id: 'self', description: '' },
    ]) }).finally(() => ensuring.delete(ctx.project));
    ensuring.set(ctx.project, p);
    return p;
  };
  app.get('/v2.0/security-groups', async (req) => {
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:read');
    if (ctx.principal && requirePermSoft(ctx)) await ensureDefault(ctx);
    return list('security_groups', (await backend.list(ctx, 'network/SecurityGroup')).map((r) => sgView(r, ctx)), req);
  });
  app.get('/v2.0/security-groups/:id', async (req) => {
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:read');
    return { security_group: sgView(await must(ctx, 'network/SecurityGroup', idOf(req), 'Security group'), ctx) };
  });
  app.post('/v2.0/security-groups', async (req, reply) => {
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:write');
    const b = parse(z.object({ security_group: z.object({ name: z.string().max(255), description: z.string().max(255).optional(), stateful: z.boolean().optional() }).loose() }), req.body).security_group;
    if (b.name === 'default') {
      const existing = (await backend.list(ctx, 'network/SecurityGroup', { [L.name]: 'default' }))[0];
      if (existing) throw new OsError(409, 'Default security group already exists.', 'SecurityGroupDefaultAlreadyExists');
    }
    const r = await createSync(ctx, 'network/SecurityGroup', b.name, {
      description: b.description ?? '',
      rules: [{ direction: 'egress', protocol: 'any', remoteCidr: '0.0.0.0/0', ethertype: 'IPv4' }, { direction: 'egress', protocol: 'any', remoteCidr: '::/0', ethertype: 'IPv6' }],
    });
    reply.code(201);
    return { security_group: sgView(r, ctx) };
  });
  app.put('/v2.0/security-groups/:id', async (req) => {
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:write');
    const r = await must(ctx, 'network/SecurityGroup', idOf(req), 'Security group');
    const b = parse(z.object({ security_group: z.object({ name: z.string().max(255).optional(), description: z.string().max(255).optional() }).loose() }), req.body).security_group;
    const done = await updateSync(r, { ...r.spec, ...(b.description !== undefined ? { description: b.description } : {}) }, { ...r.labels, ...(b.name !== undefined ? { [L.name]: b.name } : {}) });
    return { security_group: sgView(done, ctx) };
  });
  app.delete('/v2.0/security-groups/:id', async (req, reply) => {
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:write');
    const r = await must(ctx, 'network/SecurityGroup', idOf(req), 'Security group');
    const pid = providerId(r);
    const used = (await backend.list(ctx, 'compute/Server')).some((s) => pid && ((s.spec as { securityGroups?: string[] }).securityGroups ?? []).includes(pid));
    if (used) throw new OsError(409, `Security Group ${r.id} in use.`, 'SecurityGroupInUse');
    await deleteSync(r);
    return reply.code(204).send();
  });

  const allRules = async (ctx: OsContext) => (await backend.list(ctx, 'network/SecurityGroup')).flatMap((r) => rulesOf(r).map((x) => ({ rule: x, group: r })));
  app.get('/v2.0/security-group-rules', async (req) => {
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:read');
    return list('security_group_rules', (await allRules(ctx)).map((x) => ruleView(x.rule, x.group, ctx)), req);
  });
  app.get('/v2.0/security-group-rules/:id', async (req) => {
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:read');
    const hit = (await allRules(ctx)).find((x) => x.rule.id === idOf(req));
    if (!hit) throw nfe('Security group rule', idOf(req));
    return { security_group_rule: ruleView(hit.rule, hit.group, ctx) };
  });
  app.post('/v2.0/security-group-rules', async (req, reply) => {
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:write');
    const b = parse(z.object({
      security_group_rule: z.object({
        security_group_id: z.string(), direction: z.enum(['ingress', 'egress']), ethertype: z.enum(['IPv4', 'IPv6']).optional(), protocol: z.union([z.string(), z.number()]).nullable().optional(),
        port_range_min: z.number().int().min(0).max(65535).nullable().optional(), port_range_max: z.number().int().min(0).max(65535).nullable().optional(),
        remote_ip_prefix: z.string().nullable().optional(), remote_group_id: z.string().nullable().optional(), description: z.string().max(255).nullable().optional(),
      }).loose(),
    }), req.body).security_group_rule;
    const sg = await must(ctx, 'network/SecurityGroup', b.security_group_id, 'Security group');
    const protocol = b.protocol === null || b.protocol === undefined ? 'any' : PROTOCOLS[String(b.protocol).toLowerCase()];
    if (!protocol) throw new OsError(400, `Security group rule protocol ${String(b.protocol)} not supported. Only protocol values [tcp, udp, icmp, any] and integer representations [6, 17, 1] are supported.`, 'SecurityGroupRuleInvalidProtocol');
    if (b.remote_ip_prefix && b.remote_group_id) throw new OsError(400, 'Only remote_ip_prefix or remote_group_id may be provided.', 'SecurityGroupRemoteGroupAndRemoteIpPrefix');
    if (b.port_range_min !== null && b.port_range_min !== undefined && b.port_range_max !== null && b.port_range_max !== undefined && b.port_range_min > b.port_range_max) {
      throw new OsError(400, 'For TCP/UDP protocols, port_range_min must be <= port_range_max', 'SecurityGroupInvalidPortRange');
    }
    const ethertype = b.ethertype ?? (b.remote_ip_prefix?.includes(':') ? 'IPv6' : 'IPv4');
    if (b.remote_ip_prefix && (b.remote_ip_prefix.includes(':') ? 'IPv6' : 'IPv4') !== ethertype) throw new OsError(400, `Conflicting value ethertype ${ethertype} for CIDR ${b.remote_ip_prefix}`, 'SecurityGroupRuleParameterConflict');
    if (b.remote_group_id) {
      const remote = await must(ctx, 'network/SecurityGroup', b.remote_group_id, 'Security group');
      const rule: Rule = { id: derivedUuid(sg.id, 'rg', b.direction, ethertype, protocol, String(b.port_range_min ?? ''), String(b.port_range_max ?? ''), remote.id), security_group_id: sg.id, direction: b.direction, ethertype, protocol: protocol === 'any' ? null : protocol, port_range_min: b.port_range_min ?? null, port_range_max: b.port_range_max ?? null, remote_ip_prefix: null, remote_group_id: remote.id === sg.id ? 'self' : remote.id, description: b.description ?? '' };
      const existing = extraRules(sg);
      const dupe = existing.find((x) => x.id === rule.id);
      if (dupe) throw new OsError(409, `Security group rule already exists. Rule id is ${rule.id}.`, 'SecurityGroupRuleExists');
      const done = await updateSync(sg, sg.spec, { ...sg.labels, [L.extraRules]: JSON.stringify([...existing, rule]) });
      reply.code(201);
      return { security_group_rule: ruleView(rulesOf(done).find((x) => x.id === rule.id)!, done, ctx) };
    }
    const specRule: SpecRule = {
      direction: b.direction, protocol, ...(b.port_range_min !== null && b.port_range_min !== undefined ? { portMin: b.port_range_min } : {}),
      ...(b.port_range_max !== null && b.port_range_max !== undefined ? { portMax: b.port_range_max } : b.port_range_min !== null && b.port_range_min !== undefined ? { portMax: b.port_range_min } : {}),
      // no prefix is "from anywhere", as Neutron answers it (null) and as the rule kind says it
      ...(b.remote_ip_prefix ? { remoteCidr: b.remote_ip_prefix } : {}), ethertype, ...(b.description ? { description: b.description } : {}),
    };
    const rules = (sg.spec as { rules: SpecRule[] }).rules;
    const id = derivedUuid(sg.id, stableJson(specRule));
    if (rulesOf(sg).some((x) => x.id === id)) throw new OsError(409, `Security group rule already exists. Rule id is ${id}.`, 'SecurityGroupRuleExists');
    const done = await updateSync(sg, { ...sg.spec, rules: [...rules, specRule] });
    reply.code(201);
    return { security_group_rule: ruleView(rulesOf(done).find((x) => x.id === id)!, done, ctx) };
  });
  app.delete('/v2.0/security-group-rules/:id', async (req, reply) => {
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:write');
    const hit = (await allRules(ctx)).find((x) => x.rule.id === idOf(req));
    if (!hit) throw nfe('Security group rule', idOf(req));
    const sg = hit.group;
    const extra = extraRules(sg);
    if (extra.some((x) => x.id === hit.rule.id)) {
      await updateSync(sg, sg.spec, { ...sg.labels, [L.extraRules]: JSON.stringify(extra.filter((x) => x.id !== hit.rule.id)) });
    } else {
      const rules = (sg.spec as { rules: SpecRule[] }).rules.filter((x) => derivedUuid(sg.id, stableJson(x)) !== hit.rule.id);
      await updateSync(sg, { ...sg.spec, rules });
    }
    return reply.code(204).send();
  });

  // ------------------------------------------------------------------ floating IPs
  const fipView = (r: Resource, ctx: OsContext, ports: PortView[]) => {
    const o = r.status.outputs;
    const portId = r.labels[L.port] ?? null;
    const port = portId ? ports.find((p) => p.id === portId) : undefined;
    return {
      id: r.id, ...common(r, ctx), floating_ip_address: (o.address as string | undefined) ?? null, floating_network_id: r.labels[L.network] ?? '', router_id: null,
      port_id: portId, fixed_ip_address: portId ? (o.fixedIp as string | undefined) ?? port?.fixed_ips[0]?.ip_address ?? null : null,
      status: r.status.phase === 'ready' ? (portId ? 'ACTIVE' : 'DOWN') : neutronStatus(r, 'DOWN'), port_details: port ? { name: port.name, network_id: port.network_id, mac_address: port.mac_address, admin_state_up: true, status: port.status, device_id: port.device_id, device_owner: port.device_owner } : null,
      dns_name: '', dns_domain: '', port_forwardings: [], qos_policy_id: null,
    };
  };
  /** What a floating IP spec points at for an OpenStack port id: a port resource, or the server whose NIC it is. */
  const fipTarget = async (ctx: OsContext, portId: string | null | undefined): Promise<Record<string, string>> => {
    if (!portId) return {};
    const port = await backend.find(ctx, 'network/Port', portId);
    if (port) return { port: await refOf(backend, port, 'port') };
    const p = (await allPorts(ctx)).find((x) => x.id === portId);
    if (!p || p.device_owner !== 'compute:nova') throw nfe('Port', portId);
    const server = await backend.find(ctx, 'compute/Server', p.device_id);
    if (!server) throw nfe('Port', portId);
    return { server: await refOf(backend, server, 'server') };
  };
  app.get('/v2.0/floatingips', async (req) => {
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:read');
    const ports = await allPorts(ctx);
    return list('floatingips', (await backend.list(ctx, 'network/FloatingIP')).map((r) => fipView(r, ctx, ports)), req);
  });
  app.get('/v2.0/floatingips/:id', async (req) => {
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:read');
    return { floatingip: fipView(await must(ctx, 'network/FloatingIP', idOf(req), 'Floating IP'), ctx, await allPorts(ctx)) };
  });
  app.post('/v2.0/floatingips', async (req, reply) => {
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:write');
    const b = parse(z.object({ floatingip: z.object({ floating_network_id: z.string(), port_id: z.string().nullable().optional(), fixed_ip_address: z.string().nullable().optional(), floating_ip_address: z.string().optional(), description: z.string().optional(), subnet_id: z.string().optional() }).loose() }), req.body).floatingip;
    const net = await must(ctx, 'network/Network', b.floating_network_id, 'Network');
    if (!(net.spec as { external: boolean }).external) throw new OsError(400, `Bad floatingip request: Network ${net.id} is not a valid external network.`, 'BadRequest');
    if (b.floating_ip_address) throw new OsError(400, 'floating_ip_address: choosing the address is not supported here; leave it out to get one from the pool', 'BadRequest');
    const target = await fipTarget(ctx, b.port_id);
    const r = await createSync(ctx, 'network/FloatingIP', undefined, { pool: osName(net), ...target }, { [L.network]: net.id, ...(b.port_id ? { [L.port]: b.port_id } : {}), ...(b.description ? { [L.description]: b.description } : {}) });
    reply.code(201);
    return { floatingip: fipView(r, ctx, await allPorts(ctx)) };
  });
  app.put('/v2.0/floatingips/:id', async (req) => {
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:write');
    const r = await must(ctx, 'network/FloatingIP', idOf(req), 'Floating IP');
    const b = parse(z.object({ floatingip: z.object({ port_id: z.string().nullable().optional(), fixed_ip_address: z.string().nullable().optional(), description: z.string().optional() }).loose() }), req.body).floatingip;
    const spec: Record<string, unknown> = { ...r.spec };
    const labels: Record<string, string> = { ...r.labels, ...(b.description !== undefined ? { [L.description]: b.description } : {}) };
    if (b.port_id !== undefined) {
      delete spec.port;
      delete spec.server;
      delete labels[L.port];
      if (b.port_id) {
        Object.assign(spec, await fipTarget(ctx, b.port_id));
        labels[L.port] = b.port_id;
      }
    }
    return { floatingip: fipView(await updateSync(r, spec, labels), ctx, await allPorts(ctx)) };
  });
  app.delete('/v2.0/floatingips/:id', async (req, reply) => {
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:write');
    await deleteSync(await must(ctx, 'network/FloatingIP', idOf(req), 'Floating IP'));
    return reply.code(204).send();
  });

  // ------------------------------------------------------------------ extensions and quotas the SDK asks for
  app.get('/v2.0/extensions', async () => ({
    extensions: ['router', 'external-net', 'security-group', 'quotas', 'extra_dhcp_opt', 'binding', 'standard-attr-description', 'standard-attr-revisions', 'standard-attr-timestamp', 'port-security', 'ext-gw-mode', 'network-ip-availability']
      .map((alias) => ({ alias, name: alias, description: alias, updated: '2013-01-01T00:00:00-00:00', links: [] })),
  }));

  const api: NetworkApi = {
    async subnetForServer(ctx, networkId, fixedIp) {
      const net = await backend.find(ctx, 'network/Network', networkId);
      if (!net) throw new OsError(400, `Network ${networkId} could not be found.`);
      const subs = (await backend.list(ctx, 'network/Subnet')).filter((s) => s.labels[L.network] === net.id);
      if (!subs.length) throw new OsError(400, `Network ${networkId} requires a subnet in order to boot instances on.`);
      const pick = fixedIp ? subs.find((s) => {
        const cidr = (s.status.outputs.cidr as string | undefined) ?? (s.spec as { cidr?: string }).cidr;
        if (!cidr || cidr.includes(':') || fixedIp.includes(':')) return false;
        const [base, len] = cidr.split('/');
        const size = 2 ** (32 - Number(len));
        const ip = ipv4ToInt(fixedIp);
        return ip >= ipv4ToInt(base!) && ip < ipv4ToInt(base!) + size;
      }) : subs[0];
      if (!pick) throw new OsError(400, `Fixed IP ${fixedIp} is not in any subnet of network ${networkId}.`);
      return refOf(backend, pick, 'subnet');
    },
    async portRef(ctx, portId) {
      const port = await backend.find(ctx, 'network/Port', portId);
      if (!port) throw new OsError(404, `Port id ${portId} could not be found.`);
      if (port.status.outputs.boundTo) throw new OsError(409, `Port ${portId} is still in use.`);
      return refOf(backend, port, 'port');
    },
    async securityGroupRef(ctx, nameOrId) {
      const sg = nameOrId === 'default' ? await ensureDefault(ctx) : await backend.findByIdOrName(ctx, 'network/SecurityGroup', nameOrId);
      if (!sg) throw new OsError(400, `Security group ${nameOrId} not found for project ${ctx.projectId}.`);
      return refOf(backend, sg, 'security group');
    },
  };
  return api;
}

function requirePermSoft(ctx: OsContext): boolean {
  try {
    requirePerm(ctx, 'resources:write');
    return true;
  } catch {
    return false;
  }
}

export { notFound, conflict };

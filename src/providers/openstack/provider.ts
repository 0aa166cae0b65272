import { KINDS, diffSpecs } from '../../resources/kinds.js';
import type {
  FlavorSpec, FloatingIPSpec, ImageSpec, KeypairSpec, NetworkSpec, PortSpec, RouterSpec, SecurityGroupSpec, ServerSpec, SubnetSpec, VolumeSpec,
} from '../../resources/kinds.js';
import { ProviderError } from '../../resources/errors.js';
import type { CreateResult, DiffResult, KindHandler, Provider, ProviderCallContext, ReadResult } from '../../resources/types.js';
import { OpenStackClient, type OpenStackCredentials } from './client.js';

/**
 * Infraflow driving a real OpenStack (Nova, Neutron, Cinder, Glance through
 * their REST APIs). Creates are idempotent by key: the key is stored on the
 * object (Neutron and Cinder `description`, Nova `metadata`, a Glance
 * property) and looked up before creating again, so an engine retry after a
 * crash adopts the object the first attempt made. Semantics: docs/providers.md.
 */
export const KEY_PREFIX = 'infraflow:';
const NOVA_KEY = 'infraflow-key';
const NOVA_MV = '2.60';

type Ctx = Omit<ProviderCallContext, 'idempotencyKey'> & { idempotencyKey?: string };
type Read = ReadResult;
const absent: Read = { state: 'absent', outputs: {} };

interface Impl<S> {
  create(spec: S, ctx: ProviderCallContext): Promise<CreateResult>;
  read(id: string, ctx: Ctx): Promise<Read>;
  update?(id: string, spec: S, previous: S, ctx: ProviderCallContext): Promise<{ ready: boolean; outputs?: Record<string, unknown> }>;
  delete(id: string, ctx: ProviderCallContext): Promise<{ done: boolean }>;
}

const invalid = (msg: string) => new ProviderError('InvalidSpec', msg);

export interface OpenStackProviderOptions {
  credentials: OpenStackCredentials;
  name?: string;
  attempts?: number;
  baseDelayMs?: number;
  /** Only these kinds (e.g. without storage/Volume on a cloud with no Cinder). Default: all it implements. */
  kinds?: string[];
}

export class OpenStackProvider implements Provider {
  readonly name: string;
  readonly client: OpenStackClient;
  private readonly handlers = new Map<string, KindHandler>();
  private readonly impls: Record<string, Impl<any>>;
  /** Creates in flight by key: two concurrent calls with one key in this process make one object. */
  private readonly inflight = new Map<string, Promise<CreateResult>>();
  private readonly only: string[] | undefined;

  constructor(opts: OpenStackProviderOptions) {
    this.name = opts.name ?? 'openstack';
    this.only = opts.kinds;
    this.client = new OpenStackClient(opts.credentials, { ...(opts.attempts ? { attempts: opts.attempts } : {}), ...(opts.baseDelayMs ? { baseDelayMs: opts.baseDelayMs } : {}) });
    const c = this.client;
    const nova = (method: string, path: string, o: { body?: unknown; signal?: AbortSignal | undefined; accept?: number[] } = {}) => c.request('compute', method, path, { ...o, microversion: NOVA_MV });
    const neutron = (method: string, path: string, o: { body?: unknown; signal?: AbortSignal | undefined; accept?: number[] } = {}) => c.request('network', method, path, o);
    const byKey = async (collection: string, key: string, ctx: Ctx) => {
      const items = await c.list<Record<string, any>>('network', `/${collection}?description=${encodeURIComponent(KEY_PREFIX + key)}`, collection.replace(/-/g, '_'), { signal: ctx.signal });
      return items.find((x) => x.description === KEY_PREFIX + key);
    };
    const neutronDelete = async (collection: string, id: string, ctx: Ctx) => {
      await neutron('DELETE', `/${collection}/${id}`, { signal: ctx.signal, accept: [404] });
      return { done: true };
    };
    const neutronGet = async (collection: string, key: string, id: string, ctx: Ctx) => {
      const r = await neutron('GET', `/${collection}/${id}`, { signal: ctx.signal, accept: [404, 400] });
      return r.status === 200 ? (r.body as Record<string, any>)[key] as Record<string, any> : undefined;
    };
    const stateOf = (status: string | undefined): Read['state'] => (status === 'BUILD' ? 'creating' : status === 'ERROR' ? 'failed' : 'ready');

    const network: Impl<NetworkSpec> = {
      async create(spec, ctx) {
        const found = await byKey('networks', ctx.idempotencyKey, ctx);
        if (found) return { externalId: found.id, ready: found.status !== 'BUILD' };
        const r = await neutron('POST', '/networks', { signal: ctx.signal, body: { network: { name: ctx.resourceName, description: KEY_PREFIX + ctx.idempotencyKey, admin_state_up: spec.adminStateUp, mtu: spec.mtu, 'router:external': spec.external, ...(spec.vlan ? { 'provider:network_type': 'vlan', 'provider:segmentation_id': spec.vlan } : {}) } } });
        return { externalId: r.body.network.id, ready: r.body.network.status !== 'BUILD' };
      },
      async read(id, ctx) {
        const n = await neutronGet('networks', 'network', id, ctx);
        if (!n) return absent;
        return { state: stateOf(n.status), outputs: { id: n.id, name: n.name, status: n.status, mtu: n.mtu, external: n['router:external'], vlan: n['provider:segmentation_id'] ?? null }, observed: { mtu: n.mtu, external: n['router:external'], adminStateUp: n.admin_state_up } };
      },
      async update(id, spec, _prev, ctx) {
        await neutron('PUT', `/networks/${id}`, { signal: ctx.signal, body: { network: { mtu: spec.mtu, admin_state_up: spec.adminStateUp } } });
        return { ready: true };
      },
      delete: (id, ctx) => neutronDelete('networks', id, ctx),
    };

    const subnet: Impl<SubnetSpec> = {
      async create(spec, ctx) {
        if (!spec.cidr) throw invalid('network/Subnet: this provider needs a cidr (subnet pools are not used)');
        const found = await byKey('subnets', ctx.idempotencyKey, ctx);
        if (found) return { externalId: found.id, ready: true };
        const r = await neutron('POST', '/subnets', { signal: ctx.signal, body: { subnet: {
          name: ctx.resourceName, description: KEY_PREFIX + ctx.idempotencyKey, network_id: spec.network, cidr: spec.cidr, ip_version: spec.ipVersion, enable_dhcp: spec.dhcp,
          dns_nameservers: spec.dnsServers, ...(spec.gateway !== undefined ? { gateway_ip: spec.gateway } : {}), ...(spec.allocationPools.length ? { allocation_pools: spec.allocationPools } : {}),
        } } });
        return { externalId: r.body.subnet.id, ready: true };
      },
      async read(id, ctx) {
        const s = await neutronGet('subnets', 'subnet', id, ctx);
        if (!s) return absent;
        return { state: 'ready', outputs: { id: s.id, name: s.name, cidr: s.cidr, network: s.network_id, gateway: s.gateway_ip, ipVersion: s.ip_version, dhcp: s.enable_dhcp, dnsServers: s.dns_nameservers }, observed: { cidr: s.cidr, dhcp: s.enable_dhcp, dnsServers: s.dns_nameservers, gateway: s.gateway_ip } };
      },
      async update(id, spec, _prev, ctx) {
        await neutron('PUT', `/subnets/${id}`, { signal: ctx.signal, body: { subnet: { enable_dhcp: spec.dhcp, dns_nameservers: spec.dnsServers, ...(spec.gateway !== undefined ? { gateway_ip: spec.gateway } : {}) } } });
        return { ready: true };
      },
      delete: (id, ctx) => neutronDelete('subnets', id, ctx),
    };

    const routerInterfaces = async (id: string, ctx: Ctx): Promise<{ subnet: string; ip: string }[]> => {
      const ports = await c.list<Record<string, any>>('network', `/ports?device_id=${id}&device_owner=network:router_interface`, 'ports', { signal: ctx.signal });
      return ports.flatMap((p) => (p.fixed_ips as { subnet_id: string; ip_address: string }[]).map((f) => ({ subnet: f.subnet_id, ip: f.ip_address })));
    };
    const syncRouter = async (id: string, spec: RouterSpec, ctx: Ctx) => {
      const have = new Set((await routerInterfaces(id, ctx)).map((x) => x.subnet));
      for (const s of spec.interfaces) if (!have.has(s)) await neutron('PUT', `/routers/${id}/add_router_interface`, { signal: ctx.signal, body: { subnet_id: s } });
      for (const s of have) if (!spec.interfaces.includes(s)) await neutron('PUT', `/routers/${id}/remove_router_interface`, { signal: ctx.signal, body: { subnet_id: s }, accept: [404] });
    };
    const router: Impl<RouterSpec> = {
      async create(spec, ctx) {
        let id = (await byKey('routers', ctx.idempotencyKey, ctx))?.id as string | undefined;
        if (!id) {
          const r = await neutron('POST', '/routers', { signal: ctx.signal, body: { router: { name: ctx.resourceName, description: KEY_PREFIX + ctx.idempotencyKey, ...(spec.externalGateway ? { external_gateway_info: { network_id: spec.externalGateway } } : {}) } } });
          id = r.body.router.id as string;
        }
        await syncRouter(id, spec, ctx);
        if (spec.routes.length) await neutron('PUT', `/routers/${id}`, { signal: ctx.signal, body: { router: { routes: spec.routes } } });
        return { externalId: id, ready: true };
      },
      async read(id, ctx) {
        const r = await neutronGet('routers', 'router', id, ctx);
        if (!r) return absent;
        const ifaces = await routerInterfaces(id, ctx);
        const gw = r.external_gateway_info as { network_id: string; external_fixed_ips?: { ip_address: string }[] } | null;
        return {
          state: stateOf(r.status), outputs: { id: r.id, name: r.name, externalIp: gw?.external_fixed_ips?.[0]?.ip_address ?? null, interfaces: ifaces, status: r.status },
          observed: { externalGateway: gw?.network_id, interfaces: ifaces.map((x) => x.subnet), routes: r.routes ?? [] },
        };
      },
      async update(id, spec, prev, ctx) {
        if (spec.externalGateway !== prev.externalGateway || spec.routes !== prev.routes) {
          await neutron('PUT', `/routers/${id}`, { signal: ctx.signal, body: { router: { external_gateway_info: spec.externalGateway ? { network_id: spec.externalGateway } : null, routes: spec.routes } } });
        }
        await syncRouter(id, spec, ctx);
        return { ready: true };
      },
      async delete(id, ctx) {
        if (!(await neutronGet('routers', 'router', id, ctx))) return { done: true };
        await syncRouter(id, { interfaces: [], routes: [] }, ctx);
        return neutronDelete('routers', id, ctx);
      },
    };

    type SgRule = SecurityGroupSpec['rules'][number];
    const ruleKey = (r: { direction: string; protocol: string | null; port_range_min: number | null; port_range_max: number | null; remote_ip_prefix: string | null; ethertype: string }) =>
      [r.direction, r.protocol ?? 'any', r.port_range_min ?? '', r.port_range_max ?? '', r.remote_ip_prefix ?? (r.ethertype === 'IPv6' ? '::/0' : '0.0.0.0/0'), r.ethertype].join('|');
    const toNeutron = (r: SgRule) => ({
      direction: r.direction, ethertype: r.ethertype, protocol: r.protocol === 'any' ? null : r.protocol,
      port_range_min: r.portMin ?? null, port_range_max: r.portMax ?? (r.portMin ?? null), remote_ip_prefix: r.remoteCidr ?? null, ...(r.description ? { description: r.description } : {}),
    });
    const syncRules = async (id: string, spec: SecurityGroupSpec, ctx: Ctx) => {
      const sg = await neutronGet('security-groups', 'security_group', id, ctx);
      if (!sg) throw new ProviderError('NotFound', `security group ${id} does not exist`);
      const have = (sg.security_group_rules as Record<string, any>[]).filter((r) => !r.remote_group_id);
      const want = spec.rules.map(toNeutron);
      const wantKeys = new Set(want.map((r) => ruleKey(r)));
      const haveKeys = new Set(have.map((r) => ruleKey(r as never)));
      for (const r of have) if (!wantKeys.has(ruleKey(r as never))) await neutron('DELETE', `/security-group-rules/${r.id}`, { signal: ctx.signal, accept: [404] });
      for (const r of want) if (!haveKeys.has(ruleKey(r))) await neutron('POST', '/security-group-rules', { signal: ctx.signal, body: { security_group_rule: { ...r, security_group_id: id } }, accept: [409] });
    };
    const securityGroup: Impl<SecurityGroupSpec> = {
      async create(spec, ctx) {
        let id = (await byKey('security-groups', ctx.idempotencyKey, ctx))?.id as string | undefined;
        if (!id) id = (await neutron('POST', '/security-groups', { signal: ctx.signal, body: { security_group: { name: ctx.resourceName, description: KEY_PREFIX + ctx.idempotencyKey } } })).body.security_group.id as string;
        await syncRules(id, spec, ctx);
        return { externalId: id, ready: true };
      },
      async read(id, ctx) {
        const sg = await neutronGet('security-groups', 'security_group', id, ctx);
        if (!sg) return absent;
        const rules = (sg.security_group_rules as Record<string, any>[]).filter((r) => !r.remote_group_id).map((r) => ({
          direction: r.direction, protocol: r.protocol ?? 'any', ...(r.port_range_min !== null ? { portMin: r.port_range_min } : {}), ...(r.port_range_max !== null ? { portMax: r.port_range_max } : {}),
          // no remote prefix is "from anywhere", as a rule without remoteCidr says
          ...(r.remote_ip_prefix ? { remoteCidr: r.remote_ip_prefix } : {}), ethertype: r.ethertype, ...(r.description ? { description: r.description } : {}),
        }));
        return { state: 'ready', outputs: { id: sg.id, name: sg.name, rules: rules.length }, observed: { rules } };
      },
      async update(id, spec, _prev, ctx) {
        await syncRules(id, spec, ctx);
        return { ready: true };
      },
      delete: (id, ctx) => neutronDelete('security-groups', id, ctx),
    };

    const port: Impl<PortSpec> = {
      async create(spec, ctx) {
        const found = await byKey('ports', ctx.idempotencyKey, ctx);
        if (found) return { externalId: found.id, ready: true };
        const fixed = spec.subnet || spec.fixedIp ? [{ ...(spec.subnet ? { subnet_id: spec.subnet } : {}), ...(spec.fixedIp ? { ip_address: spec.fixedIp } : {}) }] : undefined;
        const r = await neutron('POST', '/ports', { signal: ctx.signal, body: { port: { name: ctx.resourceName, description: KEY_PREFIX + ctx.idempotencyKey, network_id: spec.network, ...(fixed ? { fixed_ips: fixed } : {}), security_groups: spec.securityGroups, ...(spec.macAddress ? { mac_address: spec.macAddress } : {}) } } });
        return { externalId: r.body.port.id, ready: true };
      },
      async read(id, ctx) {
        const p = await neutronGet('ports', 'port', id, ctx);
        if (!p) return absent;
        const f = (p.fixed_ips as { subnet_id: string; ip_address: string }[])[0];
        return { state: 'ready', outputs: { id: p.id, name: p.name, network: p.network_id, subnet: f?.subnet_id ?? null, ip: f?.ip_address ?? null, mac: p.mac_address, boundTo: p.device_id || null, status: p.status }, observed: { securityGroups: p.security_groups } };
      },
      async update(id, spec, _prev, ctx) {
        await neutron('PUT', `/ports/${id}`, { signal: ctx.signal, body: { port: { security_groups: spec.securityGroups } } });
        return { ready: true };
      },
      delete: (id, ctx) => neutronDelete('ports', id, ctx),
    };

    const fipPort = async (spec: FloatingIPSpec, ctx: Ctx): Promise<string | null> => {
      if (spec.port) return spec.port;
      if (!spec.server) return null;
      const ports = await c.list<Record<string, any>>('network', `/ports?device_id=${spec.server}`, 'ports', { signal: ctx.signal });
      if (!ports[0]) throw new ProviderError('Conflict', `server ${spec.server} has no port yet`, { retryable: true });
      return ports[0].id as string;
    };
    const floatingIp: Impl<FloatingIPSpec> = {
      async create(spec, ctx) {
        const found = await byKey('floatingips', ctx.idempotencyKey, ctx);
        if (found) return { externalId: found.id, ready: true };
        const nets = await c.list<Record<string, any>>('network', `/networks?router:external=true&name=${encodeURIComponent(spec.pool)}`, 'networks', { signal: ctx.signal });
        const net = nets.find((n) => n.name === spec.pool);
        if (!net) throw invalid(`network/FloatingIP: no external network named ${spec.pool}`);
        const portId = await fipPort(spec, ctx);
        const r = await neutron('POST', '/floatingips', { signal: ctx.signal, body: { floatingip: { floating_network_id: net.id, description: KEY_PREFIX + ctx.idempotencyKey, ...(portId ? { port_id: portId } : {}) } } });
        return { externalId: r.body.floatingip.id, ready: true };
      },
      async read(id, ctx) {
        const f = await neutronGet('floatingips', 'floatingip', id, ctx);
        if (!f) return absent;
        return { state: 'ready', outputs: { id: f.id, address: f.floating_ip_address, port: f.port_id, fixedIp: f.fixed_ip_address, status: f.status }, observed: { port: f.port_id ?? undefined } };
      },
      async update(id, spec, _prev, ctx) {
        await neutron('PUT', `/floatingips/${id}`, { signal: ctx.signal, body: { floatingip: { port_id: await fipPort(spec, ctx) } } });
        return { ready: true };
      },
      delete: (id, ctx) => neutronDelete('floatingips', id, ctx),
    };

    const keypair: Impl<KeypairSpec> = {
      async create(spec, ctx) {
        const existing = await nova('GET', `/os-keypairs/${encodeURIComponent(spec.name)}`, { signal: ctx.signal, accept: [404] });
        if (existing.status === 200) {
          if ((existing.body.keypair.public_key as string).trim() !== spec.publicKey.trim()) throw new ProviderError('Conflict', `a keypair named ${spec.name} with another public key exists`, { retryable: false });
          return { externalId: spec.name, ready: true };
        }
        await nova('POST', '/os-keypairs', { signal: ctx.signal, body: { keypair: { name: spec.name, public_key: spec.publicKey } } });
        return { externalId: spec.name, ready: true };
      },
      async read(id, ctx) {
        const r = await nova('GET', `/os-keypairs/${encodeURIComponent(id)}`, { signal: ctx.signal, accept: [404] });
        if (r.status !== 200) return absent;
        return { state: 'ready', outputs: { id, name: id, fingerprint: r.body.keypair.fingerprint }, observed: { name: id, publicKey: r.body.keypair.public_key } };
      },
      async delete(id, ctx) {
        await nova('DELETE', `/os-keypairs/${encodeURIComponent(id)}`, { signal: ctx.signal, accept: [404] });
        return { done: true };
      },
    };

    const flavor: Impl<FlavorSpec> = {
      async create(spec, ctx) {
        const all = await c.list<Record<string, any>>('compute', '/flavors/detail?is_public=None', 'flavors', { signal: ctx.signal, microversion: NOVA_MV });
        const same = all.find((f) => f.name === spec.name);
        if (same) {
          if (same.vcpus !== spec.vcpus || same.ram !== spec.ramMb || same.disk !== spec.diskGb) throw new ProviderError('Conflict', `a flavor named ${spec.name} with another size exists`, { retryable: false });
          return { externalId: same.id, ready: true };
        }
        const r = await nova('POST', '/flavors', { signal: ctx.signal, body: { flavor: { name: spec.name, vcpus: spec.vcpus, ram: spec.ramMb, disk: spec.diskGb, 'os-flavor-access:is_public': spec.public } } });
        if (Object.keys(spec.extraSpecs).length) await nova('POST', `/flavors/${r.body.flavor.id}/os-extra_specs`, { signal: ctx.signal, body: { extra_specs: spec.extraSpecs } });
        return { externalId: r.body.flavor.id, ready: true };
      },
      async read(id, ctx) {
        const r = await nova('GET', `/flavors/${encodeURIComponent(id)}`, { signal: ctx.signal, accept: [404] });
        if (r.status !== 200) return absent;
        const f = r.body.flavor;
        const extra = (await nova('GET', `/flavors/${encodeURIComponent(id)}/os-extra_specs`, { signal: ctx.signal, accept: [404] })).body?.extra_specs ?? {};
        return { state: 'ready', outputs: { id: f.id, name: f.name, vcpus: f.vcpus, ramMb: f.ram, diskGb: f.disk, extraSpecs: extra }, observed: { name: f.name, vcpus: f.vcpus, ramMb: f.ram, diskGb: f.disk, extraSpecs: extra } };
      },
      async update(id, spec, _prev, ctx) {
        await nova('POST', `/flavors/${id}/os-extra_specs`, { signal: ctx.signal, body: { extra_specs: spec.extraSpecs } });
        return { ready: true };
      },
      async delete(id, ctx) {
        await nova('DELETE', `/flavors/${encodeURIComponent(id)}`, { signal: ctx.signal, accept: [404] });
        return { done: true };
      },
    };

    const glance = (method: string, path: string, o: { body?: unknown; signal?: AbortSignal | undefined; accept?: number[]; headers?: Record<string, string>; raw?: RequestInit['body'] } = {}) => c.request('image', method, path, o);
    const image: Impl<ImageSpec> = {
      async create(spec, ctx) {
        const found = (await c.list<Record<string, any>>('image', `/images?infraflow_key=${encodeURIComponent(ctx.idempotencyKey)}`, 'images', { signal: ctx.signal })).find((i) => i.infraflow_key === ctx.idempotencyKey);
        let id = found?.id as string | undefined;
        if (!id) {
          const r = await glance('POST', '/images', { signal: ctx.signal, body: { name: spec.name, disk_format: spec.diskFormat, container_format: 'bare', min_disk: spec.minDiskGb, min_ram: spec.minRamMb, visibility: spec.visibility, infraflow_key: ctx.idempotencyKey, ...spec.properties } });
          id = r.body.id as string;
        }
        if (spec.sourceUrl && (!found || found.status === 'queued')) {
          const src = await fetch(spec.sourceUrl, { signal: ctx.signal ?? null }).catch((e: unknown) => {
            throw new ProviderError('BackendUnavailable', `cannot fetch ${spec.sourceUrl}: ${e instanceof Error ? e.message : String(e)}`);
          });
          if (!src.ok || !src.body) throw invalid(`compute/Image: ${spec.sourceUrl} answered ${src.status}`);
          await glance('PUT', `/images/${id}/file`, { signal: ctx.signal, headers: { 'content-type': 'application/octet-stream' }, raw: src.body as unknown as RequestInit['body'] });
        }
        return { externalId: id, ready: false };
      },
      async read(id, ctx) {
        const r = await glance('GET', `/images/${id}`, { signal: ctx.signal, accept: [404] });
        if (r.status !== 200) return absent;
        const i = r.body;
        const state: Read['state'] = i.status === 'active' ? 'ready' : i.status === 'killed' ? 'failed' : i.status === 'deleted' || i.status === 'pending_delete' ? 'absent' : i.status === 'queued' && !i.file_uploaded ? 'ready' : 'creating';
        const props = Object.fromEntries(Object.entries(i).filter(([k, v]) => typeof v === 'string' && !['id', 'name', 'status', 'visibility', 'checksum', 'os_hash_algo', 'os_hash_value', 'disk_format', 'container_format', 'owner', 'created_at', 'updated_at', 'self', 'file', 'schema', 'infraflow_key'].includes(k)));
        return { state, outputs: { id: i.id, name: i.name, status: i.status, minDiskGb: i.min_disk, minRamMb: i.min_ram, diskFormat: i.disk_format, properties: props }, observed: { minDiskGb: i.min_disk, minRamMb: i.min_ram, properties: props, visibility: i.visibility } };
      },
      async update(id, spec, prev, ctx) {
        const ops: { op: string; path: string; value?: unknown }[] = [
          { op: 'replace', path: '/name', value: spec.name }, { op: 'replace', path: '/min_disk', value: spec.minDiskGb }, { op: 'replace', path: '/min_ram', value: spec.minRamMb },
          ...Object.entries(spec.properties).map(([k, v]) => ({ op: prev.properties[k] === undefined ? 'add' : 'replace', path: `/${k}`, value: v })),
          ...Object.keys(prev.properties).filter((k) => spec.properties[k] === undefined).map((k) => ({ op: 'remove', path: `/${k}` })),
        ];
        await glance('PATCH', `/images/${id}`, { signal: ctx.signal, body: ops, headers: { 'content-type': 'application/openstack-images-v2.1-json-patch' } });
        return { ready: true };
      },
      async delete(id, ctx) {
        await glance('DELETE', `/images/${id}`, { signal: ctx.signal, accept: [404] });
        return { done: true };
      },
    };

    const cinder = (method: string, path: string, o: { body?: unknown; signal?: AbortSignal | undefined; accept?: number[] } = {}) => c.request('volume', method, path, { ...o, microversion: '3.0' });
    const volume: Impl<VolumeSpec> = {
      async create(spec, ctx) {
        const found = (await c.list<Record<string, any>>('volume', `/volumes/detail?name=${encodeURIComponent(ctx.resourceName)}`, 'volumes', { signal: ctx.signal, microversion: '3.0' })).find((v) => v.description === KEY_PREFIX + ctx.idempotencyKey);
        if (found) return { externalId: found.id, ready: false };
        const r = await cinder('POST', '/volumes', { signal: ctx.signal, body: { volume: { size: spec.sizeGb, name: ctx.resourceName, description: KEY_PREFIX + ctx.idempotencyKey, ...(spec.type !== 'standard' ? { volume_type: spec.type } : {}), ...(spec.image ? { imageRef: spec.image } : {}) } } });
        return { externalId: r.body.volume.id, ready: false };
      },
      async read(id, ctx) {
        const r = await cinder('GET', `/volumes/${id}`, { signal: ctx.signal, accept: [404] });
        if (r.status !== 200) return absent;
        const v = r.body.volume;
        const st = v.status as string;
        const state: Read['state'] = st === 'creating' || st === 'downloading' ? 'creating' : st === 'available' || st === 'in-use' ? 'ready' : st.startsWith('error') ? 'failed' : st === 'deleting' ? 'deleting' : 'updating';
        const attachedTo = (v.attachments as { server_id: string }[])[0]?.server_id ?? null;
        return { state, outputs: { id: v.id, sizeGb: v.size, status: st, attachedTo, bootable: v.bootable === 'true' }, observed: { sizeGb: v.size, attachTo: attachedTo ?? undefined }, ...(state === 'failed' ? { failureReason: 'Internal', message: `volume ${v.id} is ${st}` } : {}) };
      },
      async update(id, spec, prev, ctx) {
        // idempotent: compare with what the volume is now, not with the previous spec
        const cur = (await cinder('GET', `/volumes/${id}`, { signal: ctx.signal })).body.volume;
        const st = cur.status as string;
        if (!['available', 'in-use'].includes(st)) throw new ProviderError('Conflict', `volume ${id} is ${st}; retry when it is available or in-use`, { retryable: true });
        if (spec.sizeGb > (cur.size as number)) await cinder('POST', `/volumes/${id}/action`, { signal: ctx.signal, body: { 'os-extend': { new_size: spec.sizeGb } } });
        const attached = (cur.attachments as { server_id: string }[])[0]?.server_id;
        if ((spec.attachTo ?? undefined) !== attached) {
          if (attached) await nova('DELETE', `/servers/${attached}/os-volume_attachments/${id}`, { signal: ctx.signal, accept: [404] });
          if (spec.attachTo) await nova('POST', `/servers/${spec.attachTo}/os-volume_attachments`, { signal: ctx.signal, body: { volumeAttachment: { volumeId: id } } });
        }
        void prev;
        return { ready: false };
      },
      async delete(id, ctx) {
        const r = await cinder('GET', `/volumes/${id}`, { signal: ctx.signal, accept: [404] });
        if (r.status !== 200) return { done: true };
        if ((r.body.volume.status as string) === 'deleting') return { done: false };
        await cinder('DELETE', `/volumes/${id}`, { signal: ctx.signal, accept: [404] });
        return { done: false };
      },
    };

    const resolveFlavor = async (ref: string, ctx: Ctx) => {
      const r = await nova('GET', `/flavors/${encodeURIComponent(ref)}`, { signal: ctx.signal, accept: [404] });
      if (r.status === 200) return r.body.flavor.id as string;
      const all = await c.list<Record<string, any>>('compute', '/flavors/detail?is_public=None', 'flavors', { signal: ctx.signal, microversion: NOVA_MV });
      const f = all.find((x) => x.name === ref);
      if (!f) throw invalid(`compute/Server: flavor ${ref} does not exist; flavors: ${all.map((x) => x.name).join(', ')}`);
      return f.id as string;
    };
    const resolveImage = async (ref: string, ctx: Ctx) => {
      const r = await glance('GET', `/images/${encodeURIComponent(ref)}`, { signal: ctx.signal, accept: [404, 400] });
      if (r.status === 200) return r.body.id as string;
      const hits = await c.list<Record<string, any>>('image', `/images?name=${encodeURIComponent(ref)}`, 'images', { signal: ctx.signal });
      if (!hits[0]) throw invalid(`compute/Server: image ${ref} does not exist`);
      return hits[0].id as string;
    };
    const server: Impl<ServerSpec> = {
      async create(spec, ctx) {
        const list = await c.list<Record<string, any>>('compute', `/servers/detail?name=${encodeURIComponent(`^${ctx.resourceName.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`)}`, 'servers', { signal: ctx.signal, microversion: NOVA_MV });
        const found = list.find((s) => s.metadata?.[NOVA_KEY] === ctx.idempotencyKey);
        if (found) return { externalId: found.id, ready: found.status === 'ACTIVE' };
        const networks = [];
        for (const n of spec.networks) {
          if (n.port) networks.push({ port: n.port });
          else {
            const sub = await neutron('GET', `/subnets/${n.subnet}`, { signal: ctx.signal, accept: [404] });
            if (sub.status !== 200) throw invalid(`compute/Server: subnet ${n.subnet} does not exist`);
            networks.push({ uuid: sub.body.subnet.network_id, ...(n.fixedIp ? { fixed_ip: n.fixedIp } : {}) });
          }
        }
        const image = spec.image ? await resolveImage(spec.image, ctx) : undefined;
        const bdm = spec.bootVolume ? [spec.bootVolume.volume
          ? { boot_index: 0, uuid: spec.bootVolume.volume, source_type: 'volume', destination_type: 'volume', delete_on_termination: spec.bootVolume.deleteOnTermination }
          : { boot_index: 0, uuid: image, source_type: 'image', destination_type: 'volume', volume_size: spec.bootVolume.sizeGb, delete_on_termination: spec.bootVolume.deleteOnTermination }] : undefined;
        const body = {
          server: {
            name: ctx.resourceName, flavorRef: await resolveFlavor(spec.flavor, ctx), ...(image && !bdm ? { imageRef: image } : {}), ...(bdm ? { block_device_mapping_v2: bdm } : {}),
            networks, ...(spec.securityGroups.length ? { security_groups: spec.securityGroups.map((name) => ({ name })) } : {}), ...(spec.keypair ? { key_name: spec.keypair } : {}),
            ...(spec.userData ? { user_data: Buffer.from(spec.userData).toString('base64') } : {}), metadata: { ...spec.metadata, [NOVA_KEY]: ctx.idempotencyKey },
            ...(spec.availabilityZone ? { availability_zone: spec.availabilityZone } : {}),
          },
        };
        const r = await nova('POST', '/servers', { signal: ctx.signal, body });
        return { externalId: r.body.server.id, ready: false };
      },
      async read(id, ctx) {
        const r = await nova('GET', `/servers/${id}`, { signal: ctx.signal, accept: [404] });
        if (r.status !== 200) return absent;
        const s = r.body.server;
        const task = s['OS-EXT-STS:task_state'] as string | null;
        const addresses = Object.entries((s.addresses ?? {}) as Record<string, { addr: string; 'OS-EXT-IPS:type'?: string; 'OS-EXT-IPS-MAC:mac_addr'?: string }[]>)
          .flatMap(([net, xs]) => xs.filter((x) => x['OS-EXT-IPS:type'] !== 'floating').map((x) => ({ network: net, ip: x.addr, mac: x['OS-EXT-IPS-MAC:mac_addr'] ?? null })));
        const status = s.status as string;
        const state: Read['state'] = status === 'DELETED' ? 'absent' : task === 'deleting' ? 'deleting' : status === 'ERROR' ? 'failed' : status === 'BUILD' ? 'creating' : task ? 'updating' : status === 'ACTIVE' || status === 'SHUTOFF' ? 'ready' : 'updating';
        const metadata = { ...(s.metadata as Record<string, string>) };
        delete metadata[NOVA_KEY];
        const fault = s.fault as { message?: string } | undefined;
        return {
          state,
          outputs: { id: s.id, name: s.name, status, powerState: status === 'SHUTOFF' ? 'SHUTDOWN' : 'RUNNING', addresses, ip: addresses[0]?.ip ?? null, accessIPv4: addresses.find((a) => !a.ip.includes(':'))?.ip ?? null },
          observed: { power: status === 'SHUTOFF' ? 'off' : 'on', metadata },
          conditions: state === 'creating' ? [{ type: 'Provisioned', status: 'False', reason: task ? task.replace(/(^|_)([a-z])/g, (_m, _a, ch: string) => ch.toUpperCase()) : 'Building', message: `nova: ${status}${task ? ` (${task})` : ''}` }] : [],
          ...(state === 'failed' ? { failureReason: /no valid host/i.test(fault?.message ?? '') ? 'NoValidHost' : 'Internal', message: fault?.message ?? 'the server is in ERROR' } : {}),
        };
      },
      async update(id, spec, prev, ctx) {
        if (spec.flavor !== prev.flavor) throw invalid('compute/Server: resizing (a flavor change) is not supported by the OpenStack provider yet; replace the server');
        if (JSON.stringify(spec.securityGroups) !== JSON.stringify(prev.securityGroups)) throw invalid('compute/Server: changing security groups in place is not supported by the OpenStack provider yet; change the port or replace the server');
        if (JSON.stringify(spec.metadata) !== JSON.stringify(prev.metadata)) {
          const cur = await nova('GET', `/servers/${id}/metadata`, { signal: ctx.signal });
          await nova('PUT', `/servers/${id}/metadata`, { signal: ctx.signal, body: { metadata: { ...spec.metadata, ...(cur.body.metadata?.[NOVA_KEY] ? { [NOVA_KEY]: cur.body.metadata[NOVA_KEY] } : {}) } } });
        }
        const now = (await nova('GET', `/servers/${id}`, { signal: ctx.signal })).body.server.status as string;
        if (spec.power === 'off' && now === 'ACTIVE') await nova('POST', `/servers/${id}/action`, { signal: ctx.signal, body: { 'os-stop': null } });
        if (spec.power === 'on' && now === 'SHUTOFF') await nova('POST', `/servers/${id}/action`, { signal: ctx.signal, body: { 'os-start': null } });
        return { ready: false };
      },
      async delete(id, ctx) {
        const r = await nova('DELETE', `/servers/${id}`, { signal: ctx.signal, accept: [404] });
        return { done: r.status === 404 };
      },
    };

    this.impls = {
      'network/Network': network, 'network/Subnet': subnet, 'network/Router': router, 'network/SecurityGroup': securityGroup, 'network/Port': port, 'network/FloatingIP': floatingIp,
      'compute/Keypair': keypair, 'compute/Flavor': flavor, 'compute/Image': image, 'compute/Server': server, 'storage/Volume': volume,
    };
  }

  kinds(): string[] {
    return Object.keys(this.impls).filter((k) => !this.only || this.only.includes(k));
  }

  handler(kind: string): KindHandler {
    const cached = this.handlers.get(kind);
    if (cached) return cached;
    const info = KINDS[kind];
    const impl = this.impls[kind];
    if (!info || !impl || !this.kinds().includes(kind)) throw new Error(`the OpenStack provider does not implement ${kind}`);
    const h: KindHandler = {
      kind, schema: info.schema, replaceOnChange: info.replaceOnChange,
      ...(info.validate ? { validate: (spec: unknown) => info.validate!(spec) } : {}),
      create: (input, ctx) => {
        // check before any backend call: a spec the kind refuses never reaches OpenStack
        const parsed = info.schema.safeParse(input);
        if (!parsed.success) {
          const issue = parsed.error.issues[0]!;
          return Promise.reject(new ProviderError('InvalidSpec', `${kind} spec.${issue.path.join('.') || '(root)'}: ${issue.message}`));
        }
        try {
          info.validate?.(parsed.data);
        } catch (e) {
          return Promise.reject(new ProviderError('InvalidSpec', e instanceof Error ? e.message : String(e), { cause: e }));
        }
        const spec = parsed.data as unknown;
        const key = `${kind}/${ctx.idempotencyKey}`;
        const running = this.inflight.get(key);
        if (running) return running;
        const p = impl.create(spec, ctx).finally(() => this.inflight.delete(key));
        this.inflight.set(key, p);
        return p;
      },
      read: (id, ctx) => impl.read(id, ctx),
      ...(impl.update ? { update: (id: string, spec: unknown, prev: unknown, ctx: ProviderCallContext) => impl.update!(id, spec, prev, ctx) } : {}),
      delete: (id, ctx) => impl.delete(id, ctx),
      diff: (previous, next): DiffResult => {
        const d = diffSpecs(previous, next, info.replaceOnChange);
        if (kind === 'storage/Volume' && Number(next.sizeGb) < Number(previous.sizeGb) && !d.replaceFields.includes('sizeGb')) d.replaceFields.push('sizeGb');
        return d;
      },
    };
    this.handlers.set(kind, h);
    return h;
  }
}

import { z } from 'zod';
import { ValidationError } from '../core/errors.js';
import { zodError } from '../core/input.js';
import { cidrSchema, hostProblem, ipAddressSchema, portSchema } from '../ipam/addr.js';

/**
 * Kind schemas: the source of truth for every resource spec. One schema gives
 * validation (with messages that name the field), TypeScript types
 * (`z.infer`) and JSON Schema / OpenAPI (`z.toJSONSchema`).
 *
 * References between resources are plain strings holding the other
 * resource's provider id (its `outputs.id`); the stacks layer resolves
 * `${ref.<name>.outputs.id}` before a spec reaches a provider.
 */

const name = z.string().min(1).max(255);
const labels = z.record(z.string(), z.string());
const ref = z.string().min(1).describe('provider id of another resource (its outputs.id)');

/** Kubernetes-style quantities: CPU as millicores ("500m", "2", 0.5) and memory ("512Mi", "4Gi", bytes). */
export const CpuQuantity = z.union([z.number().positive(), z.string().regex(/^\d+(\.\d+)?m?$/, 'CPU is a number of cores ("2", "0.5") or millicores ("500m")')]);
export const MemoryQuantity = z.union([z.number().positive(), z.string().regex(/^\d+(\.\d+)?(Ki|Mi|Gi|Ti|K|M|G|T)?$/, 'memory is bytes or a quantity like "512Mi" or "4Gi"')]);

export function cpuMillis(q: z.infer<typeof CpuQuantity>): number {
  if (typeof q === 'number') return Math.round(q * 1000);
  return q.endsWith('m') ? Math.round(Number(q.slice(0, -1))) : Math.round(Number(q) * 1000);
}

const MEM_UNITS: Record<string, number> = { '': 1, K: 1e3, M: 1e6, G: 1e9, T: 1e12, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, Ti: 1024 ** 4 };
export function memoryMiB(q: z.infer<typeof MemoryQuantity>): number {
  if (typeof q === 'number') return Math.ceil(q / 1024 ** 2);
  const m = /^(\d+(?:\.\d+)?)([A-Za-z]*)$/.exec(q)!;
  return Math.ceil((Number(m[1]) * (MEM_UNITS[m[2]!] ?? 1)) / 1024 ** 2);
}

// ---- compute ---------------------------------------------------------------

export const FlavorSpec = z.strictObject({
  name,
  vcpus: z.number().int().positive(),
  ramMb: z.number().int().positive(),
  diskGb: z.number().int().min(0).default(0),
  /** Scheduler hints: `hw:cpu_policy`, `trait:…`. */
  extraSpecs: z.record(z.string(), z.string()).default({}),
  public: z.boolean().default(true),
});

export const ImageSpec = z.strictObject({
  name,
  /** Where the backend fetches the image from. */
  sourceUrl: z.string().optional(),
  diskFormat: z.enum(['qcow2', 'raw', 'iso', 'vmdk']).default('qcow2'),
  minDiskGb: z.number().int().min(0).default(0),
  minRamMb: z.number().int().min(0).default(0),
  /** Glance-style properties: os_distro, os_version, architecture, hw_disk_bus… */
  properties: z.record(z.string(), z.string()).default({}),
  visibility: z.enum(['public', 'private', 'shared']).default('private'),
});

export const KeypairSpec = z.strictObject({
  name,
  publicKey: z.string().regex(/^(ssh-(rsa|ed25519)|ecdsa-sha2-nistp\d+) [A-Za-z0-9+/=]+( .*)?$/, 'publicKey must be an OpenSSH public key ("ssh-ed25519 AAAA… comment")'),
});

export const ServerNetwork = z.strictObject({
  /** Subnet id; the server gets an address from its DHCP unless `fixedIp` is given. */
  subnet: ref.optional(),
  /** Pre-created port id (instead of `subnet`). */
  port: ref.optional(),
  fixedIp: ipAddressSchema().optional(),
});

export const ServerSpec = z.strictObject({
  /** Flavor name (e.g. `SCS-2V-4-20s`) or id. */
  flavor: z.string().min(1),
  /** Image name or id; may be omitted when booting from an existing volume. */
  image: z.string().min(1).optional(),
  bootVolume: z.strictObject({
    /** Boot from this existing volume id… */
    volume: ref.optional(),
    /** …or create one of this size from `image`. */
    sizeGb: z.number().int().positive().optional(),
    type: z.string().default('standard'),
    deleteOnTermination: z.boolean().default(true),
  }).optional(),
  networks: z.array(ServerNetwork).min(1, 'a server needs at least one network (a subnet or port id)'),
  securityGroups: z.array(ref).default([]),
  keypair: z.string().optional(),
  userData: z.string().max(65_535).optional(),
  availabilityZone: z.string().optional(),
  metadata: z.record(z.string(), z.string()).default({}),
  /** Desired power state; `off` stops the server in place. */
  power: z.enum(['on', 'off']).default('on'),
});

// ---- storage ---------------------------------------------------------------

export const VolumeSpec = z.strictObject({
  sizeGb: z.number().int().positive(),
  type: z.string().default('standard'),
  /** Create from an image (boot volume). */
  image: z.string().optional(),
  /** Attach to this server id; change it (or unset) to attach/detach in place. */
  attachTo: ref.optional(),
  bootable: z.boolean().default(false),
});

// ---- network ---------------------------------------------------------------

export const NetworkSpec = z.strictObject({
  /** VLAN id; omit to take one from the VLAN pool. */
  vlan: z.number().int().min(1).max(4094).optional(),
  /** Pool to take the VLAN from (IPAM VLAN pool name). */
  vlanPool: z.string().optional(),
  mtu: z.number().int().min(576).max(9216).default(1500),
  external: z.boolean().default(false),
  adminStateUp: z.boolean().default(true),
});

export const SubnetSpec = z.strictObject({
  network: ref,
  /** CIDR; omit to take a free prefix of `prefixLength` from IPAM (`pool`). */
  cidr: cidrSchema().optional(),
  pool: z.string().optional(),
  prefixLength: z.number().int().min(8).max(128).optional(),
  ipVersion: z.union([z.literal(4), z.literal(6)]).default(4),
  /** Gateway address; default the first host address; `null` for none. */
  gateway: ipAddressSchema().nullable().optional(),
  dhcp: z.boolean().default(true),
  dnsServers: z.array(ipAddressSchema()).default([]),
  allocationPools: z.array(z.strictObject({ start: ipAddressSchema(), end: ipAddressSchema() })).default([]),
}).superRefine((s, ctx) => {
  if (typeof s.cidr !== 'string') return;
  const at = (path: (string | number)[], address: unknown) => {
    if (typeof address !== 'string') return;
    const problem = hostProblem(s.cidr!, address);
    if (problem) ctx.addIssue({ code: 'custom', path, message: problem });
  };
  at(['gateway'], s.gateway);
  s.allocationPools.forEach((p, i) => {
    at(['allocationPools', i, 'start'], p.start);
    at(['allocationPools', i, 'end'], p.end);
  });
});

export const RouterSpec = z.strictObject({
  /** External network id for SNAT / floating IPs. */
  externalGateway: ref.optional(),
  /** Subnet ids attached as interfaces. */
  interfaces: z.array(ref).default([]),
  routes: z.array(z.strictObject({ destination: cidrSchema(), nexthop: ipAddressSchema() })).default([]),
});

export const SecurityGroupRule = z.strictObject({
  direction: z.enum(['ingress', 'egress']).default('ingress'),
  protocol: z.enum(['tcp', 'udp', 'icmp', 'any']).default('tcp'),
  portMin: portSchema(true).optional(),
  portMax: portSchema(true).optional(),
  /** Where traffic may come from (ingress) or go to (egress); with neither this nor remoteGroup, anywhere. */
  remoteCidr: cidrSchema().optional(),
  /** Members of this security group (its provider id): "5432 from the web group". */
  remoteGroup: ref.optional(),
  ethertype: z.enum(['IPv4', 'IPv6']).default('IPv4'),
  description: z.string().optional(),
}).superRefine((r, ctx) => {
  if (r.remoteCidr !== undefined && r.remoteGroup !== undefined) ctx.addIssue({ code: 'custom', path: ['remoteGroup'], message: 'give remoteCidr or remoteGroup, not both' });
  if (r.portMin !== undefined && r.portMax !== undefined && r.portMax < r.portMin) ctx.addIssue({ code: 'custom', path: ['portMax'], message: 'portMax is below portMin' });
});

export const SecurityGroupSpec = z.strictObject({
  description: z.string().default(''),
  rules: z.array(SecurityGroupRule).default([]),
});

export const PortSpec = z.strictObject({
  network: ref,
  subnet: ref.optional(),
  fixedIp: z.string().optional(),
  securityGroups: z.array(ref).default([]),
  macAddress: z.string().optional(),
});

export const FloatingIPSpec = z.strictObject({
  /** Floating pool (external network) name; default `public`. */
  pool: z.string().default('public'),
  /** Associate with this port or server id (in place). */
  port: ref.optional(),
  server: ref.optional(),
});

export const LoadBalancerSpec = z.strictObject({
  /** Subnet the VIP comes from. */
  subnet: ref,
  vip: ipAddressSchema().optional(),
  algorithm: z.enum(['round_robin', 'least_connections', 'source_ip']).default('round_robin'),
  listeners: z.array(z.strictObject({ protocol: z.enum(['TCP', 'HTTP', 'HTTPS', 'UDP']).default('TCP'), port: portSchema() })).min(1, 'a load balancer needs at least one listener'),
  members: z.array(z.strictObject({ address: ipAddressSchema(), port: portSchema(), weight: z.number().int().min(0).max(256).default(1) })).default([]),
  healthCheck: z.strictObject({
    protocol: z.enum(['TCP', 'HTTP', 'PING']).default('TCP'),
    path: z.string().default('/'),
    intervalSeconds: z.number().int().positive().default(5),
    unhealthyThreshold: z.number().int().positive().default(3),
  }).prefault({}),
});

/**
 * A physical switch port's layer-2 configuration (bare metal): an agent's port
 * in access mode on a cluster VLAN, or a trunk to a hub. Deleting returns the
 * port to the switch's default (quarantine) VLAN.
 */
export const SwitchPortSpec = z.strictObject({
  /** Switch name from the inventory (or the provider's switch map). */
  switch: z.string().min(1).max(64),
  /** Port name on that switch (`eth1`, `Ethernet1/12`, the OVS port name). */
  port: z.string().min(1).max(64),
  mode: z.enum(['access', 'trunk']).default('access'),
  /** Access VLAN (mode access). */
  vlan: z.number().int().min(1).max(4094).optional(),
  /** Allowed VLANs (mode trunk). */
  vlans: z.array(z.number().int().min(1).max(4094)).default([]),
  /** Untagged VLAN on a trunk. */
  nativeVlan: z.number().int().min(1).max(4094).optional(),
});

// ---- dhcp ------------------------------------------------------------------

const mac = z.string().regex(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i, 'MAC address like 52:54:00:12:34:56');

/** A DHCP scope: the addresses a server hands out on one network, and its options. */
export const DhcpSubnetSpec = z.strictObject({
  cidr: z.string().regex(/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/, 'an IPv4 CIDR like 10.0.1.0/24'),
  /** Dynamic pool; omit for reservations only. */
  pool: z.strictObject({ start: z.string(), end: z.string() }).optional(),
  gateway: z.string().optional(),
  dnsServers: z.array(z.string()).default([]),
  domain: z.string().optional(),
  leaseSeconds: z.number().int().min(120).default(3600),
});

/** A host reservation: MAC → fixed address, hostname and PXE/iPXE boot options. */
export const DhcpReservationSpec = z.strictObject({
  mac,
  address: z.string().regex(/^\d{1,3}(\.\d{1,3}){3}$/, 'an IPv4 address'),
  hostname: z.string().regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i, 'hostname is letters, digits and dashes').optional(),
  /** TFTP/HTTP boot server (siaddr). */
  nextServer: z.string().regex(/^\d{1,3}(\.\d{1,3}){3}$/, 'an IPv4 address').optional(),
  /** Boot file name (PXE `pxelinux.0`, iPXE script URL). */
  bootFile: z.string().max(255).optional(),
});

// ---- bare metal: BMC -------------------------------------------------------

/** A server's power and next-boot device, driven through its BMC (IPMI, Redfish). */
export const PowerSpec = z.strictObject({
  /** Inventory server id (its BMC address and sealed credentials come from the inventory). */
  server: z.string().min(1),
  power: z.enum(['on', 'off']).default('on'),
  /** Next boot device; `pxe` to (re)install, `disk` to run. */
  bootDevice: z.enum(['pxe', 'disk', 'bios', 'cdrom']).optional(),
  /** Keep the boot device for every boot (not only the next). */
  persistentBoot: z.boolean().default(false),
});

// ---- dns -------------------------------------------------------------------

const fqdn = z.string().regex(/^([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.?$/i, 'must be a DNS name like "example.com"');

export const ZoneSpec = z.strictObject({
  /** Zone name, e.g. `example.com` (a trailing dot is added). */
  name: fqdn,
  email: z.string().default('hostmaster@example.com'),
  ttl: z.number().int().min(1).default(3600),
  kind: z.enum(['primary', 'secondary']).default('primary'),
});

export const RecordSpec = z.strictObject({
  /** Zone id or zone name. */
  zone: z.string().min(1),
  /** Relative name (`www`, `@` for the apex) or a full name inside the zone. */
  name: z.string().min(1),
  type: z.enum(['A', 'AAAA', 'CNAME', 'TXT', 'MX', 'SRV', 'NS', 'PTR', 'CAA']),
  ttl: z.number().int().min(1).default(300),
  values: z.array(z.string().min(1)).min(1, 'a record needs at least one value'),
  /** A/AAAA only: also publish PTR records in the reverse zone covering each address (providers that serve reverse zones). */
  ptr: z.boolean().optional(),
});

// ---- metal -----------------------------------------------------------------

export const MetalInstanceSpec = z.strictObject({
  /** Server type from the inventory, e.g. `gp-medium`. */
  serverType: z.string().min(1),
  /** OS template, e.g. `ubuntu-24.04`. */
  osTemplate: z.string().min(1),
  hostname: z.string().regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, 'hostname is lower-case letters, digits and dashes').optional(),
  datacenter: z.string().optional(),
  /** NICs bound to networks: each gets an address from the subnet (or the fixed one). */
  networks: z.array(z.strictObject({ network: ref.optional(), subnet: ref.optional(), fixedIp: z.string().optional() })).default([]),
  sshKeys: z.array(z.string()).default([]),
  userData: z.string().optional(),
  power: z.enum(['on', 'off']).default('on'),
});

// ---- container -------------------------------------------------------------

export const ClusterSpec = z.strictObject({
  distribution: z.enum(['kubernetes', 'openshift', 'k3s']).default('kubernetes'),
  version: z.string().regex(/^\d+\.\d+(\.\d+)?$/, 'version like "1.30" or "4.16.3"'),
  controlPlane: z.strictObject({
    count: z.union([z.literal(1), z.literal(3), z.literal(5)]).default(1),
    flavor: z.string().default('SCS-4V-16-50s'),
  }).prefault({}),
  nodePools: z.array(z.strictObject({
    name: z.string().regex(/^[a-z0-9-]+$/),
    count: z.number().int().min(0).max(500),
    flavor: z.string().default('SCS-4V-16-50s'),
    labels: labels.default({}),
  })).min(1, 'a cluster needs at least one node pool'),
  /** Subnet the nodes attach to. */
  subnet: ref.optional(),
  baseDomain: z.string().default('cluster.local'),
  /** Bare-metal nodes instead of VMs. */
  metal: z.strictObject({ serverType: z.string() }).optional(),
});

export const WorkloadSpec = z.strictObject({
  /** Cluster id. */
  cluster: ref,
  namespace: z.string().regex(/^[a-z0-9-]+$/).default('default'),
  image: z.string().min(1),
  replicas: z.number().int().min(0).max(1000).default(1),
  resources: z.strictObject({ cpu: CpuQuantity.default('100m'), memory: MemoryQuantity.default('128Mi') }).prefault({}),
  env: z.record(z.string(), z.string()).default({}),
  ports: z.array(z.number().int().min(1).max(65535)).default([]),
  service: z.strictObject({ type: z.enum(['ClusterIP', 'NodePort', 'LoadBalancer']).default('ClusterIP'), port: z.number().int().min(1).max(65535) }).optional(),
});

// ---- apps ------------------------------------------------------------------

/** An application from a template on a container cluster (provider `apps`, src/apps). */
export const AppSpec = z.strictObject({
  /** container/Cluster name or id. */
  cluster: ref,
  namespace: z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'a lowercase DNS label').max(63).default('default'),
  /** The template: its files (template.yaml and manifests) as rendered from. */
  template: z.strictObject({ name: z.string().min(1), version: z.string().default('0.1.0'), files: z.record(z.string(), z.string()) }),
  values: z.record(z.string(), z.unknown()).default({}),
  /** How long a rollout may take before the app is failed. */
  timeoutSeconds: z.number().int().positive().max(86_400).default(600),
});

// ---- automation ------------------------------------------------------------

export const JobSpec = z.strictObject({
  /** Playbook name/path, or a script. Exactly one. */
  playbook: z.string().optional(),
  script: z.string().optional(),
  /** Inventory built from resources: hosts with addresses and groups. */
  inventory: z.strictObject({
    hosts: z.array(z.strictObject({ name: z.string(), address: z.string().optional(), groups: z.array(z.string()).default([]), vars: z.record(z.string(), z.unknown()).default({}) })).default([]),
  }).prefault({}),
  extraVars: z.record(z.string(), z.unknown()).default({}),
  timeoutSeconds: z.number().int().positive().default(3600),
});

/** Per kind: schema, fields whose change forces replacement, one-line description. */
export interface KindInfo {
  kind: string;
  schema: z.ZodType<any>;
  replaceOnChange: readonly string[];
  description: string;
  /** Extra semantic checks (beyond the schema). Throw ValidationError. */
  validate?(spec: any): void;
}

function ipVersionOf(addr: string): 4 | 6 | 0 {
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(addr)) return 4;
  if (addr.includes(':')) return 6;
  return 0;
}

const invalid = (kind: string, msg: string) => new ValidationError('resources.invalid_spec', `${kind}: ${msg}`, { details: { kind } });

export const KINDS: Record<string, KindInfo> = {
  'compute/Flavor': { kind: 'compute/Flavor', schema: FlavorSpec, replaceOnChange: ['name', 'vcpus', 'ramMb', 'diskGb'], description: 'A VM size: vCPUs, RAM and root disk.' },
  'compute/Image': { kind: 'compute/Image', schema: ImageSpec, replaceOnChange: ['sourceUrl', 'diskFormat'], description: 'An OS image with properties.' },
  'compute/Keypair': { kind: 'compute/Keypair', schema: KeypairSpec, replaceOnChange: ['name', 'publicKey'], description: 'An SSH public key injected into servers.' },
  'compute/Server': {
    kind: 'compute/Server', schema: ServerSpec, replaceOnChange: ['image', 'bootVolume', 'networks', 'keypair', 'userData', 'availabilityZone'],
    description: 'A virtual machine: flavor, image or boot volume, networks, security groups, key, user data.',
    validate(spec: z.infer<typeof ServerSpec>) {
      if (!spec.image && !spec.bootVolume?.volume) throw invalid('compute/Server', 'give an image, or bootVolume.volume to boot from an existing volume');
      spec.networks.forEach((n, i) => {
        if (!n.subnet && !n.port) throw invalid('compute/Server', `networks[${i}] needs a subnet or a port id`);
        if (n.fixedIp && ipVersionOf(n.fixedIp) === 0) throw invalid('compute/Server', `networks[${i}].fixedIp "${n.fixedIp}" is not an IP address`);
      });
    },
  },
  'storage/Volume': { kind: 'storage/Volume', schema: VolumeSpec, replaceOnChange: ['type', 'image'], description: 'A block volume (boot or data) that attaches and detaches in place; grows in place.' },
  'network/Network': { kind: 'network/Network', schema: NetworkSpec, replaceOnChange: ['vlan', 'vlanPool', 'external'], description: 'An L2 network on a VLAN from the pool.' },
  'network/Subnet': {
    kind: 'network/Subnet', schema: SubnetSpec, replaceOnChange: ['network', 'cidr', 'pool', 'prefixLength', 'ipVersion'],
    description: 'An L3 subnet: CIDR (from IPAM when omitted), DHCP, gateway, DNS servers.',
    validate(spec: z.infer<typeof SubnetSpec>) {
      if (!spec.cidr && !spec.prefixLength) throw invalid('network/Subnet', 'give a cidr, or a prefixLength (and optionally a pool) to take one from IPAM');
      if (spec.cidr) {
        const m = /^(.+)\/(\d{1,3})$/.exec(spec.cidr);
        const v = m ? ipVersionOf(m[1]!) : 0;
        if (!m || v === 0 || Number(m[2]) > (v === 4 ? 32 : 128)) throw invalid('network/Subnet', `cidr "${spec.cidr}" is not a CIDR like 10.0.1.0/24`);
        if (v !== spec.ipVersion) throw invalid('network/Subnet', `cidr "${spec.cidr}" is IPv${v} but ipVersion is ${spec.ipVersion}`);
      }
    },
  },
  'network/Router': { kind: 'network/Router', schema: RouterSpec, replaceOnChange: [], description: 'A router: subnet interfaces and an external gateway.' },
  'network/SecurityGroup': {
    kind: 'network/SecurityGroup', schema: SecurityGroupSpec, replaceOnChange: [], description: 'A set of firewall rules applied to ports.',
    validate(spec: z.infer<typeof SecurityGroupSpec>) {
      spec.rules.forEach((r, i) => {
        if (r.portMin !== undefined && r.portMax !== undefined && r.portMin > r.portMax) throw invalid('network/SecurityGroup', `rules[${i}]: portMin ${r.portMin} is above portMax ${r.portMax}`);
      });
    },
  },
  'network/Port': { kind: 'network/Port', schema: PortSpec, replaceOnChange: ['network', 'subnet', 'fixedIp', 'macAddress'], description: 'A port on a network with a fixed address.' },
  'network/FloatingIP': { kind: 'network/FloatingIP', schema: FloatingIPSpec, replaceOnChange: ['pool'], description: 'A public address from a floating pool, associated in place.' },
  'network/LoadBalancer': { kind: 'network/LoadBalancer', schema: LoadBalancerSpec, replaceOnChange: ['subnet', 'vip'], description: 'A VIP with listeners routing to healthy members.' },
  'dns/Zone': { kind: 'dns/Zone', schema: ZoneSpec, replaceOnChange: ['name', 'kind'], description: 'An authoritative DNS zone.' },
  'dns/Record': {
    kind: 'dns/Record', schema: RecordSpec, replaceOnChange: ['zone', 'name', 'type'], description: 'A DNS record set in a zone.',
    validate(spec: z.infer<typeof RecordSpec>) {
      if (spec.type === 'A' || spec.type === 'AAAA') {
        for (const v of spec.values) if (ipVersionOf(v) !== (spec.type === 'A' ? 4 : 6)) throw invalid('dns/Record', `"${v}" is not an IPv${spec.type === 'A' ? 4 : 6} address for an ${spec.type} record`);
      }
      if (spec.type === 'CNAME' && spec.values.length !== 1) throw invalid('dns/Record', 'a CNAME record has exactly one value');
    },
  },
  'network/SwitchPort': {
    kind: 'network/SwitchPort', schema: SwitchPortSpec, replaceOnChange: ['switch', 'port'], description: 'A switch port in access mode on a VLAN or trunking VLANs; back to the default VLAN on delete.',
    validate(spec: z.infer<typeof SwitchPortSpec>) {
      if (spec.mode === 'access' && spec.vlan === undefined) throw invalid('network/SwitchPort', 'an access port needs vlan');
      if (spec.mode === 'access' && (spec.vlans.length || spec.nativeVlan !== undefined)) throw invalid('network/SwitchPort', 'vlans and nativeVlan are for trunk ports; an access port has one vlan');
      if (spec.mode === 'trunk' && spec.vlan !== undefined) throw invalid('network/SwitchPort', 'a trunk port takes vlans (and nativeVlan), not vlan');
      if (spec.mode === 'trunk' && spec.vlans.length === 0) throw invalid('network/SwitchPort', 'a trunk port needs at least one VLAN in vlans');
    },
  },
  'dhcp/Subnet': { kind: 'dhcp/Subnet', schema: DhcpSubnetSpec, replaceOnChange: ['cidr'], description: 'A DHCP scope: CIDR, dynamic pool, gateway, DNS servers, lease time.' },
  'dhcp/Reservation': { kind: 'dhcp/Reservation', schema: DhcpReservationSpec, replaceOnChange: ['mac'], description: 'A DHCP host reservation: MAC to fixed address, hostname, next-server and boot file.' },
  'metal/Power': { kind: 'metal/Power', schema: PowerSpec, replaceOnChange: ['server'], description: "A server's power state and boot device through its BMC (IPMI or Redfish)." },
  'metal/Instance': { kind: 'metal/Instance', schema: MetalInstanceSpec, replaceOnChange: ['serverType', 'osTemplate', 'datacenter', 'networks', 'userData', 'hostname'], description: 'A bare-metal server allocated by type with an OS installed from a template.' },
  'container/Cluster': { kind: 'container/Cluster', schema: ClusterSpec, replaceOnChange: ['distribution', 'controlPlane', 'subnet', 'baseDomain', 'metal'], description: 'A Kubernetes/OpenShift cluster: control plane, node pools, version; kubeconfig as a secret.' },
  'apps/App': { kind: 'apps/App', schema: AppSpec, replaceOnChange: ['cluster', 'namespace'], description: 'An application rendered from a template and deployed to a container cluster, rolled out and rolled back by revision.' },
  'container/Workload': { kind: 'container/Workload', schema: WorkloadSpec, replaceOnChange: ['cluster', 'namespace'], description: 'A deployment and service: replicas with CPU and memory requests.' },
  'automation/Job': {
    kind: 'automation/Job', schema: JobSpec, replaceOnChange: ['playbook', 'script', 'inventory', 'extraVars'], description: 'A playbook or script run against an inventory built from resources, with its log.',
    validate(spec: z.infer<typeof JobSpec>) {
      if (!spec.playbook === !spec.script) throw invalid('automation/Job', 'give exactly one of playbook or script');
    },
  },
};

export const KIND_NAMES = Object.keys(KINDS);

export type FlavorSpec = z.infer<typeof FlavorSpec>;
export type ImageSpec = z.infer<typeof ImageSpec>;
export type KeypairSpec = z.infer<typeof KeypairSpec>;
export type ServerSpec = z.infer<typeof ServerSpec>;
export type VolumeSpec = z.infer<typeof VolumeSpec>;
export type NetworkSpec = z.infer<typeof NetworkSpec>;
export type SubnetSpec = z.infer<typeof SubnetSpec>;
export type RouterSpec = z.infer<typeof RouterSpec>;
export type SecurityGroupSpec = z.infer<typeof SecurityGroupSpec>;
export type PortSpec = z.infer<typeof PortSpec>;
export type FloatingIPSpec = z.infer<typeof FloatingIPSpec>;
export type LoadBalancerSpec = z.infer<typeof LoadBalancerSpec>;
export type ZoneSpec = z.infer<typeof ZoneSpec>;
export type RecordSpec = z.infer<typeof RecordSpec>;
export type MetalInstanceSpec = z.infer<typeof MetalInstanceSpec>;
export type ClusterSpec = z.infer<typeof ClusterSpec>;
export type WorkloadSpec = z.infer<typeof WorkloadSpec>;
export type JobSpec = z.infer<typeof JobSpec>;
export type SwitchPortSpec = z.infer<typeof SwitchPortSpec>;
export type DhcpSubnetSpec = z.infer<typeof DhcpSubnetSpec>;
export type DhcpReservationSpec = z.infer<typeof DhcpReservationSpec>;
export type PowerSpec = z.infer<typeof PowerSpec>;

/** Validates a spec of a known kind; throws ValidationError naming the first bad field. */
export function parseSpec<S = Record<string, unknown>>(kind: string, spec: unknown): S {
  const info = KINDS[kind];
  if (!info) throw new ValidationError('resources.unknown_kind', `unknown kind "${kind}": use one of ${KIND_NAMES.join(', ')}`, { details: { kind } });
  const r = info.schema.safeParse(spec);
  if (!r.success) throw zodError('resources.invalid_spec', r.error, { prefix: ['spec'], what: kind, root: 'spec', details: { kind } });
  info.validate?.(r.data);
  return r.data as S;
}

/** Dotted top-level paths whose values differ (deep compare). */
export function changedFields(previous: Record<string, unknown>, next: Record<string, unknown>): string[] {
  const keys = new Set([...Object.keys(previous), ...Object.keys(next)]);
  return [...keys].filter((k) => stableJson(previous[k]) !== stableJson(next[k])).sort();
}

/** JSON with sorted keys, for comparing specs. */
export function stableJson(v: unknown): string {
  return JSON.stringify(v, (_k, val: unknown) => {
    if (val && typeof val === 'object' && !Array.isArray(val)) {
      return Object.fromEntries(Object.entries(val as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    }
    return val;
  }) ?? 'undefined';
}

/** Default diff: changed top-level fields; those in `replaceOnChange` force replacement. */
export function diffSpecs(previous: Record<string, unknown>, next: Record<string, unknown>, replaceOnChange: readonly string[]): { changed: string[]; replaceFields: string[] } {
  const changed = changedFields(previous, next);
  return { changed, replaceFields: changed.filter((f) => replaceOnChange.includes(f)) };
}

import { z } from 'zod';

/**
 * What a fresh simulated datacenter contains: hypervisors, bare-metal
 * server types, flavors (Sovereign Cloud Stack names plus a production
 * alias), OS images with properties, OS templates for bare metal, floating
 * pools, and the latency of every kind and operation.
 */

/** SCS flavor name: SCS-<n>V-<ram GiB>[-<disk GB>[s]] (s = local SSD). */
export function scsFlavor(vcpus: number, ramGb: number, diskGb?: number, ssd = false): { name: string; vcpus: number; ramMb: number; diskGb: number; extraSpecs: Record<string, string> } {
  const name = `SCS-${vcpus}V-${ramGb}${diskGb ? `-${diskGb}${ssd ? 's' : ''}` : ''}`;
  return { name, vcpus, ramMb: ramGb * 1024, diskGb: diskGb ?? 0, extraSpecs: { 'scs:name-v2': name, ...(ssd ? { 'scs:disk0-type': 'ssd' } : {}) } };
}

export const DEFAULT_FLAVORS = [
  scsFlavor(1, 2), scsFlavor(1, 4), scsFlavor(2, 4), scsFlavor(2, 8), scsFlavor(4, 8), scsFlavor(4, 16), scsFlavor(8, 16), scsFlavor(8, 32), scsFlavor(16, 64),
  scsFlavor(1, 2, 10), scsFlavor(2, 4, 10), scsFlavor(2, 4, 20, true), scsFlavor(4, 8, 20), scsFlavor(4, 16, 50, true), scsFlavor(8, 32, 100, true), scsFlavor(16, 64, 100, true),
  { name: 'production-cpu2-ram4-disk20', vcpus: 2, ramMb: 4096, diskGb: 20, extraSpecs: { 'scs:name-v2': 'SCS-2V-4-20' } },
];

export const DEFAULT_IMAGES = [
  { name: 'ubuntu-24.04', minDiskGb: 5, minRamMb: 512, properties: { os_distro: 'ubuntu', os_version: '24.04', architecture: 'x86_64', hw_disk_bus: 'virtio', hw_qemu_guest_agent: 'yes', image_original_user: 'ubuntu' } },
  { name: 'ubuntu-22.04', minDiskGb: 5, minRamMb: 512, properties: { os_distro: 'ubuntu', os_version: '22.04', architecture: 'x86_64', hw_disk_bus: 'virtio', image_original_user: 'ubuntu' } },
  { name: 'debian-12', minDiskGb: 3, minRamMb: 512, properties: { os_distro: 'debian', os_version: '12', architecture: 'x86_64', hw_disk_bus: 'virtio', image_original_user: 'debian' } },
  { name: 'rocky-9', minDiskGb: 10, minRamMb: 1024, properties: { os_distro: 'rocky', os_version: '9', architecture: 'x86_64', hw_disk_bus: 'virtio', image_original_user: 'rocky' } },
  { name: 'flatcar-stable', minDiskGb: 8, minRamMb: 1024, properties: { os_distro: 'flatcar', os_version: '3975', architecture: 'x86_64', hw_disk_bus: 'virtio', image_original_user: 'core' } },
  { name: 'windows-server-2022', minDiskGb: 40, minRamMb: 4096, properties: { os_distro: 'windows', os_version: '2022', architecture: 'x86_64', os_type: 'windows', hw_disk_bus: 'sata' } },
];

/** OS templates for bare metal (metal/Instance.osTemplate). */
export const DEFAULT_OS_TEMPLATES: Record<string, { distro: string; version: string; installMinutes: number }> = {
  'ubuntu-24.04': { distro: 'ubuntu', version: '24.04', installMinutes: 8 },
  'ubuntu-22.04': { distro: 'ubuntu', version: '22.04', installMinutes: 8 },
  'rhel-9': { distro: 'rhel', version: '9.4', installMinutes: 12 },
  'rocky-9': { distro: 'rocky', version: '9.4', installMinutes: 10 },
  'esxi-8': { distro: 'esxi', version: '8.0u3', installMinutes: 15 },
  'rhcos-4.16': { distro: 'rhcos', version: '4.16', installMinutes: 10 },
};

const HostConfig = z.object({ name: z.string(), zone: z.string().default('az1'), vcpus: z.number().int().positive(), ramMb: z.number().int().positive(), cpuRatio: z.number().positive().default(4) });
const ServerTypeConfig = z.object({ count: z.number().int().min(0), vcpus: z.number().int().positive(), ramMb: z.number().int().positive(), datacenter: z.string().default('dc1') });

export const LatencySpec = z.object({
  /** Mean duration in simulated milliseconds. */
  meanMs: z.number().min(0),
  stddevMs: z.number().min(0).default(0),
  minMs: z.number().min(0).default(0),
});
export type LatencySpec = z.infer<typeof LatencySpec>;

const s = 1000;
const m = 60_000;
/** Per kind and operation, in simulated time (divided by the speed factor). */
export const DEFAULT_LATENCY: Record<string, Partial<Record<'create' | 'update' | 'delete', LatencySpec>>> = {
  'compute/Flavor': { create: { meanMs: 1 * s, stddevMs: 0.3 * s, minMs: 200 }, update: { meanMs: 1 * s, stddevMs: 0, minMs: 0 }, delete: { meanMs: 1 * s, stddevMs: 0, minMs: 0 } },
  'compute/Image': { create: { meanMs: 25 * s, stddevMs: 8 * s, minMs: 5 * s }, update: { meanMs: 1 * s, stddevMs: 0, minMs: 0 }, delete: { meanMs: 3 * s, stddevMs: 1 * s, minMs: 1 * s } },
  'compute/Keypair': { create: { meanMs: 500, stddevMs: 100, minMs: 100 }, update: { meanMs: 500, stddevMs: 0, minMs: 0 }, delete: { meanMs: 500, stddevMs: 0, minMs: 0 } },
  'compute/Server': { create: { meanMs: 45 * s, stddevMs: 15 * s, minMs: 15 * s }, update: { meanMs: 20 * s, stddevMs: 5 * s, minMs: 5 * s }, delete: { meanMs: 10 * s, stddevMs: 3 * s, minMs: 3 * s } },
  'storage/Volume': { create: { meanMs: 8 * s, stddevMs: 3 * s, minMs: 2 * s }, update: { meanMs: 5 * s, stddevMs: 2 * s, minMs: 1 * s }, delete: { meanMs: 5 * s, stddevMs: 2 * s, minMs: 1 * s } },
  'network/Network': { create: { meanMs: 3 * s, stddevMs: 1 * s, minMs: 1 * s }, update: { meanMs: 2 * s, stddevMs: 0.5 * s, minMs: 0.5 * s }, delete: { meanMs: 3 * s, stddevMs: 1 * s, minMs: 1 * s } },
  'network/Subnet': { create: { meanMs: 2 * s, stddevMs: 0.5 * s, minMs: 0.5 * s }, update: { meanMs: 2 * s, stddevMs: 0.5 * s, minMs: 0.5 * s }, delete: { meanMs: 2 * s, stddevMs: 0.5 * s, minMs: 0.5 * s } },
  'network/Router': { create: { meanMs: 4 * s, stddevMs: 1 * s, minMs: 1 * s }, update: { meanMs: 3 * s, stddevMs: 1 * s, minMs: 1 * s }, delete: { meanMs: 4 * s, stddevMs: 1 * s, minMs: 1 * s } },
  'network/SecurityGroup': { create: { meanMs: 1 * s, stddevMs: 0.3 * s, minMs: 200 }, update: { meanMs: 1 * s, stddevMs: 0.3 * s, minMs: 200 }, delete: { meanMs: 1 * s, stddevMs: 0.3 * s, minMs: 200 } },
  'network/Port': { create: { meanMs: 2 * s, stddevMs: 0.5 * s, minMs: 0.5 * s }, update: { meanMs: 1 * s, stddevMs: 0.3 * s, minMs: 200 }, delete: { meanMs: 1 * s, stddevMs: 0.3 * s, minMs: 200 } },
  'network/FloatingIP': { create: { meanMs: 2 * s, stddevMs: 0.5 * s, minMs: 0.5 * s }, update: { meanMs: 2 * s, stddevMs: 0.5 * s, minMs: 0.5 * s }, delete: { meanMs: 2 * s, stddevMs: 0.5 * s, minMs: 0.5 * s } },
  'network/LoadBalancer': { create: { meanMs: 90 * s, stddevMs: 20 * s, minMs: 40 * s }, update: { meanMs: 10 * s, stddevMs: 3 * s, minMs: 3 * s }, delete: { meanMs: 20 * s, stddevMs: 5 * s, minMs: 5 * s } },
  'dns/Zone': { create: { meanMs: 2 * s, stddevMs: 0.5 * s, minMs: 0.5 * s }, update: { meanMs: 1 * s, stddevMs: 0.3 * s, minMs: 200 }, delete: { meanMs: 2 * s, stddevMs: 0.5 * s, minMs: 0.5 * s } },
  'dns/Record': { create: { meanMs: 1 * s, stddevMs: 0.3 * s, minMs: 200 }, update: { meanMs: 1 * s, stddevMs: 0.3 * s, minMs: 200 }, delete: { meanMs: 1 * s, stddevMs: 0.3 * s, minMs: 200 } },
  'metal/Instance': { create: { meanMs: 12 * m, stddevMs: 3 * m, minMs: 5 * m }, update: { meanMs: 2 * m, stddevMs: 30 * s, minMs: 30 * s }, delete: { meanMs: 6 * m, stddevMs: 2 * m, minMs: 2 * m } },
  'container/Cluster': { create: { meanMs: 25 * m, stddevMs: 5 * m, minMs: 12 * m }, update: { meanMs: 8 * m, stddevMs: 2 * m, minMs: 3 * m }, delete: { meanMs: 8 * m, stddevMs: 2 * m, minMs: 3 * m } },
  'container/Workload': { create: { meanMs: 20 * s, stddevMs: 8 * s, minMs: 5 * s }, update: { meanMs: 15 * s, stddevMs: 5 * s, minMs: 3 * s }, delete: { meanMs: 8 * s, stddevMs: 3 * s, minMs: 2 * s } },
  'automation/Job': { create: { meanMs: 90 * s, stddevMs: 30 * s, minMs: 20 * s }, update: { meanMs: 1 * s, stddevMs: 0, minMs: 0 }, delete: { meanMs: 500, stddevMs: 0, minMs: 0 } },
};

export const QuotaSchema = z.object({
  instances: z.number().int().min(0).default(1000),
  cores: z.number().int().min(0).default(4000),
  ramMb: z.number().int().min(0).default(16 * 1024 * 1024),
  floatingIps: z.number().int().min(0).default(200),
  volumeGb: z.number().int().min(0).default(100_000),
});
export type Quota = z.infer<typeof QuotaSchema>;

/**
 * A change to part of a quota: only the fields given change (no defaults
 * here, so that `{ cores: 8 }` leaves the project's other limits as they
 * are); unknown fields are refused.
 */
export const QuotaPatchSchema = z.strictObject({
  instances: QuotaSchema.shape.instances.unwrap().optional(),
  cores: QuotaSchema.shape.cores.unwrap().optional(),
  ramMb: QuotaSchema.shape.ramMb.unwrap().optional(),
  floatingIps: QuotaSchema.shape.floatingIps.unwrap().optional(),
  volumeGb: QuotaSchema.shape.volumeGb.unwrap().optional(),
});
export type QuotaPatch = z.infer<typeof QuotaPatchSchema>;

export const SimConfigSchema = z.object({
  /** Simulated time runs this many times faster (durations are divided by it). */
  speed: z.number().positive().default(1),
  /** Seed of latency draws and fault decisions (credentials are random, never seeded). */
  seed: z.number().int().default(42),
  hosts: z.array(HostConfig).default(
    Array.from({ length: 4 }, (_, i) => ({ name: `hv-${String(i + 1).padStart(2, '0')}`, zone: i < 2 ? 'az1' : 'az2', vcpus: 64, ramMb: 256 * 1024, cpuRatio: 4 })),
  ),
  /** Bare-metal server types and how many the simulated inventory holds (used until src/inventory is wired). */
  serverTypes: z.record(z.string(), ServerTypeConfig).default({
    'gp-small': { count: 8, vcpus: 16, ramMb: 64 * 1024, datacenter: 'dc1' },
    'gp-medium': { count: 8, vcpus: 32, ramMb: 128 * 1024, datacenter: 'dc1' },
    'gp-large': { count: 4, vcpus: 64, ramMb: 512 * 1024, datacenter: 'dc1' },
    'gpu-a100': { count: 2, vcpus: 64, ramMb: 1024 * 1024, datacenter: 'dc1' },
  }),
  /** Floating pools: name → CIDR. */
  floatingPools: z.record(z.string(), z.string()).default({ public: '203.0.113.0/24' }),
  /** Where subnets without a CIDR take one from (used until src/ipam is wired). */
  subnetPool: z.string().default('10.128.0.0/9'),
  vlanRange: z.tuple([z.number().int(), z.number().int()]).default([100, 3999]),
  latency: z.record(z.string(), z.record(z.string(), LatencySpec)).default({}),
  /** Default per-project quota (setQuota overrides per project). */
  quota: QuotaSchema.prefault({}),
});
export type SimConfig = z.infer<typeof SimConfigSchema>;
export type SimConfigInput = z.input<typeof SimConfigSchema>;

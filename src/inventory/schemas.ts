import { z } from 'zod';
import { labelsSchema } from '../core/names.js';

/**
 * Inventory module inputs and outputs (the contract for workflow steps, the
 * HTTP API, the CLI and the YAML inventory file).
 */
export const SlugSchema = z.string().min(1).max(64).regex(/^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$/, 'use lower-case letters, digits and . _ - (e.g. dc1, gpu.large)');
const Labels = labelsSchema;
const Mac = z.string().regex(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i, 'a MAC address is six hex pairs separated by colons, e.g. 52:54:00:12:34:56').transform((s) => s.toLowerCase());

export const ServerStateSchema = z.enum([
  'registering', 'inspecting', 'available', 'allocated', 'provisioning', 'provisioned', 'deprovisioning', 'cleaning',
  'maintenance', 'failed', 'quarantined',
]);
export type ServerState = z.infer<typeof ServerStateSchema>;

export const DatacenterSchema = z.object({
  name: SlugSchema,
  region: z.string().min(1).max(64),
  description: z.string().max(1024).default(''),
  labels: Labels.default({}),
});
export type DatacenterInput = z.input<typeof DatacenterSchema>;
export type Datacenter = z.output<typeof DatacenterSchema> & { createdAt: number };

export const RackSchema = z.object({
  datacenter: SlugSchema,
  name: z.string().min(1).max(64),
  row: z.string().max(64).optional(),
  heightU: z.number().int().min(1).max(60).default(42),
});
export type RackInput = z.input<typeof RackSchema>;
export interface Rack { id: string; datacenter: string; name: string; row: string | null; heightU: number }

export const ServerTypeSchema = z.object({
  name: SlugSchema,
  cpu: z.object({ model: z.string().min(1).max(128), cores: z.number().int().min(1).max(4096) }),
  ramGb: z.number().int().min(1).max(1_048_576),
  disks: z.array(z.object({ sizeGb: z.number().int().positive(), kind: z.enum(['ssd', 'nvme', 'hdd']).default('ssd'), count: z.number().int().min(1).default(1) })).default([]),
  nics: z.array(z.object({ name: z.string().min(1).max(32), speedGbps: z.number().positive() })).default([]),
  gpus: z.array(z.object({ model: z.string().min(1), count: z.number().int().min(1) })).default([]),
  labels: Labels.default({}),
});
export type ServerTypeInput = z.input<typeof ServerTypeSchema>;
export type ServerType = z.output<typeof ServerTypeSchema>;

export const ServerNicSchema = z.object({
  name: z.string().min(1).max(32),
  mac: Mac,
  /** Switch name (in the server's datacenter) and port the NIC is cabled to. */
  switch: z.string().min(1).max(64).optional(),
  port: z.string().min(1).max(32).optional(),
});
export type ServerNic = z.output<typeof ServerNicSchema>;

export const BmcSchema = z.object({
  address: z.string().min(1).max(256),
  username: z.string().min(1).max(128),
  /** Stored sealed (AES-256-GCM); exports show [redacted]. */
  password: z.string().min(1).max(1024),
});

export const RegisterServerSchema = z.object({
  serial: z.string().min(1).max(128),
  type: SlugSchema,
  datacenter: SlugSchema,
  rack: z.string().min(1).max(64).optional(),
  position: z.number().int().min(0).max(60).optional(),
  bmc: BmcSchema.optional(),
  nics: z.array(ServerNicSchema).max(64).default([]),
  labels: Labels.default({}),
  /** Initial state; default `registering` (new hardware is inspected before use). */
  state: z.enum(['registering', 'available', 'maintenance']).default('registering'),
});
export type RegisterServerInput = z.input<typeof RegisterServerSchema>;

export interface Server {
  id: string;
  serial: string;
  type: string;
  datacenter: string;
  rack: string | null;
  position: number | null;
  state: ServerState;
  stateReason: string;
  stateChangedAt: number;
  labels: Record<string, string>;
  bmcAddress: string | null;
  /** True when BMC credentials are stored (they are never returned here). */
  hasBmcCredentials: boolean;
  nics: ServerNic[];
  failureCount: number;
  failureReasons: { at: number; reason: string }[];
  holder: string | null;
  reservationId: string | null;
  expiresAt: number | null;
  allocatedAt: number | null;
  createdAt: number;
  updatedAt: number;
}

export interface ServerEvent { id: string; serverId: string; from: ServerState | null; to: ServerState; reason: string; actor: string; at: number }

export const SwitchSchema = z.object({
  name: z.string().min(1).max(64),
  datacenter: SlugSchema,
  rack: z.string().min(1).max(64).optional(),
  model: z.string().max(128).default(''),
  mgmtAddress: z.string().max(256).optional(),
  ports: z.number().int().min(1).max(1024).default(48),
});
export type SwitchInput = z.input<typeof SwitchSchema>;
export interface Switch { id: string; name: string; datacenter: string; rack: string | null; model: string; mgmtAddress: string | null; ports: number }

export const HubSchema = z.object({
  name: SlugSchema,
  region: z.string().min(1).max(64),
  datacenter: SlugSchema.optional(),
  /** How many clusters the hub can host. */
  capacity: z.number().int().min(0),
  labels: Labels.default({}),
});
export type HubInput = z.input<typeof HubSchema>;
export interface Hub { name: string; region: string; datacenter: string | null; capacity: number; used: number; labels: Record<string, string> }

export const HotPoolPolicySchema = z.object({
  type: SlugSchema,
  datacenter: SlugSchema,
  /** Keep at least this many servers ready (inspected, cleaned, available). */
  minReady: z.number().int().min(0).max(100_000),
  enabled: z.boolean().default(true),
});
export type HotPoolPolicyInput = z.input<typeof HotPoolPolicySchema>;
export type HotPoolPolicy = z.output<typeof HotPoolPolicySchema>;

export const AllocateServersSchema = z.object({
  type: SlugSchema,
  datacenter: SlugSchema,
  count: z.number().int().min(1).max(10_000).default(1),
  /** Every label must match exactly. */
  labels: Labels.default({}),
  /** Tried first, in order; an unavailable or non-matching preferred server is skipped, never an error. */
  preferred: z.array(z.string().min(1)).max(10_000).default([]),
  holder: z.string().min(1).max(256),
  key: z.string().min(1).max(256).optional(),
  hold: z.object({ reservationId: z.string().min(1), expiresAt: z.number().int().positive() }).optional(),
});
export type AllocateServersInput = z.input<typeof AllocateServersSchema>;
export type AllocateServersRequest = z.output<typeof AllocateServersSchema>;

export const TransitionSchema = z.object({
  serverId: z.string().min(1),
  to: ServerStateSchema,
  reason: z.string().min(1).max(1024),
  actor: z.string().min(1).max(256).default('system'),
  /** Refuse unless the server is in this state (optimistic check). */
  from: ServerStateSchema.optional(),
});
export type TransitionInput = z.input<typeof TransitionSchema>;

export interface CapacitySummary {
  type: string;
  datacenter: string;
  byState: Partial<Record<ServerState, number>>;
  available: number;
  total: number;
}

import { z } from 'zod';
import { labelsSchema } from '../core/names.js';
import { ipAddressSchema } from '../ipam/addr.js';
import type { Server } from '../inventory/schemas.js';
import type { Address, Prefix, VlanAllocation } from '../ipam/schemas.js';

/**
 * Reservations and feasibility: the all-or-nothing front door that orders
 * use. One request names everything an order needs across domains.
 */
const Labels = labelsSchema;
const DnsLabel = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;

export const ServerItemSchema = z.strictObject({
  type: z.string().min(1),
  datacenter: z.string().min(1),
  count: z.number().int().min(1).max(10_000).default(1),
  labels: Labels.default({}),
  preferred: z.array(z.string()).default([]),
});
export const PrefixItemSchema = z.strictObject({
  parentId: z.string().min(1),
  length: z.number().int().min(0).max(128),
  kind: z.enum(['container', 'network', 'floating']).default('network'),
  gateway: z.enum(['none', 'first']).default('none'),
  count: z.number().int().min(1).max(1024).default(1),
});
export const AddressItemSchema = z.strictObject({
  prefixId: z.string().min(1),
  count: z.number().int().min(1).max(4096).default(1),
  /** A specific address (it must lie in the prefix). */
  address: ipAddressSchema().optional(),
  fallback: z.boolean().default(false),
});
export const FloatingIpItemSchema = z.strictObject({
  poolId: z.string().min(1),
  count: z.number().int().min(1).max(4096).default(1),
});
export const VlanItemSchema = z.strictObject({
  poolId: z.string().min(1),
  count: z.number().int().min(1).max(4094).default(1),
  vlan: z.number().int().optional(),
  fallback: z.boolean().default(false),
});
export const DnsNameItemSchema = z.strictObject({
  zone: z.string().min(1).max(253).regex(/^([a-z0-9-]+\.)*[a-z0-9-]+\.?$/i, 'a DNS zone like example.com'),
  name: z.string().min(1).max(253).refine((n) => n.split('.').every((l) => DnsLabel.test(l.toLowerCase())), 'DNS labels are 1-63 letters, digits or hyphens, not starting or ending with a hyphen'),
});

export const AllocationRequestSchema = z.strictObject({
  servers: z.array(ServerItemSchema).max(256).default([]),
  prefixes: z.array(PrefixItemSchema).max(256).default([]),
  addresses: z.array(AddressItemSchema).max(256).default([]),
  floatingIps: z.array(FloatingIpItemSchema).max(256).default([]),
  vlans: z.array(VlanItemSchema).max(256).default([]),
  dnsNames: z.array(DnsNameItemSchema).max(1024).default([]),
});
export type AllocationRequestInput = z.input<typeof AllocationRequestSchema>;
export type AllocationRequest = z.output<typeof AllocationRequestSchema>;

export const ReserveSchema = AllocationRequestSchema.extend({
  holder: z.string().min(1).max(256),
  /** Time to live: released automatically unless committed within it. Default 15 minutes. */
  ttlMs: z.number().int().min(1).max(7 * 24 * 3600_000).default(15 * 60_000),
  /** Idempotency key: reserving twice with one key returns the same reservation. */
  key: z.string().min(1).max(256).optional(),
});
export type ReserveInput = z.input<typeof ReserveSchema>;

/** What feasibility accepts: a request, or a whole reservation request (holder, ttlMs, key are ignored), so one document can be checked and then reserved. */
export const FeasibilityRequestSchema = AllocationRequestSchema.extend({
  holder: z.string().max(256).optional(),
  ttlMs: z.number().int().optional(),
  key: z.string().max(256).optional(),
});
export type FeasibilityRequestInput = z.input<typeof FeasibilityRequestSchema>;

export const ReservationStatusSchema = z.enum(['open', 'committed', 'aborted', 'expired', 'released']);
export type ReservationStatus = z.infer<typeof ReservationStatusSchema>;

export interface DnsName { id: string; zone: string; name: string; fqdn: string; holder: string; reservationId: string | null; expiresAt: number | null }

export interface Reservation {
  id: string;
  status: ReservationStatus;
  holder: string;
  expiresAt: number;
  createdAt: number;
  updatedAt: number;
  reason: string;
  servers: Server[];
  prefixes: Prefix[];
  addresses: Address[];
  floatingIps: Address[];
  vlans: VlanAllocation[];
  dnsNames: DnsName[];
}

export interface Shortfall {
  /** Path of the item in the request, e.g. `servers.0`. */
  path: string;
  resource: 'servers' | 'prefixes' | 'addresses' | 'floatingIps' | 'vlans' | 'dnsNames';
  requested: number;
  available: number;
  reason: string;
  /**
   * Set when the item can never be met as written (an unknown type,
   * datacenter or pool; an address outside its prefix): the error's code.
   * Absent for a capacity shortfall, which waiting or adding capacity can end.
   */
  code?: string;
}

export interface Feasibility {
  feasible: boolean;
  shortfalls: Shortfall[];
}

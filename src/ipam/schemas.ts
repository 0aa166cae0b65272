import { z } from 'zod';
import { labelsSchema } from '../core/names.js';

/**
 * IPAM module inputs and outputs. These schemas are the contract used by
 * workflow steps, the HTTP API and the CLI.
 */
const name = z.string().min(1).max(128).regex(/^[A-Za-z0-9][A-Za-z0-9._:/-]*$/, 'use letters, digits and . _ : / -');
export const ScopeSchema = name.describe('datacenter or routing domain the prefix or pool belongs to');
export const HolderSchema = z.string().min(1).max(256).describe('who holds the allocation, e.g. stack:web/res:db-0');
export const KeySchema = z.string().min(1).max(256).describe('idempotency key: the same key returns the same allocation');
export const HoldSchema = z.object({
  reservationId: z.string().min(1),
  /** Released automatically at this time (ms) unless committed before. */
  expiresAt: z.number().int().positive(),
});
export type Hold = z.infer<typeof HoldSchema>;

export const PrefixKindSchema = z.enum(['container', 'network', 'floating']);
export type PrefixKind = z.infer<typeof PrefixKindSchema>;

export const ReservedRangeInputSchema = z.object({
  start: z.string(),
  end: z.string().optional(),
  reason: z.string().max(128).default('reserved'),
});

export const CreatePrefixSchema = z.object({
  cidr: z.string(),
  scope: ScopeSchema,
  kind: PrefixKindSchema.default('network'),
  /** Gateway address: reserved, never handed out. */
  gateway: z.string().optional(),
  /** Extra reserved ranges (e.g. a DHCP range). */
  reserved: z.array(ReservedRangeInputSchema).max(1024).default([]),
  /** DHCP range, reserved from allocation. */
  dhcpRange: z.object({ start: z.string(), end: z.string() }).optional(),
  description: z.string().max(1024).default(''),
  labels: labelsSchema.default({}),
});
export type CreatePrefixInput = z.input<typeof CreatePrefixSchema>;

export const ReservedRangeSchema = z.object({ start: z.string(), end: z.string(), reason: z.string() });
export const PrefixSchema = z.object({
  id: z.string(),
  scope: z.string(),
  family: z.union([z.literal(4), z.literal(6)]),
  cidr: z.string(),
  length: z.number().int(),
  parentId: z.string().nullable(),
  kind: PrefixKindSchema,
  gateway: z.string().nullable(),
  reserved: z.array(ReservedRangeSchema),
  holder: z.string().nullable(),
  reservationId: z.string().nullable(),
  expiresAt: z.number().nullable(),
  description: z.string(),
  labels: z.record(z.string(), z.string()),
  createdAt: z.number(),
});
export type Prefix = z.infer<typeof PrefixSchema>;

export const AllocatePrefixSchema = z.object({
  parentId: z.string().min(1),
  /** Length of the child prefix, e.g. 24 or 64. */
  length: z.number().int().min(0).max(128),
  holder: HolderSchema,
  kind: PrefixKindSchema.default('network'),
  gateway: z.enum(['none', 'first']).default('none').describe('first: reserve the first usable address as the gateway'),
  description: z.string().max(1024).default(''),
  key: KeySchema.optional(),
  hold: HoldSchema.optional(),
});
export type AllocatePrefixInput = z.input<typeof AllocatePrefixSchema>;

export const AllocateAddressSchema = z.object({
  prefixId: z.string().min(1),
  holder: HolderSchema,
  /** A requested address; without it, the next free one. */
  address: z.string().optional(),
  /** With `address`: take the next free one if it is taken instead of failing. */
  fallback: z.boolean().default(false),
  /** Bulk: this many addresses, all or none. */
  count: z.number().int().min(1).max(4096).default(1),
  key: KeySchema.optional(),
  hold: HoldSchema.optional(),
});
export type AllocateAddressInput = z.input<typeof AllocateAddressSchema>;

export const AddressSchema = z.object({
  id: z.string(),
  prefixId: z.string(),
  family: z.union([z.literal(4), z.literal(6)]),
  address: z.string(),
  /** Address with the prefix length, e.g. 10.0.0.5/24. */
  cidr: z.string(),
  holder: z.string(),
  target: z.string().nullable(),
  reservationId: z.string().nullable(),
  expiresAt: z.number().nullable(),
  createdAt: z.number(),
});
export type Address = z.infer<typeof AddressSchema>;

export const VlanPoolKindSchema = z.enum(['vlan', 'vni']);
export const VLAN_MIN = 1;
export const VLAN_MAX = 4094;
export const VNI_MAX = 16_777_215;

export const CreateVlanPoolSchema = z.object({
  name,
  scope: ScopeSchema,
  kind: VlanPoolKindSchema.default('vlan'),
  min: z.number().int().optional(),
  max: z.number().int().optional(),
  /** Ids never handed out: single ids or [from, to] ranges. */
  reserved: z.array(z.union([z.number().int(), z.tuple([z.number().int(), z.number().int()])])).max(4096).default([]),
});
export type CreateVlanPoolInput = z.input<typeof CreateVlanPoolSchema>;

export const VlanPoolSchema = z.object({
  id: z.string(),
  name: z.string(),
  scope: z.string(),
  kind: VlanPoolKindSchema,
  min: z.number().int(),
  max: z.number().int(),
  reserved: z.array(z.tuple([z.number().int(), z.number().int()])),
  createdAt: z.number(),
});
export type VlanPool = z.infer<typeof VlanPoolSchema>;

export const AllocateVlanSchema = z.object({
  poolId: z.string().min(1),
  holder: HolderSchema,
  /** A requested id; without it, the next free one. */
  vlan: z.number().int().optional(),
  fallback: z.boolean().default(false),
  count: z.number().int().min(1).max(4094).default(1),
  key: KeySchema.optional(),
  hold: HoldSchema.optional(),
});
export type AllocateVlanInput = z.input<typeof AllocateVlanSchema>;

export const VlanAllocationSchema = z.object({
  id: z.string(),
  poolId: z.string(),
  vlan: z.number().int(),
  holder: z.string(),
  reservationId: z.string().nullable(),
  expiresAt: z.number().nullable(),
  createdAt: z.number(),
});
export type VlanAllocation = z.infer<typeof VlanAllocationSchema>;

export const UtilizationSchema = z.object({
  id: z.string(),
  /** Total ids or addresses (a string: IPv6 sizes exceed 2^53). */
  size: z.string(),
  reserved: z.string(),
  allocated: z.string(),
  free: z.string(),
  /** Allocated / (size − reserved), 0..100. */
  percent: z.number(),
});
export type Utilization = z.infer<typeof UtilizationSchema>;

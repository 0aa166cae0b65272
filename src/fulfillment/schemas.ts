import { z } from 'zod';

/**
 * Cluster fulfillment documents (learned from OSAC's fulfillment API,
 * `osac.public.v1`: ClusterTemplate, Cluster with spec/status, node sets,
 * template parameters). One schema gives validation, types and OpenAPI.
 */
const Slug = z.string().min(1).max(63).regex(/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/, 'use lower-case letters, digits and - (a DNS label, e.g. ocp-small)');
const TemplateId = z.string().min(1).max(64).regex(/^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$/, 'use lower-case letters, digits and . _ - (e.g. ocp-4.17-small)');
const Cidr = z.string().regex(/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/, 'an IPv4 CIDR like 10.128.0.0/14');

export const ParamTypeSchema = z.enum(['string', 'integer', 'number', 'boolean']);
export type ParamType = z.infer<typeof ParamTypeSchema>;

export const TemplateParameterSchema = z.strictObject({
  name: z.string().min(1).max(64).regex(/^[a-zA-Z_][a-zA-Z0-9_]*$/, 'a parameter name is letters, digits and _'),
  title: z.string().max(128).default(''),
  description: z.string().max(4096).default(''),
  required: z.boolean().default(false),
  type: ParamTypeSchema.default('string'),
  default: z.union([z.string(), z.number(), z.boolean()]).optional(),
});
export type TemplateParameter = z.output<typeof TemplateParameterSchema>;

/** A node set names a bare-metal host type (inventory server type) or a VM flavor, never both. */
export const TemplateNodeSetSchema = z.strictObject({
  hostType: z.string().min(1).max(64).optional(),
  flavor: z.string().min(1).max(64).optional(),
  size: z.number().int().min(1).max(1000),
  role: z.enum(['control-plane', 'worker']).default('worker'),
}).refine((n) => !!n.hostType !== !!n.flavor, { message: 'give exactly one of hostType (bare metal) or flavor (VM)' });
export type TemplateNodeSet = z.output<typeof TemplateNodeSetSchema>;

export const ManifestSchema = z.strictObject({
  /** Path inside the cluster's folder in the Git repository, e.g. `operators/gpu.yaml`. */
  path: z.string().min(1).max(256).regex(/^(?!\/)(?!.*\.\.)[A-Za-z0-9._/-]+$/, 'a relative path without ..'),
  /** Text with `${param}`, `${cluster.name}`, `${cluster.apiUrl}`, `${cluster.baseDomain}` placeholders. */
  content: z.string().max(256 * 1024),
});

export const ClusterTemplateSchema = z.strictObject({
  apiVersion: z.literal('infraflow.dev/v1').default('infraflow.dev/v1'),
  kind: z.literal('ClusterTemplate').default('ClusterTemplate'),
  id: TemplateId,
  title: z.string().min(1).max(128),
  /** Markdown. */
  description: z.string().max(64 * 1024).default(''),
  parameters: z.array(TemplateParameterSchema).max(64).default([]),
  nodeSets: z.record(Slug, TemplateNodeSetSchema).refine((m) => Object.keys(m).length > 0, 'a template needs at least one node set'),
  network: z.strictObject({ podCidr: Cidr.default('10.128.0.0/14'), serviceCidr: Cidr.default('172.30.0.0/16') }).prefault({}),
  /** Hub selection: every label must match. */
  hubSelector: z.record(z.string(), z.string()).default({}),
  releaseImage: z.string().max(256).default('quay.io/openshift-release-dev/ocp-release:4.17.0-x86_64'),
  storage: z.strictObject({ sizeGb: z.number().int().min(1).max(100_000).default(100), type: z.string().default('standard') }).prefault({}),
  postInstall: z.strictObject({ manifests: z.array(ManifestSchema).max(200).default([]) }).prefault({}),
});
export type ClusterTemplateInput = z.input<typeof ClusterTemplateSchema>;
export type ClusterTemplate = z.output<typeof ClusterTemplateSchema>;

export const NodeSetRequestSchema = z.strictObject({
  hostType: z.string().min(1).max(64).optional(),
  flavor: z.string().min(1).max(64).optional(),
  size: z.number().int().min(1, 'size must be at least 1').max(1000, 'size must be at most 1000'),
});

export const ClusterSpecSchema = z.strictObject({
  template: TemplateId,
  templateParameters: z.record(z.string(), z.unknown()).default({}),
  /** Sizes (and optionally host types) per node set; sets not named come from the template. */
  nodeSets: z.record(Slug, NodeSetRequestSchema).default({}),
  sshPublicKey: z.string().max(16 * 1024).optional(),
  /** Write-only: sealed at rest, never returned. */
  pullSecret: z.string().max(64 * 1024).optional(),
  releaseImage: z.string().max(256).optional(),
  network: z.strictObject({ podCidr: Cidr.optional(), serviceCidr: Cidr.optional() }).optional(),
});

export const CreateClusterSchema = z.strictObject({
  name: Slug,
  project: z.string().min(1).max(128),
  spec: ClusterSpecSchema,
  /** `reserve` (default): refuse unless everything is free now, and hold it from acceptance; `wait`: wait for capacity, holding nothing while waiting. */
  capacity: z.enum(['reserve', 'wait']).default('reserve'),
  /** How long an order may wait for capacity (capacity: wait). */
  waitTimeoutMs: z.number().int().min(1_000).max(7 * 24 * 3600_000).default(24 * 3600_000),
  labels: z.record(z.string().max(63), z.string().max(253)).default({}),
});
export type CreateClusterInput = z.input<typeof CreateClusterSchema>;
export type CreateCluster = z.output<typeof CreateClusterSchema>;

/** PATCH: only node set sizes change; template, parameters and host types are immutable. */
export const PatchClusterSchema = z.strictObject({
  spec: z.strictObject({
    template: z.string().optional(),
    templateParameters: z.record(z.string(), z.unknown()).optional(),
    nodeSets: z.record(Slug, NodeSetRequestSchema.or(z.null())).optional(),
    sshPublicKey: z.string().optional(),
    releaseImage: z.string().optional(),
    network: z.unknown().optional(),
    pullSecret: z.string().optional(),
  }),
});
export type PatchCluster = z.output<typeof PatchClusterSchema>;

export type ClusterState = 'PendingApproval' | 'Progressing' | 'Ready' | 'Failed' | 'Deleting' | 'Deleted';

export const STAGES = ['accepted', 'agents', 'network', 'addresses', 'dns', 'storage', 'install', 'controlPlane', 'workers', 'postInstall', 'validation', 'ready'] as const;
export type StageName = (typeof STAGES)[number];
export const SCALE_STAGES = ['accepted', 'agents', 'network', 'addresses', 'install', 'workers', 'drain', 'postInstall', 'validation', 'ready'] as const;
export const DELETE_STAGES = ['accepted', 'postInstall', 'install', 'storage', 'dns', 'addresses', 'network', 'agents', 'ready'] as const;

export interface Condition { type: string; status: 'True' | 'False' | 'Unknown'; reason: string; message: string; lastTransitionTime: number }

export interface Stage {
  runId: string;
  operation: 'create' | 'scale' | 'delete';
  name: string;
  status: 'pending' | 'running' | 'waiting' | 'succeeded' | 'failed' | 'skipped';
  startedAt: number | null;
  finishedAt: number | null;
  waitingOn: string | null;
  message: string | null;
  /** Milliseconds this stage usually takes (p90 of its history), null without history. */
  usualMs: number | null;
  /** Expected end (startedAt + usualMs) while running. */
  eta: number | null;
  /** Running past its usual time (and at least a minute, or twice the usual). */
  stuck: boolean;
  error: { code: string; message: string; backend?: unknown } | null;
  logs: { at: number; message: string }[];
}

export interface NodeSetStatus { hostType: string | null; flavor: string | null; size: number; ready: number; nodes: string[] }

export interface ClusterStatus {
  state: ClusterState;
  conditions: Condition[];
  apiUrl: string | null;
  consoleUrl: string | null;
  hub: string | null;
  hubReason: string | null;
  nodeSets: Record<string, NodeSetStatus>;
  /** The operation in progress or last run (create, scale, delete) and its run. */
  operation: 'create' | 'scale' | 'delete' | null;
  runId: string | null;
  message: string | null;
}

export interface Cluster {
  id: string;
  name: string;
  project: string;
  labels: Record<string, string>;
  revision: number;
  spec: Omit<z.output<typeof ClusterSpecSchema>, 'pullSecret'> & { pullSecret?: '[write-only]' };
  status: ClusterStatus;
  createdAt: number;
  updatedAt: number;
}

import type { z } from 'zod';

/**
 * The resource model and the provider contract (Pulumi-style: check, diff,
 * create, read, update, delete, observe). Semantics are written down in
 * docs/providers.md; the contract test suite checks them for every provider.
 */

export type Phase = 'pending' | 'creating' | 'ready' | 'updating' | 'deleting' | 'deleted' | 'failed';

export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  lastTransitionTime: number;
}

export interface ResourceStatus {
  phase: Phase;
  conditions: Condition[];
  /** Values other resources can reference: addresses, ids, endpoints. */
  outputs: Record<string, unknown>;
  /** The provider's id of the backing object, once created. */
  externalId?: string | null;
  observedGeneration: number;
  /** The spec last applied to the backend (what `observe` compares against). */
  appliedSpec?: Record<string, unknown> | null;
  /** One line about the last thing that happened (e.g. the failure message). */
  message?: string;
}

export interface Resource<S = Record<string, unknown>> {
  id: string;
  kind: string;
  name: string;
  project: string;
  spec: S;
  status: ResourceStatus;
  labels: Record<string, string>;
  /** What owns this resource, e.g. `stack:<id>`. */
  owner?: string | null;
  generation: number;
  createdAt: number;
  updatedAt: number;
}

/** Reason codes users of clouds know. */
export type ProviderErrorReason =
  | 'NoValidHost' | 'QuotaExceeded' | 'CapacityExhausted' | 'Timeout' | 'BackendUnavailable'
  | 'InvalidSpec' | 'NotFound' | 'Conflict' | 'Internal';

export interface ProviderCallContext {
  /** Same key twice → one effect. */
  idempotencyKey: string;
  signal?: AbortSignal;
  /** Project and resource identity, for names and tags on the backend. */
  project: string;
  resourceId: string;
  resourceName: string;
}

export interface CreateResult {
  externalId: string;
  /** True when the object is already ready; otherwise the caller polls with `read`. */
  ready: boolean;
  outputs?: Record<string, unknown>;
}

/** Operations a fault can be injected into and latency is modelled for. */
export type ProviderOp = 'create' | 'update' | 'delete';

export interface ReadResult {
  /** 'absent' when the backend no longer has the object (drift or deleted). */
  state: 'creating' | 'ready' | 'updating' | 'deleting' | 'absent' | 'failed';
  outputs: Record<string, unknown>;
  /** The spec as the backend sees it, for drift detection. */
  observed?: Record<string, unknown>;
  conditions?: Omit<Condition, 'lastTransitionTime'>[];
  message?: string;
  failureReason?: ProviderErrorReason;
  /**
   * Secret values (kubeconfig, admin password). The resource store keeps them
   * apart from outputs (encrypted when a key is configured) and never returns
   * them from `get`/`list`.
   */
  secrets?: Record<string, string>;
}

export interface DiffResult {
  /** Fields that changed. */
  changed: string[];
  /** Changed fields that cannot be updated in place. Non-empty → replace. */
  replaceFields: string[];
}

export interface KindHandler<S = any> {
  kind: string;
  /** Schema of the spec: validation, types and OpenAPI from one source. */
  schema: z.ZodType<S>;
  /** Spec fields whose change forces replacement. */
  replaceOnChange: readonly string[];
  /** Extra semantic validation beyond the schema (throws ValidationError). */
  validate?(spec: S): void;
  create(spec: S, ctx: ProviderCallContext): Promise<CreateResult>;
  read(externalId: string, ctx: Omit<ProviderCallContext, 'idempotencyKey'>): Promise<ReadResult>;
  update?(externalId: string, spec: S, previous: S, ctx: ProviderCallContext): Promise<{ ready: boolean; outputs?: Record<string, unknown> }>;
  /** Deleting an absent object succeeds (idempotent). */
  delete(externalId: string, ctx: ProviderCallContext): Promise<{ done: boolean }>;
  /**
   * Optional: what an update would do, beyond `replaceOnChange` (e.g. a volume
   * may grow in place but not shrink). Default: `diffSpecs(previous, next, replaceOnChange)`.
   */
  diff?(previous: S, next: S): DiffResult;
}

export interface Provider {
  name: string;
  kinds(): string[];
  handler(kind: string): KindHandler;
}

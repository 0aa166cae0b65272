import type { Rng } from '../../core/rng.js';
import type { Trx } from '../../store/store.js';
import type { Condition, ProviderErrorReason } from '../../resources/types.js';
import type { Quota, SimConfig } from './catalogue.js';
import type { SimObjectTable } from './migrations.js';

export type SimPhase = 'creating' | 'ready' | 'updating' | 'deleting' | 'failed' | 'deleted';
export type SimOp = 'create' | 'update' | 'delete';

export interface SimObject {
  id: string;
  kind: string;
  project: string;
  name: string;
  createKey: string;
  spec: Record<string, any>;
  actual: Record<string, any>;
  outputs: Record<string, any>;
  state: Record<string, any>;
  phase: SimPhase;
  op: SimOp | null;
  opStarted: number | null;
  opDue: number | null;
  opSimMs: number | null;
  stuck: boolean;
  opFail: { reason: ProviderErrorReason; message: string } | null;
  failure: { reason: ProviderErrorReason; message: string } | null;
  host: string | null;
  createdAt: number;
  updatedAt: number;
  deletedAt: number | null;
}

export function rowToObject(r: SimObjectTable): SimObject {
  return {
    id: r.id, kind: r.kind, project: r.project, name: r.name, createKey: r.create_key,
    spec: JSON.parse(r.spec), actual: JSON.parse(r.actual), outputs: JSON.parse(r.outputs), state: JSON.parse(r.state),
    phase: r.phase as SimPhase, op: r.op as SimOp | null, opStarted: r.op_started === null ? null : Number(r.op_started),
    opDue: r.op_due === null ? null : Number(r.op_due), opSimMs: r.op_sim_ms === null ? null : Number(r.op_sim_ms), stuck: Number(r.op_stuck) === 1,
    opFail: r.op_fail ? JSON.parse(r.op_fail) : null, failure: r.failure ? JSON.parse(r.failure) : null, host: r.host,
    createdAt: Number(r.created_at), updatedAt: Number(r.updated_at), deletedAt: r.deleted_at === null ? null : Number(r.deleted_at),
  };
}

/**
 * Optional hooks to take scarce things from the real allocators
 * (src/ipam, src/inventory; see backends.ts) instead of the simulator's own
 * pools. Allocations run inside the simulator's transaction (`trx`), so they
 * commit or roll back with the object; releases run after commit. Each call
 * carries an idempotency key. Returning `undefined` means "not mine": the
 * simulator falls back to its own pool.
 */
export interface SimBackends {
  /** Called once by SimDatacenter.init(), outside any transaction (resolve names to ids). */
  prepare?(): Promise<void>;
  /** Hypervisors (name, zone, vCPUs, RAM) from the inventory; synced into the simulator's hosts by init()/syncHosts(). */
  hypervisors?(): Promise<{ name: string; zone: string; vcpus: number; ramMb: number }[]>;
  allocatePrefix?(req: { pool?: string; length: number; family: 4 | 6; key: string; holder: string }, trx: Trx): Promise<{ cidr: string; ref: string } | undefined>;
  releasePrefix?(req: { ref: string; holder: string }): Promise<void>;
  allocateVlan?(req: { pool?: string; key: string; holder: string }, trx: Trx): Promise<{ vlan: number; ref: string } | undefined>;
  releaseVlan?(req: { ref: string; holder: string }): Promise<void>;
  allocateFloatingIp?(req: { pool: string; key: string; holder: string }, trx: Trx): Promise<{ address: string; ref: string } | undefined>;
  releaseFloatingIp?(req: { ref: string; holder: string }): Promise<void>;
  allocateMetalServer?(req: { serverType: string; datacenter?: string; key: string; holder: string }, trx: Trx): Promise<{ serverId: string; name: string; vcpus?: number; ramMb?: number; bmcAddress?: string | null } | undefined>;
  releaseMetalServer?(req: { serverId: string; holder: string }): Promise<void>;
  /** Bare-metal servers per server type the backend holds (all datacenters): how many, and how many are in use. */
  metalInventory?(): Promise<Record<string, { total: number; allocated: number }>>;
}

/** What a kind behaviour can do inside the simulator's transaction. */
export interface SimTx {
  trx: Trx;
  now: number;
  config: SimConfig;
  speed: number;
  /** Deterministic randomness for this call (seeded by the idempotency key). */
  rng: Rng;
  key: string;
  backends: SimBackends;
  /** Finds a live object of the kind(s) by id, or by name in the project (or the public catalogue). */
  find(kinds: string | string[], ref: string, project: string): Promise<SimObject | undefined>;
  /** Like find, but a missing reference is an InvalidSpec error naming the field. */
  must(kinds: string | string[], ref: string, project: string, field: string): Promise<SimObject>;
  listLive(kind: string): Promise<SimObject[]>;
  /** Takes the first free value `pick` returns from `pool`; CapacityExhausted when none. */
  allocate(pool: string, owner: string, pick: (taken: Set<string>) => string | undefined, what: string): Promise<string>;
  /** Takes a specific value; Conflict when someone else holds it. */
  allocateValue(pool: string, value: string, owner: string, what: string): Promise<void>;
  /** Releases everything held by the owner or its children (`owner/…`). */
  releaseOwner(owner: string): Promise<void>;
  /** Reserves CPU/RAM on a hypervisor; NoValidHost when none fits. Returns the host name. */
  place(owner: string, vcpus: number, ramMb: number, zone?: string): Promise<string>;
  save(obj: SimObject): Promise<void>;
  /** The project's quota (setQuota, else the configured default). */
  quota(project: string): Promise<Quota>;
  /** Runs `fn` after the transaction commits (releases in other areas). */
  afterCommit(fn: () => Promise<void>): void;
}

export interface BehaviourResult {
  outputs?: Record<string, any>;
  state?: Record<string, any>;
  host?: string | null;
  /** The operation will fail at its due time with this reason. */
  fail?: { reason: ProviderErrorReason; message: string };
  /**
   * Credentials the backend generated (random, e.g. a cluster's admin
   * password): stored with the object, sealed, never on SimObject; a view
   * gets them back with `ctx.credentials(id)`.
   */
  credentials?: Record<string, string>;
}

export interface View {
  /** Overrides the state derived from the phase (e.g. a workload with unschedulable pods is not ready). */
  state?: 'creating' | 'updating';
  outputs?: Record<string, any>;
  conditions?: Omit<Condition, 'lastTransitionTime'>[];
  secrets?: Record<string, string>;
}

export interface Behaviour {
  /** Prefix of provider ids. */
  prefix: string;
  /** Progress reasons shown while creating (in order). */
  stages?: string[];
  deleteStages?: string[];
  create?(tx: SimTx, obj: SimObject): Promise<BehaviourResult>;
  update?(tx: SimTx, obj: SimObject, next: Record<string, any>, previous: Record<string, any>): Promise<BehaviourResult>;
  /** Called when the pending operation completes successfully. */
  complete?(tx: SimTx, obj: SimObject, op: SimOp): Promise<void>;
  /** Refuses a delete while the object is in use (Conflict). */
  checkDelete?(tx: SimTx, obj: SimObject): Promise<void>;
  /** Frees what the object holds beyond allocations/placements (detach volumes…). */
  release?(tx: SimTx, obj: SimObject): Promise<void>;
  /** Dynamic view at read time (health, pods, members). */
  view?(ctx: ViewContext, obj: SimObject): Promise<View>;
}

export interface ViewContext {
  now: number;
  speed: number;
  seed: number;
  listLive(kind: string): Promise<SimObject[]>;
  get(id: string): Promise<SimObject | undefined>;
  /** Addresses of live, powered-on servers and bare-metal instances. */
  liveAddresses(): Promise<Set<string>>;
  /** The object's stored credentials; an object without any (made before they were stored) gets `generate()`'s, stored once. */
  credentials(id: string, generate: () => Record<string, string>): Promise<Record<string, string>>;
}

import { ConflictError, InfraflowError, NotFoundError, ValidationError, ExhaustedError } from '../core/errors.js';
import { systemClock, type Clock } from '../core/clock.js';
import { newId } from '../core/ids.js';
import type { Logger } from '../core/log.js';
import type { SecretBox } from '../core/secrets.js';
import type { EngineApi, RunInfo } from '../engine/types.js';
import type { Allocations } from '../allocation/reservations.js';
import type { AllocationRequestInput, Feasibility } from '../allocation/schemas.js';
import type { Inventory } from '../inventory/inventory.js';
import { hotPoolStatus } from '../inventory/hotpool.js';
import type { Ipam } from '../ipam/ipam.js';
import type { ProviderRegistry } from '../resources/registry.js';
import type { Store } from '../store/store.js';
import { parseInput } from '../inventory/validate.js';
import type { ClusterBackend } from './backend.js';
import type { GitOps } from './git.js';
import type { FulClusterTable, FulStageTable } from './migrations.js';
import './migrations.js';
import {
  CreateClusterSchema, PatchClusterSchema, STAGES, SCALE_STAGES, DELETE_STAGES,
  type Cluster, type ClusterState, type ClusterStatus, type ClusterTemplate, type Condition, type CreateClusterInput, type NodeSetStatus, type Stage,
} from './schemas.js';
import { parseTemplate, resolveParameters } from './templates.js';

export const CREATE_WORKFLOW = 'fulfillment.cluster.create';
export const SCALE_WORKFLOW = 'fulfillment.cluster.scale';
export const DELETE_WORKFLOW = 'fulfillment.cluster.delete';

export interface FulfillmentConfig {
  datacenter: string;
  /** VLAN pool (id or name) the clusters' L2 networks take a VLAN from. */
  vlanPool: string;
  /** Parent prefix (id or `<scope>:<cidr>`) the clusters' machine networks are carved from. */
  machineNetworkParent: string;
  machineNetworkLength: number;
  /** Floating IP pool (id or `<scope>:<cidr>`) for the API and ingress VIPs. */
  floatingPool: string;
  baseDomain: string;
  /** Project that owns the DNS zone, records and volumes in the provider layer. */
  providerProject: string;
  /** How often stages poll the backends (engine clock ms). */
  pollMs: number;
  /** Per-stage poll deadline. */
  stageTimeoutMs: number;
  reservationTtlMs: number;
  /** Orders and scalings to more nodes than this need an approval (null: never). */
  approvalAboveNodes: number | null;
  /** Replacement rounds for agents that fail install before the stage fails. */
  maxReplacements: number;
  /** Retries of one backend call (transient faults). */
  backendAttempts: number;
  backendRetryMs: number;
}

export const DEFAULT_CONFIG: FulfillmentConfig = {
  datacenter: 'dc1', vlanPool: 'tenant', machineNetworkParent: 'dc1:10.128.0.0/16', machineNetworkLength: 26, floatingPool: 'public:203.0.113.0/24',
  baseDomain: 'clusters.example.com', providerProject: 'fulfillment', pollMs: 2_000, stageTimeoutMs: 6 * 3600_000, reservationTtlMs: 30 * 60_000,
  approvalAboveNodes: null, maxReplacements: 4, backendAttempts: 10, backendRetryMs: 500,
};

export interface FulfillmentOptions {
  store: Store;
  engine: EngineApi;
  clock?: Clock;
  logger?: Logger;
  inventory: Inventory;
  ipam: Ipam;
  allocations: Allocations;
  registry: ProviderRegistry;
  backend: ClusterBackend;
  git: GitOps;
  secrets: SecretBox;
  config?: Partial<FulfillmentConfig>;
}

/** A resolved node set of an order: template defaults with the order's sizes. */
export interface PlannedNodeSet { name: string; hostType: string | null; flavor: string | null; size: number; role: 'control-plane' | 'worker' }

/** Everything a run needs from the order, snapshotted at its start (journaled). */
export interface OrderPlan {
  clusterId: string;
  name: string;
  project: string;
  revision: number;
  template: string;
  parameters: Record<string, string | number | boolean>;
  nodeSets: PlannedNodeSet[];
  releaseImage: string;
  network: { podCidr: string; serviceCidr: string };
  hubSelector: Record<string, string>;
  storage: { sizeGb: number; type: string };
  manifests: { path: string; content: string }[];
  capacity: 'reserve' | 'wait';
  waitTimeoutMs: number;
  needsApproval: boolean;
  baseDomain: string;
  datacenter: string;
}

const holderOf = (id: string) => `cluster:${id}`;

/**
 * Cluster fulfillment: templates, orders (clusters), hubs and host pools,
 * and the staged durable workflows that build, scale and delete clusters.
 * The API and CLI call these methods only.
 */
export class Fulfillment {
  readonly store: Store;
  readonly engine: EngineApi;
  readonly clock: Clock;
  readonly inventory: Inventory;
  readonly ipam: Ipam;
  readonly allocations: Allocations;
  readonly registry: ProviderRegistry;
  readonly backend: ClusterBackend;
  readonly git: GitOps;
  readonly config: FulfillmentConfig;
  readonly logger: Logger | undefined;
  private readonly secrets: SecretBox;
  private usualCache = new Map<string, { at: number; ms: number | null }>();
  private poolIds: { vlan?: string; parent?: string; floating?: string } = {};

  constructor(opts: FulfillmentOptions) {
    this.store = opts.store;
    this.engine = opts.engine;
    this.clock = opts.clock ?? systemClock;
    this.logger = opts.logger;
    this.inventory = opts.inventory;
    this.ipam = opts.ipam;
    this.allocations = opts.allocations;
    this.registry = opts.registry;
    this.backend = opts.backend;
    this.git = opts.git;
    this.secrets = opts.secrets;
    this.config = { ...DEFAULT_CONFIG, ...opts.config };
  }

  // ------------------------------------------------------------ templates

  async putTemplate(input: string | Record<string, unknown>): Promise<ClusterTemplate & { revision: number }> {
    const t = parseTemplate(input);
    for (const [name, ns] of Object.entries(t.nodeSets)) {
      if (ns.hostType) await this.inventory.getServerType(ns.hostType).catch(() => {
        throw new ValidationError('fulfillment.unknown_host_type', `nodeSets.${name}.hostType: unknown host type "${ns.hostType}"; the inventory has no such server type`, { details: { field: `nodeSets.${name}.hostType` } });
      });
    }
    const now = this.clock.now();
    const source = typeof input === 'string' ? input : JSON.stringify(input);
    const cur = await this.store.db.selectFrom('ful_templates').select(['revision']).where('id', '=', t.id).executeTakeFirst();
    if (cur) await this.store.db.updateTable('ful_templates').set({ doc: JSON.stringify(t), source, revision: cur.revision + 1, updated_at: now }).where('id', '=', t.id).execute();
    else await this.store.db.insertInto('ful_templates').values({ id: t.id, doc: JSON.stringify(t), source, revision: 1, created_at: now, updated_at: now }).onConflict((oc) => oc.column('id').doNothing()).execute();
    return this.getTemplate(t.id);
  }

  async getTemplate(id: string): Promise<ClusterTemplate & { revision: number }> {
    const r = await this.store.db.selectFrom('ful_templates').selectAll().where('id', '=', id).executeTakeFirst();
    if (!r) throw new NotFoundError('fulfillment.template_not_found', `template ${id} does not exist; list the templates to pick one`, { details: { field: 'id' } });
    return { ...(JSON.parse(r.doc) as ClusterTemplate), revision: r.revision };
  }

  async listTemplates(): Promise<(ClusterTemplate & { revision: number })[]> {
    const rows = await this.store.db.selectFrom('ful_templates').selectAll().orderBy('id').execute();
    return rows.map((r) => ({ ...(JSON.parse(r.doc) as ClusterTemplate), revision: r.revision }));
  }

  async deleteTemplate(id: string): Promise<void> {
    await this.getTemplate(id);
    const used = await this.store.db.selectFrom('ful_clusters').select('id').where('template', '=', id).where('deleted_at', 'is', null).executeTakeFirst();
    if (used) throw new ConflictError('fulfillment.template_in_use', `template ${id} is used by cluster ${used.id}; delete its clusters first`);
    await this.store.db.deleteFrom('ful_templates').where('id', '=', id).execute();
  }

  // ------------------------------------------------------- hubs and pools

  async listHubs() {
    return this.inventory.listHubs();
  }

  /** Host pools: free agents per host type and datacenter, with the hot-pool policy (minimum kept ready). */
  async hostPools(): Promise<{ hostType: string; datacenter: string; available: number; total: number; byState: Record<string, number>; minReady: number | null; pending: number; deficit: number }[]> {
    const util = await this.inventory.utilization();
    const policies = await this.inventory.listHotPoolPolicies();
    const out = [];
    for (const u of util) {
      const p = policies.find((x) => x.type === u.type && x.datacenter === u.datacenter);
      const st = p ? await hotPoolStatus(this.inventory, p).catch(() => null) : null;
      out.push({ hostType: u.type, datacenter: u.datacenter, available: u.available, total: u.total, byState: u.byState as Record<string, number>, minReady: p?.minReady ?? null, pending: st?.pending ?? 0, deficit: st?.deficit ?? 0 });
    }
    return out;
  }

  // -------------------------------------------------------------- orders

  private async ids(): Promise<{ vlan: string; parent: string; floating: string }> {
    if (!this.poolIds.vlan) this.poolIds.vlan = (await this.ipam.getVlanPool(this.config.vlanPool)).id;
    if (!this.poolIds.parent) this.poolIds.parent = await this.ipam.resolvePrefixRef(this.config.machineNetworkParent);
    if (!this.poolIds.floating) this.poolIds.floating = await this.ipam.resolvePrefixRef(this.config.floatingPool);
    return this.poolIds as { vlan: string; parent: string; floating: string };
  }

  /** Validates node sets against the template and the inventory; returns the planned sets. */
  private async planNodeSets(t: ClusterTemplate, req: Record<string, { hostType?: string | undefined; flavor?: string | undefined; size: number } | null>, prev?: PlannedNodeSet[]): Promise<PlannedNodeSet[]> {
    const base: PlannedNodeSet[] = prev ? structuredClone(prev) : Object.entries(t.nodeSets).map(([name, n]) => ({ name, hostType: n.hostType ?? null, flavor: n.flavor ?? null, size: n.size, role: n.role }));
    for (const [name, r] of Object.entries(req)) {
      const field = `spec.nodeSets.${name}`;
      const cur = base.find((b) => b.name === name);
      if (r === null) {
        if (!cur) throw new ValidationError('fulfillment.unknown_node_set', `${field}: the cluster has no node set ${name}`, { details: { field } });
        if (cur.role === 'control-plane') throw new ValidationError('fulfillment.invalid_node_sets', `${field}: the control-plane node set cannot be removed`, { details: { field } });
        base.splice(base.indexOf(cur), 1);
        continue;
      }
      if (cur) {
        if ((r.hostType && r.hostType !== cur.hostType) || (r.flavor && r.flavor !== cur.flavor)) {
          throw new ValidationError(prev ? 'fulfillment.immutable_field' : 'fulfillment.invalid_node_sets', `${field}.${r.hostType ? 'hostType' : 'flavor'}: a node set's host type is fixed (${cur.hostType ?? cur.flavor}); add a new node set instead`, { details: { field: `${field}.${r.hostType ? 'hostType' : 'flavor'}` } });
        }
        cur.size = r.size;
      } else {
        if (!!r.hostType === !!r.flavor) throw new ValidationError('fulfillment.invalid_node_sets', `${field}: a new node set needs exactly one of hostType (bare metal) or flavor (VM)`, { details: { field } });
        base.push({ name, hostType: r.hostType ?? null, flavor: r.flavor ?? null, size: r.size, role: 'worker' });
      }
    }
    if (!base.length) throw new ValidationError('fulfillment.invalid_node_sets', 'spec.nodeSets: a cluster keeps at least one node set', { details: { field: 'spec.nodeSets' } });
    for (const b of base) {
      if (b.hostType) {
        await this.inventory.getServerType(b.hostType).catch(() => {
          throw new ValidationError('fulfillment.unknown_host_type', `spec.nodeSets.${b.name}.hostType: unknown host type "${b.hostType}"; the inventory has no such server type`, { details: { field: `spec.nodeSets.${b.name}.hostType` } });
        });
      }
      if (b.flavor) this.registry.resolve('compute/Server');
    }
    return base;
  }

  /** The allocation request of a whole order (servers of bare-metal node sets, VLAN, machine network, VIPs, DNS names). */
  async allocationRequest(name: string, sets: PlannedNodeSet[]): Promise<AllocationRequestInput> {
    const ids = await this.ids();
    return {
      servers: sets.filter((s) => s.hostType).map((s) => ({ type: s.hostType!, datacenter: this.config.datacenter, count: s.size })),
      vlans: [{ poolId: ids.vlan }],
      prefixes: [{ parentId: ids.parent, length: this.config.machineNetworkLength, gateway: 'first' }],
      floatingIps: [{ poolId: ids.floating, count: 2 }],
      dnsNames: [{ zone: this.config.baseDomain, name: `api.${name}` }, { zone: this.config.baseDomain, name: `apps.${name}` }],
    };
  }

  private totalNodes(sets: PlannedNodeSet[]): number {
    return sets.reduce((a, s) => a + s.size, 0);
  }

  /** Validates an order (nothing is written); with the plan and what it would allocate. */
  async check(input: CreateClusterInput): Promise<{ plan: Omit<OrderPlan, 'clusterId' | 'revision'>; request: AllocationRequestInput; feasibility: Feasibility }> {
    const o = parseInput(CreateClusterSchema, input, 'fulfillment');
    const t = await this.getTemplate(o.spec.template).catch((e) => {
      if (e instanceof NotFoundError) throw new ValidationError('fulfillment.unknown_template', `spec.template: unknown template "${o.spec.template}"; list the templates to pick one`, { details: { field: 'spec.template' } });
      throw e;
    });
    const parameters = resolveParameters(t, o.spec.templateParameters);
    const nodeSets = await this.planNodeSets(t, o.spec.nodeSets);
    const request = await this.allocationRequest(o.name, nodeSets);
    const feasibility = await this.allocations.feasibility(request);
    const plan = {
      name: o.name, project: o.project, template: t.id, parameters, nodeSets,
      releaseImage: o.spec.releaseImage ?? t.releaseImage,
      network: { podCidr: o.spec.network?.podCidr ?? t.network.podCidr, serviceCidr: o.spec.network?.serviceCidr ?? t.network.serviceCidr },
      hubSelector: t.hubSelector, storage: t.storage, manifests: t.postInstall.manifests,
      capacity: o.capacity, waitTimeoutMs: o.waitTimeoutMs,
      needsApproval: this.config.approvalAboveNodes !== null && this.totalNodes(nodeSets) > this.config.approvalAboveNodes,
      baseDomain: this.config.baseDomain, datacenter: this.config.datacenter,
    };
    return { plan, request, feasibility };
  }

  /**
   * Accepts an order: validates it against its template and the inventory,
   * checks feasibility (one reason per shortfall), takes the reservation
   * (capacity: reserve) or accepts without holding anything (capacity:
   * wait), records the cluster and starts its create run. A refused order
   * creates nothing.
   */
  async create(input: CreateClusterInput, actor = 'system'): Promise<Cluster> {
    const o = parseInput(CreateClusterSchema, input, 'fulfillment');
    const { plan, request, feasibility } = await this.check(o);
    const dup = await this.store.db.selectFrom('ful_clusters').select('id').where('project', '=', o.project).where('name', '=', o.name).where('deleted_at', 'is', null).executeTakeFirst();
    if (dup) throw new ConflictError('fulfillment.cluster_exists', `name: cluster ${o.name} already exists in project ${o.project} (${dup.id})`, { details: { field: 'name', id: dup.id } });
    const never = feasibility.shortfalls.filter((s) => s.code);
    if (never.length) throw infeasible(never, true);
    const id = newId('cls', this.clock.now());
    let reservationId: string | null = null;
    if (!plan.needsApproval && o.capacity === 'reserve') {
      if (!feasibility.feasible) throw infeasible(feasibility.shortfalls, false);
      try {
        reservationId = (await this.allocations.reserve({ ...request, holder: holderOf(id), ttlMs: this.config.reservationTtlMs, key: `${holderOf(id)}:accept` })).id;
      } catch (e) {
        if (e instanceof ExhaustedError) throw infeasible([{ path: String(e.details?.field ?? ''), resource: 'servers', requested: 0, available: 0, reason: e.message }], false);
        throw e;
      }
    }
    const now = this.clock.now();
    const state: ClusterState = plan.needsApproval ? 'PendingApproval' : 'Progressing';
    const status: ClusterStatus = {
      state, apiUrl: null, consoleUrl: null, hub: null, hubReason: null, operation: 'create', runId: `ful-${id}-create`, message: null,
      conditions: [cond('Accepted', 'True', plan.needsApproval ? 'WaitingForApproval' : reservationId ? 'Reserved' : 'WaitingForCapacity', plan.needsApproval ? `${this.totalNodes(plan.nodeSets)} nodes need an approval (more than ${this.config.approvalAboveNodes})` : reservationId ? `reservation ${reservationId} holds agents, VLAN, machine network, VIPs and DNS names until ${new Date(now + this.config.reservationTtlMs).toISOString()}` : 'accepted; waiting for capacity, holding nothing', now), cond('Ready', 'False', 'Progressing', 'the cluster is being built', now)],
      nodeSets: nodeSetStatus(plan.nodeSets),
    };
    const spec = { ...o.spec, pullSecret: undefined };
    const secrets = o.spec.pullSecret ? this.secrets.sealJson({ pullSecret: o.spec.pullSecret }, `cluster:${id}`) : null;
    try {
      await this.store.db.insertInto('ful_clusters').values({
        id, name: o.name, project: o.project, template: plan.template, labels: JSON.stringify(o.labels), spec: JSON.stringify({ ...spec, plan: { ...plan, clusterId: id, revision: 1, reservationId } }),
        status: JSON.stringify(status), state, revision: 1, secrets, created_at: now, updated_at: now, deleted_at: null,
      }).execute();
    } catch (e) {
      if (reservationId) await this.allocations.abort(reservationId, 'the order could not be recorded').catch(() => {});
      throw e;
    }
    await this.engine.start(CREATE_WORKFLOW, { clusterId: id }, { id: `ful-${id}-create`, labels: { cluster: id, project: o.project, operation: 'create' }, concurrencyKey: holderOf(id) });
    await this.publish('cluster.accepted', id, { name: o.name, project: o.project, template: plan.template, state, actor, reservation: reservationId });
    return this.get(id);
  }

  private row(id: string) {
    return this.store.db.selectFrom('ful_clusters').selectAll().where('id', '=', id).executeTakeFirst();
  }

  async getRow(id: string): Promise<FulClusterTable> {
    const r = await this.row(id);
    if (!r) throw new NotFoundError('fulfillment.cluster_not_found', `cluster ${id} does not exist`, { details: { field: 'id' } });
    return r;
  }

  /** The order's current plan (revision, node sets) as stored. */
  async plan(id: string): Promise<OrderPlan & { reservationId: string | null }> {
    const r = await this.getRow(id);
    return (JSON.parse(r.spec) as { plan: OrderPlan & { reservationId: string | null } }).plan;
  }

  async get(id: string): Promise<Cluster> {
    return this.view(await this.getRow(id));
  }

  /** The project a cluster belongs to (API authorization), or null when absent. */
  async projectOf(id: string): Promise<string | null> {
    const r = await this.store.db.selectFrom('ful_clusters').select(['project']).where('id', '=', id).executeTakeFirst();
    return r?.project ?? null;
  }

  private view(r: FulClusterTable): Cluster {
    const spec = JSON.parse(r.spec) as Record<string, unknown> & { plan?: OrderPlan };
    const { plan: _plan, ...rest } = spec;
    void _plan;
    const hasPull = r.secrets !== null && this.hasSecret(r, 'pullSecret');
    return {
      id: r.id, name: r.name, project: r.project, labels: JSON.parse(r.labels) as Record<string, string>, revision: r.revision,
      spec: { ...(rest as Cluster['spec']), ...(hasPull ? { pullSecret: '[write-only]' as const } : {}) },
      status: JSON.parse(r.status) as ClusterStatus, createdAt: Number(r.created_at), updatedAt: Number(r.updated_at),
    };
  }

  private hasSecret(r: FulClusterTable, k: string): boolean {
    try {
      return k in this.secrets.openJson<Record<string, string>>(r.secrets!, `cluster:${r.id}`);
    } catch {
      return false;
    }
  }

  /** Clusters, newest first: filter by project(s), state, template, name, label; `after` is the last id of the previous page. */
  async list(f: { projects?: 'all' | string[]; state?: string; template?: string; name?: string; label?: Record<string, string>; includeDeleted?: boolean; after?: string; limit?: number } = {}): Promise<Cluster[]> {
    let q = this.store.db.selectFrom('ful_clusters').selectAll();
    if (f.projects && f.projects !== 'all') q = q.where('project', 'in', f.projects.length ? f.projects : ['']);
    if (f.state) q = q.where('state', '=', f.state);
    else if (!f.includeDeleted) q = q.where('deleted_at', 'is', null);
    if (f.template) q = q.where('template', '=', f.template);
    if (f.name) q = q.where('name', '=', f.name);
    if (f.after) q = q.where('id', '<', f.after);
    const limit = f.limit ?? 50;
    const out: Cluster[] = [];
    let after = f.after;
    for (;;) {
      const rows = await (after ? q.where('id', '<', after) : q).orderBy('id', 'desc').limit(limit + 1).execute();
      for (const r of rows) {
        const labels = JSON.parse(r.labels) as Record<string, string>;
        if (f.label && !Object.entries(f.label).every(([k, v]) => labels[k] === v)) continue;
        out.push(this.view(r));
        if (out.length > limit) return out;
      }
      if (rows.length <= limit) return out;
      after = rows[rows.length - 1]!.id;
    }
  }

  /** Changes node set sizes (scale up/down, add or remove a set) as a new revision with its own run. */
  async patch(id: string, input: unknown, actor = 'system'): Promise<Cluster> {
    const p = parseInput(PatchClusterSchema, input, 'fulfillment');
    const r = await this.getRow(id);
    const spec = JSON.parse(r.spec) as Record<string, unknown> & { plan: OrderPlan };
    const immutable = (k: string, a: unknown, b: unknown) => {
      if (b !== undefined && JSON.stringify(a) !== JSON.stringify(b)) throw new ValidationError('fulfillment.immutable_field', `spec.${k}: cannot change after the order (was ${JSON.stringify(a)}); order a new cluster instead`, { details: { field: `spec.${k}` } });
    };
    immutable('template', spec.template, p.spec.template);
    immutable('templateParameters', spec.templateParameters, p.spec.templateParameters);
    immutable('releaseImage', spec.releaseImage, p.spec.releaseImage);
    immutable('network', spec.network, p.spec.network);
    immutable('sshPublicKey', spec.sshPublicKey, p.spec.sshPublicKey);
    if (p.spec.pullSecret !== undefined) throw new ValidationError('fulfillment.immutable_field', 'spec.pullSecret: cannot change after the order', { details: { field: 'spec.pullSecret' } });
    if (!p.spec.nodeSets) throw new ValidationError('fulfillment.invalid_input', 'spec.nodeSets: give the node sets to change', { details: { field: 'spec.nodeSets' } });
    const t = await this.getTemplate(r.template);
    const next = await this.planNodeSets(t, p.spec.nodeSets, spec.plan.nodeSets);
    if (r.state !== 'Ready') throw new ConflictError('fulfillment.not_ready', `cluster ${r.name} is ${r.state}; scale it once it is Ready (retry or delete a failed one)`, { details: { state: r.state } });
    for (const s of next.filter((x) => x.flavor)) {
      const before = spec.plan.nodeSets.find((x) => x.name === s.name);
      if (!before || before.size !== s.size) throw new ValidationError('fulfillment.invalid_node_sets', `spec.nodeSets.${s.name}: VM node sets keep their size in this release`, { details: { field: `spec.nodeSets.${s.name}` } });
    }
    const revision = r.revision + 1;
    const needsApproval = this.config.approvalAboveNodes !== null && this.totalNodes(next) > this.config.approvalAboveNodes && this.totalNodes(next) > this.totalNodes(spec.plan.nodeSets);
    const plan: OrderPlan = { ...spec.plan, revision, nodeSets: next, needsApproval };
    const newSpec = { ...spec, nodeSets: Object.fromEntries(next.map((s) => [s.name, { ...(s.hostType ? { hostType: s.hostType } : { flavor: s.flavor }), size: s.size }])), plan: { ...plan, previous: spec.plan.nodeSets } };
    const runId = `ful-${id}-scale-${revision}`;
    const status = JSON.parse(r.status) as ClusterStatus;
    const now = this.clock.now();
    const state: ClusterState = needsApproval ? 'PendingApproval' : 'Progressing';
    Object.assign(status, { state, operation: 'scale', runId, message: `scaling to revision ${revision}` });
    setCondition(status, cond('Ready', 'False', 'Scaling', `node sets change: ${describeChange(spec.plan.nodeSets, next)}`, now));
    const res = await this.store.db.updateTable('ful_clusters').set({ spec: JSON.stringify(newSpec), status: JSON.stringify(status), state, revision, updated_at: now }).where('id', '=', id).where('revision', '=', r.revision).where('state', '=', 'Ready').executeTakeFirst();
    if (Number(res.numUpdatedRows) !== 1) throw new ConflictError('fulfillment.conflict', `cluster ${r.name} changed meanwhile; read it again`);
    await this.engine.start(SCALE_WORKFLOW, { clusterId: id, revision, previous: spec.plan.nodeSets }, { id: runId, labels: { cluster: id, project: r.project, operation: 'scale' }, concurrencyKey: holderOf(id) });
    await this.publish('cluster.scaling', id, { revision, change: describeChange(spec.plan.nodeSets, next), actor });
    return this.get(id);
  }

  /** Approves a pending order or scaling (the comment goes into the audit log and the cluster's conditions). */
  async approve(id: string, by: string, comment: string): Promise<Cluster> {
    const r = await this.getRow(id);
    if (r.state !== 'PendingApproval') throw new ConflictError('fulfillment.not_pending', `cluster ${r.name} is ${r.state}; only a pending order or scaling is approved`);
    const status = JSON.parse(r.status) as ClusterStatus;
    await this.engine.signal(status.runId!, 'fulfillment.approve', { by, comment });
    return this.get(id);
  }

  /** Deletes a cluster: cancels what runs for it, then tears everything down in reverse order. */
  async delete(id: string, actor = 'system'): Promise<Cluster> {
    const r = await this.getRow(id);
    if (r.deleted_at !== null) return this.view(r);
    const status = JSON.parse(r.status) as ClusterStatus;
    if (status.operation === 'delete' && r.state === 'Deleting') return this.view(r);
    if (status.runId && status.operation !== 'delete') {
      const run = await this.engine.get(status.runId).catch(() => null);
      if (run && !['succeeded', 'failed', 'cancelled'].includes(run.status)) await this.engine.cancel(run.id, `cluster deleted by ${actor}`).catch(() => {});
    }
    const runId = `ful-${id}-delete${status.operation === 'delete' ? `-${this.clock.now()}` : ''}`;
    const now = this.clock.now();
    Object.assign(status, { state: 'Deleting', operation: 'delete', runId, message: 'tearing down in reverse order' });
    setCondition(status, cond('Ready', 'False', 'Deleting', `deleted by ${actor}`, now));
    await this.store.db.updateTable('ful_clusters').set({ status: JSON.stringify(status), state: 'Deleting', updated_at: now }).where('id', '=', id).execute();
    await this.engine.start(DELETE_WORKFLOW, { clusterId: id }, { id: runId, labels: { cluster: id, project: r.project, operation: 'delete' }, concurrencyKey: holderOf(id) });
    await this.publish('cluster.deleting', id, { actor });
    return this.get(id);
  }

  /** Retries the failed run of a cluster from its failed stage. */
  async retry(id: string, actor: string): Promise<Cluster> {
    const r = await this.getRow(id);
    const status = JSON.parse(r.status) as ClusterStatus;
    if (r.state !== 'Failed' || !status.runId) throw new ConflictError('fulfillment.not_failed', `cluster ${r.name} is ${r.state}; only a failed cluster is retried`);
    await this.engine.retry(status.runId, { actor });
    await this.setState(id, status.operation === 'delete' ? 'Deleting' : 'Progressing', { message: `retried by ${actor}` });
    return this.get(id);
  }

  /** Skips the failed stage (only stages whose result later stages do not need). */
  async skip(id: string, stage: string, actor: string): Promise<Cluster> {
    const r = await this.getRow(id);
    const status = JSON.parse(r.status) as ClusterStatus;
    if (r.state !== 'Failed' || !status.runId) throw new ConflictError('fulfillment.not_failed', `cluster ${r.name} is ${r.state}; only a failed stage is skipped`);
    const skippable = ['dns', 'storage', 'postInstall', 'validation'];
    if (!skippable.includes(stage)) throw new ValidationError('fulfillment.not_skippable', `stage: ${stage} cannot be skipped (later stages need its result); skippable: ${skippable.join(', ')}`, { details: { field: 'stage' } });
    const steps = await this.engine.timeline(status.runId);
    const failed = steps.filter((s) => s.status === 'failed').pop();
    if (!failed || !failed.name.startsWith(`${stage}: `)) throw new ConflictError('fulfillment.stage_not_failed', `stage ${stage} has not failed${failed ? ` (the failed step is ${failed.name})` : ''}`, { details: { field: 'stage' } });
    await this.engine.skipStep(status.runId, failed.name, { skipped: true, by: actor }, { actor });
    await this.store.db.updateTable('ful_stages').set({ status: 'skipped', finished_at: this.clock.now(), message: `skipped by ${actor}` }).where('run_id', '=', status.runId).where('stage', '=', stage).execute();
    await this.setState(id, 'Progressing', { message: `stage ${stage} skipped by ${actor}` });
    return this.get(id);
  }

  // ---------------------------------------------------------- credentials

  /** The admin kubeconfig (YAML). Callers audit the read. */
  async kubeconfig(id: string): Promise<string> {
    return (await this.credential(id, 'kubeconfig'));
  }

  async password(id: string): Promise<{ username: string; password: string }> {
    const c = await this.credentials(id);
    return { username: c.adminUser ?? 'kubeadmin', password: c.adminPassword! };
  }

  private async credentials(id: string): Promise<Record<string, string>> {
    const r = await this.getRow(id);
    const c = r.secrets ? this.secrets.openJson<Record<string, string>>(r.secrets, `cluster:${id}`) : {};
    if (!c.kubeconfig) throw new ConflictError('fulfillment.no_credentials', `cluster ${r.name} has no credentials yet (${r.state}); they exist once its control plane is available`);
    return c;
  }

  private async credential(id: string, k: string): Promise<string> {
    return (await this.credentials(id))[k]!;
  }

  /** Stores credentials sealed at rest (AES-256-GCM bound to the cluster id). */
  async storeCredentials(id: string, creds: Record<string, string>): Promise<void> {
    const r = await this.getRow(id);
    const cur = r.secrets ? this.secrets.openJson<Record<string, string>>(r.secrets, `cluster:${id}`) : {};
    await this.store.db.updateTable('ful_clusters').set({ secrets: this.secrets.sealJson({ ...cur, ...creds }, `cluster:${id}`) }).where('id', '=', id).execute();
  }

  // ---------------------------------------------------------------- status

  async setState(id: string, state: ClusterState, patch: Partial<ClusterStatus> & { condition?: Condition } = {}): Promise<void> {
    const r = await this.row(id);
    if (!r) return;
    const status = JSON.parse(r.status) as ClusterStatus;
    const { condition, ...rest } = patch;
    Object.assign(status, rest, { state });
    if (condition) setCondition(status, condition);
    const changed = r.state !== state;
    await this.store.db.updateTable('ful_clusters').set({ status: JSON.stringify(status), state, updated_at: this.clock.now(), ...(state === 'Deleted' ? { deleted_at: this.clock.now() } : {}) }).where('id', '=', id).execute();
    if (changed) await this.publish('cluster.state', id, { state, from: r.state, message: status.message });
  }

  async updateStatus(id: string, fn: (s: ClusterStatus) => void): Promise<void> {
    const r = await this.row(id);
    if (!r) return;
    const status = JSON.parse(r.status) as ClusterStatus;
    fn(status);
    await this.store.db.updateTable('ful_clusters').set({ status: JSON.stringify(status), updated_at: this.clock.now() }).where('id', '=', id).execute();
  }

  async publish(type: string, clusterId: string, data: Record<string, unknown>): Promise<void> {
    try {
      await this.engine.publish(type, clusterId, { cluster: clusterId, ...data });
    } catch (e) {
      this.logger?.warn({ err: e, type }, 'could not publish a cluster event');
    }
  }

  // ---------------------------------------------------------------- parts

  async addPart(clusterId: string, kind: string, key: string, data: Record<string, unknown> = {}): Promise<void> {
    await this.store.db.insertInto('ful_parts').values({ cluster_id: clusterId, kind, key, data: JSON.stringify(data), created_at: this.clock.now() })
      .onConflict((oc) => oc.columns(['cluster_id', 'kind', 'key']).doUpdateSet({ data: JSON.stringify(data) })).execute();
  }

  async parts<T = Record<string, unknown>>(clusterId: string, kind: string): Promise<(T & { key: string })[]> {
    const rows = await this.store.db.selectFrom('ful_parts').selectAll().where('cluster_id', '=', clusterId).where('kind', '=', kind).orderBy('created_at').orderBy('key').execute();
    return rows.map((r) => ({ ...(JSON.parse(r.data) as T), key: r.key }));
  }

  async dropPart(clusterId: string, kind: string, key: string): Promise<void> {
    await this.store.db.deleteFrom('ful_parts').where('cluster_id', '=', clusterId).where('kind', '=', kind).where('key', '=', key).execute();
  }

  /** Everything a cluster still holds, by kind (zero after a delete). */
  async holdings(clusterId: string): Promise<Record<string, number>> {
    const rows = await this.store.db.selectFrom('ful_parts').select(['kind']).where('cluster_id', '=', clusterId).execute();
    const out: Record<string, number> = {};
    for (const r of rows) out[r.kind] = (out[r.kind] ?? 0) + 1;
    return out;
  }

  // --------------------------------------------------------------- stages

  private lastWait = new Map<string, string | null>();

  /** Marks a stage started (first time only). Best effort: bookkeeping never fails a run. */
  async stageBegin(clusterId: string, runId: string, operation: string, stage: string, seq: number): Promise<void> {
    try {
      const now = this.clock.now();
      const cur = await this.store.db.selectFrom('ful_stages').select(['status']).where('run_id', '=', runId).where('stage', '=', stage).executeTakeFirst();
      if (!cur) {
        await this.store.db.insertInto('ful_stages').values({ run_id: runId, stage, cluster_id: clusterId, operation, seq, status: 'running', started_at: now, finished_at: null, waiting_on: null, message: null, error: null, logs: '[]' })
          .onConflict((oc) => oc.columns(['run_id', 'stage']).doNothing()).execute();
        await this.publish('cluster.stage', clusterId, { runId, operation, stage, status: 'running' });
      } else if (cur.status === 'failed') {
        await this.store.db.updateTable('ful_stages').set({ status: 'running', error: null, finished_at: null, message: 'retried' }).where('run_id', '=', runId).where('stage', '=', stage).execute();
        await this.publish('cluster.stage', clusterId, { runId, operation, stage, status: 'running', retried: true });
      }
    } catch (e) {
      this.logger?.warn({ err: e, stage }, 'stage bookkeeping failed');
    }
  }

  async stageWaiting(clusterId: string, runId: string, stage: string, waitingOn: string | null): Promise<void> {
    const k = `${runId}/${stage}`;
    if (this.lastWait.get(k) === waitingOn) return;
    this.lastWait.set(k, waitingOn);
    try {
      await this.store.db.updateTable('ful_stages').set({ waiting_on: waitingOn, status: waitingOn ? 'waiting' : 'running' }).where('run_id', '=', runId).where('stage', '=', stage).where('status', 'in', ['running', 'waiting']).execute();
      if (waitingOn) await this.publish('cluster.stage', clusterId, { runId, stage, status: 'waiting', waitingOn });
    } catch (e) {
      this.logger?.warn({ err: e, stage }, 'stage bookkeeping failed');
    }
  }

  async stageEnd(clusterId: string, runId: string, operation: string, stage: string, message?: string): Promise<void> {
    this.lastWait.delete(`${runId}/${stage}`);
    try {
      const res = await this.store.db.updateTable('ful_stages').set({ status: 'succeeded', finished_at: this.clock.now(), waiting_on: null, ...(message ? { message } : {}) })
        .where('run_id', '=', runId).where('stage', '=', stage).where('status', 'in', ['running', 'waiting']).executeTakeFirst();
      if (Number(res.numUpdatedRows) > 0) await this.publish('cluster.stage', clusterId, { runId, operation, stage, status: 'succeeded', ...(message ? { message } : {}) });
    } catch (e) {
      this.logger?.warn({ err: e, stage }, 'stage bookkeeping failed');
    }
  }

  async stageFail(clusterId: string, runId: string, operation: string, stage: string, err: unknown): Promise<void> {
    this.lastWait.delete(`${runId}/${stage}`);
    const e = err instanceof InfraflowError ? err : null;
    const cause = (e?.details?.cause ?? null) as { code?: string; message?: string; details?: Record<string, unknown> } | null;
    const backend = e?.details?.backend ?? cause?.details?.backend ?? null;
    const message = e?.message ?? (err instanceof Error ? err.message : String(err));
    const code = e?.code ?? 'fulfillment.stage_failed';
    try {
      await this.store.db.updateTable('ful_stages').set({ status: 'failed', finished_at: this.clock.now(), waiting_on: null, error: JSON.stringify({ code, message, ...(backend ? { backend } : {}) }) })
        .where('run_id', '=', runId).where('stage', '=', stage).execute();
      await this.publish('cluster.stage', clusterId, { runId, operation, stage, status: 'failed', code, message });
    } catch (x) {
      this.logger?.warn({ err: x, stage }, 'stage bookkeeping failed');
    }
  }

  /** How long a stage usually takes (p90 of its last 50 successful runs), cached for 10 s. */
  async usualMs(operation: string, stage: string): Promise<number | null> {
    const k = `${operation}/${stage}`;
    const c = this.usualCache.get(k);
    const now = Date.now();
    if (c && now - c.at < 10_000) return c.ms;
    const rows = await this.store.db.selectFrom('ful_stages').select(['started_at', 'finished_at']).where('operation', '=', operation).where('stage', '=', stage).where('status', '=', 'succeeded').orderBy('finished_at', 'desc').limit(50).execute();
    const d = rows.map((r) => Number(r.finished_at) - Number(r.started_at)).filter((x) => x >= 0).sort((a, b) => a - b);
    const ms = d.length >= 3 ? d[Math.min(d.length - 1, Math.floor(d.length * 0.9))]! : null;
    this.usualCache.set(k, { at: now, ms });
    return ms;
  }

  /** The stages of a cluster's current (or given) run, in order, with ETA and stuck flag; logs and errors from the run's steps. */
  async stages(clusterId: string, runId?: string): Promise<Stage[]> {
    const r = await this.getRow(clusterId);
    const status = JSON.parse(r.status) as ClusterStatus;
    const rid = runId ?? status.runId;
    if (!rid) return [];
    const operation = rid.includes('-scale-') ? 'scale' : rid.includes('-delete') ? 'delete' : 'create';
    const names: readonly string[] = operation === 'scale' ? SCALE_STAGES : operation === 'delete' ? DELETE_STAGES : STAGES;
    const rows = await this.store.db.selectFrom('ful_stages').selectAll().where('run_id', '=', rid).execute();
    const steps = await this.engine.timeline(rid).catch(() => []);
    // what the run itself reports it waits for (a durable wait for capacity, a signal)
    const run = await this.engine.get(rid).catch(() => null);
    const runWait = run && (run.status === 'waiting' || run.status === 'running') && run.progress?.message?.startsWith('waiting') ? run.progress.message.replace(/^waiting: /, 'capacity: ') : null;
    const now = this.clock.now();
    const out: Stage[] = [];
    for (const name of names) {
      const row = rows.find((x) => x.stage === name) as FulStageTable | undefined;
      const usual = await this.usualMs(operation, name);
      const mine = steps.filter((s) => s.name.startsWith(`${name}: `));
      const logs = mine.flatMap((s) => s.logs.map((l) => ({ at: l.at, message: `${s.name.slice(name.length + 2)}: ${l.message}` })));
      const failedStep = mine.filter((s) => s.status === 'failed').pop();
      const running = row?.status === 'running' || row?.status === 'waiting';
      const elapsed = row?.started_at ? (row.finished_at ?? now) - Number(row.started_at) : 0;
      const stuck = running && usual !== null && elapsed > usual * 1.5 && elapsed - usual > 30_000;
      let error = row?.error ? (JSON.parse(row.error) as Stage['error']) : null;
      if (row?.status === 'failed' && failedStep?.error && !error) error = { code: failedStep.error.code, message: failedStep.error.message, ...(failedStep.error.details?.backend ? { backend: failedStep.error.details.backend } : {}) };
      const waitingOn = row?.waiting_on ?? (running && runWait && !out.some((o) => o.status === 'running' || o.status === 'waiting') ? runWait : null);
      let message = row?.message ?? null;
      if (stuck && waitingOn) message = `${waitingOn} for ${fmtDur(elapsed)}; usual ≤ ${fmtDur(usual!)}`;
      out.push({
        runId: rid, operation, name, status: (row?.status ?? 'pending') as Stage['status'],
        startedAt: row?.started_at ? Number(row.started_at) : null, finishedAt: row?.finished_at ? Number(row.finished_at) : null,
        waitingOn, message, usualMs: usual, eta: running && usual !== null && row?.started_at ? Number(row.started_at) + usual : null,
        stuck, error, logs: logs.slice(-50),
      });
    }
    return out;
  }

  /**
   * One merged timeline: stages, steps of every run of the cluster (allocations,
   * provider and backend calls, with attempts), operator actions and events.
   */
  async timeline(clusterId: string): Promise<{ at: number; source: string; type: string; message: string; runId?: string; data?: Record<string, unknown> }[]> {
    await this.getRow(clusterId);
    const runs = await this.engine.list({ labels: { cluster: clusterId }, limit: 100 });
    const out: { at: number; source: string; type: string; message: string; runId?: string; data?: Record<string, unknown> }[] = [];
    for (const run of runs) {
      for (const s of await this.engine.timeline(run.id)) {
        out.push({ at: s.startedAt, source: 'step', type: `step.${s.status}`, runId: run.id, message: `${s.name}${s.attempts > 1 ? ` (${s.attempts} attempts)` : ''}${s.error ? `: ${s.error.message}` : ''}`, data: { kind: s.kind, finishedAt: s.finishedAt ?? null } });
      }
      for (const h of (await this.engine.history?.(run.id)) ?? []) out.push({ at: h.at, source: 'operator', type: h.action, runId: run.id, message: `${h.action} by ${h.actor}` });
    }
    const stageRows = await this.store.db.selectFrom('ful_stages').selectAll().where('cluster_id', '=', clusterId).execute();
    for (const s of stageRows) {
      if (s.started_at) out.push({ at: Number(s.started_at), source: 'stage', type: 'stage.started', runId: s.run_id, message: `${s.operation}/${s.stage} started` });
      if (s.finished_at) out.push({ at: Number(s.finished_at), source: 'stage', type: `stage.${s.status}`, runId: s.run_id, message: `${s.operation}/${s.stage} ${s.status}${s.error ? `: ${(JSON.parse(s.error) as { message: string }).message}` : ''}` });
    }
    for (const subject of [clusterId, holderOf(clusterId)]) {
      for (const e of await this.engine.events({ subject, limit: 1000 })) out.push({ at: e.at, source: 'event', type: e.type, message: e.type, data: e.data });
    }
    return out.sort((a, b) => a.at - b.at);
  }

  /** The latest run of each operation of a cluster. */
  async runs(clusterId: string): Promise<RunInfo[]> {
    return this.engine.list({ labels: { cluster: clusterId }, limit: 100 });
  }
}

function fmtDur(ms: number): string {
  if (ms < 60_000) return `${Math.round(ms / 1000)} s`;
  if (ms < 3600_000) return `${Math.round(ms / 60_000)} min`;
  return `${(ms / 3600_000).toFixed(1)} h`;
}

export function cond(type: string, status: Condition['status'], reason: string, message: string, at: number): Condition {
  return { type, status, reason, message, lastTransitionTime: at };
}

export function setCondition(s: ClusterStatus, c: Condition): void {
  const i = s.conditions.findIndex((x) => x.type === c.type);
  if (i < 0) s.conditions.push(c);
  else if (s.conditions[i]!.status !== c.status || s.conditions[i]!.reason !== c.reason || s.conditions[i]!.message !== c.message) s.conditions[i] = c;
}

export function nodeSetStatus(sets: PlannedNodeSet[], nodes: Record<string, string[]> = {}, ready: Record<string, number> = {}): Record<string, NodeSetStatus> {
  return Object.fromEntries(sets.map((s) => [s.name, { hostType: s.hostType, flavor: s.flavor, size: s.size, ready: ready[s.name] ?? 0, nodes: nodes[s.name] ?? [] }]));
}

function describeChange(a: PlannedNodeSet[], b: PlannedNodeSet[]): string {
  const names = [...new Set([...a.map((x) => x.name), ...b.map((x) => x.name)])];
  return names.map((n) => `${n} ${a.find((x) => x.name === n)?.size ?? 0}→${b.find((x) => x.name === n)?.size ?? 0}`).filter((s) => !/ (\d+)→\1$/.test(s)).join(', ') || 'no change';
}

function infeasible(shortfalls: { path: string; reason: string; resource: string; requested: number; available: number; code?: string }[], never: boolean): InfraflowError {
  const msg = `the order cannot be met${never ? '' : ' now'}: ${shortfalls.map((s) => s.reason).join('; ')}${never ? '' : '. Order with capacity: wait to wait for it, or free capacity'}`;
  const details = { field: 'spec.nodeSets', shortfalls: shortfalls.map((s) => ({ path: s.path, resource: s.resource, requested: s.requested, available: s.available, reason: s.reason })) };
  return never ? new ValidationError('fulfillment.unmeetable', msg, { details }) : new ExhaustedError('fulfillment.infeasible', msg, { details });
}

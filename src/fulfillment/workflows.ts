import { z } from 'zod';
import { InfraflowError, isInfraflowError } from '../core/errors.js';
import { defineWorkflow, type RetryPolicy, type StepContext, type WorkflowContext } from '../engine/types.js';
import { reserveWhenAvailable } from '../allocation/wait.js';
import type { Server } from '../inventory/schemas.js';
import { BackendError, type InstallAgent, type InstallStatus, type SwitchPortRef } from './backend.js';
import { cond, nodeSetStatus, CREATE_WORKFLOW, DELETE_WORKFLOW, SCALE_WORKFLOW, type Fulfillment, type OrderPlan, type PlannedNodeSet } from './service.js';
import { DELETE_STAGES, SCALE_STAGES, STAGES } from './schemas.js';
import { render } from './templates.js';

/**
 * The staged durable workflows of a cluster: create, scale (a node set up
 * or down, its own run) and delete (reverse teardown). Every stage is one
 * or more journaled steps named `<stage>: <what>` (so a step's logs and
 * errors belong to its stage) with idempotency keys passed to every
 * backend; waits are engine polls and signals that hold no worker.
 */
export interface Agent { serverId: string; serial: string; type: string; nodeSet: string; role: 'control-plane' | 'worker'; macs: string[]; ports: SwitchPortRef[]; vm?: boolean }
interface Lease { serverId: string; mac: string; ip: string; addressId: string }

const Input = z.object({ clusterId: z.string().min(1) });
const ScaleInput = Input.extend({ revision: z.number().int(), previous: z.array(z.any()) });

type Op = 'create' | 'scale' | 'delete';

function backendRetry(svc: Fulfillment): RetryPolicy {
  return { maxAttempts: svc.config.backendAttempts, initialIntervalMs: svc.config.backendRetryMs, maxIntervalMs: 5_000, backoffCoefficient: 1.5 };
}

/** A backend's refusal as an engine error: retryable or not, with the backend's answer kept for the stage. */
async function call<T>(op: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof BackendError) throw new InfraflowError('fulfillment.backend_failed', e.message, e.retryable ? 503 : 502, { retryable: e.retryable, details: { op, backend: e.answer } });
    throw e;
  }
}

async function inStage<T>(ctx: WorkflowContext, svc: Fulfillment, op: Op, clusterId: string, name: string, fn: () => Promise<T>): Promise<T> {
  const order: readonly string[] = op === 'scale' ? SCALE_STAGES : op === 'delete' ? DELETE_STAGES : STAGES;
  await svc.stageBegin(clusterId, ctx.runId, op, name, order.indexOf(name));
  ctx.progress({ stage: name });
  try {
    const out = await fn();
    await svc.stageEnd(clusterId, ctx.runId, op, name);
    return out;
  } catch (e) {
    if (isInfraflowError(e) && e.code === 'engine.cancelled') throw e;
    await svc.stageFail(clusterId, ctx.runId, op, name, e);
    const msg = e instanceof Error ? e.message : String(e);
    await svc.setState(clusterId, 'Failed', { message: `${op} failed at stage ${name}: ${msg}`, condition: cond('Ready', 'False', 'StageFailed', `stage ${name} failed: ${msg}`, Date.now()) });
    throw e;
  }
}

async function providerCreate(svc: Fulfillment, kind: string, spec: Record<string, unknown>, key: string, name: string): Promise<{ externalId: string; ready: boolean; outputs: Record<string, unknown> }> {
  const h = svc.registry.handler(kind);
  const parsed = h.schema.parse(spec);
  h.validate?.(parsed);
  const r = await h.create(parsed, { idempotencyKey: key, project: svc.config.providerProject, resourceId: key, resourceName: name });
  return { externalId: r.externalId, ready: r.ready, outputs: r.outputs ?? {} };
}

async function providerRead(svc: Fulfillment, kind: string, id: string) {
  return svc.registry.handler(kind).read(id, { project: svc.config.providerProject, resourceId: id, resourceName: id });
}

async function providerDelete(svc: Fulfillment, kind: string, id: string, key: string): Promise<void> {
  await svc.registry.handler(kind).delete(id, { idempotencyKey: key, project: svc.config.providerProject, resourceId: id, resourceName: id });
}

/** Polls provider objects until every one is ready (or absent, for deletes). */
async function pollObjects(ctx: WorkflowContext, svc: Fulfillment, clusterId: string, stage: string, name: string, objs: { kind: string; id: string }[], want: 'ready' | 'absent'): Promise<void> {
  if (!objs.length) return;
  await ctx.poll(`${stage}: ${name}`, async () => {
    let pending = 0;
    for (const o of objs) {
      const r = await providerRead(svc, o.kind, o.id);
      if (r.state === 'failed') throw new InfraflowError('fulfillment.provider_failed', `${o.kind} ${o.id}: ${r.message ?? 'failed'}`, 502, { retryable: false, details: { backend: { state: r.state, reason: r.failureReason, message: r.message } } });
      if (r.state !== want) pending++;
    }
    await svc.stageWaiting(clusterId, ctx.runId, stage, pending ? `${pending} of ${objs.length} ${objs[0]!.kind} object(s) to become ${want}` : null);
    return { done: pending === 0, value: true };
  }, { intervalMs: svc.config.pollMs, timeoutMs: svc.config.stageTimeoutMs });
}

/** Approval (when the plan needs one): waits for the signal, holding nothing. */
async function approval(ctx: WorkflowContext, svc: Fulfillment, op: Op, plan: OrderPlan): Promise<void> {
  if (!plan.needsApproval) return;
  await svc.stageWaiting(plan.clusterId, ctx.runId, 'accepted', 'approval by an operator');
  const a = await ctx.waitFor<{ by: string; comment: string }>('fulfillment.approve', { name: 'accepted: approval' });
  await ctx.step('accepted: approved', async () => {
    await svc.setState(plan.clusterId, 'Progressing', { message: `approved by ${a.by}`, condition: cond('Approved', 'True', 'Approved', `approved by ${a.by}: ${a.comment}`, svc.clock.now()) });
    await svc.publish('cluster.approved', plan.clusterId, { by: a.by, comment: a.comment, operation: op });
  });
}

function agentOf(s: Server, set: PlannedNodeSet): Agent {
  return { serverId: s.id, serial: s.serial, type: s.type, nodeSet: set.name, role: set.role, macs: s.nics.map((n) => n.mac), ports: s.nics.filter((n) => n.switch && n.port).map((n) => ({ switch: n.switch!, port: n.port! })) };
}

/** Hands servers to node sets of their type, in node-set order. */
function assign(servers: Server[], sets: { set: PlannedNodeSet; count: number }[]): Agent[] {
  const pool = [...servers];
  const out: Agent[] = [];
  for (const { set, count } of sets) {
    for (let i = 0; i < count; i++) {
      const k = pool.findIndex((s) => s.type === set.hostType);
      if (k < 0) throw new InfraflowError('fulfillment.internal', `the reservation holds too few servers of type ${set.hostType} for node set ${set.name}`, 500);
      out.push(agentOf(pool.splice(k, 1)[0]!, set));
    }
  }
  return out;
}

/**
 * Asks the hot pool to top up the host pools an order draws from (a run per
 * policy, deduplicated per order): discovery and inspection of new hardware
 * start at once instead of at the next periodic tick.
 */
async function kickHotPool(svc: Fulfillment, runId: string, types: string[], datacenter: string): Promise<string[]> {
  const policies = await svc.inventory.listHotPoolPolicies();
  const started: string[] = [];
  for (const type of [...new Set(types)]) {
    if (!policies.some((p) => p.type === type && p.datacenter === datacenter && p.enabled)) continue;
    await svc.engine.start('inventory.hotpool.reconcile', { type, datacenter }, { id: `hotpool:${type}@${datacenter}:${runId}` }).catch(() => undefined);
    started.push(type);
  }
  return started;
}

async function recordAgents(svc: Fulfillment, clusterId: string, agents: Agent[]): Promise<void> {
  for (const a of agents) {
    await svc.addPart(clusterId, 'agent', a.serverId, { ...a });
    for (const p of a.ports) await svc.addPart(clusterId, 'port', `${p.switch}/${p.port}`, { ...p, serverId: a.serverId });
  }
}

async function refreshNodeSets(svc: Fulfillment, clusterId: string, sets: PlannedNodeSet[], ready: boolean): Promise<void> {
  const agents = await svc.parts<Agent>(clusterId, 'agent');
  const nodes: Record<string, string[]> = {};
  for (const a of agents) (nodes[a.nodeSet] ??= []).push(a.serial);
  const counts = Object.fromEntries(Object.entries(nodes).map(([k, v]) => [k, ready ? v.length : 0]));
  await svc.updateStatus(clusterId, (s) => { s.nodeSets = nodeSetStatus(sets, nodes, counts); });
}

/** Allocates addresses for agents from the machine network and returns their leases (parts `address`). */
async function leaseAddresses(svc: Fulfillment, clusterId: string, prefixId: string, agents: Agent[], key: string): Promise<Lease[]> {
  if (!agents.length) return [];
  const addrs = await svc.ipam.allocateAddresses({ prefixId, holder: `cluster:${clusterId}`, count: agents.length, key });
  const leases = agents.map((a, i) => ({ serverId: a.serverId, mac: a.macs[0] ?? `02:00:00:00:00:${String(i).padStart(2, '0')}`, ip: addrs[i]!.address, addressId: addrs[i]!.id }));
  for (const l of leases) await svc.addPart(clusterId, 'address', l.serverId, { ...l, prefixId });
  return leases;
}

async function waitReported(ctx: WorkflowContext, svc: Fulfillment, clusterId: string, scopeId: string, name: string): Promise<void> {
  await ctx.poll(`addresses: ${name}`, async () => {
    const r = await call('reportedAgents', () => svc.backend.reportedAgents(scopeId));
    await svc.stageWaiting(clusterId, ctx.runId, 'addresses', r.pending.length ? `${r.pending.length} of ${r.pending.length + r.reported.length} agents to boot and report their address` : null);
    return { done: r.pending.length === 0, value: r.reported.length };
  }, { intervalMs: svc.config.pollMs, timeoutMs: svc.config.stageTimeoutMs, retry: backendRetry(svc) });
}

async function toProvisioning(svc: Fulfillment, agents: Agent[], clusterId: string): Promise<void> {
  for (const a of agents) {
    if (a.vm) continue;
    const s = await svc.inventory.getServer(a.serverId);
    if (s.state === 'allocated') await svc.inventory.transition({ serverId: a.serverId, to: 'provisioning', reason: `installing cluster ${clusterId}`, actor: 'fulfillment' });
  }
}

/**
 * The install loop: polls until no agent is installing; agents that failed
 * are recorded against the hardware (quarantined after repeated failures),
 * returned to cleaning, and replaced by fresh agents of the same type,
 * which are wired (port, address, lease) and added to the install.
 */
async function installAgents(ctx: WorkflowContext, svc: Fulfillment, op: Op, plan: OrderPlan, installId: string, label: string): Promise<void> {
  const clusterId = plan.clusterId;
  for (let round = 1; ; round++) {
    const failed = await ctx.poll<{ serverId: string; reason: string }[]>(`install: ${label} agents installed #${round}`, async () => {
      const st = await call('installStatus', () => svc.backend.installStatus(installId));
      const all = Object.entries(st.agents);
      const installing = all.filter(([, a]) => a.state === 'installing').length;
      await svc.stageWaiting(clusterId, ctx.runId, 'install', installing ? `${installing} of ${all.length} agents installing` : null);
      return { done: installing === 0, value: all.filter(([, a]) => a.state === 'failed').map(([id, a]) => ({ serverId: id, reason: a.reason ?? 'install failed' })) };
    }, { intervalMs: svc.config.pollMs, timeoutMs: svc.config.stageTimeoutMs, retry: backendRetry(svc) });
    if (!failed.length) return;
    if (round > svc.config.maxReplacements) {
      throw new InfraflowError('fulfillment.install_failed', `${failed.length} agent(s) failed to install after ${round - 1} replacement round(s): ${failed.map((f) => f.reason).join('; ')}`, 502, { retryable: false, details: { backend: { failed } } });
    }
    await ctx.step(`install: replace #${round}`, async (sc) => replaceAgents(svc, sc, plan, installId, failed), { retry: backendRetry(svc) });
  }
}

async function replaceAgents(svc: Fulfillment, sc: StepContext, plan: OrderPlan, installId: string, failed: { serverId: string; reason: string }[]): Promise<string[]> {
  const clusterId = plan.clusterId;
  const agents = await svc.parts<Agent>(clusterId, 'agent');
  const addrs = await svc.parts<Lease & { prefixId: string }>(clusterId, 'address');
  const scope = (await svc.parts<{ id: string }>(clusterId, 'scope'))[0];
  const vlan = (await svc.parts<{ vlan: number }>(clusterId, 'vlan'))[0];
  const replaced: string[] = [];
  const fresh: Agent[] = [];
  for (const f of failed) {
    const a = agents.find((x) => x.serverId === f.serverId);
    if (!a) continue;
    sc.log(`agent ${a.serial} failed: ${f.reason}; recording the failure and replacing it`);
    await call('removeAgents', () => svc.backend.removeAgents({ key: `${sc.idempotencyKey}:rm:${a.serverId}`, installId, serverIds: [a.serverId] }));
    await call('unbindPorts', () => svc.backend.unbindPorts({ key: `${sc.idempotencyKey}:unbind:${a.serverId}`, ports: a.ports }));
    if (scope) await call('removeLeases', () => svc.backend.removeLeases({ key: `${sc.idempotencyKey}:lease:${a.serverId}`, scopeId: scope.id, serverIds: [a.serverId] }));
    const addr = addrs.find((x) => x.serverId === a.serverId);
    if (addr) await svc.ipam.releaseAddress({ id: addr.addressId }).catch(() => undefined);
    const cur = await svc.inventory.getServer(a.serverId);
    if (cur.state === 'provisioning' || cur.state === 'provisioned' || cur.state === 'allocated') {
      const s = await svc.inventory.recordProvisioningFailure(a.serverId, `cluster ${plan.name}: ${f.reason}`, 'fulfillment');
      sc.log(s.state === 'quarantined' ? `agent ${a.serial} quarantined after ${s.failureCount} failures` : `agent ${a.serial} failed (${s.failureCount} failure(s)); back to cleaning`);
      if (s.state === 'failed') {
        await svc.inventory.transition({ serverId: a.serverId, to: 'cleaning', reason: 'cleaning after a failed install', actor: 'fulfillment' });
        await svc.inventory.transition({ serverId: a.serverId, to: 'available', reason: 'cleaned', actor: 'fulfillment' });
      }
    }
    for (const p of a.ports) await svc.dropPart(clusterId, 'port', `${p.switch}/${p.port}`);
    await svc.dropPart(clusterId, 'address', a.serverId);
    await svc.dropPart(clusterId, 'agent', a.serverId);
    const set = plan.nodeSets.find((s) => s.name === a.nodeSet)!;
    const [srv] = await svc.inventory.allocateServers({ type: a.type, datacenter: plan.datacenter, count: 1, holder: `cluster:${clusterId}`, key: `${sc.idempotencyKey}:new:${a.serverId}` }).catch((e: unknown) => {
      throw new InfraflowError('fulfillment.no_replacement', `no free agent of type ${a.type} to replace ${a.serial}: ${e instanceof Error ? e.message : String(e)}`, 503, { retryable: true });
    });
    const n = agentOf(srv!, set);
    fresh.push(n);
    replaced.push(`${a.serial}->${n.serial}`);
  }
  if (!fresh.length) return replaced;
  await recordAgents(svc, clusterId, fresh);
  if (vlan) await call('bindPorts', () => svc.backend.bindPorts({ key: `${sc.idempotencyKey}:bind`, clusterId, vlan: vlan.vlan, ports: fresh.flatMap((a) => a.ports) }));
  const prefixId = (await svc.parts<{ prefixId: string }>(clusterId, 'network'))[0]!.prefixId;
  const leases = await leaseAddresses(svc, clusterId, prefixId, fresh, `${sc.idempotencyKey}:addr`);
  if (scope) await call('addLeases', () => svc.backend.addLeases({ key: `${sc.idempotencyKey}:leases`, scopeId: scope.id, leases }));
  await toProvisioning(svc, fresh, clusterId);
  await call('addAgents', () => svc.backend.addAgents({ key: `${sc.idempotencyKey}:add`, installId, agents: fresh.map((a) => installAgent(a, leases)) }));
  return replaced;
}

function installAgent(a: Agent, leases: { serverId: string; ip: string }[]): InstallAgent {
  return { serverId: a.serverId, serial: a.serial, nodeSet: a.nodeSet, role: a.role, ip: leases.find((l) => l.serverId === a.serverId)?.ip ?? '' };
}

async function postInstall(ctx: WorkflowContext, svc: Fulfillment, plan: OrderPlan, apiUrl: string | null): Promise<void> {
  await ctx.step('postInstall: gitops commit', async (sc) => {
    const values: Record<string, string | number | boolean> = { ...plan.parameters, 'cluster.name': plan.name, 'cluster.id': plan.clusterId, 'cluster.project': plan.project, 'cluster.baseDomain': plan.baseDomain, 'cluster.apiUrl': apiUrl ?? '', 'cluster.revision': plan.revision };
    const files: Record<string, string> = {
      'cluster.yaml': [
        'apiVersion: infraflow.dev/v1', 'kind: ClusterRevision', `name: ${plan.name}`, `id: ${plan.clusterId}`, `project: ${plan.project}`, `template: ${plan.template}`, `revision: ${plan.revision}`,
        'nodeSets:', ...plan.nodeSets.map((s) => `  ${s.name}: { ${s.hostType ? `hostType: ${s.hostType}` : `flavor: ${s.flavor}`}, size: ${s.size} }`), '',
      ].join('\n'),
    };
    for (const m of plan.manifests) files[m.path] = render(m.content, values);
    const dir = `clusters/${plan.project}/${plan.name}`;
    const r = await svc.git.commitFolder(dir, files, `cluster ${plan.name} (${plan.clusterId}) revision ${plan.revision}`, `${plan.clusterId}@${plan.revision}`);
    sc.log(`${r.created ? 'committed' : 'already committed'} ${Object.keys(files).length} file(s) to ${dir}: ${r.commit}`);
    await svc.addPart(plan.clusterId, 'git', dir, { dir, commit: r.commit, revision: plan.revision });
    return { commit: r.commit, files: Object.keys(files).length };
  }, { retry: backendRetry(svc) });
}

async function validate(ctx: WorkflowContext, svc: Fulfillment, plan: OrderPlan, installId: string): Promise<void> {
  await ctx.poll('validation: checks', async (sc) => {
    const r = await call('validate', () => svc.backend.validate({ key: `${sc.idempotencyKey}`, installId }));
    const bad = r.checks.filter((c) => !c.ok);
    await svc.stageWaiting(plan.clusterId, ctx.runId, 'validation', bad.length ? `checks: ${bad.map((c) => `${c.name} (${c.message})`).join(', ')}` : null);
    if (r.ok) sc.log(r.checks.map((c) => `${c.name}: ${c.message}`).join('; '));
    return { done: r.ok, value: r.checks.map((c) => c.name) };
  }, { intervalMs: svc.config.pollMs, timeoutMs: svc.config.stageTimeoutMs, retry: backendRetry(svc) });
}

async function markReady(ctx: WorkflowContext, svc: Fulfillment, plan: OrderPlan, op: Op): Promise<void> {
  await ctx.step('ready: ready', async () => {
    await refreshNodeSets(svc, plan.clusterId, plan.nodeSets, true);
    // the stage ends before the state says Ready, so a reader who sees Ready sees every stage done
    await svc.stageEnd(plan.clusterId, ctx.runId, op, 'ready');
    await svc.setState(plan.clusterId, 'Ready', { message: op === 'scale' ? `revision ${plan.revision} ready` : 'cluster ready', condition: cond('Ready', 'True', 'Ready', op === 'scale' ? `revision ${plan.revision}: node sets ${plan.nodeSets.map((s) => `${s.name}=${s.size}`).join(', ')}` : 'every stage succeeded; validation passed', svc.clock.now()) });
  });
}

/** Creates the VM node sets' network, subnet and servers (through the provider registry). */
async function createVms(ctx: WorkflowContext, svc: Fulfillment, plan: OrderPlan, vlan: number, prefix: { id: string; cidr: string; gateway: string | null }): Promise<Agent[]> {
  const sets = plan.nodeSets.filter((s) => s.flavor);
  if (!sets.length) return [];
  const net = await ctx.step('network: vm network', async (sc) => {
    const n = await providerCreate(svc, 'network/Network', { vlan }, `${sc.idempotencyKey}:net`, `${plan.name}-net`);
    await svc.addPart(plan.clusterId, 'netobj', n.externalId, { kind: 'network/Network', id: n.externalId, order: 2 });
    const s = await providerCreate(svc, 'network/Subnet', { network: n.externalId, cidr: prefix.cidr, ...(prefix.gateway ? { gateway: prefix.gateway } : {}) }, `${sc.idempotencyKey}:subnet`, `${plan.name}-subnet`);
    await svc.addPart(plan.clusterId, 'netobj', s.externalId, { kind: 'network/Subnet', id: s.externalId, order: 1 });
    return { network: n.externalId, subnet: s.externalId };
  }, { retry: backendRetry(svc) });
  await pollObjects(ctx, svc, plan.clusterId, 'network', 'vm network ready', [{ kind: 'network/Network', id: net.network }, { kind: 'network/Subnet', id: net.subnet }], 'ready');
  const vms = await ctx.step('addresses: vms', async (sc) => {
    const out: Agent[] = [];
    for (const set of sets) {
      const addrs = await svc.ipam.allocateAddresses({ prefixId: prefix.id, holder: `cluster:${plan.clusterId}`, count: set.size, key: `${sc.idempotencyKey}:${set.name}` });
      for (let i = 0; i < set.size; i++) {
        const name = `${plan.name}-${set.name}-${i}`;
        const vm = await providerCreate(svc, 'compute/Server', { flavor: set.flavor!, image: 'ubuntu-24.04', networks: [{ subnet: net.subnet, fixedIp: addrs[i]!.address }] }, `${sc.idempotencyKey}:${set.name}:${i}`, name);
        await svc.addPart(plan.clusterId, 'vm', vm.externalId, { kind: 'compute/Server', id: vm.externalId, name });
        await svc.addPart(plan.clusterId, 'address', vm.externalId, { serverId: vm.externalId, ip: addrs[i]!.address, addressId: addrs[i]!.id, mac: '', prefixId: prefix.id });
        const a: Agent = { serverId: vm.externalId, serial: name, type: set.flavor!, nodeSet: set.name, role: set.role, macs: [], ports: [], vm: true };
        await svc.addPart(plan.clusterId, 'agent', a.serverId, { ...a });
        out.push(a);
      }
    }
    return out;
  }, { retry: backendRetry(svc) });
  await pollObjects(ctx, svc, plan.clusterId, 'addresses', 'vms running', vms.map((v) => ({ kind: 'compute/Server', id: v.serverId })), 'ready');
  return vms;
}

// ------------------------------------------------------------------ create

export function createWorkflow(svc: Fulfillment) {
  return defineWorkflow({
    name: CREATE_WORKFLOW,
    version: 1,
    input: Input,
    retry: { maxAttempts: 3, initialIntervalMs: 500 },
    async run(ctx, input) {
      const id = input.clusterId;
      const S = <T>(name: string, fn: () => Promise<T>) => inStage(ctx, svc, 'create', id, name, fn);
      const holder = `cluster:${id}`;

      const plan = await S('accepted', async () => {
        const p = await ctx.step('accepted: order', () => svc.plan(id));
        await approval(ctx, svc, 'create', p);
        await ctx.step('accepted: hub', async (sc) => {
          const hubs = (await svc.inventory.listHubs()).filter((h) => Object.entries(p.hubSelector).every(([k, v]) => h.labels[k] === v) && (!h.datacenter || h.datacenter === p.datacenter));
          const existing = (await svc.parts<{ name: string }>(id, 'hub'))[0];
          if (existing) return existing.name;
          if (!hubs.length) throw new InfraflowError('fulfillment.no_hub', `no hub matches the template's hub selector ${JSON.stringify(p.hubSelector)} in ${p.datacenter}; add a hub`, 409, { retryable: false });
          const hub = await svc.inventory.claimHub({ labels: p.hubSelector }).catch((e: unknown) => {
            throw new InfraflowError('fulfillment.no_hub_capacity', `every matching hub is full (${hubs.map((h) => `${h.name} ${h.used}/${h.capacity}`).join(', ')}): ${e instanceof Error ? e.message : String(e)}`, 503, { retryable: true });
          });
          const reason = `hub ${hub.name} (${hub.region}) matches ${Object.keys(p.hubSelector).length ? JSON.stringify(p.hubSelector) : 'any hub'}, ${hub.capacity - hub.used} of ${hub.capacity} slots free after this cluster; candidates: ${hubs.map((h) => h.name).join(', ')}`;
          sc.log(reason);
          await svc.addPart(id, 'hub', hub.name, { name: hub.name });
          await svc.updateStatus(id, (s) => { s.hub = hub.name; s.hubReason = reason; });
          return hub.name;
        }, { retry: backendRetry(svc) });
        return p;
      });
      const hub = (await svc.parts<{ name: string }>(id, 'hub'))[0]?.name ?? 'hub';

      const { reservation, agents } = await S('agents', async () => {
        const got = await ctx.step('agents: reservation', async () => {
          if (!plan.reservationId) return { id: null as string | null };
          const r = await svc.allocations.get(plan.reservationId);
          if (r.status === 'open') {
            try {
              await svc.allocations.commit(r.id);
              return { id: r.id };
            } catch (e) {
              if (isInfraflowError(e) && e.code === 'reservation.expired') return { id: null };
              throw e;
            }
          }
          return { id: r.status === 'committed' ? r.id : null };
        });
        let rid = got.id;
        if (!rid) {
          const request = await ctx.step('agents: request', () => svc.allocationRequest(plan.name, plan.nodeSets));
          const f = await ctx.step('agents: feasibility', async (sc) => {
            const r = await svc.allocations.feasibility(request);
            if (!r.feasible) {
              const kicked = await kickHotPool(svc, `${ctx.runId}:wait`, plan.nodeSets.filter((s) => s.hostType).map((s) => s.hostType!), plan.datacenter);
              if (kicked.length) sc.log(`hot pool asked to discover ${kicked.join(', ')}`);
            }
            return r;
          });
          if (!f.feasible) await svc.stageWaiting(id, ctx.runId, 'agents', `capacity: ${f.shortfalls.map((s) => s.reason).join('; ')}`);
          const r = await reserveWhenAvailable(ctx, svc.allocations, { ...request, holder, ttlMs: svc.config.reservationTtlMs, key: `${holder}:wait` }, { timeoutMs: plan.waitTimeoutMs, name: 'agents: reserve', recheckMs: Math.max(svc.config.pollMs * 5, 5_000) });
          await ctx.step('agents: commit', () => svc.allocations.commit(r.id).then(() => true));
          rid = r.id;
        }
        const rsvId = rid;
        return ctx.step('agents: agents', async (sc) => {
          const r = await svc.allocations.get(rsvId);
          await svc.addPart(id, 'reservation', r.id, { id: r.id });
          const vlan = r.vlans[0]!;
          const prefix = r.prefixes[0]!;
          await svc.addPart(id, 'vlan', String(vlan.vlan), { vlan: vlan.vlan });
          await svc.addPart(id, 'network', prefix.id, { prefixId: prefix.id, cidr: prefix.cidr, gateway: prefix.gateway });
          const existing = await svc.parts<Agent>(id, 'agent');
          const ag = existing.length ? existing : assign(r.servers, plan.nodeSets.filter((s) => s.hostType).map((s) => ({ set: s, count: s.size })));
          if (!existing.length) await recordAgents(svc, id, ag);
          await kickHotPool(svc, ctx.runId, ag.map((a) => a.type), plan.datacenter);
          sc.log(`${ag.length} agent(s): ${ag.map((a) => `${a.nodeSet}/${a.serial}`).join(', ')}; VLAN ${vlan.vlan}, machine network ${prefix.cidr}, VIPs ${r.floatingIps.map((f) => f.address).join(', ')}`);
          await refreshNodeSets(svc, id, plan.nodeSets, false);
          return {
            reservation: { id: r.id, vlan: vlan.vlan, prefix: { id: prefix.id, cidr: prefix.cidr, gateway: prefix.gateway }, vips: r.floatingIps.map((f) => f.address) },
            agents: ag,
          };
        });
      });

      await S('network', async () => {
        await ctx.step('network: bind ports', async (sc) => {
          const ports = agents.flatMap((a) => a.ports);
          await call('bindPorts', () => svc.backend.bindPorts({ key: sc.idempotencyKey, clusterId: id, vlan: reservation.vlan, ports }));
          sc.log(`${ports.length} switch port(s) on VLAN ${reservation.vlan}`);
          return ports.length;
        }, { retry: backendRetry(svc) });
      });
      const vms = await createVms(ctx, svc, plan, reservation.vlan, reservation.prefix);

      const leases = await S('addresses', async () => {
        const out = await ctx.step('addresses: leases', async (sc) => {
          const ls = await leaseAddresses(svc, id, reservation.prefix.id, agents, `${sc.idempotencyKey}:addr`);
          const scope = await call('createDhcpScope', () => svc.backend.createDhcpScope({ key: `${sc.idempotencyKey}:scope`, clusterId: id, hub, vlan: reservation.vlan, cidr: reservation.prefix.cidr, gateway: reservation.prefix.gateway ?? '', leases: ls }));
          await svc.addPart(id, 'scope', scope.id, { id: scope.id });
          return { scope: scope.id, leases: ls.map((l) => ({ serverId: l.serverId, ip: l.ip })) };
        }, { retry: backendRetry(svc) });
        if (agents.length) await waitReported(ctx, svc, id, out.scope, 'agents reported');
        const vmLeases = (await svc.parts<Lease>(id, 'address')).filter((l) => vms.some((v) => v.serverId === l.serverId)).map((l) => ({ serverId: l.serverId, ip: l.ip }));
        return [...out.leases, ...vmLeases];
      });
      const allAgents = [...agents, ...vms];

      await S('dns', async () => {
        const recs = await ctx.step('dns: records', async (sc) => {
          const z = await providerCreate(svc, 'dns/Zone', { name: plan.baseDomain }, `fulfillment:zone:${plan.baseDomain}`, plan.baseDomain);
          const out: { kind: string; id: string }[] = [];
          for (const [i, n] of [`api.${plan.name}`, `apps.${plan.name}`, `*.apps.${plan.name}`].entries()) {
            const ip = reservation.vips[Math.min(i, 1)]!;
            const r = await providerCreate(svc, 'dns/Record', { zone: z.externalId, name: n, type: 'A', values: [ip] }, `${sc.idempotencyKey}:${i}`, n);
            await svc.addPart(id, 'dns', r.externalId, { kind: 'dns/Record', id: r.externalId, name: `${n}.${plan.baseDomain}` });
            out.push({ kind: 'dns/Record', id: r.externalId });
          }
          sc.log(`api.${plan.name}.${plan.baseDomain} -> ${reservation.vips[0]}, *.apps.${plan.name}.${plan.baseDomain} -> ${reservation.vips[1]}`);
          return out;
        }, { retry: backendRetry(svc) });
        await pollObjects(ctx, svc, id, 'dns', 'records ready', Array.isArray(recs) ? recs : [], 'ready');
      });

      await S('storage', async () => {
        const vol = await ctx.step('storage: volume', async (sc) => {
          const v = await providerCreate(svc, 'storage/Volume', { sizeGb: plan.storage.sizeGb, type: plan.storage.type }, sc.idempotencyKey, `${plan.name}-registry`);
          await svc.addPart(id, 'volume', v.externalId, { kind: 'storage/Volume', id: v.externalId });
          return { kind: 'storage/Volume', id: v.externalId };
        }, { retry: backendRetry(svc) });
        if (vol && (vol as { id?: string }).id) await pollObjects(ctx, svc, id, 'storage', 'volume ready', [vol], 'ready');
      });

      const installId = await S('install', async () => {
        const inst = await ctx.step('install: start', async (sc) => {
          await toProvisioning(svc, allAgents, id);
          const r = await call('startInstall', () => svc.backend.startInstall({
            key: sc.idempotencyKey, clusterId: id, name: plan.name, baseDomain: plan.baseDomain, hub, releaseImage: plan.releaseImage, apiVip: reservation.vips[0]!, ingressVip: reservation.vips[1]!,
            agents: allAgents.map((a) => installAgent(a, leases)),
          }));
          await svc.addPart(id, 'install', r.id, { id: r.id });
          return r.id;
        }, { retry: backendRetry(svc) });
        await installAgents(ctx, svc, 'create', plan, inst, 'all');
        return inst;
      });

      const apiUrl = await S('controlPlane', async () => {
        await ctx.poll('controlPlane: available', async () => {
          const st = await call('installStatus', () => svc.backend.installStatus(installId));
          await svc.stageWaiting(id, ctx.runId, 'controlPlane', st.controlPlaneReady ? null : 'the API server and etcd on the hub to become available');
          return { done: st.controlPlaneReady, value: true };
        }, { intervalMs: svc.config.pollMs, timeoutMs: svc.config.stageTimeoutMs, retry: backendRetry(svc) });
        return ctx.step('controlPlane: credentials', async (sc) => {
          const st: InstallStatus = await call('installStatus', () => svc.backend.installStatus(installId));
          if (!st.credentials) throw new InfraflowError('fulfillment.no_credentials', 'the installer has not produced credentials yet', 503, { retryable: true });
          await svc.storeCredentials(id, { kubeconfig: st.credentials.kubeconfig, adminUser: st.credentials.adminUser, adminPassword: st.credentials.adminPassword });
          await svc.updateStatus(id, (s) => { s.apiUrl = st.apiUrl; s.consoleUrl = st.consoleUrl; });
          sc.log(`API ${st.apiUrl}; credentials sealed at rest`);
          return st.apiUrl;
        }, { retry: backendRetry(svc) });
      });

      await S('workers', async () => {
        const want = allAgents.filter((a) => a.role === 'worker').length;
        await ctx.poll('workers: joined', async () => {
          const st = await call('installStatus', () => svc.backend.installStatus(installId));
          await svc.stageWaiting(id, ctx.runId, 'workers', st.workersJoined < want ? `${want - st.workersJoined} of ${want} workers to join` : null);
          return { done: st.workersJoined >= want, value: st.workersJoined };
        }, { intervalMs: svc.config.pollMs, timeoutMs: svc.config.stageTimeoutMs, retry: backendRetry(svc) });
        await ctx.step('workers: provisioned', async () => {
          for (const a of await svc.parts<Agent>(id, 'agent')) {
            if (a.vm) continue;
            const s = await svc.inventory.getServer(a.serverId);
            if (s.state === 'provisioning') await svc.inventory.transition({ serverId: a.serverId, to: 'provisioned', reason: `node of cluster ${plan.name}`, actor: 'fulfillment' });
          }
          await refreshNodeSets(svc, id, plan.nodeSets, true);
        });
      });

      await S('postInstall', () => postInstall(ctx, svc, plan, apiUrl));
      await S('validation', () => validate(ctx, svc, plan, installId));
      await S('ready', () => markReady(ctx, svc, plan, 'create'));
      return { cluster: id, apiUrl };
    },
  });
}

// ------------------------------------------------------------------- scale

export function scaleWorkflow(svc: Fulfillment) {
  return defineWorkflow({
    name: SCALE_WORKFLOW,
    version: 1,
    input: ScaleInput,
    retry: { maxAttempts: 3, initialIntervalMs: 500 },
    async run(ctx, input) {
      const id = input.clusterId;
      const S = <T>(name: string, fn: () => Promise<T>) => inStage(ctx, svc, 'scale', id, name, fn);
      const holder = `cluster:${id}`;
      const previous = input.previous as PlannedNodeSet[];
      const plan = await S('accepted', async () => {
        const p = await ctx.step('accepted: order', () => svc.plan(id));
        await approval(ctx, svc, 'scale', p);
        return p;
      });
      const sizeOf = (sets: PlannedNodeSet[], n: string) => sets.find((s) => s.name === n)?.size ?? 0;
      const names = [...new Set([...previous.map((s) => s.name), ...plan.nodeSets.map((s) => s.name)])];
      const grow = plan.nodeSets.filter((s) => s.hostType && s.size > sizeOf(previous, s.name)).map((s) => ({ set: s, count: s.size - sizeOf(previous, s.name) }));

      const { added, removed } = await S('agents', async () => {
        const chosen = await ctx.step('agents: choose', async () => {
          const cur = await svc.parts<Agent>(id, 'agent');
          const rm: Agent[] = [];
          for (const n of names) {
            const drop = sizeOf(previous, n) - sizeOf(plan.nodeSets, n);
            if (drop > 0) rm.push(...cur.filter((a) => a.nodeSet === n).slice(-drop));
          }
          return rm;
        });
        if (!grow.length) return { added: [] as Agent[], removed: chosen };
        const r = await reserveWhenAvailable(ctx, svc.allocations, { servers: grow.map((g) => ({ type: g.set.hostType!, datacenter: plan.datacenter, count: g.count })), holder, ttlMs: svc.config.reservationTtlMs, key: `${holder}:scale-${plan.revision}` }, { timeoutMs: plan.waitTimeoutMs, name: 'agents: reserve', recheckMs: Math.max(svc.config.pollMs * 5, 5_000) });
        const ag = await ctx.step('agents: commit', async () => {
          await svc.allocations.commit(r.id);
          await svc.addPart(id, 'reservation', r.id, { id: r.id });
          const full = await svc.allocations.get(r.id);
          const a = assign(full.servers, grow);
          await recordAgents(svc, id, a);
          return a;
        });
        return { added: ag, removed: chosen };
      });
      const installId = (await ctx.step('agents: install id', async () => (await svc.parts<{ id: string }>(id, 'install'))[0]?.id ?? null))!;
      const scopeId = await ctx.step('agents: scope id', async () => (await svc.parts<{ id: string }>(id, 'scope'))[0]?.id ?? null);
      const vlan = await ctx.step('agents: vlan', async () => (await svc.parts<{ vlan: number }>(id, 'vlan'))[0]?.vlan ?? null);

      await S('network', async () => {
        if (!added.length) return;
        await ctx.step('network: bind ports', async (sc) => call('bindPorts', () => svc.backend.bindPorts({ key: sc.idempotencyKey, clusterId: id, vlan: vlan!, ports: added.flatMap((a) => a.ports) })), { retry: backendRetry(svc) });
      });
      const leases = await S('addresses', async () => {
        if (!added.length) return [];
        const ls = await ctx.step('addresses: leases', async (sc) => {
          const prefixId = (await svc.parts<{ prefixId: string }>(id, 'network'))[0]!.prefixId;
          const l = await leaseAddresses(svc, id, prefixId, added, `${sc.idempotencyKey}:addr`);
          if (scopeId) await call('addLeases', () => svc.backend.addLeases({ key: `${sc.idempotencyKey}:leases`, scopeId, leases: l }));
          return l.map((x) => ({ serverId: x.serverId, ip: x.ip }));
        }, { retry: backendRetry(svc) });
        if (scopeId) await waitReported(ctx, svc, id, scopeId, 'new agents reported');
        return ls;
      });
      await S('install', async () => {
        if (!added.length) return;
        await ctx.step('install: add agents', async (sc) => {
          await toProvisioning(svc, added, id);
          await call('addAgents', () => svc.backend.addAgents({ key: sc.idempotencyKey, installId, agents: added.map((a) => installAgent(a, leases)) }));
        }, { retry: backendRetry(svc) });
        await installAgents(ctx, svc, 'scale', plan, installId, 'new');
      });
      await S('workers', async () => {
        if (!added.length) return;
        const want = await ctx.step('workers: expected', async () => (await svc.parts<Agent>(id, 'agent')).filter((a) => a.role === 'worker' && !removed.some((r) => r.serverId === a.serverId)).length);
        await ctx.poll('workers: joined', async () => {
          const st = await call('installStatus', () => svc.backend.installStatus(installId));
          await svc.stageWaiting(id, ctx.runId, 'workers', st.workersJoined < want ? `${want - st.workersJoined} of ${want} workers to join` : null);
          return { done: st.workersJoined >= want, value: st.workersJoined };
        }, { intervalMs: svc.config.pollMs, timeoutMs: svc.config.stageTimeoutMs, retry: backendRetry(svc) });
        await ctx.step('workers: provisioned', async () => {
          for (const a of added) {
            const s = await svc.inventory.getServer(a.serverId);
            if (s.state === 'provisioning') await svc.inventory.transition({ serverId: a.serverId, to: 'provisioned', reason: `node of cluster ${plan.name}`, actor: 'fulfillment' });
          }
        });
      });
      await S('drain', async () => {
        if (!removed.length) return;
        await ctx.step('drain: remove agents', async (sc) => {
          await call('removeAgents', () => svc.backend.removeAgents({ key: `${sc.idempotencyKey}:rm`, installId, serverIds: removed.map((a) => a.serverId) }));
          await call('unbindPorts', () => svc.backend.unbindPorts({ key: `${sc.idempotencyKey}:unbind`, ports: removed.flatMap((a) => a.ports) }));
          if (scopeId) await call('removeLeases', () => svc.backend.removeLeases({ key: `${sc.idempotencyKey}:leases`, scopeId, serverIds: removed.map((a) => a.serverId) }));
          const addrs = await svc.parts<Lease>(id, 'address');
          for (const a of removed) {
            const ad = addrs.find((x) => x.serverId === a.serverId);
            if (ad) await svc.ipam.releaseAddress({ id: ad.addressId }).catch(() => undefined);
            await svc.dropPart(id, 'address', a.serverId);
            for (const p of a.ports) await svc.dropPart(id, 'port', `${p.switch}/${p.port}`);
          }
          sc.log(`${removed.length} node(s) drained and removed: ${removed.map((a) => a.serial).join(', ')}`);
        }, { retry: backendRetry(svc) });
        for (const a of removed) await cleanAgent(ctx, svc, id, a, 'drain');
      });
      await S('postInstall', () => postInstall(ctx, svc, plan, null));
      await S('validation', () => validate(ctx, svc, plan, installId));
      await S('ready', () => markReady(ctx, svc, plan, 'scale'));
      return { cluster: id, revision: plan.revision, added: added.length, removed: removed.length };
    },
  });
}

/** Returns an agent to the pool: released (deprovisioning), disks wiped by the backend (cleaning), available. */
async function cleanAgent(ctx: WorkflowContext, svc: Fulfillment, clusterId: string, a: Agent, stage: string): Promise<void> {
  await ctx.step(`${stage}: clean ${a.serial}`, async (sc) => {
    let s = await svc.inventory.getServer(a.serverId);
    if (s.holder === `cluster:${clusterId}` || (s.reservationId && ['allocated', 'provisioning', 'provisioned', 'failed'].includes(s.state))) {
      [s] = await svc.inventory.releaseServers({ ids: [a.serverId], reason: `cluster ${clusterId} released it`, actor: 'fulfillment' }) as [Server];
    }
    if (s.state === 'deprovisioning') s = await svc.inventory.transition({ serverId: a.serverId, to: 'cleaning', reason: 'wiping disks', actor: 'fulfillment' });
    if (s.state === 'cleaning') {
      await call('cleanAgent', () => svc.backend.cleanAgent({ key: sc.idempotencyKey, serverId: a.serverId }));
      s = await svc.inventory.transition({ serverId: a.serverId, to: 'available', reason: 'cleaned', actor: 'fulfillment' });
      await svc.inventory.notifyCapacityFor([s]);
    }
    await svc.dropPart(clusterId, 'agent', a.serverId);
    return s.state;
  }, { retry: backendRetry(svc) });
}

// ------------------------------------------------------------------ delete

export function deleteWorkflow(svc: Fulfillment) {
  return defineWorkflow({
    name: DELETE_WORKFLOW,
    version: 1,
    input: Input,
    retry: { maxAttempts: 3, initialIntervalMs: 500 },
    async run(ctx, input) {
      const id = input.clusterId;
      const S = <T>(name: string, fn: () => Promise<T>) => inStage(ctx, svc, 'delete', id, name, fn);
      const plan = await S('accepted', () => ctx.step('accepted: order', () => svc.plan(id)));
      const part = <T>(kind: string) => svc.parts<T>(id, kind);
      await S('postInstall', async () => {
        await ctx.step('postInstall: remove gitops content', async (sc) => {
          const g = await part<{ dir: string }>('git');
          if (!g.length) return null;
          const r = await svc.git.commitFolder(g[0]!.dir, null, `cluster ${plan.name} (${id}) deleted`, `${id}@delete`);
          sc.log(`removed ${g[0]!.dir}: ${r.commit}`);
          for (const x of g) await svc.dropPart(id, 'git', x.key);
          return r.commit;
        }, { retry: backendRetry(svc) });
      });
      await S('install', async () => {
        await ctx.step('install: uninstall', async (sc) => {
          for (const i of await part<{ id: string }>('install')) {
            await call('uninstall', () => svc.backend.uninstall({ key: sc.idempotencyKey, installId: i.id }));
            await svc.dropPart(id, 'install', i.key);
          }
        }, { retry: backendRetry(svc) });
      });
      const teardown = async (stage: string, kinds: string[]) => {
        const objs = await ctx.step(`${stage}: delete objects`, async (sc) => {
          const out: { kind: string; id: string }[] = [];
          for (const k of kinds) {
            const rows = (await part<{ kind: string; id: string; order?: number }>(k)).sort((a, b) => (a.order ?? 0) - (b.order ?? 0));
            for (const o of rows) {
              await providerDelete(svc, o.kind, o.id, `${sc.idempotencyKey}:${o.id}`);
              out.push({ kind: o.kind, id: o.id });
            }
          }
          return out;
        }, { retry: backendRetry(svc) });
        await pollObjects(ctx, svc, id, stage, 'objects gone', objs, 'absent');
        await ctx.step(`${stage}: forget objects`, async () => {
          for (const k of kinds) for (const o of await part(k)) await svc.dropPart(id, k, o.key);
        });
      };
      await S('storage', () => teardown('storage', ['volume']));
      await S('dns', () => teardown('dns', ['dns']));
      await S('addresses', async () => {
        await teardown('addresses', ['vm']);
        await ctx.step('addresses: release', async (sc) => {
          for (const s of await part<{ id: string }>('scope')) {
            await call('deleteDhcpScope', () => svc.backend.deleteDhcpScope({ key: sc.idempotencyKey, scopeId: s.id }));
            await svc.dropPart(id, 'scope', s.key);
          }
          for (const a of await part<Lease>('address')) {
            await svc.ipam.releaseAddress({ id: a.addressId }).catch((e: unknown) => {
              if (!(isInfraflowError(e) && e.status === 404)) throw e;
            });
            await svc.dropPart(id, 'address', a.key);
          }
        }, { retry: backendRetry(svc) });
      });
      await S('network', async () => {
        await teardown('network', ['netobj']);
        await ctx.step('network: unbind ports', async (sc) => {
          const ports = await part<SwitchPortRef>('port');
          await call('unbindPorts', () => svc.backend.unbindPorts({ key: sc.idempotencyKey, ports: ports.map((p) => ({ switch: p.switch, port: p.port })) }));
          for (const p of ports) await svc.dropPart(id, 'port', p.key);
          sc.log(`${ports.length} switch port(s) back on the default VLAN`);
        }, { retry: backendRetry(svc) });
      });
      await S('agents', async () => {
        await ctx.step('agents: release reservations', async (sc) => {
          for (const r of await part<{ id: string }>('reservation')) {
            const cur = await svc.allocations.get(r.id);
            if (cur.status === 'open' || cur.status === 'committed') await svc.allocations.release(r.id, `cluster ${plan.name} deleted`);
            await svc.dropPart(id, 'reservation', r.key);
          }
          // an order deleted before it reserved: an open reservation taken at acceptance, or a wait in progress
          for (const r of await svc.allocations.list({ holder: `cluster:${id}` })) if (r.status === 'open' || r.status === 'committed') await svc.allocations.release(r.id, `cluster ${plan.name} deleted`);
          // runs of this cluster that were waiting for capacity when they were cancelled
          for (const r of await svc.engine.list({ labels: { cluster: id }, limit: 100 })) await svc.inventory.removeWaiter(r.id).catch(() => undefined);
          await svc.ipam.releaseByHolder(`cluster:${id}`);
          for (const v of await part('vlan')) await svc.dropPart(id, 'vlan', v.key);
          for (const n of await part('network')) await svc.dropPart(id, 'network', n.key);
          sc.log('reservation released: VLAN, machine network, VIPs and DNS names are free');
        });
        const agents = await ctx.step('agents: list', async () => (await part<Agent>('agent')).filter((a) => !a.vm));
        for (const a of agents) await cleanAgent(ctx, svc, id, a, 'agents');
        await ctx.step('agents: strays', async () => {
          // servers still held (a replacement allocated by a run that was cancelled before it recorded it)
          const held = await svc.inventory.listServers({ holder: `cluster:${id}` });
          if (held.length) await svc.inventory.releaseServers({ holder: `cluster:${id}`, reason: `cluster ${plan.name} deleted` });
          for (const v of await part('agent')) await svc.dropPart(id, 'agent', v.key);
          return held.map((s) => s.id);
        });
        const strays = (await ctx.step('agents: stray list', async () => (await svc.inventory.listServers({ state: 'deprovisioning' })).filter((s) => s.stateReason.includes(plan.name)).map((s) => ({ serverId: s.id, serial: s.serial, type: s.type, nodeSet: '', role: 'worker' as const, macs: [], ports: [] }))));
        for (const a of strays) await cleanAgent(ctx, svc, id, a, 'agents');
        await ctx.step('agents: release hub', async () => {
          for (const h of await part<{ name: string }>('hub')) {
            await svc.inventory.releaseHub(h.name).catch(() => undefined);
            await svc.dropPart(id, 'hub', h.key);
          }
        });
      });
      await S('ready', () => ctx.step('ready: deleted', async () => {
        await svc.stageEnd(id, ctx.runId, 'delete', 'ready');
        await svc.setState(id, 'Deleted', { message: 'deleted; nothing left behind', condition: cond('Ready', 'False', 'Deleted', 'every part torn down in reverse order', svc.clock.now()) });
        return svc.holdings(id);
      }));
      return { cluster: id, deleted: true };
    },
  });
}

export function fulfillmentWorkflows(svc: Fulfillment) {
  return [createWorkflow(svc), scaleWorkflow(svc), deleteWorkflow(svc)];
}

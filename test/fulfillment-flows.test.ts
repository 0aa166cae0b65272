import { afterEach, describe, expect, it, vi } from 'vitest';
import { DIALECTS } from './support/dialects.js';
import { addAgents, fulfillmentWorld, leaks, type FulWorld } from './fixtures/fulfillment-world.js';

const order = (name: string, size = 3, extra: Record<string, unknown> = {}) => ({
  name, project: 'team-a', spec: { template: 'ocp-4.17-small', templateParameters: { costCenter: 'cc' }, nodeSets: { workers: { size } } }, ...extra,
});

async function waitState(w: FulWorld, id: string, states: string[], timeout = 90_000) {
  await vi.waitFor(async () => expect(states).toContain((await w.ctx.fulfillment.get(id)).status.state), { timeout, interval: 50 });
  return w.ctx.fulfillment.get(id);
}

/** Every holder of servers holds a whole order (3 of them) or none: nothing holds a partial set. */
async function partialSets(w: FulWorld, size: number): Promise<string[]> {
  const byHolder = new Map<string, number>();
  for (const s of await w.ctx.inventory.listServers({})) if (s.holder) byHolder.set(s.holder, (byHolder.get(s.holder) ?? 0) + 1);
  return [...byHolder].filter(([, n]) => n !== size).map(([h, n]) => `${h}:${n}`);
}

describe.each(DIALECTS)('cluster fulfillment flows on %s', (dialect) => {
  let w: FulWorld;
  afterEach(async () => w?.close());

  it('faults: 20 % transient backend failures -> all Ready; a permanent one fails the right stage with the reason; retry after clearing -> Ready; skip a failed stage', async () => {
    w = await fulfillmentWorld(dialect, { agents: 9 });
    const f = w.ctx.fulfillment;
    w.backend.setFaults({ transientRate: 0.2 });
    await w.ctx.sim.setFaults({ rules: [{ kind: 'dns/*', op: 'create', transientRate: 0.2 }, { kind: 'storage/*', op: 'create', transientRate: 0.2 }] });
    const ids: string[] = [];
    for (const n of ['f1', 'f2', 'f3']) ids.push((await f.create(order(n, 2))).id);
    for (const id of ids) expect((await waitState(w, id, ['Ready', 'Failed'])).status.state).toBe('Ready');
    // the faults happened: some steps needed more than one attempt
    const steps = (await Promise.all(ids.map((id) => w.ctx.engine.timeline(`ful-${id}-create`)))).flat();
    expect(steps.filter((s) => s.attempts > 1).length).toBeGreaterThan(0);

    // permanent failure at validation: Failed at that stage, with the backend's reason and answer
    w.backend.setFaults({ permanent: [{ op: 'validate', reason: 'cluster-version operator Degraded: etcd quorum lost' }] });
    await w.ctx.sim.setFaults({ rules: [] });
    const bad = await f.create(order('p1', 2));
    const failed = await waitState(w, bad.id, ['Failed', 'Ready']);
    expect(failed.status.state).toBe('Failed');
    expect(failed.status.message).toContain('stage validation');
    const st = await f.stages(bad.id);
    const v = st.find((s) => s.name === 'validation')!;
    expect(v.status).toBe('failed');
    expect(v.error!.message).toContain('etcd quorum lost');
    expect(v.error!.backend).toMatchObject({ op: 'validate', status: 500 });
    expect(st.filter((s) => s.status === 'succeeded').map((s) => s.name)).toEqual(['accepted', 'agents', 'network', 'addresses', 'dns', 'storage', 'install', 'controlPlane', 'workers', 'postInstall']);
    expect(st.find((s) => s.name === 'ready')!.status).toBe('pending');
    // retry after the fault is cleared: continues from the failed stage, earlier steps are not repeated
    w.backend.setFaults({});
    // the order reads Failed as its stage fails; the run itself ends a moment later
    await vi.waitFor(async () => expect((await w.ctx.engine.get(`ful-${bad.id}-create`)).status).toBe('failed'), { timeout: 30_000, interval: 20 });
    await f.retry(bad.id, 'operator');
    expect((await waitState(w, bad.id, ['Ready', 'Failed'])).status.state).toBe('Ready');
    const tl = await w.ctx.engine.timeline(`ful-${bad.id}-create`);
    expect(tl.filter((s) => s.name === 'install: start')).toHaveLength(1);
    expect((await w.ctx.engine.history!(`ful-${bad.id}-create`)).map((x) => x.action)).toContain('retry');

    // skip: a failed stage that later stages do not need
    w.backend.setFaults({ permanent: [{ op: 'validate', reason: 'test workload timed out' }] });
    const sk = await f.create(order('s1', 1));
    expect((await waitState(w, sk.id, ['Failed', 'Ready'])).status.state).toBe('Failed');
    await expect(f.skip(sk.id, 'install', 'operator')).rejects.toThrow(/cannot be skipped/);
    await f.skip(sk.id, 'validation', 'operator');
    expect((await waitState(w, sk.id, ['Ready', 'Failed'])).status.state).toBe('Ready');
    expect((await f.stages(sk.id)).find((s) => s.name === 'validation')!.status).toBe('skipped');
    w.backend.setFaults({});
  }, 240_000);

  it('contention: orders that fit proceed, the rest wait holding nothing and proceed as agents are freed or discovered', async () => {
    w = await fulfillmentWorld(dialect, { agents: 6 });
    const f = w.ctx.fulfillment;
    // capacity: reserve refuses what cannot be met now; capacity: wait accepts and waits
    const ids: string[] = [];
    for (const n of ['c1', 'c2', 'c3', 'c4']) ids.push((await f.create(order(n, 3, { capacity: 'wait' }))).id);
    await vi.waitFor(async () => {
      const states = await Promise.all(ids.map(async (id) => (await f.get(id)).status.state));
      expect(states.filter((s) => s === 'Ready')).toHaveLength(2);
    }, { timeout: 90_000, interval: 50 });
    const waiting: string[] = [];
    for (const id of ids) {
      const c = await f.get(id);
      if (c.status.state === 'Ready') continue;
      expect(c.status.state).toBe('Progressing');
      const agents = (await f.stages(id)).find((s) => s.name === 'agents')!;
      expect(['waiting', 'running']).toContain(agents.status);
      waiting.push(id);
    }
    expect(waiting).toHaveLength(2);
    await vi.waitFor(async () => expect((await f.stages(waiting[0]!)).find((s) => s.name === 'agents')!.waitingOn).toMatch(/^capacity: .*\b3\b.*servers?.* of type general\.m1 .*dc1/), { timeout: 30_000 });
    expect(await partialSets(w, 3)).toEqual([]);
    for (const id of waiting) expect(await w.ctx.inventory.listServers({ holder: `cluster:${id}` })).toEqual([]);
    expect(await w.ctx.allocations.list({ status: 'open' })).toEqual([]);
    // a delete frees agents: one waiting order proceeds
    const ready = ids.filter((id) => !waiting.includes(id));
    await f.delete(ready[0]!, 't');
    await vi.waitFor(async () => {
      const states = await Promise.all(waiting.map(async (id) => (await f.get(id)).status.state));
      expect(states.filter((s) => s === 'Ready')).toHaveLength(1);
      expect(await partialSets(w, 3)).toEqual([]);
    }, { timeout: 90_000, interval: 50 });
    // new hardware discovered and inspected: the last one proceeds
    const fresh = await addAgents(w.ctx, 'general.m1', 3, 500, 'registering');
    for (const id of fresh) {
      await w.ctx.inventory.transition({ serverId: id, to: 'inspecting', reason: 'discovered' });
      await w.ctx.inventory.transition({ serverId: id, to: 'available', reason: 'inspected' });
    }
    for (const id of waiting) expect((await waitState(w, id, ['Ready', 'Failed'])).status.state).toBe('Ready');
    expect(await partialSets(w, 3)).toEqual([]);
    // an order deleted while it waits: the wait ends, it held nothing, nothing is left
    const late = await f.create(order('c5', 3, { capacity: 'wait' }));
    await vi.waitFor(async () => expect((await w.ctx.store.db.selectFrom('inv_capacity_waiters').select('run_id').where('run_id', '=', `ful-${late.id}-create`).execute())).toHaveLength(1), { timeout: 30_000, interval: 50 });
    await f.delete(late.id, 't');
    await waitState(w, late.id, ['Deleted']);
    expect(await w.ctx.store.db.selectFrom('inv_capacity_waiters').select('run_id').where('run_id', '=', `ful-${late.id}-create`).execute()).toEqual([]);
    expect(await f.holdings(late.id)).toEqual({});
    expect((await w.ctx.engine.get(`ful-${late.id}-create`)).status).toBe('cancelled');
    // nothing handed out twice: every agent, VLAN and address belongs to one cluster
    const live = ids.filter((id) => id !== ready[0]);
    const agentsOf = await Promise.all(live.map((id) => w.ctx.inventory.listServers({ holder: `cluster:${id}` })));
    const all = agentsOf.flat().map((s) => s.id);
    expect(new Set(all).size).toBe(9);
    const vlans = (await w.ctx.ipam.listVlans({})).map((v) => v.vlan);
    expect(new Set(vlans).size).toBe(vlans.length);
  }, 240_000);

  it('hot pool: orders that take agents make the hot pool discover and inspect new hardware; a waiting order proceeds on it', async () => {
    w = await fulfillmentWorld(dialect, { agents: 3 });
    const f = w.ctx.fulfillment;
    await w.ctx.inventory.setHotPoolPolicy({ type: 'general.m1', datacenter: 'dc1', minReady: 3 });
    const a = await f.create(order('h1', 3));
    const b = await f.create(order('h2', 3, { capacity: 'wait' }));
    for (const id of [a.id, b.id]) expect((await waitState(w, id, ['Ready', 'Failed'])).status.state).toBe('Ready');
    // six agents now: three discovered by the hot pool, taken through registering -> inspecting -> available
    const servers = await w.ctx.inventory.listServers({ type: 'general.m1' });
    expect(servers.length).toBeGreaterThanOrEqual(6);
    const discovered = servers.filter((s) => !s.serial.startsWith('AG'));
    expect(discovered.length).toBeGreaterThanOrEqual(3);
    expect((await w.ctx.inventory.serverHistory(discovered[0]!.id)).map((e) => e.to)).toEqual(expect.arrayContaining(['inspecting', 'available']));
    const pools = await f.hostPools();
    expect(pools.find((p) => p.hostType === 'general.m1')).toMatchObject({ minReady: 3 });
  }, 240_000);

  it('quarantine: an agent that fails install repeatedly is quarantined and replaced; scale down returns agents cleaned; delete leaves nothing', async () => {
    w = await fulfillmentWorld(dialect, { agents: 5 });
    const f = w.ctx.fulfillment;
    const first = (await w.ctx.inventory.listServers({ type: 'general.m1' })).sort((a, b) => (a.id < b.id ? -1 : 1))[0]!;
    w.backend.setFaults({ badAgents: [first.serial] });
    const c = await f.create(order('q1', 3));
    expect((await waitState(w, c.id, ['Ready', 'Failed'])).status.state).toBe('Ready');
    const bad = await w.ctx.inventory.getServer(first.id);
    expect(bad.state).toBe('quarantined');
    expect(bad.failureCount).toBe(3);
    expect(bad.failureReasons.at(-1)!.reason).toContain('I/O error');
    const agents = await w.ctx.inventory.listServers({ holder: `cluster:${c.id}` });
    expect(agents).toHaveLength(3);
    expect(agents.map((a) => a.id)).not.toContain(first.id);
    const stages = await f.stages(c.id);
    expect(stages.find((s) => s.name === 'install')!.logs.some((l) => l.message.includes('quarantined'))).toBe(true);
    w.backend.setFaults({});

    // scale down 3 -> 1: two agents drained, cleaned, back in the pool; their ports on the default VLAN
    await f.patch(c.id, { spec: { nodeSets: { workers: { size: 1 } } } });
    const s = await waitState(w, c.id, ['Ready', 'Failed']);
    expect(s.status.state).toBe('Ready');
    expect(s.revision).toBe(2);
    expect(s.status.nodeSets.workers).toMatchObject({ size: 1, ready: 1 });
    expect(await w.ctx.inventory.listServers({ holder: `cluster:${c.id}` })).toHaveLength(1);
    expect((await w.backend.boundPorts())).toHaveLength(1);
    expect((await f.stages(c.id)).map((x) => `${x.name}:${x.status}`)).toContain('drain:succeeded');

    await f.delete(c.id, 't');
    await waitState(w, c.id, ['Deleted']);
    expect(await leaks(w, c.id)).toEqual({ servers: 0, vlans: 0, addresses: 0, prefixes: 0, parts: 0, ports: 0, fabric: 0, records: 0, volumes: 0, vms: 0, reservations: 0 });
  }, 240_000);

  it('approval above a size; VM node sets build a MicroK8s cluster through the provider registry', async () => {
    w = await fulfillmentWorld(dialect, { agents: 4, approvalAboveNodes: 2 });
    const f = w.ctx.fulfillment;
    const c = await f.create(order('big', 3));
    expect(c.status.state).toBe('PendingApproval');
    await vi.waitFor(async () => expect((await f.stages(c.id)).find((s) => s.name === 'accepted')!.waitingOn).toBe('approval by an operator'), { timeout: 30_000 });
    expect(await w.ctx.inventory.listServers({ holder: `cluster:${c.id}` })).toEqual([]);
    await f.approve(c.id, 'root', 'capacity planned for Q3 (TICKET-1)');
    const r = await waitState(w, c.id, ['Ready', 'Failed']);
    expect(r.status.state).toBe('Ready');
    expect(r.status.conditions.find((k) => k.type === 'Approved')!.message).toBe('approved by root: capacity planned for Q3 (TICKET-1)');

    const vm = await f.create({ name: 'mk8s', project: 'team-a', spec: { template: 'microk8s-3' } });
    expect(vm.status.state).toBe('PendingApproval');
    await f.approve(vm.id, 'root', 'ok');
    const v = await waitState(w, vm.id, ['Ready', 'Failed']);
    expect(v.status.state, v.status.message ?? '').toBe('Ready');
    expect(v.status.nodeSets.nodes).toMatchObject({ flavor: 'SCS-2V-4-20s', size: 3, ready: 3 });
    const servers = await w.ctx.sim.listObjects({ kind: 'compute/Server' });
    expect(servers.filter((s) => s.phase === 'ready')).toHaveLength(3);
    await f.delete(vm.id, 't');
    await f.delete(c.id, 't');
    await waitState(w, vm.id, ['Deleted']);
    await waitState(w, c.id, ['Deleted']);
    expect(await leaks(w, vm.id)).toMatchObject({ vms: 0, servers: 0, addresses: 0, vlans: 0, records: 0, volumes: 0, parts: 0 });
    expect((await w.ctx.sim.listObjects({ kind: 'network/Subnet' })).length).toBe(0);
  }, 240_000);
});

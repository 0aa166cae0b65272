import { afterEach, describe, expect, it } from 'vitest';
import { DIALECTS } from '../../test/support/dialects.js';
import { allocMigrations, openWorld, seedWorld, type Seeded, type World } from '../../test/fixtures/alloc-world.js';
import { engineMigrations } from '../engine/index.js';
import { engineHarness, until, type EngineHarness } from '../engine/test-helpers.js';
import { connectCapacitySignals } from '../inventory/wait.js';
import { migrate } from '../store/migrate.js';
import { RESERVE_WORKFLOW, reserveWorkflow } from './wait.js';

describe.each(DIALECTS)('reserving when the request can be met, on %s', (dialect) => {
  let h: EngineHarness;
  afterEach(async () => h?.close());

  async function setup(opts: { servers?: number; vlanMax?: number } = {}): Promise<{ w: World; s: Seeded }> {
    h = await engineHarness(dialect);
    await migrate(h.t.store, [...engineMigrations, ...allocMigrations]);
    const w = openWorld(h.t.store, h.clock);
    const s = await seedWorld(w, opts);
    connectCapacitySignals(w.inventory, h.engine);
    h.engine.register(reserveWorkflow(w.alloc));
    h.engine.startWorker();
    return { w, s };
  }

  it('waits for servers without holding anything, is woken by released capacity, then reserves everything at once', async () => {
    const { w, s } = await setup({ servers: 3 });
    const busy = await w.inventory.allocateServers({ type: 'm1', datacenter: 'dc1', count: 2, holder: 'someone-else' });
    const run = await h.engine.start(RESERVE_WORKFLOW, { holder: 'order-1', waitTimeoutMs: 24 * 3600_000, servers: [{ type: 'm1', datacenter: 'dc1', count: 2 }], addresses: [{ prefixId: s.net24 }] });
    await h.waitEvent({ subject: run.id, types: ['run.waiting'] });
    const waiting = await h.engine.get(run.id);
    expect(waiting.status).toBe('waiting');
    expect(waiting.progress?.stage).toBe('waiting for capacity');
    expect(waiting.progress?.message).toMatch(/servers\.0: .*2 .*m1.*dc1/);
    expect(waiting.progress?.waitingFor).toContain('inventory.capacity:m1@dc1');
    // all or nothing while waiting: the one free server and the address are not held
    expect((await w.inventory.capacity({ type: 'm1', datacenter: 'dc1' })).available).toBe(1);
    expect(await w.ipam.listAddresses({ prefixId: s.net24 })).toEqual([]);
    expect(await w.alloc.list()).toEqual([]);

    await w.inventory.releaseServers({ ids: [busy[0]!.id] });
    const done = await h.engine.result(run.id);
    expect(done.status, JSON.stringify(done.error)).toBe('succeeded');
    const out = done.output as { reservation: string; status: string };
    expect(out.status).toBe('open');
    const r = await w.alloc.get(out.reservation);
    expect(r).toMatchObject({ holder: 'order-1', status: 'open' });
    expect(r.servers).toHaveLength(2);
    expect(r.addresses).toHaveLength(1);
    expect(await h.t.store.db.selectFrom('inv_capacity_waiters').selectAll().execute()).toEqual([]);
  });

  it('re-checks pools without a signal (VLANs), and gives up after its timeout with nothing allocated', async () => {
    const { w, s } = await setup({ vlanMax: 101 });
    const held = await w.ipam.allocateVlans({ poolId: s.vlanPool, holder: 'someone-else', count: 2 });
    const run = await h.engine.start(RESERVE_WORKFLOW, { holder: 'order-2', waitTimeoutMs: 120_000, vlans: [{ poolId: s.vlanPool }], servers: [{ type: 'm1', datacenter: 'dc1' }] });
    await h.waitEvent({ subject: run.id, types: ['run.waiting'] });
    expect((await h.engine.get(run.id)).progress?.message).toMatch(/vlans\.0/);
    // freed between re-checks: found by the next re-check (30 s of engine time)
    await w.ipam.releaseVlan({ id: held[0]!.id });
    h.clock.advance(30_000);
    const ok = await h.engine.result(run.id);
    expect(ok.status, JSON.stringify(ok.error)).toBe('succeeded');
    expect((await w.alloc.get((ok.output as { reservation: string }).reservation)).vlans.map((v) => v.vlan)).toEqual([held[0]!.vlan]);

    const late = await h.engine.start(RESERVE_WORKFLOW, { holder: 'order-3', waitTimeoutMs: 60_000, vlans: [{ poolId: s.vlanPool }], servers: [{ type: 'm1', datacenter: 'dc1' }] });
    await h.waitEvent({ subject: late.id, types: ['run.waiting'] });
    // engine time passes in re-check steps until the deadline
    await until(async () => {
      if (['failed', 'succeeded'].includes((await h.engine.get(late.id)).status)) return true;
      h.clock.advance(10_000);
      return false;
    }, 'the waiting run to give up');
    const failed = await h.engine.result(late.id);
    expect(failed.status).toBe('failed');
    expect(failed.error).toMatchObject({ code: 'allocation.capacity_timeout' });
    expect(failed.error?.message).toMatch(/still cannot be met: vlans\.0/);
    expect((await w.inventory.capacity({ type: 'm1', datacenter: 'dc1' })).available).toBe(3);
    expect(await w.alloc.list({ holder: 'order-3' })).toEqual([]);
    expect(await h.t.store.db.selectFrom('inv_capacity_waiters').selectAll().execute()).toEqual([]);
  });

  it('fails at once, without waiting, when the request names something unknown', async () => {
    await setup();
    const run = await h.engine.start(RESERVE_WORKFLOW, { holder: 'order-4', waitTimeoutMs: 24 * 3600_000, servers: [{ type: 'nope', datacenter: 'dc1' }] });
    const done = await h.engine.result(run.id);
    expect(done.status).toBe('failed');
    expect(done.error?.message).toMatch(/servers\.0.*nope/);
    expect(await h.t.store.db.selectFrom('inv_capacity_waiters').selectAll().execute()).toEqual([]);
  });
});

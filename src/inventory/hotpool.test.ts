import { afterEach, describe, expect, it } from 'vitest';
import { DIALECTS } from '../../test/support/dialects.js';
import { SecretBox } from '../core/secrets.js';
import { engineHarness, type EngineHarness } from '../engine/test-helpers.js';
import { engineMigrations } from '../engine/index.js';
import { migrate } from '../store/migrate.js';
import { inventoryMigrations } from './migrations.js';
import { Inventory } from './inventory.js';
import { hotPoolTickWorkflow, hotPoolWorkflow, SimulatedDiscovery } from './hotpool.js';

describe.each(DIALECTS)('hot pool workflows on %s', (dialect) => {
  let h: EngineHarness;
  afterEach(async () => h?.close());

  it('the tick reconciles every policy below its minimum through discovery and inspection', async () => {
    h = await engineHarness(dialect);
    await migrate(h.t.store, [...engineMigrations, ...inventoryMigrations]);
    const inv = new Inventory({ store: h.t.store, clock: h.clock, secrets: SecretBox.random() });
    await inv.createDatacenter({ name: 'dc1', region: 'eu' });
    await inv.createServerType({ name: 'm1', cpu: { model: 'x', cores: 8 }, ramGb: 64 });
    await inv.createServerType({ name: 'g1', cpu: { model: 'x', cores: 8 }, ramGb: 64 });
    await inv.registerServer({ serial: 'S1', type: 'm1', datacenter: 'dc1', state: 'available' });
    await inv.setHotPoolPolicy({ type: 'm1', datacenter: 'dc1', minReady: 4 });
    await inv.setHotPoolPolicy({ type: 'g1', datacenter: 'dc1', minReady: 2 });
    // the g1 supply runs short: only one more exists
    const disco: SimulatedDiscovery = new SimulatedDiscovery({ supply: { g1: 1 }, failInspection: (s) => (s === disco.discovered[1] ? 'fan failure' : undefined) });
    h.engine.register(hotPoolWorkflow(inv, disco));
    h.engine.register(hotPoolTickWorkflow(inv));
    h.engine.startWorker();
    const run = await h.engine.start('inventory.hotpool.tick', {});
    const done = await h.engine.result(run.id);
    expect(done.status).toBe('succeeded');
    const m1 = await inv.capacity({ type: 'm1', datacenter: 'dc1' });
    expect(m1.byState).toEqual({ available: 3, failed: 1 });
    const g1 = await inv.capacity({ type: 'g1', datacenter: 'dc1' });
    expect(g1.byState).toEqual({ available: 1 });
    const failed = await inv.listServers({ type: 'm1', state: 'failed' });
    expect(failed[0]!.stateReason).toBe('inspection failed: fan failure');
    const events = await inv.serverHistory(failed[0]!.id);
    expect(events.map((e) => e.to)).toEqual(['registering', 'inspecting', 'failed']);
  });
});

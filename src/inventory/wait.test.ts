import { afterEach, describe, expect, it } from 'vitest';
import { DIALECTS } from '../../test/support/dialects.js';
import { SecretBox } from '../core/secrets.js';
import { defineWorkflow } from '../engine/types.js';
import { engineHarness, type EngineHarness } from '../engine/test-helpers.js';
import { engineMigrations } from '../engine/index.js';
import { migrate } from '../store/migrate.js';
import { inventoryMigrations } from './migrations.js';
import { Inventory } from './inventory.js';
import { allocateServersWhenAvailable, connectCapacitySignals } from './wait.js';

describe.each(DIALECTS)('waiting for servers on %s', (dialect) => {
  let h: EngineHarness;
  afterEach(async () => h?.close());

  async function setup() {
    h = await engineHarness(dialect);
    await migrate(h.t.store, [...engineMigrations, ...inventoryMigrations]);
    const inv = new Inventory({ store: h.t.store, clock: h.clock, secrets: SecretBox.random() });
    await inv.createDatacenter({ name: 'dc1', region: 'eu' });
    await inv.createServerType({ name: 'm1', cpu: { model: 'x', cores: 8 }, ramGb: 64 });
    await inv.registerServer({ serial: 'S1', type: 'm1', datacenter: 'dc1', state: 'available' });
    connectCapacitySignals(inv, h.engine);
    h.engine.register(defineWorkflow({
      name: 'test.wait-servers',
      version: 1,
      async run(ctx, input: { count: number; timeoutMs: number }) {
        const servers = await allocateServersWhenAvailable(ctx, inv, { type: 'm1', datacenter: 'dc1', count: input.count, holder: ctx.runId }, { timeoutMs: input.timeoutMs, recheckMs: input.timeoutMs });
        return servers.map((s) => s.serial);
      },
    }));
    h.engine.startWorker();
    return inv;
  }

  it('blocks durably until capacity appears, shows what it waits for, and is woken by the inventory', async () => {
    const inv = await setup();
    const run = await h.engine.start('test.wait-servers', { count: 2, timeoutMs: 24 * 3600_000 });
    await h.waitEvent({ subject: run.id, types: ['run.waiting'] });
    const waiting = await h.engine.get(run.id);
    expect(waiting.status).toBe('waiting');
    expect(waiting.progress?.stage).toBe('waiting for capacity');
    expect(waiting.progress?.message).toBe('waiting for 2 server(s) of type m1 in dc1 (1 of 2 available)');
    expect(waiting.progress?.waitingFor).toContain('inventory.capacity:m1@dc1');
    // new hardware arrives and passes inspection: the waiting run is signalled
    const s2 = await inv.registerServer({ serial: 'S2', type: 'm1', datacenter: 'dc1' });
    await inv.transition({ serverId: s2.id, to: 'inspecting', reason: 'new' });
    await inv.transition({ serverId: s2.id, to: 'available', reason: 'inspected' });
    const done = await h.engine.result(run.id);
    expect(done.status).toBe('succeeded');
    expect((done.output as string[]).sort()).toEqual(['S1', 'S2']);
    expect((await inv.listServers({ holder: run.id })).map((s) => s.state)).toEqual(['allocated', 'allocated']);
    expect(await h.t.store.db.selectFrom('inv_capacity_waiters').selectAll().execute()).toEqual([]);
  });

  it('gives up after its timeout with a clear error and allocates nothing', async () => {
    const inv = await setup();
    const run = await h.engine.start('test.wait-servers', { count: 5, timeoutMs: 600_000 });
    await h.waitEvent({ subject: run.id, types: ['run.waiting'] });
    h.clock.advance(600_000);
    const done = await h.engine.result(run.id);
    expect(done.status).toBe('failed');
    expect(done.error).toMatchObject({ code: 'inventory.capacity_timeout' });
    expect(done.error?.message).toMatch(/for 5 server\(s\) of type m1 in dc1; 1 available/);
    expect((await inv.capacity({ type: 'm1', datacenter: 'dc1' })).available).toBe(1);
    expect(await h.t.store.db.selectFrom('inv_capacity_waiters').selectAll().execute()).toEqual([]);
  });
});

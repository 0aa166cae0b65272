import { afterEach, describe, expect, it } from 'vitest';
import { DIALECTS } from '../../test/support/dialects.js';
import { allocMigrations, openWorld, seedWorld } from '../../test/fixtures/alloc-world.js';
import { ValidationError } from '../core/errors.js';
import { engineMigrations } from '../engine/index.js';
import { defineWorkflow } from '../engine/types.js';
import { engineHarness, type EngineHarness } from '../engine/test-helpers.js';
import { migrate } from '../store/migrate.js';
import { reserveStep } from './reservations.js';

describe.each(DIALECTS)('reservations in workflows on %s', (dialect) => {
  let h: EngineHarness;
  afterEach(async () => h?.close());

  it('reserve in a step, commit on success; a failing run releases everything through its compensation', async () => {
    h = await engineHarness(dialect);
    await migrate(h.t.store, [...engineMigrations, ...allocMigrations]);
    const w = openWorld(h.t.store, h.clock);
    const s = await seedWorld(w);
    h.engine.register(defineWorkflow({
      name: 'test.order',
      version: 1,
      async run(ctx, input: { fail: boolean }) {
        const r = await reserveStep(ctx, w.alloc, { holder: `order:${ctx.runId}`, servers: [{ type: 'm1', datacenter: 'dc1', count: 2 }], addresses: [{ prefixId: s.net24, count: 2 }], vlans: [{ poolId: s.vlanPool }] });
        await ctx.step('provision', async () => {
          if (input.fail) throw new ValidationError('test.provision_failed', 'the backend refused the order');
        }, { retry: { maxAttempts: 1 } });
        await ctx.step('commit', () => w.alloc.commit(r.id));
        return r.id;
      },
    }));
    h.engine.startWorker();
    const ok = await h.engine.result((await h.engine.start('test.order', { fail: false })).id);
    expect(ok.status).toBe('succeeded');
    const committed = await w.alloc.get(ok.output as string);
    expect(committed.status).toBe('committed');
    expect(committed.servers).toHaveLength(2);

    const bad = await h.engine.result((await h.engine.start('test.order', { fail: true })).id);
    expect(bad.status).toBe('failed');
    const [released] = await w.alloc.list({ status: 'released' });
    expect(released).toBeDefined();
    expect((await w.inventory.capacity({ type: 'm1', datacenter: 'dc1' })).available).toBe(2);
    expect((await w.ipam.listAddresses({ prefixId: s.net24 })).map((a) => a.address)).toEqual(['10.0.0.1', '10.0.0.2']);
    expect((await w.ipam.listVlans({ poolId: s.vlanPool })).map((v) => v.vlan)).toEqual([100]);
  });
});

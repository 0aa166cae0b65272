import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../src/core/clock.js';
import { SimDatacenter } from '../src/providers/sim/index.js';
import { DIALECTS, openTestStore, type TestDb } from './support/dialects.js';
import { advanceUntil, call, makeSim } from './fixtures/sim-helpers.js';

const KEY = Buffer.alloc(32, 7).toString('base64');
const CLUSTER = { distribution: 'kubernetes', version: '1.30', controlPlane: { count: 1 }, nodePools: [{ name: 'w', count: 1 }] };

/**
 * A cluster's credentials are random per object (not derived from the seed
 * and the idempotency key, which sim:read holders and project readers can
 * see), kept with the object in the simulator's state (sealed when the
 * simulator has the installation key), and the same on every read, after a
 * restart and for a repeated create with the same key.
 */
describe.each(DIALECTS)('simulated cluster credentials on %s', (dialect) => {
  let t: TestDb;
  afterEach(async () => t?.cleanup());

  it('two datacenters with the same seed and the same create key give different credentials', async () => {
    t = await openTestStore(dialect);
    const t2 = await openTestStore(dialect);
    try {
      const clock = new ManualClock();
      const a = await new SimDatacenter({ store: t.store, clock, config: { seed: 42, speed: 1_000_000 } }).init();
      const b = await new SimDatacenter({ store: t2.store, clock, config: { seed: 42, speed: 1_000_000 } }).init();
      const ca = await a.create('container/Cluster', CLUSTER, call('same-cluster-key'));
      const cb = await b.create('container/Cluster', CLUSTER, call('same-cluster-key'));
      const ra = await advanceUntil(a, clock, 'container/Cluster', ca.externalId);
      const rb = await advanceUntil(b, clock, 'container/Cluster', cb.externalId);
      expect(ra.secrets?.adminPassword).toMatch(/^[A-Za-z0-9]{20,}$/);
      expect(ra.secrets?.adminPassword).not.toBe(rb.secrets?.adminPassword);
      expect(ra.secrets?.kubeconfig).not.toBe(rb.secrets?.kubeconfig);
    } finally {
      await t2.cleanup();
    }
  });

  it('are stable: every read, a repeated create with the same key, and a new simulator on the same database give the same values', async () => {
    t = await openTestStore(dialect);
    const clock = new ManualClock();
    const { sim } = await makeSim(t.store, { speed: 1_000_000 }, clock);
    const c = await sim.create('container/Cluster', CLUSTER, call('stable'));
    const r1 = await advanceUntil(sim, clock, 'container/Cluster', c.externalId);
    expect(r1.state).toBe('ready');
    const r2 = await sim.read('container/Cluster', c.externalId);
    expect(r2.secrets).toEqual(r1.secrets);
    expect((await sim.create('container/Cluster', CLUSTER, call('stable'))).externalId).toBe(c.externalId);
    expect((await sim.read('container/Cluster', c.externalId)).secrets).toEqual(r1.secrets);
    const restarted = await new SimDatacenter({ store: t.store, clock }).init();
    expect((await restarted.read('container/Cluster', c.externalId)).secrets).toEqual(r1.secrets);
    // a changed seed does not change them either
    await restarted.setSeed(7);
    expect((await restarted.read('container/Cluster', c.externalId)).secrets).toEqual(r1.secrets);
  });

  it('a cluster stored before credentials were kept gets random ones once, then the same on every read', async () => {
    t = await openTestStore(dialect);
    const clock = new ManualClock();
    const { sim } = await makeSim(t.store, { speed: 1_000_000 }, clock);
    const c = await sim.create('container/Cluster', CLUSTER, call('legacy'));
    const before = (await advanceUntil(sim, clock, 'container/Cluster', c.externalId)).secrets;
    await t.store.db.updateTable('sim_objects').set({ secrets: null }).where('id', '=', c.externalId).execute();
    const [a, b] = await Promise.all([sim.read('container/Cluster', c.externalId), sim.read('container/Cluster', c.externalId)]);
    expect(a.secrets?.adminPassword).toBeTruthy();
    expect(a.secrets).not.toEqual(before);
    expect(b.secrets).toEqual(a.secrets);
    expect((await sim.read('container/Cluster', c.externalId)).secrets).toEqual(a.secrets);
  });

  it('are kept out of the simulator object, and sealed at rest when the simulator has the installation key', async () => {
    t = await openTestStore(dialect);
    const clock = new ManualClock();
    const sim = await new SimDatacenter({ store: t.store, clock, config: { speed: 1_000_000 }, secretKey: KEY }).init();
    const c = await sim.create('container/Cluster', CLUSTER, call('sealed'));
    const r = await advanceUntil(sim, clock, 'container/Cluster', c.externalId);
    const password = r.secrets!.adminPassword!;
    const token = /token: (\S+)/.exec(r.secrets!.kubeconfig!)![1]!;
    const obj = await sim.getObject(c.externalId);
    expect(JSON.stringify(obj)).not.toContain(password);
    expect(JSON.stringify(obj)).not.toContain(token);
    expect(JSON.stringify(await sim.listObjects({ kind: 'container/Cluster' }))).not.toContain(password);
    const row = await t.store.db.selectFrom('sim_objects').selectAll().where('id', '=', c.externalId).executeTakeFirstOrThrow();
    expect(JSON.stringify(row)).not.toContain(password);
    expect(JSON.stringify(row)).not.toContain(token);
    expect(row.secrets).toMatch(/^v1\./);
    // the same key opens them after a restart; a simulator without it says what is missing
    const again = await new SimDatacenter({ store: t.store, clock, secretKey: KEY }).init();
    expect((await again.read('container/Cluster', c.externalId)).secrets).toEqual(r.secrets);
    const keyless = await new SimDatacenter({ store: t.store, clock }).init();
    await expect(keyless.read('container/Cluster', c.externalId)).rejects.toThrow(/secretKey/);
  });
});

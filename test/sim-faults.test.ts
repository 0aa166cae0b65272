import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../src/core/clock.js';
import { SimDatacenter, type FaultRuleInput } from '../src/providers/sim/index.js';
import { DIALECTS, openTestStore, type TestDb } from './support/dialects.js';
import { call, makeSim } from './fixtures/sim-helpers.js';

/**
 * Read faults replay: a read's attempt is the object's read count, kept in
 * the database, and the decision is keyed by the object's create key (not
 * its generated id), so the same seed and the same sequence of reads give
 * the same faults in a fresh simulator, after a restart and across
 * simulators sharing one database.
 */
describe.each(DIALECTS)('read fault replay on %s', (dialect) => {
  const dbs: TestDb[] = [];
  afterEach(async () => {
    for (const t of dbs.splice(0)) await t.cleanup();
  });
  const freshDb = async () => {
    const t = await openTestStore(dialect);
    dbs.push(t);
    return t;
  };

  /** A datacenter with two networks made with fixed keys (as a run with a fixed id makes them), read faults on. */
  const setup = async (t: TestDb, rules: FaultRuleInput[], seed = 7) => {
    const clock = new ManualClock();
    const { sim } = await makeSim(t.store, { speed: 1_000_000, seed }, clock);
    const a = await sim.create('network/Network', {}, call('replay-net-a'));
    const b = await sim.create('network/Network', {}, call('replay-net-b'));
    await sim.setFaults({ rules });
    return { sim, clock, ids: [a.externalId, b.externalId] as const };
  };
  /** The outcome of each read, in order: ok or the error's reason. */
  const reads = async (sim: SimDatacenter, sequence: readonly string[]) => {
    const out: string[] = [];
    for (const id of sequence) {
      try {
        await sim.read('network/Network', id);
        out.push('ok');
      } catch (e) {
        out.push((e as { reason?: string }).reason ?? 'error');
      }
    }
    return out;
  };
  const sequence = (ids: readonly [string, string]) => Array.from({ length: 24 }, (_, i) => ids[i % 3 === 0 ? 1 : 0]);

  it('the same seed and the same reads give the same faults in a fresh simulator over a fresh database', async () => {
    const rules: FaultRuleInput[] = [{ kind: 'network/*', op: 'read', transientRate: 0.5 }];
    const one = await setup(await freshDb(), rules);
    const two = await setup(await freshDb(), rules);
    expect(one.ids[0]).not.toBe(two.ids[0]); // generated ids differ; the decisions do not depend on them
    const first = await reads(one.sim, sequence(one.ids));
    expect(first).toContain('BackendUnavailable');
    expect(first).toContain('ok');
    expect(await reads(two.sim, sequence(two.ids))).toEqual(first);
    // another seed, other faults
    const other = await setup(await freshDb(), rules, 8);
    expect(await reads(other.sim, sequence(other.ids))).not.toEqual(first);
  });

  it('read counts live in the database: a restarted simulator continues them, simulators sharing a database count together', async () => {
    const rules: FaultRuleInput[] = [{ kind: 'network/*', op: 'read', transientRate: 0.5 }];
    const whole = await setup(await freshDb(), rules);
    const expected = await reads(whole.sim, sequence(whole.ids));

    const t = await freshDb();
    const split = await setup(t, rules);
    const seq = sequence(split.ids);
    const head = await reads(split.sim, seq.slice(0, 10));
    const restarted = await new SimDatacenter({ store: t.store, clock: split.clock }).init();
    const tail = await reads(restarted, seq.slice(10, 17));
    // a second simulator on the same database (another worker) takes the next reads
    const other = await new SimDatacenter({ store: t.store, clock: split.clock }).init();
    const rest = await reads(other, seq.slice(17));
    expect([...head, ...tail, ...rest]).toEqual(expected);
  });

  it('attempts counts an object\'s reads across restarts: "fail the first two reads" fails two, not two per process', async () => {
    const t = await freshDb();
    const { sim, clock, ids } = await setup(t, [{ kind: 'network/Network', op: 'read', transientRate: 1, attempts: 2 }]);
    expect(await reads(sim, [ids[0]])).toEqual(['BackendUnavailable']);
    const restarted = await new SimDatacenter({ store: t.store, clock }).init();
    expect(await reads(restarted, [ids[0], ids[0], ids[0]])).toEqual(['BackendUnavailable', 'ok', 'ok']);
    // each object has its own count
    expect(await reads(restarted, [ids[1], ids[1], ids[1]])).toEqual(['BackendUnavailable', 'BackendUnavailable', 'ok']);
  });
});

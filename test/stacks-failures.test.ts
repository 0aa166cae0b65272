import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { DIALECTS, openTestStore, type TestDb } from './support/dialects.js';
import { simFootprint, stackHarness, type StackHarness } from './fixtures/stacks-harness.js';

const WEB = readFileSync(new URL('../examples/stacks/web-tier.yaml', import.meta.url), 'utf8');

/** Live objects per kind in the simulator. */
async function simKinds(h: StackHarness): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const o of await h.sim.listObjects()) out[o.kind] = (out[o.kind] ?? 0) + 1;
  return out;
}

const WEB_KINDS = {
  'compute/Keypair': 1, 'compute/Server': 3, 'dns/Record': 1, 'dns/Zone': 1, 'network/LoadBalancer': 1, 'network/Network': 1,
  'network/Router': 1, 'network/SecurityGroup': 1, 'network/Subnet': 1, 'storage/Volume': 3,
};

describe.each(DIALECTS)('stack failures on %s', (dialect) => {
  let t: TestDb;
  let h: StackHarness;
  afterEach(async () => {
    await h?.close();
    await t?.cleanup();
  });

  it('20% injected transient failures: the apply still succeeds, with no duplicates', async () => {
    t = await openTestStore(dialect);
    h = await stackHarness(t.store);
    // 20% of every call fails transiently (drawn from the seed and the calls' idempotency keys, which
    // differ from run to run); so that faults are injected whatever the draw, the first attempt of the
    // network's create and delete always fails
    await h.sim.setFaults({ rules: [{ kind: 'network/Network', op: 'create', transientRate: 1, attempts: 1 }, { kind: 'network/Network', op: 'delete', transientRate: 1, attempts: 1 }, { kind: '*', transientRate: 0.2 }] });
    const { stack, run } = await h.stacks.apply({ document: WEB });
    const done = await h.stacks.wait(run.id, { timeoutMs: 120_000 });
    expect(done.error).toBeUndefined();
    expect(done.status).toBe('succeeded');
    // the failures really happened and were retried
    const steps = await h.engine.timeline(run.id);
    expect(steps.reduce((n, s) => n + s.attempts - 1, 0)).toBeGreaterThan(0);
    expect(steps.filter((s) => s.attempts > 1).map((s) => s.name).join(' '), JSON.stringify(steps.map((s) => [s.name, s.attempts]))).toMatch(/net/);
    expect(await simKinds(h)).toEqual(WEB_KINDS);
    expect((await h.resources.list({ owner: `stack:${stack.id}` })).items.length).toBe(14);
    // and destroy under the same failure rate leaves nothing
    const d = await h.stacks.destroy(stack.id);
    expect((await h.stacks.wait(d.run.id, { timeoutMs: 120_000 })).status).toBe('succeeded');
    expect((await h.engine.timeline(d.run.id)).reduce((n, s) => n + s.attempts - 1, 0)).toBeGreaterThan(0);
    expect(await simKinds(h)).toEqual({});
  });

  it('a permanent failure with rollback leaks nothing', async () => {
    t = await openTestStore(dialect);
    h = await stackHarness(t.store);
    const before = await simFootprint(h.sim);
    await h.sim.setFaults({ rules: [{ kind: 'network/LoadBalancer', permanentRate: 1, permanentReason: 'CapacityExhausted' }] });
    const { stack, run } = await h.stacks.apply({ document: WEB, failurePolicy: 'rollback' });
    const done = await h.stacks.wait(run.id, { timeoutMs: 120_000 });
    expect(done.status).toBe('failed');
    expect(done.error?.code).toBe('stacks.apply_failed');
    expect(done.error?.message).toContain('lb: CapacityExhausted');
    expect(done.error?.message).toContain('rolled back');
    expect(await simFootprint(h.sim)).toEqual(before);
    expect(await simKinds(h)).toEqual({});
    expect((await h.resources.list({ owner: `stack:${stack.id}` })).items).toEqual([]);
    const info = await h.stacks.get(stack.id);
    expect(info).toMatchObject({ status: 'failed', resourceCount: 0 });
    const events = await h.stacks.events(stack.id);
    expect(events.filter((e) => e.type === 'stack.resource.rolled_back').length).toBeGreaterThanOrEqual(12);
  });

  it('stop: what succeeded is recorded, dependents are not started; retry converges without duplicates', async () => {
    t = await openTestStore(dialect);
    h = await stackHarness(t.store);
    await h.sim.setFaults({ rules: [{ kind: 'compute/Server', op: 'create', permanentRate: 1, permanentReason: 'NoValidHost' }] });
    const { stack, run } = await h.stacks.apply({ document: WEB });
    const done = await h.stacks.wait(run.id, { timeoutMs: 120_000 });
    expect(done.status).toBe('failed');
    expect(done.error?.message).toMatch(/3 failed, 2 not started, 9 succeeded/);
    const info = await h.stacks.get(stack.id);
    expect(info.status).toBe('failed');
    const recorded = await h.stacks.resources(stack.id);
    expect(recorded.filter((r) => r.status === 'ready').map((r) => r.address)).toEqual(['net', 'web-sg', 'key', 'zone', 'subnet', 'router', 'boot[0]', 'boot[1]', 'boot[2]']);
    expect(recorded.filter((r) => r.status !== 'ready').map((r) => r.address)).toEqual(['web[0]', 'web[1]', 'web[2]']);
    // the plan now shows what is left to do
    const plan = await h.stacks.plan({ document: WEB });
    expect(plan.summary).toMatchObject({ create: 2, replace: 3, noop: 9 });

    await h.sim.setFaults({ rules: [] });
    const retry = await h.stacks.retry(stack.id);
    const again = await h.stacks.wait(retry.id, { timeoutMs: 120_000 });
    expect(again.error).toBeUndefined();
    expect(await simKinds(h)).toEqual(WEB_KINDS);
    expect((await h.resources.list({ owner: `stack:${stack.id}` })).items.length).toBe(14);
    expect((await h.stacks.get(stack.id)).status).toBe('applied');
  });

  it('continue: independent branches go on after a failure', async () => {
    t = await openTestStore(dialect);
    h = await stackHarness(t.store);
    await h.sim.setFaults({ rules: [{ kind: 'dns/Zone', op: 'create', permanentRate: 1 }] });
    const doc = `apiVersion: infraflow.dev/v1
kind: Stack
metadata: { name: branches }
spec:
  options: { failurePolicy: continue, parallelism: 1 }
  resources:
    zone: { kind: dns/Zone, spec: { name: branches.example.com } }
    rec: { kind: dns/Record, spec: { zone: "\${ resources.zone.outputs.id }", name: www, type: A, values: [10.0.0.1] } }
    net: { kind: network/Network }
    subnet: { kind: network/Subnet, spec: { network: "\${ resources.net.outputs.id }", cidr: 10.9.0.0/24 } }
`;
    const { stack, run } = await h.stacks.apply({ document: doc });
    const done = await h.stacks.wait(run.id, { timeoutMs: 60_000 });
    expect(done.status).toBe('failed');
    expect(done.error?.message).toContain('1 failed, 1 not started, 2 succeeded');
    const ready = (await h.stacks.resources(stack.id)).filter((r) => r.status === 'ready').map((r) => r.address);
    expect(ready.sort()).toEqual(['net', 'subnet']);
  });

  it('cancel stops the apply; what finished stays recorded and destroy leaves nothing behind', async () => {
    t = await openTestStore(dialect);
    // slow enough that the apply is still running when cancelled
    h = await stackHarness(t.store, { sim: { speed: 20 } });
    const before = await simFootprint(h.sim);
    const { stack, run } = await h.stacks.apply({ document: WEB });
    // wait until at least one resource is done
    await new Promise<void>((resolve) => {
      const off = h.engine.subscribe({ subject: stack.id, types: ['stack.resource.succeeded'] }, () => {
        off();
        resolve();
      });
    });
    await h.stacks.cancel(stack.id);
    const done = await h.stacks.wait(run.id, { timeoutMs: 60_000 });
    expect(done.status).toBe('cancelled');
    const info = await h.stacks.get(stack.id);
    expect(info.status).toBe('cancelled');
    expect(info.resourceCount).toBeGreaterThan(0);
    await h.sim.setSpeed(1_000_000);
    const d = await h.stacks.destroy(stack.id);
    expect((await h.stacks.wait(d.run.id, { timeoutMs: 60_000 })).status).toBe('succeeded');
    expect(await simFootprint(h.sim)).toEqual(before);
    expect((await h.resources.list({ owner: `stack:${stack.id}` })).items).toEqual([]);
  });
});

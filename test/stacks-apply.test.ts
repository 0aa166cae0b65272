import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { DIALECTS, openTestStore, type TestDb } from './support/dialects.js';
import { simFootprint, stackHarness, type StackHarness } from './fixtures/stacks-harness.js';
import { renderPlan } from '../src/stacks/index.js';

const WEB = readFileSync(new URL('../examples/stacks/web-tier.yaml', import.meta.url), 'utf8');

describe.each(DIALECTS)('stacks apply and destroy on %s', (dialect) => {
  let t: TestDb;
  let h: StackHarness;
  afterEach(async () => {
    await h?.close();
    await t?.cleanup();
  });

  it('applies the web tier example, plans no changes after, and destroys it back to an empty datacenter', async () => {
    t = await openTestStore(dialect);
    h = await stackHarness(t.store);
    const before = await simFootprint(h.sim);

    const plan = await h.stacks.plan({ document: WEB, file: 'web-tier.yaml' });
    expect(plan.summary).toMatchObject({ create: 14, update: 0, replace: 0, delete: 0 });
    expect(renderPlan(plan)).toContain('Plan: 14 to add, 0 to change, 0 to destroy');

    const { stack, run, revision } = await h.stacks.apply({ document: WEB, file: 'web-tier.yaml', expectedRevision: 0 });
    expect(revision).toBe(1);
    const done = await h.stacks.wait(run.id, { timeoutMs: 60_000 });
    expect(done.error).toBeUndefined();
    expect(done.status).toBe('succeeded');

    const info = await h.stacks.get(stack.id);
    expect(info.status).toBe('applied');
    expect(info.appliedRevision).toBe(1);
    expect(info.resourceCount).toBe(14);
    expect(info.outputs.url).toBe('http://www.web.example.com/');
    expect((info.outputs.servers as string[]).length).toBe(3);
    expect(info.outputs.vip).toMatch(/^10\.20\.0\./);

    // the DNS record answers with the LB's address, the LB has the three servers as members
    const answer = await h.sim.resolve('www.web.example.com', 'A');
    expect(answer.answers.map((a) => a.value)).toEqual([info.outputs.vip]);
    const recorded = await h.stacks.resources(stack.id);
    // phases first, then dependency order
    expect(recorded.map((r) => r.address)).toEqual(['net', 'web-sg', 'key', 'zone', 'subnet', 'router', 'boot[0]', 'boot[1]', 'boot[2]', 'web[0]', 'web[1]', 'web[2]', 'lb', 'www']);
    const lb = recorded.find((r) => r.address === 'lb')!;
    expect((lb.spec.members as unknown[]).length).toBe(3);

    // events: one started and one succeeded per resource
    const events = await h.stacks.events(stack.id);
    expect(events.filter((e) => e.type === 'stack.resource.succeeded').length).toBe(14);
    expect(events.some((e) => e.type === 'stack.apply.succeeded')).toBe(true);

    // a second plan of the same document changes nothing
    const again = await h.stacks.plan({ document: WEB, file: 'web-tier.yaml' });
    expect(again.summary).toMatchObject({ create: 0, update: 0, replace: 0, delete: 0, noop: 14 });

    // incremental: scale to 4 and change the image of... only what differs changes
    const scaled = await h.stacks.plan({ document: WEB, params: { replicas: 4 } });
    expect(scaled.summary).toMatchObject({ create: 2, update: 1, replace: 0, delete: 0 });
    expect(scaled.changes.find((c) => c.action === 'update')!.address).toBe('lb');
    const applied = await h.stacks.apply({ document: WEB, params: { replicas: 4 }, expectedRevision: 1 });
    expect((await h.stacks.wait(applied.run.id, { timeoutMs: 60_000 })).status).toBe('succeeded');
    expect((await h.stacks.get(stack.id)).resourceCount).toBe(16);

    // a stale revision is refused with a clear message
    await expect(h.stacks.apply({ document: WEB, expectedRevision: 1 })).rejects.toMatchObject({ code: 'stacks.stale_revision', message: expect.stringContaining('is at revision 2, but this change was planned against revision 1') });

    const destroy = await h.stacks.destroy(stack.id);
    expect(destroy.plan.changes.map((c) => c.address).slice(0, 2)).toEqual(['www', 'lb']);
    expect(destroy.plan.changes.at(-1)!.address).toBe('net');
    const gone = await h.stacks.wait(destroy.run.id, { timeoutMs: 60_000 });
    expect(gone.status).toBe('succeeded');
    expect((await h.stacks.get(stack.id)).status).toBe('destroyed');
    expect((await h.stacks.get(stack.id)).resourceCount).toBe(0);
    expect(await simFootprint(h.sim)).toEqual(before);
    const live = await h.resources.list({ owner: `stack:${stack.id}` });
    expect(live.items).toEqual([]);
  });

  it('applies of one stack queue behind each other and none is lost', async () => {
    t = await openTestStore(dialect);
    h = await stackHarness(t.store);
    const doc = (cidr: string) => `apiVersion: infraflow.dev/v1
kind: Stack
metadata: { name: queued }
spec:
  resources:
    net: { kind: network/Network }
    subnet: { kind: network/Subnet, spec: { network: "\${ resources.net.outputs.id }", cidr: ${cidr} } }
`;
    const first = await h.stacks.apply({ document: doc('10.1.0.0/24') });
    const second = await h.stacks.apply({ document: doc('10.2.0.0/24') });
    expect(second.revision).toBe(2);
    const [a, b] = await Promise.all([h.stacks.wait(first.run.id, { timeoutMs: 60_000 }), h.stacks.wait(second.run.id, { timeoutMs: 60_000 })]);
    expect([a.status, b.status]).toEqual(['succeeded', 'succeeded']);
    expect(b.startedAt!).toBeGreaterThanOrEqual(a.finishedAt!);
    const info = await h.stacks.get('queued');
    expect(info).toMatchObject({ status: 'applied', appliedRevision: 2, revision: 2 });
    const subnet = (await h.stacks.resources('queued')).find((r) => r.address === 'subnet')!;
    expect(subnet.spec.cidr).toBe('10.2.0.0/24');
  });
});

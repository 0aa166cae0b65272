import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DIALECTS, openTestStore, type TestDb } from './support/dialects.js';
import { eventSink, simFootprint, stackHarness, type StackHarness } from './fixtures/stacks-harness.js';

const METAL = readFileSync(new URL('../examples/stacks/bare-metal.yaml', import.meta.url), 'utf8');
const EMPTY = readFileSync(new URL('../examples/stacks/empty-infra.yaml', import.meta.url), 'utf8');

describe.each(DIALECTS)('stacks with attached workflows on %s', (dialect) => {
  let t: TestDb;
  let h: StackHarness;
  let sink: Awaited<ReturnType<typeof eventSink>> | undefined;
  let out: string | undefined;
  afterEach(async () => {
    await h?.close();
    await t?.cleanup();
    await sink?.close();
    if (out) rmSync(out, { recursive: true, force: true });
  });

  it('bare metal: an instance array with pre-deploy, per-instance (real ansible-playbook) and post-deploy workflows', async () => {
    t = await openTestStore(dialect);
    h = await stackHarness(t.store);
    sink = await eventSink();
    out = mkdtempSync(join(tmpdir(), 'infraflow-metal-'));
    const before = await simFootprint(h.sim);
    const params = { webhook: sink.url, outDir: out };

    const plan = await h.stacks.plan({ document: METAL, file: 'bare-metal.yaml', params });
    expect(plan.summary.create).toBe(5);
    const { stack, run } = await h.stacks.apply({ document: METAL, file: 'bare-metal.yaml', params });
    const done = await h.stacks.wait(run.id, { timeoutMs: 120_000 });
    expect(done.error).toBeUndefined();
    expect(done.status).toBe('succeeded');

    // three servers of one type, allocated from the inventory
    expect((await simFootprint(h.sim)).metalAllocated).toBe(before.metalAllocated + 3);
    const recorded = await h.stacks.resources(stack.id);
    const nodes = recorded.filter((r) => r.resource === 'nodes');
    expect(nodes.map((n) => n.address)).toEqual(['nodes[0]', 'nodes[1]', 'nodes[2]']);

    // the playbook ran once per instance with that instance's outputs
    for (const n of nodes) {
      const file = join(out, `${n.outputs.hostname as string}.conf`);
      expect(existsSync(file)).toBe(true);
      expect(readFileSync(file, 'utf8')).toContain(`ip=${n.outputs.ip as string}`);
    }
    // pre-deploy ran before, post-deploy after: a CloudEvent with every node
    await sink.waitFor(1);
    const ev = sink.events[0]!;
    expect(ev.headers['content-type']).toContain('application/cloudevents+json');
    expect(ev.body).toMatchObject({ specversion: '1.0', type: 'dev.infraflow.metal.ready', source: '/stacks/metal-infra', datacontenttype: 'application/json' });
    expect(ev.body.data.nodes.map((n: { hostname: string }) => n.hostname).sort()).toEqual(nodes.map((n) => n.outputs.hostname).sort());
    expect(ev.body.data.joined).toContain('joining metal-infra-node-0');

    // the run's timeline shows the attached steps in order
    const timeline = await h.engine.timeline(run.id);
    const names = timeline.map((s) => s.name);
    expect(names.indexOf('preDeploy:prepare')).toBeLessThan(names.indexOf('instance:nodes[0]'));
    expect(names.indexOf('instance:nodes[2]')).toBeLessThan(names.indexOf('postDeploy:join'));
    const events = await h.stacks.events(stack.id);
    expect(events.filter((e) => e.type === 'stack.step.succeeded' && e.data.step === 'configure').length).toBe(3);

    const destroy = await h.stacks.destroy(stack.id);
    expect((await h.stacks.wait(destroy.run.id, { timeoutMs: 120_000 })).status).toBe('succeeded');
    expect(await simFootprint(h.sim)).toEqual(before);
  });

  it('an empty infrastructure with only a post-deploy workflow', async () => {
    t = await openTestStore(dialect);
    h = await stackHarness(t.store);
    sink = await eventSink();
    const { stack, run } = await h.stacks.apply({ document: EMPTY, params: { webhook: sink.url } });
    const done = await h.stacks.wait(run.id, { timeoutMs: 60_000 });
    expect(done.error).toBeUndefined();
    await sink.waitFor(1);
    expect(sink.events[0]!.body.data).toEqual({ message: 'hello from empty-infra' });
    const info = await h.stacks.get(stack.id);
    expect(info).toMatchObject({ status: 'applied', resourceCount: 0 });
  });

  it('a per-instance workflow can replace the default provisioning (stage instead)', async () => {
    t = await openTestStore(dialect);
    h = await stackHarness(t.store);
    const doc = `apiVersion: infraflow.dev/v1
kind: Stack
metadata: { name: custom }
spec:
  resources:
    appliance: { kind: network/SecurityGroup, count: 2, spec: { description: "appliance \${ count.index }" } }
  workflows:
    perInstance:
      - resource: appliance
        stage: instead
        steps:
          - { name: provision, type: shell, script: "printf 'appliance-%s' \${ instance.index }" }
`;
    const { stack, run } = await h.stacks.apply({ document: doc });
    expect((await h.stacks.wait(run.id, { timeoutMs: 60_000 })).error).toBeUndefined();
    const recorded = await h.stacks.resources(stack.id);
    expect(recorded.map((r) => [r.address, r.resourceId, (r.outputs.provision as { stdout: string }).stdout])).toEqual([['appliance[0]', null, 'appliance-0'], ['appliance[1]', null, 'appliance-1']]);
    expect(await h.sim.listObjects({ kind: 'network/SecurityGroup' })).toEqual([]);
    const d = await h.stacks.destroy(stack.id);
    expect((await h.stacks.wait(d.run.id, { timeoutMs: 60_000 })).status).toBe('succeeded');
    expect((await h.stacks.get(stack.id)).resourceCount).toBe(0);
  });

  it('approval, waitUntil and http steps; a rejected approval fails the apply', async () => {
    t = await openTestStore(dialect);
    h = await stackHarness(t.store);
    const hook = await eventSink();
    sink = hook;
    const doc = (stage: string) => `apiVersion: infraflow.dev/v1
kind: Stack
metadata: { name: gated-${stage} }
spec:
  resources:
    net: { kind: network/Network }
  workflows:
    preDeploy:
      - { name: ask, type: approval, message: "create the network?" }
    postDeploy:
      - name: ready
        type: waitUntil
        intervalSeconds: 1
        timeoutSeconds: 60
        condition: resources.net.status.phase == "ready" && resources.net.outputs.vlan > 0
      - name: call
        type: http
        method: POST
        url: ${hook.url}
        body: { vlan: "\${ resources.net.outputs.vlan }" }
`;
    const ok = await h.stacks.apply({ document: doc('ok') });
    await waitForEvent(h, ok.stack.id, 'stack.approval.requested');
    await h.stacks.approve(ok.stack.id, { name: 'ask' }, { approved: true, by: 'alice' });
    const done = await h.stacks.wait(ok.run.id, { timeoutMs: 60_000 });
    expect(done.error).toBeUndefined();
    await sink.waitFor(1);
    expect(typeof sink.events[0]!.body.vlan).toBe('number');

    const no = await h.stacks.apply({ document: doc('no') });
    await waitForEvent(h, no.stack.id, 'stack.approval.requested');
    await h.stacks.approve(no.stack.id, { name: 'ask' }, { approved: false, by: 'bob', comment: 'not today' });
    const rejected = await h.stacks.wait(no.run.id, { timeoutMs: 60_000 });
    expect(rejected.status).toBe('failed');
    expect(rejected.error?.message).toContain('rejected by bob: not today');
    expect((await h.stacks.get(no.stack.id)).resourceCount).toBe(0);
  });
});

async function waitForEvent(h: StackHarness, stackId: string, type: string): Promise<void> {
  for (;;) {
    const evs = await h.stacks.events(stackId);
    if (evs.some((e) => e.type === type)) return;
    await new Promise<void>((resolve) => {
      const off = h.engine.subscribe({ subject: stackId, types: [type] }, () => {
        off();
        resolve();
      });
      setTimeout(() => {
        off();
        resolve();
      }, 500);
    });
  }
}

import { afterEach, describe, expect, it } from 'vitest';
import { DIALECTS, openTestStore, type TestDb } from './support/dialects.js';
import { observeNow } from '../src/resources/index.js';
import { PROVISION, DESTROY, UPDATE, provisionNetwork, runOk, simStack, type SimStack } from './fixtures/sim-engine-setup.js';

const VM = (subnet: string) => ({ flavor: 'SCS-1V-2-10', image: 'debian-12', networks: [{ subnet }] });

describe.each(DIALECTS)('resources driven by the engine against the simulator on %s', (dialect) => {
  let t: TestDb;
  let s: SimStack;
  afterEach(async () => {
    await s?.engine.stop({ graceful: false });
    await t?.cleanup();
  });

  async function setup(sim: Parameters<typeof simStack>[1] = {}) {
    t = await openTestStore(dialect);
    s = await simStack(t.store, sim);
    s.engine.startWorker();
  }

  it('provisions resources to ready with outputs, conditions and events; updates in place; deletes', async () => {
    await setup();
    const subnet = await provisionNetwork(s);
    const vm = await s.resources.create({ kind: 'compute/Server', name: 'web-1', project: 'p1', spec: VM(subnet) });
    const run = await runOk(s, PROVISION, { ids: [vm.id] });
    const r = await s.resources.get(vm.id);
    expect(r.status.phase).toBe('ready');
    expect(r.status.outputs.ip).toBe('10.20.0.2');
    expect((run.output as Record<string, { ip: string }>)[vm.id]!.ip).toBe('10.20.0.2');
    expect(r.status.conditions.find((c) => c.type === 'Ready')).toMatchObject({ status: 'True' });
    expect(r.status.observedGeneration).toBe(1);
    const events = await s.resources.events(vm.id, {}, s.engine);
    expect(events.map((e) => e.type)).toEqual(expect.arrayContaining(['resource.created', 'resource.phase_changed']));
    // 'creating' is skipped when the simulated boot is already over by the time the create call returns (loaded machine)
    expect(events.filter((e) => e.type === 'resource.phase_changed').map((e) => e.data.to).filter((p) => p !== 'creating')).toEqual(['ready']);
    // in-place update: resize
    await s.resources.updateSpec(vm.id, { ...VM(subnet), flavor: 'SCS-2V-4-20s' });
    const up = await runOk(s, UPDATE, { id: vm.id });
    expect(up.output).toEqual({ action: 'update', changed: ['flavor'] });
    expect((await s.resources.get(vm.id)).status).toMatchObject({ phase: 'ready', observedGeneration: 2, outputs: { flavor: 'SCS-2V-4-20s' } });
    // replace: a new image needs a new server
    const before = (await s.resources.get(vm.id)).status.externalId;
    await s.resources.updateSpec(vm.id, { ...VM(subnet), flavor: 'SCS-2V-4-20s', image: 'ubuntu-24.04' });
    expect((await runOk(s, UPDATE, { id: vm.id })).output).toEqual({ action: 'replace', changed: ['image'] });
    const replaced = await s.resources.get(vm.id);
    expect(replaced.status.externalId).not.toBe(before);
    expect(replaced.status.phase).toBe('ready');
    await runOk(s, DESTROY, { ids: [vm.id] });
    expect((await s.resources.get(vm.id)).status.phase).toBe('deleted');
    expect((await s.sim.read('compute/Server', replaced.status.externalId!)).state).toBe('absent');
  });

  it('retryable faults are retried by the engine step until success, with one object', async () => {
    await setup();
    const subnet = await provisionNetwork(s);
    await s.sim.setFaults({ rules: [{ kind: 'compute/Server', op: 'create', transientRate: 1, attempts: 3 }] });
    const vm = await s.resources.create({ kind: 'compute/Server', name: 'flaky', project: 'p1', spec: VM(subnet) });
    const run = await runOk(s, PROVISION, { ids: [vm.id] });
    const step = (await s.engine.timeline(run.id)).find((x) => x.name === `create:${vm.id}`)!;
    expect(step.status).toBe('succeeded');
    expect(step.attempts).toBe(4);
    expect((await s.sim.listObjects({ kind: 'compute/Server' })).length).toBe(1);
    expect((await s.resources.get(vm.id)).status.phase).toBe('ready');
  });

  it('transient faults by rate are deterministic under the seed and still end in one object', async () => {
    await setup();
    const subnet = await provisionNetwork(s);
    await s.sim.setFaults({ rules: [{ kind: 'compute/*', transientRate: 0.5 }] });
    const ids = [];
    for (let i = 0; i < 4; i++) ids.push((await s.resources.create({ kind: 'compute/Server', name: `vm-${i}`, project: 'p1', spec: VM(subnet) })).id);
    const run = await runOk(s, PROVISION, { ids });
    const attempts = (await s.engine.timeline(run.id)).filter((x) => x.name.startsWith('create:')).map((x) => x.attempts);
    expect(attempts.every((a) => a >= 1)).toBe(true);
    expect((await s.sim.listObjects({ kind: 'compute/Server' })).length).toBe(4);
  });

  it('a permanent failure surfaces with its reason code on the run and the resource', async () => {
    await setup();
    const subnet = await provisionNetwork(s);
    await s.sim.setFaults({ rules: [{ kind: 'compute/Server', op: 'create', permanentRate: 1, permanentReason: 'NoValidHost' }] });
    const vm = await s.resources.create({ kind: 'compute/Server', name: 'doomed', project: 'p1', spec: VM(subnet) });
    const run = await s.engine.start(PROVISION, { ids: [vm.id] });
    const done = await s.engine.result(run.id, { timeoutMs: 60_000 });
    expect(done.status).toBe('failed');
    expect(done.error).toMatchObject({ code: 'provider.no_valid_host', retryable: false, details: { reason: 'NoValidHost' } });
    const r = await s.resources.get(vm.id);
    expect(r.status.phase).toBe('failed');
    expect(r.status.conditions.find((c) => c.type === 'Ready')).toMatchObject({ status: 'False', reason: 'NoValidHost' });
    // real capacity exhaustion is refused at the call, not retried
    await s.sim.setFaults({ rules: [] });
    const huge = await s.resources.create({ kind: 'compute/Server', name: 'huge', project: 'p1', spec: { ...VM(subnet), flavor: 'SCS-16V-64', bootVolume: { sizeGb: 20 } } });
    await s.sim.setHostEnabled('hv-01', false);
    await s.sim.setHostEnabled('hv-02', false);
    await s.sim.setHostEnabled('hv-03', false);
    await s.sim.setHostEnabled('hv-04', false);
    const run2 = await s.engine.start(PROVISION, { ids: [huge.id] });
    const done2 = await s.engine.result(run2.id, { timeoutMs: 60_000 });
    expect(done2.error).toMatchObject({ code: 'provider.no_valid_host' });
    expect((await s.engine.timeline(run2.id)).find((x) => x.name === `create:${huge.id}`)?.attempts).toBe(1);
  });

  it('a hung backend call is cut by the step timeout and retried', async () => {
    await setup();
    const subnet = await provisionNetwork(s);
    await s.sim.setFaults({ rules: [{ kind: 'compute/Server', op: 'create', hangRate: 1, attempts: 1 }] });
    const vm = await s.resources.create({ kind: 'compute/Server', name: 'hung', project: 'p1', spec: VM(subnet) });
    const run = await runOk(s, PROVISION, { ids: [vm.id] });
    const step = (await s.engine.timeline(run.id)).find((x) => x.name === `create:${vm.id}`)!;
    expect(step.attempts).toBe(2);
    expect((await s.resources.get(vm.id)).status.phase).toBe('ready');
  });

  it('an operation that never finishes is cut by the wait timeout with reason Timeout', async () => {
    t = await openTestStore(dialect);
    s = await simStack(t.store, { stepOpts: { timeoutMs: 1_500 } });
    s.engine.startWorker();
    const subnet = await provisionNetwork(s);
    await s.sim.setFaults({ rules: [{ kind: 'compute/Server', op: 'create', stuckRate: 1 }] });
    const vm = await s.resources.create({ kind: 'compute/Server', name: 'stuck', project: 'p1', spec: VM(subnet) });
    const run = await s.engine.start(PROVISION, { ids: [vm.id] });
    const done = await s.engine.result(run.id, { timeoutMs: 60_000 });
    expect(done.status).toBe('failed');
    expect(done.error).toMatchObject({ code: 'provider.timeout' });
    const r = await s.resources.get(vm.id);
    expect(r.status.phase).toBe('failed');
    expect(r.status.conditions.find((c) => c.type === 'Ready')?.reason).toBe('Timeout');
  });
  it('reads that fail transiently are retried by the wait', async () => {
    await setup();
    const subnet = await provisionNetwork(s);
    await s.sim.setFaults({ rules: [{ kind: 'compute/Server', op: 'read', transientRate: 1, attempts: 2 }] });
    const vm = await s.resources.create({ kind: 'compute/Server', name: 'flaky-reads', project: 'p1', spec: VM(subnet) });
    await expect(s.sim.read('compute/Server', 'vm_unknown')).rejects.toMatchObject({ reason: 'BackendUnavailable' });
    await runOk(s, PROVISION, { ids: [vm.id] });
    expect((await s.resources.get(vm.id)).status.phase).toBe('ready');
  });
  it('observe reports drift made behind Infraflow\'s back on the resource', async () => {
    await setup();
    const sg = await s.resources.create({ kind: 'network/SecurityGroup', name: 'web', project: 'p1', spec: { rules: [{ protocol: 'tcp', portMin: 443, portMax: 443 }] } });
    await runOk(s, PROVISION, { ids: [sg.id] });
    expect(await observeNow(s.deps, sg.id)).toMatchObject({ drifted: false, driftedFields: [] });
    const ext = (await s.resources.get(sg.id)).status.externalId!;
    await s.sim.driftModify(ext, { rules: [] });
    expect(await observeNow(s.deps, sg.id)).toMatchObject({ drifted: true, driftedFields: ['rules'], state: 'ready' });
    expect((await s.resources.get(sg.id)).status.conditions.find((c) => c.type === 'InSync')).toMatchObject({ status: 'False', reason: 'Drifted' });
    await s.sim.driftDelete(ext);
    expect(await observeNow(s.deps, sg.id)).toMatchObject({ drifted: true, state: 'absent' });
    expect((await s.resources.get(sg.id)).status.conditions.find((c) => c.type === 'InSync')).toMatchObject({ status: 'False', reason: 'DeletedOutside' });
  });
});

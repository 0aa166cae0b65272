import { afterEach, describe, expect, it } from 'vitest';
import { stackHarness, type StackHarness } from './fixtures/stacks-harness.js';
import { ManualClock } from '../src/core/clock.js';
import { DIALECTS, openTestStore, type TestDb } from './support/dialects.js';

/**
 * Approval steps with a timeout, on the engine's manual clock: an answer in
 * time lets the apply go on; no answer before `timeoutSeconds` fails the
 * apply (or goes on with `onTimeout: approve`); a rejection fails it with
 * the reason. While it waits, the run's progress says what for.
 */

const HOUR = 3_600_000;

const doc = (name: string, step: string, where: 'preDeploy' | 'postDeploy' = 'preDeploy') => `apiVersion: infraflow.dev/v1
kind: Stack
metadata: { name: ${name} }
spec:
  resources:
    sg: { kind: network/SecurityGroup, spec: { description: gated } }
  workflows:
    ${where}:
      - ${step}
`;

type H = StackHarness & { clock: ManualClock };

async function harness(t: TestDb): Promise<H> {
  // the simulator at a huge speed finishes every operation in the call: only the approval waits on the clock
  const clock = new ManualClock(Date.UTC(2026, 0, 5, 9, 0, 0));
  return { ...(await stackHarness(t.store, { clock, leaseMs: 30_000, stacks: { actionRetry: { maxAttempts: 1 } } })), clock };
}

async function until(cond: () => Promise<boolean>): Promise<void> {
  while (!(await cond())) await new Promise((r) => setTimeout(r, 20));
}

describe.each(DIALECTS)('approval steps with timeouts on %s', (dialect) => {
  let t: TestDb;
  let h: H;
  afterEach(async () => {
    await h?.close();
    await t?.cleanup();
  });

  /** Applies and returns once the run is parked on its approval. */
  async function waitingApply(document: string) {
    const { stack, run } = await h.stacks.apply({ document });
    await until(async () => (await h.engine.get(run.id)).status === 'waiting');
    return { stack, run };
  }

  it('an approval given in time lets the apply go on; the run shows what it waits for', async () => {
    t = await openTestStore(dialect);
    h = await harness(t);
    // many approvals were asked for before (other stacks): this one is still found among them
    for (let i = 0; i < 1001; i += 50) {
      await Promise.all(Array.from({ length: Math.min(50, 1001 - i) }, (_, k) => h.engine.publish('stack.approval.requested', `stk_other${(i + k) % 7}`, { runId: `run_other${i + k}`, scope: 'preDeploy', step: 'ask' })));
    }
    const { stack, run } = await waitingApply(doc('in-time', '{ name: ask, type: approval, message: "open the firewall?", timeoutSeconds: 3600 }'));
    const info = await h.stacks.get(stack.id);
    expect(info.status).toBe('applying');
    expect(info.run).toMatchObject({ id: run.id, status: 'waiting' });
    expect(info.run!.progress).toMatchObject({ stage: 'preDeploy', message: 'waiting for approval of preDeploy/ask: open the firewall? (fails after 1 h without an answer)' });
    const requested = (await h.stacks.events(stack.id)).filter((e) => e.type === 'stack.approval.requested');
    expect(requested.map((e) => e.data)).toEqual([{ runId: run.id, scope: 'preDeploy', step: 'ask', signal: 'approval:preDeploy:ask', message: 'open the firewall?', timeoutSeconds: 3600, onTimeout: 'reject' }]);
    expect(await h.sim.listObjects({ kind: 'network/SecurityGroup' })).toEqual([]);

    // 59 minutes later, still in time
    h.clock.advance(HOUR - 60_000);
    await h.stacks.approve(stack.id, { name: 'ask' }, { approved: true, by: 'alice', comment: 'go' });
    const done = await h.stacks.wait(run.id);
    expect(done.error).toBeUndefined();
    expect(done.status).toBe('succeeded');
    expect((await h.engine.timeline(run.id)).find((s) => s.name === 'preDeploy:ask')).toMatchObject({ status: 'succeeded', output: { approved: true, by: 'alice', comment: 'go' } });
    expect(await h.stacks.get(stack.id)).toMatchObject({ status: 'applied', resourceCount: 1 });
    expect((await h.sim.listObjects({ kind: 'network/SecurityGroup' })).length).toBe(1);
  });

  it('no answer before the timeout fails the apply and creates nothing', async () => {
    t = await openTestStore(dialect);
    h = await harness(t);
    const { stack, run } = await waitingApply(doc('too-late', '{ name: ask, type: approval, message: "open the firewall?", timeoutSeconds: 3600 }'));
    h.clock.advance(HOUR);
    const done = await h.stacks.wait(run.id);
    expect(done.status).toBe('failed');
    expect(done.error?.message).toContain('First failure: workflows.preDeploy: step preDeploy/ask was not approved within 1 h (timeoutSeconds 3600)');
    const info = await h.stacks.get(stack.id);
    expect(info).toMatchObject({ status: 'failed', resourceCount: 0 });
    expect(info.error?.message).toContain('was not approved within 1 h');
    const events = await h.stacks.events(stack.id);
    expect(events.find((e) => e.type === 'stack.approval.timed_out')?.data).toMatchObject({ runId: run.id, step: 'ask', onTimeout: 'reject' });
    expect(events.find((e) => e.type === 'stack.step.failed')?.data).toMatchObject({ step: 'ask', type: 'approval', error: expect.stringContaining('not approved within 1 h') });
    expect(await h.sim.listObjects({ kind: 'network/SecurityGroup' })).toEqual([]);
    // an answer that comes too late has nothing to approve
    await expect(h.stacks.approve(stack.id, { name: 'ask' }, { approved: true, by: 'alice' })).rejects.toMatchObject({ code: 'stacks.no_active_run' });
  });

  it('onTimeout: approve goes on when nobody answers', async () => {
    t = await openTestStore(dialect);
    h = await harness(t);
    const { stack, run } = await waitingApply(doc('silent-ok', '{ name: veto, type: approval, message: "objections?", timeoutSeconds: 900, onTimeout: approve }'));
    expect((await h.engine.get(run.id)).progress).toMatchObject({ message: 'waiting for approval of preDeploy/veto: objections? (goes on after 15 min without an answer)' });
    h.clock.advance(15 * 60_000);
    const done = await h.stacks.wait(run.id);
    expect(done.error).toBeUndefined();
    expect(done.status).toBe('succeeded');
    const events = await h.stacks.events(stack.id);
    expect(events.find((e) => e.type === 'stack.approval.timed_out')?.data).toMatchObject({ runId: run.id, step: 'veto', onTimeout: 'approve' });
    expect(events.some((e) => e.type === 'stack.step.succeeded' && e.data.step === 'veto')).toBe(true);
    expect(await h.stacks.get(stack.id)).toMatchObject({ status: 'applied', resourceCount: 1 });
  });

  it('per-instance approvals: the stack shows what each instance waits for; one instance or all can be approved', async () => {
    t = await openTestStore(dialect);
    h = await harness(t);
    const document = `apiVersion: infraflow.dev/v1
kind: Stack
metadata: { name: per-instance }
spec:
  resources:
    gate: { kind: network/SecurityGroup, count: 3, spec: { description: "gate \${ count.index }" } }
  workflows:
    perInstance:
      - resource: gate
        stage: before
        steps:
          - { name: ok, type: approval, message: "create \${ instance.address }?", timeoutSeconds: 600 }
`;
    const { stack, run } = await h.stacks.apply({ document });
    await until(async () => (await h.engine.list({ parentRunId: run.id, status: 'waiting' })).length === 3);
    await until(async () => (await h.engine.get(run.id)).status === 'waiting');
    const progress = (await h.stacks.get(stack.id)).run!.progress;
    expect(progress?.message).toBe('3 instances waiting: ' + [0, 1, 2].map((i) => `waiting for approval of before:gate[${i}]/ok: create gate[${i}]? (fails after 10 min without an answer)`).join('; '));

    // one instance by its scope: only it goes on
    expect(await h.stacks.approve(stack.id, { scope: 'before:gate[1]', name: 'ok' }, { approved: true, by: 'alice' })).toEqual({ approved: ['before:gate[1]/ok'] });
    await until(async () => (await h.stacks.resources(stack.id)).some((r) => r.address === 'gate[1]' && r.status === 'ready'));
    await until(async () => (await h.engine.list({ parentRunId: run.id, status: 'waiting' })).length === 2);
    expect((await h.stacks.resources(stack.id)).map((r) => r.address)).toEqual(['gate[1]']);
    // approving an answered step again is refused and names what still waits
    await expect(h.stacks.approve(stack.id, { scope: 'before:gate[1]', name: 'ok' }, { approved: true })).rejects.toThrow(`no approval step ok in before:gate[1] is waiting in run ${run.id}; waiting: before:gate[0]/ok, before:gate[2]/ok`);

    // without a scope: every instance still waiting
    expect(await h.stacks.approve(stack.id, { name: 'ok' }, { approved: true, by: 'bob' })).toEqual({ approved: ['before:gate[0]/ok', 'before:gate[2]/ok'] });
    const done = await h.stacks.wait(run.id);
    expect(done.error).toBeUndefined();
    expect(done.status).toBe('succeeded');
    expect((await h.stacks.resources(stack.id)).map((r) => r.address)).toEqual(['gate[0]', 'gate[1]', 'gate[2]']);
    expect((await h.sim.listObjects({ kind: 'network/SecurityGroup' })).length).toBe(3);
  });

  it('a rejection after the resources are up fails the apply with the reason', async () => {
    t = await openTestStore(dialect);
    h = await harness(t);
    const { stack, run } = await waitingApply(doc('rejected', '{ name: release, type: approval, message: "put it in service?", timeoutSeconds: 7200 }', 'postDeploy'));
    expect((await h.stacks.get(stack.id)).run!.progress).toMatchObject({ stage: 'postDeploy', message: 'waiting for approval of postDeploy/release: put it in service? (fails after 2 h without an answer)' });
    await h.stacks.approve(stack.id, { name: 'release' }, { approved: false, by: 'bob', comment: 'change freeze' });
    const done = await h.stacks.wait(run.id);
    expect(done.status).toBe('failed');
    expect(done.error?.message).toContain('First failure: workflows.postDeploy: step postDeploy/release was rejected by bob: change freeze');
    // what was created stays recorded; the stack says why the apply failed
    const info = await h.stacks.get(stack.id);
    expect(info).toMatchObject({ status: 'failed', resourceCount: 1 });
    expect(info.error?.message).toContain('rejected by bob: change freeze');
  });
});

import { afterEach, describe, expect, it } from 'vitest';
import { stackHarness, type StackHarness } from './fixtures/stacks-harness.js';
import { ManualClock } from '../src/core/clock.js';
import { Engine } from '../src/engine/index.js';
import type { EngineEvent } from '../src/engine/types.js';
import type { DriftReport } from '../src/stacks/index.js';
import { DIALECTS, openTestStore, type TestDb } from './support/dialects.js';

/**
 * Drift detection on a schedule: the apply registers a cron schedule
 * (`options.drift.schedule`); when the engine's clock passes it, the
 * `stacks.drift` run observes every recorded resource, marks the stack
 * drifted, publishes `stack.drift.detected`, and — only when
 * `autoReconcile` is true — starts an apply of the applied revision that
 * repairs the drift. Real engine, real simulator, one manual clock.
 */

const doc = (name: string, drift: string) => `apiVersion: infraflow.dev/v1
kind: Stack
metadata: { name: ${name} }
spec:
  options:
${drift}
  resources:
    sg:
      kind: network/SecurityGroup
      spec:
        description: watched
        rules:
          - { direction: ingress, protocol: tcp, portMin: 443, portMax: 443, remoteCidr: 0.0.0.0/0 }
    zone: { kind: dns/Zone, spec: { name: ${name}.example.com } }
    www: { kind: dns/Record, spec: { zone: "\${ resources.zone.outputs.id }", name: www, type: A, values: [10.0.0.7] } }
`;

const EVERY_15 = '    drift: { schedule: "*/15 * * * *", autoReconcile: true }';
const REPORT_ONLY = '    drift: { schedule: "0 * * * *" }';

type H = StackHarness & { clock: ManualClock };

async function harness(t: TestDb): Promise<H> {
  // one clock for all: the schedule fires when this clock passes it; the simulator at a huge
  // speed finishes every operation in the call, so nothing else waits on the clock
  const clock = new ManualClock(Date.UTC(2026, 0, 5, 10, 1, 0));
  return { ...(await stackHarness(t.store, { clock, leaseMs: 30_000, stacks: { actionRetry: { maxAttempts: 1 } } })), clock };
}

/** Waits for a condition (checked every 20 ms of real time; the worker runs meanwhile). */
async function until(cond: () => Promise<boolean>): Promise<void> {
  while (!(await cond())) await new Promise((r) => setTimeout(r, 20));
}

async function lastSeq(engine: Engine): Promise<number> {
  let seq = 0;
  for (;;) {
    const page = await engine.events({ afterSeq: seq, limit: 10_000 });
    if (!page.length) return seq;
    seq = page.at(-1)!.seq;
  }
}

describe.each(DIALECTS)('scheduled drift detection on %s', (dialect) => {
  let t: TestDb;
  let h: H;
  afterEach(async () => {
    await h?.close();
    await t?.cleanup();
  });

  async function applied(name: string, drift: string) {
    const { stack, run } = await h.stacks.apply({ document: doc(name, drift) });
    const done = await h.stacks.wait(run.id);
    expect(done.error).toBeUndefined();
    expect(done.status).toBe('succeeded');
    const recorded = await h.stacks.resources(stack.id);
    const ext = async (address: string) => (await h.resources.get(recorded.find((r) => r.address === address)!.resourceId!)).status.externalId!;
    return { stack, ext };
  }

  /** Moves the clock to the schedule's next fire and returns the drift run it started. */
  async function fire(stackId: string): Promise<{ report: DriftReport; runId: string; event: EngineEvent | undefined }> {
    const schedule = (await h.engine.listSchedules()).find((s) => s.id === `stack-drift:${stackId}`)!;
    expect(schedule).toBeDefined();
    const after = await lastSeq(h.engine);
    h.clock.set(schedule.nextAt);
    // the run the schedule started is named after the fire time
    const runId = `${schedule.id}@${schedule.nextAt}`;
    await until(async () => (await h.engine.listSchedules()).find((s) => s.id === schedule.id)?.lastRunId === runId);
    const done = await h.stacks.wait(runId);
    expect(done.error).toBeUndefined();
    expect(done.status).toBe('succeeded');
    // found with the stack's other drift runs (the ones started by hand carry the same label)
    expect((await h.engine.get(runId)).labels).toEqual({ stackDrift: stackId, schedule: schedule.id });
    expect((await h.engine.list({ labels: { stackDrift: stackId } })).map((r) => r.id)).toContain(runId);
    const events = await h.engine.events({ subject: stackId, types: ['stack.drift.detected'], afterSeq: after });
    return { report: done.output as DriftReport, runId, event: events[0] };
  }

  it('the schedule finds drift and, with autoReconcile, repairs it', async () => {
    t = await openTestStore(dialect);
    h = await harness(t);
    const { stack, ext } = await applied('watched', EVERY_15);
    const schedules = await h.engine.listSchedules();
    expect(schedules.find((s) => s.id === `stack-drift:${stack.id}`)).toMatchObject({ cron: '*/15 * * * *', workflow: 'stacks.drift', input: { stackId: stack.id }, labels: { stackDrift: stack.id }, nextAt: Date.UTC(2026, 0, 5, 10, 15, 0) });

    // a quiet fire: nothing drifted, the stack is marked in sync, nothing is applied
    const quiet = await fire(stack.id);
    expect(quiet.report).toMatchObject({ checked: 3, drifted: [] });
    expect(quiet.report.reconcileRunId).toBeUndefined();
    expect(quiet.event).toBeUndefined();
    expect(await h.stacks.get(stack.id)).toMatchObject({ drift: 'in_sync', observedAt: Date.UTC(2026, 0, 5, 10, 15, 0) });

    // behind Infraflow's back: the security group loses its rules, the DNS record is deleted
    const sgId = await ext('sg');
    await h.sim.driftModify(sgId, { rules: [] });
    await h.sim.driftDelete(await ext('www'));
    expect((await h.sim.resolve('www.watched.example.com')).answers).toEqual([]);

    const found = await fire(stack.id);
    expect(found.report.drifted).toEqual([
      { address: 'sg', fields: ['rules'], missing: false },
      { address: 'www', fields: ['(deleted outside Infraflow)'], missing: true },
    ]);
    expect(found.event?.data).toEqual({ drifted: ['sg', 'www'] });
    expect(found.report.reconcileRunId).toBeDefined();
    const fix = await h.stacks.wait(found.report.reconcileRunId!);
    expect(fix.error).toBeUndefined();
    expect(fix.status).toBe('succeeded');
    expect(fix.labels).toMatchObject({ stack: stack.id, reason: 'reconcile' });

    // repaired on the backend, and the next fire finds the stack in sync
    expect((await h.sim.getObject(sgId))!.actual.rules).toHaveLength(1);
    expect((await h.sim.resolve('www.watched.example.com')).answers.length).toBe(1);
    const after = await fire(stack.id);
    expect(after.report.drifted).toEqual([]);
    expect(await h.stacks.get(stack.id)).toMatchObject({ status: 'applied', drift: 'in_sync' });
  });

  it('without autoReconcile the schedule reports drift, keeps reporting it, and changes nothing', async () => {
    t = await openTestStore(dialect);
    h = await harness(t);
    const { stack, ext } = await applied('reported', REPORT_ONLY);
    const revision = (await h.stacks.get(stack.id)).revision;
    await h.sim.driftDelete(await ext('www'));

    const first = await fire(stack.id);
    expect(first.report.drifted).toEqual([{ address: 'www', fields: ['(deleted outside Infraflow)'], missing: true }]);
    expect(first.report.reconcileRunId).toBeUndefined();
    expect(first.event?.data).toEqual({ drifted: ['www'] });
    expect(await h.stacks.get(stack.id)).toMatchObject({ drift: 'drifted', revision });

    // an hour later the record is still gone: the stack must still say so
    const second = await fire(stack.id);
    expect(second.report.drifted).toEqual([{ address: 'www', fields: ['(deleted outside Infraflow)'], missing: true }]);
    expect(second.event?.data).toEqual({ drifted: ['www'] });
    expect((await h.stacks.get(stack.id)).drift).toBe('drifted');
    expect((await h.stacks.plan({ document: doc('reported', REPORT_ONLY) })).changes.find((c) => c.address === 'www')).toMatchObject({ action: 'replace' });
    // nothing was applied by the schedule
    expect((await h.stacks.runs(stack.id)).length).toBe(1);
    expect((await h.sim.resolve('www.reported.example.com')).answers).toEqual([]);
  });

  it('never reconciles back to an older revision while a newer one is applying, or after it failed', async () => {
    t = await openTestStore(dialect);
    h = await harness(t);
    const gated = (description: string, approval: boolean) => doc('moving', EVERY_15).replace('description: watched', `description: ${description}`) + (approval ? `  workflows:
    preDeploy:
      - { name: ask, type: approval, message: "go?" }
` : '');
    const first = await h.stacks.apply({ document: gated('first', false) });
    expect((await h.stacks.wait(first.run.id)).status).toBe('succeeded');
    const stack = first.stack;
    const sgId = (await h.resources.get((await h.stacks.resources(stack.id)).find((r) => r.address === 'sg')!.resourceId!)).status.externalId!;
    await h.sim.driftModify(sgId, { rules: [] });

    // revision 2 waits for its approval: a fire now neither observes nor reconciles
    const second = await h.stacks.apply({ document: gated('second', true) });
    await until(async () => (await h.engine.get(second.run.id)).status === 'waiting');
    const during = await fire(stack.id);
    expect(during.report).toMatchObject({ checked: 0, drifted: [], skipped: `run ${second.run.id} of this stack is in progress` });
    expect(during.report.reconcileRunId).toBeUndefined();

    // revision 2 is rejected: the stack failed at revision 2; drift is reported, not put back to revision 1
    await h.stacks.approve(stack.id, { name: 'ask' }, { approved: false, by: 'carol' });
    expect((await h.stacks.wait(second.run.id)).status).toBe('failed');
    const failed = await fire(stack.id);
    expect(failed.report.drifted.map((d) => d.address)).toEqual(['sg']);
    expect(failed.report.reconcileRunId).toBeUndefined();
    expect(failed.report.reconcileSkipped).toBe('the stack is failed at revision 2 (applied: 1): apply or retry it first; reconciling would go back to revision 1');
    expect((await h.stacks.runs(stack.id)).length).toBe(2);

    // revision 3 is applied: the next fire puts revision 3 back
    const third = await h.stacks.apply({ document: gated('third', false) });
    expect((await h.stacks.wait(third.run.id)).status).toBe('succeeded');
    await h.sim.driftModify(sgId, { rules: [] });
    const fixed = await fire(stack.id);
    expect(fixed.report.drifted.map((d) => d.address)).toEqual(['sg']);
    expect((await h.stacks.wait(fixed.report.reconcileRunId!)).status).toBe('succeeded');
    expect((await h.engine.get(fixed.report.reconcileRunId!)).input).toMatchObject({ revision: 3, reason: 'reconcile' });
    expect((await h.sim.getObject(sgId))!.actual).toMatchObject({ description: 'third', rules: [expect.anything()] });
  });

  it('a revision without a schedule removes it; destroy removes it too', async () => {
    t = await openTestStore(dialect);
    h = await harness(t);
    const { stack } = await applied('unwatched', EVERY_15);
    expect((await h.engine.listSchedules()).map((s) => s.id)).toEqual([`stack-drift:${stack.id}`]);

    // a new schedule replaces the old one
    await applied('unwatched', REPORT_ONLY);
    expect((await h.engine.listSchedules()).map((s) => [s.id, s.cron])).toEqual([[`stack-drift:${stack.id}`, '0 * * * *']]);

    // the option is gone from the document: so is the schedule
    await applied('unwatched', '    parallelism: 4');
    expect(await h.engine.listSchedules()).toEqual([]);

    await applied('unwatched', EVERY_15);
    expect((await h.engine.listSchedules()).length).toBe(1);
    // a schedule that cannot fire is refused with the document, before anything is applied
    for (const [cron, why] of [['every day', 'is invalid'], ['0 0 30 2 *', 'never fires']]) {
      const bad = h.stacks.apply({ document: doc('unwatched', `    drift: { schedule: "${cron}" }`), file: 'w.yaml' });
      await expect(bad).rejects.toMatchObject({ code: 'stacks.invalid_document', details: { file: 'w.yaml', line: 6, path: 'spec.options.drift.schedule' } });
      await expect(bad).rejects.toThrow(why);
    }
    expect((await h.stacks.get(stack.id)).revision).toBe(4);

    const d = await h.stacks.destroy(stack.id);
    expect((await h.stacks.wait(d.run.id)).status).toBe('succeeded');
    expect(await h.engine.listSchedules()).toEqual([]);
  });
});

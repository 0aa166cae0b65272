import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { DIALECTS, openTestStore, type TestDb } from './support/dialects.js';
import { stackHarness, type StackHarness } from './fixtures/stacks-harness.js';

const WEB = readFileSync(new URL('../examples/stacks/web-tier.yaml', import.meta.url), 'utf8');

describe.each(DIALECTS)('stack drift and replacement on %s', (dialect) => {
  let t: TestDb;
  let h: StackHarness;
  afterEach(async () => {
    await h?.close();
    await t?.cleanup();
  });

  it('observe marks drift, plan shows it, reconcile repairs it (on demand and by the drift workflow)', async () => {
    t = await openTestStore(dialect);
    h = await stackHarness(t.store);
    const { stack, run } = await h.stacks.apply({ document: WEB });
    expect((await h.stacks.wait(run.id, { timeoutMs: 60_000 })).status).toBe('succeeded');
    const recorded = await h.stacks.resources(stack.id);
    const ext = async (address: string) => (await h.resources.get(recorded.find((r) => r.address === address)!.resourceId!)).status.externalId!;

    expect((await h.stacks.observe(stack.id)).drifted).toEqual([]);
    expect((await h.stacks.get(stack.id)).drift).toBe('in_sync');

    // someone empties the security group and deletes the DNS record behind our back
    await h.sim.driftModify(await ext('web-sg'), { rules: [] });
    await h.sim.driftDelete(await ext('www'));
    const report = await h.stacks.observe(stack.id);
    expect(report.drifted).toEqual([
      { address: 'web-sg', fields: ['rules'], missing: false },
      { address: 'www', fields: ['(deleted outside Infraflow)'], missing: true },
    ]);
    expect((await h.stacks.get(stack.id)).drift).toBe('drifted');
    const plan = await h.stacks.plan({ document: WEB });
    const by = Object.fromEntries(plan.changes.map((c) => [c.address, c]));
    expect(by['web-sg']).toMatchObject({ action: 'update', reason: 'drift in rules' });
    expect(by.www).toMatchObject({ action: 'replace', reason: 'deleted outside Infraflow (drift)' });
    expect(plan.summary).toMatchObject({ update: 1, replace: 1, noop: 12 });

    const fix = await h.stacks.reconcile(stack.id);
    expect((await h.stacks.wait(fix.id, { timeoutMs: 60_000 })).status).toBe('succeeded');
    expect((await h.stacks.observe(stack.id)).drifted).toEqual([]);
    expect((await h.sim.resolve('www.web.example.com')).answers.length).toBe(1);

    // the scheduled check (the drift workflow) reconciles by itself when asked to
    await h.sim.driftModify(await ext('web-sg'), { rules: [] });
    const check = await h.stacks.startDriftCheck(stack.id, { reconcile: true });
    const checked = await h.stacks.wait(check.id, { timeoutMs: 60_000 });
    const out = checked.output as { drifted: unknown[]; reconcileRunId: string };
    expect(out.drifted.length).toBe(1);
    expect((await h.stacks.wait(out.reconcileRunId, { timeoutMs: 60_000 })).status).toBe('succeeded');
    expect((await h.stacks.observe(stack.id)).drifted).toEqual([]);
  });

  it('create-before-destroy replaces without a gap; a name collision is refused before anything changes', async () => {
    t = await openTestStore(dialect);
    h = await stackHarness(t.store);
    const doc = (type: string, recType: string) => `apiVersion: infraflow.dev/v1
kind: Stack
metadata: { name: cbd }
spec:
  options: { createBeforeDestroy: true }
  resources:
    vol: { kind: storage/Volume, spec: { sizeGb: 10, type: ${type} } }
    zone: { kind: dns/Zone, spec: { name: cbd.example.com } }
    rec: { kind: dns/Record, spec: { zone: "\${ resources.zone.outputs.id }", name: www, type: ${recType}, values: ["${recType === 'A' ? '10.0.0.1' : 'fd00::1'}"] } }
`;
    const first = await h.stacks.apply({ document: doc('standard', 'A') });
    expect((await h.stacks.wait(first.run.id, { timeoutMs: 60_000 })).status).toBe('succeeded');
    const oldVol = (await h.stacks.resources('cbd')).find((r) => r.address === 'vol')!;

    // a replacement whose new object would carry the same name is refused at plan time
    const clash = await h.stacks.plan({ document: doc('standard', 'AAAA') });
    expect(clash.feasibility.ok).toBe(false);
    expect(clash.feasibility.checks[0]!.message).toContain('create-before-destroy of rec would create a second dns/Record named "www"');
    await expect(h.stacks.apply({ document: doc('standard', 'AAAA') })).rejects.toMatchObject({ code: 'stacks.infeasible' });
    expect((await h.stacks.get('cbd')).revision).toBe(1);

    const plan = await h.stacks.plan({ document: doc('ssd', 'A') });
    expect(plan.changes.find((c) => c.address === 'vol')).toMatchObject({ action: 'replace', replaceFields: ['type'], createBeforeDestroy: true });
    const second = await h.stacks.apply({ document: doc('ssd', 'A') });
    expect((await h.stacks.wait(second.run.id, { timeoutMs: 60_000 })).status).toBe('succeeded');
    const newVol = (await h.stacks.resources('cbd')).find((r) => r.address === 'vol')!;
    expect(newVol.resourceId).not.toBe(oldVol.resourceId);
    // the new volume was ready before the old one was deleted
    const events = await h.engine.events({ typePrefix: 'resource.', limit: 10_000 });
    const newReady = events.find((e) => e.subject === newVol.resourceId && e.type === 'resource.phase_changed' && e.data.to === 'ready')!;
    const oldGone = events.find((e) => e.subject === oldVol.resourceId && e.type === 'resource.deleted')!;
    expect(newReady.seq).toBeLessThan(oldGone.seq);
    expect((await h.sim.listObjects({ kind: 'storage/Volume' })).length).toBe(1);
  });
});

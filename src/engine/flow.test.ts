import { afterEach, describe, expect, it } from 'vitest';
import { DIALECTS } from '../../test/support/dialects.js';
import { InfraflowError, TransientError } from '../core/errors.js';
import { defineWorkflow, type WorkflowDefinition } from './index.js';
import { engineHarness, until, type EngineHarness } from './test-helpers.js';

function deferred<T = void>() {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

describe.each(DIALECTS)('engine flow control on %s', (dialect) => {
  let h: EngineHarness;
  afterEach(async () => h?.close());

  it('child runs return their output to the parent; child failure fails the parent step', async () => {
    h = await engineHarness(dialect);
    h.engine.register(defineWorkflow({ name: 'child', version: 1, run: async (ctx, input: { n: number }) => ctx.step('double', async () => input.n * 2) }));
    h.engine.register(
      defineWorkflow({
        name: 'bad-child',
        version: 1,
        run: async (ctx) =>
          ctx.step('boom', async () => {
            throw new InfraflowError('sim.broken', 'broken', 500, { retryable: false });
          }),
      }),
    );
    h.engine.register(
      defineWorkflow({
        name: 'parent',
        version: 1,
        async run(ctx) {
          const a = await ctx.child<number>('child', { n: 21 });
          let failure = '';
          try {
            await ctx.child('bad-child', {});
          } catch (e) {
            failure = (e as InfraflowError).code;
          }
          return { a, failure };
        },
      }),
    );
    h.engine.startWorker();
    const run = await h.engine.start('parent', {});
    const done = await h.engine.result(run.id);
    expect(done.output).toEqual({ a: 42, failure: 'engine.child_failed' });
    const children = await h.engine.list({ parentRunId: run.id });
    expect(children.map((c) => [c.workflow, c.status])).toEqual([
      ['child', 'succeeded'],
      ['bad-child', 'failed'],
    ]);
    expect(children[0]!.id).toBe(`${run.id}.0`);
  });

  it('parallel branches get deterministic step identities and replay after a crash', async () => {
    h = await engineHarness(dialect);
    const ran: string[] = [];
    const gate = deferred();
    let hang = true;
    const wf: WorkflowDefinition = defineWorkflow({
      name: 'fanout',
      version: 1,
      async run(ctx) {
        const results = await Promise.all(
          ['a', 'b', 'c'].map((x) =>
            ctx.step(`make-${x}`, async (sc) => {
              ran.push(`${x}@${sc.idempotencyKey}`);
              if (x === 'b' && hang) {
                hang = false;
                await gate.promise;
              }
              return x.toUpperCase();
            }),
          ),
        );
        return results.join('');
      },
    });
    const A = h.another({ workerId: 'A', heartbeatMs: 1e12, leaseMs: 5_000 });
    A.register(wf);
    A.startWorker();
    const run = await A.start('fanout', {});
    await until(async () => (await A.timeline(run.id)).length === 2, 'a and c to be journaled');
    const B = h.another({ workerId: 'B', leaseMs: 5_000 });
    B.register(wf);
    B.startWorker();
    h.clock.advance(6_000);
    const done = await B.result(run.id);
    expect(done.output).toBe('ABC');
    // a and c ran once; b ran on both workers with the same key.
    expect(ran.filter((r) => r.startsWith('a@'))).toEqual([`a@${run.id}:0`]);
    expect(ran.filter((r) => r.startsWith('c@'))).toEqual([`c@${run.id}:2`]);
    expect(ran.filter((r) => r.startsWith('b@'))).toEqual([`b@${run.id}:1`, `b@${run.id}:1`]);
    const tl = await B.timeline(run.id);
    expect(tl.map((s) => [s.seq, s.name])).toEqual([
      [0, 'make-a'],
      [1, 'make-b'],
      [2, 'make-c'],
    ]);
    gate.resolve();
    await A.stop();
  });

  it('compensates completed steps in reverse order when a later step fails', async () => {
    h = await engineHarness(dialect);
    const undo: string[] = [];
    h.engine.register(
      defineWorkflow({
        name: 'saga',
        version: 1,
        async run(ctx) {
          await ctx.step('network', async () => 'net-1', { compensate: async (r) => void undo.push(`delete ${r}`) });
          await ctx.step('disk', async () => 'disk-1', { compensate: async (r) => void undo.push(`delete ${r}`) });
          await ctx.step('plain', async () => 'x');
          await ctx.step('vm', async () => {
            throw new InfraflowError('sim.no_capacity', 'no capacity', 409, { retryable: false });
          });
        },
      }),
    );
    h.engine.startWorker();
    const run = await h.engine.start('saga', {});
    const done = await h.engine.result(run.id);
    expect(done.status).toBe('failed');
    expect(done.error?.code).toBe('sim.no_capacity');
    expect(undo).toEqual(['delete disk-1', 'delete net-1']);
    const tl = await h.engine.timeline(run.id);
    expect(tl.map((s) => [s.name, s.kind, s.status])).toEqual([
      ['network', 'step', 'succeeded'],
      ['disk', 'step', 'succeeded'],
      ['plain', 'step', 'succeeded'],
      ['vm', 'step', 'failed'],
      ['compensate:disk', 'compensate', 'succeeded'],
      ['compensate:network', 'compensate', 'succeeded'],
    ]);
  });

  it('cancel runs compensations durably, surviving a worker crash in the middle', async () => {
    h = await engineHarness(dialect);
    const undo: string[] = [];
    const gate = deferred();
    let hangOnce = true;
    const wf: WorkflowDefinition = defineWorkflow({
      name: 'cancellable',
      version: 1,
      async run(ctx) {
        await ctx.step('a', async () => 'A', { compensate: async () => void undo.push('undo-a') });
        await ctx.step('b', async () => 'B', {
          compensate: async () => {
            undo.push('undo-b');
            if (hangOnce) {
              hangOnce = false;
              await gate.promise;
            }
          },
        });
        await ctx.waitFor('go');
        return 'never';
      },
    });
    const A = h.another({ workerId: 'A', heartbeatMs: 1e12, leaseMs: 5_000 });
    A.register(wf);
    A.startWorker();
    const run = await A.start('cancellable', {});
    await h.waitEvent({ subject: run.id, types: ['run.waiting'] });
    const c1 = await A.cancel(run.id, 'user asked');
    expect(['cancelling', 'running']).toContain(c1.status);
    // Cancelling twice is an idempotent success.
    const c2 = await A.cancel(run.id);
    expect(c2.id).toBe(run.id);
    await until(() => undo.length === 1, 'undo-b to start on A');
    // A dies in the middle of undo-b; B takes over after the lease.
    const B = h.another({ workerId: 'B', leaseMs: 5_000 });
    B.register(wf);
    B.startWorker();
    h.clock.advance(6_000);
    const done = await B.result(run.id);
    expect(done.status).toBe('cancelled');
    expect(done.error?.code).toBe('engine.cancelled');
    expect(undo).toEqual(['undo-b', 'undo-b', 'undo-a']);
    const comps = (await B.timeline(run.id)).filter((s) => s.kind === 'compensate');
    expect(comps.map((s) => [s.name, s.status])).toEqual([
      ['compensate:b', 'succeeded'],
      ['compensate:a', 'succeeded'],
    ]);
    gate.resolve();
    await A.stop();
    await expect(B.cancel(run.id)).resolves.toMatchObject({ status: 'cancelled' });
    await expect(B.signal(run.id, 'go')).rejects.toMatchObject({ code: 'engine.run_finished' });
  });

  it('cancelling a pending run ends it at once; cancelling a succeeded run is refused', async () => {
    h = await engineHarness(dialect);
    h.engine.register(defineWorkflow({ name: 'quick', version: 1, run: async () => 'ok' }));
    const pending = await h.engine.start('quick', {}, { startAt: h.clock.now() + 60_000 });
    const c = await h.engine.cancel(pending.id);
    expect(c.status).toBe('cancelled');
    h.engine.startWorker();
    const r = await h.engine.start('quick', {});
    await h.engine.result(r.id);
    await expect(h.engine.cancel(r.id)).rejects.toMatchObject({ code: 'engine.run_finished' });
  });

  it('fails the run with engine.nondeterminism when replay meets a different step', async () => {
    h = await engineHarness(dialect);
    const v1 = defineWorkflow({
      name: 'shifty',
      version: 1,
      async run(ctx) {
        await ctx.step('reserve-ip', async () => 1);
        await ctx.sleep('pause', 10_000);
        return 'v1';
      },
    });
    const changed = defineWorkflow({
      name: 'shifty',
      version: 1,
      async run(ctx) {
        await ctx.step('reserve-vlan', async () => 1);
        await ctx.sleep('pause', 10_000);
        return 'changed';
      },
    });
    const A = h.another({ workerId: 'A' });
    A.register(v1);
    A.startWorker();
    const run = await A.start('shifty', {});
    await h.waitEvent({ subject: run.id, types: ['run.waiting'] });
    await A.stop();
    const B = h.another({ workerId: 'B' });
    B.register(changed);
    B.startWorker();
    h.clock.advance(10_000);
    const done = await B.result(run.id);
    expect(done.status).toBe('failed');
    expect(done.error?.code).toBe('engine.nondeterminism');
    expect(done.error?.message).toContain('reserve-ip');
    expect(done.error?.message).toContain('reserve-vlan');
  });

  it('fails a resumed run whose workflow version is gone with engine.version_mismatch', async () => {
    h = await engineHarness(dialect);
    const mk = (version: number) =>
      defineWorkflow({
        name: 'versioned',
        version,
        async run(ctx) {
          await ctx.sleep('wait', 5_000);
          return version;
        },
      });
    const A = h.another({ workerId: 'A' });
    A.register(mk(1));
    A.startWorker();
    const run = await A.start('versioned', {});
    await h.waitEvent({ subject: run.id, types: ['run.waiting'] });
    await A.stop();
    const B = h.another({ workerId: 'B' });
    B.register(mk(2));
    B.startWorker();
    h.clock.advance(5_000);
    const done = await B.result(run.id);
    expect(done.error?.code).toBe('engine.version_mismatch');
    expect(done.error?.message).toMatch(/drain/);
    expect(done.error?.message).toMatch(/new run/);
    await expect(B.retry(run.id)).rejects.toMatchObject({ code: 'engine.version_mismatch' });
  });

  it('times out steps (abort signal) and whole runs', async () => {
    h = await engineHarness(dialect);
    let aborted = false;
    h.engine.register(
      defineWorkflow({
        name: 'slow-step',
        version: 1,
        async run(ctx) {
          await ctx.step(
            'hang',
            (sc) =>
              new Promise((_, reject) => {
                sc.signal.addEventListener('abort', () => {
                  aborted = true;
                  reject(sc.signal.reason);
                });
              }),
            { timeoutMs: 1_000, retry: { maxAttempts: 1 } },
          );
        },
      }),
    );
    h.engine.register(
      defineWorkflow({
        name: 'slow-run',
        version: 1,
        timeoutMs: 30_000,
        async run(ctx) {
          await ctx.sleep('long', 3_600_000);
        },
      }),
    );
    h.engine.startWorker();
    const a = await h.engine.start('slow-step', {});
    const b = await h.engine.start('slow-run', {});
    await h.waitEvent({ subject: b.id, types: ['run.waiting'] });
    await until(() => h.engine.activeRuns === 1, 'slow-step to run');
    h.clock.advance(1_000);
    const ra = await h.engine.result(a.id);
    expect(ra.error?.code).toBe('engine.step_timeout');
    expect(aborted).toBe(true);
    h.clock.advance(30_000);
    const rb = await h.engine.result(b.id);
    expect(rb.error?.code).toBe('engine.run_timeout');
  });

  it('retries a failed run from its failed step and skips steps, recording operator history', async () => {
    h = await engineHarness(dialect);
    let firstCalls = 0;
    let brokenCalls = 0;
    let fixed = false;
    h.engine.register(
      defineWorkflow({
        name: 'operable',
        version: 1,
        async run(ctx) {
          const a = await ctx.step('first', async () => ++firstCalls);
          const b = await ctx.step('broken', async () => {
            brokenCalls++;
            if (!fixed) throw new InfraflowError('sim.bad_config', 'bad config', 400, { retryable: false });
            return 'fixed';
          });
          const c = await ctx.step('manual', async () => {
            throw new TransientError('sim.down', 'backend down', { retryable: false });
          });
          return { a, b, c };
        },
      }),
    );
    h.engine.startWorker();
    const run = await h.engine.start('operable', {});
    expect((await h.engine.result(run.id)).error?.code).toBe('sim.bad_config');
    fixed = true;
    await h.engine.retry(run.id, { actor: 'alice' });
    const second = await h.engine.result(run.id);
    expect(second.status).toBe('failed');
    expect(second.error?.code).toBe('sim.down');
    expect(firstCalls).toBe(1);
    expect(brokenCalls).toBe(2);
    await h.engine.skipStep(run.id, 'manual', 'done by hand', { actor: 'bob' });
    const third = await h.engine.result(run.id);
    expect(third.status).toBe('succeeded');
    expect(third.output).toEqual({ a: 1, b: 'fixed', c: 'done by hand' });
    const hist = await h.engine.history(run.id);
    expect(hist.map((x) => [x.actor, x.action])).toEqual([
      ['alice', 'retry'],
      ['bob', 'skip_step'],
    ]);
    expect((await h.engine.timeline(run.id)).find((s) => s.name === 'manual')?.status).toBe('skipped');
    await expect(h.engine.retry(run.id)).rejects.toMatchObject({ code: 'engine.run_not_failed' });
    await expect(h.engine.skipStep(run.id, 'nope', 1)).rejects.toMatchObject({ code: 'engine.run_finished' });
  });

  it('retrying a parent whose child failed retries the child from its failed step', async () => {
    h = await engineHarness(dialect);
    let broken = true;
    let prepCalls = 0;
    h.engine.register(
      defineWorkflow({
        name: 'kid',
        version: 1,
        async run(ctx) {
          await ctx.step('prep', async () => ++prepCalls);
          return ctx.step('work', async () => {
            if (broken) throw new InfraflowError('sim.broken', 'broken', 500, { retryable: false });
            return 'kid-ok';
          });
        },
      }),
    );
    h.engine.register(defineWorkflow({ name: 'mom', version: 1, run: async (ctx) => ctx.child('kid', {}) }));
    h.engine.startWorker();
    const run = await h.engine.start('mom', {});
    expect((await h.engine.result(run.id)).error?.code).toBe('engine.child_failed');
    broken = false;
    await h.engine.retry(run.id, { actor: 'ops' });
    const done = await h.engine.result(run.id);
    expect(done.status).toBe('succeeded');
    expect(done.output).toBe('kid-ok');
    expect(prepCalls).toBe(1);
    expect((await h.engine.history(`${run.id}.0`)).map((x) => x.action)).toEqual(['retry']);
  });
});

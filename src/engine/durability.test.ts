import { afterEach, describe, expect, it } from 'vitest';
import { DIALECTS } from '../../test/support/dialects.js';
import { defineWorkflow, type WorkflowDefinition } from './index.js';
import { engineHarness, until, type EngineHarness } from './test-helpers.js';

function deferred<T = void>() {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

describe.each(DIALECTS)('engine durability on %s', (dialect) => {
  let h: EngineHarness;
  afterEach(async () => h?.close());

  it('replays journaled steps after a worker dies, and fences out the paused worker', async () => {
    h = await engineHarness(dialect);
    const bodies: Record<string, string[]> = { one: [], two: [] };
    const gate = deferred<string>();
    let firstTwo = true;
    const wf = (who: string): WorkflowDefinition =>
      defineWorkflow({
        name: 'crashy',
        version: 1,
        async run(ctx) {
          const a = await ctx.step('one', async (sc) => {
            bodies.one!.push(`${who}:${sc.idempotencyKey}`);
            return 'a';
          });
          const b = await ctx.step('two', async (sc) => {
            bodies.two!.push(`${who}:${sc.idempotencyKey}`);
            if (firstTwo) {
              firstTwo = false;
              return gate.promise; // worker A hangs here (paused process)
            }
            return 'b-from-B';
          });
          return `${a}${b}`;
        },
      });
    // Worker A never heartbeats (a paused process); worker B takes over after the lease expires.
    const A = h.another({ workerId: 'A', heartbeatMs: 1e12, leaseMs: 5_000 });
    A.register(wf('A'));
    A.startWorker();
    const run = await A.start('crashy', {});
    await until(() => bodies.two!.length === 1, 'A to reach step two');
    const B = h.another({ workerId: 'B', leaseMs: 5_000 });
    B.register(wf('B'));
    B.startWorker();
    h.clock.advance(6_000);
    const done = await B.result(run.id);
    expect(done.status).toBe('succeeded');
    expect(done.output).toBe('ab-from-B');
    // Step one ran once (journaled, replayed by B); step two ran on both with the same idempotency key.
    expect(bodies.one).toEqual([`A:${run.id}:0`]);
    expect(bodies.two).toEqual([`A:${run.id}:1`, `B:${run.id}:1`]);
    // The paused worker wakes up and tries to commit: fenced out, nothing changes.
    const before = await h.engine.timeline(run.id);
    gate.resolve('b-from-A');
    await until(() => A.activeRuns === 0, 'A to abandon the run');
    await A.stop();
    const after = await h.engine.timeline(run.id);
    expect(after).toEqual(before);
    expect(after.find((s) => s.name === 'two')!.output).toBe('b-from-B');
    expect((await h.engine.get(run.id)).output).toBe('ab-from-B');
  });

  it('durable sleep survives a restart and holds no worker while sleeping', async () => {
    h = await engineHarness(dialect);
    let after = 0;
    const wf = defineWorkflow({
      name: 'sleeper',
      version: 1,
      async run(ctx) {
        await ctx.step('before', async () => 1);
        await ctx.sleep('nap', 3_600_000);
        await ctx.step('after', async () => ++after);
        return 'rested';
      },
    });
    const A = h.another({ workerId: 'A' });
    A.register(wf);
    A.startWorker();
    const run = await A.start('sleeper', {});
    const waiting = await h.waitEvent({ subject: run.id, types: ['run.waiting'] });
    expect(waiting.data.until).toBe(h.clock.now() + 3_600_000);
    await until(() => A.activeRuns === 0, 'run to leave memory');
    expect((await A.get(run.id)).status).toBe('waiting');
    expect((await A.get(run.id)).progress?.waitingFor).toBe('sleep nap');
    await A.stop();
    // A new worker picks it up when the timer is due.
    const B = h.another({ workerId: 'B' });
    B.register(wf);
    B.startWorker();
    h.clock.advance(3_599_000);
    expect((await B.get(run.id)).status).toBe('waiting');
    h.clock.advance(1_000);
    const done = await B.result(run.id);
    expect(done.status).toBe('succeeded');
    expect(after).toBe(1);
    const tl = await B.timeline(run.id);
    expect(tl.map((s) => [s.name, s.kind])).toEqual([
      ['before', 'step'],
      ['nap', 'sleep'],
      ['after', 'step'],
    ]);
  });

  it('waitFor is woken by signals, buffers early signals and times out', async () => {
    h = await engineHarness(dialect);
    h.engine.register(
      defineWorkflow({
        name: 'approval',
        version: 1,
        async run(ctx) {
          const first = await ctx.waitFor<{ ok: boolean }>('approve');
          let second: unknown;
          try {
            second = await ctx.waitFor('again', { timeoutMs: 60_000 });
          } catch (e) {
            second = (e as { code: string }).code;
          }
          return { first, second };
        },
      }),
    );
    h.engine.startWorker();
    // Signal sent before the wait: buffered, not lost.
    const early = await h.engine.start('approval', {}, { startAt: h.clock.now() + 10_000 });
    await h.engine.signal(early.id, 'approve', { ok: true });
    await h.engine.signal(early.id, 'again', 'yes');
    h.clock.advance(10_000);
    expect((await h.engine.result(early.id)).output).toEqual({ first: { ok: true }, second: 'yes' });

    // Signal after the run waits; second wait times out.
    const late = await h.engine.start('approval', {});
    await h.waitEvent({ subject: late.id, types: ['run.waiting'] });
    await h.engine.signal(late.id, 'approve', { ok: false });
    await h.waitEvent({ subject: late.id, types: ['run.waiting'] }, (e) => String(e.data.waitingFor).includes('again'));
    h.clock.advance(60_000);
    const done = await h.engine.result(late.id);
    expect(done.output).toEqual({ first: { ok: false }, second: 'engine.wait_timeout' });
    await expect(h.engine.signal(late.id, 'approve')).rejects.toMatchObject({ code: 'engine.run_finished' });
  });

  it('poll journals only the final result', async () => {
    h = await engineHarness(dialect);
    let polls = 0;
    h.engine.register(
      defineWorkflow({
        name: 'poller',
        version: 1,
        async run(ctx) {
          return ctx.poll(
            'vm-ready',
            async () => {
              polls++;
              return polls >= 4 ? { done: true, value: 'ready' } : { done: false, status: `booting ${polls}` };
            },
            { intervalMs: 500, timeoutMs: 60_000 },
          );
        },
      }),
    );
    h.engine.startWorker();
    const run = await h.engine.start('poller', {});
    await until(async () => {
      h.clock.advance(500);
      return (await h.engine.get(run.id)).status === 'succeeded';
    }, 'poll to finish');
    expect((await h.engine.get(run.id)).output).toBe('ready');
    const tl = await h.engine.timeline(run.id);
    expect(tl).toHaveLength(1);
    expect(tl[0]).toMatchObject({ name: 'vm-ready', kind: 'poll', status: 'succeeded', attempts: 4 });
    expect(polls).toBe(4);
  });

  it('poll with long intervals suspends between polls and fails after its timeout', async () => {
    h = await engineHarness(dialect);
    let polls = 0;
    h.engine.register(
      defineWorkflow({
        name: 'slow-poller',
        version: 1,
        async run(ctx) {
          return ctx.poll('never', async () => ({ done: false, status: `try ${++polls}` }), { intervalMs: 60_000, timeoutMs: 300_000 });
        },
      }),
    );
    h.engine.startWorker();
    const run = await h.engine.start('slow-poller', {});
    await until(async () => {
      h.clock.advance(60_000);
      return (await h.engine.get(run.id)).status === 'failed';
    }, 'poll to time out');
    const done = await h.engine.get(run.id);
    expect(done.error?.code).toBe('engine.poll_timeout');
    expect(polls).toBeGreaterThanOrEqual(2);
    const tl = await h.engine.timeline(run.id);
    expect(tl).toHaveLength(1);
  });

  it('graceful stop lets the in-flight step finish and hands the run back', async () => {
    h = await engineHarness(dialect);
    const gate = deferred();
    let second = 0;
    const wf = defineWorkflow({
      name: 'handoff',
      version: 1,
      async run(ctx) {
        await ctx.step('slow', async () => {
          await gate.promise;
          return 1;
        });
        await ctx.step('next', async () => ++second);
        return 'ok';
      },
    });
    const A = h.another({ workerId: 'A' });
    A.register(wf);
    A.startWorker();
    const run = await A.start('handoff', {});
    await until(() => A.activeRuns === 1, 'A to run');
    const stopped = A.stop();
    gate.resolve();
    await stopped;
    const tl = await A.timeline(run.id);
    expect(tl.map((s) => s.name)).toEqual(['slow']);
    const r = await A.get(run.id);
    expect(r.status).toBe('running');
    const B = h.another({ workerId: 'B' });
    B.register(wf);
    B.startWorker();
    expect((await B.result(run.id)).status).toBe('succeeded');
    expect(second).toBe(1);
  });

  it('runs on a fast scaled clock: sleeps, retries and waits in simulated time', async () => {
    const { scaledClock } = await import('../core/clock.js');
    h = await engineHarness(dialect, { clock: scaledClock(2_000) as never });
    let tries = 0;
    h.engine.register(
      defineWorkflow({
        name: 'simulated',
        version: 1,
        async run(ctx) {
          const t0 = await ctx.now();
          await ctx.sleep('boot', 60_000);
          await ctx.step(
            'flaky',
            async () => {
              if (++tries < 3) throw new Error('not yet');
            },
            { retry: { initialIntervalMs: 5_000, jitter: 0 } },
          );
          return (await ctx.now()) - t0;
        },
      }),
    );
    h.engine.startWorker();
    const run = await h.engine.start('simulated', {});
    const done = await h.engine.result(run.id);
    expect(done.status).toBe('succeeded');
    expect(done.output as number).toBeGreaterThanOrEqual(60_000 + 5_000 + 10_000);
  });

  it('heartbeats keep the lease and carry a cancel from another process to the running step', async () => {
    h = await engineHarness(dialect);
    let aborted = false;
    const wf = defineWorkflow({
      name: 'long-step',
      version: 1,
      async run(ctx) {
        await ctx.step(
          'long',
          (sc) =>
            new Promise((_, reject) =>
              sc.signal.addEventListener('abort', () => {
                aborted = true;
                reject(sc.signal.reason);
              }),
            ),
          { retry: { maxAttempts: 1 } },
        );
      },
    });
    const A = h.another({ workerId: 'A', leaseMs: 5_000, heartbeatMs: 1_000 });
    const B = h.another({ workerId: 'B', leaseMs: 5_000, heartbeatMs: 1_000 });
    A.register(wf);
    B.register(wf);
    A.startWorker();
    const run = await A.start('long-step', {});
    await until(() => A.activeRuns === 1, 'A to run');
    B.startWorker();
    // 20 s of clock time in heartbeat-sized steps: A keeps its lease, B never takes over.
    for (let i = 0; i < 20; i++) {
      const before = (await h.t.store.db.selectFrom('engine_runs').select('lease_expires_at').where('id', '=', run.id).executeTakeFirstOrThrow()).lease_expires_at;
      h.clock.advance(1_000);
      await until(async () => (await h.t.store.db.selectFrom('engine_runs').select('lease_expires_at').where('id', '=', run.id).executeTakeFirstOrThrow()).lease_expires_at! > before!, 'heartbeat');
    }
    expect(B.activeRuns).toBe(0);
    await B.cancel(run.id, 'from B');
    h.clock.advance(1_000);
    const done = await B.result(run.id);
    expect(done.status).toBe('cancelled');
    expect(aborted).toBe(true);
    const started = await B.events({ subject: run.id, types: ['run.started'] });
    expect(started.map((e) => e.data.worker)).toEqual(['A']);
  });
});

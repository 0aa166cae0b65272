import { afterEach, describe, expect, it } from 'vitest';
import { defineWorkflow } from './types.js';
import { engineHarness, until, type EngineHarness } from './test-helpers.js';

/**
 * PostgreSQL LISTEN/NOTIFY between processes' workers (two engines on one
 * database stand for two processes: each has its own connections). The
 * worker polls only once an hour here and the clock never moves, so what
 * reaches it can only have come by notification.
 */
describe('engine wake-ups across processes on postgres', () => {
  let h: EngineHarness;
  afterEach(async () => h?.close());

  const HOUR = 3_600_000;
  const quietWorker = () => h.another({ workerId: 'B', pollMs: HOUR, leaseMs: 3 * HOUR, heartbeatMs: HOUR });

  it('a run started, signalled or retried in another process is taken up at once', async () => {
    h = await engineHarness('postgres');
    let fail = true;
    const wf = defineWorkflow({
      name: 'notify.wf',
      version: 1,
      async run(ctx, input: { wait: boolean }) {
        if (input.wait) await ctx.waitFor('go');
        await ctx.step('maybe-fail', async () => {
          if (fail) throw Object.assign(new Error('not yet'), { retryable: false });
        }, { retry: { maxAttempts: 1 } });
        return 'done';
      },
    });
    const A = h.another({ workerId: 'A' });
    const B = quietWorker();
    A.register(wf);
    B.register(wf);
    B.startWorker();
    await until(() => B.activeRuns === 0, 'B to start');

    fail = false;
    const r1 = await A.start('notify.wf', { wait: false });
    expect((await B.result(r1.id, { timeoutMs: 15_000 })).status).toBe('succeeded');

    const r2 = await A.start('notify.wf', { wait: true });
    await h.waitEvent({ subject: r2.id, types: ['run.waiting'] });
    await A.signal(r2.id, 'go', {});
    expect((await B.result(r2.id, { timeoutMs: 15_000 })).status).toBe('succeeded');

    fail = true;
    const r3 = await A.start('notify.wf', { wait: false });
    expect((await B.result(r3.id, { timeoutMs: 15_000 })).status).toBe('failed');
    fail = false;
    await A.retry(r3.id);
    await h.waitEvent({ subject: r3.id, types: ['run.succeeded'] });
    const started = await A.events({ subject: r3.id, types: ['run.started'] });
    expect(started.every((e) => e.data.worker === 'B')).toBe(true);
  });

  it('a cancel requested in another process interrupts the running step at once, not at the next heartbeat', async () => {
    h = await engineHarness('postgres');
    let aborted = false;
    const wf = defineWorkflow({
      name: 'notify.long',
      version: 1,
      async run(ctx) {
        await ctx.step('long', (sc) => new Promise((_, reject) => sc.signal.addEventListener('abort', () => {
          aborted = true;
          reject(sc.signal.reason);
        })), { retry: { maxAttempts: 1 } });
      },
    });
    const A = h.another({ workerId: 'A' });
    const B = quietWorker();
    A.register(wf);
    B.register(wf);
    B.startWorker();
    const run = await A.start('notify.long', {});
    await until(() => B.activeRuns === 1, 'B to run the step');
    await A.cancel(run.id, 'from A');
    const done = await A.result(run.id, { timeoutMs: 15_000 });
    expect(done.status).toBe('cancelled');
    expect(aborted).toBe(true);
    expect(done.error?.message).toContain('from A');
  });
});

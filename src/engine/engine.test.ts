import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { DIALECTS } from '../../test/support/dialects.js';
import { InfraflowError, TransientError, ValidationError } from '../core/errors.js';
import { defineWorkflow } from './index.js';
import { engineHarness, until, type EngineHarness } from './test-helpers.js';

describe.each(DIALECTS)('engine basics on %s', (dialect) => {
  let h: EngineHarness;
  afterEach(async () => h?.close());

  it('starts a run, journals its steps and returns the output', async () => {
    h = await engineHarness(dialect);
    const calls: string[] = [];
    h.engine.register(
      defineWorkflow({
        name: 'hello',
        version: 1,
        input: z.object({ who: z.string() }),
        async run(ctx, input) {
          const a = await ctx.step('greet', async (sc) => {
            calls.push(sc.idempotencyKey);
            sc.log('greeting', { who: input.who });
            return `hello ${input.who}`;
          });
          const b = await ctx.step('shout', async () => a.toUpperCase());
          return { a, b };
        },
      }),
    );
    h.engine.startWorker();
    const run = await h.engine.start('hello', { who: 'world' });
    expect(run.status).toBe('running'); // this process's worker had a free slot: leased and started at once
    const done = await h.engine.result(run.id);
    expect(done.status).toBe('succeeded');
    expect(done.output).toEqual({ a: 'hello world', b: 'HELLO WORLD' });
    const tl = await h.engine.timeline(run.id);
    expect(tl.map((s) => [s.name, s.kind, s.status, s.attempts])).toEqual([
      ['greet', 'step', 'succeeded', 1],
      ['shout', 'step', 'succeeded', 1],
    ]);
    expect(calls).toEqual([`${run.id}:0`]);
    expect(tl[0]!.logs).toEqual([{ at: h.clock.now(), message: 'greeting', data: { who: 'world' } }]);
    expect(tl[0]!.startedAt).toBe(h.clock.now());
    expect(tl[0]!.finishedAt).toBe(h.clock.now());
    const types = (await h.engine.events({ subject: run.id })).map((e) => e.type);
    expect(types).toEqual(['run.created', 'run.started', 'step.succeeded', 'step.succeeded', 'run.succeeded']);
  });

  it('starting with the same id twice returns the same run', async () => {
    h = await engineHarness(dialect);
    h.engine.register(defineWorkflow({ name: 'noop', version: 1, run: async () => 1 }));
    const a = await h.engine.start('noop', {}, { id: 'order-42' });
    const b = await h.engine.start('noop', {}, { id: 'order-42' });
    expect(b.id).toBe(a.id);
    expect(b.createdAt).toBe(a.createdAt);
    expect(await h.engine.list({ workflow: 'noop' })).toHaveLength(1);
    const [x, y] = await Promise.all([h.engine.start('noop', {}, { id: 'same' }), h.engine.start('noop', {}, { id: 'same' })]);
    expect(x.id).toBe(y.id);
    expect(await h.engine.list({ workflow: 'noop' })).toHaveLength(2);
  });

  it('refuses unknown workflows and invalid input with typed errors', async () => {
    h = await engineHarness(dialect);
    h.engine.register(defineWorkflow({ name: 'typed', version: 1, input: z.object({ size: z.number().int() }), run: async () => 1 }));
    await expect(h.engine.start('nope', {})).rejects.toMatchObject({ code: 'engine.workflow_not_found' });
    const err = await h.engine.start('typed', { size: 'big' }).catch((e) => e);
    expect(err).toBeInstanceOf(ValidationError);
    expect(err.code).toBe('engine.invalid_input');
    expect(err.message).toContain('size');
    await expect(h.engine.get('run_missing')).rejects.toMatchObject({ code: 'engine.run_not_found' });
  });

  it('retries with backoff, gives up after maxAttempts and never retries non-retryable errors', async () => {
    h = await engineHarness(dialect);
    let flaky = 0;
    let fatal = 0;
    h.engine.register(
      defineWorkflow({
        name: 'flaky',
        version: 1,
        async run(ctx) {
          await ctx.step(
            'flaky',
            async () => {
              if (++flaky < 3) throw new TransientError('sim.busy', 'busy');
              return 'ok';
            },
            { retry: { maxAttempts: 5, initialIntervalMs: 100, jitter: 0 } },
          );
          await ctx.step(
            'fatal',
            async () => {
              fatal++;
              throw new InfraflowError('sim.quota', 'quota exceeded', 409, { retryable: false });
            },
            { retry: { maxAttempts: 5, initialIntervalMs: 100 } },
          );
        },
      }),
    );
    h.engine.startWorker();
    const run = await h.engine.start('flaky', {});
    // Backoff waits are on the manual clock: advance until the run fails.
    await until(async () => {
      h.clock.advance(100);
      return (await h.engine.get(run.id)).status === 'failed';
    }, 'run to fail');
    const done = await h.engine.result(run.id);
    expect(done.error?.code).toBe('sim.quota');
    expect(flaky).toBe(3);
    expect(fatal).toBe(1);
    const tl = await h.engine.timeline(run.id);
    expect(tl.map((s) => [s.name, s.status, s.attempts])).toEqual([
      ['flaky', 'succeeded', 3],
      ['fatal', 'failed', 1],
    ]);
    const retrying = await h.engine.events({ subject: run.id, types: ['step.retrying'] });
    expect(retrying).toHaveLength(2);
    expect(retrying[1]!.data.retryAt as number).toBeGreaterThan(retrying[0]!.data.retryAt as number);
  });

  it('ctx.now() is journaled: replay sees the same time', async () => {
    h = await engineHarness(dialect);
    const seen: number[] = [];
    h.engine.register(
      defineWorkflow({
        name: 'clocked',
        version: 1,
        async run(ctx) {
          const t = await ctx.now();
          seen.push(t);
          await ctx.sleep('later', 10_000);
          return t;
        },
      }),
    );
    h.engine.startWorker();
    const run = await h.engine.start('clocked', {});
    const t0 = h.clock.now();
    await h.waitEvent({ subject: run.id, types: ['run.waiting'] });
    h.clock.advance(10_000);
    const done = await h.engine.result(run.id);
    expect(done.output).toBe(t0);
    expect(seen).toEqual([t0, t0]);
    const tl = await h.engine.timeline(run.id);
    expect(tl[0]).toMatchObject({ kind: 'now', output: t0 });
  });

  it('result() rejects with engine.result_timeout when the run does not finish in time', async () => {
    h = await engineHarness(dialect);
    h.engine.register(defineWorkflow({ name: 'forever', version: 1, run: async (ctx) => ctx.waitFor('never') }));
    h.engine.startWorker();
    const run = await h.engine.start('forever', {});
    await h.waitEvent({ subject: run.id, types: ['run.waiting'] });
    const pending = h.engine.result(run.id, { timeoutMs: 1_000 });
    h.clock.advance(1_000);
    await expect(pending).rejects.toMatchObject({ code: 'engine.result_timeout' });
  });

  it('fails a step whose result is not JSON-serializable, without retrying it', async () => {
    h = await engineHarness(dialect);
    let calls = 0;
    h.engine.register(
      defineWorkflow({
        name: 'bigint',
        version: 1,
        run: async (ctx) =>
          ctx.step('count', async () => {
            calls++;
            return { n: 10n };
          }),
      }),
    );
    h.engine.startWorker();
    const run = await h.engine.start('bigint', {});
    const done = await h.engine.result(run.id);
    expect(done.error?.code).toBe('engine.not_serializable');
    expect(done.error?.message).toContain('count');
    expect(calls).toBe(1);
  });
});

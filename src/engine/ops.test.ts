import { afterEach, describe, expect, it } from 'vitest';
import { DIALECTS } from '../../test/support/dialects.js';
import { defineWorkflow, type EngineEvent, type WorkflowDefinition } from './index.js';
import { engineHarness, until, type EngineHarness } from './test-helpers.js';

/** Max number of runs in progress at once, replayed from the event stream. */
function maxInProgress(events: EngineEvent[], runIds: Set<string>): number {
  let cur = 0;
  let max = 0;
  for (const e of events) {
    if (!runIds.has(e.subject)) continue;
    if (e.type === 'run.started') max = Math.max(max, ++cur);
    if (e.type === 'run.succeeded' || e.type === 'run.failed' || e.type === 'run.cancelled') cur--;
  }
  return max;
}

const gated: WorkflowDefinition = defineWorkflow({
  name: 'gated',
  version: 1,
  queue: 'provider',
  concurrencyKey: (input: { key?: string }) => input.key,
  async run(ctx) {
    await ctx.waitFor('done');
    return ctx.runId;
  },
});

describe.each(DIALECTS)('engine operations on %s', (dialect) => {
  let h: EngineHarness;
  afterEach(async () => h?.close());

  it('queues limit runs in progress globally and per concurrency key', async () => {
    h = await engineHarness(dialect, { queues: { provider: { concurrency: 2, perKey: 1 } } });
    h.engine.register(gated);
    h.engine.startWorker();
    const runs = [];
    for (const key of ['stack-1', 'stack-1', 'stack-2', undefined, undefined]) runs.push(await h.engine.start('gated', key ? { key } : {}));
    const ids = new Set(runs.map((r) => r.id));
    // Finish runs as they start; the queue never has more than 2 in progress, never 2 of stack-1.
    const finished = new Set<string>();
    await until(async () => {
      for (const r of await h.engine.list({ workflow: 'gated', status: 'waiting' })) {
        if (!finished.has(r.id)) {
          finished.add(r.id);
          await h.engine.signal(r.id, 'done');
        }
      }
      return (await h.engine.list({ workflow: 'gated', status: 'succeeded' })).length === 5;
    }, 'all gated runs to finish');
    const evs = await h.engine.events({ typePrefix: 'run.' });
    expect(maxInProgress(evs, ids)).toBeLessThanOrEqual(2);
    const stack1 = new Set([runs[0]!.id, runs[1]!.id]);
    expect(maxInProgress(evs, stack1)).toBe(1);
  });

  it('a long line of runs for one busy key does not starve other keys', async () => {
    h = await engineHarness(dialect, { concurrency: 4, queues: { provider: { concurrency: 100, perKey: 1 } } });
    h.engine.register(gated);
    const hot = [];
    for (let i = 0; i < 40; i++) hot.push(await h.engine.start('gated', { key: 'hot' }));
    const cold = await h.engine.start('gated', { key: 'cold' });
    h.engine.startWorker();
    await h.waitEvent({ subject: cold.id, types: ['run.waiting'] });
    await h.waitEvent({ subject: hot[0]!.id, types: ['run.waiting'] });
    const waiting = await h.engine.list({ workflow: 'gated', status: 'waiting' });
    expect(waiting.map((r) => r.concurrencyKey).sort()).toEqual(['cold', 'hot']);
  });

  it('several workers share the work; each run executes once', async () => {
    h = await engineHarness(dialect);
    const A = h.another({ workerId: 'A', concurrency: 2 });
    const B = h.another({ workerId: 'B', concurrency: 2 });
    const bodies = new Map<string, number>();
    let warm = 0;
    const wf = defineWorkflow({
      name: 'shared',
      version: 1,
      async run(ctx) {
        for (let i = 0; i < 3; i++) {
          await ctx.step(`s${i}`, async (sc) => {
            bodies.set(sc.idempotencyKey, (bodies.get(sc.idempotencyKey) ?? 0) + 1);
            // The first runs hold until both workers are busy, so both must take part.
            if (i === 0 && warm < 4) {
              warm++;
              await until(() => A.activeRuns === 2 && B.activeRuns === 2, 'both workers busy');
            }
          });
        }
        return 1;
      },
    });
    A.register(wf);
    B.register(wf);
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) ids.push((await A.start('shared', {})).id);
    A.startWorker();
    B.startWorker();
    for (const id of ids) expect((await A.result(id)).status).toBe('succeeded');
    expect(bodies.size).toBe(60);
    expect([...bodies.values()].every((n) => n === 1)).toBe(true);
    const started = await A.events({ types: ['run.started'] });
    const workers = new Set(started.map((e) => e.data.worker));
    expect(workers).toEqual(new Set(['A', 'B']));
  });

  it('lists and filters runs, pages with a cursor, and reports progress', async () => {
    h = await engineHarness(dialect);
    h.engine.register(
      defineWorkflow({
        name: 'provision',
        version: 1,
        async run(ctx) {
          ctx.progress({ stage: 'allocating', percent: 10 });
          await ctx.waitFor('approved');
          return 1;
        },
      }),
    );
    h.engine.register(defineWorkflow({ name: 'other', version: 1, run: async () => 2 }));
    const t0 = h.clock.now();
    const a = await h.engine.start('provision', {}, { labels: { env: 'prod', team: 'net' } });
    h.clock.advance(1_000);
    const b = await h.engine.start('provision', {}, { labels: { env: 'dev' } });
    h.clock.advance(1_000);
    const c = await h.engine.start('other', {}, { labels: { env: 'prod' } });
    h.engine.startWorker();
    await h.engine.result(c.id);
    await h.waitEvent({ subject: a.id, types: ['run.waiting'] });
    await h.waitEvent({ subject: b.id, types: ['run.waiting'] });

    expect((await h.engine.list({ workflow: 'provision' })).map((r) => r.id)).toEqual([a.id, b.id]);
    expect((await h.engine.list({ labels: { env: 'prod' } })).map((r) => r.id)).toEqual([a.id, c.id]);
    expect((await h.engine.list({ labels: { env: 'prod', team: 'net' } })).map((r) => r.id)).toEqual([a.id]);
    expect((await h.engine.list({ status: 'succeeded' })).map((r) => r.id)).toEqual([c.id]);
    expect((await h.engine.list({ status: ['waiting', 'succeeded'] })).length).toBe(3);
    expect((await h.engine.list({ createdAfter: t0 + 500, createdBefore: t0 + 1_500 })).map((r) => r.id)).toEqual([b.id]);
    const page1 = await h.engine.list({ limit: 2 });
    const page2 = await h.engine.list({ limit: 2, after: page1.at(-1)!.id });
    expect([...page1, ...page2].map((r) => r.id)).toEqual([a.id, b.id, c.id]);

    const pa = await h.engine.get(a.id);
    expect(pa.progress).toMatchObject({ stage: 'allocating', percent: 10, waitingFor: 'signal approved' });
    expect(typeof pa.progress?.since).toBe('number');
    expect(pa.labels).toEqual({ env: 'prod', team: 'net' });
  });

  it('event stream: typed events with increasing seq, filters, live subscribe, publish and emit once', async () => {
    h = await engineHarness(dialect);
    const live: EngineEvent[] = [];
    h.engine.subscribe({ typePrefix: 'vm.' }, (e) => live.push(e));
    h.engine.register(
      defineWorkflow({
        name: 'emitter',
        version: 1,
        async run(ctx) {
          await ctx.emit('vm.created', { name: 'web-1' }, 'vm/web-1');
          await ctx.sleep('pause', 5_000);
          return 'ok';
        },
      }),
    );
    h.engine.startWorker();
    const run = await h.engine.start('emitter', {});
    await h.waitEvent({ subject: run.id, types: ['run.waiting'] });
    h.clock.advance(5_000);
    await h.engine.result(run.id);
    const ext = await h.engine.publish('vm.deleted', 'vm/web-1', { by: 'api' });
    const all = await h.engine.events();
    const seqs = all.map((e) => e.seq);
    expect(seqs).toEqual([...seqs].sort((x, y) => x - y));
    expect(new Set(seqs).size).toBe(seqs.length);
    const vm = await h.engine.events({ subject: 'vm/web-1' });
    expect(vm.map((e) => e.type)).toEqual(['vm.created', 'vm.deleted']);
    expect(vm[0]!.runId).toBe(run.id);
    expect(live.map((e) => e.type)).toEqual(['vm.created', 'vm.deleted']);
    expect(ext.seq).toBe(all.at(-1)!.seq);
    const after = await h.engine.events({ afterSeq: vm[0]!.seq, typePrefix: 'vm.' });
    expect(after.map((e) => e.type)).toEqual(['vm.deleted']);
    const runTypes = (await h.engine.events({ subject: run.id })).map((e) => e.type);
    expect(runTypes).toEqual(['run.created', 'run.started', 'run.waiting', 'run.succeeded']);
  });

  it('cron schedules fire once per tick across workers, with skip / buffer_one / allow_all overlap', async () => {
    h = await engineHarness(dialect);
    const A = h.another({ workerId: 'A' });
    const B = h.another({ workerId: 'B' });
    for (const e of [A, B]) {
      e.register(defineWorkflow({ name: 'tick', version: 1, run: async () => 'tick' }));
      e.register(gated);
    }
    // Align to a minute boundary so fires are predictable.
    h.clock.set(Math.ceil(h.clock.now() / 60_000) * 60_000 + 1_000);
    await A.upsertSchedule({ id: 'every-minute', cron: '* * * * *', workflow: 'tick', input: {}, labels: { team: 'infra' } });
    await A.upsertSchedule({ id: 'skip', cron: '* * * * *', workflow: 'gated', input: {}, overlap: 'skip' });
    await A.upsertSchedule({ id: 'buffer', cron: '* * * * *', workflow: 'gated', input: {}, overlap: 'buffer_one' });
    await A.upsertSchedule({ id: 'all', cron: '* * * * *', workflow: 'gated', input: {}, overlap: 'allow_all' });
    await expect(A.upsertSchedule({ id: 'bad', cron: 'every day', workflow: 'tick', input: {} })).rejects.toMatchObject({ code: 'engine.invalid_cron' });
    A.startWorker();
    B.startWorker();
    const runsOf = async (label: string) => (await A.list({ labels: { schedule: label } })).length;
    for (let minute = 1; minute <= 3; minute++) {
      h.clock.advance(60_000);
      // (every-minute uses the default overlap policy, skip: wait for its run to finish before the next tick)
      await until(async () => (await A.list({ labels: { schedule: 'every-minute' }, status: 'succeeded' })).length === minute, `fire ${minute}`);
      await until(async () => (await runsOf('all')) === minute, `allow_all fire ${minute}`);
      await until(async () => (await A.list({ labels: { schedule: 'skip' }, status: 'waiting' })).length === 1, 'skip run waiting');
    }
    // a schedule's labels are on its runs, with the schedule's own
    expect((await A.list({ labels: { team: 'infra' } })).map((r) => r.labels)).toEqual(Array.from({ length: 3 }, () => ({ team: 'infra', schedule: 'every-minute' })));
    expect((await A.listSchedules()).find((s) => s.id === 'every-minute')?.labels).toEqual({ team: 'infra' });
    expect((await A.listSchedules()).find((s) => s.id === 'skip')).not.toHaveProperty('labels');
    expect(await runsOf('skip')).toBe(1);
    expect(await runsOf('buffer')).toBe(1);
    // Finishing the buffered schedule's run lets exactly one buffered fire start.
    const [buf] = await A.list({ labels: { schedule: 'buffer' } });
    await until(async () => (await A.get(buf!.id)).status === 'waiting', 'buffer run waiting');
    await A.signal(buf!.id, 'done');
    await until(async () => (await runsOf('buffer')) === 2, 'buffered fire');
    const skipped = await A.events({ types: ['schedule.skipped'] });
    expect(skipped.length).toBeGreaterThanOrEqual(4);
  });

  it('event triggers start a workflow exactly once per matching event', async () => {
    h = await engineHarness(dialect);
    const A = h.another({ workerId: 'A' });
    const B = h.another({ workerId: 'B' });
    const seen: number[] = [];
    for (const e of [A, B]) {
      e.register(
        defineWorkflow({
          name: 'react',
          version: 1,
          async run(ctx, input: { event: EngineEvent }) {
            await ctx.step('note', async () => void seen.push(input.event.seq));
            return input.event.type;
          },
        }),
      );
      e.addTrigger({ id: 'on-server', eventType: 'server.*', workflow: 'react' });
      e.startWorker();
    }
    const e1 = await A.publish('server.created', 'srv-1', {});
    await B.publish('switch.created', 'sw-1', {});
    const e2 = await B.publish('server.deleted', 'srv-1', {});
    await until(async () => (await A.list({ workflow: 'react', status: 'succeeded' })).length === 2, 'two triggered runs');
    const runs = await A.list({ workflow: 'react' });
    expect(runs.map((r) => r.id).sort()).toEqual([`on-server:${e1.seq}`, `on-server:${e2.seq}`].sort());
    expect(seen.sort()).toEqual([e1.seq, e2.seq].sort());
    expect((await A.get(`on-server:${e2.seq}`)).output).toBe('server.deleted');
  });

  it('prunes finished runs and old events', async () => {
    h = await engineHarness(dialect);
    h.engine.register(defineWorkflow({ name: 'short', version: 1, run: async (ctx) => ctx.step('x', async () => 1) }));
    h.engine.register(defineWorkflow({ name: 'long', version: 1, run: async (ctx) => ctx.waitFor('go') }));
    h.engine.startWorker();
    const a = await h.engine.start('short', {}, { labels: { k: 'v' } });
    const b = await h.engine.start('long', {});
    await h.engine.result(a.id);
    await h.waitEvent({ subject: b.id, types: ['run.waiting'] });
    h.clock.advance(1_000);
    const out = await h.engine.prune({ runsFinishedBefore: h.clock.now(), eventsBefore: h.clock.now() });
    expect(out.runs).toBe(1);
    expect(out.events).toBeGreaterThan(0);
    await expect(h.engine.get(a.id)).rejects.toMatchObject({ code: 'engine.run_not_found' });
    expect((await h.engine.get(b.id)).status).toBe('waiting');
    expect(await h.engine.events()).toEqual([]);
    expect(h.engine.metrics().batches).toBeGreaterThan(0);
  });

  it('subscribers get events from other processes too, in seq order without gaps', async () => {
    h = await engineHarness(dialect);
    const A = h.another({ workerId: 'A' });
    const B = h.another({ workerId: 'B' });
    const got: EngineEvent[] = [];
    const unsub = B.subscribe({ typePrefix: 'inv.' }, (e) => got.push(e));
    const published: EngineEvent[] = [];
    await Promise.all(
      Array.from({ length: 30 }, async (_, i) => {
        published.push(await (i % 2 ? A : B).publish('inv.changed', `srv-${i}`, { i }));
      }),
    );
    await until(() => got.length === 30, 'all events delivered to B');
    unsub();
    expect(got.map((e) => e.seq)).toEqual(published.map((e) => e.seq).sort((x, y) => x - y));
  });
});

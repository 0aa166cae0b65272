/**
 * A worker dies in the middle of a run (its process is gone: on SQLite the
 * server is restarted on the same file, on PostgreSQL its database session
 * ended) while its lease still has ten minutes to go. The next worker must
 * take the run over at once — not when the lease expires — and say so: the
 * run names the worker that executes it and the one it was taken over from
 * (API fields `worker`, `takenOverFrom`, `takenOverAt`), every journal row
 * names the worker that executed the step, a `run.taken_over` event is
 * recorded, and the takeover is logged.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { Store } from '../src/store/store.js';
import { migrate } from '../src/store/migrate.js';
import { Engine, engineMigrations } from '../src/engine/index.js';
import { defineWorkflow } from '../src/engine/types.js';
import { silentLogger } from '../src/core/log.js';
import { createPgDatabase, DIALECTS } from './support/dialects.js';

vi.setConfig({ testTimeout: 120_000 });

const LEASE_MS = 600_000; // far longer than the test may take: a takeover that waits for it fails
const cleanups: (() => Promise<void> | void)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** The workflow: s1 of the first worker never returns (the worker dies inside it). */
function workflow(blockS1: Promise<void> | null, entered: () => void) {
  return defineWorkflow<Record<string, never>, string[]>({
    name: 'takeover',
    version: 1,
    async run(ctx) {
      const who: string[] = [];
      for (const s of ['s0', 's1', 's2']) {
        who.push(await ctx.step(s, async () => {
          if (s === 's1' && blockS1) {
            entered();
            await blockS1;
          }
          return s;
        }));
      }
      return who;
    },
  });
}

function captureLogger(): { logger: typeof silentLogger; lines: () => Record<string, unknown>[] } {
  const out: string[] = [];
  const stream = new Writable({ write(chunk, _enc, cb) { out.push(String(chunk)); cb(); } });
  return { logger: pino({ level: 'warn' }, stream), lines: () => out.join('').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) };
}

describe.each(DIALECTS)('a dead worker\'s runs are taken over at once on %s', (dialect) => {
  it('takes the run over without waiting for the lease, and says who ran what', async () => {
    let url: string;
    if (dialect === 'sqlite') {
      const dir = mkdtempSync(join(tmpdir(), 'infraflow-takeover-'));
      cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
      url = `sqlite:${join(dir, 'engine.db')}`;
    } else {
      const db = await createPgDatabase('takeover');
      cleanups.push(db.drop);
      url = db.url;
    }

    // worker A: starts the run and dies inside s1
    const storeA = Store.open({ url });
    await migrate(storeA, engineMigrations);
    let release!: () => void;
    const blocked = new Promise<void>((r) => (release = r));
    cleanups.push(() => release());
    let entered!: () => void;
    const inS1 = new Promise<void>((r) => (entered = r));
    const a = new Engine({ store: storeA, logger: silentLogger, workerId: 'worker-a', leaseMs: LEASE_MS, heartbeatMs: LEASE_MS / 3, pollMs: 50 });
    a.register(workflow(blocked, entered));
    a.startWorker();
    const run = await a.start('takeover', {});
    await inS1;
    const leased = await storeA.db.selectFrom('engine_runs').select(['lease_owner', 'lease_expires_at']).where('id', '=', run.id).executeTakeFirstOrThrow();
    expect(leased.lease_owner).toBe('worker-a');
    // the process is gone: no graceful hand-back, the lease stays in the database
    await a.stop({ graceful: false });
    await storeA.close(); // SQLite: the file is free for the restarted server; PostgreSQL: A's sessions end
    const still = Store.open({ url });
    cleanups.push(() => still.close());
    if (dialect === 'postgres') {
      const row = await still.db.selectFrom('engine_runs').select(['lease_owner', 'lease_expires_at']).where('id', '=', run.id).executeTakeFirstOrThrow();
      expect(row.lease_owner).toBe('worker-a');
      expect(Number(row.lease_expires_at)).toBeGreaterThan(Date.now() + LEASE_MS / 2);
    } else {
      await still.close();
    }

    // worker B (the restarted server, or another process on PostgreSQL)
    const storeB = Store.open({ url });
    cleanups.push(() => storeB.close());
    const log = captureLogger();
    const b = new Engine({ store: storeB, logger: log.logger, workerId: 'worker-b', leaseMs: LEASE_MS, heartbeatMs: LEASE_MS / 3, pollMs: 50 });
    cleanups.push(() => b.stop());
    b.register(workflow(null, () => {}));
    b.startWorker();
    const done = await b.result(run.id, { timeoutMs: 90_000 }); // far below the lease
    expect(done.status).toBe('succeeded');
    expect(done.output).toEqual(['s0', 's1', 's2']);
    expect(done.worker).toBe('worker-b');
    expect(done.takenOverFrom).toBe('worker-a');
    expect(done.takenOverAt).toBeGreaterThanOrEqual(done.startedAt!);

    const steps = await b.timeline(run.id);
    expect(steps.map((s) => [s.name, s.worker])).toEqual([['s0', 'worker-a'], ['s1', 'worker-b'], ['s2', 'worker-b']]);

    const evs = await b.events({ subject: run.id });
    const taken = evs.filter((e) => e.type === 'run.taken_over');
    expect(taken).toHaveLength(1);
    expect(taken[0]!.data).toMatchObject({ from: 'worker-a', worker: 'worker-b' });

    const lines = log.lines();
    expect(lines.some((l) => l.runId === run.id && l.from === 'worker-a' && String(l.msg).includes('taken over'))).toBe(true);
    expect(lines.some((l) => l.deadWorker === 'worker-a')).toBe(true);
  });
});

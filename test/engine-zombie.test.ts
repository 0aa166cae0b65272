/**
 * Zombie test (PostgreSQL): worker A is frozen (SIGSTOP) in the middle of a
 * step body while it holds a run; its lease (1 s) expires, worker B takes the
 * run over and finishes it; then A is thawed (SIGCONT) and completes the
 * step body it was in. Nothing A attempts with its stale lease may be
 * accepted: the run and its journal must be exactly as B left them.
 *
 * Two ways the zombie can wake up:
 *  - heartbeat: A's next heartbeat finds the lease gone and abandons the run;
 *  - fence: A's heartbeat is far away, so A's first act is to journal the
 *    step it finished — the write must be refused by the lease fence.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { Store } from '../src/store/store.js';
import { migrate } from '../src/store/migrate.js';
import { Engine, engineMigrations } from '../src/engine/index.js';
import { silentLogger } from '../src/core/log.js';
import { createPgDatabase } from './support/dialects.js';
import { openPgLedger } from './fixtures/engine-worker-ledger.js';
import { waitUntil, WorkerProcess } from './fixtures/engine-worker-harness.js';
import { LEDGER_WORKFLOW, ledgerWorkflowStub, type WorkerConfig } from './fixtures/engine-worker-shared.js';

const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** Everything the database holds about one run (row, journal, events, signals), to compare before/after. */
async function snapshot(store: Store, runId: string): Promise<string> {
  const run = await store.db.selectFrom('engine_runs').selectAll().where('id', '=', runId).executeTakeFirstOrThrow();
  const steps = await store.db.selectFrom('engine_steps').selectAll().where('run_id', '=', runId).orderBy('seq').execute();
  const events = await store.db.selectFrom('engine_events').selectAll().where('run_id', '=', runId).orderBy('seq').execute();
  const signals = await store.db.selectFrom('engine_signals').selectAll().where('run_id', '=', runId).orderBy('id').execute();
  return JSON.stringify({ run, steps, events, signals });
}

const modes = [
  { mode: 'heartbeat', heartbeatMs: 200 },
  { mode: 'fence', heartbeatMs: 600_000 },
] as const;

describe.each(modes)('engine zombie worker on postgres (A wakes up via its $mode)', ({ mode, heartbeatMs }) => {
  it(`accepts no write from a worker whose lease was taken over while it was frozen (${mode})`, async () => {
    const engineDb = await createPgDatabase('zombie');
    cleanups.push(engineDb.drop);
    const ledgerDb = await createPgDatabase('zledger');
    cleanups.push(ledgerDb.drop);

    const store = Store.open({ url: engineDb.url, poolSize: 2 });
    cleanups.push(() => store.close());
    await migrate(store, engineMigrations);
    const engine = new Engine({ store, logger: silentLogger, workerId: 'observer' });
    engine.register(ledgerWorkflowStub());
    const ledger = await openPgLedger(ledgerDb.url);
    cleanups.push(() => ledger.close());

    const common: Omit<WorkerConfig, 'workerId'> = { url: engineDb.url, ledger: ledgerDb.url, concurrency: 2, leaseMs: 1000, heartbeatMs: 200, pollMs: 50, traceWrites: true };
    const a = new WorkerProcess({ ...common, workerId: 'A', heartbeatMs, slow: { step: 's1', ms: 3000 } });
    cleanups.push(() => a.stop());
    await a.waitForLine('READY');
    const runId = `zombie-${mode}`;
    await engine.start(LEDGER_WORKFLOW, { steps: 3 }, { id: runId });

    // A is inside the body of step s1 (s0 is committed): freeze it.
    const bodyLine = await a.waitForLine((l) => l.startsWith(`BODY ${runId} s1 `), 60_000);
    a.signal('SIGSTOP');
    const frozenAt = performance.timeOrigin + performance.now();
    const leaseAtFreeze = await store.db.selectFrom('engine_runs').select(['lease_owner', 'lease_epoch']).where('id', '=', runId).executeTakeFirstOrThrow();
    expect(leaseAtFreeze.lease_owner).toBe('A');

    // B takes over once A's lease has expired, and finishes the run.
    const b = new WorkerProcess({ ...common, workerId: 'B' });
    cleanups.push(() => b.stop());
    const done = await engine.result(runId, { timeoutMs: 60_000 });
    expect(done.status).toBe('succeeded');
    await b.stop();
    expect(b.exitCode, b.stderr.slice(-2000)).toBe(0);
    const leaseAfterTakeover = await store.db.selectFrom('engine_runs').select(['lease_epoch']).where('id', '=', runId).executeTakeFirstOrThrow();
    expect(leaseAfterTakeover.lease_epoch).toBeGreaterThan(leaseAtFreeze.lease_epoch);
    const before = await snapshot(store, runId);

    // Thaw A: it finishes the body of s1, then tries to journal it (or its heartbeat finds the lease gone).
    a.signal('SIGCONT');
    const aS1 = async () => (await ledger.executions()).find((e) => e.run_id === runId && e.step === 's1' && e.worker === 'A');
    await waitUntil('A finishes its step body', async () => (await aS1())?.ended_at != null, 60_000);
    if (mode === 'fence') await a.waitForLine((l) => l.startsWith(`WRITE ${runId} `) && l.includes(' s1:'), 60_000);
    // A graceful stop waits for A's in-flight work to end.
    await a.stop();
    expect(a.exitCode, a.stderr.slice(-2000)).toBe(0);

    // Nothing changed: no write of A's stale lease was accepted.
    const after = await snapshot(store, runId);
    expect(after).toBe(before);
    const aWritesAfterFreeze = a.lines.slice(a.lines.indexOf(bodyLine) + 1).filter((l) => l.startsWith(`WRITE ${runId} `));
    expect(aWritesAfterFreeze.filter((l) => l.endsWith(' ok'))).toEqual([]);
    if (mode === 'fence') {
      expect(aWritesAfterFreeze.length).toBeGreaterThan(0);
      for (const l of aWritesAfterFreeze) expect(l).toMatch(new RegExp(`^WRITE ${runId} ${leaseAtFreeze.lease_epoch} .* rejected LeaseLostError$`));
    }

    const timeline = await engine.timeline(runId);
    const outputs = timeline.filter((s) => s.kind === 'step').map((s) => ({ name: s.name, worker: (s.output as { worker: string }).worker }));
    expect(outputs).toEqual([
      { name: 's0', worker: 'A' },
      { name: 's1', worker: 'B' },
      { name: 's2', worker: 'B' },
    ]);
    // A started no step body after it was frozen (it never went on to s2).
    const execs = await ledger.executions();
    expect(execs.filter((e) => e.worker === 'A' && e.started_at > frozenAt)).toEqual([]);
    // The committed s1 is B's execution, not the zombie's.
    const s1 = timeline.find((s) => s.name === 's1')!;
    expect((s1.output as { exec: number }).exec).not.toBe((await aS1())!.exec_id);
  }, 180_000);
});

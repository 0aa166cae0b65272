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
import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { Store } from '../src/store/store.js';
import { migrate } from '../src/store/migrate.js';
import { Engine, engineMigrations } from '../src/engine/index.js';
import { silentLogger } from '../src/core/log.js';
import { createPgDatabase } from './support/dialects.js';
import { openPgLedger } from './fixtures/engine-worker-ledger.js';
import { WorkerProcess } from './fixtures/engine-worker-harness.js';
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
    const done = await engine.result(runId, { timeoutMs: 60_000 }).catch(async (e: unknown) => {
      // Say what blocks the takeover: the sessions of the engine's database and their locks.
      const activity = await sql<Record<string, unknown>>`select pid, application_name, state, wait_event_type, wait_event, left(query, 160) as query,
          (select string_agg(l.locktype || ':' || l.mode || ':' || l.granted, ',') from pg_locks l where l.pid = a.pid) as locks
        from pg_stat_activity a where datname = current_database() and pid <> pg_backend_pid()`.execute(store.db);
      throw new Error(`B did not take the run over: ${String(e)}\nsessions:\n${activity.rows.map((r) => JSON.stringify(r)).join('\n')}\nB stderr:\n${b.stderr.slice(-2000)}`);
    });
    expect(done.status).toBe('succeeded');
    await b.stop();
    expect(b.exitCode, b.stderr.slice(-2000)).toBe(0);
    const leaseAfterTakeover = await store.db.selectFrom('engine_runs').select(['lease_epoch']).where('id', '=', runId).executeTakeFirstOrThrow();
    expect(leaseAfterTakeover.lease_epoch).toBeGreaterThan(leaseAtFreeze.lease_epoch);
    const before = await snapshot(store, runId);

    // Thaw A: it finishes the body of s1, then tries to journal it (or its heartbeat finds the lease gone).
    a.signal('SIGCONT');
    const aS1 = async () => (await ledger.executions()).find((e) => e.run_id === runId && e.step === 's1' && e.worker === 'A');
    // A says when the body has ended (its ledger row is written by then): wait for that line, not by polling the ledger
    const aS1Exec = Number(bodyLine.split(' ')[3]);
    await a.waitForLine(`BODYEND ${runId} s1 ${aS1Exec}`, 120_000);
    expect((await aS1())?.ended_at).not.toBeNull();
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

describe('engine worker frozen inside a transaction on postgres', () => {
  it('does not stop the other workers: the frozen transaction is ended by the server', async () => {
    const engineDb = await createPgDatabase('zfrozen');
    cleanups.push(engineDb.drop);
    const ledgerDb = await createPgDatabase('zfledger');
    cleanups.push(ledgerDb.drop);
    const store = Store.open({ url: engineDb.url, poolSize: 2 });
    cleanups.push(() => store.close());
    await migrate(store, engineMigrations);
    const engine = new Engine({ store, logger: silentLogger, workerId: 'observer' });
    engine.register(ledgerWorkflowStub());

    // A has nothing to do: it only looks for work, opening a claim transaction every few ms.
    const common: Omit<WorkerConfig, 'workerId'> = { url: engineDb.url, ledger: ledgerDb.url, concurrency: 2, leaseMs: 1000, heartbeatMs: 200, pollMs: 2 };
    const a = new WorkerProcess({ ...common, workerId: 'A' });
    cleanups.push(() => a.stop());
    await a.waitForLine('READY');

    // Freeze A while one of its sessions is inside a transaction. This test's
    // own sessions never leave a transaction open, and B is not started yet:
    // an "idle in transaction" session of this database is A's.
    const watcher = new pg.Client({ connectionString: engineDb.url });
    await watcher.connect();
    cleanups.push(() => watcher.end());
    const inTx = async () =>
      (await watcher.query<{ pid: number; xact_start: Date }>(
        "select pid, xact_start from pg_stat_activity where datname = current_database() and state = 'idle in transaction' and pid <> pg_backend_pid()",
      )).rows;
    let frozen: { pid: number; xact_start: Date } | undefined;
    // A opens a claim transaction every few ms; look for one with a growing pause between looks
    // (never a busy loop against the database), a few hundred looks at most
    for (let attempt = 0; attempt < 400 && !frozen; attempt++) {
      const rows = await inTx();
      if (!rows.length) {
        await new Promise((r) => setTimeout(r, Math.min(1 + attempt, 25)));
        continue;
      }
      a.signal('SIGSTOP');
      await new Promise((r) => setTimeout(r, 100));
      const still = (await inTx()).find((r) => r.pid === rows[0]!.pid && r.xact_start.getTime() === rows[0]!.xact_start.getTime());
      if (still) frozen = still;
      else a.signal('SIGCONT');
    }
    expect(frozen, 'could not catch A inside a transaction').toBeDefined();

    // B must still be able to claim and finish a run.
    const b = new WorkerProcess({ ...common, workerId: 'B', pollMs: 50 });
    cleanups.push(() => b.stop());
    await b.waitForLine('READY');
    const runId = 'after-freeze';
    await engine.start(LEDGER_WORKFLOW, { steps: 2 }, { id: runId });
    const done = await engine.result(runId, { timeoutMs: 60_000 }).catch(async (e: unknown) => {
      const activity = await watcher.query(`select pid, state, wait_event_type, wait_event, left(query, 120) as query from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()`);
      throw new Error(`B could not run anything while A was frozen in a transaction (pid ${frozen!.pid}): ${String(e)}\n${activity.rows.map((r) => JSON.stringify(r)).join('\n')}`);
    });
    expect(done.status).toBe('succeeded');
    expect((await engine.timeline(runId)).map((s) => (s.output as { worker: string }).worker)).toEqual(['B', 'B']);
    await b.stop();
    a.signal('SIGCONT');
    await a.stop();
  }, 180_000);
});

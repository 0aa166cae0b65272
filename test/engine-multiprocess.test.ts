/**
 * Multi-process test (PostgreSQL): three worker processes drain 2,000 runs of
 * two steps. Every run must be executed exactly once, to success, and never
 * by two workers at once: every step body and every execution of workflow
 * code is recorded as (run, worker, start, end) in a ledger database the
 * engine does not know, and no two intervals of one run from different
 * workers may overlap.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { Store } from '../src/store/store.js';
import { migrate } from '../src/store/migrate.js';
import { Engine, engineMigrations } from '../src/engine/index.js';
import { silentLogger } from '../src/core/log.js';
import { createPgDatabase } from './support/dialects.js';
import { openPgLedger } from './fixtures/engine-worker-ledger.js';
import { verifyExactlyOnce, WorkerProcess, type RunView } from './fixtures/engine-worker-harness.js';
import { LEDGER_WORKFLOW, ledgerWorkflowStub, type WorkerConfig } from './fixtures/engine-worker-shared.js';

const RUNS = 2000;
const STEPS = 2;
const WORKERS = ['w1', 'w2', 'w3'];

const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

describe('engine with several worker processes on postgres', () => {
  it(`${WORKERS.length} workers drain ${RUNS} runs, each exactly once and never in two workers at once`, async () => {
    const engineDb = await createPgDatabase('multi');
    cleanups.push(engineDb.drop);
    const ledgerDb = await createPgDatabase('mledger');
    cleanups.push(ledgerDb.drop);
    const store = Store.open({ url: engineDb.url, poolSize: 10 });
    cleanups.push(() => store.close());
    await migrate(store, engineMigrations);
    const engine = new Engine({ store, logger: silentLogger, workerId: 'client' });
    engine.register(ledgerWorkflowStub());
    const ledger = await openPgLedger(ledgerDb.url);
    cleanups.push(() => ledger.close());

    const common: Omit<WorkerConfig, 'workerId'> = { url: engineDb.url, ledger: ledgerDb.url, concurrency: 16, leaseMs: 10_000, heartbeatMs: 2000, pollMs: 50, expectRuns: RUNS };
    const workers = WORKERS.map((id) => new WorkerProcess({ ...common, workerId: id }));
    cleanups.push(async () => { await Promise.all(workers.map((w) => w.stop())); });
    await Promise.all(workers.map((w) => w.waitForLine('READY')));

    // Start the runs while the workers are polling.
    const ids = Array.from({ length: RUNS }, (_, i) => `multi-${i}`);
    for (let i = 0; i < ids.length; i += 50) {
      await Promise.all(ids.slice(i, i + 50).map((id) => engine.start(LEDGER_WORKFLOW, { steps: STEPS }, { id })));
    }
    await Promise.all(workers.map((w) => w.waitForLine('DONE', 300_000)));
    await Promise.all(workers.map((w) => w.stop()));
    for (const w of workers) expect(w.exitCode, `${w.cfg.workerId}: ${w.stderr.slice(-2000)}`).toBe(0);

    const runs: RunView[] = [];
    const rows = await store.db.selectFrom('engine_runs').select(['id', 'status']).where('workflow', '=', LEDGER_WORKFLOW).execute();
    expect(rows.length).toBe(RUNS);
    const steps = await store.db.selectFrom('engine_steps').select(['run_id', 'name', 'kind', 'status', 'output']).execute();
    const stepsByRun = new Map<string, RunView['steps']>();
    for (const s of steps) {
      if (!stepsByRun.has(s.run_id)) stepsByRun.set(s.run_id, []);
      stepsByRun.get(s.run_id)!.push({ name: s.name, kind: s.kind, status: s.status, output: s.output === null ? undefined : JSON.parse(s.output) });
    }
    for (const r of rows) runs.push({ id: r.id, status: r.status, steps: stepsByRun.get(r.id) ?? [] });

    const executions = await ledger.executions();
    const effects = await ledger.effects();
    const intervals = await ledger.intervals();
    const violations = verifyExactlyOnce(runs, { executions, effects }, STEPS, { singleWriter: false });
    expect(violations.slice(0, 20), `${violations.length} violations`).toEqual([]);

    // No crash here: every step body ran exactly once, every side effect was applied once.
    expect(executions.length).toBe(RUNS * STEPS);
    expect(effects.every((f) => f.applications === 1)).toBe(true);

    // No run ran in two workers at once: per run, intervals (step bodies and
    // workflow-code executions) of different workers never overlap.
    type Iv = { worker: string; start: number; end: number; what: string };
    const byRun = new Map<string, Iv[]>();
    const add = (run: string, iv: Iv) => {
      if (!byRun.has(run)) byRun.set(run, []);
      byRun.get(run)!.push(iv);
    };
    for (const e of executions) add(e.run_id, { worker: e.worker, start: e.started_at, end: e.ended_at ?? Number.POSITIVE_INFINITY, what: `step ${e.step}` });
    for (const i of intervals) add(i.run_id, { worker: i.worker, start: i.started_at, end: i.ended_at, what: i.kind });
    const overlaps: string[] = [];
    for (const [run, ivs] of byRun) {
      for (let x = 0; x < ivs.length; x++) {
        for (let y = x + 1; y < ivs.length; y++) {
          const p = ivs[x]!;
          const q = ivs[y]!;
          if (p.worker !== q.worker && p.start < q.end && q.start < p.end) overlaps.push(`${run}: ${p.what} in ${p.worker} overlaps ${q.what} in ${q.worker}`);
        }
      }
    }
    expect(overlaps.slice(0, 20)).toEqual([]);
    // Workflow code finished once per run.
    const codeRuns = new Map<string, number>();
    for (const i of intervals) if (i.kind === 'code') codeRuns.set(i.run_id, (codeRuns.get(i.run_id) ?? 0) + 1);
    expect(codeRuns.size).toBe(RUNS);
    // The work was shared: every worker process ran some runs.
    const perWorker = new Map<string, number>();
    for (const i of intervals) if (i.kind === 'code') perWorker.set(i.worker, (perWorker.get(i.worker) ?? 0) + 1);
    console.log(`multi-process: runs per worker ${JSON.stringify(Object.fromEntries(perWorker))}`);
    for (const w of WORKERS) expect(perWorker.get(w) ?? 0).toBeGreaterThan(0);
  }, 600_000);
});

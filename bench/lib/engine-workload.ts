import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Store } from '../../src/store/store.js';
import { migrate } from '../../src/store/migrate.js';
import { silentLogger } from '../../src/core/log.js';
import { Engine, engineMigrations } from '../../src/engine/index.js';
import { defineWorkflow } from '../../src/engine/types.js';
import { nowMs } from './stats.js';
import { pool, StepRecorder, type WorkloadResult, type WorkloadSpec } from './workload.js';

/**
 * The engine: runs of `steps` no-op steps, `concurrency` runs in flight
 * (clients that start a run and wait for its result), executed by one worker
 * whose concurrency is `concurrency`. The database is migrated by the caller for PostgreSQL
 * (so that the transaction count covers the workload only), here for SQLite.
 */
export async function runEngine(dialect: 'sqlite' | 'postgres', url: string, spec: WorkloadSpec, warmupRuns: number): Promise<WorkloadResult> {
  let dir: string | undefined;
  if (dialect === 'sqlite' && url === '') {
    dir = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), 'infraflow-bench-engine-'));
    url = `sqlite:${join(dir, 'engine.db')}`;
  }
  const store = Store.open({ url, poolSize: 10, synchronous: 'FULL' });
  if (dialect === 'sqlite') await migrate(store, engineMigrations);
  const rec = new StepRecorder();
  const engine = new Engine({ store, logger: silentLogger, workerId: 'bench', concurrency: spec.concurrency });
  engine.register(
    defineWorkflow<{ steps: number }, number>({
      name: 'bench-noop',
      version: 1,
      async run(ctx, input) {
        for (let s = 0; s < input.steps; s++) {
          await ctx.step(`s${s}`, async () => { rec.bodyStart(ctx.runId); });
        }
        rec.runDone(ctx.runId);
        return input.steps;
      },
    }),
  );

  try {
    engine.startWorker();
    // warm-up
    rec.enabled = false;
    await runBatch(engine, warmupRuns, spec.concurrency, 'w', spec.steps);
    rec.enabled = true;
    const warmSteps = rec.steps;
    const start = nowMs();
    await runBatch(engine, spec.runs, spec.concurrency, 'r', spec.steps);
    const elapsedMs = nowMs() - start;
    const steps = rec.steps - warmSteps;
    return { system: `engine-${dialect}`, runs: spec.runs, steps, elapsedMs, stepsPerS: (steps * 1000) / elapsedMs, latencies: rec.latencies, totalSteps: rec.steps };
  } finally {
    await engine.stop();
    await store.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * `concurrency` clients, each starting a run and waiting for its result, then
 * the next (like the DBOS and pg-boss workloads): `concurrency` runs in flight.
 */
async function runBatch(engine: Engine, runs: number, concurrency: number, prefix: string, steps: number): Promise<void> {
  await pool(runs, concurrency, async (i) => {
    const { id } = await engine.start('bench-noop', { steps }, { id: `${prefix}-${i}` });
    const r = await engine.result(id, { timeoutMs: 300_000 });
    if (r.status !== 'succeeded') throw new Error(`bench run ${id} ended ${r.status}: ${JSON.stringify(r.error)}`);
  });
}

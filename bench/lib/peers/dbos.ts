import { DBOS } from '@dbos-inc/dbos-sdk';
import { nowMs } from '../stats.js';
import { StepRecorder, pool, type WorkloadResult, type WorkloadSpec } from '../workload.js';

/**
 * DBOS Transact: a workflow of `steps` no-op `DBOS.runStep` calls, invoked
 * directly (DBOS's fastest path: the workflow runs in the calling process,
 * checkpointing each step in its system database), `concurrency` at a time.
 */
export async function runDbos(url: string, spec: WorkloadSpec, warmupRuns: number): Promise<WorkloadResult> {
  const rec = new StepRecorder();
  const wf = DBOS.registerWorkflow(
    async (runKey: string, steps: number) => {
      for (let s = 0; s < steps; s++) {
        await DBOS.runStep(async () => { rec.bodyStart(runKey); }, { name: `s${s}` });
      }
      rec.runDone(runKey);
      return steps;
    },
    { name: 'benchNoop' },
  );
  DBOS.setConfig({ name: 'infraflow-bench', systemDatabaseUrl: url, systemDatabasePoolSize: 10, logLevel: 'error' });
  await DBOS.launch();
  try {
    rec.enabled = false;
    await pool(warmupRuns, spec.concurrency, async (i) => { await wf(`w${i}`, spec.steps); });
    rec.enabled = true;
    const warmSteps = rec.steps;
    const start = nowMs();
    await pool(spec.runs, spec.concurrency, async (i) => { await wf(`r${i}`, spec.steps); });
    const elapsedMs = nowMs() - start;
    const steps = rec.steps - warmSteps;
    return { system: 'dbos', runs: spec.runs, steps, elapsedMs, stepsPerS: (steps * 1000) / elapsedMs, latencies: rec.latencies, totalSteps: rec.steps };
  } finally {
    await DBOS.shutdown();
  }
}

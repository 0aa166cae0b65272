import PgBoss from 'pg-boss';
import { nowMs } from '../stats.js';
import { StepRecorder, type WorkloadResult, type WorkloadSpec } from '../workload.js';

/**
 * pg-boss (v10): a "run" is a chain of `steps` jobs; each job's handler sends
 * the next job of its chain. `concurrency` chains are in flight at once (a
 * chain that ends starts the next run). pg-boss is tuned for throughput as
 * far as its API allows: one worker fetching up to `concurrency` jobs per
 * poll, handlers of a batch run in parallel, and the worker is woken
 * (`notifyWorker`) as soon as new jobs are sent instead of waiting for its
 * polling interval (minimum 0.5 s).
 */
export async function runPgBoss(url: string, spec: WorkloadSpec, warmupRuns: number): Promise<WorkloadResult> {
  const boss = new PgBoss({ connectionString: url, max: 10, supervise: false, schedule: false, migrate: true });
  boss.on('error', () => {});
  await boss.start();
  const queue = 'bench_noop';
  await boss.createQueue(queue);
  const rec = new StepRecorder();
  let workerId = '';

  async function phase(runs: number, prefix: string): Promise<number> {
    let started = 0;
    let done = 0;
    let finish!: () => void;
    const finished = new Promise<void>((r) => (finish = r));
    const startRun = async () => {
      const i = started++;
      await boss.send(queue, { run: `${prefix}${i}`, step: 0 });
    };
    const onJob = async (data: { run: string; step: number }) => {
      rec.bodyStart(data.run);
      if (data.step + 1 < spec.steps) {
        await boss.send(queue, { run: data.run, step: data.step + 1 });
      } else {
        rec.runDone(data.run);
        done++;
        if (started < runs) await startRun();
        if (done === runs) finish();
      }
    };
    current = onJob;
    const t0 = nowMs();
    await Promise.all(Array.from({ length: Math.min(spec.concurrency, runs) }, () => startRun()));
    boss.notifyWorker(workerId);
    await finished;
    return nowMs() - t0;
  }

  let current: (d: { run: string; step: number }) => Promise<void> = async () => {};
  workerId = await boss.work<{ run: string; step: number }>(queue, { batchSize: Math.max(1, spec.concurrency), pollingIntervalSeconds: 0.5 }, async (jobs) => {
    await Promise.all(jobs.map((j) => current(j.data)));
    boss.notifyWorker(workerId);
  });
  try {
    rec.enabled = false;
    if (warmupRuns > 0) await phase(warmupRuns, 'w');
    rec.enabled = true;
    const warmSteps = rec.steps;
    const elapsedMs = await phase(spec.runs, 'r');
    const steps = rec.steps - warmSteps;
    return { system: 'pg-boss', runs: spec.runs, steps, elapsedMs, stepsPerS: (steps * 1000) / elapsedMs, latencies: rec.latencies, totalSteps: rec.steps };
  } finally {
    await boss.stop({ graceful: false, wait: true, timeout: 2000 });
  }
}

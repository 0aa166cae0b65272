import { nowMs } from './stats.js';

/**
 * One measured workload: `runs` runs of `steps` no-op steps with at most
 * `concurrency` runs in flight. Every system measures the same thing:
 *   - steps/s: steps executed during the timed window / its length
 *   - step latency: time between the starts of two consecutive step bodies of
 *     one run (the cost of committing a step and getting to the next one).
 */
export interface WorkloadSpec {
  runs: number;
  steps: number;
  concurrency: number;
}

export interface WorkloadResult {
  system: string;
  runs: number;
  steps: number;
  elapsedMs: number;
  stepsPerS: number;
  /** Step-to-step intervals, ms. */
  latencies: number[];
  /** Total steps executed by the process including warm-up (for transactions/step). */
  totalSteps: number;
}

/** Records body starts per run and turns them into step-to-step intervals. */
export class StepRecorder {
  private readonly last = new Map<string, number>();
  readonly latencies: number[] = [];
  steps = 0;
  enabled = true;

  bodyStart(runKey: string): void {
    const t = nowMs();
    this.steps++;
    if (!this.enabled) return;
    const prev = this.last.get(runKey);
    if (prev !== undefined) this.latencies.push(t - prev);
    this.last.set(runKey, t);
  }

  runDone(runKey: string): void {
    this.last.delete(runKey);
  }
}

/** Runs `total` tasks with at most `concurrency` at once. */
export async function pool(total: number, concurrency: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, total) }, async () => {
      while (next < total) {
        const i = next++;
        await task(i);
      }
    }),
  );
}

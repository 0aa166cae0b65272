/**
 * Crash test: a worker process runs a workload of runs of 10 steps and is
 * killed with SIGKILL at random moments, then restarted, again and again.
 * One attempt in ten fails after its side effect (and is retried by the
 * engine under the same idempotency key). Afterwards every run must have succeeded, every step's side effect must be
 * in the ledger exactly once under its idempotency key, and no step body may
 * have run after its result was committed.
 *
 * The first kill is made to land inside a step body (that worker's first
 * step sleeps until it is killed), so every run of the test interrupts at
 * least one body and must see it re-run; the others land anywhere.
 *
 * Default (`npm test`): SQLite, 40 runs x 10 steps, 8 kills; PostgreSQL, 24
 * runs x 10 steps, 5 kills. Full (`npm run test:crash`, CRASH_FULL=1): 200
 * runs x 10 steps, 50 kills, on both. CRASH_SEED=<n> replays a kill
 * schedule and every random draw of the workers (their failures, delays and
 * retry jitter are seeded from it).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Store, type DialectName } from '../src/store/store.js';
import { migrate } from '../src/store/migrate.js';
import { Engine, engineMigrations } from '../src/engine/index.js';
import { silentLogger } from '../src/core/log.js';
import { seededRng } from '../src/core/rng.js';
import { createPgDatabase } from './support/dialects.js';
import { openSqliteLedger } from './fixtures/engine-worker-ledger.js';
import { verifyExactlyOnce, WorkerProcess, type RunView } from './fixtures/engine-worker-harness.js';
import type { WorkerConfig } from './fixtures/engine-worker-shared.js';

const FULL = process.env.CRASH_FULL === '1';
const STEPS = 10;
const SEED = Number(process.env.CRASH_SEED ?? Date.now() % 1_000_000);
const dialects: { dialect: DialectName; RUNS: number; KILLS: number }[] = FULL
  ? [{ dialect: 'sqlite', RUNS: 200, KILLS: 50 }, { dialect: 'postgres', RUNS: 200, KILLS: 50 }]
  : [{ dialect: 'sqlite', RUNS: 40, KILLS: 8 }, { dialect: 'postgres', RUNS: 24, KILLS: 5 }];

const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

describe.each(dialects)('engine crash test on $dialect', ({ dialect, RUNS, KILLS }) => {
  it(
    `every run succeeds with exactly-once effects across ${KILLS} SIGKILLs (${RUNS} runs x ${STEPS} steps, seed ${SEED})`,
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'infraflow-crash-'));
      cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
      let url: string;
      if (dialect === 'sqlite') url = `sqlite:${join(dir, 'engine.db')}`;
      else {
        const db = await createPgDatabase('crash');
        cleanups.push(db.drop);
        url = db.url;
      }
      const ledgerPath = join(dir, 'ledger.db');
      const rng = seededRng(SEED);
      const base: Omit<WorkerConfig, 'workerId'> = {
        url,
        ledger: ledgerPath,
        concurrency: 4,
        leaseMs: 1000,
        heartbeatMs: 250,
        pollMs: 50,
        enqueue: { prefix: 'crash', count: RUNS, steps: STEPS, delayMs: 40, failRate: 0.1 }, // long enough that work remains after the last kill: the engine got faster
        seed: SEED,
      };

      let kills = 0;
      let killedBeforeReady = 0;
      for (let k = 0; k < KILLS; k++) {
        if (k === 0) {
          // inside a body for sure: this worker's step s0 sleeps until the kill
          const w = new WorkerProcess({ ...base, workerId: `crash-${k}`, seed: SEED + k, slow: { step: 's0', ms: 600_000 } });
          await w.waitForLine((l) => /^BODY crash-\d+ s0 /.test(l), 60_000);
          await w.kill();
          kills++;
          continue;
        }
        const w = new WorkerProcess({ ...base, workerId: `crash-${k}`, seed: SEED + k });
        if (rng.next() < 0.2) {
          // anywhere: during start-up, migration, enqueueing, recovery
          await new Promise((r) => setTimeout(r, rng.int(0, 1500)));
          if (!w.lines.includes('READY')) killedBeforeReady++;
        } else {
          await w.waitForLine('READY', 60_000);
          await new Promise((r) => setTimeout(r, rng.int(0, 200)));
        }
        expect(w.alive, `worker ${k} died by itself: ${w.stderr.slice(-2000)}`).toBe(true);
        await w.kill();
        kills++;
      }

      // Work must remain after the last kill, or the kills did not test anything.
      let doneAtLastKill: number;
      {
        const store = Store.open({ url });
        await migrate(store, engineMigrations);
        const done = await store.db.selectFrom('engine_runs').select((eb) => eb.fn.countAll<number>().as('n')).where('status', '=', 'succeeded').executeTakeFirstOrThrow();
        await store.close();
        doneAtLastKill = Number(done.n);
        expect(doneAtLastKill, 'the workload finished before the last kill; make it longer').toBeLessThan(RUNS);
      }

      // Final incarnation: runs everything to the end.
      const last = new WorkerProcess({ ...base, workerId: 'crash-final', expectRuns: RUNS });
      await last.waitForLine('DONE', FULL ? 600_000 : 120_000);
      await last.stop();
      expect(last.exitCode, last.stderr.slice(-2000)).toBe(0);

      // Verify from the outside.
      const store = Store.open({ url });
      const engine = new Engine({ store, logger: silentLogger, workerId: 'verifier' });
      const runs: RunView[] = [];
      for (let i = 0; i < RUNS; i++) {
        const info = await engine.get(`crash-${i}`);
        const steps = await engine.timeline(info.id);
        runs.push({ id: info.id, status: info.status, steps: steps.map((s) => ({ name: s.name, kind: s.kind, status: s.status, output: s.output })) });
      }
      await store.close();
      const ledger = openSqliteLedger(ledgerPath);
      const view = { executions: await ledger.executions(), effects: await ledger.effects() };
      await ledger.close();

      const violations = verifyExactlyOnce(runs, view, STEPS, { singleWriter: true });
      expect(violations.slice(0, 20), `seed ${SEED}: ${violations.length} violations`).toEqual([]);
      expect(kills).toBe(KILLS);
      expect(view.effects.length).toBe(RUNS * STEPS);
      // Some bodies must have been interrupted and re-run, or the test saw no crash inside a step:
      // an interrupted body never recorded its end, and a later execution of the same step did.
      const interrupted = view.executions.filter((e) => e.ended_at === null);
      const rerun = interrupted.filter((e) => view.executions.some((x) => x.run_id === e.run_id && x.step === e.step && x.exec_id > e.exec_id && x.ended_at !== null));
      expect(interrupted.length, `seed ${SEED}: no step body was interrupted by a kill`).toBeGreaterThan(0);
      expect(rerun.length, `seed ${SEED}: interrupted bodies were not re-run`).toBe(interrupted.length);
      const reruns = view.executions.length - RUNS * STEPS;
      console.log(`crash test ${dialect}: seed ${SEED}, ${kills} kills (${killedBeforeReady} before ready; ${doneAtLastKill}/${RUNS} runs done at the last kill), ${view.executions.length} body executions for ${RUNS * STEPS} steps (${reruns} re-executions, ${interrupted.length} bodies interrupted by a kill and re-run)`);
    },
    FULL ? 1_800_000 : 300_000,
  );
});

describe('the crash test checker', () => {
  const run = (steps: { name: string; exec: number; key: string }[], status = 'succeeded'): RunView => ({
    id: 'r1',
    status,
    steps: steps.map((s) => ({ name: s.name, kind: 'step', status: 'succeeded', output: { exec: s.exec, worker: 'w', key: s.key } })),
  });
  const exec = (exec_id: number, step: string, idem_key: string, seen = 0) => ({
    exec_id, run_id: 'r1', step, idem_key, worker: 'w', attempt: 1, seen_committed: seen, started_at: exec_id, ended_at: exec_id + 0.5,
  });
  const effect = (step: string, idem_key: string, first: number, applications = 1) => ({ idem_key, run_id: 'r1', step, first_exec_id: first, applications });

  it('accepts a clean history, including a re-execution before the commit', () => {
    const v = verifyExactlyOnce([run([{ name: 's0', exec: 2, key: 'k0' }])], { executions: [exec(1, 's0', 'k0'), exec(2, 's0', 'k0')], effects: [effect('s0', 'k0', 1, 2)] }, 1, { singleWriter: true });
    expect(v).toEqual([]);
  });

  it('flags a body that ran after its result was committed', () => {
    const v = verifyExactlyOnce([run([{ name: 's0', exec: 1, key: 'k0' }])], { executions: [exec(1, 's0', 'k0'), exec(2, 's0', 'k0')], effects: [effect('s0', 'k0', 1, 2)] }, 1, { singleWriter: true });
    expect(v.join('\n')).toMatch(/ran after execution 1, whose result was committed/);
  });

  it('flags a body that started while the journal held its result', () => {
    const v = verifyExactlyOnce([run([{ name: 's0', exec: 1, key: 'k0' }])], { executions: [exec(1, 's0', 'k0', 1)], effects: [effect('s0', 'k0', 1)] }, 1, { singleWriter: false });
    expect(v.join('\n')).toMatch(/journal already held/);
  });

  it('flags a side effect applied under two keys, a missing one, and a failed run', () => {
    const v = verifyExactlyOnce(
      [run([{ name: 's0', exec: 2, key: 'k0b' }, { name: 's1', exec: 3, key: 'k1' }], 'failed')],
      { executions: [exec(1, 's0', 'k0a'), exec(2, 's0', 'k0b'), exec(3, 's1', 'k1')], effects: [effect('s0', 'k0a', 1), effect('s0', 'k0b', 2)] },
      2,
      { singleWriter: true },
    ).join('\n');
    expect(v).toMatch(/status failed/);
    expect(v).toMatch(/r1\/s0: 2 side effects/);
    expect(v).toMatch(/key not stable/);
    expect(v).toMatch(/r1\/s1: 0 side effects/);
  });
});

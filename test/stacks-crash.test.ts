/**
 * Crash during apply: a worker process applies the web tier and is killed
 * with SIGKILL after a few resources are done, twice; a fresh worker then
 * finishes the run. The stack converges with no duplicate objects in the
 * simulator, no duplicate resources, and destroy leaves the datacenter as it
 * was (no leaked allocations).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, it } from 'vitest';
import { Store, type DialectName } from '../src/store/store.js';
import { migrate } from '../src/store/migrate.js';
import { allMigrations } from '../src/app/migrations.js';
import { DIALECTS, createPgDatabase } from './support/dialects.js';
import { simFootprint, stackHarness } from './fixtures/stacks-harness.js';

const WEB = readFileSync(new URL('../examples/stacks/web-tier.yaml', import.meta.url), 'utf8');
const WORKER = new URL('./fixtures/stacks-worker.ts', import.meta.url).pathname;

function startWorker(url: string, runId: string, speed: number): { child: ChildProcess; lines: string[]; next(pred: (l: string) => boolean): Promise<string> } {
  const child = spawn(process.execPath, ['--import', 'tsx', WORKER, url, runId, String(speed)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines: string[] = [];
  const waiters: { pred: (l: string) => boolean; resolve: (l: string) => void }[] = [];
  createInterface({ input: child.stdout! }).on('line', (l) => {
    lines.push(l);
    for (const w of [...waiters]) if (w.pred(l)) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve(l);
    }
  });
  return {
    child, lines,
    next: (pred) => {
      const seen = lines.find(pred);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        waiters.push({ pred, resolve });
        child.once('exit', () => reject(new Error(`worker exited; output:\n${lines.join('\n')}`)));
      });
    },
  };
}

function killed(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

describe.each(DIALECTS)('stacks crash during apply on %s', (dialect: DialectName) => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.reverse()) await c();
    cleanups.length = 0;
  });

  it('SIGKILL twice mid-apply, restart: converges with no duplicates and no leaked allocations', async () => {
    let url: string;
    if (dialect === 'sqlite') {
      const dir = mkdtempSync(join(tmpdir(), 'infraflow-stack-crash-'));
      cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
      url = `sqlite:${join(dir, 'crash.db')}`;
    } else {
      const db = await createPgDatabase('stkcrash');
      cleanups.push(db.drop);
      url = db.url;
    }
    // submit the apply, then hand the database to the worker processes (SQLite serves one process)
    let store = Store.open({ url });
    await migrate(store, allMigrations);
    let h = await stackHarness(store, { worker: false });
    const before = await simFootprint(h.sim);
    const { stack, run } = await h.stacks.apply({ document: WEB, parallelism: 3 });
    await h.close();
    await store.close();

    for (let crash = 0; crash < 2; crash++) {
      const w = startWorker(url, run.id, 40);
      cleanups.push(() => killed(w.child));
      // let it finish a few more resources, then kill it without warning
      await w.next(() => w.lines.filter((l) => l.startsWith('resource ')).length >= 3);
      await killed(w.child);
      // the kill came before the apply finished: the worker never saw it end, the run is not terminal, resources are missing
      expect(w.lines.some((l) => l.startsWith('done')), w.lines.join('\n')).toBe(false);
      const look = Store.open({ url });
      try {
        const r = await look.db.selectFrom('engine_runs').select('status').where('id', '=', run.id).executeTakeFirstOrThrow();
        expect(['pending', 'running', 'waiting']).toContain(r.status);
        const ready = await look.db.selectFrom('stack_resources').select('address').where('stack_id', '=', stack.id).where('status', '=', 'ready').execute();
        expect(ready.length).toBeLessThan(14);
      } finally {
        await look.close();
      }
    }
    const last = startWorker(url, run.id, 40);
    cleanups.push(() => killed(last.child));
    const done = await last.next((l) => l.startsWith('done'));
    await killed(last.child);
    expect(done).toBe('done succeeded');

    store = Store.open({ url });
    cleanups.push(() => store.close());
    h = await stackHarness(store, { worker: true, sim: { speed: 1_000_000 } });
    cleanups.push(() => h.close());
    const info = await h.stacks.get(stack.id);
    expect(info).toMatchObject({ status: 'applied', resourceCount: 14 });
    // exactly one object per resource in the simulator, one live resource per address
    const objects = await h.sim.listObjects();
    expect(objects.length).toBe(14);
    const live = (await h.resources.list({ owner: `stack:${stack.id}`, limit: 1000 })).items;
    expect(live.length).toBe(14);
    expect(new Set(live.map((r) => r.labels['infraflow.dev/address'])).size).toBe(14);
    expect(new Set(objects.map((o) => o.id))).toEqual(new Set(live.map((r) => r.status.externalId)));
    const plan = await h.stacks.plan({ document: WEB });
    expect(plan.summary).toMatchObject({ create: 0, update: 0, replace: 0, delete: 0, noop: 14 });

    const d = await h.stacks.destroy(stack.id);
    expect((await h.stacks.wait(d.run.id, { timeoutMs: 120_000 })).status).toBe('succeeded');
    expect(await simFootprint(h.sim)).toEqual(before);
  }, 180_000);
});

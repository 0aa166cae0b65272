import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Store } from '../src/store/store.js';
import { migrate } from '../src/store/migrate.js';
import { allMigrations } from '../src/app/migrations.js';
import { ResourceStore } from '../src/resources/index.js';
import { Engine } from '../src/engine/index.js';
import { DIALECTS, createPgDatabase } from './support/dialects.js';

/** Starts the worker; resolves once it printed READY. Lines go to `lines`. */
function startWorker(cfg: Record<string, unknown>, lines: string[]): { child: ChildProcess; ready: Promise<void>; exited: Promise<number | null> } {
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/fixtures/sim-worker.ts', JSON.stringify(cfg)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let buf = '';
  let onReady: () => void;
  const ready = new Promise<void>((r) => (onReady = r));
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      lines.push(line);
      if (line === 'READY') onReady();
    }
  });
  child.stderr!.on('data', (d: Buffer) => lines.push(`stderr: ${d.toString().trim()}`));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return { child, ready, exited };
}

/** Waits for a condition checked against the database, up to `ms` (polls every 25 ms). */
async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, ms = 60_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe.each(DIALECTS)('simulator restart on %s', (dialect) => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  it('a worker killed in the middle of long simulated operations is restarted, and the operations complete', async () => {
    let url: string;
    if (dialect === 'sqlite') {
      const dir = mkdtempSync(join(tmpdir(), 'infraflow-sim-restart-'));
      url = `sqlite:${join(dir, 'sim.db')}`;
      cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
    } else {
      const pg = await createPgDatabase('simrestart');
      url = pg.url;
      cleanups.push(() => pg.drop());
    }
    // The test reads the database beside the worker (SQLite: WAL readers do not need the process lock).
    const store = Store.open({ url, skipProcessLock: true, synchronous: 'NORMAL' });
    cleanups.push(() => store.close());
    await migrate(store, allMigrations);
    const resources = new ResourceStore(store);
    const ids = [
      (await resources.create({ kind: 'metal/Instance', name: 'bm-1', project: 'p1', spec: { serverType: 'gp-medium', osTemplate: 'ubuntu-24.04' } })).id,
      (await resources.create({ kind: 'metal/Instance', name: 'bm-2', project: 'p1', spec: { serverType: 'gp-medium', osTemplate: 'rhel-9' } })).id,
      (await resources.create({ kind: 'container/Cluster', name: 'k1', project: 'p1', spec: { version: '1.30', nodePools: [{ name: 'w', count: 3 }] } })).id,
    ];
    const runId = `run_simrestart${dialect}`;
    // speed 200: bare metal takes ~3.6 s (at least 1.5 s), a cluster ~7.5 s (at least 3.6 s)
    const cfg = { url, speed: 200, runId, ids, start: true };
    const lines1: string[] = [];
    const w1 = startWorker(cfg, lines1);
    cleanups.push(async () => { if (w1.child.exitCode === null) w1.child.kill('SIGKILL'); });
    await w1.ready;
    // Wait until all three creates were accepted by the simulator, then kill the worker mid-operation.
    await waitFor('all creates accepted', async () => {
      const all = await Promise.all(ids.map((id) => resources.get(id)));
      return all.every((r) => r.status.externalId) && all;
    });
    w1.child.kill('SIGKILL');
    await w1.exited;
    const before = await Promise.all(ids.map((id) => resources.get(id)));
    const pending = await store.db.selectFrom('sim_objects').select(['id', 'phase']).where('id', 'in', before.map((r) => r.status.externalId!)).execute();
    expect(pending.filter((p) => p.phase === 'creating').length).toBeGreaterThan(0);
    const run = await new Engine({ store }).get(runId); // an engine without a worker, to read the run
    expect(['running', 'waiting', 'pending']).toContain(run.status);

    // Start again: the run resumes from its journal and the simulated operations finish.
    const lines2: string[] = [];
    const w2 = startWorker({ ...cfg, start: false }, lines2);
    cleanups.push(async () => { if (w2.child.exitCode === null) w2.child.kill('SIGKILL'); });
    await w2.ready;
    const done = await waitFor('DONE from the restarted worker', async () => lines2.find((l) => l.startsWith('DONE')), 120_000);
    expect(done, lines2.join('\n')).toMatch(/^DONE succeeded/);
    await w2.exited;
    const after = await Promise.all(ids.map((id) => resources.get(id)));
    for (const [i, r] of after.entries()) {
      expect(r.status.phase).toBe('ready');
      // the same backend objects: no second create after the crash
      expect(r.status.externalId).toBe(before[i]!.status.externalId);
    }
    const objs = await store.db.selectFrom('sim_objects').select(['id', 'phase', 'kind']).where('project', '=', 'p1').execute();
    expect(objs.length).toBe(3);
    expect(objs.every((o) => o.phase === 'ready')).toBe(true);
    expect(after[2]!.status.outputs.readyNodes).toBe(4);
    const secrets = await resources.getSecrets(ids[2]!);
    expect(secrets.kubeconfig).toContain(String(after[2]!.status.outputs.apiEndpoint));
    expect(JSON.stringify(after[2]!.status)).not.toContain(secrets.adminPassword!);
  }, 300_000); // two worker processes start through tsx and wait up to 120 s for the run: more than the default 60 s on a loaded machine
});

/**
 * GitOps benchmark, on SQLite (or DATABASE_URL) and the simulator at zero
 * latency, with real Git repositories on disk (file://).
 *
 *   npm run bench:gitops
 *   npm run bench:gitops -- --apps 100 --per-app 50 --noop-size 1000 --json
 *
 * Figures, each next to a peer measured in the same run:
 *   commit_to_synced_s     a one-resource change committed, the push webhook
 *                          verified, fetched, synced and Healthy — next to
 *                          direct_apply_s, the same change applied as a stack
 *                          directly (what GitOps adds on top of an apply)
 *   sync_noop_ms_1000      a sync that changes nothing, one application of 1,000
 *                          resources — next to plan_noop_ms_1000, a stack plan of
 *                          the same document (a controller that re-plans each sync)
 *   apps_per_min           100 applications of 50 resources each synced from one
 *                          repository, all started at once
 *   image_build_test_push_s  null: image builds are not implemented yet (docs/images.md)
 */
import { execFileSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Store } from '../src/store/store.js';
import { migrate } from '../src/store/migrate.js';
import { allMigrations } from '../src/app/migrations.js';
import { silentLogger } from '../src/core/log.js';
import { SecretBox } from '../src/core/secrets.js';
import { Engine } from '../src/engine/index.js';
import { SimDatacenter, SimProvider } from '../src/providers/sim/index.js';
import { ProviderRegistry } from '../src/resources/registry.js';
import { ResourceStore } from '../src/resources/store.js';
import { RESOURCE_QUEUE } from '../src/resources/index.js';
import { Stacks } from '../src/stacks/index.js';
import { Gitops } from '../src/gitops/index.js';

const args = process.argv.slice(2);
const flag = (name: string, d: number) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : d;
};
const json = args.includes('--json');
const APPS = flag('--apps', 100);
const PER_APP = flag('--per-app', 50);
const NOOP_SIZE = flag('--noop-size', 1000);
const log = (s: string) => (json ? process.stderr.write(s + '\n') : console.log(s));

function doc(name: string, n: number, mtu = 1500): string {
  const lines = [`apiVersion: infraflow.dev/v1`, `kind: Stack`, `metadata:`, `  name: ${name}`, `spec:`, `  options: { parallelism: 16 }`, `  resources:`];
  lines.push(`    net:`, `      kind: network/Network`, `      spec: { mtu: ${mtu} }`);
  if (n > 1) lines.push(`    sg:`, `      kind: network/SecurityGroup`, `      count: ${n - 1}`, `      spec: { description: "member \${ count.index }", rules: [] }`);
  return lines.join('\n') + '\n';
}

class Repo {
  readonly dir = mkdtempSync(join(tmpdir(), 'infraflow-bench-gitops-'));
  constructor() {
    this.git('init', '--quiet', '--initial-branch=main');
    this.git('config', 'user.email', 'bench@example.com');
    this.git('config', 'user.name', 'bench');
  }
  git(...a: string[]): string {
    return execFileSync('git', a, { cwd: this.dir, encoding: 'utf8' }).trim();
  }
  commit(files: Record<string, string>): string {
    for (const [f, t] of Object.entries(files)) {
      mkdirSync(dirname(join(this.dir, f)), { recursive: true });
      writeFileSync(join(this.dir, f), t);
    }
    this.git('add', '-A');
    this.git('commit', '--quiet', '-m', 'bench');
    return this.git('rev-parse', 'HEAD');
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'infraflow-bench-gitops-db-'));
  const url = process.env.DATABASE_URL ?? `sqlite:${join(dir, 'bench.db')}`;
  const store = Store.open({ url });
  await migrate(store, allMigrations);
  const engine = new Engine({ store, logger: silentLogger, pollMs: 20, concurrency: 256, queues: { [RESOURCE_QUEUE]: { concurrency: 100_000, perKey: 1 } } });
  const sim = await new SimDatacenter({ store, config: { speed: 1_000_000 } }).init();
  const resources = new ResourceStore(store, { engine });
  const registry = new ProviderRegistry({ '*': 'sim' }).register(new SimProvider(sim));
  const workDir = join(dir, 'work');
  const stacks = new Stacks({ store, engine, resources, registry, workDir, pollIntervalMs: 20 });
  const box = SecretBox.random();
  const gitops = new Gitops({ store, engine, stacks, box, workDir, waitIntervalMs: 20 });
  engine.startWorker();
  const repo = new Repo();
  const result: Record<string, unknown> = { dialect: store.dialect };
  try {
    // ---- commit → synced through the push webhook, next to a direct apply
    repo.commit({ 'one/net.yaml': doc('one-net', 1) });
    const src = await gitops.createSource({ project: 'default', name: 'bench', url: `file://${repo.dir}`, webhookSecret: 'bench-webhook-secret-0123', pollIntervalS: 86_400 });
    const one = await gitops.createApp({ project: 'default', name: 'one', source: 'bench', path: 'one', syncPolicy: { automated: true } });
    await gitops.refreshSource(src.id);
    await waitSynced(gitops, one.id);
    const c2s: number[] = [];
    const direct: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      const sha = repo.commit({ 'one/net.yaml': doc('one-net', 1, 1400 + i) });
      const body = JSON.stringify({ ref: 'refs/heads/main', after: sha });
      const s = await gitops.verifyWebhook(src.id, body, 'sha256=' + createHmac('sha256', 'bench-webhook-secret-0123').update(body).digest('hex'));
      await gitops.refreshSource(s.id);
      await waitSynced(gitops, one.id, sha);
      c2s.push((performance.now() - t0) / 1000);
      const d0 = performance.now();
      const r = await stacks.apply({ document: doc('direct-net', 1, 1400 + i), file: 'direct.yaml' });
      await stacks.wait(r.run.id, { timeoutMs: 120_000 });
      direct.push((performance.now() - d0) / 1000);
    }
    result.commit_to_synced_s = round(median(c2s), 3);
    result.direct_apply_s = round(median(direct), 3);
    result.commit_to_synced_vs_direct_apply = round(median(c2s) / median(direct), 2);
    log(`commit → synced (webhook, fetch, sync, healthy): ${result.commit_to_synced_s} s; the same change as a direct stack apply: ${result.direct_apply_s} s`);

    // ---- a sync that changes nothing, 1,000 resources, next to a plan of the same document
    repo.commit({ 'big/stack.yaml': doc('big', NOOP_SIZE) });
    await gitops.fetch(await gitops.db.getSource(src.id));
    const big = await gitops.createApp({ project: 'default', name: 'big', source: 'bench', path: 'big' });
    const first = await gitops.sync(big.id);
    await engine.result(first.run.id, { timeoutMs: 600_000 });
    const noop: number[] = [];
    const plans: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      const s = await gitops.sync(big.id);
      const r = await engine.result(s.run.id, { timeoutMs: 120_000 });
      if (r.status !== 'succeeded') throw new Error(`no-op sync ${r.status}`);
      noop.push(performance.now() - t0);
      const p0 = performance.now();
      await stacks.plan({ document: doc('big', NOOP_SIZE), file: 'big.yaml' });
      plans.push(performance.now() - p0);
    }
    result[`sync_noop_ms_${NOOP_SIZE}`] = round(median(noop), 1);
    result[`plan_noop_ms_${NOOP_SIZE}`] = round(median(plans), 1);
    log(`no-op sync of ${NOOP_SIZE} resources: ${result[`sync_noop_ms_${NOOP_SIZE}`]} ms; a plan of the same document: ${result[`plan_noop_ms_${NOOP_SIZE}`]} ms`);

    // ---- many applications from one repository
    const files: Record<string, string> = {};
    for (let a = 0; a < APPS; a++) files[`apps/a${a}/stack.yaml`] = doc(`app-${a}`, PER_APP);
    repo.commit(files);
    await gitops.fetch(await gitops.db.getSource(src.id));
    const ids = [];
    for (let a = 0; a < APPS; a++) ids.push((await gitops.createApp({ project: 'default', name: `a${a}`, source: 'bench', path: `apps/a${a}` })).id);
    const t0 = performance.now();
    const runs = [];
    for (const id of ids) runs.push((await gitops.sync(id)).run.id);
    const ends = await Promise.all(runs.map((r) => engine.result(r, { timeoutMs: 1_800_000 })));
    const secs = (performance.now() - t0) / 1000;
    const ok = ends.filter((e) => e.status === 'succeeded').length;
    result.apps = APPS;
    result.resources_per_app = PER_APP;
    result.apps_synced = ok;
    result.apps_per_min = round((ok / secs) * 60, 1);
    result.image_build_test_push_s = null;
    log(`${ok}/${APPS} applications of ${PER_APP} resources synced in ${secs.toFixed(1)} s: ${result.apps_per_min} per minute`);
  } finally {
    await engine.stop({ graceful: false });
    await store.close();
    rmSync(dir, { recursive: true, force: true });
    rmSync(repo.dir, { recursive: true, force: true });
  }
  if (json) console.log(JSON.stringify(result));
}

async function waitSynced(g: Gitops, appId: string, sha?: string): Promise<void> {
  for (let i = 0; i < 60_000; i++) {
    const last = (await g.history(appId, { limit: 1 }))[0];
    if (last && last.result === 'succeeded' && (!sha || last.sha === sha)) return;
    if (last && last.result === 'failed' && (!sha || last.sha === sha)) throw new Error(`sync failed: ${last.message}`);
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error('never synced');
}

function round(x: number, d: number): number {
  const f = 10 ** d;
  return Math.round(x * f) / f;
}

await main();

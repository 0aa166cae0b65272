/**
 * Stacks benchmark: plan and apply generated stacks of 1k, 10k and 20k
 * resources on the simulator at zero latency, each size in its own process
 * (so peak memory is that size's own), and print time and peak RSS per size
 * and the 20k/10k and 100k/50k ratios (the target is ≤ 2.2: cost grows
 * linearly); with 100k in --sizes the JSON adds apply_100k_s, plan_100k_s,
 * ratio_100k_50k (with 50k) and peak_rss_mb_100k.
 *
 *   npm run bench:stacks                     # sizes 1000,10000,20000 on SQLite
 *   npm run bench:stacks -- --sizes 1000,5000 --json
 *   DATABASE_URL=postgres://… npm run bench:stacks
 *
 * Timings per size:
 *   plan_new   parse + compile + diff of a stack never applied (all creates)
 *   apply      the durable apply run: every resource created through the
 *              provider and recorded, parallelism 4 (at zero latency the work is CPU-bound in one process; more parallelism only adds contention)
 *   plan       plan of the same document against its recorded state (all
 *              unchanged) — the "slow plan on a large state" case (median of 3)
 *   plan_edit  plan after editing one parameter that changes 1% of resources (median of 3)
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

interface SizeResult {
  size: number;
  instances: number;
  plan_new_s: number;
  apply_s: number;
  plan_s: number;
  plan_edit_s: number;
  apply_per_resource_ms: number;
  peak_rss_mb: number;
  dialect: string;
}

const args = process.argv.slice(2);
const flag = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};

/** A generated stack: groups of 100 resources (50 security groups, 50 keypairs that reference them). */
export function generateStack(size: number, params: { ruleCidr?: string } = {}): Record<string, unknown> {
  const groups = Math.max(1, Math.round(size / 100));
  const resources: Record<string, unknown> = {};
  for (let g = 0; g < groups; g++) {
    resources[`sg${g}`] = {
      kind: 'network/SecurityGroup',
      count: 50,
      spec: {
        description: `group ${g} member \${ count.index }`,
        rules: [{ direction: 'ingress', protocol: 'tcp', portMin: 22, portMax: 22, remoteCidr: g % 100 === 0 ? '${ params.ruleCidr }' : '10.0.0.0/8' }],
      },
    };
    resources[`key${g}`] = {
      kind: 'compute/Keypair',
      count: 50,
      spec: {
        name: `k${g}-\${ count.index }`,
        publicKey: `ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGb3m6yTk0n8dJZ6r7q2m8r3M3bq8eY8H2dHnQk0Zk7x \${ resources.sg${g}[count.index].outputs.id }`,
      },
    };
  }
  return {
    apiVersion: 'infraflow.dev/v1',
    kind: 'Stack',
    metadata: { name: `bench-${size}` },
    spec: {
      parameters: { ruleCidr: { type: 'string', default: params.ruleCidr ?? '192.168.0.0/16' } },
      options: { parallelism: 4 },
      resources,
    },
  };
}

async function runOne(size: number): Promise<SizeResult> {
  const { Store } = await import('../src/store/store.js');
  const { migrate } = await import('../src/store/migrate.js');
  const { allMigrations } = await import('../src/app/migrations.js');
  const { Engine } = await import('../src/engine/index.js');
  const { silentLogger } = await import('../src/core/log.js');
  const { SimDatacenter, SimProvider } = await import('../src/providers/sim/index.js');
  const { ProviderRegistry } = await import('../src/resources/registry.js');
  const { ResourceStore } = await import('../src/resources/store.js');
  const { Stacks } = await import('../src/stacks/index.js');

  let peak = 0;
  const sample = () => (peak = Math.max(peak, process.memoryUsage().rss));
  const timer = setInterval(sample, 20);
  const dir = mkdtempSync(join(tmpdir(), 'infraflow-bench-stacks-'));
  const url = process.env.DATABASE_URL ?? `sqlite:${join(dir, 'bench.db')}`;
  const store = Store.open({ url, synchronous: 'NORMAL', poolSize: 20 });
  try {
    await migrate(store, allMigrations);
    const engine = new Engine({ store, logger: silentLogger, pollMs: 20, concurrency: 64 });
    const sim = await new SimDatacenter({ store, config: { speed: 1e9 } }).init();
    const resources = new ResourceStore(store, { engine });
    const registry = new ProviderRegistry({ '*': 'sim' }).register(new SimProvider(sim));
    const stacks = new Stacks({ store, engine, resources, registry, workDir: dir, pollIntervalMs: 1 });
    engine.startWorker();

    const doc = generateStack(size);
    let t = performance.now();
    const fresh = await stacks.plan({ document: doc });
    const planNew = (performance.now() - t) / 1000;

    t = performance.now();
    const { run } = await stacks.apply({ document: doc, parallelism: 4 });
    const done = await stacks.wait(run.id, { timeoutMs: 3_600_000 });
    const apply = (performance.now() - t) / 1000;
    if (done.status !== 'succeeded') throw new Error(`apply of ${size} ended ${done.status}: ${done.error?.message}`);

    // plans are short: the median of 3 runs, so one GC pause or a busy machine does not decide the figure
    const median = async (fn: () => Promise<unknown>) => {
      const ts: number[] = [];
      for (let k = 0; k < 3; k++) {
        const t0 = performance.now();
        await fn();
        ts.push((performance.now() - t0) / 1000);
      }
      return ts.sort((a, b) => a - b)[1]!;
    };
    const again = await stacks.plan({ document: doc });
    if (again.summary.noop !== fresh.summary.create) throw new Error(`plan after apply is not empty: ${JSON.stringify(again.summary)}`);
    const plan = await median(() => stacks.plan({ document: doc }));
    const edited = await stacks.plan({ document: doc, params: { ruleCidr: '172.16.0.0/12' } });
    if (edited.summary.update === 0) throw new Error('the edit changed nothing');
    const planEdit = await median(() => stacks.plan({ document: doc, params: { ruleCidr: '172.16.0.0/12' } }));

    await engine.stop({ graceful: false });
    sample();
    return {
      size, instances: fresh.summary.create, plan_new_s: round(planNew), apply_s: round(apply), plan_s: round(plan), plan_edit_s: round(planEdit),
      apply_per_resource_ms: round((apply * 1000) / fresh.summary.create), peak_rss_mb: Math.round(peak / 1_048_576), dialect: store.dialect,
    };
  } finally {
    clearInterval(timer);
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

export async function main(): Promise<void> {
  const one = flag('--one');
  if (one) {
    const r = await runOne(Number(one));
    process.stdout.write(`RESULT ${JSON.stringify(r)}\n`);
    return;
  }
  const json = args.includes('--json');
  const sizes = (flag('--sizes') ?? '1000,10000,20000').split(',').map(Number);
  const self = fileURLToPath(import.meta.url);
  const results: SizeResult[] = [];
  for (const size of sizes) {
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--max-old-space-size=4096', self, '--one', String(size)], { encoding: 'utf8', env: process.env, maxBuffer: 64 * 1024 * 1024 });
    const line = r.stdout.split('\n').find((l) => l.startsWith('RESULT '));
    if (!line) {
      process.stderr.write(r.stdout + r.stderr);
      throw new Error(`size ${size} failed (exit ${r.status})`);
    }
    const res = JSON.parse(line.slice(7)) as SizeResult;
    results.push(res);
    const line2 = `${String(size).padStart(6)} resources (${res.dialect}): plan new ${res.plan_new_s.toFixed(2)} s, apply ${res.apply_s.toFixed(2)} s (${res.apply_per_resource_ms.toFixed(2)} ms/resource), plan on recorded state ${res.plan_s.toFixed(2)} s, plan after an edit ${res.plan_edit_s.toFixed(2)} s, peak RSS ${res.peak_rss_mb} MB`;
    // progress goes to stderr with --json so that stdout ends with the one JSON line
    if (json) process.stderr.write(`${line2}\n`);
    else console.log(line2);
  }
  const by = (n: number) => results.find((r) => r.size === n);
  const r10 = by(10_000);
  const r20 = by(20_000);
  const summary: Record<string, unknown> = { results };
  if (r10 && r20) {
    const planRatio = r20.plan_s / r10.plan_s;
    const applyRatio = r20.apply_s / r10.apply_s;
    const planNewRatio = r20.plan_new_s / r10.plan_new_s;
    Object.assign(summary, {
      plan_10k_s: r10.plan_s, apply_10k_s: r10.apply_s, plan_20k_s: r20.plan_s, apply_20k_s: r20.apply_s,
      plan_new_10k_s: r10.plan_new_s, plan_new_20k_s: r20.plan_new_s,
      plan_ratio: round(planRatio), apply_ratio: round(applyRatio), plan_new_ratio: round(planNewRatio),
      ratio_20k_10k: round(Math.max(planRatio, applyRatio)),
      peak_rss_mb_10k: r10.peak_rss_mb, peak_rss_mb_20k: r20.peak_rss_mb,
    });
    if (!json) console.log(`ratio 20k/10k: plan ${planRatio.toFixed(2)}, apply ${applyRatio.toFixed(2)} (target ≤ 2.2)`);
  }
  const r50 = by(50_000);
  const r100 = by(100_000);
  if (r100) Object.assign(summary, { apply_100k_s: r100.apply_s, plan_100k_s: r100.plan_s, plan_new_100k_s: r100.plan_new_s, peak_rss_mb_100k: r100.peak_rss_mb });
  if (r50) Object.assign(summary, { apply_50k_s: r50.apply_s, plan_50k_s: r50.plan_s, peak_rss_mb_50k: r50.peak_rss_mb });
  if (r50 && r100) {
    const planRatio = r100.plan_s / r50.plan_s;
    const applyRatio = r100.apply_s / r50.apply_s;
    // the larger of plan and apply ratios, as for 20k/10k
    Object.assign(summary, { plan_ratio_100k_50k: round(planRatio), apply_ratio_100k_50k: round(applyRatio), ratio_100k_50k: round(Math.max(planRatio, applyRatio)) });
    if (!json) console.log(`ratio 100k/50k: plan ${planRatio.toFixed(2)}, apply ${applyRatio.toFixed(2)} (target ≤ 2.2)`);
  }
  if (json) console.log(JSON.stringify(summary));
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split("/").pop()!)) await main();

/**
 * Fulfillment benchmark: 100 cluster orders of 3 bare-metal nodes each on
 * the simulator at zero backend latency, 20 in flight, every stage through
 * the real composition root (engine, inventory, IPAM, reservations, provider
 * registry, simulated fabric/DHCP/installer, Git commits to a bare
 * repository); then every cluster deleted, 20 in flight.
 *
 *   npm run bench:fulfillment                 # 100 orders, 20 in flight, SQLite
 *   npm run bench:fulfillment -- --orders 40 --inflight 10 --json
 *
 * Reports orders, ready, duplicates (agents, VLANs, addresses found twice by
 * a scan of every cluster), leaks_after_delete (anything still held:
 * servers not available, VLANs, addresses, prefixes, reservations, bound
 * ports, fabric objects, DNS records, volumes, parts, Git folders),
 * orders_per_min, and control_overhead_ms (per order, its wall time minus
 * the time spent inside simulator calls attributed to it, p50/p99). The
 * peer measured in the same run: a bare engine workflow with the same
 * number of journaled steps per run, 20 in flight (ratio = fulfillment
 * overhead p99 / bare engine p99: what fulfillment adds on top of the
 * engine's own journaling).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { loadConfig } from '../src/core/config.js';
import { silentLogger } from '../src/core/log.js';
import { createContext } from '../src/app/context.js';
import { defineWorkflow } from '../src/engine/types.js';
import type { SimClusterBackend } from '../src/providers/sim/cluster.js';
import { seedDatacenter } from '../test/fixtures/fulfillment-seed.js';

const args = process.argv.slice(2);
const flag = (n: string, d: number) => {
  const i = args.indexOf(n);
  return i >= 0 ? Number(args[i + 1]) : d;
};
const ORDERS = flag('--orders', 100);
const INFLIGHT = flag('--inflight', 20);
const NODES = 3;
const json = args.includes('--json');
const log = (s: string) => { if (!json) process.stdout.write(s + '\n'); };

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]! : 0;
};

const dir = mkdtempSync(join(tmpdir(), 'infraflow-bench-ful-'));
const config = loadConfig({
  env: {},
  overrides: {
    dataDir: dir, databaseUrl: process.env.DATABASE_URL ?? `sqlite:${join(dir, 'bench.db')}`, secretKey: randomBytes(32).toString('base64'), logLevel: 'silent',
    'worker.pollMs': 20, 'worker.concurrency': 256, 'sim.speed': 1_000_000, 'fulfillment.pollMs': 20, 'fulfillment.gitUrl': join(dir, 'gitops.git'),
  },
});
const ctx = await createContext(config, silentLogger, { startWorker: true });
await seedDatacenter(ctx, ORDERS * NODES);
const f = ctx.fulfillment;

// ---- attribute time inside simulator calls to clusters
const simMs = new Map<string, number>();
const owner = new Map<string, string>();
const clusterOf = (v: unknown): string | undefined => {
  if (typeof v !== 'string') return undefined;
  const m = /ful-(cls_[0-9a-z]+)-/.exec(v) ?? /^cluster:(cls_[0-9a-z]+)/.exec(v);
  return m?.[1] ?? owner.get(v);
};
const attribute = (argsList: unknown[], out: unknown): string | undefined => {
  for (const a of argsList) {
    if (a && typeof a === 'object') {
      const o = a as Record<string, unknown>;
      const c = (typeof o.clusterId === 'string' ? o.clusterId : undefined) ?? clusterOf(o.key) ?? clusterOf(o.installId) ?? clusterOf(o.scopeId) ?? clusterOf(o.idempotencyKey) ?? clusterOf(o.resourceId);
      if (c) {
        const id = (out as { id?: string; externalId?: string } | undefined);
        if (id?.id) owner.set(id.id, c);
        if (id?.externalId) owner.set(id.externalId, c);
        return c;
      }
    } else {
      const c = clusterOf(a);
      if (c) return c;
    }
  }
  return undefined;
};
const timed = <T extends object>(target: T): T => new Proxy(target, {
  get(t, p, r) {
    const v = Reflect.get(t, p, r) as unknown;
    if (typeof v !== 'function') return v;
    return async (...a: unknown[]) => {
      const t0 = performance.now();
      const out = await (v as (...x: unknown[]) => Promise<unknown>).apply(t, a);
      const c = attribute(a, out);
      if (c) simMs.set(c, (simMs.get(c) ?? 0) + performance.now() - t0);
      return out;
    };
  },
});
(f as unknown as { backend: SimClusterBackend }).backend = timed(f.backend as SimClusterBackend);
const realHandler = f.registry.handler.bind(f.registry);
(f.registry as unknown as { handler: typeof realHandler }).handler = (kind: string) => timed(realHandler(kind));

// ---- orders, 20 in flight
const order = (i: number) => ({ name: `b${i}`, project: 'bench', spec: { template: 'ocp-4.17-small', templateParameters: { costCenter: 'bench' }, nodeSets: { workers: { size: NODES } } } });
const wall = new Map<string, number>();
const ids: string[] = [];
async function untilState(id: string, states: string[]): Promise<string> {
  for (;;) {
    const r = await ctx.store.db.selectFrom('ful_clusters').select(['state']).where('id', '=', id).executeTakeFirstOrThrow();
    if (states.includes(r.state)) return r.state;
    await new Promise((res) => setTimeout(res, 10));
  }
}
async function pool<T>(items: T[], n: number, fn: (t: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: n }, async () => {
    while (next < items.length) await fn(items[next++]!);
  }));
}
log(`${ORDERS} orders of ${NODES} nodes, ${INFLIGHT} in flight, simulator at zero latency (${ctx.store.dialect})`);
const t0 = performance.now();
let ready = 0;
await pool([...Array(ORDERS).keys()], INFLIGHT, async (i) => {
  const s = performance.now();
  const c = await f.create(order(i));
  ids.push(c.id);
  if ((await untilState(c.id, ['Ready', 'Failed'])) === 'Ready') ready++;
  wall.set(c.id, performance.now() - s);
});
const createS = (performance.now() - t0) / 1000;

// ---- duplicates: scan every cluster's agents, VLANs and addresses
let duplicates = 0;
const seen = new Set<string>();
for (const id of ids) {
  for (const a of await f.parts<{ serverId: string }>(id, 'agent')) {
    if (seen.has(`agent:${a.serverId}`)) duplicates++;
    seen.add(`agent:${a.serverId}`);
  }
}
for (const v of await ctx.ipam.listVlans({})) {
  if (seen.has(`vlan:${v.poolId}:${v.vlan}`)) duplicates++;
  seen.add(`vlan:${v.poolId}:${v.vlan}`);
}
for (const a of await ctx.ipam.listAddresses({ limit: 100_000 })) {
  if (seen.has(`addr:${a.address}`)) duplicates++;
  seen.add(`addr:${a.address}`);
}
const steps = (await ctx.engine.timeline(`ful-${ids[0]}-create`)).length;

// ---- delete, 20 in flight
const d0 = performance.now();
await pool(ids, INFLIGHT, async (id) => {
  await f.delete(id, 'bench');
  await untilState(id, ['Deleted', 'Failed']);
});
const deleteS = (performance.now() - d0) / 1000;
const backend = ctx.fulfillment.backend as SimClusterBackend;
let leaks = 0;
leaks += (await ctx.inventory.listServers({})).filter((s) => s.state !== 'available').length;
leaks += (await ctx.ipam.listVlans({})).length + (await ctx.ipam.listAddresses({ limit: 100_000 })).length + (await ctx.ipam.listPrefixes({})).filter((p) => p.holder).length;
leaks += (await ctx.allocations.list({ status: 'committed', limit: 1000 })).length + (await ctx.allocations.list({ status: 'open', limit: 1000 })).length;
leaks += (await backend.boundPorts()).length;
for (const id of ids) {
  const h = await backend.holdings(id);
  leaks += h.ports + h.scopes + h.installs + Object.values(await f.holdings(id)).reduce((a, b) => a + b, 0);
}
leaks += (await ctx.sim.listObjects({ kind: 'dns/Record' })).length + (await ctx.sim.listObjects({ kind: 'storage/Volume' })).length;
const clone = join(dir, 'clone');
execFileSync('git', ['clone', '-q', join(dir, 'gitops.git'), clone]);
leaks += Number(execFileSync('git', ['-C', clone, 'ls-files'], { encoding: 'utf8' }).split('\n').filter(Boolean).length);

const overhead = ids.map((id) => wall.get(id)! - (simMs.get(id) ?? 0));

// ---- peer: a bare engine workflow with the same number of steps, same concurrency
ctx.engine.register(defineWorkflow({
  name: 'bench.bare', version: 1,
  async run(c, input: { steps: number }) {
    for (let i = 0; i < input.steps; i++) await c.step(`s${i}`, async () => i);
    return true;
  },
}));
const bare: number[] = [];
const b0 = performance.now();
await pool([...Array(ORDERS).keys()], INFLIGHT, async () => {
  const s = performance.now();
  const r = await ctx.engine.start('bench.bare', { steps });
  await ctx.engine.result(r.id, { timeoutMs: 600_000 });
  bare.push(performance.now() - s);
});
const bareS = (performance.now() - b0) / 1000;
await ctx.close();
rmSync(dir, { recursive: true, force: true });

const result = {
  dialect: config.databaseUrl?.startsWith('postgres') ? 'postgres' : 'sqlite',
  orders: ORDERS, nodes_per_order: NODES, in_flight: INFLIGHT, ready, duplicates, leaks_after_delete: leaks,
  create_s: Number(createS.toFixed(2)), delete_s: Number(deleteS.toFixed(2)),
  orders_per_min: Number(((ORDERS / createS) * 60).toFixed(1)),
  deletes_per_min: Number(((ORDERS / deleteS) * 60).toFixed(1)),
  steps_per_order: steps,
  order_ms_p50: Math.round(pct([...wall.values()], 50)), order_ms_p99: Math.round(pct([...wall.values()], 99)),
  sim_ms_per_order_p50: Math.round(pct(ids.map((id) => simMs.get(id) ?? 0), 50)),
  control_overhead_ms_p50: Math.round(pct(overhead, 50)), control_overhead_ms_p99: Math.round(pct(overhead, 99)),
  bare_engine_run_ms_p99: Math.round(pct(bare, 99)), bare_engine_runs_per_min: Number(((ORDERS / bareS) * 60).toFixed(1)),
  overhead_vs_bare_engine_p99: Number((pct(overhead, 99) / Math.max(1, pct(bare, 99))).toFixed(2)),
};
if (json) process.stdout.write(JSON.stringify(result) + '\n');
else {
  for (const [k, v] of Object.entries(result)) log(`${k.padEnd(30)} ${v}`);
}
process.exit(ready === ORDERS && duplicates === 0 && leaks === 0 ? 0 : 1);

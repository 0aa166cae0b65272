import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { Store } from '../src/store/store.js';
import { migrate } from '../src/store/migrate.js';
import { ManualClock } from '../src/core/clock.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createPgDatabase, DIALECTS, openTestStore, type TestDb } from './support/dialects.js';
import { allocMigrations, openWorld, seedWorld } from './fixtures/alloc-world.js';

/**
 * Many requesters against one pool. On PostgreSQL: 4 PROCESSES, each
 * firing concurrent requests; exactly the pool's size succeed, the rest get
 * an "exhausted" error, and a scan finds no value handed out twice — neither
 * in the database nor in what the processes were told.
 */
interface WorkerResult { pid: number; ok: number; got: string[]; errors: Record<string, number>; messages: string[]; fatal?: string }

const WORKER = new URL('./fixtures/alloc-worker.ts', import.meta.url).pathname;

function startWorker(env: Record<string, string>): { child: ChildProcess; ready: Promise<void>; lines: AsyncIterator<string> } {
  const child = spawn(process.execPath, ['--import', 'tsx', WORKER], { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'inherit'] });
  const rl = createInterface({ input: child.stdout! });
  const lines = rl[Symbol.asyncIterator]();
  const ready = lines.next().then((r) => {
    if (r.value !== 'ready') throw new Error(`worker said ${String(r.value)}`);
  });
  return { child, ready, lines };
}

async function runWorkers(n: number, env: Record<string, string>): Promise<WorkerResult[]> {
  const ws = Array.from({ length: n }, (_, i) => startWorker({ ...env, ALLOC_SEED: String(i + 1) }));
  await Promise.all(ws.map((w) => w.ready));
  for (const w of ws) w.child.stdin!.write('go\n');
  const results = await Promise.all(ws.map(async (w) => {
    const r = await w.lines.next();
    return JSON.parse(String(r.value)) as WorkerResult;
  }));
  await Promise.all(ws.map((w) => new Promise((res) => (w.child.exitCode !== null ? res(null) : w.child.once('exit', res)))));
  for (const r of results) if (r.fatal) throw new Error(r.fatal);
  return results;
}

function dupes(values: string[]): string[] {
  const seen = new Set<string>();
  const d: string[] = [];
  for (const v of values) {
    if (seen.has(v)) d.push(v);
    else seen.add(v);
  }
  return d;
}

describe('allocation across 4 processes on postgres', () => {
  let store: Store | undefined;
  let drop: (() => Promise<void>) | undefined;
  afterEach(async () => {
    await store?.close();
    await drop?.();
    store = undefined;
  });

  async function setup(servers = 4) {
    const pg = await createPgDatabase('alloc');
    drop = pg.drop;
    store = Store.open({ url: pg.url });
    await migrate(store, allocMigrations);
    const w = openWorld(store);
    const seeded = await seedWorld(w, { servers });
    return { url: pg.url, w, seeded };
  }

  it('a /24: exactly 254 of 600 requests succeed, the rest are told it is exhausted, no duplicates', async () => {
    const { url, w, seeded } = await setup();
    const results = await runWorkers(4, { ALLOC_URL: url, ALLOC_MODE: 'addresses', ALLOC_TARGET: seeded.net24, ALLOC_REQUESTS: '150', ALLOC_CONCURRENCY: '32' });
    const got = results.flatMap((r) => r.got);
    expect(results.reduce((n, r) => n + r.ok, 0)).toBe(254);
    expect(results.reduce((n, r) => n + (r.errors['ipam.address_exhausted'] ?? 0), 0)).toBe(600 - 254);
    // the only error any request saw is the exhaustion (no lock timeouts, no conflicts, no 500s)
    expect([...new Set(results.flatMap((r) => Object.keys(r.errors)))]).toEqual(['ipam.address_exhausted']);
    expect(results.every((r) => Object.keys(r.errors).every((k) => k === 'ipam.address_exhausted')), JSON.stringify(results.map((r) => r.messages))).toBe(true);
    expect(dupes(got)).toEqual([]);
    const dbDupes = await sql<{ address_hex: string }>`select address_hex from ipam_addresses group by prefix_id, address_hex having count(*) > 1`.execute(store!.db);
    expect(dbDupes.rows).toEqual([]);
    const rows = await w.ipam.listAddresses({ prefixId: seeded.net24 });
    expect(rows).toHaveLength(254);
    expect(new Set(rows.map((r) => r.address))).toEqual(new Set(got));
    expect(rows.map((r) => r.address)).not.toContain('10.0.0.0');
    expect(rows.map((r) => r.address)).not.toContain('10.0.0.255');
    // every holder in the database is the request that was told it got the address
    expect(new Set(rows.map((r) => r.holder)).size).toBe(254);
  });

  it('a VLAN pool of 100: exactly 100 of 240 succeed, no duplicates', async () => {
    const { url, w, seeded } = await setup();
    const results = await runWorkers(4, { ALLOC_URL: url, ALLOC_MODE: 'vlans', ALLOC_TARGET: seeded.vlanPool, ALLOC_REQUESTS: '60', ALLOC_CONCURRENCY: '24' });
    const got = results.flatMap((r) => r.got);
    expect(got).toHaveLength(100);
    expect(results.every((r) => Object.keys(r.errors).every((k) => k === 'ipam.vlan_exhausted')), JSON.stringify(results.map((r) => r.messages))).toBe(true);
    expect(results.reduce((n, r) => n + (r.errors['ipam.vlan_exhausted'] ?? 0), 0)).toBe(140);
    expect(dupes(got)).toEqual([]);
    const rows = await w.ipam.listVlans({ poolId: seeded.vlanPool });
    expect(rows.map((r) => String(r.vlan)).sort()).toEqual([...got].sort());
    const dbDupes = await sql`select vid from ipam_vlan_allocs group by pool_id, vid having count(*) > 1`.execute(store!.db);
    expect(dbDupes.rows).toEqual([]);
  });

  // 16 requests in flight per process: the fast claims pick with FOR UPDATE
  // SKIP LOCKED. One at a time: each process's only claim in flight picks
  // without it (fastalloc.ts), the four processes pick the same servers and
  // race on the conditional update, which must turn every lost race into a miss.
  it.each([['16 in flight per process', '16'], ['one at a time per process, no row lock', '1']])('60 servers of one type (%s): exactly 60 of 160 succeed, no server twice', async (_, concurrency) => {
    const { url, w } = await setup(60);
    const results = await runWorkers(4, { ALLOC_URL: url, ALLOC_MODE: 'servers', ALLOC_TARGET: 'm1', ALLOC_REQUESTS: '40', ALLOC_CONCURRENCY: concurrency });
    const got = results.flatMap((r) => r.got);
    expect(got).toHaveLength(60);
    expect(results.every((r) => Object.keys(r.errors).every((k) => k === 'inventory.servers_exhausted')), JSON.stringify(results.map((r) => r.messages))).toBe(true);
    expect(dupes(got)).toEqual([]);
    const servers = await w.inventory.listServers({ type: 'm1' });
    expect(servers.every((s) => s.state === 'allocated')).toBe(true);
    expect(new Set(servers.map((s) => s.id))).toEqual(new Set(got));
    expect(new Set(servers.map((s) => s.holder)).size).toBe(60);
  });

  it('mixed release and re-allocate loops never hand one address to two holders', async () => {
    const { url, w, seeded } = await setup();
    const results = await runWorkers(4, { ALLOC_URL: url, ALLOC_MODE: 'churn', ALLOC_TARGET: seeded.net24, ALLOC_REQUESTS: '400', ALLOC_CONCURRENCY: '16' });
    const unexpected = results.flatMap((r) => Object.keys(r.errors).filter((k) => k !== 'ipam.address_exhausted'));
    expect(unexpected, JSON.stringify(results.map((r) => r.messages))).toEqual([]);
    const held = results.flatMap((r) => r.got);
    expect(dupes(held)).toEqual([]);
    const rows = await w.ipam.listAddresses({ prefixId: seeded.net24 });
    expect(rows.map((r) => r.address).sort()).toEqual([...held].sort());
    for (const r of results) {
      const mine = rows.filter((x) => x.holder === `p${r.pid}`).map((x) => x.address).sort();
      expect(mine).toEqual([...r.got].sort());
    }
    // the cursor invariant holds after the storm: the next allocation is the lowest free address
    const taken = new Set(rows.map((r) => r.address));
    let lowest = '';
    for (let i = 1; i < 255; i++) if (!taken.has(`10.0.0.${i}`)) { lowest = `10.0.0.${i}`; break; }
    if (lowest) expect((await w.ipam.allocateAddress({ prefixId: seeded.net24, holder: 'after' })).address).toBe(lowest);
  });

  it('a crash between allocation and commit leaves nothing allocated after the TTL', async () => {
    const { url, w, seeded } = await setup();
    const worker = startWorker({ ALLOC_URL: url, ALLOC_MODE: 'reserve-then-hang', ALLOC_TARGET: seeded.net24, ALLOC_TTL: '60000' });
    await worker.ready;
    worker.child.stdin!.write('go\n');
    const line = await worker.lines.next();
    const reserved = JSON.parse(String(line.value)) as { reserved: string; addresses: string[] };
    expect(reserved.addresses).toHaveLength(5);
    worker.child.kill('SIGKILL');
    await new Promise((res) => worker.child.once('exit', res));
    expect((await w.ipam.listAddresses({ prefixId: seeded.net24 })).length).toBe(5);
    expect((await w.inventory.capacity({ type: 'm1', datacenter: 'dc1' })).available).toBe(2);
    // before the TTL nothing is swept; after it (time given to the sweeper explicitly) everything is released
    const r = await w.alloc.get(reserved.reserved);
    expect(await w.alloc.sweep(r.expiresAt - 1)).toEqual({ expired: 0, orphans: 0 });
    expect(await w.alloc.sweep(r.expiresAt)).toEqual({ expired: 1, orphans: 0 });
    expect(await w.ipam.listAddresses({ prefixId: seeded.net24 })).toEqual([]);
    expect((await w.inventory.capacity({ type: 'm1', datacenter: 'dc1' })).available).toBe(4);
    expect((await w.alloc.get(reserved.reserved)).status).toBe('expired');
  });
});

describe.each(DIALECTS)('64 concurrent requesters in one process on %s', (dialect) => {
  let t: TestDb;
  afterEach(async () => t?.cleanup());

  it('addresses, VLANs and servers: exactly the pool size succeeds, no duplicates', async () => {
    t = await openTestStore(dialect, { migrations: allocMigrations });
    const w = openWorld(t.store, new ManualClock());
    const s = await seedWorld(w, { servers: 20 });
    const settle = async <T>(n: number, f: (i: number) => Promise<T>) => {
      const rs = await Promise.allSettled(Array.from({ length: n }, (_, i) => f(i)));
      const ok = rs.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
      const codes = new Set(rs.flatMap((r) => (r.status === 'rejected' ? [(r.reason as { code?: string }).code] : [])));
      return { ok, codes };
    };
    const a = await settle(300, (i) => w.ipam.allocateAddress({ prefixId: s.net24, holder: `h${i}` }));
    expect(a.ok).toHaveLength(254);
    expect([...a.codes]).toEqual(['ipam.address_exhausted']);
    expect(dupes(a.ok.map((x) => x.address))).toEqual([]);
    const v = await settle(130, (i) => w.ipam.allocateVlan({ poolId: s.vlanPool, holder: `h${i}` }));
    expect(v.ok).toHaveLength(100);
    expect(dupes(v.ok.map((x) => String(x.vlan)))).toEqual([]);
    const sv = await settle(64, (i) => w.inventory.allocateServers({ type: 'm1', datacenter: 'dc1', holder: `h${i}` }));
    expect(sv.ok).toHaveLength(20);
    expect([...sv.codes]).toEqual(['inventory.servers_exhausted']);
    expect(dupes(sv.ok.map((x) => x[0]!.id))).toEqual([]);
    const p = await settle(300, (i) => w.ipam.allocatePrefix({ parentId: s.container, length: 24, holder: `h${i}` }));
    expect(p.ok).toHaveLength(256);
    expect(dupes(p.ok.map((x) => x.cidr))).toEqual([]);
  });
});

describe('a crash between allocation and commit on sqlite', () => {
  it('leaves nothing allocated after the TTL once the next process sweeps', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'infraflow-alloc-crash-'));
    const url = `sqlite:${join(dir, 'alloc.db')}`;
    try {
      let store = Store.open({ url });
      await migrate(store, allocMigrations);
      const seeded = await seedWorld(openWorld(store));
      await store.close();
      const worker = startWorker({ ALLOC_URL: url, ALLOC_MODE: 'reserve-then-hang', ALLOC_TARGET: seeded.net24, ALLOC_TTL: '60000' });
      await worker.ready;
      worker.child.stdin!.write('go\n');
      const reserved = JSON.parse(String((await worker.lines.next()).value)) as { reserved: string; addresses: string[] };
      expect(reserved.addresses).toEqual(['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.5']);
      worker.child.kill('SIGKILL');
      await new Promise((res) => (worker.child.exitCode !== null || worker.child.signalCode !== null ? res(null) : worker.child.once('exit', res)));
      // the next process takes the file over (the dead process's lock is stale) and finds the hold
      store = Store.open({ url });
      const w = openWorld(store);
      try {
        expect(await w.ipam.listAddresses({ prefixId: seeded.net24 })).toHaveLength(5);
        const r = await w.alloc.get(reserved.reserved);
        expect(r.status).toBe('open');
        expect(await w.alloc.sweep(r.expiresAt - 1)).toEqual({ expired: 0, orphans: 0 });
        expect(await w.alloc.sweep(r.expiresAt)).toEqual({ expired: 1, orphans: 0 });
        expect(await w.ipam.listAddresses({ prefixId: seeded.net24 })).toEqual([]);
        expect((await w.inventory.capacity({ type: 'm1', datacenter: 'dc1' })).available).toBe(4);
        expect((await w.ipam.allocateAddress({ prefixId: seeded.net24, holder: 'next' })).address).toBe('10.0.0.1');
      } finally {
        await store.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

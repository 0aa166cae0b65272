/**
 * `npm run bench:alloc [-- --json] [-- --seconds 2]`
 *
 * Allocations per second for addresses, child prefixes, VLANs (a VNI pool,
 * so it never runs dry) and servers, on SQLite (file, synchronous=FULL) and
 * PostgreSQL, with 1 and 64 concurrent requesters in one process, next to
 * the raw single-row commit rate measured in the same run (in 100 ms slices
 * interleaved with each workload, so both see the same machine). Every value
 * handed out is recorded and checked: `duplicates` counts values handed to
 * two requesters plus rows the database scan finds twice (must be 0).
 * Last, per database, the floor: a bare single-row INSERT of an address row
 * against the raw loop, the most a one-requester allocation could reach.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { SecretBox } from '../src/core/secrets.js';
import { newId } from '../src/core/ids.js';
import { Store } from '../src/store/store.js';
import { migrate } from '../src/store/migrate.js';
import { Inventory } from '../src/inventory/inventory.js';
import { inventoryMigrations } from '../src/inventory/migrations.js';
import { Ipam } from '../src/ipam/ipam.js';
import { ipamMigrations } from '../src/ipam/migrations.js';
import { allocationMigrations } from '../src/allocation/migrations.js';
import { benchPostgres, createDatabase, serverVersion } from './lib/pg.js';
import pg from 'pg';
import { pgRawCommits } from './lib/raw.js';
import { fmt, nowMs, table } from './lib/stats.js';

const args = process.argv.slice(2);
const JSON_OUT = args.includes('--json');
const secIdx = args.indexOf('--seconds');
const SECONDS = secIdx >= 0 ? Number(args[secIdx + 1]) : 2;
const DURATION = SECONDS * 1000;
// enough that neither server run exhausts the pool at today's rates (a run that runs dry measures the error path)
const SERVERS = 100_000;
const log = (s: string) => process.stderr.write(s + '\n');

type Kind = 'address' | 'prefix' | 'vlan' | 'server';
const KINDS: Kind[] = ['address', 'prefix', 'vlan', 'server'];
interface Measure { dialect: 'sqlite' | 'postgres'; kind: Kind; concurrency: number; ops: number; elapsedMs: number; perS: number; rawPerS: number; duplicates: number; errors: number }

/** Commits single-row inserts for `ms`; returns how many. */
type RawLoop = (ms: number) => Promise<number>;

const SLICE_MS = 100;

/**
 * Interleaves the allocation workload with raw single-row commits in slices
 * of 100 ms (raw, allocations, raw, …) so that both see the same machine:
 * on a shared host the fsync rate drifts by 10x within a minute. Returns the
 * values handed out and both rates.
 */
async function paired(concurrency: number, raw: RawLoop, fn: (i: number) => Promise<string>): Promise<{ values: string[]; allocMs: number; rawCommits: number; rawMs: number; errors: number; lastError?: string }> {
  const values: string[] = [];
  let errors = 0;
  let lastError: string | undefined;
  let i = 0;
  let exhausted = false;
  let allocMs = 0;
  let rawCommits = 0;
  let rawMs = 0;
  while (allocMs < DURATION && !exhausted) {
    const r0 = nowMs();
    rawCommits += await raw(SLICE_MS);
    rawMs += nowMs() - r0;
    const start = nowMs();
    let stop = false;
    await Promise.all(Array.from({ length: concurrency }, async () => {
      while (!stop) {
        if (nowMs() - start >= SLICE_MS) {
          stop = true;
          break;
        }
        try {
          values.push(await fn(i++));
        } catch (e) {
          errors++;
          lastError = (e as Error).message;
          if ((e as { code?: string }).code?.endsWith('exhausted')) stop = exhausted = true;
        }
      }
    }));
    allocMs += nowMs() - start;
  }
  return { values, allocMs, rawCommits, rawMs, errors, ...(lastError ? { lastError } : {}) };
}

function dupes(values: string[]): number {
  return values.length - new Set(values).size;
}

async function seedServers(store: Store, inv: Inventory, n: number): Promise<void> {
  await inv.createDatacenter({ name: 'dc1', region: 'bench' });
  await inv.createServerType({ name: 'm1', cpu: { model: 'x', cores: 8 }, ramGb: 64 });
  const now = Date.now();
  // bench shortcut: bulk rows straight into the inventory's own table (registerServer per row would dominate the setup time)
  for (let i = 0; i < n; i += 500) {
    const rows = Array.from({ length: Math.min(500, n - i) }, (_, k) => ({
      id: newId('srv'), serial: `B${i + k}`, type_id: 'm1', datacenter_id: 'dc1', rack_id: null, position: null, state: 'available', state_reason: 'bench',
      state_changed_at: now, labels: '{}', bmc_address: null, bmc_credentials: null, nics: '[]', failure_count: 0, failure_reasons: '[]', holder: null,
      reservation_id: null, expires_at: null, idem_key: null, allocated_at: null, created_at: now, updated_at: now,
    }));
    await store.db.insertInto('inv_servers').values(rows).execute();
  }
}

/**
 * The floor under a lone address allocation: a bare single-row autocommit
 * INSERT of an address row (the same table and indexes, a prepared / named
 * statement, no application code), interleaved with the raw loop like the
 * allocations. Its ratio is the most any one-requester address allocation
 * could reach on this machine; the rest of the gap is our code.
 */
async function addressRowFloor(store: Store, prefixId: string, raw: RawLoop): Promise<{ perS: number; rawPerS: number }> {
  let n = 0;
  const row = () => {
    const i = n++;
    return [newId('ip'), prefixId, 6, (BigInt(i) + (1n << 100n)).toString(16).padStart(32, '0'), `floor-${i}`, `floor-${i}`, Date.now()];
  };
  const text = 'insert into ipam_addresses (id, prefix_id, family, address_hex, address, holder, created_at) values';
  let insert: () => Promise<void>;
  let done = async () => {};
  if (store.sqlite) {
    const st = store.sqlite.prepare(`${text} (?, ?, ?, ?, ?, ?, ?)`);
    insert = async () => void st.run(...row());
  } else {
    const c = new pg.Client({ connectionString: store.url });
    await c.connect();
    insert = async () => void await c.query({ name: 'floor', text: `${text} ($1, $2, $3, $4, $5, $6, $7)`, values: row() });
    done = () => c.end();
  }
  const r = await paired(1, raw, async () => {
    await insert();
    return String(n);
  });
  await done();
  return { perS: (r.values.length * 1000) / r.allocMs, rawPerS: (r.rawCommits * 1000) / r.rawMs };
}

async function measureDialect(dialect: 'sqlite' | 'postgres', url: string, raw: RawLoop): Promise<{ results: Measure[]; scanDuplicates: number; floor: { perS: number; rawPerS: number } }> {
  const store = Store.open({ url, poolSize: 16, synchronous: 'FULL' });
  await migrate(store, [...inventoryMigrations, ...ipamMigrations, ...allocationMigrations]);
  const inv = new Inventory({ store, secrets: SecretBox.random() });
  const ipam = new Ipam({ store });
  await seedServers(store, inv, SERVERS);
  const results: Measure[] = [];
  try {
    for (const concurrency of [1, 64]) {
      const tag = `c${concurrency}`;
      const v6 = await ipam.createPrefix({ cidr: `2001:db8:${concurrency}::/64`, scope: `bench-${tag}` });
      // a /12 holds 262,144 /30s: no prefix run runs dry
      const container = await ipam.createPrefix({ cidr: `10.${concurrency === 1 ? 16 : 64}.0.0/12`, scope: `bench-${tag}`, kind: 'container' });
      const vni = await ipam.createVlanPool({ name: `vni-${tag}`, scope: 'bench', kind: 'vni' });
      for (const kind of KINDS) {
        const fn: (i: number) => Promise<string> = {
          address: async (i: number) => (await ipam.allocateAddress({ prefixId: v6.id, holder: `${tag}-${i}` })).address,
          prefix: async (i: number) => (await ipam.allocatePrefix({ parentId: container.id, length: 30, holder: `${tag}-${i}` })).cidr,
          vlan: async (i: number) => String((await ipam.allocateVlan({ poolId: vni.id, holder: `${tag}-${i}` })).vlan),
          server: async (i: number) => (await inv.allocateServers({ type: 'm1', datacenter: 'dc1', holder: `${tag}-${i}` }))[0]!.id,
        }[kind];
        const r = await paired(concurrency, raw, fn);
        const m: Measure = {
          dialect, kind, concurrency, ops: r.values.length, elapsedMs: r.allocMs, perS: (r.values.length * 1000) / r.allocMs,
          rawPerS: (r.rawCommits * 1000) / r.rawMs, duplicates: dupes(r.values), errors: r.errors,
        };
        results.push(m);
        log(`  ${dialect} ${kind.padEnd(7)} x${String(concurrency).padEnd(2)}  ${fmt(m.perS)}/s  raw ${fmt(m.rawPerS)}/s  (${m.ops} in ${fmt(m.elapsedMs)} ms${r.errors ? `, ${r.errors} errors: ${r.lastError}` : ''})`);
      }
    }
    // the scan: nothing the database holds twice
    const q = async (text: ReturnType<typeof sql<{ n: number | string }>>) => Number((await text.execute(store.db)).rows[0]?.n ?? 0);
    let scan = 0;
    scan += await q(sql<{ n: number }>`select count(*) as n from (select prefix_id, address_hex from ipam_addresses group by prefix_id, address_hex having count(*) > 1) d`);
    scan += await q(sql<{ n: number }>`select count(*) as n from (select pool_id, vid from ipam_vlan_allocs group by pool_id, vid having count(*) > 1) d`);
    // child prefixes: no two siblings overlap (sorted by start, each must begin after the previous one ends)
    const kids = await store.db.selectFrom('ipam_prefixes').select(['parent_id', 'network_hex', 'last_hex']).where('parent_id', 'is not', null).orderBy('parent_id').orderBy('network_hex').execute();
    for (let i = 1; i < kids.length; i++) if (kids[i]!.parent_id === kids[i - 1]!.parent_id && kids[i]!.network_hex <= kids[i - 1]!.last_hex) scan++;
    const allocatedServers = await q(sql<{ n: number }>`select count(*) as n from inv_servers where state = 'allocated'`);
    const serverOps = results.filter((r) => r.kind === 'server').reduce((n, r) => n + r.ops, 0);
    scan += Math.abs(allocatedServers - serverOps);
    const floorPrefix = await ipam.createPrefix({ cidr: '2001:db8:f::/64', scope: 'bench-floor' });
    const floor = await addressRowFloor(store, floorPrefix.id, raw);
    log(`  ${dialect} floor: a bare address-row INSERT ${fmt(floor.perS)}/s  raw ${fmt(floor.rawPerS)}/s  (ratio ${fmt(floor.perS / floor.rawPerS, 2)})`);
    return { results, scanDuplicates: scan, floor };
  } finally {
    await store.close();
  }
}

/** SQLite raw commits: a table in its own file with the Store's pragmas, single-row autocommit inserts. */
function sqliteRaw(dir: string): { loop: RawLoop; close(): Promise<void> } {
  const store = Store.open({ url: `sqlite:${join(dir, 'raw.db')}`, synchronous: 'FULL' });
  const db = store.sqlite!;
  db.exec('create table t (id integer primary key, v text not null, at integer not null)');
  const ins = db.prepare('insert into t (v, at) values (?, ?)');
  return {
    loop: async (ms) => {
      const start = nowMs();
      let n = 0;
      while (nowMs() - start < ms) {
        ins.run('x', Date.now());
        n++;
      }
      return n;
    },
    close: () => store.close(),
  };
}

/** PostgreSQL raw commits: one connection, single-row autocommit inserts (a named statement). */
async function pgRaw(url: string): Promise<{ loop: RawLoop; close(): Promise<void> }> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  await c.query('create table if not exists bench_raw (id bigserial primary key, v text not null, at bigint not null)');
  return {
    loop: async (ms) => {
      const start = nowMs();
      let n = 0;
      while (nowMs() - start < ms) {
        await c.query({ name: 'ins', text: 'insert into bench_raw (v, at) values ($1, $2)', values: ['x', Date.now()] });
        n++;
      }
      return n;
    },
    close: () => c.end(),
  };
}

async function main(): Promise<void> {
  const started = nowMs();
  log(`bench:alloc — ${SECONDS} s per measurement, interleaved with raw commits in ${SLICE_MS} ms slices`);
  const dir = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), 'infraflow-bench-alloc-'));
  const sraw = sqliteRaw(dir);
  log('SQLite (synchronous=FULL)…');
  const sq = await measureDialect('sqlite', `sqlite:${join(dir, 'alloc.db')}`, sraw.loop);
  await sraw.close();
  rmSync(dir, { recursive: true, force: true });
  const pgsrv = await benchPostgres();
  let pgRes: Awaited<ReturnType<typeof measureDialect>>;
  let rawPg64: { commitsPerS: number };
  let version: string | undefined;
  try {
    version = await serverVersion(pgsrv.serverUrl);
    const rawDb = await createDatabase(pgsrv.serverUrl, 'bench_raw');
    const praw = await pgRaw(rawDb.url);
    const db = await createDatabase(pgsrv.serverUrl, 'bench_alloc');
    log(`PostgreSQL ${version} (${pgsrv.source})…`);
    pgRes = await measureDialect('postgres', db.url, praw.loop);
    await praw.close();
    rawPg64 = await pgRawCommits({ url: rawDb.url, connections: 64, durationMs: DURATION });
    log(`  raw commits with 64 connections: ${fmt(rawPg64.commitsPerS)}/s`);
    await db.drop();
    await rawDb.drop();
  } finally {
    await pgsrv.stop();
  }
  const all = [...sq.results, ...pgRes.results];
  const rows = all.map((m) => [m.dialect, m.kind, m.concurrency, fmt(m.perS), fmt(m.rawPerS), fmt(m.perS / m.rawPerS, 2), m.duplicates]);
  const out = [
    '',
    table(['database', 'allocating', 'requesters', 'allocs/s', 'raw commits/s', 'ratio', 'duplicates'], rows),
    '',
    'raw commits/s: single-row autocommit INSERTs on one connection, measured in slices interleaved with that row\'s allocations',
    `(SQLite synchronous=FULL; PostgreSQL ${version ?? '?'}; with 64 connections PostgreSQL made ${fmt(rawPg64.commitsPerS)} raw commits/s)`,
    `duplicates found by the scan: SQLite ${sq.scanDuplicates}, PostgreSQL ${pgRes.scanDuplicates}`,
    `floor — a bare single-row autocommit INSERT of an address row (same table and indexes, no application code) against the raw loop: SQLite ${fmt(sq.floor.perS / sq.floor.rawPerS, 2)}, PostgreSQL ${fmt(pgRes.floor.perS / pgRes.floor.rawPerS, 2)}`,
    `total time ${fmt((nowMs() - started) / 1000, 1)} s`,
  ];
  process.stdout.write(out.join('\n') + '\n');
  const get = (d: string, k: Kind, c: number) => all.find((m) => m.dialect === d && m.kind === k && m.concurrency === c)!;
  const json: Record<string, number | string> = {
    // the raw rate measured alongside the 1-requester address allocations (same slices of time)
    raw_commits_per_s_sqlite: Math.round(get('sqlite', 'address', 1).rawPerS),
    raw_commits_per_s_pg: Math.round(get('postgres', 'address', 64).rawPerS),
    raw_commits_per_s_pg_64: Math.round(rawPg64.commitsPerS),
  };
  for (const d of ['sqlite', 'postgres'] as const) {
    const tag = d === 'sqlite' ? 'sqlite' : 'pg';
    for (const k of KINDS) {
      for (const c of [1, 64]) {
        const m = get(d, k, c);
        json[`${k}_allocs_per_s_${tag}${c === 64 ? '_64' : ''}`] = Math.round(m.perS);
        json[`${k}_ratio_${tag}${c === 64 ? '_64' : ''}`] = Number((m.perS / m.rawPerS).toFixed(2));
      }
    }
  }
  json.address_row_floor_ratio_sqlite = Number((sq.floor.perS / sq.floor.rawPerS).toFixed(2));
  json.address_row_floor_ratio_pg = Number((pgRes.floor.perS / pgRes.floor.rawPerS).toFixed(2));
  json.duplicates = all.reduce((n, m) => n + m.duplicates, 0) + sq.scanDuplicates + pgRes.scanDuplicates;
  json.postgres = version ?? '?';
  if (JSON_OUT) process.stdout.write(JSON.stringify(json) + '\n');
}

main().then(() => process.exit(0), (e: unknown) => {
  console.error(e);
  process.exit(1);
});

/**
 * `npm run bench:alloc [-- --json] [-- --seconds 2]`
 *
 * Allocations per second for addresses, child prefixes, VLANs (a VNI pool,
 * so it never runs dry) and servers, on SQLite (file, synchronous=FULL) and
 * PostgreSQL, with 1 and 64 concurrent requesters in one process, next to
 * the raw single-row commit rate measured in the same run. Every value
 * handed out is recorded and checked: `duplicates` counts values handed to
 * two requesters plus rows the database scan finds twice (must be 0).
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
import { pgRawCommits, sqliteRawCommits } from './lib/raw.js';
import { fmt, nowMs, table } from './lib/stats.js';

const args = process.argv.slice(2);
const JSON_OUT = args.includes('--json');
const secIdx = args.indexOf('--seconds');
const SECONDS = secIdx >= 0 ? Number(args[secIdx + 1]) : 2;
const DURATION = SECONDS * 1000;
const SERVERS = 12_000;
const log = (s: string) => process.stderr.write(s + '\n');

type Kind = 'address' | 'prefix' | 'vlan' | 'server';
const KINDS: Kind[] = ['address', 'prefix', 'vlan', 'server'];
interface Measure { dialect: 'sqlite' | 'postgres'; kind: Kind; concurrency: number; ops: number; elapsedMs: number; perS: number; duplicates: number; errors: number }

/** `concurrency` requesters loop until the time is up (or the pool runs dry); returns what they were handed. */
async function drive(concurrency: number, fn: (i: number) => Promise<string>): Promise<{ values: string[]; elapsedMs: number; errors: number; lastError?: string }> {
  const values: string[] = [];
  let errors = 0;
  let lastError: string | undefined;
  let i = 0;
  let stop = false;
  const start = nowMs();
  let end = start;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (!stop) {
      if (nowMs() - start >= DURATION) {
        stop = true;
        break;
      }
      try {
        values.push(await fn(i++));
        end = nowMs();
      } catch (e) {
        errors++;
        lastError = (e as Error).message;
        if ((e as { code?: string }).code?.endsWith('exhausted')) stop = true;
      }
    }
  }));
  return { values, elapsedMs: end - start, errors, ...(lastError ? { lastError } : {}) };
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

async function measureDialect(dialect: 'sqlite' | 'postgres', url: string): Promise<{ results: Measure[]; scanDuplicates: number }> {
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
      const container = await ipam.createPrefix({ cidr: `10.${concurrency}.0.0/16`, scope: `bench-${tag}`, kind: 'container' });
      const vni = await ipam.createVlanPool({ name: `vni-${tag}`, scope: 'bench', kind: 'vni' });
      for (const kind of KINDS) {
        const fn: (i: number) => Promise<string> = {
          address: async (i: number) => (await ipam.allocateAddress({ prefixId: v6.id, holder: `${tag}-${i}` })).address,
          prefix: async (i: number) => (await ipam.allocatePrefix({ parentId: container.id, length: 30, holder: `${tag}-${i}` })).cidr,
          vlan: async (i: number) => String((await ipam.allocateVlan({ poolId: vni.id, holder: `${tag}-${i}` })).vlan),
          server: async (i: number) => (await inv.allocateServers({ type: 'm1', datacenter: 'dc1', holder: `${tag}-${i}` }))[0]!.id,
        }[kind];
        const r = await drive(concurrency, fn);
        const m: Measure = { dialect, kind, concurrency, ops: r.values.length, elapsedMs: r.elapsedMs, perS: (r.values.length * 1000) / r.elapsedMs, duplicates: dupes(r.values), errors: r.errors };
        results.push(m);
        log(`  ${dialect} ${kind.padEnd(7)} x${String(concurrency).padEnd(2)}  ${fmt(m.perS)}/s  (${m.ops} in ${fmt(m.elapsedMs)} ms${r.errors ? `, ${r.errors} errors: ${r.lastError}` : ''})`);
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
    return { results, scanDuplicates: scan };
  } finally {
    await store.close();
  }
}

async function main(): Promise<void> {
  const started = nowMs();
  log(`bench:alloc — ${SECONDS} s per measurement`);
  // SQLite
  const dir = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), 'infraflow-bench-alloc-'));
  // the machine's fsync rate drifts: raw commits are measured before and after the allocations and averaged
  log('raw commits (SQLite, synchronous=FULL)…');
  const rawSqliteBefore = await sqliteRawCommits({ durationMs: DURATION, dir });
  log(`  ${fmt(rawSqliteBefore.commitsPerS)}/s`);
  log('SQLite allocations…');
  const sq = await measureDialect('sqlite', `sqlite:${join(dir, 'alloc.db')}`);
  const rawSqliteAfter = await sqliteRawCommits({ durationMs: DURATION, dir });
  log(`raw commits again: ${fmt(rawSqliteAfter.commitsPerS)}/s`);
  const rawSqlite = { commitsPerS: (rawSqliteBefore.commitsPerS + rawSqliteAfter.commitsPerS) / 2 };
  rmSync(dir, { recursive: true, force: true });
  // PostgreSQL
  const pgsrv = await benchPostgres();
  let pgRes: Awaited<ReturnType<typeof measureDialect>>;
  let rawPg1: { commitsPerS: number };
  let rawPg64: Awaited<ReturnType<typeof pgRawCommits>>;
  let version: string | undefined;
  try {
    version = await serverVersion(pgsrv.serverUrl);
    const rawDb = await createDatabase(pgsrv.serverUrl, 'bench_raw');
    log(`raw commits (PostgreSQL ${version}, ${pgsrv.source})…`);
    const rawPg1Before = await pgRawCommits({ url: rawDb.url, connections: 1, durationMs: DURATION });
    rawPg64 = await pgRawCommits({ url: rawDb.url, connections: 64, durationMs: DURATION });
    log(`  1 connection ${fmt(rawPg1Before.commitsPerS)}/s, 64 connections ${fmt(rawPg64.commitsPerS)}/s`);
    const db = await createDatabase(pgsrv.serverUrl, 'bench_alloc');
    log('PostgreSQL allocations…');
    pgRes = await measureDialect('postgres', db.url);
    await db.drop();
    const rawPg1After = await pgRawCommits({ url: rawDb.url, connections: 1, durationMs: DURATION });
    log(`raw commits again: 1 connection ${fmt(rawPg1After.commitsPerS)}/s`);
    rawPg1 = { commitsPerS: (rawPg1Before.commitsPerS + rawPg1After.commitsPerS) / 2 };
    await rawDb.drop();
  } finally {
    await pgsrv.stop();
  }
  const all = [...sq.results, ...pgRes.results];
  const raw = (d: string, c: number) => (d === 'sqlite' ? rawSqlite.commitsPerS : c === 1 ? rawPg1.commitsPerS : rawPg64.commitsPerS);
  const rows = all.map((m) => [m.dialect, m.kind, m.concurrency, fmt(m.perS), fmt(raw(m.dialect, 1)), fmt(m.perS / raw(m.dialect, 1), 2), m.duplicates]);
  const out = [
    '',
    `raw single-row commits/s (mean of before and after): SQLite ${fmt(rawSqlite.commitsPerS)} (synchronous=FULL); PostgreSQL ${version ?? "?"} ${fmt(rawPg1.commitsPerS)} (1 connection), ${fmt(rawPg64.commitsPerS)} (64 connections)`,
    '',
    table(['database', 'allocating', 'requesters', 'allocs/s', 'raw commits/s', 'ratio', 'duplicates'], rows),
    '',
    `duplicates found by the scan: SQLite ${sq.scanDuplicates}, PostgreSQL ${pgRes.scanDuplicates}`,
    `total time ${fmt((nowMs() - started) / 1000, 1)} s`,
  ];
  process.stdout.write(out.join('\n') + '\n');
  const get = (d: string, k: Kind, c: number) => all.find((m) => m.dialect === d && m.kind === k && m.concurrency === c)!.perS;
  const json: Record<string, number | string> = {
    raw_commits_per_s_sqlite: Math.round(rawSqlite.commitsPerS),
    raw_commits_per_s_pg: Math.round(rawPg1.commitsPerS),
    raw_commits_per_s_pg_64: Math.round(rawPg64.commitsPerS),
    address_allocs_per_s_sqlite: Math.round(get('sqlite', 'address', 1)),
    address_allocs_per_s_sqlite_64: Math.round(get('sqlite', 'address', 64)),
    address_allocs_per_s_pg: Math.round(get('postgres', 'address', 1)),
    address_allocs_per_s_pg_64: Math.round(get('postgres', 'address', 64)),
  };
  for (const d of ['sqlite', 'postgres'] as const) {
    for (const k of ['prefix', 'vlan', 'server'] as const) {
      for (const c of [1, 64]) json[`${k}_allocs_per_s_${d === 'sqlite' ? 'sqlite' : 'pg'}${c === 64 ? '_64' : ''}`] = Math.round(get(d, k, c));
    }
  }
  json.address_ratio_sqlite = Number((get('sqlite', 'address', 1) / rawSqlite.commitsPerS).toFixed(2));
  json.address_ratio_pg_64 = Number((get('postgres', 'address', 64) / rawPg1.commitsPerS).toFixed(2));
  json.duplicates = all.reduce((n, m) => n + m.duplicates, 0) + sq.scanDuplicates + pgRes.scanDuplicates;
  json.postgres = version ?? "?";
  if (JSON_OUT) process.stdout.write(JSON.stringify(json) + '\n');
}

main().then(() => process.exit(0), (e: unknown) => {
  console.error(e);
  process.exit(1);
});

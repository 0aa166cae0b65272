import { readFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { parse } from 'yaml';
import { DIALECTS, openTestStore, type TestDb } from '../../test/support/dialects.js';
import { ManualClock } from '../core/clock.js';
import { SecretBox } from '../core/secrets.js';
import { Inventory } from './inventory.js';
import { migrate } from '../store/migrate.js';
import { inventoryMigrations } from './migrations.js';
import { exportInventory, importInventory } from './yaml.js';
import { reconcileHotPool, SimulatedDiscovery } from './hotpool.js';
import type { Server } from './schemas.js';

const EXAMPLE = readFileSync(new URL('../../examples/datacenter.yaml', import.meta.url), 'utf8');

async function seed(inv: Inventory, n = 6): Promise<Server[]> {
  await inv.createDatacenter({ name: 'dc1', region: 'eu' });
  await inv.createDatacenter({ name: 'dc2', region: 'eu' });
  await inv.createRack({ datacenter: 'dc1', name: 'r1' });
  await inv.createServerType({ name: 'm1', cpu: { model: 'x', cores: 8 }, ramGb: 64 });
  await inv.createServerType({ name: 'g1', cpu: { model: 'x', cores: 8 }, ramGb: 64, gpus: [{ model: 'L40S', count: 2 }] });
  await inv.createSwitch({ name: 'tor1', datacenter: 'dc1', rack: 'r1', ports: 48 });
  const out: Server[] = [];
  for (let i = 0; i < n; i++) {
    out.push(await inv.registerServer({
      serial: `S${i}`, type: 'm1', datacenter: 'dc1', rack: 'r1', position: i + 1, state: 'available',
      labels: { zone: i % 2 === 0 ? 'a' : 'b' },
      bmc: { address: `10.0.0.${i}`, username: 'admin', password: `hunter${i}` },
      nics: [{ name: 'eno1', mac: `52:54:00:00:00:${(i + 16).toString(16)}`, switch: 'tor1', port: String(i + 1) }],
    }));
  }
  return out;
}

async function snapshot(t: TestDb) {
  const db = t.store.db;
  return {
    servers: await db.selectFrom('inv_servers').selectAll().orderBy('id').execute(),
    events: await db.selectFrom('inv_server_events').select(['id']).orderBy('id').execute(),
    ports: await db.selectFrom('inv_switch_ports').selectAll().orderBy('switch_id').orderBy('port').execute(),
    dcs: await db.selectFrom('inv_datacenters').selectAll().orderBy('id').execute(),
    types: await db.selectFrom('inv_server_types').select(['id']).orderBy('id').execute(),
  };
}

describe.each(DIALECTS)('inventory on %s', (dialect) => {
  let t: TestDb;
  let inv: Inventory;
  let clock: ManualClock;
  beforeEach(async () => {
    t = await openTestStore(dialect, { migrations: inventoryMigrations });
    clock = new ManualClock();
    inv = new Inventory({ store: t.store, clock, secrets: SecretBox.random(), quarantineAfter: 2 });
  });
  afterEach(async () => t?.cleanup());

  it('allocates by type, labels and preference; all or nothing; idempotent by key', async () => {
    const s = await seed(inv);
    const pref = await inv.allocateServers({ type: 'm1', datacenter: 'dc1', count: 2, preferred: [s[5]!.id, 'srv_missing', s[4]!.id], holder: 'a' });
    expect(pref.map((x) => x.id)).toEqual([s[5]!.id, s[4]!.id]);
    // preferred but taken: skipped silently
    const next = await inv.allocateServers({ type: 'm1', datacenter: 'dc1', preferred: [s[5]!.id], holder: 'b' });
    expect(next.map((x) => x.id)).toEqual([s[0]!.id]);
    const zoneB = await inv.allocateServers({ type: 'm1', datacenter: 'dc1', labels: { zone: 'b' }, holder: 'c' });
    expect(zoneB[0]!.id).toBe(s[1]!.id);
    // zone b left: s3 only; asking for 2 fails and allocates nothing
    const before = await snapshot(t);
    await expect(inv.allocateServers({ type: 'm1', datacenter: 'dc1', count: 2, labels: { zone: 'b' }, holder: 'd' }))
      .rejects.toMatchObject({ code: 'inventory.servers_exhausted', message: expect.stringMatching(/only 1 of the 2 requested servers of type m1 with labels zone=b are available in dc1/) });
    expect(await snapshot(t)).toEqual(before);
    const k1 = await inv.allocateServers({ type: 'm1', datacenter: 'dc1', count: 2, holder: 'e', key: 'step-1' });
    const k2 = await inv.allocateServers({ type: 'm1', datacenter: 'dc1', count: 2, holder: 'e', key: 'step-1' });
    expect(k2.map((x) => x.id)).toEqual(k1.map((x) => x.id));
    expect(k1.every((x) => x.state === 'allocated' && x.holder === 'e')).toBe(true);
    await expect(inv.allocateServers({ type: 'm1', datacenter: 'dc1', holder: 'f' })).rejects.toMatchObject({ code: 'inventory.servers_exhausted' });
    const released = await inv.releaseServers({ holder: 'e' });
    expect(released.map((x) => x.state)).toEqual(['available', 'available']);
    expect((await inv.capacity({ type: 'm1', datacenter: 'dc1' })).available).toBe(2);
  });

  it('walks the lifecycle, refuses illegal transitions, records history', async () => {
    const [s] = await seed(inv, 1);
    const [a] = await inv.allocateServers({ type: 'm1', datacenter: 'dc1', holder: 'x' });
    await expect(inv.transition({ serverId: a!.id, to: 'cleaning', reason: 'r' })).rejects.toMatchObject({ code: 'inventory.illegal_transition', message: expect.stringMatching(/cannot go from allocated to cleaning; from allocated it can go to provisioning, available, maintenance/) });
    for (const to of ['provisioning', 'provisioned', 'deprovisioning', 'cleaning', 'available'] as const) {
      clock.advance(1000);
      const r = await inv.transition({ serverId: s!.id, to, reason: `to ${to}` });
      expect(r.state).toBe(to);
    }
    const h = await inv.serverHistory(s!.id);
    expect(h.map((e) => `${e.from}->${e.to}`)).toEqual(['null->available', 'available->allocated', 'allocated->provisioning', 'provisioning->provisioned', 'provisioned->deprovisioning', 'deprovisioning->cleaning', 'cleaning->available']);
    expect(h.every((e) => e.reason.length > 0 && e.at > 0)).toBe(true);
    const after = await inv.getServer(s!.id);
    expect(after.holder).toBeNull();
  });

  it('quarantines a server after repeated provisioning failures until an operator releases it', async () => {
    const [s] = await seed(inv, 1);
    for (let i = 1; i <= 2; i++) {
      await inv.allocateServers({ type: 'm1', datacenter: 'dc1', holder: 'x' });
      await inv.transition({ serverId: s!.id, to: 'provisioning', reason: 'deploy' });
      const f = await inv.recordProvisioningFailure(s!.id, `disk ${i} not found`);
      if (i === 1) {
        expect(f.state).toBe('failed');
        await inv.transition({ serverId: s!.id, to: 'cleaning', reason: 'retry' });
        await inv.transition({ serverId: s!.id, to: 'available', reason: 'cleaned' });
      } else {
        expect(f.state).toBe('quarantined');
        expect(f.stateReason).toMatch(/failed provisioning 2 times: disk 1 not found; disk 2 not found/);
      }
    }
    await expect(inv.allocateServers({ type: 'm1', datacenter: 'dc1', holder: 'y' })).rejects.toMatchObject({ code: 'inventory.servers_exhausted' });
    await expect(inv.transition({ serverId: s!.id, to: 'available', reason: 'auto' })).rejects.toMatchObject({ code: 'inventory.quarantined' });
    const back = await inv.releaseQuarantine(s!.id, { actor: 'alice', reason: 'disk replaced' });
    expect(back).toMatchObject({ state: 'available', failureCount: 0 });
    expect((await inv.allocateServers({ type: 'm1', datacenter: 'dc1', holder: 'y' }))[0]!.id).toBe(s!.id);
  });

  it('seals BMC credentials at rest and cables NICs to unique ports', async () => {
    const [s] = await seed(inv, 2);
    const raw = await t.store.db.selectFrom('inv_servers').select('bmc_credentials').where('id', '=', s!.id).executeTakeFirstOrThrow();
    expect(raw.bmc_credentials).toMatch(/^v1\./);
    expect(raw.bmc_credentials).not.toContain('hunter0');
    expect(await inv.getBmcCredentials(s!.id)).toEqual({ address: '10.0.0.0', username: 'admin', password: 'hunter0' });
    expect(JSON.stringify(await inv.getServer(s!.id))).not.toContain('hunter0');
    const before = await snapshot(t);
    await expect(inv.registerServer({ serial: 'X', type: 'm1', datacenter: 'dc1', nics: [{ name: 'eno1', mac: '52:54:00:aa:bb:cc', switch: 'tor1', port: '1' }] }))
      .rejects.toMatchObject({ code: 'inventory.port_in_use', message: expect.stringMatching(/^nics\.0\.port: port 1 of switch tor1 is already cabled/) });
    await expect(inv.registerServer({ serial: 'X', type: 'm1', datacenter: 'dc1', nics: [{ name: 'eno1', mac: '52:54:00:aa:bb:cc', switch: 'tor1', port: '49' }] }))
      .rejects.toMatchObject({ code: 'inventory.invalid_port' });
    expect(await snapshot(t)).toEqual(before);
  });

  it('bad input names the field and changes nothing', async () => {
    await seed(inv, 2);
    const before = await snapshot(t);
    const cases: [() => Promise<unknown>, string, RegExp][] = [
      [() => inv.allocateServers({ type: 'nope', datacenter: 'dc1', holder: 'h' }), 'inventory.unknown_server_type', /^type: unknown server type "nope"/],
      [() => inv.allocateServers({ type: 'm1', datacenter: 'dc9', holder: 'h' }), 'inventory.unknown_datacenter', /^datacenter: unknown datacenter "dc9"/],
      [() => inv.allocateServers({ type: 'm1', datacenter: 'dc1', holder: 'h', count: 0 }), 'inventory.invalid_input', /^count:/],
      [() => inv.allocateServers({ type: 'm1', datacenter: 'dc1', holder: '' }), 'inventory.invalid_input', /^holder:/],
      [() => inv.registerServer({ serial: 'Z', type: 'nope', datacenter: 'dc1' }), 'inventory.unknown_server_type', /^type:/],
      [() => inv.registerServer({ serial: 'Z', type: 'm1', datacenter: 'dc9' }), 'inventory.unknown_datacenter', /^datacenter:/],
      [() => inv.registerServer({ serial: 'Z', type: 'm1', datacenter: 'dc1', rack: 'r9' }), 'inventory.unknown_rack', /^rack:/],
      [() => inv.registerServer({ serial: 'Z', type: 'm1', datacenter: 'dc1', nics: [{ name: 'e', mac: 'zz' }] }), 'inventory.invalid_input', /^nics\.0\.mac:/],
      [() => inv.registerServer({ serial: 'Z', type: 'm1', datacenter: 'dc1', nics: [{ name: 'e', mac: '52:54:00:00:00:01', switch: 'nope', port: '1' }] }), 'inventory.unknown_switch', /^nics\.0\.switch:/],
      [() => inv.createServerType({ name: 'Bad Name', cpu: { model: 'x', cores: 1 }, ramGb: 1 }), 'inventory.invalid_input', /^name:/],
      [() => inv.setHotPoolPolicy({ type: 'nope', datacenter: 'dc1', minReady: 1 }), 'inventory.unknown_server_type', /^type:/],
      [() => inv.transition({ serverId: 'srv_nope', to: 'available', reason: 'x' }), 'inventory.server_not_found', /^serverId:/],
      [() => inv.transition({ serverId: 'x', to: 'flying' as never, reason: 'x' }), 'inventory.invalid_input', /^to:/],
    ];
    for (const [f, code, msg] of cases) {
      const err = await f().then(() => undefined, (e: unknown) => e);
      expect(err, code).toMatchObject({ code });
      expect((err as Error).message).toMatch(msg);
    }
    expect(await snapshot(t)).toEqual(before);
  });

  it('holds expire back to available; commit keeps them', async () => {
    await seed(inv, 3);
    await inv.allocateServers({ type: 'm1', datacenter: 'dc1', count: 2, holder: 'h', hold: { reservationId: 'r1', expiresAt: clock.now() + 100 } });
    await inv.allocateServers({ type: 'm1', datacenter: 'dc1', count: 1, holder: 'h', hold: { reservationId: 'r2', expiresAt: clock.now() + 100 } });
    await t.store.transaction((trx) => inv.commitHold(trx, 'r2'));
    clock.advance(100);
    expect(await inv.sweepExpired()).toBe(2);
    expect((await inv.capacity({ type: 'm1', datacenter: 'dc1' })).byState).toEqual({ available: 2, allocated: 1 });
  });

  it('hubs hand out capacity', async () => {
    await seed(inv, 0);
    await inv.createHub({ name: 'hub1', region: 'eu', capacity: 1, labels: { kind: 'ocp' } });
    await inv.createHub({ name: 'hub2', region: 'eu', capacity: 1 });
    expect((await inv.claimHub({ region: 'eu', labels: { kind: 'ocp' } })).name).toBe('hub1');
    await expect(inv.claimHub({ region: 'eu', labels: { kind: 'ocp' } })).rejects.toMatchObject({ code: 'inventory.hub_exhausted' });
    expect((await inv.claimHub({ region: 'eu' })).name).toBe('hub2');
    expect((await inv.releaseHub('hub1')).used).toBe(0);
  });

  it('hot pool discovers and inspects hardware up to the policy', async () => {
    await seed(inv, 2);
    const policy = await inv.setHotPoolPolicy({ type: 'm1', datacenter: 'dc1', minReady: 5 });
    const disco = new SimulatedDiscovery({ failInspection: (serial) => (serial.endsWith('0') ? 'bad DIMM' : undefined) });
    const r = await reconcileHotPool(inv, disco, policy, 'k1');
    expect(r.discovered).toBe(3);
    expect(r.inspected + r.failed).toBe(3);
    expect(r.ready).toBe(2 + r.inspected);
    // again: discovers only the remaining deficit; same key gives same serials for the same count
    const r2 = await reconcileHotPool(inv, disco, policy, 'k2');
    expect(r2.ready + r2.pending).toBeGreaterThanOrEqual(Math.min(5, r2.ready + r2.pending));
    const servers = await inv.listServers({ type: 'm1' });
    expect(servers.filter((s) => s.labels.discovered === 'hotpool').every((s) => s.hasBmcCredentials)).toBe(true);
  });

  it('imports the example datacenter, exports it back, and re-import is a no-op', async () => {
    const summary = await importInventory(inv, EXAMPLE, { source: 'examples/datacenter.yaml' });
    expect(summary).toMatchObject({ datacenters: 2, serverTypes: 4, servers: 336, hubs: 2, hotPools: 2 });
    expect(summary.switches).toBe(27);
    const cap = await inv.capacity({ type: 'gpu.g1', datacenter: 'dc1', labels: { gpu: 'l40s' } });
    expect(cap.available).toBe(16);
    const out = await exportInventory(inv);
    expect(out).not.toMatch(/password: sim-/);
    const doc = parse(out) as { servers: unknown[] };
    expect(doc.servers).toHaveLength(336);
    const before = await snapshot(t);
    await importInventory(inv, out);
    const after = await snapshot(t);
    expect(after.servers.map((s) => [s.serial, s.bmc_credentials !== null, s.nics])).toEqual(before.servers.map((s) => [s.serial, s.bmc_credentials !== null, s.nics]));
    expect(after.ports).toEqual(before.ports);
    // BMC secrets survive a redacted round trip
    const s0 = await inv.findServerBySerial('AMS1-R01-U01');
    expect((await inv.getBmcCredentials(s0!.id))!.password).toMatch(/^sim-/);
  });

  it('a bad inventory file names the path and line and imports nothing', async () => {
    const bad = EXAMPLE.replace('    type: compute.c2\n    datacenter: dc1\n    rack: r07\n    position: 1\n', '    type: compute.c9\n    datacenter: dc1\n    rack: r07\n    position: 1\n');
    const err = await importInventory(inv, bad, { source: 'dc.yaml' }).then(() => undefined, (e: unknown) => e);
    expect(err).toMatchObject({ code: 'inventory.unknown_server_type' });
    expect((err as Error).message).toMatch(/^servers\.180\.type: unknown server type "compute\.c9".*\(dc\.yaml:\d+\)$/);
    expect((await snapshot(t)).servers).toEqual([]);
    const err2 = await importInventory(inv, 'servers:\n  - serial: 1\n', { source: 'x.yaml' }).then(() => undefined, (e: unknown) => e);
    expect((err2 as Error).message).toMatch(/^servers\.0\.serial: .*\(x\.yaml:2\)$/);
  });

  it('utilization counts servers by state for every type and datacenter that has any, as capacity does one by one', async () => {
    const s = await seed(inv, 5);
    await inv.registerServer({ serial: 'G1', type: 'g1', datacenter: 'dc2', state: 'available' });
    await inv.allocateServers({ type: 'm1', datacenter: 'dc1', count: 2, holder: 'h' });
    await inv.transition({ serverId: s[4]!.id, to: 'maintenance', reason: 'fan' });
    const util = await inv.utilization();
    expect(util.map((c) => [c.type, c.datacenter])).toEqual([['g1', 'dc2'], ['m1', 'dc1']]);
    for (const c of util) expect(c).toEqual(await inv.capacity({ type: c.type, datacenter: c.datacenter }));
    expect(util[1]).toMatchObject({ byState: { allocated: 2, available: 2, maintenance: 1 }, available: 2, total: 5 });
  });

  it('a lone request takes the lowest available server, also one released or moved into its type after the last pick', async () => {
    const s = await seed(inv, 2);
    const reg = (serial: string, type: string) => inv.registerServer({ serial, type, datacenter: 'dc1', state: 'available' });
    const x = await reg('X', 'g1');
    const s2 = await reg('S2', 'm1');
    const s3 = await reg('S3', 'm1');
    const take = async () => (await inv.allocateServers({ type: 'm1', datacenter: 'dc1', holder: 'h' }))[0]!;
    const one = async () => (await take()).id;
    // the one-statement claim returns the whole server (its rack by name) but never reads the BMC credentials back
    const first = await take();
    expect(first).toMatchObject({ id: s[0]!.id, serial: 'S0', rack: 'r1', position: 1, state: 'allocated', holder: 'h', hasBmcCredentials: true, labels: { zone: 'a' } });
    expect(first.nics).toEqual(s[0]!.nics);
    expect(JSON.stringify(first)).not.toContain('hunter0');
    // what the claim answers is what the database now holds
    expect(first).toEqual(await inv.getServer(first.id));
    expect(await take()).toMatchObject({ id: s[1]!.id, rack: 'r1' });
    expect(await take()).toMatchObject({ id: s2.id, rack: null, hasBmcCredentials: false });
    // X sorts between S1 and S2: moved into m1 it is the lowest available one
    await reg('X', 'm1');
    expect(await one()).toBe(x.id);
    await inv.releaseServers({ ids: [s[0]!.id] });
    expect(await one()).toBe(s[0]!.id);
    expect(await one()).toBe(s3.id);
    await expect(one()).rejects.toMatchObject({ code: 'inventory.servers_exhausted' });
  });

  it('a one-statement claim is in the history at once; the next transition writes it down under the same id, in order', async () => {
    const [s0] = await seed(inv, 1);
    const written = async () => (await t.store.db.selectFrom('inv_server_events').select('id').where('server_id', '=', s0!.id).execute()).length;
    const before = await inv.serverHistory(s0!.id);
    expect(before.at(-1)).toMatchObject({ to: 'available' });
    const [a] = await inv.allocateServers({ type: 'm1', datacenter: 'dc1', holder: 'h' });
    const shown = await inv.serverHistory(s0!.id);
    expect(shown.slice(0, -1)).toEqual(before);
    expect(shown.at(-1)).toMatchObject({ serverId: s0!.id, from: 'available', to: 'allocated', reason: 'allocated to h', actor: 'system', at: a!.stateChangedAt });
    expect(await written()).toBe(before.length);
    await inv.releaseServers({ ids: [s0!.id] });
    const after = await inv.serverHistory(s0!.id);
    expect(after.slice(0, shown.length)).toEqual(shown);
    expect(after.slice(shown.length)).toMatchObject([{ from: 'allocated', to: 'available' }]);
    expect(await written()).toBe(after.length);
    // twice more, so that deferred events follow each other
    await inv.allocateServers({ type: 'm1', datacenter: 'dc1', holder: 'h2' });
    await inv.releaseServers({ ids: [s0!.id] });
    expect((await inv.serverHistory(s0!.id)).slice(after.length).map((e) => [e.from, e.to, e.reason])).toEqual([['available', 'allocated', 'allocated to h2'], ['allocated', 'available', 'released']]);
  });

  it('migration 0202 keeps every lifecycle event and keys them by server', async () => {
    const old = await openTestStore(dialect, { migrations: inventoryMigrations.filter((m) => m.name < '0202') });
    try {
      const inv0 = new Inventory({ store: old.store, clock, secrets: SecretBox.random() });
      const s = await seed(inv0, 3);
      await inv0.allocateServers({ type: 'm1', datacenter: 'dc1', count: 2, holder: 'h' });
      await inv0.releaseServers({ holder: 'h' });
      const before = await Promise.all(s.map((x) => inv0.serverHistory(x.id)));
      expect(before.flat().length).toBeGreaterThanOrEqual(7);
      expect(await migrate(old.store, inventoryMigrations)).toEqual(inventoryMigrations.filter((m) => m.name >= '0202').map((m) => m.name));
      expect(await Promise.all(s.map((x) => inv0.serverHistory(x.id)))).toEqual(before);
      await inv0.allocateServers({ type: 'm1', datacenter: 'dc1', holder: 'h2' });
      expect((await inv0.serverHistory(s[0]!.id)).at(-1)).toMatchObject({ from: 'available', to: 'allocated', reason: 'allocated to h2' });
    } finally {
      await old.cleanup();
    }
  });

  it('server allocation agrees with a sequential model', async () => {
    const servers = await seed(inv, 8);
    const ids = servers.map((s) => s.id);
    type Op = { op: 'alloc'; n: number; zone?: 'a' | 'b'; pref: number[] } | { op: 'release'; i: number };
    const opArb: fc.Arbitrary<Op> = fc.oneof(
      { weight: 3, arbitrary: fc.record({ n: fc.integer({ min: 1, max: 3 }), zone: fc.option(fc.constantFrom<'a' | 'b'>('a', 'b'), { nil: undefined }), pref: fc.array(fc.nat(7), { maxLength: 3 }) }).map((r): Op => ({ op: 'alloc', ...r })) },
      { weight: 2, arbitrary: fc.nat(7).map((i): Op => ({ op: 'release', i })) },
    );
    await fc.assert(fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 25 }), async (ops) => {
      await inv.releaseServers({ ids });
      const taken = new Set<number>();
      for (const o of ops) {
        if (o.op === 'release') {
          const r = await inv.releaseServers({ ids: [ids[o.i]!] });
          expect(r[0]!.state).toBe('available');
          taken.delete(o.i);
          continue;
        }
        const ok = (i: number) => !taken.has(i) && (o.zone === undefined || (i % 2 === 0 ? 'a' : 'b') === o.zone);
        const want: number[] = [];
        for (const p of o.pref) if (ok(p) && !want.includes(p) && want.length < o.n) want.push(p);
        for (let i = 0; i < 8 && want.length < o.n; i++) if (ok(i) && !want.includes(i)) want.push(i);
        const got = await inv.allocateServers({ type: 'm1', datacenter: 'dc1', count: o.n, holder: 'm', preferred: o.pref.map((p) => ids[p]!), ...(o.zone ? { labels: { zone: o.zone } } : {}) })
          .then((r) => r.map((s) => ids.indexOf(s.id)), (e: { code?: string }) => e.code);
        if (want.length < o.n) expect(got).toBe('inventory.servers_exhausted');
        else {
          expect(got).toEqual(want);
          want.forEach((i) => taken.add(i));
        }
      }
      const rows = await inv.listServers({ type: 'm1', state: 'allocated' });
      expect(rows.map((r) => ids.indexOf(r.id)).sort()).toEqual([...taken].sort());
    }), { numRuns: dialect === 'sqlite' ? 40 : 12 });
  });
});

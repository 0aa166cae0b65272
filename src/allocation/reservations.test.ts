import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DIALECTS, openTestStore, type TestDb } from '../../test/support/dialects.js';
import { allocMigrations, openWorld, seedWorld, type Seeded, type World } from '../../test/fixtures/alloc-world.js';
import { ManualClock } from '../core/clock.js';
import { Allocations } from './reservations.js';

async function held(t: TestDb) {
  const db = t.store.db;
  const n = async (q: Promise<{ n: number | string }>) => Number((await q).n);
  return {
    servers: await n(db.selectFrom('inv_servers').select((eb) => eb.fn.countAll<number>().as('n')).where('state', '!=', 'available').executeTakeFirstOrThrow()),
    prefixes: await n(db.selectFrom('ipam_prefixes').select((eb) => eb.fn.countAll<number>().as('n')).where('holder', 'is not', null).executeTakeFirstOrThrow()),
    addresses: await n(db.selectFrom('ipam_addresses').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow()),
    vlans: await n(db.selectFrom('ipam_vlan_allocs').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow()),
    dns: await n(db.selectFrom('alloc_dns_names').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow()),
  };
}
const NOTHING = { servers: 0, prefixes: 0, addresses: 0, vlans: 0, dns: 0 };

describe.each(DIALECTS)('reservations on %s', (dialect) => {
  let t: TestDb;
  let w: World;
  let s: Seeded;
  let clock: ManualClock;
  const request = () => ({
    holder: 'order-1',
    servers: [{ type: 'm1', datacenter: 'dc1', count: 3 }],
    prefixes: [{ parentId: s.container, length: 24 }],
    addresses: [{ prefixId: s.net24, count: 2 }],
    floatingIps: [{ poolId: s.floating, count: 2 }],
    vlans: [{ poolId: s.vlanPool }],
    dnsNames: [{ zone: 'example.com', name: 'api.cluster1' }],
  });
  beforeEach(async () => {
    t = await openTestStore(dialect, { migrations: allocMigrations });
    clock = new ManualClock();
    w = openWorld(t.store, clock);
    s = await seedWorld(w);
  });
  afterEach(async () => t?.cleanup());

  it('reserves across domains, commits, and commit survives the TTL', async () => {
    const r = await w.alloc.reserve({ ...request(), ttlMs: 60_000 });
    expect(r.status).toBe('open');
    expect(r.servers).toHaveLength(3);
    expect(r.prefixes.map((p) => p.cidr)).toEqual(['10.128.0.0/24']);
    expect(r.addresses.map((a) => a.address)).toEqual(['10.0.0.1', '10.0.0.2']);
    expect(r.floatingIps.map((a) => a.address)).toEqual(['203.0.113.1', '203.0.113.2']);
    expect(r.vlans.map((v) => v.vlan)).toEqual([100]);
    expect(r.dnsNames.map((d) => d.fqdn)).toEqual(['api.cluster1.example.com']);
    expect(r.servers.every((x) => x.expiresAt === r.expiresAt)).toBe(true);
    const c = await w.alloc.commit(r.id);
    expect(c.status).toBe('committed');
    expect(c.servers.every((x) => x.expiresAt === null)).toBe(true);
    clock.advance(120_000);
    expect(await w.alloc.sweep()).toEqual({ expired: 0, orphans: 0 });
    expect(await held(t)).toEqual({ servers: 3, prefixes: 1, addresses: 4, vlans: 1, dns: 1 });
    const rel = await w.alloc.release(r.id);
    expect(rel.status).toBe('released');
    expect(await held(t)).toEqual(NOTHING);
  });

  it('abort releases everything', async () => {
    const r = await w.alloc.reserve(request());
    expect(await held(t)).toEqual({ servers: 3, prefixes: 1, addresses: 4, vlans: 1, dns: 1 });
    const a = await w.alloc.abort(r.id);
    expect(a).toMatchObject({ status: 'aborted', servers: [], prefixes: [], addresses: [], vlans: [], dnsNames: [] });
    expect(await held(t)).toEqual(NOTHING);
    await expect(w.alloc.commit(r.id)).rejects.toMatchObject({ code: 'reservation.not_open' });
  });

  it('expiry releases everything and refuses a late commit', async () => {
    const r = await w.alloc.reserve({ ...request(), ttlMs: 1000 });
    clock.advance(1000);
    await expect(w.alloc.commit(r.id)).rejects.toMatchObject({ code: 'reservation.expired' });
    expect(await w.alloc.sweep()).toEqual({ expired: 1, orphans: 0 });
    expect((await w.alloc.get(r.id)).status).toBe('expired');
    expect(await held(t)).toEqual(NOTHING);
    // everything is reusable
    const again = await w.alloc.reserve(request());
    expect(again.addresses.map((a) => a.address)).toEqual(['10.0.0.1', '10.0.0.2']);
  });

  it('is all or nothing: a shortfall in the last domain allocates nothing and names the item', async () => {
    const before = await held(t);
    const err = await w.alloc.reserve({ ...request(), vlans: [{ poolId: s.vlanPool, count: 101 }] }).then(() => undefined, (e: unknown) => e);
    expect(err).toMatchObject({ code: 'ipam.vlan_exhausted' });
    expect((err as Error).message).toMatch(/^vlans\.0: VLAN pool tenant/);
    expect(await held(t)).toEqual(before);
    const err2 = await w.alloc.reserve({ ...request(), servers: [{ type: 'nope', datacenter: 'dc1' }] }).then(() => undefined, (e: unknown) => e);
    expect((err2 as Error).message).toMatch(/^servers\.0\.type: unknown server type "nope"/);
    expect(await held(t)).toEqual(before);
    expect(await t.store.db.selectFrom('alloc_reservations').selectAll().execute()).toEqual([]);
  });

  it('is idempotent by key', async () => {
    const a = await w.alloc.reserve({ ...request(), key: 'run-1:reserve' });
    const b = await w.alloc.reserve({ ...request(), key: 'run-1:reserve' });
    expect(b.id).toBe(a.id);
    expect(await held(t)).toEqual({ servers: 3, prefixes: 1, addresses: 4, vlans: 1, dns: 1 });
  });

  it('feasibility answers with one reason per shortfall and allocates nothing', async () => {
    expect(await w.alloc.feasibility(request())).toEqual({ feasible: true, shortfalls: [] });
    await w.alloc.reserve({ holder: 'x', dnsNames: [{ zone: 'example.com', name: 'api.cluster1' }] });
    const before = await held(t);
    const f = await w.alloc.feasibility({
      servers: [{ type: 'm1', datacenter: 'dc1', count: 5 }, { type: 'gpu', datacenter: 'dc1' }],
      prefixes: [{ parentId: s.container, length: 24, count: 300 }],
      addresses: [{ prefixId: s.net24, count: 300 }],
      floatingIps: [{ poolId: s.floating, count: 2 }],
      vlans: [{ poolId: s.vlanPool, count: 101 }],
      dnsNames: [{ zone: 'example.com', name: 'api.cluster1' }],
    });
    expect(f.feasible).toBe(false);
    expect(f.shortfalls.map((x) => [x.path, x.requested, x.available])).toEqual([
      ['servers.0', 5, 4],
      ['servers.1', 1, 0],
      ['prefixes.0', 300, 256],
      ['addresses.0', 300, 254],
      ['vlans.0', 101, 100],
      ['dnsNames.0', 1, 0],
    ]);
    expect(f.shortfalls[0]!.reason).toBe('5 server(s) of type m1 requested in dc1, 4 available');
    expect(f.shortfalls[1]!.reason).toMatch(/unknown server type "gpu"/);
    expect(await held(t)).toEqual(before);
  });

  it('publishes reservation events after commit', async () => {
    const events: [string, string][] = [];
    const alloc = new Allocations({ store: t.store, inventory: w.inventory, ipam: w.ipam, clock, events: (type, subject) => { events.push([type, subject]); } });
    const r = await alloc.reserve({ holder: 'x', vlans: [{ poolId: s.vlanPool }], ttlMs: 1000 });
    await alloc.commit(r.id);
    const r2 = await alloc.reserve({ holder: 'y', vlans: [{ poolId: s.vlanPool }], ttlMs: 1000 });
    clock.advance(1000);
    await alloc.sweep();
    expect(events).toEqual([['reservation.created', r.id], ['reservation.committed', r.id], ['reservation.created', r2.id], ['reservation.expired', r2.id]]);
  });
});

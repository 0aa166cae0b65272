import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DIALECTS, openTestStore, type TestDb } from '../../test/support/dialects.js';
import { ManualClock } from '../core/clock.js';
import { Ipam } from './ipam.js';
import { ipamMigrations } from './migrations.js';

async function snapshot(t: TestDb) {
  const db = t.store.db;
  return {
    prefixes: await db.selectFrom('ipam_prefixes').selectAll().orderBy('id').execute(),
    addresses: await db.selectFrom('ipam_addresses').selectAll().orderBy('id').execute(),
    pools: await db.selectFrom('ipam_vlan_pools').selectAll().orderBy('id').execute(),
    vlans: await db.selectFrom('ipam_vlan_allocs').selectAll().orderBy('id').execute(),
  };
}

describe.each(DIALECTS)('ipam on %s', (dialect) => {
  let t: TestDb;
  let ipam: Ipam;
  let clock: ManualClock;
  beforeEach(async () => {
    t = await openTestStore(dialect, { migrations: ipamMigrations });
    clock = new ManualClock();
    ipam = new Ipam({ store: t.store, clock });
  });
  afterEach(async () => t?.cleanup());

  it('hands out the next free address, skipping network, broadcast and gateway', async () => {
    const p = await ipam.createPrefix({ cidr: '10.0.0.0/29', scope: 'dc1', gateway: '10.0.0.1' });
    expect(p.reserved.map((r) => r.start)).toEqual(['10.0.0.0', '10.0.0.1', '10.0.0.7']);
    const got: string[] = [];
    for (let i = 0; i < 5; i++) got.push((await ipam.allocateAddress({ prefixId: p.id, holder: 'h' })).address);
    expect(got).toEqual(['10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.5', '10.0.0.6']);
    await expect(ipam.allocateAddress({ prefixId: p.id, holder: 'h' })).rejects.toMatchObject({ code: 'ipam.address_exhausted' });
    await ipam.releaseAddress({ prefixId: p.id, address: '10.0.0.4' });
    expect((await ipam.allocateAddress({ prefixId: p.id, holder: 'h' })).address).toBe('10.0.0.4');
    const u = await ipam.prefixUtilization(p.id);
    expect(u).toMatchObject({ size: '8', reserved: '3', allocated: '5', free: '0', percent: 100 });
  });

  it('requested address, fallback, bulk all-or-nothing, idempotency keys', async () => {
    const p = await ipam.createPrefix({ cidr: '192.168.1.0/28', scope: 'dc1', dhcpRange: { start: '192.168.1.10', end: '192.168.1.14' } });
    const a = await ipam.allocateAddress({ prefixId: p.id, holder: 'x', address: '192.168.1.5' });
    expect(a.cidr).toBe('192.168.1.5/28');
    await expect(ipam.allocateAddress({ prefixId: p.id, holder: 'y', address: '192.168.1.5' })).rejects.toMatchObject({ code: 'ipam.address_in_use' });
    await expect(ipam.allocateAddress({ prefixId: p.id, holder: 'y', address: '192.168.1.11' })).rejects.toMatchObject({ code: 'ipam.address_reserved' });
    const fb = await ipam.allocateAddress({ prefixId: p.id, holder: 'y', address: '192.168.1.5', fallback: true });
    expect(fb.address).toBe('192.168.1.1');
    // free now: .2 .3 .4 .6 .7 .8 .9 (7)
    await expect(ipam.allocateAddresses({ prefixId: p.id, holder: 'z', count: 8 })).rejects.toMatchObject({ code: 'ipam.address_exhausted' });
    expect((await ipam.prefixUtilization(p.id)).allocated).toBe('2');
    const bulk = await ipam.allocateAddresses({ prefixId: p.id, holder: 'z', count: 7, key: 'k1' });
    expect(bulk.map((b) => b.address)).toEqual(['192.168.1.2', '192.168.1.3', '192.168.1.4', '192.168.1.6', '192.168.1.7', '192.168.1.8', '192.168.1.9']);
    const again = await ipam.allocateAddresses({ prefixId: p.id, holder: 'z', count: 7, key: 'k1' });
    expect(again.map((b) => b.id)).toEqual(bulk.map((b) => b.id));
  });

  it('IPv6 /64 allocates without scanning and carves child prefixes', async () => {
    const c = await ipam.createPrefix({ cidr: '2001:db8::/48', scope: 'dc1', kind: 'container' });
    const n1 = await ipam.allocatePrefix({ parentId: c.id, length: 64, holder: 'cluster-a' });
    const n2 = await ipam.allocatePrefix({ parentId: c.id, length: 64, holder: 'cluster-b' });
    expect([n1.cidr, n2.cidr]).toEqual(['2001:db8::/64', '2001:db8:0:1::/64']);
    const a = await ipam.allocateAddresses({ prefixId: n1.id, holder: 'h', count: 3 });
    expect(a.map((x) => x.address)).toEqual(['2001:db8::1', '2001:db8::2', '2001:db8::3']);
    const far = await ipam.allocateAddress({ prefixId: n1.id, holder: 'h', address: '2001:db8::ffff:ffff:ffff:fffe' });
    expect(far.address).toBe('2001:db8::ffff:ffff:ffff:fffe');
    const u = await ipam.prefixUtilization(n1.id);
    expect(u.size).toBe((1n << 64n).toString());
    expect(u.allocated).toBe('4');
    const cu = await ipam.prefixUtilization(c.id);
    expect(cu.allocated).toBe((2n << 64n).toString());
  });

  it('carves aligned child prefixes around existing ones and reuses released space', async () => {
    const c = await ipam.createPrefix({ cidr: '10.10.0.0/22', scope: 'dc1', kind: 'container' });
    const manual = await ipam.createPrefix({ cidr: '10.10.1.0/24', scope: 'dc1' });
    expect(manual.parentId).toBe(c.id);
    const a = await ipam.allocatePrefix({ parentId: c.id, length: 25, holder: 'a' });
    const b = await ipam.allocatePrefix({ parentId: c.id, length: 24, holder: 'b' });
    const d = await ipam.allocatePrefix({ parentId: c.id, length: 26, holder: 'd' });
    expect([a.cidr, b.cidr, d.cidr]).toEqual(['10.10.0.0/25', '10.10.2.0/24', '10.10.0.128/26']);
    await ipam.allocatePrefix({ parentId: c.id, length: 24, holder: 'e' });
    await expect(ipam.allocatePrefix({ parentId: c.id, length: 24, holder: 'f' })).rejects.toMatchObject({ code: 'ipam.prefix_exhausted' });
    expect(await ipam.carvable(c.id, 26, 10)).toBe(1);
    await ipam.releasePrefix(a.id);
    expect((await ipam.allocatePrefix({ parentId: c.id, length: 26, holder: 'g' })).cidr).toBe('10.10.0.0/26');
  });

  it('never carves into a child created across a reserved range of the container', async () => {
    // the container's cursor skips its reserved 10.11.0.0-3 to .4; a child created by hand then covers .0-.7,
    // so the cursor lies inside a child: the next /30 must not be .4
    const c = await ipam.createPrefix({ cidr: '10.11.0.0/24', scope: 'dc1', kind: 'container', reserved: [{ start: '10.11.0.0', end: '10.11.0.3' }] });
    const manual = await ipam.createPrefix({ cidr: '10.11.0.0/29', scope: 'dc1' });
    expect(manual.parentId).toBe(c.id);
    const got = [];
    for (let i = 0; i < 3; i++) got.push((await ipam.allocatePrefix({ parentId: c.id, length: 30, holder: `h${i}` })).cidr);
    expect(got).toEqual(['10.11.0.8/30', '10.11.0.12/30', '10.11.0.16/30']);
    expect(await ipam.carvable(c.id, 29, 100)).toBe(29); // .24 to .255 in /29s: 29 blocks
    // a cursor left inside that child by an earlier version: the walk still steps over the child
    await ipam.releasePrefix((await ipam.listPrefixes({ parentId: c.id, holder: 'h0' }))[0]!.id);
    await t.store.db.updateTable('ipam_prefixes').set({ cursor_hex: '0000000000000000000000000a0b0004' }).where('id', '=', c.id).execute();
    expect((await new Ipam({ store: t.store }).allocatePrefix({ parentId: c.id, length: 30, holder: 'h3' })).cidr).toBe('10.11.0.8/30');
  });

  it('VLAN pools: never 0 or 4095, reserved ids skipped, release and reuse', async () => {
    const pool = await ipam.createVlanPool({ name: 'dc1-tenant', scope: 'dc1', min: 100, max: 105, reserved: [101, [103, 104]] });
    const got = (await ipam.allocateVlans({ poolId: pool.id, holder: 'h', count: 3 })).map((v) => v.vlan);
    expect(got).toEqual([100, 102, 105]);
    await expect(ipam.allocateVlan({ poolId: pool.id, holder: 'h' })).rejects.toMatchObject({ code: 'ipam.vlan_exhausted' });
    await ipam.releaseVlan({ poolId: pool.name, vlan: 102 });
    expect((await ipam.allocateVlan({ poolId: pool.id, holder: 'h' })).vlan).toBe(102);
    const full = await ipam.createVlanPool({ name: 'all', scope: 'dc1' });
    expect(full).toMatchObject({ min: 1, max: 4094 });
    const vni = await ipam.createVlanPool({ name: 'vni', scope: 'dc1', kind: 'vni', min: 10000 });
    expect((await ipam.allocateVlan({ poolId: vni.id, holder: 'h', vlan: 5_000_000 })).vlan).toBe(5_000_000);
    expect((await ipam.vlanPoolUtilization(pool.id))).toMatchObject({ size: '6', reserved: '3', allocated: '3', free: '0' });
  });

  it('floating IPs: allocate, associate, release', async () => {
    const pool = await ipam.createPrefix({ cidr: '203.0.113.0/30', scope: 'public', kind: 'floating' });
    const f = await ipam.allocateFloatingIp({ poolId: pool.id, holder: 'proj-a' });
    expect(f.address).toBe('203.0.113.1');
    const assoc = await ipam.associateFloatingIp(f.id, 'srv_1');
    expect(assoc.target).toBe('srv_1');
    await ipam.allocateFloatingIp({ poolId: pool.id, holder: 'proj-a' });
    await expect(ipam.allocateFloatingIp({ poolId: pool.id, holder: 'proj-a' })).rejects.toMatchObject({ code: 'ipam.address_exhausted' });
    const net = await ipam.createPrefix({ cidr: '10.1.0.0/24', scope: 'dc1' });
    const a = await ipam.allocateAddress({ prefixId: net.id, holder: 'x' });
    await expect(ipam.associateFloatingIp(a.id, 'srv_1')).rejects.toMatchObject({ code: 'ipam.wrong_kind' });
  });

  it('holds: commit keeps, expiry and release drop everything of a reservation', async () => {
    const c = await ipam.createPrefix({ cidr: '10.20.0.0/16', scope: 'dc1', kind: 'container' });
    const pool = await ipam.createVlanPool({ name: 'p', scope: 'dc1' });
    const hold = { reservationId: 'rsv_a', expiresAt: clock.now() + 1000 };
    const net = await ipam.allocatePrefix({ parentId: c.id, length: 24, holder: 'h', hold });
    await ipam.allocateAddresses({ prefixId: net.id, holder: 'h', count: 3, hold });
    await ipam.allocateVlan({ poolId: pool.id, holder: 'h', hold });
    const hold2 = { reservationId: 'rsv_b', expiresAt: clock.now() + 1000 };
    await ipam.allocateVlan({ poolId: pool.id, holder: 'h2', hold: hold2 });
    await t.store.transaction((trx) => ipam.commitHold(trx, 'rsv_b'));
    expect(await ipam.sweepExpired(clock.now())).toBe(0);
    clock.advance(1000);
    expect(await ipam.sweepExpired()).toBe(1 + 1);
    const s = await snapshot(t);
    expect(s.prefixes.map((p) => p.id)).toEqual([c.id]);
    expect(s.addresses).toEqual([]);
    expect(s.vlans.map((v) => v.vid)).toEqual([2]);
    // the space is reusable
    expect((await ipam.allocatePrefix({ parentId: c.id, length: 24, holder: 'h' })).cidr).toBe('10.20.0.0/24');
    expect((await ipam.allocateVlan({ poolId: pool.id, holder: 'h' })).vlan).toBe(1);
  });

  it('bad input gets an error naming the field and changes nothing', async () => {
    const p = await ipam.createPrefix({ cidr: '10.0.0.0/24', scope: 'dc1' });
    const c6 = await ipam.createPrefix({ cidr: '2001:db8::/32', scope: 'dc1', kind: 'container' });
    const pool = await ipam.createVlanPool({ name: 'v', scope: 'dc1' });
    const before = await snapshot(t);
    const cases: [() => Promise<unknown>, string, RegExp][] = [
      [() => ipam.createPrefix({ cidr: '10.0.0.0/33', scope: 'dc1' }), 'ipam.invalid_prefix_length', /^cidr: prefix length \/33/],
      [() => ipam.createPrefix({ cidr: '10.0.0.1/24', scope: 'dc1' }), 'ipam.host_bits_set', /^cidr: .*network is 10\.0\.0\.0\/24/],
      [() => ipam.createPrefix({ cidr: '2001:db8::1/64', scope: 'dc1' }), 'ipam.host_bits_set', /^cidr:/],
      [() => ipam.createPrefix({ cidr: '::ffff:10.0.0.0/120', scope: 'dc1' }), 'ipam.ipv4_mapped', /^cidr: .*10\.0\.0\.0/],
      [() => ipam.createPrefix({ cidr: '10.0.0.128/25', scope: 'dc1' }), 'ipam.parent_not_container', /^cidr:/],
      [() => ipam.createPrefix({ cidr: '10.0.0.0/24', scope: 'dc1' }), 'ipam.prefix_overlap', /^cidr: 10\.0\.0\.0\/24 overlaps/],
      [() => ipam.createPrefix({ cidr: '10.0.0.0/16', scope: 'dc1' }), 'ipam.prefix_overlap', /^cidr:/],
      [() => ipam.createPrefix({ cidr: '10.0.1.0/24', scope: 'dc1', gateway: '10.0.2.1' }), 'ipam.outside_prefix', /^gateway:/],
      [() => ipam.createPrefix({ cidr: 'banana', scope: 'dc1' }), 'ipam.invalid_prefix', /^cidr:/],
      [() => ipam.createPrefix({ cidr: '10.0.1.0/24', scope: '' }), 'ipam.invalid_input', /^scope:/],
      [() => ipam.allocateAddress({ prefixId: p.id, holder: 'h', address: '::ffff:10.0.0.5' }), 'ipam.ipv4_mapped', /^address: .*IPv4.*10\.0\.0\.5/],
      [() => ipam.allocateAddress({ prefixId: p.id, holder: 'h', address: '10.0.1.5' }), 'ipam.outside_prefix', /^address:/],
      [() => ipam.allocateAddress({ prefixId: p.id, holder: 'h', address: '2001:db8::5' }), 'ipam.family_mismatch', /^address:/],
      [() => ipam.allocateAddress({ prefixId: 'pfx_nope', holder: 'h' }), 'ipam.prefix_not_found', /^prefixId:/],
      [() => ipam.allocateAddresses({ prefixId: p.id, holder: 'h', count: 0 }), 'ipam.invalid_input', /^count:/],
      [() => ipam.allocateAddress({ prefixId: p.id, holder: '' }), 'ipam.invalid_input', /^holder:/],
      [() => ipam.allocateAddress({ prefixId: c6.id, holder: 'h' }), 'ipam.wrong_kind', /^prefixId:/],
      [() => ipam.allocatePrefix({ parentId: c6.id, length: 129, holder: 'h' }), 'ipam.invalid_input', /^length:/],
      [() => ipam.allocatePrefix({ parentId: c6.id, length: 16, holder: 'h' }), 'ipam.invalid_prefix_length', /^length:/],
      [() => ipam.allocatePrefix({ parentId: p.id, length: 28, holder: 'h' }), 'ipam.wrong_kind', /^parentId:/],
      [() => ipam.allocateVlan({ poolId: pool.id, holder: 'h', vlan: -1 }), 'ipam.invalid_vlan', /^vlan: -1/],
      [() => ipam.allocateVlan({ poolId: pool.id, holder: 'h', vlan: 0 }), 'ipam.invalid_vlan', /^vlan: 0/],
      [() => ipam.allocateVlan({ poolId: pool.id, holder: 'h', vlan: 4096 }), 'ipam.invalid_vlan', /^vlan: 4096/],
      [() => ipam.allocateVlan({ poolId: pool.id, holder: 'h', vlan: 4095 }), 'ipam.invalid_vlan', /^vlan: 4095/],
      [() => ipam.createVlanPool({ name: 'bad', scope: 'dc1', min: 0 }), 'ipam.invalid_vlan', /^min: 0/],
      [() => ipam.createVlanPool({ name: 'bad', scope: 'dc1', max: 4096 }), 'ipam.invalid_vlan', /^max: 4096/],
      [() => ipam.createVlanPool({ name: 'bad', scope: 'dc1', reserved: [4095] }), 'ipam.invalid_vlan', /^reserved\.0:/],
      [() => ipam.createVlanPool({ name: 'v', scope: 'dc1' }), 'ipam.pool_exists', /^name:/],
    ];
    for (const [f, code, msg] of cases) {
      const err = await f().then(() => undefined, (e: unknown) => e);
      expect(err, `${code} expected`).toMatchObject({ code });
      expect((err as Error).message).toMatch(msg);
    }
    expect(await snapshot(t)).toEqual(before);
    // the same CIDR in another scope (routing domain) is not an overlap
    expect((await ipam.createPrefix({ cidr: '10.0.0.0/24', scope: 'vrf-blue' })).scope).toBe('vrf-blue');
  });
});

describe.each(DIALECTS)('address listing on %s', (dialect) => {
  let t: TestDb;
  afterEach(async () => t?.cleanup());

  it('pages with the last id as the cursor, across prefixes', async () => {
    t = await openTestStore(dialect, { migrations: ipamMigrations });
    const ipam = new Ipam({ store: t.store });
    const a = await ipam.createPrefix({ cidr: '10.0.0.0/29', scope: 'dc1' });
    const b = await ipam.createPrefix({ cidr: '10.0.1.0/29', scope: 'dc1' });
    await ipam.allocateAddresses({ prefixId: a.id, holder: 'h', count: 6 });
    await ipam.allocateAddresses({ prefixId: b.id, holder: 'h', count: 6 });
    const seen: string[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await ipam.listAddresses({ holder: 'h', limit: 5, ...(after ? { after } : {}) });
      seen.push(...page.map((x) => x.address));
      if (page.length < 5) break;
      after = page[page.length - 1]!.id;
    }
    expect(seen).toHaveLength(12);
    expect(new Set(seen).size).toBe(12);
    expect((await ipam.listAddresses({ prefixId: a.id, after: '10.0.0.3' })).map((x) => x.address)).toEqual(['10.0.0.4', '10.0.0.5', '10.0.0.6']);
    await expect(ipam.listAddresses({ after: 'nope' })).rejects.toMatchObject({ code: 'ipam.invalid_cursor' });
  });
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DIALECTS } from './support/dialects.js';
import { makeFullHarness, type FullHarness } from './api-fixtures.js';
import { importInventory } from '../src/inventory/yaml.js';
import { SMALL_SITE } from './fixtures/alloc-site.js';


/**
 * Reservations and feasibility over HTTP: a reservation across servers,
 * addresses, a child prefix, VLANs, floating IPs and DNS names is all or
 * nothing; commit, abort, release and expiry; idempotency keys; paging;
 * errors that name the field; who may do what; BMC secrets never shown.
 */
describe.each(DIALECTS)('API reservations and feasibility on %s', (dialect) => {
  let h: FullHarness;
  let reader: string;
  let member: string;
  let net: string;
  let container: string;
  let floating: string;
  let vlanPool: string;

  const util = async () => ({
    servers: (await h.inventory.capacity({ type: 'edge.e1', datacenter: 'dc1' })).available,
    addresses: Number((await h.ipam.prefixUtilization(net)).allocated),
    prefixes: (await h.ipam.listPrefixes({ parentId: container })).length,
    floating: Number((await h.ipam.prefixUtilization(floating)).allocated),
    vlans: Number((await h.ipam.vlanPoolUtilization(vlanPool)).allocated),
  });

  beforeAll(async () => {
    h = await makeFullHarness(dialect);
    await h.iam.createProject({ name: 'p1' });
    reader = (await h.userWith('alloc-reader', 'reader', { project: 'p1' })).token;
    member = (await h.userWith('alloc-member', 'member', { project: 'p1' })).token;
    await importInventory(h.inventory, SMALL_SITE);
    net = (await h.ipam.createPrefix({ cidr: '10.30.0.0/29', scope: 'dc1' })).id;
    container = (await h.ipam.createPrefix({ cidr: '10.40.0.0/16', scope: 'dc1', kind: 'container' })).id;
    floating = (await h.ipam.createPrefix({ cidr: '198.51.100.0/28', scope: 'dc1', kind: 'floating' })).id;
    vlanPool = (await h.ipam.createVlanPool({ name: 'tenant', scope: 'dc1', min: 100, max: 103 })).id;
  });
  afterAll(async () => h?.cleanupAll());

  it('answers feasibility with one reason per shortfall, allocating nothing', async () => {
    const before = await util();
    const ok = await h.req('POST', '/api/v1/allocations/feasibility', { token: reader, body: { servers: [{ type: 'edge.e1', datacenter: 'dc1', count: 4 }], vlans: [{ poolId: vlanPool, count: 4 }] } });
    expect(ok.statusCode, ok.body).toBe(200);
    expect(ok.json()).toEqual({ feasible: true, shortfalls: [] });
    const no = await h.req('POST', '/api/v1/allocations/feasibility', {
      token: reader,
      body: { servers: [{ type: 'edge.e1', datacenter: 'dc1', count: 5 }], addresses: [{ prefixId: net, count: 2 }], vlans: [{ poolId: vlanPool, count: 9 }] },
    });
    expect(no.statusCode, no.body).toBe(200);
    const f = no.json();
    expect(f.feasible).toBe(false);
    expect(f.shortfalls.map((s: any) => s.path).sort()).toEqual(['servers.0', 'vlans.0']);
    const srv = f.shortfalls.find((s: any) => s.path === 'servers.0');
    expect(srv).toMatchObject({ resource: 'servers', requested: 5, available: 4 });
    expect(srv.reason).toContain('edge.e1');
    expect(await util()).toEqual(before);
  });

  it('rejects bad requests with a problem that names the field, and changes nothing', async () => {
    const before = await util();
    const cases: [unknown, RegExp][] = [
      [{ servers: [{ type: 'edge.e1', datacenter: 'dc1', count: 0 }] }, /servers\.0\.count/],
      [{ servers: [{ type: 'edge.e1', datacenter: 'dc1', cuont: 2 }] }, /servers\.0.*cuont/],
      [{ vlan: [{ poolId: vlanPool }] }, /vlan/],
      [{ dnsNames: [{ zone: 'example.com', name: '-bad-' }] }, /dnsNames\.0\.name/],
    ];
    for (const [body, detail] of cases) {
      const r = await h.req('POST', '/api/v1/allocations/feasibility', { token: reader, body });
      expect(r.statusCode, r.body).toBe(400);
      expect(r.headers['content-type']).toContain('application/problem+json');
      expect(r.json().detail ?? JSON.stringify(r.json())).toMatch(detail);
      const rr = await h.req('POST', '/api/v1/allocations/reservations', { token: h.adminToken, body: { ...(body as object), holder: 'bad' } });
      expect(rr.statusCode, rr.body).toBe(400);
    }
    const noHolder = await h.req('POST', '/api/v1/allocations/reservations', { token: h.adminToken, body: { servers: [{ type: 'edge.e1', datacenter: 'dc1' }] } });
    expect(noHolder.statusCode).toBe(400);
    expect(JSON.stringify(noHolder.json())).toContain('holder');
    expect(await util()).toEqual(before);
  });

  it('reserves across domains, commits, lists with paging, and releases everything', async () => {
    const before = await util();
    const body = {
      holder: 'order-42', ttlMs: 60_000,
      servers: [{ type: 'edge.e1', datacenter: 'dc1', count: 2 }],
      addresses: [{ prefixId: net, count: 2 }],
      prefixes: [{ parentId: container, length: 24 }],
      floatingIps: [{ poolId: floating, count: 1 }],
      vlans: [{ poolId: vlanPool, count: 1 }],
      dnsNames: [{ zone: 'example.com', name: 'web1' }],
    };
    const r = await h.req('POST', '/api/v1/allocations/reservations', { token: h.adminToken, body });
    expect(r.statusCode, r.body).toBe(201);
    const rsv = r.json();
    expect(rsv).toMatchObject({ status: 'open', holder: 'order-42' });
    expect(rsv.servers).toHaveLength(2);
    expect(rsv.addresses).toHaveLength(2);
    expect(rsv.prefixes[0].cidr).toMatch(/^10\.40\.\d+\.0\/24$/);
    expect(rsv.floatingIps).toHaveLength(1);
    expect(rsv.vlans[0].vlan).toBeGreaterThanOrEqual(100);
    expect(rsv.dnsNames[0].fqdn).toBe('web1.example.com');
    expect(r.body).not.toMatch(/bmc-canary/);
    expect(await util()).toEqual({ servers: before.servers - 2, addresses: before.addresses + 2, prefixes: before.prefixes + 1, floating: before.floating + 1, vlans: before.vlans + 1 });

    // the same DNS name cannot be held twice
    const dup = await h.req('POST', '/api/v1/allocations/reservations', { token: h.adminToken, body: { holder: 'order-43', dnsNames: [{ zone: 'example.com', name: 'web1' }] } });
    expect(dup.statusCode, dup.body).toBe(409);

    const got = await h.req('GET', `/api/v1/allocations/reservations/${rsv.id}`, { token: reader });
    expect(got.statusCode).toBe(200);
    expect(got.json().servers.map((s: any) => s.id).sort()).toEqual(rsv.servers.map((s: any) => s.id).sort());
    expect(got.body).not.toMatch(/bmc-canary/);

    const c = await h.req('POST', `/api/v1/allocations/reservations/${rsv.id}/commit`, { token: h.adminToken });
    expect(c.statusCode, c.body).toBe(200);
    expect(c.json().status).toBe('committed');
    // committing twice is harmless; aborting a committed reservation is a conflict
    expect((await h.req('POST', `/api/v1/allocations/reservations/${rsv.id}/commit`, { token: h.adminToken })).json().status).toBe('committed');
    const ab = await h.req('POST', `/api/v1/allocations/reservations/${rsv.id}/abort`, { token: h.adminToken });
    expect(ab.statusCode).toBe(409);
    expect(ab.json().code).toBe('reservation.not_open');

    // list: filters and cursor paging (newest first)
    for (let i = 0; i < 3; i++) {
      const x = await h.req('POST', '/api/v1/allocations/reservations', { token: h.adminToken, body: { holder: 'pager', vlans: [{ poolId: vlanPool }] } });
      expect(x.statusCode, x.body).toBe(201);
      await h.req('POST', `/api/v1/allocations/reservations/${x.json().id}/abort`, { token: h.adminToken, body: { reason: 'paging test' } });
    }
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page: any = (await h.req('GET', `/api/v1/allocations/reservations?holder=pager&limit=2${cursor ? `&cursor=${cursor}` : ''}`, { token: reader })).json();
      for (const x of page.items) {
        expect(x).toMatchObject({ holder: 'pager', status: 'aborted', reason: 'paging test' });
        seen.push(x.id);
      }
      cursor = page.nextCursor;
    } while (cursor);
    expect(seen).toHaveLength(3);
    expect([...seen].sort().reverse()).toEqual(seen);
    const committed = (await h.req('GET', '/api/v1/allocations/reservations?status=committed', { token: reader })).json().items;
    expect(committed.map((x: any) => x.id)).toEqual([rsv.id]);

    const rel = await h.req('POST', `/api/v1/allocations/reservations/${rsv.id}/release`, { token: h.adminToken, body: { reason: 'order deleted' } });
    expect(rel.statusCode, rel.body).toBe(200);
    expect(rel.json()).toMatchObject({ status: 'released', reason: 'order deleted', servers: [], addresses: [], vlans: [], dnsNames: [] });
    expect(await util()).toEqual(before);
  });

  it('is all or nothing: a shortfall in one item leaves everything else free', async () => {
    const before = await util();
    const r = await h.req('POST', '/api/v1/allocations/reservations', {
      token: h.adminToken,
      body: { holder: 'too-big', servers: [{ type: 'edge.e1', datacenter: 'dc1', count: 1 }], addresses: [{ prefixId: net, count: 1 }], vlans: [{ poolId: vlanPool, count: 5 }] },
    });
    expect(r.statusCode, r.body).toBe(409);
    expect(r.json().detail).toMatch(/vlan|VLAN/);
    expect(await util()).toEqual(before);
    expect((await h.req('GET', '/api/v1/allocations/reservations?holder=too-big', { token: reader })).json().items).toEqual([]);
  });

  it('aborts, expires after the TTL, and keeps an idempotency key to one reservation', async () => {
    const before = await util();
    const body = { holder: 'idem', key: 'order-7/attempt', servers: [{ type: 'edge.e1', datacenter: 'dc1' }] };
    const a = await h.req('POST', '/api/v1/allocations/reservations', { token: h.adminToken, body });
    const b = await h.req('POST', '/api/v1/allocations/reservations', { token: h.adminToken, body });
    expect(a.statusCode, a.body).toBe(201);
    expect(b.json().id).toBe(a.json().id);
    expect((await util()).servers).toBe(before.servers - 1);
    const ab = await h.req('POST', `/api/v1/allocations/reservations/${a.json().id}/abort`, { token: h.adminToken, body: { reason: 'customer cancelled' } });
    expect(ab.json()).toMatchObject({ status: 'aborted', reason: 'customer cancelled', servers: [] });
    expect(await util()).toEqual(before);
    const late = await h.req('POST', `/api/v1/allocations/reservations/${a.json().id}/commit`, { token: h.adminToken });
    expect(late.statusCode).toBe(409);
    expect(late.json().detail).toContain('aborted');

    const short = await h.req('POST', '/api/v1/allocations/reservations', { token: h.adminToken, body: { holder: 'short', ttlMs: 1000, addresses: [{ prefixId: net }], vlans: [{ poolId: vlanPool }] } });
    expect(short.statusCode, short.body).toBe(201);
    expect((await util()).vlans).toBe(before.vlans + 1);
    const swept = await h.allocations.sweep(Date.now() + 2000);
    expect(swept.expired).toBeGreaterThanOrEqual(1);
    const gone = await h.req('GET', `/api/v1/allocations/reservations/${short.json().id}`, { token: reader });
    expect(gone.json()).toMatchObject({ status: 'expired', addresses: [], vlans: [] });
    expect(await util()).toEqual(before);
    expect((await h.req('POST', `/api/v1/allocations/reservations/${short.json().id}/commit`, { token: h.adminToken })).statusCode).toBe(409);
  });

  it('with waitTimeoutMs starts a run that reserves once the request can be met; refuses at once what can never be met', async () => {
    const body = { holder: 'patient', waitTimeoutMs: 3_600_000, key: 'patient-1', servers: [{ type: 'edge.e1', datacenter: 'dc1', count: 5 }] };
    const r = await h.req('POST', '/api/v1/allocations/reservations', { token: h.adminToken, body });
    expect(r.statusCode, r.body).toBe(202);
    expect(r.json().run).toMatchObject({ workflow: 'allocation.reserve', labels: { holder: 'patient' } });
    // the same key is the same run
    expect((await h.req('POST', '/api/v1/allocations/reservations', { token: h.adminToken, body })).json().run.id).toBe(r.json().run.id);
    const never = await h.req('POST', '/api/v1/allocations/reservations', { token: h.adminToken, body: { ...body, key: 'patient-2', servers: [{ type: 'no.such.type', datacenter: 'dc1' }] } });
    expect(never.statusCode, never.body).toBe(400);
    expect(never.json()).toMatchObject({ code: 'allocation.unmeetable' });
    expect(never.json().detail).toMatch(/^servers\.0: .*no\.such\.type.*waiting would not help/);
  });

  it('takes prefixes written as <scope>:<cidr> as well as by id', async () => {
    const before = await util();
    const f = await h.req('POST', '/api/v1/allocations/feasibility', { token: reader, body: { addresses: [{ prefixId: 'dc1:10.30.0.0/29', count: 99 }], prefixes: [{ parentId: 'dc1:10.40.0.0/16', length: 24 }], floatingIps: [{ poolId: 'dc1:198.51.100.0/28' }] } });
    expect(f.statusCode, f.body).toBe(200);
    expect(f.json().shortfalls.map((x: any) => x.path)).toEqual(['addresses.0']);
    const unknown = await h.req('POST', '/api/v1/allocations/feasibility', { token: reader, body: { addresses: [{ prefixId: 'dc9:10.30.0.0/29' }] } });
    expect(unknown.json().shortfalls[0]).toMatchObject({ path: 'addresses.0', code: 'ipam.prefix_not_found' });
    expect(unknown.json().shortfalls[0].reason).toContain('dc9:10.30.0.0/29');
    const r = await h.req('POST', '/api/v1/allocations/reservations', { token: h.adminToken, body: { holder: 'by-cidr', addresses: [{ prefixId: 'dc1:10.30.0.0/29' }], prefixes: [{ parentId: 'dc1:10.40.0.0/16', length: 24 }] } });
    expect(r.statusCode, r.body).toBe(201);
    expect(r.json().addresses[0].prefixId).toBe(net);
    expect(r.json().prefixes[0].parentId).toBe(container);
    const direct = await h.req('POST', '/api/v1/ipam/addresses/allocate', { token: h.adminToken, body: { prefixId: 'dc1:10.30.0.0/29', holder: 'by-cidr-direct' } });
    expect(direct.statusCode, direct.body).toBe(200);
    await h.req('POST', `/api/v1/allocations/reservations/${r.json().id}/abort`, { token: h.adminToken });
    await h.ipam.releaseAddress({ id: direct.json().items[0].id });
    expect(await util()).toEqual(before);
  });

  it('lets only system admins reserve; unknown ids are 404', async () => {
    const body = { holder: 'x', vlans: [{ poolId: vlanPool }] };
    expect((await h.req('POST', '/api/v1/allocations/reservations', { token: member, body })).statusCode).toBe(403);
    expect((await h.req('POST', '/api/v1/allocations/reservations', { token: reader, body })).statusCode).toBe(403);
    expect((await h.req('POST', '/api/v1/allocations/reservations', { body })).statusCode).toBe(401);
    expect((await h.req('GET', '/api/v1/allocations/reservations', { token: member })).statusCode).toBe(200);
    const nf = await h.req('GET', '/api/v1/allocations/reservations/rsv_0000000000000nope', { token: reader });
    expect(nf.statusCode).toBe(404);
    expect(nf.json().code).toBe('reservation.not_found');
    expect((await h.req('POST', '/api/v1/allocations/reservations/rsv_0000000000000nope/commit', { token: h.adminToken })).statusCode).toBe(404);
  });
});

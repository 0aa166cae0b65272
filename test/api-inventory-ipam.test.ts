import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { DIALECTS } from './support/dialects.js';
import { makeFullHarness, type FullHarness } from './api-fixtures.js';

/**
 * Inventory and IPAM routes in process: import, list with filters and
 * cursors, utilization, admin allocation and release, the audited BMC reveal,
 * and their error cases.
 */
describe.each(DIALECTS)('API inventory and IPAM on %s', (dialect) => {
  let h: FullHarness;
  let reader: string;

  beforeAll(async () => {
    h = await makeFullHarness(dialect);
    await h.iam.createProject({ name: 'p1' });
    reader = (await h.userWith('inv-reader', 'reader', { project: 'p1' })).token;
  });
  afterAll(async () => h?.cleanupAll());

  it('imports the example datacenter and lists it', async () => {
    const doc = readFileSync('examples/datacenter.yaml', 'utf8');
    const imp = await h.req('POST', '/api/v1/inventory/import', { token: h.adminToken, body: { document: doc, source: 'datacenter.yaml' } });
    expect(imp.statusCode, imp.body).toBe(200);
    expect(imp.json()).toMatchObject({ datacenters: 2 });
    expect(imp.json().servers).toBeGreaterThan(300);
    const dcs = await h.req('GET', '/api/v1/inventory/datacenters', { token: reader });
    expect(dcs.json().items.map((d: any) => d.name).sort()).toEqual(['dc1', 'dc2']);
    expect((await h.req('GET', '/api/v1/inventory/racks?datacenter=dc2', { token: reader })).json().items).toHaveLength(1);
    expect((await h.req('GET', '/api/v1/inventory/server-types', { token: reader })).json().items.length).toBeGreaterThanOrEqual(4);
    // cursor pagination over servers, with filters
    const seen = new Set<string>();
    let cursor: string | null = null;
    let pages = 0;
    do {
      const r = await h.req('GET', `/api/v1/inventory/servers?datacenter=dc2&limit=4${cursor ? `&cursor=${cursor}` : ''}`, { token: reader });
      expect(r.statusCode).toBe(200);
      for (const s of r.json().items) {
        expect(s.datacenter).toBe('dc2');
        seen.add(s.id);
      }
      cursor = r.json().nextCursor;
      pages++;
    } while (cursor);
    expect(seen.size).toBe(10);
    expect(pages).toBe(3);
    const one = [...seen][0]!;
    expect((await h.req('GET', `/api/v1/inventory/servers/${one}`, { token: reader })).json().id).toBe(one);
    expect((await h.req('GET', `/api/v1/inventory/servers/${one}/history`, { token: reader })).statusCode).toBe(200);
    const sw = await h.req('GET', '/api/v1/inventory/switches?datacenter=dc1', { token: reader });
    expect(sw.json().items.length).toBeGreaterThan(0);
    expect((await h.req('GET', `/api/v1/inventory/switches/${sw.json().items[0].id}/ports`, { token: reader })).json().items.length).toBeGreaterThan(0);
    expect((await h.req('GET', '/api/v1/inventory/hubs', { token: reader })).json().items.length).toBeGreaterThan(0);
    expect((await h.req('GET', '/api/v1/inventory/hot-pools', { token: reader })).statusCode).toBe(200);
    const util = await h.req('GET', '/api/v1/inventory/utilization', { token: reader });
    expect(util.json().items.reduce((n: number, c: any) => n + c.total, 0)).toBe(imp.json().servers);
    const exp = await h.req('GET', '/api/v1/inventory/export', { token: reader });
    expect(exp.headers['content-type']).toContain('yaml');
    expect(exp.body).toContain('[redacted]');
    // BMC credentials: admins only, audited
    expect((await h.req('GET', `/api/v1/inventory/servers/${one}/bmc`, { token: reader })).statusCode).toBe(403);
    const bmc = await h.req('GET', `/api/v1/inventory/servers/${one}/bmc`, { token: h.adminToken });
    expect(bmc.statusCode).toBe(200);
    expect(bmc.json().username).toBeTruthy();
  });

  it('refuses bad documents and unknown objects with a clear problem', async () => {
    const bad = await h.req('POST', '/api/v1/inventory/import', { token: h.adminToken, body: { document: 'apiVersion: infraflow.dev/v1\nkind: Inventory\ndatacenters:\n  - name: BAD NAME\n' } });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().detail).toMatch(/line|name/);
    expect((await h.req('GET', '/api/v1/inventory/servers/srv_nope', { token: reader })).statusCode).toBe(404);
    expect((await h.req('GET', '/api/v1/inventory/servers?state=bogus', { token: reader })).statusCode).toBe(400);
    expect((await h.req('GET', '/api/v1/inventory/servers?cursor=notacursor', { token: reader })).statusCode).toBe(400);
  });

  it('allocates and releases servers (admin), all or nothing', async () => {
    const types = (await h.req('GET', '/api/v1/inventory/utilization', { token: reader })).json().items as any[];
    const avail = types.find((c) => c.available >= 2)!;
    const a = await h.req('POST', '/api/v1/inventory/allocate', { token: h.adminToken, body: { type: avail.type, datacenter: avail.datacenter, count: 2, holder: 'api-test' } });
    expect(a.statusCode, a.body).toBe(200);
    expect(a.json().items).toHaveLength(2);
    const tooMany = await h.req('POST', '/api/v1/inventory/allocate', { token: h.adminToken, body: { type: avail.type, datacenter: avail.datacenter, count: 10_000, holder: 'api-test' } });
    expect(tooMany.statusCode).toBe(409);
    expect((await h.req('POST', '/api/v1/inventory/allocate', { token: reader, body: { type: avail.type, datacenter: avail.datacenter, holder: 'x' } })).statusCode).toBe(403);
    const rel = await h.req('POST', '/api/v1/inventory/release', { token: h.adminToken, body: { holder: 'api-test' } });
    expect(rel.statusCode, rel.body).toBe(200);
    expect(rel.json().items).toHaveLength(2);
    const s = a.json().items[0];
    const tr = await h.req('POST', `/api/v1/inventory/servers/${s.id}/transition`, { token: h.adminToken, body: { to: 'maintenance', reason: 'disk swap' } });
    expect([200, 409]).toContain(tr.statusCode);
  });

  it('imports IPAM pools, allocates and releases addresses and VLANs, reports utilization', async () => {
    const doc = 'prefixes:\n  - { cidr: 10.10.0.0/24, scope: dc1, gateway: 10.10.0.1 }\n  - { cidr: 10.20.0.0/16, scope: dc1, kind: container }\nvlanPools:\n  - { name: tenant-vlans, scope: dc1, min: 100, max: 199 }\n';
    const imp = await h.req('POST', '/api/v1/ipam/import', { token: h.adminToken, body: { document: doc } });
    expect(imp.statusCode, imp.body).toBe(200);
    expect(imp.json()).toEqual({ prefixes: 2, vlanPools: 1, existing: 0 });
    expect((await h.req('POST', '/api/v1/ipam/import', { token: h.adminToken, body: { document: doc } })).json().existing).toBe(3);
    const prefixes = (await h.req('GET', '/api/v1/ipam/prefixes?scope=dc1', { token: reader })).json().items as any[];
    const net = prefixes.find((p) => p.cidr === '10.10.0.0/24')!;
    const alloc = await h.req('POST', '/api/v1/ipam/addresses/allocate', { token: h.adminToken, body: { prefixId: net.id, holder: 'api-test', count: 3 } });
    expect(alloc.statusCode, alloc.body).toBe(200);
    expect(alloc.json().items).toHaveLength(3);
    const util = await h.req('GET', `/api/v1/ipam/prefixes/${net.id}/utilization`, { token: reader });
    expect(util.json().allocated).toBe('3');
    const addrs = await h.req('GET', `/api/v1/ipam/addresses?prefixId=${net.id}&limit=2`, { token: reader });
    expect(addrs.json().items).toHaveLength(2);
    expect(addrs.json().nextCursor).toBeTruthy();
    const rel = await h.req('POST', `/api/v1/ipam/addresses/${alloc.json().items[0].id}/release`, { token: h.adminToken, body: { holder: 'api-test' } });
    expect(rel.statusCode, rel.body).toBe(200);
    const pool = (await h.req('GET', '/api/v1/ipam/vlan-pools', { token: reader })).json().items[0];
    const v = await h.req('POST', '/api/v1/ipam/vlans/allocate', { token: h.adminToken, body: { poolId: pool.id, holder: 'api-test', count: 2 } });
    expect(v.statusCode, v.body).toBe(200);
    expect((await h.req('GET', `/api/v1/ipam/vlan-pools/${pool.id}/utilization`, { token: reader })).json().allocated).toBe('2');
    const vrel = await h.req('POST', `/api/v1/ipam/vlans/${v.json().items[0].id}/release`, { token: h.adminToken });
    expect(vrel.statusCode, vrel.body).toBe(200);
    const container = prefixes.find((p) => p.cidr === '10.20.0.0/16')!;
    const child = await h.req('POST', '/api/v1/ipam/prefixes/allocate', { token: h.adminToken, body: { parentId: container.id, length: 24, holder: 'api-test' } });
    expect(child.statusCode, child.body).toBe(200);
    expect(child.json().cidr).toMatch(/^10\.20\.\d+\.0\/24$/);
    // errors: bad CIDR, unknown prefix, exhaustion, readers cannot allocate
    expect((await h.req('POST', '/api/v1/ipam/prefixes', { token: h.adminToken, body: { cidr: '10.300.0.0/24', scope: 'dc1' } })).statusCode).toBe(400);
    expect((await h.req('POST', '/api/v1/ipam/addresses/allocate', { token: h.adminToken, body: { prefixId: 'pfx_nope', holder: 'x' } })).statusCode).toBe(404);
    expect((await h.req('POST', '/api/v1/ipam/addresses/allocate', { token: h.adminToken, body: { prefixId: net.id, holder: 'x', count: 4000 } })).statusCode).toBe(409);
    expect((await h.req('POST', '/api/v1/ipam/addresses/allocate', { token: reader, body: { prefixId: net.id, holder: 'x' } })).statusCode).toBe(403);
    expect((await h.req('POST', '/api/v1/ipam/import', { token: h.adminToken, body: { document: 'prefixes: [ {' } })).statusCode).toBe(400);
  });
});

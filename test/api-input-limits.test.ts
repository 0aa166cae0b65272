import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DIALECTS } from './support/dialects.js';
import { makeFullHarness, type FullHarness } from './api-fixtures.js';

/**
 * Untrusted bodies and documents through the API: limits are 400s with a
 * problem+json naming what to fix, never 500s; schema errors list their
 * fields in `errors[]` with the path where the value sits.
 */
const bomb = (() => {
  let text = 'a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n';
  for (let i = 1; i <= 9; i++) text += `a${i}: &a${i} [${Array.from({ length: 10 }, () => `*a${i - 1}`).join(', ')}]\n`;
  return text;
})();

describe.each(DIALECTS)('API input limits on %s', (dialect) => {
  let h: FullHarness;

  beforeAll(async () => {
    h = await makeFullHarness(dialect);
  });
  afterAll(async () => h?.cleanupAll());

  it('a JSON body nested 10,000 deep is a 400 (PATCH /resources/{id}), and nothing changed', async () => {
    const net = await h.req('POST', '/api/v1/resources', { token: h.adminToken, body: { project: 'default', kind: 'network/Network', name: 'deep-net' } });
    expect(net.statusCode, net.body).toBe(202);
    const id = net.json().resource?.id ?? net.json().id;
    let spec = '1';
    for (let i = 0; i < 10_000; i++) spec = `{"a":${spec}}`;
    const res = await h.req('PATCH', `/api/v1/resources/${id}`, { token: h.adminToken, rawBody: `{"spec":${spec}}` });
    expect(res.statusCode, res.body).toBe(400);
    expect(res.headers['content-type']).toContain('application/problem+json');
    expect(res.json()).toMatchObject({ code: 'api.body_too_complex', status: 400 });
    expect(res.json().detail).toContain('nested more than 64 levels');
    const after = await h.req('GET', `/api/v1/resources/${id}`, { token: h.adminToken });
    expect(after.json().spec.a).toBeUndefined();
  });

  it('a bad spec on POST /resources lists its field in errors[]', async () => {
    const res = await h.req('POST', '/api/v1/resources', { token: h.adminToken, body: { project: 'default', kind: 'network/Network', name: 'typo-net', spec: { mtuu: 1500 } } });
    expect(res.statusCode, res.body).toBe(400);
    expect(res.json().code).toBe('resources.invalid_spec');
    expect(res.json().errors).toEqual([{ field: 'spec.mtuu', message: 'unknown field "mtuu"' }]);
    expect(res.json().detail).toBe('network/Network spec.mtuu: unknown field "mtuu"');
  });

  it('GET /inventory/servers?state=… names the state filter, not (root)', async () => {
    const res = await h.req('GET', '/api/v1/inventory/servers?state=available,bogus', { token: h.adminToken });
    expect(res.statusCode, res.body).toBe(400);
    expect(res.json().errors[0].field).toBe('state.1');
  });

  it('IPAM import: alias bombs are 400s, schema errors carry the document prefix', async () => {
    const b = await h.req('POST', '/api/v1/ipam/import', { token: h.adminToken, body: { document: bomb } });
    expect(b.statusCode, b.body).toBe(400);
    expect(b.json().code).toBe('ipam.invalid_document');
    const bad = await h.req('POST', '/api/v1/ipam/import', { token: h.adminToken, body: { document: 'prefixes:\n  - { cidr: 10.9.0.0/24, scope: dc1, colour: red }\n' } });
    expect(bad.statusCode, bad.body).toBe(400);
    expect(bad.json().errors[0].field).toBe('document.prefixes.0.colour');
  });

  it('inventory import: alias bombs and duplicate keys are 400s; 30,000 label keys import', async () => {
    const b = await h.req('POST', '/api/v1/inventory/import', { token: h.adminToken, body: { document: bomb } });
    expect(b.statusCode, b.body).toBe(400);
    expect(b.json().code).toBe('inventory.invalid_yaml');
    const dup = await h.req('POST', '/api/v1/inventory/import', { token: h.adminToken, body: { document: 'datacenters:\n  - name: dcx\n    region: r\n    region: s\n', source: 'inv.yaml' } });
    expect(dup.statusCode, dup.body).toBe(400);
    expect(dup.json().detail).toMatch(/^inv\.yaml:4:5: duplicate key "region"/);
    const labels = Array.from({ length: 30_000 }, (_, i) => `      k${i}: v`).join('\n');
    const big = await h.req('POST', '/api/v1/inventory/import', { token: h.adminToken, body: { document: `datacenters:\n  - name: dc-labels\n    region: r\n    labels:\n${labels}\n` } });
    expect(big.statusCode, big.body).toBe(200);
    expect(big.json().datacenters).toBe(1);
  });

  it('addresses, CIDRs and ports are validated where they enter: 400 naming the field', async () => {
    const sub = async (cidr: unknown, extra: Record<string, unknown> = {}) => h.req('POST', '/api/v1/resources', { token: h.adminToken, body: { project: 'default', kind: 'network/Subnet', name: `s-${Math.random().toString(36).slice(2, 8)}`, spec: { network: 'net-x', cidr, ...extra } } });
    for (const cidr of ['300.1.1.1/24', '010.000.000.000/24', '10.0.0.0/24 OR 1=1', '', '10.0.0.1/24']) {
      const r = await sub(cidr);
      expect(r.statusCode, `${cidr}: ${r.body}`).toBe(400);
      expect(r.json().errors[0].field).toBe('spec.cidr');
    }
    const gw = await sub('10.0.0.0/24', { gateway: '10.0.0.255' });
    expect(gw.statusCode, gw.body).toBe(400);
    expect(gw.json().errors[0]).toEqual({ field: 'spec.gateway', message: '10.0.0.255 is the broadcast address of 10.0.0.0/24' });
    expect((await sub('10.0.0.0/24', { gateway: '10.0.1.1' })).json().errors[0].message).toBe('10.0.1.1 is outside 10.0.0.0/24');
    for (const remoteCidr of ['300.1.1.1/24', '', '10.0.0.0/24 OR 1=1']) {
      const r = await h.req('POST', '/api/v1/resources', { token: h.adminToken, body: { project: 'default', kind: 'network/SecurityGroup', name: 'sg-bad', spec: { rules: [{ protocol: 'tcp', portMin: 22, portMax: 22, remoteCidr }] } } });
      expect(r.statusCode, `${remoteCidr}: ${r.body}`).toBe(400);
      expect(r.json().errors[0].field).toBe('spec.rules.0.remoteCidr');
    }
    const port = await h.req('POST', '/api/v1/resources', { token: h.adminToken, body: { project: 'default', kind: 'network/SecurityGroup', name: 'sg-bad', spec: { rules: [{ protocol: 'tcp', portMin: 70000 }] } } });
    expect(port.json().errors[0].field).toBe('spec.rules.0.portMin');
    // IPAM: a gateway on the network or broadcast address is refused
    for (const gateway of ['10.61.0.0', '10.61.0.255']) {
      const p = await h.req('POST', '/api/v1/ipam/prefixes', { token: h.adminToken, body: { cidr: '10.61.0.0/24', scope: 'addr-test', gateway } });
      expect(p.statusCode, p.body).toBe(400);
      expect(p.json().code).toBe('ipam.invalid_gateway');
    }
    const prefix = await h.req('POST', '/api/v1/ipam/prefixes', { token: h.adminToken, body: { cidr: '10.61.0.0/24', scope: 'addr-test', gateway: '10.61.0.1' } });
    expect(prefix.statusCode, prefix.body).toBe(201);
    // feasibility: a malformed address or one outside the prefix is a 400, not `feasible: true`
    const bad = await h.req('POST', '/api/v1/allocations/feasibility', { token: h.adminToken, body: { addresses: [{ prefixId: prefix.json().id, address: '300.1.1.1/24' }] } });
    expect(bad.statusCode, bad.body).toBe(400);
    expect(bad.json().errors[0].field).toMatch(/addresses\.0\.address|addresses\[0\]\.address/);
    const outside = await h.req('POST', '/api/v1/allocations/feasibility', { token: h.adminToken, body: { addresses: [{ prefixId: prefix.json().id, address: '10.62.0.5' }] } });
    expect(outside.statusCode, outside.body).toBe(400);
    expect(outside.json().detail).toBe('addresses.0.address: 10.62.0.5 is outside 10.61.0.0/24');
    const fine = await h.req('POST', '/api/v1/allocations/feasibility', { token: h.adminToken, body: { addresses: [{ prefixId: prefix.json().id, address: '10.61.0.5' }] } });
    expect(fine.statusCode, fine.body).toBe(200);
  });
});

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
    expect(res.json().errors[0].field).toBe('state[1]');
  });

  it('IPAM import: alias bombs are 400s, schema errors carry the document prefix', async () => {
    const b = await h.req('POST', '/api/v1/ipam/import', { token: h.adminToken, body: { document: bomb } });
    expect(b.statusCode, b.body).toBe(400);
    expect(b.json().code).toBe('ipam.invalid_document');
    const bad = await h.req('POST', '/api/v1/ipam/import', { token: h.adminToken, body: { document: 'prefixes:\n  - { cidr: 10.9.0.0/24, scope: dc1, colour: red }\n' } });
    expect(bad.statusCode, bad.body).toBe(400);
    expect(bad.json().errors[0].field).toBe('document.prefixes[0].colour');
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
});

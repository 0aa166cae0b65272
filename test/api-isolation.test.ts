import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DIALECTS } from './support/dialects.js';
import { makeFullHarness, type FullHarness } from './api-fixtures.js';

/**
 * Tenant isolation: tenant A cannot read, list, infer, modify or take over
 * tenant B's objects; cannot set project or owner fields it may not set;
 * cannot call admin routes.
 */
describe.each(DIALECTS)('tenant isolation on %s', (dialect) => {
  let h: FullHarness;
  let a: string; // member of tenant-a
  let aAdmin: string; // project admin of tenant-a
  let b: string; // member of tenant-b
  const B: Record<string, string> = {};

  beforeAll(async () => {
    h = await makeFullHarness(dialect);
    await h.iam.createProject({ name: 'tenant-a' });
    await h.iam.createProject({ name: 'tenant-b' });
    a = (await h.userWith('alice', 'member', { project: 'tenant-a' })).token;
    aAdmin = (await h.userWith('anna', 'admin', { project: 'tenant-a' })).token;
    b = (await h.userWith('bob', 'member', { project: 'tenant-b' })).token;
    const sec = await h.req('POST', '/api/v1/secrets', { token: b, body: { project: 'tenant-b', name: 'db-password', value: 'b-secret-value' } });
    expect(sec.statusCode).toBe(201);
    B.secret = sec.json().id;
    B.resource = (await h.resources.create({ kind: 'test/Thing', name: 'b-thing', project: 'tenant-b', spec: { size: 1 } })).id;
    B.stack = (await h.stacks.apply({ document: { metadata: { name: 'b-stack', project: 'tenant-b' } } })).stack.id;
  });
  afterAll(async () => h?.cleanupAll());

  it('read: another tenant\'s objects answer exactly like objects that do not exist', async () => {
    const pairs: [string, string][] = [
      [`/api/v1/secrets/${B.secret}`, '/api/v1/secrets/sec_00000000000000000000'],
      [`/api/v1/secrets/${B.secret}/value`, '/api/v1/secrets/sec_00000000000000000000/value'],
      [`/api/v1/resources/${B.resource}`, '/api/v1/resources/res_00000000000000000000'],
      [`/api/v1/resources/${B.resource}/secrets`, '/api/v1/resources/res_00000000000000000000/secrets'],
      [`/api/v1/stacks/${B.stack}`, '/api/v1/stacks/stk_00000000000000000000'],
      ['/api/v1/projects/tenant-b', '/api/v1/projects/tenant-zz'],
    ];
    for (const [real, fake] of pairs) {
      const r1 = await h.req('GET', real, { token: a });
      const r2 = await h.req('GET', fake, { token: a });
      expect(r1.statusCode, real).toBe(404);
      expect(r2.statusCode, fake).toBe(404);
      const norm = (body: any, id: string) => JSON.stringify({ ...body, requestId: null, instance: null }).split(id).join('<id>');
      const realId = real.split('/')[4]!;
      const fakeId = fake.split('/')[4]!;
      expect(norm(r1.json(), realId), real).toBe(norm(r2.json(), fakeId));
      expect(r1.body).not.toContain('b-secret-value');
    }
  });

  it('list: lists never include another tenant\'s objects, and naming its project is 404', async () => {
    for (const path of ['/api/v1/secrets', '/api/v1/resources', '/api/v1/stacks', '/api/v1/projects', '/api/v1/runs', '/api/v1/events']) {
      const r = await h.req('GET', path, { token: a });
      expect(r.statusCode, path).toBe(200);
      expect(r.body, path).not.toContain('tenant-b');
    }
    for (const path of ['/api/v1/secrets?project=tenant-b', '/api/v1/resources?project=tenant-b', '/api/v1/stacks?project=tenant-b', '/api/v1/runs?project=tenant-b', '/api/v1/events?project=tenant-b']) {
      const r = await h.req('GET', path, { token: a });
      expect(r.statusCode, path).toBe(404);
      expect(r.json().detail).toBe('project tenant-b not found');
    }
    const missing = await h.req('GET', '/api/v1/resources?project=nope', { token: a });
    expect(missing.json().detail).toBe('project nope not found');
  });

  it('infer: a name taken in another tenant is not revealed (names are per project)', async () => {
    const r = await h.req('POST', '/api/v1/secrets', { token: a, body: { project: 'tenant-a', name: 'db-password', value: 'a-value' } });
    expect(r.statusCode).toBe(201);
    // a stack name taken in tenant-b does not clash in tenant-a either
    const doc = 'apiVersion: infraflow.dev/v1\nkind: Stack\nmetadata:\n  name: b-stack\n  project: tenant-a\n';
    expect((await h.req('POST', '/api/v1/stacks', { token: a, body: { document: doc } })).statusCode).toBe(202);
  });

  it('modify: another tenant\'s objects cannot be changed or deleted, and stay as they were', async () => {
    expect((await h.req('PATCH', `/api/v1/secrets/${B.secret}`, { token: a, body: { value: 'overwritten' } })).statusCode).toBe(404);
    expect((await h.req('DELETE', `/api/v1/secrets/${B.secret}`, { token: a })).statusCode).toBe(404);
    expect((await h.req('POST', `/api/v1/stacks/${B.stack}/destroy`, { token: a })).statusCode).toBe(404);
    expect((await h.req('DELETE', `/api/v1/stacks/${B.stack}`, { token: a })).statusCode).toBe(404);
    expect((await h.req('DELETE', '/api/v1/projects/tenant-b', { token: aAdmin })).statusCode).toBe(403);
    expect(await h.iam.revealSecret(B.secret!)).toBe('b-secret-value');
    expect(h.stacks.rows.has(B.stack!)).toBe(true);
    const denied = await h.req('GET', '/api/v1/audit?outcome=denied&actor=alice&limit=100', { token: h.adminToken });
    expect(denied.json().items.some((e: any) => e.route === 'PATCH /api/v1/secrets/:id' && e.target === B.secret)).toBe(true);
  });

  it('takeover: objects cannot be created in, moved to, or claimed for another tenant', async () => {
    const r = await h.req('POST', '/api/v1/secrets', { token: a, body: { project: 'tenant-b', name: 'planted', value: 'x' } });
    expect(r.statusCode).toBe(404);
    const doc = 'apiVersion: infraflow.dev/v1\nkind: Stack\nmetadata:\n  name: takeover\n  project: tenant-b\n';
    expect((await h.req('POST', '/api/v1/stacks', { token: a, body: { document: doc } })).statusCode).toBe(404);
    expect((await h.req('POST', '/api/v1/stacks/plan', { token: a, body: { document: doc } })).statusCode).toBe(404);
    // the body's project cannot contradict the document's
    expect((await h.req('POST', '/api/v1/stacks', { token: a, body: { document: doc, project: 'tenant-a' } })).statusCode).toBe(400);
    expect((await h.req('POST', '/api/v1/servers', { token: a, body: { project: 'tenant-b', name: 'vm', flavor: 'f', image: 'i', networks: ['n'] } })).statusCode).toBe(404);
    expect((await h.iam.listSecrets({ projects: ['tenant-b'] })).items.map((s) => s.name)).toEqual(['db-password']);
  });

  it('mass assignment: project, owner and privilege fields are refused, naming the field', async () => {
    const own = await h.req('POST', '/api/v1/secrets', { token: a, body: { project: 'tenant-a', name: 'mine', value: 'v' } });
    const id = own.json().id;
    const move = await h.req('PATCH', `/api/v1/secrets/${id}`, { token: a, body: { project: 'tenant-b' } });
    expect(move.statusCode).toBe(400);
    expect(move.json().detail).toContain('project');
    const owner = await h.req('POST', '/api/v1/secrets', { token: a, body: { project: 'tenant-a', name: 'owned', value: 'v', owner: 'stack:someone-else' } });
    expect(owner.statusCode).toBe(400);
    expect(owner.json().detail).toContain('owner');
    const token = await h.req('POST', '/api/v1/tokens', { token: a, body: { name: 't', userId: 'usr_admin' } });
    expect(token.statusCode).toBe(400);
    // a token for a project the caller is not in
    const tb = await h.req('POST', '/api/v1/tokens', { token: a, body: { name: 't', project: 'tenant-b' } });
    expect(tb.statusCode).toBe(404);
    // a project admin cannot hand out roles (role assignment is a system action)
    const grant = await h.req('POST', '/api/v1/role-assignments', { token: aAdmin, body: { role: 'admin', user: 'alice', system: true } });
    expect(grant.statusCode).toBe(403);
    const me = await h.req('GET', '/api/v1/auth/whoami', { token: a });
    expect(me.json().system).toEqual([]);
    expect(Object.keys(me.json().projects)).toEqual(['tenant-a']);
  });

  it('function level: tenants cannot call admin routes', async () => {
    const adminCalls: [string, string, unknown?][] = [
      ['GET', '/api/v1/users'], ['POST', '/api/v1/users', { name: 'evil' }], ['GET', '/api/v1/groups'], ['POST', '/api/v1/roles', { name: 'evil', permissions: ['iam:write'] }],
      ['GET', '/api/v1/role-assignments'], ['GET', '/api/v1/audit'], ['POST', '/api/v1/projects', { name: 'evil' }],
      ['POST', '/api/v1/inventory/import', { document: 'datacenters: []' }], ['POST', '/api/v1/inventory/allocate', { type: 'x', datacenter: 'y', holder: 'z' }],
      ['POST', '/api/v1/ipam/prefixes', { scope: 'dc1', cidr: '10.0.0.0/8' }], ['POST', '/api/v1/ipam/addresses/allocate', { prefixId: 'p', holder: 'h' }],
      ['GET', '/api/v1/inventory/servers/x/bmc'], ['GET', '/api/v1/tokens?user=admin'],
    ];
    for (const [method, path, body] of adminCalls) {
      for (const token of [a, aAdmin]) {
        const r = await h.req(method, path, { token, ...(body !== undefined ? { body } : {}) });
        expect(r.statusCode, `${method} ${path}`).toBe(403);
      }
    }
    // reads of shared catalogues are allowed to project members
    expect((await h.req('GET', '/api/v1/inventory/datacenters', { token: a })).statusCode).toBe(200);
    expect((await h.req('GET', '/api/v1/ipam/prefixes', { token: a })).statusCode).toBe(200);
  });
});

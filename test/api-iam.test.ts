import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DIALECTS } from './support/dialects.js';
import { makeHarness, ADMIN_PASSWORD, USER_PASSWORD, type Harness } from './api-harness.js';

describe.each(DIALECTS)('API identity and access on %s', (dialect) => {
  let h: Harness;
  beforeAll(async () => {
    h = await makeHarness(dialect);
  });
  afterAll(async () => h?.close());

  describe('system endpoints', () => {
    it('healthz, readyz, metrics, openapi, docs', async () => {
      expect((await h.req('GET', '/healthz')).json()).toEqual({ status: 'ok' });
      const ready = await h.req('GET', '/readyz');
      expect(ready.statusCode).toBe(200);
      expect(ready.json().checks.database).toBe('ok');
      const m = await h.req('GET', '/metrics');
      expect(m.statusCode).toBe(200);
      expect(m.body).toContain('infraflow_http_requests_total');
      const o = await h.req('GET', '/openapi.json');
      expect(o.statusCode).toBe(200);
      const doc = o.json();
      expect(doc.openapi).toBe('3.1.0');
      expect(doc.paths['/api/v1/users']).toBeDefined();
      expect(doc.paths['/api/v1/users'].post.requestBody).toBeDefined();
      const d = await h.req('GET', '/docs');
      expect([200, 302]).toContain(d.statusCode);
    });

    it('every response carries a request id; an unknown route is a problem+json 404', async () => {
      const r = await h.req('GET', '/api/v1/nope');
      expect(r.statusCode).toBe(404);
      expect(r.headers['content-type']).toContain('application/problem+json');
      expect(r.json()).toMatchObject({ status: 404, code: 'api.route_not_found' });
      expect(r.headers['x-request-id']).toBeTruthy();
      const own = await h.req('GET', '/healthz', { headers: { 'x-request-id': 'abc-123' } });
      expect(own.headers['x-request-id']).toBe('abc-123');
    });
  });

  describe('login and tokens', () => {
    it('logs in, answers whoami, logs out', async () => {
      const token = await h.login('admin', ADMIN_PASSWORD);
      const me = await h.req('GET', '/api/v1/auth/whoami', { token });
      expect(me.statusCode).toBe(200);
      expect(me.json().user.name).toBe('admin');
      expect(me.json().system).toContain('iam:write');
      expect((await h.req('POST', '/api/v1/auth/logout', { token })).statusCode).toBe(204);
      const after = await h.req('GET', '/api/v1/auth/whoami', { token });
      expect(after.statusCode).toBe(401);
      expect(after.headers['www-authenticate']).toContain('Bearer');
    });

    it('wrong password and unknown user give the same 401', async () => {
      const a = await h.req('POST', '/api/v1/auth/login', { body: { name: 'admin', password: 'wrong-password-xx' } });
      const b = await h.req('POST', '/api/v1/auth/login', { body: { name: 'nobody', password: 'wrong-password-xx' } });
      expect(a.statusCode).toBe(401);
      expect(b.statusCode).toBe(401);
      expect(a.json().detail).toBe(b.json().detail);
      expect(a.json().code).toBe('auth.unauthenticated');
    });

    it('no token, a malformed token and a made-up token are 401', async () => {
      expect((await h.req('GET', '/api/v1/users')).statusCode).toBe(401);
      expect((await h.req('GET', '/api/v1/users', { headers: { authorization: 'Basic abc' } })).statusCode).toBe(401);
      expect((await h.req('GET', '/api/v1/users', { token: 'ifk_madeup' })).statusCode).toBe(401);
    });

    it('API tokens: created once, stored as a hash, scoped, listed, revoked', async () => {
      await h.iam.createProject({ name: 'tok-proj' });
      const r = await h.req('POST', '/api/v1/tokens', { token: h.adminToken, body: { name: 'ci', project: 'tok-proj', permissions: ['runs:read', 'projects:read'], expiresInDays: 7 } });
      expect(r.statusCode).toBe(201);
      const { token, info } = r.json();
      expect(token).toMatch(/^ifk_/);
      const rows = await h.t.store.db.selectFrom('iam_tokens').select(['hash']).where('id', '=', info.id).execute();
      expect(rows[0]!.hash).not.toContain(token.slice(4));
      // scope: the token only sees its project and only its permissions
      const users = await h.req('GET', '/api/v1/users', { token });
      expect(users.statusCode).toBe(403);
      const projects = await h.req('GET', '/api/v1/projects', { token });
      expect(projects.json().items.map((p: any) => p.name)).toEqual(['tok-proj']);
      // a scoped token cannot mint a wider token
      const wider = await h.req('POST', '/api/v1/tokens', { token, body: { name: 'x', permissions: ['iam:write'] } });
      expect(wider.statusCode).toBe(403);
      const list = await h.req('GET', '/api/v1/tokens?kind=api', { token: h.adminToken });
      expect(list.json().items.some((t: any) => t.id === info.id)).toBe(true);
      expect(JSON.stringify(list.json())).not.toContain(token);
      const del = await h.req('DELETE', `/api/v1/tokens/${info.id}`, { token: h.adminToken });
      expect(del.statusCode).toBe(200);
      expect(del.json().revokedAt).toBeGreaterThan(0);
      expect((await h.req('GET', '/api/v1/projects', { token })).statusCode).toBe(401);
    });

    it('a user cannot revoke or list another user\'s tokens', async () => {
      const u = await h.userWith('tok-user', null, {});
      const adminTokens = await h.iam.listTokens({ userId: (await h.iam.getUser('admin')).id });
      const r = await h.req('DELETE', `/api/v1/tokens/${adminTokens.items[0]!.id}`, { token: u.token });
      expect(r.statusCode).toBe(404);
      expect((await h.req('GET', '/api/v1/tokens?user=admin', { token: u.token })).statusCode).toBe(403);
    });
  });

  describe('users, groups, roles, projects, assignments', () => {
    it('creates, reads, updates with If-Match, deletes a user', async () => {
      const c = await h.req('POST', '/api/v1/users', { token: h.adminToken, body: { name: 'alice', displayName: 'Alice', email: 'alice@example.com', password: USER_PASSWORD } });
      expect(c.statusCode).toBe(201);
      expect(c.headers.etag).toBe('"1"');
      const id = c.json().id;
      expect(c.json()).not.toHaveProperty('password');
      const g = await h.req('GET', `/api/v1/users/alice`, { token: h.adminToken });
      expect(g.json().id).toBe(id);
      const same = await h.req('GET', `/api/v1/users/alice`, { token: h.adminToken, headers: { 'if-none-match': g.headers.etag as string } });
      expect(same.statusCode).toBe(304);
      const stale = await h.req('PATCH', `/api/v1/users/${id}`, { token: h.adminToken, body: { displayName: 'A' }, headers: { 'if-match': '"7"' } });
      expect(stale.statusCode).toBe(412);
      expect(stale.json().code).toBe('api.precondition_failed');
      const ok = await h.req('PATCH', `/api/v1/users/${id}`, { token: h.adminToken, body: { displayName: 'A' }, headers: { 'if-match': '"1"' } });
      expect(ok.statusCode).toBe(200);
      expect(ok.headers.etag).toBe('"2"');
      const bad = await h.req('PATCH', `/api/v1/users/${id}`, { token: h.adminToken, body: { displayName: 'A' }, headers: { 'if-match': 'garbage' } });
      expect(bad.statusCode).toBe(400);
      const dup = await h.req('POST', '/api/v1/users', { token: h.adminToken, body: { name: 'alice' } });
      expect(dup.statusCode).toBe(409);
      expect(dup.json().code).toBe('iam.name_taken');
      expect((await h.req('DELETE', `/api/v1/users/${id}`, { token: h.adminToken })).statusCode).toBe(204);
      expect((await h.req('GET', `/api/v1/users/${id}`, { token: h.adminToken })).statusCode).toBe(404);
    });

    it('validation errors name the field and never echo the value', async () => {
      const r = await h.req('POST', '/api/v1/users', { token: h.adminToken, body: { name: 42, password: 'p' } });
      expect(r.statusCode).toBe(400);
      expect(r.json().code).toBe('api.invalid_request');
      expect(r.json().errors[0].field).toBe('body.name');
      const weak = await h.req('POST', '/api/v1/users', { token: h.adminToken, body: { name: 'weak', password: 'short' } });
      expect(weak.statusCode).toBe(400);
      expect(weak.json().detail).toContain('password');
      expect(weak.body).not.toContain('"short"');
      const extra = await h.req('POST', '/api/v1/users', { token: h.adminToken, body: { name: 'mass', isAdmin: true } });
      expect(extra.statusCode).toBe(400);
      expect(extra.json().detail).toContain('isAdmin');
      const badJson = await h.req('POST', '/api/v1/users', { token: h.adminToken, rawBody: '{"name":' });
      expect(badJson.statusCode).toBe(400);
      expect(badJson.json().code).toBe('api.invalid_json');
      const badName = await h.req('POST', '/api/v1/users', { token: h.adminToken, body: { name: 'Not Valid!' } });
      expect(badName.statusCode).toBe(400);
      // the OpenAPI pattern and the server agree: the schema refuses it, naming the field, not echoing the value
      expect(badName.json().errors[0].field).toBe('body.name');
      expect(badName.body).not.toContain('Not Valid!');
    });

    it('cursor pagination walks every user exactly once', async () => {
      for (let i = 0; i < 7; i++) await h.iam.createUser({ name: `page-${i}` });
      const seen: string[] = [];
      let cursor: string | null = null;
      do {
        const r = await h.req('GET', `/api/v1/users?limit=3${cursor ? `&cursor=${cursor}` : ''}`, { token: h.adminToken });
        expect(r.statusCode).toBe(200);
        seen.push(...r.json().items.map((u: any) => u.name));
        cursor = r.json().nextCursor;
      } while (cursor);
      expect(new Set(seen).size).toBe(seen.length);
      for (let i = 0; i < 7; i++) expect(seen).toContain(`page-${i}`);
      expect((await h.req('GET', '/api/v1/users?cursor=zzz', { token: h.adminToken })).statusCode).toBe(400);
      expect((await h.req('GET', '/api/v1/users?limit=0', { token: h.adminToken })).statusCode).toBe(400);
      const filtered = await h.req('GET', '/api/v1/users?name=page-3', { token: h.adminToken });
      expect(filtered.json().items.map((u: any) => u.name)).toEqual(['page-3']);
    });

    it('groups give their members the group\'s roles', async () => {
      await h.iam.createProject({ name: 'grp-proj' });
      const u = await h.userWith('grp-user', null, {});
      expect((await h.req('GET', '/api/v1/projects/grp-proj', { token: u.token })).statusCode).toBe(404);
      const g = await h.req('POST', '/api/v1/groups', { token: h.adminToken, body: { name: 'ops', description: 'operators' } });
      expect(g.statusCode).toBe(201);
      expect((await h.req('PUT', `/api/v1/groups/ops/members/grp-user`, { token: h.adminToken })).statusCode).toBe(204);
      const members = await h.req('GET', '/api/v1/groups/ops/members', { token: h.adminToken });
      expect(members.json().items.map((m: any) => m.name)).toEqual(['grp-user']);
      const a = await h.req('POST', '/api/v1/role-assignments', { token: h.adminToken, body: { role: 'reader', group: 'ops', project: 'grp-proj' } });
      expect(a.statusCode).toBe(201);
      expect((await h.req('GET', '/api/v1/projects/grp-proj', { token: u.token })).statusCode).toBe(200);
      const list = await h.req('GET', '/api/v1/role-assignments?project=grp-proj', { token: h.adminToken });
      expect(list.json().items).toHaveLength(1);
      expect((await h.req('DELETE', `/api/v1/groups/ops/members/grp-user`, { token: h.adminToken })).statusCode).toBe(204);
      expect((await h.req('GET', '/api/v1/projects/grp-proj', { token: u.token })).statusCode).toBe(404);
      expect((await h.req('PATCH', '/api/v1/groups/ops', { token: h.adminToken, body: { description: 'x' }, headers: { 'if-match': '"1"' } })).statusCode).toBe(200);
      expect((await h.req('DELETE', '/api/v1/groups/ops', { token: h.adminToken })).statusCode).toBe(204);
      expect((await h.req('GET', '/api/v1/groups/ops', { token: h.adminToken })).statusCode).toBe(404);
    });

    it('custom roles from the permission catalogue', async () => {
      const perms = await h.req('GET', '/api/v1/permissions', { token: h.adminToken });
      expect(perms.json().items.map((p: any) => p.name)).toContain('runs:operate');
      const bad = await h.req('POST', '/api/v1/roles', { token: h.adminToken, body: { name: 'bad', permissions: ['runs:fly'] } });
      expect(bad.statusCode).toBe(400);
      const builtin = await h.req('POST', '/api/v1/roles', { token: h.adminToken, body: { name: 'admin', permissions: ['runs:read'] } });
      expect(builtin.statusCode).toBe(409);
      const r = await h.req('POST', '/api/v1/roles', { token: h.adminToken, body: { name: 'operator', permissions: ['runs:read', 'runs:operate', 'projects:read'] } });
      expect(r.statusCode).toBe(201);
      await h.iam.createProject({ name: 'role-proj' });
      const u = await h.userWith('role-user', 'operator', { project: 'role-proj' });
      const me = await h.req('GET', '/api/v1/auth/whoami', { token: u.token });
      expect(me.json().projects['role-proj']).toEqual(['projects:read', 'runs:operate', 'runs:read']);
      const roles = await h.req('GET', '/api/v1/roles', { token: h.adminToken });
      expect(roles.json().items.map((x: any) => x.name)).toEqual(expect.arrayContaining(['admin', 'member', 'reader', 'operator']));
      expect((await h.req('PATCH', '/api/v1/roles/admin', { token: h.adminToken, body: { permissions: ['runs:read'] } })).statusCode).toBe(409);
      expect((await h.req('PATCH', '/api/v1/roles/operator', { token: h.adminToken, body: { permissions: ['runs:read', 'projects:read'] } })).statusCode).toBe(200);
      const me2 = await h.req('GET', '/api/v1/auth/whoami', { token: u.token });
      expect(me2.json().projects['role-proj']).toEqual(['projects:read', 'runs:read']);
      expect((await h.req('GET', '/api/v1/roles/operator', { token: h.adminToken })).statusCode).toBe(200);
      expect((await h.req('DELETE', '/api/v1/roles/operator', { token: h.adminToken })).statusCode).toBe(204);
      const me3 = await h.req('GET', '/api/v1/auth/whoami', { token: u.token });
      expect(me3.json().projects['role-proj']).toBeUndefined();
    });

    it('projects: create, list what you can see, update, delete', async () => {
      const c = await h.req('POST', '/api/v1/projects', { token: h.adminToken, body: { name: 'p-one', description: 'first' } });
      expect(c.statusCode).toBe(201);
      await h.req('POST', '/api/v1/projects', { token: h.adminToken, body: { name: 'p-two' } });
      const u = await h.userWith('p-user', 'member', { project: 'p-one' });
      const mine = await h.req('GET', '/api/v1/projects', { token: u.token });
      expect(mine.json().items.map((p: any) => p.name)).toEqual(['p-one']);
      expect((await h.req('GET', '/api/v1/projects/p-two', { token: u.token })).statusCode).toBe(404);
      expect((await h.req('POST', '/api/v1/projects', { token: u.token, body: { name: 'p-three' } })).statusCode).toBe(403);
      const upd = await h.req('PATCH', '/api/v1/projects/p-one', { token: h.adminToken, body: { description: 'changed' }, headers: { 'if-match': c.headers.etag as string } });
      expect(upd.json().description).toBe('changed');
      expect((await h.req('DELETE', '/api/v1/projects/p-two', { token: h.adminToken })).statusCode).toBe(204);
    });

    it('disabling a user ends its sessions', async () => {
      const u = await h.userWith('dis-user', null, {});
      expect((await h.req('GET', '/api/v1/auth/whoami', { token: u.token })).statusCode).toBe(200);
      await h.req('PATCH', `/api/v1/users/${u.id}`, { token: h.adminToken, body: { disabled: true } });
      expect((await h.req('GET', '/api/v1/auth/whoami', { token: u.token })).statusCode).toBe(401);
      const again = await h.req('POST', '/api/v1/auth/login', { body: { name: 'dis-user', password: USER_PASSWORD } });
      expect(again.statusCode).toBe(401);
    });
  });

  describe('audit', () => {
    it('records mutating calls and denied attempts; only admins read it', async () => {
      const u = await h.userWith('aud-user', null, {});
      await h.req('POST', '/api/v1/users', { token: u.token, body: { name: 'sneaky' } });
      await h.req('POST', '/api/v1/groups', { token: h.adminToken, body: { name: 'audited' } });
      const denied = await h.req('GET', '/api/v1/audit?outcome=denied&actor=aud-user', { token: h.adminToken });
      expect(denied.statusCode).toBe(200);
      expect(denied.json().items[0]).toMatchObject({ actorName: 'aud-user', route: 'POST /api/v1/users', outcome: 'denied', status: 403 });
      const allowed = await h.req('GET', '/api/v1/audit?outcome=allowed&actor=admin&limit=100', { token: h.adminToken });
      expect(allowed.json().items.some((e: any) => e.route === 'POST /api/v1/groups' && e.status === 201)).toBe(true);
      expect((await h.req('GET', '/api/v1/audit', { token: u.token })).statusCode).toBe(403);
    });
  });
});

describe('limits', () => {
  it('rate-limits per user (429 problem with Retry-After), separately for each user, and refuses bodies over the size limit (413)', async () => {
    const h = await makeHarness('sqlite', { server: { rateLimit: { max: 3, timeWindowMs: 60_000 }, bodyLimitBytes: 2048 } });
    try {
      const other = await h.userWith('rl-user', null, {});
      for (let i = 0; i < 3; i++) expect((await h.req('GET', '/api/v1/auth/whoami', { token: h.adminToken })).statusCode).toBe(200);
      const limited = await h.req('GET', '/api/v1/auth/whoami', { token: h.adminToken });
      expect(limited.statusCode).toBe(429);
      expect(limited.headers['content-type']).toContain('application/problem+json');
      expect(limited.json().code).toBe('api.rate_limited');
      expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
      // another user has their own budget
      expect((await h.req('GET', '/api/v1/auth/whoami', { token: other.token })).statusCode).toBe(200);
      const big = await h.req('POST', '/api/v1/tokens', { token: other.token, rawBody: JSON.stringify({ name: 'y'.repeat(5000) }) });
      expect(big.statusCode).toBe(413);
      expect(big.json().code).toBe('api.body_too_large');
    } finally {
      await h.close();
    }
  });
});

describe('first start', () => {
  it('creates an admin with a generated password once, never a default', async () => {
    const { openTestStore } = await import('./support/dialects.js');
    const { Iam } = await import('../src/iam/service.js');
    const { SecretBox } = await import('../src/core/secrets.js');
    const t = await openTestStore('sqlite');
    try {
      const iam = new Iam({ store: t.store, box: SecretBox.random() });
      const first = await iam.bootstrap();
      expect(first.created).toBe(true);
      expect(first.generated).toBe(true);
      expect(first.password!.length).toBeGreaterThanOrEqual(20);
      expect((await iam.login('admin', first.password!)).token).toMatch(/^ifs_/);
      expect(await iam.bootstrap()).toEqual({ created: false });
      const other = new Iam({ store: t.store, box: SecretBox.random() });
      expect((await other.bootstrap()).created).toBe(false);
    } finally {
      await t.cleanup();
    }
  });
});

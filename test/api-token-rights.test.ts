import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DIALECTS } from './support/dialects.js';
import { makeHarness, type Harness } from './api-harness.js';

/**
 * A token may not be created with permissions its creator lacks: refused
 * at creation (403 naming them), never stored and shown as granted.
 */
describe.each(DIALECTS)('token rights on %s', (dialect) => {
  let h: Harness;
  let member: string;
  beforeAll(async () => {
    h = await makeHarness(dialect);
    await h.iam.createProject({ name: 'alpha' });
    member = (await h.userWith('tok-member', 'member', { project: 'alpha' })).token;
  });
  afterAll(async () => h?.close());

  it('refuses permissions the creator lacks, on the project or anywhere; grants what they hold', async () => {
    const admin = await h.req('POST', '/api/v1/tokens', { token: member, body: { name: 'escalate', permissions: ['iam:write'] } });
    expect(admin.statusCode, admin.body).toBe(403);
    expect(admin.json().detail).toContain('iam:write');
    const onProject = await h.req('POST', '/api/v1/tokens', { token: member, body: { name: 'escalate2', project: 'alpha', permissions: ['resources:read', 'sim:control'] } });
    expect(onProject.statusCode).toBe(403);
    expect(onProject.json().detail).toContain('sim:control');
    expect(onProject.json().detail).not.toContain('resources:read');
    const ok = await h.req('POST', '/api/v1/tokens', { token: member, body: { name: 'narrow', project: 'alpha', permissions: ['resources:read'] } });
    expect(ok.statusCode, ok.body).toBe(201);
    // nothing refused was stored
    const names = (await h.req('GET', '/api/v1/tokens', { token: member })).json().items.map((t: { name: string }) => t.name);
    expect(names).toContain('narrow');
    expect(names).not.toContain('escalate');
    expect(names).not.toContain('escalate2');
    // an administrator may grant what they hold
    expect((await h.req('POST', '/api/v1/tokens', { token: h.adminToken, body: { name: 'ops', permissions: ['iam:write'] } })).statusCode).toBe(201);
  });
});

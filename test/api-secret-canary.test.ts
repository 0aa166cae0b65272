import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Writable } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { pino } from 'pino';
import { DIALECTS } from './support/dialects.js';
import { makeFullHarness, type FullHarness } from './api-fixtures.js';
import { REDACT_PATHS } from '../src/core/log.js';

/**
 * Secret canary: planted secrets never show up in logs, events, API
 * responses, error messages or the database in plain text; only the explicit
 * endpoints return them, and each such read is audited.
 */
describe.each(DIALECTS)('secret canary on %s', (dialect) => {
  let h: FullHarness;
  const logLines: string[] = [];
  const canary = (tag: string) => `CANARY-${tag}-${randomBytes(8).toString('hex')}`;
  const C = { secret: canary('secret'), password: canary('password'), wrongPassword: canary('wrong'), resource: canary('resource'), bmc: canary('bmc'), invalid: canary('invalid') };
  const responses: { path: string; body: string; headers: string }[] = [];
  let secretId = '';
  let resourceId = '';
  let serverId = '';

  const encodings = (s: string) => [s, Buffer.from(s).toString('base64'), Buffer.from(s).toString('base64url'), Buffer.from(s).toString('hex')];
  const leaks = (text: string) => Object.values(C).flatMap((c) => encodings(c).filter((e) => text.includes(e)).map(() => c));

  beforeAll(async () => {
    const sink = new Writable({ write(chunk, _enc, cb) { logLines.push(String(chunk)); cb(); } });
    const logger = pino({ level: 'trace', redact: { paths: REDACT_PATHS, censor: '[redacted]' } }, sink);
    h = await makeFullHarness(dialect, { logger });
    await h.iam.createProject({ name: 'canary' });
    const rec = async (method: string, path: string, body?: unknown, token = h.adminToken) => {
      const r = await h.req(method, path, { token, ...(body !== undefined ? { body } : {}) });
      responses.push({ path: `${method} ${path}`, body: r.body, headers: JSON.stringify(r.headers) });
      return r;
    };
    // plant
    const s = await rec('POST', '/api/v1/secrets', { project: 'canary', name: 'db', value: C.secret, description: 'database password' });
    expect(s.statusCode).toBe(201);
    secretId = s.json().id;
    expect((await rec('POST', '/api/v1/users', { name: 'carol', password: C.password })).statusCode).toBe(201);
    await h.iam.assign({ role: 'member', user: 'carol', project: 'canary' });
    resourceId = (await h.resources.create({ kind: 'test/Thing', name: 'vm', project: 'canary', spec: { size: 1 } })).id;
    await h.resources.updateStatus(resourceId, { phase: 'ready', secrets: { adminPassword: C.resource } });
    await h.inventory.createDatacenter({ name: 'dc1', region: 'eu' });
    await h.inventory.createServerType({ name: 'small', cpu: { model: 'x86', cores: 8 }, ramGb: 32 });
    serverId = (await h.inventory.registerServer({ serial: 'SN1', type: 'small', datacenter: 'dc1', bmc: { address: '10.0.0.1', username: 'root', password: C.bmc } })).id;
    // provoke errors that carry secret-looking input
    await rec('POST', '/api/v1/auth/login', { name: 'carol', password: C.wrongPassword }, undefined as any);
    await rec('POST', '/api/v1/auth/login', { name: 'nobody', password: C.wrongPassword }, undefined as any);
    await rec('POST', '/api/v1/users', { name: 'dave', password: C.invalid, isAdmin: true });
    await rec('PATCH', `/api/v1/secrets/${secretId}`, { value: C.invalid, bogus: 1 });
    await rec('POST', '/api/v1/secrets', { project: 'canary', name: 'Bad Name', value: C.invalid });
    await rec('POST', '/api/v1/secrets', { project: 'canary', name: 'db', value: C.invalid }); // 409 duplicate
    const carol = (await h.iam.login('carol', C.password)).token;
    expect((await rec('GET', `/api/v1/secrets/${secretId}/value`, undefined, carol)).statusCode).toBe(403);
    // read everything a user can read
    for (const path of ['/api/v1/secrets', `/api/v1/secrets/${secretId}`, '/api/v1/resources', `/api/v1/resources/${resourceId}`, `/api/v1/resources/${resourceId}/events`, '/api/v1/events?limit=1000',
      '/api/v1/audit?limit=500', '/api/v1/users', '/api/v1/auth/whoami', '/api/v1/tokens', '/api/v1/inventory/servers', `/api/v1/inventory/servers/${serverId}`, '/api/v1/inventory/export', '/api/v1/runs', '/metrics', '/openapi.json']) {
      await rec('GET', path);
    }
  });
  afterAll(async () => h?.cleanupAll());

  it('no API response, header or error message carries a planted secret', () => {
    for (const r of responses) {
      expect(leaks(r.body), r.path).toEqual([]);
      expect(leaks(r.headers), r.path).toEqual([]);
    }
    expect(responses.length).toBeGreaterThan(15);
  });

  it('the explicit endpoints return them to allowed roles, and each read is audited', async () => {
    const v = await h.req('GET', `/api/v1/secrets/${secretId}/value`, { token: h.adminToken });
    expect(v.json().value).toBe(C.secret);
    expect(v.headers['cache-control']).toBe('no-store');
    const rs = await h.req('GET', `/api/v1/resources/${resourceId}/secrets`, { token: h.adminToken });
    expect(rs.json().secrets.adminPassword).toBe(C.resource);
    const bmc = await h.req('GET', `/api/v1/inventory/servers/${serverId}/bmc`, { token: h.adminToken });
    expect(bmc.json().password).toBe(C.bmc);
    const audit = await h.req('GET', '/api/v1/audit?action=secrets:read&limit=50', { token: h.adminToken });
    const routes = audit.json().items.map((e: any) => `${e.route} ${e.outcome}`);
    expect(routes).toContain('GET /api/v1/secrets/:id/value allowed');
    expect(routes).toContain('GET /api/v1/secrets/:id/value denied');
    expect(routes).toContain('GET /api/v1/resources/:id/secrets allowed');
    expect(routes).toContain('GET /api/v1/inventory/servers/:id/bmc allowed');
    expect(leaks(audit.body)).toEqual([]);
  });

  it('no log line carries a planted secret (logs were written: the check is not vacuous)', () => {
    const all = logLines.join('');
    expect(logLines.length).toBeGreaterThan(20);
    expect(all).toContain('request completed');
    expect(leaks(all)).toEqual([]);
  });

  it('no event carries a planted secret', async () => {
    const events = await h.engine.events({ limit: 100_000 });
    expect(events.length).toBeGreaterThan(0);
    expect(leaks(JSON.stringify(events))).toEqual([]);
  });

  it('the database holds no planted secret in plain text (nor base64 or hex of it)', async () => {
    const tables = dialect === 'sqlite'
      ? (await sql<{ name: string }>`select name from sqlite_master where type = 'table'`.execute(h.t.store.db)).rows.map((r) => r.name)
      : (await sql<{ name: string }>`select table_name as name from information_schema.tables where table_schema = current_schema()`.execute(h.t.store.db)).rows.map((r) => r.name);
    expect(tables).toContain('iam_secrets');
    let rows = 0;
    for (const t of tables) {
      const r = await sql<Record<string, unknown>>`select * from ${sql.table(t)}`.execute(h.t.store.db);
      rows += r.rows.length;
      const text = JSON.stringify(r.rows, (_k, v) => (typeof v === 'bigint' ? v.toString() : Buffer.isBuffer(v) ? v.toString('latin1') : v));
      expect(leaks(text), `table ${t}`).toEqual([]);
    }
    expect(rows).toBeGreaterThan(10);
  });
});

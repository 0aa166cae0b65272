import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { sql } from 'kysely';
import { DIALECTS } from './support/dialects.js';
import { makeFullHarness, type FullHarness } from './api-fixtures.js';
import { fullUrl, type AnyRoute } from '../src/api/route.js';
import { routeTable } from '../src/api/server.js';
import { openStreams } from '../src/api/sse.js';

/**
 * API fuzzing over the request schemas: for every route, random params,
 * query strings and bodies built from the route's own schema keys (plus
 * unknown keys and junk), sent by an administrator (so requests get past
 * authorization into validation and the handlers) and by nobody.
 * Properties: no 5xx ever; a 4xx to a mutating route changes nothing in the
 * database (the audit log excepted: it records the refused call).
 */
const RUNS = Number(process.env.FUZZ_RUNS ?? 12);

function shapeOf(schema: unknown): Record<string, unknown> {
  let s = schema as { shape?: Record<string, unknown>; unwrap?: () => unknown; def?: { innerType?: unknown } } | undefined;
  for (let i = 0; i < 3 && s && !s.shape; i++) s = (s.def?.innerType ?? (typeof s.unwrap === 'function' ? s.unwrap() : undefined)) as typeof s;
  return s?.shape ?? {};
}

const junk = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.constantFrom('', ' ', '0', '-1', '1e309', 'null', 'true', '../../etc/passwd', '%00', '\u0000', 'ü', '${ params.x }', "' or 1=1 --", 'a'.repeat(300), 'admin', 'default'),
  fc.integer(), fc.double({ noNaN: false }), fc.boolean(), fc.constant(null),
);
const value = fc.oneof({ weight: 3, arbitrary: junk }, { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) });

function bodyArb(r: AnyRoute): fc.Arbitrary<unknown> {
  const keys = Object.keys(shapeOf(r.schema.body));
  const known = keys.length
    ? fc.dictionary(fc.constantFrom(...keys), value, { maxKeys: keys.length })
    : fc.constant({});
  const extra = fc.dictionary(fc.oneof(fc.constantFrom('project', 'owner', 'id', 'revision', 'system', '__proto__', 'constructor'), fc.string({ maxLength: 8 })), value, { maxKeys: 2 });
  return fc.oneof(
    { weight: 4, arbitrary: known },
    { weight: 2, arbitrary: fc.tuple(known, extra).map(([a, b]) => ({ ...b, ...a })) },
    { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
  );
}

function queryArb(r: AnyRoute): fc.Arbitrary<Record<string, string>> {
  const keys = [...Object.keys(shapeOf(r.schema.querystring)), 'cursor', 'limit', 'x'];
  return fc.dictionary(fc.constantFrom(...keys), fc.oneof(fc.string({ maxLength: 30 }), fc.integer().map(String), fc.constantFrom('0', '501', '-5', 'true', 'eyJhIjoxfQ', 'own')), { maxKeys: 3 });
}

describe.each(DIALECTS)('API fuzzing on %s', (dialect) => {
  let h: FullHarness;
  let table: AnyRoute[];
  const realIds: string[] = [];
  let adminId = '';
  let token = '';

  const fingerprint = async (): Promise<string> => {
    const tables = dialect === 'sqlite'
      ? (await sql<{ name: string }>`select name from sqlite_master where type = 'table' order by name`.execute(h.t.store.db)).rows.map((r) => r.name)
      : (await sql<{ name: string }>`select table_name as name from information_schema.tables where table_schema = current_schema() order by table_name`.execute(h.t.store.db)).rows.map((r) => r.name);
    const hash = createHash('sha256');
    for (const t of tables) {
      if (t === 'iam_audit') continue;
      if (t === 'iam_tokens') {
        const c = await sql<{ c: number }>`select count(*) as c from iam_tokens where revoked_at is null`.execute(h.t.store.db);
        hash.update(`${t}:${c.rows[0]!.c}`);
        continue;
      }
      const rows = await sql<Record<string, unknown>>`select * from ${sql.table(t)}`.execute(h.t.store.db);
      const sorted = rows.rows.map((r) => JSON.stringify(r, (_k, v) => (typeof v === 'bigint' ? v.toString() : v))).sort();
      hash.update(`${t}:${sorted.join('\n')}`);
    }
    return hash.digest('hex');
  };

  beforeAll(async () => {
    h = await makeFullHarness(dialect);
    table = routeTable(h.deps).filter((r) => !r.sse);
    await h.iam.createProject({ name: 'own' });
    realIds.push((await h.iam.createSecret({ project: 'own', name: 'fz', value: 'v' })).id);
    realIds.push((await h.resources.create({ kind: 'test/Thing', name: 'fz', project: 'own', spec: {} })).id);
    realIds.push((await h.iam.createUser({ name: 'fuzzy' })).id, 'own', 'reader');
    adminId = (await h.iam.getUser('admin')).id;
  });
  afterAll(async () => h?.cleanupAll());

  it('never answers 5xx, and a refused mutating call changes nothing', async () => {
    const failures: string[] = [];
    let requests = 0;
    const statuses: Record<number, number> = {};
    for (const r of table) {
      const url = fullUrl(r);
      const mutating = r.method !== 'GET';
      const paramNames = [...url.matchAll(/:([a-zA-Z]+)/g)].map((m) => m[1]!);
      const paramArb = fc.tuple(...paramNames.map(() => fc.oneof(fc.constantFrom(...realIds), fc.string({ minLength: 1, maxLength: 30 }))));
      await fc.assert(fc.asyncProperty(paramArb, queryArb(r), bodyArb(r), fc.integer({ min: 0, max: 4 }).map((n) => n === 0), async (params, query, body, anonymous) => {
        let path = url;
        paramNames.forEach((p, i) => {
          path = path.replace(`:${p}`, encodeURIComponent((params as string[])[i]!));
        });
        const qs = new URLSearchParams(query).toString();
        // the fuzzer may log out or revoke the token it uses: keep a valid one (minted before the snapshot)
        if (!token || !(await h.iam.authenticate(token))) token = (await h.iam.createApiToken(adminId, { name: 'fuzz' })).token;
        const before = mutating ? await fingerprint() : '';
        const res = await h.app.inject({
          method: r.method, url: qs ? `${path}?${qs}` : path,
          headers: { ...(anonymous ? {} : { authorization: `Bearer ${token}` }), ...(mutating ? { 'content-type': 'application/json' } : {}) },
          ...(mutating ? { payload: JSON.stringify(body) } : {}),
        });
        requests++;
        statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1;
        if (res.statusCode >= 500) {
          failures.push(`${r.method} ${path}?${qs} body=${JSON.stringify(body).slice(0, 200)} → ${res.statusCode} ${res.body.slice(0, 200)}`);
          return;
        }
        if (res.statusCode >= 400) {
          expect(res.headers['content-type']).toContain('application/problem+json');
          expect(res.body).not.toMatch(/at .*\.ts:\d+|node_modules/);
          if (mutating) {
            const after = await fingerprint();
            if (after !== before) failures.push(`${r.method} ${path} answered ${res.statusCode} but changed the database; body=${JSON.stringify(body).slice(0, 200)}`);
          }
        }
      }), { numRuns: RUNS, seed: 4242 });
    }
    console.log(`fuzz on ${dialect}: ${requests} requests, statuses ${JSON.stringify(statuses)}`);
    expect(failures, failures.slice(0, 20).join('\n')).toEqual([]);
    // the fuzzer reaches the handlers: some requests succeed, most are refused by validation
    expect(statuses[200] ?? 0).toBeGreaterThan(0);
    expect(statuses[400] ?? 0).toBeGreaterThan(0);
    expect(requests).toBeGreaterThan(table.length * RUNS * 0.9);
  }, 600_000);

  it('every SSE route: never 5xx; a refusal is problem+json, an accepted stream is text/event-stream', async () => {
    const streams = routeTable(h.deps).filter((r) => r.sse);
    expect(streams.length).toBeGreaterThan(0);
    await h.app.listen({ host: '127.0.0.1', port: 0 });
    const addr = h.app.server.address();
    const base = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
    const failures: string[] = [];
    const statuses: Record<number, number> = {};
    for (const r of streams) {
      const url = fullUrl(r);
      const paramNames = [...url.matchAll(/:([a-zA-Z]+)/g)].map((m) => m[1]!);
      const paramArb = fc.tuple(...paramNames.map(() => fc.oneof(fc.constantFrom(...realIds), fc.string({ minLength: 1, maxLength: 30 }))));
      await fc.assert(fc.asyncProperty(paramArb, queryArb(r), fc.integer({ min: 0, max: 4 }).map((n) => n === 0), fc.option(fc.string({ maxLength: 20 })), async (params, query, anonymous, lastId) => {
        let path = url;
        paramNames.forEach((p, i) => {
          path = path.replace(`:${p}`, encodeURIComponent((params as string[])[i]!));
        });
        const qs = new URLSearchParams(query).toString();
        if (!token || !(await h.iam.authenticate(token))) token = (await h.iam.createApiToken(adminId, { name: 'fuzz' })).token;
        const ac = new AbortController();
        const res = await fetch(`${base}${qs ? `${path}?${qs}` : path}`, {
          signal: ac.signal,
          headers: { ...(anonymous ? {} : { authorization: `Bearer ${token}` }), ...(lastId !== null ? { 'last-event-id': lastId.replace(/[^\x20-\x7e]/g, '') } : {}) },
        });
        statuses[res.status] = (statuses[res.status] ?? 0) + 1;
        try {
          if (res.status >= 500) failures.push(`GET ${path}?${qs} → ${res.status} ${(await res.text()).slice(0, 200)}`);
          else if (res.status >= 400) {
            expect(res.headers.get('content-type')).toContain('application/problem+json');
            expect(await res.text()).not.toMatch(/at .*\.ts:\d+|node_modules/);
          } else {
            expect(res.status).toBe(200);
            expect(res.headers.get('content-type')).toContain('text/event-stream');
            const first = await res.body!.getReader().read();
            expect(new TextDecoder().decode(first.value)).toContain(': infraflow event stream');
          }
        } finally {
          ac.abort();
        }
      }), { numRuns: Math.max(10, Math.floor(RUNS / 2)), seed: 4243 });
    }
    console.log(`sse fuzz on ${dialect}: ${streams.length} routes, statuses ${JSON.stringify(statuses)}`);
    expect(failures, failures.slice(0, 20).join('\n')).toEqual([]);
    expect(statuses[200] ?? 0).toBeGreaterThan(0);
    await vi.waitFor(() => expect(openStreams()).toBe(0), { timeout: 30_000 });
  }, 600_000);
});

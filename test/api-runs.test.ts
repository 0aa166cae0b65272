import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { DIALECTS, openTestStore, type TestDb } from './support/dialects.js';
import { makeHarness, parseSse, type Harness } from './api-harness.js';
import { Engine, defineWorkflow } from '../src/engine/index.js';
import { ResourceStore } from '../src/resources/store.js';
import { ApiClient } from '../src/cli/client.js';
import { closeAllStreams, openStreams } from '../src/api/sse.js';

const hello = defineWorkflow({
  name: 'test.hello', version: 1,
  input: z.object({ who: z.string(), password: z.string().optional(), fail: z.boolean().optional() }),
  async run(ctx, input) {
    await ctx.step('greet', async (sc) => {
      sc.log(`hello ${input.who}`);
      return { greeted: input.who };
    });
    await ctx.step('maybe-fail', async () => {
      if (input.fail) throw Object.assign(new Error('boom on purpose'), { retryable: false });
      return 'ok';
    }, { retry: { maxAttempts: 1 } });
    return { done: true };
  },
});

const approval = defineWorkflow({
  name: 'test.approval', version: 1,
  async run(ctx) {
    const a = await ctx.waitFor<{ approved: boolean; by: string }>('approve');
    return { approved: a.approved, by: a.by };
  },
});

/** Waits (on the engine's event stream, not a timer) until the run has `status`. */
async function untilStatus(engine: Engine, id: string, status: string): Promise<void> {
  await new Promise<void>((resolve) => {
    const check = () => void engine.get(id).then((r) => {
      if (r.status === status) {
        off();
        resolve();
      }
    });
    const off = engine.subscribe({}, (e) => {
      if (e.subject === id) check();
    });
    check();
  });
}

describe.each(DIALECTS)('API runs, events and resources on %s', (dialect) => {
  let h: Harness;
  let engine: Engine;
  let t: TestDb;
  let resources: ResourceStore;
  let memberA: string;
  let readerA: string;
  let memberB: string;

  beforeAll(async () => {
    t = await openTestStore(dialect);
    engine = new Engine({ store: t.store, pollMs: 20 });
    engine.register(hello);
    engine.register(approval);
    engine.startWorker();
    resources = new ResourceStore(t.store, { engine, secretKey: Buffer.alloc(32, 7).toString('base64'), allowUnknownKinds: true });
    h = await makeHarness(dialect, { engine, t, areas: { resources } });
    await h.iam.createProject({ name: 'alpha' });
    await h.iam.createProject({ name: 'beta' });
    memberA = (await h.userWith('member-a', 'member', { project: 'alpha' })).token;
    readerA = (await h.userWith('reader-a', 'reader', { project: 'alpha' })).token;
    memberB = (await h.userWith('member-b', 'member', { project: 'beta' })).token;
  });
  afterAll(async () => {
    await h?.close();
    await engine?.stop();
    await t?.cleanup();
  });

  it('lists, gets, shows the timeline and logs of a run; redacts secret-named input', async () => {
    const run = await engine.start('test.hello', { who: 'alpha', password: 'hunter2-canary' }, { labels: { project: 'alpha' } });
    await engine.result(run.id);
    const list = await h.req('GET', '/api/v1/runs?project=alpha', { token: readerA });
    expect(list.statusCode).toBe(200);
    expect(list.json().items.map((r: any) => r.id)).toContain(run.id);
    const get = await h.req('GET', `/api/v1/runs/${run.id}`, { token: readerA });
    expect(get.json()).toMatchObject({ id: run.id, status: 'succeeded', project: 'alpha' });
    expect(get.json().input.password).toBe('[redacted]');
    expect(get.body).not.toContain('hunter2-canary');
    expect(get.headers.etag).toBeTruthy();
    const tl = await h.req('GET', `/api/v1/runs/${run.id}/timeline`, { token: readerA });
    expect(tl.json().steps.map((s: any) => s.name)).toEqual(expect.arrayContaining(['greet', 'maybe-fail']));
    // which worker (process) executed the run and each of its steps
    expect(get.json().worker).toBe(engine.workerId);
    expect(get.json().takenOverFrom).toBeNull();
    expect(tl.json().steps.every((s: any) => s.worker === engine.workerId)).toBe(true);
    const logs = await h.req('GET', `/api/v1/runs/${run.id}/logs`, { token: readerA });
    expect(logs.json().items.map((l: any) => l.message)).toContain('hello alpha');
    const evs = await h.req('GET', `/api/v1/runs/${run.id}/events`, { token: readerA });
    expect(evs.json().items.map((e: any) => e.type)).toContain('run.succeeded');
    // filters
    const byStatus = await h.req('GET', '/api/v1/runs?status=succeeded&workflow=test.hello', { token: readerA });
    expect(byStatus.json().items.every((r: any) => r.status === 'succeeded')).toBe(true);
    expect((await h.req('GET', '/api/v1/runs?status=bogus', { token: readerA })).statusCode).toBe(400);
  });

  it('another project\'s run is 404 for get, timeline, logs, events and every action; absent from lists', async () => {
    const run = await engine.start('test.hello', { who: 'beta' }, { labels: { project: 'beta' } });
    await engine.result(run.id);
    for (const path of ['', '/timeline', '/logs', '/events', '/events/stream']) {
      const r = await h.req('GET', `/api/v1/runs/${run.id}${path}`, { token: memberA });
      expect(r.statusCode, path).toBe(404);
      expect(r.json().detail).toBe(`run ${run.id} not found`);
    }
    const missing = await h.req('GET', '/api/v1/runs/run_doesnotexist000', { token: memberA });
    expect(missing.json().detail).toBe('run run_doesnotexist000 not found');
    for (const action of ['cancel', 'retry', 'skip', 'signal', 'approve']) {
      const r = await h.req('POST', `/api/v1/runs/${run.id}/${action}`, { token: memberA, body: action === 'skip' ? { step: 'x' } : action === 'signal' ? { name: 'x' } : {} });
      expect(r.statusCode, action).toBe(404);
    }
    const list = await h.req('GET', '/api/v1/runs', { token: memberA });
    expect(list.json().items.map((r: any) => r.id)).not.toContain(run.id);
    expect((await h.req('GET', '/api/v1/runs?project=beta', { token: memberA })).statusCode).toBe(404);
    // the owner sees it
    expect((await h.req('GET', `/api/v1/runs/${run.id}`, { token: memberB })).statusCode).toBe(200);
  });

  it('a reader cannot operate runs (403); a member can retry, skip, cancel, approve', async () => {
    const failed = await engine.start('test.hello', { who: 'x', fail: true }, { labels: { project: 'alpha' } });
    expect((await engine.result(failed.id)).status).toBe('failed');
    expect((await h.req('POST', `/api/v1/runs/${failed.id}/retry`, { token: readerA })).statusCode).toBe(403);
    const skip = await h.req('POST', `/api/v1/runs/${failed.id}/skip`, { token: memberA, body: { step: 'maybe-fail', result: 'skipped' } });
    expect(skip.statusCode).toBe(200);
    expect((await engine.result(failed.id, { timeoutMs: 5000 })).status).toBe('succeeded');
    const notFailed = await h.req('POST', `/api/v1/runs/${failed.id}/retry`, { token: memberA });
    expect(notFailed.statusCode).toBe(409);
    expect(notFailed.json().code).toBe('engine.run_not_failed');

    const waiting = await engine.start('test.approval', {}, { labels: { project: 'alpha' } });
    await untilStatus(engine, waiting.id, 'waiting');
    const ap = await h.req('POST', `/api/v1/runs/${waiting.id}/approve`, { token: memberA, body: { comment: 'lgtm' } });
    expect(ap.statusCode).toBe(202);
    const done = await engine.result(waiting.id, { timeoutMs: 5000 });
    expect(done.output).toEqual({ approved: true, by: 'member-a' });

    const toCancel = await engine.start('test.approval', {}, { labels: { project: 'alpha' } });
    const c = await h.req('POST', `/api/v1/runs/${toCancel.id}/cancel`, { token: memberA, body: { reason: 'not needed' } });
    expect(c.statusCode).toBe(200);
    expect(c.json().id).toBe(toCancel.id);
    expect((await engine.result(toCancel.id)).status).toBe('cancelled');
    const audit = await h.req('GET', `/api/v1/audit?actor=member-a&limit=200`, { token: h.adminToken });
    expect(audit.json().items.some((e: any) => e.route === 'POST /api/v1/runs/:id/cancel' && e.target === toCancel.id && e.project === 'alpha')).toBe(true);
  });

  it('streams a run\'s events as SSE, resumable with Last-Event-ID, and ends when the run is finished', async () => {
    const run = await engine.start('test.hello', { who: 'sse' }, { labels: { project: 'alpha' } });
    await engine.result(run.id);
    const r = await h.req('GET', `/api/v1/runs/${run.id}/events/stream`, { token: readerA });
    expect(r.statusCode).toBe(200);
    expect(r.headers['content-type']).toContain('text/event-stream');
    const evs = parseSse(r.body);
    const types = evs.map((e) => e.event);
    expect(types).toContain('run.succeeded');
    expect(types[types.length - 1]).toBe('end');
    const ids = evs.filter((e) => e.id).map((e) => Number(e.id));
    expect(ids).toEqual([...ids].sort((a, b) => a - b));
    // resume after the second event: only later ones come
    const resumed = parseSse((await h.req('GET', `/api/v1/runs/${run.id}/events/stream`, { token: readerA, headers: { 'last-event-id': String(ids[1]) } })).body);
    expect(resumed.filter((e) => e.id).map((e) => Number(e.id))).toEqual(ids.slice(2));
  });

  it('streams live over HTTP: the CLI client follows a waiting run through approval to its end, then the stream closes', async () => {
    const address = await h.app.listen({ host: '127.0.0.1', port: 0 });
    const client = new ApiClient(address, memberA);
    const run = await engine.start('test.approval', {}, { labels: { project: 'alpha' } });
    const seen: string[] = [];
    let approved = false;
    await client.stream(`/runs/${run.id}/events/stream`, {}, async (e) => {
      seen.push(e.event);
      if (e.event === 'run.waiting' && !approved) {
        approved = true;
        await client.request('POST', `/runs/${run.id}/approve`, { body: { comment: 'live' } });
      }
    });
    expect(seen[0]).toBe('run.created');
    expect(seen).toContain('run.waiting');
    expect(seen.at(-1)).toBe('run.succeeded');
    expect(openStreams()).toBe(0);
    // a project stream stays open until the client leaves; the server ends it on shutdown
    const ac = new AbortController();
    const follow = client.stream('/projects/alpha/events/stream', {}, () => undefined, ac.signal);
    await new Promise<void>((resolve) => {
      const check = () => (openStreams() > 0 ? resolve() : setImmediate(check));
      check();
    });
    closeAllStreams();
    expect(openStreams()).toBe(0);
    ac.abort();
    await follow;
  });

  it('lists events by project visibility and serves resources with redaction and an audited secrets endpoint', async () => {
    const a = await resources.create({ kind: 'test/Thing', name: 'thing-a', project: 'alpha', spec: { size: 1, adminPassword: 'canary-spec-secret' } });
    await resources.updateStatus(a.id, { phase: 'ready', secrets: { adminPassword: 'canary-res-secret' } });
    const b = await resources.create({ kind: 'test/Thing', name: 'thing-b', project: 'beta', spec: { size: 2 } });
    const list = await h.req('GET', '/api/v1/resources', { token: readerA });
    expect(list.statusCode).toBe(200);
    expect(list.json().items.map((r: any) => r.id)).toEqual([a.id]);
    expect(list.body).not.toContain('canary');
    const get = await h.req('GET', `/api/v1/resources/${a.id}`, { token: readerA });
    expect(get.json().spec.adminPassword).toBe('[redacted]');
    expect(get.headers.etag).toBe('"1"');
    expect((await h.req('GET', `/api/v1/resources/${b.id}`, { token: readerA })).statusCode).toBe(404);
    expect((await h.req('GET', `/api/v1/resources/${a.id}/secrets`, { token: memberA })).statusCode).toBe(403);
    const sec = await h.req('GET', `/api/v1/resources/${a.id}/secrets`, { token: h.adminToken });
    expect(sec.json().secrets.adminPassword).toBe('canary-res-secret');
    const audit = await h.req('GET', `/api/v1/audit?action=secrets:read&limit=10`, { token: h.adminToken });
    expect(audit.json().items[0]).toMatchObject({ route: 'GET /api/v1/resources/:id/secrets', target: a.id, outcome: 'allowed' });
    const rev = await h.req('GET', `/api/v1/resources/${a.id}/events`, { token: readerA });
    expect(rev.json().items.map((e: any) => e.type)).toEqual(['resource.created', 'resource.phase_changed']);
    const evs = await h.req('GET', '/api/v1/events?type=resource.*&limit=1000', { token: readerA });
    const subjects = evs.json().items.map((e: any) => e.subject);
    expect(subjects).toContain(a.id);
    expect(subjects).not.toContain(b.id);
    const evsAdmin = await h.req('GET', '/api/v1/events?type=resource.*&limit=1000', { token: h.adminToken });
    expect(evsAdmin.json().items.map((e: any) => e.subject)).toContain(b.id);
  });
});

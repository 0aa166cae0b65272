import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DIALECTS, openTestStore, type TestDb } from './support/dialects.js';
import { makeHarness, type Harness } from './api-harness.js';
import { stackHarness, type StackHarness } from './fixtures/stacks-harness.js';
import { resourceWorkflows } from '../src/resources/lifecycle.js';

/**
 * Per-resource `labels:` in a stack document reach the resources (with the
 * stack's own labels under them), and so does the `infraflow.dev/name` label
 * that POST /servers writes into the small stack it builds. Before, only the
 * stack's labels were kept. Label keys and names follow one rule.
 */
describe.each(DIALECTS)('resource labels and names on %s', (dialect) => {
  let t: TestDb;
  let s: StackHarness;
  let h: Harness;

  beforeAll(async () => {
    t = await openTestStore(dialect);
    s = await stackHarness(t.store);
    for (const w of resourceWorkflows({ resources: s.resources, registry: s.registry })) s.engine.register(w);
    h = await makeHarness(dialect, { engine: s.engine, t, areas: { resources: s.resources, stacks: s.stacks } });
  });
  afterAll(async () => {
    await h?.close();
    await s?.close();
    await t?.cleanup();
  });

  it('keeps per-resource labels, over the stack labels', async () => {
    const doc = `apiVersion: infraflow.dev/v1
kind: Stack
metadata:
  name: labelled
  labels: { team: core, tier: any }
spec:
  resources:
    back-net:
      kind: network/Network
      labels: { tier: db, infraflow.dev/name: back }
`;
    const { run } = await s.stacks.apply({ document: doc, file: 'labelled.yaml' });
    const done = await s.stacks.wait(run.id, { timeoutMs: 60_000 });
    expect(done.status, JSON.stringify(done.error)).toBe('succeeded');
    const nets = (await s.resources.list({ project: 'default', kind: 'network/Network', labels: { 'infraflow.dev/name': 'back' } })).items;
    expect(nets).toHaveLength(1);
    expect(nets[0]!.labels).toMatchObject({ team: 'core', tier: 'db', 'infraflow.dev/name': 'back' });
  });

  it('POST /servers leaves infraflow.dev/name on the server and what it created', async () => {
    const r = await h.req('POST', '/api/v1/servers', { token: h.adminToken, body: { project: 'default', name: 'named-vm', flavor: 'SCS-2V-4', image: 'ubuntu-24.04', bootVolumeSize: 10, networks: ['labnet'] } });
    expect(r.statusCode, r.body).toBe(202);
    const final = await s.engine.result(r.json().run.id);
    expect(final.status, JSON.stringify(final.error)).toBe('succeeded');
    const vms = (await s.resources.list({ project: 'default', kind: 'compute/Server', labels: { 'infraflow.dev/name': 'named-vm' } })).items;
    expect(vms).toHaveLength(1);
    const nets = (await s.resources.list({ project: 'default', kind: 'network/Network', labels: { 'infraflow.dev/name': 'labnet' } })).items;
    expect(nets).toHaveLength(1);
  });

  it('refuses bad names and label keys at entry, without echoing them', async () => {
    const post = (body: Record<string, unknown>) => h.req('POST', '/api/v1/resources', { token: h.adminToken, body: { project: 'default', kind: 'network/Network', ...body } });
    for (const name of ['Admin', 'ab\u0000cd', 'a_b', '-a', 'a'.repeat(254)]) {
      const res = await post({ name });
      expect(res.statusCode, `${JSON.stringify(name)}: ${res.body}`).toBe(400);
      expect(res.json().errors[0].field).toBe('body.name');
      expect(res.body).not.toContain('ab\\u0000cd');
    }
    for (const key of ['a\u0000b', '../../x', '\u202Eevil', 'x/', ' lead', 'Upper/x']) {
      const res = await post({ name: 'labels-bad', labels: { [key]: 'v' } });
      expect(res.statusCode, `${JSON.stringify(key)}: ${res.body}`).toBe(400);
      expect(res.json().detail).toContain('label key');
      expect(res.body).not.toContain('\u202E');
    }
    for (const value of ['a\nb', 'x\u200By', ' padded']) {
      const res = await post({ name: 'labels-bad', labels: { ok: value } });
      expect(res.statusCode, `${JSON.stringify(value)}: ${res.body}`).toBe(400);
    }
    const good = await post({ name: 'labels-good.v2', labels: { 'example.com/team': 'Ünïcode ok', tier: 'db' } });
    expect(good.statusCode, good.body).toBe(202);
  });

  it('token names and descriptions are display text: no control, bidi or zero-width characters, no edge spaces', async () => {
    for (const name of ['tok\u0000', 'a\r\nb', '\u202Etok', 'zero\u200Bwidth', ' tok', 'tok ', '']) {
      const res = await h.req('POST', '/api/v1/tokens', { token: h.adminToken, body: { name } });
      expect(res.statusCode, `${JSON.stringify(name)}: ${res.body}`).toBe(400);
      expect(res.json().errors[0].field).toBe('body.name');
    }
    const ok = await h.req('POST', '/api/v1/tokens', { token: h.adminToken, body: { name: 'CI token — déploiement' } });
    expect(ok.statusCode, ok.body).toBe(201);
    const proj = await h.req('POST', '/api/v1/projects', { token: h.adminToken, body: { name: 'p-text', description: 'evil\u202Etxt' } });
    expect(proj.statusCode, proj.body).toBe(400);
  });
});

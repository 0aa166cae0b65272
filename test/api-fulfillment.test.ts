import { afterEach, describe, expect, it, vi } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { readFileSync } from 'node:fs';
import { DIALECTS } from './support/dialects.js';
import { fulfillmentWorld, type FulWorld } from './fixtures/fulfillment-world.js';
import { makeHarness, parseSse, type Harness } from './api-harness.js';

const body = (name: string, spec: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) => ({
  name, project: 'team-a',
  spec: { template: 'ocp-4.17-small', templateParameters: { costCenter: 'cc-1' }, ...spec },
  ...extra,
});

describe.each(DIALECTS)('fulfillment API on %s', (dialect) => {
  let w: FulWorld;
  let h: Harness;
  afterEach(async () => {
    await h?.close();
    await w?.close();
  });

  async function setup(agents = 3) {
    w = await fulfillmentWorld(dialect, { agents });
    h = await makeHarness(dialect, { t: { store: w.ctx.store, url: w.databaseUrl, cleanup: async () => {} }, engine: w.ctx.engine, areas: { fulfillment: w.ctx.fulfillment } });
    await h.iam.createProject({ name: 'team-a' });
  }
  const post = (b: unknown, token = h.adminToken) => h.req('POST', '/api/v1/clusters', { token, body: b });
  const count = async () => (await w.ctx.store.db.selectFrom('ful_clusters').select('id').execute()).length;
  const held = async () => (await w.ctx.inventory.listServers({})).filter((s) => s.state !== 'available').length + (await w.ctx.ipam.listVlans({})).length + (await w.ctx.allocations.list({})).length;

  it('bad input is refused with problem+json naming the field, and nothing is created', async () => {
    await setup();
    const cases: [unknown, number, string, RegExp][] = [
      [body('a', { template: 'no-such-template' }), 400, 'spec.template', /unknown template "no-such-template"/],
      [body('a', { templateParameters: {} }), 400, 'spec.templateParameters.costCenter', /required by template/],
      [body('a', { templateParameters: { costCenter: 'x', ingressReplicas: 'three' } }), 400, 'spec.templateParameters.ingressReplicas', /expected an integer, got "three"/],
      [body('a', { templateParameters: { costCenter: 'x', colour: 'red' } }), 400, 'spec.templateParameters.colour', /unknown parameter; template ocp-4.17-small accepts costCenter, ingressReplicas/],
      [body('a', { nodeSets: { extra: { hostType: 'gpu.h200', size: 1 } } }), 400, 'spec.nodeSets.extra.hostType', /unknown host type "gpu.h200"/],
      [body('a', { nodeSets: { workers: { size: 0 } } }), 400, 'body.spec.nodeSets.workers.size', /at least 1/],
      [body('a', { nodeSets: { workers: { size: 10_000 } } }), 400, 'body.spec.nodeSets.workers.size', /at most 1000/],
      [body('a', { nodeSets: { workers: { hostType: 'compute.c2', size: 1 } } }), 400, 'spec.nodeSets.workers.hostType', /host type is fixed/],
      [body('A_b'), 400, 'body.name', /DNS label/],
      [body('a', { nodeSets: { workers: { size: 5 } } }), 409, 'spec.nodeSets', /5 server\(s\) of type general.m1 requested in dc1, 3 available/],
    ];
    for (const [b, status, field, msg] of cases) {
      const r = await post(b);
      expect(r.statusCode, JSON.stringify(b)).toBe(status);
      expect(r.headers['content-type']).toContain('application/problem+json');
      const p = r.json();
      expect(p.errors?.[0]?.field ?? p.details?.field, r.body).toBe(field);
      expect(p.detail, r.body).toMatch(msg);
      expect(r.body).not.toMatch(/at .*\.ts:\d+/);
    }
    // one reason per shortfall
    const inf = (await post(body('a', { nodeSets: { workers: { size: 5 } } }))).json();
    expect(inf.details.shortfalls).toHaveLength(1);
    expect(inf.details.shortfalls[0]).toMatchObject({ resource: 'servers', requested: 5, available: 3 });
    expect(await count()).toBe(0);
    expect(await held()).toBe(0);

    // an accepted order; immutable fields refused on PATCH, nothing changes
    const ok = await post(body('good'));
    expect(ok.statusCode, ok.body).toBe(201);
    const id = ok.json().id as string;
    for (const [spec, field] of [[{ template: 'microk8s-3' }, 'spec.template'], [{ templateParameters: { costCenter: 'other' } }, 'spec.templateParameters'], [{ nodeSets: { workers: { hostType: 'compute.c2', size: 3 } } }, 'spec.nodeSets.workers.hostType']] as const) {
      const r = await h.req('PATCH', `/api/v1/clusters/${id}`, { token: h.adminToken, body: { spec } });
      expect(r.statusCode, r.body).toBe(400);
      expect(r.json().errors[0].field).toBe(field);
    }
    await vi.waitFor(async () => expect((await h.req('GET', `/api/v1/clusters/${id}`, { token: h.adminToken })).json().status.state).toBe('Ready'), { timeout: 60_000, interval: 50 });
    expect((await h.req('GET', `/api/v1/clusters/${id}`, { token: h.adminToken })).json().revision).toBe(1);
    expect(await count()).toBe(1);
  }, 120_000);

  it('templates from examples load through the API; clusters list with filter and paging; credentials only by request, audited', async () => {
    await setup(6);
    const doc = readFileSync('examples/clusters/ocp-small.yaml', 'utf8');
    const put = await h.req('PUT', '/api/v1/cluster-templates', { token: h.adminToken, body: { document: doc.replace('id: ocp-4.17-small', 'id: ocp-copy') } });
    expect(put.statusCode, put.body).toBe(200);
    expect(put.json()).toMatchObject({ id: 'ocp-copy', revision: 1 });
    const bad = await h.req('PUT', '/api/v1/cluster-templates', { token: h.adminToken, body: { document: doc.replace('size: 3 }', 'size: 0 }') } });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().detail).toMatch(/^nodeSets.workers.size: .*\(line \d+\)/);
    const member = await h.userWith('mia', 'member', { project: 'team-a' });
    expect((await h.req('PUT', '/api/v1/cluster-templates', { token: member.token, body: { document: doc } })).statusCode).toBe(403);
    const list = (await h.req('GET', '/api/v1/cluster-templates', { token: member.token })).json();
    expect(list.items.map((t: { id: string }) => t.id)).toEqual(['microk8s-3', 'ocp-4.17-gpu', 'ocp-4.17-small', 'ocp-copy']);

    const a = (await post(body('one', { nodeSets: { workers: { size: 1 } }, pullSecret: 'secret-pull-123' }, { labels: { env: 'dev' } }), member.token)).json();
    const b = (await post(body('two', { nodeSets: { workers: { size: 1 } } }, { labels: { env: 'prod' } }), member.token)).json();
    const c = (await post(body('three', { nodeSets: { workers: { size: 1 } } }), member.token)).json();
    for (const x of [a, b, c]) await vi.waitFor(async () => expect((await w.ctx.fulfillment.get(x.id)).status.state).toBe('Ready'), { timeout: 60_000, interval: 50 });
    const p1 = (await h.req('GET', '/api/v1/clusters?limit=2', { token: member.token })).json();
    expect(p1.items.map((x: { name: string }) => x.name)).toEqual(['three', 'two']);
    const p2 = (await h.req('GET', `/api/v1/clusters?limit=2&cursor=${p1.nextCursor}`, { token: member.token })).json();
    expect(p2.items.map((x: { name: string }) => x.name)).toEqual(['one']);
    expect(p2.nextCursor).toBeNull();
    expect((await h.req('GET', '/api/v1/clusters?label=env=prod', { token: member.token })).json().items.map((x: { name: string }) => x.name)).toEqual(['two']);
    expect((await h.req('GET', '/api/v1/clusters?state=Failed', { token: member.token })).json().items).toEqual([]);
    const all = await h.req('GET', '/api/v1/clusters', { token: member.token });
    expect(all.body).not.toContain('secret-pull-123');
    expect(all.json().items.find((x: { name: string }) => x.name === 'one').spec.pullSecret).toBe('[write-only]');

    // a member cannot read credentials; an admin can, and each read is audited
    expect((await h.req('GET', `/api/v1/clusters/${a.id}/kubeconfig`, { token: member.token })).statusCode).toBe(403);
    const kc = await h.req('GET', `/api/v1/clusters/${a.id}/kubeconfig`, { token: h.adminToken });
    expect(kc.statusCode).toBe(200);
    expect(kc.headers['content-type']).toContain('application/yaml');
    const token = (parseYaml(kc.body) as { users: { user: { token: string } }[] }).users[0]!.user.token;
    const pw = (await h.req('GET', `/api/v1/clusters/${a.id}/password`, { token: h.adminToken })).json();
    expect(pw.username).toBe('kubeadmin');
    const audit = (await h.req('GET', '/api/v1/audit?limit=200', { token: h.adminToken })).json();
    const reads = audit.items.filter((e: { route: string }) => /kubeconfig|password/.test(e.route));
    expect(reads.filter((e: { outcome: string }) => e.outcome === 'allowed')).toHaveLength(2);
    expect(JSON.stringify(audit)).not.toContain(token);
    expect(JSON.stringify(audit)).not.toContain(pw.password);
    // stages and timeline carry no secret either
    const st = await h.req('GET', `/api/v1/clusters/${a.id}/stages`, { token: member.token });
    expect(st.json().stages.every((s: { status: string }) => s.status === 'succeeded')).toBe(true);
    const tl = await h.req('GET', `/api/v1/clusters/${a.id}/timeline`, { token: member.token });
    for (const r of [st, tl]) {
      expect(r.body).not.toContain(token);
      expect(r.body).not.toContain(pw.password);
    }
    // the event stream: stages in order, then the state change to Ready; it ends there; no secret in it
    const sse = await h.req('GET', `/api/v1/clusters/${a.id}/events/stream?after=0`, { token: member.token });
    expect(sse.statusCode).toBe(200);
    const evs = parseSse(sse.body);
    const done = evs.filter((e) => e.event === 'cluster.stage' && e.data.data.status === 'succeeded').map((e) => e.data.data.stage);
    expect(done).toEqual(['accepted', 'agents', 'network', 'addresses', 'dns', 'storage', 'install', 'controlPlane', 'workers', 'postInstall', 'validation', 'ready']);
    expect(evs.some((e) => e.event === 'cluster.state' && e.data.data.state === 'Ready')).toBe(true);
    expect(sse.body).not.toContain(pw.password);
    // another project's member does not see the cluster
    await h.iam.createProject({ name: 'team-b' });
    const other = await h.userWith('olaf', 'member', { project: 'team-b' });
    expect((await h.req('GET', `/api/v1/clusters/${a.id}`, { token: other.token })).statusCode).toBe(404);
    expect((await h.req('GET', '/api/v1/clusters', { token: other.token })).json().items).toEqual([]);
  }, 120_000);
});

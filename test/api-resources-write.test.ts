import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DIALECTS } from './support/dialects.js';
import type { Harness } from './api-harness.js';
import type { Engine } from '../src/engine/index.js';
import type { SimDatacenter } from '../src/providers/sim/index.js';
import type { ResourceStore } from '../src/resources/store.js';
import { resourceHarness, type ResourceHarness } from './fixtures/resource-harness.js';

/**
 * Single resources over the API (`openstack network create` style) on the
 * real engine and simulated datacenter: create, change in place (JSON merge
 * patch, If-Match), replace when a replace-on-change field changes, delete;
 * one resource's runs one after another; stack-owned resources refused;
 * bad specs named by field; other tenants and readers refused.
 */
describe.each(DIALECTS)('API resource create, update, delete on %s', (dialect) => {
  let rh: ResourceHarness;
  let h: Harness;
  let engine: Engine;
  let sim: SimDatacenter;
  let resources: ResourceStore;
  let member: string;
  let reader: string;
  let outsider: string;

  const finish = async (runId: string) => {
    const r = await engine.result(runId, { timeoutMs: 60_000 });
    expect(r.status, JSON.stringify(r.error)).toBe('succeeded');
    return r;
  };

  beforeAll(async () => {
    rh = await resourceHarness(dialect);
    ({ h, engine, sim, resources } = rh);
    await h.iam.createProject({ name: 'net' });
    await h.iam.createProject({ name: 'other' });
    member = (await h.userWith('res-member', 'member', { project: 'net' })).token;
    reader = (await h.userWith('res-reader', 'reader', { project: 'net' })).token;
    outsider = (await h.userWith('res-outsider', 'member', { project: 'other' })).token;
  });
  afterAll(async () => rh?.close());

  it('creates a network and a subnet on it, each through its own run, and shows them ready', async () => {
    const net = await h.req('POST', '/api/v1/resources', { token: member, body: { project: 'net', kind: 'network/Network', name: 'backend', labels: { tier: 'db' } } });
    expect(net.statusCode, net.body).toBe(202);
    expect(net.json().resource).toMatchObject({ kind: 'network/Network', name: 'backend', project: 'net', status: { phase: 'pending' } });
    expect(net.json().run).toMatchObject({ workflow: 'resource.provision', project: 'net' });
    await finish(net.json().run.id);
    const ready = (await h.req('GET', `/api/v1/resources/${net.json().resource.id}`, { token: reader })).json();
    expect(ready.status.phase).toBe('ready');
    expect(ready.status.externalId).toBeTruthy();
    expect((await sim.getObject(ready.status.externalId))?.phase).toBe('ready');

    const sub = await h.req('POST', '/api/v1/resources', { token: member, body: { project: 'net', kind: 'network/Subnet', name: 'backend-v4', spec: { network: ready.status.externalId, cidr: '10.77.0.0/24' } } });
    expect(sub.statusCode, sub.body).toBe(202);
    await finish(sub.json().run.id);
    const subnet = (await h.req('GET', `/api/v1/resources/${sub.json().resource.id}`, { token: reader })).json();
    expect(subnet.status.phase).toBe('ready');
    expect(subnet.status.outputs.cidr ?? subnet.spec.cidr).toBe('10.77.0.0/24');

    // the same name twice is a conflict that names the existing one
    const dup = await h.req('POST', '/api/v1/resources', { token: member, body: { project: 'net', kind: 'network/Network', name: 'backend' } });
    expect(dup.statusCode).toBe(409);
    expect(dup.json().detail).toContain(net.json().resource.id);
  });

  it('updates in place with a merge patch and If-Match, replaces when a replace-on-change field changes, and deletes', async () => {
    const sg = await h.req('POST', '/api/v1/resources', {
      token: member,
      body: { project: 'net', kind: 'network/SecurityGroup', name: 'web', spec: { description: 'web', rules: [{ direction: 'ingress', protocol: 'tcp', portMin: 22, portMax: 22, remoteCidr: '0.0.0.0/0' }] } },
    });
    expect(sg.statusCode, sg.body).toBe(202);
    const id = sg.json().resource.id;
    await finish(sg.json().run.id);
    const before = await h.req('GET', `/api/v1/resources/${id}`, { token: reader });
    const ext = before.json().status.externalId;
    const etag = before.headers.etag as string;
    expect(etag).toBe('"1"');

    const rules = [{ direction: 'ingress', protocol: 'tcp', portMin: 443, portMax: 443, remoteCidr: '0.0.0.0/0' }];
    const stale = await h.req('PATCH', `/api/v1/resources/${id}`, { token: member, body: { spec: { rules } }, headers: { 'if-match': '"7"' } });
    expect(stale.statusCode).toBe(412);
    const up = await h.req('PATCH', `/api/v1/resources/${id}`, { token: member, body: { spec: { rules }, labels: { team: 'web' } }, headers: { 'if-match': etag } });
    expect(up.statusCode, up.body).toBe(202);
    expect(up.headers.etag).toBe('"2"');
    const upRun = await finish(up.json().run.id);
    expect(upRun.output).toMatchObject({ action: 'update', changed: ['rules'] });
    const after = (await h.req('GET', `/api/v1/resources/${id}`, { token: reader })).json();
    expect(after).toMatchObject({ generation: 2, labels: { team: 'web' }, spec: { description: 'web', rules: [{ portMin: 443 }] }, status: { phase: 'ready', externalId: ext } });
    expect(((await sim.getObject(ext))?.actual as any).rules[0].portMin).toBe(443);
    // nothing changed: no run
    const same = await h.req('PATCH', `/api/v1/resources/${id}`, { token: member, body: { spec: { description: 'web' } } });
    expect(same.statusCode).toBe(200);
    expect(same.json().run).toBeNull();

    // a replace-on-change field: the network behind a subnet is replaced (delete, then create)
    const [subnet] = (await resources.list({ project: 'net', kind: 'network/Subnet' })).items;
    const moved = await h.req('PATCH', `/api/v1/resources/${subnet!.id}`, { token: member, body: { spec: { cidr: '10.78.0.0/24' } } });
    expect(moved.statusCode, moved.body).toBe(202);
    expect((await finish(moved.json().run.id)).output).toMatchObject({ action: 'replace', changed: ['cidr'] });
    const replaced = await resources.get(subnet!.id);
    expect(replaced.status.externalId).not.toBe(subnet!.status.externalId);
    expect((await sim.getObject(subnet!.status.externalId!))?.phase).toBe('deleted');

    // delete queued right behind a change of the same resource: they run in order
    const change = await h.req('PATCH', `/api/v1/resources/${id}`, { token: member, body: { spec: { description: 'about to go' } } });
    const del = await h.req('DELETE', `/api/v1/resources/${id}`, { token: member });
    expect(del.statusCode, del.body).toBe(202);
    const [c, d] = [await finish(change.json().run.id), await finish(del.json().run.id)];
    expect(c.updatedAt).toBeLessThanOrEqual(d.updatedAt);
    expect((await resources.get(id)).status.phase).toBe('deleted');
    expect((await sim.getObject(ext))?.phase).toBe('deleted');
    expect((await h.req('DELETE', `/api/v1/resources/${id}`, { token: member })).statusCode).toBe(404);
    expect((await h.req('PATCH', `/api/v1/resources/${id}`, { token: member, body: { spec: { description: 'x' } } })).statusCode).toBe(409);
  });

  it('refuses bad specs by field, unknown kinds, stack-owned resources, readers and other tenants', async () => {
    const before = (await resources.list({ project: 'net', includeDeleted: true })).items.length;
    const bad = await h.req('POST', '/api/v1/resources', { token: member, body: { project: 'net', kind: 'network/Subnet', name: 'bad', spec: { network: 'x', cidr: '10.0.0.0/33' } } });
    expect(bad.statusCode, bad.body).toBe(400);
    expect(bad.json().detail).toMatch(/cidr/);
    const kind = await h.req('POST', '/api/v1/resources', { token: member, body: { project: 'net', kind: 'compute/Toaster', name: 't1' } });
    expect(kind.statusCode).toBe(400);
    expect(kind.json().detail).toMatch(/^kind: unknown kind compute\/Toaster; use one of .*network\/Network/);
    const name = await h.req('POST', '/api/v1/resources', { token: member, body: { project: 'net', kind: 'network/Network', name: 'Bad Name!' } });
    expect(name.statusCode).toBe(400);
    expect((await h.req('POST', '/api/v1/resources', { token: reader, body: { project: 'net', kind: 'network/Network', name: 'r1' } })).statusCode).toBe(403);
    expect((await h.req('POST', '/api/v1/resources', { token: outsider, body: { project: 'net', kind: 'network/Network', name: 'o1' } })).statusCode).toBe(404);
    expect((await resources.list({ project: 'net', includeDeleted: true })).items.length).toBe(before);

    const owned = await resources.create({ kind: 'network/Network', name: 'stack-owned', project: 'net', spec: {}, owner: 'stack:stk_x' });
    const p = await h.req('PATCH', `/api/v1/resources/${owned.id}`, { token: member, body: { spec: { mtu: 9000 } } });
    expect(p.statusCode).toBe(409);
    expect(p.json()).toMatchObject({ code: 'resources.owned' });
    expect(p.json().detail).toContain('stack:stk_x');
    expect((await h.req('DELETE', `/api/v1/resources/${owned.id}`, { token: member })).statusCode).toBe(409);
    expect((await h.req('DELETE', `/api/v1/resources/${owned.id}`, { token: outsider })).statusCode).toBe(404);
    expect((await h.req('PATCH', `/api/v1/resources/${owned.id}`, { token: reader, body: { labels: { a: 'b' } } })).statusCode).toBe(403);
  });
});

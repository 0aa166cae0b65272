import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DIALECTS } from './support/dialects.js';
import { makeFullHarness, type FullHarness } from './api-fixtures.js';
import type { ProviderCallContext, ReadResult } from '../src/resources/types.js';

/**
 * The simulator's controls over the HTTP API (src/api/routes/sim.ts) on a
 * real server and a real SimDatacenter: settings, speed, seed, fault rules,
 * quotas, hosts, objects, drift, logs, metrics, DNS; who may read and who
 * may change; and that credentials never leave through these routes.
 */
describe.each(DIALECTS)('simulator controls over the API on %s', (dialect) => {
  let h: FullHarness;
  let member = '';
  let reader = '';
  let betaReader = '';

  const call = (key: string, project = 'alpha'): ProviderCallContext => ({ idempotencyKey: `api-sim:${key}`, project, resourceId: `res_${key}`, resourceName: key });
  /** Reads until the object reaches `state` (the simulator runs at 1e6×: operations finish within milliseconds). */
  const until = async (kind: string, id: string, state: ReadResult['state'] = 'ready'): Promise<ReadResult> => {
    let r = await h.sim.read(kind, id);
    for (let i = 0; i < 2000 && r.state !== state; i++) {
      await new Promise((res) => setTimeout(res, 5));
      r = await h.sim.read(kind, id);
    }
    expect(r.state, `${kind} ${id}: ${r.message ?? ''}`).toBe(state);
    return r;
  };
  const admin = (method: string, url: string, body?: unknown) => h.req(method, url, { token: h.adminToken, ...(body !== undefined ? { body } : {}) });

  beforeAll(async () => {
    h = await makeFullHarness(dialect);
    await h.iam.createProject({ name: 'alpha' });
    await h.iam.createProject({ name: 'beta' });
    member = (await h.userWith('mia', 'member', { project: 'alpha' })).token;
    reader = (await h.userWith('rita', 'reader', { project: 'alpha' })).token;
    betaReader = (await h.userWith('bert', 'reader', { project: 'beta' })).token;
  });
  afterAll(async () => h?.cleanupAll());

  it('GET /sim shows the settings and a summary; a speed change is visible and audited; only admins change it', async () => {
    const s = await admin('GET', '/api/v1/sim');
    expect(s.statusCode).toBe(200);
    expect(s.json()).toMatchObject({ speed: 1000, seed: 42, faults: { rules: [] }, hosts: { count: 4, enabled: 4 } });
    expect(s.json().hosts.vcpuCapacity).toBeGreaterThan(0);
    expect((await h.req('GET', '/api/v1/sim', { token: reader })).statusCode).toBe(200);
    expect((await h.req('GET', '/api/v1/sim')).statusCode).toBe(401);

    const denied = await h.req('PUT', '/api/v1/sim/speed', { token: member, body: { speed: 5 } });
    expect(denied.statusCode).toBe(403);
    expect(denied.json().detail).toContain('sim:control');
    expect(await h.sim.getSpeed()).toBe(1000);

    const bad = await admin('PUT', '/api/v1/sim/speed', { speed: -3 });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().errors[0].field).toBe('body.speed');
    expect((await admin('PUT', '/api/v1/sim/speed', { speed: 5, extra: 1 })).statusCode).toBe(400);

    const ok = await admin('PUT', '/api/v1/sim/speed', { speed: 1_000_000 });
    expect(ok.statusCode).toBe(200);
    expect(ok.json().speed).toBe(1_000_000);
    expect((await admin('GET', '/api/v1/sim')).json().speed).toBe(1_000_000);
    expect(await h.sim.getSpeed()).toBe(1_000_000);

    expect((await admin('PUT', '/api/v1/sim/seed', { seed: 1.5 })).statusCode).toBe(400);
    expect((await admin('PUT', '/api/v1/sim/seed', { seed: 7 })).json().seed).toBe(7);
    expect(await h.sim.getSeed()).toBe(7);
    await admin('PUT', '/api/v1/sim/seed', { seed: 42 });

    const audit = (await admin('GET', '/api/v1/audit?limit=100')).json().items as { route: string; outcome: string; message: string | null; actorName: string }[];
    expect(audit.find((a) => a.route === 'PUT /api/v1/sim/speed' && a.outcome === 'allowed')?.message).toBe('sim speed 1000 -> 1000000');
    expect(audit.some((a) => a.route === 'PUT /api/v1/sim/speed' && a.outcome === 'denied' && a.actorName === 'mia')).toBe(true);
  });

  it('fault rules: set, applied to provider calls, bad rules refused with the field and nothing changed, cleared', async () => {
    const rules = [{ kind: 'network/Network', op: 'create', transientRate: 1 }, { kind: 'compute/*', slowRate: 0.5, slowFactor: 3 }];
    const set = await admin('PUT', '/api/v1/sim/faults', { rules });
    expect(set.statusCode).toBe(200);
    expect(set.json().rules[0]).toMatchObject({ kind: 'network/Network', op: 'create', transientRate: 1, permanentRate: 0 });
    expect((await h.req('GET', '/api/v1/sim/faults', { token: reader })).json().rules).toHaveLength(2);
    // the rule is in force: creating a network fails with an injected 503
    await expect(h.sim.create('network/Network', {}, call('faulty'))).rejects.toMatchObject({ reason: 'BackendUnavailable' });

    const tooBig = await admin('PUT', '/api/v1/sim/faults', { rules: [{ kind: 'compute/Server', transientRate: 2 }] });
    expect(tooBig.statusCode).toBe(400);
    expect(tooBig.json().errors.map((e: { field: string }) => e.field)).toContain('body.rules.0.transientRate');
    const typo = await admin('PUT', '/api/v1/sim/faults', { rules: [{ kind: 'compute/Srever', transientRate: 0.5 }] });
    expect(typo.statusCode).toBe(400);
    expect(typo.json().errors[0].field).toBe('body.rules.0.kind');
    expect(typo.json().detail).toContain('compute/Srever');
    expect((await admin('PUT', '/api/v1/sim/faults', { rules: [{ kind: '*', hangrate: 1 }] })).statusCode).toBe(400);
    expect((await admin('GET', '/api/v1/sim/faults')).json().rules).toHaveLength(2);

    expect((await h.req('DELETE', '/api/v1/sim/faults', { token: member })).statusCode).toBe(403);
    expect((await h.sim.getFaults()).rules).toHaveLength(2);
    expect((await admin('DELETE', '/api/v1/sim/faults')).statusCode).toBe(204);
    expect((await admin('GET', '/api/v1/sim/faults')).json()).toEqual({ rules: [] });
    const net = await h.sim.create('network/Network', {}, call('faulty'));
    expect(net.externalId).toMatch(/^net_/);
  });

  it('quotas: partial changes keep the other limits; bad values and unknown projects are refused; readers see only their projects', async () => {
    const q0 = await admin('GET', '/api/v1/sim/quotas/alpha');
    expect(q0.statusCode).toBe(200);
    expect(q0.json().quota).toMatchObject({ instances: 1000, cores: 4000 });
    expect((await admin('PUT', '/api/v1/sim/quotas/alpha', { cores: 8 })).json().quota).toMatchObject({ cores: 8, instances: 1000 });
    expect((await admin('PUT', '/api/v1/sim/quotas/alpha', { instances: 5 })).json().quota).toMatchObject({ cores: 8, instances: 5 });
    expect(await h.sim.getQuota('alpha')).toMatchObject({ cores: 8, instances: 5 });
    const bad = await admin('PUT', '/api/v1/sim/quotas/alpha', { cores: -1 });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().errors[0].field).toBe('body.cores');
    expect((await admin('PUT', '/api/v1/sim/quotas/alpha', { vcpus: 3 })).statusCode).toBe(400);
    expect((await admin('PUT', '/api/v1/sim/quotas/nowhere', { cores: 3 })).statusCode).toBe(404);
    expect((await h.req('PUT', '/api/v1/sim/quotas/alpha', { token: member, body: { cores: 1000 } })).statusCode).toBe(403);
    expect((await h.sim.getQuota('alpha')).cores).toBe(8);
    expect((await h.req('GET', '/api/v1/sim/quotas/alpha', { token: reader })).json().quota.cores).toBe(8);
    expect((await h.req('GET', '/api/v1/sim/quotas/beta', { token: reader })).statusCode).toBe(404);
    await admin('PUT', '/api/v1/sim/quotas/alpha', { cores: 4000, instances: 1000 });
  });

  it('hosts: list, disable and enable; an unknown host is a 404', async () => {
    const list = await h.req('GET', '/api/v1/sim/hosts', { token: reader });
    expect(list.json().items.map((x: { name: string }) => x.name)).toEqual(['hv-01', 'hv-02', 'hv-03', 'hv-04']);
    expect(list.json().nextCursor).toBeNull();
    expect((await h.req('POST', '/api/v1/sim/hosts/hv-01/disable', { token: member })).statusCode).toBe(403);
    const off = await admin('POST', '/api/v1/sim/hosts/hv-01/disable');
    expect(off.statusCode).toBe(200);
    expect(off.json()).toMatchObject({ name: 'hv-01', enabled: false });
    expect((await admin('GET', '/api/v1/sim')).json().hosts.enabled).toBe(3);
    expect((await admin('POST', '/api/v1/sim/hosts/hv-01/enable')).json().enabled).toBe(true);
    const missing = await admin('POST', '/api/v1/sim/hosts/hv-99/disable');
    expect(missing.statusCode).toBe(404);
    expect(missing.json().code).toBe('sim.host_not_found');
    expect((await admin('POST', '/api/v1/sim/hosts/sync')).json().listed).toBe(0);
  });

  it('objects: listed per project with paging; drift delete makes one vanish (GET and the provider agree); unknown ids are 404s', async () => {
    await admin('PUT', '/api/v1/sim/speed', { speed: 1_000_000 });
    const a = await h.sim.create('network/Network', {}, call('obj-a'));
    const b = await h.sim.create('network/Network', {}, call('obj-b'));
    const c = await h.sim.create('network/Network', {}, call('obj-c', 'beta'));
    for (const x of [a, b, c]) await until('network/Network', x.externalId);

    const all = await admin('GET', '/api/v1/sim/objects?kind=network/Network');
    const ids = all.json().items.map((o: { id: string }) => o.id);
    expect(ids).toEqual(expect.arrayContaining([a.externalId, b.externalId, c.externalId]));
    expect(all.json().items[0]).not.toHaveProperty('createKey');
    const alphaOnly = (await admin('GET', '/api/v1/sim/objects?project=alpha&kind=network/Network')).json().items.map((o: { project: string }) => o.project);
    expect(new Set(alphaOnly)).toEqual(new Set(['alpha']));
    // a reader of alpha sees alpha's objects only; beta's are 404 for them
    const seen = (await h.req('GET', '/api/v1/sim/objects', { token: reader })).json().items.map((o: { id: string }) => o.id);
    expect(seen).toContain(a.externalId);
    expect(seen).not.toContain(c.externalId);
    expect((await h.req('GET', `/api/v1/sim/objects/${c.externalId}`, { token: reader })).statusCode).toBe(404);
    expect((await h.req('GET', `/api/v1/sim/objects/${c.externalId}`, { token: betaReader })).json().project).toBe('beta');
    // another tenant's project in a list filter is a 404 as on every other route (not 200 with nothing), and so is one that does not exist
    expect((await h.req('GET', '/api/v1/sim/objects?project=beta', { token: reader })).statusCode).toBe(404);
    expect((await h.req('GET', '/api/v1/sim/objects?project=nowhere', { token: reader })).statusCode).toBe(404);
    expect((await h.req('GET', '/api/v1/sim/objects?project=alpha', { token: reader })).statusCode).toBe(200);
    // every cross-tenant attempt is in the audit log as denied (object, its logs, its metrics, the quota, the list)
    for (const url of [`/api/v1/sim/objects/${c.externalId}/logs`, `/api/v1/sim/objects/${c.externalId}/metrics`, '/api/v1/sim/quotas/beta']) expect((await h.req('GET', url, { token: reader })).statusCode, url).toBe(404);
    const audit = (await admin('GET', '/api/v1/audit?outcome=denied&actor=rita&limit=100')).json().items as { route: string; project: string | null; status: number }[];
    const routes = audit.map((e) => e.route);
    expect(routes).toEqual(expect.arrayContaining(['GET /api/v1/sim/objects/:id', 'GET /api/v1/sim/objects/:id/logs', 'GET /api/v1/sim/objects/:id/metrics', 'GET /api/v1/sim/quotas/:project', 'GET /api/v1/sim/objects']));
    expect(audit.every((e) => e.status === 404 && e.project === 'beta')).toBe(true);
    // a missing object or project is not a denied attempt
    expect(routes.filter((r) => r === 'GET /api/v1/sim/objects')).toHaveLength(1);
    // the catalogue is everyone's
    expect((await h.req('GET', '/api/v1/sim/objects?includeCatalogue=true&kind=compute/Flavor', { token: betaReader })).json().items.length).toBeGreaterThan(0);

    // paging
    const p1 = await admin('GET', '/api/v1/sim/objects?limit=1');
    expect(p1.json().items).toHaveLength(1);
    const p2 = await admin('GET', `/api/v1/sim/objects?limit=1&cursor=${p1.json().nextCursor}`);
    expect(p2.json().items[0].id > p1.json().items[0].id).toBe(true);
    expect((await admin('GET', '/api/v1/sim/objects?cursor=nonsense')).statusCode).toBe(400);
    // a reader pages through exactly their projects' objects (and the catalogue when asked), full pages, nothing twice
    for (let i = 0; i < 3; i++) await h.sim.create('network/Network', {}, call(`page-beta-${i}`, 'beta'));
    for (let i = 0; i < 2; i++) await h.sim.create('network/Network', {}, call(`page-alpha-${i}`));
    const walk = async (token: string, qs: string) => {
      const ids: string[] = [];
      let cursor: string | null = null;
      for (let i = 0; i < 500; i++) {
        const res = await h.req('GET', `/api/v1/sim/objects?limit=2${qs}${cursor ? `&cursor=${cursor}` : ''}`, { token });
        const body = res.json() as { items: { id: string; project: string }[]; nextCursor: string | null };
        if (body.nextCursor) expect(body.items).toHaveLength(2);
        ids.push(...body.items.map((o) => o.id));
        cursor = body.nextCursor;
        if (!cursor) break;
      }
      return ids;
    };
    const everything = (await h.sim.listObjects({ includeCatalogue: true })).filter((o) => o.kind === 'network/Network' || o.kind === 'compute/Flavor');
    const alphaIds = everything.filter((o) => o.project === 'alpha' && o.kind === 'network/Network').map((o) => o.id);
    expect(await walk(reader, '&kind=network/Network')).toEqual(alphaIds);
    expect((await h.req('GET', '/api/v1/sim/objects?limit=2&kind=network/Network&project=beta', { token: reader })).statusCode).toBe(404); // another tenant's project: 404, not an empty page
    expect(await walk(betaReader, '&kind=network/Network')).toEqual(everything.filter((o) => o.project === 'beta' && o.kind === 'network/Network').map((o) => o.id));
    expect(await walk(reader, '&kind=compute/Flavor&includeCatalogue=true')).toEqual(everything.filter((o) => o.kind === 'compute/Flavor').map((o) => o.id));
    expect(await walk(h.adminToken, '&kind=network/Network')).toEqual(everything.filter((o) => o.kind === 'network/Network' && o.project !== '*').map((o) => o.id));

    // drift: members may not, admins may; the object is gone for the API and for the provider
    expect((await h.req('POST', `/api/v1/sim/objects/${a.externalId}/drift`, { token: member, body: { action: 'delete' } })).statusCode).toBe(403);
    expect((await h.sim.read('network/Network', a.externalId)).state).toBe('ready');
    const del = await admin('POST', `/api/v1/sim/objects/${a.externalId}/drift`, { action: 'delete' });
    expect(del.statusCode).toBe(200);
    expect(del.json().phase).toBe('deleted');
    expect((await h.sim.read('network/Network', a.externalId)).state).toBe('absent');
    expect((await admin('GET', '/api/v1/sim/objects?kind=network/Network')).json().items.map((o: { id: string }) => o.id)).not.toContain(a.externalId);
    expect((await admin('GET', `/api/v1/sim/objects/${a.externalId}`)).json().phase).toBe('deleted');
    expect((await admin('GET', '/api/v1/sim/objects?phase=deleted')).json().items.map((o: { id: string }) => o.id)).toContain(a.externalId);
    // deleting it again: it no longer exists in the backend
    expect((await admin('POST', `/api/v1/sim/objects/${a.externalId}/drift`, { action: 'delete' })).statusCode).toBe(404);

    // modify; refused actions leave it as it was
    const mod = await admin('POST', `/api/v1/sim/objects/${b.externalId}/drift`, { action: 'modify', patch: { mtu: 1400 } });
    expect(mod.json().actual.mtu).toBe(1400);
    expect((await h.sim.read('network/Network', b.externalId)).observed?.mtu).toBe(1400);
    const power = await admin('POST', `/api/v1/sim/objects/${b.externalId}/drift`, { action: 'power', power: 'off' });
    expect(power.statusCode).toBe(400);
    expect(power.json().detail).toContain('network/Network');
    expect((await admin('POST', `/api/v1/sim/objects/${b.externalId}/drift`, { action: 'explode' })).statusCode).toBe(400);
    expect((await admin('POST', `/api/v1/sim/objects/${b.externalId}/drift`, { action: 'power', power: 'sideways' })).statusCode).toBe(400);

    for (const url of ['/api/v1/sim/objects/srv-nope', '/api/v1/sim/objects/srv-nope/logs', '/api/v1/sim/objects/srv-nope/metrics']) {
      const r = await admin('GET', url);
      expect(r.statusCode, url).toBe(404);
      expect(r.headers['content-type']).toContain('application/problem+json');
      expect(r.json().code).toBe('sim.object_not_found');
    }
    const nope = await admin('POST', '/api/v1/sim/objects/srv-nope/drift', { action: 'delete' });
    expect(nope.statusCode).toBe(404);
    expect(nope.json().code).toBe('sim.object_not_found');
  });

  it('a cluster\'s credentials never appear in the objects API; health drift, workload metrics, load and logs', async () => {
    await admin('PUT', '/api/v1/sim/speed', { speed: 1_000_000 });
    const cl = await h.sim.create('container/Cluster', { version: '1.30', nodePools: [{ name: 'w', count: 2 }] }, call('cl1'));
    const ready = await until('container/Cluster', cl.externalId);
    const secrets = ready.secrets!;
    expect(secrets.adminPassword).toBeTruthy();
    const token = /token: (\S+)/.exec(secrets.kubeconfig!)![1]!;

    const list = await admin('GET', '/api/v1/sim/objects?kind=container/Cluster');
    const one = await admin('GET', `/api/v1/sim/objects/${cl.externalId}`);
    const health = await admin('POST', `/api/v1/sim/objects/${cl.externalId}/drift`, { action: 'clusterHealth', notReadyNodes: 1, degradedOperators: ['coredns'] });
    // the stored (sealed) credentials are not part of the object view
    expect(one.json()).not.toHaveProperty('secrets');
    expect(list.json().items[0]).not.toHaveProperty('secrets');
    for (const body of [list.body, one.body, health.body, (await admin('GET', '/api/v1/sim')).body]) {
      expect(body).not.toContain(secrets.adminPassword);
      expect(body).not.toContain(token);
      expect(body).not.toContain('api-sim:cl1'); // the create's idempotency key (project readers can see run and step ids)
    }
    expect(one.json().kind).toBe('container/Cluster');
    expect(health.json().state.health).toEqual({ notReadyNodes: [expect.any(String)], degradedOperators: ['coredns'] });
    const sick = await h.sim.read('container/Cluster', cl.externalId);
    expect(sick.outputs.health).toBe('degraded');
    expect(sick.conditions?.find((x) => x.type === 'NodesReady')?.status).toBe('False');
    const tooMany = await admin('POST', `/api/v1/sim/objects/${cl.externalId}/drift`, { action: 'clusterHealth', notReadyNodes: 9 });
    expect(tooMany.statusCode).toBe(400);
    expect(tooMany.json().detail).toContain('2 worker nodes');
    await admin('POST', `/api/v1/sim/objects/${cl.externalId}/drift`, { action: 'clusterHealth', notReadyNodes: [], degradedOperators: [] });
    expect((await h.sim.read('container/Cluster', cl.externalId)).outputs.health).toBe('healthy');

    const wl = await h.sim.create('container/Workload', { cluster: cl.externalId, image: 'nginx:1.27', replicas: 2, ports: [8080] }, call('wl1'));
    await until('container/Workload', wl.externalId);
    const m = await h.req('GET', `/api/v1/sim/objects/${wl.externalId}/metrics`, { token: reader });
    expect(m.statusCode).toBe(200);
    expect(m.json()).toMatchObject({ workload: wl.externalId, replicas: 2, readyReplicas: 2 });
    await admin('POST', `/api/v1/sim/objects/${wl.externalId}/drift`, { action: 'load', requestsPerSecond: 250 });
    expect((await admin('GET', `/api/v1/sim/objects/${wl.externalId}/metrics`)).json().requestsPerSecond).toBe(250);
    expect((await admin('GET', `/api/v1/sim/objects/${cl.externalId}/metrics`)).statusCode).toBe(400);
    const logs = await admin('GET', `/api/v1/sim/objects/${wl.externalId}/logs?tail=2`);
    expect(logs.statusCode).toBe(200);
    expect(logs.json().items.length).toBeGreaterThan(0);
    expect(logs.json().items.length).toBeLessThanOrEqual(2);
    expect((await admin('GET', `/api/v1/sim/objects/${cl.externalId}/logs`)).statusCode).toBe(400);
    expect((await h.req('GET', `/api/v1/sim/objects/${wl.externalId}/logs`, { token: betaReader })).statusCode).toBe(404);
  });

  it('load balancers: one request routed to a healthy member; powering members off through drift takes them out', async () => {
    await admin('PUT', '/api/v1/sim/speed', { speed: 1_000_000 });
    const net = await h.sim.create('network/Network', {}, call('lb-net'));
    await until('network/Network', net.externalId);
    const sub = await h.sim.create('network/Subnet', { network: net.externalId, cidr: '10.44.0.0/24' }, call('lb-sub'));
    await until('network/Subnet', sub.externalId);
    const vms: string[] = [];
    const ips: string[] = [];
    for (const i of [1, 2]) {
      const v = await h.sim.create('compute/Server', { flavor: 'SCS-1V-2-10', image: 'debian-12', networks: [{ subnet: sub.externalId }] }, call(`lb-vm-${i}`));
      ips.push((await until('compute/Server', v.externalId)).outputs.ip as string);
      vms.push(v.externalId);
    }
    const lb = await h.sim.create('network/LoadBalancer', { subnet: sub.externalId, listeners: [{ port: 80, protocol: 'HTTP' }], members: ips.map((address) => ({ address, port: 8080 })) }, call('lb'));
    await until('network/LoadBalancer', lb.externalId);
    const seen = new Set<string>();
    for (let i = 0; i < 4; i++) {
      const r = await h.req('GET', `/api/v1/sim/objects/${lb.externalId}/route?port=80`, { token: reader });
      expect(r.json()).toMatchObject({ status: 200, loadBalancer: lb.externalId });
      seen.add(r.json().member.address);
    }
    expect([...seen].sort()).toEqual([...ips].sort());
    expect((await admin('GET', `/api/v1/sim/objects/${lb.externalId}/route?port=443`)).json()).toMatchObject({ status: 503, member: null });
    for (const v of vms) expect((await admin('POST', `/api/v1/sim/objects/${v}/drift`, { action: 'power', power: 'off' })).json().actual.power).toBe('off');
    const down = await admin('GET', `/api/v1/sim/objects/${lb.externalId}/route`);
    expect(down.statusCode).toBe(200);
    expect(down.json()).toMatchObject({ status: 503, member: null, message: expect.stringContaining('no healthy members') });
    expect((await admin('GET', `/api/v1/sim/objects/${vms[0]}/route`)).statusCode).toBe(400);
    // the summary counts only what the caller may see
    expect((await h.req('GET', '/api/v1/sim', { token: betaReader })).json().objects['network/LoadBalancer']).toBeUndefined();
    expect((await h.req('GET', '/api/v1/sim', { token: reader })).json().objects['network/LoadBalancer']).toEqual({ ready: 1 });
  });

  it('the DNS resolver answers from live records', async () => {
    await admin('PUT', '/api/v1/sim/speed', { speed: 1_000_000 });
    const z = await h.sim.create('dns/Zone', { name: 'example.test' }, call('zone'));
    await until('dns/Zone', z.externalId);
    const rec = await h.sim.create('dns/Record', { zone: 'example.test', name: 'web', type: 'A', values: ['10.9.0.5'] }, call('rec'));
    await until('dns/Record', rec.externalId);
    const r = await h.req('GET', '/api/v1/sim/dns/resolve?name=web.example.test', { token: reader });
    expect(r.json()).toMatchObject({ rcode: 'NOERROR', answers: [{ type: 'A', value: '10.9.0.5' }] });
    expect((await admin('GET', '/api/v1/sim/dns/resolve?name=nothing.example.test')).json().rcode).toBe('NXDOMAIN');
    expect((await admin('GET', '/api/v1/sim/dns/resolve?name=web.example.test&type=BOGUS')).statusCode).toBe(400);
    await admin('POST', `/api/v1/sim/objects/${rec.externalId}/drift`, { action: 'delete' });
    expect((await admin('GET', '/api/v1/sim/dns/resolve?name=web.example.test')).json().rcode).toBe('NXDOMAIN');
  });
});

import { afterEach, describe, expect, it, vi } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { DIALECTS } from './support/dialects.js';
import { fulfillmentWorld, leaks, type FulWorld } from './fixtures/fulfillment-world.js';
import { STAGES } from '../src/fulfillment/schemas.js';

const order = (name: string, extra: Record<string, unknown> = {}) => ({
  name, project: 'team-a',
  spec: { template: 'ocp-4.17-small', templateParameters: { costCenter: 'cc-42', ingressReplicas: 3 }, nodeSets: { workers: { size: 3 } }, pullSecret: 'pull-secret-value-xyz' },
  ...extra,
});

async function waitState(w: FulWorld, id: string, state: string, timeout = 60_000) {
  await vi.waitFor(async () => {
    const c = await w.ctx.fulfillment.get(id);
    if (c.status.state === 'Failed' && state !== 'Failed') throw Object.assign(new Error(`failed: ${c.status.message}`), { fatal: true });
    expect(c.status.state).toBe(state);
  }, { timeout, interval: 50 });
  return w.ctx.fulfillment.get(id);
}

describe.each(DIALECTS)('cluster fulfillment end to end on %s', (dialect) => {
  let w: FulWorld;
  afterEach(async () => w?.close());

  it('orders a cluster: every stage in order, kubeconfig works against the cluster, GitOps commit, delete leaves nothing', async () => {
    w = await fulfillmentWorld(dialect, { agents: 4 });
    const f = w.ctx.fulfillment;
    const c0 = await f.create(order('alpha'));
    expect(c0.status.state).toBe('Progressing');
    expect(JSON.stringify(c0)).not.toContain('pull-secret-value-xyz');
    const c = await waitState(w, c0.id, 'Ready');
    expect(c.status.apiUrl).toBe('https://api.alpha.clusters.example.com:6443');
    expect(c.status.hub).toBe('hub-1');
    expect(c.status.hubReason).toContain('hub-1');
    expect(c.status.nodeSets.workers).toMatchObject({ hostType: 'general.m1', size: 3, ready: 3 });

    // every stage succeeded, in order
    const stages = await f.stages(c.id);
    expect(stages.map((s) => s.name)).toEqual([...STAGES]);
    for (const s of stages) expect(s.status, s.name).toBe('succeeded');
    for (let i = 1; i < stages.length; i++) expect(stages[i]!.startedAt!).toBeGreaterThanOrEqual(stages[i - 1]!.finishedAt!);

    // agents provisioned, on the cluster's VLAN, with addresses; DNS answers
    const agents = await w.ctx.inventory.listServers({ holder: `cluster:${c.id}` });
    expect(agents).toHaveLength(3);
    for (const a of agents) expect(a.state).toBe('provisioned');
    const vlan = (await w.ctx.ipam.listVlans({ holder: `cluster:${c.id}` }))[0]!.vlan;
    for (const a of agents) expect(await w.backend.portVlan({ switch: 'leaf-1', port: a.nics[0]!.port! })).toBe(vlan);
    const dns = await w.ctx.sim.resolve(`api.alpha.clusters.example.com`);
    expect(dns.rcode).toBe('NOERROR');

    // kubeconfig works against the simulated cluster; a wrong token does not
    const kc = parseYaml(await f.kubeconfig(c.id)) as { clusters: { cluster: { server: string } }[]; users: { user: { token: string } }[] };
    const server = kc.clusters[0]!.cluster.server;
    const nodes = await w.backend.kubeGet(server, kc.users[0]!.user.token, '/api/v1/nodes');
    expect(nodes.status).toBe(200);
    expect((nodes.body as { items: unknown[] }).items).toHaveLength(3);
    expect((await w.backend.kubeGet(server, 'wrong-token', '/api/v1/nodes')).status).toBe(401);
    const pw = await f.password(c.id);
    expect(pw.password.length).toBeGreaterThan(10);
    // sealed at rest: the stored row does not contain them
    const row = await w.ctx.store.db.selectFrom('ful_clusters').selectAll().where('id', '=', c.id).executeTakeFirstOrThrow();
    expect(JSON.stringify(row)).not.toContain(pw.password);
    expect(JSON.stringify(row)).not.toContain('pull-secret-value-xyz');
    // not in events either
    const events = await w.ctx.engine.events({ limit: 10_000 });
    expect(JSON.stringify(events)).not.toContain(pw.password);
    expect(JSON.stringify(events)).not.toContain(kc.users[0]!.user.token);

    // GitOps: a clone of the bare repository has the rendered manifests, one commit for revision 1
    const clone = mkdtempSync(join(tmpdir(), 'ful-clone-'));
    try {
      execFileSync('git', ['clone', '-q', w.gitUrl, clone]);
      const ing = readFileSync(join(clone, 'clusters/team-a/alpha/ingress/ingresscontroller.yaml'), 'utf8');
      expect(ing).toContain('replicas: 3');
      expect(ing).toContain('domain: apps.alpha.clusters.example.com');
      expect(readFileSync(join(clone, 'clusters/team-a/alpha/labels.yaml'), 'utf8')).toContain('costCenter: "cc-42"');
      const log = execFileSync('git', ['-C', clone, 'log', '--format=%s'], { encoding: 'utf8' }).trim().split('\n');
      expect(log.filter((l) => l.includes('alpha') && l.includes('revision 1'))).toHaveLength(1);
    } finally {
      rmSync(clone, { recursive: true, force: true });
    }

    // the merged timeline has stages, steps and events
    const tl = await f.timeline(c.id);
    expect(tl.some((e) => e.source === 'stage')).toBe(true);
    expect(tl.some((e) => e.source === 'step' && e.message.startsWith('agents: '))).toBe(true);
    expect(tl.some((e) => e.source === 'event' && e.type === 'cluster.stage')).toBe(true);

    // delete: reverse teardown, zero leaks
    await f.delete(c.id, 'tester');
    await waitState(w, c.id, 'Deleted');
    const dstages = await f.stages(c.id);
    for (const s of dstages) expect(s.status, s.name).toBe('succeeded');
    expect(await leaks(w, c.id)).toEqual({ servers: 0, vlans: 0, addresses: 0, prefixes: 0, parts: 0, ports: 0, fabric: 0, records: 0, volumes: 0, vms: 0, reservations: 0 });
    const clone2 = mkdtempSync(join(tmpdir(), 'ful-clone-'));
    try {
      execFileSync('git', ['clone', '-q', w.gitUrl, clone2]);
      expect(existsSync(join(clone2, 'clusters/team-a/alpha'))).toBe(false);
    } finally {
      rmSync(clone2, { recursive: true, force: true });
    }
    // agents are back in the pool, cleaned
    for (const a of agents) {
      const s = await w.ctx.inventory.getServer(a.id);
      expect(s.state).toBe('available');
      expect((await w.ctx.inventory.serverHistory(a.id)).map((h) => h.to)).toContain('cleaning');
    }
  }, 180_000);
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DIALECTS, openTestStore, type TestDb } from './support/dialects.js';
import { makeHarness, type Harness } from './api-harness.js';
import { stackHarness, type StackHarness } from './fixtures/stacks-harness.js';

/**
 * `POST /servers` under concurrency: 50 requests at once, all naming a network
 * and a security group the project does not have yet. What is created
 * implicitly is created exactly once (a uniqueness rule in the database
 * decides who creates it, not a check-then-insert), every server ends on the
 * one subnet, and no two servers hold the same address.
 */
describe.each(DIALECTS)('POST /servers under concurrency on %s', (dialect) => {
  let t: TestDb;
  let s: StackHarness;
  let h: Harness;
  let member: string;

  beforeAll(async () => {
    t = await openTestStore(dialect, { poolSize: 20 });
    s = await stackHarness(t.store);
    h = await makeHarness(dialect, { engine: s.engine, t, areas: { resources: s.resources, stacks: s.stacks } });
    member = (await h.userWith('burst-member', 'member', { project: 'default' })).token;
  });
  afterAll(async () => {
    await h?.close();
    await s?.close();
    await t?.cleanup();
  });

  it('50 concurrent creates make one network, one subnet, one security group and 50 distinct addresses', async () => {
    const N = 50;
    const answers = await Promise.all(Array.from({ length: N }, (_, i) => h.req('POST', '/api/v1/servers', {
      token: member,
      body: { project: 'default', name: `burst-${i}`, flavor: 'SCS-1V-2', image: 'ubuntu-24.04', bootVolumeSize: 10, networks: ['burstnet'], securityGroups: ['burstsg'] },
    })));
    for (const a of answers) expect(a.statusCode, a.body).toBe(202);
    const runs = answers.map((a) => a.json().run.id as string);
    const finals = await Promise.all(runs.map((id) => s.engine.result(id, { timeoutMs: 240_000 })));
    for (const f of finals) expect(f.status, JSON.stringify(f.error)).toBe('succeeded');

    const list = async (kind: string) => (await s.resources.list({ project: 'default', kind, limit: 1000 })).items.filter((r) => r.status.phase !== 'deleted');
    const nets = await list('network/Network');
    const subnets = await list('network/Subnet');
    const groups = await list('network/SecurityGroup');
    const servers = await list('compute/Server');
    expect(nets).toHaveLength(1);
    expect(subnets).toHaveLength(1);
    expect(groups).toHaveLength(1);
    expect(servers).toHaveLength(N);
    // the simulator agrees: one network object, one subnet object
    const simNets = (await s.sim.listObjects()).filter((o) => o.kind === 'network/Network' && !o.deletedAt);
    expect(simNets).toHaveLength(1);
    const ips = servers.map((r) => r.status.outputs.ip as string);
    expect(ips.every((ip) => typeof ip === 'string' && ip.length > 0)).toBe(true);
    expect(new Set(ips).size).toBe(N);
    const subnetId = subnets[0]!.status.outputs.id;
    for (const r of servers) expect((r.status.outputs.addresses as { subnet: string }[]).map((a) => a.subnet)).toEqual([subnetId]);
    // each server's stack holds only its server
    const stacks = await s.stacks.list({ project: 'default', limit: 1000 });
    const serverStacks = stacks.filter((x) => x.name.startsWith('server-burst-'));
    expect(serverStacks).toHaveLength(N);
    for (const st of serverStacks) expect(st.resourceCount).toBe(1);

    // a later server on the same names reuses them too
    const later = await h.req('POST', '/api/v1/servers', { token: member, body: { project: 'default', name: 'after-burst', flavor: 'SCS-1V-2', image: 'ubuntu-24.04', bootVolumeSize: 10, networks: ['burstnet'], securityGroups: ['burstsg'] } });
    expect(later.statusCode, later.body).toBe(202);
    expect((await s.engine.result(later.json().run.id, { timeoutMs: 120_000 })).status).toBe('succeeded');
    expect(await list('network/Network')).toHaveLength(1);
    expect(await list('network/Subnet')).toHaveLength(1);
  }, 300_000);
});

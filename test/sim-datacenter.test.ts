import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../src/core/clock.js';
import { applyDrift, DriftAction, SimDatacenter } from '../src/providers/sim/index.js';
import { DIALECTS, openTestStore, type TestDb } from './support/dialects.js';
import { advanceUntil, call, makeNetwork, makeSim, PROJECT } from './fixtures/sim-helpers.js';

describe.each(DIALECTS)('simulated datacenter on %s', (dialect) => {
  let t: TestDb;
  afterEach(async () => t?.cleanup());

  it('boots a VM: creating with progress reasons, then ready with a DHCP address from its subnet', async () => {
    t = await openTestStore(dialect);
    const { sim, clock } = await makeSim(t.store);
    const { subnet } = await makeNetwork(sim, clock);
    const c = await sim.create('compute/Server', { flavor: 'SCS-2V-4-20s', image: 'ubuntu-24.04', networks: [{ subnet }] }, call('vm-1'));
    expect(c.ready).toBe(false);
    const first = await sim.read('compute/Server', c.externalId);
    expect(first.state).toBe('creating');
    expect(first.conditions?.[0]).toMatchObject({ type: 'Provisioned', status: 'False', reason: 'Scheduling' });
    const r = await advanceUntil(sim, clock, 'compute/Server', c.externalId);
    expect(r.state).toBe('ready');
    expect(r.outputs.status).toBe('ACTIVE');
    expect(r.outputs.ip).toBe('10.1.0.2'); // .1 is the gateway
    const second = await sim.create('compute/Server', { flavor: 'production-cpu2-ram4-disk20', image: 'debian-12', networks: [{ subnet }] }, call('vm-2'));
    const r2 = await advanceUntil(sim, clock, 'compute/Server', second.externalId);
    expect(r2.outputs.ip).toBe('10.1.0.3');
  });

  it('the same idempotency key twice makes one object', async () => {
    t = await openTestStore(dialect);
    const { sim, clock } = await makeSim(t.store);
    const { subnet } = await makeNetwork(sim, clock);
    const spec = { flavor: 'SCS-1V-2-10', image: 'debian-12', networks: [{ subnet }] };
    const [a, b] = await Promise.all([sim.create('compute/Server', spec, call('same-key')), sim.create('compute/Server', spec, call('same-key'))]);
    const c = await sim.create('compute/Server', spec, call('same-key'));
    expect(a.externalId).toBe(b.externalId);
    expect(c.externalId).toBe(a.externalId);
    expect((await sim.listObjects({ kind: 'compute/Server' })).length).toBe(1);
  });

  it('runs out of hypervisor capacity with NoValidHost, and capacity comes back after a delete', async () => {
    t = await openTestStore(dialect);
    const { sim, clock } = await makeSim(t.store, { hosts: [{ name: 'hv-small', vcpus: 4, ramMb: 8192, cpuRatio: 1 }] });
    const { subnet } = await makeNetwork(sim, clock);
    const spec = { flavor: 'SCS-2V-4-20s', image: 'debian-12', networks: [{ subnet }] };
    const a = await sim.create('compute/Server', spec, call('cap-a'));
    await sim.create('compute/Server', spec, call('cap-b'));
    await expect(sim.create('compute/Server', spec, call('cap-c'))).rejects.toMatchObject({ code: 'provider.no_valid_host', reason: 'NoValidHost', retryable: false });
    // a failed create leaves nothing behind
    expect((await sim.listObjects({ kind: 'compute/Server' })).length).toBe(2);
    await advanceUntil(sim, clock, 'compute/Server', a.externalId);
    await sim.delete('compute/Server', a.externalId, call('cap-a-del'));
    expect((await advanceUntil(sim, clock, 'compute/Server', a.externalId, 'absent')).state).toBe('absent');
    const c = await sim.create('compute/Server', spec, call('cap-c'));
    expect(c.externalId).toBeTruthy();
    const hosts = await sim.hosts();
    expect(hosts[0]).toMatchObject({ usedVcpus: 4, usedRamMb: 8192 });
  });

  it('refuses unknown flavors and images with InvalidSpec naming what exists', async () => {
    t = await openTestStore(dialect);
    const { sim, clock } = await makeSim(t.store);
    const { subnet } = await makeNetwork(sim, clock);
    await expect(sim.create('compute/Server', { flavor: 'm1.huge', image: 'debian-12', networks: [{ subnet }] }, call('bad-flavor'))).rejects.toMatchObject({ reason: 'InvalidSpec', message: expect.stringContaining('SCS-') });
    await expect(sim.create('compute/Server', { flavor: 'SCS-2V-4-20s', image: 'nope', networks: [{ subnet }] }, call('bad-image'))).rejects.toMatchObject({ reason: 'InvalidSpec', message: expect.stringContaining('ubuntu-24.04') });
    await expect(sim.create('compute/Server', { flavor: 'SCS-2V-4-20s', networks: [{ subnet }] }, call('no-image'))).rejects.toMatchObject({ reason: 'InvalidSpec' });
  });

  it('resolves DNS records through its resolver, following CNAMEs', async () => {
    t = await openTestStore(dialect);
    const { sim, clock } = await makeSim(t.store);
    const z = await sim.create('dns/Zone', { name: 'example.com' }, call('zone'));
    await advanceUntil(sim, clock, 'dns/Zone', z.externalId);
    const a = await sim.create('dns/Record', { zone: 'example.com', name: 'web', type: 'A', values: ['10.1.0.5', '10.1.0.6'] }, call('rec-a'));
    const cn = await sim.create('dns/Record', { zone: z.externalId, name: 'www', type: 'CNAME', values: ['web.example.com.'] }, call('rec-cname'));
    expect((await sim.resolve('web.example.com')).rcode).toBe('NXDOMAIN'); // not yet propagated
    await advanceUntil(sim, clock, 'dns/Record', a.externalId);
    await advanceUntil(sim, clock, 'dns/Record', cn.externalId);
    expect((await sim.resolve('web.example.com')).answers.map((x) => x.value)).toEqual(['10.1.0.5', '10.1.0.6']);
    const www = await sim.resolve('www.example.com.');
    expect(www.answers.map((x) => x.value)).toEqual(['web.example.com.', '10.1.0.5', '10.1.0.6']);
    expect((await sim.resolve('nothing.example.com')).rcode).toBe('NXDOMAIN');
    await expect(sim.create('dns/Record', { zone: 'example.com', name: 'web', type: 'A', values: ['10.1.0.9'] }, call('rec-dup'))).rejects.toMatchObject({ reason: 'Conflict' });
  });

  it('load balancers route to healthy members only; powering a member off (drift) takes it out', async () => {
    t = await openTestStore(dialect);
    const { sim, clock } = await makeSim(t.store, { speed: 100 });
    const { subnet } = await makeNetwork(sim, clock);
    const ips: string[] = [];
    const vms: string[] = [];
    for (const i of [1, 2]) {
      const v = await sim.create('compute/Server', { flavor: 'SCS-1V-2-10', image: 'debian-12', networks: [{ subnet }] }, call(`web-${i}`));
      ips.push((await advanceUntil(sim, clock, 'compute/Server', v.externalId)).outputs.ip as string);
      vms.push(v.externalId);
    }
    const lb = await sim.create('network/LoadBalancer', { subnet, listeners: [{ port: 80, protocol: 'HTTP' }], members: [...ips.map((address) => ({ address, port: 8080 })), { address: '10.1.0.200', port: 8080 }] }, call('lb'));
    const r = await advanceUntil(sim, clock, 'network/LoadBalancer', lb.externalId);
    expect(r.outputs.healthyMembers).toBe(2);
    expect(r.conditions?.find((c) => c.type === 'MembersHealthy')?.status).toBe('False');
    const seen = new Set<string>();
    for (let i = 0; i < 4; i++) seen.add((await sim.route(r.outputs.vip as string, { port: 80 })).member.address);
    expect([...seen].sort()).toEqual([...ips].sort());
    await sim.driftPower(vms[0]!, 'off');
    for (let i = 0; i < 3; i++) expect((await sim.route(lb.externalId)).member.address).toBe(ips[1]);
    await sim.driftPower(vms[1]!, 'off');
    await expect(sim.route(lb.externalId)).rejects.toMatchObject({ reason: 'BackendUnavailable' });
    await expect(sim.route(lb.externalId, { port: 443 })).rejects.toMatchObject({ reason: 'BackendUnavailable' });
  });

  it('clusters report nodes Ready and operators Available; workloads schedule pods by CPU and memory, with metrics and logs', async () => {
    t = await openTestStore(dialect);
    const { sim, clock } = await makeSim(t.store);
    const cl = await sim.create('container/Cluster', { distribution: 'openshift', version: '4.16', controlPlane: { count: 3 }, nodePools: [{ name: 'workers', count: 2, flavor: 'SCS-4V-8-20' }] }, call('ocp'));
    const creating = await sim.read('container/Cluster', cl.externalId);
    expect(creating.conditions?.[0]?.reason).toBe('ProvisioningInfrastructure');
    const r = await advanceUntil(sim, clock, 'container/Cluster', cl.externalId, 'ready', 60_000);
    expect(r.state).toBe('ready');
    expect(r.outputs.readyNodes).toBe(5);
    expect(r.conditions?.find((c) => c.type === 'OperatorsAvailable')?.status).toBe('True');
    expect(r.secrets?.kubeconfig).toContain(r.outputs.apiEndpoint as string);
    expect(r.secrets?.adminUser).toBe('kubeadmin');
    // 2 workers x 4 vCPU (3600m allocatable each): 6 pods of 1 CPU fit, the 7th does not
    const w = await sim.create('container/Workload', { cluster: cl.externalId, image: 'nginx:1.27', replicas: 7, resources: { cpu: '1', memory: '256Mi' }, ports: [8080] }, call('web'));
    const wr = await advanceUntil(sim, clock, 'container/Workload', w.externalId, 'ready', 10_000, 20);
    expect(wr.state).toBe('creating');
    expect(wr.outputs.readyReplicas).toBe(6);
    expect(wr.conditions?.[0]).toMatchObject({ type: 'Available', status: 'False', reason: 'Unschedulable' });
    expect(wr.message).toContain('insufficient cpu');
    // scale the cluster: the pending pod gets scheduled
    await sim.update('container/Cluster', cl.externalId, { distribution: 'openshift', version: '4.16', controlPlane: { count: 3 }, nodePools: [{ name: 'workers', count: 3, flavor: 'SCS-4V-8-20' }] }, call('ocp-scale'));
    await advanceUntil(sim, clock, 'container/Cluster', cl.externalId, 'ready', 60_000);
    const wr2 = await sim.read('container/Workload', w.externalId);
    expect(wr2.state).toBe('ready');
    expect(wr2.outputs.readyReplicas).toBe(7);
    await sim.setLoad(w.externalId, 700);
    const m = await sim.workloadMetrics(w.externalId);
    expect(m.readyReplicas).toBe(7);
    expect(m.cpuUtilization).toBeGreaterThan(0.2);
    await sim.setLoad(w.externalId, 7000);
    expect((await sim.workloadMetrics(w.externalId)).cpuUtilization).toBeGreaterThan(m.cpuUtilization * 5);
    clock.advance(120_000);
    const logs = await sim.logs(w.externalId, { tail: 500 });
    expect(logs.some((l) => l.text.startsWith('Started container'))).toBe(true);
    expect(logs.some((l) => l.text.startsWith('GET /'))).toBe(true);
    // degraded health is visible
    await sim.setClusterHealth(cl.externalId, { notReadyNodes: 1, degradedOperators: ['ingress'] });
    const sick = await sim.read('container/Cluster', cl.externalId);
    expect(sick.outputs.health).toBe('degraded');
    expect(sick.conditions?.find((c) => c.type === 'NodesReady')).toMatchObject({ status: 'False', reason: 'NodeNotReady' });
    expect(sick.conditions?.find((c) => c.type === 'OperatorsAvailable')?.message).toContain('ingress');
  });

  it('jobs run against an inventory with a log; an unreachable host fails the job', async () => {
    t = await openTestStore(dialect);
    const { sim, clock } = await makeSim(t.store);
    const { subnet } = await makeNetwork(sim, clock);
    const v = await sim.create('compute/Server', { flavor: 'SCS-1V-2-10', image: 'debian-12', networks: [{ subnet }] }, call('app-1'));
    const ip = (await advanceUntil(sim, clock, 'compute/Server', v.externalId)).outputs.ip as string;
    const ok = await sim.create('automation/Job', { playbook: 'site.yml', inventory: { hosts: [{ name: 'app-1', address: ip, groups: ['app'] }] } }, call('job-ok'));
    clock.advance(1000);
    const early = await sim.logs(ok.externalId);
    expect(early[0]?.text).toContain('PLAY [site.yml]');
    const done = await advanceUntil(sim, clock, 'automation/Job', ok.externalId);
    expect(done.outputs).toMatchObject({ status: 'succeeded', exitCode: 0 });
    const full = await sim.logs(ok.externalId);
    expect(full.some((l) => l.text.includes('changed: [app-1]'))).toBe(true);
    expect(full.at(-1)?.text).toContain('ok=5');
    const bad = await sim.create('automation/Job', { playbook: 'site.yml', inventory: { hosts: [{ name: 'ghost', address: '10.9.9.9' }] } }, call('job-bad'));
    const failed = await advanceUntil(sim, clock, 'automation/Job', bad.externalId);
    expect(failed.state).toBe('failed');
    expect(failed.message).toContain('unreachable');
    expect((await sim.logs(bad.externalId)).some((l) => l.text.includes('UNREACHABLE'))).toBe(true);
  });

  it('drift: a VM deleted behind our back reads absent; a changed rule shows in observed', async () => {
    t = await openTestStore(dialect);
    const { sim, clock } = await makeSim(t.store);
    const sg = await sim.create('network/SecurityGroup', { rules: [{ protocol: 'tcp', portMin: 22, portMax: 22 }] }, call('sg'));
    await advanceUntil(sim, clock, 'network/SecurityGroup', sg.externalId);
    await sim.driftModify(sg.externalId, { rules: [{ direction: 'ingress', protocol: 'tcp', portMin: 0, portMax: 65535, remoteCidr: '0.0.0.0/0', ethertype: 'IPv4' }] });
    const r = await sim.read('network/SecurityGroup', sg.externalId);
    expect((r.observed!.rules as { portMax: number }[])[0]!.portMax).toBe(65535);
    const { subnet } = await makeNetwork(sim, clock);
    const v = await sim.create('compute/Server', { flavor: 'SCS-1V-2-10', image: 'debian-12', networks: [{ subnet }] }, call('victim'));
    await advanceUntil(sim, clock, 'compute/Server', v.externalId);
    const before = (await sim.hosts()).reduce((a, h) => a + h.usedVcpus, 0);
    await sim.driftDelete(v.externalId);
    expect((await sim.read('compute/Server', v.externalId)).state).toBe('absent');
    expect((await sim.hosts()).reduce((a, h) => a + h.usedVcpus, 0)).toBe(before - 1);
    // deleting what is already gone succeeds
    expect(await sim.delete('compute/Server', v.externalId, call('victim-del'))).toEqual({ done: true });
    // the same actions through the control schema the API uses
    await applyDrift(sim, sg.externalId, DriftAction.parse({ action: 'modify', patch: { rules: [] } }));
    expect((await sim.read('network/SecurityGroup', sg.externalId)).observed!.rules).toEqual([]);
    await applyDrift(sim, sg.externalId, DriftAction.parse({ action: 'delete' }));
    expect((await sim.read('network/SecurityGroup', sg.externalId)).state).toBe('absent');
    expect(DriftAction.safeParse({ action: 'explode' }).success).toBe(false);
  });

  it('the speed factor divides durations, and changing it rescales operations in flight', async () => {
    t = await openTestStore(dialect);
    const { sim, clock } = await makeSim(t.store, { speed: 1, latency: { 'metal/Instance': { create: { meanMs: 600_000, stddevMs: 0, minMs: 0 } } } });
    const bm = await sim.create('metal/Instance', { serverType: 'gp-small', osTemplate: 'ubuntu-24.04' }, call('bm-1'));
    clock.advance(300_000); // half way at speed 1
    expect((await sim.read('metal/Instance', bm.externalId)).conditions?.[0]?.message).toContain('50%');
    await sim.setSpeed(100); // the remaining 300 s of simulated time now take 3 s
    clock.advance(2_900);
    expect((await sim.read('metal/Instance', bm.externalId)).state).toBe('creating');
    clock.advance(200);
    const r = await sim.read('metal/Instance', bm.externalId);
    expect(r.state).toBe('ready');
    expect(r.outputs).toMatchObject({ serverType: 'gp-small', serverName: 'gp-small-001', provisionState: 'active' });
    expect(await sim.getSpeed()).toBe(100);
  });

  it('bare metal runs out with CapacityExhausted per server type', async () => {
    t = await openTestStore(dialect);
    const { sim } = await makeSim(t.store, { serverTypes: { tiny: { count: 2, vcpus: 8, ramMb: 16384 } } });
    await sim.create('metal/Instance', { serverType: 'tiny', osTemplate: 'rocky-9' }, call('m1'));
    await sim.create('metal/Instance', { serverType: 'tiny', osTemplate: 'rocky-9' }, call('m2'));
    await expect(sim.create('metal/Instance', { serverType: 'tiny', osTemplate: 'rocky-9' }, call('m3'))).rejects.toMatchObject({ reason: 'CapacityExhausted' });
    await expect(sim.create('metal/Instance', { serverType: 'tiny', osTemplate: 'plan9' }, call('m4'))).rejects.toMatchObject({ reason: 'InvalidSpec', message: expect.stringContaining('ubuntu-24.04') });
    expect(await sim.metalInventory()).toEqual({ tiny: { total: 2, allocated: 2 } });
  });

  it('state survives a restart: a new simulator on the same database finishes what was in flight', async () => {
    t = await openTestStore(dialect);
    const clock = new ManualClock();
    const { sim } = await makeSim(t.store, {}, clock);
    const { subnet } = await makeNetwork(sim, clock);
    const v = await sim.create('compute/Server', { flavor: 'SCS-1V-2-10', image: 'debian-12', networks: [{ subnet }] }, call('survivor'));
    const sim2 = await new SimDatacenter({ store: t.store, clock }).init();
    expect((await sim2.read('compute/Server', v.externalId)).state).toBe('creating');
    clock.advance(10 * 60_000);
    expect((await sim2.read('compute/Server', v.externalId)).state).toBe('ready');
    // same key after restart → same object
    expect((await sim2.create('compute/Server', { flavor: 'SCS-1V-2-10', image: 'debian-12', networks: [{ subnet }] }, call('survivor'))).externalId).toBe(v.externalId);
  });

  it('subnets take their CIDR from the pool when none is given, and refuse deletion while addresses are in use', async () => {
    t = await openTestStore(dialect);
    const { sim, clock } = await makeSim(t.store);
    const net = await sim.create('network/Network', {}, call('pooled-net'));
    const s1 = await sim.create('network/Subnet', { network: net.externalId, prefixLength: 24 }, call('pooled-1'));
    const s2 = await sim.create('network/Subnet', { network: net.externalId, prefixLength: 26 }, call('pooled-2'));
    const r1 = await advanceUntil(sim, clock, 'network/Subnet', s1.externalId);
    const r2 = await advanceUntil(sim, clock, 'network/Subnet', s2.externalId);
    expect(r1.outputs.cidr).toBe('10.128.0.0/24');
    expect(r2.outputs.cidr).toBe('10.128.1.0/26');
    expect((await advanceUntil(sim, clock, 'network/Network', net.externalId)).outputs.vlan).toBe(100);
    const port = await sim.create('network/Port', { network: net.externalId, subnet: s1.externalId }, call('port-1'));
    await expect(sim.delete('network/Subnet', s1.externalId, call('del-s1'))).rejects.toMatchObject({ reason: 'Conflict', retryable: true });
    await sim.delete('network/Port', port.externalId, call('del-port'));
    await advanceUntil(sim, clock, 'network/Port', port.externalId, 'absent');
    expect(await sim.delete('network/Subnet', s1.externalId, call('del-s1'))).toEqual({ done: false });
    expect(PROJECT).toBe('proj-a');
  });
  it('volumes attach and detach in place, refuse deletion while attached, and can be booted from', async () => {
    t = await openTestStore(dialect);
    const { sim, clock } = await makeSim(t.store);
    const { subnet } = await makeNetwork(sim, clock);
    const vm = await sim.create('compute/Server', { flavor: 'SCS-1V-2-10', image: 'debian-12', networks: [{ subnet }] }, call('vm'));
    await advanceUntil(sim, clock, 'compute/Server', vm.externalId);
    const vol = await sim.create('storage/Volume', { sizeGb: 50, attachTo: vm.externalId }, call('data'));
    expect((await advanceUntil(sim, clock, 'storage/Volume', vol.externalId)).outputs).toMatchObject({ status: 'in-use', attachedTo: vm.externalId, device: '/dev/vdb' });
    await expect(sim.delete('storage/Volume', vol.externalId, call('data-del'))).rejects.toMatchObject({ reason: 'Conflict', retryable: true });
    await expect(sim.update('storage/Volume', vol.externalId, { sizeGb: 10, attachTo: vm.externalId }, call('shrink'))).rejects.toMatchObject({ reason: 'InvalidSpec', message: expect.stringContaining('only grow') });
    await sim.update('storage/Volume', vol.externalId, { sizeGb: 80 }, call('detach-grow'));
    expect((await advanceUntil(sim, clock, 'storage/Volume', vol.externalId)).outputs).toMatchObject({ status: 'available', attachedTo: null, sizeGb: 80 });
    // boot from it
    const boot = await sim.create('compute/Server', { flavor: 'SCS-2V-4', bootVolume: { volume: vol.externalId }, networks: [{ subnet }] }, call('from-volume'));
    await advanceUntil(sim, clock, 'compute/Server', boot.externalId);
    expect((await sim.read('storage/Volume', vol.externalId)).outputs).toMatchObject({ status: 'in-use', attachedTo: boot.externalId, device: '/dev/vda' });
    // deleting the server frees the volume
    await sim.delete('compute/Server', boot.externalId, call('from-volume-del'));
    await advanceUntil(sim, clock, 'compute/Server', boot.externalId, 'absent');
    expect((await sim.read('storage/Volume', vol.externalId)).outputs).toMatchObject({ status: 'available', attachedTo: null });
    expect(await sim.delete('storage/Volume', vol.externalId, call('data-del-2'))).toEqual({ done: false });
  });
  it('listObjects pages by id (after, limit) and filters by a project list and phase in the query', async () => {
    t = await openTestStore(dialect);
    const { sim, clock } = await makeSim(t.store);
    for (let i = 0; i < 5; i++) await sim.create('network/Network', {}, call(`page-a-${i}`));
    for (let i = 0; i < 2; i++) await sim.create('network/Network', {}, { ...call(`page-b-${i}`), project: 'proj-b' });
    await sim.create('network/Network', {}, { ...call('page-c'), project: 'proj-c' });
    const all = await sim.listObjects({ kind: 'network/Network' });
    expect(all).toHaveLength(8);
    const ids = all.map((o) => o.id);
    expect([...ids].sort()).toEqual(ids);
    // pages of 3, by id
    const p1 = await sim.listObjects({ kind: 'network/Network', limit: 3 });
    expect(p1.map((o) => o.id)).toEqual(ids.slice(0, 3));
    const p2 = await sim.listObjects({ kind: 'network/Network', limit: 3, after: p1[2]!.id });
    expect(p2.map((o) => o.id)).toEqual(ids.slice(3, 6));
    const p3 = await sim.listObjects({ kind: 'network/Network', limit: 3, after: p2[2]!.id });
    expect(p3.map((o) => o.id)).toEqual(ids.slice(6));
    expect(await sim.listObjects({ kind: 'network/Network', limit: 3, after: ids[7]! })).toEqual([]);
    // a project list (the caller's visible projects)
    const bc = await sim.listObjects({ projects: ['proj-b', 'proj-c'], limit: 2 });
    expect(bc.map((o) => o.id)).toEqual(all.filter((o) => o.project !== PROJECT).slice(0, 2).map((o) => o.id));
    expect(new Set((await sim.listObjects({ projects: ['proj-b', 'proj-c'] })).map((o) => o.project))).toEqual(new Set(['proj-b', 'proj-c']));
    expect(await sim.listObjects({ projects: [] })).toEqual([]);
    expect(await sim.listObjects({ projects: ['proj-b'], project: PROJECT })).toEqual([]);
    const withCatalogue = await sim.listObjects({ projects: ['proj-c', '*'], includeCatalogue: true });
    expect(withCatalogue.some((o) => o.kind === 'compute/Flavor')).toBe(true);
    expect(new Set(withCatalogue.map((o) => o.project))).toEqual(new Set(['proj-c', '*']));
    // phase
    expect((await sim.listObjects({ kind: 'network/Network', phase: 'creating' })).length).toBe(8);
    await advanceUntil(sim, clock, 'network/Network', ids[0]!);
    expect((await sim.listObjects({ kind: 'network/Network', phase: 'creating' })).length).toBe(0);
    expect((await sim.listObjects({ kind: 'network/Network', phase: 'ready', limit: 5 })).length).toBe(5);
    await sim.driftDelete(ids[1]!);
    expect((await sim.listObjects({ kind: 'network/Network', phase: 'deleted' })).map((o) => o.id)).toEqual([ids[1]]);
    expect(await sim.listObjects({ kind: 'network/Network' })).toHaveLength(7);
  });

  it('setQuota changes only the fields given: the others keep their stored value or the configured default', async () => {
    t = await openTestStore(dialect);
    const { sim } = await makeSim(t.store, { quota: { cores: 50, floatingIps: 7 } });
    expect(await sim.setQuota(PROJECT, { cores: 8 })).toEqual({ instances: 1000, cores: 8, ramMb: 16 * 1024 * 1024, floatingIps: 7, volumeGb: 100_000 });
    expect(await sim.setQuota(PROJECT, { instances: 5 })).toMatchObject({ instances: 5, cores: 8, floatingIps: 7 });
    // a field given as undefined is not given
    expect(await sim.setQuota(PROJECT, { volumeGb: 10, cores: undefined })).toMatchObject({ instances: 5, cores: 8, volumeGb: 10, floatingIps: 7 });
    expect(await sim.getQuota(PROJECT)).toMatchObject({ instances: 5, cores: 8, volumeGb: 10, floatingIps: 7 });
    // fields never set follow the configured default (a new simulator with another default)
    const { sim: other } = await makeSim(t.store, { quota: { floatingIps: 9 } });
    expect(await other.getQuota(PROJECT)).toMatchObject({ instances: 5, cores: 8, floatingIps: 9 });
    await expect(sim.setQuota(PROJECT, { cores: -1 })).rejects.toMatchObject({ code: 'sim.invalid_quota', message: expect.stringContaining('cores') });
    await expect(sim.setQuota(PROJECT, { vcpus: 3 } as never)).rejects.toMatchObject({ code: 'sim.invalid_quota', message: expect.stringContaining('vcpus') });
    expect(await sim.getQuota(PROJECT)).toMatchObject({ instances: 5, cores: 8 });
    // concurrent partial changes do not lose each other
    await Promise.all([sim.setQuota('p2', { instances: 1 }), sim.setQuota('p2', { cores: 2 }), sim.setQuota('p2', { ramMb: 3 }), sim.setQuota('p2', { volumeGb: 4 })]);
    expect(await sim.getQuota('p2')).toMatchObject({ instances: 1, cores: 2, ramMb: 3, volumeGb: 4, floatingIps: 7 });
  });

  it('enforces per-project quotas with QuotaExceeded, as a cloud does', async () => {
    t = await openTestStore(dialect);
    const { sim, clock } = await makeSim(t.store, { quota: { instances: 2 } });
    const { subnet } = await makeNetwork(sim, clock);
    const spec = { flavor: 'SCS-2V-4-20s', image: 'debian-12', networks: [{ subnet }] };
    await sim.create('compute/Server', spec, call('q1'));
    const q2 = await sim.create('compute/Server', spec, call('q2'));
    await expect(sim.create('compute/Server', spec, call('q3'))).rejects.toMatchObject({ reason: 'QuotaExceeded', retryable: false, message: expect.stringContaining('instances') });
    expect(await sim.setQuota(PROJECT, { instances: 10, cores: 5 })).toMatchObject({ instances: 10, cores: 5 });
    await expect(sim.create('compute/Server', spec, call('q3'))).rejects.toMatchObject({ reason: 'QuotaExceeded', message: expect.stringContaining('cores: requested 2, but already used 4 of 5') });
    await advanceUntil(sim, clock, 'compute/Server', q2.externalId);
    await sim.delete('compute/Server', q2.externalId, call('q2-del'));
    await advanceUntil(sim, clock, 'compute/Server', q2.externalId, 'absent');
    expect((await sim.create('compute/Server', { ...spec, flavor: 'SCS-1V-2-10' }, call('q3'))).externalId).toBeTruthy();
    await sim.setQuota(PROJECT, { floatingIps: 1, volumeGb: 100 });
    await sim.create('network/FloatingIP', {}, call('fip-1'));
    await expect(sim.create('network/FloatingIP', {}, call('fip-2'))).rejects.toMatchObject({ reason: 'QuotaExceeded' });
    await expect(sim.create('storage/Volume', { sizeGb: 200 }, call('big-vol'))).rejects.toMatchObject({ reason: 'QuotaExceeded' });
    expect((await sim.getQuota('other-project')).instances).toBe(2);
  });
});

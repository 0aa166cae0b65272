import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../src/core/clock.js';
import { SecretBox } from '../src/core/secrets.js';
import { Inventory } from '../src/inventory/index.js';
import { Ipam } from '../src/ipam/index.js';
import { allocatorBackends, SimDatacenter } from '../src/providers/sim/index.js';
import { DIALECTS, openTestStore, type TestDb } from './support/dialects.js';
import { advanceUntil, call } from './fixtures/sim-helpers.js';

describe.each(DIALECTS)('simulator wired to IPAM and the inventory on %s', (dialect) => {
  let t: TestDb;
  afterEach(async () => t?.cleanup());

  it('takes VLANs, subnet prefixes, floating IPs and bare-metal servers from the real allocators and gives them back', async () => {
    t = await openTestStore(dialect);
    const clock = new ManualClock();
    const ipam = new Ipam({ store: t.store, clock });
    const inventory = new Inventory({ store: t.store, clock, secrets: SecretBox.random() });
    const container = await ipam.createPrefix({ cidr: '10.40.0.0/16', scope: 'dc1', kind: 'container' });
    await ipam.createPrefix({ cidr: '198.51.100.0/28', scope: 'dc1', kind: 'floating' });
    await ipam.createVlanPool({ name: 'dc1-vlans', scope: 'dc1', min: 200, max: 201 });
    await inventory.createDatacenter({ name: 'dc1', region: 'eu-1' });
    await inventory.createServerType({ name: 'bm-std', cpu: { model: 'EPYC', cores: 32 }, ramGb: 128 });
    for (const serial of ['SRV-1', 'SRV-2']) await inventory.registerServer({ serial, type: 'bm-std', datacenter: 'dc1', state: 'available' });
    const sim = await new SimDatacenter({
      store: t.store, clock,
      backends: allocatorBackends({ ipam, inventory, subnetParent: container.id, vlanPool: 'dc1-vlans', floatingPools: { public: 'dc1:198.51.100.0/28' }, datacenter: 'dc1' }),
    }).init();

    const net = await sim.create('network/Network', {}, call('net'));
    expect((await advanceUntil(sim, clock, 'network/Network', net.externalId)).outputs.vlan).toBe(200);
    expect((await ipam.listVlans({ holder: `sim:${net.externalId}` })).map((v) => v.vlan)).toEqual([200]);
    const sub = await sim.create('network/Subnet', { network: net.externalId, prefixLength: 24 }, call('sub'));
    const subR = await advanceUntil(sim, clock, 'network/Subnet', sub.externalId);
    expect(subR.outputs.cidr).toMatch(/^10\.40\.\d+\.0\/24$/);
    expect((await ipam.listPrefixes({ holder: `sim:${sub.externalId}` })).map((p) => p.cidr)).toEqual([subR.outputs.cidr]);
    // a subnet's pool written as <scope>:<cidr>
    const other = await ipam.createPrefix({ cidr: '10.50.0.0/16', scope: 'dc1', kind: 'container' });
    const sub2 = await sim.create('network/Subnet', { network: net.externalId, prefixLength: 26, pool: 'dc1:10.50.0.0/16' }, call('sub2'));
    const sub2R = await advanceUntil(sim, clock, 'network/Subnet', sub2.externalId);
    expect(sub2R.outputs.cidr).toMatch(/^10\.50\.0\.\d+\/26$/);
    expect((await ipam.listPrefixes({ parentId: other.id })).map((p) => p.cidr)).toEqual([sub2R.outputs.cidr]);
    await sim.delete('network/Subnet', sub2.externalId, call('sub2-del'));
    await advanceUntil(sim, clock, 'network/Subnet', sub2.externalId, 'absent');
    const fip = await sim.create('network/FloatingIP', {}, call('fip'));
    const fipR = await advanceUntil(sim, clock, 'network/FloatingIP', fip.externalId);
    expect(fipR.outputs.address).toMatch(/^198\.51\.100\.\d+$/);

    const bm1 = await sim.create('metal/Instance', { serverType: 'bm-std', osTemplate: 'ubuntu-24.04' }, call('bm1'));
    const bm2 = await sim.create('metal/Instance', { serverType: 'bm-std', osTemplate: 'ubuntu-24.04' }, call('bm2'));
    await expect(sim.create('metal/Instance', { serverType: 'bm-std', osTemplate: 'ubuntu-24.04' }, call('bm3'))).rejects.toMatchObject({ reason: 'CapacityExhausted' });
    const r1 = await advanceUntil(sim, clock, 'metal/Instance', bm1.externalId, 'ready', 60_000);
    expect(['SRV-1', 'SRV-2']).toContain(r1.outputs.serverName);
    expect((await inventory.listServers({ holder: `sim:${bm1.externalId}` })).length).toBe(1);
    // types the inventory does not know still come from the simulator's own inventory
    const own = await sim.create('metal/Instance', { serverType: 'gp-small', osTemplate: 'rocky-9' }, call('own'));
    expect((await advanceUntil(sim, clock, 'metal/Instance', own.externalId, 'ready', 60_000)).outputs.serverName).toBe('gp-small-001');
    // what `sim status` shows: the inventory's servers for its types, the simulator's pools for the rest
    const metal = await sim.metalInventory();
    expect(metal['bm-std']).toEqual({ total: 2, allocated: 2 });
    expect(metal['gp-small']).toMatchObject({ allocated: 1 });
    expect(metal['gp-small']!.total).toBeGreaterThan(1);

    await sim.delete('metal/Instance', bm2.externalId, call('bm2-del'));
    await advanceUntil(sim, clock, 'metal/Instance', bm2.externalId, 'absent', 60_000);
    expect((await inventory.listServers({ holder: `sim:${bm2.externalId}` })).length).toBe(0);
    expect((await sim.metalInventory())['bm-std']).toEqual({ total: 2, allocated: 1 });
    await sim.delete('network/FloatingIP', fip.externalId, call('fip-del'));
    await advanceUntil(sim, clock, 'network/FloatingIP', fip.externalId, 'absent');
    expect((await ipam.listAddresses({ holder: `sim:${fip.externalId}` })).length).toBe(0);
    await sim.delete('network/Subnet', sub.externalId, call('sub-del'));
    await advanceUntil(sim, clock, 'network/Subnet', sub.externalId, 'absent');
    expect(await ipam.listPrefixes({ holder: `sim:${sub.externalId}` })).toEqual([]);
    await sim.delete('network/Network', net.externalId, call('net-del'));
    await advanceUntil(sim, clock, 'network/Network', net.externalId, 'absent');
    expect(await ipam.listVlans({ holder: `sim:${net.externalId}` })).toEqual([]);
    expect(sim.releaseErrors).toEqual([]);
  });

  it('takes its hypervisors from inventory servers labelled role=hypervisor', async () => {
    t = await openTestStore(dialect);
    const clock = new ManualClock();
    const inventory = new Inventory({ store: t.store, clock, secrets: SecretBox.random() });
    await inventory.createDatacenter({ name: 'dc1', region: 'eu-1' });
    await inventory.createServerType({ name: 'hv-type', cpu: { model: 'EPYC', cores: 8 }, ramGb: 16 });
    await inventory.registerServer({ serial: 'HV-A', type: 'hv-type', datacenter: 'dc1', state: 'available', labels: { role: 'hypervisor', zone: 'az9' } });
    await inventory.registerServer({ serial: 'NOT-HV', type: 'hv-type', datacenter: 'dc1', state: 'available' });
    const sim = await new SimDatacenter({ store: t.store, clock, backends: allocatorBackends({ inventory }) }).init();
    const hosts = await sim.hosts();
    expect(hosts.filter((h) => h.enabled).map((h) => [h.name, h.zone, h.vcpus, h.ramMb])).toEqual([['HV-A', 'az9', 8, 16384]]);
    const net = await sim.create('network/Network', {}, call('n'));
    const sub = await sim.create('network/Subnet', { network: net.externalId, cidr: '10.9.0.0/24' }, call('s'));
    await advanceUntil(sim, clock, 'network/Subnet', sub.externalId);
    const spec = { flavor: 'SCS-8V-16', image: 'debian-12', networks: [{ subnet: sub.externalId }], bootVolume: { sizeGb: 10 } };
    const vm = await sim.create('compute/Server', spec, call('vm'));
    expect((await advanceUntil(sim, clock, 'compute/Server', vm.externalId)).outputs.host).toBe('HV-A');
    await expect(sim.create('compute/Server', spec, call('vm2'))).rejects.toMatchObject({ reason: 'NoValidHost' });
  });
});

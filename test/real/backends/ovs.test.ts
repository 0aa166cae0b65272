import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SwitchPortProvider } from '../../../src/providers/switches/index.js';
import { runProviderContract } from '../../../src/resources/contract.js';
import { isProviderError } from '../../../src/resources/errors.js';
import { parseSpec } from '../../../src/resources/kinds.js';
import type { ProviderCallContext } from '../../../src/resources/types.js';
import { pings, startOvs, type OvsSwitch } from './ovs-switch.js';

/** Open vSwitch (ovsdb-server + ovs-vswitchd, userspace datapath) with namespace hosts; isolation is proven with ping. */

let contractSwitch: OvsSwitch;
runProviderContract('ovs switch ports (ovs-vswitchd)', async () => {
  contractSwitch = await startOvs();
  const a = contractSwitch.addHost('ca');
  const b = contractSwitch.addHost('cb');
  return {
    provider: new SwitchPortProvider({ switches: { leaf1: contractSwitch.driver }, defaultVlan: 999 }),
    tick: () => new Promise((r) => setTimeout(r, 50)),
    maxReads: 100,
    samples: async () => [
      { kind: 'network/SwitchPort', spec: { switch: 'leaf1', port: a.port, vlan: 10 }, update: { switch: 'leaf1', port: a.port, vlan: 20 }, replace: { switch: 'leaf1', port: b.port, vlan: 10 }, invalid: { switch: 'leaf1', port: a.port, mode: 'access' } },
    ],
    cleanup: async () => { await contractSwitch?.stop(); },
  };
}, { describe, it, beforeAll, afterAll }, { kinds: ['network/SwitchPort'] });

describe('ovs switch ports: VLAN isolation proven with ping', () => {
  let sw: OvsSwitch;
  let p: SwitchPortProvider;
  const hosts: Record<string, { port: string; ns: string }> = {};
  let n = 0;
  const ctx = (project = 'cluster-a'): ProviderCallContext => ({ idempotencyKey: `k${n++}`, project, resourceId: `res_${n}`, resourceName: `r${n}` });
  const h = () => p.handler('network/SwitchPort');
  const access = (host: string, vlan: number, c = ctx()) => h().create(parseSpec('network/SwitchPort', { switch: 'leaf1', port: hosts[host]!.port, vlan }), c);
  const portRow = (port: string) => JSON.parse(sw.vsctl('--format=json', '--', '--columns=tag,trunks,vlan_mode', 'list', 'Port', port)) as { data: unknown[][] };

  beforeAll(async () => {
    sw = await startOvs();
    p = new SwitchPortProvider({ switches: { leaf1: sw.driver }, defaultVlan: 999 });
    hosts.h1 = sw.addHost('h1', '10.70.0.1/24');
    hosts.h2 = sw.addHost('h2', '10.70.0.2/24');
    hosts.h3 = sw.addHost('h3', '10.70.0.3/24');
  });
  afterAll(async () => { await sw?.stop(); });

  it('same VLAN reaches, a different VLAN does not; moving a port joins it; teardown returns it to the default VLAN', async () => {
    await access('h1', 100);
    await access('h2', 100);
    await access('h3', 200);
    expect(pings(hosts.h1!.ns, '10.70.0.2')).toBe(true);
    expect(pings(hosts.h1!.ns, '10.70.0.3')).toBe(false);
    // move h3 onto the cluster VLAN
    const { externalId } = await access('h3', 100);
    expect(pings(hosts.h1!.ns, '10.70.0.3')).toBe(true);
    // teardown: back to the quarantine VLAN 999, isolated again, and no longer ours
    await h().delete(externalId, ctx());
    expect(sw.vsctl('get', 'Port', hosts.h3!.port, 'tag')).toBe('999');
    expect(pings(hosts.h1!.ns, '10.70.0.3')).toBe(false);
    expect((await h().read(externalId, ctx())).state).toBe('absent');
  });

  it('a trunk to the hub carries both VLANs tagged', async () => {
    await access('h1', 100);
    await access('h3', 200);
    // the hub's switch: its uplink is a trunk of 100 and 200 (tagged frames only); one hub address per VLAN
    const hub = sw.addHubBridge([100, 200]);
    sw.addHost('v1', '10.70.0.254/24', { bridge: hub.bridge, tag: 100 });
    sw.addHost('v2', '10.70.0.253/24', { bridge: hub.bridge, tag: 200 });
    expect(pings(hosts.h1!.ns, '10.70.0.254', 2)).toBe(false); // our uplink port is still on the quarantine VLAN
    await h().create(parseSpec('network/SwitchPort', { switch: 'leaf1', port: hub.leafPort, mode: 'trunk', vlans: [100, 200] }), ctx());
    // h1 (VLAN 100) reaches the hub's VLAN-100 address, h3 (VLAN 200) the VLAN-200 one, and not across
    expect(pings(hosts.h1!.ns, '10.70.0.254')).toBe(true);
    expect(pings(hosts.h3!.ns, '10.70.0.253')).toBe(true);
    expect(pings(hosts.h1!.ns, '10.70.0.253')).toBe(false);
    const r = await h().read(`leaf1/${hub.leafPort}`, ctx());
    expect(r.observed).toEqual({ mode: 'trunk', vlans: [100, 200] });
  });

  it('an interrupted move leaves every port on exactly one VLAN, and the retried move finishes it', async () => {
    await access('h1', 100);
    await access('h2', 100);
    // watch the ports' rows while moves are cut off mid-call
    let violations = 0;
    let samples = 0;
    let watching = true;
    const watch = (async () => {
      while (watching) {
        for (const host of ['h1', 'h2']) {
          const [tag, trunks, mode] = portRow(hosts[host]!.port).data[0]!;
          samples++;
          const trunkList = (trunks as [string, unknown[]])[1];
          if (typeof tag !== 'number' || trunkList.length > 0 || (mode !== 'access' && JSON.stringify(mode) !== '["set",[]]')) violations++;
        }
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    let interrupted = 0;
    for (let i = 0; i < 20; i++) {
      const to = i % 2 === 0 ? 300 : 100;
      const ac = new AbortController();
      const c = { ...ctx(), signal: ac.signal };
      const moves = ['h1', 'h2'].map((host) => h().create(parseSpec('network/SwitchPort', { switch: 'leaf1', port: hosts[host]!.port, vlan: to }), c));
      // cut the call at a different point each round (before, during, after the ovs-vsctl transaction)
      setTimeout(() => ac.abort(), i % 5);
      const results = await Promise.allSettled(moves);
      if (results.some((r) => r.status === 'rejected')) {
        interrupted++;
        for (const r of results) if (r.status === 'rejected') expect(isProviderError(r.reason)).toBe(true);
      }
      // each port is on the old or the new VLAN, never both, never none
      for (const host of ['h1', 'h2']) expect([100, 300]).toContain(Number(sw.vsctl('get', 'Port', hosts[host]!.port, 'tag')));
      // resume: the same move again completes it
      await Promise.all(['h1', 'h2'].map((host) => access(host, to)));
      for (const host of ['h1', 'h2']) expect(Number(sw.vsctl('get', 'Port', hosts[host]!.port, 'tag'))).toBe(to);
    }
    watching = false;
    await watch;
    expect(interrupted).toBeGreaterThan(0);
    expect(samples).toBeGreaterThan(0);
    expect(violations).toBe(0);
    expect(pings(hosts.h1!.ns, '10.70.0.2')).toBe(true);
  });

  it('refuses a port another project holds, an unknown port and an unknown switch', async () => {
    await access('h2', 100, ctx('cluster-a'));
    const e1 = await access('h2', 200, ctx('cluster-b')).catch((e: unknown) => e);
    expect(isProviderError(e1) && e1.reason).toBe('Conflict');
    expect(sw.vsctl('get', 'Port', hosts.h2!.port, 'tag')).toBe('100');
    const e2 = await h().create(parseSpec('network/SwitchPort', { switch: 'leaf1', port: 'nosuchport', vlan: 5 }), ctx()).catch((e: unknown) => e);
    expect(isProviderError(e2) && e2.reason).toBe('NotFound');
    const e3 = await h().create(parseSpec('network/SwitchPort', { switch: 'leaf9', port: 'x', vlan: 5 }), ctx()).catch((e: unknown) => e);
    expect(isProviderError(e3) && e3.reason).toBe('InvalidSpec');
  });
});

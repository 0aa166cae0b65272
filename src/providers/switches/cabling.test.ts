import { afterEach, describe, expect, it } from 'vitest';
import { SecretBox } from '../../core/secrets.js';
import { Inventory } from '../../inventory/index.js';
import { parseSpec } from '../../resources/kinds.js';
import { openTestStore, type TestDb } from '../../../test/support/dialects.js';
import { accessPortSpecs, serverSwitchPorts } from './cabling.js';

describe('switch ports from inventory cabling', () => {
  let t: TestDb | undefined;
  afterEach(async () => { await t?.cleanup(); t = undefined; });

  it('turns the servers\' cabled NICs into access-port specs on the cluster VLAN', async () => {
    t = await openTestStore('sqlite');
    const inv = new Inventory({ store: t.store, secrets: SecretBox.random() });
    await inv.createDatacenter({ name: 'dc1', region: 'r1' });
    await inv.createServerType({ name: 'gp', cpu: { model: 'x', cores: 8 }, ramGb: 32 });
    await inv.createSwitch({ name: 'leaf1', datacenter: 'dc1' });
    await inv.createSwitch({ name: 'leaf2', datacenter: 'dc1' });
    const a = await inv.registerServer({ serial: 'a', type: 'gp', datacenter: 'dc1', nics: [{ name: 'eno1', mac: '52:54:00:00:00:01', switch: 'leaf1', port: 'eth1' }, { name: 'eno2', mac: '52:54:00:00:00:02', switch: 'leaf2', port: 'eth1' }] });
    const b = await inv.registerServer({ serial: 'b', type: 'gp', datacenter: 'dc1', nics: [{ name: 'eno1', mac: '52:54:00:00:00:03', switch: 'leaf1', port: 'eth2' }, { name: 'ipmi', mac: '52:54:00:00:00:04' }] });
    expect(await serverSwitchPorts(inv, b.id)).toEqual([{ nic: 'eno1', mac: '52:54:00:00:00:03', switch: 'leaf1', port: 'eth2' }]);
    const specs = await accessPortSpecs(inv, [a.id, b.id], 300, { nics: ['eno1'] });
    expect(specs).toEqual([
      { switch: 'leaf1', port: 'eth1', mode: 'access', vlan: 300, vlans: [] },
      { switch: 'leaf1', port: 'eth2', mode: 'access', vlan: 300, vlans: [] },
    ]);
    for (const s of specs) expect(() => parseSpec('network/SwitchPort', s)).not.toThrow();
  });
});

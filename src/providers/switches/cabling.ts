import type { Inventory } from '../../inventory/inventory.js';
import type { SwitchPortSpec } from '../../resources/kinds.js';

/**
 * From inventory cabling to switch-port specs: the ports a server's NICs are
 * cabled to, and the `network/SwitchPort` specs that put a set of servers on
 * a cluster VLAN (what the cluster fulfillment flow creates for its agents).
 */
export async function serverSwitchPorts(inventory: Pick<Inventory, 'getServer'>, serverId: string): Promise<{ nic: string; mac: string; switch: string; port: string }[]> {
  const s = await inventory.getServer(serverId);
  return s.nics.filter((n) => n.switch && n.port).map((n) => ({ nic: n.name, mac: n.mac, switch: n.switch!, port: n.port! }));
}

export async function accessPortSpecs(inventory: Pick<Inventory, 'getServer'>, serverIds: string[], vlan: number, opts: { nics?: string[] } = {}): Promise<SwitchPortSpec[]> {
  const out: SwitchPortSpec[] = [];
  for (const id of serverIds) {
    for (const p of await serverSwitchPorts(inventory, id)) {
      if (opts.nics && !opts.nics.includes(p.nic)) continue;
      out.push({ switch: p.switch, port: p.port, mode: 'access', vlan, vlans: [] });
    }
  }
  return out;
}

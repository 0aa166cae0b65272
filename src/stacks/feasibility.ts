import type { Feasibility, FeasibilityCheck } from './plan.js';

/**
 * Feasibility in the plan: what a stack's creates need from scarce pools —
 * bare-metal servers by type and datacenter, VLANs from pools, child
 * prefixes — asked of the allocation module (inventory + IPAM) before
 * anything is allocated. The answer is advisory (someone can take the
 * capacity before apply); allocation during apply is the guarantee.
 *
 * The narrow interface below is the allocation module's `feasibility`
 * (src/allocation): structural, so stacks do not import it.
 */
export interface AllocationFeasibility {
  feasibility(request: {
    servers?: { type: string; datacenter: string; count?: number }[];
    vlans?: { poolId: string; count?: number }[];
    prefixes?: { parentId: string; length: number; count?: number }[];
  }): Promise<{ feasible: boolean; shortfalls: { path: string; resource: string; requested: number; available: number; reason: string }[] }>;
}

export interface FeasibilityRequestItem {
  address: string;
  kind: string;
  spec: Record<string, unknown>;
}

/**
 * Builds the stacks module's `feasibility` option from the allocation
 * module: `new Stacks({ …, feasibility: allocationFeasibility(allocations, { datacenter: 'dc1' }) })`.
 */
export function allocationFeasibility(alloc: AllocationFeasibility, opts: { datacenter?: string } = {}) {
  return async (req: { project: string; creates: FeasibilityRequestItem[]; deletes: FeasibilityRequestItem[] }): Promise<Feasibility> => {
    const servers = new Map<string, { type: string; datacenter: string; count: number; addresses: string[] }>();
    const vlans = new Map<string, { poolId: string; count: number; addresses: string[] }>();
    const prefixes = new Map<string, { parentId: string; length: number; count: number; addresses: string[] }>();
    // a replacement frees what it replaces: count only the net need per pool
    const freed = new Map<string, number>();
    for (const d of req.deletes) {
      if (d.kind === 'metal/Instance' && typeof d.spec.serverType === 'string') {
        const k = `${d.spec.serverType}\u0000${(d.spec.datacenter as string | undefined) ?? opts.datacenter ?? 'dc1'}`;
        freed.set(k, (freed.get(k) ?? 0) + 1);
      }
    }
    for (const c of req.creates) {
      const s = c.spec;
      if (c.kind === 'metal/Instance' && typeof s.serverType === 'string') {
        const datacenter = (s.datacenter as string | undefined) ?? opts.datacenter ?? 'dc1';
        const k = `${s.serverType}\u0000${datacenter}`;
        const e = servers.get(k) ?? { type: s.serverType, datacenter, count: 0, addresses: [] };
        e.count++;
        e.addresses.push(c.address);
        servers.set(k, e);
      }
      if (c.kind === 'network/Network' && typeof s.vlanPool === 'string' && s.vlan === undefined) {
        const e = vlans.get(s.vlanPool) ?? { poolId: s.vlanPool, count: 0, addresses: [] };
        e.count++;
        e.addresses.push(c.address);
        vlans.set(s.vlanPool, e);
      }
      if (c.kind === 'network/Subnet' && typeof s.pool === 'string' && typeof s.prefixLength === 'number' && s.cidr === undefined) {
        const k = `${s.pool}/${s.prefixLength}`;
        const e = prefixes.get(k) ?? { parentId: s.pool, length: s.prefixLength, count: 0, addresses: [] };
        e.count++;
        e.addresses.push(c.address);
        prefixes.set(k, e);
      }
    }
    const serverItems = [...servers.entries()].map(([k, e]) => ({ ...e, count: Math.max(0, e.count - (freed.get(k) ?? 0)) })).filter((e) => e.count > 0);
    const request = {
      servers: serverItems.map((e) => ({ type: e.type, datacenter: e.datacenter, count: e.count })),
      vlans: [...vlans.values()].map((e) => ({ poolId: e.poolId, count: e.count })),
      prefixes: [...prefixes.values()].map((e) => ({ parentId: e.parentId, length: e.length, count: e.count })),
    };
    if (request.servers.length + request.vlans.length + request.prefixes.length === 0) return { ok: true, checks: [] };
    const answer = await alloc.feasibility(request);
    const checks: FeasibilityCheck[] = [];
    const failed = new Set<string>();
    for (const sf of answer.shortfalls) {
      failed.add(sf.path);
      const [kind, idx] = sf.path.split('.');
      const item = kind === 'servers' ? serverItems[Number(idx)] : kind === 'vlans' ? [...vlans.values()][Number(idx)] : kind === 'prefixes' ? [...prefixes.values()][Number(idx)] : undefined;
      checks.push({ ok: false, message: `needs ${sf.reason}${item ? ` (for ${summarize(item.addresses)})` : ''}`, details: { ...sf } });
    }
    serverItems.forEach((e, i) => {
      if (!failed.has(`servers.${i}`)) checks.push({ ok: true, message: `needs ${e.count} server(s) of type ${e.type} in ${e.datacenter}: available (for ${summarize(e.addresses)})` });
    });
    [...vlans.values()].forEach((e, i) => {
      if (!failed.has(`vlans.${i}`)) checks.push({ ok: true, message: `needs ${e.count} VLAN(s) from pool ${e.poolId}: available` });
    });
    [...prefixes.values()].forEach((e, i) => {
      if (!failed.has(`prefixes.${i}`)) checks.push({ ok: true, message: `needs ${e.count} /${e.length} prefix(es) from ${e.parentId}: available` });
    });
    return { ok: answer.feasible, checks };
  };
}

function summarize(addresses: string[]): string {
  return addresses.length <= 3 ? addresses.join(', ') : `${addresses.slice(0, 3).join(', ')} and ${addresses.length - 3} more`;
}

import { parseAddress, parsePrefix } from '../../ipam/addr.js';
import type { SimObject } from './model.js';

/**
 * Security-group enforcement in the simulated datacenter: whether traffic
 * from one server reaches another on a port, decided by the destination's
 * security groups as the backend has them (their actual rules, so drift
 * counts). Ingress is allowed when some rule of some group of the
 * destination matches protocol, port and remote: a remote CIDR holding one
 * of the source's addresses, a remote group the source is a member of, or,
 * with neither, anywhere. Without any security group nothing is filtered
 * (as a port with port security off). Egress is open, as OpenStack's default.
 */
export interface Rule {
  direction?: 'ingress' | 'egress';
  protocol?: 'tcp' | 'udp' | 'icmp' | 'any';
  portMin?: number;
  portMax?: number;
  remoteCidr?: string;
  remoteGroup?: string;
  ethertype?: 'IPv4' | 'IPv6';
}

export interface Verdict {
  allowed: boolean;
  /** The group and rule index that allowed it. */
  by?: { group: string; rule: number };
  reason: string;
}

const groupsOf = (server: SimObject): string[] => ((server.actual?.securityGroups ?? server.spec.securityGroups ?? []) as string[]);
const addressesOf = (server: SimObject): string[] => ((server.outputs.addresses ?? []) as { ip: string }[]).map((a) => a.ip);

function cidrHolds(cidr: string, ip: string): boolean {
  try {
    const p = parsePrefix(cidr, 'remoteCidr');
    const a = parseAddress(ip, 'address');
    return a.family === p.family && a.value >= p.network && a.value <= p.last;
  } catch {
    return false;
  }
}

export function allows(from: SimObject, to: SimObject, groups: ReadonlyMap<string, SimObject>, traffic: { port: number; protocol: 'tcp' | 'udp' | 'icmp' }): Verdict {
  const toGroups = groupsOf(to);
  if (toGroups.length === 0) return { allowed: true, reason: `${to.name} has no security group: nothing is filtered` };
  const fromGroups = new Set(groupsOf(from));
  const fromIps = addressesOf(from);
  for (const gid of toGroups) {
    const g = groups.get(gid);
    if (!g) continue;
    const rules = ((g.actual?.rules ?? g.spec.rules ?? []) as Rule[]);
    for (const [i, r] of rules.entries()) {
      if ((r.direction ?? 'ingress') !== 'ingress') continue;
      const proto = r.protocol ?? 'tcp';
      if (proto !== 'any' && proto !== traffic.protocol) continue;
      if (traffic.protocol !== 'icmp' && r.portMin !== undefined) {
        const max = r.portMax ?? r.portMin;
        if (traffic.port < r.portMin || traffic.port > max) continue;
      }
      const v6 = (r.ethertype ?? 'IPv4') === 'IPv6';
      const ips = fromIps.filter((ip) => ip.includes(':') === v6);
      let remoteOk: boolean;
      if (r.remoteGroup) remoteOk = fromGroups.has(r.remoteGroup);
      else if (r.remoteCidr) remoteOk = ips.some((ip) => cidrHolds(r.remoteCidr!, ip));
      else remoteOk = true;
      if (remoteOk) return { allowed: true, by: { group: g.name, rule: i }, reason: `allowed by rule ${i} of ${g.name}` };
    }
  }
  return { allowed: false, reason: `no ingress rule of ${to.name}'s security groups allows ${traffic.protocol}${traffic.protocol === 'icmp' ? '' : `/${traffic.port}`} from ${from.name}` };
}

import { ConflictError, ExhaustedError, InfraflowError, NotFoundError, ValidationError } from '../../core/errors.js';
import type { Inventory } from '../../inventory/index.js';
import type { Ipam } from '../../ipam/index.js';
import { ProviderError } from '../../resources/errors.js';
import type { SimBackends } from './model.js';

/**
 * Wires the simulator to the real allocators, so that a simulated subnet
 * takes its CIDR from IPAM, a network its VLAN from a VLAN pool, a floating
 * IP its address from a floating prefix, and a bare-metal instance a server
 * from the inventory — exactly what a real provider would do, and what the
 * allocation views (utilization, holders) then show.
 *
 * Anything not configured falls back to the simulator's own pools:
 * - subnets: `spec.pool` (an IPAM prefix id), else `subnetParent` (an id or `<scope>:<cidr>`);
 * - networks: `spec.vlanPool` (a pool id or name), else `vlanPool`;
 * - floating IPs: `floatingPools[spec.pool]` (an IPAM floating prefix id or `<scope>:<cidr>`);
 * - bare metal: server types the inventory knows (others use the simulator's `serverTypes`),
 *   in `spec.datacenter`, else `datacenter`.
 */
export interface AllocatorBackendOptions {
  ipam?: Ipam;
  inventory?: Inventory;
  /** Default parent prefix for subnets without `pool`. */
  subnetParent?: string;
  /** Default VLAN pool for networks without `vlanPool`. */
  vlanPool?: string;
  /** Floating pool name → IPAM prefix (id or `<scope>:<cidr>`). */
  floatingPools?: Record<string, string>;
  /** Default datacenter for bare metal. */
  datacenter?: string;
  /**
   * Inventory servers carrying all these labels are the simulator's
   * hypervisors (CPU cores and RAM from their server type; zone from the
   * `zone` label, else the datacenter). Default `{ role: 'hypervisor' }`;
   * none found → the simulator's configured hosts stay.
   */
  hypervisorLabels?: Record<string, string>;
}

/** Server states that count as in use in the simulator's view of bare metal. */
const IN_USE = ['allocated', 'provisioning', 'provisioned', 'deprovisioning'] as const;

function mapError(e: unknown, what: string): never {
  if (e instanceof ProviderError) throw e;
  if (e instanceof ExhaustedError) throw new ProviderError('CapacityExhausted', `${what}: ${e.message}`, { cause: e, details: { code: e.code } });
  if (e instanceof NotFoundError || e instanceof ValidationError) throw new ProviderError('InvalidSpec', `${what}: ${e.message}`, { cause: e, details: { code: e.code } });
  if (e instanceof ConflictError) throw new ProviderError('Conflict', `${what}: ${e.message}`, { cause: e, retryable: e.retryable, details: { code: e.code } });
  if (e instanceof InfraflowError) throw new ProviderError(e.retryable ? 'BackendUnavailable' : 'Internal', `${what}: ${e.message}`, { cause: e, retryable: e.retryable, details: { code: e.code } });
  throw e;
}

/** `<scope>:<cidr>` → prefix id (resolved once, before any transaction); ids pass through. */
async function resolvePrefix(ipam: Ipam, ref: string): Promise<string> {
  const id = await ipam.resolvePrefixRef(ref);
  if (id === ref && ref.includes(':')) throw new ValidationError('sim.unknown_prefix', `prefix ${ref} does not exist in IPAM (<scope>:<cidr>): create it first (or fix the simulator's allocator configuration)`);
  return id;
}

export function allocatorBackends(opts: AllocatorBackendOptions): SimBackends {
  const { ipam, inventory } = opts;
  const b: SimBackends = {};
  let subnetParent = opts.subnetParent;
  const floating: Record<string, string> = { ...opts.floatingPools };
  if (ipam) {
    b.prepare = async () => {
      if (subnetParent) subnetParent = await resolvePrefix(ipam, subnetParent);
      for (const [k, v] of Object.entries(floating)) floating[k] = await resolvePrefix(ipam, v);
    };
    b.allocatePrefix = async (req, trx) => {
      // a subnet's pool: a prefix id or `<scope>:<cidr>` (read in the caller's transaction)
      const pool = req.pool ? await ipam.resolvePrefixRef(req.pool, trx) : subnetParent;
      if (!pool) return undefined;
      try {
        const p = await ipam.allocatePrefix({ parentId: pool, length: req.length, holder: req.holder, key: req.key, gateway: 'first', description: 'subnet (simulator)' }, trx);
        return { cidr: p.cidr, ref: p.id };
      } catch (e) {
        return mapError(e, `a /${req.length} prefix from ${pool}`);
      }
    };
    b.releasePrefix = async ({ ref, holder }) => {
      await ipam.releasePrefix(ref, { holder }).catch((e: unknown) => {
        if (!(e instanceof NotFoundError)) throw e;
      });
    };
    b.allocateVlan = async (req, trx) => {
      const pool = req.pool ?? opts.vlanPool;
      if (!pool) return undefined;
      try {
        const a = await ipam.allocateVlan({ poolId: pool, holder: req.holder, key: req.key }, trx);
        return { vlan: a.vlan, ref: a.id };
      } catch (e) {
        return mapError(e, `a VLAN from pool ${pool}`);
      }
    };
    b.releaseVlan = async ({ ref, holder }) => {
      await ipam.releaseVlan({ id: ref, holder }).catch((e: unknown) => {
        if (!(e instanceof NotFoundError)) throw e;
      });
    };
    b.allocateFloatingIp = async (req, trx) => {
      const pool = floating[req.pool];
      if (!pool) return undefined;
      try {
        const a = await ipam.allocateFloatingIp({ poolId: pool, holder: req.holder, key: req.key }, trx);
        return { address: a.address, ref: a.id };
      } catch (e) {
        return mapError(e, `a floating IP from pool ${req.pool}`);
      }
    };
    b.releaseFloatingIp = async ({ ref, holder }) => {
      await ipam.releaseAddress({ id: ref, holder }).catch((e: unknown) => {
        if (!(e instanceof NotFoundError)) throw e;
      });
    };
  }
  if (inventory) {
    const want = opts.hypervisorLabels ?? { role: 'hypervisor' };
    b.hypervisors = async () => {
      const out: { name: string; zone: string; vcpus: number; ramMb: number }[] = [];
      const types = new Map((await inventory.listServerTypes()).map((t) => [t.name, t]));
      let after: string | undefined;
      for (;;) {
        const page = await inventory.listServers({ limit: 500, ...(after ? { after } : {}) });
        for (const s of page) {
          if (!Object.entries(want).every(([k, v]) => s.labels[k] === v)) continue;
          if (s.state === 'quarantined' || s.state === 'failed' || s.state === 'maintenance') continue;
          const t = types.get(s.type);
          if (t) out.push({ name: s.serial, zone: s.labels.zone ?? s.datacenter, vcpus: t.cpu.cores, ramMb: t.ramGb * 1024 });
        }
        if (page.length < 500) break;
        after = page[page.length - 1]!.id;
      }
      return out;
    };
    b.allocateMetalServer = async (req, trx) => {
      let type;
      try {
        type = await inventory.getServerType(req.serverType, trx);
      } catch (e) {
        // Types the inventory does not know come from the simulator's own inventory.
        if (e instanceof NotFoundError || (e instanceof InfraflowError && e.code === 'inventory.unknown_server_type')) return undefined;
        throw e;
      }
      const datacenter = req.datacenter ?? opts.datacenter;
      if (!datacenter) throw new ProviderError('InvalidSpec', `datacenter: the inventory holds ${req.serverType} servers; say in which datacenter (spec.datacenter)`);
      try {
        const [s] = await inventory.allocateServers({ type: req.serverType, datacenter, count: 1, holder: req.holder, key: req.key }, trx);
        return { serverId: s!.id, name: s!.serial, vcpus: type.cpu.cores, ramMb: type.ramGb * 1024, bmcAddress: s!.bmcAddress };
      } catch (e) {
        return mapError(e, `a ${req.serverType} server in ${datacenter}`);
      }
    };
    b.releaseMetalServer = async ({ serverId, holder }) => {
      await inventory.releaseServers({ ids: [serverId], holder, reason: 'released by the simulator (instance deleted)' });
    };
    b.metalInventory = async () => {
      const out: Record<string, { total: number; allocated: number }> = {};
      // a type the inventory knows is the inventory's, even with no servers: that is where its instances go
      for (const t of await inventory.listServerTypes()) out[t.name] = { total: 0, allocated: 0 };
      for (const c of await inventory.utilization()) {
        const e = (out[c.type] ??= { total: 0, allocated: 0 });
        e.total += c.total;
        e.allocated += IN_USE.reduce((n, st) => n + (c.byState[st] ?? 0), 0);
      }
      return out;
    };
  }
  return b;
}

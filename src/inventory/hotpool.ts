import { createHash } from 'node:crypto';
import { z } from 'zod';
import { defineWorkflow, type WorkflowContext } from '../engine/types.js';
import type { Inventory } from './inventory.js';
import { PENDING_READY } from './lifecycle.js';
import type { HotPoolPolicy, RegisterServerInput, Server } from './schemas.js';

/**
 * The narrow port through which the hot pool finds and inspects new
 * hardware. The simulator implements it in-process; a real implementation
 * talks to a provider (Redfish discovery, a MAAS/Ironic enrolment API).
 * Both calls take an idempotency key: the same key gives the same effect.
 */
export interface DiscoveredServer {
  serial: string;
  rack?: string;
  position?: number;
  bmc?: { address: string; username: string; password: string };
  nics: { name: string; mac: string; switch?: string; port?: string }[];
  labels?: Record<string, string>;
}

export interface InspectionResult {
  ok: boolean;
  /** Why inspection failed (hardware fault, mismatch with the server type). */
  reason?: string;
  facts?: Record<string, unknown>;
}

export interface HardwareDiscovery {
  /** Finds up to `count` new servers of `type` in `datacenter` (fewer when the supply runs out). */
  discover(req: { type: string; datacenter: string; count: number; key: string }): Promise<DiscoveredServer[]>;
  /** Inspects a registered server (hardware inventory, burn-in). */
  inspect(req: { serverId: string; serial: string; type: string; key: string }): Promise<InspectionResult>;
}

/**
 * Simulated discovery: deterministic servers derived from the idempotency
 * key (same key → same serials and MACs), an optional finite supply per
 * type, and an optional inspection failure predicate.
 */
export class SimulatedDiscovery implements HardwareDiscovery {
  private readonly supply: Map<string, number>;
  private readonly failInspection: (serial: string) => string | undefined;
  readonly discovered: string[] = [];

  constructor(opts: { supply?: Record<string, number>; failInspection?: (serial: string) => string | undefined } = {}) {
    this.supply = new Map(Object.entries(opts.supply ?? {}));
    this.failInspection = opts.failInspection ?? (() => undefined);
  }

  async discover(req: { type: string; datacenter: string; count: number; key: string }): Promise<DiscoveredServer[]> {
    const left = this.supply.get(req.type) ?? Number.POSITIVE_INFINITY;
    const n = Math.max(0, Math.min(req.count, left));
    if (this.supply.has(req.type)) this.supply.set(req.type, left - n);
    const out: DiscoveredServer[] = [];
    for (let i = 0; i < n; i++) {
      const h = createHash('sha256').update(`${req.key}:${i}`).digest('hex');
      const mac = (j: number) => `02:${h.slice(0, 2)}:${h.slice(2, 4)}:${h.slice(4, 6)}:${h.slice(6, 8)}:${(j * 16 + (parseInt(h.slice(8, 9), 16))).toString(16).padStart(2, '0')}`;
      const serial = `SIM-${req.datacenter}-${h.slice(0, 12).toUpperCase()}`;
      this.discovered.push(serial);
      out.push({ serial, nics: [{ name: 'eno1', mac: mac(0) }, { name: 'eno2', mac: mac(1) }], labels: { discovered: 'hotpool' }, bmc: { address: `10.255.${parseInt(h.slice(0, 2), 16)}.${parseInt(h.slice(2, 4), 16)}`, username: 'admin', password: h.slice(16, 32) } });
    }
    return out;
  }

  async inspect(req: { serverId: string; serial: string }): Promise<InspectionResult> {
    const reason = this.failInspection(req.serial);
    return reason ? { ok: false, reason } : { ok: true, facts: { inspected: true } };
  }
}

export interface HotPoolStatus {
  type: string;
  datacenter: string;
  minReady: number;
  ready: number;
  pending: number;
  deficit: number;
}

export async function hotPoolStatus(inv: Inventory, policy: HotPoolPolicy): Promise<HotPoolStatus> {
  const c = await inv.capacity({ type: policy.type, datacenter: policy.datacenter });
  const ready = c.byState.available ?? 0;
  const pending = PENDING_READY.reduce((n, s) => n + (c.byState[s] ?? 0), 0);
  return { type: policy.type, datacenter: policy.datacenter, minReady: policy.minReady, ready, pending, deficit: Math.max(0, policy.minReady - ready - pending) };
}

async function registerDiscovered(inv: Inventory, policy: HotPoolPolicy, found: DiscoveredServer[]): Promise<Server[]> {
  const out: Server[] = [];
  for (const d of found) {
    const existing = await inv.findServerBySerial(d.serial);
    if (existing) {
      out.push(existing);
      continue;
    }
    const input: RegisterServerInput = {
      serial: d.serial, type: policy.type, datacenter: policy.datacenter, nics: d.nics, labels: d.labels ?? {}, state: 'registering',
      ...(d.rack ? { rack: d.rack } : {}), ...(d.position !== undefined ? { position: d.position } : {}), ...(d.bmc ? { bmc: d.bmc } : {}),
    };
    out.push(await inv.registerServer(input));
  }
  return out;
}

/** Takes a registered server through inspection to `available` (or `failed` with the reason). */
async function inspectServer(inv: Inventory, discovery: HardwareDiscovery, server: Server, key: string): Promise<Server> {
  let s = server;
  if (s.state === 'registering') s = await inv.transition({ serverId: s.id, to: 'inspecting', reason: 'hot pool: inspecting new hardware', from: 'registering' });
  if (s.state !== 'inspecting') return s;
  const r = await discovery.inspect({ serverId: s.id, serial: s.serial, type: s.type, key });
  return inv.transition({ serverId: s.id, to: r.ok ? 'available' : 'failed', reason: r.ok ? 'hot pool: inspected' : `inspection failed: ${r.reason ?? 'unknown'}`, from: 'inspecting' });
}

/**
 * One reconciliation of a hot-pool policy without the engine (tests, CLI):
 * discovers the deficit and inspects the new servers.
 */
export async function reconcileHotPool(inv: Inventory, discovery: HardwareDiscovery, policy: HotPoolPolicy, key: string): Promise<HotPoolStatus & { discovered: number; inspected: number; failed: number }> {
  const st = await hotPoolStatus(inv, policy);
  let discovered = 0;
  let inspected = 0;
  let failed = 0;
  if (policy.enabled && st.deficit > 0) {
    const found = await discovery.discover({ type: policy.type, datacenter: policy.datacenter, count: st.deficit, key: `${key}:discover` });
    const servers = await registerDiscovered(inv, policy, found);
    discovered = servers.length;
    for (const s of servers) {
      const r = await inspectServer(inv, discovery, s, `${key}:inspect:${s.serial}`);
      if (r.state === 'available') inspected++;
      else if (r.state === 'failed') failed++;
    }
  }
  return { ...(await hotPoolStatus(inv, policy)), discovered, inspected, failed };
}

export const HotPoolReconcileInput = z.object({ type: z.string().min(1), datacenter: z.string().min(1) });

/**
 * The durable hot-pool workflow: reads the policy, discovers the deficit
 * (one journaled step, idempotency key from the engine), then inspects
 * each new server in its own step. A crash resumes where it stopped;
 * re-running discovery with the same key finds the same servers.
 */
export function hotPoolWorkflow(inv: Inventory, discovery: HardwareDiscovery) {
  return defineWorkflow({
    name: 'inventory.hotpool.reconcile',
    version: 1,
    input: HotPoolReconcileInput,
    concurrencyKey: (i) => `hotpool:${i.type}:${i.datacenter}`,
    async run(ctx: WorkflowContext<z.infer<typeof HotPoolReconcileInput>>, input) {
      const policy = await ctx.step('read policy', async () => {
        const p = (await inv.listHotPoolPolicies()).find((x) => x.type === input.type && x.datacenter === input.datacenter);
        return p ?? null;
      });
      if (!policy || !policy.enabled) return { discovered: 0, reason: 'no enabled policy' };
      const st = await ctx.step('measure', () => hotPoolStatus(inv, policy));
      ctx.progress({ stage: 'hot pool', message: `${st.ready} ready, ${st.pending} pending, want ${st.minReady}` });
      if (st.deficit === 0) return { discovered: 0, ready: st.ready };
      const servers = await ctx.step('discover', async (sc) => {
        const found = await discovery.discover({ type: policy.type, datacenter: policy.datacenter, count: st.deficit, key: sc.idempotencyKey });
        return (await registerDiscovered(inv, policy, found)).map((s) => ({ id: s.id, serial: s.serial }));
      });
      let ok = 0;
      for (const [i, s] of servers.entries()) {
        ctx.progress({ stage: 'inspecting', percent: Math.round((i / servers.length) * 100), message: `inspecting ${s.serial}` });
        const r = await ctx.step(`inspect ${s.serial}`, async (sc) => (await inspectServer(inv, discovery, await inv.getServer(s.id), sc.idempotencyKey)).state);
        if (r === 'available') ok++;
      }
      return { discovered: servers.length, inspected: ok };
    },
  });
}

/**
 * The periodic hot-pool tick: starts one reconciliation per enabled policy
 * (as child runs, so each is durable and visible on its own). Schedule it
 * with the engine, e.g. every minute (see createAllocationServices).
 */
export function hotPoolTickWorkflow(inv: Inventory) {
  return defineWorkflow({
    name: 'inventory.hotpool.tick',
    version: 1,
    async run(ctx: WorkflowContext<unknown>) {
      const policies = await ctx.step('list policies', async () => (await inv.listHotPoolPolicies()).filter((p) => p.enabled));
      const results: Record<string, unknown> = {};
      for (const p of policies) {
        const st = await ctx.step(`measure ${p.type}/${p.datacenter}`, () => hotPoolStatus(inv, p));
        if (st.deficit === 0) continue;
        results[`${p.type}/${p.datacenter}`] = await ctx.child('inventory.hotpool.reconcile', { type: p.type, datacenter: p.datacenter }, { name: `reconcile ${p.type}/${p.datacenter}` });
      }
      return results;
    },
  });
}

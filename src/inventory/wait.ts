import { isInfraflowError, TimeoutError } from '../core/errors.js';
import type { EngineApi, WorkflowContext } from '../engine/types.js';
import type { Inventory } from './inventory.js';
import type { AllocateServersInput, Server } from './schemas.js';

/** The signal a run waiting for servers receives when capacity appears. */
export const CAPACITY_SIGNAL = 'inventory.capacity';

/**
 * The signal for one server type in one datacenter, e.g.
 * `inventory.capacity:gpu.g1@dc1`; the engine shows a waiting run as
 * waiting for `signal inventory.capacity:gpu.g1@dc1`.
 */
export function capacitySignal(type: string, datacenter: string): string {
  return `${CAPACITY_SIGNAL}:${type}@${datacenter}`;
}

export interface WaitForServersOptions {
  /** Give up after this long (engine time); the run fails with `inventory.capacity_timeout`. */
  timeoutMs: number;
  /** Re-check at least this often even without a signal (default 60 s): a safety net, not the wake-up path. */
  recheckMs?: number;
  /** Step name prefix (default `allocate servers`); unique per call site within a workflow. */
  name?: string;
}

/**
 * "Block until servers are available", as a durable workflow helper.
 *
 * Tries to allocate; when capacity is short, the same transaction records
 * the run as a waiter, the run reports what it waits for (ctx.progress
 * `message`, and the signal name `inventory.capacity:<type>@<datacenter>` in
 * `waitingFor`) and parks on `ctx.waitFor` without holding
 * a worker. Whoever makes a server of that type available in that
 * datacenter (release, cleaning done, hot pool, hold expiry) signals the
 * waiting runs after commit (see `connectCapacitySignals`); the run wakes
 * and tries again. Each attempt is a journaled step whose idempotency key
 * is the allocation key, so a crash after allocating never allocates twice.
 */
export async function allocateServersWhenAvailable(ctx: WorkflowContext, inv: Inventory, input: AllocateServersInput, opts: WaitForServersOptions): Promise<Server[]> {
  const name = opts.name ?? 'allocate servers';
  const recheck = opts.recheckMs ?? 60_000;
  const started = await ctx.now();
  const deadline = started + opts.timeoutMs;
  const what = `${input.count ?? 1} server(s) of type ${input.type} in ${input.datacenter}`;
  for (let attempt = 1; ; attempt++) {
    const r = await ctx.step(`${name} #${attempt}`, async (sc) => {
      const res = await inv.tryAllocateServers({ ...input, key: input.key ?? `${ctx.runId}:${name}` }, ctx.runId);
      if (!res.ok) sc.log(res.message, { available: res.available, requested: res.requested });
      return res;
    });
    if (r.ok) {
      ctx.progress({ stage: 'allocated', message: `allocated ${what}` });
      return r.servers;
    }
    const now = await ctx.now();
    if (now >= deadline) {
      await ctx.step(`${name} give up`, () => inv.removeWaiter(ctx.runId));
      throw new TimeoutError('inventory.capacity_timeout', `waited ${Math.round((now - started) / 1000)} s for ${what}; ${r.available} available. Add servers, release some, or raise the timeout`, { retryable: false, details: { type: input.type, datacenter: input.datacenter, requested: r.requested, available: r.available } });
    }
    const waitingFor = `${what} (${r.available} of ${r.requested} available)`;
    ctx.progress({ stage: 'waiting for capacity', waitingFor, message: `waiting for ${waitingFor}` });
    try {
      await ctx.waitFor(capacitySignal(input.type, input.datacenter), { timeoutMs: Math.max(1, Math.min(recheck, deadline - now)), name: `${name} wait #${attempt}` });
    } catch (e) {
      if (!(isInfraflowError(e) && e.code === 'engine.wait_timeout')) throw e;
    }
  }
}

/** Wires inventory capacity events to engine signals. Returns an unsubscribe function. */
export function connectCapacitySignals(inv: Inventory, engine: Pick<EngineApi, 'signal'>): () => void {
  return inv.onCapacity(async (ev) => {
    for (const runId of ev.runIds) {
      try {
        await engine.signal(runId, capacitySignal(ev.type, ev.datacenter), { type: ev.type, datacenter: ev.datacenter });
      } catch (e) {
        // the run is gone or finished: it no longer waits
        if (isInfraflowError(e) && (e.status === 404 || e.status === 409)) await inv.removeWaiter(runId);
      }
    }
  });
}

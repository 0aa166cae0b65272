import { z } from 'zod';
import { ExhaustedError, isInfraflowError, TimeoutError } from '../core/errors.js';
import { defineWorkflow, type WorkflowContext } from '../engine/types.js';
import { capacitySignal } from '../inventory/wait.js';
import type { Allocations } from './reservations.js';
import { ReserveSchema, type Reservation, type ReserveInput } from './schemas.js';

export interface ReserveWhenAvailableOptions {
  /** Give up after this long (engine time); the run fails with `allocation.capacity_timeout`. */
  timeoutMs: number;
  /**
   * Re-check at least this often (default 30 s). Servers wake the run by
   * signal the moment they become available; addresses, prefixes and VLANs
   * have no such signal and are found by this re-check.
   */
  recheckMs?: number;
  /** Step name prefix (default `reserve`); unique per call site within a workflow. */
  name?: string;
}

type Attempt = { ok: true; id: string } | { ok: false; message: string; field: string | null };

/**
 * "Reserve as soon as it can be met": a durable wait around `reserve`.
 *
 * Each attempt is a journaled step that first records the run as waiting
 * for every server type the request names, then reserves (all or nothing,
 * one idempotency key for all attempts, so a crash after reserving never
 * reserves twice). When something is exhausted the run reports what it
 * waits for (`ctx.progress`) and parks without holding a worker: on the
 * capacity signal of the server type that was short, or for `recheckMs`
 * when an address, prefix or VLAN pool was. Anything else (unknown pool,
 * bad input, a DNS name someone holds) fails the run at once.
 */
export async function reserveWhenAvailable(ctx: WorkflowContext, alloc: Allocations, input: ReserveInput, opts: ReserveWhenAvailableOptions): Promise<Reservation> {
  const name = opts.name ?? 'reserve';
  const recheck = opts.recheckMs ?? 30_000;
  const req = ReserveSchema.parse(input);
  const key = req.key ?? `${ctx.runId}:${name}`;
  const started = await ctx.now();
  const deadline = started + opts.timeoutMs;
  for (let attempt = 1; ; attempt++) {
    const r = await ctx.step<Attempt>(`${name} #${attempt}`, async (sc) => {
      for (const s of req.servers) await alloc.inventory.addWaiter(ctx.runId, s.type, s.datacenter, s.count);
      try {
        const rsv = await alloc.reserve({ ...req, key });
        await alloc.inventory.removeWaiter(ctx.runId);
        return { ok: true, id: rsv.id };
      } catch (e) {
        if (!(e instanceof ExhaustedError)) {
          await alloc.inventory.removeWaiter(ctx.runId);
          throw e;
        }
        sc.log(e.message);
        return { ok: false, message: e.message, field: typeof e.details?.field === 'string' ? e.details.field : null };
      }
    });
    if (r.ok) {
      ctx.progress({ stage: 'reserved', message: `reservation ${r.id} for ${req.holder}` });
      return alloc.get(r.id);
    }
    const now = await ctx.now();
    if (now >= deadline) {
      await ctx.step(`${name} give up`, () => alloc.inventory.removeWaiter(ctx.runId));
      throw new TimeoutError('allocation.capacity_timeout', `waited ${Math.round((now - started) / 1000)} s and the request still cannot be met: ${r.message}. Add capacity, release some, or raise the timeout`, { retryable: false, details: { field: r.field } });
    }
    const server = r.field ? /^servers\.(\d+)/.exec(r.field) : null;
    const short = server ? req.servers[Number(server[1])] : undefined;
    ctx.progress({ stage: 'waiting for capacity', waitingFor: r.message, message: `waiting: ${r.message}` });
    const waitMs = Math.max(1, Math.min(recheck, deadline - now));
    if (short) {
      try {
        await ctx.waitFor(capacitySignal(short.type, short.datacenter), { timeoutMs: waitMs, name: `${name} wait #${attempt}` });
      } catch (e) {
        if (!(isInfraflowError(e) && e.code === 'engine.wait_timeout')) throw e;
      }
    } else {
      await ctx.sleep(`${name} wait #${attempt}`, waitMs);
    }
  }
}

export const ReserveWhenAvailableInput = ReserveSchema.extend({
  waitTimeoutMs: z.number().int().min(1).max(7 * 24 * 3600_000).describe('wait up to this long for the request to become feasible (starts a run)'),
});
export type ReserveWhenAvailableInput = z.input<typeof ReserveWhenAvailableInput>;

/** The workflow behind `POST /allocations/reservations` with `waitTimeoutMs`: its output is the reservation's id and status. */
export const RESERVE_WORKFLOW = 'allocation.reserve';

export function reserveWorkflow(alloc: Allocations) {
  return defineWorkflow({
    name: RESERVE_WORKFLOW,
    version: 1,
    async run(ctx, input: ReserveWhenAvailableInput) {
      const { waitTimeoutMs, ...request } = ReserveWhenAvailableInput.parse(input);
      const r = await reserveWhenAvailable(ctx, alloc, request, { timeoutMs: waitTimeoutMs });
      return { reservation: r.id, status: r.status, holder: r.holder, expiresAt: r.expiresAt };
    },
  });
}

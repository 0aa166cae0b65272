import type { Clock } from '../core/clock.js';
import type { Logger } from '../core/log.js';
import type { SecretBox } from '../core/secrets.js';
import type { EngineApi } from '../engine/types.js';
import type { Store } from '../store/store.js';
import { Inventory } from '../inventory/inventory.js';
import { hotPoolTickWorkflow, hotPoolWorkflow, SimulatedDiscovery, type HardwareDiscovery } from '../inventory/hotpool.js';
import { connectCapacitySignals } from '../inventory/wait.js';
import { Ipam } from '../ipam/ipam.js';
import { Allocations } from './reservations.js';
import { reserveWorkflow } from './wait.js';

export interface AllocationServices {
  inventory: Inventory;
  ipam: Ipam;
  allocations: Allocations;
  /** Stops the reservation sweeper and disconnects capacity signals. */
  stop(): Promise<void>;
}

/**
 * Builds inventory, IPAM and reservations for the composition root
 * (src/app/context.ts): wires capacity events to engine signals, registers
 * the hot-pool workflow (`inventory.hotpool.reconcile`) with the given
 * discovery port (the simulator's by default) and its periodic tick
 * (`inventory.hotpool.tick`, every minute) and the wait-then-reserve
 * workflow (`allocation.reserve`), and starts the sweeper that
 * expires reservations and stale holds.
 */
export function createAllocationServices(opts: {
  store: Store;
  secrets: SecretBox;
  engine?: Pick<EngineApi, 'signal' | 'register' | 'upsertSchedule' | 'publish'>;
  /** Cron of the hot-pool tick (default every minute); null: no schedule. */
  hotPoolCron?: string | null;
  clock?: Clock;
  logger?: Logger;
  discovery?: HardwareDiscovery;
  sweepIntervalMs?: number;
  quarantineAfter?: number;
}): AllocationServices {
  const clock = opts.clock ? { clock: opts.clock } : {};
  const engine = opts.engine;
  const events = engine ? { events: (type: string, subject: string, data: Record<string, unknown>) => engine.publish(type, subject, data) } : {};
  const inventory = new Inventory({ store: opts.store, secrets: opts.secrets, ...clock, ...events, ...(opts.quarantineAfter ? { quarantineAfter: opts.quarantineAfter } : {}) });
  const ipam = new Ipam({ store: opts.store, ...clock });
  const allocations = new Allocations({ store: opts.store, inventory, ipam, ...clock, ...events });
  const disconnect = opts.engine ? connectCapacitySignals(inventory, opts.engine) : () => {};
  opts.engine?.register(hotPoolWorkflow(inventory, opts.discovery ?? new SimulatedDiscovery()));
  opts.engine?.register(hotPoolTickWorkflow(inventory));
  opts.engine?.register(reserveWorkflow(allocations));
  const cron = opts.hotPoolCron === undefined ? '* * * * *' : opts.hotPoolCron;
  if (opts.engine && cron) {
    void opts.engine.upsertSchedule({ id: 'inventory.hotpool', cron, workflow: 'inventory.hotpool.tick', input: {}, overlap: 'skip' })
      .catch((e: unknown) => opts.logger?.warn({ err: e }, 'could not schedule the hot-pool tick'));
  }
  const stopSweeper = allocations.startSweeper(opts.sweepIntervalMs ?? 5_000, (e) => opts.logger?.warn({ err: e }, 'reservation sweep failed'));
  return {
    inventory,
    ipam,
    allocations,
    stop: async () => {
      disconnect();
      await stopSweeper();
    },
  };
}

import { join, resolve } from 'node:path';
import type { Config } from '../core/config.js';
import { systemClock, type Clock } from '../core/clock.js';
import type { Logger } from '../core/log.js';
import { SecretBox, resolveSecretKey } from '../core/secrets.js';
import { Store } from '../store/store.js';
import { migrate } from '../store/migrate.js';
import { allMigrations } from './migrations.js';
import { Engine } from '../engine/index.js';
import { createAllocationServices } from '../allocation/index.js';
import type { Allocations } from '../allocation/index.js';
import type { Inventory } from '../inventory/index.js';
import type { Ipam } from '../ipam/index.js';
import { createProviderServices } from '../providers/index.js';
import type { SimDatacenter } from '../providers/sim/index.js';
import { RESOURCE_QUEUE, resourceWorkflows, type ProviderRegistry, type ResourceStore } from '../resources/index.js';
import { Stacks } from '../stacks/index.js';
import { allocationFeasibility } from '../stacks/feasibility.js';

/**
 * The composition root: builds every area from configuration, in dependency
 * order (store → engine → inventory/IPAM/reservations → resources, providers
 * and simulator → stacks). Only `src/app` and `src/main.ts` know all areas.
 *
 * The worker starts last, after every area has registered its workflows, so
 * that runs recovered from a previous process always find their code.
 */
export interface AppContext {
  config: Config;
  logger: Logger;
  clock: Clock;
  store: Store;
  secrets: SecretBox;
  /** The durable workflow engine; its worker runs when config.worker.enabled. */
  engine: Engine;
  inventory: Inventory;
  ipam: Ipam;
  allocations: Allocations;
  resources: ResourceStore;
  registry: ProviderRegistry;
  sim: SimDatacenter;
  stacks: Stacks;
  close(): Promise<void>;
}

export function databaseUrl(config: Config): string {
  return config.databaseUrl ?? `sqlite:${join(resolve(config.dataDir), 'infraflow.db')}`;
}

export interface CreateContextOptions {
  clock?: Clock;
  /** Start the worker once everything is registered (default: config.worker.enabled). */
  startWorker?: boolean;
}

export async function createContext(config: Config, logger: Logger, opts: CreateContextOptions = {}): Promise<AppContext> {
  const clock = opts.clock ?? systemClock;
  const store = Store.open({ url: databaseUrl(config), synchronous: config.sqliteSynchronous });
  let stopAllocations: (() => Promise<void>) | undefined;
  try {
    await migrate(store, allMigrations);
    const secrets = SecretBox.fromConfig(config);
    const engine = new Engine({
      store,
      clock,
      logger,
      concurrency: config.worker.concurrency,
      leaseMs: config.worker.leaseMs,
      heartbeatMs: config.worker.heartbeatMs,
      pollMs: config.worker.pollMs,
      // one resource's create, updates and delete run one after another
      queues: { [RESOURCE_QUEUE]: { concurrency: 100_000, perKey: 1 } },
    });
    const alloc = createAllocationServices({ store, secrets, engine, clock, logger });
    stopAllocations = () => alloc.stop();
    const providers = await createProviderServices({
      store,
      clock,
      engine,
      secretKey: resolveSecretKey(config),
      sim: { speed: config.sim.speed, seed: config.sim.seed },
      allocators: { ipam: alloc.ipam, inventory: alloc.inventory, datacenter: config.datacenter },
      routing: config.providers,
    });
    for (const w of resourceWorkflows(providers.deps)) engine.register(w);
    const stacks = new Stacks({
      store,
      engine,
      resources: providers.resources,
      registry: providers.registry,
      clock,
      logger,
      secrets,
      feasibility: allocationFeasibility(alloc.allocations, { datacenter: config.datacenter }),
    });
    if (opts.startWorker ?? config.worker.enabled) engine.startWorker();
    return {
      config,
      logger,
      clock,
      store,
      secrets,
      engine,
      inventory: alloc.inventory,
      ipam: alloc.ipam,
      allocations: alloc.allocations,
      resources: providers.resources,
      registry: providers.registry,
      sim: providers.sim,
      stacks,
      close: async () => {
        // Stop claiming, let in-flight steps finish (or hand runs back), then close the database.
        await engine.stop({ graceful: true });
        await alloc.stop();
        await store.close();
      },
    };
  } catch (e) {
    await stopAllocations?.().catch(() => {});
    await store.close();
    throw e;
  }
}

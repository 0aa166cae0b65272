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
import { checkRouting, createBackendProviders, parseBackends } from '../providers/backends.js';
import { openStackFromConfig } from './openstack.js';
import type { SimDatacenter } from '../providers/sim/index.js';
import { RESOURCE_QUEUE, resourceWorkflows, type ProviderRegistry, type ResourceStore } from '../resources/index.js';
import { Stacks } from '../stacks/index.js';
import { allocationFeasibility } from '../stacks/feasibility.js';
import { Servers } from '../servers/index.js';
import { Fulfillment, fulfillmentWorkflows, GitOps } from '../fulfillment/index.js';
import { SimClusterBackend } from '../providers/sim/cluster.js';
import { Gitops } from '../gitops/index.js';
import { verifySecretKey } from './key-check.js';
import { Apps } from '../apps/service.js';

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
  /** The single-VM path (POST /servers). */
  servers: Servers;
  /** Cluster fulfillment (templates, orders, hubs, host pools). */
  fulfillment: Fulfillment;
  /** Git sources and applications; its poller starts with `gitops.start()` (main.ts). */
  gitops: Gitops;
  /** Applications on container clusters, the simulated clusters' Kubernetes APIs, autoscalers. */
  apps: Apps;
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
  let stopApps: (() => Promise<void>) | undefined;
  try {
    await migrate(store, allMigrations);
    const secrets = SecretBox.fromConfig(config);
    // every process on one database must hold the same key: refuse to start otherwise
    await verifySecretKey(store, secrets, clock);
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
    const backends = parseBackends(config.backends);
    // real backends (DNS, DHCP, switches, BMCs) and a real OpenStack, when configured
    const realProviders = [...createBackendProviders(backends, { inventory: alloc.inventory }), ...await openStackFromConfig(config, store, secrets)];
    checkRouting(config.providers, realProviders);
    const providers = await createProviderServices({
      store,
      clock,
      engine,
      secretKey: resolveSecretKey(config),
      sim: { speed: config.sim.speed, seed: config.sim.seed },
      allocators: { ipam: alloc.ipam, inventory: alloc.inventory, datacenter: config.datacenter },
      routing: config.providers,
      providers: realProviders,
    });
    const apps = new Apps({ resources: providers.resources, registry: providers.registry, engine, sim: providers.sim, kubeListen: { host: config.sim.kubeHost, port: config.sim.kubePort } });
    await apps.start();
    stopApps = () => apps.stop();
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
    const servers = new Servers({ store, engine, stacks, resources: providers.resources, clock });
    const f = config.fulfillment;
    const fulfillment = new Fulfillment({
      store, engine, clock, logger, secrets, inventory: alloc.inventory, ipam: alloc.ipam, allocations: alloc.allocations, registry: providers.registry,
      backend: new SimClusterBackend({ store, clock, speed: config.sim.speed, seed: config.sim.seed, secretKey: resolveSecretKey(config) }),
      git: new GitOps({ url: f.gitUrl ?? join(resolve(config.dataDir), 'gitops.git'), workdir: join(resolve(config.dataDir), `gitops-work-${process.pid}`) }),
      config: {
        datacenter: config.datacenter, baseDomain: f.baseDomain, vlanPool: f.vlanPool, machineNetworkParent: f.machineNetworkParent, machineNetworkLength: f.machineNetworkLength,
        floatingPool: f.floatingPool, approvalAboveNodes: f.approvalAboveNodes ?? null, pollMs: f.pollMs,
      },
    });
    for (const w of fulfillmentWorkflows(fulfillment)) engine.register(w);
    const gitops = new Gitops({ store, engine, stacks, box: secrets, workDir: join(resolve(config.dataDir), 'gitops'), clock, logger });
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
      servers,
      fulfillment,
      gitops,
      apps,
      close: async () => {
        gitops.stop();
        // Stop claiming, let in-flight steps finish (or hand runs back), then close the database.
        await engine.stop({ graceful: true });
        await apps.stop();
        await alloc.stop();
        await store.close();
      },
    };
  } catch (e) {
    await stopAllocations?.().catch(() => {});
    await stopApps?.().catch(() => {});
    await store.close();
    throw e;
  }
}

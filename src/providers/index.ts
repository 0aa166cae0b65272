import type { Clock } from '../core/clock.js';
import type { EngineApi } from '../engine/types.js';
import { ProviderRegistry, ResourceStore, type ProviderRouting, type ResourceDeps } from '../resources/index.js';
import type { Provider } from '../resources/types.js';
import type { Store } from '../store/store.js';
import { allocatorBackends, SimDatacenter, SimProvider, type AllocatorBackendOptions, type SimConfigInput } from './sim/index.js';

/**
 * Builds the resource store, the provider registry and the simulated
 * datacenter for an installation (the composition root calls this once):
 *
 *   const p = await createProviderServices({ store, clock, engine, secretKey: resolveSecretKey(config),
 *     sim: config.sim, allocators: { ipam, inventory, datacenter: 'dc1' }, routing: { '*': 'sim' } })
 *   // p.resources, p.registry, p.sim, p.deps (for provisionResource & co.)
 */
export interface ProviderServices {
  resources: ResourceStore;
  registry: ProviderRegistry;
  sim: SimDatacenter;
  /** What the resource workflow steps need. */
  deps: ResourceDeps;
}

export interface ProviderServicesOptions {
  store: Store;
  clock?: Clock;
  engine?: Pick<EngineApi, 'publish'>;
  /** Base64 32-byte key for resource secrets and the simulator's generated credentials (core/secrets resolveSecretKey). */
  secretKey?: string;
  /** Simulator configuration (speed, seed, hosts, server types, latency…). */
  sim?: SimConfigInput;
  /** Take VLANs, prefixes, floating IPs and bare metal from IPAM and the inventory. */
  allocators?: AllocatorBackendOptions;
  /** Kind → provider routing; default everything to the simulator. */
  routing?: ProviderRouting;
  /** Real providers to register beside the simulator. */
  providers?: Provider[];
}

export async function createProviderServices(opts: ProviderServicesOptions): Promise<ProviderServices> {
  const clock = opts.clock ? { clock: opts.clock } : {};
  const sim = await new SimDatacenter({ store: opts.store, ...clock, config: opts.sim ?? {}, secretKey: opts.secretKey, ...(opts.allocators ? { backends: allocatorBackends(opts.allocators) } : {}) }).init();
  const resources = new ResourceStore(opts.store, { ...clock, engine: opts.engine, secretKey: opts.secretKey });
  const registry = new ProviderRegistry(opts.routing ?? { '*': 'sim' }).register(new SimProvider(sim));
  for (const p of opts.providers ?? []) registry.register(p);
  return { resources, registry, sim, deps: { resources, registry } };
}

export { SimDatacenter, SimProvider } from './sim/index.js';

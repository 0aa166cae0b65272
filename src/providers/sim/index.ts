/**
 * The simulated datacenter (provider `sim`): every kind, state in the store,
 * time-based operations scaled by a speed factor, capacity, fault injection,
 * drift, a DNS resolver, load balancing, clusters, workloads and logs.
 *
 *   const sim = await new SimDatacenter({ store, clock, config: { speed: 600, seed: 42 } }).init()
 *   registry.register(new SimProvider(sim))
 *
 * Controls (for the API/CLI): sim.getSpeed()/setSpeed(n), sim.getFaults()/setFaults({ rules }),
 * sim.getSeed()/setSeed(n), sim.getQuota(project)/setQuota(project, { cores?, … }) (partial: other fields kept), sim.driftDelete(id), sim.driftModify(id, patch), sim.driftPower(id, 'off'),
 * sim.setClusterHealth(id, {...}), sim.setLoad(workloadId, rps), sim.resolve(name, type), sim.route(lb),
 * sim.logs(id, { pod?, tail? }), sim.workloadMetrics(id), sim.hosts(), sim.metalInventory(), sim.catalogue(),
 * sim.listObjects({ kind?, project? }), sim.getObject(id).
 */
export { SimDatacenter, type SimOptions, type HostInfo, type LogLine, type WorkloadMetrics, type DnsAnswer } from './sim.js';
export { SimProvider } from './provider.js';
export { SimConfigSchema, QuotaSchema, QuotaPatchSchema, type Quota, type QuotaPatch, DEFAULT_FLAVORS, DEFAULT_IMAGES, DEFAULT_OS_TEMPLATES, DEFAULT_LATENCY, scsFlavor, type SimConfig, type SimConfigInput } from './catalogue.js';
export { FaultRule, FaultConfig, decideFault, type FaultDecision, type FaultRuleInput } from './faults.js';
export { simMigrations } from './migrations.js';
export type { SimObject, SimBackends } from './model.js';
export { allocatorBackends, type AllocatorBackendOptions } from './backends.js';
export { SpeedBody, SeedBody, FaultsBody, QuotaBody, DriftAction, applyDrift } from './controls.js';

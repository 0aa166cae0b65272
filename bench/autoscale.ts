/**
 * Autoscaling benchmark (`npm run bench:autoscale [-- --json]`).
 *
 * 1. A load trace — steady (100 rps, 15 min), step x5 (30 min), drop to x0.5
 *    (40 min) — replayed on a simulated cluster at full speed against one app
 *    with an HPA (CPU 60 %) and the Cluster Autoscaler (pool of 2-CPU nodes,
 *    1..10). Figures in simulated seconds:
 *      scale_up_reaction_s        load step → the replicas the HPA settled on are all ready
 *      pending_pods_max_s         longest a pod waited for a node
 *      nodes_added                nodes the Cluster Autoscaler added
 *      flaps                      changes of scaling direction within one load level (must be 0)
 *      scale_down_started_after_s last recommendation for the higher count → first scale-down (≥ 300, the window)
 *      replica_error_steady       |replicas − the formula on the final metrics| (must be 0)
 * 2. The HPA control loop for 1,000 autoscaled workloads on one cluster:
 *      control_loop_cpu_ms_per_sync  CPU time of one HPA sync over all 1,000
 *    and, as the baseline measured in the same run, the bare algorithm
 *    (hpaSync on the same pod samples): control_loop_vs_algorithm.
 */
import { runAutoscaleScenario, DEFAULT_SCENARIO } from '../src/apps/autoscale-scenario.js';
import { emptyHpaState, hpaSync, type HpaSpec } from '../src/apps/hpa.js';
import { RES, SimKubeCluster } from '../src/providers/sim/kube/cluster.js';

const json = process.argv.includes('--json');
const log = (s: string) => {
  if (!json) console.log(s);
};

const t0 = performance.now();
const r = runAutoscaleScenario(DEFAULT_SCENARIO);
const scenarioWallS = (performance.now() - t0) / 1000;
const simulatedS = DEFAULT_SCENARIO.segments.reduce((a, s) => a + s.seconds, 0);
log(`scenario: ${simulatedS} simulated s in ${scenarioWallS.toFixed(2)} s (${Math.round(simulatedS / scenarioWallS)}x real time)`);
for (const [i, s] of r.replicas_by_segment.entries()) log(`  ${s.name.padEnd(10)} replicas ${s.start} → peak ${s.peak} → ${s.end}   nodes ${r.nodes_by_segment[i]!.start} → peak ${r.nodes_by_segment[i]!.peak} → ${r.nodes_by_segment[i]!.end}`);

// ---- 1,000 workloads
const N = 1000;
const c = new SimKubeCluster({ name: 'bench', nodes: Array.from({ length: 40 }, (_, i) => ({ name: `n${i}`, pool: 'p', cpu: 64_000, memoryMiB: 262_144 })) });
for (let i = 0; i < N; i++) {
  const n = `w${i}`;
  c.store.create(RES.deploy, { metadata: { name: n, namespace: 'default' }, spec: { replicas: 2, selector: { matchLabels: { app: n } }, template: { metadata: { labels: { app: n } }, spec: { containers: [{ name: 'a', image: 'nginx', resources: { requests: { cpu: '100m', memory: '64Mi' } } }] } } } });
  c.store.create(RES.hpa, { metadata: { name: n, namespace: 'default' }, spec: { scaleTargetRef: { kind: 'Deployment', name: n }, minReplicas: 1, maxReplicas: 10, metrics: [{ type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 60 } } }] } });
  c.setLoad('default', n, (i % 7) * 3);
}
c.advance(30_000);
const before = { syncs: c.stats.hpaSyncs, cpu: c.stats.hpaCpuMs };
c.advance(150_000, 5000);
const syncs = c.stats.hpaSyncs - before.syncs;
const loopMs = (c.stats.hpaCpuMs - before.cpu) / syncs;
// baseline: the algorithm alone on the same samples
const inputs = c.store.list(RES.deploy).map((d) => ({ d, pods: c.samples(d) }));
const spec: HpaSpec = { minReplicas: 1, maxReplicas: 10, metrics: [{ type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 60 } } }] };
const states = inputs.map(() => emptyHpaState());
let algMs = Infinity;
for (let rep = 0; rep < 5; rep++) {
  const c0 = process.cpuUsage();
  inputs.forEach((x, i) => hpaSync(spec, x.d.spec.replicas, { pods: x.pods }, states[i]!, c.now() + rep * 15_000));
  const u = process.cpuUsage(c0);
  algMs = Math.min(algMs, (u.user + u.system) / 1000);
}
log(`HPA control loop, ${N} workloads: ${loopMs.toFixed(1)} ms CPU per sync (${syncs} syncs); algorithm alone ${algMs.toFixed(1)} ms → ratio ${(loopMs / algMs).toFixed(1)}`);

const out = {
  scale_up_reaction_s: r.scale_up_reaction_s,
  pending_pods_max_s: r.pending_pods_max_s,
  nodes_added: r.nodes_added,
  nodes_removed: r.nodes_removed,
  flaps: r.flaps,
  scale_down_started_after_s: r.scale_down_started_after_s,
  scale_down_after_load_drop_s: r.scale_down_after_load_drop_s,
  replica_error_steady: r.replica_error_steady,
  replicas_peak: r.replicas_by_segment[1]!.peak,
  replicas_end: r.replicas_by_segment[2]!.end,
  scenario_speedup_vs_real_time: Math.round(simulatedS / scenarioWallS),
  workloads: N,
  control_loop_cpu_ms_per_sync: Number(loopMs.toFixed(2)),
  algorithm_cpu_ms_per_sync: Number(algMs.toFixed(2)),
  control_loop_vs_algorithm: Number((loopMs / algMs).toFixed(2)),
};
if (json) console.log(JSON.stringify(out));
else console.log(out);

import { DEFAULT_TOLERANCE } from './hpa.js';
import { isReady, RES, SimKubeCluster } from '../providers/sim/kube/cluster.js';
import type { KObj } from '../providers/sim/kube/store.js';

/**
 * A load trace replayed against one app with an HPA on an autoscaled
 * simulated cluster, measuring how the autoscalers follow it. Used by the
 * end-to-end test and by `npm run bench:autoscale`.
 */

export interface TracePoint { at: number; rps: number }

/** time (s) → rps lines: `0 100` / `600 500` / … ; `#` comments. */
export function parseLoadTrace(text: string, file = 'trace'): TracePoint[] {
  const out: TracePoint[] = [];
  text.split('\n').forEach((line, i) => {
    const s = line.replace(/#.*/, '').trim();
    if (!s) return;
    const m = /^(\d+(?:\.\d+)?)(s|m|h)?[\s,]+(\d+(?:\.\d+)?)$/.exec(s);
    if (!m) throw new Error(`${file}:${i + 1}: expected "<time> <rps>" (time in seconds, or with s/m/h), got ${JSON.stringify(s)}`);
    const mult = m[2] === 'h' ? 3600 : m[2] === 'm' ? 60 : 1;
    const at = Number(m[1]) * mult * 1000;
    if (out.length && at <= out[out.length - 1]!.at) throw new Error(`${file}:${i + 1}: times must increase (${m[1]}${m[2] ?? 's'} is not after the previous line)`);
    out.push({ at, rps: Number(m[3]) });
  });
  if (!out.length) throw new Error(`${file}: the trace is empty; give lines "<time> <rps>"`);
  return out;
}

export interface ScenarioOptions {
  baseRps: number;
  /** Load segments: multiplier of base and duration (s). */
  segments: { factor: number; seconds: number; name: string }[];
  targetCpu: number;
  cpuRequestMillis: number;
  pool: { cpu: number; memoryMiB: number; min: number; max: number };
  initialNodes: number;
  maxReplicas: number;
}

export const DEFAULT_SCENARIO: ScenarioOptions = {
  baseRps: 100,
  segments: [
    { name: 'steady', factor: 1, seconds: 900 },
    { name: 'step x5', factor: 5, seconds: 1800 },
    { name: 'drop x0.5', factor: 0.5, seconds: 2400 },
  ],
  targetCpu: 60,
  cpuRequestMillis: 200,
  pool: { cpu: 2000, memoryMiB: 8192, min: 1, max: 10 },
  initialNodes: 1,
  maxReplicas: 60,
};

export interface ScenarioResult {
  scale_up_reaction_s: number;
  pending_pods_max_s: number;
  nodes_added: number;
  nodes_removed: number;
  flaps: number;
  /** From the last HPA recommendation that still asked for the replicas in place (what the stabilization window holds on to) to the first scale-down. */
  scale_down_started_after_s: number;
  /** From the load drop to the first scale-down. */
  scale_down_after_load_drop_s: number;
  replica_error_steady: number;
  replicas_by_segment: { name: string; start: number; peak: number; end: number }[];
  nodes_by_segment: { name: string; start: number; peak: number; end: number }[];
  timeline: { t: number; rps: number; replicas: number; ready: number; pending: number; nodes: number }[];
}

export function appManifests(name: string, o: { cpuRequestMillis: number; targetCpu: number; maxReplicas: number }): KObj[] {
  return [
    {
      apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name, namespace: 'default', labels: { app: name } },
      spec: { replicas: 2, selector: { matchLabels: { app: name } }, template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: 'web', image: 'nginx:1.27', ports: [{ containerPort: 80 }], resources: { requests: { cpu: `${o.cpuRequestMillis}m`, memory: '64Mi' } } }] } } },
    },
    { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'default' }, spec: { selector: { app: name }, ports: [{ port: 80, targetPort: 80 }] } },
    {
      apiVersion: 'autoscaling/v2', kind: 'HorizontalPodAutoscaler', metadata: { name, namespace: 'default' },
      spec: { scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name }, minReplicas: 2, maxReplicas: o.maxReplicas, metrics: [{ type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: o.targetCpu } } }] },
    },
  ];
}

export function runAutoscaleScenario(opts: ScenarioOptions = DEFAULT_SCENARIO): ScenarioResult {
  const c = new SimKubeCluster({
    name: 'bench',
    nodes: Array.from({ length: opts.initialNodes }, (_, i) => ({ name: `bench-pool-${i}`, pool: 'pool', cpu: opts.pool.cpu, memoryMiB: opts.pool.memoryMiB })),
    autoscaler: { pools: [{ name: 'pool', cpu: opts.pool.cpu, memoryMiB: opts.pool.memoryMiB, min: opts.pool.min, max: opts.pool.max }] },
    nodeBootMs: 60_000,
  });
  const [deploy, svc, hpa] = appManifests('app', opts);
  c.store.create(RES.deploy, deploy!);
  c.store.create(RES.svc, svc!);
  c.store.create(RES.hpa, hpa!);
  const start = c.now();
  // pending time per pod, from the pod watch
  const pendingSince = new Map<string, number>();
  let pendingMax = 0;
  c.store.watch('pods', 'default', (e) => {
    const n = e.object.metadata.name;
    if (e.type === 'DELETED') {
      pendingSince.delete(n);
      return;
    }
    if (!e.object.spec.nodeName) {
      if (!pendingSince.has(n)) pendingSince.set(n, c.now());
    } else if (pendingSince.has(n)) {
      pendingMax = Math.max(pendingMax, c.now() - pendingSince.get(n)!);
      pendingSince.delete(n);
    }
  });
  const timeline: ScenarioResult['timeline'] = [];
  const segStats: ScenarioResult['replicas_by_segment'] = [];
  const nodeStats: ScenarioResult['nodes_by_segment'] = [];
  let flaps = 0;
  let scaleUpReaction = NaN;
  let scaleDownAfter = NaN;
  let scaleDownAfterDrop = NaN;
  let t = 0;
  for (const [i, seg] of opts.segments.entries()) {
    const rps = opts.baseRps * seg.factor;
    c.setLoad('default', 'app', rps);
    const segStart = c.now();
    const rescalesBefore = c.stats.rescales.length;
    const dep = () => c.store.peek(RES.deploy, 'default', 'app')!;
    const st = { name: seg.name, start: dep().spec.replicas, peak: dep().spec.replicas, end: 0 };
    const nodes = () => c.store.list(RES.node).length;
    const nst = { name: seg.name, start: nodes(), peak: nodes(), end: 0 };
    let readyAt = NaN;
    for (let s = 0; s < seg.seconds; s += 5) {
      c.advance(5000);
      t += 5;
      const d = dep();
      const pods = c.podsOf(d).filter((p) => !p.metadata.deletionTimestamp);
      const ready = pods.filter(isReady).length;
      st.peak = Math.max(st.peak, d.spec.replicas);
      nst.peak = Math.max(nst.peak, nodes());
      timeline.push({ t, rps, replicas: d.spec.replicas, ready, pending: pods.filter((p) => !p.spec.nodeName).length, nodes: nodes() });
      if (i === 1 && Number.isNaN(readyAt) && ready >= d.spec.replicas && d.spec.replicas > st.start && c.stats.rescales.slice(rescalesBefore).length > 0) {
        // the HPA may still be stepping up: count it ready only once it stops asking for more
        const last = c.stats.rescales[c.stats.rescales.length - 1]!;
        if (c.now() - last.at >= 30_000) readyAt = last.at;
      }
    }
    const seen = c.stats.rescales.slice(rescalesBefore);
    // flaps: a change of direction inside one load segment
    for (let k = 1; k < seen.length; k++) {
      const a = Math.sign(seen[k - 1]!.to - seen[k - 1]!.from);
      const b = Math.sign(seen[k]!.to - seen[k]!.from);
      if (a !== b) flaps++;
    }
    if (i === 1) {
      const lastUp = seen.filter((r) => r.to > r.from).pop();
      // reaction: from the step until the replicas asked last were all ready
      if (lastUp) {
        let readyTime = NaN;
        const entries = timeline.filter((x) => x.t * 1000 + start >= lastUp.at);
        const hit = entries.find((x) => x.ready >= lastUp.to);
        if (hit) readyTime = hit.t * 1000 + start;
        scaleUpReaction = (readyTime - segStart) / 1000;
      }
      void readyAt;
    }
    if (i === 2) {
      const firstDown = seen.find((r) => r.to < r.from);
      if (firstDown) {
        scaleDownAfterDrop = (firstDown.at - segStart) / 1000;
        const lastHigh = c.stats.recommendations.filter((r) => r.at < firstDown.at && r.proposed >= firstDown.from).pop();
        if (lastHigh) scaleDownAfter = (firstDown.at - lastHigh.at) / 1000;
      }
    }
    st.end = dep().spec.replicas;
    nst.end = nodes();
    segStats.push(st);
    nodeStats.push(nst);
  }
  // steady state: the formula on the current metrics gives the current replicas
  const d = c.store.peek(RES.deploy, 'default', 'app')!;
  const samples = c.samples(d).filter((s) => s.ready && s.usage.cpu !== undefined);
  const util = Math.trunc((samples.reduce((a, s) => a + s.usage.cpu!, 0) * 100) / samples.reduce((a, s) => a + s.requests.cpu!, 0));
  const ratio = util / opts.targetCpu;
  const ideal = Math.abs(1 - ratio) <= DEFAULT_TOLERANCE ? d.spec.replicas : Math.max(2, Math.ceil(ratio * samples.length));
  return {
    scale_up_reaction_s: scaleUpReaction,
    pending_pods_max_s: pendingMax / 1000,
    nodes_added: c.stats.nodesAdded,
    nodes_removed: c.stats.nodesRemoved,
    flaps,
    scale_down_started_after_s: scaleDownAfter,
    scale_down_after_load_drop_s: scaleDownAfterDrop,
    replica_error_steady: Math.abs(d.spec.replicas - ideal),
    replicas_by_segment: segStats,
    nodes_by_segment: nodeStats,
    timeline,
  };
}

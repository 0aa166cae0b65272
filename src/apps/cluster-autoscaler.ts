/**
 * Cluster Autoscaler decisions, as a pure function of the cluster's state.
 *
 * - Scale-up (checked every `scanIntervalMs`, 10 s): pods the scheduler could
 *   not place and that do not fit on any existing node trigger a scale-up;
 *   every node pool that can hold at least one of them (and is below its max)
 *   is an option; nodes needed per option are estimated by first-fit
 *   decreasing bin packing on the pool's node template; the expanders
 *   (`priority`, `least-waste`, chained in the given order, ties broken by
 *   pool name) pick one option.
 * - Scale-down: a node whose larger of CPU and memory request utilization is
 *   below `utilizationThreshold` (0.5), whose pods can all move to other
 *   nodes, in a pool above its min, is unneeded; after `unneededTimeMs`
 *   (10 min) unneeded it is drained and removed — empty nodes in bulk,
 *   non-empty ones one at a time — unless a scale-up happened within
 *   `delayAfterAddMs` (10 min), a scale-down failed within
 *   `delayAfterFailureMs` (3 min), or a node was removed within
 *   `delayAfterDeleteMs`.
 */

export interface Resources { cpu: number; memory: number }

export interface CaPod {
  name: string;
  namespace?: string;
  requests: Resources;
  /** Pods without a controller (bare pods) cannot be moved. */
  movable?: boolean;
  /** DaemonSet pods do not count and are not moved. */
  daemonSet?: boolean;
}

export interface CaNode {
  name: string;
  pool: string;
  allocatable: Resources;
  pods: CaPod[];
  ready: boolean;
  /** cluster-autoscaler.kubernetes.io/scale-down-disabled */
  scaleDownDisabled?: boolean;
  /** Being added (not registered yet) or being removed. */
  provisioning?: boolean;
  deleting?: boolean;
}

export interface CaPool {
  name: string;
  min: number;
  max: number;
  /** Target size (nodes registered plus nodes being added). */
  size: number;
  template: Resources;
  /** For the priority expander: higher wins. */
  priority?: number;
}

export type Expander = 'least-waste' | 'priority' | 'most-pods' | 'random';

export interface CaOptions {
  scanIntervalMs: number;
  utilizationThreshold: number;
  unneededTimeMs: number;
  delayAfterAddMs: number;
  delayAfterFailureMs: number;
  delayAfterDeleteMs: number;
  expanders: Expander[];
  maxEmptyBulkDelete: number;
  maxNodesTotal: number;
}

export const CA_DEFAULTS: CaOptions = {
  scanIntervalMs: 10_000,
  utilizationThreshold: 0.5,
  unneededTimeMs: 10 * 60_000,
  delayAfterAddMs: 10 * 60_000,
  delayAfterFailureMs: 3 * 60_000,
  delayAfterDeleteMs: 10_000,
  expanders: ['least-waste'],
  maxEmptyBulkDelete: 10,
  maxNodesTotal: 0,
};

export interface CaState {
  /** When each node was first seen unneeded. */
  unneededSince: Record<string, number>;
  lastScaleUp?: number;
  lastScaleDownFailure?: number;
  lastScaleDown?: number;
  lastScan?: number;
}

export const emptyCaState = (): CaState => ({ unneededSince: {} });

export interface ScaleUpOption {
  pool: string;
  nodes: number;
  pods: string[];
  waste: number;
}

export interface CaDecision {
  scaleUp?: { pool: string; nodes: number; pods: string[]; expanderTrail: string[] };
  scaleDown: { node: string; pool: string; drain: string[]; empty: boolean }[];
  /** Pods no pool can ever hold (NotTriggerScaleUp), with the reason. */
  noScaleUp: { pod: string; reason: string }[];
  unneeded: string[];
  skipped?: string;
}

const fits = (free: Resources, r: Resources) => free.cpu >= r.cpu && free.memory >= r.memory;
const requested = (n: CaNode): Resources => n.pods.reduce((a, p) => (p.daemonSet ? a : { cpu: a.cpu + p.requests.cpu, memory: a.memory + p.requests.memory }), { cpu: 0, memory: 0 });
const allRequested = (n: CaNode): Resources => n.pods.reduce((a, p) => ({ cpu: a.cpu + p.requests.cpu, memory: a.memory + p.requests.memory }), { cpu: 0, memory: 0 });

/** The larger of CPU and memory request utilization (DaemonSet pods excluded, as the Cluster Autoscaler does). */
export function nodeUtilization(n: CaNode): number {
  const r = requested(n);
  return Math.max(n.allocatable.cpu > 0 ? r.cpu / n.allocatable.cpu : 1, n.allocatable.memory > 0 ? r.memory / n.allocatable.memory : 1);
}

export function validatePools(pools: CaPool[]): string[] {
  const errs: string[] = [];
  for (const p of pools) {
    if (!(p.min >= 0) || !Number.isInteger(p.min)) errs.push(`node pool ${p.name}: min must be an integer >= 0`);
    if (!(p.max >= 1) || !Number.isInteger(p.max)) errs.push(`node pool ${p.name}: max must be an integer >= 1`);
    if (p.min > p.max) errs.push(`node pool ${p.name}: min (${p.min}) must not be greater than max (${p.max})`);
  }
  return errs;
}

/** First-fit decreasing: how many new template nodes hold `pods`, and which pods fit at all. */
export function binPack(template: Resources, pods: CaPod[], limit: number): { nodes: number; placed: CaPod[]; waste: number } {
  const sorted = [...pods].filter((p) => fits(template, p.requests)).sort((a, b) => b.requests.cpu - a.requests.cpu || b.requests.memory - a.requests.memory || (a.name < b.name ? -1 : 1));
  const bins: Resources[] = [];
  const placed: CaPod[] = [];
  for (const p of sorted) {
    let bin = bins.find((b) => fits(b, p.requests));
    if (!bin) {
      if (bins.length >= limit) continue;
      bin = { ...template };
      bins.push(bin);
    }
    bin.cpu -= p.requests.cpu;
    bin.memory -= p.requests.memory;
    placed.push(p);
  }
  const n = bins.length;
  const waste = n ? bins.reduce((a, b) => a + b.cpu, 0) / (template.cpu * n) + bins.reduce((a, b) => a + b.memory, 0) / (template.memory * n) : Infinity;
  return { nodes: n, placed, waste };
}

/** Applies the expander chain; each expander narrows the options, ties end on the pool name. */
export function expand(options: ScaleUpOption[], pools: CaPool[], expanders: Expander[]): { pick: ScaleUpOption | undefined; trail: string[] } {
  let left = [...options];
  const trail: string[] = [];
  for (const e of expanders) {
    if (left.length <= 1) break;
    if (e === 'priority') {
      const pr = (o: ScaleUpOption) => pools.find((p) => p.name === o.pool)?.priority ?? 0;
      const best = Math.max(...left.map(pr));
      left = left.filter((o) => pr(o) === best);
    } else if (e === 'least-waste') {
      const best = Math.min(...left.map((o) => o.waste));
      left = left.filter((o) => Math.abs(o.waste - best) < 1e-9);
    } else if (e === 'most-pods') {
      const best = Math.max(...left.map((o) => o.pods.length));
      left = left.filter((o) => o.pods.length === best);
    }
    trail.push(`${e}: ${left.map((o) => o.pool).join(', ')}`);
  }
  left.sort((a, b) => (a.pool < b.pool ? -1 : a.pool > b.pool ? 1 : 0));
  return { pick: left[0], trail };
}

/** Pods that would fit on existing nodes' free capacity (the scheduler will place them: no scale-up for them). */
function filterSchedulable(nodes: CaNode[], pending: CaPod[]): CaPod[] {
  const free = nodes.filter((n) => n.ready && !n.deleting).map((n) => {
    const r = allRequested(n);
    return { cpu: n.allocatable.cpu - r.cpu, memory: n.allocatable.memory - r.memory };
  });
  const out: CaPod[] = [];
  for (const p of pending) {
    const f = free.find((x) => fits(x, p.requests));
    if (f) {
      f.cpu -= p.requests.cpu;
      f.memory -= p.requests.memory;
    } else out.push(p);
  }
  return out;
}

/** Can every movable pod of `node` go to the other nodes (not being removed)? Returns the pods to drain, or the reason it cannot. */
function canDrain(node: CaNode, others: { node: CaNode; free: Resources }[], receivers: Set<string>): { ok: true; drain: string[] } | { ok: false; reason: string } {
  const drain: string[] = [];
  const got: string[] = [];
  const moving = node.pods.filter((p) => !p.daemonSet);
  for (const p of moving) if (p.movable === false) return { ok: false, reason: `pod ${p.name} has no controller` };
  const sorted = [...moving].sort((a, b) => b.requests.cpu - a.requests.cpu);
  const trial = others.map((o) => ({ ...o, free: { ...o.free } }));
  for (const p of sorted) {
    const t = trial.find((o) => fits(o.free, p.requests));
    if (!t) return { ok: false, reason: `pod ${p.name} fits on no other node` };
    t.free.cpu -= p.requests.cpu;
    t.free.memory -= p.requests.memory;
    got.push(t.node.name);
    drain.push(p.name);
  }
  for (const g of got) receivers.add(g);
  // commit the trial so the next candidate sees the moved pods
  trial.forEach((t, i) => (others[i]!.free = t.free));
  return { ok: true, drain };
}

/**
 * One Cluster Autoscaler loop at `now`. Mutates `state`. Returns nothing to
 * do when called before the scan interval has passed since the last scan.
 */
export function clusterAutoscale(input: { nodes: CaNode[]; pools: CaPool[]; pending: CaPod[] }, state: CaState, now: number, options: Partial<CaOptions> = {}): CaDecision {
  const o = { ...CA_DEFAULTS, ...options };
  const decision: CaDecision = { scaleDown: [], noScaleUp: [], unneeded: [] };
  if (state.lastScan !== undefined && now - state.lastScan < o.scanIntervalMs) {
    decision.skipped = 'scan interval';
    return decision;
  }
  state.lastScan = now;
  const { nodes, pools } = input;
  // ---- scale-up
  const unschedulable = filterSchedulable(nodes, input.pending);
  if (unschedulable.length) {
    const totalNodes = pools.reduce((a, p) => a + p.size, 0);
    const options: ScaleUpOption[] = [];
    for (const p of pools) {
      let room = p.max - p.size;
      if (o.maxNodesTotal > 0) room = Math.min(room, o.maxNodesTotal - totalNodes);
      if (room <= 0) continue;
      const packed = binPack(p.template, unschedulable, room);
      if (packed.nodes > 0) options.push({ pool: p.name, nodes: packed.nodes, pods: packed.placed.map((x) => x.name), waste: packed.waste });
    }
    const helped = new Set(options.flatMap((x) => x.pods));
    for (const pod of unschedulable) {
      if (helped.has(pod.name)) continue;
      const anyFits = pools.some((p) => fits(p.template, pod.requests));
      decision.noScaleUp.push({ pod: pod.name, reason: anyFits ? 'max node group size reached' : `pod didn't fit on a new node of any pool (needs cpu ${pod.requests.cpu}m, memory ${pod.requests.memory}Mi)` });
    }
    const { pick, trail } = expand(options, pools, o.expanders);
    if (pick) {
      decision.scaleUp = { pool: pick.pool, nodes: pick.nodes, pods: pick.pods, expanderTrail: trail };
      state.lastScaleUp = now;
    }
  }
  // ---- scale-down
  const working = nodes.filter((n) => !n.deleting && !n.provisioning);
  const candidates: CaNode[] = [];
  for (const n of working) {
    const pool = pools.find((p) => p.name === n.pool);
    const under = n.ready && !n.scaleDownDisabled && pool && nodeUtilization(n) < o.utilizationThreshold;
    if (under) candidates.push(n);
    else delete state.unneededSince[n.name];
  }
  for (const name of Object.keys(state.unneededSince)) if (!working.some((n) => n.name === name)) delete state.unneededSince[name];
  // drain simulation: each candidate's pods must fit elsewhere, on nodes not themselves removed
  const removing = new Set<string>();
  const freeOf = (n: CaNode) => {
    const r = allRequested(n);
    return { cpu: n.allocatable.cpu - r.cpu, memory: n.allocatable.memory - r.memory };
  };
  const sizes = new Map(pools.map((p) => [p.name, p.size]));
  const movable: { node: CaNode; drain: string[] }[] = [];
  // least utilized first
  const ordered = [...candidates].sort((a, b) => nodeUtilization(a) - nodeUtilization(b) || (a.name < b.name ? -1 : 1));
  const targets = working.filter((n) => n.ready).map((n) => ({ node: n, free: freeOf(n) }));
  // a node that takes a drained node's pods is not removed in the same pass
  const receivers = new Set<string>();
  for (const n of ordered) {
    if (receivers.has(n.name)) {
      delete state.unneededSince[n.name];
      continue;
    }
    const pool = pools.find((p) => p.name === n.pool)!;
    if ((sizes.get(pool.name) ?? 0) - 1 < pool.min) {
      delete state.unneededSince[n.name];
      continue;
    }
    const others = targets.filter((t) => t.node.name !== n.name && !removing.has(t.node.name));
    const d = canDrain(n, others, receivers);
    if (!d.ok) {
      delete state.unneededSince[n.name];
      continue;
    }
    removing.add(n.name);
    sizes.set(pool.name, (sizes.get(pool.name) ?? 0) - 1);
    movable.push({ node: n, drain: d.drain });
    state.unneededSince[n.name] ??= now;
  }
  decision.unneeded = movable.map((m) => m.node.name);
  const cooling =
    decision.scaleUp ? 'scale-up in this loop'
      : state.lastScaleUp !== undefined && now - state.lastScaleUp < o.delayAfterAddMs ? 'scale-down-delay-after-add'
        : state.lastScaleDownFailure !== undefined && now - state.lastScaleDownFailure < o.delayAfterFailureMs ? 'scale-down-delay-after-failure'
          : state.lastScaleDown !== undefined && now - state.lastScaleDown < o.delayAfterDeleteMs ? 'scale-down-delay-after-delete'
            : undefined;
  if (cooling) {
    if (movable.length) decision.skipped = cooling;
    return decision;
  }
  const ripe = movable.filter((m) => now - state.unneededSince[m.node.name]! >= o.unneededTimeMs);
  const empty = ripe.filter((m) => m.drain.length === 0).slice(0, o.maxEmptyBulkDelete);
  if (empty.length) decision.scaleDown = empty.map((m) => ({ node: m.node.name, pool: m.node.pool, drain: [], empty: true }));
  else {
    const first = ripe[0];
    if (first) decision.scaleDown = [{ node: first.node.name, pool: first.node.pool, drain: first.drain, empty: false }];
  }
  if (decision.scaleDown.length) {
    state.lastScaleDown = now;
    for (const d of decision.scaleDown) delete state.unneededSince[d.node];
  }
  return decision;
}

/** Records a failed node removal (starts the delay after failure). */
export function recordScaleDownFailure(state: CaState, now: number): void {
  state.lastScaleDownFailure = now;
}

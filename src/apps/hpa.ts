/**
 * The HorizontalPodAutoscaler (autoscaling/v2) algorithm, as pure functions.
 *
 * Semantics follow the Kubernetes documentation and controller:
 * - per metric: `desired = ceil(current × currentMetric / targetMetric)`,
 *   no change while |ratio − 1| ≤ tolerance (0.1);
 * - pods being deleted and failed pods are ignored; pods without metrics count
 *   as 100 % of target when scaling down and 0 % when scaling up; pods not
 *   ready (and pending pods) count as 0 % when scaling up; after that the ratio
 *   is recomputed and a reversed direction or a ratio within tolerance means
 *   no change;
 * - several metrics: the largest proposal wins; an invalid metric blocks a
 *   scale-down but not a scale-up proposed by the others;
 * - `behavior`: stabilization windows (scale-down takes the highest
 *   recommendation of the window, scale-up the lowest), rate policies per
 *   period with `selectPolicy` Max/Min/Disabled; defaults: scale-down 300 s,
 *   100 %/15 s; scale-up 0 s, max(100 %/15 s, 4 pods/15 s);
 * - min and max replicas; `currentReplicas == 0` with minReplicas > 0 means
 *   autoscaling is off for the target.
 *
 * Nothing here reads a clock: the caller passes `now` (ms) and keeps the
 * returned state (recommendations and scale events) for the next sync.
 */

export const DEFAULT_TOLERANCE = 0.1;
export const SYNC_PERIOD_MS = 15_000;

export type PodPhase = 'Pending' | 'Running' | 'Succeeded' | 'Failed' | 'Unknown';

export interface PodSample {
  name: string;
  phase: PodPhase;
  /** Ready condition true. */
  ready: boolean;
  /** The pod has a deletion timestamp. */
  deleting?: boolean;
  /** Requests per resource (cpu in millicores, memory in bytes or MiB: any unit, as long as usage uses the same). */
  requests: Record<string, number>;
  /** Measured usage per metric name (resource name or custom metric); absent = missing metric. */
  usage: Record<string, number | undefined>;
}

export type MetricTarget =
  | { type: 'Utilization'; averageUtilization: number }
  | { type: 'AverageValue'; averageValue: number }
  | { type: 'Value'; value: number };

export type MetricSpec =
  | { type: 'Resource'; resource: { name: string; target: MetricTarget } }
  | { type: 'ContainerResource'; containerResource: { name: string; container: string; target: MetricTarget } }
  | { type: 'Pods'; pods: { metric: { name: string }; target: MetricTarget } }
  | { type: 'Object'; object: { metric: { name: string }; describedObject?: { kind: string; name: string; apiVersion?: string }; target: MetricTarget } }
  | { type: 'External'; external: { metric: { name: string }; target: MetricTarget } };

export interface ScalingPolicy {
  type: 'Pods' | 'Percent';
  value: number;
  periodSeconds: number;
}

export interface ScalingRules {
  stabilizationWindowSeconds?: number;
  selectPolicy?: 'Max' | 'Min' | 'Disabled';
  policies?: ScalingPolicy[];
}

export interface Behavior {
  scaleUp?: ScalingRules;
  scaleDown?: ScalingRules;
}

export interface HpaSpec {
  minReplicas?: number;
  maxReplicas: number;
  metrics: MetricSpec[];
  behavior?: Behavior;
}

export interface ResolvedRules {
  stabilizationWindowSeconds: number;
  selectPolicy: 'Max' | 'Min' | 'Disabled';
  policies: ScalingPolicy[];
}

export const DEFAULT_SCALE_UP: ResolvedRules = {
  stabilizationWindowSeconds: 0,
  selectPolicy: 'Max',
  policies: [{ type: 'Pods', value: 4, periodSeconds: 15 }, { type: 'Percent', value: 100, periodSeconds: 15 }],
};
export const DEFAULT_SCALE_DOWN: ResolvedRules = {
  stabilizationWindowSeconds: 300,
  selectPolicy: 'Max',
  policies: [{ type: 'Percent', value: 100, periodSeconds: 15 }],
};

export function resolveBehavior(b: Behavior | undefined): { scaleUp: ResolvedRules; scaleDown: ResolvedRules } {
  const r = (x: ScalingRules | undefined, d: ResolvedRules): ResolvedRules => ({
    stabilizationWindowSeconds: x?.stabilizationWindowSeconds ?? d.stabilizationWindowSeconds,
    selectPolicy: x?.selectPolicy ?? d.selectPolicy,
    policies: x?.policies && x.policies.length ? x.policies : d.policies,
  });
  return { scaleUp: r(b?.scaleUp, DEFAULT_SCALE_UP), scaleDown: r(b?.scaleDown, DEFAULT_SCALE_DOWN) };
}

/** Problems in an HPA spec, each naming the field to fix (empty when valid). */
export function validateHpaSpec(spec: HpaSpec): string[] {
  const errs: string[] = [];
  const min = spec.minReplicas ?? 1;
  if (!Number.isInteger(min) || min < 0) errs.push(`minReplicas must be an integer >= 0 (got ${min})`);
  if (!Number.isInteger(spec.maxReplicas) || spec.maxReplicas < 1) errs.push(`maxReplicas must be an integer >= 1 (got ${spec.maxReplicas})`);
  if (min > spec.maxReplicas) errs.push(`minReplicas (${min}) must not be greater than maxReplicas (${spec.maxReplicas})`);
  if (!spec.metrics.length) errs.push('metrics: give at least one metric');
  spec.metrics.forEach((m, i) => {
    const t = metricTarget(m);
    const v = t.type === 'Utilization' ? t.averageUtilization : t.type === 'AverageValue' ? t.averageValue : t.value;
    if (!(typeof v === 'number' && v > 0 && Number.isFinite(v))) errs.push(`metrics[${i}].target: the target must be > 0 (got ${v})`);
    if (t.type === 'Utilization' && m.type !== 'Resource' && m.type !== 'ContainerResource') errs.push(`metrics[${i}].target: Utilization targets exist only for Resource metrics`);
  });
  for (const dir of ['scaleUp', 'scaleDown'] as const) {
    const r = spec.behavior?.[dir];
    if (!r) continue;
    if (r.stabilizationWindowSeconds !== undefined && (r.stabilizationWindowSeconds < 0 || r.stabilizationWindowSeconds > 3600)) errs.push(`behavior.${dir}.stabilizationWindowSeconds must be within 0..3600`);
    (r.policies ?? []).forEach((p, i) => {
      if (!(p.value > 0)) errs.push(`behavior.${dir}.policies[${i}].value must be > 0`);
      if (!(p.periodSeconds > 0 && p.periodSeconds <= 1800)) errs.push(`behavior.${dir}.policies[${i}].periodSeconds must be within 1..1800`);
    });
  }
  return errs;
}

export function metricTarget(m: MetricSpec): MetricTarget {
  switch (m.type) {
    case 'Resource': return m.resource.target;
    case 'ContainerResource': return m.containerResource.target;
    case 'Pods': return m.pods.target;
    case 'Object': return m.object.target;
    case 'External': return m.external.target;
  }
}

export function metricName(m: MetricSpec): string {
  switch (m.type) {
    case 'Resource': return m.resource.name;
    case 'ContainerResource': return m.containerResource.name;
    case 'Pods': return m.pods.metric.name;
    case 'Object': return m.object.metric.name;
    case 'External': return m.external.metric.name;
  }
}

export interface MetricProposal {
  metric: string;
  /** Replicas this metric asks for; undefined when the metric is invalid. */
  replicas?: number;
  /** Current value (utilization in %, or average/total value). */
  current?: number;
  error?: string;
}

const withinTolerance = (ratio: number, tol: number) => Math.abs(1 - ratio) <= tol;

/**
 * Replicas for a per-pod metric (Resource or Pods): the Kubernetes
 * replica calculator with its missing / unready / ignored pod rules.
 * `utilization`: the target is a percentage of requests of `resource`.
 */
export function podMetricReplicas(
  currentReplicas: number,
  pods: PodSample[],
  metric: string,
  target: { utilization?: number; averageValue?: number },
  opts: { resource?: string; tolerance?: number; unreadyCountsForMetric?: boolean } = {},
): { replicas: number; current: number } {
  const tol = opts.tolerance ?? DEFAULT_TOLERANCE;
  const utilization = target.utilization !== undefined;
  const resource = opts.resource ?? metric;
  const ready: PodSample[] = [];
  const unready: PodSample[] = [];
  const missing: PodSample[] = [];
  for (const p of pods) {
    if (p.deleting || p.phase === 'Failed') continue; // ignored
    if (p.phase === 'Pending') {
      unready.push(p);
      continue;
    }
    if (p.usage[metric] === undefined) {
      missing.push(p);
      continue;
    }
    // Only the CPU resource metric treats not-ready pods as unready.
    if ((opts.unreadyCountsForMetric ?? resource === 'cpu') && !p.ready) {
      unready.push(p);
      continue;
    }
    ready.push(p);
  }
  if (!ready.length) throw new Error(`no metrics for ${metric} from the targeted pods (they may not be ready yet)`);
  const targetValue = utilization ? target.utilization! : target.averageValue!;
  // usage: per pod value for the ratio; utilization sums usage over sums of requests.
  const ratioOf = (samples: { usage: number; request: number }[]) => {
    if (utilization) {
      const u = samples.reduce((a, s) => a + s.usage, 0);
      const r = samples.reduce((a, s) => a + s.request, 0);
      if (!(r > 0)) throw new Error(`missing ${resource} request for the targeted pods: set resources.requests.${resource}`);
      // Kubernetes computes utilization as a whole percentage (int32 division)
      const current = Math.trunc((u * 100) / r);
      return { ratio: current / targetValue, current };
    }
    const current = samples.reduce((a, s) => a + s.usage, 0) / samples.length;
    return { ratio: current / targetValue, current };
  };
  const sample = (p: PodSample, usage: number) => ({ usage, request: p.requests[resource] ?? 0 });
  const base = ready.map((p) => sample(p, p.usage[metric]!));
  const { ratio, current } = ratioOf(base);
  const scaleUpWithUnready = unready.length > 0 && ratio > 1;
  if (!scaleUpWithUnready && missing.length === 0) {
    if (withinTolerance(ratio, tol)) return { replicas: currentReplicas, current };
    return { replicas: Math.ceil(ratio * base.length), current };
  }
  const all = [...base];
  if (missing.length) {
    for (const p of missing) {
      if (ratio < 1) all.push(sample(p, utilization ? ((p.requests[resource] ?? 0) * targetValue) / 100 : targetValue));
      else all.push(sample(p, 0));
    }
  }
  if (scaleUpWithUnready) for (const p of unready) all.push(sample(p, 0));
  const next = ratioOf(all).ratio;
  if (withinTolerance(next, tol) || (ratio < 1 && next > 1) || (ratio > 1 && next < 1)) return { replicas: currentReplicas, current };
  const replicas = Math.ceil(next * all.length);
  if ((next < 1 && replicas > currentReplicas) || (next > 1 && replicas < currentReplicas)) return { replicas: currentReplicas, current };
  return { replicas, current };
}

/** Object and External metrics: one value for the whole target. */
export function objectMetricReplicas(currentReplicas: number, readyPodCount: number, usage: number, target: MetricTarget, tolerance = DEFAULT_TOLERANCE): { replicas: number; current: number } {
  if (target.type === 'AverageValue') {
    const ratio = usage / (target.averageValue * Math.max(1, currentReplicas));
    if (withinTolerance(ratio, tolerance)) return { replicas: currentReplicas, current: usage };
    return { replicas: Math.ceil(usage / target.averageValue), current: usage };
  }
  if (target.type !== 'Value') throw new Error('Object and External metrics take a Value or AverageValue target');
  const ratio = usage / target.value;
  if (currentReplicas === 0) return { replicas: Math.ceil(ratio), current: usage };
  if (withinTolerance(ratio, tolerance)) return { replicas: currentReplicas, current: usage };
  return { replicas: Math.ceil(ratio * readyPodCount), current: usage };
}

export interface MetricInputs {
  pods: PodSample[];
  /** Values of Object / External metrics by name. */
  values?: Record<string, number | undefined>;
}

/** Proposals of every metric, and the largest one (the desired replicas before behavior). */
export function proposeReplicas(spec: HpaSpec, currentReplicas: number, inputs: MetricInputs, tolerance = DEFAULT_TOLERANCE): { desired: number | undefined; proposals: MetricProposal[]; invalid: number } {
  const proposals: MetricProposal[] = [];
  for (const m of spec.metrics) {
    const name = metricName(m);
    const t = metricTarget(m);
    try {
      if (m.type === 'Resource' || m.type === 'ContainerResource' || m.type === 'Pods') {
        const target = t.type === 'Utilization' ? { utilization: t.averageUtilization } : t.type === 'AverageValue' ? { averageValue: t.averageValue } : undefined;
        if (!target) throw new Error(`${m.type} metric ${name} needs a Utilization or AverageValue target`);
        const r = podMetricReplicas(currentReplicas, inputs.pods, name, target, { resource: name, tolerance, unreadyCountsForMetric: m.type !== 'Pods' && name === 'cpu' });
        proposals.push({ metric: name, replicas: r.replicas, current: r.current });
      } else {
        const v = inputs.values?.[name];
        if (v === undefined) throw new Error(`no value for ${m.type} metric ${name}`);
        const readyPods = inputs.pods.filter((p) => p.ready && !p.deleting && p.phase === 'Running').length;
        const r = objectMetricReplicas(currentReplicas, readyPods, v, t, tolerance);
        proposals.push({ metric: name, replicas: r.replicas, current: r.current });
      }
    } catch (e) {
      proposals.push({ metric: name, error: (e as Error).message });
    }
  }
  const valid = proposals.filter((p) => p.replicas !== undefined).map((p) => p.replicas!);
  const invalid = proposals.length - valid.length;
  if (!valid.length) return { desired: undefined, proposals, invalid };
  let desired = Math.max(...valid);
  // An invalid metric may hide a higher need: scale up on the others, never down.
  if (invalid > 0 && desired < currentReplicas) desired = currentReplicas;
  return { desired, proposals, invalid };
}

// ---------------------------------------------------------------- behavior

export interface Recommendation { at: number; replicas: number }
export interface ScaleEvent { at: number; change: number }

export interface HpaState {
  recommendations: Recommendation[];
  scaleUpEvents: ScaleEvent[];
  scaleDownEvents: ScaleEvent[];
}

export const emptyHpaState = (): HpaState => ({ recommendations: [], scaleUpEvents: [], scaleDownEvents: [] });

export type LimitReason = 'DesiredWithinRange' | 'ScaleUpStabilized' | 'ScaleDownStabilized' | 'ScaleUpLimit' | 'ScaleDownLimit' | 'TooManyReplicas' | 'TooFewReplicas' | 'ScalingDisabled';

function changeInPeriod(periodSeconds: number, events: ScaleEvent[], now: number): number {
  const from = now - periodSeconds * 1000;
  let n = 0;
  for (const e of events) if (e.at > from) n += e.change;
  return n;
}

/** Highest replica count the scale-up policies allow now. */
export function scaleUpLimit(current: number, rules: ResolvedRules, state: HpaState, now: number): number {
  if (rules.selectPolicy === 'Disabled') return current;
  let result = rules.selectPolicy === 'Min' ? Number.MAX_SAFE_INTEGER : Number.MIN_SAFE_INTEGER;
  for (const p of rules.policies) {
    const start = current - changeInPeriod(p.periodSeconds, state.scaleUpEvents, now) + changeInPeriod(p.periodSeconds, state.scaleDownEvents, now);
    const proposed = p.type === 'Pods' ? start + p.value : Math.ceil(start * (1 + p.value / 100));
    result = rules.selectPolicy === 'Min' ? Math.min(result, proposed) : Math.max(result, proposed);
  }
  return result;
}

/** Lowest replica count the scale-down policies allow now. */
export function scaleDownLimit(current: number, rules: ResolvedRules, state: HpaState, now: number): number {
  if (rules.selectPolicy === 'Disabled') return current;
  let result = rules.selectPolicy === 'Min' ? Number.MIN_SAFE_INTEGER : Number.MAX_SAFE_INTEGER;
  for (const p of rules.policies) {
    const start = current - changeInPeriod(p.periodSeconds, state.scaleUpEvents, now) + changeInPeriod(p.periodSeconds, state.scaleDownEvents, now);
    const proposed = p.type === 'Pods' ? start - p.value : Math.trunc(start * (1 - p.value / 100));
    result = rules.selectPolicy === 'Min' ? Math.max(result, proposed) : Math.min(result, proposed);
  }
  return result;
}

/**
 * Applies stabilization and rate policies to a desired replica count.
 * Mutates `state.recommendations` (records `desired` at `now`).
 */
export function normalizeWithBehavior(
  desired: number,
  current: number,
  min: number,
  max: number,
  behavior: { scaleUp: ResolvedRules; scaleDown: ResolvedRules },
  state: HpaState,
  now: number,
): { replicas: number; reason: LimitReason; stabilized: number } {
  // stabilization
  let up = desired;
  let down = desired;
  const upCutoff = now - behavior.scaleUp.stabilizationWindowSeconds * 1000;
  const downCutoff = now - behavior.scaleDown.stabilizationWindowSeconds * 1000;
  for (const r of state.recommendations) {
    if (r.at > upCutoff) up = Math.min(up, r.replicas);
    if (r.at > downCutoff) down = Math.max(down, r.replicas);
  }
  let stabilized = current;
  if (stabilized < up) stabilized = up;
  if (stabilized > down) stabilized = down;
  let reason: LimitReason = stabilized === desired ? 'DesiredWithinRange' : stabilized < desired ? 'ScaleUpStabilized' : 'ScaleDownStabilized';
  const keepFrom = now - Math.max(behavior.scaleUp.stabilizationWindowSeconds, behavior.scaleDown.stabilizationWindowSeconds) * 1000;
  state.recommendations = state.recommendations.filter((r) => r.at > keepFrom);
  state.recommendations.push({ at: now, replicas: desired });
  // rate
  let replicas = stabilized;
  if (stabilized > current) {
    const limit = Math.max(current, scaleUpLimit(current, behavior.scaleUp, state, now));
    const allowed = Math.min(max, limit);
    if (stabilized > allowed) {
      replicas = allowed;
      reason = max < limit ? 'TooManyReplicas' : 'ScaleUpLimit';
    }
  } else if (stabilized < current) {
    const limit = Math.min(current, scaleDownLimit(current, behavior.scaleDown, state, now));
    const allowed = Math.max(min, limit);
    if (stabilized < allowed) {
      replicas = allowed;
      reason = min > limit ? 'TooFewReplicas' : 'ScaleDownLimit';
    }
  }
  return { replicas, reason, stabilized };
}

/** Records a scale change so later rate limits count it (and drops events older than every period). */
export function recordScaleEvent(state: HpaState, behavior: { scaleUp: ResolvedRules; scaleDown: ResolvedRules }, from: number, to: number, now: number): void {
  const longest = (r: ResolvedRules) => Math.max(0, ...r.policies.map((p) => p.periodSeconds)) * 1000;
  state.scaleUpEvents = state.scaleUpEvents.filter((e) => e.at > now - longest(behavior.scaleUp));
  state.scaleDownEvents = state.scaleDownEvents.filter((e) => e.at > now - longest(behavior.scaleDown));
  if (to > from) state.scaleUpEvents.push({ at: now, change: to - from });
  else if (to < from) state.scaleDownEvents.push({ at: now, change: from - to });
}

export interface HpaDecision {
  desiredReplicas: number;
  /** The metric-based proposal before behavior (undefined when no metric was usable). */
  proposed?: number;
  proposals: MetricProposal[];
  reason: LimitReason | 'InvalidMetrics' | 'BelowMin' | 'AboveMax';
  /** Conditions as the HPA status shows them. */
  conditions: { type: 'AbleToScale' | 'ScalingActive' | 'ScalingLimited'; status: 'True' | 'False'; reason: string; message: string }[];
  rescale: boolean;
}

/**
 * One HPA sync: metrics → proposal → behavior → min/max. Updates `state`
 * (recommendations and, when the scale changes, scale events).
 */
export function hpaSync(spec: HpaSpec, currentReplicas: number, inputs: MetricInputs, state: HpaState, now: number, tolerance = DEFAULT_TOLERANCE): HpaDecision {
  const min = spec.minReplicas ?? 1;
  const max = spec.maxReplicas;
  const behavior = resolveBehavior(spec.behavior);
  const cond = (type: HpaDecision['conditions'][number]['type'], ok: boolean, reason: string, message: string) => ({ type, status: ok ? 'True' as const : 'False' as const, reason, message });
  if (currentReplicas === 0 && min !== 0) {
    return { desiredReplicas: 0, proposals: [], reason: 'ScalingDisabled', rescale: false, conditions: [cond('ScalingActive', false, 'ScalingDisabled', 'scaling is disabled since the replica count of the target is zero')] };
  }
  let desired: number;
  let proposed: number | undefined;
  let proposals: MetricProposal[] = [];
  let reason: HpaDecision['reason'];
  const conditions: HpaDecision['conditions'] = [];
  if (currentReplicas > max) {
    desired = max;
    reason = 'AboveMax';
    conditions.push(cond('ScalingLimited', true, 'TooManyReplicas', `the desired replica count is more than the maximum replica count (${max})`));
  } else if (currentReplicas < min) {
    desired = min;
    reason = 'BelowMin';
    conditions.push(cond('ScalingLimited', true, 'TooFewReplicas', `the desired replica count is less than the minimum replica count (${min})`));
  } else {
    const p = proposeReplicas(spec, currentReplicas, inputs, tolerance);
    proposals = p.proposals;
    if (p.desired === undefined) {
      const msg = proposals.map((x) => x.error).filter(Boolean).join('; ');
      return { desiredReplicas: currentReplicas, proposals, reason: 'InvalidMetrics', rescale: false, conditions: [cond('AbleToScale', true, 'SucceededGetScale', 'the HPA controller was able to get the target\'s current scale'), cond('ScalingActive', false, 'FailedGetResourceMetric', msg)] };
    }
    proposed = p.desired;
    const n = normalizeWithBehavior(p.desired, currentReplicas, min, max, behavior, state, now);
    desired = n.replicas;
    reason = n.reason;
    // min/max are hard limits whatever the policies said
    if (desired > max) {
      desired = max;
      reason = 'TooManyReplicas';
    }
    if (desired < min) {
      desired = min;
      reason = 'TooFewReplicas';
    }
    conditions.push(cond('AbleToScale', true, n.reason === 'ScaleDownStabilized' || n.reason === 'ScaleUpStabilized' ? n.reason : 'ReadyForNewScale', n.reason === 'ScaleDownStabilized' ? 'recent recommendations were higher than current one, applying the highest recent recommendation' : n.reason === 'ScaleUpStabilized' ? 'recent recommendations were lower than current one, applying the lowest recent recommendation' : 'recommended size matches current size'));
    conditions.push(cond('ScalingActive', true, 'ValidMetricFound', `the HPA was able to successfully calculate a replica count from ${proposals.filter((x) => x.replicas !== undefined).map((x) => x.metric).join(', ')}`));
    const limited = reason === 'TooManyReplicas' || reason === 'TooFewReplicas' || reason === 'ScaleUpLimit' || reason === 'ScaleDownLimit';
    conditions.push(cond('ScalingLimited', limited, limited ? reason : 'DesiredWithinRange', limited ? `the desired replica count is limited (${reason})` : 'the desired count is within the acceptable range'));
  }
  const rescale = desired !== currentReplicas;
  if (rescale) recordScaleEvent(state, behavior, currentReplicas, desired, now);
  return { desiredReplicas: desired, ...(proposed !== undefined ? { proposed } : {}), proposals, reason, conditions, rescale };
}

import { Cron } from 'croner';

/**
 * VM scaling groups behind a load balancer, as pure decisions.
 *
 * A group of identical VMs keeps `desired` within [min, max]. Policies change
 * `desired` with an adjustment type — `change_in_capacity` (+/- n),
 * `exact_capacity` (= n), `percent_change_in_capacity` (+/- n % of the
 * current size; a change under one VM rounds away from zero, a larger one
 * toward zero, then `minAdjustmentStep` raises it) — when a metric alarm
 * fires (the average of the last `evaluationPeriods` samples of VM CPU
 * compared with a threshold) or on a cron schedule. After a scaling action
 * the group (or the policy, with its own cooldown) ignores alarms for
 * `cooldownSeconds`; scheduled actions are not held back by cooldowns.
 * Members whose load-balancer health check has failed for
 * `unhealthyGraceSeconds` are replaced (removed and a new VM added).
 */

export type AdjustmentType = 'change_in_capacity' | 'exact_capacity' | 'percent_change_in_capacity';

export interface ScalingPolicySpec {
  name: string;
  adjustmentType: AdjustmentType;
  adjustment: number;
  minAdjustmentStep?: number;
  cooldownSeconds?: number;
  trigger:
    | { metric: 'cpu'; comparison: 'gt' | 'lt'; threshold: number; evaluationPeriods?: number }
    | { schedule: string; timezone?: string };
}

export interface ScalingGroupSpec {
  min: number;
  max: number;
  desired?: number;
  cooldownSeconds: number;
  unhealthyGraceSeconds?: number;
  policies: ScalingPolicySpec[];
}

export function validateScalingGroup(spec: ScalingGroupSpec): string[] {
  const errs: string[] = [];
  if (!Number.isInteger(spec.min) || spec.min < 0) errs.push(`min must be an integer >= 0 (got ${spec.min})`);
  if (!Number.isInteger(spec.max) || spec.max < 1) errs.push(`max must be an integer >= 1 (got ${spec.max})`);
  if (spec.min > spec.max) errs.push(`min (${spec.min}) must not be greater than max (${spec.max})`);
  if (spec.desired !== undefined && (spec.desired < spec.min || spec.desired > spec.max)) errs.push(`desired (${spec.desired}) must be within min..max (${spec.min}..${spec.max})`);
  if (!(spec.cooldownSeconds >= 0)) errs.push('cooldownSeconds must be >= 0');
  spec.policies.forEach((p, i) => {
    if (p.adjustmentType === 'exact_capacity' && p.adjustment < 0) errs.push(`policies[${i}].adjustment: exact_capacity needs a count >= 0`);
    if (!Number.isFinite(p.adjustment)) errs.push(`policies[${i}].adjustment must be a number`);
    if ('schedule' in p.trigger) {
      try {
        new Cron(p.trigger.schedule, { paused: true, ...(p.trigger.timezone ? { timezone: p.trigger.timezone } : {}) });
      } catch (e) {
        errs.push(`policies[${i}].trigger.schedule: ${(e as Error).message}`);
      }
    } else if (!(p.trigger.threshold > 0)) errs.push(`policies[${i}].trigger.threshold must be > 0`);
  });
  return errs;
}

/** The new capacity after one policy, within [min, max]. */
export function newCapacity(current: number, type: AdjustmentType, adjustment: number, min: number, max: number, minAdjustmentStep?: number): number {
  let next: number;
  if (type === 'change_in_capacity') next = current + adjustment;
  else if (type === 'exact_capacity') next = adjustment;
  else {
    const delta = (current * adjustment) / 100;
    let rounded = Math.abs(delta) < 1 ? (delta > 0 ? Math.ceil(delta) : Math.floor(delta)) : delta > 0 ? Math.floor(delta) : Math.ceil(delta);
    if (minAdjustmentStep && minAdjustmentStep > Math.abs(rounded)) rounded = rounded > 0 ? minAdjustmentStep : -minAdjustmentStep;
    next = current + rounded;
  }
  return Math.max(min, Math.min(max, next));
}

export interface GroupMember { name: string; healthy: boolean; unhealthySince?: number; creating?: boolean }

export interface ScalingGroupState {
  desired: number;
  lastScaledAt?: number;
  policyLastAt: Record<string, number>;
  /** Last time each scheduled policy was evaluated. */
  scheduleCheckedAt: Record<string, number>;
}

export interface GroupDecision {
  desired: number;
  /** Which policy acted, and why. */
  actions: { policy: string; from: number; to: number; reason: string }[];
  /** Members to replace (unhealthy past the grace). */
  replace: string[];
  /** Alarms that fired but were held back by a cooldown. */
  cooling: string[];
}

/**
 * One evaluation at `now`. `cpu` is the group's average CPU utilization per
 * sample period (oldest first, 0..1). Mutates `state`.
 */
export function evaluateGroup(spec: ScalingGroupSpec, state: ScalingGroupState, input: { cpu: number[]; members: GroupMember[] }, now: number): GroupDecision {
  const d: GroupDecision = { desired: state.desired, actions: [], replace: [], cooling: [] };
  // schedules first: they fire at their time whatever the cooldown
  for (const p of spec.policies) {
    if (!('schedule' in p.trigger)) continue;
    const since = state.scheduleCheckedAt[p.name] ?? now;
    state.scheduleCheckedAt[p.name] = now;
    const cron = new Cron(p.trigger.schedule, { paused: true, ...(p.trigger.timezone ? { timezone: p.trigger.timezone } : {}) });
    const next = cron.nextRun(new Date(since));
    if (next && next.getTime() <= now && since < now) {
      const to = newCapacity(state.desired, p.adjustmentType, p.adjustment, spec.min, spec.max, p.minAdjustmentStep);
      if (to !== state.desired) d.actions.push({ policy: p.name, from: state.desired, to, reason: `schedule ${p.trigger.schedule}` });
      state.desired = to;
      state.lastScaledAt = now;
      state.policyLastAt[p.name] = now;
    }
  }
  for (const p of spec.policies) {
    if ('schedule' in p.trigger) continue;
    const t = p.trigger;
    const n = t.evaluationPeriods ?? 1;
    if (input.cpu.length < n) continue;
    const window = input.cpu.slice(-n);
    const avg = window.reduce((a, x) => a + x, 0) / n;
    const breach = t.comparison === 'gt' ? window.every((x) => x > t.threshold) : window.every((x) => x < t.threshold);
    if (!breach) continue;
    const cooldown = (p.cooldownSeconds ?? spec.cooldownSeconds) * 1000;
    const last = p.cooldownSeconds !== undefined ? state.policyLastAt[p.name] : state.lastScaledAt;
    if (last !== undefined && now - last < cooldown) {
      d.cooling.push(p.name);
      continue;
    }
    const to = newCapacity(state.desired, p.adjustmentType, p.adjustment, spec.min, spec.max, p.minAdjustmentStep);
    if (to === state.desired) continue;
    d.actions.push({ policy: p.name, from: state.desired, to, reason: `cpu ${(avg * 100).toFixed(0)}% ${t.comparison === 'gt' ? '>' : '<'} ${(t.threshold * 100).toFixed(0)}% for ${n} period(s)` });
    state.desired = to;
    state.lastScaledAt = now;
    state.policyLastAt[p.name] = now;
  }
  state.desired = Math.max(spec.min, Math.min(spec.max, state.desired));
  d.desired = state.desired;
  const grace = (spec.unhealthyGraceSeconds ?? 60) * 1000;
  d.replace = input.members.filter((m) => !m.creating && !m.healthy && m.unhealthySince !== undefined && now - m.unhealthySince >= grace).map((m) => m.name);
  return d;
}

export const newGroupState = (spec: ScalingGroupSpec): ScalingGroupState => ({ desired: spec.desired ?? spec.min, policyLastAt: {}, scheduleCheckedAt: {} });

/**
 * Vertical pod autoscaling: raise (or lower) a workload's CPU/memory requests
 * from its measured usage, an alternative to more replicas per workload.
 *
 * Like the Vertical Pod Autoscaler's recommender: the target is a high
 * percentile (p90) of per-pod usage over the window plus a safety margin
 * (15 %), bounded by `minAllowed` and `maxAllowed` (the limits). Requests
 * change only under sustained load — the window must be full (`windowMs` of
 * samples) — and only when the current request falls outside the
 * recommendation's bounds (lower: p50 + margin, upper: p95 × 2 of margin),
 * so steady load never flips them.
 */

export interface VerticalPolicy {
  windowMs: number;
  minAllowed: { cpu: number; memory: number };
  maxAllowed: { cpu: number; memory: number };
  safetyMargin?: number;
}

export interface UsageSample { at: number; cpu: number; memory: number }

export interface VerticalDecision {
  target: { cpu: number; memory: number };
  lower: { cpu: number; memory: number };
  upper: { cpu: number; memory: number };
  /** New requests when they must change, else undefined. */
  update?: { cpu: number; memory: number };
  reason: string;
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  if (!s.length) return 0;
  const i = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1));
  return s[i]!;
}

const clamp = (v: number, lo: number, hi: number) => Math.max(lo, Math.min(hi, v));

export function validateVerticalPolicy(p: VerticalPolicy): string[] {
  const errs: string[] = [];
  if (!(p.windowMs > 0)) errs.push('vertical.windowSeconds must be > 0');
  for (const r of ['cpu', 'memory'] as const) {
    if (!(p.minAllowed[r] > 0)) errs.push(`vertical.minAllowed.${r} must be > 0`);
    if (p.minAllowed[r] > p.maxAllowed[r]) errs.push(`vertical.minAllowed.${r} (${p.minAllowed[r]}) must not be greater than maxAllowed.${r} (${p.maxAllowed[r]})`);
  }
  return errs;
}

export function recommendVertical(samples: UsageSample[], current: { cpu: number; memory: number }, policy: VerticalPolicy, now: number): VerticalDecision {
  const m = 1 + (policy.safetyMargin ?? 0.15);
  const inWindow = samples.filter((s) => s.at > now - policy.windowMs);
  const bound = (f: (xs: number[]) => number, r: 'cpu' | 'memory') => Math.round(clamp(f(inWindow.map((s) => s[r])) * m, policy.minAllowed[r], policy.maxAllowed[r]));
  const target = { cpu: bound((x) => percentile(x, 90), 'cpu'), memory: bound((x) => percentile(x, 90), 'memory') };
  const lower = { cpu: bound((x) => percentile(x, 50), 'cpu'), memory: bound((x) => percentile(x, 50), 'memory') };
  const upper = { cpu: Math.round(clamp(percentile(inWindow.map((s) => s.cpu), 95) * m * 2, policy.minAllowed.cpu, policy.maxAllowed.cpu)), memory: Math.round(clamp(percentile(inWindow.map((s) => s.memory), 95) * m * 2, policy.minAllowed.memory, policy.maxAllowed.memory)) };
  const oldest = inWindow.length ? Math.min(...inWindow.map((s) => s.at)) : now;
  if (!inWindow.length || now - oldest < policy.windowMs * 0.9) return { target, lower, upper, reason: 'not enough history: load must be sustained over the window' };
  const outside = (r: 'cpu' | 'memory') => current[r] < lower[r] || current[r] > upper[r];
  if (!outside('cpu') && !outside('memory')) return { target, lower, upper, reason: 'requests within the recommended range' };
  return { target, lower, upper, update: target, reason: current.cpu < lower.cpu || current.memory < lower.memory ? 'requests below sustained usage' : 'requests far above sustained usage' };
}

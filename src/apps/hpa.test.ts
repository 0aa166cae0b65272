import { describe, expect, it } from 'vitest';
import { emptyHpaState, hpaSync, normalizeWithBehavior, podMetricReplicas, proposeReplicas, resolveBehavior, scaleDownLimit, scaleUpLimit, validateHpaSpec, type HpaSpec, type PodSample } from './hpa.js';

const pod = (name: string, cpu: number | undefined, o: Partial<PodSample> = {}): PodSample => ({ name, phase: 'Running', ready: true, requests: { cpu: 100 }, usage: { cpu }, ...o });
const cpuSpec = (target: number, min = 1, max = 100, behavior?: HpaSpec['behavior']): HpaSpec => ({ minReplicas: min, maxReplicas: max, metrics: [{ type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: target } } }], ...(behavior ? { behavior } : {}) });
const noWindows = { scaleUp: { stabilizationWindowSeconds: 0, policies: [{ type: 'Percent' as const, value: 10000, periodSeconds: 15 }] }, scaleDown: { stabilizationWindowSeconds: 0, policies: [{ type: 'Percent' as const, value: 100, periodSeconds: 15 }] } };

describe('HPA replica calculation (Kubernetes documentation examples)', () => {
  // "if the current metric value is 200m, and the desired value is 100m, the number of replicas will be doubled"
  // "If the current value is instead 50m, you'll halve the number of replicas"
  it.each([
    ['doubles at 200m of 100m', 200, 100, 4, 8],
    ['halves at 50m of 100m', 50, 100, 4, 2],
    ['no change within tolerance (ratio 1.05)', 105, 100, 4, 4],
    ['no change within tolerance (ratio 0.91)', 91, 100, 4, 4],
    ['scales just outside tolerance (ratio 1.11)', 111, 100, 10, 12],
    ['ceil: 3 pods at 70 % of 60 % target -> 4', 70, 60, 3, 4],
    ['inside tolerance at 1.09 -> no change', 109, 100, 5, 5],
  ])('%s', (_name, usage, target, replicas, want) => {
    const pods = Array.from({ length: replicas }, (_, i) => pod(`p${i}`, usage));
    expect(podMetricReplicas(replicas, pods, 'cpu', { utilization: target }).replicas).toBe(want);
  });

  it('AverageValue targets divide the mean by the target', () => {
    const pods = [pod('a', 300), pod('b', 300)];
    expect(podMetricReplicas(2, pods, 'cpu', { averageValue: 100 }).replicas).toBe(6);
  });

  it('pods being deleted and failed pods are ignored', () => {
    const pods = [pod('a', 200), pod('b', 200), pod('c', 1000, { deleting: true }), pod('d', 1000, { phase: 'Failed' })];
    // only a and b count: ratio 2 over 2 pods -> 4
    expect(podMetricReplicas(4, pods, 'cpu', { utilization: 100 }).replicas).toBe(4);
    const pods2 = [pod('a', 200), pod('b', 200), pod('c', 1000, { deleting: true })];
    expect(podMetricReplicas(3, pods2, 'cpu', { utilization: 100 }).replicas).toBe(4);
  });

  it('missing metrics count as 100 % of target on scale-down (dampening it)', () => {
    // ready pods at 20 %: alone they ask for ceil(0.2*2)=1; with 2 missing pods at 100 %: (20+20+100+100)/4 = 60 % -> ceil(0.6*4)=3
    const pods = [pod('a', 20), pod('b', 20), pod('c', undefined), pod('d', undefined)];
    expect(podMetricReplicas(4, pods, 'cpu', { utilization: 100 }).replicas).toBe(3);
  });

  it('missing metrics count as 0 % on scale-up', () => {
    // ready at 200 %: (200+200+0+0)/4 = 100 % -> within tolerance -> no change
    const pods = [pod('a', 200), pod('b', 200), pod('c', undefined), pod('d', undefined)];
    expect(podMetricReplicas(4, pods, 'cpu', { utilization: 100 }).replicas).toBe(4);
    // ready at 300 %: (300+300)/4 = 150 % -> ceil(1.5*4) = 6
    const pods2 = [pod('a', 300), pod('b', 300), pod('c', undefined), pod('d', undefined)];
    expect(podMetricReplicas(4, pods2, 'cpu', { utilization: 100 }).replicas).toBe(6);
  });

  it('not-ready and pending pods count as 0 % on scale-up', () => {
    const pods = [pod('a', 300), pod('b', 300), pod('c', 900, { ready: false }), pod('d', undefined, { phase: 'Pending', ready: false })];
    // (300+300+0+0)/4 = 150 % -> 6
    expect(podMetricReplicas(4, pods, 'cpu', { utilization: 100 }).replicas).toBe(6);
  });

  it('not-ready pods are left out on scale-down (no 0 % padding)', () => {
    const pods = [pod('a', 40), pod('b', 40), pod('c', 0, { ready: false })];
    // only ready pods: 40 % -> ceil(0.4*2) = 1
    expect(podMetricReplicas(3, pods, 'cpu', { utilization: 100 }).replicas).toBe(1);
  });

  it('a direction reversed by the conservative recomputation means no change', () => {
    // ready at 130 % asks for a scale-up; 2 unready pods at 0 % give (130+130)/4 = 65 % < 100 %: reversed -> keep 4
    const pods = [pod('a', 130), pod('b', 130), pod('c', 0, { ready: false }), pod('d', 0, { ready: false })];
    expect(podMetricReplicas(4, pods, 'cpu', { utilization: 100 }).replicas).toBe(4);
  });

  it('no metric at all is an error naming the metric', () => {
    expect(() => podMetricReplicas(2, [pod('a', undefined), pod('b', undefined)], 'cpu', { utilization: 50 })).toThrow(/no metrics for cpu/);
  });

  it('memory readiness does not matter (only cpu treats not-ready pods as unready)', () => {
    const mem = (n: string, u: number, ready: boolean): PodSample => ({ name: n, phase: 'Running', ready, requests: { memory: 100 }, usage: { memory: u } });
    expect(podMetricReplicas(2, [mem('a', 200, true), mem('b', 200, false)], 'memory', { utilization: 100 }).replicas).toBe(4);
  });

  it('several metrics: the largest proposal wins', () => {
    const spec: HpaSpec = { maxReplicas: 50, metrics: [
      { type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 50 } } },
      { type: 'Pods', pods: { metric: { name: 'rps' }, target: { type: 'AverageValue', averageValue: 10 } } },
      { type: 'External', external: { metric: { name: 'queue' }, target: { type: 'AverageValue', averageValue: 30 } } },
    ] };
    const pods = [0, 1, 2].map((i) => ({ ...pod(`p${i}`, 75), usage: { cpu: 75, rps: 20 } }));
    const r = proposeReplicas(spec, 3, { pods, values: { queue: 90 } });
    expect(r.proposals.map((p) => p.replicas)).toEqual([5, 6, 3]);
    expect(r.desired).toBe(6);
  });

  it('an invalid metric blocks a scale-down but not a scale-up', () => {
    const spec: HpaSpec = { maxReplicas: 50, metrics: [
      { type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 50 } } },
      { type: 'External', external: { metric: { name: 'queue' }, target: { type: 'Value', value: 10 } } },
    ] };
    const down = proposeReplicas(spec, 4, { pods: [0, 1, 2, 3].map((i) => pod(`p${i}`, 10)) });
    expect(down.invalid).toBe(1);
    expect(down.desired).toBe(4);
    const up = proposeReplicas(spec, 4, { pods: [0, 1, 2, 3].map((i) => pod(`p${i}`, 100)) });
    expect(up.desired).toBe(8);
  });

  it('Object Value targets scale with ready pods; from zero with the ratio', () => {
    const spec: HpaSpec = { minReplicas: 0, maxReplicas: 50, metrics: [{ type: 'Object', object: { metric: { name: 'rps' }, target: { type: 'Value', value: 100 } } }] };
    const pods = [pod('a', 1), pod('b', 1)];
    expect(proposeReplicas(spec, 2, { pods, values: { rps: 300 } }).desired).toBe(6);
    expect(proposeReplicas(spec, 2, { pods, values: { rps: 105 } }).desired).toBe(2);
  });
});

describe('HPA behavior: stabilization and policies', () => {
  const b = resolveBehavior(undefined);

  it('defaults: scale-up max(100 %, 4 pods) per 15 s', () => {
    const s = emptyHpaState();
    expect(scaleUpLimit(1, b.scaleUp, s, 0)).toBe(5);
    expect(scaleUpLimit(10, b.scaleUp, s, 0)).toBe(20);
    expect(scaleUpLimit(3, b.scaleUp, s, 0)).toBe(7);
  });

  it('defaults: scale-down 100 % per 15 s (to zero, min wins)', () => {
    expect(scaleDownLimit(10, b.scaleDown, emptyHpaState(), 0)).toBe(0);
  });

  it('documentation example: Pods 4/60 s and Percent 10/60 s on scale-down, 80 replicas -> 72 -> 64, then 4 at a time below 40', () => {
    const rules = resolveBehavior({ scaleDown: { stabilizationWindowSeconds: 0, policies: [{ type: 'Pods', value: 4, periodSeconds: 60 }, { type: 'Percent', value: 10, periodSeconds: 60 }] } }).scaleDown;
    expect(scaleDownLimit(80, rules, emptyHpaState(), 0)).toBe(72);
    expect(scaleDownLimit(72, rules, emptyHpaState(), 0)).toBe(64); // 7.2 rounds to 8 removed
    expect(scaleDownLimit(30, rules, emptyHpaState(), 0)).toBe(26);
  });

  it('selectPolicy Min picks the smallest change; Disabled forbids the direction', () => {
    const rules = resolveBehavior({ scaleDown: { selectPolicy: 'Min', policies: [{ type: 'Pods', value: 4, periodSeconds: 60 }, { type: 'Percent', value: 10, periodSeconds: 60 }] } }).scaleDown;
    expect(scaleDownLimit(80, rules, emptyHpaState(), 0)).toBe(76);
    const off = resolveBehavior({ scaleDown: { selectPolicy: 'Disabled' } });
    const s = emptyHpaState();
    expect(normalizeWithBehavior(2, 10, 1, 20, { ...off, scaleDown: { ...off.scaleDown, stabilizationWindowSeconds: 0 } }, s, 0).replicas).toBe(10);
  });

  it('changes made within the period count against the policy', () => {
    const rules = resolveBehavior({ scaleUp: { policies: [{ type: 'Pods', value: 4, periodSeconds: 60 }] } }).scaleUp;
    const s = emptyHpaState();
    s.scaleUpEvents.push({ at: 0, change: 3 });
    // 10 replicas now, 3 added 30 s ago: the period started at 7 -> at most 11
    expect(scaleUpLimit(10, rules, s, 30_000)).toBe(11);
    // after the period the event no longer counts
    expect(scaleUpLimit(10, rules, s, 61_000)).toBe(14);
  });

  it('scale-down stabilization keeps the highest recommendation of the last 300 s', () => {
    const spec = cpuSpec(50, 1, 20);
    const s = emptyHpaState();
    const pods = (n: number, u: number) => Array.from({ length: n }, (_, i) => pod(`p${i}`, u));
    // t=0: load asks for 8 (4 pods at 100 % of 50 %)
    let r = hpaSync(spec, 4, { pods: pods(4, 100) }, s, 0);
    expect(r.desiredReplicas).toBe(8);
    // load falls to 10 %: the formula asks for 2, but 8 was recommended within 300 s
    r = hpaSync(spec, 8, { pods: pods(8, 10) }, s, 15_000);
    expect(r.proposed).toBe(2);
    expect(r.desiredReplicas).toBe(8);
    expect(r.reason).toBe('ScaleDownStabilized');
    r = hpaSync(spec, 8, { pods: pods(8, 10) }, s, 290_000);
    expect(r.desiredReplicas).toBe(8);
    // once the 8 left the window, the highest in the window is 2
    r = hpaSync(spec, 8, { pods: pods(8, 10) }, s, 300_001);
    expect(r.desiredReplicas).toBe(2);
  });

  it('scale-up stabilization window takes the lowest recommendation', () => {
    const spec = cpuSpec(50, 1, 40, { scaleUp: { stabilizationWindowSeconds: 60 } });
    const s = emptyHpaState();
    const pods = (n: number, u: number) => Array.from({ length: n }, (_, i) => pod(`p${i}`, u));
    expect(hpaSync(spec, 4, { pods: pods(4, 50) }, s, 0).desiredReplicas).toBe(4);
    const r = hpaSync(spec, 4, { pods: pods(4, 200) }, s, 15_000);
    expect(r.proposed).toBe(16);
    expect(r.desiredReplicas).toBe(4);
    const later = hpaSync(spec, 4, { pods: pods(4, 200) }, s, 61_000);
    expect(later.desiredReplicas).toBe(8); // 16 asked, the default rate allows max(4+4, 4x2)
    expect(later.reason).toBe('ScaleUpLimit');
  });

  it('default scale-up rate: from 2 replicas a 10x spike goes 6, 12, 24, then max 40 in 15 s steps', () => {
    const spec = cpuSpec(10, 1, 40);
    const s = emptyHpaState();
    let cur = 2;
    const seen: number[] = [];
    for (let t = 0; t < 4; t++) {
      const u = 100; // every pod at 10x the target
      const r = hpaSync(spec, cur, { pods: Array.from({ length: cur }, (_, i) => pod(`p${i}`, u)) }, s, t * 15_000);
      cur = r.desiredReplicas;
      seen.push(cur);
    }
    expect(seen).toEqual([6, 12, 24, 40]);
  });

  it('min and max replicas bound the result with the right reason', () => {
    const s = emptyHpaState();
    const r = hpaSync(cpuSpec(50, 2, 6, noWindows), 4, { pods: [0, 1, 2, 3].map((i) => pod(`p${i}`, 500)) }, s, 0);
    expect(r.desiredReplicas).toBe(6);
    expect(r.reason).toBe('TooManyReplicas');
    const r2 = hpaSync(cpuSpec(50, 2, 6, noWindows), 4, { pods: [0, 1, 2, 3].map((i) => pod(`p${i}`, 1)) }, emptyHpaState(), 0);
    expect(r2.desiredReplicas).toBe(2);
    expect(r2.reason).toBe('TooFewReplicas');
    expect(hpaSync(cpuSpec(50, 2, 6), 9, { pods: [] }, emptyHpaState(), 0).desiredReplicas).toBe(6);
    expect(hpaSync(cpuSpec(50, 2, 6), 1, { pods: [] }, emptyHpaState(), 0).desiredReplicas).toBe(2);
  });

  it('a target scaled to zero by hand disables autoscaling', () => {
    const r = hpaSync(cpuSpec(50, 1, 6), 0, { pods: [] }, emptyHpaState(), 0);
    expect(r.rescale).toBe(false);
    expect(r.conditions[0]!.reason).toBe('ScalingDisabled');
  });

  it('no flapping: steady load inside the tolerance never changes replicas', () => {
    const spec = cpuSpec(60, 1, 50);
    const s = emptyHpaState();
    let cur = 10;
    for (let t = 0; t < 200; t++) {
      const u = 60 * (1 + 0.09 * Math.sin(t)); // ±9 % noise
      cur = hpaSync(spec, cur, { pods: Array.from({ length: cur }, (_, i) => pod(`p${i}`, u)) }, s, t * 15_000).desiredReplicas;
      expect(cur).toBe(10);
    }
  });
});

describe('HPA spec validation', () => {
  it.each([
    [{ minReplicas: 5, maxReplicas: 2, metrics: cpuSpec(50).metrics }, /minReplicas \(5\) must not be greater than maxReplicas \(2\)/],
    [{ maxReplicas: 2, metrics: [{ type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 0 } } }] }, /metrics\[0\]\.target: the target must be > 0/],
    [{ maxReplicas: 2, metrics: [{ type: 'Pods', pods: { metric: { name: 'x' }, target: { type: 'AverageValue', averageValue: -1 } } }] }, /target must be > 0/],
    [{ maxReplicas: 0, metrics: cpuSpec(50).metrics }, /maxReplicas must be an integer >= 1/],
    [{ maxReplicas: 3, metrics: [] }, /at least one metric/],
  ] as [HpaSpec, RegExp][])('%#', (spec, re) => {
    expect(validateHpaSpec(spec).join('\n')).toMatch(re);
  });
  it('a valid spec has no problems', () => expect(validateHpaSpec(cpuSpec(60, 1, 10))).toEqual([]));
});

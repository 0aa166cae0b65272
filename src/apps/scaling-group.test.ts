import { describe, expect, it } from 'vitest';
import { evaluateGroup, newCapacity, newGroupState, validateScalingGroup, type ScalingGroupSpec } from './scaling-group.js';

describe('scaling group adjustments', () => {
  it.each([
    ['change_in_capacity +2', 3, 'change_in_capacity', 2, undefined, 5],
    ['change_in_capacity -1', 3, 'change_in_capacity', -1, undefined, 2],
    ['change_in_capacity capped at max', 9, 'change_in_capacity', 5, undefined, 10],
    ['change_in_capacity floored at min', 2, 'change_in_capacity', -5, undefined, 1],
    ['exact_capacity', 3, 'exact_capacity', 7, undefined, 7],
    ['exact_capacity above max', 3, 'exact_capacity', 70, undefined, 10],
    ['percent +50 % of 4 = 2', 4, 'percent_change_in_capacity', 50, undefined, 6],
    ['percent +10 % of 4 = 0.4 rounds up to 1', 4, 'percent_change_in_capacity', 10, undefined, 5],
    ['percent -10 % of 4 = -0.4 rounds to -1', 4, 'percent_change_in_capacity', -10, undefined, 3],
    ['percent +33 % of 9 = 2.97 rounds toward zero: 2', 9, 'percent_change_in_capacity', 33, undefined, 10],
    ['percent +25 % of 6 = 1.5 -> 1', 6, 'percent_change_in_capacity', 25, undefined, 7],
    ['percent -25 % of 6 = -1.5 -> -1', 6, 'percent_change_in_capacity', -25, undefined, 5],
    ['percent with min step 3', 4, 'percent_change_in_capacity', 10, 3, 7],
    ['percent with min step, negative', 6, 'percent_change_in_capacity', -10, 2, 4],
  ] as const)('%s', (_n, cur, type, adj, step, want) => {
    expect(newCapacity(cur, type, adj, 1, 10, step)).toBe(want);
  });
});

const spec = (o: Partial<ScalingGroupSpec> = {}): ScalingGroupSpec => ({
  min: 2, max: 8, desired: 2, cooldownSeconds: 300,
  policies: [
    { name: 'up', adjustmentType: 'change_in_capacity', adjustment: 2, trigger: { metric: 'cpu', comparison: 'gt', threshold: 0.7, evaluationPeriods: 2 } },
    { name: 'down', adjustmentType: 'percent_change_in_capacity', adjustment: -50, trigger: { metric: 'cpu', comparison: 'lt', threshold: 0.2, evaluationPeriods: 3 } },
  ],
  ...o,
});

describe('scaling group evaluation', () => {
  it('a metric alarm needs every period of its window in breach', () => {
    const s = newGroupState(spec());
    expect(evaluateGroup(spec(), s, { cpu: [0.5, 0.9], members: [] }, 0).desired).toBe(2);
    const d = evaluateGroup(spec(), s, { cpu: [0.8, 0.9], members: [] }, 60_000);
    expect(d.desired).toBe(4);
    expect(d.actions[0]).toMatchObject({ policy: 'up', from: 2, to: 4 });
  });

  it('cooldown holds back alarms after an action', () => {
    const s = newGroupState(spec());
    evaluateGroup(spec(), s, { cpu: [0.8, 0.9], members: [] }, 0);
    const held = evaluateGroup(spec(), s, { cpu: [0.8, 0.9], members: [] }, 299_000);
    expect(held.desired).toBe(4);
    expect(held.cooling).toEqual(['up']);
    expect(evaluateGroup(spec(), s, { cpu: [0.8, 0.9], members: [] }, 300_000).desired).toBe(6);
  });

  it('scales in on low load, never under min', () => {
    const s = { ...newGroupState(spec()), desired: 6 };
    expect(evaluateGroup(spec(), s, { cpu: [0.1, 0.1, 0.1], members: [] }, 0).desired).toBe(3);
    expect(evaluateGroup(spec(), s, { cpu: [0.1, 0.1, 0.1], members: [] }, 400_000).desired).toBe(2);
  });

  it('a cron schedule sets capacity at its time, cooldown or not', () => {
    const sp = spec({ policies: [{ name: 'morning', adjustmentType: 'exact_capacity', adjustment: 6, trigger: { schedule: '0 8 * * *', timezone: 'UTC' } }] });
    const s = newGroupState(sp);
    const t0 = Date.UTC(2026, 0, 1, 7, 59);
    expect(evaluateGroup(sp, s, { cpu: [], members: [] }, t0).desired).toBe(2);
    s.lastScaledAt = t0;
    expect(evaluateGroup(sp, s, { cpu: [], members: [] }, t0 + 30_000).desired).toBe(2);
    const d = evaluateGroup(sp, s, { cpu: [], members: [] }, t0 + 61_000);
    expect(d.desired).toBe(6);
    expect(d.actions[0]!.reason).toBe('schedule 0 8 * * *');
    // does not fire again until the next day
    s.desired = 3;
    expect(evaluateGroup(sp, s, { cpu: [], members: [] }, t0 + 3_600_000).desired).toBe(3);
  });

  it('unhealthy members past the grace are replaced', () => {
    const s = newGroupState(spec());
    const d = evaluateGroup(spec({ unhealthyGraceSeconds: 60 }), s, { cpu: [], members: [{ name: 'a', healthy: true }, { name: 'b', healthy: false, unhealthySince: 0 }, { name: 'c', healthy: false, unhealthySince: 30_000 }] }, 60_000);
    expect(d.replace).toEqual(['b']);
  });

  it.each([
    [{ min: 5, max: 2 }, /min \(5\) must not be greater than max \(2\)/],
    [{ desired: 20 }, /desired \(20\) must be within min..max/],
    [{ policies: [{ name: 'x', adjustmentType: 'change_in_capacity' as const, adjustment: 1, trigger: { schedule: 'not a cron' } }] }, /policies\[0\]\.trigger\.schedule/],
    [{ policies: [{ name: 'x', adjustmentType: 'change_in_capacity' as const, adjustment: 1, trigger: { metric: 'cpu' as const, comparison: 'gt' as const, threshold: 0 } }] }, /threshold must be > 0/],
  ])('bad spec %# is rejected', (o, re) => {
    expect(validateScalingGroup(spec(o)).join('\n')).toMatch(re);
  });
});

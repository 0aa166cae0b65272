import { describe, expect, it } from 'vitest';
import { recommendVertical, validateVerticalPolicy, type UsageSample } from './vertical.js';

const policy = { windowMs: 600_000, minAllowed: { cpu: 50, memory: 64 }, maxAllowed: { cpu: 2000, memory: 4096 } };
const series = (cpu: number, memory: number, from = 0, to = 600_000): UsageSample[] => {
  const out: UsageSample[] = [];
  for (let t = from; t <= to; t += 15_000) out.push({ at: t, cpu, memory });
  return out;
};

describe('vertical autoscaling', () => {
  it('raises requests under sustained load, with the safety margin', () => {
    const d = recommendVertical(series(400, 300), { cpu: 100, memory: 128 }, policy, 600_000);
    expect(d.update).toEqual({ cpu: 460, memory: 345 });
  });
  it('waits for the window to be full (no change on a short spike)', () => {
    const d = recommendVertical(series(400, 300, 500_000, 600_000), { cpu: 100, memory: 128 }, policy, 600_000);
    expect(d.update).toBeUndefined();
    expect(d.reason).toMatch(/sustained/);
  });
  it('never beyond the limits (maxAllowed)', () => {
    expect(recommendVertical(series(5000, 9000), { cpu: 100, memory: 128 }, policy, 600_000).update).toEqual({ cpu: 2000, memory: 4096 });
  });
  it('steady usage within bounds changes nothing', () => {
    expect(recommendVertical(series(400, 300), { cpu: 460, memory: 345 }, policy, 600_000).update).toBeUndefined();
  });
  it('lowers far-oversized requests', () => {
    expect(recommendVertical(series(100, 100), { cpu: 1500, memory: 2048 }, policy, 600_000).update).toEqual({ cpu: 115, memory: 115 });
  });
  it('rejects min above max', () => {
    expect(validateVerticalPolicy({ ...policy, minAllowed: { cpu: 5000, memory: 64 } })).toEqual(['vertical.minAllowed.cpu (5000) must not be greater than maxAllowed.cpu (2000)']);
  });
});

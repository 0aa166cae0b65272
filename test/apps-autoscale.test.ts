import { describe, expect, it } from 'vitest';
import { DEFAULT_SCENARIO, parseLoadTrace, runAutoscaleScenario } from '../src/apps/autoscale-scenario.js';

describe('autoscaling end to end in the simulator (HPA + Cluster Autoscaler)', () => {
  const r = runAutoscaleScenario(DEFAULT_SCENARIO);
  const [steady, step, drop] = r.replicas_by_segment;
  const [nSteady, nStep, nDrop] = r.nodes_by_segment;

  it('a load step makes replicas follow', () => {
    expect(step!.peak).toBeGreaterThan(steady!.end * 3);
    expect(r.scale_up_reaction_s).toBeGreaterThan(0);
  });

  it('pods go Pending while the cluster is full, then the cluster grows', () => {
    expect(r.pending_pods_max_s).toBeGreaterThan(0);
    expect(r.timeline.some((x) => x.pending > 0)).toBe(true);
    expect(nStep!.peak).toBeGreaterThan(nSteady!.end);
    expect(r.nodes_added).toBeGreaterThan(0);
    // every pod ran in the end
    expect(r.timeline.filter((x) => x.rps === 500).pop()!.pending).toBe(0);
  });

  it('when the load drops, replicas shrink only after the stabilization window, nodes after theirs', () => {
    expect(drop!.end).toBeLessThan(step!.peak);
    expect(r.scale_down_started_after_s).toBeGreaterThanOrEqual(300);
    expect(nDrop!.end).toBeLessThan(nDrop!.peak);
    // nodes stay at least scale-down-unneeded-time (10 min) after the replicas dropped
    const dropStart = r.timeline.find((x) => x.rps === 50)!.t;
    const replicasDown = r.timeline.find((x) => x.t > dropStart && x.replicas < step!.peak)!.t;
    const nodesDown = r.timeline.find((x) => x.t > dropStart && x.nodes < nDrop!.peak)!.t;
    expect(nodesDown - replicasDown).toBeGreaterThanOrEqual(600);
  });

  it('no flapping under steady load, and the steady replica count is the formula\'s', () => {
    expect(r.flaps).toBe(0);
    expect(r.replica_error_steady).toBe(0);
  });
});

describe('load trace files', () => {
  it('parses time -> rps lines', () => {
    expect(parseLoadTrace('# day\n0 100\n10m 500\n1h, 50\n')).toEqual([{ at: 0, rps: 100 }, { at: 600_000, rps: 500 }, { at: 3_600_000, rps: 50 }]);
  });
  it('names the file and line of a bad entry', () => {
    expect(() => parseLoadTrace('0 100\nsoon 5\n', 'day.trace')).toThrow('day.trace:2: expected "<time> <rps>"');
    expect(() => parseLoadTrace('60 100\n30 5\n', 'day.trace')).toThrow('day.trace:2: times must increase');
  });
});

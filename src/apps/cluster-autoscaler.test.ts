import { describe, expect, it } from 'vitest';
import { binPack, clusterAutoscale, emptyCaState, expand, nodeUtilization, recordScaleDownFailure, validatePools, type CaNode, type CaPod, type CaPool } from './cluster-autoscaler.js';

const pod = (name: string, cpu: number, memory = 256, o: Partial<CaPod> = {}): CaPod => ({ name, requests: { cpu, memory }, ...o });
const node = (name: string, pool: string, pods: CaPod[], alloc = { cpu: 4000, memory: 16384 }, o: Partial<CaNode> = {}): CaNode => ({ name, pool, allocatable: alloc, pods, ready: true, ...o });
const pool = (name: string, size: number, o: Partial<CaPool> = {}): CaPool => ({ name, min: 1, max: 10, size, template: { cpu: 4000, memory: 16384 }, ...o });
const MIN = 60_000;

describe('Cluster Autoscaler: scale-up', () => {
  it('unschedulable pods add the nodes bin packing says they need', () => {
    const full = node('n1', 'general', [pod('a', 3800)]);
    const d = clusterAutoscale({ nodes: [full], pools: [pool('general', 1)], pending: [pod('p1', 1500), pod('p2', 1500), pod('p3', 1500)] }, emptyCaState(), 0);
    expect(d.scaleUp).toMatchObject({ pool: 'general', nodes: 2 });
    expect(d.scaleUp!.pods.sort()).toEqual(['p1', 'p2', 'p3']);
  });

  it('pending pods that fit on existing free capacity trigger nothing', () => {
    const d = clusterAutoscale({ nodes: [node('n1', 'general', [pod('a', 1000)])], pools: [pool('general', 1)], pending: [pod('p1', 1000)] }, emptyCaState(), 0);
    expect(d.scaleUp).toBeUndefined();
  });

  it('checks at most every scan interval (10 s)', () => {
    const s = emptyCaState();
    const input = { nodes: [node('n1', 'general', [pod('a', 4000)])], pools: [pool('general', 1)], pending: [pod('p1', 1000)] };
    expect(clusterAutoscale(input, s, 0).scaleUp).toBeDefined();
    expect(clusterAutoscale(input, s, 5_000).skipped).toBe('scan interval');
    expect(clusterAutoscale(input, s, 10_000).skipped).toBeUndefined();
  });

  it('pools at max are not options; pods nothing can hold are reported', () => {
    const d = clusterAutoscale({ nodes: [node('n1', 'small', [pod('a', 4000)])], pools: [pool('small', 1, { max: 1 })], pending: [pod('p1', 1000), pod('huge', 64_000)] }, emptyCaState(), 0);
    expect(d.scaleUp).toBeUndefined();
    expect(d.noScaleUp).toEqual([
      { pod: 'p1', reason: 'max node group size reached' },
      { pod: 'huge', reason: expect.stringMatching(/didn't fit on a new node of any pool/) },
    ]);
  });

  it('a pool adds no more nodes than its max allows', () => {
    const d = clusterAutoscale({ nodes: [], pools: [pool('g', 8, { max: 9 })], pending: Array.from({ length: 8 }, (_, i) => pod(`p${i}`, 3000)) }, emptyCaState(), 0);
    expect(d.scaleUp).toMatchObject({ pool: 'g', nodes: 1 });
    expect(d.scaleUp!.pods).toHaveLength(1);
  });

  it('least-waste picks the pool whose new nodes are best used', () => {
    const pools = [pool('big', 1, { template: { cpu: 16000, memory: 65536 } }), pool('fit', 1, { template: { cpu: 2000, memory: 8192 } })];
    const d = clusterAutoscale({ nodes: [], pools, pending: [pod('p', 1800, 7000)] }, emptyCaState(), 0, { expanders: ['least-waste'] });
    expect(d.scaleUp!.pool).toBe('fit');
  });

  it('priority then least-waste, chained', () => {
    const pools = [
      pool('a-cheap', 1, { priority: 10, template: { cpu: 16000, memory: 65536 } }),
      pool('b-cheap', 1, { priority: 10, template: { cpu: 2000, memory: 8192 } }),
      pool('c-fast', 1, { priority: 1, template: { cpu: 2000, memory: 8192 } }),
    ];
    const d = clusterAutoscale({ nodes: [], pools, pending: [pod('p', 1800, 7000)] }, emptyCaState(), 0, { expanders: ['priority', 'least-waste'] });
    expect(d.scaleUp!.pool).toBe('b-cheap');
    expect(d.scaleUp!.expanderTrail).toEqual(['priority: a-cheap, b-cheap', 'least-waste: b-cheap']);
  });

  it('expander ties end on the pool name (deterministic)', () => {
    expect(expand([{ pool: 'z', nodes: 1, pods: ['a'], waste: 0.5 }, { pool: 'm', nodes: 1, pods: ['a'], waste: 0.5 }], [], ['least-waste']).pick!.pool).toBe('m');
  });

  it('bin packing is first-fit decreasing', () => {
    const r = binPack({ cpu: 1000, memory: 1000 }, [pod('a', 300, 1), pod('b', 700, 1), pod('c', 300, 1), pod('d', 700, 1)], 10);
    expect(r.nodes).toBe(2);
  });
});

describe('Cluster Autoscaler: scale-down', () => {
  const twoNodes = () => ({
    nodes: [node('n1', 'g', [pod('a', 3000)]), node('n2', 'g', [pod('b', 400)])],
    pools: [pool('g', 2)],
    pending: [],
  });

  it('utilization is the larger of CPU and memory requests over allocatable', () => {
    expect(nodeUtilization(node('n', 'g', [pod('a', 1000, 12288)]))).toBe(0.75);
    expect(nodeUtilization(node('n', 'g', [pod('a', 1000, 12288, { daemonSet: true })]))).toBe(0);
  });

  it('removes a node under 0.5 only after 10 minutes unneeded, draining its pods', () => {
    const s = emptyCaState();
    expect(clusterAutoscale(twoNodes(), s, 0).unneeded).toEqual(['n2']);
    expect(clusterAutoscale(twoNodes(), s, 9 * MIN).scaleDown).toEqual([]);
    const d = clusterAutoscale(twoNodes(), s, 10 * MIN);
    expect(d.scaleDown).toEqual([{ node: 'n2', pool: 'g', drain: ['b'], empty: false }]);
  });

  it('a node going back above the threshold restarts its unneeded timer', () => {
    const s = emptyCaState();
    clusterAutoscale(twoNodes(), s, 0);
    const busy = twoNodes();
    busy.nodes[1]!.pods.push(pod('c', 2000));
    clusterAutoscale(busy, s, 5 * MIN);
    expect(s.unneededSince.n2).toBeUndefined();
    clusterAutoscale(twoNodes(), s, 6 * MIN);
    expect(clusterAutoscale(twoNodes(), s, 15 * MIN).scaleDown).toEqual([]);
    expect(clusterAutoscale(twoNodes(), s, 16 * MIN).scaleDown).toHaveLength(1);
  });

  it('no scale-down within 10 min of a scale-up, nor 3 min after a failure', () => {
    const s = emptyCaState();
    s.lastScaleUp = 0;
    clusterAutoscale(twoNodes(), s, 0);
    const d = clusterAutoscale(twoNodes(), s, 9.9 * MIN);
    expect(d.scaleDown).toEqual([]);
    expect(d.skipped).toBe('scale-down-delay-after-add');
    recordScaleDownFailure(s, 10 * MIN);
    expect(clusterAutoscale(twoNodes(), s, 12 * MIN).skipped).toBe('scale-down-delay-after-failure');
    expect(clusterAutoscale(twoNodes(), s, 13 * MIN).scaleDown).toHaveLength(1);
  });

  it('keeps pools at their min', () => {
    const s = emptyCaState();
    const input = { nodes: [node('n1', 'g', [pod('a', 100)]), node('n2', 'g', [])], pools: [pool('g', 2, { min: 2 })], pending: [] };
    clusterAutoscale(input, s, 0);
    expect(clusterAutoscale(input, s, 20 * MIN).scaleDown).toEqual([]);
    const one = { ...input, pools: [pool('g', 2, { min: 1 })] };
    const s2 = emptyCaState();
    clusterAutoscale(one, s2, 0);
    expect(clusterAutoscale(one, s2, 20 * MIN).scaleDown).toEqual([{ node: 'n2', pool: 'g', drain: [], empty: true }]);
  });

  it('a node whose pods fit nowhere else, or has a bare pod, stays', () => {
    const s = emptyCaState();
    const input = { nodes: [node('n1', 'g', [pod('a', 3500)]), node('n2', 'g', [pod('b', 1000)])], pools: [pool('g', 2)], pending: [] };
    clusterAutoscale(input, s, 0);
    expect(clusterAutoscale(input, s, 20 * MIN).scaleDown).toEqual([]);
    const bare = { nodes: [node('n1', 'g', []), node('n2', 'g', [pod('b', 100, 1, { movable: false })])], pools: [pool('g', 2)], pending: [] };
    const s2 = emptyCaState();
    clusterAutoscale(bare, s2, 0);
    // n1 (empty) goes, n2 (bare pod) stays
    expect(clusterAutoscale(bare, s2, 20 * MIN).scaleDown.map((x) => x.node)).toEqual(['n1']);
  });

  it('two half-empty nodes cannot both move onto each other', () => {
    const s = emptyCaState();
    const input = { nodes: [node('n1', 'g', [pod('a', 1900)]), node('n2', 'g', [pod('b', 1900)]), node('n3', 'g', [pod('c', 2100)])], pools: [pool('g', 3)], pending: [] };
    // n1's pod moves to n2, so n2 is not unneeded in the same pass
    expect(clusterAutoscale(input, s, 0).unneeded).toEqual(['n1']);
    const d = clusterAutoscale(input, s, 20 * MIN);
    expect(d.scaleDown).toEqual([{ node: 'n1', pool: 'g', drain: ['a'], empty: false }]);
  });

  it('empty nodes go in bulk, non-empty ones one at a time', () => {
    const s = emptyCaState();
    const input = { nodes: [node('n1', 'g', [pod('a', 1500)]), node('n2', 'g', []), node('n3', 'g', []), node('n4', 'g', [pod('d', 100)])], pools: [pool('g', 4)], pending: [] };
    clusterAutoscale(input, s, 0);
    expect(clusterAutoscale(input, s, 10 * MIN).scaleDown.map((x) => x.node)).toEqual(['n2', 'n3']);
  });

  it('pool min greater than max is rejected', () => {
    expect(validatePools([pool('g', 1, { min: 5, max: 2 })])).toEqual(['node pool g: min (5) must not be greater than max (2)']);
  });
});

import { describe, expect, it } from 'vitest';
import { allocationFeasibility, type AllocationFeasibility } from './feasibility.js';
import { parseStack } from './parse.js';
import { compileStack } from './model.js';
import { diffStack, renderPlan } from './plan.js';

/** The allocation module's answer for a fixed inventory: 1 free gp-medium in dc1. */
const allocations: AllocationFeasibility & { asked: unknown[] } = {
  asked: [],
  async feasibility(req) {
    this.asked.push(req);
    const shortfalls = (req.servers ?? []).flatMap((s, i) => {
      const available = s.type === 'gp-medium' ? 1 : 10;
      return (s.count ?? 1) > available ? [{ path: `servers.${i}`, resource: 'servers', requested: s.count ?? 1, available, reason: `${s.count} server(s) of type ${s.type} requested in ${s.datacenter}, ${available} available` }] : [];
    });
    return { feasible: shortfalls.length === 0, shortfalls };
  },
};

const doc = (type: string) => `apiVersion: infraflow.dev/v1
kind: Stack
metadata: { name: metal }
spec:
  resources:
    nodes: { kind: metal/Instance, count: 3, spec: { serverType: ${type}, osTemplate: ubuntu-24.04 } }
`;

describe('feasibility in the plan', () => {
  it('asks the allocation module for what the creates need and reports it before anything is allocated', async () => {
    const check = allocationFeasibility(allocations, { datacenter: 'dc1' });
    const model = compileStack(parseStack(doc('gp-medium')));
    const plan = diffStack(model, []);
    const creates = plan.changes.map((c) => ({ address: c.address, kind: c.kind, spec: c.after as Record<string, unknown> }));
    const f = await check({ project: 'default', creates, deletes: [] });
    expect(allocations.asked.at(-1)).toEqual({ servers: [{ type: 'gp-medium', datacenter: 'dc1', count: 3 }], vlans: [], prefixes: [] });
    expect(f.ok).toBe(false);
    expect(f.checks[0]!.message).toBe('needs 3 server(s) of type gp-medium requested in dc1, 1 available (for nodes[0], nodes[1], nodes[2])');
    const text = renderPlan({ ...plan, feasibility: f });
    expect(text).toContain('FAIL needs 3 server(s) of type gp-medium');
    expect(text).toContain('The plan is not feasible');

    const ok = await check({ project: 'default', creates: creates.map((c) => ({ ...c, spec: { ...c.spec, serverType: 'gp-small' } })), deletes: [] });
    expect(ok).toEqual({ ok: true, checks: [{ ok: true, message: 'needs 3 server(s) of type gp-small in dc1: available (for nodes[0], nodes[1], nodes[2])' }] });
  });
});

import { describe, expect, it } from 'vitest';
import { parseStack } from './parse.js';
import { compileStack, type KindCatalog } from './model.js';
import { diffStack, renderPlan, specHash, type RecordedResource } from './plan.js';
import { isUnknown } from './expr.js';

const kinds: KindCatalog = {
  get: (k) => ({
    'network/Network': { kind: k, replaceOnChange: ['vlan'] },
    'network/Subnet': { kind: k, replaceOnChange: ['network', 'cidr'] },
    'compute/Server': { kind: k, replaceOnChange: ['image', 'networks'] },
    'dns/Record': { kind: k, replaceOnChange: ['name'] },
  } as Record<string, { kind: string; replaceOnChange: string[] }>)[k],
  kinds: () => ['network/Network', 'network/Subnet', 'compute/Server', 'dns/Record'],
};

const DOC = `apiVersion: infraflow.dev/v1
kind: Stack
metadata:
  name: web
spec:
  parameters:
    replicas: { type: integer, default: 2 }
    image: { type: string, default: debian-12 }
  phases:
    - name: network
    - name: compute
  resources:
    net:
      kind: network/Network
      phase: network
      spec: { mtu: 1500 }
    subnet:
      kind: network/Subnet
      phase: network
      spec:
        network: \${ resources.net.id }
        cidr: 10.0.0.0/24
    vm:
      kind: compute/Server
      phase: compute
      count: \${ params.replicas }
      spec:
        name: web-\${ count.index }
        image: \${ params.image }
        flavor: small
        networks: [{ subnet: "\${ resources.subnet.id }" }]
    dns:
      kind: dns/Record
      phase: compute
      spec:
        name: www
        values: \${ resources.vm.map(v, v.outputs.ip) }
`;

function record(model: ReturnType<typeof compileStack>, plan: ReturnType<typeof diffStack>): RecordedResource[] {
  // pretend the plan was applied: outputs derived from the address
  const out: RecordedResource[] = [];
  const state = new Map<string, RecordedResource>();
  let order = 0;
  for (const ch of plan.changes) {
    if (ch.action === 'delete') continue;
    const node = model.resources.get(ch.resource)!;
    const rec: RecordedResource = {
      address: ch.address, resource: ch.resource, kind: ch.kind, resourceId: `res_${ch.address}`, spec: {}, specHash: '',
      outputs: { ip: `10.0.0.${order + 10}` }, status: 'ready', phase: node.phase, dependsOn: node.deps, order: order++, drift: null, createBeforeDestroy: false, updatedAt: 0,
    };
    state.set(ch.address, rec);
    out.push(rec);
  }
  return out;
}

/** Applies a plan "perfectly": re-diff with recorded state until specs are known, as apply resolves them in order. */
function converge(text: string, params?: Record<string, unknown>): RecordedResource[] {
  const model = compileStack(parseStack(text, { file: 'web.yaml' }), { kinds, ...(params ? { params } : {}) });
  const plan = diffStack(model, []);
  let recs = record(model, plan);
  // resolve real specs now that ids/outputs exist
  for (let i = 0; i < 3; i++) {
    const p = diffStack(model, recs);
    const byAddr = new Map(recs.map((r) => [r.address, r]));
    for (const ch of p.changes) {
      const r = byAddr.get(ch.address)!;
      if (ch.after) {
        r.spec = ch.after;
        r.specHash = specHash(ch.after);
      }
    }
    recs = [...byAddr.values()];
  }
  return recs;
}

describe('stack plan', () => {
  it('plans creates in dependency and phase order with unknown outputs', () => {
    const model = compileStack(parseStack(DOC, { file: 'web.yaml' }), { kinds });
    expect(model.order).toEqual(['net', 'subnet', 'vm', 'dns']);
    expect(model.instanceCount).toBe(5);
    const plan = diffStack(model, []);
    expect(plan.summary).toEqual({ create: 5, update: 0, replace: 0, delete: 0, noop: 0 });
    expect(plan.changes.map((c) => c.address)).toEqual(['net', 'subnet', 'vm[0]', 'vm[1]', 'dns']);
    const vm0 = plan.changes[2]!;
    expect(vm0.after!.name).toBe('web-0');
    expect(vm0.after!.image).toBe('debian-12');
    expect(isUnknown((vm0.after!.networks as any[])[0].subnet)).toBe(true);
    const text = renderPlan(plan);
    expect(text).toContain('+ resource "compute/Server" vm[1] {');
    expect(text).toContain('name = "web-1"');
    expect(text).toContain('(known after apply)');
    expect(text).toContain('Plan: 5 to add, 0 to change, 0 to destroy');
  });

  it('a converged stack plans no changes', () => {
    const recs = converge(DOC);
    const model = compileStack(parseStack(DOC), { kinds });
    const plan = diffStack(model, recs);
    expect(plan.summary).toEqual({ create: 0, update: 0, replace: 0, delete: 0, noop: 5 });
    expect(renderPlan(plan)).toContain('No changes');
  });

  it('update in place, replace naming the forcing field, delete, and create on scale', () => {
    const recs = converge(DOC);
    const edited = DOC.replace('mtu: 1500', 'mtu: 9000').replace('debian-12', 'debian-13').replace('default: 2 }', 'default: 3 }');
    const model = compileStack(parseStack(edited), { kinds });
    const plan = diffStack(model, recs);
    const by = Object.fromEntries(plan.changes.map((c) => [c.address, c]));
    expect(by.net!.action).toBe('update');
    expect(by.net!.changes).toEqual([{ path: 'mtu', before: 1500, after: 9000 }]);
    expect(by['vm[0]']!, JSON.stringify(by['vm[0]'])).toMatchObject({ action: 'replace' });
    expect(by['vm[0]']!.replaceFields).toEqual(['image']);
    expect(by['vm[2]']!.action).toBe('create');
    // dns reads every vm's outputs: some are replaced, so its values are unknown → update
    expect(by.dns!.action).toBe('update');
    expect(renderPlan(plan)).toContain('# forces replacement');

    const shrunk = compileStack(parseStack(DOC.replace('default: 2 }', 'default: 1 }')), { kinds });
    const p2 = diffStack(shrunk, recs);
    const del = p2.changes.filter((c) => c.action === 'delete');
    expect(del.map((c) => c.address)).toEqual(['vm[1]']);
    expect(p2.summary.delete).toBe(1);
  });

  it('a changed kind and a failed earlier apply both replace; drift updates', () => {
    const recs = converge(DOC);
    recs.find((r) => r.address === 'vm[1]')!.status = 'failed';
    recs.find((r) => r.address === 'net')!.drift = ['mtu'];
    const model = compileStack(parseStack(DOC), { kinds });
    const plan = diffStack(model, recs);
    const by = Object.fromEntries(plan.changes.map((c) => [c.address, c]));
    expect(by['vm[1]']!.action).toBe('replace');
    expect(by['vm[1]']!.reason).toContain('failed');
    expect(by.net!.action).toBe('update');
    expect(by.net!.reason).toBe('drift in mtu');
  });

  it('destroy plans in reverse dependency and phase order', () => {
    const recs = converge(DOC);
    const model = compileStack(parseStack(DOC), { kinds });
    const plan = diffStack(model, recs, { destroy: true });
    expect(plan.changes.map((c) => c.address)).toEqual(['dns', 'vm[1]', 'vm[0]', 'subnet', 'net']);
  });

  it('plans a 20k-instance stack in one pass (count expansion of 200 resources)', () => {
    const res: Record<string, unknown> = { net: { kind: 'network/Network', spec: {} } };
    for (let i = 0; i < 200; i++) res[`vm${i}`] = { kind: 'compute/Server', count: 100, spec: { name: 'vm-${ count.index }', net: '${ resources.net.id }' } };
    const doc = { apiVersion: 'infraflow.dev/v1', kind: 'Stack', metadata: { name: 'big' }, spec: { resources: res } };
    const model = compileStack(parseStack(doc), { kinds: { get: (k) => ({ kind: k, replaceOnChange: [] }), kinds: () => [] } });
    expect(model.instanceCount).toBe(20_001);
    const plan = diffStack(model, []);
    expect(plan.summary.create).toBe(20_001);
  });
});

describe('plan text', () => {
  it('shows nested changes as a structured diff: list items added, removed and changed, keys changed, nothing cut', () => {
    const doc = (rules: string) => `apiVersion: infraflow.dev/v1
kind: Stack
metadata: { name: sg }
spec:
  resources:
    web-sg:
      kind: network/Network
      forEach: [a]
      spec:
        rules: ${rules}
        meta: { owner: ops, note: "${'x'.repeat(150)}" }
`;
    const before = compileStack(parseStack(doc('[{ port: 22, cidr: 10.0.0.0/8 }, { port: 80, cidr: 0.0.0.0/0 }, { port: 9000, cidr: 10.1.0.0/16 }]')), { kinds });
    const first = diffStack(before, []);
    const recorded: RecordedResource[] = first.changes.map((c, i) => ({
      address: c.address, resource: c.resource, kind: c.kind, resourceId: `res_${i}`, spec: c.after!, specHash: specHash(c.after), outputs: {}, status: 'ready', phase: 0, dependsOn: [], order: i, drift: null, createBeforeDestroy: false, updatedAt: 0,
    }));
    const after = compileStack(parseStack(doc('[{ port: 22, cidr: 10.0.0.0/8 }, { port: 443, cidr: 0.0.0.0/0 }, { port: 8443, cidr: 10.2.0.0/16 }]').replace('owner: ops', 'owner: web')), { kinds });
    const text = renderPlan(diffStack(after, recorded));
    expect(text).toContain('~ resource "network/Network" web-sg["a"] {');
    expect(text).not.toContain('"web-sg[');
    const body = text.slice(text.indexOf('~ rules = ['), text.indexOf('Plan:'));
    expect(body).toContain('~ port = 80 -> 443');
    expect(body).toContain('# (1 unchanged item hidden)');
    expect(text).toContain('~ meta.owner = "ops" -> "web"');
    expect(body).toContain('~ cidr = "10.1.0.0/16" -> "10.2.0.0/16"');
    expect(body).not.toContain('...');
    const removedAdded = renderPlan(diffStack(compileStack(parseStack(doc('[{ port: 22, cidr: 10.0.0.0/8 }]')), { kinds }), recorded));
    expect(removedAdded).toMatch(/- \{\n\s+- port = 80\n\s+- cidr = "0\.0\.0\.0\/0"\n\s+\}/);
  });
});

import { describe, expect, it } from 'vitest';
import { parseStack } from './parse.js';
import { compileStack, type KindCatalog } from './model.js';
import { InfraflowError } from '../core/errors.js';

const kinds: KindCatalog = {
  get: (k) => (['network/Network', 'compute/Server'].includes(k) ? { kind: k, replaceOnChange: [] } : undefined),
  kinds: () => ['network/Network', 'compute/Server'],
};

function err(fn: () => unknown): InfraflowError {
  try {
    fn();
  } catch (e) {
    if (e instanceof InfraflowError) return e;
    throw e;
  }
  throw new Error('expected an error');
}

const head = 'apiVersion: infraflow.dev/v1\nkind: Stack\nmetadata:\n  name: s\nspec:\n';

describe('stack documents: bad input is named precisely', () => {
  it('a schema error names file, line and column', () => {
    const text = `${head}  resources:\n    net:\n      kind: network/Network\n      spec: {}\n      count: -1\n`;
    const e = err(() => parseStack(text, { file: 'bad.yaml' }));
    expect(e.code).toBe('stacks.invalid_document');
    expect(e.message).toMatch(/^bad\.yaml:10:14: spec\.resources\.net\.count: /);
    expect(e.details).toMatchObject({ file: 'bad.yaml', line: 10, column: 14 });
  });

  it('an unknown field is named at its key', () => {
    const text = `${head}  resources:\n    net:\n      kind: network/Network\n      sepc: {}\n`;
    const e = err(() => parseStack(text, { file: 'bad.yaml' }));
    expect(e.message).toBe('bad.yaml:9:7: spec.resources.net.sepc: unknown field "sepc"');
  });

  it('a YAML syntax error names its position', () => {
    const e = err(() => parseStack(`${head}  resources: [\n`, { file: 'x.yaml' }));
    expect(e.code).toBe('stacks.syntax_error');
    expect(e.message).toMatch(/^x\.yaml:\d+:\d+: /);
  });

  it('JSON documents are accepted with positions too', () => {
    const json = JSON.stringify({ apiVersion: 'infraflow.dev/v1', kind: 'Stack', metadata: { name: 'Bad_Name' } }, null, 2);
    const e = err(() => parseStack(json, { file: 's.json' }));
    expect(e.message).toMatch(/^s\.json:5:13: metadata\.name: must be lowercase/);
  });

  it('a cycle is named by its members', () => {
    const text = `${head}  resources:
    a: { kind: network/Network, spec: { x: "\${ resources.b.id }" } }
    b: { kind: network/Network, spec: { x: "\${ resources.c.id }" } }
    c: { kind: network/Network, dependsOn: [a] }
    d: { kind: network/Network }
`;
    const e = err(() => compileStack(parseStack(text, { file: 'c.yaml' }), { kinds }));
    expect(e.code).toBe('stacks.dependency_cycle');
    expect(e.message).toContain('dependency cycle: a → b → c → a');
    expect(e.message).toMatch(/^c\.yaml:7:/);
    expect(e.details!.cycle).toEqual(['a', 'b', 'c', 'a']);
  });

  it('an unknown reference and an unknown kind are named', () => {
    const ref = `${head}  resources:\n    a:\n      kind: network/Network\n      spec:\n        x: "net-\${ resources.nope.outputs.id }"\n`;
    const e1 = err(() => compileStack(parseStack(ref, { file: 'r.yaml' }), { kinds }));
    expect(e1.code).toBe('stacks.unknown_reference');
    expect(e1.message).toMatch(/^r\.yaml:10:12: spec\.resources\.a\.spec\.x: unknown resource "nope"/);
    const kind = `${head}  resources:\n    a:\n      kind: compute/Sever\n`;
    const e2 = err(() => compileStack(parseStack(kind, { file: 'k.yaml' }), { kinds }));
    expect(e2.code).toBe('stacks.unknown_kind');
    expect(e2.message).toContain('k.yaml:8:13');
    expect(e2.message).toContain('unknown kind "compute/Sever"');
    const param = `${head}  resources:\n    a: { kind: network/Network, count: "\${ params.n }" }\n`;
    expect(err(() => compileStack(parseStack(param), { kinds })).message).toContain('unknown parameter "n"');
  });

  it('expressions are CEL, never eval; syntax errors are positioned', () => {
    const text = `${head}  resources:\n    a:\n      kind: network/Network\n      spec: { x: "\${ 1 + }" }\n`;
    const e = err(() => compileStack(parseStack(text, { file: 'e.yaml' }), { kinds }));
    expect(e.code).toBe('stacks.invalid_expression');
    expect(e.message).toContain('e.yaml:9:18');
    const evil = `${head}  resources:\n    a:\n      kind: network/Network\n      spec: { x: "\${ process.exit(1) }" }\n`;
    expect(err(() => compileStack(parseStack(evil), { kinds })).message).toContain('unknown variable "process"');
  });

  it('a resource may not depend on a later phase', () => {
    const text = `${head}  phases: [{ name: one }, { name: two }]
  resources:
    a: { kind: network/Network, phase: one, dependsOn: [b] }
    b: { kind: network/Network, phase: two }
`;
    const e = err(() => compileStack(parseStack(text), { kinds }));
    expect(e.code).toBe('stacks.phase_order');
    expect(e.message).toContain('resource a (phase one) depends on b, which is in the later phase two');
  });

  it('parameters are typed; forEach and when expand', () => {
    const text = `${head}  parameters:
    zones: { type: list, default: [a, b] }
    enabled: { type: boolean, default: false }
  resources:
    n:
      kind: network/Network
      forEach: \${ params.zones }
      spec: { zone: "\${ each.value }", name: "n-\${ each.key }" }
    opt:
      kind: network/Network
      when: params.enabled
`;
    const m = compileStack(parseStack(text), { kinds });
    expect(m.resources.get('n')!.instances.map((i) => i.address)).toEqual(['n["a"]', 'n["b"]']);
    expect(m.resources.get('opt')!.instances).toEqual([]);
    const m2 = compileStack(parseStack(text), { kinds, params: { enabled: true } });
    expect(m2.resources.get('opt')!.instances.length).toBe(1);
    expect(err(() => compileStack(parseStack(text), { kinds, params: { enabled: 'yes' } })).message).toBe('parameter enabled: must be of type boolean');
    expect(err(() => compileStack(parseStack(text), { kinds, params: { nope: 1 } })).code).toBe('stacks.unknown_parameter');
  });

  it('an empty stack with only a workflow is valid; step references are checked', () => {
    const text = `${head}  workflows:
    postDeploy:
      - { name: hello, type: shell, script: "echo hi" }
      - { name: tell, type: notify, url: "http://x", data: { out: "\${ steps.hello.stdout }" } }
`;
    const m = compileStack(parseStack(text), { kinds });
    expect(m.instanceCount).toBe(0);
    expect(m.workflows.postDeploy.length).toBe(2);
    const bad = text.replace('steps.hello', 'steps.later');
    expect(err(() => compileStack(parseStack(bad), { kinds })).message).toContain('steps.later is not an earlier step');
  });
});

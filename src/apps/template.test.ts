import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadTemplate, manifestsToYaml, renderTemplate, resolveValues } from './template.js';

const dir = join(import.meta.dirname, '../../examples/apps/web');
const webFiles = () => Object.fromEntries(readdirSync(dir).map((f) => [f, readFileSync(join(dir, f), 'utf8')]));
const render = (files: Record<string, string>, values: string) => {
  const t = loadTemplate(files);
  return renderTemplate(t, resolveValues(t, values, 'values.yaml'), { name: 'shop', namespace: 'prod' });
};

describe('app templates', () => {
  it('renders the example with values, defaults, $each and $if', () => {
    const ms = render(webFiles(), 'image: nginx:1.27\nenv: { A: "1", B: two }\n');
    expect(ms.map((m) => m.object.kind)).toEqual(['Deployment', 'Service', 'HorizontalPodAutoscaler']);
    const d = ms[0]!.object;
    expect(d.metadata).toMatchObject({ name: 'shop', namespace: 'prod' });
    expect(d.spec.replicas).toBe(2);
    expect(d.spec.template.spec.containers[0].env).toEqual([{ name: 'A', value: '1' }, { name: 'B', value: 'two' }]);
    expect(d.spec.template.spec.containers[0].ports[0].containerPort).toBe(8080);
    expect(ms[2]!.object.spec.maxReplicas).toBe(10);
    const off = render(webFiles(), 'image: nginx:1.27\nautoscaling: { enabled: false }\n');
    expect(off.map((m) => m.object.kind)).toEqual(['Deployment', 'Service']);
    expect(manifestsToYaml(ms)).toContain('# Source: hpa.yaml:1');
  });

  it('values failing the schema name the values file, line and parameter', () => {
    const t = loadTemplate(webFiles());
    expect(() => resolveValues(t, 'image: nginx\nreplicas: -1\n', 'values.yaml')).toThrow('values.yaml:2: replicas: must be >= 0 (got -1)');
    expect(() => resolveValues(t, 'image: nginx\nreplicas: two\n', 'values.yaml')).toThrow('values.yaml:2: replicas: must be an integer (got "two")');
    expect(() => resolveValues(t, 'replicas: 3\n', 'values.yaml')).toThrow('values.yaml: image: required (container image, e.g. nginx:1.27)');
    expect(() => resolveValues(t, 'image: x\nreplicaz: 3\n', 'values.yaml')).toThrow(/values.yaml:2: replicaz: unknown parameter \(template web has: image, replicas/);
    expect(() => resolveValues(t, 'image: x\ncpu: lots\n', 'values.yaml')).toThrow('values.yaml:2: cpu: must match ^[0-9]+m?$ (got "lots")');
    expect(() => resolveValues(t, 'image: [x\n', 'values.yaml')).toThrow(/^values.yaml:\d+: /);
  });

  it('template errors name the file and line', () => {
    const files = webFiles();
    expect(() => loadTemplate({ ...files, 'deployment.yaml': files['deployment.yaml']!.replace('image: ${ params.image }', 'image: ${ params.image + }') })).toThrow(/^deployment\.yaml:16: invalid expression "params.image \+"/);
    expect(() => loadTemplate({ ...files, 'deployment.yaml': files['deployment.yaml']!.replace('image: ${ params.image }', 'image: ${ values.image }') })).toThrow(/^deployment\.yaml:16: unknown variable "values"/);
    expect(() => loadTemplate({ ...files, 'hpa.yaml': 'kind: [\n' })).toThrow(/^hpa\.yaml:\d+: /);
    expect(() => loadTemplate({ 'template.yaml': 'name: Bad_Name\n', 'a.yaml': 'x: 1' })).toThrow('template.yaml:1: name must be a lowercase DNS label (got "Bad_Name")');
    expect(() => loadTemplate({ 'template.yaml': 'name: ok\nparameters:\n  n: { type: int }\n', 'a.yaml': 'x: 1' })).toThrow('template.yaml:3: parameter n: type must be one of');
    // evaluation errors too: a missing field of a map value
    const t = loadTemplate({ ...files, 'hpa.yaml': files['hpa.yaml']!.replace('params.autoscaling.maxReplicas', 'params.autoscaling.maxReplica') });
    expect(() => renderTemplate(t, resolveValues(t, 'image: x', 'v'), { name: 'a', namespace: 'b' })).toThrow(/^hpa\.yaml:9: /);
  });

  it('rendered objects the cluster would refuse are refused before anything is applied', () => {
    expect(() => render(webFiles(), 'image: x\nautoscaling: { enabled: true, minReplicas: 5, maxReplicas: 2, targetCPUUtilization: 60 }\n')).toThrow('hpa.yaml:1: HorizontalPodAutoscaler shop: minReplicas (5) must not be greater than maxReplicas (2)');
    expect(() => render(webFiles(), 'image: x\nautoscaling: { enabled: true, minReplicas: 1, maxReplicas: 2, targetCPUUtilization: 0 }\n')).toThrow('metrics[0].target: the target must be > 0 (got 0)');
    const files = webFiles();
    expect(() => render({ ...files, 'deployment.yaml': files['deployment.yaml']!.replace('namespace', 'namespace').replace('  name: ${ instance.name }\n  labels', '  name: ${ instance.name }\n  namespace: other\n  labels') }, 'image: x')).toThrow('deployment.yaml:1: Deployment shop is in namespace other, but the app deploys to prod');
  });
});

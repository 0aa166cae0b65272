import { describe, expect, it } from 'vitest';
import { parseStack } from './parse.js';
import { compileStack } from './model.js';
import { diffStack } from './plan.js';
import { resourceKinds } from './index.js';
import { InfraflowError } from '../core/errors.js';

/**
 * Plan validates every resolved spec, also those holding values known only
 * after apply: the unknown value stands in for itself and every check that
 * does not depend on it still runs. Before, a spec with any unknown value was
 * not validated at all: plan passed, apply created the network, then failed
 * on the security group and left the stack half-built.
 */
function err(fn: () => unknown): InfraflowError {
  try {
    fn();
  } catch (e) {
    if (e instanceof InfraflowError) return e;
    throw e;
  }
  throw new Error('expected an error');
}

const doc = (rule: string) => `apiVersion: infraflow.dev/v1
kind: Stack
metadata:
  name: s
spec:
  resources:
    back-net:
      kind: network/Network
      spec: {}
    back-subnet:
      kind: network/Subnet
      spec:
        network: \${ resources["back-net"].outputs.id }
        cidr: 10.1.0.0/24
    db-sg:
      kind: network/SecurityGroup
      spec:
        rules:
          - ${rule}
`;

const plan = (text: string) => diffStack(compileStack(parseStack(text, { file: 'app.yaml' }), { kinds: resourceKinds }), []);

describe('plan validates specs with values known after apply', () => {
  it('an unknown key beside a reference is refused at plan, naming resource, file:line and field', () => {
    const e = err(() => plan(doc('{ protocol: tcp, portMin: 5432, portMax: 5432, remoteCidrr: "10.0.0.0/8", description: \'${ resources["back-net"].outputs.id }\' }')));
    expect(e.status).toBe(400);
    expect(e.code).toBe('stacks.invalid_spec');
    expect(e.message).toMatch(/^app\.yaml:19:\d+: spec\.resources\.db-sg\.spec\.rules\[0\]\.remoteCidrr: resource db-sg \(network\/SecurityGroup\): unknown field "remoteCidrr"/);
    expect(e.details).toMatchObject({ resource: 'db-sg', line: 19, errors: [{ field: 'spec.resources.db-sg.spec.rules[0].remoteCidrr' }] });
  });

  it('a wrong type beside a reference is refused; the referencing field itself is not', () => {
    const e = err(() => plan(doc('{ protocol: tcp, portMin: "many", description: \'${ resources["back-net"].outputs.id }\' }')));
    expect(e.code).toBe('stacks.invalid_spec');
    expect(e.message).toContain('spec.resources.db-sg.spec.rules[0].portMin');
    const ok = plan(doc('{ protocol: tcp, portMin: 5432, portMax: 5432, description: \'${ resources["back-net"].outputs.id }\' }'));
    expect(ok.summary.create).toBe(3);
  });

  it('an error in a spec without references names the resource too', () => {
    const text = doc('{ protocol: tcp }').replace('spec: {}', 'spec: { mtuu: 1500 }');
    const e = err(() => plan(text));
    expect(e.message).toMatch(/^app\.yaml:9:\d+: spec\.resources\.back-net\.spec\.mtuu: resource back-net \(network\/Network\): unknown field "mtuu"/);
  });
});

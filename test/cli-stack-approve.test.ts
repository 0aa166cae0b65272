import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openTestStore, type TestDb } from './support/dialects.js';
import { makeHarness, type Harness } from './api-harness.js';
import { stackHarness, type StackHarness } from './fixtures/stacks-harness.js';
import { runCliCaptured } from './fixtures/cli-run.js';
import { until } from '../src/engine/test-helpers.js';

const doc = (name: string) => `apiVersion: infraflow.dev/v1
kind: Stack
metadata: { name: ${name}, project: default }
spec:
  resources:
    sg: { kind: network/SecurityGroup, spec: { description: gated } }
  workflows:
    preDeploy:
      - { name: ask, type: approval, message: "open the firewall?", timeoutSeconds: 3600 }
`;

/**
 * `infraflow stack approve | --reject` against a listening server with the
 * real stacks module: the apply parked on its approval step goes on (or
 * fails) once answered; a step nobody waits for is a clear error.
 */
describe('infraflow stack approve', () => {
  let t: TestDb;
  let s: StackHarness;
  let h: Harness;
  let url: string;
  let dir: string;

  const run = (args: string[]) => runCliCaptured(args, { INFRAFLOW_CLI_CONFIG: join(dir, 'cli.yaml'), INFRAFLOW_URL: url, INFRAFLOW_TOKEN: h.adminToken, INFRAFLOW_PROJECT: 'default' });
  const parked = async (name: string) => {
    const file = join(dir, `${name}.yaml`);
    writeFileSync(file, doc(name));
    const a = await run(['apply', '-f', file, '--no-wait']);
    expect(a.code, a.err).toBe(0);
    const stack = await s.stacks.get(name, { project: 'default' });
    await until(async () => !!stack.lastRunId && (await s.engine.get((await s.stacks.get(name, { project: 'default' })).lastRunId!)).status === 'waiting', 'the apply to wait for approval');
    return (await s.stacks.get(name, { project: 'default' })).lastRunId!;
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'infraflow-cli-approve-'));
    t = await openTestStore('sqlite');
    s = await stackHarness(t.store);
    h = await makeHarness('sqlite', { engine: s.engine, t, areas: { resources: s.resources, stacks: s.stacks } });
    url = await h.app.listen({ host: '127.0.0.1', port: 0 });
  });
  afterAll(async () => {
    await h?.close();
    await s?.close();
    await t?.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('approves: the apply goes on and succeeds', async () => {
    const runId = await parked('gated-yes');
    const r = await run(['stack', 'approve', 'gated-yes', 'ask', '--comment', 'change ticket 42']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^stack gated-yes: approved /);
    expect((await s.engine.result(runId, { timeoutMs: 30_000 })).status).toBe('succeeded');
    const step = (await s.engine.timeline(runId)).find((x) => x.name === 'preDeploy:ask');
    expect(step?.output).toMatchObject({ approved: true, comment: 'change ticket 42' });
  });

  it('rejects: the apply fails naming the step; answering again is a clear one-line error', async () => {
    const runId = await parked('gated-no');
    const r = await run(['stack', 'approve', 'gated-no', 'ask', '--reject']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^stack gated-no: rejected /);
    const done = await s.engine.result(runId, { timeoutMs: 30_000 });
    expect(done.status).toBe('failed');
    expect(done.error?.message).toMatch(/ask/);
    const again = await run(['stack', 'approve', 'gated-no', 'ask']);
    expect(again.code).not.toBe(0);
    expect(again.err.trim().split('\n')).toHaveLength(1);
  });
});

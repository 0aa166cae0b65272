import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCliCaptured } from './fixtures/cli-run.js';
import { resourceHarness, type ResourceHarness } from './fixtures/resource-harness.js';

/**
 * `infraflow resource create | update | delete` against a listening server
 * with the real engine and simulator: from a file and from flags, --wait to
 * the end, merge patches and labels, and one-line errors with exit codes.
 */
describe('infraflow resource', () => {
  let rh: ResourceHarness;
  let url: string;
  let dir: string;
  let token: string;

  const run = (args: string[]) => runCliCaptured(args, { INFRAFLOW_CLI_CONFIG: join(dir, 'cli.yaml'), INFRAFLOW_URL: url, INFRAFLOW_TOKEN: token, INFRAFLOW_PROJECT: 'cli' });

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'infraflow-cli-res-'));
    rh = await resourceHarness('sqlite');
    await rh.h.iam.createProject({ name: 'cli' });
    token = (await rh.h.userWith('cli-res-member', 'member', { project: 'cli' })).token;
    url = await rh.h.app.listen({ host: '127.0.0.1', port: 0 });
  });
  afterAll(async () => {
    await rh?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('creates from a file and waits, updates with a merge patch and labels, deletes', async () => {
    const file = join(dir, 'sg.yaml');
    writeFileSync(file, 'kind: network/SecurityGroup\nname: ssh\nlabels: { team: ops }\nspec:\n  description: ssh in\n  rules:\n    - { direction: ingress, protocol: tcp, portMin: 22, portMax: 22, remoteCidr: 10.0.0.0/8 }\n');
    const c = await run(['resource', 'create', '-f', file, '--wait']);
    expect(c.code, c.err).toBe(0);
    const m = /^network\/SecurityGroup ssh \((res_\w+)\) ready, backend id (\S+)\n$/.exec(c.out);
    expect(m, c.out).toBeTruthy();
    const id = m![1]!;
    expect(c.err).toContain('succeeded');

    const u = await run(['resource', 'update', id, '--spec', '{"description": "ssh from the office"}', '--label', 'team-', '--label', 'env=prod', '--wait', '-o', 'json']);
    expect(u.code, u.err).toBe(0);
    const after = JSON.parse(u.out);
    expect(after).toMatchObject({ generation: 2, labels: { env: 'prod' }, spec: { description: 'ssh from the office', rules: [{ portMin: 22 }] }, status: { phase: 'ready' } });
    expect(after.labels.team).toBeUndefined();
    const same = await run(['resource', 'update', id, '--spec', '{"description": "ssh from the office"}']);
    expect(same.out).toContain('nothing to change');

    const stale = await run(['resource', 'update', id, '--spec', '{"description": "x"}', '--if-generation', '1']);
    expect(stale.code).toBe(5);
    expect(stale.err).toMatch(/^infraflow: .*generation 2.*\n$/);

    const d = await run(['resource', 'delete', id]);
    expect(d.code, d.err).toBe(0);
    const runId = /delete in run (run_\w+)/.exec(d.out)?.[1];
    expect(runId, d.out).toBeTruthy();
    expect((await rh.engine.result(runId!)).status).toBe('succeeded');
    expect((await rh.resources.get(id)).status.phase).toBe('deleted');
  });

  it('creates from flags; bad input is one line with exit code 2', async () => {
    const n = await run(['resource', 'create', '--kind', 'network/Network', '--name', 'flat', '--label', 'a=b', '-w']);
    expect(n.code, n.err).toBe(0);
    expect(n.out).toMatch(/^network\/Network flat \(res_\w+\) ready/);
    const cases: [string[], RegExp][] = [
      [['resource', 'create', '--kind', 'network/Network'], /needs a kind and a name/],
      [['resource', 'create', '--kind', 'network/Network', '--name', 'x', '--spec', '[1]'], /--spec: expected a JSON object/],
      [['resource', 'create', '--kind', 'network/Subnet', '--name', 'bad', '--spec', '{"network": "n", "cidr": "10.0.0.0/33"}'], /cidr/],
      [['resource', 'create', '--kind', 'compute/Toaster', '--name', 't'], /unknown kind compute\/Toaster/],
      [['resource', 'update', 'res_x'], /nothing to change/],
      [['resource', 'update', 'res_x', '--label', 'novalue'], /--label novalue: use key=value/],
    ];
    for (const [args, msg] of cases) {
      const r = await run(args);
      expect(r.code, `${args.join(' ')}: ${r.err}`).toBe(2);
      expect(r.err).toMatch(msg);
      expect(r.err.trim().split('\n')).toHaveLength(1);
    }
    expect((await run(['resource', 'delete', 'res_0000000000000nope'])).code).toBe(4);
  });
});

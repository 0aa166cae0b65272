import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { fulfillmentWorld, type FulWorld } from './fixtures/fulfillment-world.js';
import { makeHarness, type Harness } from './api-harness.js';
import { runCliCaptured } from './fixtures/cli-run.js';

/** `infraflow cluster …` against a listening server (SQLite; the routes are tested on both databases in test/api-fulfillment.test.ts). */
describe('infraflow cluster', () => {
  let w: FulWorld;
  let h: Harness;
  let url: string;
  let dir: string;
  const run = (args: string[]) => runCliCaptured(args, { INFRAFLOW_CLI_CONFIG: join(dir, 'cli.yaml'), INFRAFLOW_URL: url, INFRAFLOW_TOKEN: h.adminToken, INFRAFLOW_PROJECT: 'team-a' });

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'infraflow-cli-cluster-'));
    w = await fulfillmentWorld('sqlite', { agents: 5 });
    h = await makeHarness('sqlite', { t: { store: w.ctx.store, url: w.databaseUrl, cleanup: async () => {} }, engine: w.ctx.engine, areas: { fulfillment: w.ctx.fulfillment } });
    await h.iam.createProject({ name: 'team-a' });
    url = await h.app.listen({ host: '127.0.0.1', port: 0 });
  });
  afterAll(async () => {
    await h?.close();
    await w?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('templates, create --watch, list, get, kubeconfig, password, scale, timeline, delete', async () => {
    const t = await run(['cluster', 'templates']);
    expect(t.code, t.err).toBe(0);
    expect(t.out).toMatch(/ocp-4\.17-small .*costCenter\*/);
    const one = await run(['cluster', 'templates', 'ocp-4.17-small']);
    expect(one.out).toContain('costCenter (string, required)');
    expect(one.out).toContain('workers: 3 x general.m1 (worker)');

    const c = await run(['cluster', 'create', 'blue', '-t', 'ocp-4.17-small', '--param', 'costCenter=cc-9', '--param', 'ingressReplicas=2', '--nodes', 'workers=2', '--watch']);
    expect(c.code, c.err + c.out).toBe(0);
    expect(c.out).toMatch(/cluster blue \(cls_\w+\) Progressing: reservation rsv_/);
    for (const s of ['accepted', 'agents', 'network', 'addresses', 'dns', 'storage', 'install', 'controlPlane', 'workers', 'postInstall', 'validation', 'ready']) expect(c.out).toContain(`${s} succeeded`);
    expect(c.out).toMatch(/cluster cls_\w+ Ready/);

    const l = await run(['cluster', 'list']);
    expect(l.out).toMatch(/blue +team-a +ocp-4\.17-small +Ready +workers=2\/2/);
    const g = await run(['cluster', 'get', 'blue']);
    expect(g.code, g.err).toBe(0);
    expect(g.out).toContain('hub: hub-1');
    expect(g.out).toMatch(/✔ validation +succeeded/);
    const kc = await run(['cluster', 'kubeconfig', 'blue']);
    expect(kc.code, kc.err).toBe(0);
    expect((parseYaml(kc.out) as { clusters: { cluster: { server: string } }[] }).clusters[0]!.cluster.server).toBe('https://api.blue.clusters.example.com:6443');
    const pw = await run(['cluster', 'password', 'blue']);
    expect(pw.out).toMatch(/^kubeadmin \S{10,}\n$/);

    const sc = await run(['cluster', 'scale', 'blue', '--nodes', 'workers=3', '--watch']);
    expect(sc.code, sc.err + sc.out).toBe(0);
    expect(sc.out).toContain('revision 2');
    expect(sc.out).toContain('drain succeeded');
    expect((await run(['cluster', 'list'])).out).toMatch(/workers=3\/3 .* 2\s*$/m);
    const tl = await run(['cluster', 'timeline', 'blue']);
    expect(tl.out).toContain('stage.succeeded');

    const d = await run(['cluster', 'delete', 'blue', '--watch']);
    expect(d.code, d.err + d.out).toBe(0);
    expect(d.out).toMatch(/cluster cls_\w+ Deleted/);
  }, 120_000);

  it('bad input: one readable line and a usage exit code', async () => {
    const bad = await run(['cluster', 'create', 'x', '-t', 'ocp-4.17-small', '--nodes', 'workers']);
    expect(bad.code).toBe(2);
    expect(bad.err.trim().split('\n')).toHaveLength(1);
    expect(bad.err).toContain('--nodes workers: use SET=SIZE');
    const unk = await run(['cluster', 'create', 'x', '-t', 'nope']);
    expect(unk.code).toBe(2);
    expect(unk.err).toContain('spec.template: unknown template "nope"');
    expect(unk.err.trim().split('\n')).toHaveLength(1);
    const miss = await run(['cluster', 'create', 'x', '-t', 'ocp-4.17-small']);
    expect(miss.err).toContain('spec.templateParameters.costCenter: required');
    const big = await run(['cluster', 'create', 'x', '-t', 'ocp-4.17-small', '--param', 'costCenter=a', '--nodes', 'workers=9']);
    expect(big.code).toBe(5);
    expect(big.err).toContain('9 server(s) of type general.m1 requested in dc1');
    const nf = await run(['cluster', 'get', 'ghost']);
    expect(nf.code).toBe(4);
  }, 60_000);
});

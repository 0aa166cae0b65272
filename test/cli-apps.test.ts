import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { makeFullHarness, type FullHarness } from './api-fixtures.js';
import { runCli } from '../src/cli/main.js';
import { startResourceRun } from '../src/resources/lifecycle.js';
import { RES } from '../src/providers/sim/kube/index.js';

/**
 * `infraflow app …` and `infraflow sim load` in process against a listening
 * API server with the apps area, the engine's worker and a simulated cluster.
 */
describe('infraflow app commands', () => {
  let h: FullHarness;
  let url: string;
  let dir: string;
  const tpl = join(import.meta.dirname, '../examples/apps/web');

  const run = async (args: string[], token?: string) => {
    let out = '';
    let err = '';
    const sink = (f: (s: string) => void) => new Writable({ write(c, _e, cb) { f(String(c)); cb(); } });
    const code = await runCli(args, {
      out: sink((s) => (out += s)), err: sink((s) => (err += s)), isTty: false,
      env: { INFRAFLOW_CLI_CONFIG: join(dir, 'cli.yaml'), INFRAFLOW_URL: url, INFRAFLOW_TOKEN: token ?? h.adminToken },
      stdin: async () => '',
    });
    return { code, out, err };
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'infraflow-cli-apps-'));
    h = await makeFullHarness('sqlite', { startWorker: true });
    await h.sim.setSpeed(1_000_000);
    await h.apps.start();
    url = await h.app.listen({ host: '127.0.0.1', port: 0 });
    await h.iam.createProject({ name: 'demo' });
    const c = await h.resources.create({ kind: 'container/Cluster', name: 'k1', project: 'demo', spec: { version: '1.30', nodePools: [{ name: 'w', count: 2, flavor: 'SCS-4V-16-50s' }] } });
    expect((await h.engine.result((await startResourceRun(h.engine, 'provision', c)).id, { timeoutMs: 60_000 })).status).toBe('succeeded');
    writeFileSync(join(dir, 'values.yaml'), 'image: nginx:1.27\nreplicas: 2\n');
    writeFileSync(join(dir, 'bad-values.yaml'), 'image: nginx:1.27\nreplicas: -1\n');
  }, 120_000);
  afterAll(async () => {
    await h?.cleanupAll();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('render prints the manifests; bad values and template errors are one line naming file and line', async () => {
    const r = await run(['app', 'render', '-t', tpl, '-f', join(dir, 'values.yaml'), '--name', 'shop']);
    expect(r.code).toBe(0);
    const docs = r.out.split(/^---$/m).filter((d) => d.trim()).map((d) => parseYaml(d));
    expect(docs.map((d) => d.kind)).toEqual(['Deployment', 'Service', 'HorizontalPodAutoscaler']);
    expect(docs[0].spec.template.spec.containers[0].image).toBe('nginx:1.27');
    const bad = await run(['app', 'render', '-t', tpl, '-f', join(dir, 'bad-values.yaml')]);
    expect(bad.code).toBe(2);
    expect(bad.err).toBe('infraflow: bad-values.yaml:2: replicas: must be >= 0 (got -1) [apps.values_invalid]\n');
    const broken = join(dir, 'broken');
    mkdirSync(broken);
    for (const f of readdirSync(tpl)) writeFileSync(join(broken, f), readFileSync(join(tpl, f), 'utf8'));
    writeFileSync(join(broken, 'hpa.yaml'), readFileSync(join(tpl, 'hpa.yaml'), 'utf8').replace('params.autoscaling.maxReplicas', 'params.autoscaling.maxReplicas +'));
    const t = await run(['app', 'render', '-t', broken, '-f', join(dir, 'values.yaml')]);
    expect(t.code).toBe(2);
    expect(t.err).toMatch(/^infraflow: hpa\.yaml:9: invalid expression/);
    expect(t.err.trim().split('\n')).toHaveLength(1);
  });

  it('deploy --wait rolls out; list, status, revisions; bad input applies nothing', async () => {
    const bad = await run(['app', 'deploy', 'shop', '-t', tpl, '-f', join(dir, 'bad-values.yaml'), '--cluster', 'k1', '--project', 'demo']);
    expect(bad.code).toBe(2);
    expect(JSON.parse((await run(['app', 'list', '--project', 'demo', '-o', 'json'])).out)).toEqual({ items: [] });
    const d = await run(['app', 'deploy', 'shop', '-t', tpl, '-f', join(dir, 'values.yaml'), '--cluster', 'k1', '-n', 'shop', '--project', 'demo', '--wait']);
    expect(d.err).not.toMatch(/infraflow: /);
    expect(d.err).toContain('run.succeeded');
    expect(d.code).toBe(0);
    expect(d.out).toContain('app shop: ready, revision 1');
    const s = await run(['app', 'status', 'shop', '--project', 'demo']);
    expect(s.out).toMatch(/condition Available=True RolledOut/);
    expect(s.out).toMatch(/deployment shop ready/);
    expect((await run(['app', 'revisions', 'shop', '--project', 'demo'])).out).toMatch(/1\s+web@1\.0\.0/);
  });

  it('logs, sim load and the kubeconfig', async () => {
    const l = await run(['app', 'logs', 'shop', '--project', 'demo']);
    expect(l.code).toBe(0);
    expect(l.out).toMatch(/\[shop-[a-z0-9]+-[a-z0-9]+\] starting nginx:1\.27/);
    const load = await run(['sim', 'load', 'shop', '300', '--project', 'demo']);
    expect(load.out).toBe('load of app shop set to 300 rps (shop)\n');
    const kube = h.apps.kube.get((await h.resources.getByName('demo', 'container/Cluster', 'k1'))!.status.externalId!)!;
    expect(kube.getLoad('shop', 'shop')).toBe(300);
    expect((await run(['sim', 'load', 'shop', 'lots', '--project', 'demo'])).code).toBe(2);
    const kc = await run(['app', 'kubeconfig', 'k1', '--project', 'demo']);
    const doc = parseYaml(kc.out);
    expect(doc.clusters[0].cluster.server).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/k8s_/);
    expect(doc.users[0].user.token).toMatch(/^\w{40}$/);
    expect(kube.store.list(RES.deploy, 'shop')).toHaveLength(1);
  });

  it('rollback and delete', async () => {
    writeFileSync(join(dir, 'v2.yaml'), 'image: nginx:1.28\n');
    expect((await run(['app', 'deploy', 'shop', '-t', tpl, '-f', join(dir, 'v2.yaml'), '--cluster', 'k1', '-n', 'shop', '--project', 'demo', '--wait'])).out).toContain('revision 2');
    const rb = await run(['app', 'rollback', 'shop', '--project', 'demo', '--wait']);
    expect(rb.out).toContain('rolling back to revision 1');
    expect(rb.out).toContain('app shop: ready, revision 3');
    const del = await run(['app', 'delete', 'shop', '--project', 'demo', '--wait']);
    expect(del.out).toContain('app shop deleted');
    expect((await run(['app', 'status', 'shop', '--project', 'demo'])).code).toBe(4);
  });
});

import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readdirSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { makeFullHarness, type FullHarness } from '../../api-fixtures.js';
import { startResourceRun } from '../../../src/resources/lifecycle.js';

/**
 * The whole path with the real kubectl: a container/Cluster created through
 * Infraflow, an app deployed from the example template, the kubeconfig from
 * the Infraflow API (the cluster's own token), and kubectl seeing the app.
 */

let h: FullHarness;
let dir: string;
let env: NodeJS.ProcessEnv;

function kubectl(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => execFile('kubectl', args, { env, timeout: 120_000 }, (e, out, err) => resolve({ code: e ? ((e as { code?: number }).code ?? 1) : 0, out: String(out), err: String(err) })));
}

beforeAll(async () => {
  const ok = await new Promise<boolean>((resolve) => execFile('sh', ['-c', 'command -v kubectl'], (e) => resolve(!e)));
  if (!ok) throw new Error('kubectl is missing: install Debian package kubernetes-client (listed in .ci/apt/apps.txt)');
  dir = mkdtempSync(join(tmpdir(), 'h15-kubectl-if-'));
  h = await makeFullHarness('sqlite', { startWorker: true });
  await h.sim.setSpeed(1_000_000);
  await h.apps.start();
  await h.iam.createProject({ name: 'demo' });
  const c = await h.resources.create({ kind: 'container/Cluster', name: 'prod', project: 'demo', spec: { version: '1.30', nodePools: [{ name: 'w', count: 2, flavor: 'SCS-4V-16-50s' }] } });
  expect((await h.engine.result((await startResourceRun(h.engine, 'provision', c)).id, { timeoutMs: 60_000 })).status).toBe('succeeded');
  const tdir = join(import.meta.dirname, '../../../examples/apps/web');
  const files = Object.fromEntries(readdirSync(tdir).map((f) => [f, readFileSync(join(tdir, f), 'utf8')]));
  const d = await h.apps.deploy({ project: 'demo', name: 'shop', cluster: 'prod', namespace: 'shop', template: { name: 'web', files }, values: { image: 'nginx:1.27' } });
  expect((await h.engine.result(d.run.id, { timeoutMs: 120_000 })).status).toBe('succeeded');
  const res = await h.req('GET', '/api/v1/apps/clusters/demo/prod/kubeconfig', { token: h.adminToken });
  expect(res.statusCode).toBe(200);
  writeFileSync(join(dir, 'kubeconfig'), res.json().kubeconfig);
  env = { ...process.env, KUBECONFIG: join(dir, 'kubeconfig'), HOME: dir };
}, 180_000);

afterAll(async () => {
  await h?.cleanupAll();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('kubectl with the kubeconfig Infraflow hands out', () => {
  it('sees the cluster\'s nodes and the app Infraflow deployed', async () => {
    const nodes = await kubectl('get', 'nodes', '--no-headers');
    expect(nodes.err).toBe('');
    expect(nodes.out.trim().split('\n')).toHaveLength(2);
    expect((await kubectl('get', 'deploy', 'shop', '-n', 'shop', '-o', 'jsonpath={.status.availableReplicas}')).out).toBe('2');
    expect((await kubectl('get', 'hpa', '-n', 'shop')).out).toMatch(/shop\s+Deployment\/shop/);
    expect((await kubectl('get', 'configmap', '-n', 'shop', '-l', 'apps.infraflow.io/app=shop', '--no-headers')).out).toMatch(/^shop\.v1\s/);
  });

  it('a change made with kubectl shows in the app\'s status (pods crash-looping)', async () => {
    expect((await kubectl('set', 'image', 'deployment/shop', 'app=example/shop:crash', '-n', 'shop')).code).toBe(0);
    await vi.waitFor(async () => {
      const s = await h.apps.status('demo', 'shop');
      expect(s.live!.problems.map((p) => p.reason)).toContain('CrashLoopBackOff');
    }, { timeout: 60_000, interval: 500 });
    expect((await kubectl('get', 'events', '-n', 'shop', '--field-selector', 'reason=BackOff')).out).toContain('Back-off restarting failed container');
  });
});

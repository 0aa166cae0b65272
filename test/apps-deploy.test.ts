import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { silentLogger } from '../src/core/log.js';
import { Engine } from '../src/engine/index.js';
import { SimDatacenter, SimProvider } from '../src/providers/sim/index.js';
import { RES } from '../src/providers/sim/kube/index.js';
import { ProviderRegistry } from '../src/resources/registry.js';
import { ResourceStore } from '../src/resources/store.js';
import { RESOURCE_QUEUE, resourceWorkflows, startResourceRun } from '../src/resources/lifecycle.js';
import { Apps } from '../src/apps/service.js';
import { openTestStore, type TestDb } from './support/dialects.js';

/**
 * Apps end to end on the engine and the simulator: a cluster resource, an app
 * from the example template deployed as a durable run (rollout awaited),
 * upgraded, a failed rollout rolled back, watched, its logs read, load making
 * the HPA scale, and bad input refused with nothing applied.
 */

const dir = join(import.meta.dirname, '../examples/apps/web');
const files = Object.fromEntries(readdirSync(dir).map((f) => [f, readFileSync(join(dir, f), 'utf8')]));

let t: TestDb;
let engine: Engine;
let resources: ResourceStore;
let apps: Apps;
let sim: SimDatacenter;

beforeAll(async () => {
  t = await openTestStore('sqlite');
  engine = new Engine({ store: t.store, logger: silentLogger, pollMs: 20, queues: { [RESOURCE_QUEUE]: { concurrency: 1000, perKey: 1 } } });
  sim = await new SimDatacenter({ store: t.store, config: { speed: 1_000_000 } }).init();
  resources = new ResourceStore(t.store, { engine });
  const registry = new ProviderRegistry({ '*': 'sim' }).register(new SimProvider(sim));
  apps = new Apps({ resources, registry, engine, sim });
  for (const w of resourceWorkflows({ resources, registry })) engine.register(w);
  engine.startWorker();
  await apps.start();
  const c = await resources.create({ kind: 'container/Cluster', name: 'k1', project: 'p1', spec: { version: '1.30', nodePools: [{ name: 'w', count: 2, flavor: 'SCS-4V-16-50s' }] } });
  const run = await startResourceRun(engine, 'provision', c);
  expect((await engine.result(run.id, { timeoutMs: 60_000 })).status).toBe('succeeded');
}, 120_000);

afterAll(async () => {
  await apps?.stop();
  await engine?.stop({ graceful: false });
  await t?.cleanup();
});

const deploy = (values: Record<string, unknown>, o: { name?: string; cluster?: string } = {}) => apps.deploy({ project: 'p1', name: o.name ?? 'shop', cluster: o.cluster ?? 'k1', namespace: 'shop', template: { name: 'web', files }, values });

describe('apps on the simulator', () => {
  it('bad input is refused and nothing is created', async () => {
    await expect(deploy({ replicas: 1 })).rejects.toThrow('values: image: required');
    await expect(deploy({ image: 'nginx', replicas: -3 })).rejects.toThrow('values: replicas: must be >= 0 (got -3)');
    await expect(deploy({ image: 'nginx', autoscaling: { enabled: true, minReplicas: 5, maxReplicas: 2, targetCPUUtilization: 60 } })).rejects.toThrow('minReplicas (5) must not be greater than maxReplicas (2)');
    await expect(deploy({ image: 'nginx', autoscaling: { enabled: true, minReplicas: 1, maxReplicas: 2, targetCPUUtilization: 0 } })).rejects.toThrow('the target must be > 0');
    await expect(deploy({ image: 'nginx' }, { cluster: 'nope' })).rejects.toThrow('cluster: container/Cluster "nope" does not exist in project p1');
    await expect(apps.deploy({ project: 'p1', name: 'x', cluster: 'k1', template: { name: 'web', files: { ...files, 'hpa.yaml': 'a: ${ params. }' } }, values: { image: 'x' } })).rejects.toThrow(/^hpa\.yaml:1: /);
    expect((await apps.list('p1')).length).toBe(0);
  });

  it('deploy is a durable run that waits for the rollout; status shows workloads ready', async () => {
    const { app, run } = await deploy({ image: 'nginx:1.27', env: { GREETING: 'hi' } });
    const done = await engine.result(run.id, { timeoutMs: 120_000 });
    expect(done.status).toBe('succeeded');
    const r = await resources.get(app.id);
    expect(r.status.phase).toBe('ready');
    expect(r.status.outputs.revision).toBe(1);
    expect(r.status.conditions.find((c) => c.type === 'Available')).toMatchObject({ status: 'True', reason: 'RolledOut' });
    const s = await apps.status('p1', 'shop');
    expect(s.live!.workloads).toEqual(expect.arrayContaining([expect.objectContaining({ kind: 'Deployment', name: 'shop', ready: true }), expect.objectContaining({ kind: 'Service', name: 'shop', ready: true })]));
  });

  it('watch shows pods and services; logs read the pods', async () => {
    const seen: string[] = [];
    const stop = await apps.watch('p1', 'shop', (e) => seen.push(`${e.kind} ${e.status}`));
    await vi.waitFor(() => expect(seen).toEqual(expect.arrayContaining(['Pod Running', 'Service Ready'])), { timeout: 30_000 });
    stop();
    const lines: string[] = [];
    await new Promise<void>((resolve, reject) => {
      apps.logs('p1', 'shop', (pod, l) => lines.push(`${pod}: ${l}`), { onEnd: resolve }).catch(reject);
    });
    expect(lines.some((l) => l.endsWith('starting nginx:1.27'))).toBe(true);
  });

  it('load makes the HPA add replicas', async () => {
    await apps.setLoad('p1', 'shop', 400);
    const kube = apps.kube.get((await resources.getByName('p1', 'container/Cluster', 'k1'))!.status.externalId!)!;
    await vi.waitFor(() => expect(kube.store.get(RES.deploy, 'shop', 'shop')!.spec.replicas).toBeGreaterThan(2), { timeout: 60_000, interval: 200 });
    await apps.setLoad('p1', 'shop', 0);
  });

  it('an upgrade to an unreachable registry fails its rollout with the reason; rollback returns to the last good revision', async () => {
    const bad = await deploy({ image: 'registry.invalid/shop:2' });
    const failed = await engine.result(bad.run.id, { timeoutMs: 120_000 });
    expect(failed.status).toBe('failed');
    const r = await resources.get(bad.app.id);
    expect(r.status.phase).toBe('failed');
    expect(r.status.message).toMatch(/revision 2 did not roll out.*(ImagePullBackOff|ErrImagePull)/);
    expect(r.status.message).toContain('roll back with: infraflow app rollback');
    const rb = await apps.rollback('p1', 'shop');
    expect(rb.to).toBe(1);
    expect((await engine.result(rb.run.id, { timeoutMs: 120_000 })).status).toBe('succeeded');
    const after = await resources.get(bad.app.id);
    expect(after.status.phase).toBe('ready');
    expect(after.status.outputs.revision).toBe(3);
    expect((await apps.revisions('p1', 'shop')).map((x) => x.revision)).toEqual([1, 2, 3]);
  });

  it('delete removes the app from the cluster', async () => {
    const { run } = await apps.remove('p1', 'shop');
    expect((await engine.result(run.id, { timeoutMs: 60_000 })).status).toBe('succeeded');
    const kube = apps.kube.get((await resources.getByName('p1', 'container/Cluster', 'k1'))!.status.externalId!)!;
    expect(kube.store.get(RES.deploy, 'shop', 'shop')).toBeUndefined();
    expect(kube.store.list(RES.cm, 'shop')).toEqual([]);
  });
});

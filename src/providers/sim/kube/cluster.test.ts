import { describe, expect, it } from 'vitest';
import { SimKubeCluster, RES, isReady } from './cluster.js';

const deployment = (name: string, o: { replicas?: number; image?: string; cpu?: string } = {}) => ({
  metadata: { name, namespace: 'default', labels: { app: name } },
  spec: {
    replicas: o.replicas ?? 2,
    selector: { matchLabels: { app: name } },
    template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: 'web', image: o.image ?? 'nginx:1.27', ports: [{ containerPort: 80 }], resources: { requests: { cpu: o.cpu ?? '200m', memory: '128Mi' } } }] } },
  },
});

const cluster = (o: Partial<ConstructorParameters<typeof SimKubeCluster>[0]> = {}) => new SimKubeCluster({ name: 'c1', nodes: [{ name: 'c1-w-0', pool: 'w', cpu: 4000, memoryMiB: 8192 }], ...o });

describe('simulated Kubernetes cluster', () => {
  it('a Deployment becomes a ReplicaSet and ready pods; a Service gets endpoints', () => {
    const c = cluster();
    c.store.create(RES.deploy, deployment('web'));
    c.store.create(RES.svc, { metadata: { name: 'web', namespace: 'default' }, spec: { selector: { app: 'web' }, ports: [{ port: 80, targetPort: 80 }] } });
    c.advance(30_000);
    const d = c.store.get(RES.deploy, 'default', 'web')!;
    expect(d.status.availableReplicas).toBe(2);
    expect(d.status.conditions.find((x: { type: string }) => x.type === 'Progressing').reason).toBe('NewReplicaSetAvailable');
    expect(c.store.list(RES.rs, 'default')).toHaveLength(1);
    expect(c.store.get(RES.ep, 'default', 'web')!.subsets[0].addresses).toHaveLength(2);
  });

  it('a new template rolls out a new ReplicaSet and revision; the old one goes to 0', () => {
    const c = cluster();
    c.store.create(RES.deploy, deployment('web', { replicas: 4 }));
    c.advance(30_000);
    c.store.mutate(RES.deploy, 'default', 'web', (o) => (o.spec.template.spec.containers[0].image = 'nginx:1.28'));
    c.advance(60_000);
    const sets = c.store.list(RES.rs, 'default');
    expect(sets).toHaveLength(2);
    const byRev = Object.fromEntries(sets.map((s) => [s.metadata.annotations['deployment.kubernetes.io/revision'], s.spec.replicas]));
    expect(byRev).toEqual({ 1: 0, 2: 4 });
    const pods = c.store.list(RES.pod, 'default');
    expect(pods.every((p) => p.spec.containers[0].image === 'nginx:1.28' && isReady(p))).toBe(true);
  });

  it('unreachable registry -> ErrImagePull then ImagePullBackOff, with events', () => {
    const c = cluster({ unreachableRegistries: ['registry.internal:5000'] });
    c.store.create(RES.deploy, deployment('app', { replicas: 1, image: 'registry.internal:5000/team/app:1' }));
    c.advance(20_000);
    const pod = c.store.list(RES.pod, 'default')[0]!;
    expect(pod.status.containerStatuses[0].state.waiting.reason).toMatch(/ImagePullBackOff|ErrImagePull/);
    const reasons = c.store.list(RES.event, 'default').map((e) => `${e.reason}: ${e.message}`);
    expect(reasons.some((r) => r.includes('Failed to pull image "registry.internal:5000/team/app:1"'))).toBe(true);
    expect(reasons).toContain('Failed: Error: ImagePullBackOff');
  });

  it('a crashing container goes into CrashLoopBackOff with restarts and logs', () => {
    const c = cluster();
    c.store.create(RES.deploy, deployment('bad', { replicas: 1, image: 'example/app:crash' }));
    c.advance(60_000);
    const pod = c.store.list(RES.pod, 'default')[0]!;
    expect(pod.status.containerStatuses[0].restartCount).toBeGreaterThanOrEqual(2);
    expect(c.store.list(RES.event, 'default').some((e) => e.reason === 'BackOff' && e.message.startsWith('Back-off restarting failed container'))).toBe(true);
    expect(c.readLogs('default', pod.metadata.name).lines.map((l) => l.text)).toContain('panic: cannot connect to database: connection refused');
  });

  it('pods that do not fit are Pending with an Unschedulable reason and a FailedScheduling event', () => {
    const c = cluster();
    c.store.create(RES.deploy, deployment('big', { replicas: 3, cpu: '1500m' }));
    c.advance(10_000);
    const pending = c.store.list(RES.pod, 'default').filter((p) => !p.spec.nodeName);
    expect(pending).toHaveLength(1);
    expect(pending[0]!.status.conditions[0]).toMatchObject({ type: 'PodScheduled', status: 'False', reason: 'Unschedulable' });
    expect(pending[0]!.status.conditions[0].message).toMatch(/0\/1 nodes are available: 1 Insufficient cpu/);
    expect(c.store.list(RES.event, 'default').some((e) => e.reason === 'FailedScheduling')).toBe(true);
  });
});

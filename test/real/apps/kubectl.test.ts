import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { kubeconfig, RES, SimKubeRegistry, type SimKubeCluster } from '../../../src/providers/sim/kube/index.js';

/**
 * The real kubectl (Debian's kubernetes-client) against a simulated
 * cluster's Kubernetes API: apply, get, get -w, logs, scale, delete.
 */

function which(cmd: string): Promise<boolean> {
  return new Promise((resolve) => execFile('sh', ['-c', `command -v ${cmd}`], (e) => resolve(!e)));
}

let dir: string;
let env: NodeJS.ProcessEnv;
let reg: SimKubeRegistry;
let cluster: SimKubeCluster;

function kubectl(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile('kubectl', args, { env, timeout: 120_000 }, (e, out, err) => resolve({ code: e ? ((e as { code?: number }).code ?? 1) : 0, out: String(out), err: String(err) }));
  });
}

const manifests = (image: string, replicas = 2) => `
apiVersion: v1
kind: ConfigMap
metadata: { name: web-config }
data: { GREETING: hello }
---
apiVersion: v1
kind: Secret
metadata: { name: web-secret }
stringData: { password: s3cret }
---
apiVersion: apps/v1
kind: Deployment
metadata: { name: web, labels: { app: web } }
spec:
  replicas: ${replicas}
  selector: { matchLabels: { app: web } }
  template:
    metadata: { labels: { app: web } }
    spec:
      containers:
      - name: web
        image: ${image}
        ports: [{ containerPort: 8080 }]
        resources: { requests: { cpu: 200m, memory: 128Mi } }
---
apiVersion: v1
kind: Service
metadata: { name: web }
spec:
  selector: { app: web }
  ports: [{ port: 80, targetPort: 8080 }]
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: { name: web }
spec:
  scaleTargetRef: { apiVersion: apps/v1, kind: Deployment, name: web }
  minReplicas: 2
  maxReplicas: 8
  metrics:
  - type: Resource
    resource: { name: cpu, target: { type: Utilization, averageUtilization: 60 } }
`;

beforeAll(async () => {
  if (!(await which('kubectl'))) throw new Error('kubectl is missing: install Debian package kubernetes-client (listed in .ci/apt/apps.txt)');
  dir = mkdtempSync(join(tmpdir(), 'h15-kubectl-'));
  reg = new SimKubeRegistry(() => 20);
  cluster = reg.add('c-test', 'token-abc', { name: 'c-test', nodes: [0, 1].map((i) => ({ name: `c-test-w-${i}`, pool: 'w', cpu: 4000, memoryMiB: 8192 })), unreachableRegistries: ['registry.invalid'] });
  reg.start(100);
  const url = await reg.listen(0);
  writeFileSync(join(dir, 'kubeconfig'), kubeconfig('c-test', `${url}/c-test`, 'token-abc', 'default', reg.certificate));
  env = { ...process.env, KUBECONFIG: join(dir, 'kubeconfig'), HOME: dir };
});

afterAll(async () => {
  await reg?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('kubectl against a simulated cluster', () => {
  it('discovers the API and lists nodes and namespaces', async () => {
    const nodes = await kubectl('get', 'nodes');
    expect(nodes.err).toBe('');
    expect(nodes.out).toMatch(/c-test-w-0\s+Ready/);
    expect((await kubectl('api-resources')).out).toMatch(/horizontalpodautoscalers\s+hpa\s+autoscaling\/v2\s+true\s+HorizontalPodAutoscaler/);
  });

  it('a wrong token is refused', async () => {
    writeFileSync(join(dir, 'bad'), kubeconfig('c-test', `https://127.0.0.1:1/c-test`, 'nope'));
    const r = await new Promise<{ code: number }>((resolve) => execFile('kubectl', ['get', 'pods', '--kubeconfig', join(dir, 'bad'), '--request-timeout=5s'], { env }, (e) => resolve({ code: e ? 1 : 0 })));
    expect(r.code).not.toBe(0);
  });

  it('apply -f creates everything; pods become Running and the service gets endpoints', async () => {
    writeFileSync(join(dir, 'app.yaml'), manifests('nginx:1.27'));
    const r = await kubectl('apply', '-f', join(dir, 'app.yaml'));
    expect(r.err).toBe('');
    expect(r.out).toContain('deployment.apps/web created');
    expect(r.out).toContain('horizontalpodautoscaler.autoscaling/web created');
    const status = await kubectl('rollout', 'status', 'deployment/web', '--timeout=90s');
    expect(status.out).toContain('successfully rolled out');
    await vi.waitFor(async () => expect((await kubectl('get', 'endpoints', 'web', '-o', 'jsonpath={.subsets[0].addresses[*].ip}')).out.split(' ').filter(Boolean)).toHaveLength(2), { timeout: 60_000, interval: 500 });
    const pods = await kubectl('get', 'pods', '-l', 'app=web');
    expect(pods.out.match(/1\/1\s+Running/g)).toHaveLength(2);
    const secret = await kubectl('get', 'secret', 'web-secret', '-o', 'jsonpath={.data.password}');
    expect(Buffer.from(secret.out, 'base64').toString()).toBe('s3cret');
  });

  it('get -w streams changes while scale changes the replicas', async () => {
    const watch = execFile('kubectl', ['get', 'deployment', 'web', '-w', '--no-headers'], { env });
    let seen = '';
    watch.stdout!.on('data', (d) => (seen += String(d)));
    await vi.waitFor(() => expect(seen).toMatch(/web\s+2\/2/), { timeout: 30_000 });
    // the HPA's min is 2: take it away so the manual scale sticks
    expect((await kubectl('delete', 'hpa', 'web')).out).toContain('deleted');
    const s = await kubectl('scale', 'deployment/web', '--replicas=4');
    expect(s.out).toContain('deployment.apps/web scaled');
    await vi.waitFor(() => expect(seen).toMatch(/web\s+4\/4/), { timeout: 60_000, interval: 200 });
    watch.kill();
  });

  it('logs of a pod and of the deployment, and logs -f follows', async () => {
    const logs = await kubectl('logs', 'deployment/web');
    expect(logs.out).toContain('starting nginx:1.27');
    expect(logs.out).toContain('listening on 0.0.0.0:8080');
    cluster.setLoad('default', 'web', 40);
    const follow = execFile('kubectl', ['logs', '-f', 'deployment/web'], { env });
    let seen = '';
    follow.stdout!.on('data', (d) => (seen += String(d)));
    await vi.waitFor(() => expect(seen).toMatch(/GET \/ 200 - 10\.0 req\/s served/), { timeout: 60_000, interval: 200 });
    follow.kill();
  });

  it('an upgrade rolls out a new ReplicaSet; an unreachable registry shows ImagePullBackOff with its event', async () => {
    writeFileSync(join(dir, 'app.yaml'), manifests('nginx:1.28', 4));
    expect((await kubectl('apply', '-f', join(dir, 'app.yaml'))).out).toContain('deployment.apps/web configured');
    expect((await kubectl('rollout', 'status', 'deployment/web', '--timeout=90s')).out).toContain('successfully rolled out');
    expect((await kubectl('get', 'rs', '-l', 'app=web', '--no-headers')).out.trim().split('\n')).toHaveLength(2);
    writeFileSync(join(dir, 'bad.yaml'), manifests('registry.invalid/team/web:2', 4));
    await kubectl('apply', '-f', join(dir, 'bad.yaml'));
    await vi.waitFor(async () => expect((await kubectl('get', 'pods', '-l', 'app=web')).out).toMatch(/ImagePullBackOff|ErrImagePull/), { timeout: 60_000, interval: 500 });
    const events = await kubectl('get', 'events', '--field-selector', 'reason=Failed');
    expect(events.out).toContain('Failed to pull image "registry.invalid/team/web:2"');
    // the old pods keep serving: the rollout is stuck, not down (on a loaded machine the previous
    // rollout's last pod may still be becoming ready when this one starts: wait for it, not for luck)
    await vi.waitFor(async () => expect((await kubectl('get', 'deployment', 'web', '-o', 'jsonpath={.status.availableReplicas}')).out).toBe('3'), { timeout: 60_000, interval: 500 });
    expect((await kubectl('rollout', 'undo', 'deployment/web')).out).toContain('rolled back');
    expect((await kubectl('rollout', 'status', 'deployment/web', '--timeout=90s')).out).toContain('successfully rolled out');
    expect((await kubectl('get', 'deployment', 'web', '-o', 'jsonpath={.spec.template.spec.containers[0].image}')).out).toBe('nginx:1.28');
  });

  it('bad input is refused with the server\'s reason and nothing is created', async () => {
    writeFileSync(join(dir, 'hpa.yaml'), 'apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: { name: bad }\nspec:\n  scaleTargetRef: { apiVersion: apps/v1, kind: Deployment, name: web }\n  minReplicas: 5\n  maxReplicas: 2\n');
    const r = await kubectl('apply', '-f', join(dir, 'hpa.yaml'));
    expect(r.code).not.toBe(0);
    expect(r.err).toContain('must be greater than or equal to `minReplicas`');
    expect(cluster.store.get(RES.hpa, 'default', 'bad')).toBeUndefined();
  });

  it('delete -f removes everything it created, pods included', async () => {
    const r = await kubectl('delete', '-f', join(dir, 'app.yaml'), '--ignore-not-found');
    expect(r.out).toContain('deployment.apps "web" deleted');
    await vi.waitFor(async () => expect((await kubectl('get', 'pods', '-l', 'app=web', '--no-headers')).out.trim()).toBe(''), { timeout: 60_000, interval: 500 });
    expect((await kubectl('get', 'rs', '--no-headers')).out.trim()).toBe('');
  });
});

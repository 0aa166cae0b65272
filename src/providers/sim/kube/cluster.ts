import { clusterAutoscale, emptyCaState, recordScaleDownFailure, type CaNode, type CaOptions, type CaPod, type CaPool, type CaState } from '../../../apps/cluster-autoscaler.js';
import { emptyHpaState, hpaSync, validateHpaSpec, type HpaSpec, type HpaState, type MetricSpec, type PodSample } from '../../../apps/hpa.js';
import { byName, hashOf, KubeError, KubeStore, matchesSelector, randomSuffix, RESOURCES, type KObj, type ResourceInfo } from './store.js';

/**
 * One simulated Kubernetes cluster: the object store plus the controllers
 * that make it behave — deployments (rolling updates, revisions),
 * replica sets, a scheduler (requests against node allocatable; Unschedulable
 * with its reason), a kubelet (image pulls that fail when the registry is
 * unreachable, crash loops with back-off, readiness), endpoints, the
 * garbage collector, the HPA controller (every 15 s, src/apps/hpa.ts), a
 * metrics source driven by offered load (requests/s per app → CPU and memory
 * per pod) and the Cluster Autoscaler (every 10 s, src/apps/cluster-autoscaler.ts)
 * adding nodes through a provisioner.
 *
 * Time is simulated: `advance(ms)` moves the cluster's clock and runs every
 * controller at each step, so a day replays in seconds.
 */

const R = (name: string, group = ''): ResourceInfo => byName.get(`${group}/${name}`)!;
export const RES = {
  ns: R('namespaces'), node: R('nodes'), pod: R('pods'), svc: R('services'), ep: R('endpoints'), cm: R('configmaps'), secret: R('secrets'), event: R('events'), sa: R('serviceaccounts'),
  deploy: R('deployments', 'apps'), rs: R('replicasets', 'apps'), hpa: R('horizontalpodautoscalers', 'autoscaling'),
};
void RESOURCES;

export function cpuQuantity(q: unknown): number {
  if (q === undefined || q === null || q === '') return 0;
  if (typeof q === 'number') return Math.round(q * 1000);
  const s = String(q);
  if (s.endsWith('m')) return Math.round(Number(s.slice(0, -1)));
  const n = Number(s);
  if (!Number.isFinite(n)) throw new KubeError(422, 'Invalid', `quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': "${s}"`);
  return Math.round(n * 1000);
}

const MEM: Record<string, number> = { '': 1, k: 1e3, K: 1e3, M: 1e6, G: 1e9, T: 1e12, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, Ti: 1024 ** 4 };
/** Memory in MiB. */
export function memQuantity(q: unknown): number {
  if (q === undefined || q === null || q === '') return 0;
  if (typeof q === 'number') return q / 1024 ** 2;
  const m = /^(\d+(?:\.\d+)?)([A-Za-z]*)$/.exec(String(q));
  if (!m || MEM[m[2]!] === undefined) throw new KubeError(422, 'Invalid', `quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': "${q}"`);
  return (Number(m[1]) * MEM[m[2]!]!) / 1024 ** 2;
}

export function podRequests(pod: KObj): { cpu: number; memory: number } {
  let cpu = 0;
  let memory = 0;
  for (const c of pod.spec?.containers ?? []) {
    cpu += cpuQuantity(c.resources?.requests?.cpu ?? c.resources?.limits?.cpu);
    memory += memQuantity(c.resources?.requests?.memory ?? c.resources?.limits?.memory);
  }
  return { cpu, memory };
}

export interface NodePoolConfig {
  name: string;
  min: number;
  max: number;
  cpu: number;
  memoryMiB: number;
  priority?: number;
}

export interface SimKubeOptions {
  name: string;
  /** Simulated start time (ms). */
  start?: number;
  nodes?: { name: string; pool: string; cpu: number; memoryMiB: number }[];
  /** Pools the Cluster Autoscaler may grow and shrink (absent: no cluster autoscaling). */
  autoscaler?: { pools: NodePoolConfig[]; options?: Partial<CaOptions> };
  /** Simulated time a new node takes to join (default 90 s). */
  nodeBootMs?: number;
  /** Image pull time (default 3 s). */
  pullMs?: number;
  /** CPU millicores per request/s and MiB per request/s in flight, per pod (defaults 5 and 0.5). */
  load?: { cpuPerRps?: number; memPerRps?: number; idleCpu?: number; idleMemory?: number };
  /** Registries that cannot be reached (image pulls fail). */
  unreachableRegistries?: string[];
  /** Called when the autoscaler wants nodes; default: nodes join after nodeBootMs. */
  provisioner?: NodeProvisioner;
  seed?: number;
}

export interface NodeProvisioner {
  add(cluster: SimKubeCluster, pool: string, count: number): void;
  remove(cluster: SimKubeCluster, node: string): void;
}

interface LogEntry { at: number; text: string }

const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');
const isoMicro = (ms: number) => new Date(ms).toISOString().replace('Z', '000Z');

export class SimKubeCluster {
  readonly store: KubeStore;
  readonly name: string;
  private t: number;
  private opts: SimKubeOptions;
  private hpaStates = new Map<string, HpaState>();
  private caState: CaState = emptyCaState();
  private lastHpaSync = -Infinity;
  private lastCaSync = -Infinity;
  private loads = new Map<string, number>();
  private logs = new Map<string, LogEntry[]>();
  private logListeners = new Map<string, Set<(l: LogEntry) => void>>();
  private bootQueue: { name: string; pool: string; at: number; cpu: number; memoryMiB: number }[] = [];
  private eventSeq = 0;
  readonly unreachableRegistries: Set<string>;
  /** Counters for benchmarks and tests. */
  readonly stats = { hpaSyncs: 0, hpaCpuMs: 0, caSyncs: 0, nodesAdded: 0, nodesRemoved: 0, rescales: [] as { at: number; target: string; from: number; to: number }[], recommendations: [] as { at: number; target: string; current: number; proposed: number }[] };

  constructor(opts: SimKubeOptions) {
    this.opts = opts;
    this.name = opts.name;
    this.t = opts.start ?? Date.UTC(2026, 0, 1);
    this.store = new KubeStore(() => this.t);
    this.unreachableRegistries = new Set(opts.unreachableRegistries ?? []);
    for (const ns of ['default', 'kube-system', 'kube-public', 'kube-node-lease']) this.store.create(RES.ns, { metadata: { name: ns, labels: { 'kubernetes.io/metadata.name': ns } }, spec: { finalizers: ['kubernetes'] }, status: { phase: 'Active' } });
    this.store.create(RES.svc, { metadata: { name: 'kubernetes', namespace: 'default', labels: { component: 'apiserver', provider: 'kubernetes' } }, spec: { type: 'ClusterIP', clusterIP: '10.96.0.1', ports: [{ name: 'https', port: 443, protocol: 'TCP', targetPort: 6443 }] } });
    for (const n of opts.nodes ?? []) this.addNode(n.name, n.pool, n.cpu, n.memoryMiB);
  }

  now(): number {
    return this.t;
  }

  /** Turns the Cluster Autoscaler on (or changes its pools and options); undefined turns it off. */
  configureAutoscaler(cfg: SimKubeOptions['autoscaler']): void {
    this.opts = { ...this.opts, autoscaler: cfg };
  }

  get autoscaler(): SimKubeOptions['autoscaler'] {
    return this.opts.autoscaler;
  }

  // ---- nodes -----------------------------------------------------------------

  addNode(name: string, pool: string, cpu: number, memoryMiB: number): void {
    const alloc = { cpu: `${Math.floor(cpu * 0.95)}m`, memory: `${Math.floor(memoryMiB * 0.9)}Mi`, pods: '110' };
    this.store.create(RES.node, {
      metadata: { name, labels: { 'kubernetes.io/hostname': name, 'kubernetes.io/os': 'linux', 'node.kubernetes.io/pool': pool, 'node-role.kubernetes.io/worker': '' } },
      spec: { podCIDR: `10.244.${this.store.list(RES.node).length}.0/24` },
      status: {
        capacity: { cpu: `${cpu}m`, memory: `${memoryMiB}Mi`, pods: '110' }, allocatable: alloc,
        conditions: [{ type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'kubelet is posting ready status', lastHeartbeatTime: iso(this.t), lastTransitionTime: iso(this.t) }],
        addresses: [{ type: 'InternalIP', address: `10.0.${(this.store.list(RES.node).length >> 8) & 255}.${(this.store.list(RES.node).length & 255) + 10}` }, { type: 'Hostname', address: name }],
        nodeInfo: { kubeletVersion: 'v1.30.4', containerRuntimeVersion: 'containerd://1.7.20', osImage: 'Infraflow simulated node', kernelVersion: '6.1.0', operatingSystem: 'linux', architecture: 'amd64' },
      },
    });
  }

  /** Starts a node that joins after the boot time (the default provisioner). */
  bootNode(pool: string, cpu: number, memoryMiB: number): string {
    const existing = new Set([...this.store.list(RES.node).map((n) => n.metadata.name), ...this.bootQueue.map((b) => b.name)]);
    let i = 0;
    while (existing.has(`${this.name}-${pool}-${i}`)) i++;
    const name = `${this.name}-${pool}-${i}`;
    this.bootQueue.push({ name, pool, at: this.t + (this.opts.nodeBootMs ?? 90_000), cpu, memoryMiB });
    return name;
  }

  removeNode(name: string): void {
    if (this.store.peek(RES.node, undefined, name)) this.store.remove(RES.node, undefined, name);
  }

  private nodeAlloc(n: KObj) {
    return { cpu: cpuQuantity(n.status.allocatable.cpu), memory: memQuantity(n.status.allocatable.memory) };
  }

  private nodeReady(n: KObj): boolean {
    return !n.spec?.unschedulable && (n.status?.conditions ?? []).some((c: KObj) => c.type === 'Ready' && c.status === 'True');
  }

  // ---- load -------------------------------------------------------------------

  /** Offered load of an app (a Deployment, by namespace/name), in requests per second. */
  setLoad(namespace: string, app: string, rps: number): void {
    if (!(rps >= 0) || !Number.isFinite(rps)) throw new KubeError(400, 'BadRequest', `load must be a number of requests per second >= 0 (got ${rps})`);
    this.loads.set(`${namespace}/${app}`, rps);
  }

  getLoad(namespace: string, app: string): number {
    return this.loads.get(`${namespace}/${app}`) ?? 0;
  }

  private deploymentOfPod(pod: KObj): KObj | undefined {
    const rsRef = (pod.metadata.ownerReferences ?? []).find((o: KObj) => o.kind === 'ReplicaSet');
    if (!rsRef) return undefined;
    const rs = this.store.peek(RES.rs, pod.metadata.namespace, rsRef.name);
    const dRef = (rs?.metadata.ownerReferences ?? []).find((o: KObj) => o.kind === 'Deployment');
    return dRef ? this.store.peek(RES.deploy, pod.metadata.namespace, dRef.name) : undefined;
  }

  /** Usage of a running pod: idle plus its share of the app's load (ready pods share it). */
  podUsage(pod: KObj, knownShare?: number): { cpu: number; memory: number } | undefined {
    if (pod.status?.phase !== 'Running') return undefined;
    const started = Date.parse(pod.status.startTime ?? '') || this.t;
    if (this.t - started < 15_000) return undefined; // metrics-server needs a first scrape window
    const l = this.opts.load ?? {};
    const idleCpu = l.idleCpu ?? 5;
    const idleMem = l.idleMemory ?? 32;
    let share = knownShare ?? 0;
    if (knownShare === undefined) {
      const d = this.deploymentOfPod(pod);
      if (d && isReady(pod)) {
        const rps = this.getLoad(d.metadata.namespace, d.metadata.name);
        const n = this.podsOf(d).filter((p) => isReady(p) && !p.metadata.deletionTimestamp).length;
        share = n ? rps / n : 0;
      }
    }
    return { cpu: idleCpu + share * (l.cpuPerRps ?? 5), memory: idleMem + share * (l.memPerRps ?? 0.5) };
  }

  /** The pods of a Deployment: those of its ReplicaSets (owner index), as the deployment controller counts them. */
  podsOf(d: KObj): KObj[] {
    const out: KObj[] = [];
    for (const rs of this.store.ownedBy(RES.rs.name, d.metadata.uid)) for (const p of this.store.ownedBy(RES.pod.name, rs.metadata.uid)) if (matchesSelector(p.metadata.labels, d.spec.selector)) out.push(p);
    return out;
  }

  // ---- events -----------------------------------------------------------------

  private eventIndex = new Map<string, string>();

  event(involved: KObj, type: 'Normal' | 'Warning', reason: string, message: string, component = 'kubelet'): void {
    const ns = involved.metadata.namespace ?? 'default';
    const ikey = `${involved.metadata.uid}|${reason}|${message}`;
    const name = this.eventIndex.get(ikey);
    const existing = name ? this.store.peek(RES.event, ns, name) : undefined;
    if (existing) {
      this.store.mutate(RES.event, ns, existing.metadata.name, (e) => {
        e.count = (e.count ?? 1) + 1;
        e.lastTimestamp = iso(this.t);
      });
      return;
    }
    this.eventSeq++;
    const evName = `${involved.metadata.name}.${(this.t * 1000 + this.eventSeq).toString(16)}`;
    this.eventIndex.set(ikey, evName);
    this.store.create(RES.event, {
      metadata: { name: evName, namespace: ns },
      involvedObject: { kind: involved.kind, namespace: involved.metadata.namespace, name: involved.metadata.name, uid: involved.metadata.uid, apiVersion: involved.apiVersion, resourceVersion: involved.metadata.resourceVersion },
      reason, message, type, count: 1, source: { component }, firstTimestamp: iso(this.t), lastTimestamp: iso(this.t), eventTime: null, reportingComponent: component, reportingInstance: '',
    });
    if (this.eventSeq % 500 === 0 && this.store.list(RES.event).length > 5000) {
      const old = this.store.list(RES.event).sort((a, b) => Date.parse(a.lastTimestamp) - Date.parse(b.lastTimestamp)).slice(0, 1000);
      for (const e of old) this.store.remove(RES.event, e.metadata.namespace, e.metadata.name);
      if (this.eventIndex.size > 20_000) this.eventIndex.clear();
    }
  }

  // ---- logs -------------------------------------------------------------------

  private log(pod: KObj, container: string, text: string): void {
    const key = `${pod.metadata.namespace}/${pod.metadata.name}/${container}`;
    let l = this.logs.get(key);
    if (!l) this.logs.set(key, (l = []));
    const e = { at: this.t, text };
    l.push(e);
    if (l.length > 1000) l.splice(0, 200);
    for (const fn of this.logListeners.get(key) ?? []) fn(e);
  }

  readLogs(ns: string, pod: string, container?: string): { container: string; lines: LogEntry[] } {
    const p = this.store.peek(RES.pod, ns, pod);
    if (!p) throw new KubeError(404, 'NotFound', `pods "${pod}" not found`, { name: pod, kind: 'pods' });
    const names = (p.spec.containers ?? []).map((c: KObj) => c.name as string);
    const c = container ?? (names.length === 1 ? names[0] : undefined);
    if (!c) throw new KubeError(400, 'BadRequest', `a container name must be specified for pod ${pod}, choose one of: [${names.join(' ')}]`);
    if (!names.includes(c)) throw new KubeError(400, 'BadRequest', `container ${c} is not valid for pod ${pod}`);
    const st = (p.status?.containerStatuses ?? []).find((s: KObj) => s.name === c);
    if (st?.state?.waiting && !(this.logs.get(`${ns}/${pod}/${c}`)?.length)) throw new KubeError(400, 'BadRequest', `container "${c}" in pod "${pod}" is waiting to start: ${st.state.waiting.reason === 'ContainerCreating' ? 'ContainerCreating' : `trying and failing to pull image`}`);
    return { container: c, lines: [...(this.logs.get(`${ns}/${pod}/${c}`) ?? [])] };
  }

  followLogs(ns: string, pod: string, container: string, fn: (l: LogEntry) => void): () => void {
    const key = `${ns}/${pod}/${container}`;
    let s = this.logListeners.get(key);
    if (!s) this.logListeners.set(key, (s = new Set()));
    s.add(fn);
    return () => s.delete(fn);
  }

  // ---- time ---------------------------------------------------------------------

  /** Moves simulated time forward, running the controllers every `stepMs` (default 1 s). */
  advance(ms: number, stepMs = 1000): void {
    const end = this.t + ms;
    while (this.t < end) {
      this.t = Math.min(end, this.t + stepMs);
      this.reconcile();
    }
  }

  /** Runs every controller once at the current time. */
  reconcile(): void {
    this.joinNodes();
    this.garbageCollect();
    for (const d of this.store.list(RES.deploy)) this.syncDeployment(d);
    for (const rs of this.store.list(RES.rs)) this.syncReplicaSet(rs);
    this.terminatePods();
    this.schedule();
    this.kubelet();
    for (const rs of this.store.list(RES.rs)) this.rsStatus(rs);
    for (const d of this.store.list(RES.deploy)) this.deploymentStatus(d);
    this.endpoints();
    if (this.t - this.lastHpaSync >= 15_000) {
      this.lastHpaSync = this.t;
      this.hpaController();
    }
    if (this.opts.autoscaler && this.t - this.lastCaSync >= (this.opts.autoscaler.options?.scanIntervalMs ?? 10_000)) {
      this.lastCaSync = this.t;
      this.clusterAutoscaler();
    }
  }

  private joinNodes(): void {
    const due = this.bootQueue.filter((b) => b.at <= this.t);
    if (!due.length) return;
    this.bootQueue = this.bootQueue.filter((b) => b.at > this.t);
    for (const b of due) {
      this.addNode(b.name, b.pool, b.cpu, b.memoryMiB);
      this.stats.nodesAdded++;
      const n = this.store.peek(RES.node, undefined, b.name)!;
      this.event({ ...n, metadata: { ...n.metadata, namespace: 'default' } }, 'Normal', 'RegisteredNode', `Node ${b.name} event: Registered Node ${b.name} in Controller`, 'node-controller');
    }
  }

  // ---- garbage collector ------------------------------------------------------

  private garbageCollect(): void {
    const alive = new Set<string>();
    for (const r of [RES.deploy, RES.rs]) for (const o of this.store.list(r)) alive.add(o.metadata.uid);
    for (const r of [RES.rs, RES.pod]) {
      for (const o of this.store.list(r)) {
        const owners = (o.metadata.ownerReferences ?? []) as KObj[];
        if (owners.length && owners.every((x) => !alive.has(x.uid)) && !o.metadata.deletionTimestamp) {
          if (r === RES.pod) this.deletePod(o);
          else this.store.remove(r, o.metadata.namespace, o.metadata.name);
        }
      }
    }
    // namespaces being deleted lose their objects, then go
    for (const ns of this.store.list(RES.ns)) {
      if (!ns.metadata.deletionTimestamp) continue;
      let left = 0;
      for (const r of RESOURCES) {
        if (!r.namespaced) continue;
        for (const o of this.store.list(r, ns.metadata.name)) {
          left++;
          if (r === RES.pod) this.deletePod(o);
          else this.store.remove(r, o.metadata.namespace, o.metadata.name);
        }
      }
      if (!left || this.store.list(RES.pod, ns.metadata.name).length === 0) {
        const stillThere = RESOURCES.some((r) => r.namespaced && this.store.list(r, ns.metadata.name).length > 0);
        if (!stillThere) this.store.remove(RES.ns, undefined, ns.metadata.name);
      }
    }
  }

  /** Graceful deletion: the pod shows Terminating, then goes. */
  deletePod(p: KObj, graceMs = 2000): void {
    if (p.metadata.deletionTimestamp) return;
    this.store.mutate(RES.pod, p.metadata.namespace, p.metadata.name, (o) => {
      o.metadata.deletionTimestamp = iso(this.t + graceMs);
      o.metadata.deletionGracePeriodSeconds = Math.round(graceMs / 1000);
    });
  }

  private terminatePods(): void {
    for (const p of this.store.list(RES.pod)) {
      if (!p.metadata.deletionTimestamp) continue;
      if (!p.spec.nodeName || Date.parse(p.metadata.deletionTimestamp) <= this.t) this.store.remove(RES.pod, p.metadata.namespace, p.metadata.name);
    }
  }

  // ---- deployments ----------------------------------------------------------------

  private ownedBy(r: ResourceInfo, owner: KObj): KObj[] {
    return this.store.ownedBy(r.name, owner.metadata.uid);
  }

  private syncDeployment(d: KObj): void {
    if (d.metadata.deletionTimestamp) return;
    const desired = d.spec.replicas ?? 1;
    const hash = hashOf(d.spec.template, 10);
    const sets = this.ownedBy(RES.rs, d);
    let current = sets.find((s) => s.metadata.labels?.['pod-template-hash'] === hash);
    const revisions = sets.map((s) => Number(s.metadata.annotations?.['deployment.kubernetes.io/revision'] ?? 0));
    const maxRev = Math.max(0, ...revisions);
    if (!current) {
      const rsName = `${d.metadata.name}-${hash}`;
      const tpl = structuredClone(d.spec.template);
      tpl.metadata ??= {};
      tpl.metadata.labels = { ...(tpl.metadata.labels ?? {}), 'pod-template-hash': hash };
      current = this.store.create(RES.rs, {
        metadata: {
          name: rsName, namespace: d.metadata.namespace, labels: tpl.metadata.labels,
          annotations: { 'deployment.kubernetes.io/revision': String(maxRev + 1), 'deployment.kubernetes.io/desired-replicas': String(desired) },
          ownerReferences: [{ apiVersion: 'apps/v1', kind: 'Deployment', name: d.metadata.name, uid: d.metadata.uid, controller: true, blockOwnerDeletion: true }],
        },
        spec: { replicas: 0, selector: { matchLabels: { ...(d.spec.selector?.matchLabels ?? {}), 'pod-template-hash': hash } }, template: tpl },
      });
      this.event(d, 'Normal', 'ScalingReplicaSet', `Scaled up replica set ${rsName} to ${Math.min(desired, 1)}`, 'deployment-controller');
      this.store.mutate(RES.deploy, d.metadata.namespace, d.metadata.name, (o) => {
        o.metadata.annotations = { ...(o.metadata.annotations ?? {}), 'deployment.kubernetes.io/revision': String(maxRev + 1) };
      });
    } else if (Number(current.metadata.annotations?.['deployment.kubernetes.io/revision'] ?? 0) < maxRev) {
      // a rollback to an older template: it becomes the newest revision
      this.store.mutate(RES.rs, current.metadata.namespace, current.metadata.name, (o) => {
        o.metadata.annotations['deployment.kubernetes.io/revision'] = String(maxRev + 1);
      });
      this.store.mutate(RES.deploy, d.metadata.namespace, d.metadata.name, (o) => {
        o.metadata.annotations = { ...(o.metadata.annotations ?? {}), 'deployment.kubernetes.io/revision': String(maxRev + 1) };
      });
    }
    const old = sets.filter((s) => s.metadata.uid !== current!.metadata.uid);
    const scaleRs = (rs: KObj, n: number) => {
      if ((rs.spec.replicas ?? 0) === n) return;
      const up = n > (rs.spec.replicas ?? 0);
      this.store.mutate(RES.rs, rs.metadata.namespace, rs.metadata.name, (o) => {
        o.spec.replicas = n;
        o.metadata.annotations = { ...(o.metadata.annotations ?? {}), 'deployment.kubernetes.io/desired-replicas': String(desired) };
      });
      this.event(d, 'Normal', 'ScalingReplicaSet', `Scaled ${up ? 'up' : 'down'} replica set ${rs.metadata.name} to ${n}`, 'deployment-controller');
    };
    if (d.spec.paused) return;
    if (d.spec.strategy?.type === 'Recreate') {
      for (const s of old) scaleRs(s, 0);
      if (old.every((s) => this.ownedBy(RES.pod, s).length === 0)) scaleRs(current, desired);
      return;
    }
    const pct = (v: unknown, dflt: string, up: boolean) => {
      const x = v ?? dflt;
      if (typeof x === 'number') return x;
      const n = Number(String(x).replace('%', ''));
      return up ? Math.ceil((desired * n) / 100) : Math.floor((desired * n) / 100);
    };
    const maxSurge = pct(d.spec.strategy?.rollingUpdate?.maxSurge, '25%', true);
    let maxUnavailable = pct(d.spec.strategy?.rollingUpdate?.maxUnavailable, '25%', false);
    if (maxSurge === 0 && maxUnavailable === 0) maxUnavailable = 1;
    if (!old.some((s) => (s.spec.replicas ?? 0) > 0)) {
      scaleRs(current, desired);
      return;
    }
    // rolling update: grow the new set within the surge, shrink old ones within availability
    const total = sets.reduce((a, s) => a + (s.spec.replicas ?? 0), 0);
    const cur = this.store.peek(RES.rs, current.metadata.namespace, current.metadata.name)!;
    if (total < desired + maxSurge && (cur.spec.replicas ?? 0) < desired) scaleRs(cur, Math.min(desired, (cur.spec.replicas ?? 0) + (desired + maxSurge - total)));
    const available = sets.reduce((a, s) => a + (this.store.peek(RES.rs, s.metadata.namespace, s.metadata.name)?.status?.availableReplicas ?? 0), 0);
    let canRemove = available - (desired - maxUnavailable);
    // old pods that are not available can always go
    for (const s of old.sort((a, b) => Date.parse(a.metadata.creationTimestamp) - Date.parse(b.metadata.creationTimestamp))) {
      const rs = this.store.peek(RES.rs, s.metadata.namespace, s.metadata.name)!;
      const unavailable = (rs.spec.replicas ?? 0) - (rs.status?.availableReplicas ?? 0);
      const remove = Math.min(rs.spec.replicas ?? 0, Math.max(0, unavailable) + Math.max(0, canRemove));
      if (remove > 0) {
        scaleRs(rs, (rs.spec.replicas ?? 0) - remove);
        canRemove -= Math.max(0, remove - Math.max(0, unavailable));
      }
    }
  }

  private deploymentStatus(d: KObj): void {
    const sets = this.ownedBy(RES.rs, d);
    const hash = hashOf(d.spec.template, 10);
    const cur = sets.find((s) => s.metadata.labels?.['pod-template-hash'] === hash);
    const desired = d.spec.replicas ?? 1;
    const sum = (f: (s: KObj) => number) => sets.reduce((a, s) => a + f(s), 0);
    const replicas = sum((s) => s.status?.replicas ?? 0);
    const ready = sum((s) => s.status?.readyReplicas ?? 0);
    const available = sum((s) => s.status?.availableReplicas ?? 0);
    const updated = cur?.status?.replicas ?? 0;
    const maxUnavailable = Math.floor(desired * 0.25);
    const prev = d.status ?? {};
    const cond = (type: string, status: string, reason: string, message: string) => {
      const was = (prev.conditions ?? []).find((c: KObj) => c.type === type);
      const changed = !was || was.status !== status;
      return { type, status, lastUpdateTime: was && was.reason === reason && !changed ? was.lastUpdateTime : iso(this.t), lastTransitionTime: changed ? iso(this.t) : was.lastTransitionTime, reason, message };
    };
    const complete = updated === desired && replicas === desired && available === desired && (cur?.status?.availableReplicas ?? 0) === desired;
    const progressDeadline = (d.spec.progressDeadlineSeconds ?? 600) * 1000;
    const prevProg = (prev.conditions ?? []).find((c: KObj) => c.type === 'Progressing');
    const lastProgress = prevProg ? Date.parse(prevProg.lastUpdateTime) : Date.parse(d.metadata.creationTimestamp);
    const progressed = !prevProg || (prev.updatedReplicas ?? 0) !== updated || (prev.availableReplicas ?? 0) !== available || (prev.replicas ?? 0) !== replicas || prev.observedGeneration !== d.metadata.generation;
    // a stalled rollout stays stalled until something moves (a new template, replicas becoming available)
    const stalled = !complete && (prevProg?.reason === 'ProgressDeadlineExceeded' ? !progressed : this.t - lastProgress > progressDeadline && prevProg?.reason !== 'NewReplicaSetAvailable');
    const progressing = complete
      ? cond('Progressing', 'True', 'NewReplicaSetAvailable', `ReplicaSet "${cur?.metadata.name}" has successfully progressed.`)
      : stalled
        ? cond('Progressing', 'False', 'ProgressDeadlineExceeded', `ReplicaSet "${cur?.metadata.name}" has timed out progressing.`)
        : cond('Progressing', 'True', 'ReplicaSetUpdated', `ReplicaSet "${cur?.metadata.name}" is progressing.`);
    const status = {
      observedGeneration: d.metadata.generation,
      replicas, updatedReplicas: updated, readyReplicas: ready, availableReplicas: available,
      ...(replicas - available > 0 ? { unavailableReplicas: Math.max(0, desired - available) } : {}),
      conditions: [
        available >= desired - maxUnavailable ? cond('Available', 'True', 'MinimumReplicasAvailable', 'Deployment has minimum availability.') : cond('Available', 'False', 'MinimumReplicasUnavailable', 'Deployment does not have minimum availability.'),
        progressing,
      ],
    };
    // keep lastUpdateTime of Progressing moving only when something progressed
    if (!complete && !stalled && prevProg && prevProg.reason === 'ReplicaSetUpdated' && !progressed) {
      status.conditions[1] = { ...status.conditions[1]!, lastUpdateTime: prevProg.lastUpdateTime, lastTransitionTime: prevProg.lastTransitionTime };
    }
    for (const k of ['readyReplicas', 'availableReplicas', 'updatedReplicas', 'replicas'] as const) if (status[k] === 0) delete (status as KObj)[k];
    if (JSON.stringify(prev) !== JSON.stringify(status)) this.store.mutate(RES.deploy, d.metadata.namespace, d.metadata.name, (o) => (o.status = status));
    if (stalled && prevProg?.reason !== 'ProgressDeadlineExceeded') this.event(d, 'Warning', 'ProgressDeadlineExceeded', `Deployment "${d.metadata.name}" has timed out progressing.`, 'deployment-controller');
  }

  // ---- replica sets -----------------------------------------------------------------

  private syncReplicaSet(rs: KObj): void {
    const want = rs.spec.replicas ?? 1;
    const pods = this.ownedBy(RES.pod, rs).filter((p) => !p.metadata.deletionTimestamp && p.status?.phase !== 'Failed' && p.status?.phase !== 'Succeeded');
    if (pods.length < want) {
      const n = want - pods.length;
      const created: string[] = [];
      for (let i = 0; i < n; i++) {
        const tpl = rs.spec.template;
        const name = `${rs.metadata.name}-${randomSuffix()}`;
        this.store.create(RES.pod, {
          metadata: { name, namespace: rs.metadata.namespace, labels: { ...(tpl.metadata?.labels ?? {}) }, annotations: { ...(tpl.metadata?.annotations ?? {}) }, ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: rs.metadata.name, uid: rs.metadata.uid, controller: true, blockOwnerDeletion: true }] },
          spec: { ...structuredClone(tpl.spec), restartPolicy: tpl.spec?.restartPolicy ?? 'Always', schedulerName: 'default-scheduler', terminationGracePeriodSeconds: tpl.spec?.terminationGracePeriodSeconds ?? 30 },
          status: { phase: 'Pending', qosClass: 'Burstable' },
        });
        created.push(name);
      }
      this.event(rs, 'Normal', 'SuccessfulCreate', `Created pod: ${created[0]}${created.length > 1 ? ` (and ${created.length - 1} more)` : ''}`, 'replicaset-controller');
    } else if (pods.length > want) {
      // unscheduled first, then not ready, then the newest
      const rank = (p: KObj) => (!p.spec.nodeName ? 0 : !isReady(p) ? 1 : 2);
      const victims = [...pods].sort((a, b) => rank(a) - rank(b) || Date.parse(b.metadata.creationTimestamp) - Date.parse(a.metadata.creationTimestamp) || (a.metadata.name < b.metadata.name ? 1 : -1)).slice(0, pods.length - want);
      for (const p of victims) this.deletePod(p);
      this.event(rs, 'Normal', 'SuccessfulDelete', `Deleted pod: ${victims[0]!.metadata.name}${victims.length > 1 ? ` (and ${victims.length - 1} more)` : ''}`, 'replicaset-controller');
    }
  }

  private rsStatus(rs: KObj): void {
    const pods = this.ownedBy(RES.pod, rs).filter((p) => !p.metadata.deletionTimestamp && p.status?.phase !== 'Failed');
    const ready = pods.filter(isReady);
    const minReady = (rs.spec.minReadySeconds ?? 0) * 1000;
    const available = ready.filter((p) => {
      const c = (p.status.conditions ?? []).find((x: KObj) => x.type === 'Ready');
      return this.t - Date.parse(c?.lastTransitionTime ?? iso(this.t)) >= minReady;
    });
    const status: KObj = { replicas: pods.length, fullyLabeledReplicas: pods.length, readyReplicas: ready.length, availableReplicas: available.length, observedGeneration: rs.metadata.generation };
    for (const k of ['readyReplicas', 'availableReplicas', 'fullyLabeledReplicas']) if (status[k] === 0) delete status[k];
    if (JSON.stringify(rs.status ?? {}) !== JSON.stringify(status)) this.store.mutate(RES.rs, rs.metadata.namespace, rs.metadata.name, (o) => (o.status = status));
  }

  // ---- scheduler ------------------------------------------------------------------------

  private freeByNode(): Map<string, { cpu: number; memory: number; node: KObj }> {
    const free = new Map<string, { cpu: number; memory: number; node: KObj }>();
    for (const n of this.store.list(RES.node)) if (this.nodeReady(n)) free.set(n.metadata.name, { ...this.nodeAlloc(n), node: n });
    for (const p of this.store.list(RES.pod)) {
      if (!p.spec.nodeName || p.status?.phase === 'Succeeded' || p.status?.phase === 'Failed') continue;
      const f = free.get(p.spec.nodeName);
      if (!f) continue;
      const r = podRequests(p);
      f.cpu -= r.cpu;
      f.memory -= r.memory;
    }
    return free;
  }

  private schedule(): void {
    const pending = this.store.list(RES.pod).filter((p) => !p.spec.nodeName && !p.metadata.deletionTimestamp).sort((a, b) => Date.parse(a.metadata.creationTimestamp) - Date.parse(b.metadata.creationTimestamp));
    if (!pending.length) return;
    const free = this.freeByNode();
    const nodes = this.store.list(RES.node);
    for (const p of pending) {
      const r = podRequests(p);
      const sel = p.spec.nodeSelector as Record<string, string> | undefined;
      const candidates = [...free.values()].filter((f) => matchesSelector(f.node.metadata.labels, sel ?? undefined));
      // least allocated first (spread), ties by name
      const fit = candidates.filter((f) => f.cpu >= r.cpu && f.memory >= r.memory).sort((a, b) => b.cpu - a.cpu || (a.node.metadata.name < b.node.metadata.name ? -1 : 1))[0];
      if (!fit) {
        const reasons: string[] = [];
        const cpuShort = candidates.filter((f) => f.cpu < r.cpu).length;
        const memShort = candidates.filter((f) => f.memory < r.memory).length;
        const notReady = nodes.length - free.size;
        const unmatched = free.size - candidates.length;
        if (cpuShort) reasons.push(`${cpuShort} Insufficient cpu`);
        if (memShort) reasons.push(`${memShort} Insufficient memory`);
        if (unmatched) reasons.push(`${unmatched} node(s) didn't match Pod's node affinity/selector`);
        if (notReady) reasons.push(`${notReady} node(s) were unschedulable or not ready`);
        const message = `0/${nodes.length} nodes are available: ${reasons.join(', ') || 'no nodes available to schedule pods'}. preemption: 0/${nodes.length} nodes are available: ${nodes.length} No preemption victims found for incoming pod.`;
        const was = (p.status?.conditions ?? []).find((c: KObj) => c.type === 'PodScheduled');
        if (was?.message !== message) {
          this.store.mutate(RES.pod, p.metadata.namespace, p.metadata.name, (o) => {
            o.status = { ...(o.status ?? {}), phase: 'Pending', conditions: [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message, lastProbeTime: null, lastTransitionTime: was?.lastTransitionTime ?? iso(this.t) }] };
          });
          this.event(p, 'Warning', 'FailedScheduling', message, 'default-scheduler');
        }
        continue;
      }
      fit.cpu -= r.cpu;
      fit.memory -= r.memory;
      const node = fit.node;
      const idx = nodes.findIndex((n) => n.metadata.name === node.metadata.name);
      this.store.mutate(RES.pod, p.metadata.namespace, p.metadata.name, (o) => {
        o.spec.nodeName = node.metadata.name;
        o.status = {
          phase: 'Pending', hostIP: node.status.addresses?.[0]?.address, podIP: `10.244.${idx}.${(hashNum(o.metadata.name) % 250) + 2}`, podIPs: undefined, startTime: iso(this.t), qosClass: 'Burstable',
          conditions: [{ type: 'PodScheduled', status: 'True', lastProbeTime: null, lastTransitionTime: iso(this.t) }, { type: 'Initialized', status: 'True', lastProbeTime: null, lastTransitionTime: iso(this.t) }, { type: 'Ready', status: 'False', reason: 'ContainersNotReady', lastProbeTime: null, lastTransitionTime: iso(this.t) }, { type: 'ContainersReady', status: 'False', reason: 'ContainersNotReady', lastProbeTime: null, lastTransitionTime: iso(this.t) }],
          containerStatuses: (o.spec.containers ?? []).map((c: KObj) => ({ name: c.name, image: c.image, imageID: '', ready: false, restartCount: 0, started: false, state: { waiting: { reason: 'ContainerCreating' } }, lastState: {} })),
        };
        o.status.podIPs = [{ ip: o.status.podIP }];
        o.metadata.annotations = { ...(o.metadata.annotations ?? {}), 'sim.infraflow.io/bound-at': String(this.t) };
      });
      this.event(p, 'Normal', 'Scheduled', `Successfully assigned ${p.metadata.namespace}/${p.metadata.name} to ${node.metadata.name}`, 'default-scheduler');
    }
  }

  // ---- kubelet ----------------------------------------------------------------------------

  /** The registry host of an image reference (docker.io when none). */
  static registryOf(image: string): string {
    const first = image.split('/')[0]!;
    return image.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost') ? first : 'docker.io';
  }

  private kubelet(): void {
    const pullMs = this.opts.pullMs ?? 3000;
    for (const p of this.store.list(RES.pod)) {
      if (!p.spec.nodeName || p.metadata.deletionTimestamp || p.status?.phase === 'Failed' || p.status?.phase === 'Succeeded') continue;
      const bound = Number(p.metadata.annotations?.['sim.infraflow.io/bound-at'] ?? this.t);
      const node = this.store.peek(RES.node, undefined, p.spec.nodeName);
      if (!node) {
        this.deletePod(p, 0);
        continue;
      }
      let changed = false;
      const statuses: KObj[] = structuredClone(p.status.containerStatuses ?? []);
      for (const c of p.spec.containers ?? []) {
        let st = statuses.find((s) => s.name === c.name);
        if (!st) statuses.push((st = { name: c.name, image: c.image, imageID: '', ready: false, restartCount: 0, started: false, state: { waiting: { reason: 'ContainerCreating' } }, lastState: {} }));
        const registry = SimKubeCluster.registryOf(c.image);
        const env = Object.fromEntries(((c.env ?? []) as KObj[]).map((e) => [e.name, e.value]));
        const crash = env.SIM_CRASH === 'true' || /(^|[/:-])crash(loop)?($|[-:])/.test(c.image);
        const w = st.state.waiting;
        if (w?.reason === 'ContainerCreating' && this.t - bound >= 0 && !st.pullStarted) {
          st.pullStarted = this.t;
          this.event(p, 'Normal', 'Pulling', `Pulling image "${c.image}"`);
          changed = true;
        }
        if ((w?.reason === 'ContainerCreating' || w?.reason === 'ErrImagePull' || w?.reason === 'ImagePullBackOff') && st.pullStarted !== undefined && this.t - st.pullStarted >= pullMs) {
          if (this.unreachableRegistries.has(registry) || registry.endsWith('.invalid') || /:does-not-exist$/.test(c.image)) {
            const backoff = Math.min(300_000, 10_000 * 2 ** Math.min(5, st.pullFailures ?? 0));
            if (w.reason === 'ContainerCreating' || (w.reason === 'ImagePullBackOff' && this.t - (st.lastPullFailure ?? 0) >= backoff)) {
              st.pullFailures = (st.pullFailures ?? 0) + 1;
              st.lastPullFailure = this.t;
              const why = this.unreachableRegistries.has(registry) || registry.endsWith('.invalid') ? `dial tcp: lookup ${registry}: i/o timeout` : `${c.image}: not found`;
              st.state = { waiting: { reason: 'ErrImagePull', message: `failed to pull and unpack image "${c.image}": failed to resolve reference "${c.image}": ${why}` } };
              this.event(p, 'Warning', 'Failed', `Failed to pull image "${c.image}": ${why}`);
              this.event(p, 'Warning', 'Failed', 'Error: ErrImagePull');
              changed = true;
            } else if (w.reason === 'ErrImagePull' && this.t - (st.lastPullFailure ?? 0) >= 1000) {
              st.state = { waiting: { reason: 'ImagePullBackOff', message: `Back-off pulling image "${c.image}"` } };
              this.event(p, 'Normal', 'BackOff', `Back-off pulling image "${c.image}"`);
              this.event(p, 'Warning', 'Failed', 'Error: ImagePullBackOff');
              changed = true;
            }
            continue;
          }
          if (w.reason !== 'ContainerCreating' && !(this.t - (st.lastPullFailure ?? 0) >= 1000)) continue;
          st.imageID = `${c.image.split(':')[0]}@sha256:${hashOf(c.image, 16)}`;
          this.event(p, 'Normal', 'Pulled', `Successfully pulled image "${c.image}" in ${(pullMs / 1000).toFixed(1)}s`);
          this.start(p, c, st);
          changed = true;
          continue;
        }
        if (st.state.running && crash && this.t - Date.parse(st.state.running.startedAt) >= 2000) {
          st.restartCount++;
          st.lastState = { terminated: { exitCode: 1, reason: 'Error', startedAt: st.state.running.startedAt, finishedAt: iso(this.t) } };
          st.state = { waiting: { reason: 'CrashLoopBackOff', message: `back-off ${Math.min(300, 10 * 2 ** Math.min(5, st.restartCount - 1))}s restarting failed container=${c.name} pod=${p.metadata.name}_${p.metadata.namespace}(${p.metadata.uid})` } };
          st.ready = false;
          st.started = false;
          st.crashedAt = this.t;
          this.log(p, c.name, 'panic: cannot connect to database: connection refused');
          this.event(p, 'Warning', 'BackOff', `Back-off restarting failed container ${c.name} in pod ${p.metadata.name}_${p.metadata.namespace}(${p.metadata.uid})`);
          changed = true;
          continue;
        }
        if (st.state.waiting?.reason === 'CrashLoopBackOff' && this.t - st.crashedAt >= Math.min(300_000, 10_000 * 2 ** Math.min(5, st.restartCount - 1))) {
          this.start(p, c, st);
          changed = true;
          continue;
        }
        if (st.state.running && !st.ready && !crash) {
          const delay = ((c.readinessProbe?.initialDelaySeconds ?? 0) + (c.readinessProbe ? c.readinessProbe.periodSeconds ?? 10 : 1)) * 1000;
          if (this.t - Date.parse(st.state.running.startedAt) >= delay) {
            st.ready = true;
            changed = true;
          }
        }
      }
      if (!changed) continue;
      const allReady = statuses.length > 0 && statuses.every((s) => s.ready);
      const running = statuses.some((s) => s.state.running) || statuses.some((s) => s.restartCount > 0);
      this.store.mutate(RES.pod, p.metadata.namespace, p.metadata.name, (o) => {
        o.status.containerStatuses = statuses;
        o.status.phase = running ? 'Running' : 'Pending';
        o.status.conditions = (o.status.conditions ?? []).map((c: KObj) => {
          if (c.type !== 'Ready' && c.type !== 'ContainersReady') return c;
          const s = allReady ? 'True' : 'False';
          return c.status === s ? c : { type: c.type, status: s, ...(allReady ? {} : { reason: 'ContainersNotReady', message: `containers with unready status: [${statuses.filter((x) => !x.ready).map((x) => x.name).join(' ')}]` }), lastProbeTime: null, lastTransitionTime: iso(this.t) };
        });
      });
    }
  }

  private start(p: KObj, c: KObj, st: KObj): void {
    st.state = { running: { startedAt: iso(this.t) } };
    st.started = true;
    this.event(p, 'Normal', st.restartCount ? 'Started' : 'Created', st.restartCount ? `Started container ${c.name}` : `Created container ${c.name}`);
    if (!st.restartCount) this.event(p, 'Normal', 'Started', `Started container ${c.name}`);
    this.log(p, c.name, `starting ${c.image}`);
    for (const port of c.ports ?? []) this.log(p, c.name, `listening on 0.0.0.0:${port.containerPort}`);
  }

  /** Request log lines for running, ready pods that carry load (one line per pod per 10 s of simulated time). */
  private requestLogs(): void {
    for (const d of this.store.list(RES.deploy)) {
      const rps = this.getLoad(d.metadata.namespace, d.metadata.name);
      const pods = this.podsOf(d).filter(isReady);
      for (const p of pods) for (const c of p.spec.containers ?? []) this.log(p, c.name, `GET / 200 - ${(rps / Math.max(1, pods.length)).toFixed(1)} req/s served`);
    }
  }

  // ---- endpoints ----------------------------------------------------------------------------

  private endpoints(): void {
    for (const s of this.store.list(RES.svc)) {
      if (!s.spec?.selector) continue;
      const pods = this.store.list(RES.pod, s.metadata.namespace).filter((p) => p.status?.podIP && !p.metadata.deletionTimestamp && matchesSelector(p.metadata.labels, s.spec.selector));
      const addr = (p: KObj) => ({ ip: p.status.podIP, nodeName: p.spec.nodeName, targetRef: { kind: 'Pod', namespace: p.metadata.namespace, name: p.metadata.name, uid: p.metadata.uid } });
      const ready = pods.filter(isReady).map(addr).sort((a, b) => (a.ip < b.ip ? -1 : 1));
      const notReady = pods.filter((p) => !isReady(p)).map(addr).sort((a, b) => (a.ip < b.ip ? -1 : 1));
      const ports = (s.spec.ports ?? []).map((p: KObj) => ({ ...(p.name ? { name: p.name } : {}), port: typeof p.targetPort === 'number' ? p.targetPort : p.port, protocol: p.protocol ?? 'TCP' }));
      const subsets = ready.length || notReady.length ? [{ ...(ready.length ? { addresses: ready } : {}), ...(notReady.length ? { notReadyAddresses: notReady } : {}), ports }] : [];
      const cur = this.store.peek(RES.ep, s.metadata.namespace, s.metadata.name);
      if (!cur) this.store.create(RES.ep, { metadata: { name: s.metadata.name, namespace: s.metadata.namespace, labels: s.metadata.labels ?? {} }, subsets });
      else if (JSON.stringify(cur.subsets ?? []) !== JSON.stringify(subsets)) this.store.mutate(RES.ep, s.metadata.namespace, s.metadata.name, (o) => (o.subsets = subsets));
    }
    for (const e of this.store.list(RES.ep)) if (!this.store.peek(RES.svc, e.metadata.namespace, e.metadata.name)) this.store.remove(RES.ep, e.metadata.namespace, e.metadata.name);
  }

  // ---- HPA ------------------------------------------------------------------------------------

  private hpaController(): void {
    this.requestLogs();
    const c0 = process.cpuUsage();
    for (const h of this.store.list(RES.hpa)) this.syncHpa(h);
    const c = process.cpuUsage(c0);
    this.stats.hpaSyncs++;
    this.stats.hpaCpuMs += (c.user + c.system) / 1000;
  }

  /** Pod samples of a Deployment for the HPA (usage from the load model). */
  samples(d: KObj): PodSample[] {
    const pods = this.podsOf(d);
    const readyCount = pods.filter((p) => isReady(p) && !p.metadata.deletionTimestamp).length;
    const share = readyCount ? this.getLoad(d.metadata.namespace, d.metadata.name) / readyCount : 0;
    return pods.map((p) => {
      const u = this.podUsage(p, isReady(p) ? share : 0);
      const r = podRequests(p);
      return {
        name: p.metadata.name,
        phase: (p.status?.phase ?? 'Pending') as PodSample['phase'],
        ready: isReady(p),
        deleting: !!p.metadata.deletionTimestamp,
        requests: { cpu: r.cpu, memory: r.memory },
        usage: { cpu: u?.cpu, memory: u?.memory },
      };
    });
  }

  private syncHpa(h: KObj): void {
    const ref = h.spec.scaleTargetRef ?? {};
    const setStatus = (status: KObj) => this.store.mutate(RES.hpa, h.metadata.namespace, h.metadata.name, (o) => (o.status = status));
    const d = ref.kind === 'Deployment' ? this.store.peek(RES.deploy, h.metadata.namespace, ref.name) : undefined;
    if (!d) {
      setStatus({ ...(h.status ?? {}), currentReplicas: 0, desiredReplicas: 0, conditions: [{ type: 'AbleToScale', status: 'False', reason: 'FailedGetScale', message: `the HPA controller was unable to get the target's current scale: deployments/scale.apps "${ref.name}" not found`, lastTransitionTime: iso(this.t) }] });
      return;
    }
    const spec: HpaSpec = { minReplicas: h.spec.minReplicas ?? 1, maxReplicas: h.spec.maxReplicas, metrics: (h.spec.metrics ?? []) as MetricSpec[], ...(h.spec.behavior ? { behavior: h.spec.behavior } : {}) };
    const problems = validateHpaSpec(spec);
    const key = `${h.metadata.namespace}/${h.metadata.name}`;
    let state = this.hpaStates.get(key);
    if (!state) this.hpaStates.set(key, (state = emptyHpaState()));
    const current = d.spec.replicas ?? 1;
    const cond = (type: string, status: string, reason: string, message: string) => ({ type, status, lastTransitionTime: iso(this.t), reason, message });
    if (problems.length) {
      setStatus({ currentReplicas: current, desiredReplicas: current, conditions: [cond('ScalingActive', 'False', 'InvalidSpec', problems.join('; '))] });
      return;
    }
    const decision = hpaSync(spec, current, { pods: this.samples(d) }, state, this.t);
    if (decision.proposed !== undefined) {
      this.stats.recommendations.push({ at: this.t, target: key, current, proposed: decision.proposed });
      if (this.stats.recommendations.length > 20_000) this.stats.recommendations.splice(0, 10_000);
    }
    if (decision.rescale) {
      this.store.mutate(RES.deploy, d.metadata.namespace, d.metadata.name, (o) => (o.spec.replicas = decision.desiredReplicas));
      this.stats.rescales.push({ at: this.t, target: `${d.metadata.namespace}/${d.metadata.name}`, from: current, to: decision.desiredReplicas });
      const top = decision.proposals.filter((p) => p.replicas !== undefined).sort((a, b) => b.replicas! - a.replicas!)[0];
      this.event(h, 'Normal', 'SuccessfulRescale', `New size: ${decision.desiredReplicas}; reason: ${decision.reason === 'AboveMax' || decision.reason === 'BelowMin' ? 'Current number of replicas out of range' : `${top?.metric ?? 'all metrics'} resource utilization (percentage of request) ${decision.desiredReplicas > current ? 'above' : 'below'} target`}`, 'horizontal-pod-autoscaler');
    }
    const old = (h.status?.conditions ?? []) as KObj[];
    const conditions = decision.conditions.map((c) => {
      const was = old.find((x) => x.type === c.type);
      return { ...c, lastTransitionTime: was && was.status === c.status ? was.lastTransitionTime : iso(this.t) };
    });
    const currentMetrics = spec.metrics.map((m, i) => {
      const p = decision.proposals[i];
      if (m.type === 'Resource') return { type: 'Resource', resource: { name: m.resource.name, current: m.resource.target.type === 'Utilization' ? { averageUtilization: Math.round(p?.current ?? 0), averageValue: '0' } : { averageValue: String(Math.round(p?.current ?? 0)) } } };
      return { type: m.type };
    });
    const next = {
      observedGeneration: h.metadata.generation,
      ...(decision.rescale ? { lastScaleTime: iso(this.t) } : h.status?.lastScaleTime ? { lastScaleTime: h.status.lastScaleTime } : {}),
      currentReplicas: current, desiredReplicas: decision.desiredReplicas, currentMetrics, conditions,
    };
    if (JSON.stringify(next) !== JSON.stringify(h.status ?? null)) setStatus(next);
  }

  // ---- Cluster Autoscaler -----------------------------------------------------------------

  private clusterAutoscaler(): void {
    const cfg = this.opts.autoscaler!;
    this.stats.caSyncs++;
    const nodesK = this.store.list(RES.node);
    const pods = this.store.list(RES.pod);
    const caPod = (p: KObj): CaPod => {
      const r = podRequests(p);
      return { name: `${p.metadata.namespace}/${p.metadata.name}`, requests: { cpu: r.cpu, memory: r.memory }, movable: (p.metadata.ownerReferences ?? []).length > 0 };
    };
    const nodes: CaNode[] = nodesK.map((n) => ({
      name: n.metadata.name, pool: n.metadata.labels?.['node.kubernetes.io/pool'] ?? 'default', allocatable: this.nodeAlloc(n), ready: this.nodeReady(n),
      pods: pods.filter((p) => p.spec.nodeName === n.metadata.name && !p.metadata.deletionTimestamp).map(caPod),
      scaleDownDisabled: n.metadata.annotations?.['cluster-autoscaler.kubernetes.io/scale-down-disabled'] === 'true',
    }));
    const pools: CaPool[] = cfg.pools.map((p) => ({
      name: p.name, min: p.min, max: p.max, priority: p.priority ?? 0, template: { cpu: Math.floor(p.cpu * 0.95), memory: Math.floor(p.memoryMiB * 0.9) },
      size: nodes.filter((n) => n.pool === p.name).length + this.bootQueue.filter((b) => b.pool === p.name).length,
    }));
    // pods the scheduler gave up on; those waiting for a booting node's capacity are still pending
    const pending = pods.filter((p) => !p.spec.nodeName && !p.metadata.deletionTimestamp && (p.status?.conditions ?? []).some((c: KObj) => c.type === 'PodScheduled' && c.reason === 'Unschedulable'));
    const booting: CaNode[] = this.bootQueue.map((b) => ({ name: b.name, pool: b.pool, allocatable: { cpu: Math.floor(b.cpu * 0.95), memory: Math.floor(b.memoryMiB * 0.9) }, pods: [], ready: true, provisioning: true }));
    const d = clusterAutoscale({ nodes: [...nodes, ...booting], pools, pending: pending.map(caPod) }, this.caState, this.t, { ...cfg.options, scanIntervalMs: 0 });
    const provisioner = this.opts.provisioner ?? defaultProvisioner;
    if (d.scaleUp) {
      const pool = cfg.pools.find((p) => p.name === d.scaleUp!.pool)!;
      provisioner.add(this, pool.name, d.scaleUp.nodes);
      for (const name of d.scaleUp.pods.slice(0, 20)) {
        const [ns, pn] = name.split('/');
        const p = this.store.peek(RES.pod, ns, pn!);
        if (p) this.event(p, 'Normal', 'TriggeredScaleUp', `pod triggered scale-up: [{${pool.name} ${pools.find((x) => x.name === pool.name)!.size}->${pools.find((x) => x.name === pool.name)!.size + d.scaleUp.nodes} (max: ${pool.max})}]`, 'cluster-autoscaler');
      }
    }
    for (const n of d.noScaleUp.slice(0, 20)) {
      const [ns, pn] = n.pod.split('/');
      const p = this.store.peek(RES.pod, ns, pn!);
      if (p) this.event(p, 'Normal', 'NotTriggerScaleUp', `pod didn't trigger scale-up: ${n.reason}`, 'cluster-autoscaler');
    }
    for (const s of d.scaleDown) {
      try {
        const node = this.store.peek(RES.node, undefined, s.node);
        if (!node) throw new Error('gone');
        this.store.mutate(RES.node, undefined, s.node, (o) => {
          o.spec.unschedulable = true;
          o.spec.taints = [...(o.spec.taints ?? []), { key: 'ToBeDeletedByClusterAutoscaler', value: String(Math.floor(this.t / 1000)), effect: 'NoSchedule' }];
        });
        this.event({ ...node, metadata: { ...node.metadata, namespace: 'default' } }, 'Normal', 'ScaleDown', `marked the node as toBeDeleted/unschedulable; draining ${s.drain.length} pod(s)`, 'cluster-autoscaler');
        for (const name of s.drain) {
          const [ns, pn] = name.split('/');
          const p = this.store.peek(RES.pod, ns, pn!);
          if (p) this.deletePod(p, 0);
        }
        for (const p of this.store.list(RES.pod)) if (p.spec.nodeName === s.node) this.store.remove(RES.pod, p.metadata.namespace, p.metadata.name);
        provisioner.remove(this, s.node);
        this.stats.nodesRemoved++;
      } catch {
        recordScaleDownFailure(this.caState, this.t);
      }
    }
  }
}

const defaultProvisioner: NodeProvisioner = {
  add(cluster, pool, count) {
    const cfg = (cluster as unknown as { opts: SimKubeOptions }).opts.autoscaler!.pools.find((p) => p.name === pool)!;
    for (let i = 0; i < count; i++) cluster.bootNode(pool, cfg.cpu, cfg.memoryMiB);
  },
  remove(cluster, node) {
    cluster.removeNode(node);
  },
};

export function isReady(p: KObj): boolean {
  return (p.status?.conditions ?? []).some((c: KObj) => c.type === 'Ready' && c.status === 'True');
}

function hashNum(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}

export { isoMicro };

import { NotFoundError, ValidationError } from '../core/errors.js';
import { KubeClient, parseKubeconfig } from '../providers/kubernetes/client.js';
import { kubeconfig as makeKubeconfig, RES, SimKubeRegistry, type NodePoolConfig, type SimKubeCluster } from '../providers/sim/kube/index.js';
import type { SimDatacenter } from '../providers/sim/index.js';
import { ProviderError, type ProviderRegistry, type Resource, type ResourceStore } from '../resources/index.js';

/**
 * Connects to the Kubernetes API of a container/Cluster resource. Clusters of
 * the simulator get a simulated Kubernetes API (src/providers/sim/kube),
 * served over HTTPS on a local port and authenticated with the cluster's own
 * token (from its credentials); other clusters are reached through the
 * kubeconfig in their secrets (e.g. clusters from fulfillment).
 */

export interface ClusterHandle {
  cluster: Resource;
  client: KubeClient;
  kubeconfig: string;
  /** The simulated cluster, when the simulator backs it. */
  sim?: SimKubeCluster;
}

export interface ClusterConnectorDeps {
  resources: ResourceStore;
  registry: ProviderRegistry;
  sim?: SimDatacenter;
  kube: SimKubeRegistry;
  /** Host the simulated clusters' API listens on (default 127.0.0.1) and port (0 = free). */
  kubeListen?: { host?: string; port?: number };
}

export class ClusterConnector {
  private url: Promise<string> | undefined;
  private nodeSync = new Map<string, number>();

  constructor(private readonly deps: ClusterConnectorDeps) {}

  /** The base URL of the simulated clusters' API server (started on first use). */
  kubeUrl(): Promise<string> {
    this.url ??= this.deps.kube.listen(this.deps.kubeListen?.port ?? 0, this.deps.kubeListen?.host ?? '127.0.0.1');
    return this.url;
  }

  async findCluster(project: string, ref: string): Promise<Resource> {
    const byName = await this.deps.resources.getByName(project, 'container/Cluster', ref);
    const r = byName ?? (await this.deps.resources.find(ref));
    if (!r || r.kind !== 'container/Cluster' || r.project !== project || r.status.phase === 'deleted') throw new NotFoundError('apps.cluster_not_found', `cluster: container/Cluster "${ref}" does not exist in project ${project}`, { details: { field: 'cluster' } });
    return r;
  }

  async connect(project: string, ref: string): Promise<ClusterHandle> {
    const cluster = await this.findCluster(project, ref);
    if (cluster.status.phase !== 'ready' && cluster.status.phase !== 'updating') {
      throw new ProviderError('Conflict', `cluster ${cluster.name} is ${cluster.status.phase}, not ready: wait for it to be ready`, { retryable: true });
    }
    const provider = this.deps.registry.providerNameFor('container/Cluster');
    if (provider === 'sim' && this.deps.sim && cluster.status.externalId) {
      const id = cluster.status.externalId;
      const read = await this.deps.sim.read('container/Cluster', id);
      if (read.state === 'absent') throw new ProviderError('NotFound', `cluster ${cluster.name} no longer exists in the simulator`);
      const token = parseKubeconfig(read.secrets?.kubeconfig ?? '').token;
      if (!token) throw new ProviderError('Internal', `cluster ${cluster.name} has no API token in its credentials`);
      const obj = await this.deps.sim.getObject(id);
      const nodes = ((obj?.state.nodes ?? []) as { name: string; role: string; pool: string; vcpus: number; ramMb: number }[]).filter((n) => n.role === 'worker');
      const sim = this.deps.kube.add(id, token, { name: cluster.name, nodes: nodes.map((n) => ({ name: n.name, pool: n.pool, cpu: n.vcpus * 1000, memoryMiB: n.ramMb })) });
      await this.syncNodes(id, sim, nodes);
      const url = await this.kubeUrl();
      const kubeconfig = makeKubeconfig(cluster.name, `${url}/${id}`, token, 'default', this.deps.kube.certificate);
      return { cluster, client: KubeClient.fromKubeconfig(kubeconfig), kubeconfig, sim };
    }
    const secrets = await this.deps.resources.getSecrets(cluster.id);
    if (!secrets.kubeconfig) throw new ValidationError('apps.no_kubeconfig', `cluster ${cluster.name} has no kubeconfig in its secrets (provider ${provider})`);
    return { cluster, client: KubeClient.fromKubeconfig(secrets.kubeconfig), kubeconfig: secrets.kubeconfig };
  }

  /** Nodes the cluster's provider added (a resize) join the simulated API. */
  private async syncNodes(id: string, sim: SimKubeCluster, nodes: { name: string; pool: string; vcpus: number; ramMb: number }[]): Promise<void> {
    const last = this.nodeSync.get(id) ?? 0;
    if (Date.now() - last < 2000) return;
    this.nodeSync.set(id, Date.now());
    const have = new Set(sim.store.list(RES.node).map((n) => n.metadata.name));
    for (const n of nodes) if (!have.has(n.name)) sim.addNode(n.name, n.pool, n.vcpus * 1000, n.ramMb);
  }

  /** Turns on the Cluster Autoscaler of a simulated cluster (pools with min/max). */
  async configureAutoscaler(project: string, ref: string, pools: NodePoolConfig[]): Promise<SimKubeCluster> {
    const h = await this.connect(project, ref);
    if (!h.sim) throw new ValidationError('apps.not_simulated', `cluster ${ref} is not simulated: its autoscaler is configured in the cluster itself`);
    h.sim.configureAutoscaler({ pools });
    return h.sim;
  }
}

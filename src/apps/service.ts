import { ConflictError, NotFoundError, ValidationError } from '../core/errors.js';
import type { EngineApi, RunInfo } from '../engine/types.js';
import { RES, SimKubeRegistry, type NodePoolConfig } from '../providers/sim/kube/index.js';
import type { SimDatacenter } from '../providers/sim/index.js';
import { AppSpec, startResourceRun, type ProviderRegistry, type Resource, type ResourceStore } from '../resources/index.js';
import { ClusterConnector } from './clusters.js';
import { AppsProvider, listRevisions, renderApp, type AppRevision, type AppSpecT } from './provider.js';
import { loadTemplate, manifestsToYaml, renderTemplate, resolveValues } from './template.js';
import { validatePools } from './cluster-autoscaler.js';

/**
 * The apps area: application templates rendered and deployed to container
 * clusters as apps/App resources (each change a durable run of the resource
 * workflows, driven by the `apps` provider), rollouts, rollbacks, watches,
 * logs, the simulated clusters' Kubernetes APIs and their autoscalers.
 *
 *   const apps = new Apps({ resources, registry, engine, sim })
 *   apps.render({ files, values, name, namespace }) → { yaml, manifests }        (touches nothing)
 *   apps.deploy({ project, name, cluster, namespace, template: { name, files }, values }) → { app, run }
 *   apps.status(project, name) / revisions / rollback(project, name, revision?) / remove
 *   apps.watch(project, name, onEvent) / logs(project, name, onLine, opts) → stop()
 *   apps.setLoad(project, name, rps), apps.kubeconfig(project, cluster), apps.setClusterAutoscaler(project, cluster, pools)
 */

export interface AppsDeps {
  resources: ResourceStore;
  registry: ProviderRegistry;
  engine: Pick<EngineApi, 'start'>;
  sim?: SimDatacenter;
  /** Where the simulated clusters' Kubernetes API listens (default 127.0.0.1, a free port). */
  kubeListen?: { host?: string; port?: number };
}

export interface DeployInput {
  project: string;
  name: string;
  cluster: string;
  namespace?: string;
  template: { name: string; version?: string; files: Record<string, string> };
  values?: Record<string, unknown> | string;
  timeoutSeconds?: number;
}

const NAME_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

export class Apps {
  readonly kube: SimKubeRegistry;
  readonly clusters: ClusterConnector;
  readonly provider: AppsProvider;
  private speed = 1;
  private speedTimer: NodeJS.Timeout | undefined;

  constructor(private readonly deps: AppsDeps) {
    this.kube = new SimKubeRegistry(() => this.speed);
    this.clusters = new ClusterConnector({ resources: deps.resources, registry: deps.registry, ...(deps.sim ? { sim: deps.sim } : {}), kube: this.kube, ...(deps.kubeListen ? { kubeListen: deps.kubeListen } : {}) });
    this.provider = new AppsProvider(this.clusters);
    deps.registry.register(this.provider);
    const routing = deps.registry.getRouting();
    if (!routing['apps/App'] && !routing['apps/*']) deps.registry.configure({ ...routing, 'apps/App': 'apps' });
  }

  /** Starts the simulated clusters' clock (follows the simulator's speed). */
  async start(): Promise<void> {
    const refresh = async () => {
      try {
        if (this.deps.sim) this.speed = await this.deps.sim.getSpeed();
      } catch {
        /* keep the last speed */
      }
    };
    await refresh();
    this.speedTimer = setInterval(() => void refresh(), 2000);
    this.speedTimer.unref?.();
    this.kube.start(200);
  }

  async stop(): Promise<void> {
    if (this.speedTimer) clearInterval(this.speedTimer);
    await this.kube.close();
  }

  /** Renders without touching anything. */
  render(input: { files: Record<string, string>; values?: Record<string, unknown> | string; valuesFile?: string; name?: string; namespace?: string }): { yaml: string; manifests: { source: string; object: Record<string, unknown> }[] } {
    const t = loadTemplate(input.files);
    const values = resolveValues(t, input.values, input.valuesFile ?? 'values');
    const ms = renderTemplate(t, values, { name: input.name ?? t.name, namespace: input.namespace ?? 'default' });
    return { yaml: manifestsToYaml(ms), manifests: ms };
  }

  private async findApp(project: string, name: string): Promise<Resource<AppSpecT>> {
    const r = await this.deps.resources.getByName(project, 'apps/App', name);
    if (!r || r.status.phase === 'deleted') throw new NotFoundError('apps.app_not_found', `app ${name} does not exist in project ${project}`, { details: { field: 'name' } });
    return r as unknown as Resource<AppSpecT>;
  }

  /**
   * Creates the app or upgrades it to a new revision. Everything is checked
   * first — template, values against its schema, the rendered objects, the
   * target cluster — so bad input changes nothing.
   */
  async deploy(input: DeployInput): Promise<{ app: Resource; run: RunInfo; action: 'create' | 'update' | 'none' }> {
    if (!NAME_RE.test(input.name) || input.name.length > 53) throw new ValidationError('apps.invalid_name', `name: ${JSON.stringify(input.name)} must be a lowercase DNS label of at most 53 characters`, { details: { field: 'name' } });
    const t = loadTemplate(input.template.files);
    const values = resolveValues(t, input.values, 'values');
    const parsed = AppSpec.safeParse({ cluster: input.cluster, namespace: input.namespace ?? 'default', template: { name: input.template.name || t.name, version: input.template.version ?? t.version, files: input.template.files }, values, ...(input.timeoutSeconds ? { timeoutSeconds: input.timeoutSeconds } : {}) });
    if (!parsed.success) {
      const i = parsed.error.issues[0]!;
      throw new ValidationError('apps.invalid_app', `${i.path.join('.') || '(root)'}: ${i.message}`, { details: { field: i.path.join('.') } });
    }
    const spec = parsed.data;
    renderApp(spec, input.name);
    await this.clusters.findCluster(input.project, input.cluster);
    const existing = await this.deps.resources.getByName(input.project, 'apps/App', input.name);
    if (existing && existing.status.phase !== 'deleted') {
      if (existing.status.phase === 'deleting') throw new ConflictError('apps.deleting', `app ${input.name} is being deleted; wait until it is gone`);
      const prev = existing.spec as unknown as AppSpecT;
      if (prev.cluster !== spec.cluster || prev.namespace !== spec.namespace) throw new ValidationError('apps.move_not_supported', `app ${input.name} runs on ${prev.cluster}/${prev.namespace}; delete it first to deploy it to ${spec.cluster}/${spec.namespace}`);
      const app = await this.deps.resources.updateSpec(existing.id, spec as unknown as Record<string, unknown>);
      const run = await startResourceRun(this.deps.engine, 'update', app);
      return { app, run, action: 'update' };
    }
    const app = await this.deps.resources.create({ kind: 'apps/App', name: input.name, project: input.project, spec: spec as unknown as Record<string, unknown>, labels: { 'apps.infraflow.io/template': spec.template.name } });
    const run = await startResourceRun(this.deps.engine, 'provision', app);
    return { app, run, action: 'create' };
  }

  async list(project: string): Promise<Resource[]> {
    return (await this.deps.resources.list({ project, kind: 'apps/App', limit: 500 })).items;
  }

  async status(project: string, name: string): Promise<{ app: Resource; live: Awaited<ReturnType<AppsProvider['observe']>> | null; error?: string }> {
    const app = await this.findApp(project, name);
    if (!app.status.externalId) return { app, live: null };
    try {
      return { app, live: (await this.provider.observe(app.status.externalId, project)) ?? null };
    } catch (e) {
      return { app, live: null, error: (e as Error).message };
    }
  }

  async revisions(project: string, name: string): Promise<AppRevision[]> {
    const app = await this.findApp(project, name);
    const h = await this.clusters.connect(project, app.spec.cluster);
    return listRevisions(h.client, app.spec.namespace, name);
  }

  /** Returns to a recorded revision (default: the one before the current), as a new revision. */
  async rollback(project: string, name: string, revision?: number): Promise<{ app: Resource; run: RunInfo; to: number }> {
    const revs = await this.revisions(project, name);
    if (revs.length < 1) throw new ConflictError('apps.no_revisions', `app ${name} has no recorded revisions to roll back to`);
    const cur = revs[revs.length - 1]!;
    const target = revision !== undefined ? revs.find((r) => r.revision === revision) : revs[revs.length - 2];
    if (!target) throw new ValidationError('apps.no_such_revision', revision !== undefined ? `revision: app ${name} has no revision ${revision} (recorded: ${revs.map((r) => r.revision).join(', ')})` : `app ${name} has only revision ${cur.revision}: there is nothing before it`, { details: { field: 'revision' } });
    const app = await this.findApp(project, name);
    const updated = await this.deps.resources.updateSpec(app.id, target.spec as unknown as Record<string, unknown>);
    const run = await startResourceRun(this.deps.engine, 'update', updated);
    return { app: updated, run, to: target.revision };
  }

  async remove(project: string, name: string): Promise<{ app: Resource; run: RunInfo }> {
    const app = await this.findApp(project, name);
    const run = await startResourceRun(this.deps.engine, 'delete', app);
    return { app, run };
  }

  /** Pods and services of the app as they change (first the current ones). Returns stop(). */
  async watch(project: string, name: string, onEvent: (e: { type: string; kind: string; name: string; status: string; detail: string }) => void, onEnd?: (err?: Error) => void): Promise<() => void> {
    const app = await this.findApp(project, name);
    const h = await this.clusters.connect(project, app.spec.cluster);
    const ns = app.spec.namespace;
    const revs = await listRevisions(h.client, ns, name);
    const cur = revs[revs.length - 1];
    const deployments = (cur?.objects ?? []).filter((o) => o.kind === 'Deployment');
    const services = new Set((cur?.objects ?? []).filter((o) => o.kind === 'Service').map((o) => o.name));
    const selectors: string[] = [];
    for (const d of deployments) {
      const live = await h.client.get(d.apiVersion, d.kind, ns, d.name);
      if (live) selectors.push(Object.entries(live.spec?.selector?.matchLabels ?? {}).map(([k, v]) => `${k}=${String(v)}`).join(','));
    }
    const stops: (() => void)[] = [];
    const { podStatus } = await import('../providers/sim/kube/api.js');
    for (const sel of selectors) {
      stops.push(await h.client.watch('v1', 'Pod', ns, (type, p) => {
        const ready = (p.status?.containerStatuses ?? []).filter((s: { ready?: boolean }) => s.ready).length;
        const restarts = (p.status?.containerStatuses ?? []).reduce((a: number, s: { restartCount?: number }) => a + (s.restartCount ?? 0), 0);
        const waiting = (p.status?.containerStatuses ?? []).map((s: { state?: { waiting?: { message?: string } } }) => s.state?.waiting?.message).find(Boolean);
        const sched = (p.status?.conditions ?? []).find((c: { type: string; status: string; message?: string }) => c.type === 'PodScheduled' && c.status === 'False');
        onEvent({ type, kind: 'Pod', name: p.metadata.name, status: podStatus(p), detail: `ready ${ready}/${(p.spec?.containers ?? []).length} restarts ${restarts}${p.spec?.nodeName ? ` node ${p.spec.nodeName}` : ''}${sched ? ` — ${sched.message}` : waiting ? ` — ${waiting}` : ''}` });
      }, { labelSelector: sel, ...(onEnd ? { onEnd } : {}) }));
    }
    stops.push(await h.client.watch('v1', 'Endpoints', ns, (type, e) => {
      if (!services.has(e.metadata.name)) return;
      const ready = (e.subsets ?? []).flatMap((s: { addresses?: { ip: string }[] }) => s.addresses ?? []).map((a: { ip: string }) => a.ip);
      const notReady = (e.subsets ?? []).flatMap((s: { notReadyAddresses?: { ip: string }[] }) => s.notReadyAddresses ?? []).length;
      onEvent({ type, kind: 'Service', name: e.metadata.name, status: ready.length ? 'Ready' : 'NoEndpoints', detail: `endpoints ${ready.join(',') || '<none>'}${notReady ? ` (+${notReady} not ready)` : ''}` });
    }));
    return () => stops.forEach((s) => s());
  }

  /** Logs of the app's pods (or one pod); with follow they keep coming. Returns stop(). */
  async logs(project: string, name: string, onLine: (pod: string, line: string) => void, opts: { pod?: string; follow?: boolean; tail?: number; onEnd?: () => void } = {}): Promise<() => void> {
    const app = await this.findApp(project, name);
    const h = await this.clusters.connect(project, app.spec.cluster);
    const ns = app.spec.namespace;
    const revs = await listRevisions(h.client, ns, name);
    const cur = revs[revs.length - 1];
    const pods: string[] = [];
    for (const d of (cur?.objects ?? []).filter((o) => o.kind === 'Deployment')) {
      const live = await h.client.get(d.apiVersion, d.kind, ns, d.name);
      if (!live) continue;
      const sel = Object.entries(live.spec?.selector?.matchLabels ?? {}).map(([k, v]) => `${k}=${String(v)}`).join(',');
      for (const p of await h.client.list('v1', 'Pod', ns, { labelSelector: sel })) if (!p.metadata.deletionTimestamp && p.spec?.nodeName) pods.push(p.metadata.name);
    }
    const chosen = opts.pod ? pods.filter((p) => p === opts.pod) : pods;
    if (opts.pod && !chosen.length) throw new NotFoundError('apps.pod_not_found', `pod ${opts.pod} is not one of app ${name}'s pods (${pods.join(', ') || 'none running'})`, { details: { field: 'pod' } });
    if (!chosen.length) throw new ConflictError('apps.no_pods', `app ${name} has no started pods yet: see infraflow app watch ${name}`);
    let open = chosen.length;
    const stops: (() => void)[] = [];
    for (const p of chosen) {
      stops.push(await h.client.logs(ns, p, (line) => onLine(p, line), { ...(opts.follow ? { follow: true } : {}), ...(opts.tail !== undefined ? { tailLines: opts.tail } : {}), onEnd: () => {
        if (--open === 0) opts.onEnd?.();
      } }));
    }
    return () => stops.forEach((s) => s());
  }

  /** Simulator: offered load of the app (requests/s over its Deployments). */
  async setLoad(project: string, name: string, rps: number): Promise<{ deployments: string[] }> {
    if (!(rps >= 0) || !Number.isFinite(rps)) throw new ValidationError('apps.invalid_load', `rps must be a number of requests per second >= 0 (got ${rps})`, { details: { field: 'rps' } });
    const app = await this.findApp(project, name);
    const h = await this.clusters.connect(project, app.spec.cluster);
    if (!h.sim) throw new ValidationError('apps.not_simulated', `app ${name} runs on cluster ${app.spec.cluster}, which is not simulated: load comes from real clients there`);
    const revs = await listRevisions(h.client, app.spec.namespace, name);
    const ds = (revs[revs.length - 1]?.objects ?? []).filter((o) => o.kind === 'Deployment').map((o) => o.name);
    if (!ds.length) throw new ConflictError('apps.no_deployments', `app ${name} has no Deployment to send load to`);
    for (const d of ds) h.sim.setLoad(app.spec.namespace, d, rps);
    return { deployments: ds };
  }

  async kubeconfig(project: string, cluster: string): Promise<string> {
    return (await this.clusters.connect(project, cluster)).kubeconfig;
  }

  async setClusterAutoscaler(project: string, cluster: string, pools: NodePoolConfig[]): Promise<{ pools: NodePoolConfig[]; nodes: number }> {
    const errs = validatePools(pools.map((p) => ({ name: p.name, min: p.min, max: p.max, size: 0, template: { cpu: p.cpu, memory: p.memoryMiB } })));
    if (errs.length) throw new ValidationError('apps.invalid_autoscaler', errs.join('; '), { details: { field: 'pools' } });
    const sim = await this.clusters.configureAutoscaler(project, cluster, pools);
    return { pools, nodes: sim.store.list(RES.node).length };
  }
}

import { AppSpec, type DiffResult, type KindHandler, type Provider, type ProviderCallContext, type ReadResult, diffSpecs, ProviderError } from '../resources/index.js';
import { KubeApiError, type KObj, type KubeClient } from '../providers/kubernetes/client.js';
import { deploymentStatus, podProblems, serviceStatus, type PodProblem, type WorkloadStatus } from '../providers/kubernetes/status.js';
import type { ClusterConnector } from './clusters.js';
import { loadTemplate, renderTemplate, resolveValues, type RenderedManifest } from './template.js';

/**
 * Provider `apps` for kind apps/App: renders the template with the values,
 * server-side applies the manifests to the target cluster (namespace first),
 * prunes what the previous revision had and this one has not, and records
 * the revision in the namespace as a ConfigMap (`<app>.v<N>`, like Helm's
 * release records) so that a rollback can return to it. `read` reports the
 * rollout: Deployments available, Services with endpoints, pod problems
 * (ImagePullBackOff, CrashLoopBackOff, Unschedulable) with their reasons.
 */

export type AppSpecT = ReturnType<typeof AppSpec.parse>;

export const REVISION_LABEL = 'apps.infraflow.io/app';
const FIELD_MANAGER = 'infraflow';

export interface AppRevision {
  revision: number;
  spec: AppSpecT;
  objects: { apiVersion: string; kind: string; name: string }[];
  appliedAt: number;
  key: string;
}

export function renderApp(spec: AppSpecT, name: string): RenderedManifest[] {
  const t = loadTemplate(spec.template.files);
  const values = resolveValues(t, spec.values, 'values');
  return renderTemplate(t, values, { name, namespace: spec.namespace });
}

function invalid(e: unknown): never {
  if (e instanceof ProviderError) throw e;
  if (e instanceof KubeApiError) {
    if (e.retryable) throw new ProviderError('BackendUnavailable', e.message, { retryable: true });
    if (e.httpStatus === 409) throw new ProviderError('Conflict', e.message, { retryable: true });
    throw new ProviderError('InvalidSpec', `the cluster refused it: ${e.message}`);
  }
  throw new ProviderError('InvalidSpec', (e as Error).message);
}

export async function listRevisions(client: KubeClient, namespace: string, app: string): Promise<AppRevision[]> {
  const cms = await client.list('v1', 'ConfigMap', namespace, { labelSelector: `${REVISION_LABEL}=${app}` });
  return cms.map((c) => JSON.parse(c.data?.revision ?? '{}') as AppRevision).filter((r) => r.revision).sort((a, b) => a.revision - b.revision);
}

export class AppsProvider implements Provider {
  readonly name = 'apps';
  private handlerCache: KindHandler | undefined;

  constructor(private readonly clusters: ConnectorLike, private readonly now: () => number = Date.now) {}

  kinds(): string[] {
    return ['apps/App'];
  }

  handler(kind: string): KindHandler {
    if (kind !== 'apps/App') throw new Error(`provider apps does not implement ${kind}`);
    this.handlerCache ??= {
      kind,
      schema: AppSpec,
      replaceOnChange: ['cluster', 'namespace'],
      validate: (spec: AppSpecT) => void renderApp(spec, 'app'),
      create: (spec: AppSpecT, ctx) => this.apply(spec, ctx),
      read: (id, ctx) => this.read(id, ctx),
      update: async (_id, spec: AppSpecT, _prev, ctx) => {
        const r = await this.apply(spec, ctx);
        return { ready: r.ready, ...(r.outputs ? { outputs: r.outputs } : {}) };
      },
      delete: (id, ctx) => this.remove(id, ctx),
      diff: (previous: AppSpecT, next: AppSpecT): DiffResult => diffSpecs(previous, next, ['cluster', 'namespace']),
    };
    return this.handlerCache;
  }

  private async apply(spec: AppSpecT, ctx: ProviderCallContext): Promise<{ externalId: string; ready: boolean; outputs?: Record<string, unknown> }> {
    let manifests: RenderedManifest[];
    try {
      manifests = renderApp(spec, ctx.resourceName);
    } catch (e) {
      invalid(e);
    }
    const h = await this.clusters.connect(ctx.project, spec.cluster);
    const c = h.client;
    const ns = spec.namespace;
    const app = ctx.resourceName;
    const externalId = `${h.cluster.id}/${ns}/${app}`;
    try {
      if (!(await c.get('v1', 'Namespace', undefined, ns))) await c.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } }, { fieldManager: FIELD_MANAGER });
      const revisions = await listRevisions(c, ns, app);
      const last = revisions[revisions.length - 1];
      // the same call again (a retried step): the revision it wrote stands
      if (last && last.key === ctx.idempotencyKey) return { externalId, ready: false, outputs: { revision: last.revision, cluster: h.cluster.name, namespace: ns } };
      // check every object with the cluster before changing anything
      for (const m of manifests) await c.apply(this.prepare(m.object, manifests, undefined), { fieldManager: FIELD_MANAGER, dryRun: true, ...(ctx.signal ? { signal: ctx.signal } : {}) });
      for (const m of manifests) {
        const live = m.object.kind === 'Deployment' ? await c.get(m.object.apiVersion, m.object.kind, ns, m.object.metadata.name) : undefined;
        await c.apply(this.prepare(m.object, manifests, live), { fieldManager: FIELD_MANAGER, ...(ctx.signal ? { signal: ctx.signal } : {}) });
      }
      const objects = manifests.map((m) => ({ apiVersion: m.object.apiVersion as string, kind: m.object.kind as string, name: m.object.metadata.name as string }));
      if (last) {
        for (const o of last.objects) {
          if (!objects.some((x) => x.kind === o.kind && x.name === o.name && x.apiVersion === o.apiVersion)) await c.delete(o.apiVersion, o.kind, ns, o.name);
        }
      }
      const revision = (last?.revision ?? 0) + 1;
      const rec: AppRevision = { revision, spec, objects, appliedAt: this.now(), key: ctx.idempotencyKey };
      await c.apply({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: `${app}.v${revision}`, namespace: ns, labels: { [REVISION_LABEL]: app, 'apps.infraflow.io/revision': String(revision) } }, data: { revision: JSON.stringify(rec) } }, { fieldManager: FIELD_MANAGER });
      // keep the last 10 revisions
      for (const old of revisions.slice(0, Math.max(0, revisions.length + 1 - 10))) await c.delete('v1', 'ConfigMap', ns, `${app}.v${old.revision}`);
      return { externalId, ready: false, outputs: { revision, cluster: h.cluster.name, namespace: ns, objects: objects.map((o) => `${o.kind}/${o.name}`) } };
    } catch (e) {
      invalid(e);
    }
  }

  /** A Deployment an HPA of the same app scales keeps its live replica count (the HPA owns it). */
  private prepare(o: KObj, all: RenderedManifest[], live: KObj | undefined): KObj {
    if (o.kind !== 'Deployment' || !live) return o;
    const scaled = all.some((m) => m.object.kind === 'HorizontalPodAutoscaler' && m.object.spec?.scaleTargetRef?.kind === 'Deployment' && m.object.spec?.scaleTargetRef?.name === o.metadata.name);
    if (!scaled) return o;
    return { ...o, spec: { ...o.spec, replicas: live.spec?.replicas ?? o.spec?.replicas } };
  }

  private parseId(id: string): { cluster: string; ns: string; app: string } {
    const [cluster, ns, app] = id.split('/');
    if (!cluster || !ns || !app) throw new ProviderError('NotFound', `bad app id ${id}`);
    return { cluster, ns, app };
  }

  /** The live state of the app's current revision. */
  async observe(id: string, project: string): Promise<{ revision?: AppRevision; workloads: WorkloadStatus[]; problems: PodProblem[]; warnings: { object: string; reason: string; message: string }[] } | undefined> {
    const { cluster, ns, app } = this.parseId(id);
    const h = await this.clusters.connect(project, cluster);
    const c = h.client;
    const revisions = await listRevisions(c, ns, app);
    const cur = revisions[revisions.length - 1];
    if (!cur) return undefined;
    const workloads: WorkloadStatus[] = [];
    const pods: KObj[] = [];
    for (const o of cur.objects) {
      if (o.kind === 'Deployment') {
        const d = await c.get(o.apiVersion, o.kind, ns, o.name);
        if (!d) {
          workloads.push({ kind: 'Deployment', name: o.name, ready: false, message: `deployment "${o.name}" is missing` });
          continue;
        }
        workloads.push(deploymentStatus(d));
        const sel = Object.entries(d.spec?.selector?.matchLabels ?? {}).map(([k, v]) => `${k}=${String(v)}`).join(',');
        pods.push(...(await c.list('v1', 'Pod', ns, { labelSelector: sel })));
      } else if (o.kind === 'Service') {
        const s = await c.get(o.apiVersion, o.kind, ns, o.name);
        if (!s) continue;
        workloads.push(serviceStatus(s, await c.get('v1', 'Endpoints', ns, o.name)));
      }
    }
    const podNames = new Set(pods.map((p) => p.metadata.name));
    const events = await c.list('v1', 'Event', ns);
    const warnings = events.filter((e) => e.type === 'Warning' && (podNames.has(e.involvedObject?.name) || cur.objects.some((o) => o.name === e.involvedObject?.name))).slice(-20).map((e) => ({ object: `${e.involvedObject.kind}/${e.involvedObject.name}`, reason: e.reason, message: e.message }));
    return { revision: cur, workloads, problems: podProblems(pods), warnings };
  }

  private async read(id: string, ctx: Omit<ProviderCallContext, 'idempotencyKey'>): Promise<ReadResult> {
    let o: Awaited<ReturnType<AppsProvider['observe']>>;
    try {
      o = await this.observe(id, ctx.project);
    } catch (e) {
      if (e instanceof ProviderError && (e.reason === 'NotFound')) return { state: 'absent', outputs: {} };
      if (e instanceof KubeApiError && e.httpStatus === 404) return { state: 'absent', outputs: {} };
      throw e;
    }
    if (!o?.revision) return { state: 'absent', outputs: {} };
    const rev = o.revision;
    const ready = o.workloads.every((w) => w.ready);
    const failed = o.workloads.find((w) => w.failed);
    const timedOut = !ready && this.now() - rev.appliedAt > rev.spec.timeoutSeconds * 1000;
    const problem = o.problems[0];
    const why = problem ? `: pod ${problem.pod} ${problem.reason}${problem.message ? ` (${problem.message})` : ''}` : '';
    const notReady = o.workloads.filter((w) => !w.ready);
    const outputs = {
      revision: rev.revision, namespace: rev.spec.namespace, template: `${rev.spec.template.name}@${rev.spec.template.version}`,
      workloads: o.workloads, problems: o.problems, warnings: o.warnings,
    };
    const conditions: NonNullable<ReadResult['conditions']> = [
      { type: 'Applied', status: 'True', reason: 'RevisionApplied', message: `revision ${rev.revision} applied (${rev.objects.length} objects)` },
      { type: 'Available', status: ready ? 'True' : 'False', reason: ready ? 'RolledOut' : failed ? 'ProgressDeadlineExceeded' : 'RollingOut', message: ready ? `revision ${rev.revision} is rolled out` : notReady.map((w) => w.message).join('; ') },
      { type: 'PodsHealthy', status: o.problems.length ? 'False' : 'True', reason: problem?.reason ?? 'AllPodsHealthy', message: problem ? `${o.problems.length} pod(s) with problems; first: ${problem.pod} ${problem.reason}${problem.message ? `: ${problem.message}` : ''}` : 'no pod problems' },
    ];
    if (failed || timedOut) {
      return { state: 'failed', outputs, conditions, failureReason: 'Timeout', message: `revision ${rev.revision} did not roll out${failed ? `: ${failed.message}` : ` within ${rev.spec.timeoutSeconds} s`}${why}; roll back with: infraflow app rollback <app>` };
    }
    return { state: ready ? 'ready' : rev.revision === 1 ? 'creating' : 'updating', outputs, conditions, ...(ready ? {} : { message: `${notReady[0]?.message ?? 'rolling out'}${why}` }), observed: rev.spec as unknown as Record<string, unknown> };
  }

  private async remove(id: string, ctx: ProviderCallContext): Promise<{ done: boolean }> {
    const { cluster, ns, app } = this.parseId(id);
    let h;
    try {
      h = await this.clusters.connect(ctx.project, cluster);
    } catch (e) {
      if ((e as { status?: number }).status === 404) return { done: true };
      throw e;
    }
    const c = h.client;
    const revisions = await listRevisions(c, ns, app);
    const seen = new Set<string>();
    for (const r of revisions.reverse()) {
      for (const o of r.objects) {
        const k = `${o.apiVersion}/${o.kind}/${o.name}`;
        if (seen.has(k)) continue;
        seen.add(k);
        await c.delete(o.apiVersion, o.kind, ns, o.name);
      }
    }
    for (const r of revisions) await c.delete('v1', 'ConfigMap', ns, `${app}.v${r.revision}`);
    return { done: true };
  }
}

export interface ConnectorLike {
  connect: ClusterConnector['connect'];
}

import type { IncomingMessage, ServerResponse } from 'node:http';
import { parse as parseYaml } from 'yaml';
import { isReady, RES, type SimKubeCluster } from './cluster.js';
import { jsonPatch, mergePatch, serverSideApply, strategicMerge } from './patch.js';
import { apiVersionOf, byName, KubeError, matchesFieldSelector, matchesSelector, notFound, RESOURCES, type KObj, type ResourceInfo } from './store.js';

/**
 * The Kubernetes API subset a simulated cluster serves, enough for the real
 * kubectl and for the Kubernetes provider: discovery (/api, /apis, resource
 * lists, /version, /openapi/v3 for field validation), CRUD on the resources
 * in store.ts, lists with label and field selectors, watches (chunked JSON
 * lines, from a resourceVersion), server-side printing (meta.k8s.io Table),
 * the scale and status subresources, pod logs (follow, tail, timestamps),
 * patches (JSON, merge, strategic merge, server-side apply).
 */

export interface KubeRequest {
  method: string;
  /** Path after the cluster prefix, e.g. `/api/v1/namespaces/default/pods`. */
  path: string;
  query: URLSearchParams;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

const GROUPS = [...new Set(RESOURCES.filter((r) => r.group).map((r) => `${r.group}/${r.version}`))].map((gv) => {
  const [group, version] = gv.split('/');
  return { group: group!, version: version! };
});

const VERBS = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'];

function resourceList(groupVersion: string): KObj {
  const resources: KObj[] = [];
  for (const r of RESOURCES.filter((x) => apiVersionOf(x) === groupVersion)) {
    resources.push({ name: r.name, singularName: r.singular, namespaced: r.namespaced, kind: r.kind, verbs: VERBS, ...(r.shortNames ? { shortNames: r.shortNames } : {}), ...(r.categories ? { categories: r.categories } : {}), storageVersionHash: '' });
    for (const s of r.subresources ?? []) {
      if (s === 'scale') resources.push({ name: `${r.name}/scale`, singularName: '', namespaced: true, group: 'autoscaling', version: 'v1', kind: 'Scale', verbs: ['get', 'patch', 'update'] });
      else if (s === 'log') resources.push({ name: `${r.name}/log`, singularName: '', namespaced: true, kind: 'Pod', verbs: ['get'] });
      else if (s === 'eviction') resources.push({ name: `${r.name}/eviction`, singularName: '', namespaced: true, group: 'policy', version: 'v1', kind: 'Eviction', verbs: ['create'] });
      else resources.push({ name: `${r.name}/${s}`, singularName: '', namespaced: r.namespaced, kind: r.kind, verbs: ['get', 'patch', 'update'] });
    }
  }
  return { kind: 'APIResourceList', apiVersion: 'v1', groupVersion, resources };
}

/** OpenAPI v3: one document per group version, listing PATCH operations with the fieldValidation parameter (kubectl checks it to validate on the server). */
function openapiV3(gv: string | undefined): KObj {
  if (!gv) {
    const paths: KObj = { 'api/v1': { serverRelativeURL: '/openapi/v3/api/v1?hash=sim' } };
    for (const g of GROUPS) paths[`apis/${g.group}/${g.version}`] = { serverRelativeURL: `/openapi/v3/apis/${g.group}/${g.version}?hash=sim` };
    return { paths };
  }
  const paths: KObj = {};
  const schemas: KObj = {};
  for (const r of RESOURCES.filter((x) => `${x.group ? 'apis/' + x.group : 'api'}/${x.version}` === gv)) {
    const base = `/${gv}${r.namespaced ? '/namespaces/{namespace}' : ''}/${r.name}/{name}`;
    const gvk = { group: r.group, version: r.version, kind: r.kind };
    const params = ['dryRun', 'fieldManager', 'fieldValidation', 'force'].map((name) => ({ name, in: 'query', schema: { type: name === 'force' ? 'boolean' : 'string', uniqueItems: true } }));
    paths[base] = {
      get: { operationId: `read${r.kind}`, 'x-kubernetes-action': 'get', 'x-kubernetes-group-version-kind': gvk, responses: { 200: { description: 'OK' } } },
      put: { operationId: `replace${r.kind}`, 'x-kubernetes-action': 'put', 'x-kubernetes-group-version-kind': gvk, parameters: params, responses: { 200: { description: 'OK' } } },
      patch: { operationId: `patch${r.kind}`, 'x-kubernetes-action': 'patch', 'x-kubernetes-group-version-kind': gvk, parameters: params, responses: { 200: { description: 'OK' } } },
    };
    schemas[`io.k8s.api.${r.group || 'core'}.${r.version}.${r.kind}`] = { type: 'object', 'x-kubernetes-group-version-kind': [gvk], properties: { apiVersion: { type: 'string' }, kind: { type: 'string' }, metadata: { type: 'object' }, spec: { type: 'object' }, status: { type: 'object' } } };
  }
  return { openapi: '3.0.0', info: { title: 'Kubernetes (Infraflow simulator)', version: 'v1.30.4' }, paths, components: { schemas } };
}

// ---------------------------------------------------------------- printing

function age(from: string | undefined, now: number): string {
  if (!from) return '<unknown>';
  const s = Math.max(0, Math.floor((now - Date.parse(from)) / 1000));
  if (s < 120) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 10) return `${m}m${s % 60 ? `${s % 60}s` : ''}`;
  if (m < 180) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h`;
  return `${Math.floor(h / 24)}d`;
}

export function podStatus(p: KObj): string {
  if (p.metadata.deletionTimestamp) return 'Terminating';
  for (const s of p.status?.containerStatuses ?? []) if (s.state?.waiting?.reason && s.state.waiting.reason !== 'ContainerCreating') return s.state.waiting.reason;
  for (const s of p.status?.containerStatuses ?? []) if (s.state?.waiting?.reason) return s.state.waiting.reason;
  return p.status?.phase ?? 'Pending';
}

type Col = [string, string, (o: KObj, now: number) => unknown, number?];
const AGE: Col = ['Age', 'string', (o, now) => age(o.metadata.creationTimestamp, now)];
const NAME: Col = ['Name', 'string', (o) => o.metadata.name];

const COLUMNS: Record<string, Col[]> = {
  pods: [NAME, ['Ready', 'string', (p) => `${(p.status?.containerStatuses ?? []).filter((s: KObj) => s.ready).length}/${(p.spec.containers ?? []).length}`], ['Status', 'string', podStatus], ['Restarts', 'string', (p) => String((p.status?.containerStatuses ?? []).reduce((a: number, s: KObj) => a + (s.restartCount ?? 0), 0))], AGE, ['IP', 'string', (p) => p.status?.podIP ?? '<none>', 1], ['Node', 'string', (p) => p.spec.nodeName ?? '<none>', 1]],
  deployments: [NAME, ['Ready', 'string', (d) => `${d.status?.readyReplicas ?? 0}/${d.spec.replicas ?? 1}`], ['Up-to-date', 'integer', (d) => d.status?.updatedReplicas ?? 0], ['Available', 'integer', (d) => d.status?.availableReplicas ?? 0], AGE, ['Containers', 'string', (d) => d.spec.template.spec.containers.map((c: KObj) => c.name).join(','), 1], ['Images', 'string', (d) => d.spec.template.spec.containers.map((c: KObj) => c.image).join(','), 1]],
  replicasets: [NAME, ['Desired', 'integer', (r) => r.spec.replicas ?? 0], ['Current', 'integer', (r) => r.status?.replicas ?? 0], ['Ready', 'integer', (r) => r.status?.readyReplicas ?? 0], AGE],
  services: [NAME, ['Type', 'string', (s) => s.spec.type ?? 'ClusterIP'], ['Cluster-IP', 'string', (s) => s.spec.clusterIP ?? '<none>'], ['External-IP', 'string', (s) => s.status?.loadBalancer?.ingress?.[0]?.ip ?? (s.spec.type === 'LoadBalancer' ? '<pending>' : '<none>')], ['Port(s)', 'string', (s) => (s.spec.ports ?? []).map((p: KObj) => `${p.port}${p.nodePort ? `:${p.nodePort}` : ''}/${p.protocol ?? 'TCP'}`).join(',') || '<none>'], AGE],
  endpoints: [NAME, ['Endpoints', 'string', (e) => (e.subsets ?? []).flatMap((s: KObj) => (s.addresses ?? []).flatMap((a: KObj) => (s.ports ?? []).map((p: KObj) => `${a.ip}:${p.port}`))).slice(0, 3).join(',') || '<none>'], AGE],
  horizontalpodautoscalers: [NAME, ['Reference', 'string', (h) => `${h.spec.scaleTargetRef.kind}/${h.spec.scaleTargetRef.name}`], ['Targets', 'string', (h) => (h.spec.metrics ?? []).map((m: KObj, i: number) => {
    const cur = h.status?.currentMetrics?.[i]?.resource?.current;
    if (m.type === 'Resource' && m.resource.target.type === 'Utilization') return `cpu: ${cur?.averageUtilization !== undefined ? `${cur.averageUtilization}%` : '<unknown>'}/${m.resource.target.averageUtilization}%`;
    return `${m.type}: <unknown>`;
  }).join(', ')], ['MinPods', 'integer', (h) => h.spec.minReplicas ?? 1], ['MaxPods', 'integer', (h) => h.spec.maxReplicas], ['Replicas', 'integer', (h) => h.status?.currentReplicas ?? 0], AGE],
  nodes: [NAME, ['Status', 'string', (n) => `${(n.status?.conditions ?? []).some((c: KObj) => c.type === 'Ready' && c.status === 'True') ? 'Ready' : 'NotReady'}${n.spec?.unschedulable ? ',SchedulingDisabled' : ''}`], ['Roles', 'string', () => 'worker'], AGE, ['Version', 'string', (n) => n.status?.nodeInfo?.kubeletVersion ?? '']],
  namespaces: [NAME, ['Status', 'string', (n) => (n.metadata.deletionTimestamp ? 'Terminating' : n.status?.phase ?? 'Active')], AGE],
  configmaps: [NAME, ['Data', 'integer', (c) => Object.keys(c.data ?? {}).length + Object.keys(c.binaryData ?? {}).length], AGE],
  secrets: [NAME, ['Type', 'string', (s) => s.type ?? 'Opaque'], ['Data', 'integer', (s) => Object.keys(s.data ?? {}).length], AGE],
  events: [['Last Seen', 'string', (e, now) => age(e.lastTimestamp ?? e.metadata.creationTimestamp, now)], ['Type', 'string', (e) => e.type], ['Reason', 'string', (e) => e.reason], ['Object', 'string', (e) => `${e.involvedObject.kind.toLowerCase()}/${e.involvedObject.name}`], ['Message', 'string', (e) => e.message]],
};

function table(r: ResourceInfo, items: KObj[], now: number, includeObject: string | null, rv: string): KObj {
  const cols = COLUMNS[r.name] ?? [NAME, AGE];
  return {
    kind: 'Table', apiVersion: 'meta.k8s.io/v1', metadata: { resourceVersion: rv },
    columnDefinitions: cols.map(([name, type, , priority]) => ({ name, type, format: name === 'Name' ? 'name' : '', description: name, priority: priority ?? 0 })),
    rows: items.map((o) => ({ cells: cols.map(([, , f]) => f(o, now)), object: includeObject === 'Object' ? o : { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: o.metadata } })),
  };
}

// ---------------------------------------------------------------- handler

function wantsTable(h: KubeRequest['headers']): boolean {
  const a = String(h.accept ?? '');
  return a.includes('as=Table');
}

function parseBody(req: KubeRequest): KObj {
  const text = req.body.toString('utf8');
  if (!text.trim()) throw new KubeError(400, 'BadRequest', 'the request body is empty');
  try {
    const ct = String(req.headers['content-type'] ?? '');
    return (ct.includes('yaml') ? parseYaml(text) : JSON.parse(text)) as KObj;
  } catch (e) {
    throw new KubeError(400, 'BadRequest', `the request body is not valid ${String(req.headers['content-type'] ?? '').includes('yaml') ? 'YAML' : 'JSON'}: ${(e as Error).message.split('\n')[0]}`);
  }
}

const KNOWN_TOP = new Set(['apiVersion', 'kind', 'metadata', 'spec', 'status', 'data', 'stringData', 'binaryData', 'type', 'immutable', 'subsets', 'involvedObject', 'reason', 'message', 'source', 'firstTimestamp', 'lastTimestamp', 'count', 'eventTime', 'reportingComponent', 'reportingInstance', 'action', 'related', 'series']);

/** fieldValidation=Strict: unknown top-level fields and a wrong kind are errors. */
function validate(r: ResourceInfo, o: KObj, strict: boolean): void {
  if (o.kind && o.kind !== r.kind) throw new KubeError(400, 'BadRequest', `the kind of the object (${o.kind}) does not match the URL (${r.kind})`);
  if (strict) {
    const unknown = Object.keys(o).filter((k) => !KNOWN_TOP.has(k));
    if (unknown.length) throw new KubeError(400, 'BadRequest', `.${unknown[0]}: field not declared in schema`);
  }
  if (r.name === 'deployments') {
    const sel = o.spec?.selector;
    if (!sel) throw new KubeError(422, 'Invalid', `Deployment.apps "${o.metadata?.name}" is invalid: spec.selector: Required value`);
    if (!matchesSelector(o.spec?.template?.metadata?.labels, sel)) throw new KubeError(422, 'Invalid', `Deployment.apps "${o.metadata?.name}" is invalid: spec.template.metadata.labels: Invalid value: ${JSON.stringify(o.spec?.template?.metadata?.labels ?? {})}: \`selector\` does not match template \`labels\``);
    for (const [i, c] of ((o.spec?.template?.spec?.containers ?? []) as KObj[]).entries()) if (!c.image) throw new KubeError(422, 'Invalid', `Deployment.apps "${o.metadata?.name}" is invalid: spec.template.spec.containers[${i}].image: Required value`);
    if (o.spec.replicas !== undefined && !(Number.isInteger(o.spec.replicas) && o.spec.replicas >= 0)) throw new KubeError(422, 'Invalid', `Deployment.apps "${o.metadata?.name}" is invalid: spec.replicas: Invalid value: ${o.spec.replicas}: must be greater than or equal to 0`);
  }
  if (r.name === 'horizontalpodautoscalers') {
    const s = o.spec ?? {};
    if (!(s.maxReplicas >= 1)) throw new KubeError(422, 'Invalid', `HorizontalPodAutoscaler.autoscaling "${o.metadata?.name}" is invalid: spec.maxReplicas: Invalid value: ${s.maxReplicas}: must be greater than or equal to 1`);
    if ((s.minReplicas ?? 1) > s.maxReplicas) throw new KubeError(422, 'Invalid', `HorizontalPodAutoscaler.autoscaling "${o.metadata?.name}" is invalid: spec.maxReplicas: Invalid value: ${s.maxReplicas}: must be greater than or equal to \`minReplicas\``);
    for (const [i, m] of ((s.metrics ?? []) as KObj[]).entries()) {
      const t = m.resource?.target ?? m.pods?.target ?? m.object?.target ?? m.external?.target ?? m.containerResource?.target;
      const v = t?.averageUtilization ?? t?.averageValue ?? t?.value;
      if (v !== undefined && !(Number(String(v).replace(/m$/, '')) > 0)) throw new KubeError(422, 'Invalid', `HorizontalPodAutoscaler.autoscaling "${o.metadata?.name}" is invalid: spec.metrics[${i}].resource.target: Invalid value: ${v}: must be greater than 0`);
    }
  }
}

/** Secret stringData folds into data (base64), as the API server does. */
function normalize(r: ResourceInfo, o: KObj): KObj {
  if (r.name === 'secrets' && o.stringData) {
    o.data = { ...(o.data ?? {}) };
    for (const [k, v] of Object.entries(o.stringData as Record<string, string>)) o.data[k] = Buffer.from(String(v)).toString('base64');
    delete o.stringData;
    o.type ??= 'Opaque';
  }
  if (r.name === 'services') {
    o.spec ??= {};
    o.spec.type ??= 'ClusterIP';
    if (!o.spec.clusterIP) {
      let h = 0;
      for (const c of `${o.metadata.namespace}/${o.metadata.name}`) h = (h * 31 + c.charCodeAt(0)) >>> 0;
      o.spec.clusterIP = `10.96.${(h >>> 8) % 250}.${(h % 250) + 2}`;
      o.spec.clusterIPs = [o.spec.clusterIP];
    }
    for (const p of o.spec.ports ?? []) {
      p.protocol ??= 'TCP';
      p.targetPort ??= p.port;
    }
  }
  if (r.name === 'deployments') {
    o.spec.replicas ??= 1;
    o.spec.strategy ??= { type: 'RollingUpdate', rollingUpdate: { maxSurge: '25%', maxUnavailable: '25%' } };
    o.spec.revisionHistoryLimit ??= 10;
    o.spec.progressDeadlineSeconds ??= 600;
  }
  return o;
}

export class KubeApi {
  /** Last configuration applied per field manager and object (server-side apply). */
  private applied = new Map<string, KObj>();

  constructor(private readonly cluster: SimKubeCluster) {}

  /** Serves one request; streams (watch, follow) end when `res` closes. */
  async handle(req: KubeRequest, res: ServerResponse | ResponseSink): Promise<void> {
    try {
      await this.route(req, res);
    } catch (e) {
      const err = e instanceof KubeError ? e : new KubeError(500, 'InternalError', `Internal error occurred: ${(e as Error).message}`);
      send(res, err.code, err.status());
    }
  }

  private async route(req: KubeRequest, res: ServerResponse | ResponseSink): Promise<void> {
    const p = req.path.replace(/\/+$/, '') || '/';
    const c = this.cluster;
    if (p === '/version') return send(res, 200, { major: '1', minor: '30', gitVersion: 'v1.30.4-infraflow-sim', gitCommit: '0000000', gitTreeState: 'clean', buildDate: '2026-01-01T00:00:00Z', goVersion: 'go1.22.5', compiler: 'gc', platform: 'linux/amd64' });
    if (p === '/healthz' || p === '/readyz' || p === '/livez') return sendText(res, 200, 'ok');
    if (p === '/api') return send(res, 200, { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: '127.0.0.1:6443' }] });
    if (p === '/apis') {
      return send(res, 200, { kind: 'APIGroupList', apiVersion: 'v1', groups: GROUPS.map((g) => ({ name: g.group, versions: [{ groupVersion: `${g.group}/${g.version}`, version: g.version }], preferredVersion: { groupVersion: `${g.group}/${g.version}`, version: g.version } })) });
    }
    if (p === '/api/v1') return send(res, 200, resourceList('v1'));
    if (p === '/openapi/v3') return send(res, 200, openapiV3(undefined));
    if (p.startsWith('/openapi/v3/')) return send(res, 200, openapiV3(p.slice('/openapi/v3/'.length)));
    if (p === '/openapi/v2') throw new KubeError(404, 'NotFound', 'the server could not find the requested resource');
    let m = /^\/apis\/([^/]+)\/([^/]+)$/.exec(p);
    if (m) {
      if (!GROUPS.some((g) => g.group === m![1] && g.version === m![2])) throw new KubeError(404, 'NotFound', 'the server could not find the requested resource');
      return send(res, 200, resourceList(`${m[1]}/${m[2]}`));
    }
    m = /^\/(?:api\/(v1)|apis\/([^/]+)\/([^/]+))(?:\/namespaces\/([^/]+))?\/([^/]+)(?:\/([^/]+))?(?:\/([^/]+))?$/.exec(p);
    if (!m) throw new KubeError(404, 'NotFound', 'the server could not find the requested resource');
    const group = m[2] ?? '';
    const version = m[1] ?? m[3]!;
    let ns = m[4];
    let resource = m[5]!;
    let name = m[6];
    let sub = m[7];
    // /api/v1/namespaces/{name} is the namespace itself
    if (!ns && resource === 'namespaces' && name && !sub) {
      /* namespace object */
    } else if (resource === 'namespaces' && name && sub && !m[4]) {
      // /api/v1/namespaces/foo/pods (matched as resource=namespaces name=foo sub=pods)
      ns = name;
      resource = sub;
      name = undefined;
      sub = undefined;
    }
    const r = byName.get(`${group}/${resource}`);
    if (!r || r.version !== version) throw new KubeError(404, 'NotFound', 'the server could not find the requested resource');
    if (!r.namespaced) ns = undefined;
    const strict = req.query.get('fieldValidation') === 'Strict';
    const dryRun = req.query.has('dryRun');
    switch (req.method) {
      case 'GET': {
        if (!name) return this.list(req, res, r, ns);
        if (sub === 'log' && r === RES.pod) return this.logs(req, res, ns!, name);
        const o = c.store.get(r, ns, name);
        if (!o) throw notFound(r, name);
        if (sub === 'scale') return send(res, 200, scaleOf(o));
        if (wantsTable(req.headers)) return send(res, 200, table(r, [o], c.now(), req.query.get('includeObject'), c.store.resourceVersion));
        return send(res, 200, o);
      }
      case 'POST': {
        if (name) throw new KubeError(405, 'MethodNotAllowed', `POST is not supported on ${r.name}/${name}`);
        const body = parseBody(req);
        validate(r, body, strict);
        if (r.namespaced) {
          body.metadata ??= {};
          if (body.metadata.namespace && ns && body.metadata.namespace !== ns) throw new KubeError(400, 'BadRequest', `the namespace of the provided object does not match the namespace sent on the request`);
          body.metadata.namespace = ns ?? body.metadata.namespace ?? 'default';
        }
        normalize(r, body);
        if (dryRun) return send(res, 201, { ...body, apiVersion: apiVersionOf(r), kind: r.kind });
        const o = c.store.create(r, body);
        return send(res, 201, o);
      }
      case 'PUT': {
        if (!name) throw new KubeError(405, 'MethodNotAllowed', 'PUT needs a name');
        const body = parseBody(req);
        if (sub === 'scale') return send(res, 200, this.setScale(r, ns, name, body.spec?.replicas));
        validate(r, body, strict);
        body.metadata ??= {};
        body.metadata.name ??= name;
        if (r.namespaced) body.metadata.namespace = ns;
        normalize(r, body);
        if (dryRun) return send(res, 200, body);
        return send(res, 200, c.store.update(r, body, sub === 'status' ? { subresource: 'status' } : {}));
      }
      case 'PATCH': {
        if (!name) throw new KubeError(405, 'MethodNotAllowed', 'PATCH needs a name');
        const ct = String(req.headers['content-type'] ?? '').split(';')[0]!.trim();
        const live = c.store.get(r, ns, name);
        if (sub === 'scale') {
          if (!live) throw notFound(r, name);
          const patched = this.applyPatch(ct, scaleOf(live), req) as KObj;
          return send(res, 200, this.setScale(r, ns, name, patched.spec?.replicas));
        }
        if (ct === 'application/apply-patch+yaml') {
          const applied = parseBody({ ...req, headers: { ...req.headers, 'content-type': 'application/yaml' } });
          validate(r, applied, strict);
          const manager = req.query.get('fieldManager');
          if (!manager) throw new KubeError(422, 'Invalid', 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch');
          const key = `${manager}|${r.name}|${ns ?? ''}|${name}`;
          const merged = serverSideApply(live, applied, live ? this.applied.get(key) : undefined);
          merged.metadata = { ...(merged.metadata ?? {}), name, ...(r.namespaced ? { namespace: ns } : {}) };
          merged.metadata.managedFields = [{ manager, operation: 'Apply', apiVersion: apiVersionOf(r), time: new Date(c.now()).toISOString().replace(/\.\d+Z$/, 'Z'), fieldsType: 'FieldsV1' }];
          normalize(r, merged);
          if (dryRun) return send(res, 200, merged);
          this.applied.set(key, applied);
          if (!live) return send(res, 201, c.store.create(r, merged));
          delete merged.metadata.resourceVersion;
          return send(res, 200, c.store.update(r, merged));
        }
        if (!live) throw notFound(r, name);
        const patched = this.applyPatch(ct, live, req) as KObj;
        validate(r, patched, false);
        patched.metadata.resourceVersion = (patched.metadata.resourceVersion === live.metadata.resourceVersion) ? undefined : patched.metadata.resourceVersion;
        normalize(r, patched);
        if (dryRun) return send(res, 200, patched);
        return send(res, 200, c.store.update(r, patched, sub === 'status' ? { subresource: 'status' } : {}));
      }
      case 'DELETE': {
        if (!name) {
          // deletecollection
          const items = c.store.list(r, ns).filter((o) => matchesSelector(o.metadata.labels, req.query.get('labelSelector') ?? undefined));
          for (const o of items) this.delete(r, o.metadata.namespace, o.metadata.name);
          return send(res, 200, { kind: `${r.kind}List`, apiVersion: apiVersionOf(r), metadata: {}, items });
        }
        const o = this.delete(r, ns, name);
        return send(res, 200, o);
      }
      default:
        throw new KubeError(405, 'MethodNotAllowed', `${req.method} is not supported`);
    }
  }

  private delete(r: ResourceInfo, ns: string | undefined, name: string): KObj {
    const c = this.cluster;
    const o = c.store.get(r, ns, name);
    if (!o) throw notFound(r, name);
    if (r === RES.pod) {
      c.deletePod(o);
      return c.store.get(r, ns, name) ?? o;
    }
    if (r === RES.ns) {
      if (['default', 'kube-system', 'kube-public', 'kube-node-lease'].includes(name)) throw new KubeError(403, 'Forbidden', `namespaces "${name}" is forbidden: this namespace may not be deleted`);
      return c.store.mutate(r, undefined, name, (x) => {
        x.metadata.deletionTimestamp = new Date(c.now()).toISOString().replace(/\.\d+Z$/, 'Z');
        x.status = { phase: 'Terminating' };
      })!;
    }
    for (const k of [...this.applied.keys()]) if (k.endsWith(`|${r.name}|${ns ?? ''}|${name}`)) this.applied.delete(k);
    return c.store.remove(r, ns, name);
  }

  private applyPatch(ct: string, live: KObj, req: KubeRequest): unknown {
    const body = JSON.parse(req.body.toString('utf8') || 'null');
    if (ct === 'application/merge-patch+json') return mergePatch(live, body);
    if (ct === 'application/strategic-merge-patch+json') return strategicMerge(live, body);
    if (ct === 'application/json-patch+json') return jsonPatch(live, body);
    throw new KubeError(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json`);
  }

  private setScale(r: ResourceInfo, ns: string | undefined, name: string, replicas: unknown): KObj {
    if (r !== RES.deploy && r !== RES.rs) throw new KubeError(404, 'NotFound', 'the server could not find the requested resource');
    if (!(typeof replicas === 'number' && Number.isInteger(replicas) && replicas >= 0)) throw new KubeError(422, 'Invalid', `Scale.autoscaling "${name}" is invalid: spec.replicas: Invalid value: ${JSON.stringify(replicas)}: must be greater than or equal to 0`);
    const o = this.cluster.store.mutate(r, ns, name, (x) => (x.spec.replicas = replicas));
    if (!o) throw notFound(r, name);
    return scaleOf(o);
  }

  private list(req: KubeRequest, res: ServerResponse | ResponseSink, r: ResourceInfo, ns: string | undefined): void {
    const c = this.cluster;
    const labelSel = req.query.get('labelSelector') ?? undefined;
    const fieldSel = req.query.get('fieldSelector') ?? undefined;
    const filter = (o: KObj) => matchesSelector(o.metadata.labels, labelSel) && matchesFieldSelector(o, fieldSel);
    const asTable = wantsTable(req.headers);
    const includeObject = req.query.get('includeObject');
    const sorted = () => c.store.list(r, ns).filter(filter).map((o) => structuredClone(o)).sort((a, b) => (a.metadata.namespace ?? '').localeCompare(b.metadata.namespace ?? '') || (r === RES.event ? Date.parse(a.lastTimestamp) - Date.parse(b.lastTimestamp) : a.metadata.name.localeCompare(b.metadata.name)));
    if (req.query.get('watch') === 'true' || req.query.get('watch') === '1') {
      const rvParam = req.query.get('resourceVersion');
      startStream(res, 'application/json');
      const write = (type: string, o: KObj) => {
        const object = asTable ? table(r, [o], c.now(), includeObject, o.metadata.resourceVersion) : o;
        res.write(JSON.stringify({ type, object }) + '\n');
      };
      let since: number | undefined = rvParam && rvParam !== '0' ? Number(rvParam) : undefined;
      if (since === undefined) {
        for (const o of sorted()) write('ADDED', o);
        since = Number(c.store.resourceVersion);
      }
      const stop = c.store.watch(r.name, ns, (e) => {
        if (filter(e.object) || e.type === 'DELETED') write(e.type, e.object);
      }, since);
      const timeout = Number(req.query.get('timeoutSeconds') ?? 1800) * 1000;
      const timer = setTimeout(() => res.end(), Math.min(timeout, 1800_000));
      timer.unref?.();
      onClose(res, () => {
        stop();
        clearTimeout(timer);
      });
      return;
    }
    const items = sorted();
    const limit = Number(req.query.get('limit') ?? 0);
    const rv = c.store.resourceVersion;
    if (asTable) return send(res, 200, table(r, limit ? items.slice(0, limit) : items, c.now(), includeObject, rv));
    send(res, 200, { kind: `${r.kind}List`, apiVersion: apiVersionOf(r), metadata: { resourceVersion: rv }, items: limit ? items.slice(0, limit) : items });
  }

  private logs(req: KubeRequest, res: ServerResponse | ResponseSink, ns: string, pod: string): void {
    const c = this.cluster;
    const { container, lines } = c.readLogs(ns, pod, req.query.get('container') ?? undefined);
    const ts = req.query.get('timestamps') === 'true';
    const tail = req.query.get('tailLines');
    const fmt = (l: { at: number; text: string }) => `${ts ? new Date(l.at).toISOString().replace('Z', '000000Z').replace(/\.(\d{3})000000Z/, '.$1000000Z') + ' ' : ''}${l.text}\n`;
    const out = tail !== null ? lines.slice(-Number(tail)) : lines;
    if (req.query.get('follow') !== 'true') return sendText(res, 200, out.map(fmt).join(''));
    startStream(res, 'text/plain');
    for (const l of out) res.write(fmt(l));
    const stop = c.followLogs(ns, pod, container, (l) => res.write(fmt(l)));
    // the stream ends when the pod goes
    const stopWatch = c.store.watch('pods', ns, (e) => {
      if (e.type === 'DELETED' && e.object.metadata.name === pod) res.end();
    });
    onClose(res, () => {
      stop();
      stopWatch();
    });
  }
}

function scaleOf(o: KObj): KObj {
  return {
    kind: 'Scale', apiVersion: 'autoscaling/v1',
    metadata: { name: o.metadata.name, namespace: o.metadata.namespace, uid: o.metadata.uid, resourceVersion: o.metadata.resourceVersion, creationTimestamp: o.metadata.creationTimestamp },
    spec: { replicas: o.spec.replicas ?? 1 },
    status: { replicas: o.status?.replicas ?? 0, selector: Object.entries(o.spec.selector?.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`).join(',') },
  };
}

/** What the handler writes to: a node ServerResponse, or anything shaped like it (in-process clients). */
export interface ResponseSink {
  writeHead(status: number, headers: Record<string, string>): unknown;
  write(chunk: string): unknown;
  end(chunk?: string): unknown;
  on(event: 'close', fn: () => void): unknown;
}

function send(res: ServerResponse | ResponseSink, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)) });
  res.end(text);
}

function sendText(res: ServerResponse | ResponseSink, status: number, body: string): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': String(Buffer.byteLength(body)) });
  res.end(body);
}

function startStream(res: ServerResponse | ResponseSink, type: string): void {
  res.writeHead(200, { 'content-type': type, 'transfer-encoding': 'chunked', 'cache-control': 'no-cache' });
  (res as ServerResponse).flushHeaders?.();
}

function onClose(res: ServerResponse | ResponseSink, fn: () => void): void {
  res.on('close', fn);
}

/** Reads a node request into a KubeRequest (path after `prefix`). */
export async function readRequest(req: IncomingMessage, prefix = ''): Promise<KubeRequest> {
  const url = new URL(req.url ?? '/', 'http://x');
  const chunks: Buffer[] = [];
  for await (const ch of req) chunks.push(ch as Buffer);
  return { method: req.method ?? 'GET', path: url.pathname.slice(prefix.length) || '/', query: url.searchParams, headers: req.headers, body: Buffer.concat(chunks) };
}

export { isReady };

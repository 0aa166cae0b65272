import { createHash, randomUUID } from 'node:crypto';

/**
 * The object store of one simulated Kubernetes cluster: objects by resource,
 * namespace and name, a cluster-wide resourceVersion, and watchers that get
 * ADDED / MODIFIED / DELETED events in order. Objects are plain JSON as the
 * Kubernetes API serves them.
 */

export type KObj = Record<string, any>;

export interface ResourceInfo {
  /** Plural name, as in the URL. */
  name: string;
  singular: string;
  kind: string;
  group: string;
  version: string;
  namespaced: boolean;
  shortNames?: string[];
  subresources?: string[];
  categories?: string[];
}

export const RESOURCES: ResourceInfo[] = [
  { name: 'namespaces', singular: 'namespace', kind: 'Namespace', group: '', version: 'v1', namespaced: false, shortNames: ['ns'] },
  { name: 'nodes', singular: 'node', kind: 'Node', group: '', version: 'v1', namespaced: false, shortNames: ['no'] },
  { name: 'pods', singular: 'pod', kind: 'Pod', group: '', version: 'v1', namespaced: true, shortNames: ['po'], subresources: ['log', 'status', 'eviction'], categories: ['all'] },
  { name: 'services', singular: 'service', kind: 'Service', group: '', version: 'v1', namespaced: true, shortNames: ['svc'], categories: ['all'] },
  { name: 'endpoints', singular: 'endpoints', kind: 'Endpoints', group: '', version: 'v1', namespaced: true, shortNames: ['ep'] },
  { name: 'configmaps', singular: 'configmap', kind: 'ConfigMap', group: '', version: 'v1', namespaced: true, shortNames: ['cm'] },
  { name: 'secrets', singular: 'secret', kind: 'Secret', group: '', version: 'v1', namespaced: true },
  { name: 'events', singular: 'event', kind: 'Event', group: '', version: 'v1', namespaced: true, shortNames: ['ev'] },
  { name: 'serviceaccounts', singular: 'serviceaccount', kind: 'ServiceAccount', group: '', version: 'v1', namespaced: true, shortNames: ['sa'] },
  { name: 'deployments', singular: 'deployment', kind: 'Deployment', group: 'apps', version: 'v1', namespaced: true, shortNames: ['deploy'], subresources: ['scale', 'status'], categories: ['all'] },
  { name: 'replicasets', singular: 'replicaset', kind: 'ReplicaSet', group: 'apps', version: 'v1', namespaced: true, shortNames: ['rs'], subresources: ['scale', 'status'], categories: ['all'] },
  { name: 'horizontalpodautoscalers', singular: 'horizontalpodautoscaler', kind: 'HorizontalPodAutoscaler', group: 'autoscaling', version: 'v2', namespaced: true, shortNames: ['hpa'], subresources: ['status'], categories: ['all'] },
];

export const byName = new Map(RESOURCES.map((r) => [`${r.group}/${r.name}`, r]));
export const byKind = new Map(RESOURCES.map((r) => [r.kind, r]));

export function apiVersionOf(r: ResourceInfo): string {
  return r.group ? `${r.group}/${r.version}` : r.version;
}

export interface WatchEvent { type: 'ADDED' | 'MODIFIED' | 'DELETED'; object: KObj }
type Watcher = { resource: string; namespace?: string; fn: (e: WatchEvent) => void };

export class KubeError extends Error {
  constructor(readonly code: number, readonly reason: string, message: string, readonly details?: KObj) {
    super(message);
  }
  status(): KObj {
    return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: this.message, reason: this.reason, code: this.code, ...(this.details ? { details: this.details } : {}) };
  }
}

export const notFound = (r: ResourceInfo, name: string) => new KubeError(404, 'NotFound', `${r.group ? `${r.name}.${r.group}` : r.name} "${name}" not found`, { name, group: r.group, kind: r.name });

const clone = <T>(x: T): T => structuredClone(x);

export class KubeStore {
  private objects = new Map<string, Map<string, KObj>>();
  /** resource → owner uid → keys of the objects it owns (ownerReferences). */
  private owners = new Map<string, Map<string, Set<string>>>();
  private rv = 0;
  private watchers = new Set<Watcher>();
  /** Recent events per resource for watches that start from a resourceVersion. */
  private history: { rv: number; resource: string; ev: WatchEvent }[] = [];

  constructor(private readonly now: () => number) {}

  get resourceVersion(): string {
    return String(this.rv);
  }

  private bucket(resource: string): Map<string, KObj> {
    let b = this.objects.get(resource);
    if (!b) this.objects.set(resource, (b = new Map()));
    return b;
  }

  private key(ns: string | undefined, name: string): string {
    return `${ns ?? ''}/${name}`;
  }

  private index(resource: string, k: string, before: KObj | undefined, after: KObj | undefined): void {
    const uids = (o: KObj | undefined) => ((o?.metadata?.ownerReferences ?? []) as { uid: string }[]).map((r) => r.uid);
    const a = uids(before);
    const b = uids(after);
    if (a.length === 0 && b.length === 0) return;
    let m = this.owners.get(resource);
    if (!m) this.owners.set(resource, (m = new Map()));
    for (const u of a) if (!b.includes(u)) m.get(u)?.delete(k);
    for (const u of b) {
      let set = m.get(u);
      if (!set) m.set(u, (set = new Set()));
      set.add(k);
    }
  }

  /** Objects of `resource` whose ownerReferences name `uid` (stored copies: read only). */
  ownedBy(resource: string, uid: string): KObj[] {
    const keys = this.owners.get(resource)?.get(uid);
    if (!keys) return [];
    const b = this.bucket(resource);
    const out: KObj[] = [];
    for (const k of keys) {
      const o = b.get(k);
      if (o) out.push(o);
    }
    return out;
  }

  private emit(resource: string, ev: WatchEvent): void {
    this.history.push({ rv: this.rv, resource, ev });
    if (this.history.length > 5000) this.history.splice(0, 1000);
    for (const w of this.watchers) {
      if (w.resource !== resource) continue;
      if (w.namespace && ev.object.metadata?.namespace !== w.namespace) continue;
      w.fn({ type: ev.type, object: clone(ev.object) });
    }
  }

  get(r: ResourceInfo, ns: string | undefined, name: string): KObj | undefined {
    const o = this.bucket(r.name).get(this.key(r.namespaced ? ns : undefined, name));
    return o ? clone(o) : undefined;
  }

  /** Read without copying (controllers; never hand it out). */
  peek(r: ResourceInfo, ns: string | undefined, name: string): KObj | undefined {
    return this.bucket(r.name).get(this.key(r.namespaced ? ns : undefined, name));
  }

  list(r: ResourceInfo, ns?: string): KObj[] {
    const out: KObj[] = [];
    for (const o of this.bucket(r.name).values()) if (!ns || !r.namespaced || o.metadata.namespace === ns) out.push(o);
    return out;
  }

  create(r: ResourceInfo, obj: KObj): KObj {
    const o = clone(obj);
    o.apiVersion = apiVersionOf(r);
    o.kind = r.kind;
    o.metadata ??= {};
    if (!o.metadata.name && o.metadata.generateName) o.metadata.name = o.metadata.generateName + randomSuffix();
    if (!o.metadata.name) throw new KubeError(422, 'Invalid', `${r.kind} is invalid: metadata.name: Required value: name or generateName is required`);
    if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(o.metadata.name) || o.metadata.name.length > 253) throw new KubeError(422, 'Invalid', `${r.kind} "${o.metadata.name}" is invalid: metadata.name: Invalid value: "${o.metadata.name}": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'`);
    if (r.namespaced) {
      o.metadata.namespace ??= 'default';
      if (r.name !== 'events' && !this.bucket('namespaces').has(this.key(undefined, o.metadata.namespace))) throw new KubeError(404, 'NotFound', `namespaces "${o.metadata.namespace}" not found`, { name: o.metadata.namespace, kind: 'namespaces' });
    } else delete o.metadata.namespace;
    const k = this.key(o.metadata.namespace, o.metadata.name);
    const b = this.bucket(r.name);
    if (b.has(k)) throw new KubeError(409, 'AlreadyExists', `${r.group ? `${r.name}.${r.group}` : r.name} "${o.metadata.name}" already exists`, { name: o.metadata.name, group: r.group, kind: r.name });
    this.rv++;
    o.metadata.uid = randomUUID();
    o.metadata.resourceVersion = String(this.rv);
    o.metadata.creationTimestamp = new Date(this.now()).toISOString().replace(/\.\d+Z$/, 'Z');
    o.metadata.generation = 1;
    b.set(k, o);
    this.index(r.name, k, undefined, o);
    this.emit(r.name, { type: 'ADDED', object: o });
    return o;
  }

  /** Replaces an object (optimistic concurrency when `resourceVersion` is given). Spec changes bump the generation. */
  update(r: ResourceInfo, obj: KObj, opts: { subresource?: 'status' } = {}): KObj {
    const b = this.bucket(r.name);
    const k = this.key(r.namespaced ? obj.metadata?.namespace ?? 'default' : undefined, obj.metadata?.name);
    const cur = b.get(k);
    if (!cur) throw notFound(r, obj.metadata?.name);
    if (obj.metadata.resourceVersion && obj.metadata.resourceVersion !== cur.metadata.resourceVersion) {
      throw new KubeError(409, 'Conflict', `Operation cannot be fulfilled on ${r.name} "${cur.metadata.name}": the object has been modified; please apply your changes to the latest version and try again`);
    }
    const o = clone(obj);
    o.apiVersion = apiVersionOf(r);
    o.kind = r.kind;
    if (opts.subresource === 'status') {
      const keep = clone(cur);
      keep.status = o.status;
      return this.put(r, k, keep, cur);
    }
    o.metadata = { ...o.metadata, uid: cur.metadata.uid, creationTimestamp: cur.metadata.creationTimestamp, namespace: cur.metadata.namespace, generation: cur.metadata.generation };
    if (cur.metadata.deletionTimestamp) o.metadata.deletionTimestamp = cur.metadata.deletionTimestamp;
    if (o.status === undefined && cur.status !== undefined) o.status = cur.status;
    if (JSON.stringify(o.spec ?? o.data ?? null) !== JSON.stringify(cur.spec ?? cur.data ?? null)) o.metadata.generation = (cur.metadata.generation ?? 1) + 1;
    if (r.namespaced === false) delete o.metadata.namespace;
    return this.put(r, k, o, cur);
  }

  private put(r: ResourceInfo, k: string, o: KObj, cur: KObj): KObj {
    const { resourceVersion: _a, ...a } = o.metadata;
    const { resourceVersion: _b, ...b2 } = cur.metadata;
    if (JSON.stringify({ ...o, metadata: a }) === JSON.stringify({ ...cur, metadata: b2 })) return cur;
    this.rv++;
    o.metadata.resourceVersion = String(this.rv);
    this.bucket(r.name).set(k, o);
    this.index(r.name, k, cur, o);
    this.emit(r.name, { type: 'MODIFIED', object: o });
    return o;
  }

  /**
   * Changes an object through `fn` (given a copy). Returns the stored object
   * (create, update and mutate return the stored object itself: read it,
   * never modify it), or undefined when it is gone.
   */
  mutate(r: ResourceInfo, ns: string | undefined, name: string, fn: (o: KObj) => void): KObj | undefined {
    const k = this.key(r.namespaced ? ns : undefined, name);
    const cur = this.bucket(r.name).get(k);
    if (!cur) return undefined;
    const o = clone(cur);
    fn(o);
    return this.put(r, k, o, cur);
  }

  remove(r: ResourceInfo, ns: string | undefined, name: string): KObj {
    const b = this.bucket(r.name);
    const k = this.key(r.namespaced ? ns : undefined, name);
    const cur = b.get(k);
    if (!cur) throw notFound(r, name);
    b.delete(k);
    this.index(r.name, k, cur, undefined);
    this.rv++;
    const o = clone(cur);
    o.metadata.resourceVersion = String(this.rv);
    this.emit(r.name, { type: 'DELETED', object: o });
    return o;
  }

  /** Subscribes to changes; events after `sinceRv` still in history are replayed first. */
  watch(resource: string, namespace: string | undefined, fn: (e: WatchEvent) => void, sinceRv?: number): () => void {
    if (sinceRv !== undefined) {
      for (const h of this.history) {
        if (h.rv <= sinceRv || h.resource !== resource) continue;
        if (namespace && h.ev.object.metadata?.namespace !== namespace) continue;
        fn({ type: h.ev.type, object: clone(h.ev.object) });
      }
    }
    const w: Watcher = { resource, ...(namespace ? { namespace } : {}), fn };
    this.watchers.add(w);
    return () => this.watchers.delete(w);
  }

  /** Everything (for snapshots). */
  dump(): Record<string, KObj[]> {
    const out: Record<string, KObj[]> = {};
    for (const [k, b] of this.objects) out[k] = [...b.values()].map(clone);
    return out;
  }
}

export function randomSuffix(n = 5): string {
  const a = 'bcdfghjklmnpqrstvwxz2456789';
  let s = '';
  for (let i = 0; i < n; i++) s += a[Math.floor(Math.random() * a.length)];
  return s;
}

export function hashOf(v: unknown, n = 10): string {
  const h = createHash('sha256').update(JSON.stringify(v)).digest();
  const a = 'bcdfghjklmnpqrstvwxz2456789';
  let s = '';
  for (let i = 0; i < n; i++) s += a[h[i]! % a.length];
  return s;
}

/** label selector (matchLabels / matchExpressions, or the `a=b,c!=d,e in (x,y)` string form). */
export function matchesSelector(labels: Record<string, string> | undefined, sel: KObj | string | undefined): boolean {
  const l = labels ?? {};
  if (sel === undefined || sel === null) return true;
  if (typeof sel === 'string') {
    if (!sel.trim()) return true;
    for (const part of splitSelector(sel)) {
      let m: RegExpExecArray | null;
      if ((m = /^\s*([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$/.exec(part))) {
        const vals = m[3]!.split(',').map((x) => x.trim());
        const has = vals.includes(l[m[1]!] ?? '\u0000');
        if (m[2] === 'in' ? !has : has) return false;
      } else if ((m = /^\s*([\w./-]+)\s*(!=|==|=)\s*([\w./-]*)\s*$/.exec(part))) {
        const eq = l[m[1]!] === m[3];
        if (m[2] === '!=' ? eq : !eq) return false;
      } else if ((m = /^\s*!([\w./-]+)\s*$/.exec(part))) {
        if (m[1]! in l) return false;
      } else if ((m = /^\s*([\w./-]+)\s*$/.exec(part))) {
        if (!(m[1]! in l)) return false;
      } else throw new KubeError(400, 'BadRequest', `unable to parse requirement: ${part}`);
    }
    return true;
  }
  for (const [k, v] of Object.entries(sel.matchLabels ?? (sel.matchExpressions ? {} : sel))) if (typeof v === 'string' && l[k] !== v) return false;
  for (const e of (sel.matchExpressions ?? []) as { key: string; operator: string; values?: string[] }[]) {
    const has = e.key in l;
    if (e.operator === 'In' && !(has && e.values?.includes(l[e.key]!))) return false;
    if (e.operator === 'NotIn' && has && e.values?.includes(l[e.key]!)) return false;
    if (e.operator === 'Exists' && !has) return false;
    if (e.operator === 'DoesNotExist' && has) return false;
  }
  return true;
}

function splitSelector(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  for (const c of s) {
    if (c === '(') depth++;
    if (c === ')') depth--;
    if (c === ',' && depth === 0) {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  if (cur.trim()) out.push(cur);
  return out;
}

/** `a=b,c!=d` on fields (metadata.name, metadata.namespace, status.phase, spec.nodeName, involvedObject.*). */
export function matchesFieldSelector(o: KObj, sel: string | undefined): boolean {
  if (!sel) return true;
  for (const part of sel.split(',')) {
    const m = /^\s*([\w.]+)\s*(!=|==|=)\s*(.*?)\s*$/.exec(part);
    if (!m) throw new KubeError(400, 'BadRequest', `invalid field selector: ${part}`);
    let v: unknown = o;
    for (const seg of m[1]!.split('.')) v = (v as KObj | undefined)?.[seg];
    const eq = String(v ?? '') === m[3];
    if (m[2] === '!=' ? eq : !eq) return false;
  }
  return true;
}

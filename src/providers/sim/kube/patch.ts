import { KubeError, type KObj } from './store.js';

/** RFC 7386 JSON merge patch. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return structuredClone(patch);
  const out: KObj = target !== null && typeof target === 'object' && !Array.isArray(target) ? { ...(target as KObj) } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/** List fields merged element by element (strategic merge), by their merge key. */
const MERGE_KEYS: Record<string, string> = {
  containers: 'name', initContainers: 'name', ephemeralContainers: 'name', env: 'name', volumes: 'name', volumeMounts: 'mountPath', imagePullSecrets: 'name',
  conditions: 'type', tolerations: 'key', hostAliases: 'ip', envFrom: '', args: '', command: '',
};

function portKey(list: KObj[]): string {
  return list.some((x) => x && typeof x === 'object' && 'containerPort' in x) ? 'containerPort' : 'port';
}

/** Kubernetes strategic merge patch (the list merge keys of the built-in types, $patch and $deleteFromPrimitiveList directives; ordering directives ignored). */
export function strategicMerge(target: unknown, patch: unknown, field = ''): unknown {
  if (patch === null || typeof patch !== 'object') return structuredClone(patch);
  if (Array.isArray(patch)) {
    const key = field === 'ports' ? portKey([...(Array.isArray(target) ? target : []), ...patch]) : MERGE_KEYS[field];
    if (!key || !Array.isArray(target)) return patch.filter((x) => !(x && typeof x === 'object' && '$patch' in x)).map((x) => structuredClone(x));
    const out: KObj[] = structuredClone(target);
    for (const item of patch as KObj[]) {
      if (item && item.$patch === 'replace') return patch.filter((x) => !(x as KObj).$patch);
      const idx = out.findIndex((x) => x?.[key] === item?.[key]);
      if (item?.$patch === 'delete') {
        if (idx >= 0) out.splice(idx, 1);
        continue;
      }
      if (idx >= 0) out[idx] = strategicMerge(out[idx], item) as KObj;
      else out.push(strategicMerge(undefined, item) as KObj);
    }
    return out;
  }
  const p = patch as KObj;
  if (p.$patch === 'replace') {
    const { $patch: _x, ...rest } = p;
    return structuredClone(rest);
  }
  if (p.$patch === 'delete') return undefined;
  const out: KObj = target !== null && typeof target === 'object' && !Array.isArray(target) ? { ...(target as KObj) } : {};
  for (const [k, v] of Object.entries(p)) {
    if (k.startsWith('$setElementOrder/') || k === '$retainKeys' || k === '$patch') continue;
    if (k.startsWith('$deleteFromPrimitiveList/')) {
      const f = k.slice('$deleteFromPrimitiveList/'.length);
      if (Array.isArray(out[f])) out[f] = (out[f] as unknown[]).filter((x) => !(v as unknown[]).includes(x));
      continue;
    }
    if (v === null) delete out[k];
    else {
      const merged = strategicMerge(out[k], v, k);
      if (merged === undefined) delete out[k];
      else out[k] = merged;
    }
  }
  return out;
}

/** RFC 6902 JSON patch. */
export function jsonPatch(doc: unknown, ops: KObj[]): unknown {
  let d = structuredClone(doc);
  const parse = (path: string) => path.split('/').slice(1).map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
  const get = (root: unknown, segs: string[]) => segs.reduce<unknown>((a, s) => (a as KObj | undefined)?.[s], root);
  for (const op of ops) {
    const segs = parse(op.path);
    const parent = get(d, segs.slice(0, -1)) as KObj | unknown[] | undefined;
    const last = segs[segs.length - 1]!;
    const fail = (m: string) => new KubeError(422, 'Invalid', `json patch ${op.op} ${op.path}: ${m}`);
    if (op.op === 'test') {
      if (JSON.stringify(get(d, segs)) !== JSON.stringify(op.value)) throw fail('test failed');
      continue;
    }
    if (segs.length === 0) {
      if (op.op === 'add' || op.op === 'replace') d = structuredClone(op.value);
      continue;
    }
    if (parent === undefined || parent === null || typeof parent !== 'object') throw fail('the parent does not exist');
    const value = op.op === 'copy' || op.op === 'move' ? structuredClone(get(d, parse(op.from))) : structuredClone(op.value);
    if (op.op === 'move') {
      const fs = parse(op.from);
      const fp = get(d, fs.slice(0, -1)) as KObj;
      if (Array.isArray(fp)) fp.splice(Number(fs[fs.length - 1]), 1);
      else delete fp[fs[fs.length - 1]!];
    }
    if (Array.isArray(parent)) {
      const i = last === '-' ? parent.length : Number(last);
      if (op.op === 'remove') parent.splice(i, 1);
      else if (op.op === 'replace') parent[i] = value;
      else parent.splice(i, 0, value);
    } else if (op.op === 'remove') {
      if (!(last in parent)) throw fail('the path does not exist');
      delete (parent as KObj)[last];
    } else (parent as KObj)[last] = value;
  }
  return d;
}

/**
 * Server-side apply, simplified: the applied configuration is merged over the
 * live object (strategic merge), and fields this field manager applied last
 * time but no longer applies are removed.
 */
export function serverSideApply(live: KObj | undefined, applied: KObj, lastApplied: KObj | undefined): KObj {
  let base = live ? structuredClone(live) : {};
  if (lastApplied) base = removeDropped(base, lastApplied, applied) as KObj;
  return strategicMerge(base, applied) as KObj;
}

function removeDropped(live: unknown, before: unknown, now: unknown): unknown {
  if (!before || typeof before !== 'object' || Array.isArray(before) || !live || typeof live !== 'object' || Array.isArray(live)) return live;
  const out = { ...(live as KObj) };
  for (const [k, v] of Object.entries(before as KObj)) {
    const n = (now as KObj | undefined)?.[k];
    if (n === undefined) delete out[k];
    else if (v && typeof v === 'object' && !Array.isArray(v)) out[k] = removeDropped(out[k], v, n);
  }
  return out;
}

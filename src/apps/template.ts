import { isMap, isScalar, isSeq, LineCounter, parseAllDocuments, parseDocument, stringify, type Node as YNode } from 'yaml';
import { ValidationError } from '../core/errors.js';
import { compileExpr, parseTemplate, toCel, type Template, evalTemplate } from '../stacks/expr.js';
import { validateHpaSpec, type HpaSpec } from './hpa.js';

/**
 * Application templates: a parameter schema plus Kubernetes manifests whose
 * strings hold `${ … }` CEL expressions — the expression language stacks use
 * (src/stacks/expr.ts). Expressions read `params.<name>` (the values) and
 * `instance.name` / `instance.namespace` (the app). A map with `$if: <CEL>`
 * is kept only when the condition is true; a list element with
 * `$each: <CEL list>` repeats once per element, reading `each.value` and
 * `each.index`.
 *
 * A template is a set of files: `template.yaml` (name, description,
 * parameters) and any number of manifest files (`*.yaml`, several documents
 * each). Every error names the file and line to fix.
 */

export type ParamType = 'string' | 'integer' | 'number' | 'boolean' | 'object' | 'array';

export interface ParamSpec {
  type: ParamType;
  description?: string;
  default?: unknown;
  required?: boolean;
  enum?: unknown[];
  minimum?: number;
  maximum?: number;
  pattern?: string;
}

export interface AppTemplate {
  name: string;
  version: string;
  description: string;
  parameters: Record<string, ParamSpec>;
  /** Manifest files: name → text. */
  files: Record<string, string>;
}

export class TemplateError extends ValidationError {
  constructor(message: string, readonly file?: string, readonly line?: number) {
    super('apps.template_invalid', message, { details: { ...(file ? { file } : {}), ...(line ? { line } : {}) } });
  }
}

export class ValuesError extends ValidationError {
  constructor(message: string, issues: { path: string; message: string; line?: number }[]) {
    super('apps.values_invalid', message, { details: { issues } });
  }
}

const TYPES = new Set<ParamType>(['string', 'integer', 'number', 'boolean', 'object', 'array']);

function posOf(lc: LineCounter, node: YNode | null | undefined): number | undefined {
  const off = node?.range?.[0];
  return off === undefined ? undefined : lc.linePos(off).line;
}

/** Loads a template from its files (`template.yaml` plus manifests). */
export function loadTemplate(files: Record<string, string>): AppTemplate {
  const metaFile = Object.keys(files).find((f) => /(^|\/)template\.ya?ml$/.test(f));
  if (!metaFile) throw new TemplateError(`a template needs a template.yaml (name, description, parameters) next to its manifests; found ${Object.keys(files).join(', ') || 'no files'}`);
  const lc = new LineCounter();
  const doc = parseDocument(files[metaFile]!, { lineCounter: lc, prettyErrors: false });
  if (doc.errors.length) {
    const e = doc.errors[0]!;
    throw new TemplateError(`${metaFile}:${lc.linePos(e.pos[0]).line}: ${e.message.split('\n')[0]}`, metaFile, lc.linePos(e.pos[0]).line);
  }
  const meta = (doc.toJS() ?? {}) as Record<string, unknown>;
  const at = (path: (string | number)[]) => {
    const n = doc.getIn(path, true) as YNode | undefined;
    const line = posOf(lc, n);
    return line ? `${metaFile}:${line}` : metaFile;
  };
  if (typeof meta.name !== 'string' || !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(meta.name)) throw new TemplateError(`${at(['name'])}: name must be a lowercase DNS label (got ${JSON.stringify(meta.name)})`, metaFile);
  const parameters: Record<string, ParamSpec> = {};
  const rawParams = (meta.parameters ?? {}) as Record<string, Record<string, unknown>>;
  if (typeof rawParams !== 'object' || Array.isArray(rawParams)) throw new TemplateError(`${at(['parameters'])}: parameters must be a map of name → { type, default, required, description }`, metaFile);
  for (const [name, p] of Object.entries(rawParams)) {
    if (!/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(name)) throw new TemplateError(`${at(['parameters', name])}: parameter name ${JSON.stringify(name)} must be an identifier (letters, digits, _)`, metaFile);
    if (!p || typeof p !== 'object' || !TYPES.has(p.type as ParamType)) throw new TemplateError(`${at(['parameters', name])}: parameter ${name}: type must be one of ${[...TYPES].join(', ')}`, metaFile);
    const spec: ParamSpec = { type: p.type as ParamType };
    for (const k of ['description', 'default', 'required', 'enum', 'minimum', 'maximum', 'pattern'] as const) if (p[k] !== undefined) (spec as unknown as Record<string, unknown>)[k] = p[k];
    const unknown = Object.keys(p).filter((k) => !['type', 'description', 'default', 'required', 'enum', 'minimum', 'maximum', 'pattern'].includes(k));
    if (unknown.length) throw new TemplateError(`${at(['parameters', name, unknown[0]!])}: parameter ${name}: unknown field ${unknown[0]} (fields: type, description, default, required, enum, minimum, maximum, pattern)`, metaFile);
    if (spec.default !== undefined) {
      const err = checkValue(spec, spec.default);
      if (err) throw new TemplateError(`${at(['parameters', name, 'default'])}: parameter ${name}: the default ${err}`, metaFile);
    }
    parameters[name] = spec;
  }
  const manifests = Object.fromEntries(Object.entries(files).filter(([f]) => f !== metaFile && /\.ya?ml$/.test(f)));
  if (!Object.keys(manifests).length) throw new TemplateError(`template ${meta.name} has no manifest files (*.yaml next to template.yaml)`);
  const t: AppTemplate = { name: meta.name, version: String(meta.version ?? '0.1.0'), description: String(meta.description ?? ''), parameters, files: manifests };
  // compile once to report template errors early
  for (const [file, text] of Object.entries(manifests)) compileFile(file, text);
  return t;
}

function checkValue(p: ParamSpec, v: unknown): string | undefined {
  const got = JSON.stringify(v);
  switch (p.type) {
    case 'string':
      if (typeof v !== 'string') return `must be a string (got ${got})`;
      if (p.pattern && !new RegExp(p.pattern).test(v)) return `must match ${p.pattern} (got ${got})`;
      break;
    case 'integer':
      if (typeof v !== 'number' || !Number.isInteger(v)) return `must be an integer (got ${got})`;
      break;
    case 'number':
      if (typeof v !== 'number' || !Number.isFinite(v)) return `must be a number (got ${got})`;
      break;
    case 'boolean':
      if (typeof v !== 'boolean') return `must be true or false (got ${got})`;
      break;
    case 'object':
      if (v === null || typeof v !== 'object' || Array.isArray(v)) return `must be a map (got ${got})`;
      break;
    case 'array':
      if (!Array.isArray(v)) return `must be a list (got ${got})`;
      break;
  }
  if (typeof v === 'number') {
    if (p.minimum !== undefined && v < p.minimum) return `must be >= ${p.minimum} (got ${got})`;
    if (p.maximum !== undefined && v > p.maximum) return `must be <= ${p.maximum} (got ${got})`;
  }
  if (p.enum && !p.enum.some((e) => JSON.stringify(e) === got)) return `must be one of ${p.enum.map((e) => JSON.stringify(e)).join(', ')} (got ${got})`;
  return undefined;
}

/** Parses values (YAML text or an object) and checks them against the schema; fills defaults. */
export function resolveValues(t: AppTemplate, values: string | Record<string, unknown> | undefined, file = 'values'): Record<string, unknown> {
  let obj: Record<string, unknown> = {};
  let lineOf: (key: string) => number | undefined = () => undefined;
  if (typeof values === 'string') {
    const lc = new LineCounter();
    const doc = parseDocument(values, { lineCounter: lc, prettyErrors: false });
    if (doc.errors.length) {
      const e = doc.errors[0]!;
      throw new ValuesError(`${file}:${lc.linePos(e.pos[0]).line}: ${e.message.split('\n')[0]}`, [{ path: '', message: e.message, line: lc.linePos(e.pos[0]).line }]);
    }
    const js = doc.toJS();
    if (js !== null && js !== undefined && (typeof js !== 'object' || Array.isArray(js))) throw new ValuesError(`${file}: values must be a map of parameter: value`, [{ path: '', message: 'not a map' }]);
    obj = (js ?? {}) as Record<string, unknown>;
    lineOf = (key) => posOf(lc, doc.get(key, true) as YNode | undefined) ?? posOf(lc, (doc.contents as { items?: { key: YNode; value: YNode }[] } | null)?.items?.find((i) => isScalar(i.key) && i.key.value === key)?.key);
  } else if (values) obj = values;
  const issues: { path: string; message: string; line?: number }[] = [];
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) {
    const p = t.parameters[k];
    const line = lineOf(k);
    if (!p) {
      issues.push({ path: k, message: `unknown parameter (template ${t.name} has: ${Object.keys(t.parameters).join(', ') || 'none'})`, ...(line ? { line } : {}) });
      continue;
    }
    const err = checkValue(p, v);
    if (err) issues.push({ path: k, message: err, ...(line ? { line } : {}) });
    else out[k] = v;
  }
  for (const [k, p] of Object.entries(t.parameters)) {
    if (k in obj) continue;
    if (p.default !== undefined) out[k] = structuredClone(p.default);
    else if (p.required) issues.push({ path: k, message: `required${p.description ? ` (${p.description})` : ''}` });
  }
  if (issues.length) {
    const first = issues[0]!;
    throw new ValuesError(`${file}${first.line ? `:${first.line}` : ''}: ${first.path}: ${first.message}${issues.length > 1 ? ` (and ${issues.length - 1} more: ${issues.slice(1).map((i) => i.path).join(', ')})` : ''}`, issues);
  }
  return out;
}

// ---------------------------------------------------------------- compile and render

type CNode =
  | { k: 'const'; v: unknown }
  | { k: 'tpl'; t: Template; line: number }
  | { k: 'seq'; items: { node: CNode; each?: { expr: string; line: number } }[] }
  | { k: 'map'; entries: [string, CNode][]; cond?: { expr: string; line: number } };

interface CompiledDoc { file: string; line: number; root: CNode }

const compiledCache = new Map<string, CompiledDoc[]>();

function compileFile(file: string, text: string): CompiledDoc[] {
  const key = `${file}\u0000${text}`;
  const hit = compiledCache.get(key);
  if (hit) return hit;
  const lc = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter: lc, prettyErrors: false });
  if (!Array.isArray(docs)) throw new TemplateError(`${file}: not a YAML stream`, file);
  const out: CompiledDoc[] = [];
  for (const d of docs) {
    if (d.errors.length) {
      const e = d.errors[0]!;
      const line = lc.linePos(e.pos[0]).line;
      throw new TemplateError(`${file}:${line}: ${e.message.split('\n')[0]}`, file, line);
    }
    if (!d.contents) continue;
    const check = (source: string, line: number) => {
      try {
        compileExpr(source);
      } catch (e) {
        throw new TemplateError(`${file}:${line}: ${(e as Error).message}`, file, line);
      }
    };
    const build = (n: YNode | null | undefined): CNode => {
      const line = posOf(lc, n) ?? 1;
      if (!n) return { k: 'const', v: null };
      if (isScalar(n)) {
        if (typeof n.value !== 'string') return { k: 'const', v: n.value };
        let t: Template | undefined;
        try {
          t = parseTemplate(n.value);
        } catch (e) {
          throw new TemplateError(`${file}:${line}: ${(e as Error).message}`, file, line);
        }
        return t ? { k: 'tpl', t, line } : { k: 'const', v: n.value };
      }
      if (isSeq(n)) {
        return {
          k: 'seq',
          items: n.items.map((it) => {
            const node = build(it as YNode);
            if (node.k === 'map') {
              const idx = node.entries.findIndex(([k]) => k === '$each');
              if (idx >= 0) {
                const [, v] = node.entries[idx]!;
                node.entries.splice(idx, 1);
                if (v.k !== 'const' || typeof v.v !== 'string') throw new TemplateError(`${file}:${posOf(lc, it as YNode)}: $each takes a CEL expression giving a list, e.g. $each: params.ports`, file);
                check(v.v, posOf(lc, it as YNode) ?? line);
                return { node, each: { expr: v.v, line: posOf(lc, it as YNode) ?? line } };
              }
            }
            return { node };
          }),
        };
      }
      if (isMap(n)) {
        const entries: [string, CNode][] = [];
        let cond: { expr: string; line: number } | undefined;
        for (const pair of n.items) {
          const k = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
          const vline = posOf(lc, pair.key as YNode) ?? line;
          if (k === '$if') {
            const v = isScalar(pair.value) ? pair.value.value : undefined;
            if (typeof v !== 'string' && typeof v !== 'boolean') throw new TemplateError(`${file}:${vline}: $if takes a CEL condition, e.g. $if: params.ingress.enabled`, file, vline);
            if (typeof v === 'string') check(v, vline);
            cond = { expr: String(v), line: vline };
            continue;
          }
          entries.push([k, build(pair.value as YNode)]);
        }
        return { k: 'map', entries, ...(cond ? { cond } : {}) };
      }
      return { k: 'const', v: (n as { toJSON?: () => unknown }).toJSON?.() ?? null };
    };
    out.push({ file, line: posOf(lc, d.contents as YNode) ?? 1, root: build(d.contents as YNode) });
  }
  if (compiledCache.size > 500) compiledCache.clear();
  compiledCache.set(key, out);
  return out;
}

const OMIT = Symbol('omit');

function evaluate(n: CNode, ctx: Record<string, unknown>, file: string): unknown {
  const wrap = <T>(line: number, f: () => T): T => {
    try {
      return f();
    } catch (e) {
      if (e instanceof TemplateError) throw e;
      throw new TemplateError(`${file}:${line}: ${(e as Error).message}`, file, line);
    }
  };
  switch (n.k) {
    case 'const':
      return n.v;
    case 'tpl':
      return wrap(n.line, () => evalTemplate(n.t, ctx));
    case 'seq': {
      const out: unknown[] = [];
      for (const it of n.items) {
        if (!it.each) {
          const v = evaluate(it.node, ctx, file);
          if (v !== OMIT) out.push(v);
          continue;
        }
        const list = wrap(it.each.line, () => compileExpr(it.each!.expr).evaluate(ctx));
        if (!Array.isArray(list)) throw new TemplateError(`${file}:${it.each.line}: $each must give a list, got ${JSON.stringify(list)}`, file, it.each.line);
        list.forEach((value, index) => {
          const v = evaluate(it.node, { ...ctx, each: toCel({ value, index }) }, file);
          if (v !== OMIT) out.push(v);
        });
      }
      return out;
    }
    case 'map': {
      if (n.cond) {
        const c = n.cond.expr === 'true' ? true : n.cond.expr === 'false' ? false : wrap(n.cond.line, () => compileExpr(n.cond!.expr).evaluate(ctx));
        if (typeof c !== 'boolean') throw new TemplateError(`${file}:${n.cond.line}: $if must give true or false, got ${JSON.stringify(c)}`, file, n.cond.line);
        if (!c) return OMIT;
      }
      const out: Record<string, unknown> = {};
      for (const [k, v] of n.entries) {
        const x = evaluate(v, ctx, file);
        if (x !== OMIT && x !== undefined) out[k] = x;
      }
      return out;
    }
  }
}

export interface RenderedManifest {
  /** Where it came from (file:line). */
  source: string;
  object: Record<string, any>;
}

const CLUSTER_SCOPED = new Set(['Namespace', 'Node', 'ClusterRole', 'ClusterRoleBinding', 'CustomResourceDefinition', 'StorageClass', 'PersistentVolume']);

/**
 * Renders a template with values for an app instance: validated values in,
 * manifests out (each with its source), or an error naming file and line.
 * Touches nothing.
 */
export function renderTemplate(t: AppTemplate, values: Record<string, unknown>, instance: { name: string; namespace: string; revision?: number }): RenderedManifest[] {
  const ctx = { params: toCel(values), instance: toCel({ revision: 1, ...instance }) };
  const out: RenderedManifest[] = [];
  for (const file of Object.keys(t.files).sort()) {
    for (const d of compileFile(file, t.files[file]!)) {
      const v = evaluate(d.root, ctx as Record<string, unknown>, file);
      if (v === OMIT || v === null || v === undefined) continue;
      const source = `${file}:${d.line}`;
      if (typeof v !== 'object' || Array.isArray(v)) throw new TemplateError(`${source}: a manifest must be a map with apiVersion, kind and metadata`, file, d.line);
      const o = v as Record<string, any>;
      if (typeof o.apiVersion !== 'string' || typeof o.kind !== 'string') throw new TemplateError(`${source}: the manifest needs apiVersion and kind`, file, d.line);
      if (typeof o.metadata?.name !== 'string' || !o.metadata.name) throw new TemplateError(`${source}: ${o.kind} needs metadata.name`, file, d.line);
      if (!CLUSTER_SCOPED.has(o.kind)) {
        o.metadata.namespace ??= instance.namespace;
        if (o.metadata.namespace !== instance.namespace) throw new TemplateError(`${source}: ${o.kind} ${o.metadata.name} is in namespace ${o.metadata.namespace}, but the app deploys to ${instance.namespace}`, file, d.line);
      }
      o.metadata.labels = { ...(o.metadata.labels ?? {}), 'app.kubernetes.io/instance': instance.name, 'app.kubernetes.io/managed-by': 'infraflow' };
      checkManifest(o, source, file, d.line);
      out.push({ source, object: o });
    }
  }
  const seen = new Set<string>();
  for (const m of out) {
    const k = `${m.object.kind}/${m.object.metadata.namespace ?? ''}/${m.object.metadata.name}`;
    if (seen.has(k)) throw new TemplateError(`${m.source}: ${m.object.kind} ${m.object.metadata.name} is rendered twice`, m.source.split(':')[0]);
    seen.add(k);
  }
  return out;
}

/** Checks the rendered objects the way the cluster would (so nothing half-applies). */
function checkManifest(o: Record<string, any>, source: string, file: string, line: number): void {
  const bad = (m: string) => new TemplateError(`${source}: ${o.kind} ${o.metadata.name}: ${m}`, file, line);
  if (o.kind === 'Deployment') {
    const r = o.spec?.replicas;
    if (r !== undefined && !(Number.isInteger(r) && r >= 0)) throw bad(`spec.replicas must be an integer >= 0 (got ${JSON.stringify(r)})`);
    if (!o.spec?.selector?.matchLabels) throw bad('spec.selector.matchLabels is required');
    const labels = o.spec?.template?.metadata?.labels ?? {};
    for (const [k, v] of Object.entries(o.spec.selector.matchLabels)) if (labels[k] !== v) throw bad(`spec.selector does not match the pod template's labels (${k}=${String(v)})`);
    const cs = o.spec?.template?.spec?.containers;
    if (!Array.isArray(cs) || !cs.length) throw bad('spec.template.spec.containers needs at least one container');
    cs.forEach((c: Record<string, any>, i: number) => {
      if (!c.image) throw bad(`spec.template.spec.containers[${i}].image is required`);
    });
  }
  if (o.kind === 'HorizontalPodAutoscaler') {
    const s = o.spec ?? {};
    const spec: HpaSpec = { minReplicas: s.minReplicas ?? 1, maxReplicas: s.maxReplicas, metrics: s.metrics ?? [], ...(s.behavior ? { behavior: s.behavior } : {}) };
    const errs = validateHpaSpec(spec);
    if (errs.length) throw bad(errs.join('; '));
    if (!s.scaleTargetRef?.name) throw bad('spec.scaleTargetRef.name is required');
  }
}

/** Manifests as a YAML stream, each with a `# Source:` comment. */
export function manifestsToYaml(ms: RenderedManifest[]): string {
  return ms.map((m) => `---\n# Source: ${m.source}\n${stringify(m.object, { lineWidth: 0 })}`).join('');
}

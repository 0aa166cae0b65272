import { ValidationError } from '../core/errors.js';
import type { ParsedStack, SourceMap, DocPath } from './parse.js';
import { docError } from './parse.js';
import { compileValue, compileExpr, toCel, ExprError, exprBudget, withExprBudget, type CompiledValue, type ExprBudget } from './expr.js';
import type { ParameterDef, ResourceDef, StackDocument, StepDef, PerInstanceDef } from './schema.js';

/**
 * The compiled stack: parameters resolved, templates compiled, resources
 * expanded into instances (`count`, `forEach`), and the dependency graph
 * (references plus `dependsOn`) sorted, with cycles and unknown names
 * reported where they are written. Every pass is linear in the size of the
 * document.
 */

/** What the model needs to know about a kind (a narrow view of the resources registry). */
export interface KindInfo {
  kind: string;
  /** Spec fields whose change forces replacement. */
  replaceOnChange: readonly string[];
  /** Validates a resolved spec; throws with a message naming the field. */
  validate?(spec: unknown): void;
  /**
   * Problems of a spec that may hold UNKNOWN values (known after apply), as
   * paths inside the spec. Problems at or under an UNKNOWN are not reported
   * by the caller, every other one is (unknown keys, types, ranges).
   */
  check?(spec: unknown): SpecIssue[];
}

export interface SpecIssue {
  path: (string | number)[];
  message: string;
  /** A problem of a whole object (a refinement over several fields), not of one field. */
  custom?: boolean;
}

export interface KindCatalog {
  get(kind: string): KindInfo | undefined;
  kinds(): string[];
}

export type InstanceMode = 'single' | 'count' | 'forEach';

export interface ResourceNode {
  name: string;
  def: ResourceDef;
  kind: string;
  mode: InstanceMode;
  phase: number;
  phaseName: string;
  /** Resource names this one depends on (references and dependsOn). */
  deps: string[];
  spec: CompiledValue;
  instances: InstanceNode[];
  /** Position in the topological order. */
  order: number;
}

export interface InstanceNode {
  address: string;
  resource: string;
  index?: number;
  key?: string;
  /** `count` / `each` values for templates (CEL form). */
  local: Record<string, unknown>;
}

export interface CompiledStep {
  def: StepDef;
  path: (string | number)[];
  fields: CompiledValue;
}

export interface CompiledWorkflows {
  preDeploy: CompiledStep[];
  postDeploy: CompiledStep[];
  onFailure: CompiledStep[];
  perInstance: { def: PerInstanceDef; steps: CompiledStep[] }[];
}

export interface StackModel {
  document: StackDocument;
  sourceMap: SourceMap;
  name: string;
  project: string;
  /** Resolved parameter values (plain JSON). */
  params: Record<string, unknown>;
  /** The same in CEL form. */
  paramsCel: Record<string, unknown>;
  phases: string[];
  resources: Map<string, ResourceNode>;
  /** Resource names in dependency order (phases first, then references). */
  order: string[];
  instanceCount: number;
  workflows: CompiledWorkflows;
  outputs: CompiledValue;
  /** The kind catalog the stack was compiled against. */
  kinds?: KindCatalog;
}

export interface CompileOptions {
  /** Parameter values given for this plan/apply; they override defaults. */
  params?: Record<string, unknown>;
  /** Known kinds; when given, an unknown kind is an error and resolved specs are validated. */
  kinds?: KindCatalog;
  /** The expression budget of the whole compilation; default exprBudget(). */
  budget?: ExprBudget;
}

const TYPE_CHECK: Record<ParameterDef['type'], (v: unknown) => boolean> = {
  string: (v) => typeof v === 'string',
  integer: (v) => typeof v === 'number' && Number.isInteger(v),
  number: (v) => typeof v === 'number' && Number.isFinite(v),
  boolean: (v) => typeof v === 'boolean',
  list: (v) => Array.isArray(v),
  map: (v) => v !== null && typeof v === 'object' && !Array.isArray(v),
};

export function resolveParams(doc: StackDocument, map: SourceMap, given: Record<string, unknown> = {}): Record<string, unknown> {
  const defs = doc.spec.parameters;
  for (const k of Object.keys(given)) {
    if (!(k in defs)) {
      throw new ValidationError('stacks.unknown_parameter', `parameter ${JSON.stringify(k)} is not declared by stack ${doc.metadata.name}; declared: ${Object.keys(defs).join(', ') || '(none)'}`, { details: { parameter: k } });
    }
  }
  const out: Record<string, unknown> = {};
  for (const [name, def] of Object.entries(defs)) {
    const fromUser = name in given;
    const v = fromUser ? given[name] : def.default;
    const path = ['spec', 'parameters', name, ...(fromUser ? [] : ['default'])];
    const fail = (msg: string) => fromUser
      ? new ValidationError('stacks.invalid_parameter', `parameter ${name}: ${msg}`, { details: { parameter: name } })
      : docError('stacks.invalid_parameter', map, path, msg, { parameter: name });
    if (v === undefined) {
      if (fromUser) throw fail('a value is required');
      throw new ValidationError('stacks.missing_parameter', `parameter ${name} has no default: give a value for it`, { details: { parameter: name } });
    }
    if (!TYPE_CHECK[def.type](v)) throw fail(`must be of type ${def.type}`);
    if (def.enum && !def.enum.includes(v as never)) throw fail(`must be one of ${def.enum.map((e) => JSON.stringify(e)).join(', ')}`);
    if (typeof v === 'number') {
      if (def.minimum !== undefined && v < def.minimum) throw fail(`must be at least ${def.minimum}`);
      if (def.maximum !== undefined && v > def.maximum) throw fail(`must be at most ${def.maximum}`);
    }
    out[name] = v;
  }
  return out;
}

export function instanceAddress(resource: string, mode: InstanceMode, indexOrKey?: number | string): string {
  if (mode === 'single') return resource;
  if (mode === 'count') return `${resource}[${indexOrKey}]`;
  return `${resource}[${JSON.stringify(String(indexOrKey))}]`;
}

/** Splits `web[2]` / `web["a"]` / `web` into the resource name. */
export function resourceOfAddress(address: string): string {
  const i = address.indexOf('[');
  return i < 0 ? address : address.slice(0, i);
}

/** Compiles a parsed stack; every expression evaluated while compiling draws on one budget (see ExprLimits). */
export function compileStack(parsed: ParsedStack, opts: CompileOptions = {}): StackModel {
  return withExprBudget(opts.budget ?? exprBudget(), () => compile(parsed, opts));
}

function compile(parsed: ParsedStack, opts: CompileOptions): StackModel {
  const { document: doc, sourceMap: map } = parsed;
  const params = resolveParams(doc, map, opts.params);
  const paramsCel = toCel(params) as Record<string, unknown>;
  const stackCel = toCel({ name: doc.metadata.name, project: doc.metadata.project }) as Record<string, unknown>;
  const declaredParams = new Set(Object.keys(doc.spec.parameters));
  const defs = doc.spec.resources;
  const phases = doc.spec.phases.map((p) => p.name);
  const phaseIndex = new Map<string, number>();
  phases.forEach((p, i) => {
    if (phaseIndex.has(p)) throw docError('stacks.duplicate_phase', map, ['spec', 'phases', i, 'name'], `phase ${p} is declared twice`);
    phaseIndex.set(p, i);
  });
  if (phases.length === 0) phases.push('default');

  const compileAt = (value: unknown, base: (string | number)[]) =>
    compileValue(value, (path, message) => docError('stacks.invalid_expression', map, path, message), base);

  const checkRefs = (cv: CompiledValue, allowResources: boolean, what: string) => {
    for (const [ref, path] of cv.refPaths) {
      const [root, name] = [ref.slice(0, ref.indexOf('.')), ref.slice(ref.indexOf('.') + 1)];
      if (root === 'params' && !declaredParams.has(name)) {
        throw docError('stacks.unknown_reference', map, path, `unknown parameter ${JSON.stringify(name)} in ${what}; declared parameters: ${[...declaredParams].join(', ') || '(none)'}`, { reference: ref });
      }
      if (root === 'resources') {
        if (!allowResources) throw docError('stacks.invalid_expression', map, path, `${what} must be known before apply: it can use params, not resources.${name}`, { reference: ref });
        if (!(name in defs)) throw docError('stacks.unknown_reference', map, path, `unknown resource ${JSON.stringify(name)} in ${what}; the stack declares: ${Object.keys(defs).slice(0, 20).join(', ') || '(no resources)'}`, { reference: ref });
      }
    }
  };

  const resources = new Map<string, ResourceNode>();
  let instanceCount = 0;
  for (const [name, def] of Object.entries(defs)) {
    const base = ['spec', 'resources', name];
    if (opts.kinds && !opts.kinds.get(def.kind)) {
      const known = opts.kinds.kinds();
      throw docError('stacks.unknown_kind', map, [...base, 'kind'], `unknown kind ${JSON.stringify(def.kind)} for resource ${name}; known kinds: ${known.join(', ')}`, { kind: def.kind, resource: name });
    }
    let phase = 0;
    if (def.phase !== undefined) {
      const p = phaseIndex.get(def.phase);
      if (p === undefined) throw docError('stacks.unknown_phase', map, [...base, 'phase'], `unknown phase ${JSON.stringify(def.phase)}; declared phases: ${doc.spec.phases.map((x) => x.name).join(', ') || '(none)'}`);
      phase = p;
    }
    const spec = compileAt(def.spec, [...base, 'spec']);
    checkRefs(spec, true, `resource ${name}`);
    for (const r of spec.steps) throw docError('stacks.invalid_expression', map, spec.refPaths.get(`steps.${r}`) ?? [...base, 'spec'], `steps.${r} can only be used in attached workflow steps`);
    const deps = new Set<string>(spec.resources);
    (def.dependsOn ?? []).forEach((d, i) => {
      if (!(d in defs)) throw docError('stacks.unknown_reference', map, [...base, 'dependsOn', i], `dependsOn names unknown resource ${JSON.stringify(d)}`, { reference: d });
      deps.add(d);
    });
    if (deps.has(name)) {
      throw docError('stacks.dependency_cycle', map, spec.refPaths.get(`resources.${name}`) ?? [...base, 'dependsOn'], `resource ${name} depends on itself`, { cycle: [name, name] });
    }
    // expansion (count / forEach / when) may read params only
    const ctx = { params: paramsCel, stack: stackCel };
    const expand = (v: unknown, field: string): unknown => {
      const cv = compileAt(v, [...base, field]);
      checkRefs(cv, false, `${field} of resource ${name}`);
      try {
        return cv.evaluate(ctx);
      } catch (e) {
        const limit = e instanceof ExprError && e.reason === 'limit';
        throw docError(limit ? 'stacks.expression_limit' : 'stacks.invalid_expression', map, [...base, field], `resource ${name}: ${(e as Error).message}`, { resource: name });
      }
    };
    let include = true;
    if (def.when !== undefined) {
      const w = expand(`\${${def.when}}`, 'when');
      if (typeof w !== 'boolean') throw docError('stacks.invalid_expression', map, [...base, 'when'], `when must give true or false, got ${JSON.stringify(w)}`);
      include = w;
    }
    const instances: InstanceNode[] = [];
    let mode: InstanceMode = 'single';
    if (def.count !== undefined) {
      mode = 'count';
      const n = typeof def.count === 'number' ? def.count : expand(def.count, 'count');
      if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > 100_000) throw docError('stacks.invalid_count', map, [...base, 'count'], `count must be an integer from 0 to 100000, got ${JSON.stringify(n)}`);
      if (include) for (let i = 0; i < n; i++) instances.push({ address: instanceAddress(name, mode, i), resource: name, index: i, local: { count: { index: BigInt(i) } } });
    } else if (def.forEach !== undefined) {
      mode = 'forEach';
      const fe = typeof def.forEach === 'string' ? expand(def.forEach, 'forEach') : def.forEach;
      let entries: [string, unknown][];
      if (Array.isArray(fe)) {
        entries = fe.map((x) => {
          if (typeof x !== 'string' && typeof x !== 'number') throw docError('stacks.invalid_for_each', map, [...base, 'forEach'], `forEach list items must be strings or numbers, got ${JSON.stringify(x)}`);
          return [String(x), x];
        });
      } else if (fe !== null && typeof fe === 'object') entries = Object.entries(fe);
      else throw docError('stacks.invalid_for_each', map, [...base, 'forEach'], `forEach must give a list or a map, got ${JSON.stringify(fe)}`);
      const seen = new Set<string>();
      for (const [k] of entries) {
        if (seen.has(k)) throw docError('stacks.invalid_for_each', map, [...base, 'forEach'], `forEach key ${JSON.stringify(k)} appears twice`);
        seen.add(k);
      }
      if (include) for (const [k, v] of entries) instances.push({ address: instanceAddress(name, mode, k), resource: name, key: k, local: { each: { key: k, value: toCel(v) } } });
    } else if (include) {
      instances.push({ address: name, resource: name, local: {} });
    }
    instanceCount += instances.length;
    resources.set(name, { name, def, kind: def.kind, mode, phase, phaseName: phases[phase]!, deps: [...deps], spec, instances, order: -1 });
  }

  // phases: a resource may not depend on one in a later phase
  for (const node of resources.values()) {
    for (const d of node.deps) {
      const dep = resources.get(d)!;
      if (dep.phase > node.phase) {
        const path = node.spec.refPaths.get(`resources.${d}`) ?? ['spec', 'resources', node.name, 'dependsOn'];
        throw docError('stacks.phase_order', map, path, `resource ${node.name} (phase ${node.phaseName}) depends on ${d}, which is in the later phase ${dep.phaseName}: move ${d} to phase ${node.phaseName} or earlier`, { resource: node.name, dependency: d });
      }
    }
  }

  const order = topoSort(resources, map);
  order.forEach((n, i) => (resources.get(n)!.order = i));

  const workflows = compileWorkflows(doc, map, defs, declaredParams, compileAt);
  const outputs = compileAt(doc.spec.outputs, ['spec', 'outputs']);
  checkRefs(outputs, true, 'outputs');

  return { document: doc, sourceMap: map, name: doc.metadata.name, project: doc.metadata.project, params, paramsCel, phases, resources, order, instanceCount, workflows, outputs, ...(opts.kinds ? { kinds: opts.kinds } : {}) };
}

/** Kahn's algorithm, phases first; a cycle is reported by its members in order. */
function topoSort(resources: Map<string, ResourceNode>, map: SourceMap): string[] {
  const indeg = new Map<string, number>();
  const dependents = new Map<string, string[]>();
  for (const n of resources.values()) {
    indeg.set(n.name, n.deps.length);
    for (const d of n.deps) {
      let l = dependents.get(d);
      if (!l) dependents.set(d, (l = []));
      l.push(n.name);
    }
  }
  // one ready queue per phase keeps earlier phases first
  const phaseCount = Math.max(1, ...[...resources.values()].map((n) => n.phase + 1));
  const queues: string[][] = Array.from({ length: phaseCount }, () => []);
  for (const n of resources.values()) if (n.deps.length === 0) queues[n.phase]!.push(n.name);
  const heads = new Array<number>(phaseCount).fill(0);
  const order: string[] = [];
  for (let p = 0; p < phaseCount; p++) {
    const q = queues[p]!;
    while (heads[p]! < q.length) {
      const name = q[heads[p]!++]!;
      order.push(name);
      for (const dep of dependents.get(name) ?? []) {
        const left = indeg.get(dep)! - 1;
        indeg.set(dep, left);
        if (left === 0) queues[resources.get(dep)!.phase]!.push(dep);
      }
    }
  }
  if (order.length === resources.size) return order;
  const cycle = findCycle(resources, new Set([...indeg].filter(([, v]) => v > 0).map(([k]) => k)));
  const first = resources.get(cycle[0]!)!;
  const path: DocPath = first.spec.refPaths.get(`resources.${cycle[1]}`) ?? ['spec', 'resources', first.name];
  throw docError('stacks.dependency_cycle', map, path, `dependency cycle: ${cycle.join(' → ')}; break it by removing one of these references or dependsOn entries`, { cycle });
}

function findCycle(resources: Map<string, ResourceNode>, remaining: Set<string>): string[] {
  // every remaining node has a remaining dependency: walk until a node repeats
  const start = [...remaining].sort()[0]!;
  const seenAt = new Map<string, number>();
  const walk: string[] = [];
  let cur = start;
  while (!seenAt.has(cur)) {
    seenAt.set(cur, walk.length);
    walk.push(cur);
    const next = resources.get(cur)!.deps.filter((d) => remaining.has(d)).sort()[0]!;
    cur = next;
  }
  const cyc = walk.slice(seenAt.get(cur)!);
  // a → b means a depends on b; print it in the order written
  return [...cyc, cyc[0]!];
}

function compileWorkflows(
  doc: StackDocument, map: SourceMap, defs: Record<string, ResourceDef>, declaredParams: Set<string>,
  compileAt: (v: unknown, base: (string | number)[]) => CompiledValue,
): CompiledWorkflows {
  const wf = doc.spec.workflows;
  const list = (steps: StepDef[] | undefined, base: (string | number)[], allowInstance: boolean): CompiledStep[] => {
    const names = new Set<string>();
    return (steps ?? []).map((def, i) => {
      const path = [...base, i];
      if (names.has(def.name)) throw docError('stacks.duplicate_step', map, [...path, 'name'], `step name ${def.name} is used twice in this workflow`);
      const { name: _n, type: _t, when, ...rest } = def as StepDef & Record<string, unknown>;
      let fields = rest as Record<string, unknown>;
      if (def.type === 'waitUntil') {
        const { condition, ...r } = fields;
        fields = r;
        try {
          const e = compileExpr(condition as string);
          checkExprRefs(e.resources, e.params, e.steps, [...path, 'condition']);
        } catch (err) {
          if (err instanceof ExprError) throw docError('stacks.invalid_expression', map, [...path, 'condition'], err.message);
          throw err;
        }
      }
      if (when !== undefined) {
        try {
          const e = compileExpr(when);
          checkExprRefs(e.resources, e.params, e.steps, [...path, 'when']);
        } catch (err) {
          if (err instanceof ExprError) throw docError('stacks.invalid_expression', map, [...path, 'when'], err.message);
          throw err;
        }
      }
      const cv = compileAt(fields, path);
      for (const [ref, p] of cv.refPaths) {
        const [root, name] = [ref.slice(0, ref.indexOf('.')), ref.slice(ref.indexOf('.') + 1)];
        checkOne(root!, name, p);
      }
      if (!allowInstance && cv.roots.has('instance')) throw docError('stacks.invalid_expression', map, path, '`instance` is only defined in perInstance workflows');
      names.add(def.name);
      return { def, path, fields: cv };

      function checkExprRefs(res: Set<string>, ps: Set<string>, st: Set<string>, p: (string | number)[]) {
        for (const r of res) checkOne('resources', r, p);
        for (const r of ps) checkOne('params', r, p);
        for (const r of st) checkOne('steps', r, p);
      }
      function checkOne(root: string, name: string, p: (string | number)[]) {
        if (root === 'resources' && !(name in defs)) throw docError('stacks.unknown_reference', map, p, `unknown resource ${JSON.stringify(name)} in step ${def.name}`, { reference: `resources.${name}` });
        if (root === 'params' && !declaredParams.has(name)) throw docError('stacks.unknown_reference', map, p, `unknown parameter ${JSON.stringify(name)} in step ${def.name}`, { reference: `params.${name}` });
        if (root === 'steps' && !names.has(name)) throw docError('stacks.unknown_reference', map, p, `steps.${name} is not an earlier step of this workflow`, { reference: `steps.${name}` });
      }
    });
  };
  const perInstance = (wf.perInstance ?? []).map((pi, i) => {
    const base = ['spec', 'workflows', 'perInstance', i];
    if (!(pi.resource in defs)) throw docError('stacks.unknown_reference', map, [...base, 'resource'], `perInstance names unknown resource ${JSON.stringify(pi.resource)}`, { reference: pi.resource });
    return { def: pi, steps: list(pi.steps, [...base, 'steps'], true) };
  });
  return {
    preDeploy: list(wf.preDeploy, ['spec', 'workflows', 'preDeploy'], false),
    postDeploy: list(wf.postDeploy, ['spec', 'workflows', 'postDeploy'], false),
    onFailure: list(wf.onFailure, ['spec', 'workflows', 'onFailure'], false),
    perInstance,
  };
}

import { Environment, type ASTNode } from '@marcbachmann/cel-js';

/**
 * CEL expressions and `${ … }` templates (never `eval`).
 *
 * Values cross into CEL with integers as `int` (BigInt) and come back with
 * `int` as plain numbers, so `params.count * 2` works on JSON numbers.
 * Each compiled template knows which resources and parameters it reads, so
 * callers give it only those: evaluation cost does not grow with the stack.
 */

/** A value not known until apply (an output of a resource still to be created). */
export class Unknown {
  static readonly instance = new Unknown();
  private constructor() {}
  toJSON(): string {
    return '(known after apply)';
  }
  toString(): string {
    return '(known after apply)';
  }
}
export const UNKNOWN = Unknown.instance;
export const isUnknown = (v: unknown): v is Unknown => v === UNKNOWN;

const env = new Environment({ unlistedVariablesAreDyn: true, homogeneousAggregateLiterals: false });

const MACROS = new Set(['all', 'exists', 'exists_one', 'map', 'filter', 'transformList', 'transformMap', 'sortBy']);

/** Variables an expression may use. */
export const ROOTS = new Set(['params', 'resources', 'stack', 'count', 'each', 'steps', 'instance', 'run']);

export interface Expr {
  source: string;
  /** Resource names read through `resources.<name>`. */
  resources: Set<string>;
  /** Parameter names read through `params.<name>`. */
  params: Set<string>;
  /** Root variables used. */
  roots: Set<string>;
  /** Step names read through `steps.<name>`. */
  steps: Set<string>;
  evaluate(ctx: Record<string, unknown>): unknown;
}

export class ExprError extends Error {
  constructor(message: string) {
    super(message);
  }
}

const exprCache = new Map<string, Expr>();

function firstLine(msg: string): string {
  return msg.split('\n')[0]!.trim();
}

/** Compiles one CEL expression. Throws ExprError on syntax errors or unknown roots. */
export function compileExpr(source: string): Expr {
  const cached = exprCache.get(source);
  if (cached) return cached;
  let fn: ReturnType<typeof env.parse>;
  try {
    fn = env.parse(source);
  } catch (e) {
    throw new ExprError(`invalid expression ${JSON.stringify(source)}: ${firstLine((e as Error).message)}`);
  }
  const resources = new Set<string>();
  const params = new Set<string>();
  const steps = new Set<string>();
  const roots = new Set<string>();
  collect(fn.ast as ASTNode, new Set(), { resources, params, steps, roots });
  for (const r of roots) {
    if (!ROOTS.has(r)) throw new ExprError(`unknown variable ${JSON.stringify(r)} in ${JSON.stringify(source)}: expressions can use ${[...ROOTS].join(', ')}`);
  }
  const expr: Expr = {
    source,
    resources,
    params,
    roots,
    steps,
    evaluate(ctx) {
      try {
        return fromCel(fn(ctx));
      } catch (e) {
        throw new ExprError(`${JSON.stringify(source)}: ${firstLine((e as Error).message)}`);
      }
    },
  };
  if (exprCache.size > 50_000) exprCache.clear();
  exprCache.set(source, expr);
  return expr;
}

interface Refs { resources: Set<string>; params: Set<string>; steps: Set<string>; roots: Set<string> }

function memberName(node: ASTNode): string | undefined {
  // `x.name` → name; `x["name"]` → name
  if (node.op === '.' || node.op === '.?') return node.args[1];
  if ((node.op === '[]' || node.op === '[?]') && node.args[1].op === 'value' && typeof node.args[1].args === 'string') return node.args[1].args;
  return undefined;
}

function collect(node: ASTNode, bound: Set<string>, out: Refs): void {
  switch (node.op) {
    case 'id':
      if (!bound.has(node.args)) out.roots.add(node.args);
      return;
    case 'value':
      return;
    case '.':
    case '.?':
    case '[]':
    case '[?]': {
      const target = node.args[0];
      if (target.op === 'id' && !bound.has(target.args)) {
        const name = memberName(node);
        if (name !== undefined) {
          if (target.args === 'resources') out.resources.add(name);
          else if (target.args === 'params') out.params.add(name);
          else if (target.args === 'steps') out.steps.add(name);
        } else if (target.args === 'resources' || target.args === 'params' || target.args === 'steps') {
          throw new ExprError(`${target.args}[…] needs a literal name so dependencies are known before apply`);
        }
      }
      collect(target, bound, out);
      if (node.op === '[]' || node.op === '[?]') collect(node.args[1], bound, out);
      return;
    }
    case 'call':
      for (const a of node.args[1]) collect(a, bound, out);
      return;
    case 'rcall': {
      const [name, target, args] = node.args;
      collect(target, bound, out);
      if (MACROS.has(name) && args.length >= 2 && args[0]!.op === 'id') {
        const inner = new Set(bound);
        inner.add(args[0]!.args);
        if (args.length >= 3 && args[1]!.op === 'id' && (name === 'transformList' || name === 'transformMap' || name === 'all' || name === 'exists')) inner.add(args[1]!.args);
        for (const a of args.slice(1)) collect(a, inner, out);
      } else {
        for (const a of args) collect(a, bound, out);
      }
      return;
    }
    case 'list':
      for (const a of node.args) collect(a, bound, out);
      return;
    case 'map':
      for (const [k, v] of node.args) {
        collect(k, bound, out);
        collect(v, bound, out);
      }
      return;
    case '?:':
      for (const a of node.args) collect(a, bound, out);
      return;
    case '!_':
    case '-_':
      collect(node.args, bound, out);
      return;
    default:
      for (const a of node.args as ASTNode[]) collect(a, bound, out);
  }
}

/** JSON-ish values to CEL: integers become BigInt. */
export function toCel(v: unknown): unknown {
  if (typeof v === 'number') return Number.isInteger(v) ? BigInt(v) : v;
  if (v === null || typeof v !== 'object') return v;
  if (Array.isArray(v)) return v.map(toCel);
  if (v instanceof Map || v instanceof Date || v instanceof Uint8Array) return v;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) if (x !== undefined) out[k] = toCel(x);
  return out;
}

/** CEL values back to JSON-ish: BigInt → number, Map → object, Date → ISO string. */
export function fromCel(v: unknown): unknown {
  if (typeof v === 'bigint') return Number(v);
  if (v === null || typeof v !== 'object') return v;
  if (Array.isArray(v)) return v.map(fromCel);
  if (v instanceof Date) return v.toISOString();
  if (v instanceof Uint8Array) return Buffer.from(v).toString('base64');
  if (v instanceof Map) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of v) out[String(k)] = fromCel(x);
    return out;
  }
  if (typeof (v as { valueOf?: () => unknown }).valueOf === 'function' && (v as object).constructor?.name === 'UnsignedInt') return Number((v as { valueOf(): unknown }).valueOf());
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) out[k] = fromCel(x);
  return out;
}

// ---------------------------------------------------------------- templates

type Part = string | Expr;

export interface Template {
  /** The string is exactly one `${ … }`: its value keeps the expression's type. */
  whole: boolean;
  parts: Part[];
}

/** Splits a string into literal parts and `${ … }` expressions. Returns undefined when it has none. */
export function parseTemplate(s: string): Template | undefined {
  if (!s.includes('${')) return undefined;
  const parts: Part[] = [];
  let lit = '';
  let i = 0;
  while (i < s.length) {
    if (s.startsWith('$${', i)) {
      lit += '${';
      i += 3;
      continue;
    }
    if (s.startsWith('${', i)) {
      const end = findClose(s, i + 2);
      if (end < 0) throw new ExprError(`unclosed \${ in ${JSON.stringify(s)}: add the closing }`);
      const src = s.slice(i + 2, end).trim();
      if (!src) throw new ExprError(`empty \${ } in ${JSON.stringify(s)}`);
      if (lit) parts.push(lit);
      lit = '';
      parts.push(compileExpr(src));
      i = end + 1;
      continue;
    }
    lit += s[i];
    i++;
  }
  if (lit) parts.push(lit);
  if (!parts.some((p) => typeof p !== 'string')) return parts.length ? undefined : undefined;
  return { whole: parts.length === 1 && typeof parts[0] !== 'string', parts };
}

/** Index of the `}` closing an expression that starts at `from`, skipping nested braces and string literals. */
function findClose(s: string, from: number): number {
  let depth = 0;
  for (let i = from; i < s.length; i++) {
    const c = s[i];
    if (c === '"' || c === "'") {
      const q = c;
      i++;
      while (i < s.length && s[i] !== q) {
        if (s[i] === '\\') i++;
        i++;
      }
      continue;
    }
    if (c === '{') depth++;
    else if (c === '}') {
      if (depth === 0) return i;
      depth--;
    }
  }
  return -1;
}

function stringify(v: unknown): string {
  if (typeof v === 'string') return v;
  if (v === null || v === undefined) return '';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

export function evalTemplate(t: Template, ctx: Record<string, unknown>): unknown {
  if (t.whole) return (t.parts[0] as Expr).evaluate(ctx);
  let out = '';
  for (const p of t.parts) {
    if (typeof p === 'string') out += p;
    else {
      const v = p.evaluate(ctx);
      if (isUnknown(v)) return UNKNOWN;
      out += stringify(v);
    }
  }
  return out;
}

/**
 * A value (object, list, string…) whose strings may hold templates, compiled
 * once. `evaluate` returns a new value with every template resolved; when a
 * template reads a resource listed in `unknown`, its value is UNKNOWN.
 */
export interface CompiledValue {
  readonly static: boolean;
  readonly resources: Set<string>;
  readonly params: Set<string>;
  readonly steps: Set<string>;
  readonly roots: Set<string>;
  /** Where each `resources.<name>` / `params.<name>` / `steps.<name>` is first read, e.g. `resources.net` → ['spec', 'netId']. */
  readonly refPaths: Map<string, (string | number)[]>;
  /**
   * Context values must already be CEL values (see toCel). Templates reading a
   * resource in `unknown` give UNKNOWN; templates reading one in `partial` (a
   * list or map with some elements still unknown, see PLACEHOLDER) give their
   * value when they do not touch those elements, else UNKNOWN.
   */
  evaluate(ctx: Record<string, unknown>, unknown?: ReadonlySet<string>, partial?: ReadonlySet<string>): unknown;
}

/** Key of the stand-in for an element not known yet inside a list or map of instances. */
export const PLACEHOLDER_KEY = '__unknown__';

function touchesPlaceholder(v: unknown): boolean {
  if (v === null || typeof v !== 'object') return false;
  if (Array.isArray(v)) return v.some(touchesPlaceholder);
  if ((v as Record<string, unknown>)[PLACEHOLDER_KEY] === true) return true;
  return Object.values(v).some(touchesPlaceholder);
}

/** Compiles every template in `value`. `onError(path, message)` turns failures into positioned errors. */
export function compileValue(value: unknown, onError: (path: (string | number)[], message: string) => Error, basePath: (string | number)[] = []): CompiledValue {
  const resources = new Set<string>();
  const params = new Set<string>();
  const steps = new Set<string>();
  const roots = new Set<string>();
  const refPaths = new Map<string, (string | number)[]>();
  let hasTemplates = false;
  const addRefs = (t: Template, path: (string | number)[]) => {
    const note = (k: string) => {
      if (!refPaths.has(k)) refPaths.set(k, path);
    };
    for (const p of t.parts) {
      if (typeof p === 'string') continue;
      for (const r of p.resources) {
        resources.add(r);
        note(`resources.${r}`);
      }
      for (const r of p.params) {
        params.add(r);
        note(`params.${r}`);
      }
      for (const r of p.steps) {
        steps.add(r);
        note(`steps.${r}`);
      }
      for (const r of p.roots) roots.add(r);
    }
  };
  type Node = { kind: 'const'; v: unknown } | { kind: 'tpl'; t: Template } | { kind: 'arr'; items: Node[] } | { kind: 'obj'; entries: [string, Node][] };
  const build = (v: unknown, path: (string | number)[]): Node => {
    if (typeof v === 'string') {
      let t: Template | undefined;
      try {
        t = parseTemplate(v);
      } catch (e) {
        throw onError(path, (e as Error).message);
      }
      if (!t) return { kind: 'const', v };
      hasTemplates = true;
      addRefs(t, path);
      return { kind: 'tpl', t };
    }
    if (Array.isArray(v)) {
      const items = v.map((x, i) => build(x, [...path, i]));
      return items.every((n) => n.kind === 'const') ? { kind: 'const', v } : { kind: 'arr', items };
    }
    if (v !== null && typeof v === 'object') {
      const entries = Object.entries(v).map(([k, x]): [string, Node] => [k, build(x, [...path, k])]);
      return entries.every(([, n]) => n.kind === 'const') ? { kind: 'const', v } : { kind: 'obj', entries };
    }
    return { kind: 'const', v };
  };
  const root = build(value, basePath);
  const run = (n: Node, ctx: Record<string, unknown>, unknown: ReadonlySet<string> | undefined, partial: ReadonlySet<string> | undefined): unknown => {
    switch (n.kind) {
      case 'const':
        return n.v;
      case 'tpl': {
        let readsPartial = false;
        if ((unknown && unknown.size > 0) || (partial && partial.size > 0)) {
          for (const p of n.t.parts) {
            if (typeof p === 'string') continue;
            for (const r of p.resources) {
              if (unknown?.has(r)) return UNKNOWN;
              if (partial?.has(r)) readsPartial = true;
            }
          }
        }
        if (!readsPartial) return evalTemplate(n.t, ctx);
        try {
          const v = evalTemplate(n.t, ctx);
          return touchesPlaceholder(v) ? UNKNOWN : v;
        } catch {
          return UNKNOWN;
        }
      }
      case 'arr':
        return n.items.map((x) => run(x, ctx, unknown, partial));
      case 'obj': {
        const out: Record<string, unknown> = {};
        for (const [k, x] of n.entries) out[k] = run(x, ctx, unknown, partial);
        return out;
      }
    }
  };
  return {
    static: !hasTemplates,
    resources,
    params,
    steps,
    roots,
    refPaths,
    evaluate: (ctx, unknown, partial) => run(root, ctx, unknown, partial),
  };
}

/** Evaluates a CEL condition to a boolean. */
export function evalCondition(source: string, ctx: Record<string, unknown>): boolean {
  const v = compileExpr(source).evaluate(ctx);
  if (typeof v !== 'boolean') throw new ExprError(`condition ${JSON.stringify(source)} must give true or false, got ${JSON.stringify(v)}`);
  return v;
}

/** Removes UNKNOWN markers deeply (for hashing). */
export function containsUnknown(v: unknown): boolean {
  if (isUnknown(v)) return true;
  if (Array.isArray(v)) return v.some(containsUnknown);
  if (v !== null && typeof v === 'object') return Object.values(v).some(containsUnknown);
  return false;
}

import { Environment, type ASTNode } from '@marcbachmann/cel-js';
import { RE2JS } from 're2js';

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

/**
 * Limits on what one expression may cost. CEL implementations meter
 * evaluation for this reason (cel-go's cost limit): a stack document is
 * untrusted input and `xs.map(a, xs.map(b, xs.map(c, …)))` over a long list
 * would otherwise hold the event loop for minutes. Every AST node evaluated
 * costs 1; values built by `+`, literals and function calls cost their size
 * (list elements, map entries, string length / 64). Exceeding a limit throws
 * ExprError, which callers turn into a 400 naming the expression's place.
 */
export interface ExprLimits {
  /** Cost one evaluation may use. */
  maxCost: number;
  /** Wall-clock milliseconds one evaluation may take (a backstop; cost is the deterministic limit). */
  maxMs: number;
  /** Characters of an expression's source. */
  maxSourceLength: number;
  /** Characters of a regular expression given to `matches`. */
  maxPatternLength: number;
}

export const DEFAULT_EXPR_LIMITS: Readonly<ExprLimits> = Object.freeze({ maxCost: 1_000_000, maxMs: 1_000, maxSourceLength: 10_000, maxPatternLength: 2_000 });

/** Cost and time shared by every evaluation inside withExprBudget (one plan, one document). */
export interface ExprBudget {
  /** Cost left for the whole document. */
  remaining: number;
  /** performance.now() after which evaluation stops. */
  deadline: number;
  readonly total: number;
}

/** A budget for a whole document: by default 5× one expression's cost and 2 s. */
export function exprBudget(total = DEFAULT_EXPR_LIMITS.maxCost * 5, ms = 2_000): ExprBudget {
  return { remaining: total, total, deadline: performance.now() + ms };
}

let limits: ExprLimits = { ...DEFAULT_EXPR_LIMITS };
/** Changes the limits (tests, configuration); returns the previous ones. */
export function setExprLimits(next: Partial<ExprLimits>): ExprLimits {
  const prev = limits;
  limits = { ...limits, ...next };
  return prev;
}

let activeBudget: ExprBudget | undefined;
/** Runs `fn` (synchronous) with every evaluation inside it drawing on `budget`. */
export function withExprBudget<T>(budget: ExprBudget, fn: () => T): T {
  const prev = activeBudget;
  activeBudget = budget;
  try {
    return fn();
  } finally {
    activeBudget = prev;
  }
}

/** Thrown inside the evaluator when a limit is exceeded; never caught by CEL's own error handling (it is rethrown). */
class LimitExceeded extends Error {}

interface Meter { cost: number; max: number; deadline: number; source: string; reason?: string }
let meter: Meter | undefined;

function exceed(m: Meter, why: string): never {
  m.reason ??= why;
  throw new LimitExceeded(why);
}

function charge(m: Meter, n: number): void {
  m.cost += n;
  if (m.cost > m.max) exceed(m, m.max === limits.maxCost ? `exceeds the cost limit of one expression (${limits.maxCost}): make it do less work (fewer nested map/filter/all over long lists)` : `exceeds the cost left for this document (${activeBudget?.total ?? m.max} in all): its expressions do too much work`);
}

function sizeOf(v: unknown): number {
  if (typeof v === 'string') return v.length >> 6;
  if (Array.isArray(v)) return v.length;
  if (v instanceof Map) return v.size;
  return 0;
}

const RE_CACHE = new Map<string, RE2JS>();
/** `matches` with RE2 semantics (linear time, as the CEL spec says), never a backtracking engine. */
function re2Matches(s: string, pattern: string): boolean {
  let re = RE_CACHE.get(pattern);
  if (!re) {
    if (pattern.length > limits.maxPatternLength) throw new ExprError(`regular expression is longer than ${limits.maxPatternLength} characters`);
    try {
      re = RE2JS.compile(pattern);
    } catch (e) {
      throw new ExprError(`invalid regular expression (RE2 syntax): ${firstLine((e as Error).message)}`);
    }
    if (RE_CACHE.size > 1000) RE_CACHE.clear();
    RE_CACHE.set(pattern, re);
  }
  if (meter) charge(meter, s.length >> 4);
  return re.matcher(s).find();
}

const env = new Environment({
  unlistedVariablesAreDyn: true,
  homogeneousAggregateLiterals: false,
  limits: { maxAstNodes: 5_000, maxDepth: 64, maxListElements: 1_000, maxMapEntries: 1_000, maxCallArguments: 32 },
});

/*
 * Metering: cel-js evaluates every node but the root through its evaluator's
 * `run(ast, ctx)`. That method is wrapped once (on the evaluator's prototype,
 * found by evaluating a probe) to charge each node, enforce the deadline every
 * 1024 steps, and evaluate `matches` with RE2. Roots are never `matches` calls
 * (compileExpr wraps those), so every call is seen here.
 */
type Run = (this: unknown, ast: ASTNode, ctx: unknown) => unknown;
(function instrument() {
  const probe = env.parse('1');
  let proto: { run: Run } | undefined;
  (probe.ast as unknown as { evaluate: (ev: object) => unknown }).evaluate = (ev: object) => {
    proto = Object.getPrototypeOf(ev) as { run: Run };
    return 1n;
  };
  probe({});
  if (!proto || typeof proto.run !== 'function') throw new Error('cel-js evaluator not found: the expression cost meter cannot be installed');
  proto.run = function meteredRun(this: unknown, ast: ASTNode, ctx: unknown): unknown {
    const m = meter;
    if (m) {
      // CEL's `||`, `&&` and quantifiers catch errors as values: once exceeded, stay exceeded
      if (m.reason) throw new LimitExceeded(m.reason);
      if ((++m.cost & 1023) === 0) {
        if (m.cost > m.max) charge(m, 0);
        if (performance.now() > m.deadline) exceed(m, `took longer than ${limits.maxMs} ms`);
      }
    }
    const node = ast as ASTNode & { evaluate(ev: unknown, a: unknown, c: unknown): unknown };
    if ((node.op === 'rcall' || node.op === 'call') && (node.args as unknown[])[0] === 'matches') {
      const args = node.args as unknown as [string, ASTNode, ASTNode[]] | [string, ASTNode[]];
      const [subject, pattern] = node.op === 'rcall' ? [args[1] as ASTNode, (args[2] as ASTNode[])[0]] : [(args[1] as ASTNode[])[0], (args[1] as ASTNode[])[1]];
      if (subject && pattern) {
        const s = (this as { run: Run }).run(subject, ctx);
        const p = (this as { run: Run }).run(pattern, ctx);
        if (typeof s === 'string' && typeof p === 'string') return re2Matches(s, p);
      }
    }
    const v = node.evaluate(this, node, ctx);
    if (m && (node.op === '+' || node.op === 'call' || node.op === 'rcall' || node.op === 'list' || node.op === 'map')) {
      const n = sizeOf(v);
      if (n > 0) charge(m, n);
    }
    return v;
  };
})();

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
  /** Where in the value being evaluated (set by compileValue), e.g. ['spec', 'rules', 0, 'port']. */
  path?: (string | number)[];
  constructor(message: string, readonly reason: 'invalid' | 'limit' = 'invalid') {
    super(message);
  }
}

/** An expression as quoted in messages: long ones are cut. */
function short(source: string): string {
  return source.length > 200 ? `${source.slice(0, 197)}...` : source;
}

const exprCache = new Map<string, Expr>();

function firstLine(msg: string): string {
  return msg.split('\n')[0]!.trim();
}

/** Compiles one CEL expression. Throws ExprError on syntax errors or unknown roots. */
export function compileExpr(source: string): Expr {
  const cached = exprCache.get(source);
  if (cached) return cached;
  if (source.length > limits.maxSourceLength) throw new ExprError(`expression is longer than ${limits.maxSourceLength} characters`);
  let fn: ReturnType<typeof env.parse>;
  try {
    fn = env.parse(source);
    const root = fn.ast as ASTNode;
    // the root is evaluated outside the metered run(): keep `matches` off it
    if ((root.op === 'rcall' || root.op === 'call') && root.args[0] === 'matches') fn = env.parse(`(${source}) == true`);
  } catch (e) {
    throw new ExprError(`invalid expression ${JSON.stringify(short(source))}: ${firstLine((e as Error).message)}`);
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
      const outer = meter;
      const budget = activeBudget;
      const now = performance.now();
      const max = budget ? Math.min(limits.maxCost, budget.remaining) : limits.maxCost;
      const m: Meter = { cost: 0, max, deadline: Math.min(now + limits.maxMs, budget?.deadline ?? Infinity), source };
      if (budget && now > budget.deadline) throw new ExprError(`${JSON.stringify(short(source))}: the expressions of this document took longer than allowed: make them do less work`, 'limit');
      meter = m;
      try {
        const v = fn(ctx);
        if (m.reason) throw new LimitExceeded(m.reason);
        return fromCel(v);
      } catch (e) {
        if (m.reason) throw new ExprError(`${JSON.stringify(short(source))} ${m.reason}`, 'limit');
        if (e instanceof ExprError) throw new ExprError(`${JSON.stringify(short(source))}: ${e.message}`);
        throw new ExprError(`${JSON.stringify(short(source))}: ${firstLine((e as Error).message)}`);
      } finally {
        meter = outer;
        if (budget) budget.remaining -= m.cost;
        if (outer) outer.cost += m.cost;
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
  type Node = { kind: 'const'; v: unknown } | { kind: 'tpl'; t: Template; path: (string | number)[] } | { kind: 'arr'; items: Node[] } | { kind: 'obj'; entries: [string, Node][] };
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
      return { kind: 'tpl', t, path };
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
        try {
          if (!readsPartial) return evalTemplate(n.t, ctx);
          const v = evalTemplate(n.t, ctx);
          return touchesPlaceholder(v) ? UNKNOWN : v;
        } catch (e) {
          if (e instanceof ExprError) {
            e.path ??= n.path;
            if (readsPartial && e.reason !== 'limit') return UNKNOWN;
          }
          throw e;
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

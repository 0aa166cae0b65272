import { isAlias, isCollection, isMap, isNode, isPair, isScalar, LineCounter, parseDocument, type Document, type Node as YamlNode } from 'yaml';
import type { z } from 'zod';
import { ValidationError } from './errors.js';

/**
 * Untrusted input: YAML/JSON documents and request bodies, parsed with
 * limits (size, nesting depth, aliases, number of values) so that no document
 * can make the server work for minutes or fail with a 500, and Zod failures
 * turned into the project's ValidationError with field paths — one helper,
 * used everywhere.
 */

export interface DocumentLimits {
  /** Characters of the text. */
  maxBytes: number;
  /** Nesting depth of mappings and lists. */
  maxDepth: number;
  /** Alias nodes (`*name`) in the text. */
  maxAliases: number;
  /** Values (scalars, mappings, lists) after aliases are expanded. */
  maxNodes: number;
}

export const DOCUMENT_LIMITS: Readonly<DocumentLimits> = Object.freeze({ maxBytes: 5_000_000, maxDepth: 64, maxAliases: 100, maxNodes: 1_000_000 });

export type Path = (string | number)[];

/**
 * `a.b.2.c`: the API's field paths (the same form Fastify's schema errors
 * get, `body.networks.0`); control, bidi and zero-width characters in keys
 * are escaped, never echoed. Stack documents name places as `a.b[2].c`
 * (src/stacks/parse.ts formatPath), with file:line.
 */
export function formatField(path: readonly (string | number | symbol)[]): string {
  return path.filter((p): p is string | number => typeof p !== 'symbol').map((p) => String(p).replace(/[\p{Cc}\p{Cf}\u2028\u2029]/gu, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)).join('.');
}

export interface FieldProblem {
  field: string;
  message: string;
}

/**
 * Turns Zod issues into one ValidationError: `message` names the first field
 * (`servers[2].serial: Required`), `details.field` is that field and
 * `details.errors` lists every field (problem+json shows them as `errors[]`).
 * `prefix` is where the validated value sits (`['datacenters', 0]`, `['spec']`).
 */
export function zodError(code: string, error: z.ZodError | { issues: readonly z.core.$ZodIssue[] }, opts: { prefix?: Path; what?: string; root?: string; details?: Record<string, unknown> } = {}): ValidationError {
  const prefix = opts.prefix ?? [];
  const errors: FieldProblem[] = error.issues.slice(0, 50).map((i) => {
    const path = [...prefix, ...i.path.filter((p): p is string | number => typeof p !== 'symbol')];
    if (i.code === 'unrecognized_keys' && i.keys.length === 1) path.push(i.keys[0]!);
    return { field: formatField(path) || opts.root || '(input)', message: issueMessage(i) };
  });
  const first = errors[0] ?? { field: opts.root ?? '(input)', message: 'invalid' };
  const more = errors.length > 1 ? ` (and ${error.issues.length - 1} more)` : '';
  return new ValidationError(code, `${opts.what ? `${opts.what} ` : ''}${first.field}: ${first.message}${more}`, { details: { ...opts.details, field: first.field, errors } });
}

/** A Zod issue's message, never echoing the value sent. */
export function issueMessage(i: z.core.$ZodIssue): string {
  if (i.code === 'invalid_key' && i.issues[0]) return `invalid key: ${i.issues[0].message}`;
  if (i.code === 'unrecognized_keys') return `unknown field${i.keys.length > 1 ? 's' : ''} ${i.keys.map((k) => JSON.stringify(k.length > 64 ? `${k.slice(0, 61)}...` : k)).join(', ')}`;
  return i.message;
}

/** Validates with a schema; throws zodError(code, …) naming the fields. */
export function parseWith<S extends z.ZodType>(schema: S, input: unknown, code: string, opts: { prefix?: Path; what?: string; root?: string; details?: Record<string, unknown> } = {}): z.output<S> {
  const r = schema.safeParse(input);
  if (r.success) return r.data;
  throw zodError(code, r.error, opts);
}

/**
 * Checks a parsed value (a JSON body, a document) for nesting depth and size
 * without recursion. Shared references (YAML aliases) are counted every time
 * they are reached, so an alias bomb is refused here at the cost of the limit,
 * never of the expansion.
 */
export function checkShape(value: unknown, opts: { code?: string; what?: string; maxDepth?: number; maxNodes?: number } = {}): void {
  const maxDepth = opts.maxDepth ?? DOCUMENT_LIMITS.maxDepth;
  const maxNodes = opts.maxNodes ?? DOCUMENT_LIMITS.maxNodes;
  const code = opts.code ?? 'input.too_complex';
  const what = opts.what ?? 'the document';
  const stack: [unknown, number][] = [[value, 0]];
  let nodes = 0;
  while (stack.length) {
    const [v, depth] = stack.pop()!;
    if (++nodes > maxNodes) throw new ValidationError(code, `${what} holds more than ${maxNodes} values (after expanding aliases): send a smaller one`, { details: { limit: 'maxNodes', max: maxNodes } });
    if (v === null || typeof v !== 'object') continue;
    if (depth >= maxDepth) throw new ValidationError(code, `${what} is nested more than ${maxDepth} levels deep: flatten it`, { details: { limit: 'maxDepth', max: maxDepth } });
    if (Array.isArray(v)) for (const x of v) stack.push([x, depth + 1]);
    else if (v instanceof Map) for (const x of v.values()) stack.push([x, depth + 1]);
    else for (const k in v) stack.push([(v as Record<string, unknown>)[k], depth + 1]);
  }
}

export interface ParsedYaml {
  doc: Document;
  lineCounter: LineCounter;
  /** The document as plain JS (aliases resolved). */
  value: unknown;
}

export interface YamlErrorPlace {
  line: number;
  column: number;
}

/**
 * Parses YAML (or JSON) text with limits. Duplicate keys are refused in linear
 * time (the `yaml` package's own check compares every key with every other of
 * its mapping). Errors are ValidationErrors with `code`, naming `file:line:column`.
 */
export function parseYamlText(text: string, opts: { file?: string; code?: string; limits?: Partial<DocumentLimits> } = {}): ParsedYaml {
  const limits = { ...DOCUMENT_LIMITS, ...opts.limits };
  const file = opts.file ?? '<document>';
  const code = opts.code ?? 'input.invalid_yaml';
  const fail = (message: string, place?: YamlErrorPlace, extra: Record<string, unknown> = {}) =>
    new ValidationError(code, place ? `${file}:${place.line}:${place.column}: ${message}` : `${file}: ${message}`, { details: { file, ...(place ? { line: place.line, column: place.column } : {}), ...extra } });
  if (text.length > limits.maxBytes) throw fail(`the document is larger than ${limits.maxBytes} characters: split it`, undefined, { limit: 'maxBytes', max: limits.maxBytes });
  const lc = new LineCounter();
  let doc: Document;
  try {
    doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: false, strict: true });
  } catch (e) {
    if (e instanceof RangeError) throw fail(`the document is nested too deeply (more than ${limits.maxDepth} levels)`, undefined, { limit: 'maxDepth', max: limits.maxDepth });
    throw e;
  }
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    const { line, col } = lc.linePos(e.pos[0]);
    if (/call stack/i.test(e.message)) throw fail(`the document is nested too deeply (more than ${limits.maxDepth} levels)`, { line, column: col }, { limit: 'maxDepth', max: limits.maxDepth });
    const msg = e.message.split('\n')[0]!.replace(/ at line \d+, column \d+.*$/, '');
    throw fail(msg, { line, column: col }, { code: e.code });
  }
  const at = (n: YamlNode | undefined): YamlErrorPlace | undefined => {
    if (!n?.range) return undefined;
    const { line, col } = lc.linePos(n.range[0]);
    return { line, column: col };
  };
  // one walk of the syntax tree: depth, aliases, duplicate keys (a Set per mapping)
  let aliases = 0;
  const stack: [unknown, number][] = [[doc.contents, 0]];
  while (stack.length) {
    const [n, depth] = stack.pop()!;
    if (!isNode(n)) continue;
    if (isAlias(n)) {
      if (++aliases > limits.maxAliases) throw fail(`the document uses more than ${limits.maxAliases} aliases (*name): write the values out`, at(n), { limit: 'maxAliases', max: limits.maxAliases });
      continue;
    }
    if (!isCollection(n)) continue;
    if (depth >= limits.maxDepth) throw fail(`the document is nested more than ${limits.maxDepth} levels deep: flatten it`, at(n), { limit: 'maxDepth', max: limits.maxDepth });
    if (isMap(n)) {
      const seen = new Set<string>();
      for (const pair of n.items) {
        const k = pair.key;
        const key = String(isScalar(k) ? k.value : k);
        if (seen.has(key)) throw fail(`duplicate key ${JSON.stringify(key.length > 64 ? `${key.slice(0, 61)}...` : key)}: each key may appear once in a mapping`, at(isNode(k) ? k : undefined), { code: 'DUPLICATE_KEY' });
        seen.add(key);
        if (isNode(k) && isCollection(k)) stack.push([k, depth + 1]);
        stack.push([pair.value, depth + 1]);
      }
    } else {
      for (const item of n.items) stack.push([isPair(item) ? item.value : item, depth + 1]);
    }
  }
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: limits.maxAliases });
  } catch (e) {
    if (e instanceof ReferenceError || e instanceof RangeError) throw fail(`the document's aliases expand too much (the limit is ${limits.maxAliases} aliased values): write the values out`, undefined, { limit: 'maxAliases', max: limits.maxAliases });
    throw e;
  }
  // aliases share values: count them expanded, bounded by the limit
  if (aliases > 0) {
    try {
      checkShape(value, { code, what: 'the document', maxDepth: limits.maxDepth, maxNodes: limits.maxNodes });
    } catch (e) {
      throw fail((e as Error).message.replace(/^the document /, 'the document '), undefined, { limit: (e as ValidationError).details?.limit });
    }
    // a long string aliased many times: count characters too
    let chars = 0;
    const s: unknown[] = [value];
    while (s.length) {
      const v = s.pop();
      if (typeof v === 'string') {
        chars += v.length;
        if (chars > limits.maxBytes * 4) throw fail(`the document's aliases expand to more than ${limits.maxBytes * 4} characters: write the values out`, undefined, { limit: 'maxBytes' });
      } else if (v !== null && typeof v === 'object') for (const x of Object.values(v)) s.push(x);
    }
  }
  return { doc, lineCounter: lc, value };
}

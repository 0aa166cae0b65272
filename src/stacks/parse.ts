import { isMap, isSeq, isNode, type Document, type LineCounter } from 'yaml';
import { checkShape, parseYamlText, type DocumentLimits } from '../core/input.js';
import type { z } from 'zod';
import { ValidationError } from '../core/errors.js';
import { StackDocumentSchema, type StackDocument } from './schema.js';

export type DocPath = readonly (string | number)[];

export interface Position {
  file: string;
  line: number;
  column: number;
}

/** Finds where a value sits in the source text; undefined for documents that came as objects. */
export interface SourceMap {
  file: string;
  /** With `key`, the position of the last key itself rather than its value. */
  locate(path: DocPath, opts?: { key?: boolean }): Position | undefined;
}

export interface ParsedStack {
  document: StackDocument;
  /** The source text (YAML or JSON) or its JSON serialization when given an object. */
  source: string;
  sourceMap: SourceMap;
}

/** Formats `file:line:column: ` (or `file: path: ` without positions). */
export function where(map: SourceMap | undefined, path: DocPath, atKey = false): string {
  const pos = map?.locate(path, { key: atKey });
  const p = formatPath(path);
  if (pos) return `${pos.file}:${pos.line}:${pos.column}: ${p}`;
  return `${map?.file ?? '<stack>'}: ${p}`;
}

export function formatPath(path: DocPath): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(seg)) out += out ? `.${seg}` : seg;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out || '(document)';
}

/** A validation error at a place in the document. */
export function docError(code: string, map: SourceMap | undefined, path: DocPath, message: string, details: Record<string, unknown> = {}, atKey = false): ValidationError {
  const pos = map?.locate(path, { key: atKey });
  return new ValidationError(code, `${where(map, path, atKey)}: ${message}`, {
    details: { file: map?.file, path: formatPath(path), ...(pos ? { line: pos.line, column: pos.column } : {}), ...details },
  });
}

function yamlSourceMap(file: string, doc: Document, lc: LineCounter): SourceMap {
  return {
    file,
    locate(path, opts) {
      // walk to the deepest existing node on the path
      let node: unknown = doc.contents;
      let keyNode: unknown;
      for (const seg of path) {
        if (isMap(node)) {
          const pair = node.items.find((p) => (isNode(p.key) ? (p.key as any).value : p.key) === seg);
          if (!pair) break;
          keyNode = pair.key;
          node = pair.value;
        } else if (isSeq(node) && typeof seg === 'number') {
          const item = node.items[seg];
          if (item === undefined) break;
          keyNode = undefined;
          node = item;
        } else break;
      }
      const target = opts?.key && isNode(keyNode) && keyNode.range ? keyNode : isNode(node) && node.range ? node : isNode(keyNode) ? keyNode : undefined;
      const range = target && isNode(target) ? target.range : undefined;
      if (!range) return undefined;
      const { line, col } = lc.linePos(range[0]);
      return { file, line, column: col };
    },
  };
}

/** Limits on a stack document's text (see DocumentLimits); resource count is limited by the schema. */
export const STACK_DOCUMENT_LIMITS: Partial<DocumentLimits> = { maxBytes: 2_000_000, maxDepth: 64, maxAliases: 100, maxNodes: 500_000 };

const objectSourceMap = (file: string): SourceMap => ({ file, locate: () => undefined });

/**
 * Parses a stack from YAML or JSON text (JSON is YAML) or from an object.
 * Syntax and schema errors name the file, line and column.
 */
export function parseStack(input: string | Record<string, unknown>, opts: { file?: string } = {}): ParsedStack {
  const file = opts.file ?? '<stack>';
  if (typeof input !== 'string') {
    const sourceMap = objectSourceMap(file);
    checkShape(input, { code: 'stacks.invalid_document', what: 'the stack document', maxDepth: STACK_DOCUMENT_LIMITS.maxDepth!, maxNodes: STACK_DOCUMENT_LIMITS.maxNodes! });
    return { document: validate(input, sourceMap), source: JSON.stringify(input), sourceMap };
  }
  const { doc, lineCounter: lc, value: raw } = parseYamlText(input, { file, code: 'stacks.syntax_error', limits: STACK_DOCUMENT_LIMITS });
  const sourceMap = yamlSourceMap(file, doc, lc);
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ValidationError('stacks.invalid_document', `${file}:1:1: a stack document must be a mapping with apiVersion, kind, metadata and spec`, { details: { file, line: 1, column: 1 } });
  }
  return { document: validate(raw, sourceMap), source: input, sourceMap };
}

/** Resources (definitions, before count/forEach) one stack may declare. */
export const MAX_STACK_RESOURCES = 5_000;

function validate(raw: unknown, map: SourceMap): StackDocument {
  const resources = (raw as { spec?: { resources?: unknown } }).spec?.resources;
  if (resources !== null && typeof resources === 'object') {
    let n = 0;
    for (const _ in resources) if (++n > MAX_STACK_RESOURCES) throw docError('stacks.too_many_resources', map, ['spec', 'resources'], `a stack may declare at most ${MAX_STACK_RESOURCES} resources (use count or forEach for many alike, or split the stack)`, { max: MAX_STACK_RESOURCES }, true);
  }
  const r = StackDocumentSchema.safeParse(raw);
  if (r.success) return r.data;
  const issues = r.error.issues;
  const first = pickIssue(issues);
  const path: (string | number)[] = first.path.filter((p): p is string | number => typeof p !== 'symbol');
  if (first.code === 'unrecognized_keys' && first.keys[0] !== undefined) path.push(first.keys[0]);
  const message = issueMessage(first);
  throw docError('stacks.invalid_document', map, path, message, {
    issues: issues.slice(0, 20).map((i) => ({ path: formatPath(i.path.filter((p): p is string | number => typeof p !== 'symbol')), message: i.message, ...(map.locate(i.path as DocPath) ?? {}) })),
  }, first.code === 'unrecognized_keys');
}

function pickIssue(issues: z.core.$ZodIssue[]): z.core.$ZodIssue {
  // prefer the deepest issue: it points closest to the mistake
  let best = issues[0]!;
  for (const i of issues) if (i.path.length > best.path.length) best = i;
  return best;
}

function issueMessage(i: z.core.$ZodIssue): string {
  if (i.code === 'unrecognized_keys') return `unknown field${i.keys.length > 1 ? 's' : ''} ${i.keys.map((k) => JSON.stringify(k)).join(', ')}`;
  if (i.code === 'invalid_union' && 'note' in i && i.note === 'No matching discriminator') return `${i.message}: step type must be one of http, shell, automation, waitUntil, approval, notify`;
  return i.message;
}

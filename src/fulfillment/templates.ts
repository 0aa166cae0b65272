import { parseDocument } from 'yaml';
import { ValidationError } from '../core/errors.js';
import { ClusterTemplateSchema, type ClusterTemplate, type TemplateParameter } from './schemas.js';

/**
 * Cluster templates are YAML (or JSON) documents (`examples/clusters/*.yaml`).
 * A bad document is refused naming the field and its line:
 * `nodeSets.workers.size: Too small: expected number to be >=1 (line 14)`.
 */
export function parseTemplate(text: string | Record<string, unknown>): ClusterTemplate {
  let value: unknown = text;
  let lineOf: (path: (string | number)[]) => number | null = () => null;
  if (typeof text === 'string') {
    const doc = parseDocument(text, { prettyErrors: false });
    if (doc.errors.length) {
      const e = doc.errors[0]!;
      throw new ValidationError('fulfillment.invalid_template', `(document): not valid YAML: ${e.message.split('\n')[0]}`, { details: { field: '(document)' } });
    }
    value = doc.toJS();
    const counter = text.slice(0);
    lineOf = (path) => {
      const node = doc.getIn(path, true) as { range?: [number, number, number] } | undefined;
      const at = node?.range?.[0];
      return at === undefined ? null : counter.slice(0, at).split('\n').length;
    };
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new ValidationError('fulfillment.invalid_template', '(document): a template is a mapping with id, title, nodeSets…', { details: { field: '(document)' } });
  }
  const r = ClusterTemplateSchema.safeParse(value);
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  const field = issue.path.length ? issue.path.join('.') : '(document)';
  const line = lineOf(issue.path as (string | number)[]);
  throw new ValidationError('fulfillment.invalid_template', `${field}: ${issue.message}${line ? ` (line ${line})` : ''}`, {
    details: { field, issues: r.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message })) },
  });
}

/** Checks order parameters against a template: unknown, missing and wrongly typed ones are refused naming the parameter. */
export function resolveParameters(t: ClusterTemplate, given: Record<string, unknown>, fieldPrefix = 'spec.templateParameters'): Record<string, string | number | boolean> {
  const known = new Map(t.parameters.map((p) => [p.name, p]));
  for (const k of Object.keys(given)) {
    if (!known.has(k)) {
      const names = [...known.keys()];
      throw new ValidationError('fulfillment.unknown_parameter', `${fieldPrefix}.${k}: unknown parameter; template ${t.id} accepts ${names.length ? names.join(', ') : 'no parameters'}`, { details: { field: `${fieldPrefix}.${k}` } });
    }
  }
  const out: Record<string, string | number | boolean> = {};
  for (const p of t.parameters) {
    const field = `${fieldPrefix}.${p.name}`;
    const v = given[p.name];
    if (v === undefined || v === null) {
      if (p.default !== undefined) out[p.name] = p.default;
      else if (p.required) throw new ValidationError('fulfillment.missing_parameter', `${field}: required by template ${t.id}${p.description ? ` (${p.description.split('\n')[0]})` : ''}`, { details: { field } });
      continue;
    }
    out[p.name] = coerce(p, v, field);
  }
  return out;
}

function coerce(p: TemplateParameter, v: unknown, field: string): string | number | boolean {
  const bad = () => new ValidationError('fulfillment.invalid_parameter', `${field}: expected ${p.type === 'integer' ? 'an integer' : `a ${p.type}`}, got ${typeof v === 'string' ? `"${v}"` : JSON.stringify(v)}`, { details: { field, expected: p.type } });
  switch (p.type) {
    case 'string':
      if (typeof v !== 'string') throw bad();
      return v;
    case 'boolean':
      if (typeof v !== 'boolean') throw bad();
      return v;
    case 'integer':
      if (typeof v !== 'number' || !Number.isInteger(v)) throw bad();
      return v;
    case 'number':
      if (typeof v !== 'number' || !Number.isFinite(v)) throw bad();
      return v;
  }
}

/** Renders `${name}` placeholders (parameters and `cluster.*` values); an unknown placeholder is left as written. */
export function render(text: string, values: Record<string, string | number | boolean>): string {
  return text.replace(/\$\{([A-Za-z_][A-Za-z0-9_.]*)\}/g, (m, k: string) => (values[k] === undefined ? m : String(values[k])));
}

import { createHash } from 'node:crypto';
import { containsUnknown, exprBudget, isUnknown, UNKNOWN, withExprBudget } from './expr.js';
import type { KindCatalog, KindInfo, ResourceNode, SpecIssue, StackModel } from './model.js';
import { docError, formatPath } from './parse.js';
import { resourceOfAddress } from './model.js';
import { Resolver, type InstanceState } from './resolve.js';

/**
 * The plan: the desired stack diffed against its recorded state. Each
 * instance is created, updated in place, replaced (naming the fields that
 * force it), deleted, or left alone. One pass in dependency order; the cost
 * is linear in the number of instances.
 */

export type ChangeAction = 'create' | 'update' | 'replace' | 'delete' | 'noop';

/** What the stack recorded about an instance after its last apply. */
export interface RecordedResource {
  address: string;
  resource: string;
  kind: string;
  /** The resource's id in the resources store. */
  resourceId: string | null;
  spec: Record<string, unknown>;
  specHash: string;
  outputs: Record<string, unknown>;
  /** ready | failed | creating | updating | deleting | deleted */
  status: string;
  phase: number;
  /** Resource names it depended on when applied (destroy order). */
  dependsOn: string[];
  /** Position in the topological order when applied. */
  order: number;
  /** Fields found different from the spec by the last observe. */
  drift: string[] | null;
  createBeforeDestroy: boolean;
  updatedAt: number;
}

export interface FieldChange {
  path: string;
  before?: unknown;
  after?: unknown;
  forcesReplacement?: boolean;
}

export interface PlannedChange {
  address: string;
  resource: string;
  kind: string;
  action: ChangeAction;
  phase: string;
  /** Why, when it is not a plain spec change: drift, a failed earlier apply, a kind change. */
  reason?: string;
  changes?: FieldChange[];
  /** Fields that force replacement. */
  replaceFields?: string[];
  createBeforeDestroy?: boolean;
  /** The spec to apply (UNKNOWN where it reads values only known after apply). */
  after?: Record<string, unknown>;
  before?: Record<string, unknown>;
}

export interface FeasibilityCheck {
  ok: boolean;
  /** "needs 3 servers of type m1.large in dc1, 1 available" */
  message: string;
  resource?: string;
  details?: Record<string, unknown>;
}

export interface Feasibility {
  ok: boolean;
  checks: FeasibilityCheck[];
}

export interface Plan {
  stack: string;
  project: string;
  /** The revision of the stack the plan was computed against (0 for a new stack). */
  baseRevision: number;
  destroy: boolean;
  summary: Record<ChangeAction, number>;
  changes: PlannedChange[];
  feasibility: Feasibility;
  params: Record<string, unknown>;
}

export function canonicalJson(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v ?? null);
  if (isUnknown(v)) return '"\u0000unknown"';
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  const keys = Object.keys(v).filter((k) => (v as Record<string, unknown>)[k] !== undefined).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson((v as Record<string, unknown>)[k])}`).join(',')}}`;
}

export function specHash(spec: unknown): string {
  return createHash('sha1').update(canonicalJson(spec)).digest('base64url');
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !isUnknown(v);
}

/** Leaf-level differences between two specs; lists compare as a whole. */
export function diffSpecs(before: unknown, after: unknown, prefix = '', out: FieldChange[] = []): FieldChange[] {
  if (isPlainObject(before) && isPlainObject(after)) {
    const keys = new Set([...Object.keys(before), ...Object.keys(after)]);
    for (const k of [...keys].sort()) diffSpecs(before[k], after[k], prefix ? `${prefix}.${k}` : k, out);
    return out;
  }
  if (isUnknown(after) || containsUnknown(after)) {
    out.push({ path: prefix, before, after: UNKNOWN });
    return out;
  }
  if (canonicalJson(before) !== canonicalJson(after)) {
    out.push({ path: prefix, ...(before !== undefined ? { before } : {}), ...(after !== undefined ? { after } : {}) });
  }
  return out;
}

function forcesReplacement(path: string, replaceOnChange: readonly string[]): boolean {
  for (const r of replaceOnChange) {
    if (path === r || path.startsWith(`${r}.`) || r.startsWith(`${path}.`)) return true;
  }
  return false;
}

function ignored(path: string, ignore: readonly string[] | undefined): boolean {
  if (!ignore) return false;
  return ignore.some((i) => path === i || path.startsWith(`${i}.`));
}

export interface DiffOptions {
  kinds?: KindCatalog;
  baseRevision?: number;
  feasibility?: Feasibility;
  /** Destroy plan: every recorded resource is deleted. */
  destroy?: boolean;
}

/** Computes the plan of a compiled stack against its recorded resources. */
export function diffStack(model: StackModel, recorded: readonly RecordedResource[], opts: DiffOptions = {}): Plan {
  return withExprBudget(exprBudget(), () => diff(model, recorded, opts));
}

function diff(model: StackModel, recorded: readonly RecordedResource[], opts: DiffOptions): Plan {
  const byAddress = new Map<string, RecordedResource>();
  for (const r of recorded) byAddress.set(r.address, r);
  const summary: Record<ChangeAction, number> = { create: 0, update: 0, replace: 0, delete: 0, noop: 0 };
  const changes: PlannedChange[] = [];

  if (opts.destroy) {
    for (const r of destroyOrder(recorded)) {
      changes.push({ address: r.address, resource: r.resource, kind: r.kind, action: 'delete', phase: model.phases[r.phase] ?? String(r.phase), before: r.spec });
      summary.delete++;
    }
    return { stack: model.name, project: model.project, baseRevision: opts.baseRevision ?? 0, destroy: true, summary, changes, feasibility: opts.feasibility ?? { ok: true, checks: [] }, params: model.params };
  }

  // addresses whose outputs will change: their dependents see UNKNOWN
  const pending = new Set<string>();
  const resolver = new Resolver(model, (address): InstanceState | undefined => {
    if (pending.has(address)) return undefined;
    const r = byAddress.get(address);
    if (!r) return undefined;
    return { id: r.resourceId, kind: r.kind, outputs: r.outputs, phase: r.status };
  });
  const desired = new Set<string>();
  const defaultCbd = model.document.spec.options.createBeforeDestroy;

  for (const name of model.order) {
    const node = model.resources.get(name)!;
    const info = (opts.kinds ?? model.kinds)?.get(node.kind);
    const replaceOn = info?.replaceOnChange ?? [];
    const ignore = node.def.lifecycle?.ignoreChanges;
    const cbd = node.def.lifecycle?.createBeforeDestroy ?? defaultCbd;
    for (const inst of node.instances) {
      desired.add(inst.address);
      const { spec, unknown } = resolver.resolveSpec(node, inst);
      const rec = byAddress.get(inst.address);
      const hash = unknown ? '' : specHash(spec);
      // an unchanged spec was valid when it was applied: validate only new and changed ones,
      // with values known after apply standing in for themselves (see KindInfo.check)
      if (info && (unknown || hash !== rec?.specHash)) checkSpec(model, node, inst.address, info, spec);
      const base = { address: inst.address, resource: name, kind: node.kind, phase: node.phaseName };
      if (!rec) {
        changes.push({ ...base, action: 'create', after: spec });
        summary.create++;
        pending.add(inst.address);
        continue;
      }
      if (rec.kind !== node.kind) {
        changes.push({ ...base, action: 'replace', reason: `kind changes from ${rec.kind} to ${node.kind}`, replaceFields: ['kind'], changes: [{ path: 'kind', before: rec.kind, after: node.kind, forcesReplacement: true }], before: rec.spec, after: spec, createBeforeDestroy: cbd });
        summary.replace++;
        pending.add(inst.address);
        continue;
      }
      if (rec.status !== 'ready') {
        changes.push({ ...base, action: 'replace', reason: rec.status === 'missing' ? 'deleted outside Infraflow (drift)' : `the last apply left it ${rec.status}`, replaceFields: [], before: rec.spec, after: spec, createBeforeDestroy: false });
        summary.replace++;
        pending.add(inst.address);
        continue;
      }
      const same = !unknown && hash === rec.specHash;
      let fieldChanges: FieldChange[] = same ? [] : diffSpecs(rec.spec, spec).filter((c) => !ignored(c.path, ignore));
      let reason: string | undefined;
      if (fieldChanges.length === 0 && rec.drift && rec.drift.length > 0) {
        const drifted = rec.drift.filter((p) => !ignored(p, ignore));
        if (drifted.length > 0) {
          reason = `drift in ${drifted.join(', ')}`;
          fieldChanges = drifted.map((p) => ({ path: p, after: getPath(spec, p) }));
        }
      }
      if (fieldChanges.length === 0) {
        changes.push({ ...base, action: 'noop' });
        summary.noop++;
        continue;
      }
      const replaceFields: string[] = [];
      for (const c of fieldChanges) {
        if (forcesReplacement(c.path, replaceOn)) {
          c.forcesReplacement = true;
          replaceFields.push(c.path);
        }
      }
      if (replaceFields.length > 0) {
        changes.push({ ...base, action: 'replace', ...(reason ? { reason } : {}), changes: fieldChanges, replaceFields, before: rec.spec, after: spec, createBeforeDestroy: cbd });
        summary.replace++;
        pending.add(inst.address);
      } else {
        changes.push({ ...base, action: 'update', ...(reason ? { reason } : {}), changes: fieldChanges, before: rec.spec, after: spec });
        summary.update++;
      }
    }
  }
  const gone = recorded.filter((r) => !desired.has(r.address));
  for (const r of destroyOrder(gone)) {
    changes.push({ address: r.address, resource: r.resource, kind: r.kind, action: 'delete', phase: model.phases[r.phase] ?? `#${r.phase}`, before: r.spec, ...(model.resources.has(r.resource) ? {} : { reason: `resource ${r.resource} was removed from the document` }) });
    summary.delete++;
  }
  return { stack: model.name, project: model.project, baseRevision: opts.baseRevision ?? 0, destroy: false, summary, changes, feasibility: opts.feasibility ?? { ok: true, checks: [] }, params: model.params };
}

/** Validates a resolved spec; a problem is a positioned error naming the resource, its file:line and the field. */
function checkSpec(model: StackModel, node: ResourceNode, address: string, info: KindInfo, spec: Record<string, unknown>): void {
  let issues: SpecIssue[];
  if (info.check) {
    issues = info.check(spec).filter((i) => !atUnknown(spec, i.path, i.custom === true));
  } else {
    if (!info.validate || containsUnknown(spec)) return;
    try {
      info.validate(spec);
      return;
    } catch (e) {
      const field = (e as { details?: { field?: unknown } }).details?.field;
      issues = [{ path: typeof field === 'string' ? field.replace(/^spec\.?/, '').split('.').filter(Boolean) : [], message: (e as Error).message }];
    }
  }
  if (issues.length === 0) return;
  const first = issues[0]!;
  const base = ['spec', 'resources', node.name, 'spec'];
  const unknownKey = /^unknown field/.test(first.message);
  const fields = issues.slice(0, 20).map((i) => ({ field: formatPath([...base, ...i.path]), message: i.message }));
  throw docError('stacks.invalid_spec', model.sourceMap, [...base, ...first.path], `resource ${address} (${node.kind}): ${first.message}${issues.length > 1 ? ` (and ${issues.length - 1} more)` : ''}`, { resource: node.name, address, kind: node.kind, errors: fields }, unknownKey);
}

/** Whether a value known only after apply sits at or above `path` (or, for whole-object problems, anywhere under it). */
function atUnknown(spec: unknown, path: (string | number)[], custom: boolean): boolean {
  let cur: unknown = spec;
  for (const seg of path) {
    if (isUnknown(cur)) return true;
    if (cur === null || typeof cur !== 'object') return false;
    cur = (cur as Record<string | number, unknown>)[seg];
  }
  return isUnknown(cur) || (custom && containsUnknown(cur));
}

function getPath(obj: unknown, path: string): unknown {
  let cur = obj;
  for (const seg of path.split('.')) {
    if (!isPlainObject(cur)) return undefined;
    cur = cur[seg];
  }
  return cur;
}

/**
 * Create-before-destroy makes the new object while the old one exists: when
 * both carry the same backend name (`name`, `hostname`, `fqdn`), the backend
 * would refuse or, worse, hold two objects of one name. Reported before apply.
 */
export function cbdCollisions(plan: Plan): FeasibilityCheck[] {
  const out: FeasibilityCheck[] = [];
  for (const ch of plan.changes) {
    if (ch.action !== 'replace' || !ch.createBeforeDestroy || !ch.before || !ch.after) continue;
    for (const f of ['name', 'hostname', 'fqdn']) {
      const v = ch.after[f];
      if (typeof v === 'string' && v === ch.before[f]) {
        out.push({ ok: false, resource: ch.address, message: `create-before-destroy of ${ch.address} would create a second ${ch.kind} named "${v}" while the old one still exists: change ${f} too, or set lifecycle.createBeforeDestroy: false`, details: { address: ch.address, field: f } });
      }
    }
  }
  return out;
}

/** Reverse dependency and phase order: later phases first, dependents before what they depend on. */
export function destroyOrder<T extends Pick<RecordedResource, 'phase' | 'order' | 'address'>>(items: readonly T[]): T[] {
  return [...items].sort((a, b) => b.phase - a.phase || b.order - a.order || (a.address < b.address ? 1 : a.address > b.address ? -1 : 0));
}

export { resourceOfAddress };

// ---------------------------------------------------------------- rendering

function scalar(v: unknown): string {
  if (isUnknown(v)) return '(known after apply)';
  if (v === undefined) return 'null';
  return JSON.stringify(v);
}

const isComposite = (v: unknown): v is Record<string, unknown> | unknown[] => Array.isArray(v) || isPlainObject(v);

/** A key as written in the plan: bare when it is an identifier, else quoted. */
const keyText = (k: string) => (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(k) ? k : JSON.stringify(k));

/**
 * Lines for a value added (`+`) or removed (`-`): scalars on one line, lists
 * and maps opened on their own lines, keys in document order, nothing cut.
 */
function valueLines(sym: '+' | '-', label: string | undefined, v: unknown, pad: string, out: string[]): void {
  const lead = `${pad}${sym} ${label !== undefined ? `${label} = ` : ''}`;
  if (Array.isArray(v)) {
    if (v.length === 0) return void out.push(`${lead}[]`);
    out.push(`${lead}[`);
    for (const x of v) valueLines(sym, undefined, x, `${pad}    `, out);
    out.push(`${pad}  ]`);
  } else if (isPlainObject(v)) {
    const keys = Object.keys(v).filter((k) => v[k] !== undefined);
    if (keys.length === 0) return void out.push(`${lead}{}`);
    out.push(`${lead}{`);
    for (const k of keys) valueLines(sym, keyText(k), v[k], `${pad}    `, out);
    out.push(`${pad}  }`);
  } else out.push(`${lead}${scalar(v)}`);
}

/** Longest common subsequence of two lists by canonical JSON: which items stay, which go, which come. */
function listDiff(before: unknown[], after: unknown[]): { op: ' ' | '-' | '+'; v: unknown; b?: unknown }[] {
  const a = before.map(canonicalJson);
  const b = after.map(canonicalJson);
  const n = a.length;
  const m = b.length;
  if (n * m > 1_000_000) return [...before.map((v) => ({ op: '-' as const, v })), ...after.map((v) => ({ op: '+' as const, v }))];
  const L: number[][] = Array.from({ length: n + 1 }, () => new Array<number>(m + 1).fill(0));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) L[i]![j] = a[i] === b[j] ? L[i + 1]![j + 1]! + 1 : Math.max(L[i + 1]![j]!, L[i]![j + 1]!);
  const out: { op: ' ' | '-' | '+'; v: unknown }[] = [];
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i] === b[j]) {
      out.push({ op: ' ', v: before[i] });
      i++;
      j++;
    } else if (j < m && (i >= n || L[i]![j + 1]! > L[i + 1]![j]!)) out.push({ op: '+', v: after[j++] });
    else out.push({ op: '-', v: before[i++] });
  }
  return out;
}

/**
 * A changed value as `terraform plan` shows it: maps by key (added, removed,
 * changed; unchanged keys counted), lists by item (removed and added items,
 * an item changed in place when a removal meets an addition of the same
 * shape; unchanged items counted).
 */
function changeLines(label: string | undefined, before: unknown, after: unknown, pad: string, out: string[], note = ''): void {
  const lead = label !== undefined ? `${label} = ` : '';
  if (before === undefined) return valueLines('+', label, after, pad, out);
  if (after === undefined) return valueLines('-', label, before, pad, out);
  if (isPlainObject(before) && isPlainObject(after)) {
    out.push(`${pad}~ ${lead}{${note}`);
    const keys = [...new Set([...Object.keys(after), ...Object.keys(before)])];
    let same = 0;
    for (const k of keys) {
      if (canonicalJson(before[k]) === canonicalJson(after[k]) && !isUnknown(after[k])) same++;
      else changeLines(keyText(k), before[k], after[k], `${pad}    `, out);
    }
    if (same) out.push(`${pad}    # (${same} unchanged key${same === 1 ? '' : 's'} hidden)`);
    out.push(`${pad}  }`);
    return;
  }
  if (Array.isArray(before) && Array.isArray(after)) {
    out.push(`${pad}~ ${lead}[${note}`);
    const d = listDiff(before, after);
    let same = 0;
    for (let k = 0; k < d.length;) {
      if (d[k]!.op === ' ') {
        same++;
        k++;
        continue;
      }
      // a run of removals then a run of additions: maps paired in order are items changed in place
      const removed: unknown[] = [];
      const added: unknown[] = [];
      while (k < d.length && d[k]!.op === '-') removed.push(d[k++]!.v);
      while (k < d.length && d[k]!.op === '+') added.push(d[k++]!.v);
      const pairs = Math.min(removed.length, added.length);
      for (let p = 0; p < Math.max(removed.length, added.length); p++) {
        const r = removed[p];
        const a = added[p];
        if (p < pairs && isPlainObject(r) && isPlainObject(a)) changeLines(undefined, r, a, `${pad}    `, out);
        else {
          if (p < removed.length) valueLines('-', undefined, r, `${pad}    `, out);
          if (p < added.length) valueLines('+', undefined, a, `${pad}    `, out);
        }
      }
    }
    if (same) out.push(`${pad}    # (${same} unchanged item${same === 1 ? '' : 's'} hidden)`);
    out.push(`${pad}  ]`);
    return;
  }
  if (isComposite(before) || isComposite(after)) {
    valueLines('-', label, before, pad, out);
    valueLines('+', label, after, pad, out);
    return;
  }
  out.push(`${pad}~ ${lead}${scalar(before)} -> ${scalar(after)}${note}`);
}

const SYMBOL: Record<ChangeAction, string> = { create: '  +', update: '  ~', replace: '-/+', delete: '  -', noop: '   ' };
const VERB: Record<ChangeAction, string> = { create: 'will be created', update: 'will be updated in place', replace: 'must be replaced', delete: 'will be destroyed', noop: 'is unchanged' };

/** Readable text, as `terraform plan` prints it. */
export function renderPlan(plan: Plan, opts: { color?: boolean; sensitive?: ReadonlySet<string> } = {}): string {
  const c = (code: number, s: string) => (opts.color ? `\u001b[${code}m${s}\u001b[0m` : s);
  const colorOf: Record<ChangeAction, number> = { create: 32, update: 33, replace: 35, delete: 31, noop: 0 };
  const lines: string[] = [];
  const acting = plan.changes.filter((ch) => ch.action !== 'noop');
  if (acting.length === 0) {
    lines.push(`No changes. Stack ${plan.stack} matches its document (${plan.summary.noop} resource${plan.summary.noop === 1 ? '' : 's'} unchanged).`);
  } else {
    lines.push(`Stack ${plan.stack} (project ${plan.project}) will perform the following actions:`, '');
    for (const ch of acting) {
      const col = colorOf[ch.action];
      lines.push(`  # ${ch.address} ${VERB[ch.action]}${ch.reason ? ` (${ch.reason})` : ''}${ch.action === 'replace' && ch.createBeforeDestroy ? ' (create before destroy)' : ''}`);
      lines.push(c(col, `${SYMBOL[ch.action]} resource "${ch.kind}" ${ch.address} {`) + (ch.phase !== 'default' ? `  # phase ${ch.phase}` : ''));
      const body: string[] = [];
      if (ch.action === 'create') {
        for (const [k, v] of Object.entries(ch.after ?? {})) if (v !== undefined) valueLines('+', keyText(k), v, '      ', body);
      } else if (ch.action === 'delete') {
        for (const [k, v] of Object.entries(ch.before ?? {})) if (v !== undefined) valueLines('-', keyText(k), v, '      ', body);
      } else {
        for (const f of ch.changes ?? []) changeLines(f.path, f.before, f.after, '      ', body, f.forcesReplacement ? ' # forces replacement' : '');
      }
      for (const l of body) lines.push(c(col, l.replace(/ # forces replacement$/, '')) + (l.endsWith(' # forces replacement') ? c(31, ' # forces replacement') : ''));
      lines.push(c(col, '    }'), '');
    }
  }
  if (plan.feasibility.checks.length > 0) {
    lines.push('Feasibility:');
    for (const ch of plan.feasibility.checks) lines.push(`  ${ch.ok ? c(32, 'ok  ') : c(31, 'FAIL')} ${ch.message}`);
    lines.push('');
  }
  const s = plan.summary;
  const add = s.create + s.replace;
  const destroy = s.delete + s.replace;
  lines.push(`Plan: ${add} to add, ${s.update} to change, ${destroy} to destroy${s.replace ? ` (${s.replace} replaced)` : ''}, ${s.noop} unchanged.`);
  if (!plan.feasibility.ok) lines.push(c(31, 'The plan is not feasible: apply would fail. Fix the failed checks above first.'));
  return lines.join('\n');
}

/** The plan as plain JSON (UNKNOWN values become "(known after apply)"). */
export function planToJson(plan: Plan): Record<string, unknown> {
  return JSON.parse(JSON.stringify(plan)) as Record<string, unknown>;
}

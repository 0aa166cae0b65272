import { docError } from './parse.js';
import { UNKNOWN, isUnknown, toCel, ExprError, PLACEHOLDER_KEY, containsUnknown } from './expr.js';
import type { InstanceNode, ResourceNode, StackModel } from './model.js';

/** What a template sees of one resource instance: `resources.<name>` (or an element of it). */
export interface InstanceState {
  id: string | null;
  kind: string;
  outputs: Record<string, unknown>;
  phase: string;
}

/**
 * Resolves resource specs against the state of their dependencies. The CEL
 * value of each resource is built once and cached, so resolving N instances
 * costs O(N + references), not O(N²).
 */
export class Resolver {
  private cache = new Map<string, unknown>();
  /** Resources whose list/map value holds placeholders for instances not known yet. */
  private partial = new Set<string>();
  private readonly stackCel: Record<string, unknown>;

  constructor(
    readonly model: StackModel,
    /** State of an instance, or undefined when it is not known yet (to be created). */
    private readonly state: (address: string) => InstanceState | undefined,
  ) {
    this.stackCel = toCel({ name: model.name, project: model.project }) as Record<string, unknown>;
  }

  /** Forgets the cached value of a resource (after one of its instances changed). */
  invalidate(resource: string): void {
    this.cache.delete(resource);
    this.partial.delete(resource);
  }

  /** The CEL value of `resources.<name>`, or UNKNOWN when any instance is not known. */
  valueOf(name: string): unknown {
    if (this.cache.has(name)) return this.cache.get(name);
    const node = this.model.resources.get(name);
    let value: unknown = UNKNOWN;
    if (node) value = this.build(node);
    this.cache.set(name, value);
    return value;
  }

  private isPartial(name: string): boolean {
    this.valueOf(name);
    return this.partial.has(name);
  }

  private build(node: ResourceNode): unknown {
    const one = (inst: InstanceNode): unknown => {
      const s = this.state(inst.address);
      if (!s) return UNKNOWN;
      return toCel({
        name: inst.address,
        address: inst.address,
        kind: s.kind,
        id: s.id,
        outputs: s.outputs,
        status: { phase: s.phase, outputs: s.outputs },
        ...(inst.index !== undefined ? { index: inst.index } : {}),
        ...(inst.key !== undefined ? { key: inst.key } : {}),
      });
    };
    if (node.mode === 'single') return node.instances.length ? one(node.instances[0]!) : null;
    // lists and maps keep the known elements: a template reading only those is known
    const placeholder = (inst: InstanceNode) => {
      this.partial.add(node.name);
      return { [PLACEHOLDER_KEY]: true, address: inst.address, name: inst.address };
    };
    if (node.mode === 'count') {
      const list: unknown[] = [];
      for (const i of node.instances) {
        const v = one(i);
        list.push(isUnknown(v) ? placeholder(i) : v);
      }
      return list;
    }
    const m: Record<string, unknown> = {};
    for (const i of node.instances) {
      const v = one(i);
      m[i.key!] = isUnknown(v) ? placeholder(i) : v;
    }
    return m;
  }

  /** Builds the template context of an instance: params, stack, count/each, and its dependencies only. */
  context(node: ResourceNode, inst: InstanceNode | undefined, unknown: Set<string>, partial?: Set<string>): Record<string, unknown> {
    const resources: Record<string, unknown> = {};
    for (const d of node.spec.resources) {
      const v = this.valueOf(d);
      if (isUnknown(v)) unknown.add(d);
      else {
        resources[d] = v;
        if (partial && this.isPartial(d)) partial.add(d);
      }
    }
    return { params: this.model.paramsCel, stack: this.stackCel, resources, ...(inst?.local ?? {}) };
  }

  /** The resolved spec of an instance; values read from unknown resources are UNKNOWN. */
  resolveSpec(node: ResourceNode, inst: InstanceNode): { spec: Record<string, unknown>; unknown: boolean } {
    if (node.spec.static) return { spec: node.def.spec, unknown: false };
    const unknown = new Set<string>();
    const partial = new Set<string>();
    const ctx = this.context(node, inst, unknown, partial);
    try {
      const spec = node.spec.evaluate(ctx, unknown, partial) as Record<string, unknown>;
      return { spec, unknown: unknown.size > 0 || (partial.size > 0 && containsUnknown(spec)) };
    } catch (e) {
      if (e instanceof ExprError) {
        throw docError(e.reason === 'limit' ? 'stacks.expression_limit' : 'stacks.invalid_expression', this.model.sourceMap, e.path ?? ['spec', 'resources', node.name, 'spec'], `resource ${inst.address}: ${e.message}`, { address: inst.address, resource: node.name });
      }
      throw e;
    }
  }

  /** Context for workflow steps and outputs: every resource they read. */
  globalContext(names: Iterable<string>, extra: Record<string, unknown> = {}): Record<string, unknown> {
    const resources: Record<string, unknown> = {};
    for (const d of names) {
      const v = this.valueOf(d);
      resources[d] = isUnknown(v) ? null : v;
    }
    return { params: this.model.paramsCel, stack: this.stackCel, resources, ...extra };
  }
}

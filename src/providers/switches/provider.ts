import { createHash } from 'node:crypto';
import { ProviderError } from '../../resources/errors.js';
import { KINDS, type SwitchPortSpec } from '../../resources/kinds.js';
import type { KindHandler, Provider, ProviderCallContext, ReadResult } from '../../resources/types.js';
import type { PortChange, PortState, SwitchDriver } from './driver.js';

/**
 * `network/SwitchPort` over switch drivers: one resource per (switch, port).
 * Create/update put the port in access mode on a VLAN or make it a trunk, in
 * one atomic driver call, and tag it with the owning project; delete returns
 * it to the switch's default (quarantine) VLAN and removes the tag, after
 * which it reads `absent`. A port tagged by another project is refused with
 * Conflict. Concurrent reads of one switch share one `describe` call.
 */
export interface SwitchPortProviderOptions {
  /** Switch name (as in the inventory) → its driver. */
  switches: Record<string, SwitchDriver>;
  /** VLAN a port returns to on delete (default 1); per switch in `defaultVlans`. */
  defaultVlan?: number;
  defaultVlans?: Record<string, number>;
  /** Provider name in the registry. Default `ovs`. */
  name?: string;
}

const owner = (project: string) => createHash('sha256').update(`switchport:${project}`).digest('hex').slice(0, 20);

export function portObserved(s: PortState): Record<string, unknown> {
  return s.mode === 'access' ? { mode: 'access', vlan: s.vlan, vlans: [] } : { mode: 'trunk', vlans: s.vlans, ...(s.vlan === null ? {} : { nativeVlan: s.vlan }) };
}

export class SwitchPortProvider implements Provider {
  readonly name: string;
  private readonly opts: SwitchPortProviderOptions;
  private readonly h: KindHandler<SwitchPortSpec>;
  private inflight = new Map<SwitchDriver, Promise<Map<string, PortState | undefined>>>();

  constructor(opts: SwitchPortProviderOptions) {
    this.opts = opts;
    this.name = opts.name ?? 'ovs';
    this.h = this.handlerFor();
  }

  kinds(): string[] { return ['network/SwitchPort']; }

  handler(kind: string): KindHandler {
    if (kind !== 'network/SwitchPort') throw new ProviderError('InvalidSpec', `the ${this.name} provider implements network/SwitchPort, not ${kind}`);
    return this.h;
  }

  private driver(name: string): SwitchDriver {
    const d = this.opts.switches[name];
    if (!d) throw new ProviderError('InvalidSpec', `switch "${name}" is not configured for provider ${this.name}; configured: ${Object.keys(this.opts.switches).join(', ') || 'none'}`);
    return d;
  }

  /** Port state; concurrent callers on one switch share a describe of the whole switch. */
  private async port(d: SwitchDriver, port: string, signal?: AbortSignal): Promise<PortState | undefined> {
    let p = this.inflight.get(d);
    if (!p) {
      p = d.describe([], signal).finally(() => this.inflight.delete(d));
      this.inflight.set(d, p);
    }
    const all = await p;
    return all.get(port);
  }

  defaultVlan(sw: string): number {
    return this.opts.defaultVlans?.[sw] ?? this.opts.defaultVlan ?? 1;
  }

  private async apply(spec: SwitchPortSpec, ctx: ProviderCallContext): Promise<{ externalId: string; ready: true; outputs: Record<string, unknown> }> {
    const d = this.driver(spec.switch);
    const cur = await this.port(d, spec.port, ctx.signal);
    if (!cur) throw new ProviderError('NotFound', `switch ${spec.switch} has no port ${spec.port}: check the inventory cabling`);
    const mine = owner(ctx.project);
    if (cur.tags.owner && cur.tags.owner !== mine) throw new ProviderError('Conflict', `port ${spec.switch}/${spec.port} is in use by another project; release it there first`, { retryable: false });
    const change: PortChange = spec.mode === 'access'
      ? { port: spec.port, mode: 'access', vlan: spec.vlan!, vlans: [], tags: { owner: mine } }
      : { port: spec.port, mode: 'trunk', vlan: spec.nativeVlan ?? null, vlans: [...spec.vlans].sort((a, b) => a - b), tags: { owner: mine } };
    const same = cur.tags.owner === mine && cur.mode === change.mode && cur.vlan === change.vlan && cur.vlans.join(',') === change.vlans.join(',');
    if (!same) await d.configure([change], ctx.signal);
    const externalId = `${spec.switch}/${spec.port}`;
    return { externalId, ready: true, outputs: { id: externalId, switch: spec.switch, port: spec.port, mode: change.mode, vlan: change.vlan, vlans: change.vlans } };
  }

  private split(id: string): { sw: string; port: string } | undefined {
    const i = id.indexOf('/');
    return i > 0 ? { sw: id.slice(0, i), port: id.slice(i + 1) } : undefined;
  }

  private handlerFor(): KindHandler<SwitchPortSpec> {
    const info = KINDS['network/SwitchPort']!;
    return {
      kind: 'network/SwitchPort', schema: info.schema, replaceOnChange: info.replaceOnChange,
      validate: (s) => info.validate!(s),
      create: (spec, ctx) => this.apply(spec, ctx),
      read: async (id, ctx): Promise<ReadResult> => {
        const p = this.split(id);
        if (!p || !this.opts.switches[p.sw]) return { state: 'absent', outputs: {} };
        const cur = await this.port(this.driver(p.sw), p.port, ctx.signal);
        if (!cur || !cur.tags.owner || cur.tags.owner !== owner(ctx.project)) return { state: 'absent', outputs: {} };
        return {
          state: 'ready', outputs: { id, switch: p.sw, port: p.port, mode: cur.mode, vlan: cur.vlan, vlans: cur.vlans }, observed: portObserved(cur),
          conditions: [{ type: 'Configured', status: 'True', reason: cur.mode === 'access' ? 'AccessVlan' : 'Trunk', message: cur.mode === 'access' ? `access VLAN ${cur.vlan}` : `trunk ${cur.vlans.join(',')}${cur.vlan === null ? '' : ` native ${cur.vlan}`}` }],
        };
      },
      update: async (id, spec, _previous, ctx) => {
        if (id !== `${spec.switch}/${spec.port}`) throw new ProviderError('InvalidSpec', `network/SwitchPort: switch and port cannot change in place (${id}); replace the resource`);
        const r = await this.apply(spec, ctx);
        return { ready: true, outputs: r.outputs };
      },
      delete: async (id, ctx) => {
        const p = this.split(id);
        if (!p || !this.opts.switches[p.sw]) return { done: true };
        const d = this.driver(p.sw);
        const cur = await this.port(d, p.port, ctx.signal);
        if (!cur || (cur.tags.owner && cur.tags.owner !== owner(ctx.project))) return { done: true };
        await d.configure([{ port: p.port, mode: 'access', vlan: this.defaultVlan(p.sw), vlans: [], tags: { owner: null } }], ctx.signal);
        return { done: true };
      },
    };
  }
}

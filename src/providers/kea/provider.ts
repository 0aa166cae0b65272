import { createHash } from 'node:crypto';
import { ProviderError } from '../../resources/errors.js';
import { KINDS, type DhcpReservationSpec, type DhcpSubnetSpec } from '../../resources/kinds.js';
import type { KindHandler, Provider, ProviderCallContext, ReadResult } from '../../resources/types.js';
import { HttpClient, httpError } from '../common/http.js';

/**
 * ISC Kea DHCPv4 as a provider of `dhcp/Subnet` and `dhcp/Reservation`,
 * through the Kea Control Agent's HTTP API.
 *
 * Why `config-get`/`config-set` and not `reservation-add`: host reservations
 * through the API need the `host_cmds` hook library, which Kea shipped only
 * to ISC's paying customers until 2.7; Debian's Kea (2.2 in bookworm) does
 * not have it (nor `subnet_cmds`). The core commands `config-get`,
 * `config-set` and `config-write` are in every Kea, change subnets and
 * reservations atomically (Kea validates the whole configuration and keeps
 * the old one when it is refused) and need no restart. The cost — the whole
 * configuration travels on each change — is paid once per batch: changes
 * that arrive while a `config-set` is in flight are applied together in the
 * next one (one get, one set, one write). If Kea refuses a batch, each
 * change is retried alone so a bad one fails only its own call.
 *
 * Infraflow marks what it manages with `user-context.infraflow.owner` (a
 * hash of the project): a retried create adopts its own subnet or
 * reservation and refuses anyone else's. Subnets and reservations written
 * by hand are left alone.
 */
export interface KeaOptions {
  /** Control agent, e.g. `http://127.0.0.1:8000`. */
  url: string;
  /** Basic auth for the control agent (its `authentication.clients`). */
  username?: string;
  password?: string;
  /** Persist each change to the server's configuration file (`config-write`). Default true. */
  persist?: boolean;
  timeoutMs?: number;
  /** Provider name in the registry. Default `kea`. */
  name?: string;
}

interface KeaAnswer { result: number; text?: string; arguments?: Record<string, any> }
interface KeaReservation { 'hw-address'?: string; 'ip-address'?: string; hostname?: string; 'next-server'?: string; 'boot-file-name'?: string; 'user-context'?: Record<string, any>; [k: string]: unknown }
interface KeaSubnet { id: number; subnet: string; pools?: { pool: string }[]; 'option-data'?: { name: string; data: string; [k: string]: unknown }[]; 'valid-lifetime'?: number; reservations?: KeaReservation[]; 'user-context'?: Record<string, any>; [k: string]: unknown }
type Dhcp4 = Record<string, any> & { subnet4?: KeaSubnet[] };

type Mutation = (cfg: Dhcp4) => void;
interface Job { mutate: Mutation; resolve: () => void; reject: (e: unknown) => void; signal?: AbortSignal | undefined }

const ownerOf = (project: string) => createHash('sha256').update(`dhcp:${project}`).digest('hex').slice(0, 20);
const owned = (x: { 'user-context'?: Record<string, any> } | undefined) => x?.['user-context']?.infraflow?.owner as string | undefined;

export function ipv4ToInt(a: string): number {
  const p = a.split('.').map(Number);
  if (p.length !== 4 || p.some((x) => !Number.isInteger(x) || x < 0 || x > 255)) throw new ProviderError('InvalidSpec', `"${a}" is not an IPv4 address`);
  return ((p[0]! << 24) >>> 0) + (p[1]! << 16) + (p[2]! << 8) + p[3]!;
}

export function cidrContains(cidr: string, addr: string): boolean {
  const [net, len] = cidr.split('/');
  const bits = Number(len);
  const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
  return ((ipv4ToInt(net!) & mask) >>> 0) === ((ipv4ToInt(addr) & mask) >>> 0);
}

function normCidr(cidr: string): string {
  const [net, len] = cidr.split('/');
  const bits = Number(len);
  if (!(bits >= 1 && bits <= 32)) throw new ProviderError('InvalidSpec', `dhcp/Subnet cidr ${cidr}: the prefix length must be 1-32`);
  const mask = (~0 << (32 - bits)) >>> 0;
  const v = (ipv4ToInt(net!) & mask) >>> 0;
  if (v !== ipv4ToInt(net!)) throw new ProviderError('InvalidSpec', `dhcp/Subnet cidr ${cidr} has host bits set; write ${[v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255].join('.')}/${bits}`);
  return `${net}/${bits}`;
}

export class KeaProvider implements Provider {
  readonly name: string;
  readonly http: HttpClient;
  private readonly opts: KeaOptions;
  private readonly handlers: Record<string, KindHandler>;
  private pending: Job[] = [];
  private busy = false;

  constructor(opts: KeaOptions) {
    this.opts = opts;
    this.name = opts.name ?? 'kea';
    const auth = opts.username ? { authorization: `Basic ${Buffer.from(`${opts.username}:${opts.password ?? ''}`).toString('base64')}` } : undefined;
    this.http = new HttpClient({ baseUrl: opts.url, timeoutMs: opts.timeoutMs ?? 20_000, backend: `Kea control agent at ${opts.url}`, retryOnReset: true, ...(auth ? { headers: auth } : {}) });
    this.handlers = { 'dhcp/Subnet': this.subnetHandler(), 'dhcp/Reservation': this.reservationHandler() };
  }

  kinds(): string[] { return Object.keys(this.handlers); }

  handler(kind: string): KindHandler {
    const h = this.handlers[kind];
    if (!h) throw new ProviderError('InvalidSpec', `the ${this.name} provider implements dhcp/Subnet and dhcp/Reservation, not ${kind}`);
    return h;
  }

  /** One control-agent command for the dhcp4 service. */
  async command(command: string, args?: Record<string, unknown>, signal?: AbortSignal): Promise<KeaAnswer> {
    const res = await this.http.request<KeaAnswer[] | KeaAnswer>('POST', '/', { command, service: ['dhcp4'], ...(args ? { arguments: args } : {}) }, signal);
    if (res.status !== 200) throw httpError('Internal', `Kea ${command}`, res);
    const a = Array.isArray(res.body) ? res.body[0] : res.body;
    if (!a || typeof a !== 'object') throw new ProviderError('Internal', `Kea ${command}: unexpected answer ${JSON.stringify(res.body).slice(0, 200)}`);
    if (a.result === 1 && /unable to forward|connection refused|no such file|server is likely to be offline/i.test(a.text ?? '')) throw new ProviderError('BackendUnavailable', `Kea ${command}: the DHCPv4 server does not answer its control agent (${a.text})`);
    return a;
  }

  async getConfig(signal?: AbortSignal): Promise<Dhcp4> {
    const a = await this.command('config-get', undefined, signal);
    if (a.result !== 0 || !a.arguments?.Dhcp4) throw new ProviderError('Internal', `Kea config-get failed: ${a.text ?? a.result}`);
    return a.arguments.Dhcp4 as Dhcp4;
  }

  /** Applies a change to the configuration; concurrent changes share one config-get/config-set/config-write. */
  change(mutate: Mutation, signal?: AbortSignal): Promise<void> {
    const p = new Promise<void>((resolve, reject) => this.pending.push({ mutate, resolve, reject, signal }));
    if (!this.busy) void this.drain();
    return p;
  }

  private async drain(): Promise<void> {
    this.busy = true;
    try {
      while (this.pending.length) {
        const batch = this.pending.splice(0, this.pending.length).filter((j) => { if (j.signal?.aborted) { j.reject(new ProviderError('Timeout', 'cancelled by the caller', { retryable: false })); return false; } return true; });
        if (!batch.length) continue;
        try {
          await this.applyBatch(batch);
        } catch (e) {
          if (batch.length === 1 || !(e instanceof ProviderError) || e.reason !== 'InvalidSpec') { for (const j of batch) j.reject(e); continue; }
          for (const j of batch) { try { await this.applyBatch([j]); } catch (e2) { j.reject(e2); } }
        }
      }
    } finally {
      this.busy = false;
      if (this.pending.length) void this.drain();
    }
  }

  /** config-get → mutations (each may refuse its own) → config-set → config-write; resolves the jobs that applied. */
  private async applyBatch(batch: Job[]): Promise<void> {
    const cfg = await this.getConfig();
    const applied: Job[] = [];
    for (const j of batch) {
      const snapshot = JSON.stringify(cfg);
      try { j.mutate(cfg); applied.push(j); } catch (e) {
        // restore: a refused mutation must not leave half its edit behind
        const restored = JSON.parse(snapshot) as Dhcp4;
        for (const k of Object.keys(cfg)) delete cfg[k];
        Object.assign(cfg, restored);
        j.reject(e);
      }
    }
    if (!applied.length) return;
    delete cfg.hash;
    const set = await this.command('config-set', { Dhcp4: cfg });
    if (set.result !== 0) throw new ProviderError('InvalidSpec', `Kea refused the configuration: ${set.text ?? set.result}`);
    if (this.opts.persist !== false) {
      const w = await this.command('config-write', {});
      if (w.result !== 0) throw new ProviderError('Internal', `Kea applied the change but could not write its configuration file: ${w.text ?? w.result}`, { retryable: true });
    }
    for (const j of applied) j.resolve();
  }

  // ---- dhcp/Subnet ---------------------------------------------------------

  private subnetEntry(spec: DhcpSubnetSpec, id: number, owner: string, keep?: KeaSubnet): KeaSubnet {
    const options = [
      ...(spec.gateway ? [{ name: 'routers', data: spec.gateway }] : []),
      ...(spec.dnsServers.length ? [{ name: 'domain-name-servers', data: spec.dnsServers.join(', ') }] : []),
      ...(spec.domain ? [{ name: 'domain-name', data: spec.domain }] : []),
    ];
    return {
      ...(keep ?? {}),
      id, subnet: normCidr(spec.cidr),
      pools: spec.pool ? [{ pool: `${spec.pool.start} - ${spec.pool.end}` }] : [],
      'option-data': options,
      'valid-lifetime': spec.leaseSeconds, 'min-valid-lifetime': spec.leaseSeconds, 'max-valid-lifetime': spec.leaseSeconds,
      reservations: keep?.reservations ?? [],
      'user-context': { ...(keep?.['user-context'] ?? {}), infraflow: { owner } },
    };
  }

  private subnetObserved(s: KeaSubnet): Record<string, unknown> {
    const opt = (n: string) => s['option-data']?.find((o) => o.name === n)?.data;
    const pool = s.pools?.[0]?.pool.split('-').map((x) => x.trim());
    const dns = opt('domain-name-servers');
    return {
      ...(pool ? { pool: { start: pool[0], end: pool[1] } } : {}),
      ...(opt('routers') ? { gateway: opt('routers') } : {}),
      dnsServers: dns ? dns.split(',').map((x) => x.trim()) : [],
      ...(opt('domain-name') ? { domain: opt('domain-name') } : {}),
      leaseSeconds: s['valid-lifetime'],
    };
  }

  private writeSubnet(spec: DhcpSubnetSpec, ctx: ProviderCallContext): Promise<void> {
    const cidr = normCidr(spec.cidr);
    const owner = ownerOf(ctx.project);
    if (spec.pool && !(cidrContains(cidr, spec.pool.start) && cidrContains(cidr, spec.pool.end))) throw new ProviderError('InvalidSpec', `dhcp/Subnet ${cidr}: pool ${spec.pool.start} - ${spec.pool.end} is not inside the subnet`);
    if (spec.gateway && !cidrContains(cidr, spec.gateway)) throw new ProviderError('InvalidSpec', `dhcp/Subnet ${cidr}: gateway ${spec.gateway} is not inside the subnet`);
    return this.change((cfg) => {
      const subnets = (cfg.subnet4 ??= []);
      const i = subnets.findIndex((s) => s.subnet === cidr);
      const cur = subnets[i];
      if (cur && owned(cur) !== owner) throw new ProviderError('Conflict', `Kea already serves subnet ${cidr} and it is not managed by this project; remove it there first`, { retryable: false });
      const overlap = subnets.find((s) => s !== cur && (cidrContains(s.subnet, cidr.split('/')[0]!) || cidrContains(cidr, s.subnet.split('/')[0]!)));
      if (overlap) throw new ProviderError('Conflict', `subnet ${cidr} overlaps ${overlap.subnet} already served by Kea`, { retryable: false });
      const id = cur?.id ?? Math.max(0, ...subnets.map((s) => s.id)) + 1;
      const entry = this.subnetEntry(spec, id, owner, cur);
      if (cur) subnets[i] = entry; else subnets.push(entry);
    }, ctx.signal);
  }

  private subnetHandler(): KindHandler<DhcpSubnetSpec> {
    const info = KINDS['dhcp/Subnet']!;
    return {
      kind: 'dhcp/Subnet', schema: info.schema, replaceOnChange: info.replaceOnChange,
      create: async (spec, ctx) => {
        await this.writeSubnet(spec, ctx);
        const cidr = normCidr(spec.cidr);
        return { externalId: cidr, ready: true, outputs: { id: cidr, cidr } };
      },
      read: async (id, ctx): Promise<ReadResult> => {
        const cfg = await this.getConfig(ctx.signal);
        const s = cfg.subnet4?.find((x) => x.subnet === id);
        if (!s || owned(s) !== ownerOf(ctx.project)) return { state: 'absent', outputs: {} };
        return { state: 'ready', outputs: { id, cidr: id, keaSubnetId: s.id, reservations: s.reservations?.length ?? 0 }, observed: this.subnetObserved(s), conditions: [{ type: 'Served', status: 'True', reason: 'SubnetConfigured', message: `Kea subnet id ${s.id}` }] };
      },
      update: async (id, spec, _previous, ctx) => {
        if (normCidr(spec.cidr) !== id) throw new ProviderError('InvalidSpec', `dhcp/Subnet: the cidr cannot change in place (${id}); replace the subnet`);
        await this.writeSubnet(spec, ctx);
        return { ready: true, outputs: { id, cidr: id } };
      },
      delete: async (id, ctx) => {
        const owner = ownerOf(ctx.project);
        await this.change((cfg) => {
          const subnets = cfg.subnet4 ?? [];
          const i = subnets.findIndex((s) => s.subnet === id && owned(s) === owner);
          if (i < 0) return;
          const held = subnets[i]!.reservations?.length ?? 0;
          if (held) throw new ProviderError('Conflict', `subnet ${id} still has ${held} host reservation(s); delete them first`, { retryable: true });
          subnets.splice(i, 1);
        }, ctx.signal);
        return { done: true };
      },
    };
  }

  // ---- dhcp/Reservation ------------------------------------------------------

  private findReservation(cfg: Dhcp4, mac: string): { subnet: KeaSubnet; index: number } | undefined {
    for (const s of cfg.subnet4 ?? []) {
      const index = (s.reservations ?? []).findIndex((r) => r['hw-address']?.toLowerCase() === mac);
      if (index >= 0) return { subnet: s, index };
    }
    return undefined;
  }

  private writeReservation(spec: DhcpReservationSpec, ctx: ProviderCallContext): Promise<void> {
    const mac = spec.mac.toLowerCase();
    const owner = ownerOf(ctx.project);
    return this.change((cfg) => {
      const target = (cfg.subnet4 ?? []).find((s) => cidrContains(s.subnet, spec.address));
      if (!target) throw new ProviderError('NotFound', `no DHCP subnet in Kea covers ${spec.address}: create the dhcp/Subnet first`);
      const cur = this.findReservation(cfg, mac);
      if (cur && owned(cur.subnet.reservations![cur.index]) !== owner) throw new ProviderError('Conflict', `MAC ${mac} already has a reservation in Kea (subnet ${cur.subnet.subnet}) that this project does not manage`, { retryable: false });
      const clash = (target.reservations ?? []).find((r) => r['ip-address'] === spec.address && r['hw-address']?.toLowerCase() !== mac);
      if (clash) throw new ProviderError('Conflict', `address ${spec.address} is already reserved for ${clash['hw-address']}`, { retryable: false });
      if (cur) cur.subnet.reservations!.splice(cur.index, 1);
      (target.reservations ??= []).push({
        'hw-address': mac, 'ip-address': spec.address,
        ...(spec.hostname ? { hostname: spec.hostname } : {}),
        ...(spec.nextServer ? { 'next-server': spec.nextServer } : {}),
        ...(spec.bootFile ? { 'boot-file-name': spec.bootFile } : {}),
        'user-context': { infraflow: { owner } },
      });
    }, ctx.signal);
  }

  private reservationHandler(): KindHandler<DhcpReservationSpec> {
    const info = KINDS['dhcp/Reservation']!;
    return {
      kind: 'dhcp/Reservation', schema: info.schema, replaceOnChange: info.replaceOnChange,
      create: async (spec, ctx) => {
        await this.writeReservation(spec, ctx);
        const mac = spec.mac.toLowerCase();
        return { externalId: mac, ready: true, outputs: { id: mac, mac, address: spec.address } };
      },
      read: async (id, ctx): Promise<ReadResult> => {
        const cfg = await this.getConfig(ctx.signal);
        const found = this.findReservation(cfg, id.toLowerCase());
        const r = found?.subnet.reservations![found.index];
        if (!r || owned(r) !== ownerOf(ctx.project)) return { state: 'absent', outputs: {} };
        return {
          state: 'ready',
          outputs: { id, mac: id, address: r['ip-address'], subnet: found!.subnet.subnet, ...(r.hostname ? { hostname: r.hostname } : {}) },
          observed: { address: r['ip-address'], ...(r.hostname ? { hostname: r.hostname } : {}), ...(r['next-server'] ? { nextServer: r['next-server'] } : {}), ...(r['boot-file-name'] ? { bootFile: r['boot-file-name'] } : {}) },
          conditions: [{ type: 'Served', status: 'True', reason: 'Reserved', message: `${id} → ${r['ip-address']} in ${found!.subnet.subnet}` }],
        };
      },
      update: async (id, spec, _previous, ctx) => {
        if (spec.mac.toLowerCase() !== id) throw new ProviderError('InvalidSpec', `dhcp/Reservation: the MAC cannot change in place (${id}); replace the reservation`);
        await this.writeReservation(spec, ctx);
        return { ready: true, outputs: { id, mac: id, address: spec.address } };
      },
      delete: async (id, ctx) => {
        const owner = ownerOf(ctx.project);
        await this.change((cfg) => {
          const found = this.findReservation(cfg, id.toLowerCase());
          if (found && owned(found.subnet.reservations![found.index]) === owner) found.subnet.reservations!.splice(found.index, 1);
        }, ctx.signal);
        return { done: true };
      },
    };
  }
}

import { createHash } from 'node:crypto';
import { ProviderError } from '../../resources/errors.js';
import { KINDS, type RecordSpec, type ZoneSpec } from '../../resources/kinds.js';
import type { CreateResult, KindHandler, Provider, ProviderCallContext, ReadResult } from '../../resources/types.js';
import { HttpClient, httpError } from '../common/http.js';

/**
 * PowerDNS Authoritative as a provider of `dns/Zone` and `dns/Record`,
 * through its HTTP API (`/api/v1/servers/<id>/zones`).
 *
 * - Zones: created `Native` with `soa_edit_api: DEFAULT` (the SOA serial moves
 *   on every API change); `account` holds a hash of the owning project, so a
 *   retried create adopts its own zone and refuses anyone else's.
 * - Records: one RRset per resource (name + type), written with PATCH
 *   `changetype: REPLACE`. The RRset carries a comment (account `infraflow`)
 *   holding the owning project's hash and the values as the spec wrote
 *   them, so a retried create changes nothing, a foreign RRset is never
 *   taken over, and `observed` reports values in spec terms (drift shows the
 *   backend's values when someone changed them behind Infraflow's back).
 * - Writes to one zone are coalesced: calls queued while a PATCH is in flight
 *   go out together in the next PATCH (one transaction in PowerDNS); if the
 *   batch is refused, each change is retried alone so one bad record fails
 *   only its own call.
 * - `ptr: true` on an A/AAAA record also publishes PTR records in the most
 *   specific reverse zone (`in-addr.arpa`/`ip6.arpa`) PowerDNS serves.
 */
export interface PowerDnsOptions {
  /** API base, e.g. `http://127.0.0.1:8081`. */
  url: string;
  apiKey: string;
  /** PowerDNS server id. Default `localhost`. */
  serverId?: string;
  /** NS names for new zones; default `ns1.<zone>`. */
  nameservers?: string[];
  timeoutMs?: number;
  /** Provider name in the registry. Default `powerdns`. */
  name?: string;
}

interface PdnsRecord { content: string; disabled: boolean }
interface PdnsComment { content: string; account: string; modified_at?: number }
interface PdnsRRset { name: string; type: string; ttl: number; records: PdnsRecord[]; comments: PdnsComment[]; changetype?: string }
interface PdnsZone { id: string; name: string; kind: string; serial: number; account?: string; rrsets?: PdnsRRset[]; nameservers?: string[] }

const MARK_ACCOUNT = 'infraflow';
const NAME_TYPES = new Set(['CNAME', 'NS', 'PTR']);

export function canonicalZone(name: string): string {
  const n = name.trim().toLowerCase();
  return n.endsWith('.') ? n : `${n}.`;
}

/** Absolute owner name of a record: `@` → apex, `www` → www.<zone>, a name already inside the zone stays. */
export function recordFqdn(name: string, zone: string): string {
  const z = canonicalZone(zone);
  const n = name.trim().toLowerCase();
  if (n === '@' || n === '') return z;
  if (n.endsWith('.')) return n;
  const bare = z.slice(0, -1);
  if (n === bare || n.endsWith(`.${bare}`)) return `${n}.`;
  return `${n}.${z}`;
}

const dot = (s: string) => (s.endsWith('.') ? s : `${s}.`);

/** Spec value → zone-file content PowerDNS stores. */
export function toContent(type: string, value: string): string {
  const v = value.trim();
  if (NAME_TYPES.has(type)) return dot(v.toLowerCase());
  if (type === 'MX') { const [prio, host] = v.split(/\s+/); return `${prio} ${dot(host!.toLowerCase())}`; }
  if (type === 'SRV') { const [p, w, port, host] = v.split(/\s+/); return `${p} ${w} ${port} ${dot(host!.toLowerCase())}`; }
  if (type === 'TXT') return v.startsWith('"') ? v : `"${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
  if (type === 'AAAA') return v.toLowerCase();
  return v;
}

/** Zone-file content → the value as a spec would write it (no trailing dot, TXT unquoted). */
export function fromContent(type: string, content: string): string {
  const undot = (s: string) => (s.endsWith('.') ? s.slice(0, -1) : s);
  if (NAME_TYPES.has(type)) return undot(content);
  if (type === 'MX') { const [prio, host] = content.split(/\s+/); return `${prio} ${undot(host!)}`; }
  if (type === 'SRV') { const [p, w, port, host] = content.split(/\s+/); return `${p} ${w} ${port} ${undot(host!)}`; }
  if (type === 'TXT' && /^"([^"\\]|\\.)*"$/.test(content)) return content.slice(1, -1).replace(/\\(.)/g, '$1');
  return content;
}

const sameSet = (a: string[], b: string[]) => a.length === b.length && [...a].sort().join('\n') === [...b].sort().join('\n');

/** The reverse-zone owner name of an address: 10.1.2.3 → 3.2.1.10.in-addr.arpa. */
export function reverseName(addr: string): string {
  if (addr.includes(':')) {
    const [head, tail = ''] = addr.split('::');
    const h = head ? head.split(':') : [];
    const t = tail ? tail.split(':') : [];
    const groups = addr.includes('::') ? [...h, ...Array(8 - h.length - t.length).fill('0'), ...t] : h;
    const nibbles = groups.map((g) => g.padStart(4, '0')).join('').split('');
    return `${nibbles.reverse().join('.')}.ip6.arpa.`;
  }
  return `${addr.split('.').reverse().join('.')}.in-addr.arpa.`;
}

function markOf(resourceId: string): string {
  return createHash('sha256').update(resourceId).digest('hex').slice(0, 24);
}

interface Mark { r: string; v: string[]; ptr?: string[] }
function readMark(rr: PdnsRRset | undefined): Mark | undefined {
  const c = rr?.comments?.find((x) => x.account === MARK_ACCOUNT);
  if (!c) return undefined;
  try { return JSON.parse(c.content) as Mark; } catch { return undefined; }
}

interface Change { rrset: PdnsRRset; resolve: () => void; reject: (e: unknown) => void; signal?: AbortSignal | undefined; check?: (current: PdnsRRset | undefined) => 'write' | 'skip' | Error }

export class PowerDnsProvider implements Provider {
  readonly name: string;
  readonly http: HttpClient;
  private readonly base: string;
  private readonly opts: PowerDnsOptions;
  private handlers: Record<string, KindHandler>;
  /** Per zone: changes waiting for the next PATCH, and whether one is in flight. */
  private queues = new Map<string, { pending: Change[]; busy: boolean }>();

  constructor(opts: PowerDnsOptions) {
    this.opts = opts;
    this.name = opts.name ?? 'powerdns';
    this.http = new HttpClient({ baseUrl: opts.url, headers: { 'X-API-Key': opts.apiKey }, timeoutMs: opts.timeoutMs ?? 15_000, backend: `PowerDNS at ${opts.url}` });
    this.base = `/api/v1/servers/${encodeURIComponent(opts.serverId ?? 'localhost')}`;
    this.handlers = { 'dns/Zone': this.zoneHandler(), 'dns/Record': this.recordHandler() };
  }

  kinds(): string[] { return Object.keys(this.handlers); }

  handler(kind: string): KindHandler {
    const h = this.handlers[kind];
    if (!h) throw new ProviderError('InvalidSpec', `the powerdns provider implements dns/Zone and dns/Record, not ${kind}`);
    return h;
  }

  // ---- API calls -----------------------------------------------------------

  private zonePath(zone: string): string { return `${this.base}/zones/${encodeURIComponent(canonicalZone(zone))}`; }

  /** The zone, or undefined when PowerDNS does not have it. With `rrset`, only that RRset is fetched (PowerDNS ≥ 4.8 filters; older ones send all and we filter). */
  async getZone(zone: string, signal?: AbortSignal, rrset?: { name: string; type: string }): Promise<PdnsZone | undefined> {
    const q = rrset ? `?rrset_name=${encodeURIComponent(rrset.name)}&rrset_type=${encodeURIComponent(rrset.type)}` : '';
    const res = await this.http.request<PdnsZone>('GET', this.zonePath(zone) + q, undefined, signal);
    if (res.status === 404 || res.status === 422) return undefined;
    if (res.status !== 200) throw httpError('Internal', `PowerDNS GET zone ${zone}`, res);
    return res.body;
  }

  async listZones(signal?: AbortSignal): Promise<PdnsZone[]> {
    const res = await this.http.request<PdnsZone[]>('GET', `${this.base}/zones`, undefined, signal);
    if (res.status !== 200) throw httpError('Internal', 'PowerDNS list zones', res);
    return res.body;
  }

  /**
   * Queues RRset changes for a zone; resolves when PowerDNS has committed
   * them. A change with `check` is decided against the zone as it is just
   * before the PATCH (one GET per batch, under the zone's single writer, so
   * no other Infraflow write to the zone slips in between): `write`, `skip`
   * (already so) or an error for that change alone.
   */
  patch(zone: string, rrsets: PdnsRRset[], signal?: AbortSignal, check?: (current: PdnsRRset | undefined) => 'write' | 'skip' | Error): Promise<void> {
    const z = canonicalZone(zone);
    let q = this.queues.get(z);
    if (!q) { q = { pending: [], busy: false }; this.queues.set(z, q); }
    const all = rrsets.map((rrset) => new Promise<void>((resolve, reject) => q.pending.push({ rrset, resolve, reject, signal, ...(check ? { check } : {}) })));
    if (!q.busy) void this.drain(z);
    return Promise.all(all).then(() => undefined);
  }

  private async drain(zone: string): Promise<void> {
    const q = this.queues.get(zone)!;
    q.busy = true;
    try {
      while (q.pending.length) {
        let batch = q.pending.splice(0, 1000).filter((c) => { if (c.signal?.aborted) { c.reject(new ProviderError('Timeout', 'cancelled by the caller', { retryable: false })); return false; } return true; });
        try {
          if (batch.some((c) => c.check)) {
            const z = await this.getZone(zone);
            if (!z) throw new ProviderError('NotFound', `zone ${zone} does not exist in PowerDNS: create the dns/Zone first`);
            const byKey = new Map((z.rrsets ?? []).map((r) => [`${r.name}|${r.type}`, r]));
            batch = batch.filter((c) => {
              if (!c.check) return true;
              const verdict = c.check(byKey.get(`${c.rrset.name}|${c.rrset.type}`));
              if (verdict === 'write') return true;
              if (verdict === 'skip') c.resolve(); else c.reject(verdict);
              return false;
            });
          }
          if (batch.length === 0) continue;
          await this.sendPatch(zone, batch.map((c) => c.rrset));
          for (const c of batch) c.resolve();
        } catch (e) {
          if (batch.length === 1 || !(e instanceof ProviderError) || e.reason !== 'InvalidSpec') { for (const c of batch) c.reject(e); continue; }
          // isolate the change PowerDNS refused: each alone
          for (const c of batch) {
            try { await this.sendPatch(zone, [c.rrset], c.signal); c.resolve(); } catch (e2) { c.reject(e2); }
          }
        }
      }
    } finally {
      q.busy = false;
      if (q.pending.length) void this.drain(zone);
    }
  }

  private async sendPatch(zone: string, rrsets: PdnsRRset[], signal?: AbortSignal): Promise<void> {
    const res = await this.http.request('PATCH', this.zonePath(zone), { rrsets }, signal);
    if (res.status === 204 || res.status === 200) return;
    if (res.status === 404) throw httpError('NotFound', `zone ${zone} does not exist in PowerDNS: create the dns/Zone first`, res);
    throw httpError(res.status === 422 || res.status === 400 ? 'InvalidSpec' : 'Internal', `PowerDNS refused the change to zone ${zone}`, res);
  }

  // ---- dns/Zone ------------------------------------------------------------

  private soaContent(zone: string, spec: ZoneSpec, serial: number): string {
    const ns = dot(this.nameserversFor(zone)[0]!);
    const [local, domain] = spec.email.split('@');
    const rname = `${local!.replace(/\./g, '\\.')}.${dot(domain ?? 'invalid')}`;
    return `${ns} ${rname} ${serial} 10800 3600 604800 ${spec.ttl}`;
  }

  private nameserversFor(zone: string): string[] {
    return (this.opts.nameservers?.length ? this.opts.nameservers : [`ns1.${canonicalZone(zone)}`]).map(dot);
  }

  private zoneOutputs(z: PdnsZone): Record<string, unknown> {
    const soa = z.rrsets?.find((r) => r.type === 'SOA');
    return { id: z.name, name: z.name, serial: z.serial, kind: z.kind, nameservers: z.rrsets?.filter((r) => r.type === 'NS' && r.name === z.name).flatMap((r) => r.records.map((x) => x.content)) ?? [], ...(soa ? { soa: soa.records[0]?.content } : {}) };
  }

  private zoneObserved(z: PdnsZone): Record<string, unknown> {
    const soa = z.rrsets?.find((r) => r.type === 'SOA' && r.name === z.name)?.records[0]?.content.split(/\s+/);
    const rname = soa?.[1] ?? '';
    const m = /^((?:[^.\\]|\\.)+)\.(.*)\.$/.exec(rname);
    const email = m ? `${m[1]!.replace(/\\\./g, '.')}@${m[2]}` : rname;
    return { email, ttl: soa ? Number(soa[6]) : undefined, kind: z.kind === 'Slave' ? 'secondary' : 'primary' };
  }

  private zoneHandler(): KindHandler<ZoneSpec> {
    const info = KINDS['dns/Zone']!;
    return {
      kind: 'dns/Zone', schema: info.schema, replaceOnChange: info.replaceOnChange,
      create: async (spec, ctx): Promise<CreateResult> => {
        if (spec.kind !== 'primary') throw new ProviderError('InvalidSpec', `dns/Zone ${spec.name}: the powerdns provider serves primary zones only (kind: primary)`);
        const name = canonicalZone(spec.name);
        const account = markOf(ctx.project);
        const body = {
          name, kind: 'Native', soa_edit_api: 'DEFAULT', account, nameservers: [],
          rrsets: [
            { name, type: 'SOA', ttl: spec.ttl, records: [{ content: this.soaContent(name, spec, 1), disabled: false }] },
            { name, type: 'NS', ttl: spec.ttl, records: this.nameserversFor(name).map((n) => ({ content: n, disabled: false })) },
          ],
        };
        const res = await this.http.request<PdnsZone>('POST', `${this.base}/zones`, body, ctx.signal);
        if (res.status === 201) return { externalId: name, ready: true, outputs: this.zoneOutputs(res.body) };
        if (res.status === 409) {
          const existing = await this.getZone(name, ctx.signal);
          if (existing && existing.account === account) return { externalId: name, ready: true, outputs: this.zoneOutputs(existing) };
          throw new ProviderError('Conflict', `zone ${name} already exists in PowerDNS and is not managed by this resource; delete it there or pick another name`, { retryable: false });
        }
        throw httpError(res.status === 422 || res.status === 400 ? 'InvalidSpec' : 'Internal', `PowerDNS refused zone ${name}`, res);
      },
      read: async (id, ctx): Promise<ReadResult> => {
        const z = await this.getZone(id, ctx.signal);
        if (!z) return { state: 'absent', outputs: {} };
        return { state: 'ready', outputs: this.zoneOutputs(z), observed: this.zoneObserved(z), conditions: [{ type: 'Served', status: 'True', reason: 'ZoneLoaded', message: `serial ${z.serial}` }] };
      },
      update: async (id, spec, _previous, ctx) => {
        const z = await this.getZone(id, ctx.signal);
        if (!z) throw new ProviderError('NotFound', `zone ${id} is gone from PowerDNS; recreate the resource`);
        await this.patch(id, [{ name: z.name, type: 'SOA', ttl: spec.ttl, changetype: 'REPLACE', records: [{ content: this.soaContent(z.name, spec, z.serial), disabled: false }], comments: [] }], ctx.signal);
        const after = await this.getZone(id, ctx.signal);
        return { ready: true, outputs: after ? this.zoneOutputs(after) : {} };
      },
      delete: async (id, ctx) => {
        const res = await this.http.request('DELETE', this.zonePath(id), undefined, ctx.signal);
        if (res.status === 204 || res.status === 404 || res.status === 422) return { done: true };
        throw httpError('Internal', `PowerDNS DELETE zone ${id}`, res);
      },
    };
  }

  // ---- dns/Record ------------------------------------------------------------

  /** `zone|name|type` → parts. */
  private parseRecordId(id: string): { zone: string; name: string; type: string } | undefined {
    const [zone, name, type] = id.split('|');
    return zone && name && type ? { zone, name, type } : undefined;
  }

  private async findReverseZone(addr: string, signal?: AbortSignal): Promise<string | undefined> {
    const rev = reverseName(addr);
    const zones = await this.listZones(signal);
    return zones.map((z) => z.name).filter((z) => rev === z || rev.endsWith(`.${z}`)).sort((a, b) => b.length - a.length)[0];
  }

  private async writeRecord(spec: RecordSpec & { ptr?: boolean }, ctx: ProviderCallContext): Promise<CreateResult> {
    const zone = canonicalZone(spec.zone);
    const name = recordFqdn(spec.name, zone);
    if (name !== zone && !name.endsWith(`.${zone}`)) throw new ProviderError('InvalidSpec', `dns/Record name ${spec.name} is not inside zone ${zone}: use a relative name ("www") or one ending in ${zone}`);
    if (spec.ptr && spec.type !== 'A' && spec.type !== 'AAAA') throw new ProviderError('InvalidSpec', 'dns/Record ptr: true is for A and AAAA records only');
    const id = `${zone}|${name}|${spec.type}`;
    const mark = markOf(ctx.project);
    const contents = spec.values.map((v) => toContent(spec.type, v));
    const ptrs: { zone: string; rrset: PdnsRRset }[] = [];
    if (spec.ptr) {
      for (const addr of spec.values) {
        const rz = await this.findReverseZone(addr, ctx.signal);
        if (!rz) throw new ProviderError('NotFound', `no reverse zone in PowerDNS covers ${addr} (${reverseName(addr)}); create a dns/Zone for it first (e.g. ${reverseName(addr).split('.').slice(spec.type === 'A' ? 2 : 17).join('.').replace(/\.$/, '')})`);
        ptrs.push({ zone: rz, rrset: { name: reverseName(addr), type: 'PTR', ttl: spec.ttl, changetype: 'REPLACE', records: [{ content: name, disabled: false }], comments: [{ account: MARK_ACCOUNT, content: JSON.stringify({ r: mark, v: [name.slice(0, -1)] }) }] } });
      }
    }
    const ptrKeys = ptrs.map((p) => `${p.zone}|${p.rrset.name}`);
    for (const p of ptrs) await this.patch(p.zone, [p.rrset], ctx.signal);
    let previous: Mark | undefined;
    const comment: Mark = { r: mark, v: spec.values, ...(ptrs.length ? { ptr: ptrKeys } : {}) };
    await this.patch(zone, [{ name, type: spec.type, ttl: spec.ttl, changetype: 'REPLACE', records: contents.map((content) => ({ content, disabled: false })), comments: [{ account: MARK_ACCOUNT, content: JSON.stringify(comment) }] }], ctx.signal, (cur) => {
      const curMark = readMark(cur);
      previous = curMark;
      if (cur && curMark && curMark.r !== mark) return new ProviderError('Conflict', `record ${name} ${spec.type} is managed by another Infraflow project; delete it there first`, { retryable: false });
      if (cur && cur.records.length && !curMark) return new ProviderError('Conflict', `record ${name} ${spec.type} already exists in PowerDNS and is not managed by Infraflow; delete it there or use another name`, { retryable: false });
      const same = cur && sameSet(cur.records.map((r) => r.content), contents) && cur.ttl === spec.ttl && sameSet(curMark?.v ?? [], spec.values) && sameSet(curMark?.ptr ?? [], ptrKeys);
      return same ? 'skip' : 'write';
    });
    for (const stale of (previous?.ptr ?? []).filter((p) => !ptrKeys.includes(p))) {
      const [pz, pn] = stale.split('|');
      await this.patch(pz!, [{ name: pn!, type: 'PTR', ttl: 0, changetype: 'DELETE', records: [], comments: [] }], ctx.signal).catch(() => undefined);
    }
    return { externalId: id, ready: true, outputs: { id, fqdn: name, type: spec.type, zone, values: spec.values, ...(ptrs.length ? { ptr: ptrs.map((p) => p.rrset.name) } : {}) } };
  }

  private recordHandler(): KindHandler<RecordSpec> {
    const info = KINDS['dns/Record']!;
    return {
      kind: 'dns/Record', schema: info.schema, replaceOnChange: info.replaceOnChange,
      ...(info.validate ? { validate: (s: RecordSpec) => info.validate!(s) } : {}),
      create: (spec, ctx) => this.writeRecord(spec, ctx),
      read: async (id, ctx): Promise<ReadResult> => {
        const p = this.parseRecordId(id);
        if (!p) return { state: 'absent', outputs: {} };
        const z = await this.getZone(p.zone, ctx.signal, { name: p.name, type: p.type });
        const rr = z?.rrsets?.find((r) => r.name === p.name && r.type === p.type);
        if (!rr || rr.records.length === 0) return { state: 'absent', outputs: {} };
        const contents = rr.records.map((r) => r.content);
        const mark = readMark(rr);
        const values = mark && sameSet(mark.v.map((v) => toContent(p.type, v)), contents) ? mark.v : contents.map((c) => fromContent(p.type, c));
        return {
          state: 'ready',
          outputs: { id, fqdn: p.name, type: p.type, zone: p.zone, values, serial: z!.serial },
          observed: { ttl: rr.ttl, values },
          conditions: [{ type: 'Served', status: 'True', reason: 'RRsetPresent', message: `${p.name} ${p.type} in zone serial ${z!.serial}` }],
        };
      },
      update: async (id, spec, _previous, ctx) => {
        const r = await this.writeRecord(spec, ctx);
        if (r.externalId !== id) throw new ProviderError('InvalidSpec', `dns/Record: zone, name and type cannot change in place (${id} → ${r.externalId}); replace the record`);
        return { ready: true, outputs: r.outputs ?? {} };
      },
      delete: async (id, ctx) => {
        const p = this.parseRecordId(id);
        if (!p) return { done: true };
        const z = await this.getZone(p.zone, ctx.signal, { name: p.name, type: p.type });
        const rr = z?.rrsets?.find((r) => r.name === p.name && r.type === p.type);
        if (!rr) return { done: true };
        const mark = readMark(rr);
        for (const ptr of mark?.ptr ?? []) { const [pz, pn] = ptr.split('|'); await this.patch(pz!, [{ name: pn!, type: 'PTR', ttl: 0, changetype: 'DELETE', records: [], comments: [] }], ctx.signal).catch(() => undefined); }
        await this.patch(p.zone, [{ name: p.name, type: p.type, ttl: 0, changetype: 'DELETE', records: [], comments: [] }], ctx.signal);
        return { done: true };
      },
    };
  }
}

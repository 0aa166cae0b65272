import { systemClock, type Clock } from '../core/clock.js';
import { ConflictError, ExhaustedError, InfraflowError, NotFoundError, ValidationError } from '../core/errors.js';
import { hostProblem, parseAddress } from '../ipam/addr.js';
import { newId } from '../core/ids.js';
import type { WorkflowContext } from '../engine/types.js';
import type { Inventory } from '../inventory/inventory.js';
import type { Server } from '../inventory/schemas.js';
import type { EventSink } from '../inventory/inventory.js';
import { withTx } from '../inventory/tx.js';
import { parseInput } from '../inventory/validate.js';
import type { Ipam } from '../ipam/ipam.js';
import type { Store, Trx } from '../store/store.js';
import {
  FeasibilityRequestSchema, ReserveSchema,
  type AllocationRequest, type FeasibilityRequestInput, type DnsName, type Feasibility, type Reservation, type ReservationStatus, type ReserveInput, type Shortfall,
} from './schemas.js';
import type { AllocDnsNameTable, AllocReservationTable } from './tables.js';
import './tables.js';

/** A reservation without the rows it holds (what lists return). */
export type ReservationHead = Omit<Reservation, 'servers' | 'prefixes' | 'addresses' | 'floatingIps' | 'vlans' | 'dnsNames'>;

export interface AllocationsOptions {
  store: Store;
  inventory: Inventory;
  ipam: Ipam;
  clock?: Clock;
  /** Events after commit (best effort): `reservation.created|committed|aborted|released|expired`. */
  events?: EventSink;
}

/**
 * Reservations group allocations across domains — servers, prefixes,
 * addresses, floating IPs, VLANs, DNS names — under one id with a time to
 * live. `reserve` allocates everything in ONE transaction (all or nothing);
 * every row carries the reservation id and an expiry. `commit` makes them
 * permanent; `abort`, or expiry found by `sweep`, releases all of them
 * together. Rows whose hold expired are released by the sweep even when no
 * reservation record exists (a crash between allocation and commit).
 *
 * Commit, abort and expiry lock the reservation row first, so they are
 * serialized: a reservation is committed or released, never both.
 */
export class Allocations {
  readonly store: Store;
  readonly inventory: Inventory;
  readonly ipam: Ipam;
  readonly clock: Clock;
  private readonly events: EventSink | undefined;

  constructor(opts: AllocationsOptions) {
    this.store = opts.store;
    this.inventory = opts.inventory;
    this.ipam = opts.ipam;
    this.clock = opts.clock ?? systemClock;
    this.events = opts.events;
  }

  private emit(r: Reservation): void {
    if (!this.events) return;
    try {
      void Promise.resolve(this.events(`reservation.${r.status === 'open' ? 'created' : r.status}`, r.id, {
        holder: r.holder, status: r.status, expiresAt: r.expiresAt, reason: r.reason,
        servers: r.servers.length, prefixes: r.prefixes.map((p) => p.cidr), addresses: r.addresses.length, floatingIps: r.floatingIps.length, vlans: r.vlans.map((v) => v.vlan), dnsNames: r.dnsNames.map((d) => d.fqdn),
      })).catch(() => {});
    } catch {
      /* best effort */
    }
  }

  /** Prefix references written as `<scope>:<cidr>` (parents, address prefixes, floating pools) → ids. */
  private async resolveRefs<T extends Pick<AllocationRequest, 'prefixes' | 'addresses' | 'floatingIps'>>(req: T): Promise<T> {
    const r = (ref: string) => this.ipam.resolvePrefixRef(ref);
    return {
      ...req,
      prefixes: await Promise.all(req.prefixes.map(async (p) => ({ ...p, parentId: await r(p.parentId) }))),
      addresses: await Promise.all(req.addresses.map(async (a) => ({ ...a, prefixId: await r(a.prefixId) }))),
      floatingIps: await Promise.all(req.floatingIps.map(async (f) => ({ ...f, poolId: await r(f.poolId) }))),
    };
  }

  /** Allocates everything requested, held for `ttlMs`, or nothing (the error names the item that could not be met). */
  async reserve(input: ReserveInput): Promise<Reservation> {
    const req = await this.resolveRefs(parseInput(ReserveSchema, input, 'reservation'));
    const rid = await withTx(this.store, async (trx) => {
      if (req.key) {
        const existing = await trx.selectFrom('alloc_reservations').select('id').where('idem_key', '=', req.key).executeTakeFirst();
        if (existing) return existing.id;
      }
      const now = this.clock.now();
      const id = newId('rsv');
      const expiresAt = now + req.ttlMs;
      const hold = { reservationId: id, expiresAt };
      const holder = req.holder;
      await trx.insertInto('alloc_reservations').values({
        id, status: 'open', holder, idem_key: req.key ?? null, request: JSON.stringify({ ...req, key: undefined }), expires_at: expiresAt, created_at: now, updated_at: now, reason: '',
      }).execute();
      const at = async <T>(path: string, fn: () => Promise<T>): Promise<T> => {
        try {
          return await fn();
        } catch (e) {
          throw prefixError(e, path);
        }
      };
      // a fixed domain order, and a sorted order inside each domain, keeps lock order stable across processes
      for (const [i, s] of sorted(req.servers, (s) => `${s.type}\u0000${s.datacenter}`)) {
        await at(`servers.${i}`, () => this.inventory.allocateServers({ ...s, holder, hold }, trx));
      }
      for (const [i, p] of sorted(req.prefixes, (p) => p.parentId)) {
        for (let k = 0; k < p.count; k++) await at(`prefixes.${i}`, () => this.ipam.allocatePrefix({ parentId: p.parentId, length: p.length, kind: p.kind, gateway: p.gateway, holder, hold }, trx));
      }
      const addrItems = [
        ...req.addresses.map((a, i) => ({ path: `addresses.${i}`, prefixId: a.prefixId, count: a.count, address: a.address, fallback: a.fallback })),
        ...req.floatingIps.map((f, i) => ({ path: `floatingIps.${i}`, prefixId: f.poolId, count: f.count, address: undefined, fallback: false })),
      ].sort((a, b) => (a.prefixId < b.prefixId ? -1 : a.prefixId > b.prefixId ? 1 : 0));
      for (const a of addrItems) {
        await at(a.path, () => this.ipam.allocateAddresses({ prefixId: a.prefixId, count: a.count, fallback: a.fallback, holder, hold, ...(a.address !== undefined ? { address: a.address } : {}) }, trx));
      }
      for (const [i, v] of sorted(req.vlans, (v) => v.poolId)) {
        await at(`vlans.${i}`, () => this.ipam.allocateVlans({ poolId: v.poolId, count: v.count, fallback: v.fallback, holder, hold, ...(v.vlan !== undefined ? { vlan: v.vlan } : {}) }, trx));
      }
      for (const [i, d] of req.dnsNames.entries()) {
        await at(`dnsNames.${i}`, () => this.claimDnsName(trx, d.zone, d.name, holder, hold));
      }
      return id;
    });
    const r = await this.load(rid);
    this.emit(r);
    return r;
  }

  /** Makes a reservation permanent. Refused once it expired or was aborted. */
  async commit(id: string): Promise<Reservation> {
    await withTx(this.store, async (trx) => {
      const r = await this.lock(trx, id);
      if (r.status === 'committed') return;
      if (r.status !== 'open') throw new ConflictError('reservation.not_open', `reservation ${id} is ${r.status}; reserve again`, { details: { id, status: r.status } });
      if (r.expires_at <= this.clock.now()) throw new ConflictError('reservation.expired', `reservation ${id} expired at ${new Date(Number(r.expires_at)).toISOString()} before it was committed; reserve again`, { details: { id } });
      await this.inventory.commitHold(trx, id);
      await this.ipam.commitHold(trx, id);
      await trx.updateTable('alloc_dns_names').set({ expires_at: null }).where('reservation_id', '=', id).execute();
      await trx.updateTable('alloc_reservations').set({ status: 'committed', updated_at: this.clock.now() }).where('id', '=', id).execute();
    });
    const r = await this.load(id);
    this.emit(r);
    return r;
  }

  /** Releases everything an open reservation holds. */
  async abort(id: string, reason = 'aborted'): Promise<Reservation> {
    return this.end(id, ['open'], 'aborted', reason);
  }

  /** Releases everything a committed reservation holds (the order is gone). */
  async release(id: string, reason = 'released'): Promise<Reservation> {
    return this.end(id, ['committed', 'open'], 'released', reason);
  }

  private async end(id: string, from: ReservationStatus[], to: ReservationStatus, reason: string): Promise<Reservation> {
    let freed: Server[] = [];
    await withTx(this.store, async (trx) => {
      const r = await this.lock(trx, id);
      if (r.status === to) return;
      if (!from.includes(r.status as ReservationStatus)) throw new ConflictError('reservation.not_open', `reservation ${id} is ${r.status}; it cannot be ${to}`, { details: { id, status: r.status } });
      freed = await this.releaseAll(trx, id);
      await trx.updateTable('alloc_reservations').set({ status: to, reason, updated_at: this.clock.now() }).where('id', '=', id).execute();
    });
    await this.inventory.notifyCapacityFor(freed);
    const r = await this.load(id);
    this.emit(r);
    return r;
  }

  private async releaseAll(trx: Trx, id: string): Promise<Server[]> {
    const freed = await this.inventory.releaseHold(trx, id);
    await this.ipam.releaseHold(trx, id);
    await trx.deleteFrom('alloc_dns_names').where('reservation_id', '=', id).execute();
    return freed;
  }

  /**
   * Expires open reservations past their TTL (releasing everything they
   * hold), then releases any held row whose expiry passed without a
   * reservation record. Run it periodically (`startSweeper`).
   */
  async sweep(now = this.clock.now()): Promise<{ expired: number; orphans: number }> {
    const due = await this.store.db.selectFrom('alloc_reservations').select('id').where('status', '=', 'open').where('expires_at', '<=', now).orderBy('expires_at').limit(1000).execute();
    let expired = 0;
    for (const { id } of due) {
      let freed: Server[] = [];
      const done = await withTx(this.store, async (trx) => {
        const r = await this.lock(trx, id);
        if (r.status !== 'open' || r.expires_at > now) return false;
        freed = await this.releaseAll(trx, id);
        await trx.updateTable('alloc_reservations').set({ status: 'expired', reason: 'not committed within its time to live', updated_at: this.clock.now() }).where('id', '=', id).execute();
        return true;
      });
      await this.inventory.notifyCapacityFor(freed);
      if (done) {
        expired++;
        this.emit(await this.load(id));
      }
    }
    let orphans = await this.inventory.sweepExpired(now);
    orphans += await this.ipam.sweepExpired(now);
    const dns = await this.store.db.deleteFrom('alloc_dns_names').where('expires_at', 'is not', null).where('expires_at', '<=', now).executeTakeFirst();
    orphans += Number(dns.numDeletedRows);
    return { expired, orphans };
  }

  /** Sweeps every `intervalMs` until stopped. */
  startSweeper(intervalMs = 5_000, onError: (e: unknown) => void = () => {}): () => Promise<void> {
    const ac = new AbortController();
    const loop = (async () => {
      while (!ac.signal.aborted) {
        try {
          await this.sweep();
        } catch (e) {
          onError(e);
        }
        try {
          await this.clock.sleep(intervalMs, ac.signal);
        } catch {
          break;
        }
      }
    })();
    return async () => {
      ac.abort();
      await loop;
    };
  }

  async get(id: string): Promise<Reservation> {
    return this.load(id);
  }

  /** Reservations, newest first; `after` is the last id of the previous page. */
  async list(filter: { holder?: string; status?: ReservationStatus; after?: string; limit?: number } = {}): Promise<ReservationHead[]> {
    let q = this.store.db.selectFrom('alloc_reservations').selectAll();
    if (filter.holder) q = q.where('holder', '=', filter.holder);
    if (filter.status) q = q.where('status', '=', filter.status);
    if (filter.after) q = q.where('id', '<', filter.after);
    const rows = await q.orderBy('id', 'desc').limit(filter.limit ?? 100).execute();
    return rows.map(head);
  }

  /**
   * Answers whether a request could be met now, with one reason per
   * shortfall, without allocating anything. Requests that share a pool are
   * summed. Advisory: a concurrent allocation can still take the capacity;
   * `reserve` is the guarantee.
   */
  async feasibility(input: FeasibilityRequestInput): Promise<Feasibility> {
    const req = await this.resolveRefs(parseInput(FeasibilityRequestSchema, input, 'reservation'));
    const shortfalls: Shortfall[] = [];
    // an item that names something unknown or is invalid can never be met as written: its shortfall carries the error's code
    const errorReason = (e: unknown) => (e instanceof InfraflowError ? e.message : String(e));
    const unmeetable = (e: unknown) => (e instanceof InfraflowError && !(e instanceof ExhaustedError) ? { code: e.code } : {});
    // servers: per item (labels), and per (type, datacenter) in total
    const perPair = new Map<string, { paths: string[]; requested: number; available: number; type: string; dc: string }>();
    for (const [i, s] of req.servers.entries()) {
      const path = `servers.${i}`;
      try {
        const cap = await this.inventory.capacity({ type: s.type, datacenter: s.datacenter, labels: s.labels });
        const plain = Object.keys(s.labels).length ? (await this.inventory.capacity({ type: s.type, datacenter: s.datacenter })).available : cap.available;
        if (cap.available < s.count) {
          const lbl = Object.keys(s.labels).length ? ` with labels ${Object.entries(s.labels).map(([k, v]) => `${k}=${v}`).join(',')}` : '';
          shortfalls.push({ path, resource: 'servers', requested: s.count, available: cap.available, reason: `${s.count} server(s) of type ${s.type}${lbl} requested in ${s.datacenter}, ${cap.available} available` });
        }
        const k = `${s.type}\u0000${s.datacenter}`;
        const agg = perPair.get(k) ?? { paths: [], requested: 0, available: plain, type: s.type, dc: s.datacenter };
        agg.paths.push(path);
        agg.requested += s.count;
        perPair.set(k, agg);
      } catch (e) {
        shortfalls.push({ path, resource: 'servers', requested: s.count, available: 0, reason: errorReason(e), ...unmeetable(e) });
      }
    }
    for (const a of perPair.values()) {
      if (a.paths.length > 1 && a.requested > a.available) {
        shortfalls.push({ path: a.paths.join(','), resource: 'servers', requested: a.requested, available: a.available, reason: `${a.requested} server(s) of type ${a.type} requested in ${a.dc} in total, ${a.available} available` });
      }
    }
    // child prefixes: per (parent, length), summed
    const pfx = new Map<string, { paths: string[]; parentId: string; length: number; count: number }>();
    for (const [i, p] of req.prefixes.entries()) {
      const k = `${p.parentId}/${p.length}`;
      const agg = pfx.get(k) ?? { paths: [], parentId: p.parentId, length: p.length, count: 0 };
      agg.paths.push(`prefixes.${i}`);
      agg.count += p.count;
      pfx.set(k, agg);
    }
    for (const a of pfx.values()) {
      try {
        const n = await this.ipam.carvable(a.parentId, a.length, a.count);
        if (n < a.count) {
          const parent = await this.ipam.getPrefix(a.parentId);
          shortfalls.push({ path: a.paths.join(','), resource: 'prefixes', requested: a.count, available: n, reason: `${a.count} /${a.length} requested from ${parent.cidr} (${parent.kind}), ${n} free` });
        }
      } catch (e) {
        shortfalls.push({ path: a.paths.join(','), resource: 'prefixes', requested: a.count, available: 0, reason: errorReason(e), ...unmeetable(e) });
      }
    }
    // addresses and floating IPs: per prefix, summed
    const addr = new Map<string, { paths: string[]; resource: 'addresses' | 'floatingIps'; count: number }>();
    const addAddr = (prefixId: string, path: string, resource: 'addresses' | 'floatingIps', count: number) => {
      const agg = addr.get(prefixId) ?? { paths: [], resource, count: 0 };
      agg.paths.push(path);
      agg.count += count;
      addr.set(prefixId, agg);
    };
    req.addresses.forEach((a, i) => addAddr(a.prefixId, `addresses.${i}`, 'addresses', a.count));
    req.floatingIps.forEach((f, i) => addAddr(f.poolId, `floatingIps.${i}`, 'floatingIps', f.count));
    for (const [prefixId, a] of addr) {
      try {
        const p = await this.ipam.getPrefix(prefixId);
        if (a.resource === 'floatingIps' && p.kind !== 'floating') throw new ConflictError('ipam.wrong_kind', `poolId: ${p.cidr} is a ${p.kind} prefix, not a floating IP pool`);
        const free = await this.ipam.freeAddresses(prefixId);
        if (free < BigInt(a.count)) shortfalls.push({ path: a.paths.join(','), resource: a.resource, requested: a.count, available: Number(free), reason: `${a.count} address(es) requested from ${p.cidr}, ${free} free` });
      } catch (e) {
        shortfalls.push({ path: a.paths.join(','), resource: a.resource, requested: a.count, available: 0, reason: errorReason(e), ...unmeetable(e) });
      }
    }
    for (const [i, a] of req.addresses.entries()) {
      if (a.address === undefined) continue;
      const p = await this.ipam.getPrefix(a.prefixId).catch(() => undefined);
      if (!p) continue;
      // a specific address must lie in its prefix: a request error, whatever `fallback` says
      const problem = hostProblem(p.cidr, a.address);
      if (problem) throw new ValidationError('ipam.outside_prefix', `addresses.${i}.address: ${problem}`, { details: { field: `addresses.${i}.address` } });
      if (a.fallback) continue;
      const want = parseAddress(a.address, `addresses.${i}.address`).text;
      const taken = await this.ipam.listAddresses({ prefixId: a.prefixId }).then((rows) => rows.some((r) => r.address === want), () => false);
      if (taken) shortfalls.push({ path: `addresses.${i}`, resource: 'addresses', requested: 1, available: 0, reason: `address ${want} is already allocated` });
    }
    // VLANs: per pool, summed
    const vl = new Map<string, { paths: string[]; count: number }>();
    req.vlans.forEach((v, i) => {
      const agg = vl.get(v.poolId) ?? { paths: [], count: 0 };
      agg.paths.push(`vlans.${i}`);
      agg.count += v.count;
      vl.set(v.poolId, agg);
    });
    for (const [poolId, a] of vl) {
      try {
        const pool = await this.ipam.getVlanPool(poolId);
        const free = await this.ipam.freeVlans(poolId);
        if (free < a.count) shortfalls.push({ path: a.paths.join(','), resource: 'vlans', requested: a.count, available: free, reason: `${a.count} ${pool.kind === 'vlan' ? 'VLAN' : 'VNI'}(s) requested from pool ${pool.name}, ${free} free` });
      } catch (e) {
        shortfalls.push({ path: a.paths.join(','), resource: 'vlans', requested: a.count, available: 0, reason: errorReason(e), ...unmeetable(e) });
      }
    }
    for (const [i, d] of req.dnsNames.entries()) {
      const zone = normZone(d.zone);
      const row = await this.store.db.selectFrom('alloc_dns_names').select('holder').where('zone', '=', zone).where('name', '=', d.name.toLowerCase()).executeTakeFirst();
      if (row) shortfalls.push({ path: `dnsNames.${i}`, resource: 'dnsNames', requested: 1, available: 0, reason: `${d.name}.${zone} is already held by ${row.holder}` });
    }
    return { feasible: shortfalls.length === 0, shortfalls };
  }

  // ---------------------------------------------------------------- helpers

  private async claimDnsName(trx: Trx, zoneIn: string, nameIn: string, holder: string, hold: { reservationId: string; expiresAt: number }): Promise<void> {
    const zone = normZone(zoneIn);
    const name = nameIn.toLowerCase();
    const row = await trx.selectFrom('alloc_dns_names').select('holder').where('zone', '=', zone).where('name', '=', name).executeTakeFirst();
    if (row) throw new ExhaustedError('reservation.dns_name_taken', `${name}.${zone} is already held by ${row.holder}`, { details: { zone, name } });
    // the unique (zone, name) index refuses a concurrent claim; the transaction retries and then sees it taken
    await trx.insertInto('alloc_dns_names').values({ id: newId('dns'), zone, name, holder, reservation_id: hold.reservationId, expires_at: hold.expiresAt, created_at: this.clock.now() }).execute();
  }

  private async lock(trx: Trx, id: string): Promise<AllocReservationTable> {
    let q = trx.selectFrom('alloc_reservations').selectAll().where('id', '=', id);
    if (this.store.dialect === 'postgres') q = q.forUpdate();
    const r = await q.executeTakeFirst();
    if (!r) throw new NotFoundError('reservation.not_found', `reservation ${id} does not exist`, { details: { field: 'id', id } });
    return r;
  }

  /** Reads a reservation and its items through the owning modules (after commit, outside any transaction). */
  private async load(id: string): Promise<Reservation> {
    const trx = this.store.db;
    const r = await trx.selectFrom('alloc_reservations').selectAll().where('id', '=', id).executeTakeFirst();
    if (!r) throw new NotFoundError('reservation.not_found', `reservation ${id} does not exist`, { details: { field: 'id', id } });
    const serverObjs = await this.inventory.listServers({ reservationId: id });
    const prefixes = await this.ipam.listPrefixes({ reservationId: id });
    const addresses = await this.ipam.listAddresses({ reservationId: id });
    const floatPools = new Set<string>();
    for (const pid of new Set(addresses.map((a) => a.prefixId))) {
      if ((await this.ipam.getPrefix(pid)).kind === 'floating') floatPools.add(pid);
    }
    const dns = await trx.selectFrom('alloc_dns_names').selectAll().where('reservation_id', '=', id).orderBy('zone').orderBy('name').execute();
    return {
      ...head(r),
      servers: serverObjs,
      prefixes,
      addresses: addresses.filter((a) => !floatPools.has(a.prefixId)),
      floatingIps: addresses.filter((a) => floatPools.has(a.prefixId)),
      vlans: await this.ipam.listVlans({ reservationId: id }),
      dnsNames: dns.map(toDns),
    };
  }
}

/**
 * Workflow helper: reserves in a journaled step (idempotency key from the
 * engine, so a crash never reserves twice) and registers an undo that
 * aborts the reservation if the run fails or is cancelled later.
 */
export async function reserveStep(ctx: WorkflowContext, alloc: Allocations, input: ReserveInput, name = 'reserve'): Promise<Reservation> {
  return ctx.step(name, (sc) => alloc.reserve({ ...input, key: input.key ?? sc.idempotencyKey }), {
    retry: { nonRetryable: ['inventory.servers_exhausted', 'ipam.address_exhausted', 'ipam.prefix_exhausted', 'ipam.vlan_exhausted', 'reservation.dns_name_taken', 'reservation.invalid_input'] },
    compensate: async (r) => {
      const cur = await alloc.get(r.id);
      if (cur.status === 'open' || cur.status === 'committed') await alloc.release(r.id, `run ${ctx.runId} failed or was cancelled`);
    },
  });
}

function sorted<T>(items: T[], key: (t: T) => string): [number, T][] {
  return items.map((t, i) => [i, t] as [number, T]).sort(([, a], [, b]) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}

function normZone(z: string): string {
  return z.toLowerCase().replace(/\.$/, '');
}

function prefixError(e: unknown, path: string): unknown {
  if (!(e instanceof InfraflowError) || e.status >= 500) return e;
  const field = typeof e.details?.field === 'string' ? `${path}.${e.details.field}` : path;
  const msg = e.message.replace(/^[A-Za-z0-9_.]+:\s*/, '');
  if (e.constructor === InfraflowError) return e;
  const Ctor = e.constructor as new (code: string, message: string, opts: object) => InfraflowError;
  try {
    return new Ctor(e.code, `${field}: ${msg}`, { details: { ...e.details, field }, cause: e });
  } catch {
    return e;
  }
}

function head(r: AllocReservationTable) {
  return { id: r.id, status: r.status as ReservationStatus, holder: r.holder, expiresAt: Number(r.expires_at), createdAt: Number(r.created_at), updatedAt: Number(r.updated_at), reason: r.reason };
}

function toDns(r: AllocDnsNameTable): DnsName {
  return { id: r.id, zone: r.zone, name: r.name, fqdn: `${r.name}.${r.zone}`, holder: r.holder, reservationId: r.reservation_id, expiresAt: r.expires_at === null ? null : Number(r.expires_at) };
}


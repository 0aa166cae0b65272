import type { Transaction } from 'kysely';
import { systemClock, type Clock } from '../core/clock.js';
import { ConflictError, ExhaustedError, InfraflowError, NotFoundError, ValidationError } from '../core/errors.js';
import { newId } from '../core/ids.js';
import type { Database } from '../store/schema.js';
import type { Store, Trx } from '../store/store.js';
import { isUniqueViolation } from '../store/errors.js';
import { GroupCommit, type Outcome } from '../inventory/groupcommit.js';
import { parseJson, pgRawTx, sqliteRawTx, withTx } from '../inventory/tx.js';
import { kyselyAddrOps, kyselyVlanOps, pgOps, sqliteOps, type AddrOps, type VlanOps } from './ops.js';
import { parseInput } from '../inventory/validate.js';
import { alignUp, bitsOf, formatAddress, formatPrefix, fromHex, hostProblem, parseAddress, parsePrefix, toHex, type Family } from './addr.js';
import {
  AllocateAddressSchema, AllocatePrefixSchema, AllocateVlanSchema, CreatePrefixSchema, CreateVlanPoolSchema, VLAN_MAX, VLAN_MIN, VNI_MAX,
  type Address, type AllocateAddressInput, type AllocatePrefixInput, type AllocateVlanInput, type CreatePrefixInput, type CreateVlanPoolInput,
  type Prefix, type PrefixKind, type Utilization, type VlanAllocation, type VlanPool,
} from './schemas.js';
import type { IpamAddressTable, IpamPrefixTable, IpamVlanAllocTable, IpamVlanPoolTable } from './tables.js';
import { FreeWalker, inRanges, mergeRanges, sizeOfRanges, type Range } from './walk.js';
import { CURSOR_LAG, forgetPool, hintsOf, nextUnreserved, pgCarve, pgClaimAddress, pgClaimVlan, sqliteFast, type ContainerHint, type CursorHint, type HintMaps, type SqliteFast } from './fast.js';
import './tables.js';

type AddrReq = ReturnType<typeof AllocateAddressSchema.parse>;
type VlanReq = ReturnType<typeof AllocateVlanSchema.parse>;
type PrefixReq = ReturnType<typeof AllocatePrefixSchema.parse>;

interface StoredRange { start: string; end: string; reason: string }

export interface IpamOptions {
  store: Store;
  clock?: Clock;
  /** Group commit of concurrent requests for one pool (default true). */
  groupCommit?: boolean;
}

/**
 * IP address management: hierarchical prefixes (IPv4 and IPv6) scoped per
 * datacenter or routing domain, addresses, floating IP pools, VLAN and VNI
 * pools.
 *
 * Never double-allocates, on one process or many: every allocation is a
 * row under a unique index ((prefix, address), (pool, vlan)), written in a
 * transaction that first locks the pool's row (SELECT … FOR UPDATE on
 * PostgreSQL, BEGIN IMMEDIATE on SQLite); child prefixes are carved under
 * the parent's lock. Lost races are retried (see inventory/tx.ts).
 *
 * Methods taking `trx` run inside the caller's transaction (reservations
 * compose several allocations atomically); without it they run in their own.
 */
/** `<scope>:<cidr>`, e.g. `dc1:10.20.0.0/16` or `public:2001:db8::/48` (the scope has no colon). */
const PREFIX_REF = /^([^:/]+):(.+\/\d{1,3})$/;

export class Ipam {
  readonly store: Store;
  readonly clock: Clock;
  private readonly pg: boolean;
  private readonly addrGc: GroupCommit<AddrReq, Address[]>;
  private readonly vlanGc: GroupCommit<VlanReq, VlanAllocation[]>;
  private readonly prefixGc: GroupCommit<PrefixReq, Prefix>;
  private readonly groupCommit: boolean;
  private sqliteOpsCache: ReturnType<typeof sqliteOps> | undefined;
  private sqliteFastCache: SqliteFast | undefined;
  /** Per prefix / VLAN pool / container: where this process last left it (see fast.ts), shared by every Ipam on the store. */
  private readonly addrHints: HintMaps['addr'];
  private readonly vlanHints: HintMaps['vlan'];
  private readonly containerHints: HintMaps['container'];

  constructor(opts: IpamOptions) {
    this.store = opts.store;
    this.clock = opts.clock ?? systemClock;
    this.pg = opts.store.dialect === 'postgres';
    this.groupCommit = opts.groupCommit ?? true;
    const hints = hintsOf(opts.store);
    this.addrHints = hints.addr;
    this.vlanHints = hints.vlan;
    this.containerHints = hints.container;
    this.addrGc = new GroupCommit((key, reqs) => this.addrBatch(key, reqs));
    this.vlanGc = new GroupCommit((key, reqs) => this.vlanBatch(key, reqs));
    this.prefixGc = new GroupCommit((key, reqs) => this.prefixBatch(key, reqs));
  }

  // ---------------------------------------------------------------- prefixes

  /**
   * Creates a prefix. Its parent is the smallest existing container in the
   * same scope that holds it; a prefix that overlaps any other prefix in
   * the scope without being inside it is refused.
   */
  async createPrefix(input: CreatePrefixInput): Promise<Prefix> {
    const inp = parseInput(CreatePrefixSchema, input, 'ipam');
    const p = parsePrefix(inp.cidr, 'cidr');
    const reserved: (Range & { reason: string })[] = [];
    let gateway: string | null = null;
    const field = (f: string, v: string, exp: Family) => {
      const a = parseAddress(v, f, exp);
      if (a.value < p.network || a.value > p.last) throw new ValidationError('ipam.outside_prefix', `${f}: ${a.text} is outside ${p.cidr}`, { details: { field: f } });
      return a.value;
    };
    reserved.push(...defaultReserved(inp.kind, p.family, p.network, p.length));
    if (inp.gateway !== undefined) {
      const g = field('gateway', inp.gateway, p.family);
      const problem = inp.kind === 'floating' ? undefined : hostProblem(p.cidr, inp.gateway);
      if (problem) throw new ValidationError('ipam.invalid_gateway', `gateway: ${problem}; a gateway is a host address`, { details: { field: 'gateway' } });
      gateway = formatAddress(p.family, g);
      reserved.push({ start: g, end: g, reason: 'gateway' });
    }
    inp.reserved.forEach((r, i) => {
      const s = field(`reserved.${i}.start`, r.start, p.family);
      const e = r.end === undefined ? s : field(`reserved.${i}.end`, r.end, p.family);
      if (e < s) throw new ValidationError('ipam.invalid_range', `reserved.${i}.end: ${r.end} comes before ${r.start}`, { details: { field: `reserved.${i}.end` } });
      reserved.push({ start: s, end: e, reason: r.reason });
    });
    if (inp.dhcpRange) {
      const s = field('dhcpRange.start', inp.dhcpRange.start, p.family);
      const e = field('dhcpRange.end', inp.dhcpRange.end, p.family);
      if (e < s) throw new ValidationError('ipam.invalid_range', `dhcpRange.end: ${inp.dhcpRange.end} comes before ${inp.dhcpRange.start}`, { details: { field: 'dhcpRange.end' } });
      reserved.push({ start: s, end: e, reason: 'dhcp' });
    }
    const id = newId('pfx');
    return withTx(this.store, async (trx) => {
      const overlapping = await trx.selectFrom('ipam_prefixes').selectAll()
        .where('scope', '=', inp.scope).where('family', '=', p.family)
        .where('network_hex', '<=', toHex(p.last)).where('last_hex', '>=', toHex(p.network))
        .orderBy('length', 'desc').execute();
      let parent: IpamPrefixTable | undefined;
      for (const o of overlapping) {
        const contains = fromHex(o.network_hex) <= p.network && fromHex(o.last_hex) >= p.last && o.length < p.length;
        if (!contains) {
          throw new ConflictError('ipam.prefix_overlap', `cidr: ${p.cidr} overlaps ${o.cidr} (${o.id}) in scope ${inp.scope}; prefixes in one scope nest or are disjoint`, { details: { field: 'cidr', existing: o.id, existingCidr: o.cidr } });
        }
        if (!parent) parent = o;
      }
      if (parent && parent.kind !== 'container') {
        throw new ConflictError('ipam.parent_not_container', `cidr: ${p.cidr} lies inside ${parent.cidr}, a ${parent.kind} prefix; only container prefixes hold child prefixes`, { details: { field: 'cidr', parent: parent.id } });
      }
      if (parent) await this.lockPrefix(trx, parent.id);
      const row: IpamPrefixTable = {
        id, scope: inp.scope, family: p.family, cidr: p.cidr, network_hex: toHex(p.network), last_hex: toHex(p.last), length: p.length,
        parent_id: parent?.id ?? null, kind: inp.kind, gateway, reserved: encodeRanges(sortRanges(reserved)),
        cursor_hex: toHex(p.network), holder: null, reservation_id: null, expires_at: null, idem_key: null,
        description: inp.description, labels: JSON.stringify(inp.labels), created_at: this.clock.now(), child_seq: 0,
      };
      await trx.insertInto('ipam_prefixes').values(row).execute();
      if (inp.kind === 'container') await this.advanceContainerCursor(trx, row);
      if (parent) await this.advanceContainerCursor(trx, parent);
      return toPrefix(row);
    });
  }

  async getPrefix(id: string, trx: Trx = this.store.db): Promise<Prefix> {
    const row = await trx.selectFrom('ipam_prefixes').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw new NotFoundError('ipam.prefix_not_found', `prefix ${id} does not exist`, { details: { field: 'prefixId', id } });
    return toPrefix(row);
  }

  /**
   * A prefix reference as people write it: a prefix id, or `<scope>:<cidr>`
   * (e.g. `dc1:10.20.0.0/16`). Returns the id; a `<scope>:<cidr>` that names
   * no prefix comes back unchanged, so the caller's lookup reports it.
   */
  async resolvePrefixRef(ref: string, trx: Trx = this.store.db): Promise<string> {
    const m = PREFIX_REF.exec(ref);
    if (!m) return ref;
    try {
      return (await this.findPrefix(m[1]!, m[2]!, trx))?.id ?? ref;
    } catch {
      return ref;
    }
  }

  /** The prefix with exactly this CIDR in a scope. */
  async findPrefix(scope: string, cidr: string, trx: Trx = this.store.db): Promise<Prefix | undefined> {
    const p = parsePrefix(cidr, 'cidr');
    const row = await trx.selectFrom('ipam_prefixes').selectAll()
      .where('scope', '=', scope).where('family', '=', p.family).where('network_hex', '=', toHex(p.network)).where('length', '=', p.length).executeTakeFirst();
    return row ? toPrefix(row) : undefined;
  }

  async listPrefixes(filter: { scope?: string; parentId?: string | null; kind?: PrefixKind; holder?: string; reservationId?: string } = {}): Promise<Prefix[]> {
    let q = this.store.db.selectFrom('ipam_prefixes').selectAll();
    if (filter.reservationId !== undefined) q = q.where('reservation_id', '=', filter.reservationId);
    if (filter.scope !== undefined) q = q.where('scope', '=', filter.scope);
    if (filter.parentId !== undefined) q = filter.parentId === null ? q.where('parent_id', 'is', null) : q.where('parent_id', '=', filter.parentId);
    if (filter.kind !== undefined) q = q.where('kind', '=', filter.kind);
    if (filter.holder !== undefined) q = q.where('holder', '=', filter.holder);
    const rows = await q.orderBy('scope').orderBy('family').orderBy('network_hex').orderBy('length').execute();
    return rows.map((r) => toPrefix(r));
  }

  /** Deletes a prefix that holds no child prefixes and no addresses. */
  async deletePrefix(id: string): Promise<void> {
    await withTx(this.store, async (trx) => {
      const row = await this.lockPrefix(trx, id);
      const child = await trx.selectFrom('ipam_prefixes').select('id').where('parent_id', '=', id).executeTakeFirst();
      const addr = await trx.selectFrom('ipam_addresses').select('id').where('prefix_id', '=', id).executeTakeFirst();
      if (child || addr) throw new ConflictError('ipam.prefix_in_use', `prefix ${row.cidr} still holds ${child ? 'child prefixes' : 'addresses'}; release them first`, { details: { id } });
      await this.deletePrefixRows(trx, [row]);
    });
  }

  /** Carves the next free child prefix of `length` from a container (e.g. a /24 for a cluster network). */
  async allocatePrefix(input: AllocatePrefixInput, trx?: Trx): Promise<Prefix> {
    const req = parseInput(AllocatePrefixSchema, input, 'ipam');
    if (trx) return unwrap((await this.allocPrefixesCore(trx, req.parentId, [req]))[0]!);
    if (!this.groupCommit) return unwrap((await this.prefixBatch(req.parentId, [req]))[0]!);
    return this.prefixGc.submit(req.parentId, req);
  }

  /** Releases a carved prefix and everything allocated inside it. */
  async releasePrefix(id: string, opts: { holder?: string } = {}): Promise<void> {
    await withTx(this.store, async (trx) => {
      const row = await trx.selectFrom('ipam_prefixes').selectAll().where('id', '=', id).executeTakeFirst();
      if (!row) throw new NotFoundError('ipam.prefix_not_found', `prefix ${id} does not exist`, { details: { field: 'id', id } });
      if (row.holder === null) throw new ConflictError('ipam.not_allocated', `prefix ${row.cidr} was created, not allocated; delete it with deletePrefix`, { details: { id } });
      if (opts.holder !== undefined && row.holder !== opts.holder) throw new ConflictError('ipam.wrong_holder', `prefix ${row.cidr} is held by ${row.holder}, not ${opts.holder}`, { details: { id } });
      await this.deleteCascade(trx, [row]);
    });
  }

  /** Serves a batch of carve requests for one container in one transaction; a lone request without a key first tries the one-statement carve (fast.ts). */
  private async prefixBatch(parentId: string, reqs: PrefixReq[]): Promise<Outcome<Prefix>[]> {
    const h = this.containerHints.get(parentId);
    if (h && reqs.length === 1 && reqs[0]!.key === undefined) {
      const got = await this.carveFast(h, reqs[0]!);
      if (got) return [{ ok: true, value: got }];
      this.containerHints.delete(parentId);
    }
    let hint: ContainerHint | undefined;
    const outs = await withTx(this.store, (trx) => this.allocPrefixesCore(trx, parentId, reqs, (x) => (hint = x)));
    if (hint) this.containerHints.set(parentId, hint);
    return outs;
  }

  /** The carve the full transaction would make, computed from the hint, written only if the container's children are unchanged. */
  private async carveFast(h: ContainerHint, req: PrefixReq): Promise<Prefix | undefined> {
    const bits = bitsOf(h.family);
    if (h.kind !== 'container' || req.length <= h.length || req.length > bits) return undefined;
    const size = 1n << BigInt(bits - req.length);
    let start = alignUp(h.cursor, size);
    for (;;) {
      const end = start + size - 1n;
      if (end > h.last) return undefined; // exhausted: the full transaction says so
      const clash = h.reserved.find((x) => x.start <= end && x.end >= start) ?? h.children.find((x) => x.start <= end && x.end >= start);
      if (!clash) break;
      start = alignUp(clash.end + 1n, size);
    }
    const block = { start, end: start + size - 1n };
    const children = [...h.children, block].sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
    const cursor = advanceOver(h.cursor, h.last, h.reserved, children);
    const { row, reserved } = childRow({ id: h.id, scope: h.scope, family: h.family }, req, start, this.clock.now());
    const cursorHex = toHex(cursor);
    if (cursorHex.length !== 32) return undefined;
    if (this.store.sqlite) {
      if (this.store.sqlite.inTransaction) return undefined;
      const move = h.lag + 1 >= Number(CURSOR_LAG) ? cursorHex : undefined;
      if (!this.fastOps().carve(row, h.seq, move)) return undefined;
      h.lag = move ? 0 : h.lag + 1;
    } else {
      if (!await pgCarve(this.store.pool!, row, h.seq, cursorHex)) return undefined;
      h.seq += 1;
    }
    h.cursor = cursor;
    h.children = children.filter((c) => c.end >= cursor);
    await this.store.durable(); // SQLite FULL: the claim is on disk before anyone is told
    return toPrefix(row, reserved);
  }

  /**
   * Carves child prefixes for a batch of requests under one lock of the
   * parent: the children around the cursor are read once, blocks carved
   * earlier in the batch are kept in memory, all rows go in one insert and
   * the cursor moves once.
   */
  private async allocPrefixesCore(trx: Trx, parentId: string, reqs: PrefixReq[], hint?: (h: ContainerHint) => void): Promise<Outcome<Prefix>[]> {
    let parent: IpamPrefixTable;
    try {
      parent = await this.lockPrefix(trx, parentId, 'parentId');
    } catch (e) {
      return reqs.map(() => ({ ok: false, error: e }));
    }
    const family = parent.family as Family;
    const outs: Outcome<Prefix>[] = [];
    const rows: IpamPrefixTable[] = [];
    const fresh: Range[] = [];
    const keysInBatch = new Map<string, IpamPrefixTable>();
    const cache: ChildChunkCache = {};
    const now = this.clock.now();
    for (const req of reqs) {
      try {
        if (req.key) {
          const inBatch = keysInBatch.get(req.key);
          const existing = inBatch ?? await trx.selectFrom('ipam_prefixes').selectAll().where('idem_key', '=', req.key).executeTakeFirst();
          if (existing) {
            outs.push({ ok: true, value: toPrefix(existing) });
            continue;
          }
        }
        if (parent.kind !== 'container') throw new ConflictError('ipam.wrong_kind', `parentId: ${parent.cidr} is a ${parent.kind} prefix; child prefixes are carved from container prefixes`, { details: { field: 'parentId' } });
        if (req.length <= parent.length || req.length > bitsOf(family)) {
          throw new ValidationError('ipam.invalid_prefix_length', `length: a child of ${parent.cidr} must be longer than /${parent.length} and at most /${bitsOf(family)}; got /${req.length}`, { details: { field: 'length' } });
        }
        const start = await this.findChildBlock(trx, parent, req.length, fresh, cache);
        if (start === null) {
          throw new ExhaustedError('ipam.prefix_exhausted', `${parent.cidr} in ${parent.scope} has no free /${req.length} left`, { details: { prefixId: parent.id, cidr: parent.cidr, length: req.length } });
        }
        const { row, reserved } = childRow({ id: parent.id, scope: parent.scope, family }, req, start, now);
        rows.push(row);
        fresh.push({ start, end: fromHex(row.last_hex) });
        if (req.key) keysInBatch.set(req.key, row);
        outs.push({ ok: true, value: toPrefix(row, reserved) });
      } catch (e) {
        if (!(e instanceof InfraflowError)) throw e; // database errors fail (and retry) the whole batch
        outs.push({ ok: false, error: e });
      }
    }
    for (let i = 0; i < rows.length; i += 200) await trx.insertInto('ipam_prefixes').values(rows.slice(i, i + 200)).execute();
    if (rows.length > 0) {
      const cursor = await this.advanceContainerCursor(trx, parent, fresh);
      // the children at or above the cursor, as of the child_seq this transaction wrote: complete if the first chunk was
      if (cache.first && cache.first.length < CHILD_CHUNK) {
        const known = [...(cache.covering ? [cache.covering] : []), ...cache.first].map((r) => ({ start: fromHex(r.network_hex), end: fromHex(r.last_hex) })).concat(fresh)
          .filter((c) => c.end >= cursor).sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
        hint?.({ id: parent.id, scope: parent.scope, family, length: parent.length, kind: parent.kind, last: fromHex(parent.last_hex), reserved: storedRanges(parent.reserved),
          seq: Number(parent.child_seq) + 1, cursor, lag: 0, children: known });
      }
    }
    return outs;
  }

  /** First aligned block of `length` in the container not overlapping a child or a reserved range. */
  private async findChildBlock(trx: Trx, parent: IpamPrefixTable, length: number, fresh: Range[] = [], cache: ChildChunkCache = {}): Promise<bigint | null> {
    const family = parent.family as Family;
    const size = 1n << BigInt(bitsOf(family) - length);
    const last = fromHex(parent.last_hex);
    // reserved ranges and blocks carved earlier in this transaction (not yet inserted) are both off limits
    const reserved = [...storedRanges(parent.reserved), ...fresh];
    // Every address below the cursor is covered by a child, so no child that
    // overlaps a candidate block starts below the cursor: read the children
    // from the cursor on, in network order, a chunk at a time (index range scan).
    let c = alignUp(fromHex(parent.cursor_hex), size);
    const LIMIT = CHILD_CHUNK;
    const fetch = (op: '>=' | '>', fromHex: string) => trx.selectFrom('ipam_prefixes').select(['network_hex', 'last_hex']).where('parent_id', '=', parent.id)
      .where('network_hex', op, fromHex).orderBy('network_hex').limit(LIMIT).execute();
    if (!cache.first) {
      cache.first = await fetch('>=', parent.cursor_hex);
      // a child created by hand across a reserved range can start below the cursor and reach over it
      const below = await trx.selectFrom('ipam_prefixes').select(['network_hex', 'last_hex']).where('parent_id', '=', parent.id)
        .where('network_hex', '<', parent.cursor_hex).orderBy('network_hex', 'desc').limit(1).executeTakeFirst();
      cache.covering = below && below.last_hex >= parent.cursor_hex ? below : null;
    }
    let raw = cache.first;
    let buf = [...(cache.covering ? [cache.covering] : []), ...raw].map((r) => ({ start: fromHex(r.network_hex), end: fromHex(r.last_hex) }));
    let i = 0;
    for (;;) {
      const end = c + size - 1n;
      if (end > last) return null;
      const r = reserved.find((x) => x.start <= end && x.end >= c);
      if (r) {
        c = alignUp(r.end + 1n, size);
        continue;
      }
      while (i < buf.length && buf[i]!.end < c) i++;
      if (i === buf.length && raw.length === LIMIT) {
        raw = await fetch('>', raw[raw.length - 1]!.network_hex);
        buf = raw.map((x) => ({ start: fromHex(x.network_hex), end: fromHex(x.last_hex) }));
        i = 0;
        continue;
      }
      if (i < buf.length && buf[i]!.start <= end) {
        c = alignUp(buf[i]!.end + 1n, size);
        continue;
      }
      return c;
    }
  }

  /**
   * Moves a container's cursor past children and reserved ranges that start
   * at it, and bumps its child_seq (the children changed); returns the cursor.
   */
  private async advanceContainerCursor(trx: Trx, parent: IpamPrefixTable, fresh: Range[] = []): Promise<bigint> {
    const reserved = storedRanges(parent.reserved);
    const carved = new Map(fresh.map((f) => [f.start, f.end]));
    const cur = await trx.selectFrom('ipam_prefixes').select('cursor_hex').where('id', '=', parent.id).executeTakeFirstOrThrow();
    let c = fromHex(cur.cursor_hex);
    const last = fromHex(parent.last_hex);
    for (;;) {
      if (c > last) break;
      const r = reserved.find((x) => x.start <= c && x.end >= c);
      if (r) {
        c = r.end + 1n;
        continue;
      }
      const mine = carved.get(c);
      if (mine !== undefined) {
        c = mine + 1n;
        continue;
      }
      // the child starting at c, or one starting below and reaching over it (created by hand across a reserved range)
      const child = await trx.selectFrom('ipam_prefixes').select('last_hex').where('parent_id', '=', parent.id).where('network_hex', '<=', toHex(c))
        .orderBy('network_hex', 'desc').limit(1).executeTakeFirst();
      if (!child || fromHex(child.last_hex) < c) break;
      c = fromHex(child.last_hex) + 1n;
    }
    await trx.updateTable('ipam_prefixes').set((eb) => ({ cursor_hex: toHex(c), child_seq: eb('child_seq', '+', 1) })).where('id', '=', parent.id).execute();
    return c;
  }

  // --------------------------------------------------------------- addresses

  /** Allocates addresses (the next free ones, or a requested one); `count` > 1 is all or nothing. */
  async allocateAddresses(input: AllocateAddressInput, trx?: Trx): Promise<Address[]> {
    const req = parseInput(AllocateAddressSchema, input, 'ipam');
    if (req.address !== undefined && req.count !== 1) throw new ValidationError('ipam.invalid_input', 'count: a requested address allocates exactly one; drop count or address', { details: { field: 'count' } });
    if (trx) return unwrap((await this.allocAddressesCore(kyselyAddrOps(trx, this.pg), req.prefixId, [req]))[0]!);
    if (!this.groupCommit) return unwrap((await this.addrBatch(req.prefixId, [req]))[0]!);
    return this.addrGc.submit(req.prefixId, req);
  }

  async allocateAddress(input: Omit<AllocateAddressInput, 'count'>, trx?: Trx): Promise<Address> {
    return (await this.allocateAddresses({ ...input, count: 1 }, trx))[0]!;
  }

  /** Allocates a floating IP from a floating pool (a prefix of kind `floating`). */
  async allocateFloatingIp(input: { poolId: string; holder: string; address?: string; key?: string; hold?: { reservationId: string; expiresAt: number } }, trx?: Trx): Promise<Address> {
    return this.allocateAddress({ prefixId: input.poolId, holder: input.holder, ...(input.address ? { address: input.address } : {}), ...(input.key ? { key: input.key } : {}), ...(input.hold ? { hold: input.hold } : {}) }, trx);
  }

  /** Associates a floating IP with a target (instance, port, load balancer) or clears the association (null). */
  async associateFloatingIp(addressId: string, target: string | null): Promise<Address> {
    return withTx(this.store, async (trx) => {
      const a = await trx.selectFrom('ipam_addresses').selectAll().where('id', '=', addressId).executeTakeFirst();
      if (!a) throw new NotFoundError('ipam.address_not_found', `address ${addressId} is not allocated`, { details: { field: 'id' } });
      const p = await this.getPrefixRow(trx, a.prefix_id);
      if (p.kind !== 'floating') throw new ConflictError('ipam.wrong_kind', `${a.address} is not a floating IP (its prefix ${p.cidr} is a ${p.kind} prefix)`, { details: { field: 'id' } });
      await trx.updateTable('ipam_addresses').set({ target }).where('id', '=', addressId).execute();
      return toAddress({ ...a, target }, p.length);
    });
  }

  /**
   * Serves a batch of address requests for one prefix in its own transaction.
   * A lone "next free address" request first tries the one-statement fast
   * path (fast.ts); a miss, or any other request, takes the full transaction,
   * which leaves a fresh hint for the next one.
   */
  private async addrBatch(prefixId: string, reqs: AddrReq[]): Promise<Outcome<Address[]>[]> {
    const h = this.addrHints.get(prefixId);
    const req = reqs[0]!;
    if (h && reqs.length === 1 && req.count === 1 && req.address === undefined && req.key === undefined) {
      const got = await this.addrFast(h, req);
      if (got) return [{ ok: true, value: [got] }];
      this.addrHints.delete(prefixId);
    }
    let hint: (CursorHint & { family: Family; length: number }) | undefined;
    const outs = await this.addrTx((ops) => this.allocAddressesCore(ops, prefixId, reqs, (x) => (hint = x)));
    if (hint) this.addrHints.set(prefixId, hint);
    return outs;
  }

  private async addrFast(h: CursorHint & { family: Family; length: number }, req: AddrReq): Promise<Address | undefined> {
    if (h.cursor > h.last || inRanges(h.reserved, h.cursor)) return undefined;
    const next = nextUnreserved(h.cursor, h.reserved);
    const cursorHex = toHex(h.cursor);
    const nextHex = toHex(next);
    if (nextHex.length !== 32) return undefined; // past the end of the IPv6 space: the full path reports it
    const row: IpamAddressTable = {
      id: newId('ip'), prefix_id: h.id, family: h.family, address_hex: cursorHex, address: formatAddress(h.family, h.cursor), holder: req.holder, target: null,
      reservation_id: req.hold?.reservationId ?? null, expires_at: req.hold?.expiresAt ?? null, idem_key: null, created_at: this.clock.now(),
    };
    if (this.store.sqlite) {
      // outside a transaction the whole claim runs synchronously, so nothing else can use the connection meanwhile
      if (this.store.sqlite.inTransaction) return undefined;
      const move = next - h.stored >= CURSOR_LAG ? nextHex : undefined;
      if (!this.fastOps().claimAddress(row, toHex(h.stored), move)) return undefined;
      if (move) h.stored = next;
    } else {
      if (h.stored !== h.cursor || !await pgClaimAddress(this.store.pool!, row, cursorHex, nextHex)) return undefined;
      h.stored = next;
    }
    h.cursor = next;
    await this.store.durable(); // SQLite FULL: the claim is on disk before anyone is told
    return toAddress(row, h.length);
  }

  private fastOps(): SqliteFast {
    this.sqliteFastCache ??= sqliteFast(this.store.sqlite!);
    return this.sqliteFastCache;
  }

  /** Runs `fn` in one transaction with prepared statements: better-sqlite3 on SQLite, named statements on PostgreSQL (retried on lost races). */
  private addrTx<T>(fn: (ops: AddrOps) => Promise<T>): Promise<T> {
    if (this.store.sqlite) return sqliteRawTx(this.store, () => fn(this.rawOps().addr));
    return pgRawTx(this.store, (c) => fn(pgOps(c).addr));
  }

  private vlanTx<T>(fn: (ops: VlanOps) => Promise<T>): Promise<T> {
    if (this.store.sqlite) return sqliteRawTx(this.store, () => fn(this.rawOps().vlan));
    return pgRawTx(this.store, (c) => fn(pgOps(c).vlan));
  }

  private rawOps(): ReturnType<typeof sqliteOps> {
    this.sqliteOpsCache ??= sqliteOps(this.store.sqlite!);
    return this.sqliteOpsCache;
  }

  private async allocAddressesCore(ops: AddrOps, prefixId: string, reqs: AddrReq[], hint?: (h: CursorHint & { family: Family; length: number }) => void): Promise<Outcome<Address[]>[]> {
    const prefix = await ops.lockPrefix(prefixId);
    if (!prefix) {
      const e = new NotFoundError('ipam.prefix_not_found', `prefixId: prefix ${prefixId} does not exist`, { details: { field: 'prefixId', id: prefixId } });
      return reqs.map(() => ({ ok: false, error: e }));
    }
    const family = prefix.family as Family;
    if (prefix.kind === 'container') {
      const e = new ConflictError('ipam.wrong_kind', `prefixId: ${prefix.cidr} is a container prefix; allocate addresses from its network prefixes (or carve one with allocatePrefix)`, { details: { field: 'prefixId' } });
      return reqs.map(() => ({ ok: false, error: e }));
    }
    const net = fromHex(prefix.network_hex);
    const last = fromHex(prefix.last_hex);
    const reserved = storedRanges(prefix.reserved);
    const now = this.clock.now();
    const walker = new FreeWalker(fromHex(prefix.cursor_hex), last, reserved, async (from, limit) => (await ops.taken(prefix.id, toHex(from), limit)).map(fromHex));
    const rows: IpamAddressTable[] = [];
    const outcomes: Outcome<Address[]>[] = [];
    const keysInBatch = new Map<string, IpamAddressTable[]>();
    for (const req of reqs) {
      try {
        if (req.key) {
          const keys = Array.from({ length: req.count }, (_, i) => `${req.key}#${i}`);
          const inBatch = keysInBatch.get(req.key);
          if (inBatch) {
            outcomes.push({ ok: true, value: inBatch.map((r) => toAddress(r, prefix.length)) });
            continue;
          }
          const existing = await ops.byKeys(keys);
          if (existing.length > 0) {
            outcomes.push({ ok: true, value: existing.map((r) => toAddress(r, prefix.length)) });
            continue;
          }
        }
        let values: bigint[] | null = null;
        if (req.address !== undefined) {
          const a = parseAddress(req.address, 'address', family);
          if (a.value < net || a.value > last) throw new ValidationError('ipam.outside_prefix', `address: ${a.text} is outside ${prefix.cidr}`, { details: { field: 'address' } });
          let problem: ConflictError | undefined;
          if (reserved.some((r) => r.start <= a.value && a.value <= r.end)) {
            problem = new ConflictError('ipam.address_reserved', `address: ${a.text} is reserved in ${prefix.cidr} (network, broadcast, gateway or a reserved range)`, { details: { field: 'address', address: a.text } });
          } else if (walker.taken.has(a.value) || await ops.exists(prefix.id, toHex(a.value))) {
            problem = new ConflictError('ipam.address_in_use', `address: ${a.text} is already allocated in ${prefix.cidr}`, { details: { field: 'address', address: a.text } });
          }
          if (!problem) {
            walker.claim(a.value);
            values = [a.value];
          } else if (!req.fallback) throw problem;
        }
        if (values === null) {
          values = await walker.take(req.count);
          if (values === null) {
            throw new ExhaustedError('ipam.address_exhausted', `${prefix.cidr} in ${prefix.scope} has ${req.count === 1 ? 'no free address left' : `fewer than ${req.count} free addresses left`}`, { details: { prefixId: prefix.id, cidr: prefix.cidr, requested: req.count } });
          }
        }
        const mine = values.map((v, i): IpamAddressTable => ({
          id: newId('ip'), prefix_id: prefix.id, family, address_hex: toHex(v), address: formatAddress(family, v), holder: req.holder, target: null,
          reservation_id: req.hold?.reservationId ?? null, expires_at: req.hold?.expiresAt ?? null, idem_key: req.key ? `${req.key}#${i}` : null, created_at: now,
        }));
        if (req.key) keysInBatch.set(req.key, mine);
        rows.push(...mine);
        outcomes.push({ ok: true, value: mine.map((r) => toAddress(r, prefix.length)) });
      } catch (e) {
        outcomes.push({ ok: false, error: e });
      }
    }
    await ops.insert(rows);
    // The cursor goes where the walk stopped (past the values it saw taken), so
    // that the next lone request can take the value at the cursor in one
    // statement (fast.ts). One write per transaction, i.e. per batch.
    if (rows.length > 0) {
      const cursor = walker.settled();
      if (cursor !== fromHex(prefix.cursor_hex)) await ops.setCursor(prefix.id, toHex(cursor));
      hint?.({ id: prefix.id, cursor, stored: cursor, last, reserved, family, length: prefix.length });
    }
    return outcomes;
  }

  /** Releases one address by id, or by prefix and address. */
  async releaseAddress(ref: { id: string; holder?: string } | { prefixId: string; address: string; holder?: string }): Promise<Address> {
    return withTx(this.store, async (trx) => {
      let row: IpamAddressTable | undefined;
      let prefix: IpamPrefixTable;
      if ('id' in ref) {
        row = await trx.selectFrom('ipam_addresses').selectAll().where('id', '=', ref.id).executeTakeFirst();
        if (!row) throw new NotFoundError('ipam.address_not_allocated', `id: address ${ref.id} is not allocated`, { details: { field: 'id' } });
        prefix = await this.lockPrefix(trx, row.prefix_id);
      } else {
        prefix = await this.lockPrefix(trx, ref.prefixId, 'prefixId');
        const a = parseAddress(ref.address, 'address', prefix.family as Family);
        row = await trx.selectFrom('ipam_addresses').selectAll().where('prefix_id', '=', prefix.id).where('address_hex', '=', toHex(a.value)).executeTakeFirst();
        if (!row) throw new NotFoundError('ipam.address_not_allocated', `address: ${a.text} is not allocated in ${prefix.cidr}`, { details: { field: 'address' } });
      }
      if (ref.holder !== undefined && row.holder !== ref.holder) throw new ConflictError('ipam.wrong_holder', `${row.address} is held by ${row.holder}, not ${ref.holder}`, { details: { field: 'holder' } });
      await this.deleteAddressRows(trx, prefix, [row]);
      return toAddress(row, prefix.length);
    });
  }

  async listAddresses(filter: { prefixId?: string; holder?: string; reservationId?: string; limit?: number; after?: string } = {}): Promise<Address[]> {
    let q = this.store.db.selectFrom('ipam_addresses').innerJoin('ipam_prefixes', 'ipam_prefixes.id', 'ipam_addresses.prefix_id').selectAll('ipam_addresses').select('ipam_prefixes.length as plen');
    if (filter.prefixId) q = q.where('ipam_addresses.prefix_id', '=', filter.prefixId);
    if (filter.holder) q = q.where('ipam_addresses.holder', '=', filter.holder);
    if (filter.reservationId) q = q.where('ipam_addresses.reservation_id', '=', filter.reservationId);
    if (filter.after) {
      // `after` is a page cursor: the id of the last address of the previous page (or, within one prefix, an address)
      let pos: { prefix_id: string; address_hex: string } | undefined = await this.store.db.selectFrom('ipam_addresses').select(['prefix_id', 'address_hex']).where('id', '=', filter.after).executeTakeFirst();
      if (!pos && filter.prefixId) pos = { prefix_id: filter.prefixId, address_hex: toHex(parseAddress(filter.after, 'after').value) };
      if (!pos) throw new ValidationError('ipam.invalid_cursor', `after: ${filter.after} is neither an address id nor (with prefixId) an address`, { details: { field: 'after' } });
      const p = pos;
      q = q.where((eb) => eb.or([eb('ipam_addresses.prefix_id', '>', p.prefix_id), eb.and([eb('ipam_addresses.prefix_id', '=', p.prefix_id), eb('ipam_addresses.address_hex', '>', p.address_hex)])]));
    }
    const rows = await q.orderBy('ipam_addresses.prefix_id').orderBy('ipam_addresses.address_hex').limit(filter.limit ?? 10_000).execute();
    return rows.map((r) => toAddress(r, r.plen));
  }

  private async deleteAddressRows(trx: Trx, prefix: IpamPrefixTable, rows: IpamAddressTable[]): Promise<void> {
    if (rows.length === 0) return;
    forgetPool(this.addrHints, prefix.id);
    let min = fromHex(prefix.cursor_hex);
    for (let i = 0; i < rows.length; i += 500) {
      await trx.deleteFrom('ipam_addresses').where('id', 'in', rows.slice(i, i + 500).map((r) => r.id)).execute();
    }
    for (const r of rows) {
      const v = fromHex(r.address_hex);
      if (v < min) min = v;
    }
    if (min !== fromHex(prefix.cursor_hex)) await trx.updateTable('ipam_prefixes').set({ cursor_hex: toHex(min) }).where('id', '=', prefix.id).execute();
  }

  // ------------------------------------------------------------------- VLANs

  /** Creates a VLAN pool (ids 1..4094; 0 and 4095 are never handed out) or a VNI pool (1..16777215). */
  async createVlanPool(input: CreateVlanPoolInput): Promise<VlanPool> {
    const inp = parseInput(CreateVlanPoolSchema, input, 'ipam');
    const hi = inp.kind === 'vlan' ? VLAN_MAX : VNI_MAX;
    const what = inp.kind === 'vlan' ? 'VLAN ids are 1..4094 (0 and 4095 are reserved by IEEE 802.1Q)' : 'VNIs are 1..16777215';
    const min = inp.min ?? VLAN_MIN;
    const max = inp.max ?? hi;
    if (min < VLAN_MIN || min > hi) throw new ValidationError('ipam.invalid_vlan', `min: ${min} is out of range; ${what}`, { details: { field: 'min' } });
    if (max < VLAN_MIN || max > hi) throw new ValidationError('ipam.invalid_vlan', `max: ${max} is out of range; ${what}`, { details: { field: 'max' } });
    if (max < min) throw new ValidationError('ipam.invalid_vlan', `max: ${max} is below min ${min}`, { details: { field: 'max' } });
    const reserved: Range[] = [];
    inp.reserved.forEach((r, i) => {
      const [a, b] = typeof r === 'number' ? [r, r] : r;
      if (a < VLAN_MIN || b > hi || b < a) throw new ValidationError('ipam.invalid_vlan', `reserved.${i}: ${JSON.stringify(r)} is not a valid id or range; ${what}`, { details: { field: `reserved.${i}` } });
      reserved.push({ start: BigInt(a), end: BigInt(b) });
    });
    const merged = mergeRanges(reserved).map((r) => [Number(r.start), Number(r.end)] as [number, number]);
    const row: IpamVlanPoolTable = { id: newId('vpool'), name: inp.name, scope: inp.scope, kind: inp.kind, min_id: min, max_id: max, reserved: JSON.stringify(merged), cursor_id: min, created_at: this.clock.now() };
    try {
      await this.store.db.insertInto('ipam_vlan_pools').values(row).execute();
    } catch (e) {
      if (isUniqueViolation(e)) throw new ConflictError('ipam.pool_exists', `name: a VLAN pool named ${inp.name} already exists`, { details: { field: 'name' } });
      throw e;
    }
    return toPool(row);
  }

  async getVlanPool(idOrName: string): Promise<VlanPool> {
    return toPool(await this.getPoolRow(this.store.db, idOrName, 'poolId'));
  }

  async listVlanPools(filter: { scope?: string } = {}): Promise<VlanPool[]> {
    let q = this.store.db.selectFrom('ipam_vlan_pools').selectAll();
    if (filter.scope) q = q.where('scope', '=', filter.scope);
    return (await q.orderBy('name').execute()).map(toPool);
  }

  async allocateVlans(input: AllocateVlanInput, trx?: Trx): Promise<VlanAllocation[]> {
    const req = parseInput(AllocateVlanSchema, input, 'ipam');
    if (req.vlan !== undefined && req.count !== 1) throw new ValidationError('ipam.invalid_input', 'count: a requested VLAN allocates exactly one; drop count or vlan', { details: { field: 'count' } });
    if (req.vlan !== undefined && (req.vlan < VLAN_MIN || req.vlan > VNI_MAX)) {
      throw new ValidationError('ipam.invalid_vlan', `vlan: ${req.vlan} is not a valid id; VLAN ids are 1..4094 (0 and 4095 are reserved by IEEE 802.1Q), VNIs 1..16777215`, { details: { field: 'vlan' } });
    }
    if (trx) return unwrap((await this.allocVlansCore(kyselyVlanOps(trx, this.pg), req.poolId, [req]))[0]!);
    if (!this.groupCommit) return unwrap((await this.vlanBatch(req.poolId, [req]))[0]!);
    return this.vlanGc.submit(req.poolId, req);
  }

  async allocateVlan(input: Omit<AllocateVlanInput, 'count'>, trx?: Trx): Promise<VlanAllocation> {
    return (await this.allocateVlans({ ...input, count: 1 }, trx))[0]!;
  }

  /** As `addrBatch`, for VLAN ids and VNIs. */
  private async vlanBatch(poolRef: string, reqs: VlanReq[]): Promise<Outcome<VlanAllocation[]>[]> {
    const h = this.vlanHints.get(poolRef);
    const req = reqs[0]!;
    if (h && reqs.length === 1 && req.count === 1 && req.vlan === undefined && req.key === undefined) {
      const got = await this.vlanFast(h, req);
      if (got) return [{ ok: true, value: [got] }];
      this.vlanHints.delete(poolRef);
    }
    let hint: CursorHint | undefined;
    const outs = await this.vlanTx((ops) => this.allocVlansCore(ops, poolRef, reqs, (x) => (hint = x)));
    if (hint) this.vlanHints.set(poolRef, hint);
    return outs;
  }

  private async vlanFast(h: CursorHint, req: VlanReq): Promise<VlanAllocation | undefined> {
    if (h.cursor > h.last || inRanges(h.reserved, h.cursor)) return undefined;
    const cursor = Number(h.cursor);
    const next = nextUnreserved(h.cursor, h.reserved);
    const row: IpamVlanAllocTable = {
      id: newId('vlan'), pool_id: h.id, vid: cursor, holder: req.holder, reservation_id: req.hold?.reservationId ?? null,
      expires_at: req.hold?.expiresAt ?? null, idem_key: null, created_at: this.clock.now(),
    };
    if (this.store.sqlite) {
      if (this.store.sqlite.inTransaction) return undefined;
      const move = next - h.stored >= CURSOR_LAG ? Number(next) : undefined;
      if (!this.fastOps().claimVlan(row, Number(h.stored), move)) return undefined;
      if (move !== undefined) h.stored = next;
    } else {
      if (h.stored !== h.cursor || !await pgClaimVlan(this.store.pool!, row, cursor, Number(next))) return undefined;
      h.stored = next;
    }
    h.cursor = next;
    await this.store.durable(); // SQLite FULL: the claim is on disk before anyone is told
    return toVlan(row);
  }

  private async allocVlansCore(ops: VlanOps, poolRef: string, reqs: VlanReq[], hint?: (h: CursorHint) => void): Promise<Outcome<VlanAllocation[]>[]> {
    const pool = await ops.lockPool(poolRef);
    if (!pool) {
      const e = new NotFoundError('ipam.pool_not_found', `poolId: VLAN pool ${poolRef} does not exist`, { details: { field: 'poolId', id: poolRef } });
      return reqs.map(() => ({ ok: false, error: e }));
    }
    const reserved = parseJson<[number, number][]>(pool.reserved, []).map(([a, b]) => ({ start: BigInt(a), end: BigInt(b) }));
    const now = this.clock.now();
    const walker = new FreeWalker(BigInt(pool.cursor_id), BigInt(pool.max_id), reserved, async (from, limit) => (await ops.taken(pool.id, Number(from), limit)).map((v) => BigInt(v)));
    const rows: IpamVlanAllocTable[] = [];
    const outcomes: Outcome<VlanAllocation[]>[] = [];
    const keysInBatch = new Map<string, IpamVlanAllocTable[]>();
    const kindName = pool.kind === 'vlan' ? 'VLAN' : 'VNI';
    for (const req of reqs) {
      try {
        if (req.key) {
          const inBatch = keysInBatch.get(req.key);
          if (inBatch) {
            outcomes.push({ ok: true, value: inBatch.map(toVlan) });
            continue;
          }
          const keys = Array.from({ length: req.count }, (_, i) => `${req.key}#${i}`);
          const existing = await ops.byKeys(keys);
          if (existing.length > 0) {
            outcomes.push({ ok: true, value: existing.map(toVlan) });
            continue;
          }
        }
        let values: bigint[] | null = null;
        if (req.vlan !== undefined) {
          const v = BigInt(req.vlan);
          if (pool.kind === 'vlan' && (req.vlan < VLAN_MIN || req.vlan > VLAN_MAX)) throw new ValidationError('ipam.invalid_vlan', `vlan: ${req.vlan} is not a valid VLAN id; VLAN ids are 1..4094 (0 and 4095 are reserved by IEEE 802.1Q)`, { details: { field: 'vlan' } });
          if (req.vlan < pool.min_id || req.vlan > pool.max_id) throw new ValidationError('ipam.vlan_out_of_pool', `vlan: ${req.vlan} is outside pool ${pool.name} (${pool.min_id}..${pool.max_id})`, { details: { field: 'vlan' } });
          let problem: ConflictError | undefined;
          if (reserved.some((r) => r.start <= v && v <= r.end)) problem = new ConflictError('ipam.vlan_reserved', `vlan: ${kindName} ${req.vlan} is reserved in pool ${pool.name}`, { details: { field: 'vlan' } });
          else if (walker.taken.has(v) || await ops.exists(pool.id, req.vlan)) {
            problem = new ConflictError('ipam.vlan_in_use', `vlan: ${kindName} ${req.vlan} is already allocated in pool ${pool.name}`, { details: { field: 'vlan' } });
          }
          if (!problem) {
            walker.claim(v);
            values = [v];
          } else if (!req.fallback) throw problem;
        }
        if (values === null) {
          values = await walker.take(req.count);
          if (values === null) throw new ExhaustedError('ipam.vlan_exhausted', `${kindName} pool ${pool.name} (${pool.scope}) has ${req.count === 1 ? 'no free id left' : `fewer than ${req.count} free ids left`}`, { details: { poolId: pool.id, pool: pool.name, requested: req.count } });
        }
        const mine = values.map((v, i): IpamVlanAllocTable => ({
          id: newId('vlan'), pool_id: pool.id, vid: Number(v), holder: req.holder, reservation_id: req.hold?.reservationId ?? null,
          expires_at: req.hold?.expiresAt ?? null, idem_key: req.key ? `${req.key}#${i}` : null, created_at: now,
        }));
        if (req.key) keysInBatch.set(req.key, mine);
        rows.push(...mine);
        outcomes.push({ ok: true, value: mine.map(toVlan) });
      } catch (e) {
        outcomes.push({ ok: false, error: e });
      }
    }
    await ops.insert(rows);
    if (rows.length > 0) {
      const cursor = walker.settled();
      if (cursor !== BigInt(pool.cursor_id)) await ops.setCursor(pool.id, Number(cursor));
      hint?.({ id: pool.id, cursor, stored: cursor, last: BigInt(pool.max_id), reserved });
    }
    return outcomes;
  }

  async releaseVlan(ref: { id: string; holder?: string } | { poolId: string; vlan: number; holder?: string }): Promise<VlanAllocation> {
    return withTx(this.store, async (trx) => {
      let row: IpamVlanAllocTable | undefined;
      let pool: IpamVlanPoolTable;
      if ('id' in ref) {
        row = await trx.selectFrom('ipam_vlan_allocs').selectAll().where('id', '=', ref.id).executeTakeFirst();
        if (!row) throw new NotFoundError('ipam.vlan_not_allocated', `id: VLAN allocation ${ref.id} does not exist`, { details: { field: 'id' } });
        pool = await this.getPoolRow(trx, row.pool_id, 'poolId', true);
      } else {
        pool = await this.getPoolRow(trx, ref.poolId, 'poolId', true);
        row = await trx.selectFrom('ipam_vlan_allocs').selectAll().where('pool_id', '=', pool.id).where('vid', '=', ref.vlan).executeTakeFirst();
        if (!row) throw new NotFoundError('ipam.vlan_not_allocated', `vlan: ${ref.vlan} is not allocated in pool ${pool.name}`, { details: { field: 'vlan' } });
      }
      if (ref.holder !== undefined && row.holder !== ref.holder) throw new ConflictError('ipam.wrong_holder', `VLAN ${row.vid} is held by ${row.holder}, not ${ref.holder}`, { details: { field: 'holder' } });
      await this.deleteVlanRows(trx, pool, [row]);
      return toVlan(row);
    });
  }

  async listVlans(filter: { poolId?: string; holder?: string; reservationId?: string } = {}): Promise<VlanAllocation[]> {
    let q = this.store.db.selectFrom('ipam_vlan_allocs').selectAll();
    if (filter.poolId) q = q.where('pool_id', '=', filter.poolId);
    if (filter.holder) q = q.where('holder', '=', filter.holder);
    if (filter.reservationId) q = q.where('reservation_id', '=', filter.reservationId);
    return (await q.orderBy('pool_id').orderBy('vid').execute()).map(toVlan);
  }

  private async deleteVlanRows(trx: Trx, pool: IpamVlanPoolTable, rows: IpamVlanAllocTable[]): Promise<void> {
    if (rows.length === 0) return;
    forgetPool(this.vlanHints, pool.id);
    for (let i = 0; i < rows.length; i += 500) await trx.deleteFrom('ipam_vlan_allocs').where('id', 'in', rows.slice(i, i + 500).map((r) => r.id)).execute();
    const min = Math.min(pool.cursor_id, ...rows.map((r) => r.vid));
    if (min !== pool.cursor_id) await trx.updateTable('ipam_vlan_pools').set({ cursor_id: min }).where('id', '=', pool.id).execute();
  }

  // ------------------------------------------------------------ utilization

  async prefixUtilization(id: string): Promise<Utilization> {
    const db = this.store.db;
    const p = await this.getPrefixRow(db, id);
    const net = fromHex(p.network_hex);
    const last = fromHex(p.last_hex);
    const size = last - net + 1n;
    const reserved = sizeOfRanges(storedRanges(p.reserved), net, last);
    let allocated = 0n;
    if (p.kind === 'container') {
      const kids = await db.selectFrom('ipam_prefixes').select(['network_hex', 'last_hex']).where('parent_id', '=', id).execute();
      for (const k of kids) allocated += fromHex(k.last_hex) - fromHex(k.network_hex) + 1n;
    } else {
      const r = await db.selectFrom('ipam_addresses').select((eb) => eb.fn.countAll<number>().as('n')).where('prefix_id', '=', id).executeTakeFirstOrThrow();
      allocated = BigInt(r.n);
    }
    return util(id, size, reserved, allocated);
  }

  async vlanPoolUtilization(idOrName: string): Promise<Utilization> {
    const pool = await this.getPoolRow(this.store.db, idOrName, 'poolId');
    const size = BigInt(pool.max_id - pool.min_id + 1);
    const reserved = sizeOfRanges(parseJson<[number, number][]>(pool.reserved, []).map(([a, b]) => ({ start: BigInt(a), end: BigInt(b) })), BigInt(pool.min_id), BigInt(pool.max_id));
    const r = await this.store.db.selectFrom('ipam_vlan_allocs').select((eb) => eb.fn.countAll<number>().as('n')).where('pool_id', '=', pool.id).executeTakeFirstOrThrow();
    return util(pool.id, size, reserved, BigInt(r.n));
  }

  /** Free addresses in a network/floating prefix (for feasibility; no allocation). */
  async freeAddresses(prefixId: string, trx: Trx = this.store.db): Promise<bigint> {
    const p = await this.getPrefixRow(trx, prefixId, 'prefixId');
    if (p.kind === 'container') return 0n;
    const u = await this.prefixUtilization(prefixId);
    return BigInt(u.free);
  }

  /** How many child prefixes of `length` can still be carved (counting up to `limit`), without allocating. */
  async carvable(parentId: string, length: number, limit = 1, trx: Trx = this.store.db): Promise<number> {
    const parent = await this.getPrefixRow(trx, parentId, 'parentId');
    if (parent.kind !== 'container' || length <= parent.length || length > bitsOf(parent.family as Family)) return 0;
    const taken: Range[] = storedRanges(parent.reserved);
    const kids = await trx.selectFrom('ipam_prefixes').select(['network_hex', 'last_hex']).where('parent_id', '=', parentId).execute();
    for (const k of kids) taken.push({ start: fromHex(k.network_hex), end: fromHex(k.last_hex) });
    const merged = mergeRanges(taken);
    const size = 1n << BigInt(bitsOf(parent.family as Family) - length);
    let c = fromHex(parent.network_hex);
    const last = fromHex(parent.last_hex);
    let n = 0;
    let i = 0;
    while (n < limit) {
      c = alignUp(c, size);
      if (c + size - 1n > last) break;
      while (i < merged.length && merged[i]!.end < c) i++;
      if (i < merged.length && merged[i]!.start <= c + size - 1n) {
        c = merged[i]!.end + 1n;
        continue;
      }
      n++;
      c += size;
    }
    return n;
  }

  async freeVlans(poolId: string): Promise<number> {
    return Number((await this.vlanPoolUtilization(poolId)).free);
  }

  // ------------------------------------------------------------------- holds

  /** Makes every allocation of a reservation permanent. Returns how many rows it touched. */
  async commitHold(trx: Trx, reservationId: string): Promise<number> {
    let n = 0;
    for (const t of ['ipam_addresses', 'ipam_vlan_allocs', 'ipam_prefixes'] as const) {
      const r = await trx.updateTable(t).set({ expires_at: null }).where('reservation_id', '=', reservationId).executeTakeFirst();
      n += Number(r.numUpdatedRows);
    }
    return n;
  }

  /** Releases every allocation of a reservation (abort, expiry). */
  async releaseHold(trx: Trx, reservationId: string): Promise<number> {
    return this.releaseWhere(trx, { reservationId });
  }

  /** Releases every allocation of a holder (e.g. when a stack is destroyed). */
  async releaseByHolder(holder: string): Promise<number> {
    return withTx(this.store, (trx) => this.releaseWhere(trx, { holder }));
  }

  /** Releases allocations whose hold expired (a reservation never committed, a crash before commit). */
  async sweepExpired(now = this.clock.now()): Promise<number> {
    return withTx(this.store, (trx) => this.releaseWhere(trx, { expiredBefore: now }));
  }

  private async releaseWhere(trx: Trx, w: { reservationId?: string; holder?: string; expiredBefore?: number }): Promise<number> {
    const filt = <Q>(q0: Q): Q => {
      let q = q0 as any;
      if (w.reservationId !== undefined) q = q.where('reservation_id', '=', w.reservationId);
      if (w.holder !== undefined) q = q.where('holder', '=', w.holder);
      if (w.expiredBefore !== undefined) q = q.where('expires_at', 'is not', null).where('expires_at', '<=', w.expiredBefore);
      return q as Q;
    };
    let n = 0;
    // prefixes first (cascade takes their addresses), then lone addresses, then VLANs; locks taken in id order
    const prefixes = await filt(trx.selectFrom('ipam_prefixes').selectAll()).orderBy('id').execute();
    n += await this.deleteCascade(trx, prefixes);
    const addrs = await filt(trx.selectFrom('ipam_addresses').selectAll()).orderBy('prefix_id').execute();
    const byPrefix = groupBy(addrs, (a) => a.prefix_id);
    for (const [pid, rows] of [...byPrefix].sort(([a], [b]) => (a < b ? -1 : 1))) {
      const prefix = await this.lockPrefix(trx, pid);
      await this.deleteAddressRows(trx, prefix, rows);
      n += rows.length;
    }
    const vlans = await filt(trx.selectFrom('ipam_vlan_allocs').selectAll()).orderBy('pool_id').execute();
    for (const [pid, rows] of [...groupBy(vlans, (v) => v.pool_id)].sort(([a], [b]) => (a < b ? -1 : 1))) {
      const pool = await this.getPoolRow(trx, pid, 'poolId', true);
      await this.deleteVlanRows(trx, pool, rows);
      n += rows.length;
    }
    return n;
  }

  /** Deletes prefixes with all their descendants and addresses; fixes the parents' cursors. */
  private async deleteCascade(trx: Trx, roots: IpamPrefixTable[]): Promise<number> {
    let n = 0;
    const seen = new Set<string>();
    for (const root of roots) {
      if (seen.has(root.id)) continue;
      if (root.parent_id) await this.lockPrefix(trx, root.parent_id);
      const all: IpamPrefixTable[] = [root];
      for (let i = 0; i < all.length; i++) {
        const kids = await trx.selectFrom('ipam_prefixes').selectAll().where('parent_id', '=', all[i]!.id).execute();
        all.push(...kids);
      }
      for (const p of all) seen.add(p.id);
      const ids = all.map((p) => p.id);
      for (const id of ids) forgetPool(this.addrHints, id);
      for (let i = 0; i < ids.length; i += 500) await trx.deleteFrom('ipam_addresses').where('prefix_id', 'in', ids.slice(i, i + 500)).execute();
      await this.deletePrefixRows(trx, all.reverse());
      n += all.length;
    }
    return n;
  }

  private async deletePrefixRows(trx: Trx, deepestFirst: IpamPrefixTable[]): Promise<void> {
    for (const p of deepestFirst) {
      await trx.deleteFrom('ipam_prefixes').where('id', '=', p.id).execute();
      if (p.parent_id) {
        // the parent's children changed: bump its child_seq; its cursor comes back to the freed block if that lies below it
        await trx.updateTable('ipam_prefixes').set((eb) => ({
          child_seq: eb('child_seq', '+', 1),
          cursor_hex: eb.case().when('cursor_hex', '>', p.network_hex).then(p.network_hex).else(eb.ref('cursor_hex')).end(),
        })).where('id', '=', p.parent_id).execute();
      }
    }
  }

  // ---------------------------------------------------------------- helpers

  private async lockPrefix(trx: Trx, id: string, field = 'id'): Promise<IpamPrefixTable> {
    let q = trx.selectFrom('ipam_prefixes').selectAll().where('id', '=', id);
    if (this.pg) q = q.forUpdate();
    const row = await q.executeTakeFirst();
    if (!row) throw new NotFoundError('ipam.prefix_not_found', `${field}: prefix ${id} does not exist`, { details: { field, id } });
    return row;
  }

  private async getPrefixRow(trx: Trx, id: string, field = 'id'): Promise<IpamPrefixTable> {
    const row = await trx.selectFrom('ipam_prefixes').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw new NotFoundError('ipam.prefix_not_found', `${field}: prefix ${id} does not exist`, { details: { field, id } });
    return row;
  }

  private async getPoolRow(trx: Trx, idOrName: string, field: string, lock = false): Promise<IpamVlanPoolTable> {
    let q = trx.selectFrom('ipam_vlan_pools').selectAll().where((eb) => eb.or([eb('id', '=', idOrName), eb('name', '=', idOrName)]));
    if (lock && this.pg) q = q.forUpdate();
    const row = await q.executeTakeFirst();
    if (!row) throw new NotFoundError('ipam.pool_not_found', `${field}: VLAN pool ${idOrName} does not exist`, { details: { field, id: idOrName } });
    return row;
  }
}

/** Children of a container read per query while looking for a free block. */
const CHILD_CHUNK = 256;

/** The cursor moved on from `c` past reserved ranges and children (sorted) that start at it. */
function advanceOver(c: bigint, last: bigint, reserved: Range[], children: Range[]): bigint {
  let i = 0;
  for (;;) {
    if (c > last) return c;
    const r = reserved.find((x) => x.start <= c && x.end >= c);
    if (r) {
      c = r.end + 1n;
      continue;
    }
    while (i < children.length && children[i]!.end < c) i++;
    if (i < children.length && children[i]!.start <= c) {
      c = children[i]!.end + 1n;
      continue;
    }
    return c;
  }
}

/** The row of a child prefix carved at `start` for `req`, and its reserved ranges (sorted) for `toPrefix`. */
function childRow(parent: { id: string; scope: string; family: Family }, req: PrefixReq, start: bigint, now: number): { row: IpamPrefixTable; reserved: StoredRanges } {
  const family = parent.family;
  const size = 1n << BigInt(bitsOf(family) - req.length);
  const last = start + size - 1n;
  const reserved = defaultReserved(req.kind, family, start, req.length);
  let gateway: string | null = null;
  if (req.gateway === 'first' && req.kind !== 'container') {
    const g = size > 2n ? start + 1n : start;
    gateway = formatAddress(family, g);
    // the defaults are sorted: keep them so with the gateway in its place
    let at = 0;
    while (at < reserved.length && reserved[at]!.start <= g) at++;
    reserved.splice(at, 0, { start: g, end: g, reason: 'gateway' });
  }
  const row: IpamPrefixTable = {
    id: newId('pfx'), scope: parent.scope, family, cidr: formatPrefix(family, start, req.length), network_hex: toHex(start), last_hex: toHex(last),
    length: req.length, parent_id: parent.id, kind: req.kind, gateway, reserved: encodeRanges(reserved),
    cursor_hex: toHex(start), holder: req.holder, reservation_id: req.hold?.reservationId ?? null, expires_at: req.hold?.expiresAt ?? null,
    idem_key: req.key ?? null, description: req.description, labels: '{}', created_at: now, child_seq: 0,
  };
  return { row, reserved };
}

interface ChildChunkCache {
  first?: { network_hex: string; last_hex: string }[];
  /** The child that starts below the cursor and covers it, if any. */
  covering?: { network_hex: string; last_hex: string } | null;
}

function unwrap<T>(o: Outcome<T>): T {
  if (o.ok) return o.value;
  throw o.error;
}

function groupBy<T>(items: T[], key: (t: T) => string): Map<string, T[]> {
  const m = new Map<string, T[]>();
  for (const it of items) {
    const k = key(it);
    const l = m.get(k);
    if (l) l.push(it);
    else m.set(k, [it]);
  }
  return m;
}

/** Stored reserved ranges, merged and sorted for the walkers. */
function storedRanges(json: string): Range[] {
  return mergeRanges(parseJson<StoredRange[]>(json, []).map((r) => ({ start: fromHex(r.start), end: fromHex(r.end) })));
}

type StoredRanges = (Range & { reason: string })[];

function sortRanges(ranges: StoredRanges): StoredRanges {
  return ranges.length < 2 ? ranges : [...ranges].sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
}

/**
 * Ranges sorted by start, as JSON; written out by hand (one string, no intermediate
 * objects: this runs once per carve). The hex carries no leading zeros — the
 * ranges are only ever decoded (`fromHex` reads both forms), never compared
 * as text — which keeps a carved /30's row half as wide.
 */
function encodeRanges(sorted: StoredRanges): string {
  let out = '[';
  for (let i = 0; i < sorted.length; i++) {
    const r = sorted[i]!;
    out += `${i === 0 ? '' : ','}{"start":"${r.start.toString(16)}","end":"${r.end.toString(16)}","reason":${JSON.stringify(r.reason)}}`;
  }
  return out + ']';
}

/**
 * Never handed out: the network and broadcast addresses of an IPv4 network
 * up to /30 (a /31 or /32 has none, RFC 3021), and the subnet-router anycast
 * address (the first) of an IPv6 network. Sorted by start.
 */
function defaultReserved(kind: PrefixKind, family: Family, network: bigint, length: number): (Range & { reason: string })[] {
  if (kind === 'container') return [];
  const last = network + (1n << BigInt(bitsOf(family) - length)) - 1n;
  if (family === 4 && length <= 30) return [{ start: network, end: network, reason: 'network' }, { start: last, end: last, reason: 'broadcast' }];
  if (family === 6 && length <= 126) return [{ start: network, end: network, reason: 'subnet-router anycast' }];
  return [];
}

function util(id: string, size: bigint, reserved: bigint, allocated: bigint): Utilization {
  const usable = size - reserved;
  const free = usable - allocated;
  const percent = usable > 0n ? Number((allocated * 1_000_000n) / usable) / 10_000 : 0;
  return { id, size: size.toString(), reserved: reserved.toString(), allocated: allocated.toString(), free: (free < 0n ? 0n : free).toString(), percent };
}

/** `reserved`: the row's reserved ranges when the caller has them decoded already (a carve), else read from the row. */
export function toPrefix(r: IpamPrefixTable, reserved?: StoredRanges): Prefix {
  const family = r.family as Family;
  return {
    id: r.id, scope: r.scope, family, cidr: r.cidr, length: r.length, parentId: r.parent_id, kind: r.kind as PrefixKind, gateway: r.gateway,
    reserved: reserved
      ? reserved.map((x) => ({ start: formatAddress(family, x.start), end: formatAddress(family, x.end), reason: x.reason }))
      : parseJson<StoredRange[]>(r.reserved, []).map((x) => ({ start: formatAddress(family, fromHex(x.start)), end: formatAddress(family, fromHex(x.end)), reason: x.reason })),
    holder: r.holder, reservationId: r.reservation_id, expiresAt: r.expires_at === null ? null : Number(r.expires_at),
    description: r.description, labels: r.labels === '{}' ? {} : parseJson(r.labels, {}), createdAt: Number(r.created_at),
  };
}

export function toAddress(r: IpamAddressTable, length: number): Address {
  return {
    id: r.id, prefixId: r.prefix_id, family: r.family as Family, address: r.address, cidr: `${r.address}/${length}`, holder: r.holder, target: r.target,
    reservationId: r.reservation_id, expiresAt: r.expires_at === null ? null : Number(r.expires_at), createdAt: Number(r.created_at),
  };
}

function toPool(r: IpamVlanPoolTable): VlanPool {
  return { id: r.id, name: r.name, scope: r.scope, kind: r.kind as 'vlan' | 'vni', min: r.min_id, max: r.max_id, reserved: parseJson(r.reserved, []), createdAt: Number(r.created_at) };
}

function toVlan(r: IpamVlanAllocTable): VlanAllocation {
  return { id: r.id, poolId: r.pool_id, vlan: r.vid, holder: r.holder, reservationId: r.reservation_id, expiresAt: r.expires_at === null ? null : Number(r.expires_at), createdAt: Number(r.created_at) };
}

export type IpamTrx = Transaction<Database>;

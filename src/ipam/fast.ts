import type BetterSqlite3 from 'better-sqlite3';
import type pg from 'pg';
import { isRetryableDbError } from '../inventory/tx.js';
import { isUniqueViolation } from '../store/errors.js';
import type { IpamAddressTable, IpamPrefixTable, IpamVlanAllocTable } from './tables.js';
import type { Range } from './walk.js';

/**
 * The one-statement fast path for "the next free address / VLAN".
 *
 * Every allocator keeps the invariant "every value below the pool's cursor
 * is taken or reserved" (walk.ts), and the transactional path stores the
 * cursor exactly where its walk stopped. So when the stored cursor still
 * holds the value this process last left there, the value AT the cursor is
 * the lowest candidate, and allocating it is a single conditional write:
 *
 *   UPDATE pool SET cursor = <next>   WHERE id = ? AND cursor = <cursor>
 *   INSERT the row for <cursor>       (only if that update matched)
 *
 * On PostgreSQL both are one statement (a data-modifying CTE) in autocommit:
 * one round trip, one commit. On SQLite they are two prepared statements in
 * one BEGIN IMMEDIATE transaction, run synchronously (nothing interleaves).
 *
 * Nothing here is trusted: the cursor condition is re-checked by the
 * database on the locked row (another allocator or a release that moved the
 * cursor makes it match nothing), and the unique index (prefix, address) /
 * (pool, vid) refuses a value someone took without moving the cursor. Either
 * way the fast path reports a miss and the caller runs the full transaction,
 * which re-reads everything. `<next>` skips only reserved ranges, which never
 * change after a pool is created; values above the cursor that are already
 * taken make a later fast path miss once, never hand out a duplicate.
 */
export interface CursorHint {
  /** The pool's id (prefix id or VLAN pool id). */
  id: string;
  /** The lowest free value, as far as this process knows. */
  cursor: bigint;
  /**
   * What this process believes is stored as the pool's cursor. On PostgreSQL
   * always `cursor` (several processes: the database checks everything). On
   * SQLite — one process, whose every release forgets the hints of its pool
   * (`forgetPool`) — the stored cursor may lag up to CURSOR_LAG behind, so
   * most claims are ONE autocommit INSERT (checked against this stored value
   * and the unique index) without rewriting the pool's row.
   */
  stored: bigint;
  /** Highest value of the pool. */
  last: bigint;
  /** Reserved ranges, merged and sorted (immutable per pool). */
  reserved: Range[];
}

/** The smallest value above `v` that is not reserved. */
export function nextUnreserved(v: bigint, reserved: Range[]): bigint {
  let x = v + 1n;
  for (const r of reserved) {
    if (r.end < x) continue;
    if (r.start > x) break;
    x = r.end + 1n;
  }
  return x;
}

const ADDR_COLS = ['id', 'prefix_id', 'family', 'address_hex', 'address', 'holder', 'target', 'reservation_id', 'expires_at', 'idem_key', 'created_at'] as const;
const VLAN_COLS = ['id', 'pool_id', 'vid', 'holder', 'reservation_id', 'expires_at', 'idem_key', 'created_at'] as const;

/**
 * Child prefixes: what this process knows about a container as of its
 * `child_seq` — every change to a container's children bumps it under the
 * container's row lock (migration 0302) — so while the stored value is still
 * `seq`, `children` is exactly the set of children at or above the cursor,
 * and a carve computed from it is the one the full transaction would make.
 * The carve is then one conditional write: bump child_seq and move the
 * cursor WHERE child_seq = seq, and insert the child only if that matched.
 */
export interface ContainerHint {
  id: string;
  scope: string;
  family: 4 | 6;
  length: number;
  kind: string;
  last: bigint;
  reserved: Range[];
  seq: number;
  cursor: bigint;
  /** SQLite: carves since the stored cursor was last rewritten (see `SqliteFast.carve`). */
  lag: number;
  /** Children reaching to or above the cursor, sorted; complete. */
  children: Range[];
}

const PREFIX_COLS = ['id', 'scope', 'family', 'cidr', 'network_hex', 'last_hex', 'length', 'parent_id', 'kind', 'gateway', 'reserved', 'cursor_hex', 'holder',
  'reservation_id', 'expires_at', 'idem_key', 'description', 'labels', 'created_at', 'child_seq'] as const;

/** On SQLite the stored cursor is rewritten once the hint has moved this far past it. */
export const CURSOR_LAG = 32n;

/** The hint maps of one store, shared by every Ipam on it (on SQLite, the process's only one). */
export interface HintMaps {
  addr: Map<string, CursorHint & { family: 4 | 6; length: number }>;
  vlan: Map<string, CursorHint>;
  container: Map<string, ContainerHint>;
}

const HINTS = new WeakMap<object, HintMaps>();

export function hintsOf(store: object): HintMaps {
  let h = HINTS.get(store);
  if (!h) HINTS.set(store, (h = { addr: new Map(), vlan: new Map(), container: new Map() }));
  return h;
}

/** Forgets every hint for a pool (a value in it was released: the lowest free value may now lie below the hint). */
export function forgetPool(hints: Map<string, CursorHint>, id: string): void {
  for (const [k, h] of hints) if (h.id === id) hints.delete(k);
}

export interface SqliteFast {
  /**
   * Inserts `row` if the pool's stored cursor is still `storedHex`; with
   * `moveTo`, in one transaction with rewriting the stored cursor. False on
   * a miss (nothing written).
   */
  claimAddress(row: IpamAddressTable, storedHex: string, moveTo?: string): boolean;
  claimVlan(row: IpamVlanAllocTable, stored: number, moveTo?: number): boolean;
  /**
   * Inserts the child `row` if the container's child_seq is still `seq`
   * (one autocommit INSERT); with `moveTo`, in one transaction with
   * rewriting the container's cursor. On SQLite the carve itself does not
   * bump child_seq: the hint it was computed from is the one process's own
   * (shared by its Ipam instances), and every other change to the children
   * — the full transaction, creating, deleting, releasing — still bumps it.
   */
  carve(row: IpamPrefixTable, seq: number, moveTo?: string): boolean;
}

/** Prepared statements on the raw SQLite handle. Callers make sure no transaction is open on it (`db.inTransaction`). */
export function sqliteFast(db: BetterSqlite3.Database): SqliteFast {
  const begin = db.prepare('BEGIN IMMEDIATE');
  const commit = db.prepare('COMMIT');
  const rollback = db.prepare('ROLLBACK');
  const insAddr = db.prepare(`insert into ipam_addresses (${ADDR_COLS.join(', ')}) select ${ADDR_COLS.map(() => '?').join(', ')}
    where exists (select 1 from ipam_prefixes where id = ? and cursor_hex = ?)`);
  const setAddrCursor = db.prepare('update ipam_prefixes set cursor_hex = ? where id = ?');
  const insVlan = db.prepare(`insert into ipam_vlan_allocs (${VLAN_COLS.join(', ')}) select ${VLAN_COLS.map(() => '?').join(', ')}
    where exists (select 1 from ipam_vlan_pools where id = ? and cursor_id = ?)`);
  const setVlanCursor = db.prepare('update ipam_vlan_pools set cursor_id = ? where id = ?');
  const insPrefix = db.prepare(`insert into ipam_prefixes (${PREFIX_COLS.join(', ')}) select ${PREFIX_COLS.map(() => '?').join(', ')}
    where exists (select 1 from ipam_prefixes where id = ? and child_seq = ?)`);
  const moveContainer = db.prepare('update ipam_prefixes set cursor_hex = ? where id = ?');
  // statements and their arguments, no closures: this runs once per allocation
  const single = (ins: BetterSqlite3.Statement, args: unknown[]): boolean => {
    try {
      return ins.run(...args).changes === 1;
    } catch (e) {
      if (isUniqueViolation(e)) return false;
      throw e;
    }
  };
  const claim = (ins: BetterSqlite3.Statement, args: unknown[], move: BetterSqlite3.Statement, moveArgs: unknown[]): boolean => {
    begin.run();
    try {
      if (ins.run(...args).changes !== 1) {
        rollback.run();
        return false;
      }
      move.run(...moveArgs);
      commit.run();
      return true;
    } catch (e) {
      if (db.inTransaction) rollback.run();
      if (isUniqueViolation(e)) return false;
      throw e;
    }
  };
  return {
    claimAddress(row, storedHex, moveTo) {
      const args = [row.id, row.prefix_id, row.family, row.address_hex, row.address, row.holder, row.target, row.reservation_id, row.expires_at, row.idem_key, row.created_at, row.prefix_id, storedHex];
      return moveTo === undefined ? single(insAddr, args) : claim(insAddr, args, setAddrCursor, [moveTo, row.prefix_id]);
    },
    claimVlan(row, stored, moveTo) {
      const args = [row.id, row.pool_id, row.vid, row.holder, row.reservation_id, row.expires_at, row.idem_key, row.created_at, row.pool_id, stored];
      return moveTo === undefined ? single(insVlan, args) : claim(insVlan, args, setVlanCursor, [moveTo, row.pool_id]);
    },
    carve(row, seq, moveTo) {
      const args = [...PREFIX_COLS.map((c) => row[c]), row.parent_id, seq];
      return moveTo === undefined ? single(insPrefix, args) : claim(insPrefix, args, moveContainer, [moveTo, row.parent_id]);
    },
  };
}

const PG_ADDR = `with c as (update ipam_prefixes set cursor_hex = $1 where id = $2 and cursor_hex = $3 returning id)
insert into ipam_addresses (${ADDR_COLS.join(', ')})
select $4, c.id, $5::int, $3, $6, $7, null, $8::text, $9::bigint, null, $10::bigint from c`;
const PG_VLAN = `with c as (update ipam_vlan_pools set cursor_id = $1 where id = $2 and cursor_id = $3 returning id)
insert into ipam_vlan_allocs (${VLAN_COLS.join(', ')})
select $4, c.id, $3::int, $5, $6::text, $7::bigint, null, $8::bigint from c`;

const PG_CARVE = `with u as (update ipam_prefixes set cursor_hex = $1, child_seq = child_seq + 1 where id = $2 and child_seq = $3 returning id)
insert into ipam_prefixes (${PREFIX_COLS.join(', ')})
select $4, $5, $6::int, $7, $8, $9, $10::int, u.id, $11, $12::text, $13, $14, $15::text, $16::text, $17::bigint, null, $18, $19, $20::bigint, 0 from u`;

export function pgCarve(pool: pg.Pool, row: IpamPrefixTable, seq: number, cursorHex: string): Promise<boolean> {
  return pgClaim(pool, 'ipam_prefix_fast', PG_CARVE, [cursorHex, row.parent_id, seq, row.id, row.scope, row.family, row.cidr, row.network_hex, row.last_hex, row.length,
    row.kind, row.gateway, row.reserved, row.cursor_hex, row.holder, row.reservation_id, row.expires_at, row.description, row.labels, row.created_at]);
}

/** One statement in autocommit on any pooled connection: one round trip. A lost race is a miss, never an error. */
async function pgClaim(pool: pg.Pool, name: string, text: string, values: unknown[]): Promise<boolean> {
  try {
    const r = await pool.query({ name, text, values });
    return r.rowCount === 1;
  } catch (e) {
    if (isRetryableDbError(e)) return false;
    throw e;
  }
}

export function pgClaimAddress(pool: pg.Pool, row: IpamAddressTable, cursorHex: string, nextHex: string): Promise<boolean> {
  return pgClaim(pool, 'ipam_addr_fast', PG_ADDR, [nextHex, row.prefix_id, cursorHex, row.id, row.family, row.address, row.holder, row.reservation_id, row.expires_at, row.created_at]);
}

export function pgClaimVlan(pool: pg.Pool, row: IpamVlanAllocTable, cursor: number, next: number): Promise<boolean> {
  return pgClaim(pool, 'ipam_vlan_fast', PG_VLAN, [next, row.pool_id, cursor, row.id, row.holder, row.reservation_id, row.expires_at, row.created_at]);
}

import type BetterSqlite3 from 'better-sqlite3';
import type pg from 'pg';
import { isRetryableDbError } from './tx.js';
import type { InvServerEventTable, InvServerTable } from './tables.js';

/**
 * The fast path for a lone request for one server (no labels, no preferred
 * servers, no idempotency key): the lowest available server of the type in
 * the datacenter, taken with one conditional update.
 *
 * - PostgreSQL: ONE statement in autocommit (one round trip, one commit):
 *   pick, update it to allocated only while it is still available, return
 *   the row. While other claims of this process are in flight the pick
 *   takes `FOR UPDATE SKIP LOCKED` (concurrent requesters never wait on or
 *   take each other's pick); a process's only claim in flight picks without
 *   it (see `pgClaimServer`).
 * - SQLite: the same statements prepared once and run synchronously in one
 *   BEGIN IMMEDIATE transaction (SQLite has one writer; nothing interleaves).
 *
 * The claim writes no row in inv_server_events: the transition is on the
 * server's own row (state, reason, time), and `deferredEvent` turns it into
 * its history event — shown by `serverHistory`, written down by the
 * server's next transition. Three b-trees fewer per claim on SQLite
 * (one-requester rate 0.47 -> 0.52-0.54 of raw), one insert and its index
 * on PostgreSQL.
 *
 * No pick is an answer only the full transaction can explain (unknown type
 * or datacenter, exhausted, lost race): the caller then runs it.
 */
export interface ServerClaim {
  type: string;
  /** Pick above this id ('' for the lowest): the last id this process took, see `pickHintsOf`. */
  after: string;
  datacenter: string;
  holder: string;
  reservationId: string | null;
  expiresAt: number | null;
  now: number;
}

/**
 * What a claim reads back: the columns it did not just write (the rest —
 * state, reason, times, holder, hold, type, datacenter — are the claim's
 * own values, see `claimedRow`), and whether the server has BMC credentials
 * instead of the sealed credentials themselves.
 */
export type ClaimedServer = Pick<InvServerTable, 'id' | 'serial' | 'rack_id' | 'position' | 'labels' | 'bmc_address' | 'nics' | 'failure_count' | 'failure_reasons' | 'created_at'> & { has_bmc: number | boolean };

const COLS = ['id', 'serial', 'rack_id', 'position', 'labels', 'bmc_address', 'nics', 'failure_count', 'failure_reasons', 'created_at'];
const returning = (t: string) => `${COLS.map((c) => t + c).join(', ')}, ${t}bmc_credentials is not null as has_bmc`;

/** The whole row after a claim: what it read back plus what it wrote (an available server has no idempotency key: every way back to `available` clears it). */
export function claimedRow(c: ServerClaim, r: ClaimedServer): InvServerTable {
  return {
    id: r.id, serial: r.serial, type_id: c.type, datacenter_id: c.datacenter, rack_id: r.rack_id, position: r.position, state: 'allocated',
    state_reason: `allocated to ${c.holder}`, state_changed_at: c.now, labels: r.labels, bmc_address: r.bmc_address, bmc_credentials: r.has_bmc ? '' : null,
    nics: r.nics, failure_count: r.failure_count, failure_reasons: r.failure_reasons, holder: c.holder, reservation_id: c.reservationId,
    expires_at: c.expiresAt, idem_key: null, allocated_at: c.now, created_at: r.created_at, updated_at: c.now,
  };
}

export interface SqliteServerFast {
  claim(c: ServerClaim): ClaimedServer | undefined;
}

// An available server holds no reservation and no expiry (every way back to
// `available` clears them), so a claim without a hold leaves those columns —
// and their index entries — untouched: fewer pages written per commit.
const SET = `state = 'allocated', state_reason = ?, state_changed_at = ?, updated_at = ?, holder = ?, allocated_at = ?`;
const SET_HOLD = `${SET}, reservation_id = ?, expires_at = ?`;
// The lowest available id of the type in the datacenter: the first entry of
// inv_servers_pick (type_id, datacenter_id, state, id) at that prefix. Written
// without ORDER BY, with the index named: SQLite re-plans a parameterized
// ORDER BY … LIMIT on every run (5-10x the cost of the seek), while a forward
// scan of the named index returns ids in order. The model test in
// inventory.test.ts checks the lowest-first answer.
const PICK_ID = `select id from inv_servers indexed by inv_servers_pick where type_id = ? and datacenter_id = ? and state = 'available' and id > ? limit 1`;

/**
 * Where this process's next claim of a type in a datacenter starts: just
 * above the last server it took. Every server below that id was taken when
 * this process last looked; anything that could have put one back (a
 * transition to `available`, a registration) calls `forget` in this
 * process, so here the pick stays "lowest available first". Another
 * process's release is seen when this process next misses and runs the
 * full transaction (which starts from the lowest again); until then it
 * takes the next server above its hint — never a taken one, the update is
 * still conditional on the state.
 *
 * Why: on PostgreSQL an allocated server leaves a dead entry at the front of
 * the available range of inv_servers_pick until vacuum, so a pick from the
 * lowest id walks every server allocated since; from the hint it is one
 * index descent (in an experiment the one-requester rate fell from 0.51 to
 * 0.39 of raw within three 2-s slices; from the hint it holds flat).
 */
export class PickHints {
  readonly last = new Map<string, string>();
  /** Bumped by every `forget`: a claim that started before one does not leave its hint. */
  gen = 0;
  /** Fast claims of this process in flight (PostgreSQL: the only one takes no row lock, see `pgClaimServer`). */
  inflight = 0;
  forget(): void {
    this.last.clear();
    this.gen++;
  }
}

const HINTS = new WeakMap<object, PickHints>();

/** The hints of one store, shared by every Inventory on it in this process. */
export function pickHintsOf(store: object): PickHints {
  let h = HINTS.get(store);
  if (!h) HINTS.set(store, (h = new PickHints()));
  return h;
}

/** Callers make sure no transaction is open on the handle (`db.inTransaction`). */
export function sqliteServerFast(db: BetterSqlite3.Database): SqliteServerFast {
  const begin = db.prepare('BEGIN IMMEDIATE');
  const commit = db.prepare('COMMIT');
  const rollback = db.prepare('ROLLBACK');
  // the pick is its own statement: as a subquery of the UPDATE the one-requester rate fell to 0.39 of raw (from 0.52-0.54) in bench:alloc
  const pick = db.prepare(PICK_ID).pluck();
  const take = db.prepare(`update inv_servers set ${SET} where id = ? and state = 'available' returning ${returning('')}`);
  const takeHold = db.prepare(`update inv_servers set ${SET_HOLD} where id = ? and state = 'available' returning ${returning('')}`);
  return {
    claim(c) {
      const reason = `allocated to ${c.holder}`;
      begin.run();
      try {
        const id = pick.get(c.type, c.datacenter, c.after) as string | undefined;
        const row = (id === undefined ? undefined : c.reservationId === null && c.expiresAt === null
          ? take.get(reason, c.now, c.now, c.holder, c.now, id)
          : takeHold.get(reason, c.now, c.now, c.holder, c.now, c.reservationId, c.expiresAt, id)) as ClaimedServer | undefined;
        if (row) commit.run();
        else rollback.run();
        return row;
      } catch (e) {
        if (db.inTransaction) rollback.run();
        throw e;
      }
    },
  };
}

const pgClaim = (lock: string) => `with pick as (
  select id from inv_servers where type_id = $1 and datacenter_id = $2 and state = 'available' and id > $8 order by id limit 1${lock}
)
update inv_servers s set state = 'allocated', state_reason = $3, state_changed_at = $4, updated_at = $4, holder = $5, allocated_at = $4,
  reservation_id = $6, expires_at = $7
from pick where s.id = pick.id and s.state = 'available'
returning ${returning('s.')}`;
const PG_CLAIM_LOCKED = pgClaim(' for update skip locked');
const PG_CLAIM_LONE = pgClaim('');

/**
 * One statement on any pooled connection; undefined when nothing was taken
 * (the full transaction explains why).
 *
 * The process's only claim in flight (`hints.inflight`) takes no row lock.
 * The lock only keeps concurrent requesters from waiting on each other's
 * pick; it costs a WAL record and a second write of the tuple per claim. Safety never rested on it: the update is conditional on the state,
 * and under READ COMMITTED an update that meets a row another transaction
 * is changing waits for it and re-checks the condition on the committed row
 * (EvalPlanQual), so a server taken in between is a miss. A lone miss tries
 * once more with the locked pick, which skips rows in flight elsewhere.
 */
export async function pgClaimServer(pool: pg.Pool, c: ServerClaim, hints: PickHints): Promise<ClaimedServer | undefined> {
  const values = [c.type, c.datacenter, `allocated to ${c.holder}`, c.now, c.holder, c.reservationId, c.expiresAt, c.after];
  const lone = hints.inflight++ === 0;
  try {
    if (lone) {
      const r = await pool.query<ClaimedServer>({ name: 'inv_server_lone', text: PG_CLAIM_LONE, values });
      if (r.rows[0]) return r.rows[0];
    }
    return (await pool.query<ClaimedServer>({ name: 'inv_server_fast', text: PG_CLAIM_LOCKED, values })).rows[0];
  } catch (e) {
    if (isRetryableDbError(e)) return undefined;
    throw e;
  } finally {
    hints.inflight--;
  }
}

/**
 * The event of a transition recorded only on the server's row (a fast
 * claim), if the newest event written down (`last`) does not already end in
 * the row's state. Its id sorts right after `last` (and before any event
 * written after it) and is the same whenever it is computed, so the history
 * shows one id before and after the event is written down.
 */
export function deferredEvent(row: Pick<InvServerTable, 'id' | 'state' | 'state_reason' | 'state_changed_at'>, last: { id: string; to_state: string } | undefined): InvServerEventTable | undefined {
  if (last?.to_state === row.state) return undefined;
  return {
    id: last ? `${last.id}z` : `sev_0000000000000${row.id.slice(-10)}`, server_id: row.id, from_state: last?.to_state ?? null, to_state: row.state,
    reason: row.state_reason, actor: 'system', at: Number(row.state_changed_at),
  };
}

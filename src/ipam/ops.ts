import type BetterSqlite3 from 'better-sqlite3';
import type { Trx } from '../store/store.js';
import type { PgClient } from '../inventory/tx.js';
import type { IpamAddressTable, IpamPrefixTable, IpamVlanAllocTable, IpamVlanPoolTable } from './tables.js';

/**
 * The few statements an allocation transaction runs, behind one interface
 * with two implementations: Kysely (PostgreSQL, and any caller's
 * transaction) and prepared better-sqlite3 statements (the SQLite hot
 * path, where Kysely's per-query overhead would cost more than the commit).
 */
export interface AddrOps {
  lockPrefix(id: string): Promise<IpamPrefixTable | undefined>;
  taken(prefixId: string, fromHex: string, limit: number): Promise<string[]>;
  exists(prefixId: string, hex: string): Promise<boolean>;
  byKeys(keys: string[]): Promise<IpamAddressTable[]>;
  insert(rows: IpamAddressTable[]): Promise<void>;
  setCursor(prefixId: string, hex: string): Promise<void>;
}

export interface VlanOps {
  lockPool(idOrName: string): Promise<IpamVlanPoolTable | undefined>;
  taken(poolId: string, from: number, limit: number): Promise<number[]>;
  exists(poolId: string, vid: number): Promise<boolean>;
  byKeys(keys: string[]): Promise<IpamVlanAllocTable[]>;
  insert(rows: IpamVlanAllocTable[]): Promise<void>;
  setCursor(poolId: string, cursor: number): Promise<void>;
}

export function kyselyAddrOps(trx: Trx, pg: boolean): AddrOps {
  return {
    lockPrefix: (id) => {
      let q = trx.selectFrom('ipam_prefixes').selectAll().where('id', '=', id);
      if (pg) q = q.forUpdate();
      return q.executeTakeFirst();
    },
    taken: async (prefixId, fromHex, limit) => (await trx.selectFrom('ipam_addresses').select('address_hex').where('prefix_id', '=', prefixId).where('address_hex', '>=', fromHex)
      .orderBy('address_hex').limit(limit).execute()).map((r) => r.address_hex),
    exists: async (prefixId, hex) => Boolean(await trx.selectFrom('ipam_addresses').select('id').where('prefix_id', '=', prefixId).where('address_hex', '=', hex).executeTakeFirst()),
    byKeys: (keys) => trx.selectFrom('ipam_addresses').selectAll().where('idem_key', 'in', keys).orderBy('address_hex').execute(),
    insert: async (rows) => {
      for (let i = 0; i < rows.length; i += 400) await trx.insertInto('ipam_addresses').values(rows.slice(i, i + 400)).execute();
    },
    setCursor: async (prefixId, hex) => {
      await trx.updateTable('ipam_prefixes').set({ cursor_hex: hex }).where('id', '=', prefixId).execute();
    },
  };
}

export function kyselyVlanOps(trx: Trx, pg: boolean): VlanOps {
  return {
    lockPool: (idOrName) => {
      let q = trx.selectFrom('ipam_vlan_pools').selectAll().where((eb) => eb.or([eb('id', '=', idOrName), eb('name', '=', idOrName)]));
      if (pg) q = q.forUpdate();
      return q.executeTakeFirst();
    },
    taken: async (poolId, from, limit) => (await trx.selectFrom('ipam_vlan_allocs').select('vid').where('pool_id', '=', poolId).where('vid', '>=', from).orderBy('vid').limit(limit).execute()).map((r) => r.vid),
    exists: async (poolId, vid) => Boolean(await trx.selectFrom('ipam_vlan_allocs').select('id').where('pool_id', '=', poolId).where('vid', '=', vid).executeTakeFirst()),
    byKeys: (keys) => trx.selectFrom('ipam_vlan_allocs').selectAll().where('idem_key', 'in', keys).orderBy('vid').execute(),
    insert: async (rows) => {
      for (let i = 0; i < rows.length; i += 500) await trx.insertInto('ipam_vlan_allocs').values(rows.slice(i, i + 500)).execute();
    },
    setCursor: async (poolId, cursor) => {
      await trx.updateTable('ipam_vlan_pools').set({ cursor_id: cursor }).where('id', '=', poolId).execute();
    },
  };
}

const ADDR_COLS = ['id', 'prefix_id', 'family', 'address_hex', 'address', 'holder', 'target', 'reservation_id', 'expires_at', 'idem_key', 'created_at'] as const;
const VLAN_COLS = ['id', 'pool_id', 'vid', 'holder', 'reservation_id', 'expires_at', 'idem_key', 'created_at'] as const;

/** Prepared statements on the raw SQLite handle; valid only inside `sqliteRawTx`. */
export function sqliteOps(db: BetterSqlite3.Database): { addr: AddrOps; vlan: VlanOps } {
  const s = {
    prefix: db.prepare('select * from ipam_prefixes where id = ?'),
    taken: db.prepare('select address_hex from ipam_addresses where prefix_id = ? and address_hex >= ? order by address_hex limit ?').pluck(),
    exists: db.prepare('select 1 from ipam_addresses where prefix_id = ? and address_hex = ?').pluck(),
    insAddr: db.prepare(`insert into ipam_addresses (${ADDR_COLS.join(', ')}) values (${ADDR_COLS.map(() => '?').join(', ')})`),
    cursor: db.prepare('update ipam_prefixes set cursor_hex = ? where id = ?'),
    pool: db.prepare('select * from ipam_vlan_pools where id = ? or name = ?'),
    vtaken: db.prepare('select vid from ipam_vlan_allocs where pool_id = ? and vid >= ? order by vid limit ?').pluck(),
    vexists: db.prepare('select 1 from ipam_vlan_allocs where pool_id = ? and vid = ?').pluck(),
    insVlan: db.prepare(`insert into ipam_vlan_allocs (${VLAN_COLS.join(', ')}) values (${VLAN_COLS.map(() => '?').join(', ')})`),
    vcursor: db.prepare('update ipam_vlan_pools set cursor_id = ? where id = ?'),
  };
  const inList = (n: number) => Array.from({ length: n }, () => '?').join(', ');
  return {
    addr: {
      lockPrefix: async (id) => s.prefix.get(id) as IpamPrefixTable | undefined,
      taken: async (prefixId, fromHex, limit) => s.taken.all(prefixId, fromHex, limit) as string[],
      exists: async (prefixId, hex) => s.exists.get(prefixId, hex) !== undefined,
      byKeys: async (keys) => db.prepare(`select * from ipam_addresses where idem_key in (${inList(keys.length)}) order by address_hex`).all(...keys) as IpamAddressTable[],
      insert: async (rows) => {
        for (const r of rows) s.insAddr.run(...ADDR_COLS.map((c) => r[c]));
      },
      setCursor: async (prefixId, hex) => {
        s.cursor.run(hex, prefixId);
      },
    },
    vlan: {
      lockPool: async (idOrName) => s.pool.get(idOrName, idOrName) as IpamVlanPoolTable | undefined,
      taken: async (poolId, from, limit) => s.vtaken.all(poolId, from, limit) as number[],
      exists: async (poolId, vid) => s.vexists.get(poolId, vid) !== undefined,
      byKeys: async (keys) => db.prepare(`select * from ipam_vlan_allocs where idem_key in (${inList(keys.length)}) order by vid`).all(...keys) as IpamVlanAllocTable[],
      insert: async (rows) => {
        for (const r of rows) s.insVlan.run(...VLAN_COLS.map((c) => r[c]));
      },
      setCursor: async (poolId, cursor) => {
        s.vcursor.run(cursor, poolId);
      },
    },
  };
}

/** Named (server-side prepared) statements on one PostgreSQL client; valid only inside `pgRawTx`. */
export function pgOps(c: PgClient): { addr: AddrOps; vlan: VlanOps } {
  const insert = async (table: string, cols: readonly string[], rows: Record<string, unknown>[], name: string) => {
    for (let i = 0; i < rows.length; i += 400) {
      const chunk = rows.slice(i, i + 400);
      const values: unknown[] = [];
      const tuples = chunk.map((r) => `(${cols.map((col) => {
        values.push(r[col]);
        return `$${values.length}`;
      }).join(', ')})`);
      const text = `insert into ${table} (${cols.join(', ')}) values ${tuples.join(', ')}`;
      await c.query(chunk.length === 1 ? { name, text, values } : { text, values });
    }
  };
  return {
    addr: {
      lockPrefix: async (id) => (await c.query<IpamPrefixTable & Record<string, unknown>>({ name: 'ipam_lock_prefix', text: 'select * from ipam_prefixes where id = $1 for update', values: [id] })).rows[0],
      taken: async (prefixId, fromHex, limit) => (await c.query<{ address_hex: string }>({ name: 'ipam_addr_taken', text: 'select address_hex from ipam_addresses where prefix_id = $1 and address_hex >= $2 order by address_hex limit $3', values: [prefixId, fromHex, limit] })).rows.map((r) => r.address_hex),
      exists: async (prefixId, hex) => (await c.query({ name: 'ipam_addr_exists', text: 'select 1 from ipam_addresses where prefix_id = $1 and address_hex = $2', values: [prefixId, hex] })).rows.length > 0,
      byKeys: async (keys) => (await c.query<IpamAddressTable & Record<string, unknown>>({ name: 'ipam_addr_keys', text: 'select * from ipam_addresses where idem_key = any($1) order by address_hex', values: [keys] })).rows,
      insert: (rows) => insert('ipam_addresses', ADDR_COLS, rows as unknown as Record<string, unknown>[], 'ipam_addr_ins1'),
      setCursor: async (prefixId, hex) => {
        await c.query({ name: 'ipam_addr_cursor', text: 'update ipam_prefixes set cursor_hex = $1 where id = $2', values: [hex, prefixId] });
      },
    },
    vlan: {
      lockPool: async (idOrName) => (await c.query<IpamVlanPoolTable & Record<string, unknown>>({ name: 'ipam_lock_pool', text: 'select * from ipam_vlan_pools where id = $1 or name = $1 for update', values: [idOrName] })).rows[0],
      taken: async (poolId, from, limit) => (await c.query<{ vid: number }>({ name: 'ipam_vlan_taken', text: 'select vid from ipam_vlan_allocs where pool_id = $1 and vid >= $2 order by vid limit $3', values: [poolId, from, limit] })).rows.map((r) => r.vid),
      exists: async (poolId, vid) => (await c.query({ name: 'ipam_vlan_exists', text: 'select 1 from ipam_vlan_allocs where pool_id = $1 and vid = $2', values: [poolId, vid] })).rows.length > 0,
      byKeys: async (keys) => (await c.query<IpamVlanAllocTable & Record<string, unknown>>({ name: 'ipam_vlan_keys', text: 'select * from ipam_vlan_allocs where idem_key = any($1) order by vid', values: [keys] })).rows,
      insert: (rows) => insert('ipam_vlan_allocs', VLAN_COLS, rows as unknown as Record<string, unknown>[], 'ipam_vlan_ins1'),
      setCursor: async (poolId, cursor) => {
        await c.query({ name: 'ipam_vlan_cursor', text: 'update ipam_vlan_pools set cursor_id = $1 where id = $2', values: [cursor, poolId] });
      },
    },
  };
}

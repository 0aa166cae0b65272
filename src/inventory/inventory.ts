import { sql } from 'kysely';
import { systemClock, type Clock } from '../core/clock.js';
import { ConflictError, ExhaustedError, NotFoundError, ValidationError } from '../core/errors.js';
import { newId } from '../core/ids.js';
import type { SecretBox } from '../core/secrets.js';
import type { Store, Trx } from '../store/store.js';
import { GroupCommit, type Outcome } from './groupcommit.js';
import { canTransition, TRANSITIONS } from './lifecycle.js';
import {
  AllocateServersSchema, DatacenterSchema, HotPoolPolicySchema, HubSchema, RackSchema, RegisterServerSchema, ServerTypeSchema, SwitchSchema, TransitionSchema,
  type AllocateServersInput, type AllocateServersRequest, type CapacitySummary, type Datacenter, type DatacenterInput, type HotPoolPolicy, type HotPoolPolicyInput,
  type Hub, type HubInput, type Rack, type RackInput, type RegisterServerInput, type Server, type ServerEvent, type ServerNic, type ServerState,
  type ServerType, type ServerTypeInput, type Switch, type SwitchInput, type TransitionInput,
} from './schemas.js';
import type { InvServerTable } from './tables.js';
import { parseJson, RaceLost, withTx } from './tx.js';
import { parseInput } from './validate.js';
import { claimedRow, deferredEvent, pgClaimServer, pickHintsOf, sqliteServerFast, type ClaimedServer, type SqliteServerFast } from './fastalloc.js';
import './tables.js';

/**
 * Receives events after commit (best effort: a crash between the commit and
 * the call loses the event, never the state). Wire it to `engine.publish`.
 */
export type EventSink = (type: string, subject: string, data: Record<string, unknown>) => unknown;

/** Called after commit when servers of a type become available in a datacenter and runs wait for them. */
export type CapacityListener = (ev: { type: string; datacenter: string; runIds: string[] }) => Promise<void>;

export interface InventoryOptions {
  store: Store;
  /** Seals BMC credentials at rest. */
  secrets: SecretBox;
  clock?: Clock;
  /** Failed provisioning attempts after which a server is quarantined (default 3). */
  quarantineAfter?: number;
  /** Group commit of concurrent server allocations of one type (default true). */
  groupCommit?: boolean;
  /** Events: `inventory.server.transition`, `inventory.servers.allocated`. */
  events?: EventSink;
}

/**
 * The inventory: datacenters, racks, server types, bare-metal servers and
 * their lifecycle, switches and cabling, hubs, hot-pool policies.
 *
 * Server allocation never double-allocates: allocators of one server type
 * are serialized by a lock on the type's row (FOR UPDATE on PostgreSQL,
 * BEGIN IMMEDIATE on SQLite), and each server is claimed by a conditional
 * update `… where id = ? and state = 'available'`; a claim that updates no
 * row aborts and retries the transaction. A request for N servers gets all
 * N or none.
 */
export class Inventory {
  readonly store: Store;
  readonly clock: Clock;
  private readonly secrets: SecretBox;
  private readonly pg: boolean;
  private readonly quarantineAfter: number;
  private readonly groupCommit: boolean;
  private readonly serverGc: GroupCommit<AllocateServersRequest, Server[]>;
  private sqliteFast: SqliteServerFast | undefined;
  private readonly rackNames = new Map<string, string>();
  private listeners: CapacityListener[] = [];
  private readonly events: EventSink | undefined;

  constructor(opts: InventoryOptions) {
    this.store = opts.store;
    this.clock = opts.clock ?? systemClock;
    this.secrets = opts.secrets;
    this.pg = opts.store.dialect === 'postgres';
    this.quarantineAfter = opts.quarantineAfter ?? 3;
    this.groupCommit = opts.groupCommit ?? true;
    this.events = opts.events;
    this.serverGc = new GroupCommit((type, reqs) => this.serverBatch(type, reqs));
  }

  /** Registers a listener woken (after commit) when capacity appears for waiting runs. Returns an unsubscribe function. */
  onCapacity(listener: CapacityListener): () => void {
    this.listeners.push(listener);
    return () => {
      this.listeners = this.listeners.filter((l) => l !== listener);
    };
  }

  // ------------------------------------------------------------ datacenters

  async createDatacenter(input: DatacenterInput, trx?: Trx): Promise<Datacenter> {
    const d = parseInput(DatacenterSchema, input, 'inventory');
    const db = trx ?? this.store.db;
    const now = this.clock.now();
    const existing = await db.selectFrom('inv_datacenters').select('id').where('id', '=', d.name).executeTakeFirst();
    if (existing) {
      await db.updateTable('inv_datacenters').set({ region: d.region, description: d.description, labels: JSON.stringify(d.labels) }).where('id', '=', d.name).execute();
    } else {
      await db.insertInto('inv_datacenters').values({ id: d.name, region: d.region, description: d.description, labels: JSON.stringify(d.labels), created_at: now }).execute();
    }
    return this.getDatacenter(d.name, db);
  }

  async getDatacenter(name: string, trx: Trx = this.store.db): Promise<Datacenter> {
    const r = await trx.selectFrom('inv_datacenters').selectAll().where('id', '=', name).executeTakeFirst();
    if (!r) throw new ValidationError('inventory.unknown_datacenter', `datacenter: unknown datacenter "${name}"; create it first or pick one of the existing datacenters`, { details: { field: 'datacenter', value: name } });
    return { name: r.id, region: r.region, description: r.description, labels: parseJson(r.labels, {}), createdAt: Number(r.created_at) };
  }

  async listDatacenters(): Promise<Datacenter[]> {
    const rows = await this.store.db.selectFrom('inv_datacenters').selectAll().orderBy('id').execute();
    return rows.map((r) => ({ name: r.id, region: r.region, description: r.description, labels: parseJson(r.labels, {}), createdAt: Number(r.created_at) }));
  }

  async createRack(input: RackInput, trx?: Trx): Promise<Rack> {
    const r = parseInput(RackSchema, input, 'inventory');
    const db = trx ?? this.store.db;
    await this.getDatacenter(r.datacenter, db);
    const existing = await db.selectFrom('inv_racks').selectAll().where('datacenter_id', '=', r.datacenter).where('name', '=', r.name).executeTakeFirst();
    if (existing) {
      await db.updateTable('inv_racks').set({ row: r.row ?? null, height_u: r.heightU }).where('id', '=', existing.id).execute();
      return { id: existing.id, datacenter: r.datacenter, name: r.name, row: r.row ?? null, heightU: r.heightU };
    }
    const id = newId('rack');
    await db.insertInto('inv_racks').values({ id, datacenter_id: r.datacenter, name: r.name, row: r.row ?? null, height_u: r.heightU, created_at: this.clock.now() }).execute();
    return { id, datacenter: r.datacenter, name: r.name, row: r.row ?? null, heightU: r.heightU };
  }

  async listRacks(datacenter?: string): Promise<Rack[]> {
    let q = this.store.db.selectFrom('inv_racks').selectAll();
    if (datacenter) q = q.where('datacenter_id', '=', datacenter);
    return (await q.orderBy('datacenter_id').orderBy('name').execute()).map((r) => ({ id: r.id, datacenter: r.datacenter_id, name: r.name, row: r.row, heightU: r.height_u }));
  }

  // ----------------------------------------------------------- server types

  async createServerType(input: ServerTypeInput, trx?: Trx): Promise<ServerType> {
    const t = parseInput(ServerTypeSchema, input, 'inventory');
    const db = trx ?? this.store.db;
    const values = { cpu_model: t.cpu.model, cpu_cores: t.cpu.cores, ram_gb: t.ramGb, disks: JSON.stringify(t.disks), nics: JSON.stringify(t.nics), gpus: JSON.stringify(t.gpus), labels: JSON.stringify(t.labels) };
    const existing = await db.selectFrom('inv_server_types').select('id').where('id', '=', t.name).executeTakeFirst();
    if (existing) await db.updateTable('inv_server_types').set(values).where('id', '=', t.name).execute();
    else await db.insertInto('inv_server_types').values({ id: t.name, ...values, alloc_seq: 0, created_at: this.clock.now() }).execute();
    return t;
  }

  async getServerType(name: string, trx: Trx = this.store.db): Promise<ServerType> {
    const r = await trx.selectFrom('inv_server_types').selectAll().where('id', '=', name).executeTakeFirst();
    if (!r) throw new ValidationError('inventory.unknown_server_type', `type: unknown server type "${name}"; list the server types to pick one`, { details: { field: 'type', value: name } });
    return { name: r.id, cpu: { model: r.cpu_model, cores: r.cpu_cores }, ramGb: r.ram_gb, disks: parseJson(r.disks, []), nics: parseJson(r.nics, []), gpus: parseJson(r.gpus, []), labels: parseJson(r.labels, {}) };
  }

  async listServerTypes(): Promise<ServerType[]> {
    const ids = await this.store.db.selectFrom('inv_server_types').select('id').orderBy('id').execute();
    return Promise.all(ids.map((r) => this.getServerType(r.id)));
  }

  // --------------------------------------------------------------- switches

  async createSwitch(input: SwitchInput, trx?: Trx): Promise<Switch> {
    const s = parseInput(SwitchSchema, input, 'inventory');
    const db = trx ?? this.store.db;
    await this.getDatacenter(s.datacenter, db);
    const rackId = s.rack ? await this.rackId(db, s.datacenter, s.rack, 'rack') : null;
    const existing = await db.selectFrom('inv_switches').select('id').where('datacenter_id', '=', s.datacenter).where('name', '=', s.name).executeTakeFirst();
    const values = { rack_id: rackId, model: s.model, mgmt_address: s.mgmtAddress ?? null, port_count: s.ports };
    const id = existing?.id ?? newId('sw');
    if (existing) await db.updateTable('inv_switches').set(values).where('id', '=', id).execute();
    else await db.insertInto('inv_switches').values({ id, datacenter_id: s.datacenter, name: s.name, ...values, created_at: this.clock.now() }).execute();
    return { id, name: s.name, datacenter: s.datacenter, rack: s.rack ?? null, model: s.model, mgmtAddress: s.mgmtAddress ?? null, ports: s.ports };
  }

  async listSwitches(datacenter?: string): Promise<Switch[]> {
    let q = this.store.db.selectFrom('inv_switches').leftJoin('inv_racks', 'inv_racks.id', 'inv_switches.rack_id').selectAll('inv_switches').select('inv_racks.name as rack_name');
    if (datacenter) q = q.where('inv_switches.datacenter_id', '=', datacenter);
    const rows = await q.orderBy('inv_switches.datacenter_id').orderBy('inv_switches.name').execute();
    return rows.map((r) => ({ id: r.id, name: r.name, datacenter: r.datacenter_id, rack: r.rack_name, model: r.model, mgmtAddress: r.mgmt_address, ports: r.port_count }));
  }

  /** Cabling of a switch: port → server NIC. */
  async listSwitchPorts(switchId: string): Promise<{ port: string; serverId: string | null; nic: string | null }[]> {
    const rows = await this.store.db.selectFrom('inv_switch_ports').selectAll().where('switch_id', '=', switchId).execute();
    return rows.map((r) => ({ port: r.port, serverId: r.server_id, nic: r.nic })).sort((a, b) => a.port.localeCompare(b.port, undefined, { numeric: true }));
  }

  // ------------------------------------------------------------------- hubs

  async createHub(input: HubInput, trx?: Trx): Promise<Hub> {
    const h = parseInput(HubSchema, input, 'inventory');
    const db = trx ?? this.store.db;
    if (h.datacenter) await this.getDatacenter(h.datacenter, db);
    const existing = await db.selectFrom('inv_hubs').select('id').where('id', '=', h.name).executeTakeFirst();
    const values = { region: h.region, datacenter_id: h.datacenter ?? null, capacity: h.capacity, labels: JSON.stringify(h.labels) };
    if (existing) await db.updateTable('inv_hubs').set(values).where('id', '=', h.name).execute();
    else await db.insertInto('inv_hubs').values({ id: h.name, ...values, used: 0, created_at: this.clock.now() }).execute();
    return this.getHub(h.name, db);
  }

  async getHub(name: string, trx: Trx = this.store.db): Promise<Hub> {
    const r = await trx.selectFrom('inv_hubs').selectAll().where('id', '=', name).executeTakeFirst();
    if (!r) throw new NotFoundError('inventory.hub_not_found', `hub: unknown hub "${name}"`, { details: { field: 'hub' } });
    return { name: r.id, region: r.region, datacenter: r.datacenter_id, capacity: r.capacity, used: r.used, labels: parseJson(r.labels, {}) };
  }

  async listHubs(filter: { region?: string } = {}): Promise<Hub[]> {
    let q = this.store.db.selectFrom('inv_hubs').select('id');
    if (filter.region) q = q.where('region', '=', filter.region);
    const ids = await q.orderBy('id').execute();
    return Promise.all(ids.map((r) => this.getHub(r.id)));
  }

  /** Takes one slot on a hub with free capacity (least used first) matching region and labels. */
  async claimHub(req: { region?: string; labels?: Record<string, string> }): Promise<Hub> {
    return withTx(this.store, async (trx) => {
      let q = trx.selectFrom('inv_hubs').selectAll().whereRef('used', '<', 'capacity');
      if (req.region) q = q.where('region', '=', req.region);
      const rows = (await q.orderBy('used').orderBy('id').execute()).filter((r) => matchLabels(parseJson(r.labels, {}), req.labels ?? {}));
      for (const r of rows) {
        const u = await trx.updateTable('inv_hubs').set({ used: sql`used + 1` }).where('id', '=', r.id).whereRef('used', '<', 'capacity').executeTakeFirst();
        if (Number(u.numUpdatedRows) === 1) return this.getHub(r.id, trx);
      }
      throw new ExhaustedError('inventory.hub_exhausted', `no hub${req.region ? ` in region ${req.region}` : ''} has free capacity`, { details: { region: req.region ?? null } });
    });
  }

  async releaseHub(name: string): Promise<Hub> {
    return withTx(this.store, async (trx) => {
      await trx.updateTable('inv_hubs').set({ used: sql`used - 1` }).where('id', '=', name).where('used', '>', 0).execute();
      return this.getHub(name, trx);
    });
  }

  // ---------------------------------------------------------------- servers

  /** Registers a server (or updates it, by serial). BMC credentials are sealed before they are written. */
  async registerServer(input: RegisterServerInput, trx?: Trx): Promise<Server> {
    const s = parseInput(RegisterServerSchema, input, 'inventory');
    if (trx) return this.registerServerTx(trx, s);
    const out = await withTx(this.store, (t) => this.registerServerTx(t, s));
    await this.notifyCapacityFor([out]);
    return out;
  }

  /**
   * Registers many servers in one transaction (inventory import): lookups of
   * types, datacenters, racks and switches are cached for the batch. All or
   * none; an error names the item (`servers.12.type: …` with `fieldPrefix`
   * `servers.`).
   */
  async registerServers(inputs: RegisterServerInput[], trx?: Trx, fieldPrefix = ''): Promise<number> {
    const parsed = inputs.map((x, i) => {
      try {
        return parseInput(RegisterServerSchema, x, 'inventory');
      } catch (e) {
        rethrowPrefixed(e, `${fieldPrefix}${i}.`);
      }
    });
    const run = async (t: Trx) => {
      const cache: RegisterCache = { types: new Set(), dcs: new Set(), racks: new Map(), switches: new Map() };
      for (const [i, s] of parsed.entries()) await this.registerServerTx(t, s, `${fieldPrefix}${i}.`, cache);
      return parsed.length;
    };
    return trx ? run(trx) : withTx(this.store, run);
  }

  private async registerServerTx(trx: Trx, s: ReturnType<typeof RegisterServerSchema.parse>, fieldPrefix?: string): Promise<Server>;
  private async registerServerTx(trx: Trx, s: ReturnType<typeof RegisterServerSchema.parse>, fieldPrefix: string, cache: RegisterCache): Promise<Server | null>;
  private async registerServerTx(trx: Trx, s: ReturnType<typeof RegisterServerSchema.parse>, fieldPrefix = '', cache?: RegisterCache): Promise<Server | null> {
    const f = (x: string) => fieldPrefix + x;
    if (!cache?.types.has(s.type)) {
      await this.getServerType(s.type, trx).catch((e: unknown) => rethrowField(e, f('type')));
      cache?.types.add(s.type);
    }
    if (!cache?.dcs.has(s.datacenter)) {
      await this.getDatacenter(s.datacenter, trx).catch((e: unknown) => rethrowField(e, f('datacenter')));
      cache?.dcs.add(s.datacenter);
    }
    let rackId: string | null = null;
    if (s.rack) {
      const rk = `${s.datacenter}\u0000${s.rack}`;
      rackId = cache?.racks.get(rk) ?? await this.rackId(trx, s.datacenter, s.rack, f('rack'));
      cache?.racks.set(rk, rackId);
    }
    const now = this.clock.now();
    const existing = await trx.selectFrom('inv_servers').selectAll().where('serial', '=', s.serial).executeTakeFirst();
    const id = existing?.id ?? newId('srv');
    const macs = new Set<string>();
    s.nics.forEach((n, i) => {
      if (macs.has(n.mac)) throw new ValidationError('inventory.duplicate_mac', `${f(`nics.${i}.mac`)}: MAC ${n.mac} appears twice`, { details: { field: f(`nics.${i}.mac`) } });
      macs.add(n.mac);
    });
    const creds = s.bmc && s.bmc.password !== '[redacted]' ? this.secrets.sealJson({ username: s.bmc.username, password: s.bmc.password }, `bmc:${id}`) : (existing?.bmc_credentials ?? null);
    const values = {
      type_id: s.type, datacenter_id: s.datacenter, rack_id: rackId, position: s.position ?? null, labels: JSON.stringify(s.labels),
      bmc_address: s.bmc?.address ?? existing?.bmc_address ?? null, bmc_credentials: creds, nics: JSON.stringify(s.nics), updated_at: now,
    };
    // a new server, or one moved to another type or datacenter, may sit below a pick hint (fastalloc.ts)
    pickHintsOf(this.store).forget();
    if (existing) {
      if (existing.type_id !== s.type && existing.state === 'allocated') throw new ConflictError('inventory.server_in_use', `${f('type')}: server ${s.serial} is allocated; release it before changing its type`, { details: { field: f('type') } });
      await trx.updateTable('inv_servers').set(values).where('id', '=', id).execute();
    } else {
      await trx.insertInto('inv_servers').values({
        id, serial: s.serial, ...values, state: s.state, state_reason: 'registered', state_changed_at: now, failure_count: 0, failure_reasons: '[]',
        holder: null, reservation_id: null, expires_at: null, idem_key: null, allocated_at: null, created_at: now,
      }).execute();
      await this.recordEvent(trx, id, null, s.state, 'registered', 'system');
    }
    // cabling: each NIC to at most one switch port, each port to at most one NIC (primary key)
    await trx.deleteFrom('inv_switch_ports').where('server_id', '=', id).execute();
    for (const [i, n] of s.nics.entries()) {
      if (!n.switch && !n.port) continue;
      if (!n.switch || !n.port) throw new ValidationError('inventory.invalid_cabling', `${f(`nics.${i}`)}: give both switch and port, or neither`, { details: { field: f(`nics.${i}`) } });
      const sk = `${s.datacenter}\u0000${n.switch}`;
      const sw = cache?.switches.get(sk) ?? await trx.selectFrom('inv_switches').select(['id', 'port_count']).where('datacenter_id', '=', s.datacenter).where('name', '=', n.switch).executeTakeFirst();
      if (sw) cache?.switches.set(sk, sw);
      if (!sw) throw new ValidationError('inventory.unknown_switch', `${f(`nics.${i}.switch`)}: unknown switch "${n.switch}" in datacenter ${s.datacenter}`, { details: { field: f(`nics.${i}.switch`) } });
      if (/^\d+$/.test(n.port) && (Number(n.port) < 1 || Number(n.port) > sw.port_count)) {
        throw new ValidationError('inventory.invalid_port', `${f(`nics.${i}.port`)}: switch ${n.switch} has ports 1..${sw.port_count}`, { details: { field: f(`nics.${i}.port`) } });
      }
      const taken = await trx.selectFrom('inv_switch_ports').select(['server_id', 'nic']).where('switch_id', '=', sw.id).where('port', '=', n.port).executeTakeFirst();
      if (taken) throw new ConflictError('inventory.port_in_use', `${f(`nics.${i}.port`)}: port ${n.port} of switch ${n.switch} is already cabled to ${taken.server_id} ${taken.nic}`, { details: { field: f(`nics.${i}.port`) } });
      await trx.insertInto('inv_switch_ports').values({ switch_id: sw.id, port: n.port, server_id: id, nic: n.name }).execute();
    }
    return cache ? null : this.getServer(id, trx);
  }

  async getServer(id: string, trx: Trx = this.store.db): Promise<Server> {
    const r = await trx.selectFrom('inv_servers').selectAll().where('id', '=', id).executeTakeFirst();
    if (!r) throw new NotFoundError('inventory.server_not_found', `serverId: server ${id} does not exist`, { details: { field: 'serverId', id } });
    return this.toServer(trx, r);
  }

  async findServerBySerial(serial: string): Promise<Server | undefined> {
    const r = await this.store.db.selectFrom('inv_servers').selectAll().where('serial', '=', serial).executeTakeFirst();
    return r ? this.toServer(this.store.db, r) : undefined;
  }

  async listServers(filter: { type?: string; datacenter?: string; state?: ServerState | ServerState[]; holder?: string; reservationId?: string; after?: string; limit?: number } = {}): Promise<Server[]> {
    let q = this.store.db.selectFrom('inv_servers').selectAll();
    if (filter.type) q = q.where('type_id', '=', filter.type);
    if (filter.datacenter) q = q.where('datacenter_id', '=', filter.datacenter);
    if (filter.state) q = q.where('state', 'in', Array.isArray(filter.state) ? filter.state : [filter.state]);
    if (filter.holder) q = q.where('holder', '=', filter.holder);
    if (filter.reservationId) q = q.where('reservation_id', '=', filter.reservationId);
    if (filter.after) q = q.where('id', '>', filter.after);
    const rows = await q.orderBy('id').limit(filter.limit ?? 10_000).execute();
    const racks = new Map((await this.store.db.selectFrom('inv_racks').select(['id', 'name']).execute()).map((r) => [r.id, r.name]));
    return rows.map((r) => toServer(r, r.rack_id ? (racks.get(r.rack_id) ?? null) : null));
  }

  /** Decrypted BMC credentials, for providers that drive the hardware. Never logged, never returned by list/get. */
  async getBmcCredentials(serverId: string): Promise<{ address: string | null; username: string; password: string } | null> {
    const r = await this.store.db.selectFrom('inv_servers').select(['bmc_address', 'bmc_credentials']).where('id', '=', serverId).executeTakeFirst();
    if (!r) throw new NotFoundError('inventory.server_not_found', `serverId: server ${serverId} does not exist`, { details: { field: 'serverId' } });
    if (!r.bmc_credentials) return null;
    return { address: r.bmc_address, ...this.secrets.openJson<{ username: string; password: string }>(r.bmc_credentials, `bmc:${serverId}`) };
  }

  async serverHistory(serverId: string): Promise<ServerEvent[]> {
    const rows = await this.store.db.selectFrom('inv_server_events').selectAll().where('server_id', '=', serverId).orderBy('id').execute();
    // the newest transition may be only on the server's row (a fast claim, fastalloc.ts)
    const cur = await this.store.db.selectFrom('inv_servers').select(['id', 'state', 'state_reason', 'state_changed_at']).where('id', '=', serverId).executeTakeFirst();
    const pending = cur && deferredEvent(cur, rows.at(-1));
    if (pending) rows.push(pending);
    return rows.map((r) => ({ id: r.id, serverId: r.server_id, from: r.from_state as ServerState | null, to: r.to_state as ServerState, reason: r.reason, actor: r.actor, at: Number(r.at) }));
  }

  // --------------------------------------------------------------- lifecycle

  /** Moves a server along its lifecycle. Illegal transitions are refused with the allowed ones in the message. */
  async transition(input: TransitionInput): Promise<Server> {
    const t = parseInput(TransitionSchema, input, 'inventory');
    const result = await withTx(this.store, async (trx) => {
      const cur = await this.lockServer(trx, t.serverId);
      if (t.from && cur.state !== t.from) throw new ConflictError('inventory.state_changed', `server ${cur.serial} is ${cur.state}, not ${t.from}`, { details: { serverId: cur.id, state: cur.state } });
      return { from: cur.state, server: await this.transitionTx(trx, cur, t.to as ServerState, t.reason, t.actor) };
    });
    this.emit('inventory.server.transition', result.server.id, { serial: result.server.serial, from: result.from, to: result.server.state, reason: t.reason, actor: t.actor });
    if (result.server.state === 'available') await this.notifyCapacity([{ type: result.server.type, datacenter: result.server.datacenter }]);
    return result.server;
  }

  private async transitionTx(trx: Trx, cur: InvServerTable, to: ServerState, reason: string, actor: string): Promise<Server> {
    const from = cur.state as ServerState;
    if (!canTransition(from, to)) {
      throw new ConflictError('inventory.illegal_transition', `server ${cur.serial} cannot go from ${from} to ${to}; from ${from} it can go to ${TRANSITIONS[from].join(', ')}`, { details: { serverId: cur.id, from, to, allowed: TRANSITIONS[from] } });
    }
    if (from === 'quarantined' && actor === 'system') {
      throw new ConflictError('inventory.quarantined', `server ${cur.serial} is quarantined (${cur.state_reason}); only an operator can release it`, { details: { serverId: cur.id } });
    }
    const now = this.clock.now();
    // a server below this process's pick hints may become available (fastalloc.ts)
    if (to === 'available') pickHintsOf(this.store).forget();
    const release = to === 'available' || to === 'maintenance' || to === 'quarantined';
    await trx.updateTable('inv_servers').set({
      state: to, state_reason: reason, state_changed_at: now, updated_at: now,
      ...(release ? { holder: null, reservation_id: null, expires_at: null, idem_key: null, allocated_at: null } : {}),
      ...(from === 'quarantined' && to === 'available' ? { failure_count: 0 } : {}),
    }).where('id', '=', cur.id).where('state', '=', from).execute();
    // first the transition into `from` if only the row holds it (a fast claim, fastalloc.ts), then this one
    const last = await trx.selectFrom('inv_server_events').select(['id', 'to_state']).where('server_id', '=', cur.id).orderBy('id', 'desc').limit(1).executeTakeFirst();
    const pending = deferredEvent(cur, last);
    if (pending) await trx.insertInto('inv_server_events').values(pending).execute();
    await this.recordEvent(trx, cur.id, from, to, reason, actor);
    return this.getServer(cur.id, trx);
  }

  /**
   * Records a failed provisioning attempt: the server goes to `failed`, or
   * to `quarantined` once it has failed `quarantineAfter` times; the reasons
   * are kept. A quarantined server is never allocated until an operator
   * releases it.
   */
  async recordProvisioningFailure(serverId: string, reason: string, actor = 'system'): Promise<Server> {
    return withTx(this.store, async (trx) => {
      const cur = await this.lockServer(trx, serverId);
      const reasons = parseJson<{ at: number; reason: string }[]>(cur.failure_reasons, []);
      reasons.push({ at: this.clock.now(), reason });
      const count = cur.failure_count + 1;
      await trx.updateTable('inv_servers').set({ failure_count: count, failure_reasons: JSON.stringify(reasons.slice(-20)) }).where('id', '=', serverId).execute();
      const failed = cur.state === 'failed' ? await this.getServer(serverId, trx) : await this.transitionTx(trx, cur, 'failed', `provisioning failed: ${reason}`, actor);
      if (count >= this.quarantineAfter) {
        const row = await this.lockServer(trx, serverId);
        return this.transitionTx(trx, row, 'quarantined', `failed provisioning ${count} times: ${reasons.slice(-count).map((r) => r.reason).join('; ')}`, actor);
      }
      return failed;
    });
  }

  /** Operator action: releases a quarantined server back to `available` (or another state) and resets its failure count. */
  async releaseQuarantine(serverId: string, opts: { actor: string; reason: string; to?: 'available' | 'maintenance' | 'inspecting' }): Promise<Server> {
    if (!opts.actor || opts.actor === 'system') throw new ValidationError('inventory.invalid_input', 'actor: releasing a quarantined server needs the operator who does it', { details: { field: 'actor' } });
    const s = await this.getServer(serverId);
    if (s.state !== 'quarantined') throw new ConflictError('inventory.not_quarantined', `server ${s.serial} is ${s.state}, not quarantined`, { details: { serverId } });
    const out = await this.transition({ serverId, to: opts.to ?? 'available', reason: opts.reason, actor: opts.actor, from: 'quarantined' });
    await this.store.db.updateTable('inv_servers').set({ failure_count: 0, failure_reasons: '[]' }).where('id', '=', serverId).execute();
    return { ...out, failureCount: 0, failureReasons: [] };
  }

  // ------------------------------------------------------------- allocation

  /**
   * Allocates `count` servers of a type in a datacenter matching labels,
   * preferred servers first. All or none: if fewer match, nothing is
   * allocated and the error says how many are available.
   */
  async allocateServers(input: AllocateServersInput, trx?: Trx): Promise<Server[]> {
    const req = parseInput(AllocateServersSchema, input, 'inventory');
    if (trx) return unwrap((await this.allocServersTx(trx, req.type, [req]))[0]!);
    const out = this.groupCommit ? await this.serverGc.submit(req.type, req) : unwrap((await this.serverBatch(req.type, [req]))[0]!);
    this.emit('inventory.servers.allocated', req.holder, { type: req.type, datacenter: req.datacenter, servers: out.map((x) => x.id), holder: req.holder });
    return out;
  }

  private emit(type: string, subject: string, data: Record<string, unknown>): void {
    if (!this.events) return;
    try {
      void Promise.resolve(this.events(type, subject, data)).catch(() => {});
    } catch {
      /* best effort */
    }
  }

  /**
   * Tries to allocate; when capacity is short, records `waiter` (a run id)
   * as waiting for this type and datacenter in the same transaction, so a
   * server that becomes available afterwards always wakes it.
   */
  async tryAllocateServers(input: AllocateServersInput, waiter: string): Promise<{ ok: true; servers: Server[] } | { ok: false; available: number; requested: number; message: string }> {
    const req = parseInput(AllocateServersSchema, input, 'inventory');
    return withTx(this.store, async (trx) => {
      const [out] = await this.allocServersTx(trx, req.type, [req]);
      if (out!.ok) {
        await trx.deleteFrom('inv_capacity_waiters').where('run_id', '=', waiter).execute();
        return { ok: true as const, servers: out!.value };
      }
      const e = out!.error;
      if (!(e instanceof ExhaustedError)) throw e;
      const now = this.clock.now();
      await trx.deleteFrom('inv_capacity_waiters').where('run_id', '=', waiter).where('type_id', '=', req.type).where('datacenter_id', '=', req.datacenter).execute();
      await trx.insertInto('inv_capacity_waiters').values({ run_id: waiter, type_id: req.type, datacenter_id: req.datacenter, count: req.count, created_at: now }).execute();
      return { ok: false as const, available: Number(e.details?.available ?? 0), requested: req.count, message: e.message };
    });
  }

  /**
   * Records `waiter` (a run id) as waiting for `count` servers of a type in a
   * datacenter, so that capacity appearing from now on signals it (see
   * `connectCapacitySignals`). Idempotent; `removeWaiter` ends it.
   */
  async addWaiter(waiter: string, type: string, datacenter: string, count: number): Promise<void> {
    await withTx(this.store, async (trx) => {
      await trx.deleteFrom('inv_capacity_waiters').where('run_id', '=', waiter).where('type_id', '=', type).where('datacenter_id', '=', datacenter).execute();
      await trx.insertInto('inv_capacity_waiters').values({ run_id: waiter, type_id: type, datacenter_id: datacenter, count, created_at: this.clock.now() }).execute();
    });
  }

  async removeWaiter(waiter: string): Promise<void> {
    await this.store.db.deleteFrom('inv_capacity_waiters').where('run_id', '=', waiter).execute();
  }

  /** Serves a batch of requests for one server type in one transaction; a lone plain request first tries the one-statement fast path (fastalloc.ts). */
  private async serverBatch(typeId: string, reqs: AllocateServersRequest[]): Promise<Outcome<Server[]>[]> {
    const r = reqs[0]!;
    if (reqs.length === 1 && r.count === 1 && r.key === undefined && r.preferred.length === 0 && Object.keys(r.labels).length === 0) {
      const hints = pickHintsOf(this.store);
      const key = `${typeId}\0${r.datacenter}`;
      const gen = hints.gen;
      const c = { type: typeId, datacenter: r.datacenter, after: hints.last.get(key) ?? '', holder: r.holder, reservationId: r.hold?.reservationId ?? null, expiresAt: r.hold?.expiresAt ?? null, now: this.clock.now() };
      let row: ClaimedServer | undefined;
      if (this.store.sqlite) {
        // outside a transaction the claim runs synchronously, so nothing else uses the connection meanwhile
        if (!this.store.sqlite.inTransaction) row = (this.sqliteFast ??= sqliteServerFast(this.store.sqlite)).claim(c);
      } else row = await pgClaimServer(this.store.pool!, c, hints);
      if (row) {
        if (hints.gen === gen && row.id > (hints.last.get(key) ?? '')) hints.last.set(key, row.id);
        await this.store.durable(); // SQLite FULL: the claim is on disk before anyone is told
        return [{ ok: true, value: [toServer(claimedRow(c, row), await this.rackName(row.rack_id))] }];
      }
      // a miss: the full transaction starts from the lowest available server again
      hints.last.delete(key);
    }
    return withTx(this.store, (trx) => this.allocServersTx(trx, typeId, reqs));
  }

  private async allocServersTx(trx: Trx, typeId: string, reqs: AllocateServersRequest[]): Promise<Outcome<Server[]>[]> {
    let tq = trx.selectFrom('inv_server_types').select(['id', 'alloc_seq']).where('id', '=', typeId);
    if (this.pg) tq = tq.forUpdate();
    const type = await tq.executeTakeFirst();
    if (!type) {
      const e = new ValidationError('inventory.unknown_server_type', `type: unknown server type "${typeId}"; list the server types to pick one`, { details: { field: 'type', value: typeId } });
      return reqs.map(() => ({ ok: false, error: e }));
    }
    const dcs = new Map<string, boolean>();
    const outcomes: Outcome<Server[]>[] = [];
    const now = this.clock.now();
    // candidates per datacenter, read once per batch in id order and shared by the batch's requests
    const cands = new Map<string, { rows: { id: string; labels: Record<string, string> }[]; after: string; done: boolean; chunks: number }>();
    const takenInBatch = new Set<string>();
    const granted: { index: number; picks: string[] }[] = [];
    const events: { id: string; server_id: string; from_state: string; to_state: string; reason: string; actor: string; at: number }[] = [];
    // read candidates in chunks sized to the batch's demand (a lone request for one server reads a few rows)
    const wanted = reqs.reduce((n, r) => n + r.count, 0);
    const more = async (dc: string) => {
      const c = cands.get(dc)!;
      const limit = Math.min(512, Math.max(16, wanted * 2) << Math.min(5, c.chunks++));
      const rows = await trx.selectFrom('inv_servers').select(['id', 'labels']).where('type_id', '=', typeId).where('datacenter_id', '=', dc)
        .where('state', '=', 'available').where('id', '>', c.after).orderBy('id').limit(limit).execute();
      for (const r of rows) c.rows.push({ id: r.id, labels: parseJson(r.labels, {}) });
      if (rows.length < limit) c.done = true;
      else c.after = rows[rows.length - 1]!.id;
    };
    for (const req of reqs) {
      try {
        if (req.key) {
          const keys = Array.from({ length: req.count }, (_, i) => `${req.key}#${i}`);
          const existing = await trx.selectFrom('inv_servers').select('id').where('idem_key', 'in', keys).orderBy('idem_key').execute();
          if (existing.length > 0) {
            granted.push({ index: outcomes.length, picks: existing.map((r) => r.id) });
            outcomes.push({ ok: true, value: [] });
            continue;
          }
        }
        if (!dcs.has(req.datacenter)) dcs.set(req.datacenter, Boolean(await trx.selectFrom('inv_datacenters').select('id').where('id', '=', req.datacenter).executeTakeFirst()));
        if (!dcs.get(req.datacenter)) throw new ValidationError('inventory.unknown_datacenter', `datacenter: unknown datacenter "${req.datacenter}"; create it first or pick one of the existing datacenters`, { details: { field: 'datacenter', value: req.datacenter } });
        const picks: string[] = [];
        if (req.preferred.length > 0) {
          const rows = await trx.selectFrom('inv_servers').select(['id', 'labels']).where('id', 'in', req.preferred)
            .where('type_id', '=', typeId).where('datacenter_id', '=', req.datacenter).where('state', '=', 'available').execute();
          const ok = new Set(rows.filter((r) => !takenInBatch.has(r.id) && matchLabels(parseJson(r.labels, {}), req.labels)).map((r) => r.id));
          for (const id of req.preferred) if (ok.has(id) && !picks.includes(id) && picks.length < req.count) picks.push(id);
        }
        if (!cands.has(req.datacenter)) cands.set(req.datacenter, { rows: [], after: '', done: false, chunks: 0 });
        const c = cands.get(req.datacenter)!;
        for (let i = 0; picks.length < req.count; i++) {
          if (i >= c.rows.length) {
            if (c.done) break;
            await more(req.datacenter);
            if (i >= c.rows.length) break;
          }
          const r = c.rows[i]!;
          if (takenInBatch.has(r.id) || picks.includes(r.id) || !matchLabels(r.labels, req.labels)) continue;
          picks.push(r.id);
        }
        if (picks.length < req.count) {
          const lbl = Object.keys(req.labels).length ? ` with labels ${Object.entries(req.labels).map(([k, v]) => `${k}=${v}`).join(',')}` : '';
          throw new ExhaustedError('inventory.servers_exhausted', `only ${picks.length} of the ${req.count} requested servers of type ${typeId}${lbl} are available in ${req.datacenter}`, { details: { type: typeId, datacenter: req.datacenter, requested: req.count, available: picks.length } });
        }
        const set = {
          state: 'allocated', state_reason: `allocated to ${req.holder}`, state_changed_at: now, updated_at: now, holder: req.holder, allocated_at: now,
          reservation_id: req.hold?.reservationId ?? null, expires_at: req.hold?.expiresAt ?? null,
        };
        // the conditional update is the last word: a server someone else took aborts and retries the transaction
        if (req.key) {
          for (const [i, id] of picks.entries()) {
            const u = await trx.updateTable('inv_servers').set({ ...set, idem_key: `${req.key}#${i}` }).where('id', '=', id).where('state', '=', 'available').executeTakeFirst();
            if (Number(u.numUpdatedRows) !== 1) throw new RaceLost(`server ${id} was taken concurrently`);
          }
        } else {
          const u = await trx.updateTable('inv_servers').set(set).where('id', 'in', picks).where('state', '=', 'available').executeTakeFirst();
          if (Number(u.numUpdatedRows) !== picks.length) throw new RaceLost(`a server of ${picks.join(', ')} was taken concurrently`);
        }
        for (const id of picks) {
          takenInBatch.add(id);
          events.push({ id: newId('sev'), server_id: id, from_state: 'available', to_state: 'allocated', reason: `allocated to ${req.holder}`, actor: 'system', at: now });
        }
        granted.push({ index: outcomes.length, picks });
        outcomes.push({ ok: true, value: [] });
      } catch (e) {
        if (e instanceof RaceLost) throw e;
        outcomes.push({ ok: false, error: e });
      }
    }
    for (let i = 0; i < events.length; i += 500) await trx.insertInto('inv_server_events').values(events.slice(i, i + 500)).execute();
    const ids = granted.flatMap((g) => g.picks);
    const byId = new Map<string, Server>();
    for (let i = 0; i < ids.length; i += 500) {
      const rows = await trx.selectFrom('inv_servers').leftJoin('inv_racks', 'inv_racks.id', 'inv_servers.rack_id').selectAll('inv_servers').select('inv_racks.name as rack_name')
        .where('inv_servers.id', 'in', ids.slice(i, i + 500)).execute();
      for (const r of rows) byId.set(r.id, toServer(r, r.rack_name));
    }
    for (const g of granted) outcomes[g.index] = { ok: true, value: g.picks.map((id) => byId.get(id)!) };
    return outcomes;
  }

  /**
   * Releases servers (by id or holder). Allocated servers return to
   * `available`; servers that were provisioned go to `deprovisioning`, from
   * where the provider cleans them back to `available`.
   */
  async releaseServers(ref: { ids?: string[]; holder?: string; reason?: string; actor?: string }): Promise<Server[]> {
    if (!ref.ids && !ref.holder) throw new ValidationError('inventory.invalid_input', 'ids: give server ids or a holder to release', { details: { field: 'ids' } });
    const out = await withTx(this.store, (trx) => this.releaseWhereTx(trx, ref, ref.reason ?? 'released', ref.actor ?? 'system'));
    for (const s of out) this.emit('inventory.server.transition', s.id, { serial: s.serial, to: s.state, reason: ref.reason ?? 'released', actor: ref.actor ?? 'system' });
    await this.notifyCapacity(out.filter((s) => s.state === 'available').map((s) => ({ type: s.type, datacenter: s.datacenter })));
    return out;
  }

  private async releaseWhereTx(trx: Trx, w: { ids?: string[]; holder?: string; reservationId?: string; expiredBefore?: number }, reason: string, actor: string): Promise<Server[]> {
    let q = trx.selectFrom('inv_servers').selectAll();
    if (w.ids) q = q.where('id', 'in', w.ids.length ? w.ids : ['']);
    if (w.holder) q = q.where('holder', '=', w.holder);
    if (w.reservationId) q = q.where('reservation_id', '=', w.reservationId);
    if (w.expiredBefore !== undefined) q = q.where('expires_at', 'is not', null).where('expires_at', '<=', w.expiredBefore);
    const rows = await q.orderBy('id').execute();
    const out: Server[] = [];
    for (const r0 of rows) {
      const r = await this.lockServer(trx, r0.id);
      if (r.state === 'allocated') out.push(await this.transitionTx(trx, r, 'available', reason, actor));
      else if (r.state === 'provisioning' || r.state === 'provisioned' || r.state === 'failed') out.push(await this.transitionTx(trx, r, 'deprovisioning', reason, actor));
      else out.push(await this.toServer(trx, r));
    }
    return out;
  }

  /** Makes the servers of a reservation permanent (its hold no longer expires). */
  async commitHold(trx: Trx, reservationId: string): Promise<number> {
    const r = await trx.updateTable('inv_servers').set({ expires_at: null }).where('reservation_id', '=', reservationId).executeTakeFirst();
    return Number(r.numUpdatedRows);
  }

  /** Releases the servers of a reservation (abort, expiry). Call `notifyCapacityFor` after commit. */
  async releaseHold(trx: Trx, reservationId: string): Promise<Server[]> {
    return this.releaseWhereTx(trx, { reservationId }, `reservation ${reservationId} released`, 'system');
  }

  /** Releases servers whose hold expired (a reservation never committed, a crash before commit). */
  async sweepExpired(now = this.clock.now()): Promise<number> {
    const out = await withTx(this.store, (trx) => this.releaseWhereTx(trx, { expiredBefore: now }, 'hold expired', 'system'));
    await this.notifyCapacityFor(out);
    return out.length;
  }

  /** Wakes runs waiting for the capacity these servers add (call after commit). */
  async notifyCapacityFor(servers: Server[]): Promise<void> {
    await this.notifyCapacity(servers.filter((s) => s.state === 'available').map((s) => ({ type: s.type, datacenter: s.datacenter })));
  }

  private async notifyCapacity(pairs: { type: string; datacenter: string }[]): Promise<void> {
    if (this.listeners.length === 0 || pairs.length === 0) return;
    const seen = new Set<string>();
    for (const p of pairs) {
      const k = `${p.type}\u0000${p.datacenter}`;
      if (seen.has(k)) continue;
      seen.add(k);
      const rows = await this.store.db.selectFrom('inv_capacity_waiters').select('run_id').where('type_id', '=', p.type).where('datacenter_id', '=', p.datacenter).execute();
      if (rows.length === 0) continue;
      for (const l of this.listeners) await l({ type: p.type, datacenter: p.datacenter, runIds: rows.map((r) => r.run_id) });
    }
  }

  /** Counts by state for every server type and datacenter that has servers (one grouped query). */
  async utilization(): Promise<CapacitySummary[]> {
    const rows = await this.store.db.selectFrom('inv_servers').select(['type_id', 'datacenter_id', 'state', (eb) => eb.fn.countAll<number>().as('n')])
      .groupBy(['type_id', 'datacenter_id', 'state']).orderBy('type_id').orderBy('datacenter_id').execute();
    const out = new Map<string, CapacitySummary>();
    for (const r of rows) {
      const k = `${r.type_id}\0${r.datacenter_id}`;
      let c = out.get(k);
      if (!c) out.set(k, (c = { type: r.type_id, datacenter: r.datacenter_id, byState: {}, available: 0, total: 0 }));
      const n = Number(r.n);
      c.byState[r.state as ServerState] = n;
      c.total += n;
      if (r.state === 'available') c.available = n;
    }
    return [...out.values()];
  }

  /** Counts by state for a type in a datacenter; `available` honours labels. */
  async capacity(q: { type: string; datacenter: string; labels?: Record<string, string> }, trx: Trx = this.store.db): Promise<CapacitySummary> {
    await this.getServerType(q.type, trx);
    await this.getDatacenter(q.datacenter, trx);
    const rows = await trx.selectFrom('inv_servers').select(['state', (eb) => eb.fn.countAll<number>().as('n')]).where('type_id', '=', q.type).where('datacenter_id', '=', q.datacenter).groupBy('state').execute();
    const byState: Partial<Record<ServerState, number>> = {};
    let total = 0;
    for (const r of rows) {
      byState[r.state as ServerState] = Number(r.n);
      total += Number(r.n);
    }
    let available = byState.available ?? 0;
    if (q.labels && Object.keys(q.labels).length > 0) {
      const av = await trx.selectFrom('inv_servers').select('labels').where('type_id', '=', q.type).where('datacenter_id', '=', q.datacenter).where('state', '=', 'available').execute();
      available = av.filter((r) => matchLabels(parseJson(r.labels, {}), q.labels!)).length;
    }
    return { type: q.type, datacenter: q.datacenter, byState, available, total };
  }

  // -------------------------------------------------------------- hot pools

  async setHotPoolPolicy(input: HotPoolPolicyInput, trx?: Trx): Promise<HotPoolPolicy> {
    const p = parseInput(HotPoolPolicySchema, input, 'inventory');
    const db = trx ?? this.store.db;
    await this.getServerType(p.type, db);
    await this.getDatacenter(p.datacenter, db);
    const existing = await db.selectFrom('inv_hot_pools').select('id').where('type_id', '=', p.type).where('datacenter_id', '=', p.datacenter).executeTakeFirst();
    if (existing) await db.updateTable('inv_hot_pools').set({ min_ready: p.minReady, enabled: p.enabled ? 1 : 0 }).where('id', '=', existing.id).execute();
    else await db.insertInto('inv_hot_pools').values({ id: newId('hp'), type_id: p.type, datacenter_id: p.datacenter, min_ready: p.minReady, enabled: p.enabled ? 1 : 0, created_at: this.clock.now() }).execute();
    return p;
  }

  async listHotPoolPolicies(): Promise<HotPoolPolicy[]> {
    const rows = await this.store.db.selectFrom('inv_hot_pools').selectAll().orderBy('type_id').orderBy('datacenter_id').execute();
    return rows.map((r) => ({ type: r.type_id, datacenter: r.datacenter_id, minReady: r.min_ready, enabled: r.enabled === 1 }));
  }

  // ---------------------------------------------------------------- helpers

  private async lockServer(trx: Trx, id: string): Promise<InvServerTable> {
    let q = trx.selectFrom('inv_servers').selectAll().where('id', '=', id);
    if (this.pg) q = q.forUpdate();
    const r = await q.executeTakeFirst();
    if (!r) throw new NotFoundError('inventory.server_not_found', `serverId: server ${id} does not exist`, { details: { field: 'serverId', id } });
    return r;
  }

  private async rackId(trx: Trx, dc: string, name: string, field: string): Promise<string> {
    const r = await trx.selectFrom('inv_racks').select('id').where('datacenter_id', '=', dc).where('name', '=', name).executeTakeFirst();
    if (!r) throw new ValidationError('inventory.unknown_rack', `${field}: unknown rack "${name}" in datacenter ${dc}`, { details: { field } });
    return r.id;
  }

  private async recordEvent(trx: Trx, serverId: string, from: string | null, to: string, reason: string, actor: string): Promise<void> {
    await trx.insertInto('inv_server_events').values({ id: newId('sev'), server_id: serverId, from_state: from, to_state: to, reason, actor, at: this.clock.now() }).execute();
  }

  /** A rack's name; racks are never renamed or deleted, so the answer is kept for good. */
  private async rackName(id: string | null, trx: Trx = this.store.db): Promise<string | null> {
    if (id === null) return null;
    const known = this.rackNames.get(id);
    if (known !== undefined) return known;
    const r = await trx.selectFrom('inv_racks').select('name').where('id', '=', id).executeTakeFirst();
    if (r) this.rackNames.set(id, r.name);
    return r?.name ?? null;
  }

  private async toServer(trx: Trx, r: InvServerTable): Promise<Server> {
    return toServer(r, await this.rackName(r.rack_id, trx));
  }
}

export function matchLabels(have: Record<string, string>, want: Record<string, string>): boolean {
  for (const [k, v] of Object.entries(want)) if (have[k] !== v) return false;
  return true;
}

function toServer(r: InvServerTable, rack: string | null): Server {
  return {
    id: r.id, serial: r.serial, type: r.type_id, datacenter: r.datacenter_id, rack, position: r.position, state: r.state as ServerState,
    stateReason: r.state_reason, stateChangedAt: Number(r.state_changed_at), labels: parseJson(r.labels, {}), bmcAddress: r.bmc_address,
    hasBmcCredentials: r.bmc_credentials !== null, nics: parseJson<ServerNic[]>(r.nics, []), failureCount: r.failure_count,
    failureReasons: parseJson(r.failure_reasons, []), holder: r.holder, reservationId: r.reservation_id, expiresAt: r.expires_at === null ? null : Number(r.expires_at),
    allocatedAt: r.allocated_at === null ? null : Number(r.allocated_at), createdAt: Number(r.created_at), updatedAt: Number(r.updated_at),
  };
}

function unwrap<T>(o: Outcome<T>): T {
  if (o.ok) return o.value;
  throw o.error;
}

interface RegisterCache {
  types: Set<string>;
  dcs: Set<string>;
  racks: Map<string, string>;
  switches: Map<string, { id: string; port_count: number }>;
}

function rethrowPrefixed(e: unknown, prefix: string): never {
  if (e instanceof ValidationError && typeof e.details?.field === 'string') {
    const field = `${prefix}${e.details.field}`;
    throw new ValidationError(e.code, e.message.replace(/^[^:]+:/, `${field}:`), { details: { ...e.details, field } });
  }
  throw e;
}

function rethrowField(e: unknown, field: string): never {
  if (e instanceof ValidationError && e.details?.field && e.details.field !== field) {
    const msg = e.message.replace(/^[^:]+:/, `${field}:`);
    throw new ValidationError(e.code, msg, { details: { ...e.details, field } });
  }
  throw e;
}

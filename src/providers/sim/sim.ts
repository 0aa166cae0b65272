import { sql } from 'kysely';
import { systemClock, type Clock } from '../../core/clock.js';
import { isUniqueViolation } from '../../store/errors.js';
import { InfraflowError, NotFoundError, ValidationError } from '../../core/errors.js';
import { isSealed, SecretBox } from '../../core/secrets.js';
import { newId } from '../../core/ids.js';
import { zodError } from '../../core/input.js';
import { allows as firewallAllows, type Verdict } from './firewall.js';
import { seededRng, seedFrom } from '../../core/rng.js';
import type { Store, Trx } from '../../store/store.js';
import { ProviderError } from '../../resources/errors.js';
import { cpuMillis, KINDS, memoryMiB, parseSpec } from '../../resources/kinds.js';
import type { Condition, CreateResult, ProviderCallContext, ProviderOp, ReadResult } from '../../resources/types.js';
import { BEHAVIOURS, recordFqdn, schedulePods } from './behaviours.js';
import { DEFAULT_FLAVORS, DEFAULT_IMAGES, DEFAULT_LATENCY, DEFAULT_OS_TEMPLATES, QuotaPatchSchema, QuotaSchema, type Quota, type QuotaPatch, SimConfigSchema, type LatencySpec, type SimConfig, type SimConfigInput } from './catalogue.js';
import { decideFault, FaultConfig, NO_FAULT, type FaultDecision } from './faults.js';
import type { SimObjectTable } from './migrations.js';
import { rowToObject, type Behaviour, type SimBackends, type SimObject, type SimOp, type SimPhase, type SimTx, type View, type ViewContext } from './model.js';
import './migrations.js';

export interface SimOptions {
  store: Store;
  clock?: Clock;
  config?: SimConfigInput;
  backends?: SimBackends;
  /**
   * Base64 32-byte installation key (core/secrets resolveSecretKey): the
   * credentials the simulated backends generate (a cluster's admin password
   * and token) are sealed with it at rest. Without it they are stored unencrypted.
   */
  secretKey?: string | undefined;
}

export interface HostInfo {
  name: string;
  zone: string;
  vcpus: number;
  vcpuCapacity: number;
  usedVcpus: number;
  ramMb: number;
  usedRamMb: number;
  enabled: boolean;
}

export interface LogLine {
  at: number;
  source: string;
  text: string;
}

export interface WorkloadMetrics {
  workload: string;
  replicas: number;
  readyReplicas: number;
  requestsPerSecond: number;
  /** Mean CPU use of running pods relative to their request (1.0 = 100 %). */
  cpuUtilization: number;
  memoryUtilization: number;
  pods: { name: string; node: string | null; phase: string; cpuMillis: number; memoryMiB: number }[];
  at: number;
}

export interface DnsAnswer {
  name: string;
  type: string;
  rcode: 'NOERROR' | 'NXDOMAIN';
  answers: { name: string; type: string; ttl: number; value: string }[];
}

const LIVE_PHASES = ['creating', 'ready', 'updating', 'deleting'];

function toProviderError(e: unknown): unknown {
  if (e instanceof ProviderError) return e;
  if (e instanceof ValidationError) return new ProviderError('InvalidSpec', e.message.replace(/^[^:]+: /, ''), { details: e.details ?? {} });
  return e;
}

/**
 * The simulated datacenter. Every object lives in the store (sim_objects),
 * every operation completes by time (op_due on the injected clock, with
 * durations divided by the speed factor), so a restart finds operations
 * where they were and they finish on schedule.
 */
export class SimDatacenter {
  readonly store: Store;
  readonly clock: Clock;
  readonly config: SimConfig;
  readonly backends: SimBackends;
  private rr = new Map<string, number>();
  /** Releases in other areas that failed after commit (most recent last). */
  readonly releaseErrors: string[] = [];
  private initialized = false;
  private readonly box: SecretBox | undefined;

  constructor(opts: SimOptions) {
    this.store = opts.store;
    this.clock = opts.clock ?? systemClock;
    this.config = SimConfigSchema.parse(opts.config ?? {});
    this.backends = opts.backends ?? {};
    this.box = opts.secretKey ? new SecretBox(Buffer.from(opts.secretKey, 'base64')) : undefined;
  }

  /** Seeds hypervisors, the catalogue and settings (idempotent); applies the configured speed. */
  async init(): Promise<this> {
    const db = this.store.db;
    const now = this.clock.now();
    const hosts = await db.selectFrom('sim_hosts').select(['id']).execute();
    if (hosts.length === 0) {
      for (const h of this.config.hosts) {
        await db.insertInto('sim_hosts').values({ id: h.name, name: h.name, zone: h.zone, vcpus: h.vcpus, ram_mb: h.ramMb, used_vcpus: 0, used_ram_mb: 0, cpu_ratio: h.cpuRatio, enabled: 1 }).onConflict((oc) => oc.doNothing()).execute();
      }
    }
    const seedObj = async (kind: string, name: string, spec: Record<string, unknown>, outputs: Record<string, unknown>) => {
      const id = `${BEHAVIOURS[kind]!.prefix}-${name.toLowerCase().replace(/[^a-z0-9]+/g, '-')}`;
      const parsed = parseSpec(kind, spec);
      await db.insertInto('sim_objects').values({
        id, kind, project: '*', name, create_key: `catalogue:${kind}:${name}`, spec: JSON.stringify(parsed), actual: JSON.stringify(parsed), outputs: JSON.stringify({ id, ...outputs }),
        state: '{}', phase: 'ready', op: null, op_started: null, op_due: null, op_sim_ms: null, op_stuck: 0, op_fail: null, failure: null, host: null, created_at: now, updated_at: now, deleted_at: null,
      }).onConflict((oc) => oc.doNothing()).execute();
    };
    for (const f of DEFAULT_FLAVORS) await seedObj('compute/Flavor', f.name, f, { name: f.name, vcpus: f.vcpus, ramMb: f.ramMb, diskGb: f.diskGb, extraSpecs: f.extraSpecs });
    for (const i of DEFAULT_IMAGES) await seedObj('compute/Image', i.name, { ...i, visibility: 'public' }, { name: i.name, status: 'active', properties: i.properties, minDiskGb: i.minDiskGb, minRamMb: i.minRamMb, diskFormat: 'qcow2' });
    const seed = await db.selectFrom('sim_settings').select(['value']).where('key', '=', 'seed').executeTakeFirst();
    if (!seed) await this.putSetting('seed', this.config.seed);
    if (!(await db.selectFrom('sim_settings').select(['value']).where('key', '=', 'faults').executeTakeFirst())) await this.putSetting('faults', { rules: [] });
    await this.setSpeed(this.config.speed);
    await this.backends.prepare?.();
    await this.syncHosts();
    this.initialized = true;
    return this;
  }

  private async ensureInit(): Promise<void> {
    if (!this.initialized) await this.init();
  }

  // ---- settings -----------------------------------------------------------------

  private async putSetting(key: string, value: unknown): Promise<void> {
    await this.store.db.insertInto('sim_settings').values({ key, value: JSON.stringify(value) }).onConflict((oc) => oc.column('key').doUpdateSet({ value: JSON.stringify(value) })).execute();
  }

  private async getSetting<T>(key: string, fallback: T): Promise<T> {
    const row = await this.store.db.selectFrom('sim_settings').select(['value']).where('key', '=', key).executeTakeFirst();
    return row ? (JSON.parse(row.value) as T) : fallback;
  }

  async getSpeed(): Promise<number> {
    return this.getSetting('speed', this.config.speed);
  }

  /**
   * Changes the speed factor. Operations in flight keep the simulated time
   * they still need: their due times are rescaled from now.
   */
  async setSpeed(speed: number): Promise<number> {
    if (!(speed > 0) || !Number.isFinite(speed)) throw new ValidationError('sim.invalid_speed', `sim speed must be a positive number (got ${speed}); e.g. 600 runs ten minutes of simulated time per real second`);
    await this.store.transaction(async (trx) => {
      const row = await trx.selectFrom('sim_settings').select(['value']).where('key', '=', 'speed').executeTakeFirst();
      const old = row ? (JSON.parse(row.value) as number) : speed;
      if (old !== speed) {
        const now = this.clock.now();
        const pending = await trx.selectFrom('sim_objects').select(['id', 'op_due', 'op_started']).where('op', 'is not', null).where('op_due', 'is not', null).execute();
        for (const p of pending) {
          const due = Number(p.op_due);
          const started = Number(p.op_started ?? now);
          const remaining = Math.max(0, due - now);
          const elapsed = Math.max(0, now - started);
          await trx.updateTable('sim_objects').set({ op_due: now + Math.round((remaining * old) / speed), op_started: now - Math.round((elapsed * old) / speed) }).where('id', '=', p.id).execute();
        }
      }
      await trx.insertInto('sim_settings').values({ key: 'speed', value: JSON.stringify(speed) }).onConflict((oc) => oc.column('key').doUpdateSet({ value: JSON.stringify(speed) })).execute();
    });
    return speed;
  }

  async getFaults(): Promise<FaultConfig> {
    return FaultConfig.parse(await this.getSetting('faults', { rules: [] }));
  }

  /** Replaces the fault rules (validated). `{ rules: [] }` turns injection off. */
  async setFaults(input: unknown): Promise<FaultConfig> {
    const r = FaultConfig.safeParse(input);
    if (!r.success) throw zodError('sim.invalid_faults', r.error, { what: 'fault config', root: '(faults)' });
    await this.putSetting('faults', r.data);
    return r.data;
  }

  /** A project's quota (its own, else the configured default). */
  async getQuota(project: string): Promise<Quota> {
    return QuotaSchema.parse({ ...this.config.quota, ...(await this.getSetting<object>(`quota:${project}`, {})) });
  }

  /**
   * Changes part of a project's quota: the fields given replace the stored
   * ones, the others keep their stored value (or keep following the
   * configured default); running out gives QuotaExceeded, as a cloud would.
   * One transaction (the row locked on PostgreSQL), so concurrent partial
   * changes do not lose each other.
   */
  async setQuota(project: string, patch: QuotaPatch): Promise<Quota> {
    const given = Object.fromEntries(Object.entries(patch ?? {}).filter(([, v]) => v !== undefined));
    const r = QuotaPatchSchema.safeParse(given);
    if (!r.success) {
      const e = zodError('sim.invalid_quota', r.error, { what: 'quota', root: '(quota)' });
      throw new ValidationError(e.code, `${e.message}; the fields are instances, cores, ramMb, floatingIps, volumeGb (integers >= 0)`, { ...(e.details ? { details: e.details } : {}) });
    }
    const key = `quota:${project}`;
    await this.store.transaction(async (trx) => {
      await trx.insertInto('sim_settings').values({ key, value: '{}' }).onConflict((oc) => oc.column('key').doNothing()).execute();
      let q = trx.selectFrom('sim_settings').select(['value']).where('key', '=', key);
      if (this.store.dialect === 'postgres') q = q.forUpdate();
      const row = await q.executeTakeFirstOrThrow();
      const merged = { ...(JSON.parse(row.value) as object), ...r.data };
      await trx.updateTable('sim_settings').set({ value: JSON.stringify(merged) }).where('key', '=', key).execute();
    });
    return this.getQuota(project);
  }

  async getSeed(): Promise<number> {
    return this.getSetting('seed', this.config.seed);
  }

  async setSeed(seed: number): Promise<void> {
    if (!Number.isInteger(seed)) throw new ValidationError('sim.invalid_seed', 'sim seed must be an integer');
    await this.putSetting('seed', seed);
  }

  // ---- time ---------------------------------------------------------------------

  private latency(kind: string, op: ProviderOp, key: string, seed: number): number {
    const spec: LatencySpec = this.config.latency[kind]?.[op] ?? DEFAULT_LATENCY[kind]?.[op] ?? { meanMs: 1000, stddevMs: 0, minMs: 0 };
    const rng = seededRng(seedFrom(`latency|${op}|${key}`, seed));
    return Math.max(spec.minMs, spec.stddevMs > 0 ? rng.normal(spec.meanMs, spec.stddevMs) : spec.meanMs);
  }

  /** Completes every operation whose due time has passed. Returns how many completed. */
  async settle(): Promise<number> {
    const now = this.clock.now();
    const due = await this.store.db.selectFrom('sim_objects').select(['id', 'op', 'op_due']).where('op', 'is not', null).where('op_stuck', '=', 0).where('op_due', '<=', now).where('deleted_at', 'is', null).orderBy('op_due').execute();
    let n = 0;
    const seed = due.length ? await this.getSeed() : 0;
    for (const d of due) {
      const done = await this.txn(async (trx, after) => {
        const fenced = await trx.updateTable('sim_objects').set({ op: null }).where('id', '=', d.id).where('op', '=', d.op).where('op_due', '=', Number(d.op_due)).executeTakeFirst();
        if (Number(fenced.numUpdatedRows) !== 1) return false;
        const row = await trx.selectFrom('sim_objects').selectAll().where('id', '=', d.id).executeTakeFirstOrThrow();
        const obj = { ...rowToObject(row), op: d.op as SimOp };
        await this.finish(this.tx(trx, now, 'settle', seed, after), obj);
        return true;
      });
      if (done) n++;
    }
    return n;
  }

  private async finish(tx: SimTx, obj: SimObject): Promise<void> {
    const b = BEHAVIOURS[obj.kind]!;
    const op = obj.op!;
    if (op === 'delete') {
      obj.phase = 'deleted';
      obj.deletedAt = tx.now;
      await tx.releaseOwner(obj.id);
      await b.release?.(tx, obj);
    } else if (obj.opFail) {
      obj.phase = 'failed';
      obj.failure = obj.opFail;
      if (obj.outputs.status !== undefined) obj.outputs.status = 'ERROR';
      if (op === 'create') {
        await tx.releaseOwner(obj.id);
        await b.release?.(tx, obj);
      }
    } else {
      obj.phase = 'ready';
      await b.complete?.(tx, obj, op);
    }
    obj.op = null;
    obj.opDue = null;
    obj.opStarted = null;
    obj.opSimMs = null;
    obj.opFail = null;
    obj.stuck = false;
    await tx.save(obj);
  }

  // ---- transactions ----------------------------------------------------------------

  /** A write transaction whose `after` callbacks run once it has committed (best effort: a failed release is left for the owner's sweep). */
  private async txn<T>(fn: (trx: Trx, after: (() => Promise<void>)[]) => Promise<T>): Promise<T> {
    const after: (() => Promise<void>)[] = [];
    const result = await this.store.transaction((trx) => fn(trx, after));
    for (const f of after) {
      try {
        await f();
      } catch (e) {
        this.releaseErrors.push(e instanceof Error ? e.message : String(e));
        if (this.releaseErrors.length > 100) this.releaseErrors.shift();
      }
    }
    return result;
  }

  private tx(trx: Trx, now: number, key: string, seed: number, after: (() => Promise<void>)[] = []): SimTx {
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const self = this;
    const liveQuery = (kinds: string[]) => trx.selectFrom('sim_objects').selectAll().where('kind', 'in', kinds).where('deleted_at', 'is', null).where('phase', 'in', LIVE_PHASES);
    const tx: SimTx = {
      trx, now, config: this.config, speed: 1, rng: seededRng(seedFrom(`tx|${key}`, seed)), key, backends: this.backends,
      async find(kinds, ref, project) {
        const ks = Array.isArray(kinds) ? kinds : [kinds];
        const byId = await liveQuery(ks).where('id', '=', ref).executeTakeFirst();
        if (byId) return rowToObject(byId);
        const byName = await liveQuery(ks).where('name', '=', ref).where('project', 'in', [project, '*']).execute();
        const pick = byName.find((r) => r.project === project) ?? byName[0];
        return pick ? rowToObject(pick) : undefined;
      },
      async must(kinds, ref, project, field) {
        const o = await tx.find(kinds, ref, project);
        if (!o) throw new ProviderError('InvalidSpec', `${field}: ${Array.isArray(kinds) ? kinds.join(' or ') : kinds} "${ref}" does not exist (or is deleted or failed)`);
        return o;
      },
      async listLive(kind) {
        return (await liveQuery([kind]).orderBy('id').execute()).map(rowToObject);
      },
      async allocate(pool, owner, pick, what) {
        for (let i = 0; i < 8; i++) {
          const taken = new Set((await trx.selectFrom('sim_allocations').select(['value']).where('pool', '=', pool).execute()).map((r) => r.value));
          const v = pick(taken);
          if (v === undefined) throw new ProviderError('CapacityExhausted', `could not allocate ${what}`, { details: { pool } });
          const r = await trx.insertInto('sim_allocations').values({ pool, value: v, owner, created_at: now }).onConflict((oc) => oc.doNothing()).returning('value').executeTakeFirst();
          if (r) return v;
        }
        throw new ProviderError('Conflict', `could not allocate ${what}: too much contention, try again`, { retryable: true });
      },
      async allocateValue(pool, value, owner, what) {
        const cur = await trx.selectFrom('sim_allocations').select(['owner']).where('pool', '=', pool).where('value', '=', value).executeTakeFirst();
        if (cur) {
          if (cur.owner === owner) return;
          throw new ProviderError('Conflict', `${what} is already in use (by ${cur.owner.split('/')[0]})`, { details: { pool, value } });
        }
        const r = await trx.insertInto('sim_allocations').values({ pool, value, owner, created_at: now }).onConflict((oc) => oc.doNothing()).returning('value').executeTakeFirst();
        if (!r) throw new ProviderError('Conflict', `${what} was just taken by someone else`, { retryable: true });
      },
      afterCommit(fn) {
        after.push(fn);
      },
      async quota(project) {
        const row = await trx.selectFrom('sim_settings').select(['value']).where('key', '=', `quota:${project}`).executeTakeFirst();
        return QuotaSchema.parse({ ...self.config.quota, ...(row ? (JSON.parse(row.value) as object) : {}) });
      },
      async releaseOwner(owner) {
        const releaseFip = self.backends.releaseFloatingIp;
        if (releaseFip) {
          const ext = await trx.selectFrom('sim_allocations').select(['value', 'owner']).where('pool', 'like', 'fip-ext:%').where((eb) => eb.or([eb('owner', '=', owner), eb('owner', 'like', `${owner}/%`)])).execute();
          for (const x of ext) after.push(() => releaseFip({ ref: x.value, holder: `sim:${x.owner}` }));
        }
        await trx.deleteFrom('sim_allocations').where((eb) => eb.or([eb('owner', '=', owner), eb('owner', 'like', `${owner}/%`)])).execute();
        const pls = await trx.selectFrom('sim_placements').selectAll().where((eb) => eb.or([eb('owner', '=', owner), eb('owner', 'like', `${owner}/%`)])).execute();
        for (const p of pls) {
          await trx.updateTable('sim_hosts').set((eb) => ({ used_vcpus: eb('used_vcpus', '-', p.vcpus), used_ram_mb: eb('used_ram_mb', '-', p.ram_mb) })).where('name', '=', p.host).execute();
        }
        if (pls.length) await trx.deleteFrom('sim_placements').where((eb) => eb.or([eb('owner', '=', owner), eb('owner', 'like', `${owner}/%`)])).execute();
      },
      async place(owner, vcpus, ramMb, zone) {
        let q = trx.selectFrom('sim_hosts').selectAll().where('enabled', '=', 1);
        if (zone) q = q.where('zone', '=', zone);
        const hosts = await q.execute();
        const fits = hosts
          .map((h) => ({ h, cpuFree: Math.floor(Number(h.vcpus) * Number(h.cpu_ratio)) - Number(h.used_vcpus), ramFree: Number(h.ram_mb) - Number(h.used_ram_mb) }))
          .filter((x) => x.cpuFree >= vcpus && x.ramFree >= ramMb)
          .sort((a, b) => b.ramFree - a.ramFree || (a.h.name < b.h.name ? -1 : 1));
        for (const { h } of fits) {
          const r = await trx.updateTable('sim_hosts').set((eb) => ({ used_vcpus: eb('used_vcpus', '+', vcpus), used_ram_mb: eb('used_ram_mb', '+', ramMb) }))
            .where('id', '=', h.id).where(sql<boolean>`used_vcpus + ${vcpus} <= vcpus * cpu_ratio`).where(sql<boolean>`used_ram_mb + ${ramMb} <= ram_mb`).executeTakeFirst();
          if (Number(r.numUpdatedRows) === 1) {
            await trx.insertInto('sim_placements').values({ owner, host: h.name, vcpus, ram_mb: ramMb }).execute();
            return h.name;
          }
        }
        const best = hosts.map((h) => Number(h.ram_mb) - Number(h.used_ram_mb)).sort((a, b) => b - a)[0] ?? 0;
        throw new ProviderError('NoValidHost', `No valid host was found: no hypervisor${zone ? ` in zone ${zone}` : ''} has ${vcpus} vCPU and ${ramMb} MB RAM free (the emptiest has ${best} MB RAM free); free capacity or pick a smaller flavor`, { details: { vcpus, ramMb, zone } });
      },
      async save(obj) {
        await trx.updateTable('sim_objects').set({
          spec: JSON.stringify(obj.spec), actual: JSON.stringify(obj.actual), outputs: JSON.stringify(obj.outputs), state: JSON.stringify(obj.state), phase: obj.phase, op: obj.op,
          op_started: obj.opStarted, op_due: obj.opDue, op_sim_ms: obj.opSimMs, op_stuck: obj.stuck ? 1 : 0, op_fail: obj.opFail ? JSON.stringify(obj.opFail) : null,
          failure: obj.failure ? JSON.stringify(obj.failure) : null, host: obj.host, updated_at: now, deleted_at: obj.deletedAt,
        }).where('id', '=', obj.id).execute();
      },
    };
    return tx;
  }

  private behaviour(kind: string): Behaviour {
    const b = BEHAVIOURS[kind];
    if (!b) throw new ProviderError('InvalidSpec', `the simulator does not implement kind ${kind}`);
    return b;
  }

  private parse(kind: string, spec: unknown): Record<string, any> {
    try {
      return parseSpec(kind, spec);
    } catch (e) {
      throw toProviderError(e);
    }
  }

  /** Counts an attempt of a mutating call and decides its faults. */
  private async attempt(op: ProviderOp, kind: string, key: string): Promise<{ fault: FaultDecision; seed: number; speed: number }> {
    const settings = new Map((await this.store.db.selectFrom('sim_settings').select(['key', 'value']).where('key', 'in', ['seed', 'speed', 'faults']).execute()).map((r) => [r.key, JSON.parse(r.value) as unknown]));
    const seed = (settings.get('seed') as number | undefined) ?? this.config.seed;
    const speed = (settings.get('speed') as number | undefined) ?? this.config.speed;
    const faults = FaultConfig.parse(settings.get('faults') ?? { rules: [] });
    if (faults.rules.length === 0) return { fault: NO_FAULT, seed, speed };
    const callKey = `${op}:${key}`;
    const attempt = await this.store.transaction(async (trx) => {
      const row = await trx.selectFrom('sim_calls').select(['attempts']).where('key', '=', callKey).executeTakeFirst();
      const n = (row ? Number(row.attempts) : 0) + 1;
      if (row) await trx.updateTable('sim_calls').set({ attempts: n }).where('key', '=', callKey).execute();
      else await trx.insertInto('sim_calls').values({ key: callKey, op, object_id: null, attempts: n, created_at: this.clock.now() }).execute();
      return n;
    });
    return { fault: decideFault(faults.rules, kind, op, key, attempt, seed), seed, speed };
  }

  private async injectCallFaults(fault: FaultDecision, kind: string, op: ProviderOp | 'read', signal?: AbortSignal): Promise<void> {
    if (fault.hang) {
      await new Promise<never>((_, reject) => {
        const fail = () => reject(new ProviderError('Timeout', `${kind} ${op}: the backend did not answer (injected hang); the call was cut`, { retryable: true }));
        if (!signal) return;
        if (signal.aborted) return fail();
        signal.addEventListener('abort', fail, { once: true });
      });
    }
    if (fault.transient) throw new ProviderError('BackendUnavailable', `${kind} ${op}: the backend answered 503 Service Unavailable (injected transient fault); try again`, { retryable: true });
  }

  // ---- provider operations ------------------------------------------------------------

  async create(kind: string, input: unknown, ctx: ProviderCallContext): Promise<CreateResult> {
    await this.ensureInit();
    const b = this.behaviour(kind);
    const spec = this.parse(kind, input);
    await this.settle();
    const existing = await this.store.db.selectFrom('sim_objects').selectAll().where('create_key', '=', ctx.idempotencyKey).executeTakeFirst();
    if (existing) return this.createResult(rowToObject(existing), kind);
    const { fault, seed, speed } = await this.attempt('create', kind, ctx.idempotencyKey);
    await this.injectCallFaults(fault, kind, 'create', ctx.signal);
    const now = this.clock.now();
    const simMs = this.latency(kind, 'create', ctx.idempotencyKey, seed) * fault.slowFactor;
    const obj: SimObject = {
      id: newId(b.prefix, now), kind, project: ctx.project, name: ctx.resourceName, createKey: ctx.idempotencyKey, spec, actual: structuredClone(spec), outputs: {}, state: {},
      phase: 'creating', op: 'create', opStarted: now, opDue: now + Math.round(simMs / speed), opSimMs: simMs, stuck: fault.stuck,
      opFail: fault.permanent ? { reason: fault.permanent, message: `${kind} ${ctx.resourceName}: the backend reported ERROR (injected permanent fault, reason ${fault.permanent})` } : null,
      failure: null, host: null, createdAt: now, updatedAt: now, deletedAt: null,
    };
    try {
      await this.txn(async (trx, after) => {
        await trx.insertInto('sim_objects').values(objectRow(obj)).execute();
        const tx = this.tx(trx, now, ctx.idempotencyKey, seed, after);
        tx.speed = speed;
        const res = await b.create?.(tx, obj);
        if (res?.outputs) obj.outputs = res.outputs;
        if (res?.state) obj.state = res.state;
        if (res?.host !== undefined) obj.host = res.host;
        if (res?.fail && !obj.opFail) obj.opFail = res.fail;
        if (res?.credentials) await trx.updateTable('sim_objects').set({ secrets: this.sealCredentials(obj.id, res.credentials) }).where('id', '=', obj.id).execute();
        if (fault.degraded && kind === 'container/Cluster') {
          const workers = (obj.state.nodes as { name: string; role: string }[]).filter((n) => n.role === 'worker');
          obj.state.health = { notReadyNodes: workers.slice(-1).map((n) => n.name), degradedOperators: [obj.spec.distribution === 'openshift' ? 'ingress' : 'coredns'] };
        }
        // Due already (a high speed factor): complete in the same transaction.
        if (!obj.stuck && obj.opDue! <= now) await this.finish(tx, obj);
        else await tx.save(obj);
      });
    } catch (e) {
      if (isUniqueViolation(e)) {
        const again = await this.store.db.selectFrom('sim_objects').selectAll().where('create_key', '=', ctx.idempotencyKey).executeTakeFirst();
        if (again) return this.createResult(rowToObject(again), kind);
      }
      throw toProviderError(e);
    }
    if (!obj.stuck && obj.opDue! <= this.clock.now()) await this.settle();
    const after = await this.getObject(obj.id);
    return this.createResult(after ?? obj, kind);
  }

  private createResult(o: SimObject, kind: string): CreateResult {
    if (o.kind !== kind) throw new ProviderError('Conflict', `idempotency key ${o.createKey} was used for a ${o.kind}, not a ${kind}`);
    return { externalId: o.id, ready: o.phase === 'ready', outputs: o.outputs };
  }

  async read(kind: string, id: string, ctx?: Omit<ProviderCallContext, 'idempotencyKey'>): Promise<ReadResult> {
    await this.ensureInit();
    const readRules = (await this.getFaults()).rules.filter((r) => r.op === 'read');
    if (readRules.length) {
      const { key, attempt } = await this.countRead(id);
      await this.injectCallFaults(decideFault(readRules, kind, 'read', key, attempt, await this.getSeed()), kind, 'read', ctx?.signal);
    }
    await this.settle();
    const o = await this.getObject(id);
    if (!o || o.kind !== kind || o.phase === 'deleted') return { state: 'absent', outputs: {} };
    if (o.kind === 'container/Workload' && o.phase === 'ready' && (o.state.pods as { node: string | null }[]).some((p) => !p.node)) await this.reschedule(o);
    const fresh = (await this.getObject(id))!;
    return this.toRead(fresh, await this.view(fresh));
  }

  /**
   * Counts a read of an object (only while read fault rules exist) and
   * returns the key its fault decision uses: the object's create key (the
   * idempotency key, stable when a run is replayed with the same ids, unlike
   * the generated object id) and the object's read count in the database
   * (one atomic upsert: restarts continue it, simulators sharing a database
   * count together).
   */
  private async countRead(id: string): Promise<{ key: string; attempt: number }> {
    const obj = await this.store.db.selectFrom('sim_objects').select(['create_key']).where('id', '=', id).executeTakeFirst();
    const key = obj?.create_key ?? `id:${id}`;
    const row = await this.store.db.insertInto('sim_calls').values({ key: `read:${key}`, op: 'read', object_id: id, attempts: 1, created_at: this.clock.now() })
      .onConflict((oc) => oc.column('key').doUpdateSet((eb) => ({ attempts: eb('sim_calls.attempts', '+', 1) })))
      .returning('attempts').executeTakeFirstOrThrow();
    return { key, attempt: Number(row.attempts) };
  }

  private async view(o: SimObject): Promise<View> {
    const b = BEHAVIOURS[o.kind];
    if (!b?.view) return {};
    return b.view(await this.viewContext(), o);
  }

  private async viewContext(): Promise<ViewContext> {
    const now = this.clock.now();
    const speed = await this.getSpeed();
    const seed = await this.getSeed();
    const listLive = async (kind: string) => (await this.store.db.selectFrom('sim_objects').selectAll().where('kind', '=', kind).where('deleted_at', 'is', null).where('phase', 'in', LIVE_PHASES).orderBy('id').execute()).map(rowToObject);
    return {
      now, speed, seed, listLive,
      get: (id) => this.getObject(id),
      credentials: (id, generate) => this.credentials(id, generate),
      liveAddresses: async () => {
        const out = new Set<string>();
        for (const k of ['compute/Server', 'metal/Instance']) {
          for (const o of await listLive(k)) {
            if (o.phase !== 'ready' && o.phase !== 'updating') continue;
            if (o.actual.power === 'off') continue;
            for (const n of (o.outputs.addresses ?? []) as { ip: string }[]) out.add(n.ip);
          }
        }
        for (const w of await listLive('container/Workload')) if ((w.state.pods as { phase: string }[]).some((p) => p.phase === 'Running')) out.add(w.outputs.serviceIp);
        return out;
      },
    };
  }

  // ---- credentials -----------------------------------------------------------------

  /** Credentials are bound to their object (a sealed value copied to another row does not open). */
  private sealCredentials(id: string, credentials: Record<string, string>): string {
    if (!this.box) return 'plain:' + Buffer.from(JSON.stringify(credentials)).toString('base64');
    return this.box.sealJson(credentials, `sim:${id}`);
  }

  private openCredentials(id: string, text: string): Record<string, string> {
    if (text.startsWith('plain:')) return JSON.parse(Buffer.from(text.slice('plain:'.length), 'base64').toString('utf8')) as Record<string, string>;
    if (!isSealed(text)) throw new InfraflowError('sim.credentials_unreadable', `the stored credentials of simulator object ${id} are in an unknown format`);
    if (!this.box) throw new InfraflowError('sim.secret_key_missing', `the credentials of simulator object ${id} are encrypted: give the simulator the secretKey they were written with (INFRAFLOW_SECRET_KEY or data/secret.key)`);
    return this.box.openJson<Record<string, string>>(text, `sim:${id}`);
  }

  /** The object's stored credentials; one made before they were stored gets `generate()`'s, stored once (the first writer wins). */
  private async credentials(id: string, generate: () => Record<string, string>): Promise<Record<string, string>> {
    const get = async () => (await this.store.db.selectFrom('sim_objects').select(['secrets']).where('id', '=', id).executeTakeFirst())?.secrets ?? null;
    let text = await get();
    if (text === null) {
      await this.store.db.updateTable('sim_objects').set({ secrets: this.sealCredentials(id, generate()) }).where('id', '=', id).where('secrets', 'is', null).execute();
      text = await get();
      if (text === null) throw new ProviderError('NotFound', `simulator object ${id} does not exist`);
    }
    return this.openCredentials(id, text);
  }

  private progress(o: SimObject, now: number): { reason: string; message: string } {
    const b = BEHAVIOURS[o.kind]!;
    const stages = o.op === 'delete' ? b.deleteStages ?? ['Deleting'] : o.op === 'update' ? ['Updating'] : b.stages ?? ['Creating'];
    const started = o.opStarted ?? now;
    const due = o.opDue ?? now;
    const frac = due > started ? Math.min(0.999, Math.max(0, (now - started) / (due - started))) : 0.999;
    const i = Math.min(stages.length - 1, Math.floor(frac * stages.length));
    const reason = stages[i]!;
    const late = o.stuck && now > due;
    return { reason, message: late ? `${reason}: no progress for ${Math.round((now - due) / 1000)} s (the operation is stuck)` : `${reason} (${Math.round(frac * 100)}% of the expected time)` };
  }

  private toRead(o: SimObject, v: View): ReadResult {
    const now = this.clock.now();
    const outputs = { ...o.outputs, ...v.outputs };
    const observed = o.actual;
    switch (o.phase) {
      case 'creating':
      case 'updating':
      case 'deleting': {
        const p = this.progress(o, now);
        const type = o.phase === 'deleting' ? 'Deleted' : 'Provisioned';
        const conditions: Omit<Condition, 'lastTransitionTime'>[] = [{ type, status: 'False', reason: p.reason, message: p.message }];
        return { state: o.phase, outputs, observed, conditions, message: p.message };
      }
      case 'failed':
        return { state: 'failed', outputs, observed, failureReason: o.failure?.reason ?? 'Internal', message: o.failure?.message ?? 'failed', conditions: [{ type: 'Provisioned', status: 'False', reason: o.failure?.reason ?? 'Internal', message: o.failure?.message ?? 'failed' }] };
      case 'ready':
        return { state: v.state ?? 'ready', outputs, observed, conditions: v.conditions ?? [], ...(v.secrets ? { secrets: v.secrets } : {}), ...(v.state ? { message: v.conditions?.find((c) => c.status === 'False')?.message ?? 'not ready' } : {}) };
      default:
        return { state: 'absent', outputs: {} };
    }
  }

  async update(kind: string, id: string, input: unknown, ctx: ProviderCallContext): Promise<{ ready: boolean; outputs?: Record<string, unknown> }> {
    await this.ensureInit();
    const b = this.behaviour(kind);
    const spec = this.parse(kind, input);
    await this.settle();
    const o = await this.getObject(id);
    if (!o || o.kind !== kind || o.phase === 'deleted') throw new ProviderError('NotFound', `${kind} ${id} does not exist`);
    const callKey = `update:${ctx.idempotencyKey}`;
    const done = await this.store.db.selectFrom('sim_calls').select(['object_id']).where('key', '=', callKey).executeTakeFirst();
    if (done?.object_id) return { ready: o.phase === 'ready', outputs: o.outputs };
    if (o.phase === 'failed') throw new ProviderError('Conflict', `${kind} ${o.name} is in ERROR (${o.failure?.reason}); it cannot be updated: replace it`);
    if (o.op) throw new ProviderError('Conflict', `${kind} ${o.name} is busy (${o.phase}); try again when it is done`, { retryable: true });
    const replace = (KINDS[kind]?.replaceOnChange ?? []).filter((f) => JSON.stringify(o.spec[f]) !== JSON.stringify(spec[f]));
    if (replace.length) throw new ProviderError('InvalidSpec', `${kind} ${o.name}: ${replace.join(', ')} cannot change in place; replace the resource`, { details: { replaceFields: replace } });
    const { fault, seed, speed } = await this.attempt('update', kind, ctx.idempotencyKey);
    await this.injectCallFaults(fault, kind, 'update', ctx.signal);
    const now = this.clock.now();
    const simMs = this.latency(kind, 'update', ctx.idempotencyKey, seed) * fault.slowFactor;
    try {
      await this.txn(async (trx, after) => {
        const tx = this.tx(trx, now, ctx.idempotencyKey, seed, after);
        tx.speed = speed;
        const res = await b.update?.(tx, o, spec, o.spec);
        if (res?.outputs) o.outputs = res.outputs;
        if (res?.state) o.state = res.state;
        if (res?.host !== undefined) o.host = res.host;
        o.spec = spec;
        o.actual = structuredClone(spec);
        Object.assign(o, { phase: 'updating', op: 'update', opStarted: now, opDue: now + Math.round(simMs / speed), opSimMs: simMs, stuck: fault.stuck, opFail: fault.permanent ? { reason: fault.permanent, message: `${kind} ${o.name}: update failed (injected permanent fault, reason ${fault.permanent})` } : null });
        // Due already (a high speed factor): complete in the same transaction.
        if (!o.stuck && o.opDue! <= now) await this.finish(tx, o);
        else await tx.save(o);
        await trx.insertInto('sim_calls').values({ key: callKey, op: 'update', object_id: o.id, attempts: 1, created_at: now }).onConflict((oc) => oc.column('key').doUpdateSet({ object_id: o.id })).execute();
      });
    } catch (e) {
      throw toProviderError(e);
    }
    if (!o.stuck && o.opDue! <= this.clock.now()) await this.settle();
    const after = (await this.getObject(id))!;
    return { ready: after.phase === 'ready', outputs: after.outputs };
  }

  async delete(kind: string, id: string, ctx: ProviderCallContext): Promise<{ done: boolean }> {
    await this.ensureInit();
    const b = this.behaviour(kind);
    await this.settle();
    const o = await this.getObject(id);
    if (!o || o.kind !== kind || o.phase === 'deleted') return { done: true };
    if (o.phase === 'deleting') return { done: false };
    if (o.project === '*') throw new ProviderError('Conflict', `${kind} ${o.name} belongs to the public catalogue and cannot be deleted`);
    const { fault, seed, speed } = await this.attempt('delete', kind, ctx.idempotencyKey);
    await this.injectCallFaults(fault, kind, 'delete', ctx.signal);
    const now = this.clock.now();
    const simMs = this.latency(kind, 'delete', ctx.idempotencyKey, seed) * fault.slowFactor;
    try {
      await this.txn(async (trx, after) => {
        const tx = this.tx(trx, now, ctx.idempotencyKey, seed, after);
        if (o.phase !== 'failed') await b.checkDelete?.(tx, o);
        Object.assign(o, { phase: 'deleting', op: 'delete', opStarted: now, opDue: now + Math.round(simMs / speed), opSimMs: simMs, stuck: fault.stuck, opFail: null });
        // Due already (a high speed factor): complete in the same transaction.
        if (!o.stuck && o.opDue! <= now) await this.finish(tx, o);
        else await tx.save(o);
      });
    } catch (e) {
      throw toProviderError(e);
    }
    if (!o.stuck && o.opDue! <= this.clock.now()) await this.settle();
    const after = await this.getObject(id);
    return { done: !after || after.phase === 'deleted' };
  }

  // ---- inspection ----------------------------------------------------------------

  /**
   * Whether traffic from server `from` reaches server `to` on a port, as the
   * destination's security groups (their actual rules) decide; see firewall.ts.
   */
  async allows(fromId: string, toId: string, traffic: { port: number; protocol?: 'tcp' | 'udp' | 'icmp' }): Promise<Verdict> {
    const from = await this.getObject(fromId);
    const to = await this.getObject(toId);
    if (!from || from.kind !== 'compute/Server') throw new NotFoundError('sim.not_found', `server ${fromId} does not exist in the simulator`);
    if (!to || to.kind !== 'compute/Server') throw new NotFoundError('sim.not_found', `server ${toId} does not exist in the simulator`);
    const groups = new Map<string, SimObject>();
    for (const id of (to.actual?.securityGroups ?? to.spec.securityGroups ?? []) as string[]) {
      const g = await this.getObject(id);
      if (g && g.phase !== 'deleted') groups.set(id, g);
    }
    return firewallAllows(from, to, groups, { port: traffic.port, protocol: traffic.protocol ?? 'tcp' });
  }


  async getObject(id: string): Promise<SimObject | undefined> {
    const row = await this.store.db.selectFrom('sim_objects').selectAll().where('id', '=', id).executeTakeFirst();
    return row ? rowToObject(row) : undefined;
  }

  /**
   * Objects ordered by id. Filters run in the query: `kind`, `project`,
   * `projects` (any of these, e.g. the caller's visible projects; `[]` gives
   * nothing), `phase` (`deleted` implies `includeDeleted`); pages with
   * `after` (the last id of the previous page) and `limit`. Deleted objects
   * and the public catalogue (project `*`) only when asked for.
   */
  async listObjects(filter: { kind?: string; project?: string; projects?: readonly string[]; phase?: SimPhase; includeDeleted?: boolean; includeCatalogue?: boolean; after?: string; limit?: number } = {}): Promise<SimObject[]> {
    await this.settle();
    if (filter.projects && filter.projects.length === 0) return [];
    if (filter.limit !== undefined && !(Number.isInteger(filter.limit) && filter.limit > 0)) throw new ValidationError('sim.invalid_limit', `limit must be a positive integer (got ${filter.limit})`);
    let q = this.store.db.selectFrom('sim_objects').selectAll();
    if (filter.kind) q = q.where('kind', '=', filter.kind);
    if (filter.project) q = q.where('project', '=', filter.project);
    if (filter.projects) q = q.where('project', 'in', [...filter.projects]);
    if (filter.phase) q = q.where('phase', '=', filter.phase);
    if (!filter.includeDeleted && filter.phase !== 'deleted') q = q.where('deleted_at', 'is', null);
    if (!filter.includeCatalogue) q = q.where('project', '!=', '*');
    if (filter.after !== undefined) q = q.where('id', '>', filter.after);
    q = q.orderBy('id');
    if (filter.limit !== undefined) q = q.limit(filter.limit);
    return (await q.execute()).map(rowToObject);
  }

  async catalogue(): Promise<{ flavors: Record<string, unknown>[]; images: Record<string, unknown>[]; osTemplates: string[]; serverTypes: Record<string, unknown> }> {
    await this.ensureInit();
    const rows = (await this.store.db.selectFrom('sim_objects').selectAll().where('project', '=', '*').where('deleted_at', 'is', null).orderBy('name').execute()).map(rowToObject);
    return { flavors: rows.filter((r) => r.kind === 'compute/Flavor').map((r) => r.outputs), images: rows.filter((r) => r.kind === 'compute/Image').map((r) => r.outputs), osTemplates: Object.keys(DEFAULT_OS_TEMPLATES), serverTypes: this.config.serverTypes };
  }

  async hosts(): Promise<HostInfo[]> {
    await this.ensureInit();
    await this.settle();
    const rows = await this.store.db.selectFrom('sim_hosts').selectAll().orderBy('name').execute();
    return rows.map((h) => ({ name: h.name, zone: h.zone, vcpus: Number(h.vcpus), vcpuCapacity: Math.floor(Number(h.vcpus) * Number(h.cpu_ratio)), usedVcpus: Number(h.used_vcpus), ramMb: Number(h.ram_mb), usedRamMb: Number(h.used_ram_mb), enabled: Number(h.enabled) === 1 }));
  }

  /**
   * Takes hypervisors from the inventory (when wired): new ones are added,
   * known ones get their capacity updated (their use is kept), ones that are
   * gone are disabled. Returns how many the inventory listed.
   */
  async syncHosts(): Promise<number> {
    if (!this.backends.hypervisors) return 0;
    const list = await this.backends.hypervisors();
    const known = new Map((await this.store.db.selectFrom('sim_hosts').selectAll().execute()).map((h) => [h.name, h]));
    for (const h of list) {
      if (known.has(h.name)) await this.store.db.updateTable('sim_hosts').set({ zone: h.zone, vcpus: h.vcpus, ram_mb: h.ramMb, enabled: 1 }).where('name', '=', h.name).execute();
      else await this.store.db.insertInto('sim_hosts').values({ id: h.name, name: h.name, zone: h.zone, vcpus: h.vcpus, ram_mb: h.ramMb, used_vcpus: 0, used_ram_mb: 0, cpu_ratio: 4, enabled: 1 }).onConflict((oc) => oc.doNothing()).execute();
    }
    if (list.length) {
      const names = new Set(list.map((h) => h.name));
      for (const name of known.keys()) if (!names.has(name)) await this.setHostEnabled(name, false);
    }
    return list.length;
  }

  /** Enables or disables a hypervisor for new placements (maintenance). */
  async setHostEnabled(name: string, enabled: boolean): Promise<void> {
    await this.store.db.updateTable('sim_hosts').set({ enabled: enabled ? 1 : 0 }).where('name', '=', name).execute();
  }

  /**
   * Bare metal per server type: the types the inventory backend holds (its
   * servers, as bare-metal instances take them), then the simulator's own
   * pools for the other configured types — as instances are placed.
   */
  async metalInventory(): Promise<Record<string, { total: number; allocated: number }>> {
    const out: Record<string, { total: number; allocated: number }> = { ...(await this.backends.metalInventory?.()) };
    for (const [t, c] of Object.entries(this.config.serverTypes)) {
      if (out[t]) continue;
      const n = await this.store.db.selectFrom('sim_allocations').select((eb) => eb.fn.countAll<number>().as('n')).where('pool', '=', `metal:${t}`).executeTakeFirst();
      out[t] = { total: c.count, allocated: Number(n?.n ?? 0) };
    }
    return out;
  }

  // ---- behaviour that later features need -------------------------------------------------

  /** The simulator's DNS resolver: answers from live records (following CNAMEs). */
  async resolve(name: string, type = 'A'): Promise<DnsAnswer> {
    await this.settle();
    const records = (await this.listObjects({ kind: 'dns/Record' })).filter((r) => r.phase === 'ready' || r.phase === 'updating');
    const answers: DnsAnswer['answers'] = [];
    let fqdn = name.toLowerCase().endsWith('.') ? name.toLowerCase() : name.toLowerCase() + '.';
    for (let hop = 0; hop < 8; hop++) {
      const exact = records.filter((r) => r.outputs.fqdn === fqdn && r.outputs.type === type);
      if (exact.length) {
        for (const r of exact) for (const v of r.actual.values as string[]) answers.push({ name: fqdn, type, ttl: r.actual.ttl, value: v });
        return { name, type, rcode: 'NOERROR', answers };
      }
      const cname = records.find((r) => r.outputs.fqdn === fqdn && r.outputs.type === 'CNAME');
      if (!cname) break;
      const target = recordFqdn(cname.actual.values[0] as string, '');
      answers.push({ name: fqdn, type: 'CNAME', ttl: cname.actual.ttl, value: target });
      fqdn = target.endsWith('.') ? target : target + '.';
    }
    const known = records.some((r) => r.outputs.fqdn === fqdn);
    return { name, type, rcode: answers.length || known ? 'NOERROR' : 'NXDOMAIN', answers };
  }

  /** Routes one request through a load balancer (by id or VIP) to a healthy member, round robin. */
  async route(lb: string, opts: { port?: number } = {}): Promise<{ loadBalancer: string; member: { address: string; port: number } }> {
    await this.settle();
    const lbs = await this.listObjects({ kind: 'network/LoadBalancer' });
    const o = lbs.find((x) => x.id === lb || x.outputs.vip === lb);
    if (!o || (o.phase !== 'ready' && o.phase !== 'updating')) throw new ProviderError('NotFound', `no active load balancer ${lb}`);
    if (opts.port && !(o.actual.listeners as { port: number }[]).some((l) => l.port === opts.port)) throw new ProviderError('BackendUnavailable', `load balancer ${o.name} has no listener on port ${opts.port} (connection refused)`);
    const v = await this.view(o);
    const healthy = ((v.outputs?.members ?? []) as { address: string; port: number; status: string }[]).filter((m) => m.status === 'ONLINE');
    if (!healthy.length) throw new ProviderError('BackendUnavailable', `load balancer ${o.name} has no healthy members (503)`);
    const n = this.rr.get(o.id) ?? 0;
    this.rr.set(o.id, n + 1);
    const m = healthy[n % healthy.length]!;
    return { loadBalancer: o.id, member: { address: m.address, port: m.port } };
  }

  private async reschedule(o: SimObject): Promise<void> {
    const cluster = await this.getObject(o.spec.cluster);
    if (!cluster || cluster.phase === 'deleted') return;
    const seed = await this.getSeed();
    await this.txn(async (trx, after) => {
      const tx = this.tx(trx, this.clock.now(), `resched:${o.id}`, seed, after);
      const pods = await schedulePods((k) => tx.listLive(k), cluster, o, o.spec, o.state.pods);
      o.state.pods = pods.map((p) => (p.node && p.phase === 'Pending' ? { ...p, phase: 'Running', startedAt: tx.now } : p));
      await tx.save(o);
    });
  }

  /** Synthetic load metrics of a workload (input for autoscaling). */
  async workloadMetrics(id: string): Promise<WorkloadMetrics> {
    await this.settle();
    const o = await this.getObject(id);
    if (!o || o.kind !== 'container/Workload' || o.phase === 'deleted') throw new ProviderError('NotFound', `workload ${id} does not exist`);
    const now = this.clock.now();
    const seed = await this.getSeed();
    const pods = (o.state.pods ?? []) as { name: string; node: string | null; phase: string }[];
    const running = pods.filter((p) => p.phase === 'Running');
    const rps = (o.state.loadRps as number | null) ?? 10 * Math.max(1, o.spec.replicas);
    const reqCpu = cpuMillis(o.spec.resources.cpu);
    const reqMem = memoryMiB(o.spec.resources.memory);
    const minute = Math.floor(now / 60_000);
    const podMetrics = pods.map((p) => {
      if (p.phase !== 'Running') return { ...p, cpuMillis: 0, memoryMiB: 0 };
      const jitter = seededRng(seedFrom(`${p.name}|${minute}`, seed)).next() * 0.1 - 0.05;
      const cpu = Math.round((15 + ((rps / running.length) * 2)) * (1 + jitter));
      const mem = Math.round(reqMem * (0.4 + Math.min(0.5, rps / running.length / 400)));
      return { name: p.name, node: p.node, phase: p.phase, cpuMillis: cpu, memoryMiB: mem };
    });
    const live = podMetrics.filter((p) => p.phase === 'Running');
    return {
      workload: o.id, replicas: o.spec.replicas, readyReplicas: running.length, requestsPerSecond: rps,
      cpuUtilization: live.length ? live.reduce((a, p) => a + p.cpuMillis, 0) / live.length / reqCpu : 0,
      memoryUtilization: live.length ? live.reduce((a, p) => a + p.memoryMiB, 0) / live.length / reqMem : 0,
      pods: podMetrics, at: now,
    };
  }

  /** Sets the offered load of a workload (requests per second), shared by its running pods. */
  async setLoad(workloadId: string, requestsPerSecond: number): Promise<void> {
    if (!(requestsPerSecond >= 0)) throw new ValidationError('sim.invalid_load', 'load must be a number of requests per second >= 0');
    await this.mutate(workloadId, (o) => {
      if (o.kind !== 'container/Workload') throw new ValidationError('sim.not_a_workload', `${workloadId} is a ${o.kind}, not a container/Workload`);
      o.state.loadRps = requestsPerSecond;
    });
  }

  /** Logs of a job or of a workload's pods, up to now. */
  async logs(id: string, opts: { pod?: string; tail?: number } = {}): Promise<LogLine[]> {
    await this.settle();
    const o = await this.getObject(id);
    if (!o) throw new ProviderError('NotFound', `object ${id} does not exist`);
    const now = this.clock.now();
    const speed = await this.getSpeed();
    let lines: LogLine[] = [];
    if (o.kind === 'automation/Job') lines = jobLog(o, now);
    else if (o.kind === 'container/Workload') {
      for (const p of (o.state.pods ?? []) as { name: string; node: string | null; phase: string; startedAt?: number; reason?: string }[]) {
        if (opts.pod && p.name !== opts.pod) continue;
        lines.push(...podLog(o, p, now, speed));
      }
    } else throw new ValidationError('sim.no_logs', `${o.kind} has no logs: logs exist for automation/Job and container/Workload pods`);
    lines.sort((a, b) => a.at - b.at);
    return opts.tail ? lines.slice(-opts.tail) : lines;
  }

  // ---- drift ---------------------------------------------------------------------------

  private async mutate(id: string, fn: (o: SimObject, tx: SimTx) => Promise<void> | void): Promise<SimObject> {
    await this.settle();
    const seed = await this.getSeed();
    return this.txn(async (trx, after) => {
      const row = await trx.selectFrom('sim_objects').selectAll().where('id', '=', id).executeTakeFirst();
      if (!row || row.deleted_at !== null) throw new ProviderError('NotFound', `object ${id} does not exist in the simulator`);
      const o = rowToObject(row);
      const tx = this.tx(trx, this.clock.now(), `drift:${id}`, seed, after);
      await fn(o, tx);
      await tx.save(o);
      return o;
    });
  }

  /** Drift: the object vanishes behind Infraflow's back (a VM deleted in the backend console). */
  async driftDelete(id: string): Promise<void> {
    await this.mutate(id, async (o, tx) => {
      await tx.releaseOwner(o.id);
      await BEHAVIOURS[o.kind]?.release?.(tx, o);
      Object.assign(o, { phase: 'deleted', deletedAt: tx.now, op: null, opDue: null, stuck: false });
    });
  }

  /** Drift: changes the actual configuration (e.g. `{ rules: [] }` on a security group). */
  async driftModify(id: string, patch: Record<string, unknown>): Promise<SimObject> {
    return this.mutate(id, (o) => {
      o.actual = { ...o.actual, ...structuredClone(patch) };
      if (o.kind === 'network/LoadBalancer' && patch.members) o.outputs = { ...o.outputs };
    });
  }

  /** Drift: powers a server or bare-metal instance off/on outside Infraflow. */
  async driftPower(id: string, power: 'on' | 'off'): Promise<SimObject> {
    return this.driftModify(id, { power });
  }

  /** Health control: mark cluster nodes NotReady and operators Degraded (or clear with empty lists). */
  async setClusterHealth(id: string, health: { notReadyNodes?: string[] | number; degradedOperators?: string[] }): Promise<SimObject> {
    return this.mutate(id, (o) => {
      if (o.kind !== 'container/Cluster') throw new ValidationError('sim.not_a_cluster', `${id} is a ${o.kind}, not a container/Cluster`);
      const workers = (o.state.nodes as { name: string; role: string }[]).filter((n) => n.role === 'worker').map((n) => n.name);
      const notReady = typeof health.notReadyNodes === 'number' ? workers.slice(workers.length - health.notReadyNodes) : health.notReadyNodes ?? o.state.health?.notReadyNodes ?? [];
      o.state.health = { notReadyNodes: notReady, degradedOperators: health.degradedOperators ?? o.state.health?.degradedOperators ?? [] };
    });
  }
}

function objectRow(o: SimObject): SimObjectTable {
  return {
    id: o.id, kind: o.kind, project: o.project, name: o.name, create_key: o.createKey, spec: JSON.stringify(o.spec), actual: JSON.stringify(o.actual), outputs: JSON.stringify(o.outputs),
    state: JSON.stringify(o.state), phase: o.phase, op: o.op, op_started: o.opStarted, op_due: o.opDue, op_sim_ms: o.opSimMs, op_stuck: o.stuck ? 1 : 0,
    op_fail: o.opFail ? JSON.stringify(o.opFail) : null, failure: o.failure ? JSON.stringify(o.failure) : null, host: o.host, created_at: o.createdAt, updated_at: o.updatedAt, deleted_at: o.deletedAt,
    secrets: null,
  };
}

function jobLog(o: SimObject, now: number): LogLine[] {
  const started = o.createdAt;
  const end = o.phase === 'creating' ? (o.opDue ?? now) : o.updatedAt;
  const span = Math.max(1, end - started);
  const hosts = (o.spec.inventory?.hosts ?? []) as { name: string }[];
  const unreachable = (o.state.unreachable ?? []) as string[];
  const at = (f: number) => started + Math.round(f * span);
  const lines: LogLine[] = [];
  const src = 'job';
  if (o.spec.script) {
    lines.push({ at: at(0), source: src, text: `+ ${String(o.spec.script).split('\n')[0]}` });
    hosts.forEach((h, i) => lines.push({ at: at(0.2 + (0.6 * i) / Math.max(1, hosts.length)), source: src, text: unreachable.includes(h.name) ? `${h.name}: ssh: connect to host: No route to host` : `${h.name}: done` }));
  } else {
    lines.push({ at: at(0), source: src, text: `PLAY [${o.spec.playbook}] ${'*'.repeat(40)}` });
    lines.push({ at: at(0.05), source: src, text: `TASK [Gathering Facts] ${'*'.repeat(40)}` });
    for (const h of hosts) lines.push({ at: at(0.1), source: src, text: unreachable.includes(h.name) ? `fatal: [${h.name}]: UNREACHABLE! => {"changed": false, "msg": "Failed to connect to the host via ssh", "unreachable": true}` : `ok: [${h.name}]` });
    const tasks = ['common : install packages', 'common : configure services', 'app : deploy', 'app : start and enable'];
    tasks.forEach((t, i) => {
      lines.push({ at: at(0.2 + 0.18 * i), source: src, text: `TASK [${t}] ${'*'.repeat(40)}` });
      for (const h of hosts) if (!unreachable.includes(h.name)) lines.push({ at: at(0.25 + 0.18 * i), source: src, text: `changed: [${h.name}]` });
    });
    lines.push({ at: at(0.99), source: src, text: `PLAY RECAP ${'*'.repeat(40)}` });
    for (const h of hosts) lines.push({ at: at(0.995), source: src, text: `${h.name.padEnd(24)}: ok=${unreachable.includes(h.name) ? 0 : 5} changed=${unreachable.includes(h.name) ? 0 : 4} unreachable=${unreachable.includes(h.name) ? 1 : 0} failed=0` });
  }
  if (o.phase === 'failed') lines.push({ at: end, source: src, text: `ERROR: ${o.failure?.message ?? 'job failed'}` });
  return lines.filter((l) => l.at <= now);
}

function podLog(o: SimObject, p: { name: string; node: string | null; phase: string; startedAt?: number; reason?: string }, now: number, speed: number): LogLine[] {
  if (!p.node) return [{ at: o.createdAt, source: p.name, text: `Warning FailedScheduling: ${p.reason ?? 'pod is pending'}` }];
  if (p.phase !== 'Running' || !p.startedAt) return [{ at: o.createdAt, source: p.name, text: `Pulling image "${o.spec.image}"` }];
  const lines: LogLine[] = [
    { at: p.startedAt, source: p.name, text: `Successfully pulled image "${o.spec.image}"` },
    { at: p.startedAt, source: p.name, text: `Started container on node ${p.node}` },
    { at: p.startedAt, source: p.name, text: `listening on :${o.spec.ports?.[0] ?? 8080}` },
  ];
  const every = Math.max(1, Math.round(30_000 / speed));
  const first = Math.max(p.startedAt + every, now - every * 50);
  const rps = (o.state.loadRps as number | null) ?? 10;
  for (let t = first - ((first - p.startedAt) % every); t <= now; t += every) {
    if (t <= p.startedAt) continue;
    lines.push({ at: t, source: p.name, text: `GET / 200 ${(seedFrom(`${p.name}|${t}`) % 40) + 2}ms (${rps} req/s offered)` });
  }
  return lines;
}


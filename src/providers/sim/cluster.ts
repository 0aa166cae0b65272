import { randomBytes, createHash } from 'node:crypto';
import { z } from 'zod';
import { systemClock, type Clock } from '../../core/clock.js';
import { newId } from '../../core/ids.js';
import { seededRng, seedFrom } from '../../core/rng.js';
import { SecretBox } from '../../core/secrets.js';
import { col, type AreaMigration } from '../../store/migrate.js';
import type { Store } from '../../store/store.js';
import { parseInput } from '../../inventory/validate.js';
import { BackendError, type ClusterBackend, type InstallAgent, type InstallStatus, type SwitchPortRef, type ValidationResult } from '../../fulfillment/backend.js';

/**
 * The simulated backends of a cluster order (the fulfillment port
 * `ClusterBackend`): a switch fabric whose access ports carry one VLAN each
 * (default VLAN 1), DHCP scopes with static leases and a gateway served from
 * a hub, an agent-based installer (control plane, then workers joining), a
 * validator, disk cleaning, and a Kubernetes API subset answering with the
 * token of the cluster's kubeconfig. State is in the store (`sim_fabric_*`),
 * every operation completes by time on the injected clock (simulated
 * durations divided by `speed`), so a restart finds operations where they were.
 *
 * Faults (`setFaults`): `transientRate` (a mutating call fails with a
 * retryable 503 before any effect; decided from the call's key and attempt
 * with the seed), `permanent` (`{ op, reason }`: that operation is refused
 * for good until the rule is cleared), `badAgents` (serials whose install
 * fails every time, e.g. a broken disk).
 */
export const ClusterFaultsSchema = z.strictObject({
  transientRate: z.number().min(0).max(1).default(0),
  permanent: z.array(z.strictObject({ op: z.enum(['bindPorts', 'createDhcpScope', 'startInstall', 'validate', 'cleanAgent', 'addAgents']), reason: z.string().min(1).max(256).default('backend error') })).default([]),
  badAgents: z.array(z.string().min(1)).default([]),
});
export type ClusterFaults = z.output<typeof ClusterFaultsSchema>;

/** Simulated durations (ms) of each backend operation. */
export const ClusterLatencySchema = z.strictObject({
  bindPorts: z.number().min(0).default(2_000),
  dhcp: z.number().min(0).default(3_000),
  boot: z.number().min(0).default(90_000),
  install: z.number().min(0).default(15 * 60_000),
  controlPlane: z.number().min(0).default(5 * 60_000),
  join: z.number().min(0).default(3 * 60_000),
  validate: z.number().min(0).default(60_000),
  clean: z.number().min(0).default(2 * 60_000),
});
export type ClusterLatency = z.output<typeof ClusterLatencySchema>;

interface FabricPortTable { switch_name: string; port: string; vlan: number; cluster: string | null; updated_at: number }
interface FabricObjectTable { id: string; kind: string; key: string; cluster: string | null; state: string; secrets: string | null; created_at: number; deleted_at: number | null }

declare module '../../store/schema.js' {
  interface Database {
    sim_fabric_ports: FabricPortTable;
    sim_fabric_objects: FabricObjectTable;
  }
}

export const simClusterMigrations: AreaMigration[] = [{
  name: '0415_sim_fabric',
  async up(db) {
    await db.schema.createTable('sim_fabric_ports')
      .addColumn('switch_name', col.text, (c) => c.notNull())
      .addColumn('port', col.text, (c) => c.notNull())
      .addColumn('vlan', col.int, (c) => c.notNull())
      .addColumn('cluster', col.text)
      .addColumn('updated_at', col.ts, (c) => c.notNull())
      .addPrimaryKeyConstraint('sim_fabric_ports_pk', ['switch_name', 'port'])
      .execute();
    await db.schema.createTable('sim_fabric_objects')
      .addColumn('id', col.id, (c) => c.primaryKey())
      .addColumn('kind', col.text, (c) => c.notNull())
      .addColumn('key', col.text, (c) => c.notNull().unique())
      .addColumn('cluster', col.text)
      .addColumn('state', col.json, (c) => c.notNull())
      .addColumn('secrets', col.text)
      .addColumn('created_at', col.ts, (c) => c.notNull())
      .addColumn('deleted_at', col.ts)
      .execute();
    await db.schema.createIndex('sim_fabric_objects_cluster').on('sim_fabric_objects').columns(['cluster', 'kind']).execute();
  },
}];

export const DEFAULT_VLAN = 1;

interface ScopeState { hub: string; vlan: number; cidr: string; gateway: string; leases: { mac: string; ip: string; serverId: string; at: number }[] }
interface InstallState {
  name: string; baseDomain: string; hub: string; releaseImage: string; apiUrl: string; consoleUrl: string; startedAt: number;
  agents: (InstallAgent & { addedAt: number; bad: boolean })[];
}

export interface SimClusterOptions {
  store: Store;
  clock?: Clock;
  /** Simulated time runs this many times faster (0 latency with any speed: instant). */
  speed?: number;
  latency?: Partial<ClusterLatency>;
  seed?: number;
  /** Base64 32-byte key: generated cluster credentials are sealed with it at rest. */
  secretKey?: string | undefined;
}

export class SimClusterBackend implements ClusterBackend {
  readonly store: Store;
  readonly clock: Clock;
  speed: number;
  latency: ClusterLatency;
  private seed: number;
  private faults: ClusterFaults = ClusterFaultsSchema.parse({});
  private attempts = new Map<string, number>();
  private readonly box: SecretBox | undefined;

  constructor(opts: SimClusterOptions) {
    this.store = opts.store;
    this.clock = opts.clock ?? systemClock;
    this.speed = opts.speed ?? 1;
    this.latency = ClusterLatencySchema.parse(opts.latency ?? {});
    this.seed = opts.seed ?? 42;
    this.box = opts.secretKey ? new SecretBox(Buffer.from(opts.secretKey, 'base64')) : undefined;
  }

  setFaults(input: unknown): ClusterFaults {
    this.faults = parseInput(ClusterFaultsSchema, input ?? {}, 'sim');
    return this.faults;
  }

  getFaults(): ClusterFaults {
    return structuredClone(this.faults);
  }

  setLatency(l: Partial<ClusterLatency>): void {
    this.latency = ClusterLatencySchema.parse({ ...this.latency, ...l });
  }

  private dur(op: keyof ClusterLatency): number {
    return Math.round(this.latency[op] / this.speed);
  }

  /** Injected faults of a mutating call, decided from its key and attempt. */
  private gate(op: string, key: string): void {
    const perm = this.faults.permanent.find((p) => p.op === op);
    if (perm) throw new BackendError(op, `${op}: the backend refused the request: ${perm.reason}`, false, { op, reason: perm.reason, status: 500 });
    if (this.faults.transientRate > 0) {
      const n = (this.attempts.get(`${op}|${key}`) ?? 0) + 1;
      this.attempts.set(`${op}|${key}`, n);
      if (seededRng(seedFrom(`${op}|${key}|${n}`, this.seed)).next() < this.faults.transientRate) {
        throw new BackendError(op, `${op}: the backend answered 503 Service Unavailable (injected transient fault); try again`, true, { op, status: 503 });
      }
    }
  }

  private async byKey(key: string): Promise<FabricObjectTable | undefined> {
    return this.store.db.selectFrom('sim_fabric_objects').selectAll().where('key', '=', key).executeTakeFirst();
  }

  private async obj(id: string, kind: string): Promise<FabricObjectTable & { data: any }> {
    const r = await this.store.db.selectFrom('sim_fabric_objects').selectAll().where('id', '=', id).where('kind', '=', kind).executeTakeFirst();
    if (!r || r.deleted_at !== null) throw new BackendError(kind, `${kind} ${id} does not exist`, false, { status: 404 });
    return { ...r, data: JSON.parse(r.state) };
  }

  private async insert(kind: string, key: string, cluster: string, state: unknown, secrets: string | null = null): Promise<string> {
    const existing = await this.byKey(key);
    if (existing) return existing.id;
    const id = newId(kind === 'scope' ? 'dhcp' : kind === 'install' ? 'inst' : 'fab', this.clock.now());
    try {
      await this.store.db.insertInto('sim_fabric_objects').values({ id, kind, key, cluster, state: JSON.stringify(state), secrets, created_at: this.clock.now(), deleted_at: null }).execute();
    } catch (e) {
      const again = await this.byKey(key);
      if (again) return again.id;
      throw e;
    }
    return id;
  }

  private async save(id: string, state: unknown): Promise<void> {
    await this.store.db.updateTable('sim_fabric_objects').set({ state: JSON.stringify(state) }).where('id', '=', id).execute();
  }

  // ------------------------------------------------------------- fabric

  async bindPorts(req: { key: string; clusterId: string; vlan: number; ports: SwitchPortRef[] }): Promise<void> {
    this.gate('bindPorts', req.key);
    const now = this.clock.now();
    for (const p of req.ports) {
      await this.store.db.insertInto('sim_fabric_ports').values({ switch_name: p.switch, port: p.port, vlan: req.vlan, cluster: req.clusterId, updated_at: now })
        .onConflict((oc) => oc.columns(['switch_name', 'port']).doUpdateSet({ vlan: req.vlan, cluster: req.clusterId, updated_at: now })).execute();
    }
    if (this.dur('bindPorts') > 0) await this.clock.sleep(Math.min(this.dur('bindPorts'), 5_000));
  }

  async unbindPorts(req: { key: string; ports: SwitchPortRef[] }): Promise<void> {
    this.gate('unbindPorts', req.key);
    for (const p of req.ports) {
      await this.store.db.updateTable('sim_fabric_ports').set({ vlan: DEFAULT_VLAN, cluster: null, updated_at: this.clock.now() }).where('switch_name', '=', p.switch).where('port', '=', p.port).execute();
    }
  }

  /** The VLAN a port carries (DEFAULT_VLAN when never bound). */
  async portVlan(p: SwitchPortRef): Promise<number> {
    const r = await this.store.db.selectFrom('sim_fabric_ports').select('vlan').where('switch_name', '=', p.switch).where('port', '=', p.port).executeTakeFirst();
    return r?.vlan ?? DEFAULT_VLAN;
  }

  // --------------------------------------------------------------- DHCP

  async createDhcpScope(req: { key: string; clusterId: string; hub: string; vlan: number; cidr: string; gateway: string; leases: { mac: string; ip: string; serverId: string }[] }): Promise<{ id: string }> {
    const existing = await this.byKey(req.key);
    if (existing) return { id: existing.id };
    this.gate('createDhcpScope', req.key);
    const now = this.clock.now();
    const st: ScopeState = { hub: req.hub, vlan: req.vlan, cidr: req.cidr, gateway: req.gateway, leases: req.leases.map((l) => ({ ...l, at: now })) };
    return { id: await this.insert('scope', req.key, req.clusterId, st) };
  }

  async addLeases(req: { key: string; scopeId: string; leases: { mac: string; ip: string; serverId: string }[] }): Promise<void> {
    this.gate('addLeases', req.key);
    const o = await this.obj(req.scopeId, 'scope');
    const st = o.data as ScopeState;
    const now = this.clock.now();
    for (const l of req.leases) if (!st.leases.some((x) => x.serverId === l.serverId)) st.leases.push({ ...l, at: now });
    await this.save(o.id, st);
  }

  async removeLeases(req: { key: string; scopeId: string; serverIds: string[] }): Promise<void> {
    const o = await this.obj(req.scopeId, 'scope').catch(() => null);
    if (!o) return;
    const st = o.data as ScopeState;
    st.leases = st.leases.filter((l) => !req.serverIds.includes(l.serverId));
    await this.save(o.id, st);
  }

  async deleteDhcpScope(req: { key: string; scopeId: string }): Promise<void> {
    await this.store.db.updateTable('sim_fabric_objects').set({ deleted_at: this.clock.now() }).where('id', '=', req.scopeId).where('deleted_at', 'is', null).execute();
  }

  async reportedAgents(scopeId: string): Promise<{ reported: string[]; pending: string[] }> {
    const o = await this.obj(scopeId, 'scope');
    const now = this.clock.now();
    const st = o.data as ScopeState;
    const reported: string[] = [];
    const pending: string[] = [];
    for (const l of st.leases) (l.at + this.dur('boot') <= now ? reported : pending).push(l.serverId);
    return { reported, pending };
  }

  // ------------------------------------------------------------ install

  async startInstall(req: { key: string; clusterId: string; name: string; baseDomain: string; hub: string; releaseImage: string; apiVip: string; ingressVip: string; agents: InstallAgent[] }): Promise<{ id: string }> {
    const existing = await this.byKey(req.key);
    if (existing) return { id: existing.id };
    this.gate('startInstall', req.key);
    const now = this.clock.now();
    const st: InstallState = {
      name: req.name, baseDomain: req.baseDomain, hub: req.hub, releaseImage: req.releaseImage, startedAt: now,
      apiUrl: `https://api.${req.name}.${req.baseDomain}:6443`, consoleUrl: `https://console-openshift-console.apps.${req.name}.${req.baseDomain}`,
      agents: req.agents.map((a) => ({ ...a, addedAt: now, bad: this.faults.badAgents.includes(a.serial) })),
    };
    // credentials come from the OS random source, never from the seed (anyone who sees the seed could recompute them)
    const creds = { token: randomBytes(24).toString('base64url'), adminPassword: randomBytes(18).toString('base64url') };
    const id = newId('inst', now);
    const sealed = this.box ? this.box.sealJson(creds, `sim-install:${req.key}`) : 'plain:' + Buffer.from(JSON.stringify(creds)).toString('base64');
    const got = await this.insert('install', req.key, req.clusterId, st, sealed);
    void id;
    return { id: got };
  }

  private creds(o: FabricObjectTable): { token: string; adminPassword: string } {
    const s = o.secrets!;
    if (s.startsWith('plain:')) return JSON.parse(Buffer.from(s.slice(6), 'base64').toString('utf8')) as { token: string; adminPassword: string };
    return this.box!.openJson(s, `sim-install:${o.key}`);
  }

  async installStatus(installId: string): Promise<InstallStatus> {
    const o = await this.obj(installId, 'install');
    const st = o.data as InstallState;
    const now = this.clock.now();
    const agents: InstallStatus['agents'] = {};
    for (const a of st.agents) {
      const due = a.addedAt + this.dur('install');
      if (a.bad && due <= now) agents[a.serverId] = { state: 'failed', reason: `agent ${a.serial}: installation failed writing the disk image (I/O error on /dev/sda)` };
      else agents[a.serverId] = { state: due <= now ? 'installed' : 'installing' };
    }
    const cps = st.agents.filter((a) => a.role === 'control-plane');
    const cpReady = cps.every((a) => agents[a.serverId]!.state === 'installed') && st.startedAt + this.dur('install') + this.dur('controlPlane') <= now;
    const workersJoined = cpReady ? st.agents.filter((a) => a.role === 'worker' && agents[a.serverId]!.state === 'installed' && Math.max(a.addedAt + this.dur('install'), st.startedAt + this.dur('install') + this.dur('controlPlane')) + this.dur('join') <= now).length : 0;
    const out: InstallStatus = { agents, controlPlaneReady: cpReady, workersJoined, apiUrl: st.apiUrl, consoleUrl: st.consoleUrl };
    if (cpReady) {
      const c = this.creds(o);
      const kubeconfig = [
        'apiVersion: v1', 'kind: Config',
        'clusters:', `- name: ${st.name}`, '  cluster:', `    server: ${st.apiUrl}`, '    insecure-skip-tls-verify: true',
        'users:', '- name: admin', '  user:', `    token: ${c.token}`,
        'contexts:', `- name: admin@${st.name}`, '  context:', `    cluster: ${st.name}`, '    user: admin',
        `current-context: admin@${st.name}`, '',
      ].join('\n');
      out.credentials = { kubeconfig, adminUser: 'kubeadmin', adminPassword: c.adminPassword };
    }
    return out;
  }

  async addAgents(req: { key: string; installId: string; agents: InstallAgent[] }): Promise<void> {
    this.gate('addAgents', req.key);
    const o = await this.obj(req.installId, 'install');
    const st = o.data as InstallState;
    const now = this.clock.now();
    for (const a of req.agents) {
      const i = st.agents.findIndex((x) => x.serverId === a.serverId);
      if (i < 0) st.agents.push({ ...a, addedAt: now, bad: this.faults.badAgents.includes(a.serial) });
    }
    await this.save(o.id, st);
  }

  async removeAgents(req: { key: string; installId: string; serverIds: string[] }): Promise<void> {
    const o = await this.obj(req.installId, 'install').catch(() => null);
    if (!o) return;
    const st = o.data as InstallState;
    st.agents = st.agents.filter((a) => !req.serverIds.includes(a.serverId));
    await this.save(o.id, st);
  }

  async validate(req: { key: string; installId: string }): Promise<ValidationResult> {
    this.gate('validate', req.key);
    const s = await this.installStatus(req.installId);
    const o = await this.obj(req.installId, 'install');
    const st = o.data as InstallState;
    const nodes = Object.entries(s.agents);
    const notReady = nodes.filter(([, a]) => a.state !== 'installed').map(([id]) => id);
    const checks = [
      { name: 'nodes', ok: notReady.length === 0, message: notReady.length ? `${notReady.length} of ${nodes.length} nodes NotReady` : `${nodes.length} nodes Ready` },
      { name: 'operators', ok: s.controlPlaneReady, message: s.controlPlaneReady ? 'all cluster operators Available' : 'cluster operators not yet available' },
      { name: 'clusterVersion', ok: s.controlPlaneReady, message: `${st.releaseImage.split(':').pop()} ${s.controlPlaneReady ? 'Completed' : 'Progressing'}` },
      { name: 'testWorkload', ok: s.controlPlaneReady && notReady.length === 0, message: s.controlPlaneReady ? 'test deployment rolled out, service answered 200' : 'not run' },
    ];
    return { ok: checks.every((c) => c.ok), checks, failedAgents: notReady };
  }

  async uninstall(req: { key: string; installId: string }): Promise<void> {
    await this.store.db.updateTable('sim_fabric_objects').set({ deleted_at: this.clock.now() }).where('id', '=', req.installId).where('deleted_at', 'is', null).execute();
  }

  async cleanAgent(req: { key: string; serverId: string }): Promise<void> {
    this.gate('cleanAgent', req.key);
    if (this.dur('clean') > 0) await this.clock.sleep(Math.min(this.dur('clean'), 5_000));
  }

  async kubeGet(apiUrl: string, token: string, path: string): Promise<{ status: number; body: unknown }> {
    const rows = await this.store.db.selectFrom('sim_fabric_objects').selectAll().where('kind', '=', 'install').where('deleted_at', 'is', null).execute();
    const o = rows.find((r) => (JSON.parse(r.state) as InstallState).apiUrl === apiUrl);
    if (!o) return { status: 503, body: { message: `no API server answers at ${apiUrl}` } };
    const c = this.creds(o);
    const h = (s: string) => createHash('sha256').update(s).digest();
    if (!token || !h(token).equals(h(c.token))) return { status: 401, body: { kind: 'Status', status: 'Failure', reason: 'Unauthorized', code: 401 } };
    const s = await this.installStatus(o.id);
    if (!s.controlPlaneReady) return { status: 503, body: { message: 'the API server is starting' } };
    const st = JSON.parse(o.state) as InstallState;
    if (path === '/version') return { status: 200, body: { gitVersion: 'v1.30.4', platform: 'linux/amd64', release: st.releaseImage } };
    if (path === '/api/v1/nodes') {
      return {
        status: 200,
        body: {
          kind: 'NodeList', apiVersion: 'v1',
          items: st.agents.map((a) => ({
            metadata: { name: `${a.nodeSet}-${a.serial.toLowerCase()}`, labels: { [`node-role.kubernetes.io/${a.role === 'control-plane' ? 'master' : 'worker'}`]: '' } },
            status: { addresses: [{ type: 'InternalIP', address: a.ip }], conditions: [{ type: 'Ready', status: s.agents[a.serverId]?.state === 'installed' ? 'True' : 'False' }] },
          })),
        },
      };
    }
    return { status: 404, body: { kind: 'Status', status: 'Failure', reason: 'NotFound', code: 404, message: `the server could not find the requested resource ${path}` } };
  }

  async holdings(clusterId: string): Promise<{ ports: number; scopes: number; installs: number }> {
    const ports = await this.store.db.selectFrom('sim_fabric_ports').select((eb) => eb.fn.countAll<number>().as('n')).where('cluster', '=', clusterId).executeTakeFirst();
    const objs = await this.store.db.selectFrom('sim_fabric_objects').select(['kind']).where('cluster', '=', clusterId).where('deleted_at', 'is', null).execute();
    return { ports: Number(ports?.n ?? 0), scopes: objs.filter((o) => o.kind === 'scope').length, installs: objs.filter((o) => o.kind === 'install').length };
  }

  /** Every port not on the default VLAN (duplicate and leak scans). */
  async boundPorts(): Promise<{ switch: string; port: string; vlan: number; cluster: string | null }[]> {
    const rows = await this.store.db.selectFrom('sim_fabric_ports').selectAll().where('vlan', '!=', DEFAULT_VLAN).execute();
    return rows.map((r) => ({ switch: r.switch_name, port: r.port, vlan: r.vlan, cluster: r.cluster }));
  }
}

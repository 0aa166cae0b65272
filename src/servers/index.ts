import { createHash } from 'node:crypto';
import { z } from 'zod';
import { ConflictError, InfraflowError, ValidationError } from '../core/errors.js';
import { seedFrom } from '../core/rng.js';
import { systemClock, type Clock } from '../core/clock.js';
import type { EngineApi, RunInfo, WorkflowContext } from '../engine/types.js';
import type { ResourceStore } from '../resources/store.js';
import type { Resource } from '../resources/types.js';
import type { Store } from '../store/store.js';

export { serverMigrations } from './migrations.js';

/**
 * The single-VM path (`POST /servers`, `openstack server create`): a server
 * and whatever it needs that the project lacks.
 *
 * Accepting a request is cheap: one indexed read (is the name free?) and the
 * start of a `server.create` run. The run does the rest:
 *
 * 1. resolves every network, security group and keypair the request names:
 *    an object the project already has is referenced by its id; a missing
 *    one is **claimed** in `server_shared` (primary key project, kind, name)
 *    — the run whose insert lands applies a small shared stack
 *    (`shared-net-<name>` with the network and a /24 subnet,
 *    `shared-sg-<name>`, `shared-key-<name>`), every other run waits for
 *    that stack and reuses it. So 50 concurrent requests naming the same new
 *    network make one network and one subnet, and every server gets its own
 *    address on it;
 * 2. applies the server's own stack `server-<name>` with those ids;
 * 3. waits for that apply and ends with its outcome.
 */
export const SERVER_WORKFLOW = 'server.create';
/** Label that names what POST /servers created, so that later servers find and reuse it. */
export const NAME_LABEL = 'infraflow.dev/name';
/** Label on a server stack: the server.create run that applied it. */
export const RUN_LABEL = 'infraflow.dev/server-run';

const NAME = /^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$/;

export const ServerCreateBody = z.strictObject({
  project: z.string().min(1).max(64),
  name: z.string().regex(NAME, 'name: lower-case letters, digits and dashes, starting with a letter (at most 63)').max(56),
  flavor: z.string().min(1).max(200),
  image: z.string().min(1).max(200),
  bootVolumeSize: z.number().int().min(1).max(65_536).optional().describe('GiB; boot from a new volume of this size'),
  networks: z.array(z.string().regex(NAME).max(63)).min(1).max(8).describe('network (or subnet) names; missing ones are created with a /24'),
  securityGroups: z.array(z.string().regex(NAME).max(63)).max(8).default([]).describe('security group names; missing ones are created allowing SSH'),
  keyName: z.string().min(1).max(200).optional().describe('keypair name'),
  publicKey: z.string().max(16_384).optional().describe('creates the keypair keyName from this OpenSSH public key when it does not exist'),
  userData: z.string().max(65_535).optional(),
});
export type ServerCreate = z.infer<typeof ServerCreateBody>;

/** The stack a server lives in. */
export function serverStackName(name: string): string {
  return `server-${name}`;
}

type SharedKind = 'network' | 'secgroup' | 'keypair';
const PREFIX: Record<SharedKind, string> = { network: 'shared-net', secgroup: 'shared-sg', keypair: 'shared-key' };

/** The shared stack's name: `<prefix>-<name>`, with a hash when the name does not fit a stack name as it is. */
export function sharedStackName(kind: SharedKind, name: string): string {
  const plain = `${PREFIX[kind]}-${name}`;
  if (plain.length <= 63 && NAME.test(plain)) return plain;
  const hash = createHash('sha256').update(name).digest('hex').slice(0, 10);
  const safe = name.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 40).replace(/-+$/, '');
  return `${PREFIX[kind]}-${safe ? `${safe}-` : ''}${hash}`;
}

/** What a name resolves to: a backend id, or a shared stack to wait for. */
type Ref = { id: string } | { shared: SharedKind; name: string; stack: string };

interface Resolved {
  networks: Ref[];
  groups: Ref[];
  keypair: Ref | null;
}

export interface ServerRunResult {
  stack: string;
  stackName: string;
  applyRun: string;
  resource: string;
}

/** What the module needs of the stacks area. */
export interface ServerStacks {
  stacks: { find(idOrName: string, project?: string): Promise<{ id: string; name: string; project: string; status: string; labels: Record<string, string>; lastRunId: string | null } | undefined>; recorded(stackId: string): Promise<{ address: string; outputs: Record<string, unknown>; resourceId: string | null }[]> };
  apply(input: { document: string | Record<string, unknown>; file?: string; expectedRevision?: number; createdBy?: string }): Promise<{ stack: { id: string; name: string }; run: RunInfo }>;
}

export interface ServersOptions {
  store: Store;
  engine: EngineApi;
  stacks: ServerStacks;
  resources: ResourceStore;
  clock?: Clock;
  /**
   * How often a run looks at a stack or run it waits for (default 2 s: above
   * the engine's hold time, so a waiting run gives its worker slot back
   * between looks — hundreds of servers waiting for one shared network must
   * not starve the runs that create it).
   */
  pollIntervalMs?: number;
  /** How long it waits for one (default 30 min). */
  waitTimeoutMs?: number;
}

type ServerInput = ServerCreate & { createdBy?: string };

export class Servers {
  private readonly clock: Clock;
  private readonly pollMs: number;
  private readonly waitMs: number;

  constructor(private readonly opts: ServersOptions) {
    this.clock = opts.clock ?? systemClock;
    this.pollMs = opts.pollIntervalMs ?? 2000;
    this.waitMs = opts.waitTimeoutMs ?? 30 * 60_000;
    opts.engine.register({
      name: SERVER_WORKFLOW,
      version: 1,
      // one run per server name at a time; a second request for the same name finds the stack taken
      concurrencyKey: (input: ServerInput) => `server:${input.project}/${input.name}`,
      run: (ctx: WorkflowContext<ServerInput>, input: ServerInput) => this.run(ctx, input),
    });
  }

  /**
   * Accepts a request: refuses a name that is taken and a keyName without a
   * keypair or publicKey; starts the run that does the work.
   */
  async accept(input: ServerCreate, opts: { createdBy?: string } = {}): Promise<RunInfo> {
    const existing = await this.opts.stacks.stacks.find(serverStackName(input.name), input.project);
    if (existing) {
      throw new ConflictError('servers.exists', `server ${input.name} already exists in project ${input.project} (stack ${existing.name}); destroy that stack or pick another name`, { details: { field: 'name', stack: existing.id } });
    }
    if (input.keyName && !input.publicKey) {
      const claimed = await this.claim(input.project, 'keypair', input.keyName);
      const kp = claimed ? undefined : await this.findNamed(input.project, 'compute/Keypair', input.keyName, keypairAddress(input.keyName));
      if (!claimed && !kp) throw new ValidationError('api.invalid_request', `keyName: no keypair with this name in project ${input.project}; pass publicKey to create it`, { details: { field: 'keyName' } });
    }
    return this.opts.engine.start(SERVER_WORKFLOW, { ...input, ...(opts.createdBy ? { createdBy: opts.createdBy } : {}) }, { labels: { project: input.project, server: input.name } });
  }

  private get db() {
    return this.opts.store.db;
  }

  private async claim(project: string, kind: SharedKind, name: string): Promise<{ stack_name: string; owner_run: string } | undefined> {
    return this.db.selectFrom('server_shared').select(['stack_name', 'owner_run']).where('project', '=', project).where('kind', '=', kind).where('name', '=', name).executeTakeFirst();
  }

  /**
   * The claim for (project, kind, name): inserted for `runId` unless one
   * exists. The primary key decides between concurrent runs; the loser reads
   * the winner's row.
   */
  private async claimOrJoin(project: string, kind: SharedKind, name: string, runId: string): Promise<{ stack: string; owner: string }> {
    const stack = sharedStackName(kind, name);
    await this.db.insertInto('server_shared')
      .values({ project, kind, name, stack_name: stack, owner_run: runId, created_at: this.clock.now() })
      .onConflict((oc) => oc.columns(['project', 'kind', 'name']).doNothing())
      .execute();
    const row = await this.claim(project, kind, name);
    if (!row) throw new InfraflowError('servers.claim_lost', `the claim for ${kind} ${name} in project ${project} disappeared`, 500, { retryable: true });
    return { stack: row.stack_name, owner: row.owner_run };
  }

  /**
   * An existing object named `name`: by resource name, by the name label, or
   * one an earlier POST /servers created at stack address `address` (before
   * shared stacks, servers' own stacks held them).
   */
  private async findNamed(project: string, kind: string, name: string, address: string): Promise<Resource | undefined> {
    const { resources } = this.opts;
    const byName = await resources.getByName(project, kind, name);
    if (byName && byName.status.phase !== 'deleted') return byName;
    const labelled = await resources.list({ project, kind, labels: { [NAME_LABEL]: name }, limit: 10 });
    const ready = labelled.items.find((r) => r.status.phase === 'ready');
    if (ready) return ready;
    const made = await resources.list({ project, kind, labels: { 'infraflow.dev/address': address }, limit: 100 });
    return made.items.find((r) => r.name.startsWith('server-') && r.name.endsWith(`-${address}`) && r.status.phase === 'ready');
  }

  private async resolveOne(project: string, kind: SharedKind, name: string, runId: string, mayCreate: true): Promise<Ref>;
  private async resolveOne(project: string, kind: SharedKind, name: string, runId: string, mayCreate: boolean): Promise<Ref | undefined>;
  private async resolveOne(project: string, kind: SharedKind, name: string, runId: string, mayCreate: boolean): Promise<Ref | undefined> {
    const claimed = await this.claim(project, kind, name);
    if (claimed) return { shared: kind, name, stack: claimed.stack_name };
    if (kind === 'network') {
      const subnet = await this.findNamed(project, 'network/Subnet', name, `subnet-${name}`);
      if (subnet) return { id: backendId(subnet) };
      const net = await this.findNamed(project, 'network/Network', name, `net-${name}`);
      if (net) {
        const subs = await this.opts.resources.list({ project, kind: 'network/Subnet', limit: 1000 });
        const sub = subs.items.find((x) => x.spec.network === backendId(net) || x.spec.network === net.id);
        if (sub) return { id: backendId(sub) };
      }
    } else if (kind === 'secgroup') {
      const sg = await this.findNamed(project, 'network/SecurityGroup', name, `sg-${name}`);
      if (sg) return { id: backendId(sg) };
    } else {
      const kp = await this.findNamed(project, 'compute/Keypair', name, keypairAddress(name));
      if (kp) return { id: backendId(kp) };
    }
    if (!mayCreate) return undefined;
    const c = await this.claimOrJoin(project, kind, name, runId);
    return { shared: kind, name, stack: c.stack };
  }

  private sharedDocument(input: ServerInput, ref: { shared: SharedKind; name: string; stack: string }): Record<string, unknown> {
    const labels = { [NAME_LABEL]: ref.name };
    let resources: Record<string, unknown>;
    if (ref.shared === 'network') {
      const third = seedFrom(`${input.project}/${ref.name}`) % 250;
      resources = {
        net: { kind: 'network/Network', labels, spec: {} },
        subnet: { kind: 'network/Subnet', labels, spec: { network: '${ resources.net.outputs.id }', cidr: `10.${200 + (third % 50)}.${third}.0/24` } },
      };
    } else if (ref.shared === 'secgroup') {
      resources = { sg: { kind: 'network/SecurityGroup', labels, spec: { description: 'created by POST /servers', rules: [{ direction: 'ingress', protocol: 'tcp', portMin: 22, portMax: 22, remoteCidr: '0.0.0.0/0', description: 'ssh' }] } } };
    } else {
      resources = { key: { kind: 'compute/Keypair', labels, spec: { name: ref.name, publicKey: input.publicKey } } };
    }
    return { apiVersion: 'infraflow.dev/v1', kind: 'Stack', metadata: { name: ref.stack, project: input.project, description: `${ref.shared} ${ref.name}, shared by the servers that name it (POST /servers)` }, spec: { resources } };
  }

  private async run(ctx: WorkflowContext<ServerInput>, input: ServerInput): Promise<ServerRunResult> {
    const { project } = input;
    ctx.progress({ stage: 'resolve', message: 'resolving networks, security groups and keypair' });
    const resolved = await ctx.step('resolve', async (): Promise<Resolved> => {
      const networks: Ref[] = [];
      for (const n of input.networks) networks.push(await this.resolveOne(project, 'network', n, ctx.runId, true));
      const groups: Ref[] = [];
      for (const g of input.securityGroups) groups.push(await this.resolveOne(project, 'secgroup', g, ctx.runId, true));
      let keypair: Ref | null = null;
      if (input.keyName) {
        keypair = (await this.resolveOne(project, 'keypair', input.keyName, ctx.runId, !!input.publicKey)) ?? null;
        if (!keypair) throw new ValidationError('api.invalid_request', `keyName: no keypair with this name in project ${project}; pass publicKey to create it`, { details: { field: 'keyName' } });
      }
      return { networks, groups, keypair };
    }, { retry: { nonRetryable: ['api.invalid_request'] } });

    // the shared stacks this run won: apply them (once: a replay finds the stack)
    const all = [...resolved.networks, ...resolved.groups, ...(resolved.keypair ? [resolved.keypair] : [])];
    const shared = new Map<string, { shared: SharedKind; name: string; stack: string }>();
    for (const r of all) if ('shared' in r) shared.set(r.stack, r);
    for (const ref of shared.values()) {
      await ctx.step(`ensure:${ref.stack}`, async () => {
        const claim = await this.claim(project, ref.shared, ref.name);
        if (claim?.owner_run !== ctx.runId) return { owner: claim?.owner_run ?? null };
        if (await this.opts.stacks.stacks.find(ref.stack, project)) return { owner: ctx.runId };
        try {
          await this.opts.stacks.apply({ document: this.sharedDocument(input, ref), file: `servers/${ref.stack}`, expectedRevision: 0, ...(input.createdBy ? { createdBy: input.createdBy } : {}) });
        } catch (e) {
          if (!(e instanceof ConflictError && e.code === 'stacks.stale_revision')) throw e;
        }
        return { owner: ctx.runId };
      });
    }
    const ids = new Map<string, string>();
    for (const ref of shared.values()) {
      ctx.progress({ stage: 'shared', waitingFor: ref.stack, message: `waiting for ${ref.shared} ${ref.name} (stack ${ref.stack})` });
      const id = await ctx.poll(`wait:${ref.stack}`, async () => {
        const st = await this.opts.stacks.stacks.find(ref.stack, project);
        if (!st) return { done: false, status: `waiting for stack ${ref.stack} to be created` };
        if (st.status === 'failed' || st.status === 'cancelled' || st.status === 'destroying' || st.status === 'destroyed') {
          throw new ConflictError('servers.shared_failed', `${ref.shared} ${ref.name} could not be made: its stack ${ref.stack} is ${st.status}; retry that stack (infraflow stack retry ${ref.stack}), then this server`, { retryable: false, details: { stack: st.id } });
        }
        if (st.status !== 'applied') return { done: false, status: `stack ${ref.stack} is ${st.status}` };
        const recs = await this.opts.stacks.stacks.recorded(st.id);
        const address = ref.shared === 'network' ? 'subnet' : ref.shared === 'secgroup' ? 'sg' : 'key';
        const rec = recs.find((r) => r.address === address);
        const out = rec?.outputs.id;
        if (typeof out !== 'string' || !out) throw new InfraflowError('servers.shared_incomplete', `stack ${ref.stack} is applied but records no ${address}`, 500, { retryable: false });
        return { done: true, value: out };
      }, { intervalMs: this.pollMs, timeoutMs: this.waitMs, retry: { nonRetryable: ['servers.shared_failed', 'servers.shared_incomplete'] } });
      ids.set(ref.stack, id);
    }
    const idOf = (r: Ref): string => ('id' in r ? r.id : ids.get(r.stack)!);

    ctx.progress({ stage: 'apply', message: `applying stack ${serverStackName(input.name)}` });
    const applied = await ctx.step('apply', async () => {
      const name = serverStackName(input.name);
      const existing = await this.opts.stacks.stacks.find(name, project);
      if (existing) {
        if (existing.labels[RUN_LABEL] === ctx.runId && existing.lastRunId) return { stack: existing.id, run: existing.lastRunId };
        throw new ConflictError('servers.exists', `server ${input.name} already exists in project ${project} (stack ${name})`, { retryable: false });
      }
      const document = {
        apiVersion: 'infraflow.dev/v1', kind: 'Stack',
        metadata: { name, project, description: `server ${input.name} (POST /servers)`, labels: { [RUN_LABEL]: ctx.runId } },
        spec: {
          resources: {
            server: {
              kind: 'compute/Server', labels: { [NAME_LABEL]: input.name },
              spec: {
                flavor: input.flavor, image: input.image,
                networks: resolved.networks.map((r) => ({ subnet: idOf(r) })),
                securityGroups: resolved.groups.map(idOf),
                ...(resolved.keypair ? { keypair: idOf(resolved.keypair) } : {}),
                ...(input.bootVolumeSize ? { bootVolume: { sizeGb: input.bootVolumeSize } } : {}),
                ...(input.userData ? { userData: input.userData } : {}),
              },
            },
          },
        },
      };
      const r = await this.opts.stacks.apply({ document, file: `servers/${input.name}`, expectedRevision: 0, ...(input.createdBy ? { createdBy: input.createdBy } : {}) });
      return { stack: r.stack.id, run: r.run.id };
    }, { retry: { nonRetryable: ['servers.exists', 'stacks.stale_revision'] } });

    ctx.progress({ stage: 'apply', waitingFor: applied.run, message: `waiting for the apply of stack ${serverStackName(input.name)} (run ${applied.run})` });
    await ctx.poll('wait:apply', async () => {
      const r = await this.opts.engine.get(applied.run);
      if (r.status === 'succeeded') return { done: true, value: r.status };
      if (r.status === 'failed' || r.status === 'cancelled') {
        throw new ConflictError('servers.apply_failed', `the apply of stack ${serverStackName(input.name)} ${r.status}${r.error ? `: ${r.error.message}` : ''}`, { retryable: false, details: { run: r.id } });
      }
      return { done: false, status: `apply run ${r.id} is ${r.status}` };
    }, { intervalMs: this.pollMs, timeoutMs: this.waitMs, retry: { nonRetryable: ['servers.apply_failed'] } });
    return { stack: applied.stack, stackName: serverStackName(input.name), applyRun: applied.run, resource: `${serverStackName(input.name)}-server` };
  }
}

function keypairAddress(keyName: string): string {
  return `key-${keyName.toLowerCase().replace(/[^a-z0-9-]/g, '-')}`;
}

/** The backend id other resources reference (what `${ resources.x.outputs.id }` gives in a stack). */
function backendId(r: Resource): string {
  const id = r.status.outputs.id;
  return typeof id === 'string' && id ? id : r.id;
}

export function isServersApi(x: unknown): x is Servers {
  return x instanceof Servers;
}

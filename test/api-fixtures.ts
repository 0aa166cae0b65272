import { parse as parseYaml } from 'yaml';
import type { DialectName } from '../src/store/store.js';
import { openTestStore, type TestDb } from './support/dialects.js';
import { Engine } from '../src/engine/index.js';
import { ResourceStore } from '../src/resources/store.js';
import { Inventory } from '../src/inventory/inventory.js';
import { Ipam } from '../src/ipam/ipam.js';
import type { StacksApi, StackRowLike } from '../src/api/routes/stacks.js';
import { makeHarness, type Harness } from './api-harness.js';
import type { ServerOptions } from '../src/api/server.js';
import type { Logger } from '../src/core/log.js';
import { NotFoundError, ValidationError } from '../src/core/errors.js';
import { SecretBox } from '../src/core/secrets.js';
import { Allocations } from '../src/allocation/reservations.js';
import { reserveWorkflow } from '../src/allocation/wait.js';
import { SimDatacenter } from '../src/providers/sim/sim.js';
import { SimProvider } from '../src/providers/sim/index.js';
import { ProviderRegistry } from '../src/resources/registry.js';
import { RESOURCE_QUEUE, resourceWorkflows } from '../src/resources/lifecycle.js';
import { Apps } from '../src/apps/service.js';


/**
 * A stand-in for the stacks module with just enough behaviour for the
 * route-level tests (authorization, isolation, fuzzing): stacks live in a
 * map; parse reads metadata.project. The stacks module's own behaviour is
 * tested in src/stacks and in the CLI end-to-end test.
 */
export function fakeStacks(): StacksApi & { rows: Map<string, StackRowLike> } {
  const rows = new Map<string, StackRowLike>();
  let n = 0;
  const find = async (idOrName: string, project?: string) => rows.get(idOrName) ?? [...rows.values()].find((r) => r.name === idOrName && r.project === (project ?? 'default'));
  const get = async (id: string, o?: { project?: string }) => {
    const r = await find(id, o?.project);
    if (!r) throw new NotFoundError('stacks.not_found', `stack ${id} not found`);
    return r;
  };
  const parse = (doc: string | Record<string, unknown>) => {
    const d = (typeof doc === 'string' ? parseYaml(doc) : doc) as { metadata?: { name?: string; project?: string } } | null;
    if (!d || typeof d !== 'object' || !d.metadata?.name) throw new ValidationError('stacks.invalid', 'metadata.name: required');
    return { model: { project: d.metadata.project ?? 'default', name: d.metadata.name } };
  };
  const run = (id: string) => ({ id, workflow: 'stacks.apply', version: 1, status: 'pending' as const, input: {}, labels: {}, queue: 'default', createdAt: 1, updatedAt: 1 });
  return {
    rows,
    stacks: { find },
    parse,
    plan: async () => ({ changes: [] }),
    planDestroy: async () => ({ changes: [] }),
    apply: async (input) => {
      const { model } = parse(input.document);
      let row = await find(model.name, model.project);
      if (!row) {
        row = { id: `stk_fake${String(++n).padStart(10, '0')}`, project: model.project, name: model.name, revision: 0, status: 'pending', lastRunId: null };
        rows.set(row.id, row);
      }
      row.revision++;
      return { stack: row, revision: row.revision, run: run(`run_fake${n}`), plan: { changes: [] } };
    },
    destroy: async (id, o) => ({ stack: await get(id, o), run: run('run_fakedestroy'), plan: { changes: [] } }),
    get,
    list: async (f) => [...rows.values()].filter((r) => !f?.project || r.project === f.project),
    resources: async () => [],
    revisions: async () => [],
    document: async () => ({}),
    runs: async () => [],
    cancel: async () => run('run_x'),
    retry: async () => run('run_x'),
    approve: async () => undefined,
    observe: async () => ({}),
    reconcile: async () => run('run_x'),
    remove: async (id) => void rows.delete(id),
  };
}

export interface FullHarness extends Harness {
  engine: Engine;
  resources: ResourceStore;
  inventory: Inventory;
  ipam: Ipam;
  allocations: Allocations;
  sim: SimDatacenter;
  stacks: ReturnType<typeof fakeStacks>;
  apps: Apps;
  cleanupAll(): Promise<void>;
}

/** A server with every area plugged in (stacks faked), on a fresh database. */
export async function makeFullHarness(dialect: DialectName, opts: { server?: ServerOptions; logger?: Logger; startWorker?: boolean } = {}): Promise<FullHarness> {
  const t: TestDb = await openTestStore(dialect);
  const engine = new Engine({ store: t.store, pollMs: 20, queues: { [RESOURCE_QUEUE]: { concurrency: 1000, perKey: 1 } } });
  if (opts.startWorker) engine.startWorker();
  const resources = new ResourceStore(t.store, { engine, secretKey: Buffer.alloc(32, 3).toString('base64'), allowUnknownKinds: true });
  const inventory = new Inventory({ store: t.store, secrets: SecretBox.random() });
  const ipam = new Ipam({ store: t.store });
  const allocations = new Allocations({ store: t.store, inventory, ipam });
  engine.register(reserveWorkflow(allocations));
  const sim = await new SimDatacenter({ store: t.store, config: { speed: 1000 } }).init();
  const registry = new ProviderRegistry({ '*': 'sim' }).register(new SimProvider(sim));
  for (const w of resourceWorkflows({ resources, registry })) engine.register(w);
  const stacks = fakeStacks();
  const apps = new Apps({ resources, registry, engine, sim });
  const h = await makeHarness(dialect, { engine, t, areas: { resources, inventory, ipam, allocations, sim, stacks, apps }, ...(opts.server ? { server: opts.server } : {}), ...(opts.logger ? { logger: opts.logger } : {}) });
  return {
    ...h, engine, resources, inventory, ipam, allocations, sim, stacks, apps,
    async cleanupAll() {
      await h.close();
      await apps.stop();
      await engine.stop();
      await t.cleanup();
    },
  };
}

import { loadConfig } from './core/config.js';
import { createLogger } from './core/log.js';
import { isInfraflowError } from './core/errors.js';
import type { EngineApi } from './engine/types.js';
import { createContext } from './app/context.js';
import { buildApi } from './api/app.js';
import { setDraining } from './api/routes/system.js';
import type { AppContext } from './app/context.js';
import type { Config } from './core/config.js';
import type { Logger } from './core/log.js';
import { SecretBox, resolveSecretKey } from './core/secrets.js';
import { Inventory } from './inventory/inventory.js';
import { Ipam } from './ipam/ipam.js';
import { SimDatacenter, SimProvider } from './providers/sim/index.js';
import { ProviderRegistry } from './resources/registry.js';
import { ResourceStore } from './resources/store.js';
import { Stacks } from './stacks/index.js';

/**
 * `npm start`: one Infraflow process — HTTP API, worker, health endpoints.
 * SIGTERM/SIGINT: /readyz turns 503, the HTTP server stops accepting and
 * closes event streams, the worker lets in-flight steps finish or hands them
 * back, the database is closed, exit 0.
 */
async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger({ level: config.logLevel });
  const ctx = await createContext(config, logger);
  const engine: EngineApi = ctx.engine;
  // the context's area modules (resources, stacks, inventory, ipam…) plug in as route modules
  const areas = await areasOf(ctx, config, logger);
  const { app } = await buildApi({ config, store: ctx.store, clock: ctx.clock, logger, engine, areas });
  await app.listen({ host: config.http.host, port: config.http.port });
  if (config.worker.enabled) ctx.engine.startWorker();
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : config.http.port;
  logger.info({ url: `http://${config.http.host}:${port}`, database: ctx.store.dialect }, 'infraflow started');

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    setDraining(true);
    try {
      await app.close();
      await ctx.close();
    } catch (e) {
      logger.error({ err: e }, 'error during shutdown');
      process.exit(1);
    }
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

/**
 * The area modules the API exposes. When the composition root (src/app/context.ts)
 * builds them, they are used as they are; until it does, this builds the
 * single-process default: inventory, IPAM, the simulated datacenter as the
 * provider of every kind, the resource store and stacks on the context's
 * engine (one secret key for every component that seals secrets).
 */
async function areasOf(ctx: AppContext, config: Config, logger: Logger): Promise<Record<string, unknown>> {
  const have = ctx as unknown as Record<string, unknown>;
  if (have.resources && have.stacks) return have;
  const { store, clock, engine } = ctx;
  const box = SecretBox.fromConfig(config);
  const inventory = have.inventory ?? new Inventory({ store, secrets: box, clock });
  const ipam = have.ipam ?? new Ipam({ store, clock });
  const sim = await new SimDatacenter({ store, clock, config: { speed: config.sim.speed, seed: config.sim.seed } }).init();
  const resources = (have.resources as ResourceStore | undefined) ?? new ResourceStore(store, { engine, clock, secretKey: resolveSecretKey(config) });
  const registry = new ProviderRegistry({ '*': 'sim' }).register(new SimProvider(sim));
  const stacks = new Stacks({ store, engine, resources, registry, clock, logger });
  return { ...have, inventory, ipam, resources, registry, stacks };
}

main().catch((e: unknown) => {
  const msg = isInfraflowError(e) ? `${e.code}: ${e.message}` : e instanceof Error ? e.message : String(e);
  process.stderr.write(`infraflow: ${msg}\n`);
  process.exit(1);
});

import './node-version.js';
import { loadConfig } from './core/config.js';
import { createLogger } from './core/log.js';
import { isInfraflowError } from './core/errors.js';
import type { EngineApi } from './engine/types.js';
import { createContext } from './app/context.js';
import { buildApi } from './api/app.js';
import { setDraining } from './api/routes/system.js';

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
  // the context's area modules plug in as route modules
  const { inventory, ipam, allocations, resources, registry, sim, stacks, apps } = ctx;
  const areas = { inventory, ipam, allocations, resources, registry, sim, stacks, apps };
  const { app } = await buildApi({ config, store: ctx.store, clock: ctx.clock, logger, engine, areas });
  await app.listen({ host: config.http.host, port: config.http.port });
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

main().catch((e: unknown) => {
  const msg = isInfraflowError(e) ? `${e.code}: ${e.message}` : e instanceof Error ? e.message : String(e);
  process.stderr.write(`infraflow: ${msg}\n`);
  process.exit(1);
});

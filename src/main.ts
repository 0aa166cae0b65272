import Fastify from 'fastify';
import { loadConfig } from './core/config.js';
import { createLogger } from './core/log.js';
import { isInfraflowError } from './core/errors.js';
import { createContext } from './app/context.js';

/**
 * `npm start`: one Infraflow process — HTTP server, worker, health endpoint.
 * SIGTERM/SIGINT: stop taking work, let in-flight steps finish or hand them
 * back, close the database, exit 0.
 */
async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger({ level: config.logLevel });
  const ctx = await createContext(config, logger);
  const app = Fastify({ loggerInstance: logger.child({ component: 'http' }), bodyLimit: config.http.bodyLimitBytes });
  app.get('/healthz', async () => ({ status: 'ok' }));
  await app.listen({ host: config.http.host, port: config.http.port });
  logger.info({ url: `http://${config.http.host}:${config.http.port}`, database: ctx.store.dialect }, 'infraflow started');

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    await app.close();
    await ctx.close();
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

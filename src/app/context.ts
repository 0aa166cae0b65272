import { join, resolve } from 'node:path';
import type { Config } from '../core/config.js';
import { systemClock, type Clock } from '../core/clock.js';
import type { Logger } from '../core/log.js';
import { Store } from '../store/store.js';
import { migrate } from '../store/migrate.js';
import { allMigrations } from './migrations.js';
import { Engine } from '../engine/index.js';

/**
 * The composition root: builds every area from configuration, in dependency
 * order. Only `src/app` and `src/main.ts` know all areas.
 */
export interface AppContext {
  config: Config;
  logger: Logger;
  clock: Clock;
  store: Store;
  /** The durable workflow engine; its worker runs when config.worker.enabled. */
  engine: Engine;
  close(): Promise<void>;
}

export function databaseUrl(config: Config): string {
  return config.databaseUrl ?? `sqlite:${join(resolve(config.dataDir), 'infraflow.db')}`;
}

export async function createContext(config: Config, logger: Logger, clock: Clock = systemClock): Promise<AppContext> {
  const store = Store.open({ url: databaseUrl(config), synchronous: config.sqliteSynchronous });
  try {
    await migrate(store, allMigrations);
  } catch (e) {
    await store.close();
    throw e;
  }
  const engine = new Engine({
    store,
    clock,
    logger,
    concurrency: config.worker.concurrency,
    leaseMs: config.worker.leaseMs,
    heartbeatMs: config.worker.heartbeatMs,
    pollMs: config.worker.pollMs,
  });
  if (config.worker.enabled) engine.startWorker();
  return {
    config,
    logger,
    clock,
    store,
    engine,
    close: async () => {
      // Stop claiming, let in-flight steps finish (or hand runs back), then close the database.
      await engine.stop({ graceful: true });
      await store.close();
    },
  };
}

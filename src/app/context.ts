import { join, resolve } from 'node:path';
import type { Config } from '../core/config.js';
import { systemClock, type Clock } from '../core/clock.js';
import type { Logger } from '../core/log.js';
import { Store } from '../store/store.js';
import { migrate } from '../store/migrate.js';
import { allMigrations } from './migrations.js';

/**
 * The composition root: builds every area from configuration, in dependency
 * order. Only `src/app` and `src/main.ts` know all areas.
 */
export interface AppContext {
  config: Config;
  logger: Logger;
  clock: Clock;
  store: Store;
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
  return {
    config,
    logger,
    clock,
    store,
    close: async () => {
      await store.close();
    },
  };
}

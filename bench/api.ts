/**
 * API benchmark: `npm run bench:api [-- --json] [-- --quick] [-- --resources N] [-- --duration S] [-- --connections C] [-- --profile DIR] [-- --log]`
 *
 * Seeds a SQLite database with 100 000 resources, starts the real API server
 * (authentication, policy, audit hooks, schemas, redaction — everything a
 * request goes through) in a child process, and drives it with autocannon
 * on loopback, each endpoint measured right after the same server's
 * /healthz so that every figure has its floor from the same run:
 *
 *   GET /healthz                          the floor: Fastify with no auth, no database
 *   GET /api/v1/resources/:id             one resource by id (random among all), authorized
 *   GET /api/v1/resources?limit=100       a page of 100 (random cursor), authorized
 *
 * With --log the server logs at info (to /dev/null) as a production server
 * does, instead of not at all.
 *
 * With --profile DIR the server process is CPU-profiled (V8 sampling profiler
 * through node:inspector) during each measurement, and writes one
 * DIR/<measurement>.cpuprofile per measurement (healthz, get, list): open it in
 * Chrome DevTools or summarise it with `npx tsx bench/lib/cpuprofile.ts FILE`.
 *
 * With --json the last line is one JSON object with healthz_rps, get_rps,
 * get_p99_ms, list_rps, list_p99_ms (and the rest). `*_cpu_us` is the
 * server process's CPU time (user + system) per request during that
 * measurement: on a machine shared with other work it moves much less than
 * req/s, which depends on how much CPU the server was given.
 */
import { fork } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import autocannon from 'autocannon';

const argv = process.argv.slice(2);
const flag = (name: string) => argv.includes(`--${name}`);
const opt = (name: string, def: number) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && argv[i + 1] ? Number(argv[i + 1]) : def;
};

interface Ready { url: string; token: string; ids: string[]; seedMs: number; resources: number }

// ------------------------------------------------------------------ server (child process)
async function serve(): Promise<void> {
  const { Store } = await import('../src/store/store.js');
  const { migrate } = await import('../src/store/migrate.js');
  const { allMigrations } = await import('../src/app/migrations.js');
  const { ResourceStore } = await import('../src/resources/store.js');
  const { Iam } = await import('../src/iam/service.js');
  const { SecretBox } = await import('../src/core/secrets.js');
  const { systemClock } = await import('../src/core/clock.js');
  const { silentLogger } = await import('../src/core/log.js');
  const { pino } = await import('pino');
  const createLogger = (o: { level: string }, dest: ReturnType<typeof pino.destination>) => pino({ level: o.level, name: 'infraflow', redact: { paths: REDACT_PATHS, censor: '[redacted]' } }, dest);
  const { REDACT_PATHS } = await import('../src/core/log.js');
  const { createServer } = await import('../src/api/server.js');
  const dir = process.env.BENCH_DIR!;
  const count = Number(process.env.BENCH_RESOURCES);
  const store = Store.open({ url: `sqlite:${join(dir, 'bench.db')}`, synchronous: 'NORMAL' });
  await migrate(store, allMigrations);
  const resources = new ResourceStore(store, { secretKey: Buffer.alloc(32, 1).toString('base64'), allowUnknownKinds: true });
  const iam = new Iam({ store, box: SecretBox.random() });
  await iam.bootstrap({ adminPassword: 'bench-admin-password' });
  await iam.createProject({ name: 'bench' });
  const t0 = performance.now();
  const ids: string[] = [];
  // The first 1000 go through the module's own API; the rest copy the shape of those rows in bulk
  // (one prepared statement, transactions of 10 000) so that seeding 100k takes seconds, not minutes.
  const viaApi = Math.min(count, 1000);
  for (let j = 0; j < viaApi; j++) {
    const r = await resources.create({ kind: 'bench/Thing', name: `thing-${j}`, project: 'bench', spec: { size: j % 17, zone: `z${j % 3}` }, labels: { tier: j % 2 ? 'web' : 'db' } });
    ids.push(r.id);
  }
  const raw = store.sqlite!;
  const sample = raw.prepare('select * from resources where id = ?').get(ids[0]) as Record<string, unknown>;
  const cols = Object.keys(sample);
  const insert = raw.prepare(`insert into resources (${cols.join(', ')}) values (${cols.map((c) => '@' + c).join(', ')})`);
  const label = raw.prepare('insert into resource_labels (resource_id, key, value) values (?, ?, ?)');
  const { newId } = await import('../src/core/ids.js');
  for (let i = viaApi; i < count; i += 10_000) {
    raw.transaction(() => {
      for (let j = i; j < Math.min(count, i + 10_000); j++) {
        const id = newId('res');
        insert.run({ ...sample, id, name: `thing-${j}`, spec: JSON.stringify({ size: j % 17, zone: `z${j % 3}` }), labels: JSON.stringify({ tier: j % 2 ? 'web' : 'db' }) });
        label.run(id, 'tier', j % 2 ? 'web' : 'db');
        ids.push(id);
      }
    })();
  }
  // the API must see the bulk rows exactly like created ones
  if ((await resources.get(ids[ids.length - 1]!)).name !== `thing-${count - 1}`) throw new Error('bulk seed is not readable through the resource store');
  const seedMs = performance.now() - t0;
  const admin = await iam.getUser('admin');
  const { token } = await iam.createApiToken(admin.id, { name: 'bench' });
  // --log: the server logs at info like a production server (to /dev/null); default silent
  const logger = process.env.BENCH_LOG === '1' ? createLogger({ level: 'info' }, pino.destination({ dest: '/dev/null', sync: true })) : silentLogger;
  const app = await createServer({ store, clock: systemClock, logger, iam, areas: { resources } }, { rateLimit: false, docs: false });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const addr = app.server.address() as { port: number };
  process.send!({ url: `http://127.0.0.1:${addr.port}`, token, ids: ids.filter((_, i) => i % 10 === 0), seedMs, resources: count } satisfies Ready);
  const { Session } = await import('node:inspector/promises');
  const { writeFileSync } = await import('node:fs');
  let session: InstanceType<typeof Session> | undefined;
  process.on('message', async (m) => {
    const p = m as { profile?: 'start' | 'stop'; file?: string };
    if (p.profile === 'start') {
      session = new Session();
      session.connect();
      await session.post('Profiler.enable');
      await session.post('Profiler.start');
      process.send!('profiling');
    } else if ((m as { usage?: boolean }).usage) {
      process.send!({ usage: process.cpuUsage() });
    } else if (p.profile === 'stop' && session) {
      const { profile } = await session.post('Profiler.stop');
      writeFileSync(p.file!, JSON.stringify(profile));
      session.disconnect();
      session = undefined;
      process.send!('profiled');
    }
    if (m === 'stop') {
      await app.close();
      await store.close();
      process.exit(0);
    }
  });
}

// ------------------------------------------------------------------ driver
interface Measure { rps: number; p50: number; p99: number; errors: number; non2xx: number; requests: number; cpuUsPerReq?: number }

async function measure(url: string, duration: number, connections: number, opts: { token?: string; paths?: () => string; path?: string }): Promise<Measure> {
  const result = await autocannon({
    url: opts.path ? url + opts.path : url, connections, duration, pipelining: 1,
    headers: opts.token ? { authorization: `Bearer ${opts.token}` } : {},
    ...(opts.paths ? { requests: [{ setupRequest: (req: any) => ({ ...req, path: opts.paths!() }) }] } : {}),
  } as autocannon.Options);
  return { rps: result.requests.average, p50: result.latency.p50, p99: result.latency.p99, errors: result.errors, non2xx: result.non2xx, requests: result.requests.total };
}

async function main(): Promise<void> {
  const json = flag('json');
  const quick = flag('quick');
  const count = opt('resources', quick ? 10_000 : 100_000);
  const duration = opt('duration', quick ? 3 : 8);
  const connections = opt('connections', 32);
  const dir = mkdtempSync(join(tmpdir(), 'infraflow-bench-api-'));
  const log = (s: string) => (json ? process.stderr : process.stdout).write(s + '\n');
  log(`seeding ${count} resources and starting the API server…`);
  const profIdx = argv.indexOf('--profile');
  const profDir = profIdx >= 0 ? resolve(argv[profIdx + 1] ?? '.') : undefined;
  if (profDir) mkdirSync(profDir, { recursive: true });
  const child = fork(new URL(import.meta.url).pathname, ['--serve'], { env: { ...process.env, BENCH_DIR: dir, BENCH_RESOURCES: String(count), BENCH_LOG: flag('log') ? '1' : '0' }, execArgv: ['--import', 'tsx'], stdio: 'inherit' });
  const ask = <T = unknown>(m: Record<string, unknown>) => new Promise<T>((done) => {
    child.once('message', (r) => done(r as T));
    child.send(m);
  });
  const cpu = async () => (await ask<{ usage: NodeJS.CpuUsage }>({ usage: true })).usage;
  /** One measurement, with the server's CPU time per request (user + system, µs): steadier than req/s on a shared machine. */
  const phase = async (name: string, run: () => Promise<Measure>): Promise<Measure> => {
    if (profDir) await ask({ profile: 'start' });
    const before = await cpu();
    let m: Measure;
    try {
      m = await run();
    } finally {
      if (profDir) await ask({ profile: 'stop', file: join(profDir, `${name}.cpuprofile`) });
    }
    const after = await cpu();
    m.cpuUsPerReq = (after.user - before.user + after.system - before.system) / Math.max(1, m.requests);
    return m;
  };
  const ready = await new Promise<Ready>((resolve, reject) => {
    child.once('message', (m) => resolve(m as Ready));
    child.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
  });
  log(`seeded ${ready.resources} resources in ${(ready.seedMs / 1000).toFixed(1)} s; ${connections} connections, ${duration} s per measurement, loopback`);
  const rnd = <T>(xs: T[]) => xs[Math.floor(Math.random() * xs.length)]!;
  const cursor = (id: string) => Buffer.from(JSON.stringify({ a: id })).toString('base64url');
  try {
    // warm up
    await measure(ready.url, 1, connections, { path: '/healthz' });
    await measure(ready.url, 1, connections, { token: ready.token, paths: () => `/api/v1/resources/${rnd(ready.ids)}` });
    const healthz1 = await phase('healthz', () => measure(ready.url, duration, connections, { path: '/healthz' }));
    const get = await phase('get', () => measure(ready.url, duration, connections, { token: ready.token, paths: () => `/api/v1/resources/${rnd(ready.ids)}` }));
    const healthz2 = await phase('healthz2', () => measure(ready.url, duration, connections, { path: '/healthz' }));
    const list = await phase('list', () => measure(ready.url, duration, connections, { token: ready.token, paths: () => `/api/v1/resources?project=bench&limit=100&cursor=${cursor(rnd(ready.ids))}` }));
    const healthz = (healthz1.rps + healthz2.rps) / 2;
    const rows = [
      ['GET /healthz (floor)', healthz1, 1],
      ['GET /api/v1/resources/:id', get, get.rps / healthz1.rps],
      ['GET /healthz (floor)', healthz2, 1],
      ['GET /api/v1/resources?limit=100', list, list.rps / healthz2.rps],
    ] as const;
    log('');
    log('endpoint                              req/s     p50 ms   p99 ms   vs /healthz   server CPU µs/req   errors/non-2xx');
    for (const [name, m, ratio] of rows) log(`${name.padEnd(36)} ${m.rps.toFixed(0).padStart(7)}   ${m.p50.toFixed(1).padStart(6)}   ${m.p99.toFixed(1).padStart(6)}   ${(ratio * 100).toFixed(1).padStart(9)}%   ${(m.cpuUsPerReq ?? 0).toFixed(0).padStart(17)}   ${m.errors}/${m.non2xx}`);
    log('');
    log(`a GET of one resource runs at ${(get.rps / healthz1.rps * 100).toFixed(1)}% of the floor; a page of 100 at ${(list.rps / healthz2.rps * 100).toFixed(1)}% (${(list.rps * 100).toFixed(0)} resources/s)`);
    if (json) {
      process.stdout.write(JSON.stringify({
        resources: ready.resources, seed_s: Number((ready.seedMs / 1000).toFixed(1)), connections, duration_s: duration,
        healthz_rps: Math.round(healthz), healthz_p99_ms: healthz1.p99,
        get_rps: Math.round(get.rps), get_p50_ms: get.p50, get_p99_ms: get.p99, get_vs_healthz: Number((get.rps / healthz1.rps).toFixed(3)),
        list_rps: Math.round(list.rps), list_p50_ms: list.p50, list_p99_ms: list.p99, list_vs_healthz: Number((list.rps / healthz2.rps).toFixed(3)),
        healthz_cpu_us: Math.round((healthz1.cpuUsPerReq! + healthz2.cpuUsPerReq!) / 2), get_cpu_us: Math.round(get.cpuUsPerReq!), list_cpu_us: Math.round(list.cpuUsPerReq!),
        errors: get.errors + list.errors, non2xx: get.non2xx + list.non2xx,
      }) + '\n');
    }
  } finally {
    child.send('stop');
    await new Promise((r) => child.once('exit', r));
    rmSync(dir, { recursive: true, force: true });
  }
}

if (argv.includes('--serve')) {
  serve().catch((e: unknown) => {
    process.stderr.write(`bench server: ${e instanceof Error ? e.stack : String(e)}\n`);
    process.exit(1);
  });
} else {
  main().catch((e: unknown) => {
    process.stderr.write(`bench:api: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  });
}

/**
 * OpenStack façade benchmark: `npm run bench:openstack [-- --json] [-- --servers N] [-- --requests R]`
 *
 * Starts a real Infraflow process (src/main.ts: SQLite in a temp dir, the
 * simulator at speed 1000, rate limit off) and talks to its OpenStack façade
 * the way a client does (Keystone token, then Nova/Neutron over HTTP):
 *
 *   server_create_to_active_s_infraflow_sim   POST /servers → GET /servers/{id} until ACTIVE (median of 5; the
 *                                             simulator's boot latency is divided by its speed, 1000)
 *   server_list_p99_ms_infraflow              GET /servers/detail with N (1,000) servers, R sequential requests, p99
 *   healthz_p99_ms                            GET /healthz on the same server, same client: the floor
 *
 * and the ratio of the list to the floor. The `*_openstack` figures need the
 * real OpenStack of test/openstack/devstack-lite.sh (OPENSTACK_BENCH_AUTH_URL…);
 * without it they are null and `openstack_note` says why.
 *
 * With --json the last line is one JSON object.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const argv = process.argv.slice(2);
const json = argv.includes('--json');
const opt = (name: string, def: number) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && argv[i + 1] ? Number(argv[i + 1]) : def;
};
const SERVERS = opt('servers', 1000);
const REQUESTS = opt('requests', 60);
const ROOT = resolve(import.meta.dirname, '..');
const log = (s: string) => {
  if (!json) process.stdout.write(s + '\n');
  else process.stderr.write(s + '\n');
};

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-openstack-'));
  const password = 'bench-openstack-password';
  const child = spawn(process.execPath, [join(ROOT, 'node_modules/tsx/dist/cli.mjs'), join(ROOT, 'src/main.ts')], {
    cwd: dir, stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, INFRAFLOW_DATA_DIR: join(dir, 'data'), INFRAFLOW_PORT: '0', INFRAFLOW_HOST: '127.0.0.1', INFRAFLOW_ADMIN_PASSWORD: password, INFRAFLOW_SIM_SPEED: '1000', INFRAFLOW_RATE_LIMIT: '0', INFRAFLOW_LOG_LEVEL: 'warn', INFRAFLOW_WORKER_CONCURRENCY: '64' },
  });
  try {
    let out = '';
    const base = await new Promise<string>((res, rej) => {
      const on = (b: Buffer) => {
        out += b.toString();
        const m = /"url":"(http:\/\/[^"]+)","database"/.exec(out);
        if (m) res(m[1]!);
      };
      child.stdout.on('data', on);
      child.stderr.on('data', on);
      child.on('exit', (c) => rej(new Error(`infraflow exited (${c}):\n${out.slice(-2000)}`)));
    });
    const os = `${base}/openstack`;
    const auth = await fetch(`${os}/identity/v3/auth/tokens`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ auth: { identity: { methods: ['password'], password: { user: { name: 'admin', password, domain: { name: 'Default' } } } }, scope: { project: { name: 'default', domain: { name: 'Default' } } } } }),
    });
    const token = auth.headers.get('x-subject-token')!;
    const h = { 'x-auth-token': token, 'content-type': 'application/json', 'openstack-api-version': 'compute 2.60' };
    const call = async (method: string, path: string, body?: unknown) => {
      const r = await fetch(`${os}${path}`, { method, headers: h, ...(body ? { body: JSON.stringify(body) } : {}) });
      const text = await r.text();
      if (r.status >= 400) throw new Error(`${method} ${path}: ${r.status} ${text.slice(0, 300)}`);
      return text ? JSON.parse(text) : undefined;
    };
    const net = (await call('POST', '/network/v2.0/networks', { network: { name: 'bench' } })).network;
    await call('POST', '/network/v2.0/subnets', { subnet: { network_id: net.id, cidr: '10.99.0.0/20', ip_version: 4, name: 'bench' } });
    // a small flavor, so that 1,000 servers fit the simulator's default hypervisors (4 × 64 vCPU × 4, 4 × 256 GiB)
    const flavor = (await call('POST', '/compute/v2.1/flavors', { flavor: { name: 'bench.tiny', vcpus: 1, ram: 512, disk: 5 } })).flavor.id as string;
    const createServer = (name: string) => call('POST', '/compute/v2.1/servers', { server: { name, flavorRef: flavor, imageRef: 'img-debian-12', networks: [{ uuid: net.id }] } }).then((x) => x.server.id as string);
    const untilActive = async (id: string) => {
      for (;;) {
        const s = (await call('GET', `/compute/v2.1/servers/${id}`)).server;
        if (s.status === 'ACTIVE') return;
        if (s.status === 'ERROR') throw new Error(`server ${id} failed: ${JSON.stringify(s.fault)}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };

    // create → ACTIVE, one at a time
    const times: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      await untilActive(await createServer(`probe-${i}`));
      times.push((performance.now() - t0) / 1000);
    }
    const createToActive = pct(times, 50);
    log(`server create → ACTIVE (simulator at speed 1000): median ${createToActive.toFixed(3)} s over 5`);

    // fill up to SERVERS, 16 in flight
    const t1 = performance.now();
    let next = 5;
    const ids: string[] = [];
    await Promise.all(Array.from({ length: 16 }, async () => {
      while (next < SERVERS) {
        const i = next++;
        ids.push(await createServer(`vm-${i}`));
      }
    }));
    for (;;) {
      const list = (await call('GET', '/compute/v2.1/servers/detail')).servers as { status: string; fault?: { message?: string } }[];
      const active = list.filter((s) => s.status === 'ACTIVE').length;
      if (active >= SERVERS) break;
      const failed = list.find((s) => s.status === 'ERROR') as { fault?: { message?: string } } | undefined;
      if (failed) throw new Error(`a server went to ERROR while filling: ${failed.fault?.message ?? '(no fault)'}`);
      await new Promise((r) => setTimeout(r, 1000));
    }
    log(`${SERVERS} servers ACTIVE in ${((performance.now() - t1) / 1000).toFixed(1)} s`);

    const measure = async (url: string, hdrs: Record<string, string>) => {
      const xs: number[] = [];
      for (let i = 0; i < REQUESTS; i++) {
        const t0 = performance.now();
        const r = await fetch(url, { headers: hdrs });
        await r.arrayBuffer();
        xs.push(performance.now() - t0);
      }
      return xs;
    };
    const list = await measure(`${os}/compute/v2.1/servers/detail`, h);
    const floor = await measure(`${base}/healthz`, {});
    const p99 = pct(list, 99);
    const floorP99 = pct(floor, 99);
    log(`GET /servers/detail with ${SERVERS} servers: p50 ${pct(list, 50).toFixed(1)} ms, p99 ${p99.toFixed(1)} ms (healthz p99 ${floorP99.toFixed(2)} ms; ratio ${(p99 / floorP99).toFixed(0)}x)`);
    const result = {
      servers: SERVERS, requests: REQUESTS, sim_speed: 1000,
      server_list_p50_ms_infraflow: Number(pct(list, 50).toFixed(2)), server_list_p99_ms_infraflow: Number(p99.toFixed(2)),
      healthz_p99_ms: Number(floorP99.toFixed(3)), server_list_p99_over_healthz: Number((p99 / floorP99).toFixed(1)),
      server_create_to_active_s_infraflow_sim: Number(createToActive.toFixed(3)),
      server_list_p99_ms_openstack: null, server_create_to_active_s_openstack: null,
      openstack_note: 'the real OpenStack (test/openstack/devstack-lite.sh) is not running here: no *_openstack figures',
    };
    if (json) process.stdout.write(JSON.stringify(result) + '\n');
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => (child.exitCode !== null ? r(null) : child.once('exit', r)));
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:openstack: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});

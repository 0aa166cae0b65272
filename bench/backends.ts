/**
 * `npm run bench:backends [-- --json] [-- --rounds 3]`
 *
 * Real backends started here (as the test suite does): PowerDNS (sqlite3),
 * Kea DHCPv4 behind its control agent, Open vSwitch (userspace datapath).
 * For each, the rate through Infraflow's provider (64 calls in flight) next
 * to the same backend API calls made directly by a client with 64 in
 * flight, measured in the same run, alternating rounds; the median round
 * is reported.
 *
 * - dns: records created (`dns/Record` create, one A record each) vs one
 *   PowerDNS PATCH (REPLACE) per record.
 * - dhcp: reservations created (`dhcp/Reservation` create) vs one Kea
 *   `config-get` + `config-set` per reservation (what a client without the
 *   premium host_cmds hook must do). Concurrent direct calls overwrite each
 *   other: `dhcp_direct_lost` counts reservations missing afterwards.
 * - switch: port moves (`network/SwitchPort` create onto another VLAN) vs
 *   one `ovs-vsctl set Port <p> tag=<vlan>` per move.
 *
 * Each also reports `*_direct_serial`: the direct calls one at a time (the
 * rate a careful client gets from these backends without batching).
 *
 * Needs the Debian packages in .ci/apt/backends.txt and root (namespaces).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { KeaProvider } from '../src/providers/kea/index.js';
import { PowerDnsProvider } from '../src/providers/powerdns/index.js';
import { SwitchPortProvider } from '../src/providers/switches/index.js';
import { parseSpec } from '../src/resources/kinds.js';
import type { ProviderCallContext } from '../src/resources/types.js';
import { startKea } from '../test/real/backends/kea-server.js';
import { startOvs } from '../test/real/backends/ovs-switch.js';
import { startPowerDns } from '../test/real/backends/pdns-server.js';
import { fmt, nowMs } from './lib/stats.js';

const args = process.argv.slice(2);
const JSON_OUT = args.includes('--json');
const ri = args.indexOf('--rounds');
const ROUNDS = ri >= 0 ? Number(args[ri + 1]) : 3;
const IN_FLIGHT = 64;
const log = (s: string) => process.stderr.write(s + '\n');
const run = promisify(execFile);

let seq = 0;
const ctx = (project = 'bench'): ProviderCallContext => ({ idempotencyKey: `b${seq++}`, project, resourceId: `res_b${seq}`, resourceName: `b${seq}` });

/** Runs `count` tasks with `inFlight` at a time; answers calls per second. */
async function rate(count: number, task: (i: number) => Promise<unknown>, inFlight = IN_FLIGHT): Promise<number> {
  let next = 0;
  const t0 = nowMs();
  await Promise.all(Array.from({ length: inFlight }, async () => {
    while (next < count) { const i = next++; await task(i); }
  }));
  return count / ((nowMs() - t0) / 1000);
}

/** Daemons to stop if the run is interrupted (Ctrl-C): no pdns_server, kea or ovs-vswitchd left behind. */
const stops = new Set<() => Promise<void>>();
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => { void Promise.allSettled([...stops].map((f) => f())).then(() => process.exit(130)); });
}
async function started<T extends { stop(): Promise<void> }>(x: Promise<T>): Promise<T> {
  const v = await x;
  stops.add(v.stop);
  return v;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function benchDns(): Promise<Record<string, number>> {
  const server = await started(startPowerDns());
  try {
    const p = new PowerDnsProvider({ url: server.url, apiKey: server.apiKey });
    const h = p.handler('dns/Record');
    const N = 1000;
    const ours: number[] = [];
    const direct: number[] = [];
    let directRetries = 0;
    const serial: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const zd = `direct${r}.bench`;
      const zi = `infra${r}.bench`;
      for (const z of [zd, zi]) await p.handler('dns/Zone').create(parseSpec('dns/Zone', { name: z }), ctx());
      direct.push(await rate(N / 5, async (i) => {
        // concurrent writes to PowerDNS's sqlite3 backend fail now and then ("database is locked" → 500): the client retries
        for (;;) {
          const res = await fetch(`${server.url}/api/v1/servers/localhost/zones/${zd}.`, { method: 'PATCH', headers: { 'X-API-Key': server.apiKey, 'content-type': 'application/json' }, body: JSON.stringify({ rrsets: [{ name: `h${i}.${zd}.`, type: 'A', ttl: 300, changetype: 'REPLACE', records: [{ content: `10.${r}.${i >> 8}.${i & 255}`, disabled: false }] }] }) });
          if (res.status === 204) return;
          const text = await res.text();
          if (res.status !== 500) throw new Error(`direct PATCH: HTTP ${res.status} ${text}`);
          directRetries++;
        }
      }));
      const zs = `serial${r}.bench`;
      await p.handler('dns/Zone').create(parseSpec('dns/Zone', { name: zs }), ctx());
      serial.push(await rate(N / 4, async (i) => {
        const res = await fetch(`${server.url}/api/v1/servers/localhost/zones/${zs}.`, { method: 'PATCH', headers: { 'X-API-Key': server.apiKey, 'content-type': 'application/json' }, body: JSON.stringify({ rrsets: [{ name: `h${i}.${zs}.`, type: 'A', ttl: 300, changetype: 'REPLACE', records: [{ content: '10.0.0.1', disabled: false }] }] }) });
        if (res.status !== 204) throw new Error(`serial PATCH: HTTP ${res.status}`);
      }, 1));
      ours.push(await rate(N, (i) => h.create(parseSpec('dns/Record', { zone: zi, name: `h${i}`, type: 'A', values: [`10.${r}.${i >> 8}.${i & 255}`] }), ctx())));
      // every record landed, both ways
      const [zdz, ziz] = [await p.getZone(zd), await p.getZone(zi)];
      const count = (z: typeof zdz) => z!.rrsets!.filter((x) => x.type === 'A').length;
      if (count(zdz) !== N / 5 || count(ziz) !== N) throw new Error(`dns: expected ${N / 5} records direct and ${N} through Infraflow, found ${count(zdz)} and ${count(ziz)}`);
      log(`dns round ${r + 1}: infraflow ${fmt(ours[r])}/s, direct ${fmt(direct[r])}/s (64 in flight), ${fmt(serial[r])}/s (one at a time)`);
    }
    return { dns_records_per_s: median(ours), dns_records_per_s_direct: median(direct), dns_direct_retries: directRetries, dns_records_per_s_direct_serial: median(serial) };
  } finally {
    stops.delete(server.stop);
    await server.stop();
  }
}

async function benchDhcp(): Promise<Record<string, number>> {
  const kea = await started(startKea('10.60.0.1/16'));
  try {
    const p = new KeaProvider({ url: kea.url, username: kea.username, password: kea.password, persist: false, timeoutMs: 300_000 });
    await p.handler('dhcp/Subnet').create(parseSpec('dhcp/Subnet', { cidr: '10.60.0.0/16' }), ctx());
    const h = p.handler('dhcp/Reservation');
    const N = 200;
    const ours: number[] = [];
    const direct: number[] = [];
    let lost = 0;
    const serial: number[] = [];
    const reset = async () => {
      const cfg = await p.getConfig();
      cfg.subnet4![0]!.reservations = [];
      delete cfg.hash;
      await p.command('config-set', { Dhcp4: cfg });
    };
    const mac = (r: number, i: number, d: number) => `52:54:${d.toString(16).padStart(2, '0')}:${r.toString(16).padStart(2, '0')}:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`;
    for (let r = 0; r < ROUNDS; r++) {
      await reset();
      direct.push(await rate(N, async (i) => {
        const a = await p.command('config-get');
        const cfg = a.arguments!.Dhcp4;
        delete cfg.hash;
        cfg.subnet4[0].reservations.push({ 'hw-address': mac(r, i, 1), 'ip-address': `10.60.${1 + (i >> 8)}.${i & 255}` });
        const s = await p.command('config-set', { Dhcp4: cfg });
        if (s.result !== 0) throw new Error(`direct config-set: ${s.text}`);
      }));
      const landed = (await p.getConfig()).subnet4![0]!.reservations!.length;
      lost += N - landed;
      await reset();
      serial.push(await rate(N / 3, async (i) => {
        const a = await p.command('config-get');
        const cfg = a.arguments!.Dhcp4;
        delete cfg.hash;
        cfg.subnet4[0].reservations.push({ 'hw-address': mac(r, i, 3), 'ip-address': `10.60.${1 + (i >> 8)}.${i & 255}` });
        const s2 = await p.command('config-set', { Dhcp4: cfg });
        if (s2.result !== 0) throw new Error(`serial config-set: ${s2.text}`);
      }, 1));
      await reset();
      ours.push(await rate(N, (i) => h.create(parseSpec('dhcp/Reservation', { mac: mac(r, i, 2), address: `10.60.${1 + (i >> 8)}.${i & 255}` }), ctx())));
      const mine = (await p.getConfig()).subnet4![0]!.reservations!.length;
      if (mine !== N) throw new Error(`dhcp: expected ${N} reservations through Infraflow, found ${mine}`);
      log(`dhcp round ${r + 1}: infraflow ${fmt(ours[r])}/s, direct ${fmt(direct[r])}/s (64 in flight; lost ${N - landed} of ${N} to concurrent overwrites), ${fmt(serial[r])}/s (one at a time)`);
    }
    return { dhcp_reservations_per_s: median(ours), dhcp_reservations_per_s_direct: median(direct), dhcp_direct_lost: lost, dhcp_reservations_per_s_direct_serial: median(serial) };
  } finally {
    stops.delete(kea.stop);
    await kea.stop();
  }
}

async function benchSwitch(): Promise<Record<string, number>> {
  const sw = await started(startOvs());
  try {
    const ports = Array.from({ length: IN_FLIGHT }, (_, i) => sw.addHost(`b${i}`).port);
    const p = new SwitchPortProvider({ switches: { leaf1: sw.driver }, defaultVlan: 999 });
    const h = p.handler('network/SwitchPort');
    const MOVES = IN_FLIGHT * 6;
    const ours: number[] = [];
    const direct: number[] = [];
    let vlan = 100;
    const serial: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const base = vlan;
      direct.push(await rate(MOVES, (i) => run('ovs-vsctl', [`--db=${sw.db}`, '--timeout=30', 'set', 'Port', ports[i % IN_FLIGHT]!, `tag=${base + Math.floor(i / IN_FLIGHT)}`])));
      vlan += MOVES / IN_FLIGHT;
      const base1 = vlan;
      serial.push(await rate(IN_FLIGHT, (i) => run('ovs-vsctl', [`--db=${sw.db}`, '--timeout=30', 'set', 'Port', ports[i]!, `tag=${base1}`]), 1));
      vlan += 1;
      const base2 = vlan;
      // one move per port at a time (a port's moves are one resource's updates, which run one after another)
      ours.push(await rate(MOVES, async (i) => { await h.create(parseSpec('network/SwitchPort', { switch: 'leaf1', port: ports[i % IN_FLIGHT]!, vlan: base2 + Math.floor(i / IN_FLIGHT) }), ctx()); }));
      vlan += MOVES / IN_FLIGHT;
      const tags = await sw.driver.describe(ports);
      const wrong = ports.filter((port) => tags.get(port)?.vlan !== vlan - 1);
      if (wrong.length) throw new Error(`switch: ${wrong.length} ports are not on VLAN ${vlan - 1} after the moves`);
      log(`switch round ${r + 1}: infraflow ${fmt(ours[r])}/s, direct ${fmt(direct[r])}/s (64 in flight), ${fmt(serial[r])}/s (one at a time)`);
    }
    return { switch_port_moves_per_s: median(ours), switch_port_moves_per_s_direct: median(direct), switch_port_moves_per_s_direct_serial: median(serial) };
  } finally {
    stops.delete(sw.stop);
    await sw.stop();
  }
}

const out: Record<string, number> = { in_flight: IN_FLIGHT, rounds: ROUNDS };
Object.assign(out, await benchDns());
Object.assign(out, await benchDhcp());
Object.assign(out, await benchSwitch());
out.dns_ratio = out.dns_records_per_s! / out.dns_records_per_s_direct!;
out.dhcp_ratio = out.dhcp_reservations_per_s! / out.dhcp_reservations_per_s_direct!;
out.switch_ratio = out.switch_port_moves_per_s! / out.switch_port_moves_per_s_direct!;
for (const k of Object.keys(out)) out[k] = Math.round(out[k]! * 100) / 100;
log('');
log(`dns records/s       infraflow ${fmt(out.dns_records_per_s)}  direct ${fmt(out.dns_records_per_s_direct)}  ratio ${fmt(out.dns_ratio, 2)}`);
log(`dhcp reservations/s infraflow ${fmt(out.dhcp_reservations_per_s)}  direct ${fmt(out.dhcp_reservations_per_s_direct)}  ratio ${fmt(out.dhcp_ratio, 2)}`);
log(`switch moves/s      infraflow ${fmt(out.switch_port_moves_per_s)}  direct ${fmt(out.switch_port_moves_per_s_direct)}  ratio ${fmt(out.switch_ratio, 2)}`);
if (JSON_OUT) process.stdout.write(JSON.stringify(out) + '\n');

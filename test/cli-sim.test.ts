import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Writable } from 'node:stream';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { DIALECTS } from './support/dialects.js';
import { makeFullHarness, type FullHarness } from './api-fixtures.js';
import { runCli } from '../src/cli/main.js';
import type { ProviderCallContext, ReadResult } from '../src/resources/types.js';

/**
 * `infraflow sim …` in process (runCli with captured streams) against a
 * listening API server with a real SimDatacenter: status, speed, seed,
 * fault rules from a file, quotas, hosts, objects, drift, resolve, logs,
 * metrics; errors are one line with the documented exit codes.
 */
describe.each(DIALECTS)('infraflow sim commands on %s', (dialect) => {
  let h: FullHarness;
  let url: string;
  let dir: string;
  let member = '';

  const run = async (args: string[], opts: { token?: string | undefined } = {}) => {
    let out = '';
    let err = '';
    const sink = (f: (s: string) => void) => new Writable({ write(c, _e, cb) { f(String(c)); cb(); } });
    const code = await runCli(args, {
      out: sink((s) => (out += s)), err: sink((s) => (err += s)), isTty: false,
      env: { INFRAFLOW_CLI_CONFIG: join(dir, 'cli.yaml'), INFRAFLOW_URL: url, ...('token' in opts ? (opts.token ? { INFRAFLOW_TOKEN: opts.token } : {}) : { INFRAFLOW_TOKEN: h.adminToken }) },
      stdin: async () => '',
    });
    return { code, out, err };
  };
  const call = (key: string, project = 'demo'): ProviderCallContext => ({ idempotencyKey: `cli-sim:${key}`, project, resourceId: `res_${key}`, resourceName: key });
  const until = async (kind: string, id: string): Promise<ReadResult> => {
    let r = await h.sim.read(kind, id);
    for (let i = 0; i < 2000 && r.state !== 'ready'; i++) {
      await new Promise((res) => setTimeout(res, 5));
      r = await h.sim.read(kind, id);
    }
    expect(r.state).toBe('ready');
    return r;
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'infraflow-cli-sim-'));
    h = await makeFullHarness(dialect);
    url = await h.app.listen({ host: '127.0.0.1', port: 0 });
    await h.iam.createProject({ name: 'demo' });
    member = (await h.userWith('mo', 'member', { project: 'demo' })).token;
  });
  afterAll(async () => {
    await h?.cleanupAll();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('status, speed and seed', async () => {
    const st = await run(['sim', 'status']);
    expect(st.code).toBe(0);
    expect(st.out).toMatch(/speed\s+1000x/);
    expect(st.out).toMatch(/hosts\s+4 \(4 enabled\)/);
    expect(JSON.parse((await run(['sim', 'status', '-o', 'json'])).out)).toMatchObject({ speed: 1000, seed: 42 });

    const set = await run(['sim', 'speed', '1000000']);
    expect(set).toMatchObject({ code: 0, out: 'sim speed set to 1000000x\n' });
    expect((await run(['sim', 'speed'])).out).toBe('1000000\n');
    expect(await h.sim.getSpeed()).toBe(1_000_000);
    const badSpeed = await run(['sim', 'speed', 'fast']);
    expect(badSpeed.code).toBe(2);
    expect(badSpeed.err).toBe('infraflow: speed: "fast" is not a number\n');
    const neg = await run(['sim', 'speed', '-5']);
    expect(neg.code).toBe(2);
    const denied = await run(['sim', 'speed', '10'], { token: member });
    expect(denied.code).toBe(3);
    expect(denied.err.trim().split('\n')).toHaveLength(1);
    expect(denied.err).toContain('sim:control');

    expect((await run(['sim', 'seed', '9'])).out).toBe('sim seed set to 9\n');
    expect((await run(['sim', 'seed'])).out).toBe('9\n');
    expect((await run(['sim', 'seed', '1.5'])).code).toBe(2);
    await run(['sim', 'seed', '42']);
  });

  it('faults: set from YAML and JSON files, list, refuse a bad file naming the field, clear', async () => {
    const yamlFile = join(dir, 'faults.yaml');
    writeFileSync(yamlFile, 'rules:\n  - kind: compute/Server\n    op: create\n    transientRate: 1\n    attempts: 2\n  - kind: "*"\n    op: delete\n    slowRate: 0.5\n    slowFactor: 4\n');
    expect(await run(['sim', 'faults', 'set', '-f', yamlFile])).toMatchObject({ code: 0, out: 'sim fault rules set: 2 rule(s)\n' });
    const list = await run(['sim', 'faults', 'list']);
    expect(list.out).toMatch(/compute\/Server\s+create\s+transientRate=1\s+2/);
    expect(list.out).toContain('slowRate=0.5 x4');
    expect((await run(['sim', 'faults'])).out).toBe(list.out); // list is the default
    expect(parseYaml((await run(['sim', 'faults', '-o', 'yaml'])).out).rules).toHaveLength(2);

    const jsonFile = join(dir, 'bad.json');
    writeFileSync(jsonFile, JSON.stringify([{ kind: 'compute/Server', transientRate: 1.5 }]));
    const bad = await run(['sim', 'faults', 'set', '-f', jsonFile]);
    expect(bad.code).toBe(2);
    expect(bad.err).toContain('rules.0.transientRate');
    expect(bad.err.trim().split('\n')).toHaveLength(1);
    expect((await h.sim.getFaults()).rules).toHaveLength(2);
    const broken = join(dir, 'broken.yaml');
    writeFileSync(broken, 'rules: [');
    expect((await run(['sim', 'faults', 'set', '-f', broken])).code).toBe(2);
    expect((await run(['sim', 'faults', 'set', '-f', join(dir, 'missing.yaml')])).code).toBe(2);

    expect(await run(['sim', 'faults', 'clear'])).toMatchObject({ code: 0, out: 'sim fault rules cleared\n' });
    expect((await run(['sim', 'faults', 'list'])).out).toBe('No items.\n');
  });

  it('quota get and set', async () => {
    const set = await run(['sim', 'quota', 'set', 'demo', '--cores', '16', '--ram-mb', '65536']);
    expect(set.code).toBe(0);
    expect(set.out).toContain('cores=16');
    expect(set.out).toContain('ramMb=65536');
    expect(set.out).toContain('instances=1000');
    expect((await run(['sim', 'quota', 'get', 'demo'])).out).toMatch(/cores\s+16/);
    expect((await run(['-p', 'demo', 'sim', 'quota', 'get', '-o', 'json'])).out).toContain('"cores": 16');
    expect((await run(['sim', 'quota', 'set', 'demo'])).code).toBe(2);
    expect((await run(['sim', 'quota', 'set', 'demo', '--cores', 'lots'])).code).toBe(2);
    const missing = await run(['sim', 'quota', 'get', 'nowhere']);
    expect(missing.code).toBe(4);
    expect(missing.err).toContain('project nowhere not found');
  });

  it('hosts, objects, drift, logs, metrics and resolve', async () => {
    await run(['sim', 'speed', '1000000']);
    const hosts = await run(['sim', 'hosts']);
    expect(hosts.out).toMatch(/^NAME\s+ZONE/);
    expect(hosts.out).toContain('hv-04');
    expect((await run(['sim', 'hosts', 'disable', 'hv-02'])).out).toBe('hypervisor hv-02 disabled\n');
    expect(JSON.parse((await run(['sim', 'hosts', '-o', 'json'])).out).items.find((x: { name: string }) => x.name === 'hv-02').enabled).toBe(false);
    expect((await run(['sim', 'hosts', 'enable', 'hv-02'])).code).toBe(0);
    expect((await run(['sim', 'hosts', 'disable', 'hv-77'])).code).toBe(4);

    const net = await h.sim.create('network/Network', {}, call('net1'));
    await until('network/Network', net.externalId);
    const cl = await h.sim.create('container/Cluster', { version: '1.30', nodePools: [{ name: 'w', count: 2 }] }, call('cl1'));
    const clr = await until('container/Cluster', cl.externalId);
    const wl = await h.sim.create('container/Workload', { cluster: cl.externalId, image: 'nginx:1.27', replicas: 2 }, call('wl1'));
    await until('container/Workload', wl.externalId);

    const objs = await run(['sim', 'objects', '-A']);
    expect(objs.code).toBe(0);
    expect(objs.out).toContain(net.externalId);
    expect(objs.out).not.toContain(clr.secrets!.adminPassword!);
    const nets = JSON.parse((await run(['-p', 'demo', 'sim', 'objects', '--kind', 'network/Network', '-o', 'json'])).out);
    expect(nets.items.map((o: { id: string }) => o.id)).toEqual([net.externalId]);
    const one = await run(['sim', 'object', cl.externalId]);
    expect(parseYaml(one.out).kind).toBe('container/Cluster');
    expect(one.out).not.toContain(clr.secrets!.adminPassword!);

    expect((await run(['sim', 'drift', net.externalId, 'modify', '--patch', '{"mtu":1400}'])).out).toBe(`network/Network net1 (${net.externalId}): modify applied, phase ready\n`);
    expect((await h.sim.read('network/Network', net.externalId)).observed?.mtu).toBe(1400);
    expect((await run(['sim', 'drift', net.externalId, 'modify', '--patch', '{nope'])).code).toBe(2);
    expect((await run(['sim', 'drift', net.externalId, 'power', 'sideways'])).code).toBe(2);
    const noPower = await run(['sim', 'drift', net.externalId, 'power', 'off']);
    expect(noPower.code).toBe(2);
    expect(noPower.err).toContain('only compute/Server and metal/Instance have power');
    expect((await run(['sim', 'drift', net.externalId, 'explode'])).code).toBe(2);
    expect((await run(['sim', 'drift', cl.externalId, 'health', '--not-ready', '1', '--degraded', 'coredns'])).code).toBe(0);
    expect((await h.sim.read('container/Cluster', cl.externalId)).outputs.health).toBe('degraded');
    expect((await run(['sim', 'drift', wl.externalId, 'load', '300'])).code).toBe(0);
    expect((await run(['sim', 'metrics', wl.externalId])).out).toMatch(/load\s+300 req\/s/);
    const logs = await run(['sim', 'logs', wl.externalId, '--tail', '3']);
    expect(logs.code).toBe(0);
    expect(logs.out.trim().split('\n').length).toBeLessThanOrEqual(3);
    expect((await run(['sim', 'drift', net.externalId, 'delete'])).out).toContain('delete applied, phase deleted');
    expect((await h.sim.read('network/Network', net.externalId)).state).toBe('absent');
    expect((await run(['sim', 'drift', net.externalId, 'delete'], { token: member })).code).toBe(3);
    const gone = await run(['sim', 'drift', 'srv_nope', 'delete']);
    expect(gone.code).toBe(4);
    expect(gone.err).toMatch(/^infraflow: simulator object srv_nope does not exist.*\[sim.object_not_found\]\n$/);

    const zone = await h.sim.create('dns/Zone', { name: 'demo.test' }, call('zone'));
    await until('dns/Zone', zone.externalId);
    const rec = await h.sim.create('dns/Record', { zone: 'demo.test', name: 'app', type: 'A', values: ['10.7.0.9'] }, call('rec'));
    await until('dns/Record', rec.externalId);
    expect((await run(['sim', 'resolve', 'app.demo.test'])).out).toBe('app.demo.test.\t300\tIN\tA\t10.7.0.9\n');
    expect((await run(['sim', 'resolve', 'nothing.demo.test'])).out).toBe('nothing.demo.test: NXDOMAIN (no such name)\n');
    expect(JSON.parse((await run(['sim', 'resolve', 'app.demo.test', '-o', 'json'])).out).rcode).toBe('NOERROR');
    // readers may look
    expect((await run(['sim', 'status'], { token: member })).code).toBe(0);
  });
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { makeFullHarness, type FullHarness } from './api-fixtures.js';
import { runCliCaptured } from './fixtures/cli-run.js';
import { importInventory } from '../src/inventory/yaml.js';
import { connectCapacitySignals } from '../src/inventory/wait.js';
import { until } from '../src/engine/test-helpers.js';
import { SMALL_SITE } from './fixtures/alloc-site.js';

/**
 * `infraflow alloc`: check (exit 1 when not feasible), reserve from flags
 * and from a file, list, get, commit, abort, release, against a listening
 * server; bad flags give one line and exit code 2. (The routes themselves
 * are tested on both databases in test/api-allocations.test.ts.)
 */
describe('infraflow alloc', () => {
  let h: FullHarness;
  let url: string;
  let dir: string;
  let vlanPool: string;
  let net: string;

  const run = (args: string[], token: string | undefined = h.adminToken) =>
    runCliCaptured(args, { INFRAFLOW_CLI_CONFIG: join(dir, 'cli.yaml'), INFRAFLOW_URL: url, ...(token ? { INFRAFLOW_TOKEN: token } : {}) });

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'infraflow-cli-alloc-'));
    h = await makeFullHarness('sqlite', { startWorker: true });
    connectCapacitySignals(h.inventory, h.engine);
    url = await h.app.listen({ host: '127.0.0.1', port: 0 });
    await importInventory(h.inventory, SMALL_SITE);
    net = (await h.ipam.createPrefix({ cidr: '10.31.0.0/28', scope: 'dc1' })).id;
    vlanPool = (await h.ipam.createVlanPool({ name: 'cli-vlans', scope: 'dc1', min: 200, max: 201 })).id;
  });
  afterAll(async () => {
    await h?.cleanupAll();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('checks feasibility: exit 0 with "feasible", exit 1 with one line per shortfall', async () => {
    const ok = await run(['alloc', 'check', '--servers', 'edge.e1@dc1=2', '--vlans', `${vlanPool}=2`]);
    expect(ok.code, ok.err).toBe(0);
    expect(ok.out).toContain('feasible');
    const no = await run(['alloc', 'check', '--servers', 'edge.e1@dc1=9', '--vlans', `${vlanPool}=3`, '--addresses', net]);
    expect(no.code).toBe(1);
    expect(no.out).toMatch(/servers\.0: 9 server\(s\) of type edge\.e1 requested in dc1, 4 available\n/);
    expect(no.out).toMatch(/vlans\.0: .*3.*2 free/);
    expect(no.out).not.toContain('addresses.0');
    const json = await run(['alloc', 'check', '--servers', 'edge.e1@dc1=9', '-o', 'json']);
    expect(JSON.parse(json.out)).toMatchObject({ feasible: false, shortfalls: [{ path: 'servers.0', requested: 9, available: 4 }] });
  });

  it('reserves from flags and from a file, lists, gets, commits, aborts and releases', async () => {
    const r = await run(['alloc', 'reserve', '--holder', 'cli-order', '--ttl', '10m', '--servers', 'edge.e1@dc1=2', '--addresses', `${net}=2`, '--dns-names', 'db1@example.org']);
    expect(r.code, r.err).toBe(0);
    const id = /reservation (rsv_\w+) open for cli-order/.exec(r.out)?.[1];
    expect(id, r.out).toBeTruthy();
    expect(r.out.match(/^ {2}server /gm)).toHaveLength(2);
    expect(r.out.match(/^ {2}address /gm)).toHaveLength(2);
    expect(r.out).toContain('dns      db1.example.org');
    expect(r.out).not.toMatch(/bmc-canary/);
    expect((await h.inventory.capacity({ type: 'edge.e1', datacenter: 'dc1' })).available).toBe(2);

    const file = join(dir, 'request.yaml');
    writeFileSync(file, `vlans:\n  - poolId: ${vlanPool}\n`);
    const f = await run(['alloc', 'reserve', '--holder', 'cli-file', '-f', file, '--key', 'k1', '-o', 'yaml']);
    expect(f.code, f.err).toBe(0);
    const fromFile = parseYaml(f.out);
    expect(fromFile.vlans[0].vlan).toBe(200);
    expect(parseYaml((await run(['alloc', 'reserve', '--holder', 'cli-file', '-f', file, '--key', 'k1', '-o', 'yaml'])).out).id).toBe(fromFile.id);

    const list = await run(['alloc', 'list', '--status', 'open']);
    expect(list.out).toContain(id!);
    expect(list.out).toContain(fromFile.id);
    const got = await run(['alloc', 'get', id!]);
    expect(got.out).toContain('cli-order');
    expect(got.out.match(/^ {2}server /gm)).toHaveLength(2);

    expect((await run(['alloc', 'commit', id!])).out).toBe(`reservation ${id} committed\n`);
    const abortCommitted = await run(['alloc', 'abort', id!]);
    expect(abortCommitted.code).toBe(5);
    expect(abortCommitted.err).toMatch(/^infraflow: .*committed.*\n$/);
    expect((await run(['alloc', 'abort', fromFile.id, '--reason', 'changed my mind'])).out).toBe(`reservation ${fromFile.id} aborted\n`);
    expect((await run(['alloc', 'release', id!, '--reason', 'order deleted'])).out).toBe(`reservation ${id} released\n`);
    expect((await h.inventory.capacity({ type: 'edge.e1', datacenter: 'dc1' })).available).toBe(4);
    const json = JSON.parse((await run(['alloc', 'list', '--holder', 'cli-order', '-o', 'json'])).out);
    expect(json.items[0]).toMatchObject({ id, status: 'released', reason: 'order deleted' });
  });

  it('reserve --wait follows the run until servers are free, then prints the reservation', async () => {
    const taken = await h.inventory.allocateServers({ type: 'edge.e1', datacenter: 'dc1', count: 4, holder: 'busy' });
    const cli = run(['alloc', 'reserve', '--holder', 'cli-wait', '--wait', '1h', '--servers', 'edge.e1@dc1=1']);
    await until(async () => (await h.engine.list({ workflow: 'allocation.reserve', status: ['waiting'] })).length > 0, 'the reserve run to wait');
    await h.inventory.releaseServers({ ids: [taken[2]!.id] });
    const r = await cli;
    expect(r.code, r.err).toBe(0);
    expect(r.err).toMatch(/waiting in run run_\w+/);
    expect(r.out).toMatch(/reservation rsv_\w+ open for cli-wait/);
    expect(r.out).toContain(`server   ${taken[2]!.id}`);
    await h.inventory.releaseServers({ holder: 'busy' });
  });

  it('explains bad input in one line with exit code 2, and refuses a reserve when not allowed', async () => {
    const cases: [string[], RegExp][] = [
      [['alloc', 'check'], /nothing requested/],
      [['alloc', 'check', '--servers', 'edge.e1'], /--servers edge\.e1: use TYPE@DATACENTER/],
      [['alloc', 'check', '--vlans', `${vlanPool}=zero`], /--vlans: count "zero"/],
      [['alloc', 'reserve', '--holder', 'x', '--vlans', vlanPool, '--ttl', 'soon'], /--ttl: "soon" is not a duration/],
      [['alloc', 'check', '-f', join(dir, 'missing.yaml')], /cannot read/],
      [['alloc', 'check', '--servers', 'edge.e1@dc1=0'], /count "0"/],
    ];
    for (const [args, msg] of cases) {
      const r = await run(args);
      expect(r.code, `${args.join(' ')}: ${r.err}`).toBe(2);
      expect(r.err).toMatch(msg);
      expect(r.err.trim().split('\n')).toHaveLength(1);
    }
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'servers:\n  - { type: edge.e1, datacenter: dc1, count: -1 }\n');
    const server = await run(['alloc', 'check', '-f', bad]);
    expect(server.code).toBe(2);
    expect(server.err).toMatch(/servers\.0\.count/);
    const reader = (await h.userWith('cli-alloc-reader', 'reader', { system: true })).token;
    const denied = await run(['alloc', 'reserve', '--holder', 'x', '--vlans', vlanPool], reader);
    expect(denied.code).toBe(3);
    expect(denied.err).toContain('allocations:write');
  });
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Writable } from 'node:stream';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { DIALECTS } from './support/dialects.js';
import { makeFullHarness, type FullHarness } from './api-fixtures.js';
import { runCli } from '../src/cli/main.js';
import { defineWorkflow } from '../src/engine/types.js';

/**
 * The CLI's commands in process (runCli with captured streams) against a
 * listening API server: every read in table/json/yaml, admin commands,
 * runs operations, watch in plain-line mode, inventory/IPAM/secret commands,
 * and exit codes.
 */
describe.each(DIALECTS)('infraflow commands on %s', (dialect) => {
  let h: FullHarness;
  let url: string;
  let dir: string;

  const run = async (args: string[], opts: { token?: string | undefined; stdin?: string; tty?: boolean } = {}) => {
    let out = '';
    let err = '';
    const sink = (f: (s: string) => void) => new Writable({ write(c, _e, cb) { f(String(c)); cb(); } });
    const code = await runCli(args, {
      out: sink((s) => (out += s)), err: sink((s) => (err += s)), isTty: opts.tty ?? false,
      env: { INFRAFLOW_CLI_CONFIG: join(dir, 'cli.yaml'), INFRAFLOW_URL: url, ...('token' in opts ? (opts.token ? { INFRAFLOW_TOKEN: opts.token } : {}) : { INFRAFLOW_TOKEN: h.adminToken }) },
      stdin: async () => opts.stdin ?? '',
    });
    return { code, out, err };
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'infraflow-cli-cmd-'));
    h = await makeFullHarness(dialect, { startWorker: true });
    h.engine.register(defineWorkflow({
      name: 'cli.demo', version: 1,
      async run(ctx, input: { fail?: boolean }) {
        await ctx.step('prepare', async (sc) => {
          sc.log('preparing');
          return 1;
        });
        await ctx.step('work', async () => {
          if (input.fail) throw Object.assign(new Error('work failed on purpose'), { retryable: false });
          return 2;
        }, { retry: { maxAttempts: 1 } });
        return { ok: true };
      },
    }));
    url = await h.app.listen({ host: '127.0.0.1', port: 0 });
    await h.iam.createProject({ name: 'demo' });
  });
  afterAll(async () => {
    await h?.cleanupAll();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('config set/view, whoami, and admin commands', async () => {
    expect((await run(['config', 'set', 'project', 'demo'])).code).toBe(0);
    expect((await run(['config', 'set', 'colour', 'blue'])).code).toBe(2);
    const view = await run(['config', 'view']);
    expect(view.out).toContain('project: demo');
    const who = await run(['whoami']);
    expect(who.out).toMatch(/user\s+admin/);
    expect((await run(['user', 'create', 'frank'])).code).toBe(0);
    expect((await run(['group', 'create', 'ops'])).code).toBe(0);
    expect((await run(['group', 'add-user', 'ops', 'frank'])).code).toBe(0);
    expect((await run(['role', 'create', 'operator', '--permission', 'runs:read', '--permission', 'runs:operate'])).code).toBe(0);
    expect((await run(['-p', 'demo', 'role', 'add', 'operator', '--group', 'ops'])).code).toBe(0);
    const ra = await run(['get', 'role-assignments', '-o', 'json']);
    expect(JSON.parse(ra.out).items.some((a: any) => a.role === 'operator' && a.project === 'demo')).toBe(true);
    expect((await run(['-p', 'demo', 'role', 'remove', 'operator', '--group', 'ops'])).code).toBe(0);
    expect((await run(['group', 'remove-user', 'ops', 'frank'])).code).toBe(0);
    expect((await run(['user', 'set', 'frank', '--disable'])).code).toBe(0);
    expect((await run(['user', 'list', '-o', 'yaml'])).out).toContain('disabled: true');
    expect((await run(['user', 'delete', 'frank'])).code).toBe(0);
    expect((await run(['group', 'delete', 'ops'])).code).toBe(0);
    expect((await run(['role', 'delete', 'operator'])).code).toBe(0);
    expect((await run(['project', 'list'])).out).toContain('demo');
    const tok = await run(['token', 'create', 'ci', '--expires-in-days', '7']);
    expect(tok.out.trim()).toMatch(/^ifk_/);
    expect(tok.err).toContain('shown only this once');
    const list = await run(['token', 'list', '-o', 'json']);
    const id = JSON.parse(list.out).items[0].id;
    expect((await run(['token', 'revoke', id])).code).toBe(0);
    expect((await run(['get', 'users'], { token: tok.out.trim() })).code).toBe(3);
  });

  it('runs: list, describe, logs, watch (plain lines), retry, skip, cancel; exit code 1 when a watched run fails', async () => {
    const ok = await h.engine.start('cli.demo', {}, { labels: { project: 'demo' } });
    const w = await run(['watch', ok.id]);
    expect(w.code, w.err).toBe(0);
    expect(w.out).toMatch(/step\.succeeded\s+prepare/);
    expect(w.out).toContain(`run ${ok.id} succeeded`);
    // on a terminal the same watch draws a listr2 tree (here its fallback renderer, as stdout is not a TTY)
    const tty = await run(['watch', ok.id], { tty: true });
    expect(tty.code, tty.err).toBe(0);
    expect(tty.out).toContain(`run ${ok.id} succeeded`);
    const list = await run(['runs', 'list', '-o', 'json']);
    expect(JSON.parse(list.out).items.map((r: any) => r.id)).toContain(ok.id);
    const table = await run(['get', 'runs']);
    expect(table.out).toMatch(/^ID\s+WORKFLOW\s+STATUS/m);
    const desc = await run(['describe', 'run', ok.id]);
    expect(parseYaml(desc.out).steps.map((s: any) => s.name)).toEqual(['prepare', 'work']);
    expect((await run(['logs', ok.id])).out).toContain('preparing');
    const bad = await h.engine.start('cli.demo', { fail: true }, { labels: { project: 'demo' } });
    const wf = await run(['watch', bad.id]);
    expect(wf.code).toBe(1);
    expect(wf.out).toContain('work failed on purpose');
    expect(wf.err.trim().split('\n')).toHaveLength(1);
    const skip = await run(['runs', 'skip', bad.id, 'work', '--result', '{"skipped":true}']);
    expect(skip.code, skip.err).toBe(0);
    expect((await h.engine.result(bad.id)).status).toBe('succeeded');
    const retry = await run(['runs', 'retry', ok.id]);
    expect(retry.code).toBe(5);
    expect((await run(['runs', 'skip', ok.id, 'w', '--result', '{nope'])).code).toBe(2);
    const cancel = await run(['runs', 'cancel', 'run_doesnotexist00']);
    expect(cancel.code).toBe(4);
  });

  it('secrets, inventory and IPAM commands', async () => {
    const sc = await run(['secret', 'create', 'db', '--value-stdin'], { stdin: 'hunter2-from-stdin\n' });
    expect(sc.code, sc.err).toBe(0);
    const secrets = JSON.parse((await run(['get', 'secrets', '-o', 'json'])).out);
    expect(JSON.stringify(secrets)).not.toContain('hunter2');
    const reveal = await run(['secret', 'reveal', secrets.items[0].id]);
    expect(reveal.out.trim()).toBe('hunter2-from-stdin');
    expect((await run(['secret', 'create', 'x'])).code).toBe(2);
    const inv = join(dir, 'inv.yaml');
    writeFileSync(inv, 'apiVersion: infraflow.dev/v1\nkind: Inventory\ndatacenters:\n  - name: dc9\n    region: test\n    racks: [{ name: r1 }]\nserverTypes:\n  - { name: tiny, cpu: { model: x, cores: 2 }, ramGb: 4 }\nservers:\n  - { serial: S1, type: tiny, datacenter: dc9, rack: r1, state: available }\n  - { serial: S2, type: tiny, datacenter: dc9, rack: r1, state: available }\n');
    const imp = await run(['inventory', 'import', inv]);
    expect(imp.code, imp.err).toBe(0);
    expect(imp.out).toContain('servers: 2');
    expect((await run(['inventory', 'servers', '--datacenter', 'dc9'])).out).toContain('S1');
    expect(JSON.parse((await run(['inventory', 'utilization', '-o', 'json'])).out).items[0]).toMatchObject({ datacenter: 'dc9', total: 2 });
    expect((await run(['inventory', 'datacenters'])).out).toContain('dc9');
    const ip = join(dir, 'ipam.yaml');
    writeFileSync(ip, 'prefixes:\n  - { cidr: 192.168.50.0/24, scope: dc9 }\nvlanPools:\n  - { name: v9, scope: dc9, min: 10, max: 20 }\n');
    expect((await run(['ipam', 'import', ip])).out).toContain('prefixes: 1');
    expect((await run(['ipam', 'prefixes'])).out).toContain('192.168.50.0/24');
    expect((await run(['ipam', 'vlan-pools', '-o', 'json'])).out).toContain('"v9"');
    expect((await run(['inventory', 'import', join(dir, 'missing.yaml')])).code).toBe(2);
  });

  it('server create sends the openstack-style flags', async () => {
    const r = await run(['-p', 'demo', 'server', 'create', 'vm1', '--flavor', 'SCS-2V-4', '--image', 'ubuntu', '--network', 'appnet', '--security-group', 'ssh', '--boot-volume-size', '20', '-o', 'json']);
    expect(r.code, r.err).toBe(0);
    const body = JSON.parse(r.out);
    expect(body.server).toMatchObject({ name: 'vm1', project: 'demo' });
    expect((await run(['server', 'create', 'vm2', '--flavor', 'f', '--image', 'i', '--network', 'n', '--boot-volume-size', '-3'])).code).toBe(2);
  });
});

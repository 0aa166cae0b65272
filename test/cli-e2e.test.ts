import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer as createHttpServer } from 'node:http';
import { mkdtempSync, rmSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { DIALECTS, createPgDatabase } from './support/dialects.js';

/**
 * The CLI end to end against a real server process (`bin/infraflow-server.js`, what `npm start` runs): log in,
 * configure, administer, read in every output format, exit codes; apply an
 * example stack, watch it to completion and destroy it; shut down gracefully.
 */
// every CLI call is a new Node.js process: generous time on a loaded machine
vi.setConfig({ testTimeout: 240_000 });

const ROOT = process.cwd();
const ADMIN_PASSWORD = 'e2e-admin-password-123';

interface Cli { code: number; out: string; err: string }

function startServer(env: NodeJS.ProcessEnv): Promise<{ proc: ChildProcess; url: string; output: () => string }> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [join(ROOT, 'bin/infraflow-server.js')], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let buf = '';
    const onData = (d: Buffer) => {
      buf += d.toString();
      const m = /"url":"(http:\/\/[^"]+)"[^\n]*infraflow started/.exec(buf);
      if (m) resolve({ proc, url: m[1]!, output: () => buf });
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    proc.on('exit', (code) => reject(new Error(`server exited with ${code}: ${buf.slice(-2000)}`)));
  });
}

describe.each(DIALECTS)('infraflow CLI end to end on %s', (dialect) => {
  let dir: string;
  let server: { proc: ChildProcess; url: string; output: () => string };
  let pg: { url: string; drop(): Promise<void> } | undefined;
  let env: NodeJS.ProcessEnv;

  const cli = (args: string[], input?: string, extraEnv: NodeJS.ProcessEnv = {}): Promise<Cli> => new Promise((resolve) => {
    const p = spawn(process.execPath, [join(ROOT, 'bin/infraflow.js'), ...args], { env: { ...env, ...extraEnv }, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.on('close', (code) => resolve({ code: code ?? -1, out, err }));
    p.stdin.end(input ?? '');
  });

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'infraflow-cli-'));
    if (dialect === 'postgres') pg = await createPgDatabase('cli');
    server = await startServer({
      INFRAFLOW_DATA_DIR: join(dir, 'data'), PORT: '0', INFRAFLOW_ADMIN_PASSWORD: ADMIN_PASSWORD, LOG_LEVEL: 'info',
      INFRAFLOW_SIM_SPEED: '50', ...(pg ? { DATABASE_URL: pg.url } : { DATABASE_URL: '' }),
    });
    env = { ...process.env, INFRAFLOW_CLI_CONFIG: join(dir, 'cli.yaml'), INFRAFLOW_URL: server.url, INFRAFLOW_TOKEN: '', INFRAFLOW_PROJECT: '' };
  });
  afterAll(async () => {
    if (server?.proc.exitCode === null) {
      const exited = new Promise((r) => server.proc.once('exit', r));
      server.proc.kill('SIGTERM');
      await exited;
    }
    await pg?.drop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('logs in, stores the token 0600, and says who you are', async () => {
    const bad = await cli(['login', '--user', 'admin', '--password-stdin'], 'wrong-password-here\n');
    expect(bad.code).toBe(3);
    expect(bad.err.trim().split('\n')).toHaveLength(1);
    expect(bad.err).toContain('wrong user name or password');
    const r = await cli(['login', '--user', 'admin', '--password-stdin'], `${ADMIN_PASSWORD}\n`);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain('Logged in');
    expect(statSync(join(dir, 'cli.yaml')).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(dir, 'cli.yaml'), 'utf8')).toContain('token: ifs_');
    const me = await cli(['whoami', '-o', 'json']);
    expect(me.code).toBe(0);
    expect(JSON.parse(me.out).user.name).toBe('admin');
  });

  it('administers projects, users, roles and tokens, and reads in table, json and yaml', async () => {
    expect((await cli(['project', 'create', 'demo', '--description', 'e2e'])).code).toBe(0);
    expect((await cli(['user', 'create', 'erin', '--password-stdin'], 'erin-password-1234\n')).code).toBe(0);
    const add = await cli(['-p', 'demo', 'role', 'add', 'member', '--user', 'erin']);
    expect(add.code, add.err).toBe(0);
    const table = await cli(['get', 'users']);
    expect(table.out).toMatch(/^ID\s+NAME/m);
    expect(table.out).toContain('erin');
    const json = JSON.parse((await cli(['get', 'projects', '-o', 'json'])).out);
    expect(json.items.map((p: any) => p.name)).toContain('demo');
    const yaml = parseYaml((await cli(['get', 'role-assignments', '-o', 'yaml'])).out);
    expect(yaml.items.some((a: any) => a.role === 'member' && a.project === 'demo')).toBe(true);
    const tok = await cli(['token', 'create', 'ci', '--token-project', 'demo', '--permission', 'projects:read']);
    expect(tok.code, tok.err).toBe(0);
    const token = tok.out.trim();
    expect(token).toMatch(/^ifk_/);
    const scoped = await cli(['get', 'projects', '-o', 'json'], undefined, { INFRAFLOW_TOKEN: token });
    expect(JSON.parse(scoped.out).items.map((p: any) => p.name)).toEqual(['demo']);
    const denied = await cli(['get', 'users'], undefined, { INFRAFLOW_TOKEN: token });
    expect(denied.code).toBe(3);
    expect(denied.err.trim().split('\n')).toHaveLength(1);
    const audit = await cli(['audit', '--limit', '5', '-o', 'json']);
    expect(JSON.parse(audit.out).items.length).toBeGreaterThan(0);
  });

  it('answers with meaningful exit codes and one line per error', async () => {
    const notFound = await cli(['get', 'users', 'usr_nope']);
    expect(notFound.code).toBe(4);
    expect(notFound.err).toMatch(/^infraflow: user usr_nope not found \[iam.user_not_found\]\n$/);
    const usage = await cli(['get', 'flavors']);
    expect(usage.code).toBe(2);
    const conflict = await cli(['project', 'create', 'demo']);
    expect(conflict.code).toBe(5);
    const down = await cli(['get', 'users'], undefined, { INFRAFLOW_URL: 'http://127.0.0.1:1' });
    expect(down.code).toBe(6);
    expect(down.err).toContain('cannot reach');
    const anon = await cli(['get', 'users'], undefined, { INFRAFLOW_CLI_CONFIG: join(dir, 'none.yaml') });
    expect(anon.code).toBe(3);
    expect(anon.err).toContain('infraflow login');
  });

  it('applies an example stack, watches it to completion and destroys it', async () => {
    const spec = await fetch(`${server.url}/openapi.json`).then((r) => r.json() as Promise<{ paths: Record<string, unknown> }>);
    expect(spec.paths['/api/v1/stacks']).toBeDefined();
    // the example's post-deploy workflow notifies a webhook: receive it
    const received: unknown[] = [];
    const sink = createHttpServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        received.push(JSON.parse(body || 'null'));
        res.writeHead(202).end();
      });
    });
    await new Promise<void>((r) => sink.listen(0, '127.0.0.1', () => r()));
    const hook = `http://127.0.0.1:${(sink.address() as { port: number }).port}/events`;
    const file = join(ROOT, 'examples/stacks/empty-infra.yaml');
    const plan = await cli(['plan', '-f', file, '--param', `webhook=${hook}`]);
    expect(plan.code, plan.err).toBe(0);
    const apply = await cli(['apply', '-f', file, '--param', `webhook=${hook}`]);
    sink.close();
    expect(apply.code, apply.err + apply.out).toBe(0);
    expect(apply.out).toMatch(/step\.succeeded\s+postDeploy:tell/);
    expect(JSON.stringify(received)).toContain('hello from empty-infra');
    expect(apply.out).toMatch(/run run_\S+ succeeded/);
    const stacks = JSON.parse((await cli(['get', 'stacks', '-A', '-o', 'json'])).out);
    const stack = stacks.items.find((x: any) => x.name === 'empty-infra');
    expect(stack.status).toBeDefined();
    const watch = await cli(['watch', stack.id]);
    expect(watch.code, watch.err).toBe(0);
    const destroy = await cli(['destroy', stack.id]);
    expect(destroy.code, destroy.err + destroy.out).toBe(0);
    expect(destroy.out).toMatch(/succeeded/);
  });

  it('shuts down gracefully on SIGTERM', async () => {
    const exited = new Promise<number | null>((r) => server.proc.once('exit', (code) => r(code)));
    server.proc.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(server.output()).toContain('shutting down');
  });
});

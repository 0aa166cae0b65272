import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { runCliCaptured } from './fixtures/cli-run.js';
import { loadConfig } from '../src/core/config.js';

/**
 * Every example in README.md and docs/*.md runs, so none can rot:
 * - the `npx infraflow …` command lines of the README's shell blocks, in
 *   order, against a real server started as the README says (`npm start`
 *   with its environment), through the real CLI;
 * - every YAML stack document (`kind: Stack`) is applied through the CLI and
 *   must end applied;
 * - every YAML configuration fragment (`sim:`, `http:` … keys of
 *   infraflow.yaml) loads through the configuration schema.
 * A block that is neither (a schema sketch such as docs/inventory.md's) is
 * marked by not parsing as YAML into an object of those kinds, and is named
 * in the test so that a new kind of example cannot slip through unnoticed.
 */
const ROOT = process.cwd();
const DOCS = ['README.md', ...readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];
const PASSWORD = 'docs-admin-password-123';

function blocks(file: string, lang: RegExp): { file: string; line: number; text: string }[] {
  const lines = readFileSync(join(ROOT, file), 'utf8').split('\n');
  const out: { file: string; line: number; text: string }[] = [];
  for (let i = 0; i < lines.length; i++) {
    const m = /^```(\S*)/.exec(lines[i]!);
    if (!m) continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && !lines[i]!.startsWith('```'); i++) body.push(lines[i]!);
    if (lang.test(m[1]!)) out.push({ file, line: start + 1, text: body.join('\n') });
  }
  return out;
}

/** The README's `npx infraflow …` lines (continuations joined, comments cut), and the environment of its `npm start` line. */
function readmeCommands(): { start: Record<string, string>; commands: { args: string[]; exit: number; shell?: string }[] } {
  const start: Record<string, string> = {};
  const commands: { args: string[]; exit: number; shell?: string }[] = [];
  for (const b of blocks('README.md', /^(sh|bash|console)$/)) {
    const joined = b.text.replace(/\\\n\s*/g, ' ').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    for (const raw of joined) {
      const exit = /#\s*exit (\d+)/.exec(raw);
      const l = raw.replace(/\s+#.*$/, '').trim();
      const startLine = /^((?:[A-Z_]+=\S+\s+)*)npm start$/.exec(l);
      if (startLine) for (const kv of startLine[1]!.trim().split(/\s+/).filter(Boolean)) start[kv.split('=')[0]!] = kv.slice(kv.indexOf('=') + 1);
      for (const part of l.split(/\s+&&\s+/)) {
        if (part.startsWith('npx infraflow ')) commands.push({ args: part.slice('npx infraflow '.length).split(/\s+/), exit: exit ? Number(exit[1]) : 0 });
        else if (/^printf .* > [\w.-]+$/.test(part)) commands.push({ shell: part, args: [], exit: 0 });
      }
    }
  }
  return { start, commands };
}

describe('the examples in README.md and docs/*.md', () => {
  let dir: string;
  let server: ChildProcess;
  let env: NodeJS.ProcessEnv;
  const cli = (args: string[]) => runCliCaptured(args, env);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'infraflow-docs-'));
    const { start } = readmeCommands();
    server = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), join(ROOT, 'src/main.ts')], {
      cwd: dir,
      env: { ...process.env, ...start, INFRAFLOW_CONFIG: '', INFRAFLOW_DATA_DIR: join(dir, 'data'), PORT: '0', INFRAFLOW_PORT: '0', INFRAFLOW_ADMIN_PASSWORD: PASSWORD, LOG_LEVEL: 'info', DATABASE_URL: '', INFRAFLOW_DATABASE_URL: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const url = await new Promise<string>((resolve, reject) => {
      let buf = '';
      const onData = (d: Buffer) => {
        buf += d.toString();
        const m = /"url":"(http:\/\/[^"]+)"[^\n]*infraflow started/.exec(buf);
        if (m) resolve(m[1]!);
      };
      server.stdout!.on('data', onData);
      server.stderr!.on('data', onData);
      server.once('exit', (code) => reject(new Error(`server exited with ${code}: ${buf.slice(-2000)}`)));
    });
    const home = join(dir, 'home');
    mkdirSync(join(home, '.ssh'), { recursive: true });
    writeFileSync(join(home, '.ssh', 'id_ed25519.pub'), 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGb3m6yTk0n8dJZ6r7q2m8r3M3bq8eY8H2dHnQk0Zk7x docs@example.com\n');
    env = { HOME: home, XDG_CONFIG_HOME: join(home, '.config'), INFRAFLOW_URL: url, INFRAFLOW_PASSWORD: PASSWORD };
    // the YAML examples run in a project of their own, beside the README tour
    expect((await cli(['login', '--user', 'admin'])).code).toBe(0);
    const p = await cli(['project', 'create', 'docs-examples']);
    expect(p.code, p.err).toBe(0);
  }, 180_000);
  afterAll(async () => {
    if (server && server.exitCode === null) {
      await new Promise<void>((r) => {
        server.once('exit', () => r());
        server.kill('SIGTERM');
      });
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('the README tour: every infraflow command succeeds, in order', async () => {
    const { commands } = readmeCommands();
    expect(commands.length).toBeGreaterThan(3);
    for (const { args, exit, shell } of commands) {
      if (shell) {
        // a file the tour writes (printf … > faults.yaml): written in the test's directory
        execFileSync('sh', ['-c', shell], { cwd: dir });
        continue;
      }
      const expanded = args.map((a) => a.replace(/^~\//, `${env.HOME}/`)).map((a) => (!existsSync(join(ROOT, a)) && existsSync(join(dir, a)) ? join(dir, a) : a));
      const r = await cli(expanded);
      expect(r.code, `infraflow ${args.join(' ')}\n${r.err}${r.out}`).toBe(exit); // the README says so when it is not 0 (# exit 1)
    }
  }, 600_000);

  const yamlBlocks = DOCS.flatMap((f) => blocks(f, /^ya?ml$/));

  it('every YAML example is a stack that applies or a configuration that loads', async () => {
    const unknown: string[] = [];
    for (const b of yamlBlocks) {
      let doc: unknown;
      try {
        doc = parseYaml(b.text);
      } catch {
        doc = undefined;
      }
      const where = `${b.file}:${b.line}`;
      if (doc && typeof doc === 'object' && (doc as { kind?: string }).kind === 'Stack') {
        const file = join(dir, `${b.file.replace(/\W/g, '_')}_${b.line}.yaml`);
        writeFileSync(file, b.text.replace(/^(\s+project:\s*)\S+/m, '$1docs-examples'));
        const r = await cli(['-p', 'docs-examples', 'apply', '-f', file]);
        expect(r.code, `${where}: infraflow apply\n${r.err}${r.out}`).toBe(0);
        const name = (doc as { metadata: { name: string } }).metadata.name;
        const got = await cli(['get', 'stacks', '-p', 'docs-examples', '-o', 'json']);
        const stacks = JSON.parse(got.out) as { name: string; status: string }[] | { items: { name: string; status: string }[] };
        const list = Array.isArray(stacks) ? stacks : stacks.items;
        expect(list.find((s) => s.name === name)?.status, where).toBe('applied');
      } else if (doc && typeof doc === 'object' && Object.keys(doc).every((k) => ['sim', 'http', 'worker', 'dataDir', 'databaseUrl', 'secretKey', 'logLevel', 'sqliteSynchronous', 'datacenter', 'providers', 'backends', 'openstack', 'auth', 'fulfillment'].includes(k))) {
        const file = join(dir, `config_${b.line}.yaml`);
        writeFileSync(file, b.text);
        expect(() => loadConfig({ file, env: {} }), where).not.toThrow();
      } else {
        unknown.push(where);
      }
    }
    // the blocks that are neither, listed here on purpose: schema sketches and fragments of a stack,
    // an app template (checked by src/apps/template.test.ts) and a cluster template (examples/clusters, loaded by the fulfillment tests)
    expect(unknown).toEqual(['docs/apps.md:35', 'docs/fulfillment.md:32', 'docs/inventory.md:193', 'docs/stacks.md:143', 'docs/stacks.md:158']);
  }, 600_000);
});

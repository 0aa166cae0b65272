import { readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from '@commander-js/extra-typings';
import { ApiClient } from './client.js';
import { ssoLogin } from './sso.js';
import { loadCliConfig, saveCliConfig, configPath, SETTABLE_KEYS, type CliConfig } from './config.js';
import { CliError, EXIT } from './errors.js';
import { cliVersion } from './version.js';
import { printList, printObject, type Column, type OutputFormat } from './output.js';
import { describeEvent, watchRun } from './watch.js';
import type { CliContext, CommandModule } from './commands/context.js';
import { registerAllocationCommands } from './commands/allocations.js';
import { registerSimCommands } from './commands/sim.js';
import { registerResourceCommands } from './commands/resources.js';
import { registerStackCommands } from './commands/stacks.js';
import { registerClusterCommands } from './commands/cluster.js';
import { registerGitopsCommands } from './commands/gitops.js';
import { registerAppCommands } from './commands/apps.js';

/** Command modules of the areas (src/cli/commands). */
const COMMAND_MODULES: CommandModule[] = [registerAllocationCommands, registerSimCommands, registerResourceCommands, registerStackCommands, registerClusterCommands, registerGitopsCommands, registerAppCommands];

/**
 * The `infraflow` command. Every read takes `-o table|json|yaml`; errors are
 * one line on stderr; exit codes are listed in src/cli/errors.ts.
 */
export interface CliIo {
  out: NodeJS.WritableStream;
  err: NodeJS.WritableStream;
  env: NodeJS.ProcessEnv;
  isTty: boolean;
  stdin?: () => Promise<string>;
  /** Prompts for a password without echo (TTY only). */
  promptPassword?: (prompt: string) => Promise<string>;
}

const ts = (v: unknown) => v;

/** Columns and endpoints of `get <kind>`. */
interface KindDef { path: string; aliases: string[]; columns: Column[]; projectScoped?: boolean; describe?: (c: ApiClient, id: string) => Promise<unknown> }
const KINDS: Record<string, KindDef> = {
  runs: {
    path: '/runs', aliases: ['run'], projectScoped: true,
    columns: [{ header: 'id', get: (r) => r.id }, { header: 'workflow', get: (r) => r.workflow }, { header: 'status', get: (r) => r.status }, { header: 'project', get: (r) => r.project }, { header: 'stage', get: (r) => r.progress?.stage }, { header: 'created', get: (r) => ts(r.createdAt) }],
    describe: async (c, id) => c.get(`/runs/${encodeURIComponent(id)}/timeline`).then((t) => ({ ...t.run, steps: t.steps.map((s: any) => ({ name: s.name, kind: s.kind, status: s.status, attempts: s.attempts, ...(s.worker ? { worker: s.worker } : {}), ...(s.error ? { error: s.error.message } : {}) })) })),
  },
  resources: {
    path: '/resources', aliases: ['resource', 'res'], projectScoped: true,
    columns: [{ header: 'id', get: (r) => r.id }, { header: 'kind', get: (r) => r.kind }, { header: 'name', get: (r) => r.name }, { header: 'project', get: (r) => r.project }, { header: 'phase', get: (r) => r.status?.phase }, { header: 'owner', get: (r) => r.owner }],
  },
  stacks: {
    path: '/stacks', aliases: ['stack'], projectScoped: true,
    columns: [{ header: 'id', get: (r) => r.id }, { header: 'name', get: (r) => r.name }, { header: 'project', get: (r) => r.project }, { header: 'status', get: (r) => r.status }, { header: 'revision', get: (r) => r.revision ?? r.latestRevision }, { header: 'resources', get: (r) => r.resourceCount }],
  },
  events: {
    path: '/events', aliases: ['event'], projectScoped: true,
    columns: [{ header: 'seq', get: (r) => r.seq }, { header: 'type', get: (r) => r.type }, { header: 'subject', get: (r) => r.subject }, { header: 'project', get: (r) => r.project }, { header: 'at', get: (r) => ts(r.at) }],
  },
  projects: { path: '/projects', aliases: ['project'], columns: [{ header: 'id', get: (r) => r.id }, { header: 'name', get: (r) => r.name }, { header: 'description', get: (r) => r.description }] },
  users: { path: '/users', aliases: ['user'], columns: [{ header: 'id', get: (r) => r.id }, { header: 'name', get: (r) => r.name }, { header: 'display name', get: (r) => r.displayName }, { header: 'email', get: (r) => r.email }, { header: 'disabled', get: (r) => r.disabled }] },
  groups: { path: '/groups', aliases: ['group'], columns: [{ header: 'id', get: (r) => r.id }, { header: 'name', get: (r) => r.name }, { header: 'description', get: (r) => r.description }] },
  roles: { path: '/roles', aliases: ['role'], columns: [{ header: 'name', get: (r) => r.name }, { header: 'builtin', get: (r) => r.builtin }, { header: 'permissions', get: (r) => r.permissions.join(',') }] },
  'role-assignments': { path: '/role-assignments', aliases: ['role-assignment', 'assignments'], columns: [{ header: 'id', get: (r) => r.id }, { header: 'role', get: (r) => r.role }, { header: 'user', get: (r) => r.user }, { header: 'group', get: (r) => r.group }, { header: 'scope', get: (r) => (r.system ? 'system' : `project ${r.project}`) }] },
  tokens: { path: '/tokens', aliases: ['token'], columns: [{ header: 'id', get: (r) => r.id }, { header: 'kind', get: (r) => r.kind }, { header: 'name', get: (r) => r.name }, { header: 'project', get: (r) => r.project }, { header: 'expires', get: (r) => ts(r.expiresAt) }, { header: 'revoked', get: (r) => (r.revokedAt ? ts(r.revokedAt) : null) }] },
  secrets: { path: '/secrets', aliases: ['secret'], projectScoped: true, columns: [{ header: 'id', get: (r) => r.id }, { header: 'project', get: (r) => r.project }, { header: 'name', get: (r) => r.name }, { header: 'owner', get: (r) => r.owner }, { header: 'updated', get: (r) => ts(r.updatedAt) }] },
  audit: { path: '/audit', aliases: [], columns: [{ header: 'at', get: (r) => ts(r.at) }, { header: 'actor', get: (r) => r.actorName }, { header: 'route', get: (r) => r.route }, { header: 'target', get: (r) => r.target }, { header: 'outcome', get: (r) => r.outcome }, { header: 'status', get: (r) => r.status }] },
};

function kindOf(name: string): KindDef & { name: string } {
  for (const [k, def] of Object.entries(KINDS)) if (k === name || def.aliases.includes(name)) return { ...def, name: k };
  throw new CliError(`unknown kind "${name}"; use one of ${Object.keys(KINDS).join(', ')}`, EXIT.usage);
}

function collect(v: string, prev: string[] = []): string[] {
  return [...prev, v];
}

function parseParams(pairs: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const p of pairs) {
    const i = p.indexOf('=');
    if (i <= 0) throw new CliError(`--param ${p}: use name=value`, EXIT.usage);
    const raw = p.slice(i + 1);
    let v: unknown = raw;
    try {
      v = JSON.parse(raw);
    } catch {
      /* a plain string */
    }
    out[p.slice(0, i)] = v;
  }
  return out;
}

export function buildProgram(io: CliIo): Command {
  const program = new Command('infraflow')
    .description('Infraflow: infrastructure provisioning control plane')
    .version(cliVersion(), '-V, --version', 'print the version')
    .option('--server <url>', 'API server (default from config, INFRAFLOW_URL)')
    .addOption(new Option('-o, --output <format>', 'output format of reads').choices(['table', 'json', 'yaml'] as const))
    .option('-p, --project <name>', 'project (default from config, INFRAFLOW_PROJECT)')
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out.write(s), writeErr: (s) => io.err.write(s) })
    .showSuggestionAfterError();

  const cfg = (): CliConfig => {
    const c = loadCliConfig(io.env);
    const g = program.opts();
    if (g.server) c.server = g.server;
    if (g.project) c.project = g.project;
    return c;
  };
  const fmt = (local?: string): OutputFormat => (local ?? program.opts().output ?? cfg().output ?? 'table') as OutputFormat;
  const client = () => {
    const c = cfg();
    return new ApiClient(c.server, c.token);
  };
  const outputOption = () => new Option('-o, --output <format>', 'table, json or yaml').choices(['table', 'json', 'yaml'] as const);

  // ------------------------------------------------------------ login, config
  program.command('login').description('log in with a password, or through the identity provider (--sso); stores a session token in the CLI config')
    .option('-u, --user <name>', 'user name', 'admin')
    .option('--password-stdin', 'read the password from standard input')
    .option('--sso', 'sign in through the server\'s identity provider: a browser with a loopback redirect, the device flow when there is no browser')
    .option('--device', 'with --sso: use the device flow (a code to enter on another device)')
    .action(async (o) => {
      if (o.sso || o.device) {
        const c = cfg();
        const r = await ssoLogin(new ApiClient(c.server, undefined), { write: (t) => io.out.write(t) }, { device: !!o.device });
        saveCliConfig({ ...loadCliConfig({ ...io.env, INFRAFLOW_TOKEN: undefined }), server: c.server, token: r.token, user: r.user.name }, io.env);
        io.out.write(`Logged in to ${c.server} as ${r.user.name} (session until ${new Date(r.expiresAt).toISOString()}).\n`);
        return;
      }
      let password = io.env.INFRAFLOW_PASSWORD;
      if (o.passwordStdin) password = (await io.stdin!()).replace(/\r?\n$/, '');
      if (!password) {
        if (!io.isTty || !io.promptPassword) throw new CliError('no password: use --password-stdin or INFRAFLOW_PASSWORD when not on a terminal', EXIT.usage);
        password = await io.promptPassword(`Password for ${o.user}: `);
      }
      const c = cfg();
      const api = new ApiClient(c.server, undefined);
      const r = await api.request('POST', '/auth/login', { body: { name: o.user, password }, auth: false });
      saveCliConfig({ ...loadCliConfig({ ...io.env, INFRAFLOW_TOKEN: undefined }), server: c.server, token: r.body.token, user: o.user }, io.env);
      io.out.write(`Logged in to ${c.server} as ${o.user} (session until ${new Date(r.body.expiresAt).toISOString()}).\n`);
    });
  program.command('logout').description('revoke the session token and forget it').action(async () => {
    const c = cfg();
    if (c.token) await client().request('POST', '/auth/logout').catch(() => undefined);
    const { token: _t, ...rest } = c;
    saveCliConfig(rest, io.env);
    io.out.write('Logged out.\n');
  });
  program.command('whoami').description('who you are and what you may do').addOption(outputOption()).action(async (o) => {
    const me = await client().get('/auth/whoami');
    if (fmt(o.output) === 'table') {
      io.out.write(`user     ${me.user.name} (${me.user.id})\nsystem   ${me.system.join(', ') || '-'}\n`);
      for (const [p, perms] of Object.entries(me.projects as Record<string, string[]>)) io.out.write(`project  ${p}: ${perms.join(', ')}\n`);
    } else printObject(io.out, fmt(o.output), me);
  });
  const config = program.command('config').description('show or change CLI settings');
  config.command('view').description('show the CLI config (token hidden)').addOption(outputOption()).action((o) => {
    const c = cfg();
    printObject(io.out, fmt(o.output) === 'table' ? 'yaml' : fmt(o.output), { ...c, token: c.token ? '[set]' : undefined, path: configPath(io.env) });
  });
  config.command('set').description(`set a key: ${SETTABLE_KEYS.join(', ')}`).argument('<key>').argument('<value>').action((key, value) => {
    if (!(SETTABLE_KEYS as readonly string[]).includes(key)) throw new CliError(`unknown key "${key}"; settable keys are ${SETTABLE_KEYS.join(', ')}`, EXIT.usage);
    if (key === 'output' && !['table', 'json', 'yaml'].includes(value)) throw new CliError('output: use table, json or yaml', EXIT.usage);
    const c = loadCliConfig({ ...io.env, INFRAFLOW_TOKEN: undefined, INFRAFLOW_URL: undefined, INFRAFLOW_PROJECT: undefined });
    saveCliConfig({ ...c, [key]: value }, io.env);
    io.out.write(`${key} = ${value}\n`);
  });
  config.command('path').description('where the CLI config lives').action(() => void io.out.write(configPath(io.env) + '\n'));

  // ------------------------------------------------------------ get, describe
  program.command('get').description(`list objects: ${Object.keys(KINDS).join(', ')}; or one by id`)
    .argument('<kind>').argument('[id]')
    .addOption(outputOption())
    .option('-l, --selector <labels>', 'label filter k=v,k2=v2')
    .option('--status <status>', 'status / phase filter')
    .option('--kind <kind>', 'resource kind filter')
    .option('--workflow <name>', 'run workflow filter')
    .option('--limit <n>', 'page size', '50')
    .option('--cursor <cursor>', 'next page cursor')
    .option('-A, --all-projects', 'ignore the default project')
    .action(async (kind, id, o) => {
      const k = kindOf(kind);
      const c = client();
      if (id) return printObject(io.out, fmt(o.output), await c.get(`${k.path}/${encodeURIComponent(id)}`));
      const project = k.projectScoped && !o.allProjects ? cfg().project : undefined;
      const page = await c.get(k.path, {
        limit: o.limit, cursor: o.cursor, project, labels: o.selector,
        ...(k.name === 'resources' ? { phase: o.status, kind: o.kind } : { status: o.status }),
        workflow: o.workflow,
      });
      printList(io.out, fmt(o.output), page.items, k.columns, { nextCursor: page.nextCursor ?? null });
    });
  program.command('describe').description('one object in detail (runs: with their steps)').argument('<kind>').argument('<id>').addOption(outputOption())
    .action(async (kind, id, o) => {
      const k = kindOf(kind);
      const c = client();
      const obj = k.describe ? await k.describe(c, id) : await c.get(`${k.path}/${encodeURIComponent(id)}`);
      printObject(io.out, fmt(o.output) === 'table' ? 'yaml' : fmt(o.output), obj);
    });

  // ------------------------------------------------------------ runs, watch, logs
  const watchAndExit = async (runId: string) => {
    const r = await watchRun(client(), runId, { tty: io.isTty, out: io.out });
    io.out.write(`run ${runId} ${r.status}${r.error?.message ? `: ${r.error.message}` : ''}\n`);
    if (r.status !== 'succeeded') throw new CliError(`run ${runId} ${r.status}`, EXIT.failed);
  };
  program.command('watch').description('follow a run (or a stack\'s latest run) to the end: a live step tree on a terminal, plain lines otherwise')
    .argument('<id>', 'run id, or stack id/name')
    .action(async (id) => {
      let runId = id;
      if (!id.startsWith('run_')) {
        const s = await client().get(`/stacks/${encodeURIComponent(id)}`, { project: cfg().project });
        runId = s.lastRunId ?? s.run?.id;
        if (!runId) throw new CliError(`stack ${id} has no run yet`, EXIT.notFound);
      }
      await watchAndExit(runId);
    });
  program.command('logs').description('a run\'s log lines').argument('<run>').option('--step <name>').option('-f, --follow', 'keep following events until the run ends').addOption(outputOption())
    .action(async (runId, o) => {
      const c = client();
      const logs = await c.get(`/runs/${encodeURIComponent(runId)}/logs`, { step: o.step });
      if (fmt(o.output) !== 'table') printList(io.out, fmt(o.output), logs.items, []);
      else for (const l of logs.items) io.out.write(`${new Date(l.at).toISOString()}  ${l.step}  ${l.message}\n`);
      if (o.follow) await c.stream(`/runs/${encodeURIComponent(runId)}/events/stream`, {}, (e) => void io.out.write(describeEvent(e) + '\n'));
    });
  const runs = program.command('runs').description('list and operate runs');
  runs.command('list').addOption(outputOption()).option('--status <status>').option('--workflow <name>').option('--limit <n>', 'page size', '50').option('--cursor <cursor>')
    .action(async (o) => {
      const page = await client().get('/runs', { project: cfg().project, status: o.status, workflow: o.workflow, limit: o.limit, cursor: o.cursor });
      printList(io.out, fmt(o.output), page.items, KINDS.runs!.columns, { nextCursor: page.nextCursor });
    });
  runs.command('get').argument('<run>').addOption(outputOption()).action(async (id, o) => printObject(io.out, fmt(o.output), await client().get(`/runs/${encodeURIComponent(id)}`)));
  runs.command('retry').description('re-run a failed run from its failed step').argument('<run>').option('-w, --wait', 'watch it to the end').action(async (id, o) => {
    const r = await client().request('POST', `/runs/${encodeURIComponent(id)}/retry`);
    io.out.write(`run ${id} ${r.body.status}\n`);
    if (o.wait) await watchAndExit(id);
  });
  runs.command('skip').description('mark a failed step done with a result').argument('<run>').argument('<step>').option('--result <json>', 'the step\'s result (JSON)').action(async (id, step, o) => {
    let result: unknown = null;
    if (o.result) {
      try {
        result = JSON.parse(o.result);
      } catch {
        throw new CliError('--result: not valid JSON', EXIT.usage);
      }
    }
    const r = await client().request('POST', `/runs/${encodeURIComponent(id)}/skip`, { body: { step, result } });
    io.out.write(`run ${id} ${r.body.status} (step ${step} skipped)\n`);
  });
  runs.command('cancel').argument('<run>').option('--reason <text>').action(async (id, o) => {
    const r = await client().request('POST', `/runs/${encodeURIComponent(id)}/cancel`, { body: o.reason ? { reason: o.reason } : {} });
    io.out.write(`run ${id} ${r.body.status}\n`);
  });
  runs.command('approve').description('approve (or --reject) a run waiting for approval').argument('<run>').option('--reject').option('--comment <text>').action(async (id, o) => {
    await client().request('POST', `/runs/${encodeURIComponent(id)}/approve`, { body: { approved: !o.reject, ...(o.comment ? { comment: o.comment } : {}) } });
    io.out.write(`run ${id} ${o.reject ? 'rejected' : 'approved'}\n`);
  });

  // ------------------------------------------------------------ stacks
  const readDoc = (file: string): string => {
    try {
      return file === '-' ? readFileSync(0, 'utf8') : readFileSync(file, 'utf8');
    } catch (e) {
      throw new CliError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, EXIT.usage);
    }
  };
  program.command('plan').description('show what applying a stack document would change').requiredOption('-f, --file <path>', 'stack document (YAML or JSON; - for stdin)')
    .option('--param <name=value>', 'parameter (repeatable)', collect).addOption(outputOption())
    .action(async (o) => {
      const r = await client().request('POST', '/stacks/plan', { body: { document: readDoc(o.file), file: o.file, params: parseParams(o.param ?? []), ...(cfg().project ? { project: cfg().project } : {}) } });
      if (fmt(o.output) === 'table') io.out.write((r.body.text ?? JSON.stringify(r.body.plan, null, 2)) + '\n');
      else printObject(io.out, fmt(o.output), r.body.plan);
    });
  program.command('apply').description('apply a stack document: plan, then run the changes').requiredOption('-f, --file <path>', 'stack document (YAML or JSON; - for stdin)')
    .option('--param <name=value>', 'parameter (repeatable)', collect).option('--no-wait', 'return once the run has started')
    .addOption(outputOption())
    .action(async (o) => {
      const r = await client().request('POST', '/stacks', { body: { document: readDoc(o.file), file: o.file, params: parseParams(o.param ?? []), ...(cfg().project ? { project: cfg().project } : {}) } });
      const { stack, run } = r.body;
      if (fmt(o.output) !== 'table') printObject(io.out, fmt(o.output), r.body);
      else io.out.write(`${r.body.text ? r.body.text + '\n' : ''}stack ${stack.name} (${stack.id}) revision ${r.body.revision}: run ${run?.id ?? '-'}\n`);
      if (o.wait && run?.id) await watchAndExit(run.id);
    });
  program.command('destroy').description('delete every resource of a stack').argument('<stack>', 'stack id or name').option('--no-wait', 'return once the run has started')
    .action(async (id, o) => {
      const r = await client().request('POST', `/stacks/${encodeURIComponent(id)}/destroy`, { query: { project: cfg().project } });
      io.out.write(`stack ${id}: destroy run ${r.body.run?.id ?? '-'}\n`);
      if (o.wait && r.body.run?.id) await watchAndExit(r.body.run.id);
    });

  // ------------------------------------------------------------ server create (openstack-style)
  const server = program.command('server').description('single servers (as `openstack server`)');
  server.command('create').description('create a server and whatever it needs (network, security group, volume) as a small stack')
    .argument('<name>')
    .requiredOption('--flavor <flavor>').requiredOption('--image <image>')
    .option('--network <network>', 'network (repeatable)', collect).option('--security-group <group>', 'security group (repeatable)', collect)
    .option('--key-name <key>').option('--public-key <file>', 'public key file: creates the keypair named by --key-name if it does not exist')
    .option('--boot-volume-size <GiB>', 'boot volume size in GiB')
    .option('--wait', 'wait until the server is ready').addOption(outputOption())
    .action(async (name, o) => {
      const project = cfg().project;
      let publicKey: string | undefined;
      if (o.publicKey) {
        try {
          publicKey = readFileSync(o.publicKey, 'utf8').trim();
        } catch {
          throw new CliError(`--public-key: cannot read ${o.publicKey}; give the path of a public key file (e.g. ~/.ssh/id_ed25519.pub)`, EXIT.usage);
        }
      }
      const body = {
        name, flavor: o.flavor, image: o.image, networks: o.network ?? [], securityGroups: o.securityGroup ?? [],
        ...(project ? { project } : {}), ...(o.keyName ? { keyName: o.keyName } : {}), ...(publicKey ? { publicKey } : {}),
        ...(o.bootVolumeSize ? { bootVolumeSize: Number(o.bootVolumeSize) } : {}),
      };
      if (o.bootVolumeSize && !(Number(o.bootVolumeSize) > 0)) throw new CliError('--boot-volume-size: a positive number of GiB', EXIT.usage);
      const r = await client().request('POST', '/servers', { body });
      if (fmt(o.output) !== 'table') printObject(io.out, fmt(o.output), r.body);
      else io.out.write(`server ${name}: stack ${r.body.server?.stack ?? '-'}, run ${r.body.run?.id ?? '-'}\n`);
      if (o.wait && r.body.run?.id) await watchAndExit(r.body.run.id);
    });

  // ------------------------------------------------------------ admin: users, groups, roles, projects, tokens
  const user = program.command('user').description('manage users (admin)');
  user.command('list').addOption(outputOption()).action(async (o) => printList(io.out, fmt(o.output), (await client().get('/users', { limit: 500 })).items, KINDS.users!.columns));
  user.command('create').argument('<name>').option('--display-name <text>').option('--email <email>').option('--password-stdin', 'read the password from standard input')
    .action(async (name, o) => {
      const password = o.passwordStdin ? (await io.stdin!()).replace(/\r?\n$/, '') : undefined;
      const r = await client().request('POST', '/users', { body: { name, ...(o.displayName ? { displayName: o.displayName } : {}), ...(o.email ? { email: o.email } : {}), ...(password ? { password } : {}) } });
      io.out.write(`user ${r.body.name} created (${r.body.id})\n`);
    });
  user.command('set').argument('<user>').option('--display-name <text>').option('--email <email>').option('--disable').option('--enable').option('--password-stdin')
    .action(async (id, o) => {
      const password = o.passwordStdin ? (await io.stdin!()).replace(/\r?\n$/, '') : undefined;
      const body = { ...(o.displayName ? { displayName: o.displayName } : {}), ...(o.email ? { email: o.email } : {}), ...(o.disable ? { disabled: true } : o.enable ? { disabled: false } : {}), ...(password ? { password } : {}) };
      await client().request('PATCH', `/users/${encodeURIComponent(id)}`, { body });
      io.out.write(`user ${id} updated\n`);
    });
  user.command('delete').argument('<user>').action(async (id) => {
    await client().request('DELETE', `/users/${encodeURIComponent(id)}`);
    io.out.write(`user ${id} deleted\n`);
  });
  const group = program.command('group').description('manage groups (admin)');
  group.command('list').addOption(outputOption()).action(async (o) => printList(io.out, fmt(o.output), (await client().get('/groups', { limit: 500 })).items, KINDS.groups!.columns));
  group.command('create').argument('<name>').option('--description <text>').action(async (name, o) => {
    const r = await client().request('POST', '/groups', { body: { name, ...(o.description ? { description: o.description } : {}) } });
    io.out.write(`group ${r.body.name} created (${r.body.id})\n`);
  });
  group.command('delete').argument('<group>').action(async (id) => {
    await client().request('DELETE', `/groups/${encodeURIComponent(id)}`);
    io.out.write(`group ${id} deleted\n`);
  });
  group.command('add-user').argument('<group>').argument('<user>').action(async (g, u) => {
    await client().request('PUT', `/groups/${encodeURIComponent(g)}/members/${encodeURIComponent(u)}`);
    io.out.write(`user ${u} added to group ${g}\n`);
  });
  group.command('remove-user').argument('<group>').argument('<user>').action(async (g, u) => {
    await client().request('DELETE', `/groups/${encodeURIComponent(g)}/members/${encodeURIComponent(u)}`);
    io.out.write(`user ${u} removed from group ${g}\n`);
  });
  const role = program.command('role').description('roles and role assignments (admin)');
  role.command('list').addOption(outputOption()).action(async (o) => printList(io.out, fmt(o.output), (await client().get('/roles')).items, KINDS.roles!.columns));
  role.command('create').argument('<name>').requiredOption('--permission <perm>', 'permission (repeatable; see GET /permissions)', collect).option('--description <text>')
    .action(async (name, o) => {
      const r = await client().request('POST', '/roles', { body: { name, permissions: o.permission, ...(o.description ? { description: o.description } : {}) } });
      io.out.write(`role ${r.body.name} created\n`);
    });
  role.command('delete').argument('<role>').action(async (id) => {
    await client().request('DELETE', `/roles/${encodeURIComponent(id)}`);
    io.out.write(`role ${id} deleted\n`);
  });
  role.command('add').description('give a user or group a role on a project (-p) or the system (openstack role add)').argument('<role>')
    .option('--user <user>').option('--group <group>').option('--system', 'on the whole system')
    .action(async (r, opts) => {
      const o = { ...opts, project: program.opts().project };
      const a = await client().request('POST', '/role-assignments', { body: { role: r, ...(o.user ? { user: o.user } : {}), ...(o.group ? { group: o.group } : {}), ...(o.project ? { project: o.project } : {}), ...(o.system ? { system: true } : {}) } });
      io.out.write(`role ${r} assigned (${a.body.id})\n`);
    });
  role.command('remove').description('remove a role assignment (on project -p, or --system)').argument('<role>').option('--user <user>').option('--group <group>').option('--system')
    .action(async (r, opts) => {
      const o = { ...opts, project: program.opts().project };
      const c = client();
      const list = await c.get('/role-assignments', { role: r, user: o.user, group: o.group, project: o.project, system: o.system ? 'true' : undefined, limit: 500 });
      const match = list.items.filter((a: any) => (o.system ? a.system : !o.project || a.project === o.project));
      if (match.length !== 1) throw new CliError(match.length ? `${match.length} assignments match; narrow with --user/--group/--project/--system` : 'no such role assignment', match.length ? EXIT.usage : EXIT.notFound);
      await c.request('DELETE', `/role-assignments/${match[0].id}`);
      io.out.write(`role ${r} unassigned\n`);
    });
  const project = program.command('project').description('manage projects (admin)');
  project.command('list').addOption(outputOption()).action(async (o) => printList(io.out, fmt(o.output), (await client().get('/projects', { limit: 500 })).items, KINDS.projects!.columns));
  project.command('create').argument('<name>').option('--description <text>').action(async (name, o) => {
    const r = await client().request('POST', '/projects', { body: { name, ...(o.description ? { description: o.description } : {}) } });
    io.out.write(`project ${r.body.name} created (${r.body.id})\n`);
  });
  project.command('delete').argument('<project>').action(async (id) => {
    await client().request('DELETE', `/projects/${encodeURIComponent(id)}`);
    io.out.write(`project ${id} deleted\n`);
  });
  const token = program.command('token').description('API tokens');
  token.command('list').addOption(outputOption()).option('--user <user>', 'another user\'s (admin)').action(async (o) => printList(io.out, fmt(o.output), (await client().get('/tokens', { kind: 'api', user: o.user, limit: 500 })).items, KINDS.tokens!.columns));
  token.command('create').description('create an API token; it is printed once').argument('<name>')
    .option('--token-project <project>', 'limit the token to a project').option('--permission <perm>', 'limit to permissions (repeatable)', collect).option('--expires-in-days <n>', 'lifetime', '90')
    .action(async (name, o) => {
      const r = await client().request('POST', '/tokens', { body: { name, ...(o.tokenProject ? { project: o.tokenProject } : {}), ...(o.permission ? { permissions: o.permission } : {}), expiresInDays: Number(o.expiresInDays) } });
      io.out.write(`${r.body.token}\n`);
      io.err.write(`token ${r.body.info.id} created; it is shown only this once (expires ${new Date(r.body.info.expiresAt).toISOString()})\n`);
    });
  token.command('revoke').argument('<id>').action(async (id) => {
    await client().request('DELETE', `/tokens/${encodeURIComponent(id)}`);
    io.out.write(`token ${id} revoked\n`);
  });
  // ------------------------------------------------------------ inventory and IPAM
  const inventory = program.command('inventory').description('datacenters, bare-metal servers, switches, hubs');
  inventory.command('import').description('import an inventory document (YAML) (admin)').argument('<file>').action(async (file) => {
    const r = await client().request('POST', '/inventory/import', { body: { document: readDoc(file), source: file } });
    io.out.write(Object.entries(r.body as Record<string, number>).map(([k, v]) => `${k}: ${v}`).join(', ') + '\n');
  });
  inventory.command('servers').description('list bare-metal servers').addOption(outputOption()).option('--datacenter <dc>').option('--type <type>').option('--state <states>').option('--limit <n>', 'page size', '100').option('--cursor <cursor>')
    .action(async (o) => {
      const page = await client().get('/inventory/servers', { datacenter: o.datacenter, type: o.type, state: o.state, limit: o.limit, cursor: o.cursor });
      printList(io.out, fmt(o.output), page.items, [{ header: 'id', get: (r) => r.id }, { header: 'serial', get: (r) => r.serial }, { header: 'type', get: (r) => r.type }, { header: 'datacenter', get: (r) => r.datacenter }, { header: 'state', get: (r) => r.state }, { header: 'holder', get: (r) => r.holder }], { nextCursor: page.nextCursor });
    });
  inventory.command('utilization').description('servers by state per type and datacenter').addOption(outputOption()).action(async (o) => {
    const r = await client().get('/inventory/utilization');
    printList(io.out, fmt(o.output), r.items, [{ header: 'datacenter', get: (x) => x.datacenter }, { header: 'type', get: (x) => x.type }, { header: 'available', get: (x) => x.available }, { header: 'total', get: (x) => x.total }, { header: 'by state', get: (x) => Object.entries(x.byState).map(([k, v]) => `${k}=${v}`).join(' ') }]);
  });
  for (const what of ['datacenters', 'server-types', 'switches', 'hubs'] as const) {
    inventory.command(what).description(`list ${what}`).addOption(outputOption()).action(async (o) => {
      const r = await client().get(`/inventory/${what}`);
      printList(io.out, fmt(o.output), r.items, [{ header: what === 'switches' ? 'id' : 'name', get: (x) => (what === 'switches' ? x.id : x.name) }, { header: 'detail', get: (x) => x.datacenter ?? x.region ?? x.cpu?.model ?? '' }]);
    });
  }
  const ipam = program.command('ipam').description('prefixes, addresses, VLANs');
  ipam.command('import').description('import prefixes and VLAN pools from a YAML document (admin)').argument('<file>').action(async (file) => {
    const r = await client().request('POST', '/ipam/import', { body: { document: readDoc(file) } });
    io.out.write(`prefixes: ${r.body.prefixes}, vlan pools: ${r.body.vlanPools}, already there: ${r.body.existing}\n`);
  });
  ipam.command('prefixes').addOption(outputOption()).option('--scope <scope>').action(async (o) => {
    const c = client();
    const r = await c.get('/ipam/prefixes', { scope: o.scope });
    const rows = await Promise.all(r.items.map(async (p: any) => ({ ...p, utilization: await c.get(`/ipam/prefixes/${p.id}/utilization`).catch(() => null) })));
    printList(io.out, fmt(o.output), rows, [{ header: 'id', get: (x) => x.id }, { header: 'cidr', get: (x) => x.cidr }, { header: 'scope', get: (x) => x.scope }, { header: 'kind', get: (x) => x.kind }, { header: 'used %', get: (x) => (x.utilization ? x.utilization.percent.toFixed(1) : '-') }]);
  });
  ipam.command('vlan-pools').addOption(outputOption()).action(async (o) => {
    const c = client();
    const r = await c.get('/ipam/vlan-pools');
    const rows = await Promise.all(r.items.map(async (p: any) => ({ ...p, utilization: await c.get(`/ipam/vlan-pools/${p.id}/utilization`).catch(() => null) })));
    printList(io.out, fmt(o.output), rows, [{ header: 'id', get: (x) => x.id }, { header: 'name', get: (x) => x.name }, { header: 'scope', get: (x) => x.scope }, { header: 'range', get: (x) => `${x.min}-${x.max}` }, { header: 'used %', get: (x) => (x.utilization ? x.utilization.percent.toFixed(1) : '-') }]);
  });
  // ------------------------------------------------------------ secrets
  const secret = program.command('secret').description('project secrets (values encrypted at rest)');
  secret.command('create').argument('<name>').option('--value-stdin', 'read the value from standard input').option('--description <text>').action(async (name, o) => {
    const project = cfg().project;
    if (!project) throw new CliError('give a project: -p <project> or infraflow config set project <name>', EXIT.usage);
    if (!o.valueStdin) throw new CliError('pass the value on standard input with --value-stdin (never as an argument)', EXIT.usage);
    const value = (await io.stdin!()).replace(/\r?\n$/, '');
    const r = await client().request('POST', '/secrets', { body: { project, name, value, ...(o.description ? { description: o.description } : {}) } });
    io.out.write(`secret ${r.body.name} created (${r.body.id})\n`);
  });
  secret.command('reveal').description('print a secret\'s value (audited)').argument('<id>').action(async (id) => {
    const r = await client().get(`/secrets/${encodeURIComponent(id)}/value`);
    io.out.write(`${r.value}\n`);
  });
  secret.command('delete').argument('<id>').action(async (id) => {
    await client().request('DELETE', `/secrets/${encodeURIComponent(id)}`);
    io.out.write(`secret ${id} deleted\n`);
  });

  const ctx: CliContext = { io, client, cfg, fmt, outputOption, readDoc };
  for (const register of COMMAND_MODULES) register(program as unknown as Command, ctx);

  program.command('audit').description('the audit log (admin)').addOption(outputOption()).option('--actor <user>').option('--outcome <outcome>').option('--limit <n>', 'entries', '50')
    .action(async (o) => printList(io.out, fmt(o.output), (await client().get('/audit', { actor: o.actor, outcome: o.outcome, limit: o.limit })).items, KINDS.audit!.columns));

  return program;
}

/** Runs the CLI; returns the exit code (never throws). */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  const program = buildProgram(io);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return EXIT.ok;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') return EXIT.ok;
      return e.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    if (e instanceof CliError) {
      io.err.write(`infraflow: ${e.message}\n`);
      return e.exitCode;
    }
    io.err.write(`infraflow: ${e instanceof Error ? e.message : String(e)}\n`);
    return EXIT.failed;
  }
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

async function promptPassword(prompt: string): Promise<string> {
  const { createInterface } = await import('node:readline');
  return new Promise((resolve) => {
    const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: true });
    const out = process.stderr as NodeJS.WriteStream;
    (rl as unknown as { _writeToOutput: (s: string) => void })._writeToOutput = (s: string) => {
      if (s.startsWith(prompt)) out.write(prompt);
    };
    rl.question(prompt, (answer) => {
      rl.close();
      out.write('\n');
      resolve(answer);
    });
  });
}

/** The real process's streams and prompts. */
export function nodeIo(): CliIo {
  return { out: process.stdout, err: process.stderr, env: process.env, isTty: Boolean(process.stdout.isTTY), stdin: readStdin, promptPassword };
}

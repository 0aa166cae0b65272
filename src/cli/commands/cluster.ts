import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { CliError, EXIT } from '../errors.js';
import { printList, printObject, type Column } from '../output.js';
import type { ApiClient } from '../client.js';
import type { CliContext, CommandModule } from './context.js';

/**
 * `infraflow cluster …`: order clusters from templates and follow them
 * stage by stage (templates, create, list, get, watch, scale, delete,
 * kubeconfig, password, retry, skip, approve, timeline).
 */

const collect = (v: string, prev: string[] = []) => [...prev, v];

/** `k=v` pairs; values are JSON when they parse (3, true, "x"), else strings. */
export function parsePairs(flag: string, pairs: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const p of pairs) {
    const i = p.indexOf('=');
    if (i <= 0) throw new CliError(`${flag} ${p}: use name=value`, EXIT.usage);
    const raw = p.slice(i + 1);
    let v: unknown;
    try {
      v = JSON.parse(raw);
    } catch {
      v = raw;
    }
    out[p.slice(0, i)] = v;
  }
  return out;
}

/** `--nodes workers=3` or `--nodes gpu=2:gpu.g1` (a new set with its host type) or `--nodes gpu=0` (remove the set). */
export function parseNodes(pairs: string[], allowRemove: boolean): Record<string, { size: number; hostType?: string } | null> {
  const out: Record<string, { size: number; hostType?: string } | null> = {};
  for (const p of pairs) {
    const m = /^([a-z0-9-]+)=(\d+)(?::([a-z0-9._-]+))?$/.exec(p);
    if (!m) throw new CliError(`--nodes ${p}: use SET=SIZE or SET=SIZE:HOSTTYPE, e.g. workers=3`, EXIT.usage);
    const size = Number(m[2]);
    if (size === 0) {
      if (!allowRemove) throw new CliError(`--nodes ${p}: a node set needs at least 1 node`, EXIT.usage);
      out[m[1]!] = null;
    } else out[m[1]!] = { size, ...(m[3] ? { hostType: m[3] } : {}) };
  }
  return out;
}

const clusterColumns: Column[] = [
  { header: 'id', get: (c) => c.id }, { header: 'name', get: (c) => c.name }, { header: 'project', get: (c) => c.project },
  { header: 'template', get: (c) => c.spec.template }, { header: 'state', get: (c) => c.status.state },
  { header: 'nodes', get: (c) => Object.entries(c.status.nodeSets ?? {}).map(([k, v]: [string, any]) => `${k}=${v.ready}/${v.size}`).join(' ') },
  { header: 'api', get: (c) => c.status.apiUrl }, { header: 'rev', get: (c) => c.revision },
];

const ICON: Record<string, string> = { pending: '·', running: '…', waiting: '⧗', succeeded: '✔', failed: '✖', skipped: '↷' };

function dur(ms: number): string {
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}

/** The stage tree, one line per stage (and its error under it). */
export function renderStages(view: { cluster: string; state: string; operation: string | null; stages: any[] }, now = Date.now()): string {
  const lines = [`cluster ${view.cluster}  ${view.operation ?? ''}  ${view.state}`];
  for (const s of view.stages) {
    const took = s.startedAt ? dur((s.finishedAt ?? now) - s.startedAt) : '';
    let extra = '';
    if (s.status === 'waiting' || s.status === 'running') {
      extra = [s.waitingOn ? `waiting on ${s.waitingOn}` : '', s.eta ? `ETA ${new Date(s.eta).toISOString().slice(11, 19)}` : '', s.stuck ? `STUCK${s.message ? `: ${s.message}` : ''}` : ''].filter(Boolean).join('; ');
    }
    lines.push(`  ${ICON[s.status] ?? '?'} ${s.name.padEnd(13)} ${s.status.padEnd(9)} ${took.padEnd(12)} ${extra}`.trimEnd());
    if (s.error) lines.push(`      error: ${s.error.message}`);
  }
  return lines.join('\n') + '\n';
}

async function resolveId(c: ApiClient, ref: string, project?: string): Promise<string> {
  if (/^cls_/.test(ref)) return ref;
  const page = await c.get('/clusters', { name: ref, ...(project ? { project } : {}) });
  if (!page.items.length) throw new CliError(`cluster ${ref} not found${project ? ` in project ${project}` : ''}`, EXIT.notFound);
  if (page.items.length > 1) throw new CliError(`several clusters are named ${ref} (${page.items.map((x: any) => `${x.project}/${x.id}`).join(', ')}); give the id or --project`, EXIT.usage);
  return page.items[0].id;
}

/** Follows a cluster's current run until it ends; redraws the stage tree on a terminal, prints changes otherwise. */
export async function watchCluster(ctx: CliContext, id: string, opts: { intervalMs?: number; until?: string[] } = {}): Promise<{ state: string }> {
  const { io } = ctx;
  const c = ctx.client();
  const done = opts.until ?? ['Ready', 'Failed', 'Deleted'];
  let last = '';
  let drawn = 0;
  const seen = new Map<string, string>();
  for (;;) {
    const view = await c.get(`/clusters/${encodeURIComponent(id)}/stages`);
    if (io.isTty) {
      const text = renderStages(view);
      if (text !== last) {
        if (drawn) io.out.write(`\x1b[${drawn}A\x1b[J`);
        io.out.write(text);
        drawn = text.split('\n').length - 1;
        last = text;
      }
    } else {
      for (const s of view.stages) {
        const key = `${s.status}|${s.waitingOn ?? ''}|${s.stuck}`;
        if (s.status !== 'pending' && seen.get(s.name) !== key) {
          seen.set(s.name, key);
          io.out.write(`${s.name} ${s.status}${s.waitingOn ? ` (waiting on ${s.waitingOn})` : ''}${s.stuck ? ' STUCK' : ''}${s.error ? `: ${s.error.message}` : ''}\n`);
        }
      }
    }
    if (done.includes(view.state)) {
      if (!io.isTty) io.out.write(`cluster ${id} ${view.state}\n`);
      return { state: view.state };
    }
    await sleep(opts.intervalMs ?? 1000);
  }
}

export const registerClusterCommands: CommandModule = (program, ctx) => {
  const { io } = ctx;
  const cluster = program.command('cluster').alias('clusters').description('order clusters from templates and follow them stage by stage');
  const proj = (p?: string) => p ?? ctx.cfg().project;

  cluster.command('templates').description('cluster templates (with an id: that template, parameters and node sets)').argument('[id]').addOption(ctx.outputOption())
    .action(async (id, o) => {
      const c = ctx.client();
      const format = ctx.fmt(o.output);
      if (id) {
        const t = await c.get(`/cluster-templates/${encodeURIComponent(id)}`);
        if (format !== 'table') return printObject(io.out, format, t);
        io.out.write(`${t.id}  ${t.title}  (revision ${t.revision})\n\n${t.description}\n\nparameters:\n`);
        for (const p of t.parameters) io.out.write(`  ${p.name} (${p.type}${p.required ? ', required' : ''}${p.default !== undefined ? `, default ${JSON.stringify(p.default)}` : ''})  ${p.title}\n`);
        io.out.write('node sets:\n');
        for (const [n, s] of Object.entries(t.nodeSets) as [string, any][]) io.out.write(`  ${n}: ${s.size} x ${s.hostType ?? `VM ${s.flavor}`} (${s.role})\n`);
        return;
      }
      const page = await c.get('/cluster-templates');
      printList(io.out, format, page.items, [
        { header: 'id', get: (t) => t.id }, { header: 'title', get: (t) => t.title },
        { header: 'parameters', get: (t) => t.parameters.map((p: any) => `${p.name}${p.required ? '*' : ''}`).join(',') },
        { header: 'node sets', get: (t) => Object.entries(t.nodeSets).map(([k, v]: [string, any]) => `${k}=${v.size}x${v.hostType ?? v.flavor}`).join(' ') },
      ]);
    });

  const template = cluster.command('template').description('manage cluster templates (admin)');
  template.command('apply').description('create or replace a template from a YAML/JSON document').requiredOption('-f, --file <path>', 'the template document (- for stdin)')
    .action(async (o) => {
      const t = (await ctx.client().request('PUT', '/cluster-templates', { body: { document: ctx.readDoc(o.file) } })).body;
      io.out.write(`template ${t.id} revision ${t.revision}\n`);
    });
  template.command('delete').description('delete a template no live cluster uses').argument('<id>')
    .action(async (id) => {
      await ctx.client().request('DELETE', `/cluster-templates/${encodeURIComponent(id)}`);
      io.out.write(`template ${id} deleted\n`);
    });

  cluster.command('create').description('order a cluster from a template').argument('<name>')
    .requiredOption('-t, --template <id>', 'the template')
    .option('--param <name=value>', 'template parameter (repeatable)', collect)
    .option('--nodes <set=size>', 'node set size, e.g. workers=3, or a new set: gpu=2:gpu.g1 (repeatable)', collect)
    .option('-p, --project <project>', 'the project (default: the configured project)')
    .option('--wait-for-capacity', 'accept the order even if the agents are not free now, and wait for them holding nothing')
    .option('--ssh-key-file <path>', 'SSH public key for the nodes')
    .option('--pull-secret-file <path>', 'pull secret (write-only, sealed at rest)')
    .option('--label <k=v>', 'label (repeatable)', collect)
    .option('--watch', 'follow the stages until the cluster is Ready or Failed')
    .addOption(ctx.outputOption())
    .action(async (name, o) => {
      const project = proj(o.project);
      if (!project) throw new CliError('--project: give the project (or set one: infraflow config set project <name>)', EXIT.usage);
      const read = (flag: string, f?: string) => {
        if (!f) return undefined;
        try {
          return readFileSync(f, 'utf8').trim();
        } catch {
          throw new CliError(`${flag} ${f}: cannot read the file`, EXIT.usage);
        }
      };
      const body = {
        name, project, capacity: o.waitForCapacity ? 'wait' : 'reserve',
        labels: parsePairs('--label', o.label ?? []) as Record<string, string>,
        spec: {
          template: o.template, templateParameters: parsePairs('--param', o.param ?? []), nodeSets: parseNodes(o.nodes ?? [], false),
          ...(o.sshKeyFile ? { sshPublicKey: read('--ssh-key-file', o.sshKeyFile) } : {}), ...(o.pullSecretFile ? { pullSecret: read('--pull-secret-file', o.pullSecretFile) } : {}),
        },
      };
      const c = (await ctx.client().request('POST', '/clusters', { body })).body;
      const format = ctx.fmt(o.output);
      if (format !== 'table') printObject(io.out, format, c);
      else io.out.write(`cluster ${c.name} (${c.id}) ${c.status.state}: ${c.status.conditions.find((x: any) => x.type === 'Accepted')?.message ?? ''}\n`);
      if (o.watch) {
        const end = await watchCluster(ctx, c.id);
        if (end.state !== 'Ready') throw new CliError(`cluster ${c.name} ${end.state}`, EXIT.failed);
      }
    });

  cluster.command('list').description('clusters, newest first').addOption(ctx.outputOption())
    .option('-p, --project <project>').option('-A, --all-projects', 'every project you can read').option('--state <state>').option('--template <id>').option('--label <k=v>')
    .option('--limit <n>', 'page size', '50').option('--cursor <cursor>')
    .action(async (o) => {
      const project = o.allProjects ? undefined : proj(o.project);
      const page = await ctx.client().get('/clusters', { project, state: o.state, template: o.template, label: o.label, limit: o.limit, cursor: o.cursor });
      printList(io.out, ctx.fmt(o.output), page.items, clusterColumns, { nextCursor: page.nextCursor });
    });

  cluster.command('get').description('a cluster: status, conditions, node sets and its stage tree').argument('<cluster>', 'id or name').option('-p, --project <project>').addOption(ctx.outputOption())
    .action(async (ref, o) => {
      const c = ctx.client();
      const id = await resolveId(c, ref, proj(o.project));
      const cl = await c.get(`/clusters/${id}`);
      const format = ctx.fmt(o.output);
      if (format !== 'table') return printObject(io.out, format, cl);
      printList(io.out, 'table', [cl], clusterColumns);
      if (cl.status.hub) io.out.write(`hub: ${cl.status.hub} (${cl.status.hubReason})\n`);
      for (const k of cl.status.conditions) io.out.write(`condition ${k.type}=${k.status} ${k.reason}: ${k.message}\n`);
      io.out.write(renderStages(await c.get(`/clusters/${id}/stages`)));
    });

  cluster.command('watch').description('follow a cluster\'s stages live until it is Ready, Failed or Deleted').argument('<cluster>', 'id or name').option('-p, --project <project>').option('--interval <ms>', 'refresh interval', '1000')
    .action(async (ref, o) => {
      const id = await resolveId(ctx.client(), ref, proj(o.project));
      const end = await watchCluster(ctx, id, { intervalMs: Number(o.interval) });
      if (end.state === 'Failed') throw new CliError(`cluster ${ref} Failed: see infraflow cluster get ${id}`, EXIT.failed);
    });

  cluster.command('scale').description('change node set sizes (a new revision with its own stages)').argument('<cluster>', 'id or name')
    .requiredOption('--nodes <set=size>', 'e.g. workers=5; SET=SIZE:HOSTTYPE adds a set; SET=0 removes one (repeatable)', collect)
    .option('-p, --project <project>').option('--watch', 'follow the stages')
    .action(async (ref, o) => {
      const c = ctx.client();
      const id = await resolveId(c, ref, proj(o.project));
      const cl = (await c.request('PATCH', `/clusters/${id}`, { body: { spec: { nodeSets: parseNodes(o.nodes, true) } } })).body;
      io.out.write(`cluster ${cl.name} revision ${cl.revision} ${cl.status.state}: ${cl.status.conditions.find((x: any) => x.type === 'Ready')?.message ?? ''}\n`);
      if (o.watch) {
        const end = await watchCluster(ctx, id);
        if (end.state !== 'Ready') throw new CliError(`cluster ${cl.name} ${end.state}`, EXIT.failed);
      }
    });

  cluster.command('delete').description('delete a cluster: everything torn down in reverse order').argument('<cluster>', 'id or name').option('-p, --project <project>').option('--watch', 'follow the teardown')
    .action(async (ref, o) => {
      const c = ctx.client();
      const id = await resolveId(c, ref, proj(o.project));
      const cl = (await c.request('DELETE', `/clusters/${id}`)).body;
      io.out.write(`cluster ${cl.name} ${cl.status.state}\n`);
      if (o.watch) {
        const end = await watchCluster(ctx, id, { until: ['Deleted', 'Failed'] });
        if (end.state !== 'Deleted') throw new CliError(`cluster ${cl.name} ${end.state}`, EXIT.failed);
      }
    });

  cluster.command('kubeconfig').description('print the admin kubeconfig (audited)').argument('<cluster>', 'id or name').option('-p, --project <project>')
    .action(async (ref, o) => {
      const c = ctx.client();
      const id = await resolveId(c, ref, proj(o.project));
      const r = await c.request('GET', `/clusters/${id}/kubeconfig`, { headers: { accept: 'application/yaml' } });
      io.out.write(String(r.body));
    });

  cluster.command('password').description('print the admin user and password (audited)').argument('<cluster>', 'id or name').option('-p, --project <project>').addOption(ctx.outputOption())
    .action(async (ref, o) => {
      const c = ctx.client();
      const id = await resolveId(c, ref, proj(o.project));
      const p = await c.get(`/clusters/${id}/password`);
      const format = ctx.fmt(o.output);
      if (format !== 'table') return printObject(io.out, format, p);
      io.out.write(`${p.username} ${p.password}\n`);
    });

  cluster.command('retry').description('retry a failed cluster from its failed stage').argument('<cluster>', 'id or name').option('-p, --project <project>')
    .action(async (ref, o) => {
      const c = ctx.client();
      const id = await resolveId(c, ref, proj(o.project));
      const cl = (await c.request('POST', `/clusters/${id}/retry`)).body;
      io.out.write(`cluster ${cl.name} ${cl.status.state}\n`);
    });

  cluster.command('skip').description('skip a failed stage (dns, storage, postInstall, validation)').argument('<cluster>', 'id or name').requiredOption('--stage <stage>').option('-p, --project <project>')
    .action(async (ref, o) => {
      const c = ctx.client();
      const id = await resolveId(c, ref, proj(o.project));
      const cl = (await c.request('POST', `/clusters/${id}/skip`, { body: { stage: o.stage } })).body;
      io.out.write(`cluster ${cl.name} ${cl.status.state}: stage ${o.stage} skipped\n`);
    });

  cluster.command('approve').description('approve an order or scaling above the size limit (admin)').argument('<cluster>', 'id or name').requiredOption('-m, --comment <text>', 'why (kept in the audit log)').option('-p, --project <project>')
    .action(async (ref, o) => {
      const c = ctx.client();
      const id = await resolveId(c, ref, proj(o.project));
      const cl = (await c.request('POST', `/clusters/${id}/approve`, { body: { comment: o.comment } })).body;
      io.out.write(`cluster ${cl.name} approved\n`);
    });

  cluster.command('timeline').description('one merged timeline: stages, steps, operator actions, events').argument('<cluster>', 'id or name').option('-p, --project <project>').addOption(ctx.outputOption())
    .action(async (ref, o) => {
      const c = ctx.client();
      const id = await resolveId(c, ref, proj(o.project));
      const t = await c.get(`/clusters/${id}/timeline`);
      printList(io.out, ctx.fmt(o.output), t.items, [{ header: 'at', get: (e) => new Date(e.at).toISOString() }, { header: 'source', get: (e) => e.source }, { header: 'type', get: (e) => e.type }, { header: 'what', get: (e) => e.message }]);
    });
};

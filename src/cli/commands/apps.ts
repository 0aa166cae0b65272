import { readdirSync, readFileSync, statSync } from 'node:fs';
import type { Command } from '@commander-js/extra-typings';
import { basename, join } from 'node:path';
import { CliError, EXIT } from '../errors.js';
import { printList, printObject, type Column } from '../output.js';
import { watchRun } from '../watch.js';
import type { CliContext, CommandModule } from './context.js';

/**
 * `infraflow app …`: application templates and apps (/apps), and
 * `infraflow sim load <app> <rps> | --trace <file>` for the simulator.
 */

const APP_COLUMNS: Column[] = [
  { header: 'name', get: (a) => a.name }, { header: 'cluster', get: (a) => a.spec.cluster }, { header: 'namespace', get: (a) => a.spec.namespace },
  { header: 'template', get: (a) => `${a.spec.template.name}@${a.spec.template.version}` }, { header: 'revision', get: (a) => a.status.outputs?.revision ?? '-' },
  { header: 'phase', get: (a) => a.status.phase }, { header: 'message', get: (a) => a.status.message ?? '' },
];

/** A template directory (template.yaml and manifests) as name → text. */
export function readTemplateDir(path: string): { name: string; files: Record<string, string> } {
  let st;
  try {
    st = statSync(path);
  } catch {
    throw new CliError(`template ${path} does not exist: give a directory with template.yaml and manifest files`, EXIT.usage);
  }
  if (!st.isDirectory()) throw new CliError(`template ${path} is not a directory: a template is a directory with template.yaml and manifest files`, EXIT.usage);
  const files: Record<string, string> = {};
  for (const f of readdirSync(path).sort()) {
    if (!/\.ya?ml$/.test(f)) continue;
    files[f] = readFileSync(join(path, f), 'utf8');
  }
  if (!Object.keys(files).length) throw new CliError(`template ${path} has no .yaml files`, EXIT.usage);
  return { name: basename(path), files };
}

function readValues(ctx: CliContext, file: string | undefined): { values?: string; valuesFile?: string } {
  if (!file) return {};
  try {
    return { values: ctx.readDoc(file), valuesFile: file === '-' ? 'stdin' : basename(file) };
  } catch (e) {
    if (e instanceof CliError) throw e;
    throw new CliError(`values file ${file}: ${(e as Error).message}`, EXIT.usage);
  }
}

function parseTrace(text: string, file: string): { at: number; rps: number }[] {
  const out: { at: number; rps: number }[] = [];
  text.split('\n').forEach((line, i) => {
    const s = line.replace(/#.*/, '').trim();
    if (!s) return;
    const m = /^(\d+(?:\.\d+)?)(s|m|h)?[\s,]+(\d+(?:\.\d+)?)$/.exec(s);
    if (!m) throw new CliError(`${file}:${i + 1}: expected "<time> <rps>" (time in seconds, or with s/m/h), got ${JSON.stringify(s)}`, EXIT.usage);
    const at = Number(m[1]) * (m[2] === 'h' ? 3600 : m[2] === 'm' ? 60 : 1) * 1000;
    if (out.length && at <= out[out.length - 1]!.at) throw new CliError(`${file}:${i + 1}: times must increase`, EXIT.usage);
    out.push({ at, rps: Number(m[3]) });
  });
  if (!out.length) throw new CliError(`${file}: the trace is empty; give lines "<time> <rps>"`, EXIT.usage);
  return out;
}

export const registerAppCommands: CommandModule = (program, ctx) => {
  const { io, client, cfg, fmt, outputOption } = ctx;
  const enc = encodeURIComponent;
  const project = (p?: string) => {
    const v = p ?? cfg().project;
    if (!v) throw new CliError('no project: pass --project or run: infraflow config set project <name>', EXIT.usage);
    return v;
  };
  const app = program.command('app').description('applications from templates on container clusters: render, deploy, status, watch, logs, rollback');

  app.command('render').description('render a template with values and print the manifests (touches nothing)')
    .requiredOption('-t, --template <dir>', 'template directory (template.yaml and manifests)').option('-f, --values <file>', 'values YAML (- for stdin)')
    .option('--name <name>', 'app name the manifests are rendered for').option('-n, --namespace <ns>', 'namespace', 'default')
    .action(async (o) => {
      const t = readTemplateDir(o.template);
      const r = await client().request('POST', '/apps/render', { body: { template: t, ...readValues(ctx, o.values), ...(o.name ? { name: o.name } : {}), namespace: o.namespace } });
      io.out.write(r.body.yaml);
    });

  const waitRun = async (runId: string, name: string, p: string) => {
    const r = await watchRun(client(), runId, { tty: io.isTty, out: io.err });
    const s = await client().get(`/apps/${enc(p)}/${enc(name)}`);
    io.out.write(`app ${name}: ${s.app.status.phase}${s.app.status.outputs?.revision ? `, revision ${s.app.status.outputs.revision}` : ''}${s.app.status.message ? ` — ${s.app.status.message}` : ''}\n`);
    if (r.status !== 'succeeded') throw new CliError(`run ${runId} ${r.status}${r.error?.message ? `: ${r.error.message}` : ''}`, EXIT.failed);
  };

  app.command('deploy').description('deploy an app (create, or upgrade to a new revision); --wait follows the rollout').argument('<name>')
    .requiredOption('-t, --template <dir>', 'template directory').option('-f, --values <file>', 'values YAML (- for stdin)')
    .requiredOption('--cluster <cluster>', 'container/Cluster name or id').option('-n, --namespace <ns>', 'namespace', 'default')
    .option('--project <project>').option('--timeout <seconds>', 'rollout timeout').option('--wait', 'wait for the rollout and print the result')
    .action(async (name, o) => {
      const p = project(o.project);
      const t = readTemplateDir(o.template);
      const timeout = o.timeout !== undefined ? Number(o.timeout) : undefined;
      if (timeout !== undefined && !(Number.isInteger(timeout) && timeout > 0)) throw new CliError(`--timeout: "${o.timeout}" is not a whole number of seconds > 0`, EXIT.usage);
      const r = await client().request('POST', '/apps', { body: { project: p, name, cluster: o.cluster, namespace: o.namespace, template: t, ...readValues(ctx, o.values), ...(timeout ? { timeoutSeconds: timeout } : {}) } });
      io.out.write(`app ${name} ${r.body.action === 'create' ? 'created' : 'upgrading'}: run ${r.body.run.id}\n`);
      if (o.wait) await waitRun(r.body.run.id, name, p);
    });

  app.command('list').description('apps of the project').option('--project <project>').addOption(outputOption()).action(async (o) => {
    printList(io.out, fmt(o.output), (await client().get(`/apps/${enc(project(o.project))}`)).items, APP_COLUMNS);
  });

  app.command('status').description('an app: phase, revision, conditions, workloads, pod problems, warnings').argument('<name>').option('--project <project>').addOption(outputOption()).action(async (name, o) => {
    const s = await client().get(`/apps/${enc(project(o.project))}/${enc(name)}`);
    if (fmt(o.output) !== 'table') return printObject(io.out, fmt(o.output), s);
    const a = s.app;
    io.out.write(`app       ${a.name} (${a.spec.template.name}@${a.spec.template.version}) on ${a.spec.cluster}/${a.spec.namespace}\nphase     ${a.status.phase}${a.status.outputs?.revision ? `, revision ${a.status.outputs.revision}` : ''}\n`);
    if (a.status.message) io.out.write(`message   ${a.status.message}\n`);
    for (const c of a.status.conditions ?? []) io.out.write(`condition ${c.type}=${c.status} ${c.reason}: ${c.message}\n`);
    for (const w of s.live?.workloads ?? []) io.out.write(`${w.kind.toLowerCase().padEnd(9)} ${w.name} ${w.ready ? 'ready' : 'not ready'} — ${w.message}\n`);
    for (const p of s.live?.problems ?? []) io.out.write(`problem   pod ${p.pod} ${p.reason}${p.message ? `: ${p.message}` : ''}\n`);
    for (const w of s.live?.warnings ?? []) io.out.write(`warning   ${w.object} ${w.reason}: ${w.message}\n`);
  });

  app.command('revisions').description('recorded revisions of an app').argument('<name>').option('--project <project>').addOption(outputOption()).action(async (name, o) => {
    printList(io.out, fmt(o.output), (await client().get(`/apps/${enc(project(o.project))}/${enc(name)}/revisions`)).items, [
      { header: 'revision', get: (r) => r.revision }, { header: 'template', get: (r) => r.template }, { header: 'objects', get: (r) => r.objects.join(' ') }, { header: 'applied', get: (r) => new Date(r.appliedAt).toISOString() },
    ]);
  });

  app.command('rollback').description('roll back to a recorded revision (default: the previous one)').argument('<name>').option('--revision <n>').option('--project <project>').option('--wait')
    .action(async (name, o) => {
      const p = project(o.project);
      const rev = o.revision !== undefined ? Number(o.revision) : undefined;
      if (rev !== undefined && !(Number.isInteger(rev) && rev > 0)) throw new CliError(`--revision: "${o.revision}" is not a revision number`, EXIT.usage);
      const r = await client().request('POST', `/apps/${enc(p)}/${enc(name)}/rollback`, { body: rev ? { revision: rev } : {} });
      io.out.write(`app ${name} rolling back to revision ${r.body.to}: run ${r.body.run.id}\n`);
      if (o.wait) await waitRun(r.body.run.id, name, p);
    });

  app.command('delete').description('delete an app and its objects').argument('<name>').option('--project <project>').option('--wait').action(async (name, o) => {
    const p = project(o.project);
    const r = await client().request('DELETE', `/apps/${enc(p)}/${enc(name)}`);
    io.out.write(`app ${name} deleting: run ${r.body.run.id}\n`);
    if (o.wait) {
      const w = await watchRun(client(), r.body.run.id, { tty: io.isTty, out: io.err });
      if (w.status !== 'succeeded') throw new CliError(`run ${r.body.run.id} ${w.status}${w.error?.message ? `: ${w.error.message}` : ''}`, EXIT.failed);
      io.out.write(`app ${name} deleted\n`);
    }
  });

  app.command('watch').description('pods and services of an app as they change (Ctrl-C to stop)').argument('<name>').option('--project <project>').action(async (name, o) => {
    await client().stream(`/apps/${enc(project(o.project))}/${enc(name)}/watch`, {}, (e) => {
      if (e.event === 'end') return true;
      if (e.event === 'pod' || e.event === 'service') io.out.write(`${e.data.type.padEnd(8)} ${e.data.kind.toLowerCase()}/${e.data.name}  ${e.data.status}  ${e.data.detail}\n`);
      return false;
    });
  });

  app.command('logs').description('log lines of an app\'s pods').argument('<name>').option('--pod <pod>').option('-f, --follow', 'keep streaming').option('--tail <n>', 'last n lines per pod').option('--project <project>')
    .action(async (name, o) => {
      const tail = o.tail !== undefined ? Number(o.tail) : undefined;
      if (tail !== undefined && !(Number.isInteger(tail) && tail >= 0)) throw new CliError(`--tail: "${o.tail}" is not a number of lines`, EXIT.usage);
      await client().stream(`/apps/${enc(project(o.project))}/${enc(name)}/logs`, { pod: o.pod, follow: o.follow ? 'true' : undefined, tail }, (e) => {
        if (e.event === 'end') return true;
        if (e.event === 'log') io.out.write(o.pod ? `${e.data.line}\n` : `[${e.data.pod}] ${e.data.line}\n`);
        return false;
      });
    });

  app.command('kubeconfig').description('a kubeconfig for a cluster (for kubectl); secrets:read, audited').argument('<cluster>').option('--project <project>').action(async (cluster, o) => {
    io.out.write((await client().get(`/apps/clusters/${enc(project(o.project))}/${enc(cluster)}/kubeconfig`)).kubeconfig);
  });

  app.command('autoscaler').description('turn on the Cluster Autoscaler of a simulated cluster').argument('<cluster>')
    .requiredOption('--pool <name:min:max:cpuMillis:memoryMiB>', 'a node pool (repeatable)', (v: string, acc: string[]) => [...acc, v], [] as string[]).option('--project <project>')
    .action(async (cluster, o) => {
      const pools = o.pool.map((s) => {
        const [n, min, max, cpu, mem] = s.split(':');
        const nums = [min, max, cpu, mem].map(Number);
        if (!n || nums.some((x) => !Number.isInteger(x))) throw new CliError(`--pool "${s}": give name:min:max:cpuMillis:memoryMiB, e.g. workers:1:10:4000:16384`, EXIT.usage);
        return { name: n, min: nums[0]!, max: nums[1]!, cpu: nums[2]!, memoryMiB: nums[3]! };
      });
      const r = await client().request('PUT', `/apps/clusters/${enc(project(o.project))}/${enc(cluster)}/autoscaler`, { body: { pools } });
      io.out.write(`cluster autoscaler of ${cluster}: ${pools.map((p) => `${p.name} ${p.min}..${p.max}`).join(', ')} (${r.body.nodes} nodes now)\n`);
    });

  // ---------------------------------------------------------------- sim load
  const sim = ((program.commands as unknown as Command[]).find((c) => c.name() === 'sim') ?? program.command('sim').description('the simulated datacenter')) as unknown as Command;
  sim.command('load').description('offered load of an app in requests/s, or replay a trace file of "<time> <rps>" lines at the simulator\'s speed (admin)').argument('<app>').argument('[rps]')
    .option('--trace <file>', 'replay a load trace (time → rps)').option('--project <project>')
    .action(async (appName, rps, o) => {
      const p = project(o.project);
      const set = async (v: number) => (await client().request('PUT', `/apps/${enc(p)}/${enc(appName)}/load`, { body: { rps: v } })).body;
      if (o.trace) {
        if (rps !== undefined) throw new CliError('give either <rps> or --trace, not both', EXIT.usage);
        const trace = parseTrace(ctx.readDoc(o.trace), o.trace);
        const speed = Number((await client().get('/sim')).speed) || 1;
        let prev = 0;
        for (const pt of trace) {
          const wait = (pt.at - prev) / speed;
          if (wait > 0) await new Promise((r) => setTimeout(r, wait));
          prev = pt.at;
          await set(pt.rps);
          io.out.write(`t=${pt.at / 1000}s load ${pt.rps} rps\n`);
        }
        return;
      }
      const v = Number(rps);
      if (rps === undefined || rps.trim() === '' || !Number.isFinite(v) || v < 0) throw new CliError(`rps: give a number of requests per second >= 0${rps !== undefined ? ` (got "${rps}")` : ''}, or --trace <file>`, EXIT.usage);
      const r = await set(v);
      io.out.write(`load of app ${appName} set to ${v} rps (${r.deployments.join(', ')})\n`);
    });
};

import { yaml } from '../lazy.js';
import { CliError, EXIT } from '../errors.js';
import { printObject } from '../output.js';
import { watchRun } from '../watch.js';
import type { CliContext, CommandModule } from './context.js';

/**
 * `infraflow resource create | update | delete`: one resource at a time, as
 * `openstack network create` does, each change a durable run (`--wait`
 * follows it to the end). Resources a stack manages change through the stack.
 */

function parseDoc(ctx: CliContext, file: string): Record<string, unknown> {
  let doc: unknown;
  try {
    doc = yaml().parse(ctx.readDoc(file));
  } catch (e) {
    if (e instanceof CliError) throw e;
    throw new CliError(`${file}: not valid YAML or JSON (${(e as Error).message.split('\n')[0]})`, EXIT.usage);
  }
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) throw new CliError(`${file}: expected a mapping (kind, name, spec, labels)`, EXIT.usage);
  return doc as Record<string, unknown>;
}

function parseJson(flag: string, v: string): Record<string, unknown> {
  try {
    const x = JSON.parse(v) as unknown;
    if (x && typeof x === 'object' && !Array.isArray(x)) return x as Record<string, unknown>;
  } catch {
    /* below */
  }
  throw new CliError(`${flag}: expected a JSON object, e.g. '{"mtu": 9000}'`, EXIT.usage);
}

function labelPairs(pairs: string[] = []): Record<string, string | null> {
  const out: Record<string, string | null> = {};
  for (const p of pairs) {
    if (p.endsWith('-') && !p.includes('=')) out[p.slice(0, -1)] = null;
    else {
      const i = p.indexOf('=');
      if (i <= 0) throw new CliError(`--label ${p}: use key=value (or key- to remove it)`, EXIT.usage);
      out[p.slice(0, i)] = p.slice(i + 1);
    }
  }
  return out;
}

const collect = (v: string, p: string[] = []) => [...p, v];

export const registerResourceCommands: CommandModule = (program, ctx) => {
  const { io } = ctx;
  const resource = program.command('resource').description('create, change and delete single resources (each change is a durable run)');

  /** Prints the answer; with --wait follows the run and fails (exit 1) if it does not succeed. */
  const finish = async (r: { resource: any; run: any }, verb: string, o: { wait?: boolean; output?: string }) => {
    const format = ctx.fmt(o.output);
    if (!r.run) {
      if (format !== 'table') printObject(io.out, format, r);
      else io.out.write(`${r.resource.kind} ${r.resource.name} (${r.resource.id}): nothing to change\n`);
      return;
    }
    if (o.wait) {
      const end = await watchRun(ctx.client(), r.run.id, { tty: io.isTty, out: io.err });
      const now = await ctx.client().get(`/resources/${encodeURIComponent(r.resource.id)}`);
      if (format !== 'table') printObject(io.out, format, now);
      else io.out.write(`${now.kind} ${now.name} (${now.id}) ${now.status.phase}${now.status.externalId ? `, backend id ${now.status.externalId}` : ''}\n`);
      if (end.status !== 'succeeded') throw new CliError(`run ${r.run.id} ${end.status}: ${end.error?.message ?? `the ${verb} did not finish`}`, EXIT.failed);
      return;
    }
    if (format !== 'table') printObject(io.out, format, r);
    else io.out.write(`${r.resource.kind} ${r.resource.name} (${r.resource.id}): ${verb} in run ${r.run.id} (infraflow watch ${r.run.id})\n`);
  };

  resource.command('create').description('create a resource: -f file (kind, name, spec, labels[, project]) or --kind/--name/--spec')
    .option('-f, --file <path>', 'resource document, YAML or JSON (- for stdin)')
    .option('--kind <kind>', 'e.g. network/Network').option('--name <name>').option('--spec <json>', 'the spec as a JSON object')
    .option('--label <k=v>', 'a label (repeatable)', collect)
    .option('-w, --wait', 'follow the run to the end').addOption(ctx.outputOption())
    .action(async (o) => {
      const doc = o.file ? parseDoc(ctx, o.file) : {};
      const labels = { ...(doc.labels as Record<string, string> | undefined), ...labelPairs(o.label) };
      const body = {
        project: (doc.project as string | undefined) ?? ctx.cfg().project,
        kind: o.kind ?? doc.kind, name: o.name ?? doc.name,
        spec: o.spec ? parseJson('--spec', o.spec) : doc.spec ?? {},
        labels,
      };
      if (!body.project) throw new CliError('no project: give -p <project>, set project: in the file, or run: infraflow config set project <name>', EXIT.usage);
      if (!body.kind || !body.name) throw new CliError('a resource needs a kind and a name (--kind/--name or in the file)', EXIT.usage);
      const r = (await ctx.client().request('POST', '/resources', { body })).body;
      await finish(r, 'create', o);
    });

  resource.command('update').description('change a resource: merge --spec into its spec (null removes a field), set or remove labels')
    .argument('<id>').option('-f, --file <path>', 'a document with spec and/or labels to merge').option('--spec <json>', 'JSON merge patch of the spec, e.g. \'{"rules": []}\'')
    .option('--label <k=v|k->', 'set (k=v) or remove (k-) a label (repeatable)', collect).option('--if-generation <n>', 'refuse unless the resource is still at this generation')
    .option('-w, --wait', 'follow the run to the end').addOption(ctx.outputOption())
    .action(async (id, o) => {
      const doc = o.file ? parseDoc(ctx, o.file) : {};
      const spec = o.spec ? parseJson('--spec', o.spec) : doc.spec as Record<string, unknown> | undefined;
      const labels = o.label ? labelPairs(o.label) : doc.labels as Record<string, string> | undefined;
      if (!spec && !labels) throw new CliError('nothing to change: give --spec, --label or -f', EXIT.usage);
      const r = (await ctx.client().request('PATCH', `/resources/${encodeURIComponent(id)}`, { body: { ...(spec ? { spec } : {}), ...(labels ? { labels } : {}) }, ...(o.ifGeneration ? { headers: { 'if-match': `"${o.ifGeneration}"` } } : {}) })).body;
      await finish(r, 'update', o);
    });

  resource.command('delete').description('delete a resource from its backend').argument('<id>')
    .option('-w, --wait', 'follow the run to the end').addOption(ctx.outputOption())
    .action(async (id, o) => {
      const r = (await ctx.client().request('DELETE', `/resources/${encodeURIComponent(id)}`)).body;
      await finish(r, 'delete', o);
    });
};

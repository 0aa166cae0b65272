import { CliError, EXIT } from '../errors.js';
import { printList, printObject } from '../output.js';
import { watchRun } from '../watch.js';
import type { CommandModule } from './context.js';

/**
 * `infraflow gitops source add|list|get|refresh|delete` and
 * `infraflow gitops app create|list|get|sync|diff|history|rollback|unpin|watch|delete`:
 * Git sources and the applications that keep them applied (docs/gitops.md).
 */
const short = (sha: unknown) => (typeof sha === 'string' ? sha.slice(0, 12) : '-');
const enc = encodeURIComponent;

export const registerGitopsCommands: CommandModule = (program, ctx) => {
  const { io } = ctx;
  const gitops = program.command('gitops').description('deploy stacks from Git repositories (sources, applications, sync)');
  const q = () => ({ project: ctx.cfg().project });

  // ---------------------------------------------------------------- sources
  const source = gitops.command('source').description('Git repositories to deploy from');
  source.command('add').description('add a Git source').argument('<name>')
    .requiredOption('--url <url>', 'https://, ssh://, git://, file:// or user@host:path')
    .option('--ref <ref>', 'branch, tag or commit', 'main')
    .option('--credentials-secret <id>', 'secret holding user:password, a token, or an SSH private key')
    .option('--webhook-secret <secret>', 'HMAC key for push webhooks (min. 16 characters)')
    .option('--poll <seconds>', 'seconds between fetches (default 180)')
    .addOption(ctx.outputOption())
    .action(async (name, o) => {
      const poll = o.poll !== undefined ? Number(o.poll) : undefined;
      if (poll !== undefined && (!Number.isInteger(poll) || poll < 5)) throw new CliError('--poll: a whole number of seconds, at least 5', EXIT.usage);
      const r = (await ctx.client().request('POST', '/gitops/sources', {
        body: { project: ctx.cfg().project, name, url: o.url, ref: o.ref, ...(o.credentialsSecret ? { credentialsSecret: o.credentialsSecret } : {}), ...(o.webhookSecret ? { webhookSecret: o.webhookSecret } : {}), ...(poll ? { pollIntervalS: poll } : {}) },
      })).body;
      if (ctx.fmt(o.output) !== 'table') printObject(io.out, ctx.fmt(o.output), r);
      else io.out.write(`source ${r.name} (${r.id}) added: ${r.url} @ ${r.ref}${r.hasWebhookSecret ? `; webhook: POST /api/v1/gitops/webhooks/${r.id}` : ''}\n`);
    });
  source.command('list').description('list Git sources').addOption(ctx.outputOption()).action(async (o) => {
    const r = await ctx.client().get('/gitops/sources', q());
    printList(io.out, ctx.fmt(o.output), r.items, [
      { header: 'NAME', get: (s) => s.name }, { header: 'URL', get: (s) => s.url }, { header: 'REF', get: (s) => s.ref },
      { header: 'COMMIT', get: (s) => short(s.lastSha) }, { header: 'ERROR', get: (s) => s.lastError?.message ?? '' },
    ], r);
  });
  source.command('get').argument('<source>').addOption(ctx.outputOption()).action(async (id, o) => {
    printObject(io.out, ctx.fmt(o.output), await ctx.client().get(`/gitops/sources/${enc(id)}`, q()));
  });
  source.command('refresh').description('fetch now and sync automated applications').argument('<source>').action(async (id) => {
    const r = (await ctx.client().request('POST', `/gitops/sources/${enc(id)}/refresh`, { query: q() })).body;
    io.out.write(`source ${id}: at ${short(r.sha)}; applications: ${r.apps.join(', ') || 'none'}\n`);
  });
  source.command('delete').argument('<source>').action(async (id) => {
    await ctx.client().request('DELETE', `/gitops/sources/${enc(id)}`, { query: q() });
    io.out.write(`source ${id} deleted\n`);
  });

  // ---------------------------------------------------------------- applications
  const app = gitops.command('app').description('applications: a path of a source kept applied as stacks');
  app.command('create').argument('<name>')
    .requiredOption('--source <source>', 'source name or id').option('--path <path>', 'folder in the repository', '')
    .option('--auto', 'sync by itself on new commits').option('--prune', 'destroy stacks whose file left Git').option('--self-heal', 'sync again when a stack drifts')
    .option('--depends-on <apps>', 'comma-separated applications that must be Healthy first')
    .addOption(ctx.outputOption())
    .action(async (name, o) => {
      const r = (await ctx.client().request('POST', '/gitops/apps', {
        body: { project: ctx.cfg().project, name, source: o.source, path: o.path, syncPolicy: { automated: !!o.auto, prune: !!o.prune, selfHeal: !!o.selfHeal }, ...(o.dependsOn ? { dependsOn: o.dependsOn.split(',').map((s) => s.trim()).filter(Boolean) } : {}) },
      })).body;
      if (ctx.fmt(o.output) !== 'table') printObject(io.out, ctx.fmt(o.output), r);
      else io.out.write(`application ${r.name} (${r.id}) created; infraflow gitops app sync ${r.name}\n`);
    });
  app.command('list').addOption(ctx.outputOption()).action(async (o) => {
    const r = await ctx.client().get('/gitops/apps', q());
    printList(io.out, ctx.fmt(o.output), r.items, [
      { header: 'NAME', get: (a) => a.name }, { header: 'SYNC', get: (a) => a.status.sync }, { header: 'HEALTH', get: (a) => a.status.health },
      { header: 'TARGET', get: (a) => short(a.status.targetSha) }, { header: 'SYNCED', get: (a) => short(a.syncedSha) },
      { header: 'AUTO', get: (a) => (a.syncPolicy.automated ? 'yes' : 'no') }, { header: 'OPERATION', get: (a) => a.status.operation ? `${a.status.operation.phase}${a.status.operation.waitingFor ? `: waiting for ${a.status.operation.waitingFor}` : ''}` : '' },
    ], r);
  });
  const printApp = (a: any) => {
    io.out.write(`${a.name}  sync ${a.status.sync}  health ${a.status.health}  target ${short(a.status.targetSha)}  synced ${short(a.syncedSha)}${a.pinnedSha ? `  (pinned to ${short(a.pinnedSha)})` : ''}\n`);
    for (const c of a.status.conditions) io.out.write(`  ${c.type}: ${c.message}\n`);
    const op = a.status.operation;
    if (op) io.out.write(`  last sync: ${op.phase} ${short(op.sha)} (${op.reason}, run ${op.runId})${op.waitingFor ? ` waiting for ${op.waitingFor}${op.since ? ` since ${new Date(op.since).toISOString()}` : ''}` : ''}${op.message && op.phase === 'Failed' ? `: ${op.message}` : ''}\n`);
    for (const r of a.status.resources) io.out.write(`  ${r.hook ? `[${r.hook}] ` : `[wave ${r.wave}] `}${r.file} → stack ${r.stack}: ${r.sync}${r.reason ? ` (${r.reason})` : ''}, ${r.health}${r.message ? ` (${r.message})` : ''}\n`);
  };
  app.command('get').argument('<app>').addOption(ctx.outputOption()).action(async (id, o) => {
    const a = await ctx.client().get(`/gitops/apps/${enc(id)}`, q());
    if (ctx.fmt(o.output) !== 'table') printObject(io.out, ctx.fmt(o.output), a);
    else printApp(a);
  });
  app.command('sync').argument('<app>').option('--revision <ref>', 'a commit, branch or tag (default: the source\'s ref)').option('--prune', 'destroy stacks whose file left Git')
    .option('-w, --wait', 'follow the sync to the end').action(async (id, o) => {
      const r = (await ctx.client().request('POST', `/gitops/apps/${enc(id)}/sync`, { query: q(), body: { ...(o.revision ? { revision: o.revision } : {}), ...(o.prune ? { prune: true } : {}) } })).body;
      io.out.write(`application ${id}: syncing ${short(r.sha)} in run ${r.runId}\n`);
      if (o.wait) {
        const end = await watchRun(ctx.client(), r.runId, { tty: io.isTty, out: io.err });
        if (end.status !== 'succeeded') throw new CliError(`sync ${r.runId} ${end.status}: ${end.error?.message ?? 'did not finish'}`, EXIT.failed);
        printApp(await ctx.client().get(`/gitops/apps/${enc(id)}`, q()));
      }
    });
  app.command('diff').description('what a sync would change (exit 1 when out of sync)').argument('<app>').addOption(ctx.outputOption()).action(async (id, o) => {
    const d = await ctx.client().get(`/gitops/apps/${enc(id)}/diff`, q());
    if (ctx.fmt(o.output) !== 'table') printObject(io.out, ctx.fmt(o.output), d);
    else if (!d.items.length) io.out.write(`application ${id} is in sync with ${short(d.targetSha)}\n`);
    else for (const i of d.items) io.out.write(`=== ${i.file} (stack ${i.stack}): ${i.reason ?? i.sync}\n${i.text ?? ''}\n`);
    if (d.items.length) process.exitCode = 1;
  });
  app.command('history').argument('<app>').addOption(ctx.outputOption()).action(async (id, o) => {
    const r = await ctx.client().get(`/gitops/apps/${enc(id)}/history`, q());
    printList(io.out, ctx.fmt(o.output), r.items, [
      { header: '#', get: (h) => h.seq }, { header: 'COMMIT', get: (h) => short(h.sha) }, { header: 'RESULT', get: (h) => h.result }, { header: 'REASON', get: (h) => h.reason },
      { header: 'STARTED', get: (h) => new Date(h.startedAt).toISOString() }, { header: 'RUN', get: (h) => h.runId }, { header: 'MESSAGE', get: (h) => h.message ?? '' },
    ]);
  });
  app.command('rollback').description('sync an earlier commit of the history and stay there (until unpin)').argument('<app>').argument('<commit-or-#>')
    .action(async (id, target) => {
      const body = /^\d+$/.test(target) ? { seq: Number(target) } : { sha: target };
      const r = (await ctx.client().request('POST', `/gitops/apps/${enc(id)}/rollback`, { query: q(), body })).body;
      io.out.write(`application ${id}: rolling back to ${short(r.sha)} in run ${r.runId}; infraflow gitops app unpin ${id} to follow the branch again\n`);
    });
  app.command('unpin').argument('<app>').action(async (id) => {
    await ctx.client().request('POST', `/gitops/apps/${enc(id)}/unpin`, { query: q() });
    io.out.write(`application ${id} follows its source's ref again\n`);
  });
  app.command('watch').description('follow status changes and syncs (Ctrl-C to stop)').argument('<app>').action(async (id) => {
    const a = await ctx.client().get(`/gitops/apps/${enc(id)}`, q());
    printApp(a);
    await ctx.client().stream(`/gitops/apps/${enc(a.id)}/events`, {}, (e) => {
      const d = (e.data ?? {}) as Record<string, unknown>;
      const what = e.event === 'gitops.app.status' ? `sync ${String(d.sync)}, health ${String(d.health)}` : `${String(e.event).replace('gitops.', '')} ${short(d.sha)}${d.message ? `: ${String(d.message)}` : ''}`;
      io.out.write(`${new Date().toISOString()}  ${what}\n`);
    });
  });
  app.command('delete').argument('<app>').option('--cascade', 'destroy its stacks too').action(async (id, o) => {
    const r = (await ctx.client().request('DELETE', `/gitops/apps/${enc(id)}`, { query: { ...q(), ...(o.cascade ? { cascade: 'true' } : {}) } })).body;
    io.out.write(`application ${id} deleted${r?.destroyRuns?.length ? `; destroying ${r.destroyRuns.length} stack(s)` : ''}\n`);
  });
};

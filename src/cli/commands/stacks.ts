import type { CommandModule } from './context.js';

/**
 * `infraflow stack approve <stack> <step>`: answers an approval step a
 * stack's apply waits on (attached workflows with `kind: approval`). Without
 * `--scope` it answers every instance of that step that waits; `--reject`
 * says no (the apply stops, continues or rolls back as its phase says).
 */
export const registerStackCommands: CommandModule = (program, ctx) => {
  const stack = program.command('stack').description('operate stacks (plan, apply and destroy are top-level commands)');
  stack.command('approve').description('approve (or --reject) an approval step the stack\'s apply waits on')
    .argument('<stack>', 'stack id or name').argument('<step>', 'the approval step, e.g. preDeploy/ask')
    .option('--scope <scope>', 'only this instance (e.g. an instance group member)').option('--reject', 'say no').option('--comment <text>')
    .action(async (id, step, o) => {
      const r = (await ctx.client().request('POST', `/stacks/${encodeURIComponent(id)}/approve`, {
        query: { project: ctx.cfg().project },
        body: { step, approved: !o.reject, ...(o.scope ? { scope: o.scope } : {}), ...(o.comment ? { comment: o.comment } : {}) },
      })).body as { approved?: string[] };
      const which = r.approved?.length ? r.approved.join(', ') : step;
      ctx.io.out.write(`stack ${id}: ${o.reject ? 'rejected' : 'approved'} ${which}\n`);
    });
};

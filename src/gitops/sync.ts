import { z } from 'zod';
import { InfraflowError } from '../core/errors.js';
import { defineWorkflow, type WorkflowContext } from '../engine/types.js';
import type { AppDocument, Gitops } from './service.js';
import type { HookPhase } from './status.js';

export const SYNC_WORKFLOW = 'gitops.sync';

export const SyncInputSchema = z.object({
  appId: z.string(),
  sha: z.string().regex(/^[0-9a-f]{40}$/),
  seq: z.number().int().positive(),
  prune: z.boolean(),
  reason: z.string(),
});
export type SyncInput = z.infer<typeof SyncInputSchema>;

type Started = { file: string; stackId: string; runId: string | null };

/**
 * One sync of an application to one commit, as a durable run:
 *
 *   read      every document at the commit, checked (nothing applies if one is broken)
 *   depends   each application named in dependsOn is Healthy
 *   PreSync   hooks, in wave order, each waited for
 *   waves     ascending: apply the documents of the wave that are out of sync,
 *             then wait until the wave is Healthy before the next one
 *             (Sync hooks run with their wave)
 *   prune     stacks whose file left Git, waves descending (when prune is on)
 *   PostSync  hooks
 *   record    synced commit, history entry
 *
 * A failure anywhere runs the SyncFail hooks, records the failure and fails
 * the run with the reason. Every wait reports what it waits on and since
 * when (run progress), and gives up after the wait timeout with the reason.
 * A crash anywhere resumes: each apply step skips documents whose blob was
 * already applied, and waits on the run that applies it.
 */
export function syncWorkflow(gitops: Gitops, opts: { waitTimeoutMs: number; waitIntervalMs: number }) {
  return defineWorkflow({
    name: SYNC_WORKFLOW,
    version: 1,
    input: SyncInputSchema,
    concurrencyKey: (i: SyncInput) => `gitops:${i.appId}`,
    retry: { maxAttempts: 4, initialIntervalMs: 1000, maxIntervalMs: 15_000, nonRetryable: ['gitops.invalid_document', 'gitops.not_owned', 'gitops.duplicate_stack', 'gitops.wrong_project', 'gitops.bad_ref'] },
    async run(ctx: WorkflowContext<SyncInput>, input: SyncInput) {
      const short = input.sha.slice(0, 12);
      ctx.progress({ stage: 'read', message: `reading ${short}` });
      const { app, docs } = await ctx.step('read', async () => {
        const a = await gitops.db.getApp(input.appId);
        const { docs } = await gitops.documents(a, input.sha);
        return { app: { name: a.name, project: a.project, dependsOn: a.dependsOn }, docs };
      });

      const waitRuns = async (name: string, runs: Started[], what: string) => {
        if (!runs.length) return;
        ctx.progress({ stage: name, waitingFor: what, message: `waiting for ${what}` });
        const state = await ctx.poll(`wait:${name}`, async () => {
          const s = await gitops.runsState(runs);
          return { done: s.done, value: s, status: s.waiting ? `waiting for ${s.waiting}` : 'done' };
        }, { intervalMs: opts.waitIntervalMs, timeoutMs: opts.waitTimeoutMs }).catch((e: unknown) => {
          throw new InfraflowError('gitops.wait_timeout', `${what} did not become Healthy within ${Math.round(opts.waitTimeoutMs / 1000)} s${(e as Error).message ? ` (${(e as Error).message})` : ''}`, 504);
        });
        if (state.failed.length) throw new InfraflowError('gitops.sync_failed', `${what}: ${state.failed.join('; ')}`, 500);
      };

      const runHooks = async (phase: HookPhase) => {
        const hooks = docs.filter((d) => d.hook === phase).sort(byWave);
        for (const h of hooks) {
          if (h.deletePolicy === 'BeforeHookCreation') {
            const prior = await ctx.step(`hook:${phase}:${h.file}:clear`, async () => {
              const recs = await gitops.db.appStacks(input.appId);
              const rec = recs.find((r) => r.file === h.file);
              return rec?.stackId ? { file: h.file, stackId: rec.stackId, runId: await gitops.destroyStack(rec.stackId) } : null;
            });
            if (prior?.runId) await waitRuns(`hook:${phase}:${h.file}:clear`, [prior], `the previous ${phase} hook ${h.file} to be removed`);
          }
          const started = await ctx.step(`hook:${phase}:${h.file}`, () => gitops.applyDocuments(input.appId, input.sha, [h], { hooks: true }));
          try {
            await waitRuns(`hook:${phase}:${h.file}`, started, `${phase} hook ${h.file}`);
          } catch (e) {
            if (h.deletePolicy === 'HookFailed') await ctx.step(`hook:${phase}:${h.file}:delete`, () => gitops.destroyStack(started[0]!.stackId));
            throw e;
          }
          if (h.deletePolicy === 'HookSucceeded') await ctx.step(`hook:${phase}:${h.file}:delete`, () => gitops.destroyStack(started[0]!.stackId));
        }
      };

      try {
        for (const dep of app.dependsOn) {
          ctx.progress({ stage: 'dependencies', waitingFor: `application ${dep}`, message: `waiting for application ${dep} to be Healthy` });
          await ctx.poll(`depends:${dep}`, async () => {
            const h = await gitops.healthOf(app.project, dep);
            return { done: h.health === 'Healthy', value: h.health, status: h.message };
          }, { intervalMs: opts.waitIntervalMs, timeoutMs: opts.waitTimeoutMs }).catch((e: unknown) => {
            throw new InfraflowError('gitops.dependency_not_healthy', `application ${dep} did not become Healthy within ${Math.round(opts.waitTimeoutMs / 1000)} s (${(e as Error).message})`, 504);
          });
        }

        await runHooks('PreSync');
        const resources = docs.filter((d) => d.hook === null || d.hook === 'Sync');
        const waves = [...new Set(resources.map((d) => d.wave))].sort((a, b) => a - b);
        for (const w of waves) {
          const inWave = resources.filter((d) => d.wave === w);
          ctx.progress({ stage: `wave ${w}`, message: `applying wave ${w}: ${inWave.length} document(s)` });
          const plain = inWave.filter((d) => d.hook === null);
          const started = await ctx.step(`wave:${w}:apply`, () => gitops.applyDocuments(input.appId, input.sha, plain));
          for (const h of inWave.filter((d) => d.hook === 'Sync')) started.push(...await ctx.step(`wave:${w}:hook:${h.file}`, () => gitops.applyDocuments(input.appId, input.sha, [h], { hooks: true })));
          await waitRuns(`wave:${w}`, started, `wave ${w} (${inWave.map((d) => d.file).join(', ')})`);
        }

        if (input.prune) {
          const extra = await ctx.step('prune:find', () => gitops.pruneCandidates(input.appId, docs));
          const pruneWaves = [...new Set(extra.map((e) => e.wave))].sort((a, b) => b - a);
          for (const w of pruneWaves) {
            const these = extra.filter((e) => e.wave === w);
            ctx.progress({ stage: `prune wave ${w}`, message: `destroying ${these.map((e) => e.file).join(', ')}` });
            const runs = await ctx.step(`prune:${w}`, async () => {
              const out: Started[] = [];
              for (const e of these) out.push({ file: e.file, stackId: e.stackId, runId: await gitops.destroyStack(e.stackId) });
              return out;
            });
            await waitRuns(`prune:${w}`, runs, `pruning wave ${w}`);
            await ctx.step(`prune:${w}:forget`, () => gitops.forgetPruned(input.appId, these.map((e) => e.file)));
          }
        }

        await runHooks('PostSync');
      } catch (e) {
        const message = e instanceof Error ? e.message : String(e);
        try {
          await runHooks('SyncFail');
        } catch (hookErr) {
          ctx.log(`SyncFail hook failed: ${(hookErr as Error).message}`);
        }
        await ctx.step('record:failed', () => gitops.finishSync(input.appId, input.seq, input.sha, 'failed', message));
        throw e;
      }
      await ctx.step('record', () => gitops.finishSync(input.appId, input.seq, input.sha, 'succeeded', null));
      return { sha: input.sha, documents: docs.length };
    },
  });
}

function byWave(a: AppDocument, b: AppDocument): number {
  return a.wave - b.wave || (a.file < b.file ? -1 : a.file > b.file ? 1 : 0);
}

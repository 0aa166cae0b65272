import { setTimeout as sleep } from 'node:timers/promises';
import type { ApiClient, SseEvent } from './client.js';

/**
 * Follows a run to the end. On a terminal: a live tree of its steps
 * (listr2) with the run's status and what it is doing or waiting for.
 * Otherwise: one plain line per event. Resolves with the run's final status.
 */
export interface StepState {
  name: string;
  status: 'running' | 'succeeded' | 'failed' | 'retrying' | 'skipped';
  attempts: number;
  message?: string;
}

const ICON: Record<StepState['status'], string> = { running: '…', succeeded: '✔', failed: '✖', retrying: '↻', skipped: '↷' };

/** Run events that change the run's status (others, e.g. run.signalled, do not). */
const RUN_STATUS: Record<string, string> = {
  'run.created': 'pending', 'run.started': 'running', 'run.waiting': 'waiting', 'run.retried': 'pending',
  'run.cancelling': 'cancelling', 'run.succeeded': 'succeeded', 'run.failed': 'failed', 'run.cancelled': 'cancelled',
};

export function describeEvent(e: SseEvent): string {
  const d = (e.data ?? {}) as { type?: string; subject?: string; data?: Record<string, any>; at?: number };
  const data = d.data ?? {};
  const at = d.at ? new Date(d.at).toISOString().slice(11, 19) : '';
  const parts: string[] = [at, e.event];
  if (data.step) parts.push(String(data.step));
  if (data.attempts || data.attempt) parts.push(`attempt ${data.attempts ?? data.attempt}`);
  if (data.kind && data.name) parts.push(`${data.kind} ${data.name}`);
  if (data.from && data.to) parts.push(`${data.from} → ${data.to}`);
  if (data.error?.message) parts.push(`error: ${data.error.message}`);
  if (data.message && !data.error) parts.push(String(data.message));
  if (!data.step && d.subject && !String(d.subject).startsWith('run_')) parts.push(String(d.subject));
  return parts.filter(Boolean).join('  ');
}

function applyStep(steps: Map<string, StepState>, e: SseEvent): void {
  const data = (e.data?.data ?? {}) as Record<string, any>;
  const name = data.step as string | undefined;
  if (!name) return;
  const cur = steps.get(name) ?? { name, status: 'running' as const, attempts: 0 };
  if (e.event === 'step.succeeded') Object.assign(cur, { status: 'succeeded', attempts: data.attempts ?? cur.attempts, message: undefined });
  else if (e.event === 'step.failed') Object.assign(cur, { status: 'failed', attempts: data.attempts ?? cur.attempts, message: data.error?.message });
  else if (e.event === 'step.retrying') Object.assign(cur, { status: 'retrying', attempts: data.attempt ?? cur.attempts, message: data.error?.message });
  else if (e.event === 'run.step_skipped') Object.assign(cur, { status: 'skipped' });
  else if (e.event.startsWith('step.')) cur.status = 'running';
  else return;
  steps.set(name, cur);
}

/** Lines of the tree: every step not done yet or failed, and the latest `max` others (a long apply has thousands). */
export function renderTree(steps: Map<string, StepState>, max = 25): string {
  const all = [...steps.values()];
  const quiet = all.filter((s) => s.status === 'succeeded' || s.status === 'skipped');
  const hidden = new Set(quiet.slice(0, Math.max(0, quiet.length - max)));
  const lines = all.filter((s) => !hidden.has(s)).map((s) => `${ICON[s.status]} ${s.name}${s.attempts > 1 ? ` (attempt ${s.attempts})` : ''}${s.message && s.status !== 'succeeded' ? ` — ${s.message}` : ''}`);
  return [...(hidden.size ? [`… ${hidden.size} earlier step${hidden.size === 1 ? '' : 's'} done`] : []), ...lines].join('\n');
}

/** The final tree from the run's journal: every step in order, with waits and sleeps (which send no event when they end). */
function fromTimeline(steps: { name: string; kind: string; status: string; attempts: number; error?: { message?: string } | null }[]): Map<string, StepState> {
  const out = new Map<string, StepState>();
  for (const s of steps) {
    if (s.kind === 'now' || s.kind === 'emit') continue;
    const status: StepState['status'] = s.status === 'succeeded' ? 'succeeded' : s.status === 'failed' ? 'failed' : s.status === 'skipped' ? 'skipped' : 'running';
    out.set(s.name, { name: s.name, status, attempts: s.attempts, ...(s.error?.message ? { message: s.error.message } : {}) });
  }
  return out;
}

/** What the run is doing now, from its progress (`waiting for approval of …`, `applying 3/10 resources`). */
function doing(run: { status: string; progress?: { stage?: string; waitingFor?: string; message?: string } | null }): string {
  const p = run.progress;
  if (!p || ['succeeded', 'failed', 'cancelled'].includes(run.status)) return '';
  const what = p.message ?? (p.waitingFor ? `waiting for ${p.waitingFor}` : p.stage);
  return what ? `: ${what}` : '';
}

/**
 * The run with its progress. A stack's apply waiting on its instances (per-instance hooks) says so
 * only through the stack, which gathers what each instance waits for.
 */
async function progressOf(client: ApiClient, runId: string): Promise<{ status: string; progress?: { stage?: string; waitingFor?: string; message?: string } | null } | undefined> {
  const run = await client.get(`/runs/${encodeURIComponent(runId)}`).catch(() => undefined);
  const stackId = run?.labels?.stack as string | undefined;
  if (run?.status === 'waiting' && stackId) {
    const stack = await client.get(`/stacks/${encodeURIComponent(stackId)}`).catch(() => undefined);
    if (stack?.run?.id === runId && stack.run.progress) return { status: run.status, progress: stack.run.progress };
  }
  return run;
}


export async function watchRun(client: ApiClient, runId: string, opts: { tty: boolean; out: NodeJS.WritableStream; refreshMs?: number }): Promise<{ status: string; error?: { message?: string } | undefined }> {
  const run = await client.get(`/runs/${encodeURIComponent(runId)}`);
  const steps = new Map<string, StepState>();
  let status: string = run.status;
  let now = doing(run);
  const follow = async (onChange: () => void) => {
    await client.stream(`/runs/${encodeURIComponent(runId)}/events/stream`, {}, (e) => {
      applyStep(steps, e);
      const s = RUN_STATUS[e.event];
      if (s) status = s;
      if (!opts.tty) opts.out.write(describeEvent(e) + '\n');
      onChange();
    });
  };
  if (!opts.tty) {
    await follow(() => undefined);
  } else {
    // listr2 is loaded only here, when a terminal watches a run
    const { DefaultRenderer, Listr, ListrLogger, ProcessOutput } = await import('listr2');
    /** The default (live, redrawing) renderer, drawing on the stream it is given whatever process.stdout is. */
    class TerminalRenderer extends DefaultRenderer {
      static override nonTTY = true;
    }
    const title = () => `run ${runId} (${run.workflow}) — ${status}${now}`;
    // events carry finished steps and status changes; the run's progress (what it waits for) is read every refreshMs
    const list = new Listr([{
      title: title(),
      task: async (_ctx, task) => {
        const redraw = () => {
          task.output = renderTree(steps);
          task.title = title();
        };
        const stop = new AbortController();
        const refresh = (async () => {
          while (!stop.signal.aborted) {
            try {
              await sleep(opts.refreshMs ?? 1000, undefined, { signal: stop.signal });
            } catch {
              break;
            }
            const cur = await progressOf(client, runId);
            if (cur && !stop.signal.aborted) {
              now = doing(cur);
              redraw();
            }
          }
        })();
        try {
          await follow(redraw);
        } finally {
          stop.abort();
        }
        await refresh;
        const { run: final, steps: journal } = await client.get(`/runs/${encodeURIComponent(runId)}/timeline`);
        status = final.status;
        now = '';
        if (Array.isArray(journal)) {
          steps.clear();
          for (const [k, v] of fromTimeline(journal)) steps.set(k, v);
        }
        redraw();
        if (final.status !== 'succeeded') throw new Error(`run ${runId} (${run.workflow}) ${final.status}${final.error?.message ? `: ${final.error.message}` : ''}`);
      },
      // the tree replaces itself on every change (one output entry, kept after the end)
      rendererOptions: { persistentOutput: true, outputBar: true },
    }], {
      renderer: TerminalRenderer,
      rendererOptions: { logger: new ListrLogger({ processOutput: new ProcessOutput(opts.out as NodeJS.WriteStream, opts.out as NodeJS.WriteStream) }) },
      exitOnError: true,
    });
    try {
      await list.run();
    } catch {
      /* the final status is reported below */
    }
  }
  const final = await client.get(`/runs/${encodeURIComponent(runId)}`);
  return { status: final.status, error: final.error };
}

import { Listr } from 'listr2';
import type { ApiClient, SseEvent } from './client.js';

/**
 * Follows a run to the end. On a terminal: a live tree of its steps
 * (listr2) with the current stage and progress. Otherwise: one plain line
 * per event. Resolves with the run's final status.
 */
export interface StepState {
  name: string;
  status: 'running' | 'succeeded' | 'failed' | 'retrying' | 'skipped';
  attempts: number;
  message?: string;
}

const ICON: Record<StepState['status'], string> = { running: '…', succeeded: '✔', failed: '✖', retrying: '↻', skipped: '↷' };

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
  if (e.event === 'step.succeeded') Object.assign(cur, { status: 'succeeded', attempts: data.attempts ?? cur.attempts });
  else if (e.event === 'step.failed') Object.assign(cur, { status: 'failed', attempts: data.attempts ?? cur.attempts, message: data.error?.message });
  else if (e.event === 'step.retrying') Object.assign(cur, { status: 'retrying', attempts: data.attempt ?? cur.attempts, message: data.error?.message });
  else if (e.event === 'run.step_skipped') Object.assign(cur, { status: 'skipped' });
  else if (e.event.startsWith('step.')) cur.status = 'running';
  steps.set(name, cur);
}

export function renderTree(steps: Map<string, StepState>): string {
  return [...steps.values()].map((s) => `${ICON[s.status]} ${s.name}${s.attempts > 1 ? ` (attempt ${s.attempts})` : ''}${s.message && s.status !== 'succeeded' ? ` — ${s.message}` : ''}`).join('\n');
}

export async function watchRun(client: ApiClient, runId: string, opts: { tty: boolean; out: NodeJS.WritableStream }): Promise<{ status: string; error?: { message?: string } | undefined }> {
  const run = await client.get(`/runs/${encodeURIComponent(runId)}`);
  const steps = new Map<string, StepState>();
  let status: string = run.status;
  const follow = async (onChange: () => void) => {
    await client.stream(`/runs/${encodeURIComponent(runId)}/events/stream`, {}, (e) => {
      applyStep(steps, e);
      if (e.event.startsWith('run.')) status = e.event.slice(4);
      if (!opts.tty) opts.out.write(describeEvent(e) + '\n');
      onChange();
    });
  };
  if (!opts.tty) {
    await follow(() => undefined);
  } else {
    const list = new Listr([{
      title: `run ${runId} (${run.workflow})`,
      task: async (_ctx, task) => {
        await follow(() => {
          task.output = renderTree(steps);
          task.title = `run ${runId} (${run.workflow}) — ${status}`;
        });
        const final = await client.get(`/runs/${encodeURIComponent(runId)}`);
        task.output = renderTree(steps);
        if (final.status !== 'succeeded') throw new Error(`run ${runId} ${final.status}${final.error?.message ? `: ${final.error.message}` : ''}`);
      },
      rendererOptions: { persistentOutput: true, bottomBar: Infinity },
    }], { exitOnError: true, rendererOptions: { collapseSubtasks: false } as any });
    try {
      await list.run();
    } catch {
      /* the final status is reported below */
    }
  }
  const final = await client.get(`/runs/${encodeURIComponent(runId)}`);
  return { status: final.status, error: final.error };
}

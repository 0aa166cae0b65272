import type { EngineApi, EngineEvent, RunInfo } from '../engine/types.js';

/**
 * Which project a run or an event belongs to. Runs carry it as the label
 * `project` (areas that start runs for a project must set it); events carry
 * it as `data.project`, else inherit it from their run. `null` means a
 * system object: only system-scope roles see it.
 */
export function runProject(run: Pick<RunInfo, 'labels'>): string | null {
  return typeof run.labels?.project === 'string' && run.labels.project !== '' ? run.labels.project : null;
}

export class EventProjects {
  private readonly runs = new Map<string, { project: string | null; labels: Record<string, string> }>();
  constructor(private readonly engine: EngineApi) {}

  async runInfo(runId: string): Promise<{ project: string | null; labels: Record<string, string> } | null> {
    const hit = this.runs.get(runId);
    if (hit) return hit;
    try {
      const run = await this.engine.get(runId);
      const v = { project: runProject(run), labels: run.labels ?? {} };
      if (this.runs.size > 50_000) this.runs.clear();
      this.runs.set(runId, v);
      return v;
    } catch {
      return null;
    }
  }

  async projectOf(e: EngineEvent): Promise<string | null> {
    if (typeof e.data?.project === 'string') return e.data.project;
    const runId = e.runId ?? (e.subject?.startsWith('run_') ? e.subject : null);
    if (runId) return (await this.runInfo(runId))?.project ?? null;
    return null;
  }
}

/**
 * Sync and health, as Argo CD defines them, for an application whose
 * resources are stacks (one per document in Git).
 *
 * - sync: `Synced` when the stack exists, was applied from the document's
 *   current Git blob, nobody applied another revision since, and no drift is
 *   recorded; `OutOfSync` otherwise, with the reason; `Unknown` when the
 *   target commit cannot be read.
 * - health: `Healthy` (applied, every resource ready), `Progressing`
 *   (applying, or resources being created/updated), `Suspended` (waiting for
 *   an approval), `Degraded` (failed or cancelled), `Missing` (no stack, or
 *   destroyed), `Unknown`. An application is as healthy as its worst
 *   resource; hooks count for neither.
 */

export type SyncCode = 'Synced' | 'OutOfSync' | 'Unknown';
export type HealthCode = 'Healthy' | 'Progressing' | 'Degraded' | 'Suspended' | 'Missing' | 'Unknown';
export type HookPhase = 'PreSync' | 'Sync' | 'PostSync' | 'SyncFail';
export type HookDeletePolicy = 'BeforeHookCreation' | 'HookSucceeded' | 'HookFailed';

export const HOOK_PHASES: readonly HookPhase[] = ['PreSync', 'Sync', 'PostSync', 'SyncFail'];
export const HOOK_DELETE_POLICIES: readonly HookDeletePolicy[] = ['BeforeHookCreation', 'HookSucceeded', 'HookFailed'];

/** Labels on stack documents that steer a sync (Argo CD's annotations, as labels). */
export const LABEL_APP = 'gitops.infraflow.dev/app';
export const LABEL_WAVE = 'gitops.infraflow.dev/sync-wave';
export const LABEL_HOOK = 'gitops.infraflow.dev/hook';
export const LABEL_HOOK_DELETE = 'gitops.infraflow.dev/hook-delete-policy';

/** Worse is larger (Argo CD's order: Unknown is the worst). */
const HEALTH_RANK: Record<HealthCode, number> = { Healthy: 0, Suspended: 1, Progressing: 2, Missing: 3, Degraded: 4, Unknown: 5 };

export function worstHealth(hs: Iterable<HealthCode>): HealthCode {
  let worst: HealthCode = 'Healthy';
  for (const h of hs) if (HEALTH_RANK[h] > HEALTH_RANK[worst]) worst = h;
  return worst;
}

/** What the status computation needs to know of a stack. */
export interface StackView {
  id: string;
  revision: number;
  appliedRevision: number | null;
  status: string;
  drift: string;
  /** The latest run's status and what it waits for. */
  run?: { status: string; progress?: { waitingFor?: string; message?: string } | null } | undefined;
  /** Recorded resource statuses (ready | creating | updating | deleting | failed). */
  resourceStatuses: string[];
}

export function stackHealth(s: StackView | undefined): { health: HealthCode; message?: string } {
  if (!s || s.status === 'destroyed') return { health: 'Missing', message: s ? 'destroyed' : 'not created yet' };
  if (s.status === 'failed' || s.status === 'cancelled') return { health: 'Degraded', message: `the last apply ${s.status === 'failed' ? 'failed' : 'was cancelled'}` };
  if (s.status === 'applying' || s.status === 'destroying' || s.status === 'new') {
    const waiting = s.run?.progress?.waitingFor ?? '';
    if (/approv/i.test(waiting) || /approv/i.test(s.run?.progress?.message ?? '')) return { health: 'Suspended', message: s.run?.progress?.message ?? `waiting for ${waiting}` };
    return { health: 'Progressing', message: s.run?.progress?.message ?? s.status };
  }
  if (s.resourceStatuses.some((r) => r === 'failed')) return { health: 'Degraded', message: 'a resource failed' };
  if (s.resourceStatuses.some((r) => r !== 'ready')) return { health: 'Progressing', message: 'resources are being changed' };
  return { health: 'Healthy' };
}

/** What GitOps recorded when it last applied a document. */
export interface AppliedRecord {
  blob: string;
  stackRevision: number;
}

export function stackSync(gitBlob: string | undefined, rec: AppliedRecord | undefined, s: StackView | undefined): { sync: SyncCode; reason?: string } {
  if (gitBlob === undefined) return { sync: 'OutOfSync', reason: 'deleted in Git: prune removes it' };
  if (!rec || !s || s.status === 'destroyed') return { sync: 'OutOfSync', reason: 'not created yet' };
  if (rec.blob !== gitBlob) return { sync: 'OutOfSync', reason: 'changed in Git' };
  if (s.revision !== rec.stackRevision) return { sync: 'OutOfSync', reason: `changed outside GitOps: the stack is at revision ${s.revision}, GitOps applied revision ${rec.stackRevision}` };
  if (s.appliedRevision !== s.revision) return { sync: 'OutOfSync', reason: s.status === 'applying' ? 'being applied' : `revision ${s.revision} is not applied (${s.status})` };
  if (s.drift === 'drifted') return { sync: 'OutOfSync', reason: 'drifted: the live resources differ from the applied revision' };
  return { sync: 'Synced' };
}

/** Backoff of automated sync retries: 5 s, 10 s, 20 s … up to 3 min; at most `limit` attempts per commit. */
export const RETRY = { limit: 5, initialMs: 5_000, factor: 2, maxMs: 180_000 } as const;

export function retryDelayMs(failures: number): number {
  return Math.min(RETRY.maxMs, RETRY.initialMs * RETRY.factor ** Math.max(0, failures - 1));
}

/** Poll delay with ±10 % jitter, so that many sources do not fetch in lockstep. */
export function jittered(ms: number, random: () => number): number {
  return Math.round(ms * (0.9 + 0.2 * random()));
}

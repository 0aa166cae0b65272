import type { KObj } from './client.js';

/**
 * Rollout status of a set of applied objects, the way `kubectl rollout
 * status` and Argo CD's health checks judge them: a Deployment is rolled out
 * when it observed its generation and all replicas are updated and
 * available; a Service with a selector is healthy when it has a ready
 * endpoint; pods waiting with ImagePullBackOff / ErrImagePull /
 * CrashLoopBackOff or unschedulable are reported with their reason.
 */

export interface WorkloadStatus {
  kind: string;
  name: string;
  ready: boolean;
  message: string;
  replicas?: number;
  updated?: number;
  available?: number;
  failed?: boolean;
}

export interface PodProblem { pod: string; reason: string; message: string }

export function deploymentStatus(d: KObj): WorkloadStatus {
  const want = d.spec?.replicas ?? 1;
  const s = d.status ?? {};
  const base = { kind: 'Deployment', name: d.metadata.name, replicas: want, updated: s.updatedReplicas ?? 0, available: s.availableReplicas ?? 0 };
  const progressing = (s.conditions ?? []).find((c: KObj) => c.type === 'Progressing');
  if ((s.observedGeneration ?? 0) < (d.metadata.generation ?? 1)) return { ...base, ready: false, message: `waiting for deployment "${d.metadata.name}" spec update to be observed` };
  if (progressing?.reason === 'ProgressDeadlineExceeded') return { ...base, ready: false, failed: true, message: `deployment "${d.metadata.name}" exceeded its progress deadline` };
  if ((s.updatedReplicas ?? 0) < want) return { ...base, ready: false, message: `waiting for deployment "${d.metadata.name}" rollout to finish: ${s.updatedReplicas ?? 0} out of ${want} new replicas have been updated` };
  if ((s.replicas ?? 0) > (s.updatedReplicas ?? 0)) return { ...base, ready: false, message: `waiting for deployment "${d.metadata.name}" rollout to finish: ${(s.replicas ?? 0) - (s.updatedReplicas ?? 0)} old replicas are pending termination` };
  if ((s.availableReplicas ?? 0) < (s.updatedReplicas ?? 0)) return { ...base, ready: false, message: `waiting for deployment "${d.metadata.name}" rollout to finish: ${s.availableReplicas ?? 0} of ${s.updatedReplicas ?? 0} updated replicas are available` };
  return { ...base, ready: true, message: `deployment "${d.metadata.name}" successfully rolled out` };
}

export function serviceStatus(svc: KObj, endpoints: KObj | undefined): WorkloadStatus {
  if (!svc.spec?.selector) return { kind: 'Service', name: svc.metadata.name, ready: true, message: 'no selector' };
  const ready = (endpoints?.subsets ?? []).reduce((a: number, s: KObj) => a + (s.addresses?.length ?? 0), 0);
  return { kind: 'Service', name: svc.metadata.name, ready: ready > 0, message: ready > 0 ? `${ready} ready endpoint(s)` : `service "${svc.metadata.name}" has no ready endpoints` };
}

export function podProblems(pods: KObj[]): PodProblem[] {
  const out: PodProblem[] = [];
  for (const p of pods) {
    if (p.metadata.deletionTimestamp) continue;
    const sched = (p.status?.conditions ?? []).find((c: KObj) => c.type === 'PodScheduled' && c.status === 'False');
    if (sched) {
      out.push({ pod: p.metadata.name, reason: sched.reason ?? 'Unschedulable', message: sched.message ?? '' });
      continue;
    }
    for (const cs of p.status?.containerStatuses ?? []) {
      const w = cs.state?.waiting;
      if (w && ['ImagePullBackOff', 'ErrImagePull', 'CrashLoopBackOff', 'CreateContainerConfigError', 'InvalidImageName'].includes(w.reason)) {
        out.push({ pod: p.metadata.name, reason: w.reason, message: w.message ?? '' });
        break;
      }
    }
  }
  return out;
}

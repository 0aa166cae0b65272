import type { ServerState } from './schemas.js';

/**
 * The bare-metal server lifecycle, after Metal3 (BareMetalHost provisioning
 * states) and MAAS (node statuses):
 *
 *   registering → inspecting → available → allocated → provisioning → provisioned
 *        → deprovisioning → cleaning → available
 *
 * plus maintenance (operator takes a server out), failed (an operation
 * failed; a reason is recorded) and quarantined (failed provisioning too
 * often; only an operator releases it). Every transition records a reason,
 * an actor and a timestamp in inv_server_events.
 */
export const TRANSITIONS: Record<ServerState, readonly ServerState[]> = {
  registering: ['inspecting', 'failed', 'maintenance'],
  inspecting: ['available', 'failed', 'maintenance'],
  available: ['allocated', 'inspecting', 'maintenance', 'quarantined'],
  // allocated → available: released (or hold expired) before provisioning started
  allocated: ['provisioning', 'available', 'maintenance'],
  provisioning: ['provisioned', 'failed', 'deprovisioning'],
  provisioned: ['deprovisioning', 'failed'],
  deprovisioning: ['cleaning', 'failed'],
  cleaning: ['available', 'failed'],
  maintenance: ['inspecting', 'available', 'cleaning', 'quarantined'],
  failed: ['inspecting', 'cleaning', 'deprovisioning', 'maintenance', 'quarantined'],
  quarantined: ['maintenance', 'inspecting', 'available'],
};

/** States that count towards "ready or becoming ready" for the hot pool. */
export const PENDING_READY: readonly ServerState[] = ['registering', 'inspecting', 'cleaning'];

export function canTransition(from: ServerState, to: ServerState): boolean {
  return TRANSITIONS[from].includes(to);
}

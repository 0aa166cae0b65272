import { ConflictError, InfraflowError, NotFoundError, TimeoutError, ValidationError } from '../core/errors.js';

/** Typed engine errors with stable codes (see docs/engine.md). */

export function workflowNotFound(name: string, registered: string[]): NotFoundError {
  return new NotFoundError(
    'engine.workflow_not_found',
    `workflow "${name}" is not registered${registered.length ? ` (registered: ${registered.join(', ')})` : ''}: check the name or register the workflow with engine.register() before starting it`,
    { details: { workflow: name } },
  );
}

export function runNotFound(id: string): NotFoundError {
  return new NotFoundError('engine.run_not_found', `run ${id} does not exist: check the run id (engine.list() shows runs)`, { details: { runId: id } });
}

export function runFinished(id: string, status: string, action: string): ConflictError {
  return new ConflictError('engine.run_finished', `run ${id} has already ${status}; cannot ${action} a finished run — start a new run instead`, { details: { runId: id, status } });
}

export function invalidInput(workflow: string, issues: { path: PropertyKey[]; message: string }[]): ValidationError {
  const first = issues[0];
  const field = first && first.path.length ? first.path.map(String).join('.') : '(root)';
  return new ValidationError('engine.invalid_input', `input for workflow "${workflow}" is invalid: field ${field}: ${first?.message ?? 'invalid'}; fix the input and start again`, {
    details: { workflow, field, issues: issues.map((i) => ({ path: i.path.map(String), message: i.message })) },
  });
}

export function versionMismatch(runId: string, workflow: string, runVersion: number, registered: number[]): ConflictError {
  return new ConflictError(
    'engine.version_mismatch',
    `run ${runId} was started with workflow "${workflow}" version ${runVersion}, but this worker has version ${registered.join(', ') || '(none)'}: keep version ${runVersion} registered until its runs drain, or cancel this run and start a new run`,
    { details: { runId, workflow, runVersion, registered } },
  );
}

export function nondeterminism(runId: string, seq: number, recorded: { name: string; kind: string }, found: { name: string; kind: string }): InfraflowError {
  return new InfraflowError(
    'engine.nondeterminism',
    `run ${runId}: replay found ${found.kind} "${found.name}" at position ${seq} but the journal recorded ${recorded.kind} "${recorded.name}" there; the workflow code changed while the run was in flight — bump the workflow version for incompatible changes and start a new run`,
    500,
    { details: { runId, seq, recorded, found }, retryable: false },
  );
}

export function cancelledError(runId: string, reason?: string | null): InfraflowError {
  return new InfraflowError('engine.cancelled', `run ${runId} was cancelled${reason ? `: ${reason}` : ''}`, 409, { details: { runId, ...(reason ? { reason } : {}) }, retryable: false });
}

export function runTimeout(runId: string, timeoutMs: number): TimeoutError {
  return new TimeoutError('engine.run_timeout', `run ${runId} exceeded its timeout of ${timeoutMs} ms; raise the workflow's timeoutMs if it legitimately takes longer`, { retryable: false, details: { runId, timeoutMs } });
}

export function stepTimeout(name: string, timeoutMs: number): TimeoutError {
  return new TimeoutError('engine.step_timeout', `step "${name}" did not finish within ${timeoutMs} ms`, { details: { step: name, timeoutMs } });
}

/** Internal: the worker no longer owns the run (lease lost, fenced out, or shutting down). */
export class LeaseLostError extends Error {
  constructor(readonly runId: string) {
    super(`lease on run ${runId} was lost`);
    this.name = 'LeaseLostError';
  }
}

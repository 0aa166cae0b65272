import { InfraflowError, ValidationError } from '../core/errors.js';
import type { Rng } from '../core/rng.js';
import type { RetryPolicy } from './types.js';

export const DEFAULT_STEP_RETRY: Required<RetryPolicy> = {
  maxAttempts: 3,
  initialIntervalMs: 1000,
  backoffCoefficient: 2,
  maxIntervalMs: 60_000,
  jitter: 0.2,
  nonRetryable: [],
};

export function mergePolicy(...ps: (RetryPolicy | undefined)[]): Required<RetryPolicy> {
  const out = { ...DEFAULT_STEP_RETRY, nonRetryable: [...DEFAULT_STEP_RETRY.nonRetryable] };
  for (const p of ps) {
    if (!p) continue;
    for (const [k, v] of Object.entries(p)) {
      if (v === undefined) continue;
      if (k === 'nonRetryable') out.nonRetryable = [...out.nonRetryable, ...(v as string[])];
      else (out as any)[k] = v;
    }
  }
  return out;
}

/** Whether an error thrown by a step body may be retried under the policy. */
export function isRetryable(e: unknown, policy: Required<RetryPolicy>): boolean {
  if (e instanceof ValidationError) return false;
  if (e instanceof InfraflowError) {
    if (!e.retryable) return false;
    if (policy.nonRetryable.includes(e.code) || policy.nonRetryable.includes(e.name)) return false;
    return true;
  }
  if (e instanceof Error) {
    const code = (e as { code?: unknown }).code;
    if (policy.nonRetryable.includes(e.name) || (code !== undefined && policy.nonRetryable.includes(String(code)))) return false;
    if ((e as { retryable?: unknown }).retryable === false) return false;
  }
  return true;
}

/** Backoff before attempt `attempt + 1` (attempt is 1-based): exponential, capped, with jitter. */
export function backoffMs(policy: Required<RetryPolicy>, attempt: number, rng: Rng): number {
  const base = Math.min(policy.maxIntervalMs, policy.initialIntervalMs * Math.pow(policy.backoffCoefficient, attempt - 1));
  const j = Math.max(0, Math.min(1, policy.jitter));
  return Math.max(0, Math.round(base * (1 - j + 2 * j * rng.next())));
}

import { InfraflowError, type SerializedError } from '../core/errors.js';
import type { ProviderErrorReason } from './types.js';

/**
 * Whether a reason is worth retrying by default. A backend that is briefly
 * away or a call that timed out may succeed next time; a spec the backend
 * refuses, or capacity that is not there, will not until something changes.
 */
export const RETRYABLE_REASONS: Readonly<Record<ProviderErrorReason, boolean>> = {
  NoValidHost: false,
  QuotaExceeded: false,
  CapacityExhausted: false,
  Timeout: true,
  BackendUnavailable: true,
  InvalidSpec: false,
  NotFound: false,
  Conflict: false,
  Internal: false,
};

const HTTP_STATUS: Readonly<Record<ProviderErrorReason, number>> = {
  NoValidHost: 409,
  QuotaExceeded: 409,
  CapacityExhausted: 409,
  Timeout: 504,
  BackendUnavailable: 503,
  InvalidSpec: 400,
  NotFound: 404,
  Conflict: 409,
  Internal: 502,
};

/** `NoValidHost` → `provider.no_valid_host`. */
export function reasonCode(reason: ProviderErrorReason): string {
  return 'provider.' + reason.replace(/([a-z])([A-Z])/g, '$1_$2').toLowerCase();
}

/**
 * The one error type providers throw. `reason` is the vocabulary users know
 * from clouds (NoValidHost, QuotaExceeded…); `code` is `provider.<snake_reason>`;
 * `retryable` follows RETRYABLE_REASONS unless the provider knows better.
 * The reason also sits in `details.reason` so it survives serialization into
 * the engine's journal.
 */
export class ProviderError extends InfraflowError {
  readonly reason: ProviderErrorReason;
  constructor(reason: ProviderErrorReason, message: string, opts: { retryable?: boolean; details?: Record<string, unknown>; cause?: unknown } = {}) {
    super(reasonCode(reason), `${reason}: ${message}`, HTTP_STATUS[reason], {
      retryable: opts.retryable ?? RETRYABLE_REASONS[reason],
      details: { ...opts.details, reason },
      ...(opts.cause === undefined ? {} : { cause: opts.cause }),
    });
    this.reason = reason;
  }
}

export function isProviderError(e: unknown): e is ProviderError {
  return e instanceof ProviderError;
}

/** The provider reason of any thrown or serialized error, if it has one. */
export function reasonOf(e: unknown): ProviderErrorReason | undefined {
  if (e instanceof ProviderError) return e.reason;
  const details = (e as SerializedError | undefined)?.details;
  const r = details?.reason;
  return typeof r === 'string' && r in RETRYABLE_REASONS ? (r as ProviderErrorReason) : undefined;
}

import { ProviderError } from '../../resources/errors.js';
import type { ProviderErrorReason } from '../../resources/types.js';

/**
 * The BMC driver interface: power and boot device of one server through its
 * baseboard management controller. IPMI (`src/providers/ipmi`, ipmitool)
 * and Redfish (`src/providers/redfish`, HTTP) implement it; the
 * `metal/Power` provider and the bare-metal lifecycle use only this.
 *
 * Credentials come from the inventory's sealed BMC secrets and are handed to
 * a driver per call; drivers never log them, never put them in an error
 * message and never pass them on a command line.
 */
export type PowerState = 'on' | 'off';
export type PowerAction = 'on' | 'off' | 'cycle' | 'reset' | 'soft';
export type BootDevice = 'pxe' | 'disk' | 'bios' | 'cdrom';

export interface BmcTarget {
  /** `host`, `host:port`, or a URL for Redfish (`https://10.0.0.5`). */
  address: string;
  username: string;
  password: string;
}

export interface BootOverride { device: BootDevice; persistent: boolean }

export interface BmcDriver {
  readonly protocol: 'ipmi' | 'redfish';
  powerState(t: BmcTarget, signal?: AbortSignal): Promise<PowerState>;
  power(t: BmcTarget, action: PowerAction, signal?: AbortSignal): Promise<void>;
  setBootDevice(t: BmcTarget, boot: BootOverride, signal?: AbortSignal): Promise<void>;
  /** The pending boot override, if any. */
  bootDevice(t: BmcTarget, signal?: AbortSignal): Promise<BootOverride | undefined>;
}

/**
 * Why a BMC call failed, in terms the bare-metal lifecycle acts on:
 * - `auth`: wrong username/password — not retryable; fix the inventory's BMC secret.
 * - `unreachable`: no answer from the BMC's address — retryable.
 * - `timeout`: the call took too long — retryable.
 * - `busy`: the BMC is busy (IPMI completion code 0xC0, Redfish 503/409) — retryable.
 * - `unsupported`: the BMC does not offer the action or device — not retryable.
 * - `protocol`: any other refusal — not retryable.
 */
export type BmcFailure = 'auth' | 'unreachable' | 'timeout' | 'busy' | 'unsupported' | 'protocol';

const REASON: Record<BmcFailure, { reason: ProviderErrorReason; retryable: boolean }> = {
  auth: { reason: 'BackendUnavailable', retryable: false },
  unreachable: { reason: 'BackendUnavailable', retryable: true },
  timeout: { reason: 'Timeout', retryable: true },
  busy: { reason: 'Conflict', retryable: true },
  unsupported: { reason: 'InvalidSpec', retryable: false },
  protocol: { reason: 'Internal', retryable: false },
};

/** A ProviderError whose `failure` says what went wrong at the BMC; `details.bmcFailure` survives serialization. */
export class BmcError extends ProviderError {
  readonly failure: BmcFailure;
  constructor(failure: BmcFailure, message: string, opts: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(REASON[failure].reason, message, { retryable: REASON[failure].retryable, details: { ...opts.details, bmcFailure: failure }, ...(opts.cause === undefined ? {} : { cause: opts.cause }) });
    this.failure = failure;
  }
}

export function bmcFailureOf(e: unknown): BmcFailure | undefined {
  if (e instanceof BmcError) return e.failure;
  const f = (e as { details?: Record<string, unknown> } | undefined)?.details?.bmcFailure;
  return typeof f === 'string' && f in REASON ? (f as BmcFailure) : undefined;
}

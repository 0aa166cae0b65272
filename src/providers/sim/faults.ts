import { z } from 'zod';
import { seededRng, seedFrom } from '../../core/rng.js';
import type { ProviderErrorReason } from '../../resources/types.js';

/**
 * Fault injection. A rule matches kinds (`*`, `compute/*`, `compute/Server`)
 * and operations, and gives rates (0..1) for each kind of trouble:
 *
 * - transientRate: the call fails with BackendUnavailable (retryable), before any effect.
 * - permanentRate: the call is accepted, the operation fails at its due time with `permanentReason`.
 * - hangRate:      the call never returns until its AbortSignal fires (a step timeout cuts it).
 * - stuckRate:     the call is accepted, the operation never finishes.
 * - slowRate:      the operation takes `slowFactor` times longer.
 * - degradedRate:  (clusters) the cluster comes up with a node NotReady and an operator Degraded.
 * - attempts:      the rule applies only to the first N attempts of a call (deterministic scripts).
 *
 * `op: 'read'` rules make reads fail (transientRate) or hang (hangRate); a
 * read's key is the object's create key and its "attempt" the object's read
 * count, kept in the database (sim_calls `read:<create key>`) while read
 * rules exist.
 *
 * Decisions are deterministic: they come from seededRng(seedFrom(op|key|attempt, seed)),
 * so the same seed and the same idempotency keys replay the same failures.
 */
export const FaultRule = z.strictObject({
  kind: z.string().default('*'),
  op: z.enum(['create', 'update', 'delete', 'read', '*']).default('*'),
  transientRate: z.number().min(0).max(1).default(0),
  permanentRate: z.number().min(0).max(1).default(0),
  permanentReason: z.enum(['NoValidHost', 'QuotaExceeded', 'CapacityExhausted', 'Timeout', 'BackendUnavailable', 'InvalidSpec', 'NotFound', 'Conflict', 'Internal']).default('Internal'),
  hangRate: z.number().min(0).max(1).default(0),
  stuckRate: z.number().min(0).max(1).default(0),
  slowRate: z.number().min(0).max(1).default(0),
  slowFactor: z.number().min(1).default(10),
  degradedRate: z.number().min(0).max(1).default(0),
  /** Apply this rule only to the first N attempts of each call (e.g. transientRate 1 + attempts 2 = fail twice, then succeed). */
  attempts: z.number().int().positive().optional(),
});
export type FaultRule = z.infer<typeof FaultRule>;
export type FaultRuleInput = z.input<typeof FaultRule>;

export const FaultConfig = z.strictObject({ rules: z.array(FaultRule).default([]) });
export type FaultConfig = z.infer<typeof FaultConfig>;

export interface FaultDecision {
  transient: boolean;
  permanent: ProviderErrorReason | null;
  hang: boolean;
  stuck: boolean;
  slowFactor: number;
  degraded: boolean;
}

export const NO_FAULT: FaultDecision = { transient: false, permanent: null, hang: false, stuck: false, slowFactor: 1, degraded: false };

function matches(pattern: string, kind: string): boolean {
  if (pattern === '*' || pattern === kind) return true;
  return pattern.endsWith('/*') && kind.startsWith(pattern.slice(0, -1));
}

/** The first matching rule decides (most specific first is the caller's job: list specific rules first). */
export function decideFault(rules: readonly FaultRule[], kind: string, op: 'create' | 'update' | 'delete' | 'read', key: string, attempt: number, seed: number): FaultDecision {
  const rule = rules.find((r) => matches(r.kind, kind) && (r.op === '*' || r.op === op) && (r.attempts === undefined || attempt <= r.attempts));
  if (!rule) return NO_FAULT;
  const rng = seededRng(seedFrom(`${op}|${key}|${attempt}`, seed));
  const draws = [rng.next(), rng.next(), rng.next(), rng.next(), rng.next(), rng.next()] as const;
  return {
    transient: draws[0] < rule.transientRate,
    permanent: draws[1] < rule.permanentRate ? rule.permanentReason : null,
    hang: draws[2] < rule.hangRate,
    stuck: draws[3] < rule.stuckRate,
    slowFactor: draws[4] < rule.slowRate ? rule.slowFactor : 1,
    degraded: draws[5] < rule.degradedRate,
  };
}
